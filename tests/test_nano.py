"""Fun-ASR-Nano (FunASRNano) through every path, on a tiny random-weight build laid out as
the hub's FunAudioLLM/Fun-ASR-Nano-2512 folder (samples.build_fun_asr_nano): a SenseVoice
encoder, the adaptor, a Qwen3 LLM built by transformers from Qwen3-0.6B/config.json, a
byte-level BPE tokenizer and the CTC branch. No model-folder code runs."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
import torch
from feeding import feed_live, partials_mid_sentence

from funasr_widget import Transcriber, models, samples, transcribe
from funasr_widget.asr import ModelLoadError, load_engine

pytestmark = pytest.mark.timeout(300)

HUB_FILES = [
    "configuration.json",
    "config.yaml",
    "model.pt",
    "multilingual.tiktoken",
    *(
        f"Qwen3-0.6B/{f}"
        for f in (
            "config.json",
            "generation_config.json",
            "merges.txt",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.json",
        )
    ),
]


class PromptSpy:
    """Records the chat turns FunASRNano builds for each decode (what its LLM is given)."""

    def __init__(self, model):
        self.model, self.turns = model, []
        self._original = model.data_load_speech

    def __enter__(self):
        def spy(contents, *args, **kwargs):
            self.turns.append(contents["user"][0][0])  # the user turn's text, before the audio
            return self._original(contents, *args, **kwargs)

        self.model.data_load_speech = spy
        return self

    def __exit__(self, *exc):
        del self.model.data_load_speech  # back to the class's method


@pytest.fixture
def nano(models_at):
    engine = load_engine("fun-asr-nano", device="cpu")
    return engine


def test_the_folder_is_the_hub_layout_and_loads_without_folder_code(models_at, nano):
    folder = models.fetch("fun-asr-nano")
    assert folder == (models_at / "fun-asr-nano").resolve()
    assert all((folder / f).is_file() for f in HUB_FILES)
    assert not list(folder.rglob("*.py"))  # nothing to run: funasr ships FunASRNano
    assert nano.architecture == "FunASRNano" and type(nano.model.model).__name__ == "FunASRNano"
    assert not any(str(folder) in str(p) for p in sys.path)  # funasr's sys.path entry is taken back
    assert nano.model.model.llm.config.model_type == "qwen3"


def test_a_folder_without_configuration_json_loads_from_anywhere(models_at, tmp_path, monkeypatch):
    """config.yaml names Qwen3-0.6B relatively: the loader passes the folder's own copy, so
    transformers never takes it for a hub id (offline that retries for minutes)."""
    folder = tmp_path / "nano-config-only"
    shutil.copytree(models_at / "fun-asr-nano", folder)
    (folder / "configuration.json").unlink()
    monkeypatch.chdir(tmp_path)  # no ./Qwen3-0.6B here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = load_engine(str(folder), device="cpu")
    assert engine.architecture == "FunASRNano"
    assert engine.transcribe(samples.speech(samples.SENTENCES[:1]).samples)["text"]
    models.release(str(folder))


def test_live_offline_and_funasr_agree(models_at, speech, nano):
    """feed() in odd chunks, transcribe(), and funasr's AutoModel.generate on each segment
    (the tensor FunASRNano's prompt builder takes) give the same segments and text."""
    widget = Transcriber(model="fun-asr-nano", vad="fsmn-vad", device="cpu")
    feed_live(widget, speech.samples, chunk=1234)
    widget.close()
    assert widget.model_state == "ready"
    live = widget.segments
    assert len(live) == len(speech.intervals_ms)
    offline = transcribe(speech.samples, 16000, model="fun-asr-nano", vad="fsmn-vad", device="cpu")
    assert [(s["start"], s["end"], s["text"]) for s in live] == [(s["start"], s["end"], s["text"]) for s in offline]
    for seg in live:
        audio = speech.samples[int(seg["start"] * 16000) : int(seg["end"] * 16000)]
        direct = nano.model.generate(input=torch.from_numpy(audio), itn=True)[0]["text"]
        assert seg["text"] and seg["text"] == " ".join(direct.split())


def test_language_itn_and_hotwords_reach_the_prompt(models_at, nano, speech):
    """The options arrive in Fun-ASR-Nano's own words: the language as a word, the hotwords
    as its list, ITN off as the prompt's clause."""
    audio = speech.samples[: 2 * 16000]
    engine = load_engine("fun-asr-nano", device="cpu", language="en", use_itn=False, hotword="FunASR widget")
    assert engine.model is nano.model  # the same loaded model: options apply per call
    with PromptSpy(nano.model.model) as spy:
        engine.transcribe(audio)
        nano.transcribe(audio)
        load_engine("fun-asr-nano", device="cpu", language="auto", hotword=["一", "二"]).transcribe(audio)
    hinted, plain, listed = spy.turns
    assert hinted.startswith("请结合上下文信息")
    assert "热词列表：[FunASR, widget]\n" in hinted
    assert hinted.endswith("语音转写成英文，不进行文本规整：<|startofspeech|>!!<|endofspeech|>")
    assert plain == "语音转写：<|startofspeech|>!!<|endofspeech|>"  # defaults: no language, ITN on
    assert "热词列表：[一, 二]\n语音转写：" in listed


def test_options_through_the_widget_reach_the_model(models_at, nano, speech):
    with PromptSpy(nano.model.model) as spy:
        widget = Transcriber(model="fun-asr-nano", vad="fsmn-vad", device="cpu", language="zh", hotword=["甲", "乙"])
        feed_live(widget, speech.samples)
        widget.close()
    assert len(spy.turns) >= len(widget.segments) == len(speech.intervals_ms)  # finals (+ partials)
    assert all("热词列表：[甲, 乙]\n语音转写成中文：" in turn for turn in spy.turns)


def test_partials_re_decode_the_open_segment(models_at, speech):
    widget = Transcriber(model="fun-asr-nano", vad="fsmn-vad", device="cpu")
    assert widget.wait(timeout=120) and widget.model_state == "ready"
    partials = partials_mid_sentence(widget, speech)
    assert widget.segments == []
    assert any(partials), "no partial text while the segment was open"
    widget.feed(np.zeros(0, np.float32), final=True)  # its final decoded before the test ends:
    assert widget.wait(timeout=60)  # a decode still running at interpreter exit aborts it
    widget.close()


def test_a_cuda_request_without_cuda_fails_clearly(models_at):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelLoadError, match="CUDA") as info:
        load_engine("fun-asr-nano", device="cuda")
    assert "device='cpu'" in info.value.hint


