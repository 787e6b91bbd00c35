"""Run inside a network namespace that has only `lo` (``unshare -n``): a Ray head and a second
Ray node on this machine (one CPU each, started as the launcher starts its own head), the
class server on the head (``--address``) with one replica on each node, requests in flight
while the second node is killed. Prints one JSON line: the answers' status codes (during the
kill and after it), the Serve actors each node ran, and how long each step took.

Writes FOLDER/netns first (this namespace's id), so the caller can check that no process of
the namespace outlives the script."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from funasr_widget.asr.remote import wav_bytes
from funasr_widget.serve.children import descendants, die_with_parent, free_port, session
from funasr_widget.serve.launcher import start_ray, stop_ray

# The Serve actors looked for on each node (process titles).
ACTORS = {
    "recognizer": "ServeReplica:funasr-widget:Recognizer",
    "ingress": "ServeReplica:funasr-widget:Ingress",
    "proxy": "ProxyActor",
    "controller": "ServeController",
}
LOAD_S = 3.0  # seconds of load before the second node is killed, and after
DECODING_S = 0.02  # CPU time in 50 ms that says a replica decodes


def wait_for(log: Path, pattern: str, proc: subprocess.Popen, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, log.read_text(errors="replace"))
        if found:
            return found
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{pattern!r} not seen in {log}:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)


def cpu_seconds(pid: int) -> float:
    """CPU time `pid` has used (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def actors(pid: int) -> dict[str, int]:
    commands = [_cmd(p) for p in descendants(pid)]
    return {name: sum(title in c for c in commands) for name, title in ACTORS.items()}


def main(model: str, folder_name: str, samples_file: str) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    folder = Path(folder_name)
    (folder / "netns").write_text(os.readlink("/proc/self/ns/net"))
    os.environ.update({"RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"})
    took: dict[str, float] = {}
    began = time.monotonic()
    nodes: list[subprocess.Popen] = []
    server = None
    # Ray's files apart from any other Ray on the machine (a short path: Ray's sockets live there).
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    try:
        # Worker ports apart, so each node's replicas bind their own.
        head, address = start_ray(
            folder / "head.log",
            ["--num-cpus=1", "--include-dashboard=false", f"--temp-dir={temp}"]
            + ["--min-worker-port=20000", "--max-worker-port=20999"],
        )
        nodes.append(head)
        took["head"] = time.monotonic() - began
        second, _ = start_ray(
            folder / "second.log",
            ["--num-cpus=1", f"--temp-dir={temp}", "--min-worker-port=21000", "--max-worker-port=21999"],
            join=address,
        )
        nodes.append(second)
        took["second"] = time.monotonic() - began
        (folder / "tokens").write_text("teacher " + "t" * 32 + "\n")
        (folder / "tokens").chmod(0o600)
        port = free_port()
        command = [sys.executable, "-m", "funasr_widget.serve", "--address", address, "--model-path", model]
        command += ["--replicas", "2", "--threads", "1", "--port", str(port), "--listen", "127.0.0.1"]
        command += ["--token-file", str(folder / "tokens"), "--folder", str(folder / "run"), "--hostname", "127.0.0.1"]
        with open(folder / "server.log", "ab") as out:
            server = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent
            )
        wait_for(folder / "server.log", "Ctrl-C stops", server, 300)
        took["server"] = time.monotonic() - began
        placed = {"head": actors(head.pid), "second": actors(second.pid)}
        import numpy as np

        samples = np.load(samples_file)
        # 54 s each (the speech four times over): decoding one takes a replica a second or more,
        # so each keeps a queue while the students wait, and nginx's 20 POSTs a second are never
        # reached.
        long = np.tile(samples, 4)
        segments = [wav_bytes(long[i * 2400 : i * 2400 + 54 * 16000]) for i in range(12)]
        client = httpx.Client(
            base_url=f"https://127.0.0.1:{port}",
            headers={"Authorization": "Bearer " + "t" * 32},
            verify=str(folder / "run" / "cert.pem"),
            trust_env=False,
            timeout=180,
        )

        def post(data: bytes) -> int:
            return client.post("/v1/audio/transcriptions", files={"file": ("s.wav", data)}).status_code

        warm = post(segments[0])
        # Twelve students, each sending its next segment as soon as the last is answered, from
        # LOAD_S before the second node is killed until LOAD_S after.
        replica = [p for p in descendants(second.pid) if ACTORS["recognizer"] in _cmd(p)]
        idle = cpu_seconds(replica[0]) if replica else 0.0
        done = threading.Event()

        def student(i: int) -> list[int]:
            codes: list[int] = []
            while not done.is_set():
                codes.append(post(segments[(i + len(codes)) % len(segments)]))
                if codes[-1] != 200:
                    time.sleep(0.5)
            return codes

        with ThreadPoolExecutor(len(segments)) as pool:
            answers = [pool.submit(student, i) for i in range(len(segments))]
            time.sleep(LOAD_S)
            # Killed while its replica decodes: CPU time rising fast, as only a decode makes it (a
            # health check takes a millisecond).
            deadline = time.monotonic() + 30
            last, caught = (cpu_seconds(replica[0]) if replica else 0.0), False
            while replica and not caught and time.monotonic() < deadline:
                time.sleep(0.05)
                now = cpu_seconds(replica[0])
                caught, last = now - last >= DECODING_S, now
            # The second machine goes away mid-load: its replica first (no decode ends meanwhile),
            # then the rest of the node.
            kill(replica)
            kill(session(second.pid))
            took["kill"] = time.monotonic() - began
            busy = last - idle  # the second replica's CPU time on the load
            time.sleep(LOAD_S)
            done.set()
            codes = [code for a in answers for code in a.result()]
        took["load"] = time.monotonic() - began
        after = post(segments[1])  # and the class goes on
        client.close()
        took["after"] = time.monotonic() - began
        resent = sum(log.read_text(errors="replace").count("sending the request again") for log in ingress_logs(temp))
        result = {"codes": codes, "warm": warm, "after": after, "placed": placed, "busy": round(busy, 2)}
        result.update(resent=resent, caught=caught)
        line = json.dumps({**result, "took": {k: round(v, 1) for k, v in took.items()}})
        (folder / "result.json").write_text(line)
        print(line, flush=True)
    finally:
        if server is not None:
            if server.poll() is None:
                server.terminate()  # the launcher removes its application, then exits
                try:
                    server.wait(120)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)
                    server.wait()
        for node in reversed(nodes):
            stop_ray(node)
        for logs in Path(temp).glob("session_*/logs"):  # kept for a failure's diagnosis
            shutil.copytree(logs, folder / "ray-logs", dirs_exist_ok=True)
        shutil.rmtree(temp, ignore_errors=True)


def ingress_logs(temp: str) -> list[Path]:
    return list(Path(temp).glob("session_*/logs/serve/replica_funasr-widget_Ingress_*.log"))


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


if __name__ == "__main__":
    main(*sys.argv[1:4])
