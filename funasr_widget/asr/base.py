"""What every ASR engine has: a loaded funasr AutoModel, shared by every engine made
from the same model file and device, plus this engine's own decoding options."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class EngineUnavailable(Exception):
    """The engine cannot decode now but may soon (an inference server down, restarting or
    overloaded): the pipeline keeps the segment, with its audio, and tries again later."""


@dataclass
class LoadedModel:
    """One AutoModel in memory; engines with different options share it."""

    auto: Any  # the funasr AutoModel
    name: str
    path: Path
    device: str
    architecture: str  # the model class in config.yaml
    notes: tuple[str, ...] = ()  # what the user should know (a CPU fallback, timestamps off)
    # AutoModel.generate rewrites the model's kwargs per call: one call at a time.
    lock: threading.Lock = field(default_factory=threading.Lock)


class Decoder:
    """Everything the pipeline asks of an engine (local, remote, 2-pass), with the usual
    answers as defaults: an engine class derives from this and overrides what differs.

    A segment engine implements ``transcribe``; a streaming one sets ``streaming`` and
    implements ``new_stream``/``accept``. ``close`` releases what the engine holds itself
    (a remote engine's connections); the pipeline calls it when the engine is replaced or
    the session ends. A loaded model shared between engines is not the engine's to free
    (``funasr_widget.models.release()`` does that)."""

    streaming: bool = False  # True: the pipeline streams the open segment into new_stream()/accept()
    two_pass: bool = False  # True: streamed text is only the partial; the closed segment is transcribed
    partials: bool = True  # False: the open segment is not re-decoded for partial text
    name: str = ""
    device: str = ""
    notes: tuple[str, ...] = ()  # what the user should know about this engine (a CPU fallback, ...)
    runtime: dict[str, Any] | None = None  # which runtime runs the model, its file and why (asr/onnx.Choice.info)

    @property
    def gives_words(self) -> bool:
        """Do finals carry word times ("words")?"""
        return False

    def transcribe(self, samples: np.ndarray) -> dict[str, Any]:
        """One whole segment's result: {"text", ...}. Raises EngineUnavailable when the
        engine cannot decode now but may soon; any other exception fails this segment only."""
        raise NotImplementedError

    def transcribe_partial(self, samples: np.ndarray) -> dict[str, Any]:
        """The open segment's text so far (an engine may bound it more tightly than a final)."""
        return self.transcribe(samples)

    def transcribe_batch(self, batch: list[np.ndarray]) -> list[dict[str, Any] | Exception]:
        """Several whole segments (audio that is not live): each result is what transcribe()
        gives, or the exception that segment raised, in the order given."""
        results: list[dict[str, Any] | Exception] = []
        for samples in batch:
            try:
                results.append(self.transcribe(samples))
            except Exception as err:  # that segment's fate only
                results.append(err)
        return results

    def new_stream(self) -> Any:
        """A streaming engine's per-segment state."""
        raise NotImplementedError(f"{type(self).__name__} is not a streaming engine")

    def accept(self, stream: Any, samples: np.ndarray, final: bool = False) -> str:
        """Feed a stream; the text decoded by this call. ``final`` flushes the last word."""
        raise NotImplementedError(f"{type(self).__name__} is not a streaming engine")

    def fork(self, stream: Any) -> Any:
        """An independent copy of a stream's state: a flush decoded on it leaves the stream as it was."""
        raise NotImplementedError(f"{type(self).__name__} is not a streaming engine")

    def close(self) -> None:
        """Release what this engine holds itself; it is not used after this."""


class Engine(Decoder):
    def __init__(self, loaded: LoadedModel, options: dict[str, Any]):
        self.loaded = loaded
        self.model = loaded.auto  # for direct generate() calls
        self.name, self.path, self.device = loaded.name, loaded.path, loaded.device
        self.architecture = loaded.architecture
        self.notes = loaded.notes
        self.options = dict(options)
        self._lock = loaded.lock

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.architecture}) on {self.device}>"
