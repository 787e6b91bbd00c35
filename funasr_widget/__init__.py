"""Live speech recognition in Jupyter: microphone capture, VAD and FunASR models in a widget."""

from . import models
from .explorer import VadExplorer
from .live import RecognitionError, transcribe
from .transcriber import Transcriber

__all__ = ["RecognitionError", "Transcriber", "VadExplorer", "models", "transcribe"]
__version__ = "0.1.0"
