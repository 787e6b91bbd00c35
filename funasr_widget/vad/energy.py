"""Energy VAD: no model, just loudness.

Each 30 ms frame is speech when its RMS level reaches ``energy_threshold_db`` (dBFS,
measured as the widget's level meter measures it). A segment opens after ~90 ms of
loud frames and closes after ``end_silence_ms`` of quiet ones (see FramedVad). Good
for teaching and for quiet rooms; it cannot tell speech from any other sound.
"""

from __future__ import annotations

import numpy as np

from ..audio import level_db
from .base import FramedVad


class EnergyVad(FramedVad):
    """``speech_threshold`` is kept but unused: this backend has no speech score."""

    name = "energy"
    frame = 480  # 30 ms

    def _is_speech(self, frame: np.ndarray) -> bool:
        return level_db(frame) >= self.params["energy_threshold_db"]
