"""FSMN-VAD: FunASR's streaming VAD model (``FsmnVADStreaming``) from a local folder.

The model scores 10 ms frames; funasr's state machine turns the scores into segment
events ``[beg, -1]`` (start), ``[-1, end]`` (end) or ``[beg, end]`` in ms since its
cache began. Choices made here:

* A fixed end silence (``end_silence_ms``, default 700 ms) instead of funasr's dynamic
  schedule, which waits ~2 s after short utterances: dictation wants a segment closed
  roughly 0.6-0.8 s after the speaker stops.
* Per-stream thresholds live in the cache (``cache["stats"]``), so several VADs can
  share one loaded model; calls into the model are serialised by its lock, because
  funasr also writes per-call values into the model object.
"""

from __future__ import annotations

import threading

import numpy as np

from .. import _cache, _torch, models
from .._constants import BLOCK, SAMPLES_PER_MS
from . import fsmn_rules
from .base import BaseVad, PredictedEnd, VadEvent

GRID = BLOCK  # samples (100 ms): the model is stepped on this grid, whatever the input size
MAX_STEP = 100  # grid units (10 s) per model step at most: bounds the feature tensors
FRONTEND_CONTEXT_MS = 45  # a frame's score needs 20 ms of splice context and a 25 ms fbank window


class _SharedModel:
    def __init__(self, path, device: str):
        self.auto = _torch.auto_model(path, device)
        self.lock = threading.Lock()


class FsmnVad(BaseVad):
    name = "fsmn-vad"
    default_threshold = 0.6  # the model's speech_noise_thres: speech-minus-noise probability

    def __init__(self, *, model: str = "fsmn-vad", device: str = "cpu", **params):
        super().__init__(**params)
        device = _torch.resolve_device(device)
        path = models.fetch(model)
        self._shared = _cache.shared(("fsmn-vad", str(path), device), lambda: _SharedModel(path, device))
        self._cache: dict = {}
        self._offset = 0  # samples fed through earlier caches (before a final flush)
        self._fed = 0  # samples fed through the current cache
        self._held = 0  # of those, samples funasr holds until a whole grid unit has come

    def accept(self, samples: np.ndarray, final: bool = False) -> list[VadEvent]:
        samples = np.asarray(samples, np.float32).ravel()
        if final and not len(samples):
            samples = np.zeros(1, np.float32)  # an empty final chunk would lose the pending end
        # funasr steps its input in chunks of `chunk_size` ms, and each step costs about the
        # same whatever its length (~3 ms on 2 cores): 100 ms steps spend 30 ms of CPU per
        # second of audio, a 10 s step 5 ms. So each call is ONE step over every whole
        # 100 ms unit it has (up to MAX_STEP units per step), the rest held for the next
        # call, as 100 ms steps would hold it; the events do not depend on the step size
        # (tests/test_vad.py). A live stream (100 ms blocks) still gets one step per block.
        p = self.params
        auto = self._shared.auto
        origin = self._offset // SAMPLES_PER_MS
        values: list[list[int]] = []  # funasr's [start_ms, end_ms] pairs, -1: not in this call
        with self._shared.lock:
            auto.model.vad_opts.max_single_segment_time = int(p["max_segment_s"] * 1000)
            start = 0
            while True:
                units = (self._held + len(samples) - start) // GRID
                last = units <= MAX_STEP
                stop = len(samples) if last else start + MAX_STEP * GRID - self._held
                result = auto.generate(
                    input=samples[start:stop],
                    cache=self._cache,
                    is_final=final and last,
                    chunk_size=max(min(units, MAX_STEP), 1) * GRID // SAMPLES_PER_MS,
                    is_streaming_input=True,
                    max_end_silence_time=p["end_silence_ms"],
                    speech_noise_thres=p["speech_threshold"],
                    dynamic_silence=False,
                )
                values += result[0]["value"] if result else []
                self._held = (self._held + stop - start) % GRID
                if last:
                    break
                start = stop
        for beg, end in values:
            if beg >= 0:
                self._emit("start", origin + beg)
            if end >= 0:
                self._emit("end", origin + end)
        self._fed += len(samples)
        if final:  # funasr has reset the cache; start the next one with our thresholds
            self._offset += self._fed
            self._fed = self._held = 0
            self._cache = {}
        return self._take_events()

    @property
    def trailing_silence_ms(self) -> int:
        # funasr closes the segment when its count of silent 10 ms frames reaches
        # end silence minus speech_to_sil_time_thres (see _params_changed).
        stats = self._cache.get("stats")
        if not self.in_speech or stats is None or not stats.continous_silence_frame_count:
            return 0
        opts = self._shared.auto.model.vad_opts
        return stats.continous_silence_frame_count * opts.frame_in_ms + opts.speech_to_sil_time_thres

    def predicted_end(self) -> PredictedEnd | None:
        stats = self._cache.get("stats")
        if not self.in_speech or stats is None or not stats.continous_silence_frame_count:
            return None
        opts = self._shared.auto.model.vad_opts
        found = fsmn_rules.closing(
            stats.frm_cnt,
            stats.continous_silence_frame_count,
            stats.confirmed_start_frame,
            opts.frame_in_ms,
            stats.max_end_sil_frame_cnt_thresh,
            self.params["max_segment_s"],
            opts.lookahead_time_end_point if opts.do_extend else None,
        )
        if found is None:
            return None
        origin = self._offset // SAMPLES_PER_MS
        # funasr judges a frame once its right context is in, and is stepped on GRID units
        judged_ms = found[1] + FRONTEND_CONTEXT_MS
        grid_ms = GRID // SAMPLES_PER_MS
        return PredictedEnd(origin + found[0], origin + -(-judged_ms // grid_ms) * grid_ms)

    def speech_until_ms(self) -> int | None:
        stats = self._cache.get("stats")
        if not self.in_speech or stats is None or not stats.output_data_buf:
            return None
        # funasr's output buffer: the open segment's frames so far; its end event is there or later
        return self._offset // SAMPLES_PER_MS + int(stats.output_data_buf[-1].end_ms)

    def _params_changed(self) -> None:
        # The thresholds are copied into the cache when it is created; update them there.
        stats = self._cache.get("stats")
        if stats is not None:
            end_silence = self.params["end_silence_ms"]
            speech_to_sil = self._shared.auto.model.vad_opts.speech_to_sil_time_thres
            stats.max_end_sil_frame_cnt_thresh = max(end_silence - speech_to_sil, 0)
            stats.speech_noise_thres = self.params["speech_threshold"]

    def reset(self) -> None:
        self._cache = {}
        self._offset = self._fed = self._held = 0
        super().reset()
