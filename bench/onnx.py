"""The ONNX runtime against torch, side by side in one run: SenseVoiceSmall and paraformer-zh-streaming.

Real-size models with random weights (bench/models.py), exported once with the package's own
command (``python -m funasr_widget.models export FOLDER --quantize``: model.onnx and
model_quant.onnx; the streaming Paraformer also decoder.onnx and decoder_quant.onnx). Each
engine runs in a process of its own, one after the other, so that its memory is its own and
an ONNX kernel never imports torch (checked):

* ``torch``: the widget's torch engine (funasr's AutoModel), ``runtime="torch"``;
* ``onnx-fp32`` / ``onnx-int8``: the ONNX engine on the fp32 / int8 graphs (fp32 through a
  view of the folder without its ``*_quant.onnx`` files);
* ``funasr``: funasr's own path, ``AutoModel(model, vad_model).generate(input=audio)``
  (bench/throughput.py's, with its options: for the streaming model funasr's streaming
  decoding options and ``is_final``), the reference for ``transcribe()``.

Per engine: RSS after loading; the decode time (least and median of ``--reps``) of a 3 s
and a 10 s segment (SenseVoiceSmall), or, for the streaming model, of each 600 ms step of a
10 s stream fed through ``new_stream()``/``accept()`` (``final`` on the last piece; the mean
step of a run, and the p95 of every step); ``transcribe()`` of the scripted speech (process
CPU and wall, least of ``--reps``; no word times, as funasr's path gives none); the peak RSS.
Then, in the torch and the int8 process (``--no-live`` skips it), the live latency of
bench/recognition.py's ``live()`` (the scripted speech fed to a Transcriber in real time, one
run: ~55 s, ~20 s with ``--quick``): onset -> first partial and end of speech -> final,
p50/p95. Last, the install size of the ``[onnx]`` extra (a fresh venv under /tmp) against
``[asr]`` (the installed distributions torch, funasr and what they pull in, by this venv's
records).

    nice .venv/bin/python -m bench.onnx [--models sensevoice-small paraformer-zh-streaming]
        [--reps 5] [--quick] [--no-live] [--tiny]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from . import common

KINDS = ("torch", "onnx-fp32", "onnx-int8", "funasr")
LIVE_KINDS = ("torch", "onnx-int8")  # live latency: the int8 export against torch
MODELS = ("sensevoice-small", "paraformer-zh-streaming")
LABELS = {"sensevoice-small": "SenseVoiceSmall", "paraformer-zh-streaming": "paraformer-zh-streaming"}
SEGMENTS_S = (3, 10)
STREAM_S = 10
ONNX_PACKAGES = ["onnxruntime", "kaldi-native-fbank", "sentencepiece", "pyyaml", "numpy", "anywidget", "soxr"]
ASR_ROOTS = ["funasr", "torch", "kaldi-native-fbank", "anywidget", "numpy", "soxr"]
QUANT = "_quant.onnx"  # model_quant.onnx, decoder_quant.onnx: left out of the fp32 view


def _rss_mb() -> float:
    return common.rss_mb()


def _peak_mb() -> float:
    """This process's peak RSS since its exec (VmHWM: ru_maxrss would carry the parent's
    RSS at the fork, and the parent may have imported torch to build the models)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))


def _times(run, reps: int) -> dict:
    wall, cpu = [], []
    for _ in range(reps):
        w0, c0 = common.clock()
        run()
        w1, c1 = common.clock()
        wall.append(w1 - w0)
        cpu.append(c1 - c0)
    return {"wall_min": min(wall), "wall_median": statistics.median(wall), "cpu_min": min(cpu)}


