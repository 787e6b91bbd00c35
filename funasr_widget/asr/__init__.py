"""Speech recognition engines behind one small interface.

* :class:`SegmentEngine` (SenseVoiceSmall, Paraformer, Fun-ASR-Nano):
  ``transcribe(samples) -> {"text", ...}`` for one whole segment.
* :class:`StreamingEngine` (paraformer-zh-streaming): ``new_stream()``, then
  ``accept(stream, samples, final) -> new text``.

:func:`load_engine` turns a model name or folder into one of them; the same model,
device and options give the same loaded instance everywhere in the kernel.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

from .. import _torch, models
from .._torch import resolve_device
from ..models import ModelLoadError, Progress
from .segment import SegmentEngine
from .streaming import StreamingEngine

OPTIONS = {
    "language": "SenseVoice / Fun-ASR-Nano language hint (SenseVoice: auto, zh, en, yue, ja, ko)",
    "use_itn": "inverse text normalisation: punctuation and digits (SenseVoice, Fun-ASR-Nano)",
    "hotword": "words to favour, space-separated (SeACo-Paraformer, Fun-ASR-Nano)",
    "punctuation": "add punctuation with ct-punc (segment models)",
    "trust_remote_code": "allow running Python code shipped in the model folder",
}
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


def load_engine(model: str, device: str = "auto", progress: Progress | None = None,
                **options) -> Union[SegmentEngine, StreamingEngine]:
    """Load (or download, then load) an ASR model. ``model``: a name from
    ``funasr_widget.models``, a hub id, or a model folder. ``options``: see OPTIONS.
    Raises ModelLoadError, whose ``hint`` says what to do."""
    unknown = options.keys() - OPTIONS.keys()
    if unknown:
        raise TypeError(f"Unknown model option(s) {sorted(unknown)}; known: {sorted(OPTIONS)}")
    device = resolve_device(device)
    path = models.fetch(model, progress)
    key = ("asr", str(path), device, tuple(sorted((k, repr(v)) for k, v in options.items())))
    return _torch.shared(key, lambda: _load(model, path, device, progress, options))


def _load(model: str, path: Path, device: str, progress: Progress | None, options: dict):
    spec = models.spec(model)
    name = spec.name if spec else path.name
    arch = architecture(path)
    extra = {}
    if not _torch.registered(arch):
        code = sorted(p.name for p in path.glob("*.py"))
        if not code:
            raise ModelLoadError(f"{path} holds a '{arch}' model, which the installed funasr "
                                 "does not know.", "Upgrade funasr: pip install -U funasr")
        if not options.get("trust_remote_code"):
            raise ModelLoadError(
                f"{path} holds a '{arch}' model that funasr does not ship; the folder brings "
                f"its own Python code ({', '.join(code)}).",
                "Only if you trust where this folder came from, pass trust_remote_code=True: "
                "its model.py then runs in this kernel, and funasr pip-installs the folder's "
                "requirements.txt.",
            )
        extra = {"trust_remote_code": True, "remote_code": str(path / "model.py")}
    engine_class = StreamingEngine if arch in STREAMING else SegmentEngine
    if options.get("punctuation"):
        if engine_class is StreamingEngine:
            raise ModelLoadError(f"punctuation=True is for segment models, not {name}.",
                                 "Punctuate the final segment texts instead.")
        extra["punc_model"] = str(models.fetch("ct-punc", progress))
    if progress:
        progress(None, f"loading {name} on {device}")
    auto = _torch.auto_model(path, device, **extra)
    return engine_class(auto, name=name, path=path, device=device, architecture=arch,
                        options=options)


__all__ = ["ModelLoadError", "SegmentEngine", "StreamingEngine", "load_engine", "resolve_device",
           "OPTIONS"]
