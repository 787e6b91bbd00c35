"""Hotwords (SeACo-Paraformer, the `paraformer-zh` model) and punctuation (ct-punc) end to end
through the widget's options, on tiny random-weight builds of the real architectures."""

from __future__ import annotations

import json

import pytest
from feeding import feed_live

from funasr_widget import Transcriber, models, transcribe
from funasr_widget.asr import load_engine
from funasr_widget.samples import PUNCTUATION

pytestmark = pytest.mark.timeout(300)

HOTWORDS = ["的一", "是在"]  # words of the tiny vocabulary's characters


def test_hotwords_reach_seaco_paraformer_as_token_ids(models_at, speech):
    """The widget's list becomes SeACo's hotword list: each word cut by the folder's seg_dict
    into vocabulary ids, then <s> (what the bias encoder is given)."""
    tokens = json.loads((models_at / "paraformer-zh" / "tokens.json").read_text())
    ids = {t: i for i, t in enumerate(tokens)}
    widget = Transcriber(model="paraformer-zh", vad="fsmn-vad", device="cpu", hotword=HOTWORDS)
    feed_live(widget, speech.samples)
    widget.close()
    assert widget.model_state == "ready", widget.model_info
    assert len(widget.segments) == len(speech.intervals_ms) and all(s["text"] for s in widget.segments)
    model = load_engine("paraformer-zh", device="cpu").model.model
    assert type(model).__name__ == "SeacoParaformer"
    assert model.hotword_list == [[ids[c] for c in word] for word in HOTWORDS] + [[ids["<s>"]]]
    # A space-separated string is the same list.
    load_engine("paraformer-zh", device="cpu", hotword=" ".join(HOTWORDS)).transcribe(speech.samples[:32000])
    assert model.hotword_list == [[ids[c] for c in word] for word in HOTWORDS] + [[ids["<s>"]]]
    load_engine("paraformer-zh", device="cpu").transcribe(speech.samples[:32000])
    assert model.hotword_list is None  # no hotwords: no bias


@pytest.mark.parametrize("model", ["paraformer-zh", "sensevoice-small"])
def test_punctuation_is_ct_punc_over_the_segment_text(models_at, speech, model):
    """punctuation=True: each final is ct-punc's punctuation of the model's own text."""
    plain = transcribe(speech.samples, 16000, model=model, vad="fsmn-vad", device="cpu")
    widget = Transcriber(model=model, vad="fsmn-vad", device="cpu", punctuation=True)
    feed_live(widget, speech.samples)
    widget.close()
    punctuated = widget.segments
    assert [(s["start"], s["end"]) for s in punctuated] == [(s["start"], s["end"]) for s in plain]
    punc = load_engine(model, device="cpu", punctuation=True).model.punc_model
    assert type(punc).__name__ == "CTTransformer"
    marks = set(PUNCTUATION[2:]) | set(",.?")  # ct-punc writes English text's marks in ASCII
    assert any(marks & set(s["text"]) for s in punctuated), punctuated

    def letters(text):  # what punctuation does not change (it also capitalises English)
        return "".join(c for c in text.lower() if c not in marks and not c.isspace())

    assert [letters(p["text"]) for p in punctuated] == [letters(s["text"]) for s in plain]
    models.release(model)  # the punctuated copy too: later tests count this model's copies
