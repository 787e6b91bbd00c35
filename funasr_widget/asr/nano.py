"""What Fun-ASR-Nano (FunASRNano, funasr 1.4.x) needs that other models do not.

* Its folder names the LLM's folder relatively (``llm_conf.init_param_path: Qwen3-0.6B``,
  the same for the tokenizer and the CTC branch's ``multilingual.tiktoken``). funasr joins
  these with the model folder only when ``configuration.json`` lists them; otherwise
  transformers takes ``Qwen3-0.6B`` as a hub id and hangs retrying the network. The
  loader passes them as absolute paths whenever the folder holds them.
* Its prompt takes the language as a word (``语音转写成英文``) and the hotwords as a list;
  :func:`language_name` maps the widget's codes (zh, en, ...) to those words.
* Its CTC branch (token timestamps) calls ``torchaudio.functional.forced_align`` on every
  decode: without torchaudio every decode would raise ImportError. The branch is switched
  off at load then, with a note (text is unaffected; only the timestamps go).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

ARCHITECTURE = "FunASRNano"
# The widget's language codes (SenseVoice's) in the words Fun-ASR-Nano's prompt uses.
LANGUAGE_NAMES = {"zh": "中文", "en": "英文", "ja": "日文", "yue": "粤语", "ko": "韩文"}
NO_TORCHAUDIO = (
    "Word timestamps are off: Fun-ASR-Nano's CTC alignment needs torchaudio, which "
    "is not installed (pip install torchaudio, the build matching your torch)."
)


def language_name(language: str | None) -> str | None:
    """None for auto; a code the widget knows -> Fun-ASR-Nano's word; anything else as given
    (the model's own words, e.g. "越南语" for Fun-ASR-MLT-Nano)."""
    if not language or language == "auto":
        return None
    return LANGUAGE_NAMES.get(language, language)


def _config(path: Path) -> dict:
    import yaml

    try:
        return yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}


def load_settings(path: Path) -> dict:
    """Overrides that make the folder's relative paths absolute (only those it holds)."""
    config = _config(path)
    settings: dict = {}

    def local(value) -> str | None:
        if isinstance(value, str) and value and not Path(value).is_absolute() and (path / value).exists():
            return str((path / value).resolve())
        return None

    for section in ("llm_conf", "tokenizer_conf"):
        found = local((config.get(section) or {}).get("init_param_path"))
        if found:
            settings[section] = {"init_param_path": found}
    ctc = (config.get("dataset_conf") or {}).get("ctc_tokenizer_conf") or {}
    vocab = local(ctc.get("vocab_path"))
    if vocab:
        settings["dataset_conf"] = {"ctc_tokenizer_conf": {"vocab_path": vocab}}
    return settings


def after_load(auto) -> list[str]:
    """Make a loaded FunASRNano decodable here; returns notes for the user."""
    model: Any = getattr(auto, "model", None)
    if getattr(model, "ctc_decoder", None) is not None and importlib.util.find_spec("torchaudio") is None:
        model.ctc_decoder = model.ctc = None  # what funasr does for a checkpoint without CTC
        return [NO_TORCHAUDIO]
    return []


def timestamps(model) -> bool:
    """Does this FunASRNano give token timestamps (its CTC branch is on)?"""
    return getattr(model, "ctc_decoder", None) is not None
