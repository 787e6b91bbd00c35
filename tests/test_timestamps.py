"""Word times: each final carries `words: [{text, start, end}]` in session seconds where the
model gives them (Paraformer's CIF times, SenseVoice's CTC alignment), none where it
does not (a streaming Paraformer); to_dataframe(words=True) is the words table."""

from __future__ import annotations

import pytest
from feeding import feed_live

from funasr_widget import Transcriber, transcribe
from funasr_widget.asr import load_engine
from funasr_widget.asr.timestamps import units

pytestmark = pytest.mark.timeout(300)


def test_units_are_characters_and_words():
    assert units("就 也，的hello world。") == ["就", "也", "的", "hello", "world"]


@pytest.mark.parametrize("model", ["paraformer-zh", "sensevoice-small"])
def test_words_are_in_session_seconds_inside_their_segment(models_at, speech, model):
    widget = Transcriber(model=model, vad="fsmn-vad", device="cpu")
    feed_live(widget, speech.samples)
    widget.close()
    assert load_engine(model, device="cpu").gives_words
    segments = widget.segments
    assert segments and all(s.get("words") for s in segments), segments
    for seg in segments:
        words = seg["words"]
        assert all(set(w) == {"text", "start", "end"} for w in words)
        assert all(seg["start"] - 0.05 <= w["start"] <= w["end"] <= seg["end"] + 0.05 for w in words), seg
        assert [w["start"] for w in words] == sorted(w["start"] for w in words)
    if model == "paraformer-zh":  # one time per character or word of the text
        assert all([w["text"] for w in s["words"]] == units(s["text"]) for s in segments)
    offline = transcribe(speech.samples, 16000, model=model, vad="fsmn-vad", device="cpu")
    assert [s["words"] for s in offline] == [s["words"] for s in segments]  # same on every path

    table = widget.to_dataframe(words=True)
    assert list(table.columns) == ["segment", "text", "start", "end", "duration"]
    assert len(table) == sum(len(s["words"]) for s in segments)
    assert set(table["segment"]) == {s["id"] for s in segments}
    assert "words" not in widget.to_dataframe().columns  # the segments table stays flat


def test_a_streaming_model_gives_no_words(models_at, speech):
    widget = Transcriber(model="paraformer-zh-streaming", vad="fsmn-vad", device="cpu")
    feed_live(widget, speech.samples)
    widget.close()
    assert widget.segments and not any("words" in s for s in widget.segments)
    assert widget.to_dataframe(words=True).empty


def test_timestamps_off_gives_no_words(models_at, speech):
    engine = load_engine("sensevoice-small", device="cpu", timestamps=False)
    assert not engine.gives_words
    result = engine.transcribe(speech.samples[: 2 * 16000])
    assert "words" not in result
    assert (
        result["text"] == load_engine("sensevoice-small", device="cpu").transcribe(speech.samples[: 2 * 16000])["text"]
    )
