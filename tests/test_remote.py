"""The remote engine on its own and against a foreign OpenAI-compatible server: FunASR's own
funasr-server (one process on 127.0.0.1, started once for this module) serving the tiny
random-weight SenseVoice folder. The class server (Ray Serve behind nginx, the widget's
own engine) has its tests in test_serve.py.

The tests marked `server` start funasr-server (about 40 s, once); `-m "not server"` skips
them. The first tests need no server.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from funasr_widget import Transcriber
from funasr_widget.asr import check_options, remote
from funasr_widget.live import LiveSession

CHUNK = 1600
TOKEN_ENV = remote.TOKEN_ENV
pytestmark = pytest.mark.timeout(420)  # the first server test also starts the servers (about 40 s)


# -- no server needed ------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://asr.example.org", "http://10.0.0.5:8000", "http://[2001:db8::1]/v1"])
def test_plain_http_to_another_host_is_refused_at_construction(url):
    with pytest.raises(ValueError, match="https://.*TLS|TLS"):
        Transcriber(model="custom", server=url, vad="energy")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9", "http://localhost:9/", "http://[::1]:9/v1", "http://127.3.2.1:9"]
)
def test_plain_http_to_loopback_is_allowed(url):
    assert check_options({"server": url})["server"].startswith("http://")


def test_the_token_never_prints(tmp_path, monkeypatch):
    token = "s3cret-token-abcdefghijklmnop"
    options = check_options({"server": "https://asr.example.org", "api_key": token})
    assert token not in repr(options) and token not in str(options)
    engine = remote.RemoteEngine("https://asr.example.org", api_key=options["api_key"])
    assert token not in repr(engine)
    engine.close()
    with pytest.raises(TypeError) as err:
        check_options({"server": "https://asr.example.org", "api_key": 12345678})
    assert "12345678" not in str(err.value)
    with pytest.raises(TypeError, match="only apply to a remote engine"):
        check_options({"api_key": token})
    with pytest.raises(ValueError, match="ca_bundle"):
        check_options({"server": "https://asr.example.org", "ca_bundle": tmp_path / "missing.pem"})
    with pytest.raises(TypeError, match="not available with server"):
        check_options({"server": "https://asr.example.org", "punctuation": True})


def test_an_unreachable_server_is_a_model_error_with_the_url_and_the_fix():
    port = _free_port()
    w = Transcriber(model="custom", server=f"http://127.0.0.1:{port}", vad="energy")
    assert w.wait(timeout=30)
    assert w.model_state == "error"
    assert f"127.0.0.1:{port}" in w.model_info["message"] and "load_model" in w.model_info["hint"]
    row = next(r for r in w.diagnose() if r.name == "ASR server")
    assert row.ok is False and "unreachable" in row.detail
    w.close()


def test_a_remote_kernel_cuts_with_fsmn_vad_and_imports_neither_funasr_nor_torch(model_store):
    """The kernel keeps the VAD; with the ASR on a server, its FSMN-VAD runs on onnxruntime,
    so the kernel stays small. Run in a fresh process (the test process has torch): the
    server is down, and the segments still come, cut by FSMN-VAD, with their audio."""
    code = f"""
import sys
from pathlib import Path
from funasr_widget import models, samples
from funasr_widget.live import LiveSession
models.set_models_dir(Path({str(model_store)!r}))
speech = samples.speech()
session = LiveSession("custom", "fsmn-vad", "cpu", partials=False, server="http://127.0.0.1:{_free_port()}")
session.feed(speech.samples, 16000, final=True)
assert session.wait(60) and session.model_state == "error", session.model_info
assert len(session.segments) == len(speech.intervals_ms), session.segments
assert type(session.parts()["vad"]).__name__ == "FsmnOnnxVad"
heavy = sorted(m for m in ("torch", "funasr") if m in sys.modules)
assert not heavy, heavy
session.close()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_the_server_row_of_diagnose_takes_any_value():
    from funasr_widget.diagnose import server_check

    for junk in (None, 3, {"url": ["x"], "reachable": "yes", "rtt_ms": "fast"}, {"reachable": False}):
        assert server_check(junk).name == "ASR server"
    row = server_check(
        {
            "url": "https://a.org",
            "reachable": True,
            "authenticated": False,
            "token": True,
            "message": "Authentication failed",
        }
    )
    assert row.ok is False and "token refused" in row.detail


# -- a foreign server: funasr-server -----------------------------------------------------

server = pytest.mark.server


def _free_port() -> int:
    from funasr_widget.serve.children import free_port

    return free_port()


