"""A segment's audio sent to the page for playback: one int16 buffer, and at most one answer
in flight per page.

The kernel's messages to the browser are rate-limited by the Jupyter server (about 1 MB/s),
and an answer is up to MAX_S of audio (1.9 MB): a page that asks faster than it receives must
not make the kernel queue answers without bound. An answer is in flight from the request
until the page says it arrived (`segment-audio-received`), or for ACK_WAIT_S at most (a page
that went away says nothing). Not thread-safe by itself: the widget calls it under its lock."""

from __future__ import annotations

import time

import numpy as np

from ._constants import SAMPLE_RATE
from .audio import pcm16

MAX_S = 60.0  # a segment's audio sent for playback, at most (int16: 1.9 MB)
ACK_WAIT_S = 10.0
MAX_PAGES = 8  # answers in flight, all pages together (a page names itself: bound the names)


def answer(segment: dict, samples: np.ndarray) -> tuple[dict, list[bytes]]:
    """The `segment-audio` message for a segment's samples (as LiveSession.segment_audio gives them)."""
    pcm = pcm16(samples)
    header = {
        "type": "segment-audio",
        "id": segment["id"],
        "sample_rate": SAMPLE_RATE,
        "dtype": "int16",
        "n": len(pcm),
        "start": segment["start"],
        "truncated": (segment["end"] - segment["start"]) > MAX_S,
    }
    return header, [pcm.tobytes()]


class InFlight:
    """Which pages have an answer on its way."""

    def __init__(self) -> None:
        self._since: dict[str | None, float] = {}

    def begin(self, view: str | None) -> bool:
        """May `view` be answered now? If so, its answer counts as in flight from now."""
        now = time.monotonic()
        self._since = {v: t for v, t in self._since.items() if now - t < ACK_WAIT_S}
        if view in self._since or len(self._since) >= MAX_PAGES:
            return False
        self._since[view] = now
        return True

    def done(self, view: str | None) -> None:
        """The page has the answer (or none was sent)."""
        self._since.pop(view, None)
