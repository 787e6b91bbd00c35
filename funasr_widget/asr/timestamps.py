"""Word (or token) times from what each model family's generate() returns, as
``[{"text", "start", "end"}]`` in seconds from the start of the segment's audio (the
pipeline moves them to session time).

* Paraformer, SeACo-Paraformer (CIF): ``timestamp`` is ``[[start_ms, end_ms], ...]``, one per
  token of the text (a CJK character or a Latin word; punctuation from ct-punc has none).
* SenseVoiceSmall (``output_timestamp=True``, funasr's CTC forced alignment): ``words`` and
  ``timestamp`` ``[[start_ms, end_ms], ...]``.
* Fun-ASR-Nano with its CTC branch: ``timestamps`` ``[{"token", "start_time", "end_time"}]``
  in seconds (funasr's forced alignment, which needs torchaudio).
* A streaming Paraformer gives none.
"""

from __future__ import annotations

import re

PARAFORMERS = {"Paraformer", "SeacoParaformer", "BiCifParaformer", "ContextualParaformer"}
# One CJK character (Paraformer times each), or a run of other letters and digits (a word).
_CJK = "\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff"
_UNIT = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")


def request(architecture: str) -> dict:
    """What generate() needs to return times (empty when the family gives them anyway)."""
    if architecture in PARAFORMERS or architecture == "SenseVoiceSmall":
        return {"output_timestamp": True}
    return {}


def units(text: str) -> list[str]:
    """The tokens Paraformer times: CJK characters and Latin words, punctuation left out."""
    return _UNIT.findall(text)


def words(architecture: str, result: dict, text: str) -> list[dict] | None:
    """The segment's words with their times, or None when this result has none."""

    def word(t, start, end) -> dict:
        return {"text": str(t), "start": round(float(start), 3), "end": round(float(end), 3)}

    if architecture in PARAFORMERS:
        stamps = result.get("timestamp")
        tokens = units(text)
        if isinstance(stamps, list) and stamps and len(stamps) == len(tokens):
            return [word(t, a / 1000, b / 1000) for t, (a, b) in zip(tokens, stamps, strict=False)]
        return None
    if architecture == "SenseVoiceSmall":
        stamps, said = result.get("timestamp"), result.get("words")
        if isinstance(stamps, list) and isinstance(said, list) and stamps and len(stamps) == len(said):
            return [word(t, a / 1000, b / 1000) for t, (a, b) in zip(said, stamps, strict=False)]
        return None
    stamps = result.get("timestamps")  # Fun-ASR-Nano
    if isinstance(stamps, list) and stamps and all(isinstance(s, dict) for s in stamps):
        return [word(s.get("token", ""), s.get("start_time", 0), s.get("end_time", 0)) for s in stamps]
    return None
