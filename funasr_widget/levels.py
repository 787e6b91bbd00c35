"""Is the VAD's threshold where the voice is? Two cheap watches over a live session.

* **Nobody can get past the threshold**: the input is clearly above its own noise floor
  (speech levels) for several seconds, yet the VAD opens no segment.
* **The VAD never closes**: segments run into ``max_segment_s`` one after another (noise,
  music or a hum that the VAD takes for speech).

``LevelWatch`` is fed one level per chunk (``chunk(level_db, in_speech)``, O(1) amortised)
and every closed segment (``segment(start, end)``); ``hint()`` is the current finding, a
dict ``{code, message, hint, fix}`` whose ``fix`` is the knob value that would help
(``{"energy_threshold_db": -38.0}`` or ``{"speech_threshold": 0.3}``), or None. The words
live in diagnose.py with the other texts.
"""

from __future__ import annotations

import collections
import math

CHUNK_S = 0.1  # the wire's chunk length; levels come once per chunk
FLOOR_WINDOW_S = 20.0  # the noise floor is a low percentile of this much recent audio
FLOOR_PERCENTILE = 10
LOUD_ABOVE_FLOOR_DB = 15.0  # "clearly above the noise floor": speech is 20-40 dB above a quiet room
LOUD_MIN_DB = -55.0  # and loud in absolute terms (a hiss at -70 is no voice)
LOUD_SECONDS = 3.0  # of loud chunks, with no segment opened, before it is called
LONG_SEGMENTS = 2  # segments in a row cut at max_segment_s before it is called
MIN_FLOOR_CHUNKS = 20  # 2 s of audio before a floor is trusted
CODES = ("threshold-too-high", "vad-never-closes")  # the findings' codes


def _percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))]


class LevelWatch:
    """See the module docstring. Not thread-safe by itself: one feeder per watch."""

    def __init__(self, vad: str = "energy", params: dict | None = None):
        self.vad = vad
        self.params = dict(params or {})
        self._levels: collections.deque[float] = collections.deque(maxlen=int(FLOOR_WINDOW_S / CHUNK_S))
        self._floor: float | None = None
        self._since_floor = 0
        self._loud: list[float] = []  # levels of loud chunks since the VAD last did anything
        self._long_run = 0  # consecutive segments cut at max_segment_s
        self._long_levels: list[float] = []
        self._finding: dict | None = None

    # -- input ------------------------------------------------------------------

    def configure(self, vad: str | None = None, **params) -> None:
        """The VAD or its knobs changed: what was measured against the old ones is forgotten."""
        if vad is not None:
            self.vad = vad
        self.params.update(params)
        self._loud.clear()
        self._long_run = 0
        self._finding = None

    def chunk(self, level_db: float | None, in_speech: bool | None = False) -> dict | None:
        """One chunk's level (dBFS, None/-inf for digital silence) and whether a segment is
        open now (None: cannot tell yet, e.g. the VAD is still loading or behind: the level
        counts for the noise floor only). Returns the finding (see hint())."""
        if level_db is None or not math.isfinite(level_db):
            level_db = -120.0
        self._levels.append(level_db)
        self._since_floor += 1
        if self._floor is None or self._since_floor >= 10:  # re-sorted once a second
            self._floor = _percentile(self._levels, FLOOR_PERCENTILE)
            self._since_floor = 0
        if in_speech:
            self._loud.clear()
            if self._finding and self._finding["code"] == "threshold-too-high":
                self._finding = None
            return self._finding
        if in_speech is not None and len(self._levels) >= MIN_FLOOR_CHUNKS and self.loud(level_db):
            self._loud.append(level_db)
            if len(self._loud) * CHUNK_S >= LOUD_SECONDS and not self._finding:
                self._finding = self._too_high()
        return self._finding

    def loud(self, level_db: float) -> bool:
        return level_db >= LOUD_MIN_DB and self._floor is not None and level_db >= self._floor + LOUD_ABOVE_FLOOR_DB

    def segment(self, start: float, end: float) -> dict | None:
        """A closed segment (session seconds)."""
        self._loud.clear()
        if self._finding and self._finding["code"] == "threshold-too-high":
            self._finding = None
        limit = float(self.params.get("max_segment_s") or 30.0)
        if end - start >= limit - 0.25:
            self._long_run += 1
            if self._long_run >= LONG_SEGMENTS and not self._finding:
                self._finding = self._never_closes()
        else:
            self._long_run = 0
            if self._finding and self._finding["code"] == "vad-never-closes":
                self._finding = None
        return self._finding

    # -- findings -------------------------------------------------------------

    @property
    def floor_db(self) -> float | None:
        return self._floor

    def hint(self) -> dict | None:
        return self._finding

    def _current(self) -> float:
        """The knob a finding is about, as in use (speech_threshold None: the backend's own)."""
        if self.vad == "energy":
            return float(self.params.get("energy_threshold_db", -45.0))
        given = self.params.get("speech_threshold")
        return float(given) if given is not None else (0.5 if self.vad == "silero" else 0.6)

    def _too_high(self) -> dict:
        from .diagnose import threshold_hint

        heard = _percentile(self._loud, 50)
        peak = max(self._loud)
        floor = self._floor if self._floor is not None else -120.0
        current = self._current()
        if self.vad == "energy":
            # Half-way between the floor and the voice: above the room, below the words.
            suggested = round(max(floor + 6.0, min((floor + heard) / 2, heard - 6.0)))
            fix = {"energy_threshold_db": float(max(-120.0, min(0.0, suggested)))}
        else:
            fix = {"speech_threshold": round(max(0.05, min(current / 2, current - 0.2)), 2)}
        return threshold_hint(
            "threshold-too-high",
            self.vad,
            heard_db=heard,
            peak_db=peak,
            floor_db=floor,
            current=current,
            fix=fix,
            seconds=len(self._loud) * CHUNK_S,
        )

    def _never_closes(self) -> dict:
        from .diagnose import threshold_hint

        floor = self._floor if self._floor is not None else -120.0
        limit = float(self.params.get("max_segment_s") or 30.0)
        current = self._current()
        if self.vad == "energy":
            fix = {"energy_threshold_db": float(min(0.0, round(max(current, floor) + 6.0)))}
        else:
            fix = {"speech_threshold": round(min(0.95, current + (1.0 - current) / 2), 2)}
        return threshold_hint(
            "vad-never-closes",
            self.vad,
            heard_db=None,
            peak_db=None,
            floor_db=floor,
            current=current,
            fix=fix,
            seconds=limit,
            count=self._long_run,
        )


def shown_error(error: dict, found: dict | None) -> dict | None:
    """What a widget's `error` ({} when none) becomes for the watch's finding `found`: the
    finding, when no other error is shown (an older finding of the watch gives way); {} when
    the shown finding has gone; None to leave `error` as it is. A finding never hides
    another error: that one is more urgent (no microphone, a failed model)."""
    code = error.get("code")
    if found and (not error or (code in CODES and code != found["code"])):
        return found
    if not found and code in CODES:
        return {}
    return None


__all__ = ["CODES", "LevelWatch", "shown_error"]
