"""Torch and funasr runtime shared by the VAD and ASR engines: device choice, thread
count, a quiet lazy ``import funasr`` and building an ``AutoModel`` with clear errors
(loaded models are kept in _cache.py).

Model-folder code runs only on the user's opt-in (``trust_remote_code=True``). funasr
merges a folder's config *under* the caller's kwargs, so :func:`auto_model` always
passes its own ``trust_remote_code``/``remote_code`` (and the sub-models' ones), refuses
the architectures that run a folder's transformers code unconditionally, and takes the
model folders back off ``sys.path`` (funasr appends them for good). Pickled code in a
``model.pt`` is stopped by torch's ``weights_only`` default, hence the torch floor.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .dependencies import require
from .errors import ModelLoadError
from .failures import model_failure


def threads() -> int:
    """Torch threads for inference: $FUNASR_WIDGET_THREADS, else every core this
    process may use. funasr's own default (4) is ~4x slower on a 2-core machine, and
    each AutoModel re-applies its count on every call, so all of ours pass this one."""
    configured = os.environ.get("FUNASR_WIDGET_THREADS")
    if configured:
        return max(int(configured), 1)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'. Asking for a GPU that is
    not there is an error: funasr would silently fall back to the CPU."""
    torch = require("torch", "asr", "Recognition with funasr")
    kind, _, index = device.partition(":")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device in ("cpu", "mps") and (device == "cpu" or torch.backends.mps.is_available()):
        return device
    if kind == "cuda" and (index == "" or index.isdigit()):
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device='{device}' was asked for, but PyTorch sees no CUDA GPU on this machine.",
                "Use device='cpu' (or 'auto'). For a GPU, install a CUDA build of torch "
                "(https://pytorch.org/get-started/locally/) on a machine that has one.",
            )
        count = torch.cuda.device_count()
        if int(index or 0) >= count:
            raise ModelLoadError(
                f"device='{device}' does not exist: PyTorch sees {count} GPU(s).",
                "Use device='cuda' for the first GPU.",
            )
        return device
    raise ModelLoadError(
        f"Device '{device}' is unknown or not available here.",
        "Use 'auto', 'cpu', 'cuda', 'cuda:N' or (on Apple silicon) 'mps'.",
    )


# --- keeping funasr's prints and logging setup out of the user's notebook -----------

_muted: dict[int, io.StringIO] = {}  # thread id -> what its prints went to
_mute_lock = threading.Lock()
_saved_logging: tuple = ()


class _ThreadMutedStdout:
    """sys.stdout stand-in that captures the prints of muted threads only, so a notebook
    cell printing while a model loads in the background still shows its output."""

    def __init__(self, target):
        self.target = target

    def write(self, text: str) -> int:
        captured = _muted.get(threading.get_ident())
        return (self.target if captured is None else captured).write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


def _from_loud_thread(record: logging.LogRecord) -> bool:
    """Root-logger filter: drop funasr's chatter (INFO, and WARNINGs such as
    'trust_remote_code: False') from muted threads; errors still show. funasr logs
    through the root logger, and another thread's load may have configured a handler."""
    return record.levelno >= logging.ERROR or record.thread not in _muted


@contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Capture this thread's prints (funasr prints notices to stdout) and undo funasr's
    ``logging.basicConfig`` on the root logger; yields what was printed."""
    global _saved_logging
    ident, captured = threading.get_ident(), io.StringIO()
    root = logging.getLogger()
    with _mute_lock:
        if not _muted:
            _saved_logging = (root.level, list(root.handlers))
            sys.stdout = _ThreadMutedStdout(sys.stdout)
            root.addFilter(_from_loud_thread)
        outer = _muted.get(ident)
        _muted[ident] = captured
    try:
        yield captured
    finally:
        with _mute_lock:
            if outer is None:
                del _muted[ident]
            else:
                _muted[ident] = outer
            if not _muted:
                root.removeFilter(_from_loud_thread)
                root.setLevel(_saved_logging[0])
                root.handlers[:] = _saved_logging[1]
                if isinstance(sys.stdout, _ThreadMutedStdout):
                    sys.stdout = sys.stdout.target


# --- torch must refuse pickled code in model files ---------------------------------

TORCH_FLOOR = (2, 6)
TORCH_UPGRADE = "pip install -U 'torch>=2.6'"
_TRUE = ("1", "y", "yes", "true")  # what torch reads as set


def check_torch_version(version: str) -> None:
    """ModelLoadError unless ``version`` is torch >= 2.6, the first whose ``torch.load``
    (which funasr calls without ``weights_only``) loads weights only by default."""
    found = re.match(r"\s*(\d+)\.(\d+)", str(version))
    if found and (int(found[1]), int(found[2])) >= TORCH_FLOOR:
        return
    which = f"PyTorch {version} is" if found else f"PyTorch's version ({version!r}) is unreadable, so it may be"
    raise ModelLoadError(
        f"{which} too old to load models safely: before 2.6, torch.load (which "
        "funasr uses for model.pt) unpickles any Python object, so a model file could run "
        "code in this kernel.",
        f"Upgrade PyTorch: {TORCH_UPGRADE}  (then restart the kernel).",
    )


def check_weights_only(environ: Mapping[str, str] = os.environ) -> None:
    """ModelLoadError if TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD switches torch's guard off."""
    if environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0").lower() in _TRUE:
        raise ModelLoadError(
            "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is set: torch.load would then unpickle any Python "
            "object, so a model file could run code in this kernel.",
            "Unset TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD and restart the kernel, or (only for model "
            "folders you trust) pass trust_remote_code=True.",
        )


def auto_model_class():
    """funasr's AutoModel, imported on first use: the import takes seconds and prints."""
    torch = require("torch", "asr", "Recognition with funasr")
    check_torch_version(torch.__version__)
    with quiet():
        AutoModel = require("funasr", "asr", "Recognition with funasr").AutoModel
        fbank = require("funasr.utils.fbank", "asr", "Recognition with funasr")
    # Without an fbank backend funasr loads models, then fails on every decode.
    if not getattr(fbank, "_HAS_TORCHAUDIO", True) and getattr(fbank, "_knf", True) is None:
        raise ModelLoadError(
            "funasr has no fbank backend (torchaudio or kaldi-native-fbank).",
            "pip install kaldi-native-fbank (or pip install 'funasr-widget[asr]'), then restart the kernel",
            code="asr-missing",
        )
    return AutoModel


def registered(architecture: str) -> bool:
    """Does the installed funasr ship this model class?"""
    auto_model_class()
    from funasr.register import tables

    return architecture in tables.model_classes


# --- model-folder code: off unless the user opted in --------------------------------

SUB_MODELS = {"vad_model": "vad_kwargs", "punc_model": "punc_kwargs", "spk_model": "spk_kwargs"}
# Registered funasr architectures that load the folder through transformers with
# trust_remote_code=True hard-coded (funasr/models/{qwen_audio,glm_asr,
# moss_transcribe_diarize}/model.py): they run the folder's code whatever is passed.
RUNS_FOLDER_CODE = {"QwenAudioWarp", "QwenAudioChatWarp", "GLMASR", "MossTranscribeDiarize"}
OPT_IN_HINT = (
    "Only if you trust where this folder came from, pass trust_remote_code=True: "
    "its Python code then runs in this kernel, and funasr pip-installs its "
    "requirements.txt."
)


