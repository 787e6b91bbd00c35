"""What a model failure is, in words a user can act on: CUDA out of memory or failing to
start, funasr or torch missing, missing or truncated weights. Used where models load
(_torch.py, asr/device.py, the recognizer) and by the diagnosis; a leaf module (it imports
only the dependency hints), so none of them has to import another."""

from __future__ import annotations

import sys
from collections.abc import Iterator

from .dependencies import install_hint

# What torch says when CUDA itself fails (not the model): matched in the exception chain.
CUDA_FAILURES = (
    "CUDA out of memory",
    "out of memory",
    "CUDA error",
    "CUDA driver",
    "no CUDA GPUs",
    "cudaErrorInitializationError",
    "NVIDIA driver",
    "CUDA-capable device",
    "CUBLAS_STATUS",
    "CUDNN_STATUS",
)
# Words of a model file that is missing or cut short (an interrupted download).
TRUNCATED = (
    "pytorchstreamreader",
    "unexpected eof",
    "ran out of input",
    "file might be corrupted",
    "invalid load key",
    "central directory",
    "truncated",
    "failed finding central",
)
MAX_DETAIL = 160  # characters of an exception's text quoted to the user


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and what caused it (``__cause__``, else ``__context__``), each once."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "\u2026"


def cuda_failure(exc: BaseException) -> str | None:
    """The CUDA error behind `exc` (its message), or None when the failure is something else."""
    torch = sys.modules.get("torch")  # never imported here: no torch, no CUDA failure
    oom = getattr(getattr(torch, "cuda", None), "OutOfMemoryError", ())
    accelerator = getattr(torch, "AcceleratorError", ())
    for cause in causes(exc):
        if (
            (oom and isinstance(cause, oom))
            or (accelerator and isinstance(cause, accelerator))
            or (
                isinstance(cause, (RuntimeError, AssertionError, OSError))
                and any(words in str(cause) for words in CUDA_FAILURES)
            )
        ):
            return str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return None


def model_failure(exc: BaseException, path=None, device: str = "") -> tuple[str, str, str] | None:
    """(code, message, hint) for the model failures a user can fix by name: funasr or torch
    missing, missing or truncated weights (an interrupted download), CUDA out of memory, CUDA
    initialisation failure. None when the failure is none of these."""
    where = f" in {path}" if path else ""
    reason = cuda_failure(exc)
    if reason is not None:
        if "out of memory" in reason.lower():
            return (
                "cuda-oom",
                f"The GPU ran out of memory loading the model{where} ({_clip(reason)}).",
                "Free GPU memory (funasr_widget.models.release(), other kernels; nvidia-smi shows who uses "
                "it), pick a smaller model, or use device='cpu'.",
            )
        return (
            "cuda-init-failed",
            f"CUDA could not start{' on ' + device if device else ''} ({_clip(reason)}).",
            "Check `nvidia-smi` (driver loaded, GPU visible), that torch's CUDA build matches the driver "
            "(torch.version.cuda), and CUDA_VISIBLE_DEVICES; or use device='cpu'.",
        )
    for cause in causes(exc):
        text = str(cause)
        package = (getattr(cause, "name", None) or "").split(".")[0]
        if isinstance(cause, ModuleNotFoundError) and package in ("funasr", "torch", "torchaudio"):
            return "asr-missing", f"{package} is not installed in this kernel's environment.", install_hint("asr")
        if isinstance(cause, (EOFError, FileNotFoundError)) or any(k in text.lower() for k in TRUNCATED):
            return (
                "weights-corrupt",
                f"The model's weights{where} are missing or truncated ({_clip(text)}).",
                "The files are incomplete or corrupt (an interrupted download?): delete the folder, then "
                "funasr_widget.models.fetch(name) again (or copy the files again), and load_model() again.",
            )
    return None


__all__ = ["CUDA_FAILURES", "causes", "cuda_failure", "model_failure"]
