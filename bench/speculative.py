"""Speculative finals, on and off, side by side: the recognition part's live run
(bench/recognition.py: the scripted utterances fed in real time, 100 ms chunks, FSMN-VAD,
700 ms end silence) twice per model in one process, speculation off then on, repeated
``--repeats`` times alternately. Per setting: end of speech -> final p50/p95, the VAD's own
end detection, the pipeline's share (end -> final less the VAD's detection and the model's
time for the decode that gave the final), wasted decodes (speculations dropped) per minute
of speech, and the process CPU of the run with speculation on as a ratio to off.

``python -m bench.speculative [--models sensevoice-small ...] [--two-pass] [--runtime onnx]
[--repeats N]`` prints a Markdown table (and the JSON with ``--json FILE``). ``--runtime onnx``
runs SenseVoiceSmall's int8 export on onnxruntime (exported once, as bench/onnx.py does).
"""

from __future__ import annotations

import sys

from . import common
from . import models as bench_models
from .onnx import exported_folders
from .recognition import live


def run(name: str, infos: dict, script, device: str, speculative: bool, two_pass: bool, runtime: str) -> dict:
    hook = bench_models.generation_hook(name)
    options = {"speculative_final": speculative, "runtime": runtime}
    if two_pass:
        label = f"2-pass: paraformer-zh-streaming + {name}"
        partials = infos["paraformer-zh-streaming"]
        return live(label, infos[name], script, device, hook, partials_info=partials, options=options)
    return live(name, infos[name], script, device, hook, options=options)


def row(label: str, off: list[dict], on: list[dict]) -> list[str]:
    """One model: the figures of every repeat pooled per setting."""

    def pooled(runs: list[dict], key: str) -> dict:
        return common.summary([r.get(key) for run in runs for r in run["rows"]])

    def ms(runs, key, q):
        v = pooled(runs, key)[q]
        return "-" if v is None else f"{v:.0f}"

    def wasted(runs):
        minutes = sum(r["speech_s"] for r in runs) / 60
        return sum(r["speculative_dropped"] for r in runs) / max(minutes, 1e-9)

    cpu = sum(r["cpu_s"] for r in on) / sum(r["cpu_s"] for r in off)
    used = sum(r["speculative_used"] for r in on), sum(r["segments"] for r in on)
    cells = []
    for runs in (off, on):
        cells += [
            f"{ms(runs, 'final_ms', 'p50')} / {ms(runs, 'final_ms', 'p95')}",
            f"{ms(runs, 'final_overhead_ms', 'p50')} / {ms(runs, 'final_overhead_ms', 'p95')}",
        ]
    return [
        label,
        *cells,
        f"{ms(off, 'vad_end_detect_ms', 'p50')} / {ms(off, 'vad_end_detect_ms', 'p95')}",
        f"{used[0]} of {used[1]}",
        f"{wasted(on):.1f}",
        f"{cpu:.3f}",
    ]


HEADER = [
    "model",
    "off: end -> final p50 / p95 (ms)",
    "off: pipeline share p50 / p95",
    "on: end -> final p50 / p95 (ms)",
    "on: pipeline share p50 / p95",
    "VAD end detection p50 / p95",
    "finals from a speculation",
    "wasted decodes / min of speech",
    "CPU on / off",
]


def main(argv=None) -> None:
    parser = common.part_args(__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["sensevoice-small"])
    parser.add_argument("--two-pass", action="store_true", help="also each model with streaming partials")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--runtime", choices=["torch", "onnx"], default="torch", help="the segment model's runtime")
    args = parser.parse_args(argv)
    if args.runtime == "onnx" and (args.two_pass or args.models != ["sensevoice-small"]):
        parser.error("--runtime onnx runs sensevoice-small alone")
    names = list(dict.fromkeys([*args.models, *(["paraformer-zh-streaming"] if args.two_pass else [])]))
    infos, script = common.prepare(args, names)
    if args.runtime == "onnx":  # the folder gets its model.onnx and model_quant.onnx (int8, the one loaded)
        exported_folders("sensevoice-small", args.cache, args.tiny, lambda *a: print(*a, file=sys.stderr))
    results, lines = [], ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for name in args.models:
        for two_pass in [False, True] if args.two_pass and name != "paraformer-zh-streaming" else [False]:
            runs: dict[bool, list] = {False: [], True: []}
            for k in range(args.repeats):
                for speculative in (False, True):
                    print(f"speculative: {name} 2-pass={two_pass} on={speculative} run {k + 1}", file=sys.stderr)
                    runs[speculative].append(run(name, infos, script, args.device, speculative, two_pass, args.runtime))
            label = runs[True][0]["model"] + (" on onnxruntime, int8" if args.runtime == "onnx" else "")
            lines.append("| " + " | ".join(row(label, runs[False], runs[True])) + " |")
            results.append({"model": label, "off": runs[False], "on": runs[True]})
    print("\n".join(lines))
    common.write(args, {"device": args.device, "device_name": common.device_name(args.device), "models": results})


if __name__ == "__main__":
    main()
