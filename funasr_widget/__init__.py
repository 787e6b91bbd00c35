"""Live speech recognition in Jupyter: microphone capture, VAD and FunASR models in a widget."""

from . import models
from .explorer import VadExplorer
from .recognizer import transcribe
from .transcriber import Transcriber

__all__ = ["Transcriber", "VadExplorer", "models", "transcribe"]
__version__ = "0.1.0"
