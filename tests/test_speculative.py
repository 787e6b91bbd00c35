"""Speculative finals: a segment decoded during its end silence, exactly as the VAD will close
it, published when the VAD closes it there and dropped (counted) otherwise. Speculation on
and off give the same segments and text, for every VAD; no audio is decoded twice."""

from __future__ import annotations

import numpy as np
import pytest

from funasr_widget import decoding
from funasr_widget.live import LiveSession
from funasr_widget.vad import create_vad

RATE, CHUNK = 16000, 1600
VADS = ["energy", "fsmn-vad", "silero"]

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(params=VADS)
def vad(request, models_at):
    if request.param == "silero":
        pytest.importorskip("silero_vad")
    return request.param


def fingerprint(samples: np.ndarray) -> tuple[int, float]:
    """What tells one decode's input from another's: its length and sum."""
    return len(samples), round(float(np.sum(samples, dtype=np.float64)), 6)


@pytest.fixture
def decodes(models_at, monkeypatch):
    """Every decode the real SenseVoice engine runs: (samples, sum) of its input."""
    from funasr_widget.asr import load_engine

    engine_class = type(load_engine("sensevoice-small", device="cpu"))
    real, seen = engine_class.transcribe, []

    def counted(self, samples):
        seen.append(fingerprint(samples))
        return real(self, samples)

    monkeypatch.setattr(engine_class, "transcribe", counted)
    return seen


@pytest.fixture
def flushes(monkeypatch):
    """Every final flush the real streaming engine runs: (samples, sum) of its last chunk."""
    from funasr_widget.asr.streaming import StreamingEngine

    real, seen = StreamingEngine._step, []

    def counted(self, stream, chunk, final):
        if final:
            seen.append(fingerprint(chunk))
        return real(self, stream, chunk, final)

    monkeypatch.setattr(StreamingEngine, "_step", counted)
    return seen


def resumed(speech, gap_ms: int) -> np.ndarray:
    """The speech with its first pause cut to `gap_ms`: shorter than the end silence (700 ms),
    so the speaker resumes inside it, after a speculation could start."""
    (_, end1), (beg2, _) = speech.intervals_ms[:2]
    return np.concatenate([speech.samples[: (end1 + gap_ms) * 16], speech.samples[beg2 * 16 :]])


def run_live(audio, vad: str, speculative: bool, at_block=None, model="sensevoice-small") -> tuple[list, dict]:
    """`audio` fed as the microphone sends it, each chunk processed before the next comes
    (the worker idle between chunks, as live); `at_block(session, i)` after chunk i."""
    session = LiveSession(model, vad, "cpu", partials=False, speculative_final=speculative, autosave=False)
    assert session.wait(120) and session.model_state == "ready", session.model_info
    for n, i in enumerate(range(0, len(audio), CHUNK)):
        session.feed(audio[i : i + CHUNK], RATE)
        assert session.wait(60)
        if at_block is not None:
            at_block(session, n)
    session.feed(np.zeros(0, np.float32), RATE, final=True)
    assert session.wait(60)
    stats = session.stats()
    session.close()
    return [(s["id"], s["start"], s["end"], s["text"]) for s in session.segments], stats


def test_on_and_off_give_the_same_segments_and_text(vad, speech, decodes):
    off, off_stats = run_live(speech.samples, vad, speculative=False)
    calls_off = len(decodes)
    decodes.clear()
    on, on_stats = run_live(speech.samples, vad, speculative=True)
    assert on == off and len(on) == len(speech.intervals_ms) and all(s[3] for s in on)
    assert off_stats["speculative"] == 0 and calls_off == len(off)
    assert on_stats["speculative_used"] >= 1, on_stats  # at least one final came from its speculation
    assert on_stats["speculative"] == on_stats["speculative_used"] + on_stats["speculative_dropped"]
    assert len(decodes) == len(set(decodes)), "the same audio was decoded twice"
    assert len(decodes) == len(on) + on_stats["speculative_dropped"] == on_stats["decodes"]


