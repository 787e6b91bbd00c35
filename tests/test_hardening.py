"""Where users step off the happy path: wrong arguments fail at once and say what is
accepted; a failure on a background thread reaches the user and nothing waits for ever;
one bad segment, callback or observer harms nothing else; close() keeps the last words.

Every test runs under a timeout, so a hang fails the test instead of stalling CI. Faults
inside recognition are injected by making one real component raise (a callback, one
decode call); everything else is the real pipeline, FSMN-VAD weights and tiny models.
"""

import threading
import time

import numpy as np
import pytest
import traitlets
from feeding import Sent, feed_live

from funasr_widget import RecognitionError, Transcriber, VadExplorer, transcribe
from funasr_widget.asr import ModelLoadError

pytestmark = pytest.mark.timeout(120)
RATE = 16_000


def bursts(n: int, on_s: float = 0.4, off_s: float = 0.8) -> np.ndarray:
    """n tone bursts with silences between: n segments for the energy VAD."""
    t = np.arange(int(on_s * RATE)) / RATE
    burst = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    gap = np.zeros(int(off_s * RATE), np.float32)
    return np.concatenate([gap] + [np.concatenate([burst, gap]) for _ in range(n)])


def spans(segments):
    return [(s["start"], s["end"]) for s in segments]


# -- 1. arguments are checked where they are given ------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: Transcriber(vad="silero-vad"),
        lambda: transcribe(np.zeros(RATE, np.float32), RATE, vad="fsmn"),
        lambda: VadExplorer(np.zeros(RATE, np.float32), RATE, vad="silero-vad"),
    ],
)
def test_a_misspelt_vad_fails_at_once_naming_the_close_match(make):
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"Did you mean '(silero|fsmn-vad)'\? Choose one of fsmn-vad, silero, energy"):
        make()
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    "options, error, words",
    [
        ({"hotwords": "x"}, TypeError, "did you mean 'hotword'"),
        ({"hotword": 123}, TypeError, "hotword must be str or list of str"),
        ({"use_itn": "yes"}, TypeError, "use_itn must be bool"),
        ({"language": ""}, ValueError, "language is empty"),
    ],
)
def test_model_options_are_checked_by_every_entry_point(models_at, options, error, words):
    with pytest.raises(error, match=words):
        Transcriber(model="sensevoice-small", vad="energy", **options)
    with pytest.raises(error, match=words):
        transcribe(np.zeros(RATE, np.float32), RATE, model="sensevoice-small", vad="energy", **options)
    w = Transcriber(model=None, vad="energy")
    with pytest.raises(error, match=words):
        w.load_model("sensevoice-small", **options)
    assert w.model_state == "none"  # nothing was started
    w.close()


@pytest.mark.parametrize(
    "model, device, error",
    [
        (42, "cpu", TypeError),
        ("sensevoice-small", "gpu", ValueError),
        ("sensevoice-small", None, ValueError),
    ],
)
def test_model_and_device_are_checked(model, device, error):
    with pytest.raises(error, match="model|device"):
        Transcriber(model=model, vad="energy", device=device)


def test_knob_traits_validate_and_keep_the_old_value():
    w = Transcriber(model=None, vad="energy")
    for name, bad in [
        ("end_silence_ms", 50),
        ("speech_threshold", 2.0),
        ("max_segment_s", 0.5),
        ("energy_threshold_db", 5.0),
    ]:
        old = getattr(w, name)
        with pytest.raises(traitlets.TraitError, match="accepted"):
            setattr(w, name, bad)
        assert getattr(w, name) == old
    # ...and the knobs still work afterwards: with a long end silence the bursts merge.
    feed_live(w, bursts(3))
    assert len(w.segments) == 3
    w.end_silence_ms = 2000
    feed_live(w, bursts(3))
    assert len(w.segments) == 4
    w.close()


