"""Live speech recognition in Jupyter: microphone capture, VAD and FunASR models in a widget."""

from .transcriber import Transcriber

__all__ = ["Transcriber"]
__version__ = "0.1.0"
