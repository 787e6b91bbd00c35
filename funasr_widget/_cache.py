"""The process-wide cache of loaded models (torch and onnxruntime alike): one instance per
key (kind, folder, device, ...), listed and freed through funasr_widget.models. A leaf
module: the loaders import it, it imports none of them."""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable
from typing import Any

_cache: dict = {}
_locks: dict = {}
_lock = threading.Lock()


def shared(key: tuple, build: Callable[[], Any]) -> Any:
    """One instance per key in this process. Two callers asking for the same key at
    once wait for a single build; different keys build in parallel."""
    with _lock:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:
        if key not in _cache:
            _cache[key] = build()
        return _cache[key]


def loaded() -> list[tuple]:
    """The keys of the models loaded in this process: (kind, folder, device, ...)."""
    with _lock:
        return list(_cache)


def release(keep: Callable[[tuple], bool]) -> int:
    """Forget the loaded models whose key `keep` rejects, so their memory can be freed once no
    engine uses them; returns how many. GPU memory goes back to the driver's pool."""
    with _lock:
        dropped = [key for key in _cache if not keep(key)]
        for key in dropped:
            del _cache[key]
    if dropped:
        gc.collect()
        torch = sys.modules.get("torch")  # only if something loaded it
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
    return len(dropped)
