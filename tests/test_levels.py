"""The diagnoses of issue 11 on the Python side: a VAD threshold the voice cannot pass, a VAD
that never closes, a front end that never answered, model failures in words, the self-test's
verdict and a segment's audio for playback."""

import time

import numpy as np
import pytest

from funasr_widget import Transcriber, diagnose
from funasr_widget.failures import model_failure
from funasr_widget.levels import LevelWatch

RATE = 16_000


def send(widget, content, buffers=()):
    widget._handle_custom_msg(content, list(buffers))


def speechlike(seconds: float, loud: float = 0.1, quiet: float = 3e-4, seed: int = 0) -> np.ndarray:
    """Noise at `quiet` RMS with 'words' (bursts at `loud`, 300 ms on, 100 ms off)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    x = rng.normal(0, quiet, n).astype(np.float32)
    t = np.arange(n) / RATE
    words = (t % 0.4) < 0.3
    x[words] += (loud * np.sqrt(2) * np.sin(2 * np.pi * 220 * t[words])).astype(np.float32)
    return x


def feed_live(widget, x, piece=1600):
    """As a live microphone does: 100 ms at a time, the VAD keeping up."""
    for i in range(0, len(x), piece):
        widget.feed(x[i : i + piece])
        widget.wait(5)


# -- LevelWatch on its own ------------------------------------------------------------------


def test_watch_calls_a_threshold_above_the_voice_with_numbers_and_a_fix():
    w = LevelWatch("energy", {"energy_threshold_db": -10.0})
    for _ in range(30):
        assert w.chunk(-66.0) is None  # 3 s of a quiet room
    found = None
    for i in range(60):
        found = w.chunk(-24.0 if i % 4 else -60.0)  # 6 s of speech levels, nothing opens
    assert found and found["code"] == "threshold-too-high"
    assert "-24 dBFS" in found["message"] and "-10 dBFS" in found["message"]
    value = found["fix"]["energy_threshold_db"]
    assert -60 < value < -24  # above the room, below the voice
    assert "apply_hint()" in found["hint"]
    # a segment opens: the finding goes
    assert w.chunk(-24.0, in_speech=True) is None


def test_watch_stays_quiet_while_the_vad_follows_the_voice():
    w = LevelWatch("energy", {"energy_threshold_db": -45.0})
    for _ in range(30):
        w.chunk(-66.0)
    for i in range(100):
        assert w.chunk(-24.0, in_speech=i % 20 < 15) is None
        if i % 20 == 19:
            assert w.segment(i / 10 - 2, i / 10 - 0.5) is None


def test_watch_suggests_a_lower_speech_threshold_for_model_vads():
    w = LevelWatch("fsmn-vad", {"speech_threshold": 0.9})
    for _ in range(30):
        w.chunk(-70.0)
    for _ in range(40):
        found = w.chunk(-25.0)
    assert found["fix"] == {"speech_threshold": pytest.approx(0.45)}
    assert "speech score of 0.90" in found["message"]


def test_watch_calls_a_vad_that_never_closes():
    w = LevelWatch("energy", {"energy_threshold_db": -50.0, "max_segment_s": 10.0})
    for _ in range(50):
        w.chunk(-40.0, in_speech=True)  # a loud fan
    assert w.segment(0.0, 10.0) is None  # one long segment is speech, maybe
    found = w.segment(10.0, 20.0)
    assert found["code"] == "vad-never-closes" and "2 segments" in found["message"]
    assert found["fix"]["energy_threshold_db"] > -40.0  # above the fan
    assert w.segment(20.0, 22.0) is None  # a normal segment: it closes again


def test_a_knob_change_forgets_the_old_finding():
    w = LevelWatch("energy", {"energy_threshold_db": -10.0})
    for _ in range(30):
        w.chunk(-66.0)
    for _ in range(40):
        w.chunk(-24.0)
    assert w.hint()
    w.configure(energy_threshold_db=-46.0)
    assert w.hint() is None


# -- in the widget ---------------------------------------------------------------------------


def test_widget_shows_the_threshold_hint_and_applies_its_fix():
    w = Transcriber(model=None, vad="energy", energy_threshold_db=-5.0)
    try:
        feed_live(w, speechlike(2.0, loud=0.0))
        feed_live(w, speechlike(6.0, loud=0.05, seed=1))
        assert w.wait(30)
        assert w.segments == []
        assert w.error["code"] == "threshold-too-high", w.error
        fix = w.suggest_threshold()
        assert list(fix) == ["energy_threshold_db"] and fix["energy_threshold_db"] < -20
        checks = {c.name: c for c in w.diagnose()}
        assert checks["VAD threshold"].ok is False and "apply_hint" in checks["VAD threshold"].detail
        send(w, {"type": "apply-hint"})  # the widget's Apply button
        assert w.energy_threshold_db == fix["energy_threshold_db"]
        assert w.error == {}
        feed_live(w, speechlike(4.0, loud=0.05, seed=2))
        w.feed(np.zeros(16000, np.float32), final=True)
        assert w.wait(30)
        assert w.segments, "the voice passes the suggested threshold"
    finally:
        w.close()


def test_plain_text_output_names_the_causes_and_the_kernel_notices_silence(monkeypatch):
    monkeypatch.setattr(diagnose, "FRONTEND_WAIT_S", 0.2)
    w = Transcriber(model=None, vad="energy")
    try:
        data, _ = w._repr_mimebundle_()
        text = data["text/plain"]
        assert "application/vnd.jupyter.widget-view+json" in data
        assert "anywidget" in text and "JavaScript" in text and "JupyterLab" in text
        deadline = time.monotonic() + 5
        while w.error.get("code") != "frontend-missing" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert w.error["code"] == "frontend-missing" and "no message from it" in w.error["message"]
        assert "front end" in w.status and "anywidget" in w.error["hint"]
        checks = {c.name: c for c in w.diagnose()}
        assert checks["kernel link"].ok is False and "never answered" in checks["kernel link"].detail
        send(w, {"type": "env", "secure_context": True})  # the front end shows up after all
        assert w.error == {}
    finally:
        w.close()


def test_segment_audio_comes_from_the_recording_as_one_int16_buffer():
    w = Transcriber(model=None, vad="energy")
    sent = []
    w.send = lambda content, buffers=None: sent.append((content, buffers))
    try:
        x = np.concatenate([np.zeros(8000, np.float32), speechlike(1.5, loud=0.1), np.zeros(16000, np.float32)])
        w.feed(x, final=True)
        assert w.wait(30) and w.segments
        seg = w.segments[0]
        sent.clear()
        send(w, {"type": "segment-audio", "id": seg["id"]})
        ((content, buffers),) = [m for m in sent if m[0]["type"] == "segment-audio"]
        assert len(buffers) == 1 and content["dtype"] == "int16"
        pcm = np.frombuffer(buffers[0], "<i2")
        a = int(round(seg["start"] * RATE))
        assert content["n"] == len(pcm) == int(round(seg["end"] * RATE)) - a
        np.testing.assert_allclose(pcm / 32767.0, x[a : a + len(pcm)], atol=1 / 32767 + 1e-6)
        sent.clear()
        send(w, {"type": "segment-audio-received"})
        send(w, {"type": "segment-audio", "id": 999})
        assert "error" in sent[0][0]
        send(w, {"type": "segment-audio", "id": "junk"})
        assert w.stats["rejected_by"] == {"bad-segment-id": 1}
    finally:
        w.close()


def test_self_test_result_is_judged_in_the_kernel():
    w = Transcriber(model=None, vad="energy")
    sent = []
    w.send = lambda content, buffers=None: sent.append(content)
    try:
        w.self_test(seconds=2)
        assert sent[-1] == {"type": "self-test", "view": None, "seconds": 2.0}
        assert w.self_test_result["code"] == "running"
        x = speechlike(2.0, loud=0.1)
        send(w, {"type": "self-test-result", "sample_rate": 16000, "n": len(x)}, [x.astype("<f4").tobytes()])
        r = w.self_test_result
        assert r["ok"] and r["code"] == "ok" and -25 < r["rms_db"] < -15 and -20 < r["peak_db"] < -10
        w.self_test(seconds=2)
        send(w, {"type": "self-test-result", "n": 32000}, [np.zeros(32000, "<f4").tobytes()])
        assert w.self_test_result["code"] == "silent" and "VirtualBox" in w.self_test_result["hint"]
        w.self_test(seconds=2)
        send(w, {"type": "self-test-result", "failed": "permission-denied", "message": "denied"})
        assert w.self_test_result["code"] == "failed" and "denied" in w.self_test_result["message"]
        with pytest.raises(ValueError):
            w.self_test(seconds=100)
    finally:
        w.close()


# -- texts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, words",
    [
        ("blocked-by-policy", 'allow="microphone"'),
        ("os-blocked", "Privacy & Security"),
        ("no-device", "WSL"),
        ("silent-input", "Remote Desktop"),
        ("device-busy", "Privacy"),
    ],
)
def test_capture_texts(code, words):
    err = diagnose.capture_error(code, {})
    assert err["code"] == code and words in err["message"] + err["hint"]


def test_model_failures_in_words():
    import torch

    cases = [
        (ModuleNotFoundError("No module named 'funasr'", name="funasr"), "asr-missing", "pip install"),
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "cuda-oom", "device='cpu'"),
        (
            RuntimeError("CUDA driver initialization failed, you might not have a CUDA gpu."),
            "cuda-init-failed",
            "nvidia-smi",
        ),
        (
            RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory"),
            "weights-corrupt",
            "fetch",
        ),
        (EOFError("Ran out of input"), "weights-corrupt", "interrupted"),
    ]
    for exc, code, words in cases:
        wrapped = RuntimeError("funasr said something")
        wrapped.__cause__ = exc
        got = model_failure(wrapped, "/m")
        assert got and got[0] == code and words in got[2], (exc, got)
    assert model_failure(ValueError("something else")) is None


def test_a_truncated_model_file_is_called_corrupt(model_store, tmp_path):
    import shutil

    from funasr_widget import transcribe
    from funasr_widget.asr import ModelLoadError

    folder = tmp_path / "broken"
    shutil.copytree(model_store / "sensevoice-small", folder)
    data = (folder / "model.pt").read_bytes()
    (folder / "model.pt").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError) as info:
        transcribe(np.zeros(16000, np.float32), 16000, model=str(folder), vad="energy", device="cpu")
    assert info.value.code == "weights-corrupt", info.value
    assert "truncated" in info.value.message and "fetch" in info.value.hint


def test_a_stalled_load_is_reported(monkeypatch):
    from funasr_widget import recognizer

    monkeypatch.setattr(diagnose, "LOAD_STALL_S", 0.3)
    events = []
    info = {"name": "m", "device": "cpu"}
    watch = recognizer._StallWatch(lambda: True, events.append, info, lambda: "m")
    time.sleep(0.8)
    watch.stop()
    assert events and events[0].info["stalled"] and events[0].info["code"] == "load-stalled"
    assert "no progress" in events[0].info["message"]


def test_watch_does_not_count_while_the_vad_cannot_tell():
    w = LevelWatch("fsmn-vad", {"speech_threshold": 0.6})
    for _ in range(30):
        w.chunk(-70.0)
    for _ in range(60):
        assert w.chunk(-25.0, in_speech=None) is None  # the VAD is still loading, or behind
    assert w.floor_db == pytest.approx(-70.0)
