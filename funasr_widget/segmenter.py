"""Cutting: audio in 100 ms blocks -> the VAD -> segments that carry their own audio.

Audio is cut into fixed blocks before the VAD, so the same audio gives the same segments
whether it came in browser chunks, from `feed()` in any piece size, or from a file. A batch
of blocks goes to the VAD in one call (cheaper than one call per block, the same events: a
VAD's events do not depend on how its input is cut), then the blocks are replayed one by
one, each event applied at the block holding its time, so segments and their audio come as
they would live. Recent audio is kept (HISTORY_S) because a VAD's start event looks back.

A VAD that raises is restarted (its clock re-anchored at the current position), a segment
open in it is closed there, and that stretch of audio has no events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._constants import BLOCK, SAMPLE_RATE
from .events import Emit, Problem
from .vad.base import PredictedEnd, Vad, VadEvent

HISTORY_S = 5.0  # audio kept before a segment opens: VAD start events look back in time


def ms_to_samples(ms: int) -> int:
    return ms * SAMPLE_RATE // 1000


@dataclass
class Segment:
    id: int
    start_ms: int
    end_ms: int | None = None
    samples: list[np.ndarray] = field(default_factory=list)
    stream: Any = None  # a streaming engine's per-segment state
    # Samples from the start that are surely in the segment while it is open (the VAD's
    # speech_until_ms): a streaming engine hears no further, so it never hears audio past the
    # end, and its text is the same whether the worker kept up or not.
    settled: int = 0
    heard: int = 0  # samples the streaming engine has heard
    _cursor: tuple[int, int] = (0, 0)  # (block, its first sample) where `heard` falls
    text: str = ""  # streaming text so far

    @property
    def length(self) -> int | None:
        """Samples up to the end event (None while open): audio after it is not ours."""
        return None if self.end_ms is None else self.length_to(self.end_ms)

    def length_to(self, end_ms: int) -> int:
        return max(ms_to_samples(end_ms - self.start_ms), 0)

    def unheard(self, upto: int) -> np.ndarray:
        """The samples from `heard` up to `upto` (as far as they have come), now counted heard."""
        block, at = self._cursor
        parts = []
        while block < len(self.samples) and at < upto:
            samples = self.samples[block]
            part = samples[self.heard - at : upto - at]
            parts.append(part)
            self.heard += len(part)
            if at + len(samples) > upto:
                break
            block, at = block + 1, at + len(samples)
        self._cursor = (block, at)
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def audio(self, end_ms: int | None = None) -> np.ndarray:
        """The segment's samples, up to its end (or up to `end_ms`, for a segment still open)."""
        end = self.end_ms if end_ms is None else end_ms
        whole = np.concatenate(self.samples or [np.zeros(0, np.float32)])
        return whole if end is None else whole[: self.length_to(end)]