def _config_trees(folder: Path) -> list:
    """What funasr merges from ``folder``: configuration.json's file_path_metas and the
    config YAML it names, else config.yaml (as funasr.download.download_from_ms does)."""
    from omegaconf import OmegaConf

    def load(yaml_path: Path) -> Any:
        return OmegaConf.to_container(OmegaConf.load(yaml_path), resolve=False)

    try:
        if (folder / "configuration.json").is_file():
            metas = json.loads((folder / "configuration.json").read_text(encoding="utf-8"))
            metas = metas.get("file_path_metas") if isinstance(metas, dict) else None
            trees = [metas] if metas else []
            config = metas.get("config") if isinstance(metas, dict) else None
            if isinstance(config, str) and (folder / config).is_file():
                trees.append(load(folder / config))
            return trees
        if (folder / "config.yaml").is_file():
            return [load(folder / "config.yaml")]
    except Exception as exc:
        raise ModelLoadError(
            f"Cannot read the model's config in {folder}: {exc}", "Fetch or copy the model folder again."
        ) from exc
    return []


def _distrusted(folder: Path) -> dict:
    """Overrides that turn off every nested ``trust_remote_code`` in ``folder``'s config
    (e.g. ``llm_conf.load_kwargs``, handed to transformers); ModelLoadError for an
    architecture that runs folder code anyway, or a switch inside a list (which a merge
    cannot override)."""
    from funasr.register import tables

    overrides: dict = {}

    def walk(node: Any, keys: tuple, in_list: bool) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            if key == "trust_remote_code" and keys:
                if in_list:
                    raise ModelLoadError(
                        f"The config in {folder} switches trust_remote_code on inside a list "
                        f"({'.'.join(map(str, keys))}), which could run the folder's code.",
                        OPT_IN_HINT,
                    )
                target = overrides
                for k in keys:
                    target = target.setdefault(k, {})
                target[key] = False
            walk(value, (*keys, key), in_list or isinstance(node, list))

    for tree in _config_trees(folder):
        walk(tree, (), False)
        model_class = (
            tables.model_classes.get(tree.get("model"))
            if isinstance(tree, dict) and isinstance(tree.get("model"), str)
            else None
        )
        if getattr(model_class, "__name__", None) in RUNS_FOLDER_CODE:
            raise ModelLoadError(
                f"{folder} holds a '{tree['model']}' model: funasr loads it through transformers "
                "with trust_remote_code=True, which runs Python code from the folder.",
                OPT_IN_HINT,
            )
    return overrides


def _merge(base: dict, overrides: dict) -> dict:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(dict(base[key]), value)
        else:
            base[key] = value
    return base


def _opted_in_code(folder: Path) -> str | None:
    """The code file funasr should import for an opted-in folder: the config's
    ``remote_code`` taken relative to the folder (funasr would take it relative to the
    current directory), else the folder's model.py."""
    trees = [t for t in _config_trees(folder) if isinstance(t, dict)]
    configured = next((t["remote_code"] for t in trees if t.get("remote_code")), None)
    if (
        isinstance(configured, str)
        and not configured.startswith("http")
        and not os.path.isabs(configured)
        and (folder / configured).is_file()
    ):
        return str((folder / configured).resolve())
    if configured is None and (folder / "model.py").is_file():
        return str((folder / "model.py").resolve())
    return None


def code_settings(path: Path, trust_remote_code: bool, kwargs: dict) -> dict:
    """``kwargs`` plus what decides whether funasr imports folder code or pip-installs a
    requirements.txt: ``trust_remote_code`` as the user chose, ``remote_code`` (None
    unless opted in), nested switches off, sub-models only where the caller names them,
    each with trust_remote_code=False."""
    settings = dict(kwargs)
    settings["trust_remote_code"] = bool(trust_remote_code)
    if trust_remote_code:
        code = settings.get("remote_code") or _opted_in_code(path)
        if code:
            settings["remote_code"] = code
    else:
        settings["remote_code"] = None
        _merge(settings, _distrusted(path))
    for model_key, kwargs_key in SUB_MODELS.items():
        settings.setdefault(model_key, None)  # a folder's config cannot add a sub-model
        sub = dict(settings.get(kwargs_key) or {})
        folder = settings[model_key]
        if isinstance(folder, (str, os.PathLike)) and Path(folder).is_dir():
            _merge(sub, _distrusted(Path(folder)))
            sub["model_path"] = str(folder)  # the main config cannot redirect it
        sub.update(trust_remote_code=False, remote_code=None)
        settings[kwargs_key] = sub
    return settings


