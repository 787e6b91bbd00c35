"""The VAD interface and what its backends share: parameters that change from the next
segment on, and (for the frame-based backends) the start/end hysteresis."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .._constants import KNOBS, SAMPLE_RATE, SAMPLES_PER_MS
from ..keywords import KNOB, check_names

# The knobs' defaults; their ranges, units and meanings are in _constants.KNOBS.
# speech_threshold None means the backend's own (default_threshold below).
DEFAULTS = {name: knob["default"] for name, knob in KNOBS.items()}


def accepted(name: str) -> str:
    """What `name` accepts, in words, for error messages."""
    knob = KNOBS[name]
    unit = f" {knob['unit']}" if knob["unit"] else ""
    return f"{knob['min']} <= {name} <= {knob['max']} ({knob['type']}{unit}: {knob['doc']})"


def check_params(**params: Any) -> dict[str, Any]:
    """VAD parameters checked and normalised; TypeError for an unknown name (with the close
    match among every keyword, keywords.py) or a wrong type, ValueError for a value out of
    range; both say what is accepted."""
    check_names(params, "A VAD", (KNOB,))
    out: dict[str, Any] = {}
    for name, value in params.items():
        knob = KNOBS[name]
        if value is None and name == "speech_threshold":
            out[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name} must be a number, got {value!r}; accepted: {accepted(name)}")
        value = float(value)
        if not (math.isfinite(value) and knob["min"] <= value <= knob["max"]):
            raise ValueError(f"{name}={value:g} is out of range; accepted: {accepted(name)}")
        out[name] = int(round(value)) if knob["type"] == "int" else value
    return out


@dataclass(frozen=True)
class VadEvent:
    kind: str  # "start" | "end"
    ms: int  # ms since the first sample fed to this VAD (since reset())


@dataclass(frozen=True)
class PredictedEnd:
    """Where a VAD would close its open segment if silence goes on (VadEvent ms)."""

    end_ms: int  # the "end" event's time: the last speech plus the VAD's end padding
    due_ms: int  # how much audio the VAD must have heard to decide it


class Vad(Protocol):
    """What the pipeline asks of every VAD backend."""

    name: str
    params: dict[str, Any]  # the knobs in effect (see DEFAULTS)
    in_speech: bool  # a segment is open

    def accept(self, samples: np.ndarray, final: bool = False) -> list[VadEvent]:
        """Feed 16 kHz float32 mono samples (any length). final=True ends the stream:
        an open segment gets its "end"; the clock keeps running."""
        ...

    def set_params(self, **params: Any) -> None:
        """Change parameters; they take effect from the next segment."""
        ...

    def reset(self) -> None:
        """Forget everything; the next sample is ms 0."""
        ...

    @property
    def trailing_silence_ms(self) -> int:
        """How much of ``end_silence_ms`` has passed in an open segment (0: none open, or speech)."""
        ...

    def predicted_end(self) -> PredictedEnd | None:
        """Where the open segment ends if silence lasts from now until the VAD closes it;
        None when no segment is open, speech is going on, or it would be cut otherwise
        (at ``max_segment_s``). Knob changes wait for the segment's end, so they never move it."""
        ...

    def speech_until_ms(self) -> int | None:
        """How far the open segment surely reaches: the end of the audio the VAD has given it
        so far (its speech, and the padding or look-ahead kept after it). It ends there or
        later, whatever comes next. None when no segment is open."""
        ...


class BaseVad:
    """Parameter bookkeeping common to the backends.

    ``end_silence_ms``: silence that closes a segment. ``speech_threshold``: the model's
    speech score threshold (None: the backend's default). ``max_segment_s``: a segment
    is cut when it grows this long. ``energy_threshold_db``: the energy backend's level
    threshold. Every backend takes all four, using those that apply to it, so one set of
    parameters fits any backend. A change made while a segment is open waits for that
    segment's end, so one segment is never judged by two rules."""

    name = ""
    default_threshold: float | None = None

    def __init__(self, **params: Any) -> None:
        self.params = self._checked({**DEFAULTS, **params})
        self._pending: dict[str, Any] = {}
        self._events: list[VadEvent] = []
        self.in_speech = False

    def _checked(self, params: dict[str, Any]) -> dict[str, Any]:
        params = check_params(**params)
        if "speech_threshold" in params and params["speech_threshold"] is None:
            params["speech_threshold"] = self.default_threshold
        return params

    def set_params(self, **params: Any) -> None:
        self._pending.update(self._checked(params))
        if not self.in_speech:
            self._apply()

    def _apply(self) -> None:
        self.params.update(self._pending)
        self._pending.clear()
        self._params_changed()

    def _params_changed(self) -> None:
        """Hook for backends that copy parameters into their own state."""

    def _emit(self, kind: str, ms: int) -> None:
        self._events.append(VadEvent(kind, int(ms)))
        self.in_speech = kind == "start"
        if kind == "end" and self._pending:
            self._apply()

    @property
    def trailing_silence_ms(self) -> int:
        """How much of ``end_silence_ms`` has passed in an open segment: it closes when this
        reaches ``end_silence_ms``. 0 when no segment is open or the backend cannot tell.
        (The pipeline skips re-decoding a segment that is about to close.)"""
        return 0

    def predicted_end(self) -> PredictedEnd | None:
        return None

    def speech_until_ms(self) -> int | None:
        return None  # a backend that cannot tell: a streaming engine hears the segment once it is closed

    def _take_events(self) -> list[VadEvent]:
        events, self._events = self._events, []
        return events

    def reset(self) -> None:
        self._events = []
        self.in_speech = False
        self._apply()


