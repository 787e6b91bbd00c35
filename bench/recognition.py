"""Recognition figures on this machine: end-of-speech to final segment, partial rate, and
the pipeline's CPU time against funasr's own AutoModel(model=..., vad_model=...).generate.

    .venv/bin/python bench/recognition.py --models DIR

DIR holds fsmn-vad and an ASR model folder (make one with
`python -m funasr_widget.samples --out DIR fsmn-vad sensevoice-small`: tiny random weights, so
the figures show our overhead, not a real model's compute cost).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Speech recognition turns sound into text.",
             "Every segment ends after a short pause.", "A widget shows the words as they come."]


def speech() -> tuple[np.ndarray, list[int]]:
    """Sentences with 2 s pauses; returns the audio and each sentence's end (sample index)."""
    from funasr_widget.audio import read_audio, resample

    parts, ends, pos = [np.zeros(8000, np.float32)], [], 8000
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(SENTENCES):
            path = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
            x, rate = read_audio(path)
            x = resample(x, rate)
            loud = np.flatnonzero(np.abs(x) > 0.01)
            x = x[: loud[-1] + 1]
            parts += [x, np.zeros(32000, np.float32)]
            pos += len(x)
            ends.append(pos)
            pos += 32000
    audio = np.concatenate(parts)
    return audio + np.random.default_rng(0).normal(0, 1e-3, len(audio)).astype(np.float32), ends


def live(audio: np.ndarray, ends: list[int], model: str) -> dict:
    """Feed in real time, 100 ms chunks; time each final segment against its speech end."""
    from funasr_widget import Transcriber

    w = Transcriber(model=model, vad="fsmn-vad", device="cpu")
    assert w.wait(timeout=300) and w.model_state == "ready", w.model_info
    arrivals, partials = [], []
    w.on_segment(lambda seg: arrivals.append(time.monotonic()))
    w.observe(lambda c: c["new"] and partials.append(time.monotonic()), "partial")
    t0 = time.monotonic()
    for i in range(0, len(audio), 1600):
        time.sleep(max(t0 + i / 16000 - time.monotonic(), 0))
        w.feed(audio[i:i + 1600])
    w.feed(np.zeros(0, np.float32), final=True)
    w.wait()
    spoken = sum(seg["end"] - seg["start"] for seg in w.segments)
    latency = [(a - (t0 + e / 16000)) * 1000 for a, e in zip(arrivals, ends)]
    w.close()
    return {"segments": len(w.segments), "latency_ms": latency, "end_silence_ms": w.end_silence_ms,
            "partials_per_s": len(partials) / spoken}


def cpu_seconds(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def throughput(audio: np.ndarray, models_dir: Path, model: str) -> dict:
    """Process CPU time of our offline path against funasr's own VAD+ASR batch path."""
    from funasr import AutoModel

    from funasr_widget import transcribe
    from funasr_widget._torch import threads

    transcribe(audio[:16000], 16000, model=model, vad="fsmn-vad", device="cpu")  # load once, shared
    ours = cpu_seconds(lambda: transcribe(audio, 16000, model=model, vad="fsmn-vad", device="cpu"))
    theirs_model = AutoModel(model=str(models_dir / model), vad_model=str(models_dir / "fsmn-vad"),
                             vad_kwargs={"max_end_silence_time": 700}, device="cpu", ncpu=threads(),
                             disable_update=True, disable_pbar=True)
    theirs_model.generate(input=audio[:16000])
    theirs = cpu_seconds(lambda: theirs_model.generate(input=audio))
    return {"ours_cpu_s": ours, "funasr_cpu_s": theirs, "ratio": ours / theirs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--model", default="sensevoice-small")
    args = parser.parse_args()
    from funasr_widget import models

    models.set_models_dir(args.models)
    audio, ends = speech()
    result = live(audio, ends, args.model)
    lat = np.array(result["latency_ms"])
    beyond = lat - result["end_silence_ms"]
    print(f"{result['segments']} segments for {len(ends)} sentences ({len(audio) / 16000:.1f} s of audio)")
    print(f"end of speech -> final segment: p50 {np.percentile(lat, 50):.0f} ms, max {lat.max():.0f} ms; "
          f"beyond the {result['end_silence_ms']} ms end silence: p50 {np.percentile(beyond, 50):.0f} ms, "
          f"max {beyond.max():.0f} ms")
    print(f"partial updates: {result['partials_per_s']:.2f} per second of speech")
    t = throughput(audio, args.models, args.model)
    print(f"CPU time, ours {t['ours_cpu_s']:.2f} s vs funasr AutoModel(vad_model=...).generate "
          f"{t['funasr_cpu_s']:.2f} s: ratio {t['ratio']:.2f}")


if __name__ == "__main__":
    main()
