"""Remote engine: N simulated notebooks sharing one class server, the Ray Serve server
against the funasr-server stack it replaced, side by side in one run.

Both serve the real-size random-weight SenseVoiceSmall folder (bench/models.py) with two
replicas of one thread each on 127.0.0.1, behind nginx with TLS and a token, and both stay up
for the whole run (the idle one costs no CPU):

* the class server, ``python -m funasr_widget.serve`` (the Launcher): Ray Serve replicas of
  the widget's own engine, ``@serve.batch`` across requests;
* the funasr-server stack (bench/funasr_server_stack.py): two ``funasr-server`` processes,
  nginx balancing over them (least connections), one request at a time per replica.

For N = 1, 4, 8, 16, N separate processes ("notebooks", each a headless LiveSession with
FSMN-VAD in-process, on onnxruntime as every remote kernel runs it, and the remote engine)
feed the scripted speech (sentences with 2 s pauses) in real time, 100 ms chunks, each
starting at its own offset within one sentence period (the class does not speak in unison),
first to one stack, then to the other. Per N: end of speech -> final segment p50/p95
(capture of the speech's last sample to the Final event, including the 700 ms end silence
the VAD waits for), errors (segments with an error, or an utterance with no final), and
segments (and audio seconds) served per wall second. Then the kernels' resident memory: a
notebook process with the remote engine against one with the same model loaded locally.
Targets: the class server's p95 at N=8 within 1.5x of its N=1; its throughput at N=16 at
least the funasr-server stack's; a remote kernel under 1/4 of a local one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import common

CHUNK = 1600
NS = (1, 4, 8, 16)
RAY, OLD = "class server (Ray Serve)", "funasr-server stack"
FINAL_WAIT_S = 120.0


# -- one notebook (a child process) ---------------------------------------------------------------


def notebook(args) -> None:
    """Load, say ready, then for each phase: wait for its go file, feed in real time, report."""
    from funasr_widget.events import Final
    from funasr_widget.live import LiveSession

    phases = json.loads(args.phases)
    if any(p.get("local") for p in phases):
        common.quiet_funasr()  # a remote kernel never imports funasr (nor torch): its VAD runs on onnxruntime
    from funasr_widget import models

    models.set_models_dir(Path(args.vad_dir))
    script = common.script(quick=args.quick)
    results = []
    for k, phase in enumerate(phases):
        finals: list = []

        def listener(event, finals=finals):
            if isinstance(event, Final):
                finals.append((time.perf_counter(), event.segment))

        options = {"server": phase["url"]}
        if phase.get("token_file"):  # "token", or the class server's "name token" lines: the first token
            token = Path(phase["token_file"]).read_text().split()[1 if phase.get("named") else 0]
            options.update(api_key=token, ca_bundle=phase["ca_bundle"])
        vad = phase.get("vad", "fsmn-vad")
        if phase.get("local"):
            session = LiveSession(phase["local"], vad, "cpu", partials=False, listener=listener)
        else:
            session = LiveSession("auto", vad, "cpu", partials=False, listener=listener, **options)
        ok = session.wait(300) and session.model_state == "ready"
        Path(f"{args.sync}.ready{k}.{args.index}").write_text(json.dumps(session.model_info, default=str))
        go = Path(f"{args.sync}.go{k}")
        while not go.exists():
            time.sleep(0.02)
        lead = np.random.default_rng(args.index).normal(0, 1e-3, int(args.offset_s * common.RATE)).astype(np.float32)
        audio = np.concatenate([lead, script.samples])
        t0 = time.perf_counter()
        for i in range(0, len(audio), CHUNK):
            delay = t0 + (i + CHUNK) / common.RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            session.feed(audio[i : i + CHUNK], common.RATE, final=i + CHUNK >= len(audio))
        fed = time.perf_counter()
        session.wait(FINAL_WAIT_S)
        deadline = time.monotonic() + 10
        while len(finals) < len(script.intervals_ms) and time.monotonic() < deadline:
            time.sleep(0.1)
        offset_ms = args.offset_s * 1000
        latencies, errors, served = [], 0, 0.0
        for beg, end in script.intervals_ms:
            beg, end = beg + offset_ms, end + offset_ms
            hit = [(t, s) for t, s in finals if s["start"] * 1000 < end and s["end"] * 1000 > beg]
            if not hit:
                errors += 1
                continue
            t, seg = hit[0]
            latencies.append((t - (t0 + end / 1000)) * 1000)
        for _, seg in finals:
            errors += bool(seg.get("error"))
            served += seg["end"] - seg["start"] if not seg.get("error") else 0.0
        last = max((t for t, _ in finals), default=fed)
        results.append(
            {
                "ok": ok,
                "latencies_ms": latencies,
                "errors": errors,
                "problems": len(session.problems),
                "segments": len(finals),
                "served_s": served,
                "t0": t0,
                "last": last,
                "rss_mb": common.rss_mb(),
                "model_state": session.model_state,
                "vad": type(session.parts()["vad"]).__name__,
                "imports_torch": "torch" in sys.modules,
            }
        )
        session.close()
        Path(f"{args.sync}.done{k}.{args.index}").write_text(json.dumps(results[-1]))


# -- the controller ------------------------------------------------------------------------------


def _wait_files(pattern: str, n: int, timeout: float, procs) -> None:
    deadline = time.monotonic() + timeout
    folder, stem = os.path.split(pattern)
    while sum(1 for f in os.listdir(folder) if f.startswith(stem)) < n:
        dead = [p for p in procs if p.poll() is not None and p.returncode != 0]
        if dead:
            raise RuntimeError(f"a notebook process failed: {Path(dead[0].log).read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"waiting for {pattern}*")
        time.sleep(0.1)


def run_notebooks(n: int, phases: list[dict], args, vad_dir: Path, tmp: Path) -> list[dict]:
    """N notebook processes through every phase; per phase, the figures over all of them."""
    sync = tmp / (f"n{n}-" + re.sub(r"\W+", "-", phases[0]["name"]))  # each run its own sync files
    period_s = 5.0  # about one sentence and its pause
    procs = []
    for i in range(n):
        cmd = [
            sys.executable,
            "-m",
            "bench.remote",
            "--notebook",
            "--index",
            str(i),
            "--sync",
            str(sync),
            "--phases",
            json.dumps(phases),
            "--vad-dir",
            str(vad_dir),
            "--offset-s",
            f"{period_s * i / n:.2f}",
            *(["--quick"] if args.quick else []),
        ]
        log = open(f"{sync}.log{i}", "w")
        procs.append(
            subprocess.Popen(
                cmd,
                cwd=Path(__file__).resolve().parents[1],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "OMP_NUM_THREADS": "1", "FUNASR_WIDGET_THREADS": "1"},
            )
        )
        procs[-1].log = log.name
        log.close()
    out = []
    try:
        for k, phase in enumerate(phases):
            _wait_files(f"{sync}.ready{k}.", n, 600, procs)
            start = time.perf_counter()
            Path(f"{sync}.go{k}").touch()
            _wait_files(f"{sync}.done{k}.", n, 600, procs)
            reports = [json.loads(Path(f"{sync}.done{k}.{i}").read_text()) for i in range(n)]
            lat = [v for r in reports for v in r["latencies_ms"]]
            wall = max(r["last"] for r in reports) - min(r["t0"] for r in reports)
            out.append(
                {
                    "setup": phase["name"],
                    "n": n,
                    "latency_ms": common.summary(lat),
                    "errors": sum(r["errors"] for r in reports) + sum(not r["ok"] for r in reports),
                    "segments": sum(r["segments"] for r in reports),
                    "served_per_wall_s": sum(r["served_s"] for r in reports) / wall if wall > 0 else None,
                    "segments_per_wall_s": sum(r["segments"] for r in reports) / wall if wall > 0 else None,
                    "rss_mb": float(np.median([r["rss_mb"] for r in reports])),
                    "vads": sorted({r["vad"] for r in reports}),
                    "imports_torch": any(r["imports_torch"] for r in reports),
                    "took_s": time.perf_counter() - start,
                }
            )
            print(
                f"remote: {phase['name']}, N={n}: p50 {out[-1]['latency_ms']['p50']:.0f} ms, "
                f"p95 {out[-1]['latency_ms']['p95']:.0f} ms, errors {out[-1]['errors']}, "
                f"{out[-1]['served_per_wall_s']:.2f} audio s / wall s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = common.part_args(__doc__.split("\n\n")[0])
    parser.add_argument("--ns", type=int, nargs="+", default=list(NS), help="notebook counts (default 1 4 8 16)")
    parser.add_argument("--notebook", action="store_true", help=argparse_hidden())
    parser.add_argument("--index", type=int, default=0, help=argparse_hidden())
    parser.add_argument("--sync", help=argparse_hidden())
    parser.add_argument("--phases", help=argparse_hidden())
    parser.add_argument("--vad-dir", help=argparse_hidden())
    parser.add_argument("--offset-s", type=float, default=0.0, help=argparse_hidden())
    args = parser.parse_args(argv)
    if args.notebook:
        return notebook(args)

    from funasr_widget.serve import Launcher, free_port, tokens

    from .funasr_server_stack import Stack

    infos = common.models_for(["sensevoice-small"], args.cache, tiny=args.tiny)
    vad_dir = Path(infos["fsmn-vad"]["path"]).parent
    model = Path(infos["sensevoice-small"]["path"])
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp:
        tmp = Path(tmp)
        tmp.chmod(0o755)
        tokens.create(tmp / "tokens", "bench")
        t = time.perf_counter()
        old = Stack(
            model,
            replicas=2,
            port=free_port(),
            listen="127.0.0.1",
            token_file=tmp / "token",
            hostnames=["localhost", "127.0.0.1"],
            threads=1,
            folder=tmp / "stack",
        )
        ray = Launcher(
            model, tmp / "tokens", tmp / "serve", replicas=2, port=free_port(), listen="127.0.0.1", threads=1
        )
        with old, ray:
            started_s = time.perf_counter() - t
            print(f"remote: both stacks ready in {started_s:.0f} s", file=sys.stderr, flush=True)
            ray_phase = {"name": RAY, "url": ray.url, "token_file": str(tmp / "tokens"), "named": True}
            ray_phase["ca_bundle"] = str(ray.cert)
            old_phase = {"name": OLD, "url": old.url, "token_file": str(tmp / "token"), "ca_bundle": str(old.cert)}
            rows = []
            for n in args.ns:
                rows += run_notebooks(n, [ray_phase, old_phase], args, vad_dir, tmp)
            # A kernel with no model at all: the energy VAD, the remote engine.
            light = run_notebooks(1, [{**ray_phase, "name": "remote, energy VAD", "vad": "energy"}], args, vad_dir, tmp)
        # The kernels' memory: remote (from the runs above) against a kernel with the model loaded.
        local = run_notebooks(1, [{"name": "local", "url": "", "local": str(model)}], args, vad_dir, tmp)[0]
    light = light[0]
    remote_rss = float(np.median([r["rss_mb"] for r in rows]))
    by = {(r["setup"], r["n"]): r for r in rows}
    ends = [by.get((RAY, n)) for n in (1, 8)]
    ratio = (ends[1]["latency_ms"]["p95"] / ends[0]["latency_ms"]["p95"]) if all(ends) else None
    top = max(args.ns)
    busiest = [by.get((setup, top)) for setup in (RAY, OLD)]
    throughput = busiest[0]["segments_per_wall_s"] / busiest[1]["segments_per_wall_s"] if all(busiest) else None
    result = {
        "model": infos["sensevoice-small"],
        "cores": cores,
        "threads_per_replica": 1,
        "stack_start_s": started_s,
        "rows": rows,
        "remote_rss_mb": remote_rss,
        "local_rss_mb": local["rss_mb"],
        "local_latency_ms": local["latency_ms"],
        "rss_ratio": remote_rss / local["rss_mb"],
        "remote_energy_vad_rss_mb": light["rss_mb"],
        "rss_ratio_energy_vad": light["rss_mb"] / local["rss_mb"],
        "p95_ratio_8_vs_1": ratio,
        "throughput_ratio_vs_funasr_server": throughput,
        "throughput_at_n": top,
        "sentences": len(common.script(quick=args.quick).intervals_ms),
    }
    print(
        f"remote: kernel RSS {remote_rss:.0f} MB remote vs {local['rss_mb']:.0f} MB local "
        f"({result['rss_ratio']:.2f}); class server p95 N=8 / N=1: "
        + (f"{ratio:.2f}" if ratio else "-")
        + f"; throughput at N={top}, class server / funasr-server stack: "
        + (f"{throughput:.2f}" if throughput else "-"),
        file=sys.stderr,
        flush=True,
    )
    common.write(args, result)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


def table(result: dict) -> str:
    """The RESULTS.md section."""
    lines = [
        "| set-up | N | end of speech -> final p50 / p95 | errors | segments | segments / s | audio s / wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(result["rows"], key=lambda r: (r["setup"], r["n"])):
        lat = r["latency_ms"]
        lines.append(
            f"| {r['setup']} | {r['n']} | {lat['p50']:.0f} / {lat['p95']:.0f} ms | {r['errors']} | "
            f"{r['segments']} | {r.get('segments_per_wall_s') or 0:.2f} | {r['served_per_wall_s']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
