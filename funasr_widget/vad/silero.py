"""Silero VAD (the optional ``silero-vad`` package, weights included, runs offline).

The network scores each 32 ms frame (512 samples) with a speech probability; a frame
is speech at ``speech_threshold`` or above, and, inside a segment, down to 0.15 below
it (the hysteresis of silero's own VADIterator). Segments follow FramedVad.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._constants import SAMPLE_RATE
from ..dependencies import require
from .base import FramedVad


def _load_model():
    torch = require("torch", "silero", "The 'silero' VAD")
    threads = torch.get_num_threads()
    try:
        silero_vad = require("silero_vad", "silero", "The 'silero' VAD")
    finally:
        torch.set_num_threads(threads)  # importing silero_vad sets it to 1 process-wide
    with warnings.catch_warnings():  # its loader uses APIs deprecated in torch/importlib
        warnings.simplefilter("ignore", DeprecationWarning)
        return silero_vad.load_silero_vad()


class SileroVad(FramedVad):
    name = "silero"
    frame = 512  # the model's fixed window at 16 kHz
    default_threshold = 0.5

    def __init__(self, **params):
        self._model = _load_model()  # stateful (recurrent), so one per VAD
        super().__init__(**params)

    def _is_speech(self, frame: np.ndarray) -> bool:
        import torch

        with torch.no_grad():
            prob = self._model(torch.from_numpy(frame), SAMPLE_RATE).item()
        threshold = self.params["speech_threshold"]
        return prob >= (threshold - 0.15 if self.in_speech else threshold)

    def reset(self) -> None:
        super().reset()
        self._model.reset_states()
