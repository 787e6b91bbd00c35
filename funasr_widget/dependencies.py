"""Optional packages, imported where they are needed through :func:`require`, which names
the extra that brings a missing one. A leaf module: it imports only errors.py."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

# Import name -> the name pip installs, where the two differ.
PIP_NAMES = {
    "yaml": "pyyaml",
    "kaldi_native_fbank": "kaldi-native-fbank",
    "silero_vad": "silero-vad",
    "multipart": "python-multipart",
}


def install_hint(extra: str) -> str:
    """The command that installs ``extra``, and what to do after it."""
    return (
        f"pip install 'funasr-widget[{extra}]' in the kernel's environment (%pip install ... in a "
        "notebook cell), then restart the kernel"
    )


def installed(*modules: str) -> bool:
    """Are all these top-level modules importable (found, not imported)? A broken or blocked
    install counts as absent."""
    import importlib.util

    try:
        return all(importlib.util.find_spec(name) is not None for name in modules)
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """``import module``; when it is missing (or fails to import), a MissingDependencyError
    naming the package, what needs it (``purpose``) and ``pip install 'funasr-widget[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = PIP_NAMES.get(module, module)
        needs = f"{purpose} needs" if purpose else "This needs"
        raise MissingDependencyError(
            f"{needs} the {package} package, which is not installed in this kernel's environment ({exc}).",
            install_hint(extra),
            package=package,
            extra=extra,
        ) from exc


__all__ = ["PIP_NAMES", "install_hint", "installed", "require"]
