"""Throughput: the widget's pipeline against funasr's own batch path, same audio, same models.

Ours: ``funasr_widget.transcribe(audio)``: the recording goes through the live pipeline
(100 ms blocks -> FSMN-VAD -> closed segments decoded as funasr's batch path does), queued
all at once as a file is. Funasr's: ``AutoModel(model=ASR, vad_model=FSMN).generate(input=audio)``,
its VAD run with the same end silence (700 ms) and segment cap (30 s), and the same decoding
options. Dither is off in both (the widget turns it off: it adds noise and costs time).

Each path runs in a process of its own: two children load and warm up, then are timed in
turn (ours, funasr, ours, ...); the figures are the ratios of the least process CPU time
(all threads) and of the least wall time. One process for both would be unfair to whichever
path runs on a second thread: each thread that runs torch ops gets its own OpenMP thread
pool, and with more pool threads than cores libgomp cuts its spin-waiting for all of them,
so a second thread's decodes lose about a quarter of their wall time (measured here,
funasr's own generate on 53 s: 3.9 s on the main thread, 4.9 s on a second thread once
the main thread had run it). A notebook that calls transcribe() has one such pool, as
each child here has.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from . import common


def _funasr_model(asr: dict, vad: dict, device: str):
    from funasr import AutoModel

    from funasr_widget._torch import quiet, threads

    with quiet():
        model = AutoModel(
            model=asr["path"],
            vad_model=vad["path"],
            vad_kwargs={
                "max_end_silence_time": common.END_SILENCE_MS,
                "max_single_segment_time": 30_000,
                "ncpu": threads(),
            },
            device=device,
            ncpu=threads(),
            disable_update=True,
            disable_pbar=True,
            disable_log=True,
            log_level="ERROR",
        )
    for m in (model.kwargs, model.vad_kwargs):
        frontend = m.get("frontend")
        if frontend is not None and hasattr(frontend, "dither"):
            frontend.dither = 0.0
    return model


def _options(arch: str) -> dict:
    from funasr_widget.asr.segment import generate_options
    from funasr_widget.asr.streaming import DECODING

    if arch == "ParaformerStreaming":
        # chunk_size would reach funasr's VAD too: its default is ours. is_final: without it
        # funasr's VAD path never flushes a segment, and drops its last < 600 ms and last
        # words (measured: 193 characters against 240 from the same tiny model), work the
        # widget does and that a fair comparison counts on both sides.
        return {**{k: v for k, v in DECODING.items() if k != "chunk_size"}, "is_final": True}
    return generate_options(arch, {})


def funasr_segments(model, audio) -> list[tuple[float, float]]:
    res = model.inference(audio, model=model.vad_model, kwargs=model.vad_kwargs)
    return [(b / 1000, e / 1000) for b, e in res[0]["value"]]


def child(args) -> None:
    """One path in this process: load, warm up, say the segments, then one timed run per
    line read from stdin, each answered with {"cpu_s", "wall_s"}."""
    from funasr_widget.asr import architecture

    from . import models as bench_models

    infos, s = common.prepare(args, [args.model])
    asr, vad = infos[args.model], infos["fsmn-vad"]
    hook = bench_models.generation_hook(args.model)  # Fun-ASR-Nano: a fixed number of tokens
    if args.child == "ours":
        from funasr_widget import transcribe
        from funasr_widget.asr import load_engine

        if hook:
            hook(load_engine(asr["path"], device=args.device).model)

        def run():  # funasr's path gives no word times: neither does ours here
            out = transcribe(
                s.samples, common.RATE, model=asr["path"], vad="fsmn-vad", device=args.device, timestamps=False
            )
            return [(seg["start"], seg["end"]) for seg in out]
    else:
        model = _funasr_model(asr, vad, args.device)
        if hook:
            hook(model)
        options = _options(architecture(Path(asr["path"])))

        def run():
            model.generate(input=s.samples, **options)
            return funasr_segments(model, s.samples)

    segments = run()  # the warm-up
    _say({"segments": segments, "audio_s": s.seconds})
    for _ in sys.stdin:
        common.sync(args.device)
        w0, c0 = common.clock()
        run()
        common.sync(args.device)
        w1, c1 = common.clock()
        _say({"cpu_s": c1 - c0, "wall_s": w1 - w0})


def measure(name: str, info: dict, args, reps: int) -> dict:
    from funasr_widget.asr import architecture

    children = {}
    try:
        for label in ("ours", "funasr"):
            cmd = [
                sys.executable,
                "-m",
                "bench.throughput",
                "--child",
                label,
                "--model",
                name,
                "--device",
                args.device,
                "--cache",
                str(args.cache),
                *(["--quick"] if args.quick else []),
                *(["--tiny"] if args.tiny else []),
            ]
            children[label] = subprocess.Popen(
                cmd, cwd=Path(__file__).resolve().parents[1], text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        ready = {label: _reply(p) for label, p in children.items()}
        runs = {"ours": [], "funasr": []}
        for _ in range(reps):
            for label, p in children.items():
                p.stdin.write("run\n")
                p.stdin.flush()
                runs[label].append(_reply(p))
    finally:
        for p in children.values():
            if p.stdin:
                p.stdin.close()
            p.wait(60)
    best = {k: {m: min(r[m] for r in v) for m in ("cpu_s", "wall_s")} for k, v in runs.items()}
    mine, theirs = ([tuple(x) for x in ready[k]["segments"]] for k in ("ours", "funasr"))
    return {
        "model": name,
        "architecture": architecture(Path(info["path"])),
        "params": info["params"],
        "weights": info["weights"],
        "audio_s": ready["ours"]["audio_s"],
        "runs": runs,
        "best": best,
        "cpu_ratio": best["ours"]["cpu_s"] / best["funasr"]["cpu_s"],
        "wall_ratio": best["ours"]["wall_s"] / best["funasr"]["wall_s"],
        "segments": len(mine),
        "same_segments": mine == theirs,
        "segments_funasr": len(theirs),
    }


REPLY = "throughput-child: "  # marks the child's answers among whatever else it prints


def _say(reply: dict) -> None:
    print(REPLY + json.dumps(reply), flush=True)


def _reply(process) -> dict:
    for line in process.stdout:
        if line.startswith(REPLY):
            return json.loads(line[len(REPLY) :])
    raise RuntimeError(f"a throughput child exited with {process.wait(60)}: see its output above")


def main(argv=None) -> None:
    parser = common.part_args(__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["sensevoice-small", "paraformer-zh-streaming"])
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--child", choices=("ours", "funasr"), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    infos = common.models_for(args.models, args.cache, tiny=args.tiny)
    reps = args.reps or (1 if args.quick else 3)
    results = []
    for name in args.models:
        print(f"throughput: {name} on {args.device} ...", file=sys.stderr)
        results.append(measure(name, infos[name], args, reps))
    common.write(
        args,
        {
            "device": args.device,
            "device_name": common.device_name(args.device),
            "audio_s": results[0]["audio_s"] if results else None,
            "reps": reps,
            "processes": "one per path",
            "models": results,
        },
    )


if __name__ == "__main__":
    main()
