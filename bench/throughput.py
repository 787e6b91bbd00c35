"""Throughput: the widget's pipeline against funasr's own batch path, same audio, same models.

Ours: ``funasr_widget.transcribe(audio)``: the recording goes through the live pipeline
(100 ms blocks -> FSMN-VAD -> one decode per segment), queued all at once as a file is.
Funasr's: ``AutoModel(model=ASR, vad_model=FSMN).generate(input=audio)``, its VAD run
with the same end silence (700 ms) and segment cap (30 s), and the same decoding options.
Both are warmed up, then timed alternately (ours, funasr, ours, funasr, ...); the figure
is the ratio of the least process CPU time of each (all threads), and of the least wall
time. Dither is off in both (the widget turns it off: it adds noise and costs time).
"""

from __future__ import annotations

import sys

import numpy as np

from . import common


def _funasr_model(asr: dict, vad: dict, device: str):
    from funasr import AutoModel

    from funasr_widget._torch import quiet, threads

    with quiet():
        model = AutoModel(model=asr["path"], vad_model=vad["path"],
                          vad_kwargs={"max_end_silence_time": common.END_SILENCE_MS,
                                      "max_single_segment_time": 30_000, "ncpu": threads()},
                          device=device, ncpu=threads(), disable_update=True, disable_pbar=True,
                          disable_log=True, log_level="ERROR")
    for m in (model.kwargs, model.vad_kwargs):
        frontend = m.get("frontend")
        if frontend is not None and hasattr(frontend, "dither"):
            frontend.dither = 0.0
    return model


def _options(arch: str) -> dict:
    from funasr_widget.asr.segment import generate_options
    from funasr_widget.asr.streaming import DECODING

    if arch == "ParaformerStreaming":  # chunk_size would reach funasr's VAD too: its default is ours
        return {k: v for k, v in DECODING.items() if k != "chunk_size"}
    return generate_options(arch, {})


def funasr_segments(model, audio) -> list[tuple[float, float]]:
    res = model.inference(audio, model=model.vad_model, kwargs=model.vad_kwargs)
    return [(b / 1000, e / 1000) for b, e in res[0]["value"]]


def measure(name: str, asr: dict, vad: dict, audio: np.ndarray, device: str, reps: int,
            hook=None) -> dict:
    from funasr_widget import transcribe
    from funasr_widget.asr import architecture, load_engine
    from pathlib import Path

    arch = architecture(Path(asr["path"]))
    engine = load_engine(asr["path"], device=device)
    theirs_model = _funasr_model(asr, vad, device)
    if hook:  # Fun-ASR-Nano: a fixed number of generated tokens, on both paths
        hook(engine.model)
        hook(theirs_model)
    options = _options(arch)

    def ours():  # funasr's path gives no word times: neither does ours here (timestamps=False)
        return transcribe(audio, common.RATE, model=asr["path"], vad="fsmn-vad", device=device,
                          timestamps=False)

    def theirs():
        return theirs_model.generate(input=audio, **options)

    ours_segments = ours()  # warm-up (and the segments)
    theirs()
    runs = {"ours": [], "funasr": []}
    for _ in range(reps):
        for label, fn in (("ours", ours), ("funasr", theirs)):
            common.sync(device)
            w0, c0 = common.clock()
            fn()
            common.sync(device)
            w1, c1 = common.clock()
            runs[label].append({"cpu_s": c1 - c0, "wall_s": w1 - w0})
    best = {k: {m: min(r[m] for r in v) for m in ("cpu_s", "wall_s")} for k, v in runs.items()}
    theirs_segments = funasr_segments(theirs_model, audio)
    mine = [(s["start"], s["end"]) for s in ours_segments]
    return {
        "model": name, "architecture": arch, "params": asr["params"], "weights": asr["weights"],
        "audio_s": len(audio) / common.RATE, "runs": runs, "best": best,
        "cpu_ratio": best["ours"]["cpu_s"] / best["funasr"]["cpu_s"],
        "wall_ratio": best["ours"]["wall_s"] / best["funasr"]["wall_s"],
        "segments": len(mine), "same_segments": mine == theirs_segments,
        "segments_funasr": len(theirs_segments),
    }


def main(argv=None) -> None:
    parser = common.part_args(__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["sensevoice-small", "paraformer-zh-streaming"])
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args(argv)
    from . import models as bench_models

    infos, s = common.prepare(args, args.models)
    reps = args.reps or (1 if args.quick else 3)
    results = []
    for name in args.models:
        print(f"throughput: {name} on {args.device} ...", file=sys.stderr)
        results.append(measure(name, infos[name], infos["fsmn-vad"], s.samples, args.device, reps,
                               bench_models.generation_hook(name)))
    common.write(args, {"device": args.device, "device_name": common.device_name(args.device),
                        "audio_s": s.seconds, "reps": reps, "models": results})


if __name__ == "__main__":
    main()
