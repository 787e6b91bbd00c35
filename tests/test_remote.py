"""The remote engine against real servers on 127.0.0.1: FunASR's own funasr-server (two
replicas, started once for this module) serving the tiny random-weight SenseVoice folder,
behind Debian's nginx with TLS (a certificate made here with openssl) and a bearer token,
started by funasr_widget.serve exactly as the README's class server is.

The tests marked `server` start those processes (about 40 s, once); `-m "not server"`
skips them. The first tests need no server at all.
"""

from __future__ import annotations

import shutil
import signal
import ssl
import subprocess
import sys
import threading
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
assert type(session.recognizer.pipeline.vad).__name__ == "FsmnOnnxVad"
heavy = sorted(m for m in ("torch", "funasr") if m in sys.modules)
assert not heavy, heavy
session.close()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_the_serve_command_checks_its_arguments(tmp_path, capsys):
    from funasr_widget import serve

    for argv in (
        ["--model-path", str(tmp_path / "missing")],
        ["--model-path", str(tmp_path), "--cert", str(tmp_path / "c.pem")],
        ["--model-path", str(tmp_path), "--replicas", "0"],
    ):
        with pytest.raises(SystemExit) as exit_:
            serve.main(argv)
        assert exit_.value.code == 2
    (tmp_path / "bad-token").write_text("short")
    with pytest.raises(ValueError, match="16-256"):
        serve.read_token(tmp_path / "bad-token")
    token = serve.read_token(tmp_path / "new-token")  # made, private
    assert serve.TOKEN_RE.match(token) and (tmp_path / "new-token").stat().st_mode & 0o077 == 0
    conf = serve.nginx_config(
        tmp_path,
        listen="127.0.0.1",
        port=8443,
        upstreams=[9001, 9002],
        token=token,
        cert=tmp_path / "c.pem",
        key=tmp_path / "k.pem",
    )
    assert f'"Bearer {token}" 1;' in conf and "client_max_body_size 20m" in conf
    assert conf.count("server 127.0.0.1:900") == 2 and 'proxy_set_header Authorization ""' in conf


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


# -- real servers ----------------------------------------------------------------------

server = pytest.mark.server


def _free_port() -> int:
    from funasr_widget.serve import free_port

    return free_port()


@pytest.fixture(scope="module")
def served_folder(model_store, tmp_path_factory) -> Path:
    """The tiny SenseVoice folder with dither off in its config: the server builds its
    frontend from the file (the widget's own engine turns dither off in memory)."""
    folder = tmp_path_factory.mktemp("served") / "sensevoice-small"
    shutil.copytree(model_store / "sensevoice-small", folder)
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["frontend_conf"]["dither"] = 0.0
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.fixture(scope="module")
def stack(served_folder, tmp_path_factory):
    from funasr_widget.serve import Stack

    folder = tmp_path_factory.mktemp("stack")
    s = Stack(
        served_folder,
        replicas=2,
        port=_free_port(),
        listen="127.0.0.1",
        token_file=folder / "token",
        hostnames=["localhost", "127.0.0.1"],
        threads=1,
        folder=folder / "run",
    )
    s.start(timeout=240)
    s.token = (folder / "token").read_text().strip()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def local_models(model_store):
    from funasr_widget import models

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models, "_models_dir", model_store)
        yield model_store


def feed_live(target, samples: np.ndarray, final: bool = True) -> None:
    for i in range(0, len(samples), CHUNK):
        target.feed(samples[i : i + CHUNK], 16_000, final=final and i + CHUNK >= len(samples))


def quantised(samples: np.ndarray) -> np.ndarray:
    """Audio exactly representable in 16-bit WAV, so the server decodes the very samples."""
    return (np.round(samples * 32767.0) / 32768.0).astype(np.float32)


def run_local(folder: Path, samples: np.ndarray) -> list[dict]:
    session = LiveSession(str(folder), "fsmn-vad", "cpu", partials=False, use_itn=False)
    try:
        assert session.wait(120) and session.model_state == "ready", session.model_info
        feed_live(session, samples)
        assert session.wait(120)
        session.raise_if_failed()
        return list(session.segments)
    finally:
        session.close()


