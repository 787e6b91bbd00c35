"""Loading on a GPU that turns out not to work: out of memory, or CUDA failing to
initialise (a driver mismatch, a busy or lost device). The model is loaded on the CPU
instead, with a note saying why and what to do; any other failure is raised as it is."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import Any

from ..failures import cuda_failure


def free_gpu() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # a broken CUDA may fail here too; the CPU load goes ahead
        pass


def load_with_fallback(load: Callable[[str], Any], device: str, name: str) -> tuple[Any, str, list[str]]:
    """``load(device)``; on a CUDA device that fails for CUDA's own reasons, ``load("cpu")``.
    Returns (what was loaded, the device it is on, notes for the user)."""
    try:
        return load(device), device, []
    except Exception as exc:
        reason = cuda_failure(exc) if device.startswith("cuda") else None
        if reason is None:
            raise
    free_gpu()
    loaded = load("cpu")
    what = "ran out of GPU memory" if "out of memory" in reason.lower() else "could not use CUDA"
    note = (
        f"{name} {what} on {device} ({reason}), so it runs on the CPU: slower. "
        "Free GPU memory (models.release(), other notebooks' kernels) or fix the driver, "
        "then load_model() again."
    )
    return loaded, "cpu", [note]
