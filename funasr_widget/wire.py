"""Audio chunk messages from the browser: validate, decode, put back in order.

Each chunk is one anywidget custom message: a small JSON header plus one binary
buffer of PCM samples (see js/widget.js). Nothing here touches widgets or models.

Any message at all may arrive (another page, a bug, a hand-written `send`):
`decode_chunk` raises nothing but `WireError`, whose `code` names the reason so
that the session can count rejections by reason. The rules:

- `seq`, `sample_rate`, `n`: integers (not bools); 0 <= seq <= 2**53 - 1 (the
  largest integer JavaScript sends exactly); `n` at most `MAX_CHUNK_SAMPLES`.
- `t` (capture time, browser epoch ms): a number. A `t` that is not finite (NaN,
  inf, an integer too large for a float) keeps the chunk's audio but marks its
  time unknown (`captured_ms` is NaN), so latency statistics skip it.
- `final`: absent, `false` or `true`, nothing else ("false" is a bad header).
- `dtype`: "float32" or "int16"; exactly one bytes-like buffer of `n` samples.
- float32 samples: NaN/inf are rejected; samples outside [-1, 1] (a resampler's
  overshoot on a full-scale input) are clipped to [-1, 1] and counted in
  `Chunk.clipped`, rather than losing the chunk's audio.
"""

from __future__ import annotations

import collections
import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._constants import SAMPLE_RATE

# A chunk is normally 100 ms; anything over 2 s is a bug or an attack, not audio.
MAX_CHUNK_SAMPLES = 2 * SAMPLE_RATE
MAX_SEQ = 2**53 - 1  # Number.MAX_SAFE_INTEGER: the browser's counter never gets past it
# How far ahead of the next expected chunk a sequence number may be: 1000 chunks is
# 100 s of audio. Nothing legitimate skips that much (messages over one websocket are
# not lost); a number further ahead is rejected ("seq-ahead") instead of making every
# later chunk of the take look like a duplicate.
MAX_AHEAD = 1000
# A final chunk waits this long for the holes before it (chunks racing on other
# handler threads) before a later message gives up on them; end_take() never waits.
FINAL_WAIT_S = 2.0
_DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "int16": np.dtype("<i2")}