def test_read_only_traits_are_read_only():
    w = Transcriber(model=None, vad="energy")
    for name in ("segments", "text", "model_state", "model_info", "status", "error", "stats", "partial", "vad"):
        with pytest.raises(traitlets.TraitError, match="read-only"):
            setattr(w, name, getattr(w, name))
    w.close()


# -- 2. no background failure is silent, nothing waits for ever ------------------------------


def test_a_load_that_raises_anything_becomes_model_state_error(models_at, monkeypatch):
    from funasr_widget import recognizer

    def broken(*args, **kwargs):
        raise RuntimeError("the loader blew up")

    monkeypatch.setattr(recognizer, "load_engine", broken)
    w = Transcriber(model="sensevoice-small", vad="energy", device="cpu")
    feed_live(w, bursts(2))
    assert w.model_state == "error" and "the loader blew up" in w.model_info["message"]
    assert w.model_info["hint"]
    assert len(w.segments) == 2 and all(s["text"] == "" for s in w.segments)  # capture and VAD went on
    with pytest.raises(ModelLoadError, match="No model is ready"):
        w.retranscribe()
    assert len(w.segments) == 2  # not replaced
    w.close()
    with pytest.raises(ModelLoadError, match="the loader blew up"):
        transcribe(bursts(1), RATE, model="sensevoice-small", vad="energy", device="cpu")


def test_one_failing_decode_loses_one_segment_and_transcribe_raises(models_at, monkeypatch):
    from funasr_widget.asr import load_engine

    engine_class = type(load_engine("sensevoice-small", device="cpu"))
    real, calls = engine_class.transcribe, []

    def second_fails(self, samples):
        calls.append(len(samples))
        if len(calls) == 2:
            raise RuntimeError("decoder fault")
        return real(self, samples)

    reference = transcribe(bursts(4), RATE, model="sensevoice-small", vad="energy", device="cpu")
    monkeypatch.setattr(engine_class, "transcribe", second_fails)
    w = Transcriber(model="sensevoice-small", vad="energy", device="cpu")
    assert w.wait(timeout=60)
    w.session.set_partials(False)  # count decodes of finals only
    feed_live(w, bursts(4))
    assert spans(w.segments) == spans(reference)  # later segments cut from the right audio
    assert w.segments[1]["text"] == "" and "decoder fault" in w.segments[1]["error"]
    assert [s["text"] for s in w.segments[2:]] == [s["text"] for s in reference[2:]]
    assert w.error["code"] == "decode-failed" and "retranscribe" in w.error["hint"]
    w.close()
    calls.clear()
    with pytest.raises(RecognitionError, match="decoder fault"):
        transcribe(bursts(4), RATE, model="sensevoice-small", vad="energy", device="cpu")


def test_a_raising_callback_harms_only_its_segment_two_takes_identical():
    w = Transcriber(model=None, vad="energy")
    seen = []

    def callback(segment):
        seen.append(segment["id"])
        if segment["id"] == 1:
            raise ValueError("bad callback")

    w.on_segment(callback)
    w.observe(lambda change: 1 / 0 if len(change["new"]) == 2 else None, "segments")  # a bad observer too
    feed_live(w, bursts(4))
    first = spans(w.segments)
    feed_live(w, bursts(4))
    second = spans(w.segments[4:])
    take_s = len(bursts(4)) / RATE
    assert [(round(a - take_s, 3), round(b - take_s, 3)) for a, b in second] == [
        (round(a, 3), round(b, 3)) for a, b in first
    ]
    assert seen == list(range(8))
    assert w.error["code"] == "callback-failed"
    w.close()


def test_a_callback_calling_wait_gets_an_error_not_a_deadlock():
    w = Transcriber(model=None, vad="energy")
    errors = []

    def waits(_segment):
        try:
            w.wait(timeout=30)
        except RuntimeError as err:
            errors.append(str(err))

    w.on_segment(waits)
    feed_live(w, bursts(1))
    assert errors and "recognition thread" in errors[0]
    w.close()


