"""The package's errors: one base class, so ``except FunasrWidgetError`` catches whatever
this package raises on purpose, and every error carries what to do (``hint``) and a short
``code`` for the widget and the diagnosis. A leaf module: it imports nothing from the package."""

from __future__ import annotations


class FunasrWidgetError(Exception):
    """``message`` says what happened, ``hint`` what to do, ``code`` which failure it is."""

    code = "error"

    def __init__(self, message: str, hint: str = "", code: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class ModelLoadError(FunasrWidgetError):
    """A model could not be found, downloaded or loaded."""

    code = "model-failed"


class RecognitionError(FunasrWidgetError):
    """Recognition failed part-way (a VAD or decode failure): no result is better than a
    truncated one."""

    code = "recognition-failed"


class MissingDependencyError(FunasrWidgetError, ImportError):
    """An optional package is not installed; the hint names the extra that brings it.
    ``code`` is ``"<extra>-missing"`` (e.g. ``"asr-missing"``)."""

    def __init__(self, message: str, hint: str = "", code: str | None = None, *, package: str = "", extra: str = ""):
        super().__init__(message, hint, code or (f"{extra}-missing" if extra else "dependency-missing"))
        self.package = package
        self.extra = extra


__all__ = ["FunasrWidgetError", "MissingDependencyError", "ModelLoadError", "RecognitionError"]
