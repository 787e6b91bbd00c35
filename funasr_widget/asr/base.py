"""What every ASR engine has: a loaded funasr AutoModel, shared by every engine made
from the same model file and device, plus this engine's own decoding options."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
    notes: tuple = ()  # what the user should know (a CPU fallback, timestamps off)
    # AutoModel.generate rewrites the model's kwargs per call: one call at a time.
    lock: threading.Lock = field(default_factory=threading.Lock)


class Decoder:
    """What the pipeline asks of every engine (local, remote, 2-pass), with the usual answers."""

    streaming = False  # True: the pipeline streams the open segment into new_stream()/accept()
    two_pass = False  # True: streamed text is only the partial; the closed segment is transcribed
    partials = True  # False: the open segment is not re-decoded for partial text
    gives_words = False  # finals carry word times ("words")
    notes: tuple = ()  # what the user should know about this engine (a CPU fallback, ...)
    runtime: dict | None = None  # which runtime runs the model, its file and why (asr/onnx.Choice.info)

    def transcribe(self, samples) -> dict:
        raise NotImplementedError

    def transcribe_partial(self, samples) -> dict:
        """The open segment's text so far (an engine may bound it more tightly than a final)."""
        return self.transcribe(samples)


class Engine(Decoder):
    def __init__(self, loaded: LoadedModel, options: dict):
        self.loaded = loaded
        self.model = loaded.auto  # for direct generate() calls
        self.name, self.path, self.device = loaded.name, loaded.path, loaded.device
        self.architecture = loaded.architecture
        self.notes = loaded.notes
        self.options = dict(options)
        self._lock = loaded.lock

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} ({self.architecture}) on {self.device}>"
