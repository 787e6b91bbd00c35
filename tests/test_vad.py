"""The VAD backends on synthetic speech with known speech intervals.

fsmn-vad runs FunASR's real FsmnVADStreaming code on the real weights, and "fsmn-onnx" is
the same VAD on onnxruntime without funasr (runtime="onnx"); silero runs the silero-vad
package (skipped when it is not installed)."""

import re
import subprocess
import sys

import numpy as np
import pytest

from funasr_widget.models import ModelLoadError
from funasr_widget.vad import VadEvent, check_name, check_params, create_vad

TOLERANCE_MS = 300
BACKENDS = ["fsmn-vad", "fsmn-onnx", "energy", "silero"]


@pytest.fixture
def make_vad(models_at):
    def make(name, **params):
        if name == "silero":
            pytest.importorskip("silero_vad")
        if name == "fsmn-onnx":
            return create_vad("fsmn-vad", runtime="onnx", **params)
        return create_vad(name, **params)

    return make


def feed(vad, samples, step=1600, final=True):
    events = []
    for i in range(0, len(samples), step):
        events += vad.accept(samples[i : i + step], final=final and i + step >= len(samples))
    return events


def segments(events):
    """[(start, end)] from a well-formed start/end sequence."""
    kinds = [e.kind for e in events]
    assert kinds == ["start", "end"] * (len(kinds) // 2), kinds
    return [(events[i].ms, events[i + 1].ms) for i in range(0, len(events), 2)]


@pytest.mark.parametrize("name", BACKENDS)
def test_one_segment_per_utterance(make_vad, speech, name):
    found = segments(feed(make_vad(name), speech.samples))
    assert len(found) == len(speech.intervals_ms), found
    for (beg, end), (true_beg, true_end) in zip(found, speech.intervals_ms, strict=True):
        # a little before the speech starts and a little after it ends: never clipped
        assert true_beg - TOLERANCE_MS <= beg <= true_beg + 50, (found, speech.intervals_ms)
        assert true_end - 50 <= end <= true_end + TOLERANCE_MS, (found, speech.intervals_ms)


@pytest.mark.parametrize("name", BACKENDS)
def test_chunk_size_does_not_change_the_segments(make_vad, speech, name):
    vad = make_vad(name)
    by_100ms = feed(vad, speech.samples)
    vad.reset()
    assert feed(vad, speech.samples, step=1000) == by_100ms
    vad.reset()
    assert feed(vad, speech.samples, step=len(speech.samples)) == by_100ms


@pytest.mark.parametrize("name", BACKENDS)
def test_final_closes_an_open_segment_even_when_empty(make_vad, speech, name):
    vad = make_vad(name)
    cut = 3000 * 16  # inside the first utterance
    events = vad.accept(speech.samples[:cut])
    assert [e.kind for e in events] == ["start"]
    events = vad.accept(np.zeros(0, np.float32), final=True)
    assert [e.kind for e in events] == ["end"]
    assert 2900 <= events[0].ms <= 3000


@pytest.mark.parametrize("name", BACKENDS)
def test_clock_runs_on_after_final_and_restarts_at_reset(make_vad, speech, name):
    vad = make_vad(name)
    first = feed(vad, speech.samples)
    second = feed(vad, speech.samples)
    length_ms = len(speech.samples) // 16
    assert [e.ms - length_ms for e in second[:1]] == pytest.approx([first[0].ms], abs=60)
    vad.reset()
    assert feed(vad, speech.samples)[0] == first[0]


@pytest.mark.parametrize("name", BACKENDS)
def test_set_params_takes_effect_from_the_next_segment(make_vad, speech, name):
    # Gaps between the sentences are 1.5 s: with 2 s of end silence they merge.
    vad = make_vad(name)
    mid_first = 2000 * 16
    events = feed(vad, speech.samples[:mid_first], final=False)
    assert vad.in_speech
    vad.set_params(end_silence_ms=2000)
    events += feed(vad, speech.samples[mid_first:])
    found = segments(events)
    first_end = speech.intervals_ms[0][1]
    assert abs(found[0][1] - first_end) <= TOLERANCE_MS, found  # closed by the old 700 ms
    assert len(found) == 2, found  # the second and third sentences merged


@pytest.mark.parametrize("name", BACKENDS)
def test_max_segment_cuts_long_speech(make_vad, speech, name):
    vad = make_vad(name, max_segment_s=1.5)
    found = segments(feed(vad, speech.samples))
    assert len(found) >= 2 * len(speech.intervals_ms)
    assert all(end - beg <= 1500 + 50 for beg, end in found), found


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize(
    "params", [{}, {"max_segment_s": 1.5}, {"end_silence_ms": 300}], ids=["default", "cut", "short"]
)
def test_a_segment_ends_where_its_speech_reached_or_later(make_vad, speech, name, params):
    """speech_until_ms() after each 100 ms piece: None outside a segment; in one, never
    back, never past what was heard, close behind while speech goes on; and the segment's
    end event at the last value or later. A streaming engine hears the open segment up to
    it, so it never hears audio past the end (decoding.py)."""
    vad, step = make_vad(name, **params), 1600
    reached, closes = [], 0
    for i in range(0, len(speech.samples), step):
        heard_ms = (i + step) // 16
        for event in vad.accept(speech.samples[i : i + step], final=i + step >= len(speech.samples)):
            if event.kind == "end":
                assert reached and reached[-1] <= event.ms, (event, reached[-3:])
                closes, reached = closes + 1, []
        until = vad.speech_until_ms()
        if not vad.in_speech:
            assert until is None
            continue
        assert until is not None and until <= heard_ms, (until, heard_ms)
        assert not reached or until >= reached[-1], (until, reached[-3:])
        if not vad.trailing_silence_ms:
            assert heard_ms - until <= 200, (until, heard_ms)
        reached.append(until)
    assert closes >= len(speech.intervals_ms)


def test_energy_threshold_is_a_parameter(speech):
    deaf = create_vad("energy", energy_threshold_db=-3)
    assert feed(deaf, speech.samples) == []
    deaf.set_params(energy_threshold_db=-45)
    assert len(segments(feed(deaf, speech.samples))) == 3


def test_every_backend_takes_every_common_parameter(make_vad):
    for name in BACKENDS:
        vad = make_vad(name, speech_threshold=None, energy_threshold_db=-50)
        vad.set_params(end_silence_ms=500, speech_threshold=0.4, max_segment_s=20, energy_threshold_db=-40)
        assert vad.params["speech_threshold"] == 0.4


def test_bad_names_and_values():
    with pytest.raises(ValueError, match="fsmn-vad, silero, energy"):
        create_vad("webrtc")
    with pytest.raises(TypeError, match="did you mean 'end_silence_ms'"):
        create_vad("energy").set_params(silence=3)
    with pytest.raises(TypeError):
        create_vad("energy", window_ms=30)
    with pytest.raises(ValueError, match="100 <= end_silence_ms <= 10000"):
        create_vad("energy", end_silence_ms=0)


@pytest.mark.parametrize(
    "name, close", [("silero-vad", "silero"), ("fsmn", "fsmn-vad"), ("FSMN-VAD", "fsmn-vad"), ("Energy", "energy")]
)
def test_a_misspelt_vad_name_names_the_close_match(name, close):
    with pytest.raises(ValueError, match=f"Did you mean '{close}'"):
        check_name(name)


@pytest.mark.parametrize(
    "params, error, words",
    [
        ({"end_silence_ms": 50}, ValueError, "100 <= end_silence_ms"),
        ({"end_silence_ms": "700"}, TypeError, "must be a number"),
        ({"speech_threshold": 1.5}, ValueError, "0.01 <= speech_threshold <= 1.0"),
        ({"speech_threshold": float("nan")}, ValueError, "out of range"),
        ({"max_segment_s": 0.5}, ValueError, "1.0 <= max_segment_s"),
        ({"energy_threshold_db": 10}, ValueError, "energy_threshold_db <= 0.0"),
        ({"energy_threshold_db": True}, TypeError, "must be a number"),
    ],
)
def test_parameters_out_of_range_say_what_is_accepted(params, error, words):
    with pytest.raises(error, match=re.escape(words)):
        check_params(**params)
    with pytest.raises(error, match=re.escape(words)):
        create_vad("energy", **params)


def test_event_is_a_small_value():
    assert VadEvent("start", 120) == VadEvent("start", 120)
    assert VadEvent("end", 5).ms == 5


def test_fsmn_without_its_folder_says_where_to_put_it(tmp_path, monkeypatch):
    from funasr_widget import models

    monkeypatch.setattr(models, "_models_dir", tmp_path)
    monkeypatch.setattr(models, "reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelLoadError) as err:
        create_vad("fsmn-vad")
    assert str(tmp_path / "fsmn-vad") in str(err.value)


def test_silero_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "silero_vad", None)  # import now fails
    with pytest.raises(ImportError, match=r"funasr-widget\[silero\]"):
        create_vad("silero")


def test_silero_import_keeps_torch_threads(monkeypatch):
    pytest.importorskip("silero_vad")
    import torch

    for module in [m for m in sys.modules if m.split(".")[0] == "silero_vad"]:
        monkeypatch.delitem(sys.modules, module)  # so the import runs again
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        create_vad("silero")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _events_and_silence(vad, samples, step):
    """Events, and trailing_silence_ms after each piece: what the pipeline reads."""
    events, silence = [], []
    for i in range(0, len(samples), step):
        events += vad.accept(samples[i : i + step], final=i + step >= len(samples))
        silence.append(vad.trailing_silence_ms)
    return events, silence


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"end_silence_ms": 200},
        {"end_silence_ms": 1500},
        {"speech_threshold": 0.3},
        {"speech_threshold": 0.85},
        {"max_segment_s": 1.5},
    ],
)
def test_the_onnx_runtime_gives_funasrs_events(make_vad, speech, params):
    """Same events as funasr's FsmnVADStreaming for every way of cutting the input, and the
    same end-silence progress on the 100 ms grid, over two streams in a row (the clock
    runs on after a final)."""
    noisy = speech.samples + np.random.default_rng(3).normal(0, 3e-3, len(speech.samples)).astype(np.float32)
    for samples in (speech.samples, noisy):
        funasr_vad, onnx_vad = make_vad("fsmn-vad", **params), make_vad("fsmn-onnx", **params)
        for step in (1600, 1234, 16_000, len(samples)):
            theirs = _events_and_silence(funasr_vad, samples, step)
            mine = _events_and_silence(onnx_vad, samples, step)
            assert theirs[0], "no speech found: nothing compared"
            assert mine[0] == theirs[0], (params, step)
            if step % 1600 == 0:  # FsmnVad steps funasr on a 100 ms grid; off it, it is behind
                assert mine[1] == theirs[1], (params, step)


