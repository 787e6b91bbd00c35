"""One recording session: chunks in, ordered 16 kHz audio out, with its bookkeeping.

Both the browser's chunk messages and `feed()` from Python end here, so they
share one path: reorder, keep (up to the cap), measure, hand on to the consumer.
Called from the comm handler, which may run on a subshell thread: every entry
point takes the lock and does only cheap work.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Callable

import numpy as np

from .audio import SAMPLE_RATE, Recording, StreamResampler, as_mono_float32, level_db
from .wire import Reorderer, WireError, decode_chunk

SILENCE_PEAK = 1e-4  # -80 dBFS: a live microphone's noise floor is always above this
SILENT_SECONDS = 3.0

AudioSink = Callable[[np.ndarray, bool], None]


class AudioSession:
    def __init__(self, max_seconds: float = 3600.0, sink: AudioSink | None = None):
        self.recording = Recording(max_seconds)
        self.sink = sink
        self._lock = threading.Lock()
        self._reorder = Reorderer()
        self._latencies = collections.deque(maxlen=2000)
        self._resampler: StreamResampler | None = None
        self.rejected = collections.Counter()
        self.chunks = 0
        self.last_level_db: float | None = None
        self.silent_samples = 0
        self._open = False  # a take has delivered audio but not its final chunk

    # -- entry points -------------------------------------------------------

    def end_take(self) -> None:
        """Close the current take, keeping what it delivered, if its final chunk never
        came (page reloaded, tab closed); sequence numbers restart at 0."""
        with self._lock:
            for c in self._reorder.restart():
                self._keep(c.samples, c.final)
            if self._open:
                self._keep(np.zeros(0, np.float32), True)

    def receive(self, content: dict, buffers) -> int:
        """Validate one chunk message; return how many chunks were released in order.

        Raises WireError (counted in `rejected`) for a message that cannot be used.
        """
        received_ms = time.time() * 1000.0
        try:
            chunk = decode_chunk(content, buffers)
        except WireError as err:
            with self._lock:
                self.rejected[err.code] += 1
            raise
        with self._lock:
            self._latencies.append(received_ms - chunk.captured_ms)
            ready = self._reorder.push(chunk)
            for c in ready:
                self._keep(c.samples, c.final)
        return len(ready)

    def feed(self, samples, sample_rate: int = SAMPLE_RATE, final: bool = False) -> None:
        """Audio from Python: resampled to 16 kHz, then the same path as the microphone."""
        x = as_mono_float32(samples)
        with self._lock:
            if self._resampler is None or self._resampler.rate != sample_rate:
                self._resampler = StreamResampler(sample_rate)
            x = self._resampler(x, final)
            if final:
                self._resampler = None
            self._keep(x, final)

    # -- internals ----------------------------------------------------------

    def _keep(self, samples: np.ndarray, final: bool) -> None:
        self.chunks += 1
        self._open = not final
        self.recording.append(samples)
        if len(samples):
            self.last_level_db = level_db(samples)
            quiet = np.max(np.abs(samples)) < SILENCE_PEAK
            self.silent_samples = self.silent_samples + len(samples) if quiet else 0
        if self.sink is not None:
            self.sink(samples, final)

    # -- reading ------------------------------------------------------------

    @property
    def silent(self) -> bool:
        return self.silent_samples >= SILENT_SECONDS * SAMPLE_RATE

    def latencies_ms(self) -> np.ndarray:
        with self._lock:
            return np.array(self._latencies)

    def stats(self) -> dict:
        lat = self.latencies_ms()
        r = self._reorder
        return {
            "chunks": self.chunks,
            "rejected": sum(self.rejected.values()),
            "gaps": r.gaps,
            "lost": r.lost,
            "reordered": r.reordered,
            "seconds": round(self.recording.seconds, 2),
            "dropped_seconds": round(self.recording.dropped_seconds, 2),
            "level_db": None if self.last_level_db is None else round(self.last_level_db, 1),
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
        }