def _stream(engine, samples, reps: int) -> dict:
    """A stream in 600 ms steps through the engine's streaming interface, ``final`` on the last
    piece: the mean step of each run (least and median over the runs) and every step's p95."""
    from funasr_widget.asr.streaming import STEP

    def run(steps: list[float]) -> None:
        stream = engine.new_stream()
        for i in range(0, len(samples), STEP):
            w0 = time.perf_counter()
            engine.accept(stream, samples[i : i + STEP], final=i + STEP >= len(samples))
            steps.append(time.perf_counter() - w0)

    run([])  # warm-up
    means, every, cpu = [], [], []
    for _ in range(reps):
        steps: list[float] = []
        c0 = time.process_time()
        run(steps)
        cpu.append((time.process_time() - c0) / len(steps))
        means.append(sum(steps) / len(steps))
        every += steps
    return {
        "steps": len(every) // reps,
        "step_audio_ms": STEP / 16,
        "step_ms_min": min(means) * 1000,
        "step_ms_median": statistics.median(means) * 1000,
        "step_ms_p95": common.pct([s * 1000 for s in every], 95),
        "step_cpu_ms_min": min(cpu) * 1000,
    }


def child(kind: str, name: str, folder: Path, vad: Path, reps: int, quick: bool, live: bool) -> dict:
    """One engine in this process: the figures as a dict."""
    from funasr_widget import models, transcribe
    from funasr_widget.asr import STREAMING, architecture, load_engine

    models.set_models_dir(vad.parent)  # "fsmn-vad" is found there
    script = common.script(quick=quick)
    arch = architecture(folder)
    base = _rss_mb()
    started = time.perf_counter()
    if kind == "funasr":
        from . import throughput

        asr_info, vad_info = {"path": str(folder)}, {"path": str(vad)}
        auto = throughput._funasr_model(asr_info, vad_info, "cpu")
        options = throughput._options(arch)
        load_s, loaded = time.perf_counter() - started, _rss_mb()
        auto.generate(input=script.samples, **options)  # warm-up
        whole = _times(lambda: auto.generate(input=script.samples, **options), reps)
        return {
            "load_s": load_s,
            "rss_base_mb": base,
            "rss_loaded_mb": loaded,
            "transcribe": whole,
            "peak_mb": _peak_mb(),
            "audio_s": script.seconds,
        }
    runtime = "torch" if kind == "torch" else "onnx"
    engine = load_engine(str(folder), "cpu", runtime=runtime, timestamps=False)
    load_s, loaded = time.perf_counter() - started, _rss_mb()
    out: dict = {"load_s": load_s, "rss_base_mb": base, "rss_loaded_mb": loaded}
    if arch in STREAMING:
        out["stream"] = _stream(engine, script.samples[16000 : 16000 + STREAM_S * 16000], reps)
    else:
        out["decode"] = {}
        for seconds in SEGMENTS_S:
            piece = script.samples[16000 : 16000 + seconds * 16000]
            engine.transcribe(piece)  # warm-up
            out["decode"][f"{seconds}s"] = _times(lambda piece=piece: engine.transcribe(piece), reps)

    def whole_run():
        transcribe(
            script.samples, 16000, model=str(folder), vad="fsmn-vad", device="cpu", runtime=runtime, timestamps=False
        )

    whole_run()  # warm-up
    out["transcribe"] = _times(whole_run, reps)
    out["peak_mb"] = _peak_mb()  # before the live run: the engine's own
    out["runtime"] = engine.runtime
    out["imported"] = sorted(m for m in ("torch", "funasr") if m in sys.modules)
    out["audio_s"] = script.seconds
    if live:
        from .recognition import live as live_run

        info = {"path": str(folder), "params": None, "weights": None}  # the parent has them
        result = live_run(name, info, script, "cpu", options={"runtime": runtime})
        result.pop("rows", None)
        out["live"] = result
        out["imported_after_live"] = sorted(m for m in ("torch", "funasr") if m in sys.modules)
    return out


