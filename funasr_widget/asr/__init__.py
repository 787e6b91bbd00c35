"""Speech recognition engines behind one small interface.

* :class:`SegmentEngine` (SenseVoiceSmall, Paraformer, Fun-ASR-Nano):
  ``transcribe(samples) -> {"text", ...}`` for one whole segment.
* :class:`StreamingEngine` (paraformer-zh-streaming): ``new_stream()``, then
  ``accept(stream, samples, final) -> new text``.

:func:`load_engine` turns a model name or folder into one of them; the same model file
and device give the same loaded model everywhere in the kernel, whatever the options.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import cast

from .. import _cache, _torch, models
from .._torch import resolve_device
from ..dependencies import installed, require
from ..errors import ModelLoadError
from ..keywords import OPTION, check_names
from ..models import Progress
from . import nano, onnx, onnx_streaming, remote
from .base import Decoder, Engine, LoadedModel
from .device import load_with_fallback
from .segment import SegmentEngine
from .streaming import StreamingEngine
from .two_pass import TwoPassEngine

# name -> (accepted types, what it does). Checked where given (check_options).
OPTIONS = {
    "language": ((str,), "language hint (SenseVoice: auto, zh, en, yue, ja, ko; Fun-ASR-Nano: a language name)"),
    "use_itn": ((bool,), "inverse text normalisation: punctuation and digits (SenseVoice, Fun-ASR-Nano)"),
    "hotword": (
        (str, list, tuple),
        "words to favour: a space-separated string or a list of words (SeACo-Paraformer, Fun-ASR-Nano)",
    ),
    "punctuation": ((bool,), "add punctuation with ct-punc (segment models)"),
    "trust_remote_code": ((bool,), "allow running Python code shipped in the model folder"),
    "partials_model": (
        (str, os.PathLike),
        "2-pass: a streaming model (paraformer-zh-streaming) that "
        "shows partial text while you speak; `model` writes the finals",
    ),
    "timestamps": (
        (bool,),
        "word times in each final's `words` (default on where the model gives them; "
        "off saves SenseVoice's CTC alignment, about a fifth of its decode)",
    ),
    "runtime": (
        (str,),
        "'auto' (the default: torch where torch and funasr are installed, else the folder's ONNX "
        "export), 'torch', or 'onnx' (onnxruntime: no torch; asr/onnx.py); also FSMN-VAD's",
    ),
    # A remote engine (asr/remote.py): checked by check_remote_options, values never echoed.
    "server": ((str,), "an OpenAI-compatible ASR server's URL (funasr-server, vLLM): segments are sent there"),
    "api_key": ((str,), f"the server's bearer token (default: ${remote.TOKEN_ENV})"),
    "ca_bundle": ((str, os.PathLike), "a PEM file of CA certificates to trust for the server"),
    "server_partials": ((bool,), "also send the open segment for partial text (off: finals only)"),
}
REMOTE_OPTIONS = ("server", "api_key", "ca_bundle", "server_partials")
# What no server's API takes (language, use_itn and hotword go where the server lists them: remote.py).
NOT_REMOTE = ("punctuation", "trust_remote_code", "partials_model", "timestamps")
# Options that change what is loaded (the rest only change how each call decodes).
LOAD_OPTIONS = ("punctuation", "trust_remote_code")


def check_options(options: dict) -> dict:
    """The model options, checked: TypeError for an unknown name (with the close match among
    every keyword, keywords.py) or a wrong type, ValueError for an empty value; each message lists what is accepted."""
    check_names(options, "The model", (OPTION,))
    remote_options = remote.check_remote_options({k: options[k] for k in REMOTE_OPTIONS if k in options})
    if remote_options:
        local_only = sorted(k for k in NOT_REMOTE if options.get(k) is not None)
        if local_only:
            raise TypeError(
                f"{', '.join(local_only)}: not available with server= (the server decides "
                "what it loads; a request takes model, language, use_itn and hotword)"
            )
    for name, value in options.items():
        if name in REMOTE_OPTIONS:
            continue
        kinds, meaning = OPTIONS[name]
        if value is None:
            continue
        words = value if isinstance(value, (list, tuple)) else []
        if not isinstance(value, kinds) or not all(isinstance(w, str) for w in words):
            names = " or ".join("list of str" if k in (list, tuple) else k.__name__ for k in kinds[:2])
            raise TypeError(f"Model option {name} must be {names}, got {value!r} ({meaning})")
        if isinstance(value, str) and not value.strip() or isinstance(value, (list, tuple)) and not value:
            raise ValueError(f"Model option {name} is empty; leave it out or give {meaning}")
        if name == "runtime" and value not in onnx.RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(map(repr, onnx.RUNTIMES))}, got {value!r}")
    return {**{k: v for k, v in options.items() if v is not None and k not in REMOTE_OPTIONS}, **remote_options}


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
        raise ModelLoadError(
            f"Cannot read the model's config in {path}: {exc}", "Fetch or copy the model folder again."
        ) from exc


def check_device(device) -> str:
    """`device` if it is spelt as a device; whether it exists is checked when loading."""
    if isinstance(device, str) and (
        device in ("auto", "cpu", "cuda", "mps") or device.startswith("cuda:") and device[5:].isdigit()
    ):
        return device
    raise ValueError(f"Unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or (Apple silicon) 'mps'")


def check_model(model) -> None:
    """A model argument must be a name, a hub id or a folder (str or path)."""
    if not isinstance(model, (str, os.PathLike)) or not str(model).strip():
        raise TypeError(
            f"model must be a model name ({', '.join(models.REGISTRY)}), 'auto', a hub id "
            f"or a model folder's path; got {model!r}"
        )


def load_engine(model: str, device: str = "auto", progress: Progress | None = None, **options) -> Decoder:
    """Load (or download, then load) an ASR model. ``model``: a name from
    ``funasr_widget.models``, a hub id, or a model folder. ``options``: see OPTIONS.

    One model file and device is loaded once per kernel: engines with other decoding
    options (language, use_itn, hotword) share it and apply theirs per call;
    ``funasr_widget.models.release()`` frees it. Raises ModelLoadError, whose ``hint``
    says what to do."""
    check_model(model)
    options = check_options(options)
    if options.get("server"):  # the model runs on the server; the kernel keeps only the VAD
        return remote.load_remote(str(model), progress, **options)
    check_device(device)
    if options.get("partials_model"):  # 2-pass (asr/two_pass.py): a streaming engine + this one
        return _two_pass(model, resolve_device(device), progress, options)
    runtime = options.get("runtime", "auto")
    wants_onnx = runtime == "onnx" or runtime == "auto" and not onnx.torch_installed()
    if not wants_onnx and not onnx.torch_installed():  # name the extra before fetching a model for torch
        require("funasr" if installed("torch") else "torch", "asr", "Recognition with funasr")
    path = models.fetch(str(model), progress, runtime="onnx" if wants_onnx else "torch")
    choice = onnx.choose(runtime, path, architecture(path))
    engine: Decoder
    if choice.runtime == "onnx":  # onnxruntime, without torch (asr/onnx.py)
        if device not in ("auto", "cpu"):
            raise ModelLoadError(f"runtime='onnx' runs on the CPU, not {device!r}.", "Use device='cpu'.")
        spec = models.spec(str(model))
        loaded = onnx.load(path, architecture(path), spec.name if spec else path.name, choice)
        if loaded.architecture in STREAMING:  # asr/onnx_streaming.py
            engine = onnx_streaming.OnnxStreamingEngine(loaded, options)
        else:
            engine = onnx.OnnxSegmentEngine(loaded, options, progress, choice.precision)  # ct-punc too
    else:
        device = resolve_device(device)
        load = {k: bool(options.get(k)) for k in LOAD_OPTIONS}
        key = ("asr", str(path), device, *sorted(load.items()))
        loaded = _cache.shared(key, lambda: _load(model, path, device, progress, **load))
        engine_class = StreamingEngine if loaded.architecture in STREAMING else SegmentEngine
        engine = engine_class(loaded, options)
    engine.runtime = choice.info()
    return engine


def _two_pass(model, device: str, progress: Progress | None, options: dict) -> TwoPassEngine:
    options = dict(options)
    partials_model = str(options.pop("partials_model"))
    first = load_engine(partials_model, device, progress, runtime=options.get("runtime", "auto"))
    if not first.streaming:
        raise ModelLoadError(
            f"partials_model={partials_model!r} is not a streaming model.",
            "Use a streaming model for the partials (paraformer-zh-streaming).",
        )
    second = load_engine(model, device, progress, **options)
    if second.streaming:
        raise ModelLoadError(
            f"model={str(model)!r} is a streaming model: in 2-pass recognition it is the partials_model.",
            f"Transcriber(model='sensevoice-small', partials_model={str(model)!r})",
        )
    return TwoPassEngine(cast(Engine, first), cast(Engine, second))  # both local: no server= here


def _load(
    model: str, path: Path, device: str, progress: Progress | None, *, punctuation: bool, trust_remote_code: bool
) -> LoadedModel:
    spec = models.spec(model)
    name = spec.name if spec else path.name
    arch = architecture(path)
    extra: dict[str, object] = {}
    if not _torch.registered(arch):
        code = sorted(p.name for p in path.glob("*.py"))
        if not code:
            raise ModelLoadError(
                f"{path} holds a '{arch}' model, which the installed funasr does not know.",
                "Upgrade funasr: pip install -U funasr",
            )
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
            raise ModelLoadError(
                f"punctuation=True is for segment models, not {name}.", "Punctuate the final segment texts instead."
            )
        extra["punc_model"] = str(models.fetch("ct-punc", progress))
    if arch == nano.ARCHITECTURE:
        extra.update(nano.load_settings(path))  # the LLM folder by absolute path: never the hub
    if progress:
        progress(None, f"loading {name} on {device}")
    # CUDA out of memory or failing to start: the CPU instead, with a note (asr/device.py).
    auto, device, notes = load_with_fallback(
        lambda where: _torch.auto_model(path, where, trust_remote_code=trust_remote_code, **extra), device, name
    )
    if arch == nano.ARCHITECTURE:
        notes += nano.after_load(auto)
    return LoadedModel(auto, name=name, path=path, device=device, architecture=arch, notes=tuple(notes))


__all__ = [
    "ModelLoadError",
    "OPTIONS",
    "SegmentEngine",
    "StreamingEngine",
    "check_device",
    "check_model",
    "check_options",
    "load_engine",
    "resolve_device",
]
