"""The ONNX runtime (funasr_widget/asr/onnx.py) against torch, side by side in one run.

Real-size SenseVoiceSmall with random weights (bench/models.py), exported once with the
package's own command (``python -m funasr_widget.models export FOLDER --quantize``). Each
engine runs in a process of its own, one after the other, so that its memory is its own and
an ONNX kernel never imports torch (checked):

* ``torch``: the widget's torch engine (funasr's AutoModel), ``runtime="torch"``;
* ``onnx-fp32`` / ``onnx-int8``: the ONNX engine on model.onnx / model_quant.onnx;
* ``funasr``: funasr's own batch path, ``AutoModel(model, vad_model).generate(input=audio)``
  (bench/throughput.py's), the reference for ``transcribe()``.

Per engine: RSS after loading, decode time of a 3 s and a 10 s segment (least and median of
``--reps``), ``transcribe()`` of the scripted speech (process CPU and wall, least of
``--reps``; no word times, as funasr's path gives none), and the peak RSS. Then the install
size of the ``[onnx]`` extra (a fresh venv under /tmp) against ``[asr]`` (the sizes of the
installed distributions torch, funasr and what they pull in, read from this venv's records).

    nice .venv/bin/python -m bench.onnx [--reps 5] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from . import common

KINDS = ("torch", "onnx-fp32", "onnx-int8", "funasr")
SEGMENTS_S = (3, 10)
ONNX_PACKAGES = ["onnxruntime", "kaldi-native-fbank", "sentencepiece", "pyyaml", "numpy", "anywidget", "soxr"]
ASR_ROOTS = ["funasr", "torch", "kaldi-native-fbank", "anywidget", "numpy", "soxr"]


def _rss_mb() -> float:
    return common.rss_mb()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _times(run, reps: int) -> dict:
    wall, cpu = [], []
    for _ in range(reps):
        w0, c0 = common.clock()
        run()
        w1, c1 = common.clock()
        wall.append(w1 - w0)
        cpu.append(c1 - c0)
    return {"wall_min": min(wall), "wall_median": statistics.median(wall), "cpu_min": min(cpu)}


def child(kind: str, folder: Path, vad: Path, reps: int, quick: bool) -> dict:
    """One engine in this process: the figures as a dict."""
    from funasr_widget import models, transcribe
    from funasr_widget.asr import load_engine

    models.set_models_dir(vad.parent)  # "fsmn-vad" is found there
    script = common.script(quick=quick)
    base = _rss_mb()
    started = time.perf_counter()
    if kind == "funasr":
        from . import throughput

        asr_info, vad_info = {"path": str(folder)}, {"path": str(vad)}
        auto = throughput._funasr_model(asr_info, vad_info, "cpu")
        options = throughput._options("SenseVoiceSmall")
        load_s, loaded = time.perf_counter() - started, _rss_mb()
        auto.generate(input=script.samples, **options)  # warm-up
        whole = _times(lambda: auto.generate(input=script.samples, **options), reps)
        return {
            "load_s": load_s,
            "rss_base_mb": base,
            "rss_loaded_mb": loaded,
            "transcribe": whole,
            "peak_mb": _peak_mb(),
        }
    runtime = "torch" if kind == "torch" else "onnx"
    engine = load_engine(str(folder), "cpu", runtime=runtime, timestamps=False)
    load_s, loaded = time.perf_counter() - started, _rss_mb()
    decode = {}
    for seconds in SEGMENTS_S:
        piece = script.samples[16000 : 16000 + seconds * 16000]
        engine.transcribe(piece)  # warm-up
        decode[f"{seconds}s"] = _times(lambda piece=piece: engine.transcribe(piece), reps)

    def whole_run():
        transcribe(
            script.samples, 16000, model=str(folder), vad="fsmn-vad", device="cpu", runtime=runtime, timestamps=False
        )

    whole_run()  # warm-up
    whole = _times(whole_run, reps)
    heavy = sorted(m for m in ("torch", "funasr") if m in sys.modules)
    return {
        "load_s": load_s,
        "rss_base_mb": base,
        "rss_loaded_mb": loaded,
        "decode": decode,
        "transcribe": whole,
        "peak_mb": _peak_mb(),
        "runtime": engine.runtime,
        "imported": heavy,
        "audio_s": script.seconds,
    }


def exported_folders(cache: Path, tiny: bool, log) -> tuple[Path, Path, Path]:
    """SenseVoiceSmall (real size) with its export, a view of it with the fp32 file only,
    and the FSMN-VAD folder (with its model.onnx)."""
    from . import models as bench_models

    sv = Path(bench_models.ensure("sensevoice-small", cache, tiny=tiny, log=log)["path"])
    vad = Path(bench_models.ensure("fsmn-vad", cache, log=log)["path"])
    if not ((sv / "model.onnx").is_file() and (sv / "model_quant.onnx").is_file()):
        log(f"exporting {sv} (fp32 and int8) ...")
        started = time.perf_counter()
        command = [sys.executable, "-m", "funasr_widget.models", "export", str(sv), "--quantize"]
        subprocess.run(command, check=True, stdout=sys.stderr)
        log(f"exported in {time.perf_counter() - started:.0f} s")
    fp32 = sv.with_name(sv.name + "-fp32")  # the same files, without model_quant.onnx
    fp32.mkdir(exist_ok=True)
    for file in sv.iterdir():
        link = fp32 / file.name
        if file.name != "model_quant.onnx" and not link.exists():
            link.symlink_to(file)
    return sv, fp32, vad


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


def table(result: dict) -> str:
    r = result["engines"]
    lines = [
        "| | torch (widget) | ONNX fp32 | ONNX int8 | funasr batch path |",
        "|---|---|---|---|---|",
    ]

    def row(label, get, fmt="{:.3f}"):
        cells = []
        for kind in KINDS:
            try:
                value = get(r[kind])
                cells.append(fmt.format(value) if value is not None else "-")
            except (KeyError, TypeError):
                cells.append("-")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

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
    row("RSS after load, MB", lambda e: e["rss_loaded_mb"], "{:.0f}")
    row("  / torch kernel's", lambda e: e["rss_loaded_mb"] / r["torch"]["rss_loaded_mb"], "{:.2f}")
    row("peak RSS, MB", lambda e: e["peak_mb"], "{:.0f}")
    row("load, s", lambda e: e["load_s"], "{:.1f}")
    size = result["install"]
    lines += [
        "",
        f"Install: `[onnx]` {size['onnx_venv_site_packages_mb']:.0f} MB (a fresh venv's site-packages; "
        f"{size['onnx_dists_mb']:.0f} MB by this venv's records) against `[asr]` {size['asr_dists_mb']:.0f} MB "
        f"(torch CPU, funasr and the {size['asr_dists']} distributions they pull in): "
        f"{size['onnx_venv_site_packages_mb'] / size['asr_dists_mb']:.2f}x.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="the first four sentences only")
    parser.add_argument("--cache", type=Path, default=common.bench_models.DEFAULT_CACHE)
    parser.add_argument(
        "--tiny", action="store_true", help="the tiny model (checks the code path; figures meaningless)"
    )
    parser.add_argument("--json", type=Path, default=Path(__file__).with_name("RESULTS-onnx.json"))
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--vad", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.folder, args.vad, args.reps, args.quick)))
        return

    def log(*a):
        print(*a, file=sys.stderr, flush=True)

    sv, fp32, vad = exported_folders(args.cache, args.tiny, log)
    engines = {}
    for kind in KINDS:
        folder = fp32 if kind == "onnx-fp32" else sv
        log(f"{kind} ...")
        command = [sys.executable, "-m", "bench.onnx", "--child", kind, "--folder", str(folder), "--vad", str(vad)]
        command += ["--reps", str(args.reps), *(["--quick"] if args.quick else [])]
        out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
        if out.returncode:
            raise SystemExit(f"{kind} failed:\n{out.stderr[-3000:]}")
        engines[kind] = json.loads(out.stdout.strip().splitlines()[-1])
        log(json.dumps(engines[kind]))
    result = {
        "machine": common.device_name("cpu"),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "nice .venv/bin/python -m bench.onnx " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": f"SenseVoiceSmall, {'TINY' if args.tiny else 'real size'}, random weights",
        "engines": engines,
        "install": install_sizes(log),
    }
    args.json.write_text(json.dumps(result, indent=1))
    print(table(result))
    if not args.tiny:
        write_section(result)


MARK = "<!-- bench/onnx.py -->"


def write_section(result: dict) -> None:
    """This run's table as the ONNX section of bench/RESULTS.md (replacing the last one)."""
    doc = Path(__file__).with_name("RESULTS.md")
    text = doc.read_text() if doc.exists() else ""
    if text.count(MARK) >= 2:  # the last run's section, from its mark to its closing mark
        start, end = text.index(MARK), text.index(MARK, text.index(MARK) + 1) + len(MARK)
        text = text[:start].rstrip("\n") + "\n" + text[end:].lstrip("\n")
    section = (
        f"\n{MARK}\n## ONNX runtime against torch (bench/onnx.py)\n\n"
        f"{result['model']}, {result['machine']}, {result['date']}; `{result['command']}`. Each engine in its own "
        "process, in turn; decode = one segment through the engine (no word times), least of the repeats; "
        "transcribe() = the scripted speech through FSMN-VAD and the engine (funasr: its own "
        "AutoModel(model, vad_model).generate). ONNX processes import neither torch nor funasr.\n\n"
        f"{table(result)}\n{MARK}\n"
    )
    doc.write_text(text + section)


if __name__ == "__main__":
    main()
