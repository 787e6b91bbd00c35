"""The package as users install it with no extras, with only ``[remote]`` and with only
``[onnx]``: what each promises works, torch and funasr are never imported, and asking for what
an install lacks raises the error that names the extra which brings it.

`make test-extras` installs the wheel (and pytest) into three fresh venvs, build/venv-bare,
build/venv-remote and build/venv-onnx, and runs this file from inside each with
FUNASR_WIDGET_TEST_EXTRAS set to "bare", "remote" or "onnx" and FUNASR_WIDGET_MODELS to a models
folder holding the real FSMN-VAD weights and a tiny SenseVoiceSmall with its ONNX export (made
with torch and funasr beforehand, as a user runs `python -m funasr_widget.models export` once).
Without that variable the tests are skipped: the development venv has every extra, so they
would prove nothing there.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

EXTRAS = os.environ.get("FUNASR_WIDGET_TEST_EXTRAS", "")
SOURCE = Path(__file__).resolve().parents[1]
STACK = ("torch", "funasr")  # what neither install may bring in

pytestmark = pytest.mark.skipif(
    EXTRAS not in ("bare", "remote", "onnx"),
    reason="set FUNASR_WIDGET_TEST_EXTRAS=bare|remote|onnx in a venv with only that",
)
bare = pytest.mark.skipif(EXTRAS != "bare", reason="a promise of the install without extras")
remote = pytest.mark.skipif(EXTRAS != "remote", reason="a promise of the [remote] install")
onnx = pytest.mark.skipif(EXTRAS != "onnx", reason="a promise of the [onnx] install")
no_torch_extra = pytest.mark.skipif(EXTRAS == "remote", reason="[remote] runs no local model")


def stack_imported() -> list[str]:
    return sorted(name for name in sys.modules if name.split(".")[0] in STACK)


def feed_blocks(widget, samples: np.ndarray) -> None:
    """Feed in the browser's 100 ms chunks, the last one final."""
    block = 1600
    for at in range(0, len(samples), block):
        widget.feed(samples[at : at + block], final=at + block >= len(samples))


def assert_covers(segments: list[dict], intervals_ms: list[tuple[int, int]]) -> None:
    """Each segment overlaps real speech, and each stretch of real speech is in a segment."""
    spans = [(s["start"] * 1000, s["end"] * 1000) for s in segments]
    assert spans, "no segments"
    for start, end in spans:
        assert any(start < b and a < end for a, b in intervals_ms), f"segment {start}-{end} ms holds no speech"
    for a, b in intervals_ms:
        assert any(start < b and a < end for start, end in spans), f"speech at {a}-{b} ms is in no segment"


def assert_names_its_extra(err: BaseException, missing: str) -> None:
    """The error names the missing package and the extra that brings it (code "<extra>-missing",
    the pip command in its text), and that extra really brings it (the wheel's own metadata)."""
    from packaging.requirements import Requirement

    from funasr_widget import FunasrWidgetError

    assert isinstance(err, FunasrWidgetError), f"{type(err).__name__}: {err}"
    extra = err.code.removesuffix("-missing")
    assert err.code == f"{extra}-missing" and f"funasr-widget[{extra}]" in str(err), str(err)
    assert f"the {missing} package" in str(err), str(err)
    brought = set()
    for line in metadata.requires("funasr-widget") or []:
        requirement = Requirement(line)
        if requirement.marker is not None and requirement.marker.evaluate({"extra": extra}):
            brought.add(requirement.name.replace("_", "-").lower())
    assert missing.replace("_", "-") in brought, f"[{extra}] brings {sorted(brought)}"


MODELS = Path(os.environ.get("FUNASR_WIDGET_MODELS", SOURCE / "models"))


@pytest.fixture(scope="module")
def fsmn_folder() -> Path:
    folder = MODELS / "fsmn-vad"
    assert (folder / "model.onnx").is_file(), f"{folder}: run `make models`"
    return folder


def test_the_installed_copy_runs_without_the_recognition_stack():
    import funasr_widget

    installed = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert Path(funasr_widget.__file__).resolve().is_relative_to(installed), "not the installed copy"
    assert [name for name in STACK if importlib.util.find_spec(name)] == []
    assert (importlib.util.find_spec("onnxruntime") is not None) == (EXTRAS in ("remote", "onnx"))