class WireError(ValueError):
    """A message that cannot be accepted; `code` names the reason for counting."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Chunk:
    seq: int
    captured_ms: float  # browser epoch ms when the last sample was captured; NaN: unknown
    samples: np.ndarray  # float32, 16 kHz, mono, in [-1, 1]
    final: bool = False
    clipped: int = 0  # float32 samples that were outside [-1, 1] and clipped


def _short(value: object, limit: int = 60) -> str:
    """A value for an error message: never long, never raising."""
    try:
        text = repr(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    except Exception:  # noqa: BLE001 - a message must not fail
        text = "?"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _int_field(content: dict[str, Any], name: str, low: int, high: int, code: str = "bad-header") -> int:
    value = content.get(name)
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)):
        raise WireError("bad-header", f"chunk header field {name!r} is missing or not an integer: {_short(value)}")
    value = int(value)
    if not low <= value <= high:
        raise WireError(code, f"chunk header field {name!r} = {_short(value)} is outside {low}..{high}")
    return value


def _time_field(content: dict[str, Any]) -> float:
    value = content.get("t")
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise WireError("bad-header", f"chunk header field 't' is missing or not a number: {_short(value)}")
    try:
        t = float(value)
    except (OverflowError, ValueError, TypeError):
        return math.nan
    return t if math.isfinite(t) else math.nan


def _bytes(buffer: Any) -> memoryview:
    try:
        raw = memoryview(buffer)
        if not raw.c_contiguous:
            raw = memoryview(raw.tobytes())
        return raw.cast("B") if raw.ndim != 1 or raw.format != "B" else raw
    except (TypeError, ValueError, BufferError) as err:
        raise WireError("bad-buffer", f"the chunk's buffer is not bytes-like ({type(buffer).__name__})") from err


def decode_chunk(content: dict[str, Any], buffers: Any) -> Chunk:
    """Validate a chunk message and return its samples as float32 in [-1, 1].

    Raises only WireError, whatever `content` and `buffers` are.
    """
    if not isinstance(content, dict):
        raise WireError("bad-header", f"a chunk message must be a JSON object, got {type(content).__name__}")
    seq = _int_field(content, "seq", 0, MAX_SEQ)
    captured_ms = _time_field(content)
    rate = content.get("sample_rate")
    if not isinstance(rate, numbers.Integral) or isinstance(rate, (bool, np.bool_)):
        raise WireError("bad-header", f"chunk header field 'sample_rate' is missing or not an integer: {_short(rate)}")
    n = _int_field(content, "n", 0, MAX_CHUNK_SAMPLES, code="oversized")
    final = content.get("final", False)
    if not isinstance(final, bool):
        raise WireError("bad-header", f"chunk header field 'final' must be true or false, got {_short(final)}")
    name = content.get("dtype")
    dtype = _DTYPES.get(name) if isinstance(name, str) else None
    if dtype is None:
        raise WireError("bad-dtype", f"dtype {_short(name)} is not one of {sorted(_DTYPES)}")
    if rate != SAMPLE_RATE:
        raise WireError("bad-rate", f"chunks must be {SAMPLE_RATE} Hz, got {_short(rate)} Hz")
    if buffers is None:
        buffers = []
    elif isinstance(buffers, (list, tuple)):
        buffers = list(buffers)
    else:
        raise WireError("bad-buffer", f"buffers must be a list, got {type(buffers).__name__}")
    views = [_bytes(b) for b in buffers]
    if n == 0 and final and not any(len(v) for v in views):
        return Chunk(seq, captured_ms, np.zeros(0, np.float32), final)
    if len(views) != 1:
        raise WireError("bad-buffer", f"expected one binary buffer, got {len(views)}")
    raw = views[0]
    if len(raw) != n * dtype.itemsize:
        raise WireError("size-mismatch", f"header says {n} {dtype.name} samples, buffer holds {len(raw)} bytes")
    samples = np.frombuffer(raw, dtype=dtype).astype(np.float32)
    clipped = 0
    if dtype.kind == "i":
        samples /= 32768.0
    else:
        if not np.isfinite(samples).all():
            raise WireError("not-finite", "chunk contains NaN or infinite samples")
        clipped = int(np.count_nonzero(np.abs(samples) > 1.0))
        if clipped:
            np.clip(samples, -1.0, 1.0, out=samples)
    return Chunk(seq, captured_ms, samples, final, clipped)


class Reorderer:
    """Releases chunks in sequence order, tolerating a little reordering.

    A missing chunk is waited for until `window` later chunks have arrived; then it
    is declared lost (a gap) and the stream moves on, so one lost message never
    stalls the transcript.

    The final chunk does not give up on the holes before it: handlers on other
    threads may still be delivering them (the browser sends the final chunk, then
    clears `recording`, and the widget calls end_take() on that change). A held
    final is released when its holes are filled, by `restart()` (end of take), or
    by `expire()` once it has waited `final_wait_s` (the session calls it on every
    message), so nothing waits for ever.
    While a final is held, a later sequence number or a second final is rejected
    ("after-final").

    Sequence numbers behind or far ahead of the expected one (`_next`):
    - more than `max_ahead` ahead: rejected ("seq-ahead"), so one absurd number
      never makes the rest of the take look old;
    - near 0 (at most `window`) and more than 2 * `window` behind: a fresh take
      (the browser restarted its counter without a "start" message): what is
      held is released and the new take starts; counted in `restarts`;
    - a chunk whose gap was already given up: rejected ("late");
    - already held, or released within the last `window`: a duplicate (counted
      in `duplicates`, dropped, not an error);
    - anything else behind: rejected ("seq-stale");
    - after a restart, more than `window` ahead and within the sequence numbers
      the previous take used: a late chunk of that take (a handler thread that
      lost the race with end_take), rejected ("previous-take") rather than held
      where it would displace the new take's own chunk. (A take shorter than
      `window` chunks cannot be told apart from the new one this way.)
    """

    def __init__(
        self,
        window: int = 5,
        max_ahead: int = MAX_AHEAD,
        final_wait_s: float = FINAL_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.window = window
        self.max_ahead = max_ahead
        self.final_wait_s = final_wait_s
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        self._next = 0
        self._held: dict[int, Chunk] = {}
        self._final: int | None = None  # seq of the held final chunk
        self._final_since = 0.0
        self._given_up: collections.deque[range] = collections.deque(maxlen=16)  # recent gaps
        self._previous = range(0)  # sequence numbers the previous take used
        self.gaps = 0  # number of gap events (runs of missing chunks)
        self.lost = 0  # number of chunks never received
        self.reordered = 0
        self.duplicates = 0
        self.restarts = 0  # takes started by a sequence number back near 0, not by restart()

    @property
    def holding_final(self) -> bool:
        return self._final is not None

    def restart(self, implicit: bool = False) -> list[Chunk]:
        """A new take: release what is still held (counting its holes), restart at seq 0.

        `implicit`: the take was started by a sequence number (counted in `restarts`)."""
        self.restarts += bool(implicit)
        out = []
        while self._held:
            out += self._skip_gap()
        if self._next:  # (a second restart in a row keeps the last real take's numbers)
            self._previous = range(self._next)
        self._next = 0
        self._final = None
        self._given_up.clear()
        return out

    def expire(self, now: float | None = None) -> list[Chunk]:
        """Release a final chunk that has waited `final_wait_s` for its holes."""
        if self._final is None:
            return []
        now = self._clock() if now is None else now
        if now - self._final_since < self.final_wait_s:
            return []
        out = []
        while self._held:
            out += self._skip_gap()
        return out

    def is_new_take(self, seq: int) -> bool:
        """Whether `seq` starts a new take: far behind the expected chunk, and near 0."""
        return seq <= self.window and seq < self._next - 2 * self.window

    def push(self, chunk: Chunk) -> list[Chunk]:
        """Take one chunk; return those now in order. Raises WireError for one that
        cannot belong to this take (nothing held changes then). Call `expire()`
        first to let a final chunk that waited too long go."""
        seq = chunk.seq
        out = self.restart(implicit=True) if self.is_new_take(seq) else []
        if seq in self._held:
            self.duplicates += 1
            return out
        if seq < self._next:
            if any(seq in gap for gap in self._given_up):
                raise WireError("late", f"chunk {seq} arrived after it had been given up as lost")
            if seq >= self._next - self.window:
                self.duplicates += 1
                return out
            raise WireError("seq-stale", f"chunk {seq} arrived long after chunk {self._next - 1}")
        if seq > self._next + self.window and seq in self._previous:
            raise WireError("previous-take", f"chunk {seq} is a late chunk of the previous take")
        if seq > self._next + self.max_ahead:
            raise WireError(
                "seq-ahead", f"chunk {seq} is more than {self.max_ahead} ahead of the next expected ({self._next})"
            )
        if self._final is not None and (seq > self._final or chunk.final):
            raise WireError("after-final", f"chunk {seq} arrived after the take's final chunk {self._final}")
        if self._held and seq < max(self._held):
            self.reordered += 1
        self._held[seq] = chunk
        if chunk.final:
            self._final = seq
            self._final_since = self._clock()
        out += self._release()
        # Give up on the oldest missing chunk once the window is full. A held final
        # alone does not: chunks racing on other threads may still fill the holes.
        while len(self._held) > self.window:
            out += self._skip_gap()
        return out

    def _skip_gap(self) -> list[Chunk]:
        first = min(self._held)
        self.gaps += 1
        self.lost += first - self._next
        self._given_up.append(range(self._next, first))
        self._next = first
        return self._release()

    def _release(self) -> list[Chunk]:
        out = []
        while self._next in self._held:
            chunk = self._held.pop(self._next)
            if chunk.final:
                self._final = None
            out.append(chunk)
            self._next += 1
        return out