def test_the_onnx_runtime_follows_parameter_changes(make_vad, speech):
    vads = [make_vad("fsmn-vad"), make_vad("fsmn-onnx")]
    half = len(speech.samples) // 2
    out = []
    for vad in vads:
        events = feed(vad, speech.samples[:half], final=False)
        vad.set_params(end_silence_ms=2000, speech_threshold=0.4)
        out.append(events + feed(vad, speech.samples[half:]))
    assert out[0] == out[1]


def test_the_onnx_runtime_needs_neither_funasr_nor_torch(model_store):
    """A remote kernel's VAD: run in a fresh process, it finds the speech and never imports
    funasr or torch (that is what keeps such a kernel small)."""
    code = f"""
import sys
from pathlib import Path
from funasr_widget import models, samples
from funasr_widget.vad import create_vad
models.set_models_dir(Path({str(model_store)!r}))
speech = samples.speech()
vad = create_vad("fsmn-vad", runtime="onnx")
events = vad.accept(speech.samples, final=True)
assert len(events) == 2 * len(speech.intervals_ms), events
heavy = sorted(m for m in ("torch", "funasr") if m in sys.modules)
assert not heavy, heavy
print("ok", type(vad).__name__)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok FsmnOnnxVad" in out.stdout, out.stderr[-2000:]


def test_runtime_auto_and_bad_runtimes(models_at, tmp_path):
    from funasr_widget.vad.fsmn_onnx import FsmnOnnxVad

    assert isinstance(create_vad("fsmn-vad", runtime="auto"), FsmnOnnxVad)
    with pytest.raises(ValueError, match="funasr, onnx, auto"):
        create_vad("fsmn-vad", runtime="tensorrt")
    folder = tmp_path / "no-onnx"  # a folder as ModelScope's pytorch repo has it: no model.onnx
    folder.mkdir()
    for f in ("config.yaml", "configuration.json", "am.mvn", "model.pt"):
        (folder / f).write_bytes((models_at / "fsmn-vad" / f).read_bytes())
    assert not isinstance(create_vad("fsmn-vad", runtime="auto", model=str(folder)), FsmnOnnxVad)
    with pytest.raises(FileNotFoundError, match="model.onnx"):
        create_vad("fsmn-vad", runtime="onnx", model=str(folder))
