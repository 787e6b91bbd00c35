"""Audio that is not live (transcribe()) is decoded as funasr's VAD path decodes it: the
closed segments gather, then go shortest first, batched by padded length (batch_size_s;
one at a time on the CPU, as funasr does there); the finals still come in id order, with
the segments and text live streaming gives."""

from __future__ import annotations

import numpy as np
import pytest

from funasr_widget import Transcriber, transcribe
from funasr_widget.asr import load_engine, segment

pytestmark = pytest.mark.timeout(300)


def live_segments(model, samples):
    widget = Transcriber(model=model, vad="fsmn-vad", device="cpu")
    for i in range(0, len(samples), 1600):
        widget.feed(samples[i : i + 1600])
    widget.feed(np.zeros(0, np.float32), final=True)
    assert widget.wait(timeout=240)
    widget.close()
    return widget.segments


class GenerateSpy:
    def __init__(self, monkeypatch, model):
        self.calls = []
        original = model.generate

        def generate(input, **kwargs):
            self.calls.append([len(x) for x in input] if isinstance(input, list) else len(input))
            return original(input=input, **kwargs)

        monkeypatch.setattr(model, "generate", generate)


@pytest.mark.parametrize("model", ["sensevoice-small", "paraformer-zh", "fun-asr-nano"])
def test_batched_offline_gives_the_live_segments(models_at, speech, monkeypatch, model):
    live = live_segments(model, speech.samples)
    monkeypatch.setattr(segment, "CPU_BATCH_S", 300.0)  # batch on the CPU too, as on a GPU
    spy = GenerateSpy(monkeypatch, load_engine(model, device="cpu").model)
    offline = transcribe(speech.samples, 16000, model=model, vad="fsmn-vad", device="cpu")
    assert offline == live  # same segments, text (and word times), in id order
    if model == "fun-asr-nano":  # its batched LLM path left-pads prompts (other text): one by one
        assert all(isinstance(c, int) for c in spy.calls) and spy.calls == sorted(spy.calls)
        return
    assert len(spy.calls) == 1 and isinstance(spy.calls[0], list) and len(spy.calls[0]) == len(live)
    assert spy.calls[0] == sorted(spy.calls[0])  # shortest first


def test_a_streaming_model_decodes_each_offline_segment_in_one_call(models_at, speech, monkeypatch):
    """Not live, no partials: each closed segment goes to paraformer-zh-streaming whole
    (funasr steps through it in the same 600 ms strides), with the text of live streaming."""
    live = live_segments("paraformer-zh-streaming", speech.samples)
    spy = GenerateSpy(monkeypatch, load_engine("paraformer-zh-streaming", device="cpu").model)
    offline = transcribe(speech.samples, 16000, model="paraformer-zh-streaming", vad="fsmn-vad", device="cpu")
    assert offline == live and any(s["text"] for s in live)
    assert len(spy.calls) == len(live), spy.calls  # one generate() per segment
    assert [n / 16000 for n in spy.calls] == pytest.approx([s["end"] - s["start"] for s in live], abs=0.01)


def test_segments_wait_for_a_model_still_loading(models_at, speech, monkeypatch):
    """All audio (final) arrives before the model is ready: the batch still goes."""
    from funasr_widget import models

    models.release()  # a fresh load: the VAD cuts every segment before it finishes
    monkeypatch.setattr(segment, "CPU_BATCH_S", 300.0)
    assert len(transcribe(speech.samples, 16000, model="sensevoice-small", vad="fsmn-vad", device="cpu")) == len(
        speech.intervals_ms
    )


def test_on_the_cpu_one_at_a_time_shortest_first(models_at, speech, monkeypatch):
    spy = GenerateSpy(monkeypatch, load_engine("sensevoice-small", device="cpu").model)
    segments = transcribe(speech.samples, 16000, model="sensevoice-small", vad="fsmn-vad", device="cpu")
    assert [s["id"] for s in segments] == list(range(len(segments)))
    assert all(isinstance(c, int) for c in spy.calls) and spy.calls == sorted(spy.calls)
    lengths = [int(round((s["end"] - s["start"]) * 16000)) for s in segments]
    assert sorted(spy.calls) == sorted(lengths)


def test_a_failed_batch_is_decoded_one_by_one(models_at, speech, monkeypatch):
    expected = transcribe(speech.samples, 16000, model="sensevoice-small", vad="fsmn-vad", device="cpu")
    monkeypatch.setattr(segment, "CPU_BATCH_S", 300.0)
    model = load_engine("sensevoice-small", device="cpu").model
    original = model.generate

    def no_batches(input, **kwargs):
        if isinstance(input, list):
            raise RuntimeError("CUDA out of memory (a batch too big)")
        return original(input=input, **kwargs)

    monkeypatch.setattr(model, "generate", no_batches)
    assert transcribe(speech.samples, 16000, model="sensevoice-small", vad="fsmn-vad", device="cpu") == expected
