"""ASR engines on tiny random-weight models of the real architectures (real funasr code
paths; the text is gibberish, so these tests check structure and consistency)."""

import logging
import shutil
import time

import numpy as np
import pytest

from funasr_widget import _torch, models
from funasr_widget.asr import (
    ModelLoadError,
    SegmentEngine,
    StreamingEngine,
    load_engine,
    resolve_device,
)
from funasr_widget.asr.segment import generate_options, parse_tags
from funasr_widget.asr.streaming import STEP


@pytest.fixture
def noise():
    return np.random.default_rng(1).normal(0, 0.1, 3 * 16000).astype(np.float32)


@pytest.fixture
def offline(monkeypatch):
    """No network: the hub check fails (as it does on this machine)."""
    monkeypatch.setattr(models, "reachable", lambda timeout=3.0: False)


def test_sensevoice_transcribes_a_segment(models_at, speech):
    engine = load_engine("sensevoice-small", device="cpu")
    assert isinstance(engine, SegmentEngine) and not engine.streaming
    beg, end = speech.intervals_ms[0]
    result = engine.transcribe(speech.samples[beg * 16 : end * 16])
    assert isinstance(result["text"], str) and "<|" not in result["text"]
    assert set(result) <= {"text", "language", "emotion", "event", "words"}
    assert engine.transcribe(np.zeros(100, np.float32)) == {"text": ""}


def test_engine_text_is_what_automodel_generate_gives(models_at, speech):
    engine = load_engine("sensevoice-small", device="cpu")
    segment = speech.samples[: 2 * 16000]
    direct = engine.model.generate(input=segment, language="auto", use_itn=True)[0]["text"]
    result = engine.transcribe(segment)
    assert result.pop("words")  # times from funasr's alignment (tests/test_timestamps.py)
    assert result == parse_tags(direct)


def test_parse_sensevoice_tags():
    assert parse_tags("<|en|><|NEUTRAL|><|Speech|><|woitn|>hello world") == {
        "text": "hello world",
        "language": "en",
        "emotion": "neutral",
        "event": "speech",
    }
    assert parse_tags("<|zh|><|HAPPY|><|BGM|><|withitn|>你好。") == {
        "text": "你好。",
        "language": "zh",
        "emotion": "happy",
        "event": "bgm",
    }
    assert parse_tags("plain text") == {"text": "plain text"}


def test_options_reach_each_family_in_its_own_words():
    opts = {"language": "en", "use_itn": False, "hotword": "FunASR widget"}
    assert generate_options("SenseVoiceSmall", opts) == {"language": "en", "use_itn": False}
    assert generate_options("SenseVoiceSmall", {}) == {"language": "auto", "use_itn": True}
    assert generate_options("FunASRNano", opts) == {"language": "英文", "itn": False, "hotwords": ["FunASR", "widget"]}
    assert generate_options("FunASRNano", {"language": "auto"}) == {"itn": True}
    assert generate_options("FunASRNano", {"language": "越南语"})["language"] == "越南语"
    assert generate_options("SeacoParaformer", opts) == {"hotword": "FunASR widget"}
    assert generate_options("Paraformer", {"language": "zh"}) == {}


