"""Live speech recognition in Jupyter: microphone capture, VAD and FunASR models in a widget.

The widgets and ``transcribe`` are imported on first use (module ``__getattr__``): importing
the package, or a module in it such as ``funasr_widget.wire``, needs neither the front-end
bundle (funasr_widget/static/, which the widget classes read) nor the recognition stack."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import FunasrWidgetError, MissingDependencyError, ModelLoadError, RecognitionError

if TYPE_CHECKING:
    from . import models
    from .explorer import VadExplorer
    from .journal import sessions
    from .live import transcribe
    from .transcriber import Transcriber

# public name -> the module that defines it (None: the name is a module), imported when the
# name is first used
_LAZY = {
    "Transcriber": ".transcriber",
    "VadExplorer": ".explorer",
    "transcribe": ".live",
    "sessions": ".journal",
    "models": None,
}


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name] or f".{name}", __name__)
        value = module if _LAZY[name] is None else getattr(module, name)
        globals()[name] = value  # the next lookup is a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "FunasrWidgetError",
    "MissingDependencyError",
    "ModelLoadError",
    "RecognitionError",
    "Transcriber",
    "VadExplorer",
    "models",
    "sessions",
    "transcribe",
]
__version__ = "0.1.0"