def _code_dirs(path: Path, settings: dict) -> set[str]:
    """Folders funasr may have put on sys.path for this load: the model folders, their
    parents, and the folder of the remote code."""
    dirs = [Path(path)]
    dirs += [
        Path(settings[k])
        for k in SUB_MODELS
        if isinstance(settings.get(k), (str, os.PathLike)) and Path(settings[k]).is_dir()
    ]
    found = {str(p) for d in dirs for p in (d.resolve(), *d.resolve().parents)}
    if isinstance(settings.get("remote_code"), str):
        found.add(os.path.dirname(os.path.abspath(settings["remote_code"])))
    return found


def _forget_paths(before: list[str], code_dirs: set[str]) -> None:
    """Take off sys.path what this load added in ``code_dirs`` (or relative entries such
    as './', which funasr appends for a bare file name); keep everything else."""
    seen = Counter(before)
    kept = []
    for entry in sys.path:  # funasr appends: the first copies are the ones from before
        if seen[entry] > 0:
            seen[entry] -= 1
        elif isinstance(entry, str) and (not os.path.isabs(entry) or os.path.abspath(entry) in code_dirs):
            continue
        kept.append(entry)
    if len(kept) != len(sys.path):
        sys.path[:] = kept


def _load_error(path: Path, exc: BaseException) -> ModelLoadError:
    cause: BaseException | None = exc
    while cause is not None:
        # A class or function named in the pickle ("Unsupported global"): code, not weights.
        # Other weights-only failures ("Unsupported operand") are damaged files.
        if isinstance(cause, pickle.UnpicklingError) and "Unsupported global" in str(cause):
            detail = next(line for line in str(cause).splitlines() if "Unsupported global" in line)
            return ModelLoadError(
                f"A model file in {path} is not plain weights: it holds pickled Python "
                "objects, which would run code in this kernel, so PyTorch refused to load it "
                f"({detail.strip()}).",
                "Use model files only from a source you trust; fetch this model again from its official hub page.",
            )
        cause = cause.__cause__ or cause.__context__
    known = model_failure(exc, path)
    if known is not None:
        code, message, hint = known
        return ModelLoadError(message, hint, code=code)
    return ModelLoadError(
        f"Could not load the model in {path}: {type(exc).__name__}: {exc}",
        "Its files may be incomplete or corrupt (an interrupted download?): delete the "
        "folder, then fetch or copy the model again.",
    )


def auto_model(path: Path, device: str, *, trust_remote_code: bool = False, **kwargs) -> Any:
    """``AutoModel`` for a local folder, offline and quiet; failures -> ModelLoadError.
    The folder's own code runs only with ``trust_remote_code=True`` (see code_settings);
    the folder is not left on sys.path either way."""
    AutoModel = auto_model_class()
    if not trust_remote_code:
        check_weights_only()
    path = Path(path)
    settings = code_settings(path, trust_remote_code, kwargs)
    before = list(sys.path)
    try:
        with quiet():
            model = AutoModel(
                model=str(path),
                device=device,
                ncpu=threads(),
                disable_update=True,
                disable_pbar=True,
                disable_log=True,
                log_level="ERROR",
                **settings,
            )
    except Exception as exc:
        raise _load_error(path, exc) from exc
    finally:
        _forget_paths(before, _code_dirs(path, settings))
    # Dither adds random noise to the features (a training aid): off, so the same
    # audio gives the same text on every path (live, offline, funasr's own). funasr
    # restores its kwargs from a snapshot before every generate(), so the snapshot's
    # frontend needs it too.
    for kwargs in [model.kwargs, *getattr(model, "_base_kwargs_map", {}).values()]:
        frontend = kwargs.get("frontend")
        if frontend is not None and hasattr(frontend, "dither"):
            frontend.dither = 0.0
    return model
