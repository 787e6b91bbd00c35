"""The Ray Serve deployment that decodes: the package's own engine (``load_engine``, as in a
kernel), so a segment gives the server the text a kernel gives it for the same options.

Concurrent requests are gathered by ``@serve.batch`` and decoded in one
``transcribe_batch`` call per option set (on a GPU, one ``generate()`` for many students;
on a CPU funasr decodes them one after the other, which measures best there). Decoding
runs on a thread, so the replica keeps answering Serve's health checks; a decode that
runs past ``HUNG_AFTER_S`` fails the check and Serve replaces the replica.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import numpy as np
from ray import serve

from ..asr import check_options, load_engine
from ..asr.segment import SegmentEngine, generate_options

# The per-request options a client may send: they change how a segment is decoded, never
# what is loaded (punctuation and trust_remote_code are the server's choice, not a client's).
REQUEST_OPTIONS = ("language", "use_itn", "hotword")
HUNG_AFTER_S = 120.0  # longer than a full batch of the longest segments takes on a CPU
BATCH_SIZE = 8
BATCH_WAIT_S = 0.01


def accepted_options(architecture: str) -> list[str]:
    """The REQUEST_OPTIONS this model family uses (the others would be silently ignored)."""
    probe = {"language": "en", "use_itn": False, "hotword": "word"}
    plain = generate_options(architecture, {})
    return [o for o in REQUEST_OPTIONS if generate_options(architecture, {o: probe[o]}) != plain]


@serve.deployment(health_check_period_s=5, health_check_timeout_s=10, max_ongoing_requests=32)
class Recognizer:
    def __init__(self, model_path: str, device: str):
        self.model_path, self.device = model_path, device
        # Word times off: the widget's remote engine takes the text only (a fifth of the decode).
        engine = load_engine(model_path, device, timestamps=False)
        if not isinstance(engine, SegmentEngine):
            raise ValueError(f"{model_path} is a streaming model; the class server serves segment models")
        self._engines: dict[tuple[tuple[str, Any], ...], SegmentEngine] = {(): engine}
        self.options = accepted_options(engine.architecture)
        self._busy_since: float | None = None

    def describe(self) -> dict:
        return {"architecture": self._engines[()].architecture, "options": self.options}

    def _engine(self, options: dict) -> SegmentEngine:
        key = tuple(sorted(options.items()))
        if key not in self._engines:  # shares the loaded model (load_engine's cache), other options
            # the same model file with other decoding options: a segment engine like the first
            engine = load_engine(self.model_path, self.device, timestamps=False, **check_options(dict(key)))
            self._engines[key] = cast(SegmentEngine, engine)
        return self._engines[key]

    def _decode(self, requests: list[tuple[np.ndarray, dict]]) -> list[dict]:
        results: list[dict] = [{}] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, (_, options) in enumerate(requests):
            groups.setdefault(tuple(sorted(options.items())), []).append(i)
        self._busy_since = time.monotonic()
        try:
            for key, members in groups.items():
                out = self._engine(dict(key)).transcribe_batch([requests[i][0] for i in members])
                for i, result in zip(members, out, strict=True):
                    results[i] = (
                        {"error": f"{type(result).__name__}: {result}"} if isinstance(result, Exception) else result
                    )
        finally:
            self._busy_since = None
        return results

    @serve.batch(max_batch_size=BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
    async def transcribe(self, requests: list[tuple[np.ndarray, dict]]) -> list[dict]:
        return await asyncio.to_thread(self._decode, requests)

    def check_health(self) -> None:
        busy = self._busy_since
        if busy is not None and time.monotonic() - busy > HUNG_AFTER_S:
            raise RuntimeError(f"a decode has run {time.monotonic() - busy:.0f} s: this replica hangs")