def test_capture_only_widget_keeps_the_audio_and_finds_speech(speech):
    """No model: the widget records, counts and cuts what it is fed into segments."""
    from funasr_widget import Transcriber

    widget = Transcriber(model=None, vad="energy")
    try:
        feed_blocks(widget, speech.samples)
        assert widget.wait(60)
        stats = widget.stats
        assert stats["seconds"] == pytest.approx(speech.seconds, abs=0.01)
        assert stats["chunks"] == -(-len(speech.samples) // 1600)
        assert stats["rejected"] == stats["lost"] == 0
        np.testing.assert_allclose(widget.audio, speech.samples, atol=1e-6)
        assert_covers(widget.segments, speech.intervals_ms)
        assert all(not s["text"] for s in widget.segments)  # nothing transcribed them
    finally:
        widget.close()
    assert stack_imported() == []


def test_the_wire_decodes_and_refuses():
    from funasr_widget import wire

    samples = np.linspace(-1, 1, 1600, dtype=np.float32)
    header = {"seq": 0, "t": 1.0, "sample_rate": 16000, "dtype": "float32", "n": len(samples), "final": True}
    chunk = wire.decode_chunk(header, [samples.tobytes()])
    assert (chunk.seq, chunk.final) == (0, True)
    np.testing.assert_array_equal(chunk.samples, samples)
    with pytest.raises(wire.WireError) as refused:
        wire.decode_chunk({**header, "n": 10}, [samples.tobytes()])
    assert refused.value.code == "size-mismatch"
    assert stack_imported() == []


@bare
def test_fsmn_vad_names_the_extra_it_needs(fsmn_folder):
    from funasr_widget.vad import create_vad

    for runtime, missing in (("funasr", "torch"), ("onnx", "onnxruntime")):
        with pytest.raises(Exception) as err:
            create_vad("fsmn-vad", runtime=runtime, model=str(fsmn_folder))
        assert_names_its_extra(err.value, missing)
    assert stack_imported() == []


@no_torch_extra
def test_a_torch_model_names_the_extra_it_needs():
    import funasr_widget

    with pytest.raises(Exception) as err:
        funasr_widget.transcribe(np.zeros(16000, np.float32), model="sensevoice-small", vad="energy", runtime="torch")
    assert_names_its_extra(err.value, "torch")
    assert stack_imported() == []


@remote
def test_fsmn_vad_runs_on_onnxruntime(speech, fsmn_folder):
    """The real FSMN-VAD weights on onnxruntime find the test speech, alone and in the widget."""
    from funasr_widget import Transcriber
    from funasr_widget.vad import create_vad

    vad = create_vad("fsmn-vad", runtime="onnx", model=str(fsmn_folder))
    events = []
    for at in range(0, len(speech.samples), 1600):
        events += vad.accept(speech.samples[at : at + 1600], final=at + 1600 >= len(speech.samples))
    assert [e.kind for e in events] == ["start", "end"] * len(speech.intervals_ms)
    spans = [(a.ms / 1000, b.ms / 1000) for a, b in zip(events[::2], events[1::2], strict=True)]
    assert_covers([{"start": a, "end": b} for a, b in spans], speech.intervals_ms)

    widget = Transcriber(model=None, vad="fsmn-vad")  # the runtime that can run here: onnx
    try:
        feed_blocks(widget, speech.samples)
        assert widget.wait(60)
        assert widget.vad == "fsmn-vad"
        assert [(s["start"], s["end"]) for s in widget.segments] == spans  # live == the VAD alone
    finally:
        widget.close()
    assert stack_imported() == []


@remote
def test_a_remote_engine_kernel_cuts_with_fsmn_vad_while_its_server_is_down(speech, fsmn_folder):
    """The [remote] kernel as the class-server set-up makes it: the ASR on a server (here one
    that is not running), the VAD here. The segments still come, with their audio, and the
    model error names the server."""
    from funasr_widget import Transcriber

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    widget = Transcriber(model="custom", server=url, vad="fsmn-vad")
    try:
        feed_blocks(widget, speech.samples)
        assert widget.wait(60)
        assert widget.model_state == "error" and url.removeprefix("http://") in widget.model_info["message"]
        assert_covers(widget.segments, speech.intervals_ms)
        assert len(widget.audio) == len(speech.samples)
    finally:
        widget.close()
    assert stack_imported() == []


@onnx
def test_a_local_model_transcribes_on_onnxruntime(speech, fsmn_folder):
    """The [onnx] kernel: SenseVoiceSmall's int8 export and FSMN-VAD on onnxruntime, offline and
    live through the widget, the same segments both ways; the VAD explorer runs too."""
    from funasr_widget import Transcriber, VadExplorer, transcribe

    folder = str(MODELS / "sensevoice-small")
    offline = transcribe(speech.samples, 16000, model=folder, vad="fsmn-vad")
    assert_covers(offline, speech.intervals_ms)
    assert len(offline) == len(speech.intervals_ms), offline
    assert all({"id", "start", "end", "text"} <= set(s) for s in offline), offline

    widget = Transcriber(model=folder, vad="fsmn-vad")
    try:
        feed_blocks(widget, speech.samples)
        assert widget.wait(120)
        assert widget.model_state == "ready", widget.model_info
        runtime = widget.model_info["runtime"]
        assert (runtime["runtime"], runtime["file"]) == ("onnx", "model_quant.onnx"), runtime
        assert "torch or funasr is not installed" in runtime["reason"], runtime
        assert widget.vad == "fsmn-vad"  # not the energy fallback
        assert widget.segments == offline
    finally:
        widget.close()

    explorer = VadExplorer(speech.samples, 16000, vad="fsmn-vad")
    assert_covers(explorer.segment(), speech.intervals_ms)
    assert stack_imported() == []