def test_streaming_text_grows_and_final_flushes(models_at, noise):
    engine = load_engine("paraformer-zh-streaming", device="cpu")
    assert isinstance(engine, StreamingEngine) and engine.streaming
    stream = engine.new_stream()
    texts = [engine.accept(stream, noise[i : i + 1600]) for i in range(0, len(noise), 1600)]
    steps = len(noise) // STEP
    assert sum(bool(t) for t in texts) >= steps - 1  # text arrives in 600 ms steps
    assert all(t == "" for t in texts[: STEP // 1600 - 1])  # nothing before the first step
    flushed = engine.accept(stream, np.zeros(0, np.float32), final=True)
    assert isinstance(flushed, str)

    # The same audio in one piece gives the same text: the engine buffers internally.
    whole = engine.new_stream()
    assert engine.accept(whole, noise, final=True) == "".join(texts) + flushed


def test_one_loaded_model_per_file_and_device_whatever_the_options(models_at, speech):
    a = load_engine("sensevoice-small", device="cpu")
    assert load_engine("iic/SenseVoiceSmall", device="cpu").model is a.model  # hub id of the same folder
    assert load_engine(str(models_at / "sensevoice-small"), device="cpu").model is a.model
    english = load_engine("sensevoice-small", device="cpu", language="en", use_itn=False)
    assert english.model is a.model  # decode options are applied per call
    # ...and they do reach the model: SenseVoice writes its language and ITN choice as tags.
    seen = []
    generate = a.model.generate
    a.model.generate = lambda **kw: seen.append(kw) or generate(**kw)
    try:
        english.transcribe(speech.samples[16000:48000])
        a.transcribe(speech.samples[16000:48000])
    finally:
        del a.model.generate
    assert [(kw["language"], kw["use_itn"]) for kw in seen] == [("en", False), ("auto", True)]


def test_loading_sets_threads_and_leaves_logging_alone(models_at, capsys):
    import torch

    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    engine = load_engine("paraformer-zh-streaming", device="cpu", use_itn=False)
    engine.accept(engine.new_stream(), np.zeros(STEP, np.float32))
    assert (root.level, list(root.handlers)) == before
    assert torch.get_num_threads() == _torch.threads()
    assert capsys.readouterr().out == ""


def test_quiet_mutes_only_its_own_thread():
    import threading

    seen = []
    with _torch.quiet() as printed:
        print("from the loader")
        other = threading.Thread(target=lambda: seen.append(print("from elsewhere")))
        other.start()
        other.join()
    assert printed.getvalue() == "from the loader\n"
    assert seen == [None]


def test_missing_model_without_network_fails_at_once(tmp_path, monkeypatch, offline):
    monkeypatch.setattr(models, "_models_dir", tmp_path)
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as err:
        load_engine("sensevoice-small", device="cpu")
    assert time.monotonic() - started < 1.0
    assert str(tmp_path / "sensevoice-small") in err.value.hint
    assert "iic/SenseVoiceSmall" in err.value.hint


def test_unknown_name_and_missing_folder(tmp_path, offline):
    with pytest.raises(ModelLoadError, match="Unknown model"):
        load_engine("no-such-model", device="cpu")
    with pytest.raises(ModelLoadError, match="not a complete model folder"):
        load_engine(str(tmp_path), device="cpu")


def test_corrupt_model_pt(models_at, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(models_at / "sensevoice-small", folder)
    (folder / "model.pt").write_bytes((folder / "model.pt").read_bytes()[:5000])  # cut short
    with pytest.raises(ModelLoadError) as err:
        load_engine(str(folder), device="cpu")
    assert str(folder) in err.value.message and "corrupt" in err.value.hint


def test_cuda_without_a_gpu(models_at):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelLoadError, match="no CUDA GPU") as err:
        load_engine("sensevoice-small", device="cuda")
    assert "device='cpu'" in err.value.hint
    assert resolve_device("auto") == "cpu"
    for bad in ("tpu", "cuda:x"):
        with pytest.raises(ModelLoadError, match="unknown or not available"):
            resolve_device(bad)


def test_folder_code_runs_only_when_trusted(models_at, tmp_path):
    folder = tmp_path / "remote"
    shutil.copytree(models_at / "sensevoice-small", folder)
    config = (folder / "config.yaml").read_text()
    (folder / "config.yaml").write_text(config.replace("SenseVoiceSmall", "MyOwnModel"))
    (folder / "model.py").write_text("raise SystemExit('must not run')\n")
    with pytest.raises(ModelLoadError, match="its own Python code") as err:
        load_engine(str(folder), device="cpu")
    assert "trust_remote_code=True" in err.value.hint
    (folder / "model.py").unlink()
    with pytest.raises(ModelLoadError, match="does not know"):
        load_engine(str(folder), device="cpu")


def test_options_are_checked(models_at):
    with pytest.raises(TypeError, match="hotwords"):
        load_engine("sensevoice-small", device="cpu", hotwords="x")
    with pytest.raises(ModelLoadError, match="segment models"):
        load_engine("paraformer-zh-streaming", device="cpu", punctuation=True)