def exported_folders(name: str, cache: Path, tiny: bool, log) -> tuple[dict, Path]:
    """The model (real size) with its export, and a view of it with the fp32 graphs only (no
    ``*_quant.onnx``: model_quant.onnx, and decoder_quant.onnx of the streaming model)."""
    from funasr_widget.asr import STREAMING, architecture

    from . import models as bench_models

    info = bench_models.ensure(name, cache, tiny=tiny, log=log)
    folder = Path(info["path"])
    files = ["model.onnx", "model_quant.onnx"]
    if architecture(folder) in STREAMING:
        files += ["decoder.onnx", "decoder_quant.onnx"]
    if not all((folder / f).is_file() for f in files):
        log(f"exporting {folder} (fp32 and int8) ...")
        started = time.perf_counter()
        command = [sys.executable, "-m", "funasr_widget.models", "export", str(folder), "--quantize"]
        subprocess.run(command, check=True, stdout=sys.stderr)
        log(f"exported in {time.perf_counter() - started:.0f} s")
    fp32 = folder.with_name(folder.name + "-fp32")  # the same files, without the int8 graphs
    fp32.mkdir(exist_ok=True)
    for link in fp32.iterdir():  # a view left by an older run: only links to what is there now
        if link.is_symlink() and (link.name.endswith(QUANT) or not link.exists()):
            link.unlink()
    for file in folder.iterdir():
        link = fp32 / file.name
        if not file.name.endswith(QUANT) and not link.exists():
            link.symlink_to(file)
    return info, fp32


