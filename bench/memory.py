"""Memory: the process's resident size over a simulated hour of dictation.

One Transcriber (FSMN-VAD + an ASR model) is fed an hour of audio through ``feed()`` in
100 ms chunks, faster than real time: as fast as the worker keeps up, never more than
3 s ahead of it (the queue then holds at most 3 s). The audio is the scripted recording
looped with gaps that vary per loop, made chunk by chunk, so the benchmark itself holds
nothing that grows. The session keeps the whole hour, in its disk-backed Recording (not
resident). RSS (/proc/self/statm) is read every 5 simulated minutes; the growth is the
last reading minus the one after the first 5 minutes (models loaded, buffers warm).
"""

from __future__ import annotations

import gc
import sys
import time

import numpy as np

from funasr_widget.samples import Speech

from . import common

CHUNK = 1600
MAX_AHEAD_S = 3.0
EVERY_S = 300


def chunks(script: Speech, seconds: float, seed: int = 0):
    """100 ms chunks of the recording looped to `seconds`, with 0.5-3 s of quiet room
    added between loops (so segment lengths and times vary)."""
    rng = np.random.default_rng(seed)
    total = int(seconds * common.RATE)
    pos = 0
    while pos < total:
        gap = rng.normal(0, 1e-3, int(rng.uniform(0.5, 3.0) * common.RATE)).astype(np.float32)
        for part in (script.samples, gap):
            for i in range(0, len(part) - CHUNK + 1, CHUNK):
                if pos >= total:
                    return
                yield part[i : i + CHUNK]
                pos += CHUNK


def run(name: str, info: dict, script: Speech, seconds: float, device: str, hook=None) -> dict:
    from funasr_widget import Transcriber
    from funasr_widget.asr import load_engine

    if hook:
        hook(load_engine(info["path"], device=device).model)
    rss0 = common.rss_mb()
    w = Transcriber(model=info["path"], vad="fsmn-vad", device=device)
    assert w.wait(timeout=600) and w.model_state == "ready", w.model_info
    readings = []
    t0 = time.monotonic()
    fed = 0
    for chunk in chunks(script, seconds):
        while w.session.lag_seconds() > MAX_AHEAD_S:
            time.sleep(0.01)
        w.feed(chunk)
        fed += len(chunk)
        if fed % (EVERY_S * common.RATE) == 0:
            assert w.wait(timeout=600)
            gc.collect()
            readings.append(
                {
                    "audio_min": fed / common.RATE / 60,
                    "rss_mb": common.rss_mb(),
                    "segments": len(w.segments),
                    "wall_s": time.monotonic() - t0,
                }
            )
            print(f"memory: {fed / common.RATE / 60:.0f} min, RSS {readings[-1]['rss_mb']:.0f} MB", file=sys.stderr)
    w.feed(np.zeros(0, np.float32), final=True)
    assert w.wait(timeout=600)
    gc.collect()
    wall = time.monotonic() - t0
    kept_s = w.session.seconds()
    final = common.rss_mb()
    segments = len(w.segments)
    w.close()
    base = readings[0]["rss_mb"] if readings else rss0
    return {
        "model": name,
        "params": info["params"],
        "weights": info["weights"],
        "audio_s": fed / common.RATE,
        "wall_s": wall,
        "speed_x": fed / common.RATE / wall,
        "segments": segments,
        "recording_kept_s": kept_s,
        "rss_before_widget_mb": rss0,
        "rss_after_5min_mb": base,
        "rss_end_mb": final,
        "growth_mb": final - base,
        "peak_reading_mb": max([r["rss_mb"] for r in readings] + [final]),
        "readings": readings,
    }


def main(argv=None) -> None:
    parser = common.part_args(__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sensevoice-small")
    parser.add_argument("--minutes", type=float, default=None)
    args = parser.parse_args(argv)
    from . import models as bench_models

    infos, s = common.prepare(args, [args.model], quick=False)
    minutes = args.minutes or (10 if args.quick else 60)
    result = run(args.model, infos[args.model], s, minutes * 60, args.device, bench_models.generation_hook(args.model))
    common.write(
        args, {"device": args.device, "device_name": common.device_name(args.device), "minutes": minutes, **result}
    )


if __name__ == "__main__":
    main()