class Segmenter:
    """Feed blocks with :meth:`cut`; `closed(segment)` is called as each segment closes and
    `stepped(segment)` after each block while one is open. `make_vad` is called here (a VAD
    model can take seconds to load), and again after a VAD failure."""

    def __init__(
        self,
        make_vad: Callable[[], Vad],
        emit: Emit,
        closed: Callable[[Segment], None],
        stepped: Callable[[Segment], None],
    ):
        self._make_vad, self._emit = make_vad, emit
        self._closed, self._stepped = closed, stepped
        self.vad: Vad | None = None
        self._vad_origin = 0  # position (samples) of the VAD's ms 0
        self._carry = np.zeros(0, np.float32)  # less than one block, waiting for more
        self.pos = 0  # samples through the VAD so far
        self._history: list[np.ndarray] = []  # recent blocks, newest last
        self._history_start = 0
        self.open: Segment | None = None
        self.next_id = 0
        self._restart = False

    def start(self) -> None:
        """(Re)create the VAD; its ms 0 is the current position."""
        self.vad = self._make_vad()
        self._vad_origin = self.pos

    def set_params(self, **params) -> None:
        assert self.vad is not None
        self.vad.set_params(**params)

    def cut(self, pieces: list[np.ndarray], final: bool) -> None:
        """Whole 100 ms blocks go to the VAD in one call (all of them, when final)."""
        if len(self._carry):
            pieces = [self._carry, *pieces]
        x = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        whole = len(x) if final else len(x) // BLOCK * BLOCK
        self._carry = x[whole:]
        if whole or final:
            self._blocks(x[:whole], final)

    def predicted_end(self) -> PredictedEnd | None:
        """Where the open segment ends if silence goes on (the VAD's prediction), in session ms."""
        found = self.vad.predicted_end() if self.vad is not None and self.open is not None else None
        if found is None:
            return None
        origin = self._vad_origin * 1000 // SAMPLE_RATE
        return PredictedEnd(origin + found.end_ms, origin + found.due_ms)

    # -- internals ----------------------------------------------------------------------

    def _vad_events(self, x: np.ndarray, final: bool) -> list[VadEvent]:
        """The VAD's events for `x`, in session ms."""
        assert self.vad is not None
        try:
            events = self.vad.accept(x, final=final)
        except Exception as err:
            self._emit(
                Problem(
                    "vad-failed",
                    f"The VAD failed ({type(err).__name__}: {err}); it was "
                    "restarted and this stretch of audio was not cut.",
                    "If this repeats, choose another VAD (vad='energy').",
                )
            )
            self._restart = True
            return [VadEvent("end", (self.pos + len(x)) * 1000 // SAMPLE_RATE)] if self.open else []
        origin_ms = self._vad_origin * 1000 // SAMPLE_RATE
        return [VadEvent(e.kind, origin_ms + e.ms) for e in events]

    def _blocks(self, x: np.ndarray, final: bool) -> None:
        self._restart = False
        events = self._vad_events(x, final)
        pending = 0
        for i in range(0, max(len(x), 1), BLOCK):
            self._block(x[i : i + BLOCK])
            last = i + BLOCK >= len(x)
            while pending < len(events) and (last or ms_to_samples(events[pending].ms) <= self.pos):
                event = events[pending]
                pending += 1
                if event.kind == "start" and self.open is None:
                    self.open = Segment(self.next_id, event.ms, samples=[self._slice(event.ms)])
                    self.next_id += 1
                elif event.kind == "end" and self.open is not None:
                    segment, self.open = self.open, None
                    segment.end_ms = event.ms
                    self._closed(segment)
            if self.open is not None:
                settled_ms = self._settled_ms(events[pending:])
                if settled_ms is not None:
                    self.open.settled = max(self.open.settled, self.open.length_to(settled_ms))
                self._stepped(self.open)
        if self._restart:
            self.start()

    def _settled_ms(self, later: list[VadEvent]) -> int | None:
        """How far the open segment surely reaches (session ms): to its end when that comes
        later in this batch, else as far as the VAD has given it speech (the VAD has heard
        the whole batch already)."""
        for event in later:
            if event.kind == "end":
                return event.ms
        until = self.vad.speech_until_ms() if self.vad is not None else None
        return None if until is None else self._vad_origin * 1000 // SAMPLE_RATE + until

    def _block(self, block: np.ndarray) -> None:
        self._history.append(block)
        self.pos += len(block)
        if self.open is not None:
            self.open.samples.append(block)
        keep_from = self.pos - int(HISTORY_S * SAMPLE_RATE)
        while self._history and self._history_start + len(self._history[0]) < keep_from:
            self._history_start += len(self._history.pop(0))

    def _slice(self, start_ms: int) -> np.ndarray:
        """Audio from a session time on, from the recent history."""
        audio = np.concatenate(self._history) if self._history else np.zeros(0, np.float32)
        return audio[max(ms_to_samples(start_ms) - self._history_start, 0) :]
