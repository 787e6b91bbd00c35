"""What recognition reports, as typed events: the pipeline and the recognizer emit them,
the headless session keeps the transcript from them, and the widget mirrors that in
traits. One small value class per kind, so a listener matches on the type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelState:
    state: str  # none | loading | ready | error
    info: dict[str, Any] = field(default_factory=dict)  # {name, device, message, hint, progress}


@dataclass(frozen=True)
class Partial:
    text: str  # the open segment's text so far ("" when none is open)


@dataclass(frozen=True)
class Final:
    segment: dict[str, Any]  # {id, start, end, text, ...}: a closed segment, in session seconds


@dataclass(frozen=True)
class Lag:
    seconds: float  # audio queued ahead of the worker


@dataclass(frozen=True)
class Backlog:
    """Closed segments waiting for an engine that is unavailable (0 segments: caught up)."""

    segments: int
    seconds: float  # their audio
    reason: str = ""  # why the engine cannot take them now
    retry_in_s: float = 0.0


@dataclass(frozen=True)
class VadChanged:
    name: str  # the VAD in use now (after a fallback)


@dataclass(frozen=True)
class Problem:
    """Something failed in the background; what was hit says `code`. Recognition goes on."""

    code: str  # vad-failed, decode-failed, callback-failed, worker-failed
    message: str
    hint: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


Event = ModelState | Partial | Final | Lag | Backlog | VadChanged | Problem
Emit = Callable[[Event], None]


def joined(segments: list[dict[str, Any]]) -> str:
    """A transcript's text: its final segments' texts, one space between."""
    return " ".join(s["text"] for s in segments if s.get("text"))
