"""Model names, the local folders they live in, and downloading them.

Every model is an ordinary FunASR model folder (config.yaml or configuration.json,
model.pt, tokenizer files, am.mvn) under :func:`models_dir`, named by its short name::

    models/sensevoice-small/   models/fsmn-vad/   ...

:func:`fetch` downloads a missing folder from ModelScope with progress, and fails at
once, naming the folder to fill by hand, when ModelScope cannot be reached. Anything
that is not a short name or a hub id is taken as a path to a model folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _cache
from .dependencies import require
from .errors import ModelLoadError

Progress = Callable[[float | None, str], None]
"""``progress(fraction or None, message)``: fraction in 0..1 when known."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    hub_id: str  # ModelScope id
    kind: str  # "asr" | "vad" | "punc"
    streaming: bool = False


REGISTRY = {
    spec.name: spec
    for spec in (
        ModelSpec("fun-asr-nano", "FunAudioLLM/Fun-ASR-Nano-2512", "asr"),
        ModelSpec("sensevoice-small", "iic/SenseVoiceSmall", "asr"),
        ModelSpec(
            "paraformer-zh", "iic/speech_seaco_paraformer_large_asr_nat-zh-cn-16k-common-vocab8404-pytorch", "asr"
        ),
        ModelSpec(
            "paraformer-zh-streaming",
            "iic/speech_paraformer-large_asr_nat-zh-cn-16k-common-vocab8404-online",
            "asr",
            streaming=True,
        ),
        ModelSpec("fsmn-vad", "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch", "vad"),
        ModelSpec("ct-punc", "iic/punc_ct-transformer_cn-en-common-vocab471067-large", "punc"),
    )
}
_BY_HUB_ID = {spec.hub_id: spec for spec in REGISTRY.values()}

_models_dir: Path | None = None


def models_dir() -> Path:
    """Where model folders live: set_models_dir(), else $FUNASR_WIDGET_MODELS, else
    ./models if the current directory has one, else ~/.cache/funasr-widget/models."""
    if _models_dir is not None:
        return _models_dir
    if os.environ.get("FUNASR_WIDGET_MODELS"):
        return Path(os.environ["FUNASR_WIDGET_MODELS"]).expanduser()
    if Path("models").is_dir():
        return Path("models").resolve()
    return Path.home() / ".cache" / "funasr-widget" / "models"


def set_models_dir(path: str | os.PathLike | None) -> None:
    """Use ``path`` for model folders from now on (None: back to the default)."""
    global _models_dir
    _models_dir = None if path is None else Path(path).expanduser().resolve()


def spec(name: str) -> ModelSpec | None:
    """The registry entry for a short name or hub id, or None."""
    return REGISTRY.get(name) or _BY_HUB_ID.get(name)


# The hub's ONNX exports of the registered models (FunASR's own export, int8 model_quant.onnx),
# for fetch(name, runtime="onnx"). These two are exported locally instead (`models export`):
# paraformer-zh (SeACo), because the hub's ONNX Paraformer is another model (no hotwords), and
# paraformer-zh-streaming, because the hub's -online-onnx export has no encoder look-back caches
# and so cannot give the torch path's text (export_streaming.py writes graphs that have them).
ONNX_HUB = {
    "sensevoice-small": "iic/SenseVoiceSmall-onnx",
    "fsmn-vad": "iic/speech_fsmn_vad_zh-cn-16k-common-onnx",
    "ct-punc": "iic/punc_ct-transformer_cn-en-common-vocab471067-large-onnx",
}
ONNX_FILES = ("model.onnx", "model_quant.onnx")


def _has_onnx(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ONNX_FILES)


def _complete(folder: Path) -> bool:
    """A config and weights: model.pt, or an ONNX export (a hub ``-onnx`` folder has no model.pt)."""
    has_config = (folder / "config.yaml").is_file() or (folder / "configuration.json").is_file()
    return has_config and ((folder / "model.pt").is_file() or _has_onnx(folder))


def _fill_by_hand(s: ModelSpec, folder: Path) -> str:
    return (
        f"Download {s.hub_id} on a machine with network access "
        f"(https://modelscope.cn/models/{s.hub_id}) and copy its files into {folder}"
    )


