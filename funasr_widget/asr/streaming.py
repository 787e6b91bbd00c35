"""The streaming engine (paraformer-zh-streaming): text while the speaker talks.

Audio is decoded in 600 ms steps (``chunk_size=[0, 10, 5]``: 10 frames of 60 ms, with
5 frames of look-ahead), looking back 4 encoder chunks and 1 decoder chunk, the
settings of FunASR's own streaming examples. Each stream is one segment; ``final``
flushes the last word.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from .base import Engine

STEP = 9600  # samples per decoding step (600 ms)
DECODING = {"chunk_size": [0, 10, 5], "encoder_chunk_look_back": 4, "decoder_chunk_look_back": 1}


class _Stream:
    """One segment's decoder state: funasr's cache plus audio not yet decoded."""

    def __init__(self):
        self.cache: dict = {}
        self.pending: list[np.ndarray] = []
        self.size = 0


class StreamingEngine(Engine):
    """funasr's streaming Paraformer; asr/onnx_streaming.py's twin differs only in `_step`."""

    streaming = True

    def new_stream(self) -> Any:  # the ONNX twin keeps its own state class
        return _Stream()

    def fork(self, stream) -> Any:
        return copy.deepcopy(stream)  # funasr's cache and the ONNX state hold arrays and numbers only

    def accept(self, stream, samples: np.ndarray, final: bool = False) -> str:
        """Feed audio; returns the text decoded by this call (often "" until 600 ms
        have gathered)."""
        samples = np.asarray(samples, np.float32).ravel()
        stream.pending.append(samples)
        stream.size += len(samples)
        if stream.size < STEP and not final:
            return ""
        chunk = np.concatenate(stream.pending)
        stream.pending, stream.size = [], 0
        with self._lock:
            return self._step(stream, chunk, final)

    def _step(self, stream, chunk: np.ndarray, final: bool) -> str:
        # funasr keeps a step's remainder in the cache for the next call.
        result = self.model.generate(input=chunk, cache=stream.cache, is_final=final, **DECODING)
        return str(result[0].get("text", "")) if result else ""
