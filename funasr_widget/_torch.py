"""Torch and funasr runtime shared by the VAD and ASR engines: device choice, thread
count, a quiet lazy ``import funasr``, building an ``AutoModel`` with clear errors, and
the process-wide cache of loaded models."""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .models import ModelLoadError


def threads() -> int:
    """Torch threads for inference: $FUNASR_WIDGET_THREADS, else every core this
    process may use. funasr's own default (4) is ~4x slower on a 2-core machine, and
    each AutoModel re-applies its count on every call, so all of ours pass this one."""
    configured = os.environ.get("FUNASR_WIDGET_THREADS")
    if configured:
        return max(int(configured), 1)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


INSTALL_HINT = "pip install 'funasr-widget[asr]'  (funasr, torch, kaldi-native-fbank)"


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'. Asking for a GPU that is
    not there is an error: funasr would silently fall back to the CPU."""
    try:
        import torch
    except ImportError as exc:
        raise ModelLoadError(f"PyTorch is not installed ({exc}).", INSTALL_HINT) from exc
    kind, _, index = device.partition(":")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device in ("cpu", "mps") and (device == "cpu" or torch.backends.mps.is_available()):
        return device
    if kind == "cuda" and (index == "" or index.isdigit()):
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device='{device}' was asked for, but PyTorch sees no CUDA GPU on this machine.",
                "Use device='cpu' (or 'auto'). For a GPU, install a CUDA build of torch "
                "(https://pytorch.org/get-started/locally/) on a machine that has one.",
            )
        count = torch.cuda.device_count()
        if int(index or 0) >= count:
            raise ModelLoadError(
                f"device='{device}' does not exist: PyTorch sees {count} GPU(s).",
                "Use device='cuda' for the first GPU.",
            )
        return device
    raise ModelLoadError(f"Device '{device}' is unknown or not available here.",
                         "Use 'auto', 'cpu', 'cuda', 'cuda:N' or (on Apple silicon) 'mps'.")


# --- keeping funasr's prints and logging setup out of the user's notebook -----------

_muted: dict[int, io.StringIO] = {}  # thread id -> what its prints went to
_mute_lock = threading.Lock()
_saved_logging: tuple = ()


class _ThreadMutedStdout:
    """sys.stdout stand-in that captures the prints of muted threads only, so a notebook
    cell printing while a model loads in the background still shows its output."""

    def __init__(self, target):
        self.target = target

    def write(self, text: str) -> int:
        captured = _muted.get(threading.get_ident())
        return (self.target if captured is None else captured).write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


def _from_loud_thread(record: logging.LogRecord) -> bool:
    """Root-logger filter: drop funasr's chatter (INFO, and WARNINGs such as
    'trust_remote_code: False') from muted threads; errors still show. funasr logs
    through the root logger, and another thread's load may have configured a handler."""
    return record.levelno >= logging.ERROR or record.thread not in _muted


@contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Capture this thread's prints (funasr prints notices to stdout) and undo funasr's
    ``logging.basicConfig`` on the root logger; yields what was printed."""
    global _saved_logging
    ident, captured = threading.get_ident(), io.StringIO()
    root = logging.getLogger()
    with _mute_lock:
        if not _muted:
            _saved_logging = (root.level, list(root.handlers))
            sys.stdout = _ThreadMutedStdout(sys.stdout)
            root.addFilter(_from_loud_thread)
        outer = _muted.get(ident)
        _muted[ident] = captured
    try:
        yield captured
    finally:
        with _mute_lock:
            if outer is None:
                del _muted[ident]
            else:
                _muted[ident] = outer
            if not _muted:
                root.removeFilter(_from_loud_thread)
                root.setLevel(_saved_logging[0])
                root.handlers[:] = _saved_logging[1]
                if isinstance(sys.stdout, _ThreadMutedStdout):
                    sys.stdout = sys.stdout.target


def auto_model_class():
    """funasr's AutoModel, imported on first use: the import takes seconds and prints."""
    try:
        with quiet():
            from funasr import AutoModel
            from funasr.utils import fbank
    except ImportError as exc:
        raise ModelLoadError(f"The recognition stack is not installed ({exc}).",
                             INSTALL_HINT) from exc
    # Without an fbank backend funasr loads models, then fails on every decode.
    if not getattr(fbank, "_HAS_TORCHAUDIO", True) and getattr(fbank, "_knf", True) is None:
        raise ModelLoadError("funasr has no fbank backend (torchaudio or kaldi-native-fbank).",
                             "pip install kaldi-native-fbank")
    return AutoModel


def registered(architecture: str) -> bool:
    """Does the installed funasr ship this model class?"""
    auto_model_class()
    from funasr.register import tables

    return architecture in tables.model_classes


def auto_model(path: Path, device: str, **kwargs) -> Any:
    """``AutoModel`` for a local folder, offline and quiet; failures -> ModelLoadError."""
    AutoModel = auto_model_class()
    try:
        with quiet():
            model = AutoModel(
                model=str(path), device=device, ncpu=threads(), disable_update=True,
                disable_pbar=True, disable_log=True, log_level="ERROR", **kwargs,
            )
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load the model in {path}: {type(exc).__name__}: {exc}",
            "Its files may be incomplete or corrupt (an interrupted download?): delete the "
            "folder, then fetch or copy the model again.",
        ) from exc
    # Dither adds random noise to the features (a training aid): off, so the same
    # audio gives the same text on every path (live, offline, funasr's own). funasr
    # restores its kwargs from a snapshot before every generate(), so the snapshot's
    # frontend needs it too.
    for kwargs in [model.kwargs, *getattr(model, "_base_kwargs_map", {}).values()]:
        frontend = kwargs.get("frontend")
        if frontend is not None and hasattr(frontend, "dither"):
            frontend.dither = 0.0
    return model


_cache: dict = {}
_cache_locks: dict = {}
_cache_lock = threading.Lock()


def shared(key: tuple, build: Callable[[], Any]) -> Any:
    """One instance per key in this process. Two callers asking for the same key at
    once wait for a single build; different keys build in parallel."""
    with _cache_lock:
        lock = _cache_locks.setdefault(key, threading.Lock())
    with lock:
        if key not in _cache:
            _cache[key] = build()
        return _cache[key]