class FramedVad(BaseVad):
    """Backends that judge fixed frames as speech or not (energy, silero).

    A segment starts once MIN_SPEECH_MS of consecutive speech frames are seen, and is
    reported PAD_START_MS before the first of them; it ends after end_silence_ms without
    speech, reported PAD_END_MS after the last speech frame (padding keeps word edges)."""

    frame = 512  # samples per frame
    MIN_SPEECH_MS = 90
    PAD_START_MS = 200
    PAD_END_MS = 100

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._clear()

    def _is_speech(self, frame: np.ndarray) -> bool:
        raise NotImplementedError

    def _clear(self) -> None:
        self._rest = np.zeros(0, np.float32)
        self._pos = 0  # samples consumed
        self._run = 0  # consecutive speech frames while no segment is open
        self._first = self._last = self._seg_start = self._prev_end = 0  # sample positions

    def reset(self) -> None:
        super().reset()
        self._clear()

    def accept(self, samples: np.ndarray, final: bool = False) -> list[VadEvent]:
        x = np.concatenate([self._rest, np.asarray(samples, np.float32).ravel()])
        n = len(x) // self.frame
        for k in range(n):
            self._step(self._is_speech(x[k * self.frame : (k + 1) * self.frame]))
        self._rest = x[n * self.frame :]
        if final:
            self._pos += len(self._rest)  # a partial last frame still counts as time
            self._rest = self._rest[:0]
            self._run = 0
            if self.in_speech:
                self._close(min(self._last + self.PAD_END_MS * SAMPLES_PER_MS, self._pos))
        return self._take_events()

    @property
    def trailing_silence_ms(self) -> int:
        return (self._pos - self._last) // SAMPLES_PER_MS if self.in_speech else 0

    def predicted_end(self) -> PredictedEnd | None:
        if not self.in_speech or self._last >= self._pos:
            return None
        # The first frame that ends end_silence_ms after the last speech closes the segment.
        quiet_until = self._last + self.params["end_silence_ms"] * SAMPLES_PER_MS
        due = self._pos + -(-max(quiet_until - self._pos, 0) // self.frame) * self.frame
        before = due - self.frame  # the last frame before that one: cut there at max_segment_s?
        if before > self._pos and before - self._seg_start >= self.params["max_segment_s"] * SAMPLE_RATE:
            return None
        return PredictedEnd(
            min(self._last + self.PAD_END_MS * SAMPLES_PER_MS, due) // SAMPLES_PER_MS, due // SAMPLES_PER_MS
        )

    def speech_until_ms(self) -> int | None:
        # An end is placed PAD_END_MS after the last speech frame, or at a cut past it.
        return self._last // SAMPLES_PER_MS if self.in_speech else None

    def _step(self, speech: bool) -> None:
        start, end = self._pos, self._pos + self.frame
        self._pos = end
        p = self.params
        if not self.in_speech:
            if not speech:
                self._run = 0
                return
            if self._run == 0:
                self._first = start
            self._run += 1
            if self._run * self.frame >= self.MIN_SPEECH_MS * SAMPLES_PER_MS:
                self._last = end
                self._seg_start = max(self._first - self.PAD_START_MS * SAMPLES_PER_MS, self._prev_end)
                self._emit("start", self._seg_start // SAMPLES_PER_MS)
            return
        if speech:
            self._last = end
        if end - self._last >= p["end_silence_ms"] * SAMPLES_PER_MS:
            self._close(min(self._last + self.PAD_END_MS * SAMPLES_PER_MS, end))
        elif end - self._seg_start >= p["max_segment_s"] * SAMPLE_RATE:
            self._close(end)

    def _close(self, at: int) -> None:
        self._prev_end = at
        self._run = 0
        self._emit("end", at // SAMPLES_PER_MS)
