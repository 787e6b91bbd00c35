"""Recognition latency: the scripted utterances fed to a Transcriber in real time.

Each 100 ms chunk is fed when its last sample would have been captured (t0 + end of
chunk), through ``Transcriber.feed`` (the microphone's path after the wire). Figures per
utterance (its speech interval is known: espeak's loud span):

* onset -> first partial: from the moment the speech's first sample was captured to the
  first non-empty ``partial`` trait for it; "beyond" subtracts one chunk (600 ms for the
  streaming model, whose first text needs a full decoding step; 100 ms, one capture chunk,
  for a segment model, re-decoding the open segment) and the model's own time for the
  decode that produced it;
* end of speech -> final segment: from the capture of the speech's last sample to the
  segment callback; "beyond the end silence" subtracts the configured 700 ms, and is
  compared with the model's own time for that segment's final decode.

The model's own times are measured on the engine the widget uses (timers wrapped around
its decode calls, in this process). The VAD's share is shown apart: when the same audio
in 100 ms blocks makes FSMN-VAD emit each start and end (its detection delay).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from funasr_widget.samples import Speech

from . import common

BLOCK = 1600


def _timed_generate(auto) -> list | None:
    """Timers around an AutoModel's generate(), which every engine made from it shares (2-pass:
    one for the streaming model's partials, one for the segment model's finals). The ONNX
    models have a generate() of their own (asr/onnx.py, asr/onnx_streaming.py), timed alike;
    None where a model has none to wrap: its model-time columns are then left empty."""
    calls: list = []
    generate = getattr(auto, "generate", None)
    if not callable(generate) or not hasattr(auto, "__dict__"):
        return None

    def timed(*args, **kwargs):
        start = time.monotonic()
        try:
            return generate(*args, **kwargs)
        finally:
            calls.append((start, time.monotonic(), kwargs.get("is_final")))

    auto.generate = timed
    return calls


def _untimed(auto) -> None:
    if hasattr(auto, "__dict__"):
        vars(auto).pop("generate", None)


def vad_detection(samples: np.ndarray, end_silence_ms: int, runtime: str | None = None) -> list[tuple[str, int, float]]:
    """(kind, event ms, s at which the VAD emitted it) for 100 ms blocks, offline; `runtime`:
    FSMN-VAD's ("onnx": no torch in the process)."""
    from funasr_widget.vad import create_vad

    vad = create_vad("fsmn-vad", end_silence_ms=end_silence_ms, runtime=runtime)
    out = []
    for i in range(0, len(samples), BLOCK):
        for e in vad.accept(samples[i : i + BLOCK], final=i + BLOCK >= len(samples)):
            out.append((e.kind, e.ms, min(i + BLOCK, len(samples)) / common.RATE))
    return out


