"""Speech recognition engines behind one small interface.

* :class:`SegmentEngine` (SenseVoiceSmall, Paraformer, Fun-ASR-Nano):
  ``transcribe(samples) -> {"text", ...}`` for one whole segment.
* :class:`StreamingEngine` (paraformer-zh-streaming): ``new_stream()``, then
  ``accept(stream, samples, final) -> new text``.

:func:`load_engine` turns a model name or folder into one of them; the same model file
and device give the same loaded model everywhere in the kernel, whatever the options.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Union

from .. import _torch, models
from .._torch import resolve_device
from ..models import ModelLoadError, Progress
from .base import LoadedModel
from .segment import SegmentEngine
from .streaming import StreamingEngine

# name -> (accepted types, what it does). Checked where given (check_options).
OPTIONS = {
    "language": ((str,), "language hint (SenseVoice: auto, zh, en, yue, ja, ko; Fun-ASR-Nano: a language name)"),
    "use_itn": ((bool,), "inverse text normalisation: punctuation and digits (SenseVoice, Fun-ASR-Nano)"),
    "hotword": ((str, list, tuple), "words to favour: a space-separated string or a list of words "
                                    "(SeACo-Paraformer, Fun-ASR-Nano)"),
    "punctuation": ((bool,), "add punctuation with ct-punc (segment models)"),
    "trust_remote_code": ((bool,), "allow running Python code shipped in the model folder"),
}
# Options that change what is loaded (the rest only change how each call decodes).
LOAD_OPTIONS = ("punctuation", "trust_remote_code")


def check_options(options: dict) -> dict:
    """The model options, checked: TypeError for an unknown name (with the close match) or
    a wrong type, ValueError for an empty value; each message lists what is accepted."""
    unknown = sorted(options.keys() - OPTIONS.keys())
    if unknown:
        close = {n: difflib.get_close_matches(n, OPTIONS, 1) for n in unknown}
        hints = "".join(f" ({n!r}: did you mean {c[0]!r}?)" for n, c in close.items() if c)
        listing = "; ".join(f"{k}: {v[1]}" for k, v in OPTIONS.items())
        raise TypeError(f"Unknown model option(s) {unknown}{hints}. The options are: {listing}")
    for name, value in options.items():
        kinds, meaning = OPTIONS[name]
        if value is None:
            continue
        words = value if isinstance(value, (list, tuple)) else []
        if not isinstance(value, kinds) or not all(isinstance(w, str) for w in words):
            names = " or ".join("list of str" if k in (list, tuple) else k.__name__ for k in kinds[:2])
            raise TypeError(f"Model option {name} must be {names}, got {value!r} ({meaning})")
        if isinstance(value, str) and not value.strip() or isinstance(value, (list, tuple)) and not value:
            raise ValueError(f"Model option {name} is empty; leave it out or give {meaning}")
    return {k: v for k, v in options.items() if v is not None}


STREAMING = {"ParaformerStreaming"}


def architecture(path: Path) -> str:
    """The model class a folder's config names (``model:`` in its config.yaml)."""
    import yaml

    try:
        config = path / "config.yaml"
        if not config.is_file():
            metas = json.loads((path / "configuration.json").read_text())["file_path_metas"]
            config = path / metas["config"]
        return str(yaml.safe_load(config.read_text())["model"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"Cannot read the model's config in {path}: {exc}",
                             "Fetch or copy the model folder again.") from exc


def check_device(device) -> str:
    """`device` if it is spelt as a device; whether it exists is checked when loading."""
    if isinstance(device, str) and (device in ("auto", "cpu", "cuda", "mps") or
                                    device.startswith("cuda:") and device[5:].isdigit()):
        return device
    raise ValueError(f"Unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or "
                     "(Apple silicon) 'mps'")


def check_model(model) -> None:
    """A model argument must be a name, a hub id or a folder (str or path)."""
    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise TypeError(f"model must be a model name ({', '.join(models.REGISTRY)}), 'auto', a hub id "
                        f"or a model folder's path; got {model!r}")


def load_engine(model: str, device: str = "auto", progress: Progress | None = None,
                **options) -> Union[SegmentEngine, StreamingEngine]:
    """Load (or download, then load) an ASR model. ``model``: a name from
    ``funasr_widget.models``, a hub id, or a model folder. ``options``: see OPTIONS.

    One model file and device is loaded once per kernel: engines with other decoding
    options (language, use_itn, hotword) share it and apply theirs per call;
    ``funasr_widget.models.release()`` frees it. Raises ModelLoadError, whose ``hint``
    says what to do."""
    check_model(model)
    options = check_options(options)
    device = resolve_device(check_device(device))
    path = models.fetch(str(model), progress)
    load = {k: bool(options.get(k)) for k in LOAD_OPTIONS}
    key = ("asr", str(path), device, *sorted(load.items()))
    loaded = _torch.shared(key, lambda: _load(model, path, device, progress, **load))
    engine_class = StreamingEngine if loaded.architecture in STREAMING else SegmentEngine
    return engine_class(loaded, options)


def _load(model: str, path: Path, device: str, progress: Progress | None, *,
          punctuation: bool, trust_remote_code: bool) -> LoadedModel:
    spec = models.spec(model)
    name = spec.name if spec else path.name
    arch = architecture(path)
    extra = {}
    if not _torch.registered(arch):
        code = sorted(p.name for p in path.glob("*.py"))
        if not code:
            raise ModelLoadError(f"{path} holds a '{arch}' model, which the installed funasr "
                                 "does not know.", "Upgrade funasr: pip install -U funasr")
        if not trust_remote_code:
            raise ModelLoadError(
                f"{path} holds a '{arch}' model that funasr does not ship; the folder brings "
                f"its own Python code ({', '.join(code)}).",
                "Only if you trust where this folder came from, pass trust_remote_code=True: "
                "its model.py then runs in this kernel, and funasr pip-installs the folder's "
                "requirements.txt.",
            )
        extra = {}  # _torch.auto_model imports the config's remote_code (inside the folder), else model.py
    if punctuation:
        if arch in STREAMING:
            raise ModelLoadError(f"punctuation=True is for segment models, not {name}.",
                                 "Punctuate the final segment texts instead.")
        extra["punc_model"] = str(models.fetch("ct-punc", progress))
    if progress:
        progress(None, f"loading {name} on {device}")
    auto = _torch.auto_model(path, device, trust_remote_code=trust_remote_code, **extra)
    return LoadedModel(auto, name=name, path=path, device=device, architecture=arch)


__all__ = ["ModelLoadError", "OPTIONS", "SegmentEngine", "StreamingEngine", "check_device",
           "check_model", "check_options", "load_engine", "resolve_device"]
