"""The recognition pipeline end to end: real FSMN-VAD weights, tiny real-architecture
ASR models through funasr's own code, audio fed from Python as the microphone would."""

import re
import time

import pytest
from feeding import feed_live, partials_mid_sentence

from funasr_widget import Transcriber, transcribe
from funasr_widget.asr import ModelLoadError, load_engine


def within(ms, known_ms, tolerance=300):
    return abs(ms - known_ms) <= tolerance


@pytest.fixture
def sensevoice(models_at):
    widget = Transcriber(model="sensevoice-small", vad="fsmn-vad", device="cpu")
    yield widget
    widget.close()


def test_one_segment_per_utterance_with_tight_boundaries(sensevoice, speech):
    feed_live(sensevoice, speech.samples)
    assert sensevoice.model_state == "ready"
    segments = sensevoice.segments
    assert len(segments) == len(speech.intervals_ms)
    for seg, (beg, end) in zip(segments, speech.intervals_ms, strict=False):
        assert within(seg["start"] * 1000, beg) and within(seg["end"] * 1000, end), (seg, beg, end)
    assert [s["id"] for s in segments] == list(range(len(segments)))
    assert sensevoice.text == " ".join(s["text"] for s in segments if s["text"])
    assert sensevoice.partial == ""


def test_live_offline_and_funasr_agree(sensevoice, speech):
    """feed() in chunks, transcribe(), and AutoModel.generate on each segment's samples."""
    feed_live(sensevoice, speech.samples, chunk=1234)  # an odd chunk size: blocks are re-cut
    live = sensevoice.segments
    offline = transcribe(speech.samples, 16000, model="sensevoice-small", vad="fsmn-vad", device="cpu")
    assert [(s["start"], s["end"], s["text"]) for s in live] == [(s["start"], s["end"], s["text"]) for s in offline]
    engine = load_engine("sensevoice-small", device="cpu")
    assert engine.model is load_engine("sensevoice-small", device="cpu").model  # one model per kernel
    for seg in live:
        samples = speech.samples[int(seg["start"] * 16000) : int(seg["end"] * 16000)]
        direct = engine.model.generate(input=samples, language="auto", use_itn=True)[0]["text"]
        direct = " ".join(re.sub(r"<\|[^|]*\|>", "", direct).split())  # drop funasr's <|lang|> tags
        assert seg["text"] and seg["text"] == direct


def test_transcribe_a_file(models_at, speech, tmp_path):
    from funasr_widget.audio import write_wav

    path = write_wav(tmp_path / "speech.wav", speech.samples)
    segments = transcribe(path, model="sensevoice-small", vad="energy", device="cpu")
    assert len(segments) == len(speech.intervals_ms)
    with pytest.raises(ValueError, match="a file carries its own rate"):
        transcribe(path, 16_000)


def test_segment_callbacks_and_dataframe(sensevoice, speech):
    seen = []
    sensevoice.on_segment(seen.append)
    feed_live(sensevoice, speech.samples)
    assert seen == sensevoice.segments
    frame = sensevoice.to_dataframe()
    assert list(frame.index) == [s["id"] for s in seen]
    assert (frame["duration"] > 0.5).all()


def test_partials_while_speaking(sensevoice, speech):
    assert sensevoice.wait(timeout=120) and sensevoice.model_state == "ready"
    partials = partials_mid_sentence(sensevoice, speech)
    assert sensevoice.segments == []  # the segment is still open
    assert any(partials), "no partial text while the segment was open"


def test_streaming_model_partials_then_final(models_at, speech):
    widget = Transcriber(model="paraformer-zh-streaming", vad="fsmn-vad", device="cpu")
    assert widget.wait(timeout=120) and widget.model_state == "ready"  # loaded before the speech starts
    events = []
    widget.observe(lambda c: events.append(("partial", c["new"])), "partial")
    widget.on_segment(lambda s: events.append(("segment", s["text"])))
    feed_live(widget, speech.samples)
    widget.close()
    assert widget.model_state == "ready"
    assert len(widget.segments) == len(speech.intervals_ms)
    first_final = next(i for i, e in enumerate(events) if e[0] == "segment")
    partials_before = [text for kind, text in events[:first_final] if kind == "partial" and text]
    assert partials_before, "no partial before the first segment closed"
    # The final text extends the last partial: is_final flushed what the partials had not shown.
    assert events[first_final][1].startswith(partials_before[-1])


def test_vad_parameters_take_effect_from_the_next_segment(models_at, speech):
    widget = Transcriber(model=None, vad="fsmn-vad")
    feed_live(widget, speech.samples)
    before = len(widget.segments)
    widget.end_silence_ms = 3000  # longer than the gaps: the sentences merge
    feed_live(widget, speech.samples)
    widget.close()
    assert len(widget.segments) - before < before


@pytest.mark.parametrize(
    "model, device, words",
    [
        ("/nonexistent/model-folder", "cpu", "no such folder"),
        ("sensevoice-small", "cuda", "CUDA"),
    ],
)
def test_model_failure_leaves_capture_and_vad_working(models_at, speech, model, device, words):
    started = time.monotonic()
    widget = Transcriber(model=model, vad="fsmn-vad", device=device)
    feed_live(widget, speech.samples)
    widget.close()
    assert widget.model_state == "error"
    assert words in widget.model_info["message"] and widget.model_info["hint"]
    assert time.monotonic() - started < 60
    assert len(widget.segments) == len(speech.intervals_ms)  # the VAD kept cutting
    assert all(s["text"] == "" for s in widget.segments)
    assert len(widget.audio) == len(speech.samples)  # the audio was kept