def test_a_vad_that_fails_mid_stream_is_restarted_on_the_right_clock(monkeypatch):
    from funasr_widget.vad.energy import EnergyVad

    w = Transcriber(model=None, vad="energy")
    feed_live(w, bursts(2))
    assert w.wait(timeout=30)
    real_accept, used, fail = EnergyVad.accept, [], threading.Event()

    def accept(self, samples, final=False):
        used.append(self)
        if fail.is_set():
            fail.clear()
            raise RuntimeError("vad fault")
        return real_accept(self, samples, final=final)

    monkeypatch.setattr(EnergyVad, "accept", accept)
    fail.set()
    w.feed(np.zeros(1600, np.float32))  # this block's VAD call fails
    assert w.wait(timeout=30)
    assert w.error["code"] == "vad-failed"
    before = len(w.audio) / RATE
    feed_live(w, bursts(2))
    assert used[-1] is not used[0]  # a new VAD took over
    later = spans(w.segments[2:])
    reference = spans(transcribe(bursts(2), RATE, model=None, vad="energy"))
    assert [(round(a - before, 2), round(b - before, 2)) for a, b in later] == [
        (round(a, 2), round(b, 2)) for a, b in reference
    ]
    w.close()


def test_a_vad_that_cannot_start_falls_back_and_says_so(tmp_path, monkeypatch):
    from funasr_widget import models

    monkeypatch.setattr(models, "_models_dir", tmp_path)  # no fsmn-vad folder here
    monkeypatch.setattr(models, "reachable", lambda timeout=3.0: False)
    w = Transcriber(model=None, vad="fsmn-vad")
    feed_live(w, bursts(2))
    assert w.vad == "energy" and w.error["code"] == "vad-failed"
    assert str(tmp_path / "fsmn-vad") in w.error["message"] + w.error["hint"]
    assert len(w.segments) == 2
    w.close()
    with pytest.raises(RecognitionError, match="could not start"):
        transcribe(bursts(1), RATE, model=None, vad="fsmn-vad")


# -- 5. bounded memory: models shared, close() finishes ----------------------------------------


def test_close_while_recording_finishes_the_open_segment_and_releases_the_file():
    w = Transcriber(model=None, vad="energy", autosave=False)  # saved sessions keep theirs: test_journal.py
    speech = bursts(2)
    w.feed(speech[: -int(0.9 * RATE)])  # ends inside the second burst
    w.feed(0.3 * np.ones(8000, np.float32))  # 0.5 s more of it, no silence after: the segment is open
    assert w.wait(timeout=30)
    assert len(w.segments) == 1
    w.close()
    assert w.wait(timeout=30)
    assert len(w.segments) == 2 and w.segments[1]["end"] == pytest.approx(
        len(speech[: -int(0.9 * RATE)]) / RATE + 0.5, abs=0.15
    )
    with pytest.raises(RuntimeError, match="released"):
        w.segment_audio(0)
    with pytest.raises(RuntimeError, match="closed"):
        w.feed(np.zeros(1600, np.float32))


def test_many_option_values_share_one_loaded_model_and_release_frees_it(models_at):
    from funasr_widget import models
    from funasr_widget.asr import load_engine

    engines = [
        load_engine("sensevoice-small", device="cpu", language=lang, use_itn=itn, hotword=hot)
        for lang in ("auto", "en", "zh")
        for itn in (True, False)
        for hot in (None, "alpha beta")
    ]
    assert len({id(e.model) for e in engines}) == 1
    assert any("sensevoice-small" in name for name in models.loaded())
    assert models.release("sensevoice-small") == 1
    assert not any("sensevoice-small" in name for name in models.loaded())
    assert load_engine("sensevoice-small", device="cpu").model is not engines[0].model  # loads anew


# -- the same-widget, two-tab case -----------------------------------------------------------


def chunk(view, seq, samples, final=False):
    return (
        {
            "type": "chunk",
            "view": view,
            "seq": seq,
            "t": time.time() * 1000,
            "sample_rate": RATE,
            "dtype": "float32",
            "n": len(samples),
            "final": final,
        },
        [samples.astype("<f4").tobytes()],
    )


