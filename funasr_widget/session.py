"""One recording session: chunks in, ordered 16 kHz audio out, with its bookkeeping.

Both the browser's chunk messages and `feed()` from Python end here, so they
share one path: reorder, keep (up to the cap), measure, hand on to the consumer.
Called from the comm handler, which may run on a subshell thread: every entry
point takes the lock and does only cheap work.

Everything not kept is counted: `rejected` (a Counter, reason -> count; in
stats() as `rejected` total and `rejected_by`), `duplicates`, `lost` in `gaps`,
samples `clipped` to [-1, 1], audio past the cap in `dropped_seconds`.

Bounded: chunks from the page that arrive faster than real time, beyond CATCH_UP_S of
burst (a tab catching up after a stall), are dropped and counted (``too-fast``): the browser
never sends faster than it records. Audio past the cap is kept nowhere and drives nothing
(the consumer gets only what the recording kept). `feed()` from Python is not limited.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .audio import SAMPLE_RATE, Recording, StreamResampler, as_mono_float32, check_rate, level_db
from .wire import Chunk, Reorderer, WireError, decode_chunk

SILENCE_PEAK = 1e-4  # -80 dBFS: a live microphone's noise floor is always above this
SILENT_SECONDS = 3.0
# A capture time this far from the kernel's clock is garbage, not latency: not recorded
# (with values this small, percentiles can never overflow to inf or NaN).
_MAX_LATENCY_MS = 1e15
CATCH_UP_S = 5.0  # page audio allowed ahead of real time (a token bucket of this depth)

AudioSink = Callable[[np.ndarray, bool], None]


class AudioSession:
    def __init__(self, max_seconds: float = 3600.0, sink: AudioSink | None = None, path: Path | None = None):
        """`path`: the recording's file, kept (audio.Recording); None for a temporary one."""
        self.recording = Recording(max_seconds, path)
        self.sink = sink
        self._lock = threading.Lock()
        self._reorder = Reorderer()
        self._latencies: collections.deque[float] = collections.deque(maxlen=2000)
        self._resampler: StreamResampler | None = None
        self.rejected: collections.Counter[str] = collections.Counter()  # reason -> count
        self.chunks = 0
        self.clipped = 0  # float32 samples outside [-1, 1], clipped
        self.last_level_db: float | None = None
        self.silent_samples = 0
        self._open = False  # a take has delivered audio but not its final chunk
        self._allowance = CATCH_UP_S * SAMPLE_RATE  # page samples that may come now (token bucket)
        self._allowance_at = time.monotonic()

    # -- entry points -------------------------------------------------------

    def end_take(self) -> None:
        """Close the current take, keeping what it delivered: held chunks (a final
        one waiting for holes included) are released now, and a take whose final
        chunk never came (page reloaded, tab closed) is closed; sequence numbers
        restart at 0. Audio fed from Python still inside the resampler is flushed."""
        with self._lock:
            self._end_take()

    def receive(self, content: dict[str, Any], buffers: Any) -> int:
        """Validate one chunk message; return how many chunks were released in order.

        Raises WireError (counted in `rejected` by its code) for a message that
        cannot be used; nothing else, whatever the message holds.
        """
        received_ms = time.time() * 1000.0
        try:
            chunk = decode_chunk(content, buffers)
        except WireError as err:
            self.count_rejected(err.code)
            raise
        with self._lock:
            released = self._deliver(self._reorder.expire())
            if self._reorder.is_new_take(chunk.seq):
                # The browser's counter went back to 0 without a "start" message: a new take.
                self._end_take(implicit=True)
            try:
                ready = self._reorder.push(chunk)
            except WireError as err:
                self.rejected[err.code] += 1
                raise
            latency = received_ms - chunk.captured_ms
            if math.isfinite(latency) and abs(latency) < _MAX_LATENCY_MS:
                self._latencies.append(latency)
            released += self._deliver(ready)
        return released

    def expire(self) -> int:
        """Release a final chunk that has waited too long for the chunks before it
        (`Reorderer.final_wait_s`); `receive` does this itself. Returns how many
        chunks were released."""
        with self._lock:
            return self._deliver(self._reorder.expire())

    def count_rejected(self, code: str) -> None:
        """Count a message rejected elsewhere (the widget's unknown message types)."""
        with self._lock:
            self.rejected[code] += 1

    def feed(self, samples: Any, sample_rate: int = SAMPLE_RATE, final: bool = False) -> None:
        """Audio from Python: resampled to 16 kHz, then the same path as the microphone.

        Bad input (a rate that is not a positive whole number, NaN samples, a wrong
        dtype or shape) raises TypeError/ValueError before anything is kept; what
        earlier calls fed stays. A change of rate flushes the previous rate's tail.
        """
        rate = check_rate(sample_rate)
        x = as_mono_float32(samples)
        final = bool(final)
        with self._lock:
            if self._resampler is not None and self._resampler.rate != rate:
                self._flush_resampler()
            if self._resampler is None:
                self._resampler = StreamResampler(rate)
            x = self._resampler(x, final)
            if final:
                self._resampler = None
            self._keep(x, final)

    # -- internals (called with the lock held) -------------------------------

    def _end_take(self, implicit: bool = False) -> None:
        self._deliver(self._reorder.restart(implicit=implicit))
        self._flush_resampler()
        if self._open:
            self._keep(np.zeros(0, np.float32), True)

    def _flush_resampler(self) -> None:
        if self._resampler is not None:
            tail = self._resampler(np.zeros(0, np.float32), True)
            self._resampler = None
            if len(tail):
                self._keep(tail, False)

    def _deliver(self, chunks: list[Chunk]) -> int:
        """Page chunks, in order: each within the real-time allowance is kept."""
        for c in chunks:
            if not self._in_real_time(len(c.samples)):
                self.rejected["too-fast"] += 1
                if c.final:
                    self._keep(np.zeros(0, np.float32), True)  # the take still ends
                continue
            self.clipped += c.clipped
            self._keep(c.samples, c.final)
        return len(chunks)

    def _in_real_time(self, samples: int) -> bool:
        now = time.monotonic()
        self._allowance = min(self._allowance + (now - self._allowance_at) * SAMPLE_RATE, CATCH_UP_S * SAMPLE_RATE)
        self._allowance_at = now
        if samples > self._allowance:
            return False
        self._allowance -= samples
        return True

    def _keep(self, samples: np.ndarray, final: bool) -> None:
        self.chunks += 1
        self._open = not final
        room = self.recording.max_samples - round(self.recording.seconds * SAMPLE_RATE)
        self.recording.append(samples)  # counts what is past the cap in dropped_seconds
        samples = samples[: max(room, 0)]
        if len(samples):
            self.last_level_db = level_db(samples)
            quiet = np.max(np.abs(samples)) < SILENCE_PEAK
            self.silent_samples = self.silent_samples + len(samples) if quiet else 0
        if self.sink is not None and (len(samples) or final):
            self.sink(samples, final)

    # -- reading ------------------------------------------------------------

    @property
    def silent(self) -> bool:
        return self.silent_samples >= SILENT_SECONDS * SAMPLE_RATE

    def latencies_ms(self) -> np.ndarray:
        """Capture-to-kernel latencies of recent chunks (finite values only)."""
        with self._lock:
            return np.array(self._latencies, dtype=float)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            lat = np.array(self._latencies, dtype=float)
            r = self._reorder
            counts = {
                "chunks": self.chunks,
                "rejected": sum(self.rejected.values()),
                "rejected_by": {str(k): v for k, v in sorted(self.rejected.items(), key=lambda kv: str(kv[0]))},
                "duplicates": r.duplicates,
                "gaps": r.gaps,
                "lost": r.lost,
                "reordered": r.reordered,
                "restarts": r.restarts,
                "clipped": self.clipped,
            }
            level = self.last_level_db
        return {
            **counts,
            "seconds": round(self.recording.seconds, 2),
            "dropped_seconds": round(self.recording.dropped_seconds, 2),
            "level_db": None if level is None else round(level, 1),
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
            "latency_ms_p95": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
        }
