"""The class server (``python -m funasr_widget.serve``: Ray Serve behind nginx) against the
attacks it must hold, each a real request to a real server on 127.0.0.1.

The launcher runs as a student's teacher would run it (a subprocess, its own session), with
two Recognizer replicas of the tiny random-weight SenseVoice folder, one thread each. The
tests marked `server` share it (about a minute to start, once); the lifecycle test starts
a second one and stops it with SIGHUP. The first tests need no server.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile

from funasr_widget.asr import remote
from funasr_widget.live import LiveSession
from funasr_widget.serve import children, tokens, wav
from funasr_widget.serve.children import free_port

CHUNK = 1600
pytestmark = pytest.mark.timeout(600)
server = pytest.mark.server


# -- no server needed ------------------------------------------------------------------


def _token_file(path: Path, students: dict[str, str], mode: int = 0o600) -> Path:
    path.write_text("".join(f"{name} {token}\n" for name, token in students.items()))
    path.chmod(mode)
    return path


def test_the_serve_command_checks_its_arguments(tmp_path, capsys):
    from funasr_widget.serve import main

    good = _token_file(tmp_path / "tokens", {"alice": tokens.new_token()})
    open_to_all = _token_file(tmp_path / "shared", {"alice": tokens.new_token()}, 0o644)
    for argv, reason in (
        (["--model-path", str(tmp_path / "missing")], "not a folder"),
        (["--model-path", str(tmp_path), "--cert", str(tmp_path / "c.pem")], "go together"),
        (["--model-path", str(tmp_path), "--replicas", "0"], "at least 1"),
        (["--model-path", str(tmp_path), "--max-body", "lots"], "--max-body"),
        (["--model-path", str(tmp_path), "--max-seconds", "6000"], "--max-seconds"),
        (["--model-path", str(tmp_path), "--token-file", str(open_to_all)], "chmod 600"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(["--token-file", str(good), *argv])
        assert exit_.value.code == 2
        assert reason in capsys.readouterr().err


def test_the_token_file_is_checked_and_matched_exactly(tmp_path):
    alice, bob = tokens.new_token(), tokens.new_token()
    path = _token_file(tmp_path / "tokens", {"alice": alice, "bob": bob})
    known = tokens.digests(tokens.read(path))
    assert tokens.match(f"Bearer {alice}", known) == "alice"
    assert tokens.match(f"Bearer {bob}", known) == "bob"
    for header in (
        f"Bearer {alice.upper()}",
        f"bearer {alice}",
        f"Bearer {alice[:-1]}",
        f"Bearer {alice}x",
        f"Bearer  {alice}",
        alice,
        "",
        None,
    ):
        assert tokens.match(header, known) is None, header
    for text, problem in (
        (f"alice {alice}\nalice {bob}\n", "given twice"),
        (f"alice {alice}\nbob {alice}\n", "also another name's"),
        ("alice short\n", "line 1"),
        (f"alice {alice} extra\n", "line 1"),
        ("# nobody\n", "holds no token"),
    ):
        path.write_text(text)
        with pytest.raises(tokens.TokenFileError, match=problem):
            tokens.read(path)
    path.chmod(0o640)
    with pytest.raises(tokens.TokenFileError, match="open to other users"):
        tokens.read(path)
    made = tmp_path / "new"
    tokens.create(made)
    assert made.stat().st_mode & 0o077 == 0 and list(tokens.read(made)) == ["teacher"]


def _wav(samples: np.ndarray, rate: int = 16_000, subtype: str = "PCM_16", channels: int = 1) -> bytes:
    buf = io.BytesIO()
    data = np.repeat(samples[:, None], channels, axis=1) if channels > 1 else samples
    soundfile.write(buf, data, rate, subtype=subtype, format="WAV")
    return buf.getvalue()


def _claiming(seconds: float, real_samples: int = 16_000) -> bytes:
    """A PCM16 WAV whose header says `seconds` of audio, with only `real_samples` behind it."""
    body = np.zeros(real_samples, "<i2").tobytes()
    header = struct.pack("<4sI4s4sIHHIIHH", b"RIFF", 36 + len(body), b"WAVE", b"fmt ", 16, 1, 1, 16000, 32000, 2, 16)
    return header + b"data" + struct.pack("<I", int(seconds * 32000)) + body


def test_only_short_mono_16k_wav_is_decoded():
    tone = (0.3 * np.sin(np.arange(32_000) / 8)).astype(np.float32)
    pcm = wav.decode(_wav(tone), 60)
    assert np.abs(pcm - tone).max() < 1 / 16_000
    assert np.array_equal(wav.decode(_wav(tone, subtype="FLOAT"), 60), tone)
    assert np.array_equal(wav.decode(remote.wav_bytes(tone), 60), np.round(tone * 32767) / 32768)
    # The duration comes from the header: a 4-minute claim is refused with 1 s behind it.
    with pytest.raises(wav.AudioRefused, match="240.0 s .* at most 60 s") as refused:
        wav.decode(_claiming(240), 60)
    assert refused.value.status == 413
    for data, reason in (
        (_wav(tone, rate=44_100), "44100 Hz"),
        (_wav(tone, channels=2), "2 channel"),
        (_wav(tone, subtype="PCM_24"), "24-bit"),
        (_wav(tone, subtype="ULAW"), "format 7"),
        (b"k1 /etc/hostname\n", "not a WAV"),
        (b"fLaC" + bytes(100), "not a WAV"),
    ):
        with pytest.raises(wav.AudioRefused, match=reason):
            wav.decode(data, 60)


# -- the class server ------------------------------------------------------------------


@dataclass
class ClassServer:
    proc: subprocess.Popen
    folder: Path
    log: Path
    token_file: Path
    students: dict[str, str]
    port: int
    serve_port: int = 0
    processes: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def cert(self) -> Path:
        return self.folder / "cert.pem"

    def token(self, name: str = "alice") -> str:
        return self.students[name]

    def client(self, name: str | None = "alice", **kwargs) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.students[name]}"} if name else {}
        verify = ssl.create_default_context(cafile=str(self.cert))
        return httpx.Client(base_url=self.url, headers=headers, verify=verify, trust_env=False, timeout=120, **kwargs)

    def posts_seen(self) -> int:
        """Transcription requests nginx passed on (its access log)."""
        log = self.folder / "access.log"
        return len(re.findall(r'"POST /v1/audio/transcriptions" 200', log.read_text())) if log.exists() else 0


def launch(model: Path, folder: Path, students: dict[str, str], *, replicas: int = 2, port: int | None = None):
    """The launcher as a teacher starts it, waited for until it serves (or failed)."""
    folder.mkdir(parents=True, exist_ok=True)
    token_file = folder / "tokens"
    if not token_file.exists():
        _token_file(token_file, students)
    log = folder / "launcher.log"
    port = port or free_port()
    command = [sys.executable, "-m", "funasr_widget.serve", "--model-path", str(model), "--replicas", str(replicas)]
    command += ["--threads", "1", "--port", str(port), "--listen", "127.0.0.1", "--token-file", str(token_file)]
    command += ["--folder", str(folder / "run"), "--hostname", "127.0.0.1"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    s = ClassServer(proc, folder / "run", log, token_file, dict(students), port)
    deadline = time.monotonic() + 480  # a busy machine: Ray's head may need a few tries
    try:
        while True:
            text = log.read_text(errors="replace")
            found = re.search(r"Ray Serve on 127\.0\.0\.1:(\d+)", text)
            if found:
                s.serve_port = int(found[1])
                s.processes = descendants(proc.pid)
                return s
            assert proc.poll() is None and time.monotonic() < deadline, (
                f"the class server did not start:\n{text[-3000:]}"
            )
            time.sleep(1.0)
    except BaseException:  # a failed or interrupted start leaves nothing running
        stop(s)
        raise


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process below `pid`."""
    return [(child, _cmdline(child)) for child in children.descendants(pid)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def alive(processes: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Those still running (the same pid with the same command: not a reused pid)."""
    return [(pid, cmd) for pid, cmd in processes if cmd and _cmdline(pid) == cmd]


def stop(s: ClassServer, sig: int = signal.SIGTERM) -> None:
    if s.proc.poll() is None:
        s.proc.send_signal(sig)
        try:
            s.proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(s.proc.pid, signal.SIGKILL)
            s.proc.wait(10)
    for pid, _ in alive(s.processes + descendants(s.proc.pid)):  # never leave one behind a failed test
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def class_server(model_store, tmp_path_factory):
    students = {"alice": tokens.new_token(), "bob": tokens.new_token()}
    s = launch(model_store / "sensevoice-small", tmp_path_factory.mktemp("class-server"), students)
    try:
        yield s
    finally:
        stop(s)


@pytest.fixture(scope="module")
def audio(speech) -> np.ndarray:
    """The speech exactly representable in 16-bit WAV, so the server decodes the very samples."""
    return (np.round(speech.samples * 32767.0) / 32768.0).astype(np.float32)


def feed_live(target, samples: np.ndarray, final: bool = True) -> None:
    for i in range(0, len(samples), CHUNK):
        target.feed(samples[i : i + CHUNK], 16_000, final=final and i + CHUNK >= len(samples))


def spans(segments: list[dict]) -> list[tuple]:
    return [(s["id"], s["start"], s["end"], s["text"]) for s in segments]


def run_session(model: str, samples: np.ndarray, **options) -> list[dict]:
    session = LiveSession(model, "fsmn-vad", "cpu", partials=False, **options)
    try:
        assert session.wait(120) and session.model_state == "ready", session.model_info
        feed_live(session, samples)
        assert session.wait(180)
        session.raise_if_failed()
        return list(session.segments)
    finally:
        session.close()


def transcribe(client: httpx.Client, data: bytes, name: str = "segment.wav", **fields) -> httpx.Response:
    return client.post("/v1/audio/transcriptions", files={"file": (name, data, "audio/wav")}, data=fields)


class CountingListener:
    """An HTTP server on 127.0.0.1 that counts the requests it gets (any would be a fetch)."""

    def __init__(self):
        self.requests = 0
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                listener.requests += 1
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"RIFF")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@server
def test_lists_of_paths_and_urls_are_neither_read_nor_fetched(class_server, audio, tmp_path):
    secret = tmp_path / "server-side.wav"
    secret.write_bytes(remote.wav_bytes(audio[: 3 * 16000]))
    listener = CountingListener()
    try:
        uploads = {
            "list.scp": f"k1 {secret}\n",
            "list.jsonl": json.dumps({"key": "k1", "source": str(secret)}) + "\n",
            "list.txt": f"{secret}\n",
            "list.json": json.dumps([str(secret)]),
            "urls.scp": f"k1 {listener.url}/a.wav\nk2 {listener.url}/b.wav\n",
            "urls.txt": f"{listener.url}/c.wav\n",
        }
        with class_server.client() as client:
            for name, content in uploads.items():
                r = transcribe(client, content.encode(), name)
                assert r.status_code == 415 and "not a WAV" in r.text, (name, r.text)
            # The file name means nothing: real audio named list.scp is just audio.
            r = transcribe(client, secret.read_bytes(), "list.scp")
            assert r.status_code == 200 and "text" in r.json()
    finally:
        listener.close()
    assert listener.requests == 0


@server
def test_a_compressed_bomb_and_long_audio_are_refused_before_decoding(class_server):
    bomb = io.BytesIO()
    soundfile.write(bomb, np.zeros(4 * 60 * 16000, np.float32), 16000, format="FLAC")
    assert len(bomb.getvalue()) < 100_000  # 4 minutes in a few KB
    with class_server.client() as client:
        r = transcribe(client, bomb.getvalue(), "talk.flac")
        assert r.status_code == 415 and "WAV" in r.text
        r = transcribe(client, _claiming(240), "talk.wav")  # 1 s of data behind a 4-minute header
        assert r.status_code == 413 and "at most 60 s" in r.text
        r = transcribe(client, _wav(np.zeros(16000 * 3, np.float32), rate=8000))
        assert r.status_code == 415 and "8000 Hz" in r.text


@server
def test_only_the_served_model_and_spk_changes_nothing(class_server, audio):
    segment = remote.wav_bytes(audio[: 3 * 16000])
    with class_server.client() as client:
        models = client.get("/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["sensevoice-small"]
        assert models[0]["options"] == ["language", "use_itn"]  # what SenseVoice takes
        plain = transcribe(client, segment)
        assert plain.status_code == 200
        for model in ("custom", "iic/SenseVoiceSmall", "fsmn-vad", "../sensevoice-small", "https://x/y"):
            r = transcribe(client, segment, model=model)
            assert r.status_code == 404 and "not served" in r.text, model
        with_spk = transcribe(client, segment, model="sensevoice-small", spk="true", spk_model="cam++")
        assert with_spk.status_code == 200 and with_spk.json()["text"] == plain.json()["text"]
        r = transcribe(client, segment, use_itn="perhaps")
        assert r.status_code == 400 and "use_itn" in r.text


@server
def test_tokens_are_exact_per_student_and_revocable(class_server, audio):
    s = class_server
    segment = remote.wav_bytes(audio[: 2 * 16000])
    direct = f"http://127.0.0.1:{s.serve_port}"
    verify = ssl.create_default_context(cafile=str(s.cert))

    def status(url: str, token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(verify=verify, trust_env=False, timeout=60) as c:
            return c.post(
                url + "/v1/audio/transcriptions", headers=headers, files={"file": ("a.wav", segment)}
            ).status_code

    for url in (s.url, direct):  # nginx, and Serve's own port as a local user would reach it
        assert status(url, s.token("alice")) == 200
        assert status(url, s.token("bob")) == 200
        for wrong in (None, s.token("alice").upper(), s.token("alice").lower(), s.token("alice")[:-1]):
            assert status(url, wrong) == 401, (url, wrong)
    with httpx.Client(trust_env=False) as c:
        assert c.get(direct + "/v1/models").status_code == 401
        assert c.get(direct + "/health").status_code == 401

    # Bob's line removed: refused at nginx and at the app within seconds; Alice goes on.
    _token_file(s.token_file, {"alice": s.token("alice")})
    try:
        deadline = time.monotonic() + 60
        while status(s.url, s.token("bob")) != 401 or status(direct, s.token("bob")) != 401:
            assert time.monotonic() < deadline, "the revoked token still works"
            time.sleep(1.0)
        assert status(s.url, s.token("alice")) == 200
    finally:
        _token_file(s.token_file, s.students)
        deadline = time.monotonic() + 60
        while status(s.url, s.token("bob")) != 200:
            assert time.monotonic() < deadline, "bob's token did not come back"
            time.sleep(1.0)
    logs = "".join(p.read_text(errors="replace") for p in s.folder.glob("*.log"))
    assert "alice" in logs and not any(t in logs for t in s.students.values())


@server
def test_idle_connections_do_not_lock_the_class_out(class_server, audio):
    idle = []
    try:
        for _ in range(600):
            idle.append(socket.create_connection(("127.0.0.1", class_server.port), timeout=10))
        with class_server.client() as client:
            r = transcribe(client, remote.wav_bytes(audio[: 2 * 16000]))
        assert r.status_code == 200
    finally:
        for sock in idle:
            sock.close()


def recognizer_replicas(s: ClassServer) -> list[int]:
    return [pid for pid, cmd in descendants(s.proc.pid) if cmd.startswith("ray::ServeReplica:funasr-widget:Recognizer")]


@server
def test_a_replica_killed_mid_request_loses_no_request(class_server, audio):
    s = class_server
    segments = [remote.wav_bytes(audio[i * 16000 : (i + 4) * 16000]) for i in range(8)]
    with s.client() as client:
        expected = [transcribe(client, seg).json()["text"] for seg in segments]
        replicas = recognizer_replicas(s)
        assert len(replicas) == 2
        with ThreadPoolExecutor(len(segments)) as pool:
            answers = [pool.submit(transcribe, client, seg) for seg in segments]
            time.sleep(0.3)  # the requests are in the replicas' batches
            os.kill(replicas[0], signal.SIGKILL)
            results = [a.result() for a in answers]
    assert [r.status_code for r in results] == [200] * len(segments)
    assert [r.json()["text"] for r in results] == expected
    deadline = time.monotonic() + 180  # Serve replaces it
    while len(recognizer_replicas(s)) < 2 or replicas[0] in recognizer_replicas(s):
        assert time.monotonic() < deadline, "the killed replica was not replaced"
        time.sleep(1.0)


@server
def test_the_widget_gets_the_local_text_for_each_option(class_server, audio, models_at):
    s = class_server
    for options in ({}, {"use_itn": False}, {"language": "en"}, {"language": "zh", "use_itn": True}):
        local = run_session(str(models_at / "sensevoice-small"), audio, **options)
        served = run_session("auto", audio, server=s.url, api_key=s.token(), ca_bundle=str(s.cert), **options)
        assert len(local) == 3 and spans(served) == spans(local), options
    # An option the model does not take is refused when loading, with what it takes.
    session = LiveSession("auto", "energy", "cpu", server=s.url, api_key=s.token(), ca_bundle=str(s.cert), hotword="x")
    assert session.wait(60) and session.model_state == "error"
    assert "does not take hotword" in session.model_info["message"]
    session.close()


@server
def test_sighup_stops_everything_and_the_backlog_survives_a_restart(model_store, models_at, audio, tmp_path):
    """A closed terminal (SIGHUP) stops the launcher and every process it started; a widget
    keeps its segments meanwhile, and the same command brought back decodes them in order."""
    students = {"teacher": tokens.new_token()}
    s = launch(model_store / "sensevoice-small", tmp_path / "server", students, replicas=1)
    w = None
    try:
        started = [cmd for _, cmd in s.processes]
        assert any("raylet" in c for c in started) and any("nginx" in c for c in started), started
        options = {"server": s.url, "api_key": s.token("teacher"), "ca_bundle": str(s.cert)}
        w = LiveSession("auto", "fsmn-vad", "cpu", partials=False, **options)
        assert w.wait(60) and w.model_state == "ready", w.model_info
        feed_live(w, audio, final=False)
        assert w.wait(120) and len(w.segments) == 3 and all(seg["text"] for seg in w.segments)

        s.proc.send_signal(signal.SIGHUP)
        s.proc.wait(120)
        deadline = time.monotonic() + 30
        while alive(s.processes):
            assert time.monotonic() < deadline, f"left running: {alive(s.processes)}"
            time.sleep(0.5)

        feed_live(w, audio, final=False)  # the server is down: the segments wait, with their audio
        deadline = time.monotonic() + 120
        while w.stats()["pending"] < 2:
            assert time.monotonic() < deadline, w.stats()
            time.sleep(0.5)
        assert len(w.segments) == 3

        s = launch(model_store / "sensevoice-small", tmp_path / "server", students, replicas=1, port=s.port)
        assert w.wait(300)  # the waiting segments are retried (backoff up to 30 s) and decoded
        seen = [(seg["id"], seg["start"], seg["end"], seg.get("error")) for seg in w.segments]
        stats = w.stats()
        assert stats["pending"] == 0 and not stats["given_up"], f"{seen} {json.dumps(stats, default=str)}"
        later = w.segments[3:]
        assert len(later) >= 2 and [seg["id"] for seg in w.segments] == list(range(len(w.segments)))
        assert all(seg["text"] and not seg.get("error") for seg in later)  # decoded after the restart
    finally:
        if w is not None:
            w.close()
        stop(s)


@server
def test_the_widget_through_tls_and_a_token_never_shows_it(class_server, audio, models_at, monkeypatch):
    from funasr_widget import Transcriber

    s = class_server
    monkeypatch.delenv(remote.TOKEN_ENV, raising=False)
    w = Transcriber(server=s.url, api_key=s.token(), ca_bundle=str(s.cert), vad="fsmn-vad")
    assert w.wait(60) and w.model_state == "ready", w.model_info
    assert w.model_info["name"] == "sensevoice-small" and w.model_info["server"] == s.url
    feed_live(w, audio)
    assert w.wait(120) and len(w.segments) == 3
    assert spans(w.retranscribe()) == spans(w.segments)  # the server's arguments travel with it
    rows = w.diagnose()
    row = next(r for r in rows if r.name == "ASR server")
    assert row.ok is True and "token accepted" in row.detail
    shown = " ".join([repr(w), str(rows), rows._repr_html_(), repr(w.model_info), w.status, repr(w.error)])
    assert s.token() not in shown
    w.close()
    # A wrong or missing token, or an untrusted certificate: the reason and the fix, never the token.
    for options in ({"api_key": "wrong-token-0123456789abc"}, {}):
        session = LiveSession("auto", "energy", "cpu", server=s.url, ca_bundle=str(s.cert), **options)
        assert session.wait(30) and session.model_state == "error"
        assert "Authentication failed" in session.model_info["message"]
        assert remote.TOKEN_ENV in session.model_info["hint"]
        session.close()
    session = LiveSession("auto", "energy", "cpu", server=s.url, api_key=s.token())
    assert session.wait(30) and session.model_state == "error" and "ca_bundle" in session.model_info["message"]
    session.close()
    # Too large a body: nginx's limit, the reason in words, for that segment only.
    engine = remote.RemoteEngine(s.url, api_key=s.token(), ca_bundle=str(s.cert))
    with pytest.raises(remote.RemoteError, match="too large.*413"):
        engine.transcribe(np.zeros(16000 * 200, np.float32))
    engine.close()


def in_namespace(netns: str) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes in network namespace `netns` (zombies have none)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(entry / "ns" / "net") == netns:
                found.append((int(entry.name), _cmdline(int(entry.name))))
        except (OSError, ValueError):
            continue
    return found


@server
def test_two_nodes_and_the_second_killed_mid_load_loses_no_request(model_store, audio, tmp_path):
    """A Ray head and a second Ray node on this machine (separate processes, one CPU each, so
    one replica each; the ingress and Serve's proxy on the head), inside a network namespace
    with only `lo` (tests/serving/two_nodes.py); twelve students keep requests in flight, and
    the second node is killed while its replica decodes: every request is answered, the lost
    ones sent again by the ingress, and no process of the namespace outlives the script."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("a network namespace of its own needs root and unshare")
    np.save(tmp_path / "audio.npy", audio)
    script = Path(__file__).parent / "serving" / "two_nodes.py"
    command = ["unshare", "-n", sys.executable, str(script), str(model_store / "sensevoice-small"), str(tmp_path)]
    try:  # about two minutes on 2 busy cores; more only if Ray's nodes need their start retries
        out = subprocess.run([*command, str(tmp_path / "audio.npy")], capture_output=True, text=True, timeout=480)
    finally:
        left: list[tuple[int, str]] = []
        if (tmp_path / "netns").exists():
            netns = (tmp_path / "netns").read_text()
            deadline = time.monotonic() + 30  # a process the script killed may still be exiting
            while (left := in_namespace(netns)) and time.monotonic() < deadline:
                time.sleep(1.0)
            for pid, _ in left:  # never leave one behind a failed test
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    assert out.returncode == 0, out.stderr[-3000:]
    assert not left, f"left running: {left}"
    result = json.loads(out.stdout.strip().splitlines()[-1])
    placed = result["placed"]
    assert placed["head"] == {"recognizer": 1, "ingress": 1, "proxy": 1, "controller": 1}, placed
    assert placed["second"] == {"recognizer": 1, "ingress": 0, "proxy": 0, "controller": 0}, placed
    assert result["resent"] > 0, result  # the kill caught requests in flight on the second node
    assert len(result["codes"]) >= 12 and set(result["codes"]) == {200}, result
    assert result["warm"] == 200 and result["after"] == 200