def test_corrupt_model_reports_error_and_retranscribe_after_fix(models_at, speech, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(models_at / "sensevoice-small", broken)
    (broken / "model.pt").write_bytes(b"not a checkpoint")
    widget = Transcriber(model=str(broken), vad="fsmn-vad", device="cpu")
    feed_live(widget, speech.samples)
    assert widget.model_state == "error" and str(broken) in widget.model_info["message"]
    assert "corrupt" in widget.model_info["hint"]
    widget.load_model("sensevoice-small", device="cpu")
    assert widget.wait(timeout=120) and widget.model_state == "ready"
    segments = widget.retranscribe()
    widget.close()
    assert len(segments) == len(speech.intervals_ms) and widget.segments == segments


def test_hub_name_without_network_fails_at_once(tmp_path, monkeypatch, speech):
    from funasr_widget import models

    monkeypatch.setattr(models, "_models_dir", tmp_path)
    monkeypatch.setattr(models, "reachable", lambda timeout=3.0: False)
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as info:
        transcribe(speech.samples[:16000], 16000, model="sensevoice-small", vad="energy", device="cpu")
    assert time.monotonic() - started < 10
    assert str(tmp_path / "sensevoice-small") in str(info.value)


# -- wait(): everything fed is decoded or given up; engines behind the Decoder protocol -------


def bursts(n: int, on_s: float = 0.4, off_s: float = 0.8):
    """n tone bursts with silences between: n segments for the energy VAD."""
    import numpy as np

    t = np.arange(int(on_s * 16000)) / 16000
    burst = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    gap = np.zeros(int(off_s * 16000), np.float32)
    return np.concatenate([gap] + [np.concatenate([burst, gap]) for _ in range(n)])


@pytest.fixture
def flaky_engine(models_at, monkeypatch):
    """The real SenseVoice engine, unavailable (as a server that is down) while `down` is set."""
    import threading

    from funasr_widget.asr.base import EngineUnavailable

    engine_class = type(load_engine("sensevoice-small", device="cpu"))
    real, down = engine_class.transcribe, threading.Event()

    def flaky(self, samples):
        if down.is_set():
            raise EngineUnavailable("the server 127.0.0.1:1 refused the connection")
        return real(self, samples)

    monkeypatch.setattr(engine_class, "transcribe", flaky)
    return down


def test_wait_waits_for_an_unavailable_engine_then_returns_when_it_is_back(flaky_engine):
    from funasr_widget.live import LiveSession

    session = LiveSession("sensevoice-small", "energy", "cpu", partials=False, autosave=False)
    assert session.wait(60) and session.model_state == "ready"
    flaky_engine.set()
    session.feed(bursts(3), 16000, final=True)
    assert not session.wait(timeout=2)  # processed, but the segments wait for the engine
    assert session.segments == [] and session.stats()["pending"] == 3
    flaky_engine.clear()
    assert session.wait(timeout=60)  # the retry sends them
    session.close()
    assert [s["id"] for s in session.segments] == [0, 1, 2] and all(s["text"] for s in session.segments)
    assert session.given_up == [] and not any("error" in s for s in session.segments)


def test_wait_without_timeout_ends_after_the_unavailability_bound_and_says_what_was_given_up(flaky_engine, monkeypatch):
    from funasr_widget import decoding
    from funasr_widget.live import LiveSession

    monkeypatch.setattr(decoding, "GIVE_UP_AFTER_S", 2.0)
    session = LiveSession("sensevoice-small", "energy", "cpu", partials=False, autosave=False)
    assert session.wait(60) and session.model_state == "ready"
    flaky_engine.set()
    session.feed(bursts(2), 16000, final=True)
    started = time.monotonic()
    assert session.wait()  # no timeout: it still ends, once the engine was down for the bound
    assert time.monotonic() - started >= 1.0
    session.close()
    assert session.given_up == [0, 1] == [s["id"] for s in session.segments]
    assert all(s["text"] == "" and "unavailable for more than 2 s" in s["error"] for s in session.segments)


def test_every_engine_has_the_whole_decoder_protocol_and_a_replaced_one_is_closed(models_at):
    """The pipeline asks nothing of an engine that is not in asr.base.Decoder, and every engine
    (segment, streaming, 2-pass, remote) has all of it; a replaced engine is closed (a remote
    one's connection pool)."""
    from funasr_widget.asr.base import Decoder
    from funasr_widget.asr.remote import RemoteEngine
    from funasr_widget.events import Final
    from funasr_widget.pipeline import Pipeline
    from funasr_widget.vad import create_vad

    members = {n for n in dir(Decoder) if not n.startswith("_")} | set(Decoder.__annotations__)
    engines = [
        load_engine("sensevoice-small", device="cpu"),
        load_engine("paraformer-zh-streaming", device="cpu"),
        load_engine("sensevoice-small", device="cpu", partials_model="paraformer-zh-streaming"),
        RemoteEngine("http://127.0.0.1:9"),
    ]
    for engine in engines:
        missing = [n for n in members if not hasattr(engine, n)]
        assert not missing, (engine, missing)
    first, second = RemoteEngine("http://127.0.0.1:9"), RemoteEngine("http://127.0.0.1:9")
    events: list = []
    worker = Pipeline(lambda: create_vad("energy"), events.append, partials=False)
    worker.set_engine(first)
    worker.set_engine(second)
    worker.set_engine(engines[0])  # the last one decodes
    worker.push(bursts(1), final=True)
    assert worker.wait(60)
    assert first._client.is_closed and second._client.is_closed
    assert [e.segment["id"] for e in events if isinstance(e, Final)] == [0]
    worker.close()
    assert worker.join(30)
