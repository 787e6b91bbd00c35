"""Segment engines: decode one whole VAD segment at a time (SenseVoiceSmall, Paraformer,
Fun-ASR-Nano). Partial text for an open segment comes from re-decoding it."""

from __future__ import annotations

import re

import numpy as np

from .base import Engine

MIN_SAMPLES = 1600  # 100 ms: shorter input yields no feature frames after LFR

_TAG = re.compile(r"<\|([^|]*)\|>")
LANGUAGES = {"zh", "en", "yue", "ja", "ko", "nospeech"}
EMOTIONS = {"HAPPY", "SAD", "ANGRY", "NEUTRAL", "FEARFUL", "DISGUSTED", "SURPRISED", "EMO_UNKNOWN"}
TEXT_NORM = {"withitn", "woitn"}


def parse_tags(text: str) -> dict:
    """Split SenseVoice's ``<|en|><|NEUTRAL|><|Speech|><|woitn|>words`` into the words
    and the first language / emotion / event tag (emotion and event lower-cased)."""
    result = {"text": re.sub(r"\s+", " ", _TAG.sub("", text)).strip()}
    for tag in _TAG.findall(text):
        if tag in LANGUAGES:
            result.setdefault("language", tag)
        elif tag in EMOTIONS:
            result.setdefault("emotion", tag.lower())
        elif tag not in TEXT_NORM:
            result.setdefault("event", tag.lower())
    return result


def generate_options(architecture: str, options: dict) -> dict:
    """The widget's model options in the words each model family's generate() uses;
    options a family does not have are left out."""
    language, use_itn, hotword = (options.get(k) for k in ("language", "use_itn", "hotword"))
    if architecture == "SenseVoiceSmall":
        return {"language": language or "auto", "use_itn": True if use_itn is None else use_itn}
    if architecture == "FunASRNano":
        kwargs = {"itn": True if use_itn is None else use_itn}
        if language:
            kwargs["language"] = language
        if hotword:
            kwargs["hotwords"] = hotword.split() if isinstance(hotword, str) else list(hotword)
        return kwargs
    if hotword:  # Paraformer family (SeACo-Paraformer biases towards these words)
        return {"hotword": hotword if isinstance(hotword, str) else " ".join(hotword)}
    return {}


class SegmentEngine(Engine):
    streaming = False

    def __init__(self, loaded, options: dict):
        super().__init__(loaded, options)
        self._generate = generate_options(self.architecture, self.options)

    def transcribe(self, samples: np.ndarray) -> dict:
        """Text of one segment: {"text"} plus "language", "emotion", "event" when the
        model says them (SenseVoice)."""
        samples = np.asarray(samples, np.float32).ravel()
        if len(samples) < MIN_SAMPLES:
            return {"text": ""}
        import torch

        with self._lock:
            # A tensor, not an array: FunASRNano's prompt builder drops numpy input.
            result = self.model.generate(input=torch.from_numpy(samples), **self._generate)
        return parse_tags(str(result[0].get("text", ""))) if result else {"text": ""}