@pytest.fixture(scope="module")
def served_folder(model_store, tmp_path_factory) -> Path:
    """The tiny SenseVoice folder with dither off in its config: funasr-server builds its
    frontend from the file (the widget's own engine turns dither off in memory)."""
    folder = tmp_path_factory.mktemp("served") / "sensevoice-small"
    shutil.copytree(model_store / "sensevoice-small", folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["frontend_conf"]["dither"] = 0.0
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.fixture(scope="module")
def funasr_server(served_folder, tmp_path_factory):
    """One funasr-server on 127.0.0.1 (plain http: loopback only), its URL."""
    script = Path(sys.executable).with_name("funasr-server")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "funasr.bin.server"]
    port = _free_port()
    command += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--model-path", str(served_folder)]
    log = tmp_path_factory.mktemp("funasr-server") / "server.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
            try:
                if httpx.get(url + "/health", timeout=2.0, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "funasr-server did not start"
            time.sleep(1.0)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture(scope="module")
def local_models(model_store):
    from funasr_widget import models

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "_models_dir", model_store)
        yield model_store


def feed_live(target, samples: np.ndarray, final: bool = True) -> None:
    for i in range(0, len(samples), CHUNK):
        target.feed(samples[i : i + CHUNK], 16_000, final=final and i + CHUNK >= len(samples))


def spans(segments: list[dict]) -> list[tuple]:
    return [(s["id"], s["start"], s["end"], s["text"]) for s in segments]


@pytest.fixture(scope="module")
def audio(speech) -> np.ndarray:
    """The speech exactly representable in 16-bit WAV, so the server decodes the very samples."""
    return (np.round(speech.samples * 32767.0) / 32768.0).astype(np.float32)


@server
def test_funasr_server_gives_the_local_engines_segments_and_text(funasr_server, served_folder, audio, local_models):
    # funasr-server cannot take use_itn: its SenseVoice text has none, as the kernel's with use_itn=False.
    session = LiveSession(str(served_folder), "fsmn-vad", "cpu", partials=False, use_itn=False)
    assert session.wait(120) and session.model_state == "ready", session.model_info
    feed_live(session, audio)
    assert session.wait(120)
    reference = list(session.segments)
    session.close()
    assert len(reference) == 3 and all(s["text"] for s in reference)

    session = LiveSession("auto", "fsmn-vad", "cpu", partials=False, server=funasr_server)
    assert session.wait(60) and session.model_state == "ready", session.model_info
    assert funasr_server in session.model_info["message"] and session.model_info["name"] == "custom"
    feed_live(session, audio)
    assert session.wait(120)
    session.raise_if_failed()
    assert spans(session.segments) == spans(reference)
    session.close()


@server
def test_a_foreign_server_gets_only_the_fields_it_takes(funasr_server, local_models):
    """funasr-server lists no options: language goes along (OpenAI's field), use_itn and
    hotword are refused when loading, with the reason."""
    session = LiveSession("auto", "energy", "cpu", server=funasr_server, language="en")
    assert session.wait(60) and session.model_state == "ready", session.model_info
    session.close()
    for option in ({"use_itn": False}, {"hotword": "word"}):
        session = LiveSession("auto", "energy", "cpu", server=funasr_server, **option)
        assert session.wait(60) and session.model_state == "error"
        message = session.model_info["message"]
        assert f"does not take {next(iter(option))}" in message and "takes language" in message
        assert session.model_info["code"] == "server-options"
        session.close()


@server
def test_a_server_down_at_start_then_load_model_resumes(funasr_server, audio, local_models):
    w = Transcriber(server=f"http://127.0.0.1:{_free_port()}", vad="fsmn-vad")
    assert w.wait(30) and w.model_state == "error"
    feed_live(w, audio)  # capture and the VAD go on; the segments come without text
    assert w.wait(60)
    assert len(w.segments) == 3 and not any(s["text"] for s in w.segments)
    w.load_model("auto", server=funasr_server)
    assert w.wait(60) and w.model_state == "ready", w.model_info
    assert all(s["text"] for s in w.retranscribe())
    w.close()


def _requests_seen(log: Path) -> int:
    return log.read_text(errors="replace").count("POST /v1/audio/transcriptions")


@server
def test_partials_over_the_wire_only_when_asked(funasr_server, audio, local_models, tmp_path_factory):
    log = next(Path(tmp_path_factory.getbasetemp()).glob("funasr-server*/server.log"))
    first = audio[: int(3.5 * 16000)]  # the lead-in and the first sentence, still open at the end
    for asked in (False, True):
        w = Transcriber(server=funasr_server, vad="fsmn-vad", server_partials=asked)
        assert w.wait(60) and w.model_state == "ready"
        partials = []
        w.observe(lambda change, partials=partials: partials.append(change["new"]), "partial")
        before = _requests_seen(log)
        for i in range(0, len(first), CHUNK):
            w.feed(first[i : i + CHUNK], 16_000)
            time.sleep(0.1)
        assert w.wait(30)
        assert bool([p for p in partials if p]) is asked
        assert (_requests_seen(log) > before) is asked  # no segment has closed yet: only partials
        w.close()
