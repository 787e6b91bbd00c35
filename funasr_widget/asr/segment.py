"""Segment engines: decode one whole VAD segment at a time (SenseVoiceSmall, Paraformer,
Fun-ASR-Nano). Partial text for an open segment comes from re-decoding it."""

from __future__ import annotations

import re

import numpy as np

from .._constants import BLOCK, SAMPLE_RATE
from . import nano, timestamps
from .base import Engine

MIN_SAMPLES = BLOCK  # 100 ms: shorter input yields no feature frames after LFR
# Offline batches (transcribe_batch), funasr's batch_size_s semantics: up to this much padded
# audio per generate() call, no segment over BATCH_THRESHOLD_S in a batch; on the CPU funasr
# decodes one segment at a time (its batch size 0 there), and so does this.
BATCH_S, BATCH_THRESHOLD_S, CPU_BATCH_S = 300.0, 60.0, 0.0

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
        if nano.language_name(language):
            kwargs["language"] = nano.language_name(language)  # the prompt's word: 英文, 中文, ...
        if hotword:
            kwargs["hotwords"] = hotword.split() if isinstance(hotword, str) else list(hotword)
        return kwargs
    if hotword:  # Paraformer family (SeACo-Paraformer biases towards these words)
        return {"hotword": hotword if isinstance(hotword, str) else " ".join(hotword)}
    return {}


class SegmentEngine(Engine):
    def __init__(self, loaded, options: dict):
        super().__init__(loaded, options)
        self._generate = generate_options(self.architecture, self.options)
        wanted = self.options.get("timestamps", True)
        self._timestamps = timestamps.request(self.architecture) if wanted else {}
        self._words = wanted

    @property
    def gives_words(self) -> bool:
        """Do this engine's results carry word times ("words")?"""
        if self.architecture == nano.ARCHITECTURE:
            return self._words and nano.timestamps(self.model.model)
        return bool(self._timestamps)

    def transcribe_batch(self, batch: list[np.ndarray]) -> list[dict | Exception]:
        """Several whole segments (audio that is not live), as funasr's VAD path decodes them:
        shortest first, batched up to BATCH_S of padded audio per generate() call (CPU_BATCH_S
        on the CPU); each result is what transcribe() gives (or the exception that segment
        raised), in the order given."""
        import torch

        batch = [np.asarray(x, np.float32).ravel() for x in batch]
        results: list[dict | Exception | None] = [None] * len(batch)
        limit = (CPU_BATCH_S if self.device == "cpu" else BATCH_S) * SAMPLE_RATE
        if self.architecture == nano.ARCHITECTURE:
            limit = 0  # its batched LLM path left-pads the prompts: other text than one at a time
        group: list[int] = []

        def alone(i: int) -> None:
            try:
                results[i] = self.transcribe(batch[i])
            except Exception as err:  # this segment's failure, reported as one-by-one would
                results[i] = err

        def run() -> None:
            if len(group) == 1:
                alone(group[0])
            elif group:
                audio = [torch.from_numpy(batch[i]) for i in group]
                try:
                    with self._lock:
                        out = self.model.generate(
                            input=audio, batch_size=len(audio), **self._generate, **self._timestamps
                        )
                except Exception:  # the batch failed (memory?): each alone, each its own fate
                    out = None
                for n, i in enumerate(group):
                    if out is None or n >= len(out):
                        alone(i)
                        continue
                    parsed = parse_tags(str(out[n].get("text", "")))
                    found = timestamps.words(self.architecture, out[n], parsed["text"]) if self._words else None
                    results[i] = {**parsed, "words": found} if found is not None else parsed
            group.clear()

        for i in sorted(range(len(batch)), key=lambda i: len(batch[i])):
            if len(batch[i]) < MIN_SAMPLES:
                results[i] = {"text": ""}
                continue
            longest = len(batch[i])  # sorted: the newest is the longest
            if group and (longest * (len(group) + 1) >= limit or longest >= BATCH_THRESHOLD_S * SAMPLE_RATE):
                run()
            group.append(i)
        run()
        return results  # type: ignore[return-value]

    def transcribe(self, samples: np.ndarray) -> dict:
        """Text of one segment: {"text"} plus "language", "emotion", "event" when the
        model says them (SenseVoice), and "words" ([{text, start, end}], seconds from the
        segment's start) when it gives times."""
        samples = np.asarray(samples, np.float32).ravel()
        if len(samples) < MIN_SAMPLES:
            return {"text": ""}
        import torch

        # A tensor, not an array: FunASRNano's prompt builder drops numpy input.
        audio = torch.from_numpy(samples)
        with self._lock:
            try:
                result = self.model.generate(input=audio, **self._generate, **self._timestamps)
            except (IndexError, RuntimeError):
                if not self._timestamps:
                    raise
                # funasr's SenseVoice alignment fails on some token sequences: text without times.
                result = self.model.generate(input=audio, **self._generate)
        if not result:
            return {"text": ""}
        parsed = parse_tags(str(result[0].get("text", "")))
        found = timestamps.words(self.architecture, result[0], parsed["text"]) if self._words else None
        if found is not None:
            parsed["words"] = found
        return parsed
