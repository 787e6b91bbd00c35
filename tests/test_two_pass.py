"""2-pass recognition: paraformer-zh-streaming's partials while the speaker talks, a segment
model's final for each closed segment, replacing the partial; each final names its model."""

from __future__ import annotations

import pytest
from feeding import feed_live

from funasr_widget import Transcriber, transcribe
from funasr_widget.asr import ModelLoadError, load_engine
from funasr_widget.asr.two_pass import TwoPassEngine
from funasr_widget.samples import HANZI

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize("final_model", ["sensevoice-small", "fun-asr-nano"])
def test_streaming_partials_then_the_segment_models_final(models_at, speech, final_model):
    widget = Transcriber(model=final_model, partials_model="paraformer-zh-streaming", vad="fsmn-vad", device="cpu")
    assert widget.wait(timeout=120) and widget.model_state == "ready", widget.model_info
    events = []
    widget.observe(lambda c: events.append(("partial", c["new"])), "partial")
    widget.on_segment(lambda s: events.append(("final", s)))
    feed_live(widget, speech.samples)
    widget.close()
    finals = [e[1] for e in events if e[0] == "final"]
    assert len(finals) == len(speech.intervals_ms) == len(widget.segments)
    assert all(s["model"] == final_model for s in finals)
    # Before each final: streaming partials, then the partial is cleared as the final lands.
    first = next(i for i, e in enumerate(events) if e[0] == "final")
    shown = [text for kind, text in events[:first] if kind == "partial" and text]
    assert shown, "no streaming partial before the first final"
    assert events[first - 1] == ("partial", "")
    # The partials are the streaming model's (its vocabulary is the tiny build's Hanzi).
    assert all(set(text) <= set(HANZI) | {" ", "<", ">", "u", "n", "k"} for text in shown), shown
    assert not any(set(s["text"]) <= set(HANZI) | {" "} for s in finals)
    # The finals are the segment model's own text: the same as offline, which skips the 1st pass.
    offline = transcribe(speech.samples, 16000, model=final_model, vad="fsmn-vad", device="cpu")
    assert [(s["start"], s["end"], s["text"]) for s in widget.segments] == [
        (s["start"], s["end"], s["text"]) for s in offline
    ]
    both = transcribe(
        speech.samples, 16000, model=final_model, partials_model="paraformer-zh-streaming", vad="fsmn-vad", device="cpu"
    )
    assert [s["text"] for s in both] == [s["text"] for s in offline]


def test_the_pair_is_checked(models_at):
    engine = load_engine("sensevoice-small", device="cpu", partials_model="paraformer-zh-streaming")
    assert isinstance(engine, TwoPassEngine) and engine.streaming and engine.partials_name == "paraformer-zh-streaming"
    with pytest.raises(ModelLoadError, match="not a streaming model"):
        load_engine("sensevoice-small", device="cpu", partials_model="sensevoice-small")
    with pytest.raises(ModelLoadError, match="partials_model"):
        load_engine("paraformer-zh-streaming", device="cpu", partials_model="paraformer-zh-streaming")
    with pytest.raises(TypeError, match="partials_model"):
        Transcriber(model="sensevoice-small", partials_model=3)


def test_one_failing_segment_in_an_offline_batch_loses_only_itself(models_at, speech, monkeypatch):
    """transcribe_batch of a 2-pass engine gives each segment its own fate, as SegmentEngine's:
    a segment that raises gets its exception, the others their text."""
    engine = load_engine("sensevoice-small", device="cpu", partials_model="paraformer-zh-streaming")
    batch = [speech.samples[int(b * 16) : int(e * 16)] for b, e in speech.intervals_ms]
    expected = [engine.transcribe(x) for x in batch]
    real = type(engine.second).transcribe

    def second_one_fails(self, samples):
        if len(samples) == len(batch[1]):
            raise RuntimeError("decoder fault")
        return real(self, samples)

    monkeypatch.setattr(type(engine.second), "transcribe", second_one_fails)
    results = engine.transcribe_batch(batch)
    assert isinstance(results[1], RuntimeError) and "decoder fault" in str(results[1])
    assert [results[0], results[2]] == [expected[0], expected[2]]
    assert results[0]["model"] == "sensevoice-small"