def resolve(name: str) -> Path:
    """The local folder of a model (short name, hub id or path); never downloads."""
    s = spec(name)
    folder = models_dir() / s.name if s else Path(name).expanduser()
    if _complete(folder):
        return folder.resolve()
    if s:
        raise ModelLoadError(
            f"Model '{s.name}' is not in {folder}.",
            f"Run funasr_widget.models.fetch('{s.name}') to download it, or " + _fill_by_hand(s, folder) + ".",
            code="model-missing",
        )
    if folder.is_dir():
        raise ModelLoadError(
            f"{folder} is not a complete model folder: it needs config.yaml (or configuration.json) and model.pt.",
            "The download may have been interrupted: fetch or copy the model again.",
            code="weights-missing",
        )
    raise ModelLoadError(
        f"Unknown model '{name}': not a model name and no such folder.",
        f"Use one of {', '.join(REGISTRY)}, or the path of a local model folder.",
        code="model-missing",
    )


def available() -> list[dict]:
    """One dict per registered model: name, hub_id, kind, streaming, present, path."""
    root = models_dir()
    return [
        {
            "name": s.name,
            "hub_id": s.hub_id,
            "kind": s.kind,
            "streaming": s.streaming,
            "present": _complete(root / s.name),
            "path": str(root / s.name),
        }
        for s in REGISTRY.values()
    ]


# ASR models by preference when none is named: on a GPU the LLM-based Fun-ASR-Nano is
# affordable; on a CPU SenseVoiceSmall decodes a segment in a fraction of its length.
PREFERENCE = {
    "cuda": ("fun-asr-nano", "sensevoice-small", "paraformer-zh"),
    "cpu": ("sensevoice-small", "paraformer-zh", "fun-asr-nano"),
}


def default_model(device: str = "cpu") -> str:
    """The ASR model for ``device``: the most preferred one already present, else the
    most preferred one (to be fetched)."""
    order = PREFERENCE["cuda" if device.startswith("cuda") else "cpu"]
    return next((name for name in order if _complete(models_dir() / name)), order[0])


def hub_host() -> tuple[str, int]:
    """The host a download talks to first: the HTTPS proxy if one is set, else ModelScope."""
    proxy = urllib.request.getproxies().get("https")
    if proxy:
        url = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        return url.hostname or "", url.port or 443
    return os.environ.get("MODELSCOPE_DOMAIN", "www.modelscope.cn"), 443


