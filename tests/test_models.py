"""The model registry: names, folders, availability and fetching (the download itself
is replaced; everything around it is real)."""

import socket
import time

import pytest

from funasr_widget import models
from funasr_widget.models import ModelLoadError


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "_models_dir", tmp_path)
    return tmp_path


def place(folder, config="config.yaml"):
    folder.mkdir(parents=True)
    (folder / config).write_text("model: X\n")
    (folder / "model.pt").write_bytes(b"weights")
    return folder


def test_models_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "_models_dir", None)
    monkeypatch.delenv("FUNASR_WIDGET_MODELS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert models.models_dir() == models.Path.home() / ".cache" / "funasr-widget" / "models"
    (tmp_path / "models").mkdir()
    assert models.models_dir() == tmp_path / "models"
    monkeypatch.setenv("FUNASR_WIDGET_MODELS", str(tmp_path / "env"))
    assert models.models_dir() == tmp_path / "env"
    models.set_models_dir(tmp_path / "chosen")
    assert models.models_dir() == tmp_path / "chosen"
    models.set_models_dir(None)
    assert models.models_dir() == tmp_path / "env"


def test_available_lists_every_model_with_its_state(store):
    place(store / "fsmn-vad", config="configuration.json")
    rows = {row["name"]: row for row in models.available()}
    assert set(rows) == {"fun-asr-nano", "sensevoice-small", "paraformer-zh",
                         "paraformer-zh-streaming", "fsmn-vad", "ct-punc"}
    assert rows["fsmn-vad"]["present"] and not rows["sensevoice-small"]["present"]
    assert rows["paraformer-zh-streaming"]["streaming"] and rows["ct-punc"]["kind"] == "punc"
    assert rows["sensevoice-small"]["hub_id"] == "iic/SenseVoiceSmall"
    assert rows["fsmn-vad"]["path"] == str(store / "fsmn-vad")


def test_resolve_names_hub_ids_and_paths(store, tmp_path):
    folder = place(store / "sensevoice-small")
    assert models.resolve("sensevoice-small") == folder
    assert models.resolve("iic/SenseVoiceSmall") == folder
    assert models.resolve(str(folder)) == folder
    with pytest.raises(ModelLoadError) as err:
        models.resolve("paraformer-zh")
    assert str(store / "paraformer-zh") in err.value.hint and "fetch(" in err.value.hint


def test_default_model_prefers_what_is_present(store):
    assert models.default_model("cpu") == "sensevoice-small"
    assert models.default_model("cuda") == "fun-asr-nano"
    place(store / "paraformer-zh")
    assert models.default_model("cpu") == "paraformer-zh"
    assert models.default_model("cuda:0") == "paraformer-zh"


def test_fetch_offline_fails_at_once_naming_the_folder(store, monkeypatch):
    monkeypatch.setattr(models, "reachable", lambda timeout=3.0: False)
    started = time.monotonic()
    with pytest.raises(ModelLoadError) as err:
        models.fetch("fsmn-vad")
    assert time.monotonic() - started < 1.0
    assert str(store / "fsmn-vad") in err.value.hint
    assert "iic/speech_fsmn_vad_zh-cn-16k-common-pytorch" in err.value.hint


def test_fetch_downloads_into_the_models_dir_with_progress(store, monkeypatch):
    def download(hub_id, dest, progress):
        assert hub_id == "iic/SenseVoiceSmall"
        place(dest)
        progress(0.5, "downloading model.pt")

    monkeypatch.setattr(models, "reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(models, "_download", download)
    reports = []
    folder = models.fetch("sensevoice-small", progress=lambda f, m: reports.append(f))
    assert folder == store / "sensevoice-small" and (folder / "model.pt").is_file()
    assert reports == [0.0, 0.5, 1.0]
    assert not (store / "sensevoice-small.partial").exists()
    assert models.fetch("sensevoice-small") == folder  # present: no second download


def test_fetch_failure_keeps_nothing_that_looks_complete(store, monkeypatch):
    def download(hub_id, dest, progress):
        dest.mkdir()
        (dest / "config.yaml").write_text("model: X\n")
        raise OSError("connection reset")

    monkeypatch.setattr(models, "reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(models, "_download", download)
    with pytest.raises(ModelLoadError, match="connection reset"):
        models.fetch("ct-punc")
    assert not {row["name"]: row for row in models.available()}["ct-punc"]["present"]


def test_reachable_probes_the_hub_host(monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    monkeypatch.setattr(models, "hub_host", lambda: ("127.0.0.1", port))
    assert models.reachable()
    server.close()
    started = time.monotonic()
    assert not models.reachable(timeout=1.0)
    assert time.monotonic() - started < 1.5


def test_hub_host_goes_through_a_proxy(monkeypatch):
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    assert models.hub_host() == ("proxy.example", 3128)
    monkeypatch.delenv("https_proxy")
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    assert models.hub_host()[0].endswith("modelscope.cn")
