"""The VAD backends on synthetic speech with known speech intervals.

fsmn-vad runs FunASR's real FsmnVADStreaming code on the real weights; silero runs the
silero-vad package (skipped when it is not installed)."""

import re
import sys

import numpy as np
import pytest

from funasr_widget.models import ModelLoadError
from funasr_widget.vad import VadEvent, check_name, check_params, create_vad

TOLERANCE_MS = 300
BACKENDS = ["fsmn-vad", "energy", "silero"]


@pytest.fixture
def make_vad(models_at):
    def make(name, **params):
        if name == "silero":
            pytest.importorskip("silero_vad")
        return create_vad(name, **params)

    return make


def feed(vad, samples, step=1600, final=True):
    events = []
    for i in range(0, len(samples), step):
        events += vad.accept(samples[i:i + step], final=final and i + step >= len(samples))
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


def test_energy_threshold_is_a_parameter(speech):
    deaf = create_vad("energy", energy_threshold_db=-3)
    assert feed(deaf, speech.samples) == []
    deaf.set_params(energy_threshold_db=-45)
    assert len(segments(feed(deaf, speech.samples))) == 3


def test_every_backend_takes_every_common_parameter(make_vad):
    for name in BACKENDS:
        vad = make_vad(name, speech_threshold=None, energy_threshold_db=-50)
        vad.set_params(end_silence_ms=500, speech_threshold=0.4, max_segment_s=20,
                       energy_threshold_db=-40)
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


@pytest.mark.parametrize("name, close", [("silero-vad", "silero"), ("fsmn", "fsmn-vad"), ("FSMN-VAD", "fsmn-vad"),
                                         ("Energy", "energy")])
def test_a_misspelt_vad_name_names_the_close_match(name, close):
    with pytest.raises(ValueError, match=f"Did you mean '{close}'"):
        check_name(name)


@pytest.mark.parametrize("params, error, words", [
    ({"end_silence_ms": 50}, ValueError, "100 <= end_silence_ms"),
    ({"end_silence_ms": "700"}, TypeError, "must be a number"),
    ({"speech_threshold": 1.5}, ValueError, "0.0 < speech_threshold <= 1.0"),
    ({"speech_threshold": float("nan")}, ValueError, "out of range"),
    ({"max_segment_s": 0.5}, ValueError, "1.0 < max_segment_s"),
    ({"energy_threshold_db": 10}, ValueError, "energy_threshold_db <= 0.0"),
    ({"energy_threshold_db": True}, TypeError, "must be a number"),
])
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