def _dist_mb(names: list[str]) -> tuple[float, list[str]]:
    """Installed size of these distributions and everything they require (this venv's RECORDs)."""
    seen: set[str] = set()
    todo = [n.lower().replace("_", "-") for n in names]
    total = 0
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for file in dist.files or []:
            try:
                total += file.locate().stat().st_size
            except OSError:
                pass
        for requirement in dist.requires or []:
            if "extra ==" in requirement:
                continue
            todo.append(re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-"))
    return total / 1e6, sorted(seen)


def install_sizes(log) -> dict:
    """The [onnx] packages in a fresh venv, and both extras by this venv's records."""
    venv = Path("/tmp/funasr-widget-onnx-venv")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    log("installing the [onnx] packages into a fresh venv ...")
    subprocess.run([str(venv / "bin/pip"), "install", "-q", *ONNX_PACKAGES], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    du = subprocess.run(["du", "-sb", str(site)], capture_output=True, text=True, check=True).stdout.split()[0]
    onnx_mb, onnx_dists = _dist_mb(ONNX_PACKAGES)
    asr_mb, asr_dists = _dist_mb(ASR_ROOTS)
    return {
        "onnx_venv_site_packages_mb": int(du) / 1e6,
        "onnx_dists_mb": onnx_mb,
        "asr_dists_mb": asr_mb,
        "asr_dists": len(asr_dists),
        "onnx_dists": len(onnx_dists),
    }


def model_table(model: dict) -> str:
    """One model's block: a row per figure, a column per engine ("-" where it has none)."""
    r = model["engines"]
    lines = [
        f"**{model['label']}** ({model['params'] / 1e6:.1f}M parameters, {model['weights']} weights)",
        "",
        "| | torch (widget) | ONNX fp32 | ONNX int8 | funasr's path |",
        "|---|---|---|---|---|",
    ]

    def row(label, get, fmt="{:.3f}"):
        cells = []
        for kind in KINDS:
            try:
                value = get(r[kind])
                cells.append(fmt.format(value) if value is not None else "-")
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    if model["streaming"]:
        step = next((e["stream"] for e in r.values() if "stream" in e), {})
        what = f"{step.get('step_audio_ms', 600):.0f} ms step of a {STREAM_S} s stream"
        row(f"decode per {what}, ms (least)", lambda e: e["stream"]["step_ms_min"], "{:.1f}")
        row("  median of the runs, ms", lambda e: e["stream"]["step_ms_median"], "{:.1f}")
        row("  p95 of every step, ms", lambda e: e["stream"]["step_ms_p95"], "{:.1f}")
        row("  vs torch", lambda e: r["torch"]["stream"]["step_ms_min"] / e["stream"]["step_ms_min"], "{:.2f}x")
    else:
        for s in SEGMENTS_S:
            row(f"decode {s} s segment, s (least)", lambda e, s=s: e["decode"][f"{s}s"]["wall_min"])
            row(
                f"  vs torch ({s} s)",
                lambda e, s=s: r["torch"]["decode"][f"{s}s"]["wall_min"] / e["decode"][f"{s}s"]["wall_min"],
                "{:.2f}x",
            )
    row("transcribe() wall, s (least)", lambda e: e["transcribe"]["wall_min"])
    row("transcribe() CPU, s (least)", lambda e: e["transcribe"]["cpu_min"])
    row("  CPU / funasr's", lambda e: e["transcribe"]["cpu_min"] / r["funasr"]["transcribe"]["cpu_min"], "{:.2f}")
    live = lambda key, q: lambda e: e["live"][key][q]  # noqa: E731
    if any("live" in e for e in r.values()):
        row("live: onset -> first partial p50, ms", live("first_partial_ms", "p50"), "{:.0f}")
        row("live: onset -> first partial p95, ms", live("first_partial_ms", "p95"), "{:.0f}")
        row("  model's time for it p95, ms", live("partial_model_ms", "p95"), "{:.0f}")
        row("live: end of speech -> final p50, ms", live("final_ms", "p50"), "{:.0f}")
        row("live: end of speech -> final p95, ms", live("final_ms", "p95"), "{:.0f}")
        row("  beyond the end silence p95, ms", live("final_beyond_silence_ms", "p95"), "{:.0f}")
        row("  model's time for it p95, ms", live("final_model_ms", "p95"), "{:.0f}")
        row("  beyond - 1.5 x model p95, ms (target <= 50)", live("final_excess_ms", "p95"), "{:.0f}")
    row("RSS after load, MB", lambda e: e["rss_loaded_mb"], "{:.0f}")
    row("  / torch kernel's", lambda e: e["rss_loaded_mb"] / r["torch"]["rss_loaded_mb"], "{:.2f}")
    row("peak RSS, MB", lambda e: e["peak_mb"], "{:.0f}")
    row("load, s", lambda e: e["load_s"], "{:.1f}")
    heavy = {k: r[k].get("imported_after_live", r[k].get("imported")) for k in KINDS if k.startswith("onnx") and k in r}
    if any(heavy.values()):
        lines += ["", f"ONNX processes imported {heavy} (they should import neither torch nor funasr)."]
    return "\n".join(lines)


def table(result: dict) -> str:
    blocks = [model_table(m) for m in result["models"]]
    size = result["install"]
    blocks.append(
        f"Install: `[onnx]` {size['onnx_venv_site_packages_mb']:.0f} MB (a fresh venv's site-packages; "
        f"{size['onnx_dists_mb']:.0f} MB by this venv's records) against `[asr]` {size['asr_dists_mb']:.0f} MB "
        f"(torch CPU, funasr and the {size['asr_dists']} distributions they pull in): "
        f"{size['onnx_venv_site_packages_mb'] / size['asr_dists_mb']:.2f}x."
    )
    return "\n\n".join(blocks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="the first four sentences only")
    parser.add_argument("--no-live", action="store_true", help="skip the live latency runs (~55 s per engine)")
    parser.add_argument("--cache", type=Path, default=common.bench_models.DEFAULT_CACHE)
    parser.add_argument(
        "--tiny", action="store_true", help="the tiny models (checks the code path; figures meaningless)"
    )
    parser.add_argument(
        "--json", type=Path, help="where the figures go (default bench/RESULTS-onnx.json; none with --tiny)"
    )
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--vad", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--live", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        figures = child(args.child, args.model, args.folder, args.vad, args.reps, args.quick, args.live)
        print(json.dumps(figures, default=float))
        return

    def log(*a):
        print(*a, file=sys.stderr, flush=True)

    from . import models as bench_models

    vad = Path(bench_models.ensure("fsmn-vad", args.cache, log=log)["path"])
    results = []
    for name in args.models:
        info, fp32 = exported_folders(name, args.cache, args.tiny, log)
        engines = {}
        for kind in KINDS:
            folder = fp32 if kind == "onnx-fp32" else Path(info["path"])
            live = kind in LIVE_KINDS and not args.no_live
            log(f"{name}: {kind}{' (and live)' if live else ''} ...")
            command = [sys.executable, "-m", "bench.onnx", "--child", kind, "--model", name]
            command += ["--folder", str(folder), "--vad", str(vad), "--reps", str(args.reps)]
            command += [*(["--quick"] if args.quick else []), *(["--live"] if live else [])]
            env = {**os.environ, "PYTHONWARNINGS": "ignore"}
            out = subprocess.run(command, capture_output=True, text=True, env=env)
            if out.returncode:
                raise SystemExit(f"{name} {kind} failed:\n{out.stderr[-3000:]}")
            engines[kind] = json.loads(out.stdout.strip().splitlines()[-1])
            if "live" in engines[kind]:
                engines[kind]["live"].update(params=info["params"], weights=info["weights"])
            log(json.dumps({k: v for k, v in engines[kind].items() if k != "live"}))
        results.append(
            {
                "model": name,
                "label": LABELS[name],
                "params": info["params"],
                "weights": f"{'TINY ' if args.tiny else ''}{info['weights']}",
                "streaming": any("stream" in e for e in engines.values()),
                "engines": engines,
            }
        )
    result = {
        "machine": common.device_name("cpu"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "nice .venv/bin/python -m bench.onnx " + " ".join(argv if argv is not None else sys.argv[1:]),
        "size": "TINY" if args.tiny else "real size",
        "models": results,
        "install": install_sizes(log),
    }
    json_path = args.json or (None if args.tiny else Path(__file__).with_name("RESULTS-onnx.json"))
    if json_path:
        json_path.write_text(json.dumps(result, indent=1, default=float))
    print(table(result))
    if not args.tiny:
        write_section(result)


MARK = "<!-- bench/onnx.py -->"


def write_section(result: dict) -> None:
    """This run's tables as the ONNX section of bench/RESULTS.md (replacing the last one)."""
    doc = Path(__file__).with_name("RESULTS.md")
    text = doc.read_text() if doc.exists() else ""
    if text.count(MARK) >= 2:  # the last run's section, from its mark to its closing mark
        start, end = text.index(MARK), text.index(MARK, text.index(MARK) + 1) + len(MARK)
        text = text[:start].rstrip("\n") + "\n" + text[end:].lstrip("\n")
    names = ", ".join(m["label"] for m in result["models"])
    section = (
        f"\n{MARK}\n## ONNX runtime against torch (bench/onnx.py)\n\n"
        f"{names}, {result['size']}, {result['machine']}, {result['date']}; "
        f"`{result['command']}`. Each engine in its own process, in turn; decode = one segment through the "
        "engine (no word times), or for the streaming model each 600 ms step of a stream through its "
        "new_stream()/accept() (final on the last piece), least of the repeats; transcribe() = the scripted "
        "speech through FSMN-VAD and the engine (funasr: its own AutoModel(model, vad_model).generate, for the "
        "streaming model with its streaming options and is_final); live = bench/recognition.py's live(), one "
        'run of the scripted speech in real time per engine (int8 and torch; "-" where the model\'s time '
        "was not measured). ONNX processes import neither torch nor funasr.\n\n"
        f"{table(result)}\n{MARK}\n"
    )
    doc.write_text(text + section)


if __name__ == "__main__":
    main()
