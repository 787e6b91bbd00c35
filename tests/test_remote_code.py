"""Model-folder code runs only on the user's opt-in: a folder's config cannot switch
funasr's trust_remote_code on, nothing is pip-installed, model folders do not stay on
sys.path, and a pickled model.pt that would run code is refused (torch >= 2.6).

The folders are copies of the tiny random SenseVoice (and the real FSMN-VAD) from
conftest's model_store, given an evil.py that writes a marker file when imported, a
requirements.txt naming a package that does not exist, and a fake ``pip``/``uv`` first
on PATH that writes a marker when funasr runs it."""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from funasr_widget import _torch
from funasr_widget.asr import load_engine
from funasr_widget.models import ModelLoadError
from funasr_widget.vad.fsmn import FsmnVad

NO_SUCH_PACKAGE = "funasr-widget-no-such-package-8d1c3f"


@pytest.fixture
def markers(tmp_path, monkeypatch):
    """Where evil code leaves its traces; a fake pip and uv first on PATH (funasr runs
    ``pip install -r requirements.txt`` through whichever it finds)."""
    found = tmp_path / "markers"
    found.mkdir()
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("pip", "uv"):
        (tools / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{found / "pip-ran"}"\n')
        (tools / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    yield found
    sys.modules.pop("evil", None)  # the opted-in test imports it


def plant(folder: Path, markers: Path, config_file: str = "config.yaml") -> Path:
    """Make ``folder``'s config ask funasr to import evil.py and pip-install a package."""
    config = yaml.safe_load((folder / config_file).read_text())
    config.update(
        trust_remote_code=True,
        remote_code="./evil.py",
        # a nested switch of the kind funasr hands to transformers (Fun-ASR-Nano)
        llm_conf={"load_kwargs": {"trust_remote_code": True}},
    )
    (folder / config_file).write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / "evil.py").write_text(
        f"from pathlib import Path\nPath({str(markers / 'imported')!r}).write_text('ran')\n"
    )
    (folder / "requirements.txt").write_text(NO_SUCH_PACKAGE + "\n")
    return folder


@pytest.fixture
def evil_sensevoice(model_store, tmp_path, markers):
    folder = tmp_path / "evil-sensevoice"
    shutil.copytree(model_store / "sensevoice-small", folder)
    return plant(folder, markers)


def on_sys_path(folder: Path) -> list[str]:
    inside = {str(folder.resolve()), *(str(p) for p in folder.resolve().parents)}
    return [p for p in sys.path if isinstance(p, str) and os.path.abspath(p) in inside or p in ("./", ".")]


def assert_nothing_ran(markers: Path, folder: Path, before: list[str]) -> None:
    assert not (markers / "imported").exists(), "the folder's evil.py was imported"
    assert not (markers / "pip-ran").exists(), "funasr ran pip on the folder's requirements.txt"
    assert "evil" not in sys.modules
    assert [p for p in on_sys_path(folder) if p not in before] == []


def test_folder_config_cannot_switch_remote_code_on_via_load_engine(evil_sensevoice, markers):
    before = list(sys.path)
    engine = load_engine(str(evil_sensevoice), "cpu")
    assert_nothing_ran(markers, evil_sensevoice, before)
    kwargs = engine.model.kwargs
    assert kwargs["trust_remote_code"] is False and kwargs["remote_code"] is None
    assert kwargs["llm_conf"]["load_kwargs"]["trust_remote_code"] is False
    assert isinstance(engine.transcribe(np.zeros(8000, np.float32))["text"], str)  # it works
    assert_nothing_ran(markers, evil_sensevoice, before)


def test_folder_config_cannot_switch_remote_code_on_via_auto_model(evil_sensevoice, markers):
    before = list(sys.path)
    model = _torch.auto_model(evil_sensevoice, "cpu")
    assert_nothing_ran(markers, evil_sensevoice, before)
    assert model.kwargs["trust_remote_code"] is False
    # a sub-model the folder's config names is not loaded either
    assert model.vad_model is None and model.punc_model is None and model.spk_model is None


def test_fsmn_vad_folder_config_cannot_switch_remote_code_on(model_store, tmp_path, markers):
    folder = tmp_path / "evil-fsmn-vad"
    shutil.copytree(model_store / "fsmn-vad", folder)
    assert json.loads((folder / "configuration.json").read_text())["file_path_metas"]["config"]
    plant(folder, markers)  # configuration.json -> config.yaml: funasr's other config path
    before = list(sys.path)
    vad = FsmnVad(model=str(folder), device="cpu")
    vad.accept(np.zeros(16000, np.float32), final=True)
    assert_nothing_ran(markers, folder, before)


def test_opting_in_runs_the_code_and_leaves_no_folder_on_sys_path(evil_sensevoice, markers):
    """The control: the planted folder really would run code, and trust_remote_code=True
    (the user's opt-in) is what lets it; the folder still leaves sys.path afterwards."""
    before = list(sys.path)
    _torch.auto_model(evil_sensevoice, "cpu", trust_remote_code=True)
    assert (markers / "imported").read_text() == "ran"  # ./evil.py, taken in the folder
    assert f"install -r {evil_sensevoice / 'requirements.txt'}" in (markers / "pip-ran").read_text()
    assert [p for p in on_sys_path(evil_sensevoice) if p not in before] == []


class RunsCode:
    """Unpickling this runs code: what a malicious model.pt holds."""

    marker = ""

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def test_a_pickled_model_file_that_runs_code_is_refused(model_store, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(model_store / "sensevoice-small", folder)
    marker = tmp_path / "unpickled"
    payload = RunsCode()
    payload.marker = str(marker)
    torch.save({"state_dict": payload}, folder / "model.pt")
    torch.load(folder / "model.pt", weights_only=False)  # the control: it does run code
    assert marker.read_text() == "ran"
    marker.unlink()

    with pytest.raises(ModelLoadError) as err:
        load_engine(str(folder), "cpu")
    assert not marker.exists()
    assert "pickled Python objects" in err.value.message and "refused" in err.value.message
    assert str(folder) in err.value.message and "trust" in err.value.hint


def test_torch_version_floor():
    for good in ("2.6.0", "2.6.0a0+git1234", "2.13.0+cpu", "3.0"):
        _torch.check_torch_version(good)
    for old in ("2.5.1", "2.5.1+cu121", "1.13.1", "not a version"):
        with pytest.raises(ModelLoadError) as err:
            _torch.check_torch_version(old)
        assert "pip install -U 'torch>=2.6'" in err.value.hint
        assert "run code" in err.value.message


def test_old_torch_is_refused_before_any_model_loads(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(ModelLoadError, match="2.5.1 is too old"):
        _torch.auto_model_class()


def test_torch_weights_only_switched_off_is_refused(model_store, monkeypatch):
    _torch.check_weights_only({})
    _torch.check_weights_only({"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "0"})
    with pytest.raises(ModelLoadError, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        _torch.check_weights_only({"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "true")
    with pytest.raises(ModelLoadError, match="TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        _torch.auto_model(model_store / "sensevoice-small", "cpu")


def folder_with(tmp_path: Path, config: dict) -> Path:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "model.pt").write_bytes(b"")
    return folder


def test_code_settings_switch_off_what_the_config_switches_on(tmp_path):
    _torch.auto_model_class()  # funasr's registry
    folder = folder_with(
        tmp_path,
        {
            "model": "SenseVoiceSmall",
            "trust_remote_code": True,
            "remote_code": "x.py",
            "vad_model": "fsmn-vad",
            "punc_kwargs": {"model_path": "/elsewhere"},
            "encoder_conf": {"deep": {"trust_remote_code": "yes"}, "other": 1},
        },
    )
    punc = tmp_path / "punc"
    shutil.copytree(folder, punc)
    settings = _torch.code_settings(folder, False, {"punc_model": str(punc)})
    assert settings["trust_remote_code"] is False and settings["remote_code"] is None
    assert settings["encoder_conf"] == {"deep": {"trust_remote_code": False}}  # merged over
    assert settings["vad_model"] is None and settings["spk_model"] is None
    assert settings["punc_kwargs"] == {
        "model_path": str(punc),
        "trust_remote_code": False,
        "remote_code": None,
        "encoder_conf": {"deep": {"trust_remote_code": False}},
    }
    assert settings["vad_kwargs"] == {"trust_remote_code": False, "remote_code": None}
    # opted in: the folder's remote_code, taken in the folder (funasr: in the cwd)
    (folder / "x.py").write_text("")
    settings = _torch.code_settings(folder, True, {})
    assert settings["trust_remote_code"] is True
    assert settings["remote_code"] == str((folder / "x.py").resolve())
    assert "encoder_conf" not in settings


@pytest.mark.parametrize(
    "config",
    [
        {"model": "GLMASR"},  # funasr loads it with transformers' trust_remote_code=True
        {"model": "zai-org/GLM-ASR-Nano-2512"},  # the same class under another name
        {"model": "SenseVoiceSmall", "tokenizer_conf": [{"trust_remote_code": True}]},
    ],
)
def test_configs_that_would_run_folder_code_anyway_are_refused(tmp_path, config):
    _torch.auto_model_class()
    folder = folder_with(tmp_path, config)
    with pytest.raises(ModelLoadError) as err:
        _torch.auto_model(folder, "cpu")
    assert "trust_remote_code=True" in err.value.hint
    _torch.code_settings(folder, True, {})  # the user's opt-in lets it through


def test_forget_paths_keeps_what_others_added(monkeypatch, tmp_path):
    folder = tmp_path / "models" / "m"
    folder.mkdir(parents=True)
    before = ["/usr/lib/python3", str(folder)]  # already there: stays, once
    monkeypatch.setattr(
        sys,
        "path",
        [*before, "/other/package", str(folder), "./", str(tmp_path / "models"), str(tmp_path / "elsewhere")],
    )
    _torch._forget_paths(before, _torch._code_dirs(folder, {}))
    assert sys.path == ["/usr/lib/python3", str(folder), "/other/package", str(tmp_path / "elsewhere")]