def reachable(timeout: float = 3.0) -> bool:
    """Can a TCP connection to the hub be opened within ``timeout`` seconds?

    Runs in a thread so a hanging DNS lookup cannot stretch the wait (the hub client
    itself retries for ~20 s and then reports a misleading error)."""
    ok = []

    def probe() -> None:
        try:
            socket.create_connection(hub_host(), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(ok)


def _download(hub_id: str, dest: Path, progress: Progress) -> None:
    """Download a ModelScope repository into ``dest``, reporting bytes as they arrive."""
    ProgressCallback: Any = require("modelscope.hub.callback", "asr", "Downloading a model").ProgressCallback
    hub = require("modelscope.hub.snapshot_download", "asr", "Downloading a model")

    sizes: dict[str, int] = {}
    done: dict[str, int] = {}
    lock = threading.Lock()

    class Report(ProgressCallback):  # modelscope makes one per file
        def __init__(self, filename: str, file_size: int):
            super().__init__(filename, file_size)
            with lock:
                sizes[filename], done[filename] = file_size, 0

        def update(self, size: int) -> None:
            with lock:
                done[self.filename] += size
                fraction = sum(done.values()) / max(sum(sizes.values()), 1)
            progress(min(fraction, 1.0), f"downloading {self.filename}")

    hub.snapshot_download(hub_id, local_dir=str(dest), progress_callbacks=[Report])


def loaded() -> list[str]:
    """The model folders loaded in this kernel, as "folder on device"."""
    return [f"{key[1]} on {key[2]}" for key in _cache.loaded()]


def release(name: str | os.PathLike | None = None) -> int:
    """Free the loaded copies of one model (a name, hub id or folder), or of every model
    (None): widgets using them keep working, the next load reads the files again.
    Returns how many were released."""
    if name is None:
        return _cache.release(lambda key: False)
    s = spec(str(name))
    folder = str((models_dir() / s.name if s else Path(name).expanduser()).resolve())
    return _cache.release(lambda key: key[1] != folder)


def fetch(name: str, progress: Progress | None = None, runtime: str = "torch") -> Path:
    """The local folder of a model, downloading a registered one from ModelScope if it
    is missing. Without network it fails at once, naming the folder to fill by hand.

    ``runtime="onnx"``: the folder must hold an ONNX export (model.onnx or model_quant.onnx);
    a missing one comes from the hub's ONNX repository (ONNX_HUB) into the same folder, and a
    model the hub has none for gets the command that writes it (funasr_widget/export.py)."""
    if runtime not in ("torch", "onnx"):
        raise ValueError(f"runtime must be 'torch' or 'onnx', got {runtime!r}")
    s = spec(name)
    if runtime == "onnx":
        return _fetch_onnx(name, s, progress)
    if s is None or _complete(models_dir() / s.name):
        return resolve(name)
    folder = models_dir() / s.name
    if not reachable():
        host, port = hub_host()
        raise ModelLoadError(
            f"Model '{s.name}' is not in {folder}, and {host}:{port} cannot be reached to download it.",
            _fill_by_hand(s, folder) + ".",
            code="model-missing",
        )
    report = progress or (lambda fraction, message: None)
    partial = folder.with_name(folder.name + ".partial")  # never looks complete half-way
    report(0.0, f"downloading {s.hub_id}")
    try:
        _download(s.hub_id, partial, report)
    except Exception as exc:
        raise ModelLoadError(
            f"Downloading {s.hub_id} failed: {exc}",
            "Try again, or " + _fill_by_hand(s, folder) + ".",
            code="download-failed",
        ) from exc
    if not _complete(partial):
        raise ModelLoadError(
            f"The download of {s.hub_id} has no config.yaml/model.pt.",
            _fill_by_hand(s, folder) + ".",
            code="weights-missing",
        )
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    report(1.0, f"downloaded {s.name}")
    return folder.resolve()


def _fetch_onnx(name: str, s: ModelSpec | None, progress: Progress | None) -> Path:
    if s is None:
        return resolve(name)  # a folder of the user's: nothing to download (asr/onnx.py checks it)
    folder = models_dir() / s.name
    if _complete(folder) and (_has_onnx(folder) or s.name not in ONNX_HUB):
        return folder.resolve()
    export = f"python -m funasr_widget.models export {s.name} --quantize"
    if s.name not in ONNX_HUB:
        raise ModelLoadError(
            f"Model '{s.name}' is not in {folder}, and the hub publishes no ONNX export of it that this runtime runs.",
            f"Where torch and funasr are installed: funasr_widget.models.fetch('{s.name}'), then {export}",
            code="onnx-missing",
        )
    hub_id = ONNX_HUB[s.name]
    if not reachable():
        host, port = hub_host()
        raise ModelLoadError(
            f"{folder} has no ONNX export, and {host}:{port} cannot be reached to download {hub_id}.",
            f"Download {hub_id} on a machine with network access (https://modelscope.cn/models/{hub_id}) "
            f"and copy its files into {folder}; or, where torch and funasr are installed: {export}",
            code="model-missing",
        )
    report = progress or (lambda fraction, message: None)
    partial = folder.with_name(folder.name + ".onnx-partial")
    report(0.0, f"downloading {hub_id}")
    try:
        _download(hub_id, partial, report)
    except Exception as exc:
        raise ModelLoadError(
            f"Downloading {hub_id} failed: {exc}",
            f"Try again, or write the export locally: {export}",
            code="download-failed",
        ) from exc
    if not (_complete(partial) and _has_onnx(partial)):
        raise ModelLoadError(
            f"The download of {hub_id} has no config.yaml and model.onnx / model_quant.onnx.",
            f"Write the export locally: {export}",
            code="weights-missing",
        )
    if _complete(folder):  # a torch folder already: add the hub's files it lacks, the .onnx last
        for file in sorted(partial.iterdir(), key=lambda p: p.suffix == ".onnx"):
            if not (folder / file.name).exists():
                file.rename(folder / file.name)
        shutil.rmtree(partial, ignore_errors=True)
    else:
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)
    report(1.0, f"downloaded {hub_id}")
    return folder.resolve()


if __name__ == "__main__":  # python -m funasr_widget.models export NAME_OR_FOLDER [--quantize]
    import sys

    if sys.argv[1:2] != ["export"]:
        sys.exit("usage: python -m funasr_widget.models export NAME_OR_FOLDER [--quantize]")
    from funasr_widget.export import main

    main(sys.argv[2:])
