"""The widget's message dispatch, driven through ipywidgets' own custom-message path."""

import numpy as np
import pytest

from funasr_widget import Transcriber


def send(widget, content, buffers=()):
    widget._handle_custom_msg(content, list(buffers))


def chunk(seq, samples, final=False):
    header = {
        "type": "chunk",
        "seq": seq,
        "t": 0.0,
        "sample_rate": 16000,
        "dtype": "float32",
        "n": len(samples),
        "final": final,
    }
    return header, [samples.astype("<f4").tobytes()]


@pytest.fixture
def widget():
    return Transcriber(model=None, vad="energy")


def test_chunks_reach_audio_and_stats(widget):
    send(widget, {"type": "start", "device_label": "Fake mic"})
    assert "Fake mic" in widget.status
    for seq in range(3):
        send(widget, *chunk(seq, np.full(1600, 0.1, np.float32), final=seq == 2))
    assert len(widget.audio) == 4800
    assert widget.stats["chunks"] == 3 and widget.stats["level_db"] == pytest.approx(-20.0, abs=0.1)


def test_bad_messages_never_raise_and_are_reported(widget):
    send(widget, {"type": "chunk", "seq": 0, "t": 0, "sample_rate": 16000, "dtype": "float64", "n": 1}, [b"\0" * 8])
    assert "bad-dtype" in widget.status
    send(widget, {"type": "no-such-thing"})
    send(widget, "not even a dict")
    assert widget.stats["rejected"] == 3
    send(widget, *chunk(0, np.ones(1600, np.float32)))
    assert len(widget.audio) == 1600


@pytest.mark.parametrize(
    "browser, words", [("chrome", "Site settings"), ("firefox", "crossed-out"), ("safari", "Websites")]
)
def test_permission_error_hint_fits_the_browser(widget, browser, words):
    send(widget, {"type": "env", "browser": browser, "origin": "http://localhost:8888", "secure_context": True})
    send(widget, {"type": "error", "code": "permission-denied", "name": "NotAllowedError", "message": "denied"})
    assert widget.error["code"] == "permission-denied"
    assert words in widget.error["hint"]
    assert widget.status == widget.error["message"]


def test_insecure_origin_hint_names_localhost_and_the_port(widget):
    send(widget, {"type": "env", "origin": "http://192.168.1.20:8890", "secure_context": False})
    send(widget, {"type": "error", "code": "insecure-context"})
    assert "http://192.168.1.20:8890" in widget.error["message"]
    assert "http://localhost:8890" in widget.error["hint"]
    checks = {c.name: c for c in widget.diagnose()}
    assert checks["secure context"].ok is False and checks["kernel link"].ok is True


def test_every_capture_code_has_a_message_and_a_fix(widget):
    for code in [
        "no-media-devices",
        "no-device",
        "device-busy",
        "overconstrained",
        "context-suspended",
        "capture-failed",
        "bogus",
    ]:
        send(widget, {"type": "error", "code": code, "message": "x"})
        assert widget.error["message"] and widget.error["hint"]


def test_silent_input_is_flagged_then_cleared(widget):
    widget.feed(np.zeros(4 * 16000, np.float32))
    assert widget.error["code"] == "silent-input"
    widget.feed(0.1 * np.ones(1600, np.float32))
    assert widget.error == {}


def test_start_clears_a_previous_error(widget):
    send(widget, {"type": "error", "code": "no-device"})
    send(widget, {"type": "start"})
    assert widget.error == {}


def test_save_wav(widget, tmp_path):
    widget.feed(0.1 * np.ones(16000, np.float32), final=True)
    path = widget.save_wav(tmp_path / "take.wav")
    assert path.stat().st_size == 44 + 2 * 16000


def test_diagnose_prints_a_checklist(widget):
    widget.feed(0.1 * np.ones(1600, np.float32))
    text = str(widget.diagnose())
    assert "audio received" in text and "1 chunks" in text and "-20.0 dBFS" in text
    assert "<table>" in widget.diagnose()._repr_html_()