def test_speech_resuming_inside_the_end_silence_drops_the_speculation(vad, speech, decodes, monkeypatch):
    monkeypatch.setattr(decoding, "SPECULATE_MARGIN_MS", 1e9)  # speculate as soon as the end is heard
    audio = resumed(speech, 300 if vad == "fsmn-vad" else 550)  # FSMN-VAD hears speech end early
    off, _ = run_live(audio, vad, speculative=False)
    decodes.clear()
    on, stats = run_live(audio, vad, speculative=True)
    assert on == off and len(on) == len(speech.intervals_ms) - 1  # the first two sentences are one segment
    assert stats["speculative_dropped"] >= 1, stats
    assert stats["speculative_used"] >= 1, stats
    assert len(decodes) == len(set(decodes)) == len(on) + stats["speculative_dropped"]


@pytest.mark.parametrize("resumes", [False, True], ids=["pauses", "resumes"])
def test_a_streaming_models_flush_is_speculated_on_a_fork(vad, speech, flushes, resumes):
    """paraformer-zh-streaming: its final is the stream's flush, run on a fork of the stream
    once the audio up to the predicted end has come; the stream waits meanwhile, so the fork
    flushed exactly what the close would. Speech that resumes drops it, and the stream goes on."""
    audio = resumed(speech, 300 if vad == "fsmn-vad" else 550) if resumes else speech.samples
    off, off_stats = run_live(audio, vad, speculative=False, model="paraformer-zh-streaming")
    flushes_off = list(flushes)
    flushes.clear()
    on, stats = run_live(audio, vad, speculative=True, model="paraformer-zh-streaming")
    assert on == off and all(s[3] for s in on)
    assert len(on) == len(speech.intervals_ms) - resumes, on
    assert off_stats["speculative"] == 0 and len(flushes_off) == len(off) == off_stats["decodes"]
    assert (
        stats["speculative_used"] >= 1
        and stats["speculative"] == stats["speculative_used"] + stats["speculative_dropped"]
    )
    if resumes:
        assert stats["speculative_dropped"] >= 1, stats
    # a flush per final not speculated, one per speculation; none of the same audio twice
    assert len(flushes) == len(set(flushes)) == len(on) + stats["speculative_dropped"] == stats["decodes"]


def test_a_knob_changed_mid_silence_changes_nothing_of_the_open_segment(vad, speech, monkeypatch):
    """A knob takes effect from the next segment: a speculation made before the change stays
    right, and on/off agree."""
    monkeypatch.setattr(decoding, "SPECULATE_MARGIN_MS", 1e9)
    mid_silence = (speech.intervals_ms[0][1] + 300) // 100  # the chunk 300 ms into the first pause

    def change(session, n):
        if n == mid_silence:
            session.set_vad_params(end_silence_ms=300)

    off, _ = run_live(speech.samples, vad, speculative=False, at_block=change)
    on, stats = run_live(speech.samples, vad, speculative=True, at_block=change)
    assert on == off and stats["speculative_used"] >= 1, stats


@pytest.mark.parametrize("backend", ["energy", "silero", "fsmn-vad", "fsmn-onnx"])
def test_each_vad_predicts_where_it_closes(backend, speech, models_at):
    """predicted_end() made in the silence before a close names that close exactly, and when
    the VAD decides it (within one 100 ms step: the VAD hears audio in those)."""
    if backend == "silero":
        pytest.importorskip("silero_vad")
    vad = create_vad("fsmn-vad", runtime="onnx") if backend == "fsmn-onnx" else create_vad(backend)
    predicted, closes = None, []
    for i in range(0, len(speech.samples), CHUNK):
        heard_ms = (i + CHUNK) // 16
        for event in vad.accept(speech.samples[i : i + CHUNK]):
            if event.kind == "end":
                closes.append((event.ms, heard_ms, predicted))
        predicted = vad.predicted_end()
    assert len(closes) == len(speech.intervals_ms)
    for end_ms, heard_ms, guess in closes:
        assert guess is not None and guess.end_ms == end_ms, (end_ms, guess)
        assert heard_ms - CHUNK // 16 < guess.due_ms <= heard_ms, (heard_ms, guess)
