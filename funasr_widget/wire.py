"""Audio chunk messages from the browser: validate, decode, put back in order.

Each chunk is one anywidget custom message: a small JSON header plus one binary
buffer of PCM samples (see js/widget.js). Nothing here touches widgets or models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
# A chunk is normally 100 ms; anything over 2 s is a bug or an attack, not audio.
MAX_CHUNK_SAMPLES = 2 * SAMPLE_RATE
_DTYPES = {"float32": np.dtype("<f4"), "int16": np.dtype("<i2")}


class WireError(ValueError):
    """A message that cannot be accepted; `code` names the reason for counting."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Chunk:
    seq: int
    captured_ms: float  # browser epoch ms when the last sample was captured
    samples: np.ndarray  # float32, 16 kHz, mono
    final: bool = False


def _field(content: dict, name: str, kind: type | tuple[type, ...]):
    value = content.get(name)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise WireError("bad-header", f"chunk header field {name!r} is missing or not {kind}")
    return value


def decode_chunk(content: dict, buffers) -> Chunk:
    """Validate a chunk message and return its samples as float32 in [-1, 1]."""
    seq = _field(content, "seq", int)
    captured_ms = float(_field(content, "t", (int, float)))
    rate = _field(content, "sample_rate", int)
    n = _field(content, "n", int)
    final = bool(content.get("final", False))
    dtype = _DTYPES.get(content.get("dtype"))
    if seq < 0:
        raise WireError("bad-header", f"negative sequence number {seq}")
    if dtype is None:
        raise WireError("bad-dtype", f"dtype {content.get('dtype')!r} is not one of {sorted(_DTYPES)}")
    if rate != SAMPLE_RATE:
        raise WireError("bad-rate", f"chunks must be {SAMPLE_RATE} Hz, got {rate} Hz")
    if not 0 <= n <= MAX_CHUNK_SAMPLES:
        raise WireError("oversized", f"{n} samples in one chunk (limit {MAX_CHUNK_SAMPLES})")
    buffers = list(buffers or [])
    if n == 0 and final and not any(len(memoryview(b)) for b in buffers):
        return Chunk(seq, captured_ms, np.zeros(0, np.float32), final)
    if len(buffers) != 1:
        raise WireError("bad-buffer", f"expected one binary buffer, got {len(buffers)}")
    raw = memoryview(buffers[0]).cast("B")
    if len(raw) != n * dtype.itemsize:
        raise WireError(
            "size-mismatch", f"header says {n} {dtype.name} samples, buffer holds {len(raw)} bytes"
        )
    samples = np.frombuffer(raw, dtype=dtype).astype(np.float32)
    if dtype.kind == "i":
        samples /= 32768.0
    elif not np.isfinite(samples).all():
        raise WireError("not-finite", "chunk contains NaN or infinite samples")
    return Chunk(seq, captured_ms, samples, final)


class Reorderer:
    """Releases chunks in sequence order, tolerating a little reordering.

    A missing chunk is waited for until `window` later chunks have arrived; then it
    is declared lost (a gap) and the stream moves on, so one lost message never
    stalls the transcript. A final chunk releases everything still held.
    """

    def __init__(self, window: int = 5):
        self.window = window
        self.reset()

    def reset(self) -> None:
        self._next = 0
        self._held: dict[int, Chunk] = {}
        self.gaps = 0  # number of gap events (runs of missing chunks)
        self.lost = 0  # number of chunks never received
        self.reordered = 0
        self.duplicates = 0

    def restart(self) -> list[Chunk]:
        """A new take: release what is still held (counting its holes), restart at seq 0."""
        out = []
        while self._held:
            out += self._skip_gap()
        self._next = 0
        return out

    def push(self, chunk: Chunk) -> list[Chunk]:
        if chunk.seq < self._next or chunk.seq in self._held:
            self.duplicates += 1
            return []
        if self._held and chunk.seq < max(self._held):
            self.reordered += 1
        self._held[chunk.seq] = chunk
        out = self._release()
        # Give up on the oldest missing chunk once the window is full, or at once when
        # the final chunk is already here (nothing later will fill the hole).
        while self._held and (len(self._held) > self.window or any(c.final for c in self._held.values())):
            out += self._skip_gap()
        return out

    def _skip_gap(self) -> list[Chunk]:
        first = min(self._held)
        self.gaps += 1
        self.lost += first - self._next
        self._next = first
        return self._release()

    def _release(self) -> list[Chunk]:
        out = []
        while self._next in self._held:
            out.append(self._held.pop(self._next))
            self._next += 1
        return out
