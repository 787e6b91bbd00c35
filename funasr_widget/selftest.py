"""The microphone self-test: the page records a few seconds, plays them back and sends
them here; this judges them (peak and RMS level, a verdict whose words are in diagnose.py).

One test at a time, and only one that was asked for (by `Transcriber.self_test()` or the
page's Test button): a result nobody asked for is refused. Not thread-safe by itself: the
widget calls it under its lock."""

from __future__ import annotations

import math

import numpy as np

from . import diagnose
from ._constants import SAMPLE_RATE

MIN_S = 0.5
MAX_S = 10.0


def check_seconds(seconds) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not MIN_S <= seconds <= MAX_S:
        raise ValueError(f"seconds must be between {MIN_S:g} and {MAX_S:g}, got {seconds!r}")
    return float(seconds)


def _db(value: float) -> float:
    return 20 * math.log10(value) if value > 0 else -120.0


def samples_from(buffers) -> np.ndarray:
    """The recorded float32 samples of a result message (junk reads as no samples), at most MAX_S."""
    try:
        raw = bytes(buffers[0]) if buffers else b""
        x = np.frombuffer(raw[: len(raw) // 4 * 4], "<f4").astype(np.float32)
    except (TypeError, IndexError, ValueError):
        x = np.zeros(0, np.float32)
    x = x[: int(MAX_S * SAMPLE_RATE)]
    return np.where(np.isfinite(x), x, 0.0).astype(np.float32)


def verdict(x: np.ndarray, env: dict | None = None) -> dict:
    """The `self_test_result` for recorded samples: {code, ok, peak_db, rms_db, seconds, message, hint}."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if len(x) else 0.0
    return diagnose.self_test_verdict(_db(peak), _db(rms), len(x) / SAMPLE_RATE, env)


def failed(code, env: dict | None, detail) -> dict:
    """The `self_test_result` when the page could not record (`code` as capture errors have)."""
    err = diagnose.capture_error(code, env, detail)
    return {
        "code": "failed",
        "ok": False,
        "peak_db": None,
        "rms_db": None,
        "message": f"Self-test could not record: {err['message']}",
        "hint": err["hint"],
    }


class SelfTest:
    def __init__(self) -> None:
        self.running = False
        self.audio = np.zeros(0, np.float32)  # what the last test recorded

    def start(self, seconds: float) -> dict:
        """A test is asked for: the `self_test_result` to show while the page records."""
        self.running = True
        return {"code": "running", "message": f"Self-test: recording {seconds:g} s..."}

    def finish(self, content: dict, buffers, env: dict | None) -> dict | None:
        """The page's result as the `self_test_result` to show; None when no test was asked for."""
        if not self.running:
            return None
        self.running = False
        if content.get("failed"):
            return failed(content["failed"], env, content.get("message"))
        self.audio = samples_from(buffers)
        return verdict(self.audio, env)
