"""The maths behind VadExplorer: segment a whole recording (fast enough to redo on every
slider move), compare two segmentations frame by frame, and summarise the waveform for
drawing (a min/max envelope and a loudness curve).

Segmenting is fast because a backend's network runs once per recording: its per-frame
scores do not depend on the parameters, so a :class:`Segmenter` keeps them and reruns only
the decision logic. For ``energy`` there is no network (the real VAD reruns, ~10 ms per
minute); ``silero``'s own decision code replays the recorded probabilities; for
``fsmn-vad`` the decisions are made in funasr's Python state machine, which needs the
network in the loop, so fsmn_rules.py restates that state machine over the scores
(tests check that it gives the real backend's segments).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import numpy as np

from .._constants import SAMPLES_PER_MS
from . import create_vad, fsmn_rules
from .base import BaseVad
from .fsmn_onnx import FsmnOnnxVad

Region = tuple[int, int]  # (start_ms, end_ms)


def regions(samples: np.ndarray, vad_name: str, **params) -> list[Region]:
    """Speech regions that the named VAD finds in a whole 16 kHz recording."""
    return Segmenter(samples, vad_name).regions(**params)


class Segmenter:
    """One recording and one VAD backend. The first :meth:`regions` call runs the backend
    (loading its model: seconds for fsmn-vad and silero); later calls with other
    parameters reuse its per-frame scores and take milliseconds."""

    def __init__(self, samples: np.ndarray, vad_name: str):
        self.samples = np.asarray(samples, np.float32)
        self.vad_name = vad_name
        self._vad: Any = None  # energy, silero
        self._silence: np.ndarray | None = None  # fsmn-vad: P(silence) per 10 ms frame
        self._opts = None

    def regions(self, **params) -> list[Region]:
        """The regions for these parameters (the backend's defaults for those not given)."""
        params = BaseVad(**params).params  # checked, all four
        if self.vad_name == "fsmn-vad":
            if self._silence is None:
                self._silence, self._opts = _fsmn_scores(self.samples)
            from .fsmn import FsmnVad

            threshold = params["speech_threshold"]
            return fsmn_rules.decide(
                self._silence,
                self._opts,
                FsmnVad.default_threshold if threshold is None else threshold,
                params["end_silence_ms"],
                params["max_segment_s"],
            )
        if self._vad is None:
            self._vad = create_vad(self.vad_name, **params)
            if self.vad_name == "silero":
                self._vad._model = _Tape(self._vad._model)
            return _run(self._vad, self.samples)
        self._vad.reset()
        self._vad.set_params(**params)
        # Replaying silero needs no audio, only as many frames as were recorded.
        return _run(self._vad, np.zeros_like(self.samples) if self.vad_name == "silero" else self.samples)


def _run(vad, samples: np.ndarray) -> list[Region]:
    events = vad.accept(samples, final=True)
    return [(a.ms, b.ms) for a, b in zip(events[::2], events[1::2], strict=False)]


class _Tape:
    """Stands in for silero's network: records its speech probabilities on the first pass,
    then plays them back (reset() rewinds), so SileroVad's own decision code reruns alone."""

    def __init__(self, model):
        self.model, self.probs, self.pos = model, [], 0

    def __call__(self, frame, rate):
        if self.model is not None:
            prob = self.model(frame, rate)
            self.probs.append(prob.item())
            return prob
        self.pos += 1
        return np.float64(self.probs[self.pos - 1])

    def reset_states(self) -> None:
        if self.model is not None and self.probs:
            self.model = None  # recorded: from now on, play back
        self.pos = 0


# -- FSMN-VAD ----------------------------------------------------------------------------


def _fsmn_scores(samples: np.ndarray):
    """Run the real FsmnVad over the recording once, catching its network's output: the
    silence probability of each 10 ms frame. Returns those and the model's options."""
    vad: Any = create_vad("fsmn-vad")
    if isinstance(vad, FsmnOnnxVad):  # no funasr here: the same network on onnxruntime
        return vad.silence_scores(samples)
    model = vad._shared.auto.model
    me, chunks = threading.get_ident(), []

    def catch(_module, _inputs, scores):
        if threading.get_ident() == me:  # the model is shared: only this thread's calls
            chunks.append(scores[0, :, model.vad_opts.sil_pdf_ids[0]].detach().cpu().numpy())

    hook = model.encoder.register_forward_hook(catch)
    try:
        vad.accept(samples, final=True)
    finally:
        hook.remove()
    silence = np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0)
    return silence, model.vad_opts  # fsmn_rules reads only options that nothing changes


# -- comparing and drawing -----------------------------------------------------------------


def frame_agreement(
    regions_a: Iterable[Region], regions_b: Iterable[Region], duration_ms: float, frame_ms: float = 10
) -> float:
    """The fraction of frames (of `frame_ms`, over `duration_ms`) that both segmentations
    call the same: speech in both or in neither. A frame is speech when its middle lies in
    a region; frames whose middle is past the end do not count."""
    if duration_ms <= 0 or frame_ms <= 0:
        raise ValueError(f"duration_ms and frame_ms must be positive, got {duration_ms}, {frame_ms}")
    n = max(int(np.ceil(duration_ms / frame_ms - 0.5)), 1)
    a, b = _frame_labels(regions_a, n, frame_ms), _frame_labels(regions_b, n, frame_ms)
    return float(np.mean(a == b))


def _frame_labels(regions: Iterable[Region], n: int, frame_ms: float) -> np.ndarray:
    labels = np.zeros(n, bool)
    for start, end in regions:
        # frames whose middle (i + 0.5) * frame_ms lies in [start, end)
        labels[max(int(np.ceil(start / frame_ms - 0.5)), 0) : max(int(np.ceil(end / frame_ms - 0.5)), 0)] = True
    return labels


def envelope(samples: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of each of `bins` equal slices (fewer when there are fewer samples):
    enough to draw a waveform at one slice per pixel."""
    x = np.asarray(samples, np.float32)
    bins = min(int(bins), len(x))
    if bins <= 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    edges = (np.arange(bins) * len(x)) // bins
    return np.minimum.reduceat(x, edges), np.maximum.reduceat(x, edges)


def energy_curve(samples: np.ndarray, frame_ms: float = 30) -> np.ndarray:
    """Level in dBFS of each `frame_ms` frame (the last one may be short), as the energy VAD
    and audio.level_db measure it: RMS, -120 for digital silence."""
    x = np.asarray(samples, np.float32)
    hop = max(int(frame_ms * SAMPLES_PER_MS), 1)
    if not len(x):
        return np.zeros(0, np.float32)
    edges = np.arange(0, len(x), hop)
    power = np.add.reduceat(np.square(x, dtype=np.float64), edges) / np.diff(edges, append=len(x))
    with np.errstate(divide="ignore"):
        return np.maximum(10.0 * np.log10(power), -120.0).astype(np.float32)


__all__ = ["Segmenter", "energy_curve", "envelope", "frame_agreement", "regions"]
