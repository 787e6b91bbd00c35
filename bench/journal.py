"""The saved session's cost (funasr_widget/journal.py): per final segment, the audio file's
fsync plus the journal line's append + fsync (what the recognition thread pays, off the comm
handler), and the bytes each segment adds; per 100 ms chunk, the comm handler's write to the
named recording, side by side with the temporary file it replaced.

    .venv/bin/python -m bench.journal [--segments 200] [--dir DIR]

DIR (default: a new temporary folder) should be on the disk the sessions go to: fsync
costs what that disk and its filesystem make it cost.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from funasr_widget.audio import Recording
from funasr_widget.journal import SESSIONS_ENV, Journal

CHUNK = 1600  # 100 ms at 16 kHz: the browser's chunk
SEGMENT_S, GAP_S = 5.0, 2.0  # a dictated sentence and the pause after it


def segment(i: int) -> dict:
    """A final segment shaped as SenseVoice gives one: text, tags and a time per word."""
    start = i * (SEGMENT_S + GAP_S) + GAP_S
    words = [
        {"text": f"word{k}", "start": round(start + 0.4 * k, 3), "end": round(start + 0.4 * k + 0.3, 3)}
        for k in range(12)
    ]
    text = " ".join(w["text"] for w in words)
    return {
        "id": i,
        "start": round(start, 3),
        "end": round(start + SEGMENT_S, 3),
        "text": text,
        "language": "en",
        "emotion": "neutral",
        "event": "speech",
        "words": words,
    }


def percentiles(ms: list[float]) -> dict:
    return {"p50": round(float(np.percentile(ms, 50)), 3), "p95": round(float(np.percentile(ms, 95)), 3)}


def run(segments: int, folder: Path) -> dict:
    os.environ[SESSIONS_ENV] = str(folder)
    journal = Journal.create(max_seconds=segments * (SEGMENT_S + GAP_S) + 60)
    named, temporary = Recording(3600 * 24, journal.audio_path), Recording(3600 * 24)
    chunk = np.random.default_rng(0).normal(0, 0.1, CHUNK).astype(np.float32)
    sync_ms, add_ms, total_ms, line_bytes = [], [], [], []
    append_named_ms, append_temp_ms = [], []
    for i in range(segments):
        for _ in range(int((SEGMENT_S + GAP_S) * 10)):  # the segment's audio and its pause, chunk by chunk
            for rec, times in ((named, append_named_ms), (temporary, append_temp_ms)):
                t = time.perf_counter()
                rec.append(chunk)
                times.append((time.perf_counter() - t) * 1000)
        entry = {"segment": segment(i)}
        t0 = time.perf_counter()
        named.sync()
        t1 = time.perf_counter()
        journal.add(entry)
        t2 = time.perf_counter()
        sync_ms.append((t1 - t0) * 1000)
        add_ms.append((t2 - t1) * 1000)
        total_ms.append((t2 - t0) * 1000)
        line_bytes.append(len(json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode()) + 1)
    named.close()
    temporary.close()
    journal.close()
    journal_size = (journal.folder / "segments.jsonl").stat().st_size
    assert journal_size == sum(line_bytes)
    return {
        "segments": segments,
        "folder": str(folder),
        "per_segment_ms": {
            "audio_fsync": percentiles(sync_ms),
            "journal_append_fsync": percentiles(add_ms),
            "total": percentiles(total_ms),
        },
        "journal_bytes_per_segment": round(journal_size / segments, 1),
        "audio_bytes_per_second": 16_000 * 4,
        "chunk_append_ms": {"named": percentiles(append_named_ms), "temporary": percentiles(append_temp_ms)},
        "chunk_append_ratio_named_to_temporary_p50": round(
            float(np.percentile(append_named_ms, 50) / np.percentile(append_temp_ms, 50)), 2
        ),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=None, help="where the session is written (default: a temp folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        figures = run(args.segments, Path(tmp) / "sessions")
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