def test_without_torchaudio_the_ctc_branch_is_off_and_says_so(models_at, nano):
    """funasr's CTC alignment (Fun-ASR-Nano's timestamps) needs torchaudio: without it every
    decode would raise, so the branch is off at load, text goes on, and the note says why."""
    import importlib.util

    from funasr_widget.asr import nano as nano_module

    if importlib.util.find_spec("torchaudio") is not None:
        pytest.skip("torchaudio is installed: the CTC branch stays on")
    assert nano.model.model.ctc_decoder is None and not nano.gives_words
    assert nano.notes == (nano_module.NO_TORCHAUDIO,)
    assert "words" not in nano.transcribe(samples.speech(samples.SENTENCES[:1]).samples)


def test_nano_token_times_become_words():
    from funasr_widget.asr.timestamps import words

    result = {
        "text": "你好",
        "timestamps": [
            {"token": "你", "start_time": 0.12, "end_time": 0.3, "score": 0.9},
            {"token": "好", "start_time": 0.3, "end_time": 0.54, "score": 0.8},
        ],
    }
    assert words("FunASRNano", result, "你好") == [
        {"text": "你", "start": 0.12, "end": 0.3},
        {"text": "好", "start": 0.3, "end": 0.54},
    ]
    assert words("FunASRNano", {"text": "你好"}, "你好") is None
