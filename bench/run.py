"""Run the benchmarks, print a table, write bench/RESULTS.md.

    .venv/bin/python -m bench                 # everything, CPU (~12 min on 2 cores)
    .venv/bin/python -m bench --quick         # shorter inputs, fewer repeats (~5 min)
    .venv/bin/python -m bench --device cuda --parts recognition throughput rtf \\
        --models sensevoice-small paraformer-zh-streaming fun-asr-nano   # bench/gpu.sh

Each part runs in its own process (python -m bench.PART --json FILE): memory figures are
not disturbed by the others, and one part failing leaves the rest standing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import models as bench_models

REPO = Path(__file__).resolve().parents[1]
PARTS = ("transport", "recognition", "throughput", "rtf", "memory", "remote")
CPU_MODELS = ["sensevoice-small", "paraformer-zh-streaming"]
TIMEOUT_S = {"transport": 300, "recognition": 900, "throughput": 900, "rtf": 600, "memory": 1200, "remote": 1500}

TARGETS = {
    "transport_p99_ms": 30.0,
    "throughput_ratio": 1.0,  # both CPU and wall time, against funasr's batch path
    "final_excess_ms": 50.0,  # p95 of (end -> final - end silence - 1.5 x model time)
    "partial_excess_ms": 50.0,  # p95 of (onset -> first partial - 1 chunk - model time)
    "memory_growth_mb": 50.0,
    "remote_p95_ratio": 1.5,  # the class server (2 replicas): p95 at N=8 / p95 at N=1
    "remote_throughput_ratio": 1.0,  # the class server / the funasr-server stack, segments per s at N=16
    "remote_rss_ratio": 0.25,  # a remote kernel's RSS / a local one's
}


def _versions() -> dict:
    out = {}
    for name in ("funasr", "torch", "numpy", "transformers", "jupyterlab", "playwright"):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:
            pass
    return out


def machine(device: str) -> dict:
    from .common import device_name

    mem_gb = None
    try:
        mem_gb = round(
            int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))) / 2**20, 1
        )
    except (OSError, StopIteration):
        pass
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
            ).stdout.strip()
            or "unknown (no git checkout)"
        )
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
            ).stdout.strip()
        )
    except OSError:
        commit, dirty = "unknown (no git)", False
    return {
        "device": device,
        "device_name": device_name(device),
        "memory_gb": mem_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        **_versions(),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "load_avg_start": os.getloadavg(),
    }


def run_part(part: str, args, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{part}.json"
        cmd = [
            sys.executable,
            "-m",
            f"bench.{part}",
            "--json",
            str(out),
            "--device",
            args.device,
            "--cache",
            str(args.cache),
            *(["--quick"] if args.quick else []),
            *(["--tiny"] if args.tiny else []),
            *extra,
        ]
        print(f"== {part}: {' '.join(shlex.quote(c) for c in cmd[2:])}", file=sys.stderr, flush=True)
        start = time.monotonic()
        try:
            proc = subprocess.run(
                cmd,
                cwd=REPO,
                timeout=TIMEOUT_S[part] * (1 if not args.quick else 0.5) + 60,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            log = proc.stdout
            ok = proc.returncode == 0 and out.is_file()
        except subprocess.TimeoutExpired as err:
            log, ok = (
                (err.stdout or b"").decode(errors="replace") if isinstance(err.stdout, bytes) else (err.stdout or ""),
                False,
            )
            log += f"\n(timed out after {err.timeout:.0f} s)"
        took = time.monotonic() - start
        shown = [
            ln
            for ln in log.splitlines()
            if ln.startswith(("memory:", "remote:", "recognition:", "throughput:", "rtf:", "building"))
        ]
        for ln in shown:
            print("   " + ln, file=sys.stderr)
        if not ok:
            print(log[-4000:], file=sys.stderr)
            return {"error": f"{part} failed", "log": log[-4000:], "took_s": took}
        result = json.loads(out.read_text())
        result["took_s"] = took
        return result


# -- the report -------------------------------------------------------------------------------


def _f(value, digits=0, unit="") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}f}{unit}"


def _met(ok) -> str:
    return "–" if ok is None else ("**met**" if ok else "**missed**")


def verdicts(results: dict) -> list[tuple[str, str, str, str]]:
    """(figure, value, target, met) rows for the summary table."""
    rows = []
    t = results.get("transport")
    if t and "error" not in t:
        lat = t["latency_ms"]
        loss = t["gaps"] + t["lost"] + t["rejected"] + (t["dropped_seconds"] > 0)
        rows.append(
            (
                "transport: capture -> on_msg p50 / p95 / p99",
                f"{_f(lat['p50'], 1)} / {_f(lat['p95'], 1)} / {_f(lat['p99'], 1)} ms",
                f"p99 <= {TARGETS['transport_p99_ms']:.0f} ms",
                _met(lat["p99"] <= TARGETS["transport_p99_ms"]),
            )
        )
        rows.append(
            (
                f"transport: loss over {t['seconds']:.0f} s ({t['chunks']} chunks)",
                f"{t['gaps']} gaps, {t['lost']} lost, {t['rejected']} rejected, {t['dropped_seconds']} s dropped",
                "none",
                _met(loss == 0),
            )
        )
    r = results.get("recognition")
    if r and "error" not in r:
        for m in r["models"]:
            fp, fx = m["first_partial_ms"], m["first_partial_beyond_ms"]
            rows.append(
                (
                    f"{m['model']}: onset -> first partial p50 / p95",
                    f"{_f(fp['p50'])} / {_f(fp['p95'])} ms; beyond {m['chunk_ms']} ms chunk + model "
                    f"(p50 {_f(m['partial_model_ms']['p50'])} ms): p95 {_f(fx['p95'])} ms"
                    + (
                        ""
                        if m["streaming"]
                        else f" (the VAD's start detection: p95 {_f(m['vad_start_detect_ms']['p95'])} ms after "
                        f"the onset; the pipeline's share: p95 {_f(m['partial_overhead_ms']['p95'])} ms)"
                    ),
                    f"beyond <= {TARGETS['partial_excess_ms']:.0f} ms",
                    _met(None if fx["p95"] is None else fx["p95"] <= TARGETS["partial_excess_ms"]),
                )
            )
            fin, beyond, ex = m["final_ms"], m["final_beyond_silence_ms"], m["final_excess_ms"]
            rows.append(
                (
                    f"{m['model']}: end of speech -> final segment p50 / p95",
                    f"{_f(fin['p50'])} / {_f(fin['p95'])} ms; beyond the {m['end_silence_ms']} ms "
                    f"end silence p50 {_f(beyond['p50'])} / p95 {_f(beyond['p95'])} ms; model "
                    f"p50 {_f(m['final_model_ms']['p50'])} / p95 {_f(m['final_model_ms']['p95'])} ms; "
                    f"beyond - 1.5 x model: p95 {_f(ex['p95'])} ms (the VAD's own end detection: "
                    f"p95 {_f(m['vad_end_detect_ms']['p95'])} ms after the speech; the pipeline's "
                    f"share: p95 {_f(m['final_overhead_ms']['p95'])} ms)",
                    f"beyond <= 1.5 x model + {TARGETS['final_excess_ms']:.0f} ms",
                    _met(None if ex["p95"] is None else ex["p95"] <= TARGETS["final_excess_ms"]),
                )
            )
    tp = results.get("throughput")
    if tp and "error" not in tp:
        for m in tp["models"]:
            b = m["best"]
            rows.append(
                (
                    f"{m['model']}: transcribe() vs funasr batch, CPU and wall ({m['audio_s']:.0f} s audio)",
                    f"CPU {_f(b['ours']['cpu_s'], 2)} s vs {_f(b['funasr']['cpu_s'], 2)} s: "
                    f"{_f(m['cpu_ratio'], 2)}; wall {_f(b['ours']['wall_s'], 2)} s vs "
                    f"{_f(b['funasr']['wall_s'], 2)} s: {_f(m['wall_ratio'], 2)}; "
                    f"same segments: {_f(m['same_segments'])}",
                    f"both <= {TARGETS['throughput_ratio']:.2f}",
                    _met(max(m["cpu_ratio"], m["wall_ratio"]) <= TARGETS["throughput_ratio"]),
                )
            )
    rt = results.get("rtf")
    if rt and "error" not in rt:
        for m in rt["models"]:
            if m["streaming"]:
                st = m["stream"]
                value = (
                    f"RTF {_f(st['rtf'], 3)} ({st['audio_s']} s stream); 600 ms step "
                    f"p50 {_f(st['step_ms']['p50'])} / p95 {_f(st['step_ms']['p95'])} ms"
                )
            else:
                value = ", ".join(f"{s['audio_s']} s: {_f(s['rtf'], 3)}" for s in m["segments"])
            rows.append((f"{m['model']}: real-time factor on {rt['device']}", value, "(reported)", "–"))
        if "vad" in rt:
            v = rt["vad"]
            rows.append(
                (
                    "fsmn-vad: real-time factor",
                    f"100 ms blocks {_f(v['live_100ms']['rtf'], 4)}, whole file {_f(v['file']['rtf'], 4)}",
                    "(reported)",
                    "–",
                )
            )
    mem = results.get("memory")
    if mem and "error" not in mem:
        rows.append(
            (
                f"memory: RSS growth over {mem['minutes']:.0f} simulated min ({mem['model']})",
                f"{_f(mem['growth_mb'], 1)} MB ({_f(mem['rss_after_5min_mb'])} -> "
                f"{_f(mem['rss_end_mb'])} MB, {mem['segments']} segments, {_f(mem['speed_x'], 1)}x real time)",
                f"<= {TARGETS['memory_growth_mb']:.0f} MB",
                _met(mem["growth_mb"] <= TARGETS["memory_growth_mb"]),
            )
        )
    rem = results.get("remote")
    if rem and "error" not in rem:
        ratio = rem.get("p95_ratio_8_vs_1")
        rows.append(
            (
                "remote: class server (Ray Serve, 2 replicas), end of speech -> final p95 at N=8 / N=1",
                f"{_f(ratio, 2)}",
                f"<= {TARGETS['remote_p95_ratio']}",
                _met(None if ratio is None else ratio <= TARGETS["remote_p95_ratio"]),
            )
        )
        speed = rem.get("throughput_ratio_vs_funasr_server")
        rows.append(
            (
                f"remote: segments per s at N={rem.get('throughput_at_n')}, class server / funasr-server stack",
                f"{_f(speed, 2)}",
                f">= {TARGETS['remote_throughput_ratio']}",
                _met(None if speed is None else speed >= TARGETS["remote_throughput_ratio"]),
            )
        )
        rows.append(
            (
                "remote: kernel RSS, remote engine / model loaded locally",
                f"{_f(rem['remote_rss_mb'])} / {_f(rem['local_rss_mb'])} MB = {_f(rem['rss_ratio'], 2)} "
                f"(energy VAD, no model in the kernel: {_f(rem['remote_energy_vad_rss_mb'])} MB = "
                f"{_f(rem['rss_ratio_energy_vad'], 2)})",
                f"< {TARGETS['remote_rss_ratio']}",
                _met(rem["rss_ratio"] < TARGETS["remote_rss_ratio"]),
            )
        )
    for part, res in results.items():
        if isinstance(res, dict) and "error" in res:
            rows.append((part, res["error"], "", "**failed**"))
    return rows


def table(rows) -> str:
    lines = ["| figure | value | target | |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(lines)


def details(results: dict) -> str:
    out = []
    r = results.get("recognition")
    if r and "error" not in r:
        out.append(f"### Recognition ({r['device_name']}), {r['audio_s']:.1f} s of scripted speech fed in real time\n")
        keys = [
            "first_partial_ms",
            "partial_model_ms",
            "first_partial_beyond_ms",
            "vad_start_detect_ms",
            "partial_overhead_ms",
            "final_ms",
            "final_beyond_silence_ms",
            "final_model_ms",
            "final_excess_ms",
            "vad_end_detect_ms",
            "final_overhead_ms",
        ]
        out.append("| model | figure (ms) | p50 | p95 | max | n |\n|---|---|---|---|---|---|")
        for m in r["models"]:
            for k in keys:
                s = m[k]
                out.append(
                    f"| {m['model']} | {k.removesuffix('_ms')} | {_f(s['p50'])} | {_f(s['p95'])} | "
                    f"{_f(s['max'])} | {s['n']} |"
                )
        out.append("")
        for m in r["models"]:
            out.append(
                f"- {m['model']}: {m['utterances']} utterances -> {m['segments']} segments; "
                f"{_f(m['partials_per_speech_s'], 2)} partial updates per second of speech; "
                f"process CPU {_f(m['cpu_s'], 1)} s for {_f(m['audio_s'], 1)} s of audio "
                f"({_f(m['cpu_s'] / m['audio_s'], 3)} s/s)"
            )
        out.append("\nPer utterance (ms; onset/end in the recording):\n")
        out.append(
            "| model | onset | end | first partial | its model time | VAD start detect | final | its model time | VAD end detect |\n"
            "|---|---|---|---|---|---|---|---|---|"
        )
        for m in r["models"]:
            for row in m["rows"]:
                g = row.get
                out.append(
                    f"| {m['model']} | {row['onset_ms']} | {row['end_ms']} | {_f(g('first_partial_ms'))} | "
                    f"{_f(g('partial_model_ms'))} | {_f(g('vad_start_detect_ms'))} | {_f(g('final_ms'))} | "
                    f"{_f(g('final_model_ms'))} | {_f(g('vad_end_detect_ms'))} |"
                )
        out.append("")
    tp = results.get("throughput")
    if tp and "error" not in tp:
        out.append(
            f"### Throughput ({tp['device_name']}), {tp['audio_s']:.1f} s recording, {tp['reps']} alternating runs each, "
            "each path in its own process\n"
        )
        out.append(
            "| model | params | run | ours CPU s | ours wall s | funasr CPU s | funasr wall s |\n|---|---|---|---|---|---|---|"
        )
        for m in tp["models"]:
            for i, (a, b) in enumerate(zip(m["runs"]["ours"], m["runs"]["funasr"], strict=False)):
                out.append(
                    f"| {m['model']} | {m['params'] / 1e6:.1f}M | {i + 1} | {_f(a['cpu_s'], 2)} | "
                    f"{_f(a['wall_s'], 2)} | {_f(b['cpu_s'], 2)} | {_f(b['wall_s'], 2)} |"
                )
        out.append("")
        for m in tp["models"]:
            out.append(
                f"- {m['model']}: {m['segments']} segments (funasr's VAD: {m['segments_funasr']}), "
                f"same boundaries: {_f(m['same_segments'])}"
            )
        out.append("")
    rt = results.get("rtf")
    if rt and "error" not in rt:
        out.append(f"### Real-time factor ({rt['device_name']}, torch {rt['torch']}, {rt['torch_threads']} threads)\n")
        out.append("| model | input | wall s | CPU s | RTF |\n|---|---|---|---|---|")
        for m in rt["models"]:
            items = [m["stream"]] if m["streaming"] else m["segments"]
            for s in items:
                label = f"{s['audio_s']} s" + (" stream, 600 ms steps" if m["streaming"] else " segment")
                out.append(
                    f"| {m['model']} | {label} | {_f(s['wall_s'], 3)} | {_f(s['cpu_s'], 3)} | {_f(s['rtf'], 3)} |"
                )
        if "vad" in rt:
            v = rt["vad"]
            for label in ("live_100ms", "file"):
                out.append(
                    f"| fsmn-vad | {v['audio_s']} s, {label} | {_f(v[label]['wall_s'], 3)} | "
                    f"{_f(v[label]['cpu_s'], 3)} | {_f(v[label]['rtf'], 4)} |"
                )
        out.append("")
    mem = results.get("memory")
    if mem and "error" not in mem:
        out.append(f"### Memory ({mem['model']}, {mem['minutes']:.0f} simulated minutes)\n")
        out.append(
            f"RSS before the widget {_f(mem['rss_before_widget_mb'])} MB; the session kept "
            f"{_f(mem['recording_kept_s'] / 60, 1)} min of audio (on disk); wall {_f(mem['wall_s'])} s.\n"
        )
        out.append("| audio (min) | RSS (MB) | segments | wall (s) |\n|---|---|---|---|")
        for x in mem["readings"]:
            out.append(f"| {x['audio_min']:.0f} | {x['rss_mb']:.1f} | {x['segments']} | {x['wall_s']:.0f} |")
        out.append(f"| end | {mem['rss_end_mb']:.1f} | {mem['segments']} | {mem['wall_s']:.0f} |")
        out.append("")
    rem = results.get("remote")
    if rem and "error" not in rem:
        from .remote import table as remote_table

        out.append(
            f"### Remote engine (class server vs funasr-server stack, {rem['cores']} cores, {rem['threads_per_replica']} "
            f"thread(s) per replica, {rem['sentences']} sentences per notebook)\n"
        )
        out.append(remote_table(rem) + "\n")
    t = results.get("transport")
    if t and "error" not in t:
        lat = t["latency_ms"]
        out.append(f"### Transport ({t['browser']})\n")
        out.append(
            f"{t['seconds']:.0f} s recorded through the Record button (wall {t['wall_s']:.1f} s): "
            f"{t['received_s']:.2f} s of audio in {t['chunks']} chunks (expected {t['expected_chunks']}); "
            f"gaps {t['gaps']}, lost {t['lost']}, rejected {t['rejected']}, reordered {t['reordered']}, "
            f"dropped {t['dropped_seconds']} s. Capture -> on_msg latency over {lat['n']} chunks: "
            f"min {lat['min']:.1f}, p50 {lat['p50']:.1f}, p95 {lat['p95']:.1f}, p99 {lat['p99']:.1f}, "
            f"max {lat['max']:.1f} ms.\n"
        )
    return "\n".join(out)


def report(results: dict, info: dict, command: str, model_infos: dict, notes: str) -> str:
    took = sum(r.get("took_s", 0) for r in results.values() if isinstance(r, dict))
    lines = [
        "# Benchmark results",
        "",
        f"- date: {info['date']}",
        f"- command: `{command}` ({took / 60:.1f} min)",
        f"- machine: {info['device_name']}, {info['memory_gb']} GB RAM, {info['os']}; device {info['device']}",
        f"- software: Python {info['python']}, "
        + ", ".join(
            f"{k} {info[k]}"
            for k in ("funasr", "torch", "numpy", "transformers", "jupyterlab", "playwright")
            if k in info
        ),
        f"- code: {info['commit']}",
        f"- load average at start {', '.join(f'{x:.2f}' for x in info['load_avg_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in info['load_avg_end'])} (other work on the machine inflates times)",
        "",
        "Models (random weights at the real size unless it says real; compute cost is the real "
        "model's, text is gibberish):",
        "",
        "| model | weights | parameters |",
        "|---|---|---|",
    ]
    for name, m in model_infos.items():
        lines.append(f"| {name} | {m['weights']}{' (tiny)' if m.get('tiny') else ''} | {m['params'] / 1e6:.1f}M |")
    lines += ["", "## Summary", "", table(verdicts(results)), ""]
    if notes:
        lines += [notes, ""]
    lines += ["## Details", "", details(results)]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter inputs, fewer repeats")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=None)
    parser.add_argument("--models", nargs="+", default=None, help=f"ASR models (default {CPU_MODELS})")
    parser.add_argument("--cache", type=Path, default=bench_models.DEFAULT_CACHE)
    parser.add_argument("--tiny", action="store_true", help="tiny models: checks the code path only")
    parser.add_argument(
        "--two-pass",
        action="store_true",
        help="recognition also runs each segment model with paraformer-zh-streaming's partials",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="default bench/RESULTS.md (cpu) or bench/RESULTS-cuda.md"
    )
    parser.add_argument(
        "--notes",
        type=Path,
        default=REPO / "bench" / "FINDINGS.md",
        help="a Markdown file added under the summary (default bench/FINDINGS.md)",
    )
    parser.add_argument("--from-json", type=Path, help="rewrite the report from a RESULTS.json, run nothing")
    args = parser.parse_args(argv)
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        notes = args.notes.read_text() if args.notes and args.notes.is_file() else ""
        out = args.out or args.from_json.with_suffix(".md")
        out.write_text(
            report(saved["results"], saved["machine"], saved.get("command", "python -m bench"), saved["models"], notes)
        )
        print(table(verdicts(saved["results"])))
        return
    parts = args.parts or (PARTS if args.device == "cpu" else ("recognition", "throughput", "rtf"))
    names = args.models or CPU_MODELS
    out = args.out or (
        REPO / "bench" / ("RESULTS.md" if args.device == "cpu" else f"RESULTS-{args.device.split(':')[0]}.md")
    )
    command = " ".join(["python -m bench", *[shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])]])

    # Build (or find) the models first, in this process, so the parts only load them.
    from funasr_widget._torch import quiet

    with quiet():
        model_infos = {
            name: bench_models.ensure(
                name, args.cache, tiny=args.tiny and name != "fsmn-vad", log=lambda m: print(m, file=sys.stderr)
            )
            for name in ["fsmn-vad", *names]
        }
    info = machine(args.device)
    info["date"] = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    results = {}
    for part in parts:
        extra = []
        if part in ("recognition", "throughput", "rtf"):
            extra = ["--models", *names]
            if part == "recognition" and args.two_pass:
                extra.append("--two-pass")
        elif part == "memory":
            extra = ["--model", "sensevoice-small" if "sensevoice-small" in names else names[0]]
        results[part] = run_part(part, args, extra)
    info["load_avg_end"] = os.getloadavg()
    rows = verdicts(results)
    print("\n" + table(rows))
    notes = args.notes.read_text() if args.notes and args.notes.is_file() else ""
    out.write_text(report(results, info, command, model_infos, notes))
    (out.with_suffix(".json")).write_text(
        json.dumps(
            {"machine": info, "command": command, "models": model_infos, "results": results}, indent=1, default=float
        )
    )
    print(f"\nwrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}", file=sys.stderr)


if __name__ == "__main__":
    main()
