"""Bounded: a page that sends too fast, audio past max_seconds, segments waiting for a model
that is still loading, and the worker's queue all stay within fixed memory, and what is not
kept is counted."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from funasr_widget import decoding, pipeline
from funasr_widget.events import Final, Problem
from funasr_widget.live import LiveSession
from funasr_widget.pipeline import Pipeline
from funasr_widget.session import CATCH_UP_S
from funasr_widget.vad import create_vad

RATE = 16000
CHUNK = 1600

pytestmark = pytest.mark.timeout(300)


def bursts(n: int, on_s: float = 0.4, off_s: float = 0.8) -> np.ndarray:
    """n tone bursts with silences between: n segments for the energy VAD."""
    t = np.arange(int(on_s * RATE)) / RATE
    burst = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    gap = np.zeros(int(off_s * RATE), np.float32)
    return np.concatenate([gap] + [np.concatenate([burst, gap]) for _ in range(n)])


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def header(seq: int, n: int, final: bool = False) -> dict:
    return {
        "type": "chunk",
        "seq": seq,
        "t": time.time() * 1000,
        "sample_rate": RATE,
        "dtype": "float32",
        "n": n,
        "final": final,
    }


def test_an_hour_sent_in_a_second_is_dropped_and_counted_and_memory_stays_flat():
    session = LiveSession(model=None, vad="energy", autosave=False)
    chunk = [bursts(1)[:CHUNK].astype("<f4").tobytes()]
    total = 36_000  # one hour of 100 ms chunks
    session.receive(header(0, CHUNK), chunk)  # warm up the path before measuring
    assert session.wait(30)
    before = rss_mb()
    started = time.monotonic()
    for seq in range(1, total):
        session.receive(header(seq, CHUNK), chunk)
    elapsed = time.monotonic() - started
    assert session.wait(60)
    grown = rss_mb() - before
    stats = session.stats()
    session.close()
    allowed = 1 + (CATCH_UP_S + elapsed + 1) * 10  # chunks within real time plus the catch-up burst
    assert stats["rejected_by"]["too-fast"] >= total - allowed
    assert stats["seconds"] <= CATCH_UP_S + elapsed + 1.0
    assert stats["chunks"] + stats["rejected_by"]["too-fast"] == total
    print(f"flood: {total} chunks (1 h) in {elapsed:.2f} s, RSS {grown:+.1f} MB, kept {stats['seconds']} s")
    assert grown < 40, f"RSS grew by {grown:.1f} MB for a flood of one hour"  # an hour of float32: 230 MB


def test_chunks_at_real_time_are_all_kept():
    session = LiveSession(model=None, vad="energy", autosave=False)
    chunk = [np.zeros(CHUNK, "<f4").tobytes()]
    for seq in range(int(CATCH_UP_S * 10) + 20):  # 2 s more than the burst allows at once ...
        if seq >= CATCH_UP_S * 10:
            time.sleep(0.1)  # ... sent at real time
        session.receive(header(seq, CHUNK), chunk)
    stats = session.stats()
    session.close()
    assert "too-fast" not in stats["rejected_by"] and stats["chunks"] == int(CATCH_UP_S * 10) + 20


def test_audio_past_max_seconds_is_counted_and_drives_nothing():
    audio = bursts(4)  # 5.6 s: the second burst straddles the cap
    cap = 1.2 + 0.4 + 0.8 + 0.2  # seconds: mid-way into the second burst
    session = LiveSession(model=None, vad="energy", max_seconds=cap, autosave=False)
    for i in range(0, len(audio), CHUNK):
        session.feed(audio[i : i + CHUNK], RATE)
    session.feed(np.zeros(0, np.float32), RATE, final=True)
    assert session.wait(30)
    stats = session.stats()
    session.close()
    assert stats["dropped_seconds"] == pytest.approx(len(audio) / RATE - cap, abs=0.01)
    assert len(session.segments) == 2  # the first burst, and the second cut at the cap: no more
    assert all(s["end"] <= cap + 1e-9 for s in session.segments), session.segments


def test_the_backlog_while_a_model_loads_is_bounded(models_at, monkeypatch):
    """No engine handed over yet (a model still loading): closed segments wait, and past
    MAX_BACKLOG_S of their audio the oldest is given up with a Problem; the rest are decoded
    once the engine comes."""
    from funasr_widget.asr import load_engine

    monkeypatch.setattr(decoding, "MAX_BACKLOG_S", 1.5)  # each burst's segment is ~0.7 s
    events: list = []
    worker = Pipeline(lambda: create_vad("energy"), events.append, partials=False)
    worker.push(bursts(5), final=True)
    assert not worker.wait(timeout=3)  # the segments wait for the model
    given_up = [e.segment for e in events if isinstance(e, Final)]
    assert [s["id"] for s in given_up] == [0, 1, 2] and all("load" in s["error"] for s in given_up)
    assert sum(isinstance(e, Problem) and "waited for the model to load" in e.message for e in events) == 3
    assert worker.status()["given_up"] == [0, 1, 2] and worker.status()["pending"] == 2
    worker.set_engine(load_engine("sensevoice-small", device="cpu"))
    assert worker.wait(timeout=60)
    finals = [e.segment for e in events if isinstance(e, Final)]
    assert [s["id"] for s in finals] == [0, 1, 2, 3, 4] and not any("error" in s for s in finals[3:])
    worker.close()


def test_the_queue_is_bounded_live_audio_past_it_stands_in_as_silence(monkeypatch):
    """A worker far behind: past MAX_QUEUE_S of queued audio, pushed audio is not held but
    counted, and replaced by silence of its length, so later segments keep their times;
    room() (Python's feed() waits on it) says when there is space again."""
    monkeypatch.setattr(pipeline, "MAX_QUEUE_S", 2.0)
    release = threading.Event()

    def slow_vad():  # the worker is busy (a VAD model loading) until released
        release.wait(60)
        return create_vad("energy")

    events: list = []
    worker = Pipeline(slow_vad, events.append, partials=False)
    worker.set_engine(None)
    speech = bursts(1)
    seconds = len(speech) / RATE  # 2.0: the first push fills the queue
    for _ in range(5):
        worker.push(speech)
    assert not worker.room(timeout=0.2)
    assert worker.lag_seconds <= 2.0 and worker.status()["behind_seconds"] == pytest.approx(4 * seconds, abs=0.01)
    release.set()
    assert worker.room(timeout=30)
    worker.push(speech, final=True)
    assert worker.wait(timeout=30)
    ends = [e.segment["end"] for e in events if isinstance(e, Final)]
    starts = [e.segment["start"] for e in events if isinstance(e, Final)]
    assert len(starts) == 2  # the first push's burst and the last one's: the rest was not held
    assert starts[1] == pytest.approx(starts[0] + 5 * seconds, abs=0.05) and ends[1] <= 6 * seconds + 1e-9
    worker.close()
