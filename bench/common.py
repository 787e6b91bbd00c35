"""What the benchmark parts share: the scripted utterances, the models, figures, output."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from funasr_widget.samples import Speech, speech

from . import models as bench_models

RATE = 16_000
# The benchmark's widgets (and the notebooks it starts) save their sessions here, not in the
# user's own sessions folder (an hour-long memory run is 230 MB of audio).
os.environ.setdefault("FUNASR_WIDGET_SESSIONS", tempfile.mkdtemp(prefix="funasr-widget-bench-"))
END_SILENCE_MS = 700  # the widget's default (funasr_widget.recognizer.VAD_DEFAULTS)

# Ten sentences of different lengths: the recognition set (spoken by espeak-ng).
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Speech recognition turns sound into text.",
    "Every segment ends after a short pause.",
    "A widget shows the words as they come.",
    "Open the notebook.",
    "Voice activity detection finds where speech starts and where it ends, one block at a time.",
    "Models are loaded from a local folder when no network is available.",
    "Thank you.",
    "The kernel decodes each segment while the browser keeps recording the microphone.",
    "Partial text appears while the speaker is still talking.",
]


def script(quick: bool = False, gap_s: float = 2.0) -> Speech:
    """The sentences with `gap_s` of quiet room between them (gaps long enough for the
    VAD's 700 ms end silence); --quick takes the first four."""
    return speech(SENTENCES[:4] if quick else SENTENCES, lead_s=1.0, gap_s=gap_s, tail_s=2.0)


def prepare(args, names, quick: bool | None = None) -> tuple[dict, Speech]:
    """What every model part starts with: funasr quiet, the models found or built (the
    widget pointed at their FSMN-VAD), and the scripted speech."""
    quiet_funasr()
    infos = models_for(names, args.cache, tiny=args.tiny)
    use_vad_folder(infos["fsmn-vad"])
    return infos, script(quick=args.quick if quick is None else quick)


def models_for(names, cache: Path, tiny: bool = False, log=None) -> dict:
    """name -> bench_models.ensure() info; "fsmn-vad" is always included."""
    log = log or (lambda *a: print(*a, file=sys.stderr))
    return {name: bench_models.ensure(name, cache, tiny=tiny, log=log) for name in ["fsmn-vad", *names]}


def use_vad_folder(info: dict) -> None:
    """The widget finds "fsmn-vad" in its models dir: point that dir at our folder's parent."""
    from funasr_widget import models

    folder = Path(info["path"])
    assert folder.name == "fsmn-vad", folder
    models.set_models_dir(folder.parent)


def pct(values, q) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.percentile(values, q)) if values else None


def summary(values) -> dict:
    return {
        "n": len([v for v in values if v is not None]),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "max": pct(values, 100),
    }


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(device)
    import platform

    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model or platform.processor()} ({len(os.sched_getaffinity(0))} cores)"


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def clock():
    """(wall, process CPU) now."""
    return time.perf_counter(), time.process_time()


def part_args(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--quick", action="store_true", help="shorter inputs (a CI-like run)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache", type=Path, default=bench_models.DEFAULT_CACHE)
    parser.add_argument(
        "--tiny", action="store_true", help="tiny models of the same architectures (checks the code path only)"
    )
    return parser


def write(args, result: dict) -> None:
    text = json.dumps(result, indent=1, default=float)
    if args.json:
        args.json.write_text(text)
    else:
        print(text)


def quiet_funasr() -> None:
    """Import funasr once, with its notices kept out of our output."""
    from funasr_widget import _torch

    _torch.auto_model_class()
    import logging

    logging.getLogger().setLevel(logging.ERROR)