def live(
    name: str, info: dict, script: Speech, device: str, hook=None, partials_info=None, options: dict | None = None
) -> dict:
    """`partials_info`: 2-pass, that streaming model's partials and `info`'s finals; `options`:
    more Transcriber options (speculative_final, runtime)."""
    from funasr_widget import Transcriber
    from funasr_widget.asr import load_engine

    runtime = (options or {}).get("runtime", "auto")
    engine = load_engine(info["path"], device=device, runtime=runtime)
    if hook:
        hook(engine.model)
    # Timed on the shared AutoModel: the widget makes its own engine objects around it, so
    # timers on this engine object (the old _timed) never saw the widget's decodes.
    options, pcalls = dict(options or {}), None
    calls = _timed_generate(engine.model)
    if partials_info:
        options["partials_model"] = partials_info["path"]
        first = load_engine(partials_info["path"], device=device)
        pcalls = _timed_generate(first.model)
    w = Transcriber(model=info["path"], vad="fsmn-vad", device=device, **options)
    try:
        assert w.wait(timeout=600) and w.model_state == "ready", w.model_info
        end_silence = w.end_silence_ms
        partials, segments = [], []
        w.observe(lambda c: partials.append((time.monotonic(), c["new"])), "partial")
        w.on_segment(lambda seg: segments.append((time.monotonic(), seg)))
        if calls is not None:
            calls.clear()
        if pcalls is not None:
            pcalls.clear()
        x = script.samples
        c0 = time.process_time()
        t0 = time.monotonic()
        for i in range(0, len(x), BLOCK):
            chunk = x[i : i + BLOCK]
            time.sleep(max(t0 + (i + len(chunk)) / common.RATE - time.monotonic(), 0))
            w.feed(chunk)
        w.feed(np.zeros(0, np.float32), final=True)
        fed_s = time.monotonic() - t0
        assert w.wait(timeout=600)
        cpu_s = time.process_time() - c0
        counts = w._live.stats()  # the worker's decodes and speculative finals
    finally:
        w.close()
        _untimed(engine.model)
        if partials_info:
            _untimed(first.model)

    streaming = engine.streaming or bool(partials_info)
    chunk_ms = 600 if streaming else 100
    events = vad_detection(x, end_silence, "onnx" if runtime == "onnx" else None)
    partial_calls = calls if pcalls is None else pcalls

    def model_ms(source: list | None, t: float) -> float | None:
        """The model's time for the last decode that ended by `t` (None: not timed)."""
        call = max((c for c in source or () if c[1] <= t + 1e-6), key=lambda c: c[1], default=None)
        return (call[1] - call[0]) * 1000 if call else None

    rows = []
    for k, (beg, end) in enumerate(script.intervals_ms):
        onset_t, end_t = t0 + beg / 1000, t0 + end / 1000
        nxt = t0 + script.intervals_ms[k + 1][0] / 1000 if k + 1 < len(script.intervals_ms) else float("inf")
        mine = [(t, s) for t, s in segments if s["start"] * 1000 < end and s["end"] * 1000 > beg]
        final_t = mine[-1][0] if mine else None
        first = next(((t, p) for t, p in partials if p and onset_t - 0.5 <= t < min(nxt, final_t or nxt)), None)
        row = {"onset_ms": beg, "end_ms": end, "segments": len(mine)}
        # Without timers on the model (partial_calls / calls None) what subtracts its time is None.
        if first:
            ms = model_ms(partial_calls, first[0])
            row["first_partial_ms"] = (first[0] - onset_t) * 1000
            row["partial_model_ms"] = ms
            if partial_calls is not None:
                row["first_partial_beyond_ms"] = row["first_partial_ms"] - chunk_ms - (ms or 0)
        if final_t is not None:
            ms = model_ms(calls, final_t)
            row["final_ms"] = (final_t - end_t) * 1000
            row["final_beyond_silence_ms"] = row["final_ms"] - end_silence
            row["final_model_ms"] = ms
            if calls is not None:
                row["final_excess_ms"] = row["final_beyond_silence_ms"] - 1.5 * (ms or 0)
        starts = [e for e in events if e[0] == "start" and beg - 1000 <= e[1] <= end]
        ends = [e for e in events if e[0] == "end" and beg <= e[1] <= end + end_silence + 1000]
        if starts:
            row["vad_start_detect_ms"] = (starts[0][2] * 1000) - beg
        if ends:
            row["vad_end_detect_ms"] = (ends[-1][2] * 1000) - end
        # What is left for the pipeline itself once the VAD and the model have had theirs.
        if "final_ms" in row and ends and calls is not None:
            row["final_overhead_ms"] = row["final_ms"] - row["vad_end_detect_ms"] - (row["final_model_ms"] or 0)
        if "first_partial_ms" in row and starts and not streaming and partial_calls is not None:
            row["partial_overhead_ms"] = (
                row["first_partial_ms"] - row["vad_start_detect_ms"] - (row["partial_model_ms"] or 0)
            )
        rows.append(row)
    speech_s = sum(s["end"] - s["start"] for _, s in segments)
    col = lambda key: common.summary([r.get(key) for r in rows])  # noqa: E731
    return {
        "model": name,
        "params": info["params"],
        "weights": info["weights"],
        "partials_model": partials_info and partials_info["path"],
        "streaming": streaming,
        "chunk_ms": chunk_ms,
        "end_silence_ms": end_silence,
        "audio_s": script.seconds,
        "fed_s": fed_s,
        "cpu_s": cpu_s,
        "decodes": counts["decodes"],
        "speculative": counts["speculative"],
        "speculative_used": counts["speculative_used"],
        "speculative_dropped": counts["speculative_dropped"],
        "speech_s": speech_s,
        "utterances": len(rows),
        "segments": len(segments),
        "partials_per_speech_s": sum(1 for _, p in partials if p) / max(speech_s, 1e-9),
        "first_partial_ms": col("first_partial_ms"),
        "partial_model_ms": col("partial_model_ms"),
        "first_partial_beyond_ms": col("first_partial_beyond_ms"),
        "final_ms": col("final_ms"),
        "final_beyond_silence_ms": col("final_beyond_silence_ms"),
        "final_model_ms": col("final_model_ms"),
        "final_excess_ms": col("final_excess_ms"),
        "vad_start_detect_ms": col("vad_start_detect_ms"),
        "vad_end_detect_ms": col("vad_end_detect_ms"),
        "final_overhead_ms": col("final_overhead_ms"),
        "partial_overhead_ms": col("partial_overhead_ms"),
        "rows": rows,
    }


def main(argv=None) -> None:
    parser = common.part_args(__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["sensevoice-small", "paraformer-zh-streaming"])
    parser.add_argument(
        "--two-pass",
        action="store_true",
        help="also each segment model with paraformer-zh-streaming's partials (2-pass)",
    )
    args = parser.parse_args(argv)
    from . import models as bench_models

    names = list(dict.fromkeys([*args.models, *(["paraformer-zh-streaming"] if args.two_pass else [])]))
    infos, s = common.prepare(args, names)
    results = []
    for name in args.models:
        print(f"recognition: {name} on {args.device}, {s.seconds:.0f} s in real time ...", file=sys.stderr)
        results.append(live(name, infos[name], s, args.device, bench_models.generation_hook(name)))
    alone = {r["model"]: r for r in results}
    for name in (n for n in args.models if args.two_pass and n != "paraformer-zh-streaming"):
        print(f"recognition: 2-pass paraformer-zh-streaming + {name} ...", file=sys.stderr)
        r = live(
            f"2-pass: paraformer-zh-streaming + {name}",
            infos[name],
            s,
            args.device,
            bench_models.generation_hook(name),
            partials_info=infos["paraformer-zh-streaming"],
        )
        if name in alone:  # the CPU 2-pass costs, as a ratio to the segment model alone
            r["cpu_vs_segment_model"] = r["cpu_s"] / alone[name]["cpu_s"]
        results.append(r)
    common.write(
        args,
        {
            "device": args.device,
            "device_name": common.device_name(args.device),
            "audio_s": s.seconds,
            "models": results,
        },
    )


if __name__ == "__main__":
    main()