def spans(segments: list[dict]) -> list[tuple]:
    return [(s["id"], s["start"], s["end"], s["text"]) for s in segments]


@pytest.fixture(scope="module")
def audio(speech) -> np.ndarray:
    return quantised(speech.samples)


@pytest.fixture(scope="module")
def reference(local_models, served_folder, audio) -> list[dict]:
    segments = run_local(served_folder, audio)
    assert len(segments) == 3 and all(s["text"] for s in segments)
    return segments


def requests_seen(stack) -> int:
    """Transcription requests FunASR itself received (uvicorn's access lines)."""
    return sum(r.log.read_text(errors="replace").count("POST /v1/audio/transcriptions") for r in stack.workers)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@server
def test_funasr_server_gives_the_local_engines_segments_and_text(stack, reference, audio, local_models):
    replica = stack.workers[0]
    session = LiveSession("custom", "fsmn-vad", "cpu", partials=False, server=replica.url)
    assert session.wait(60) and session.model_state == "ready", session.model_info
    assert replica.url in session.model_info["message"]
    feed_live(session, audio)
    assert session.wait(120)
    session.raise_if_failed()
    assert spans(session.segments) == spans(reference)
    session.close()


@server
def test_behind_nginx_with_tls_and_a_token_then_retranscribe(stack, reference, audio, local_models, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    w = Transcriber(server=stack.url, api_key=stack.token, ca_bundle=stack.cert, vad="fsmn-vad")
    assert w.wait(60) and w.model_state == "ready", w.model_info
    assert w.model_info["name"] == "custom" and w.model_info["server"] == stack.url
    feed_live(w, audio)
    assert w.wait(120)
    assert spans(w.segments) == spans(reference)
    assert spans(w.retranscribe()) == spans(reference)  # the server's arguments travel with it
    rows = w.diagnose()
    row = next(r for r in rows if r.name == "ASR server")
    assert row.ok is True and "token accepted" in row.detail and "round trip" in row.detail
    shown = " ".join(
        [
            repr(w),
            str(rows),
            rows._repr_html_(),
            repr(w.model_info),
            w.status,
            repr(w.error),
            repr(w._live.recognizer.pipeline._engine),
        ]
    )
    assert stack.token not in shown
    w.close()

    # The token from the environment.
    monkeypatch.setenv(TOKEN_ENV, stack.token)
    session = LiveSession("custom", "energy", "cpu", partials=False, server=stack.url, ca_bundle=stack.cert)
    assert session.wait(60) and session.model_state == "ready", session.model_info
    session.close()


@server
def test_nginx_refuses_a_missing_or_wrong_token_before_funasr_sees_it(stack, audio, monkeypatch, tmp_path):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    before = requests_seen(stack)
    wav = remote.wav_bytes(audio[: 3 * 16000])
    url = stack.url + "/v1/audio/transcriptions"
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": stack.token}):
        r = httpx.post(
            url,
            headers=headers,
            files={"file": ("a.wav", wav, "audio/wav")},
            data={"model": "custom"},
            verify=ssl.create_default_context(cafile=str(stack.cert)),
            trust_env=False,
        )
        assert r.status_code == 401 and "bearer token" in r.text
    # The widget says what failed and how to give the token, and never shows it.
    for key in (None, "wrong-token-0123456789"):
        s = LiveSession("custom", "energy", "cpu", server=stack.url, ca_bundle=stack.cert, api_key=key)
        assert s.wait(30) and s.model_state == "error"
        assert "Authentication failed" in s.model_info["message"] and TOKEN_ENV in s.model_info["hint"]
        assert stack.token not in repr(s.model_info)
        s.close()
    # An untrusted certificate (no ca_bundle): refused, and the fix named.
    s = LiveSession("custom", "energy", "cpu", server=stack.url, api_key=stack.token)
    assert s.wait(30) and s.model_state == "error" and "ca_bundle" in s.model_info["message"]
    s.close()
    assert requests_seen(stack) == before  # nothing reached FunASR
    # Too large a body: nginx's limit, the reason in words, for that segment only.
    engine = remote.RemoteEngine(stack.url, api_key=stack.token, ca_bundle=stack.cert)
    with pytest.raises(remote.RemoteError, match="too large.*413"):
        engine.transcribe(np.zeros(16000 * 700, np.float32))
    engine.close()
    assert requests_seen(stack) == before


@server
def test_replicas_killed_mid_session_lose_no_segment_and_keep_order(stack, audio, served_folder, local_models):
    from funasr_widget.serve import wait_healthy

    expected = run_local(served_folder, np.tile(audio, 4))
    assert len(expected) == 12
    w = Transcriber(server=stack.url, api_key=stack.token, ca_bundle=stack.cert, vad="fsmn-vad")
    assert w.wait(60) and w.model_state == "ready", w.model_info
    w.session.set_partials(False)
    a, b = stack.workers
    try:
        feed_live(w, audio, final=False)
        assert w.wait(60) and len(w.segments) == 3

        a.stop(signal.SIGKILL)  # one replica dies: nginx passes the requests to the other
        feed_live(w, audio, final=False)
        assert w.wait(60) and len(w.segments) == 6
        assert not any(s.get("error") for s in w.segments)
        a.start()
        wait_healthy([a], 240)

        b.stop(signal.SIGKILL)  # the other one dies: the restarted one takes over
        a_before = a.log.read_text(errors="replace").count("POST /v1/audio/transcriptions")
        feed_live(w, audio, final=False)
        assert w.wait(60) and len(w.segments) == 9
        assert a.log.read_text(errors="replace").count("POST /v1/audio/transcriptions") > a_before

        a.stop(signal.SIGKILL)  # all replicas down: the segments wait, with their audio
        feed_live(w, audio, final=True)
        assert w.wait(60)
        wait_for(lambda: "Waiting for the engine" in w.status, 30, "the backlog in status")
        assert len(w.segments) == 9 and "502" in w.status
        restart = [threading.Thread(target=r.start) for r in (a, b)]
        for t in restart:
            t.start()
        for t in restart:
            t.join()
        wait_healthy([a, b], 240)
        wait_for(lambda: len(w.segments) == 12, 90, "the waiting segments")
    finally:
        for r in (a, b):  # leave the module's stack as it was
            if not r.alive():
                r.start()
        wait_healthy([a, b], 240)
        w.close()
    assert [s["id"] for s in w.segments] == list(range(12))
    assert spans(w.segments) == spans(expected)  # every segment, in order, with the right audio
    assert "engine is back" in w.status


@server
def test_a_server_down_at_start_then_load_model_resumes(stack, reference, audio, local_models):
    w = Transcriber(server=f"http://127.0.0.1:{_free_port()}", vad="fsmn-vad")
    assert w.wait(30) and w.model_state == "error"
    feed_live(w, audio)  # capture and the VAD go on; the segments come without text
    assert w.wait(60)
    assert [s[:3] for s in spans(w.segments)] == [s[:3] for s in spans(reference)]
    assert not any(s["text"] for s in w.segments)
    w.load_model("custom", server=stack.workers[1].url)
    assert w.wait(60) and w.model_state == "ready", w.model_info
    assert spans(w.retranscribe()) == spans(reference)
    w.close()


def _feed_real_time(target, samples: np.ndarray) -> None:
    for i in range(0, len(samples), CHUNK):
        target.feed(samples[i : i + CHUNK], 16_000, final=i + CHUNK >= len(samples))
        time.sleep(0.1)


@server
def test_partials_over_the_wire_only_when_asked(stack, audio, local_models):
    first = audio[: int(3.5 * 16000)]  # the lead-in and the first sentence, still open at the end
    for asked in (False, True):
        w = Transcriber(server=stack.workers[0].url, vad="fsmn-vad", server_partials=asked)
        assert w.wait(60) and w.model_state == "ready"
        partials = []
        w.observe(lambda change, partials=partials: partials.append(change["new"]), "partial")
        before = requests_seen(stack)
        for i in range(0, len(first), CHUNK):
            w.feed(first[i : i + CHUNK], 16_000)
            time.sleep(0.1)
        assert w.wait(30)
        assert bool([p for p in partials if p]) is asked
        assert (requests_seen(stack) > before) is asked  # no segment has closed yet: only partials
        w.close()
