"""Live speech recognition in Jupyter: microphone capture, VAD and FunASR models in a widget."""

from . import models
from .recognizer import transcribe
from .transcriber import Transcriber

__all__ = ["Transcriber", "models", "transcribe"]
__version__ = "0.1.0"
