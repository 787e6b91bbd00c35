"""Real-time factor per model: compute time / audio time, on the engine the widget uses.

* segment models (SenseVoiceSmall, Fun-ASR-Nano): one decode of 2, 5, 10 and 20 s of speech;
* the streaming model: a 20 s stream in 600 ms steps (each step's time too: the model's
  time for one chunk);
* FSMN-VAD: 60 s in 100 ms blocks (live) and all at once (a file).

Wall time (synchronised on CUDA) is the RTF; process CPU time is shown beside it. The
least of `reps` runs after a warm-up.
"""

from __future__ import annotations

import sys

import numpy as np

from funasr_widget.samples import Speech

from . import common

LENGTHS_S = (2, 5, 10, 20)


def _speech(script: Speech, seconds: float) -> np.ndarray:
    """`seconds` of the recording's speech (sentences back to back, repeated as needed)."""
    parts = [script.samples[b * 16 : e * 16] for b, e in script.intervals_ms]
    x = np.concatenate(parts)
    x = np.tile(x, int(np.ceil(seconds * common.RATE / len(x))))
    return x[: int(seconds * common.RATE)]


def _best(fn, reps: int, device: str) -> tuple[float, float]:
    fn()
    best = (float("inf"), float("inf"))
    for _ in range(reps):
        common.sync(device)
        w0, c0 = common.clock()
        fn()
        common.sync(device)
        w1, c1 = common.clock()
        best = min(best, (w1 - w0, c1 - c0))
    return best


def segment_model(engine, script, device, reps, lengths) -> list[dict]:
    rows = []
    for seconds in lengths:
        x = _speech(script, seconds)
        wall, cpu = _best(lambda x=x: engine.transcribe(x), reps, device)
        rows.append({"audio_s": seconds, "wall_s": wall, "cpu_s": cpu, "rtf": wall / seconds})
    return rows


def streaming_model(engine, script, device, reps, seconds) -> dict:
    from funasr_widget.asr.streaming import STEP

    x = _speech(script, seconds)
    steps: list[float] = []

    def run(record=False):
        stream = engine.new_stream()
        for i in range(0, len(x), STEP):
            w0 = common.clock()[0]
            engine.accept(stream, x[i : i + STEP], final=i + STEP >= len(x))
            common.sync(device)
            if record:
                steps.append(common.clock()[0] - w0)

    wall, cpu = _best(run, reps, device)
    run(record=True)
    return {
        "audio_s": seconds,
        "wall_s": wall,
        "cpu_s": cpu,
        "rtf": wall / seconds,
        "step_ms": common.summary([s * 1000 for s in steps]),
        "step_audio_ms": STEP / 16,
    }


def vad(script, reps, seconds) -> dict:
    from funasr_widget.vad import create_vad

    x = np.tile(script.samples, int(np.ceil(seconds * common.RATE / len(script.samples))))
    x = x[: int(seconds * common.RATE)]
    v = create_vad("fsmn-vad")

    def blocks():
        v.reset()
        for i in range(0, len(x), 1600):
            v.accept(x[i : i + 1600], final=i + 1600 >= len(x))

    def whole():
        v.reset()
        v.accept(x, final=True)

    out = {"audio_s": seconds}
    for label, fn in (("live_100ms", blocks), ("file", whole)):
        wall, cpu = _best(fn, reps, "cpu")
        out[label] = {"wall_s": wall, "cpu_s": cpu, "rtf": wall / seconds}
    return out


def main(argv=None) -> None:
    parser = common.part_args(__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["sensevoice-small", "paraformer-zh-streaming"])
    args = parser.parse_args(argv)
    infos, s = common.prepare(args, args.models, quick=True)
    import torch

    from funasr_widget._torch import threads
    from funasr_widget.asr import load_engine

    from . import models as bench_models

    reps = 1 if args.quick else 3
    lengths = LENGTHS_S[:3] if args.quick else LENGTHS_S
    result = {
        "device": args.device,
        "device_name": common.device_name(args.device),
        "torch_threads": threads(),
        "torch": torch.__version__,
        "models": [],
    }
    for name in args.models:
        print(f"rtf: {name} on {args.device} ...", file=sys.stderr)
        engine = load_engine(infos[name]["path"], device=args.device)
        if hook := bench_models.generation_hook(name):
            hook(engine.model)
        row = {
            "model": name,
            "params": infos[name]["params"],
            "weights": infos[name]["weights"],
            "streaming": engine.streaming,
        }
        if engine.streaming:
            row["stream"] = streaming_model(engine, s, args.device, reps, lengths[-1])
        else:
            row["segments"] = segment_model(engine, s, args.device, reps, lengths)
        result["models"].append(row)
    if args.device == "cpu":
        print("rtf: fsmn-vad ...", file=sys.stderr)
        result["vad"] = {
            "model": "fsmn-vad",
            "params": infos["fsmn-vad"]["params"],
            **vad(s, reps, 20 if args.quick else 60),
        }
    common.write(args, result)


if __name__ == "__main__":
    main()