def test_a_second_tab_is_refused_while_the_first_records():
    w = Transcriber(model=None, vad="energy")
    sent = Sent(w)
    w._handle_custom_msg({"type": "start", "view": "tab-1"}, [])
    w.set_trait("recording", True)  # what tab 1's front end does once started
    assert sent.of("started") == [{"type": "started", "view": "tab-1"}]
    w._handle_custom_msg(*chunk("tab-1", 0, np.full(1600, 0.1, np.float32)))
    w._handle_custom_msg({"type": "start", "view": "tab-2"}, [])
    refused = sent.of("refused")
    assert refused and refused[0]["view"] == "tab-2" and "another" in refused[0]["message"].lower()
    assert refused[0]["hint"]
    w._handle_custom_msg(*chunk("tab-2", 0, np.full(1600, 0.9, np.float32)))  # sent anyway: not kept
    w._handle_custom_msg(*chunk("tab-1", 1, np.full(1600, 0.1, np.float32), final=True))
    w.set_trait("recording", False)
    assert len(w.audio) == 3200 and np.allclose(w.audio, 0.1)
    assert w.stats["rejected_by"].get("other-view") == 1
    # Once tab 1 has stopped, tab 2 may record.
    w._handle_custom_msg({"type": "start", "view": "tab-2"}, [])
    assert sent.of("started")[-1] == {"type": "started", "view": "tab-2"}
    w.close()


def test_a_new_view_gets_the_transcript_and_ends_a_take_whose_page_is_gone(monkeypatch):
    from funasr_widget import takes

    w = Transcriber(model=None, vad="energy")
    sent = Sent(w)
    feed_live(w, bursts(2))
    w._handle_custom_msg({"type": "start", "view": "old-page"}, [])
    w.set_trait("recording", True)
    w._handle_custom_msg(*chunk("old-page", 0, np.full(1600, 0.1, np.float32)))
    monkeypatch.setattr(takes, "STALE_S", 0.0)  # the old page went quiet long ago
    w._handle_custom_msg({"type": "hello", "view": "new-page"}, [])
    replay = sent.of("transcript")[-1]
    assert replay["view"] == "new-page" and spans(replay["segments"]) == spans(w.segments)
    assert w.recording is False
    w.close()


def test_an_unavailable_engine_keeps_segments_waiting_then_sends_them_in_order(models_at, monkeypatch):
    from funasr_widget.asr import load_engine
    from funasr_widget.asr.base import EngineUnavailable

    reference = transcribe(bursts(4), RATE, model="sensevoice-small", vad="energy", device="cpu")
    engine_class = type(load_engine("sensevoice-small", device="cpu"))
    real, down, tries = engine_class.transcribe, threading.Event(), []

    def flaky(self, samples):
        if down.is_set():
            tries.append(time.monotonic())
            raise EngineUnavailable("server at 127.0.0.1:1 refused the connection")
        return real(self, samples)

    monkeypatch.setattr(engine_class, "transcribe", flaky)
    w = Transcriber(model="sensevoice-small", vad="energy", device="cpu")
    assert w.wait(timeout=60) and w.model_state == "ready"
    w.session.set_partials(False)
    down.set()
    w.feed(bursts(4), final=True)
    assert not w.wait(timeout=2)  # wait() waits for the segments waiting for the engine
    assert w.segments == [] and "Waiting for the engine" in w.status and "refused" in w.status
    time.sleep(2.5)
    assert len(tries) >= 2 and tries[1] - tries[0] >= 0.9  # backoff, not a busy loop
    down.clear()
    deadline = time.monotonic() + 30
    while len(w.segments) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert w.wait(timeout=30)
    assert [(s["start"], s["end"], s["text"]) for s in w.segments] == [
        (s["start"], s["end"], s["text"]) for s in reference
    ]  # all of them, in order, right audio
    assert "engine is back" in w.status
    w.close()
