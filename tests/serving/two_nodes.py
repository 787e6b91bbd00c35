"""Run inside a network namespace that has only `lo` (``unshare -n``): a Ray head and a second
Ray node on this machine, the class server on the head (``--address``) with one replica on
each node, requests in flight while the second node is killed. Prints one JSON line: the
answers' status codes (during the kill and after it) and the replicas each node ran."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from funasr_widget.asr.remote import wav_bytes
from funasr_widget.serve.children import descendants, free_port


def start(command: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(log: Path, pattern: str, proc: subprocess.Popen, timeout: float = 300) -> re.Match:
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found:
            return found
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{pattern!r} not seen in {log}:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def main(model: str, folder: str, samples_file: str) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    folder = Path(folder)
    ray = str(Path(sys.executable).with_name("ray"))
    env = {"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    os.environ.update(env)
    gcs = free_port()
    common = ["--block", "--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    head = start(
        [ray, "start", "--head", f"--port={gcs}", "--include-dashboard=false", *common]
        + ["--min-worker-port=20000", "--max-worker-port=20999"],
        folder / "head.log",
    )
    procs = [head]
    try:
        wait_for(folder / "head.log", "Ray runtime started", head)
        second = start(
            [ray, "start", f"--address=127.0.0.1:{gcs}", *common]
            + ["--min-worker-port=21000", "--max-worker-port=21999", '--resources={"second": 1}'],
            folder / "second.log",
        )
        procs.append(second)
        wait_for(folder / "second.log", "Ray runtime started", second)
        (folder / "tokens").write_text("teacher " + "t" * 32 + "\n")
        (folder / "tokens").chmod(0o600)
        port = free_port()
        server = start(
            [sys.executable, "-m", "funasr_widget.serve", "--address", f"127.0.0.1:{gcs}", "--model-path", model]
            + ["--replicas", "2", "--threads", "1", "--port", str(port), "--listen", "127.0.0.1"]
            + ["--token-file", str(folder / "tokens"), "--folder", str(folder / "run"), "--hostname", "127.0.0.1"],
            folder / "server.log",
        )
        procs.append(server)
        wait_for(folder / "server.log", "Ctrl-C stops", server, 480)
        replicas = {
            name: [p for p in descendants(proc.pid) if "ServeReplica:funasr-widget:Recognizer" in _cmd(p)]
            for name, proc in (("head", head), ("second", second))
        }
        import numpy as np

        samples = np.load(samples_file)
        segments = [wav_bytes(samples[i * 16000 : (i + 3) * 16000]) for i in range(12)]
        client = httpx.Client(
            base_url=f"https://127.0.0.1:{port}",
            headers={"Authorization": "Bearer " + "t" * 32},
            verify=str(folder / "run" / "cert.pem"),
            trust_env=False,
            timeout=180,
        )

        def post(data: bytes) -> int:
            return client.post("/v1/audio/transcriptions", files={"file": ("s.wav", data)}).status_code

        with ThreadPoolExecutor(len(segments)) as pool:
            answers = [pool.submit(post, seg) for seg in segments]
            time.sleep(0.5)
            os.killpg(second.pid, signal.SIGKILL)  # the second machine goes away mid-load
            codes = [a.result() for a in answers]
        after = post(segments[0])  # and the class goes on
        client.close()
        print(json.dumps({"codes": codes, "after": after, "replicas": {k: len(v) for k, v in replicas.items()}}))
    finally:
        for proc in reversed(procs):
            stop(proc)


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


if __name__ == "__main__":
    main(*sys.argv[1:4])
