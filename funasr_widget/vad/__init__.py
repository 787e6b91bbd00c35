"""Voice activity detection: where speech starts and ends in a 16 kHz stream.

Three backends behind one small interface (:class:`Vad`):

* ``"fsmn-vad"``: FunASR's FSMN model (real weights from a local folder), the default.
* ``"silero"``: the silero-vad package (optional: ``pip install 'funasr-widget[silero]'``).
* ``"energy"``: loudness against ``threshold_db``; no model at all.
"""

from __future__ import annotations

from typing import Optional

from .base import Vad, VadEvent

NAMES = ("fsmn-vad", "silero", "energy")


def create_vad(name: str = "fsmn-vad", *, end_silence_ms: int = 700,
               speech_threshold: Optional[float] = None, max_segment_s: float = 30.0,
               energy_threshold_db: float = -45.0, **extra) -> Vad:
    """A new VAD.

    Defaults: a segment closes after 700 ms of silence (pauses inside a dictated
    sentence are shorter, and the speaker waits under a second for the text); it is cut
    at 30 s (segment models decode best below that); ``speech_threshold`` None keeps the
    backend's own (fsmn 0.6, silero 0.5); the energy backend calls a 30 ms frame speech
    from -45 dBFS. Every backend accepts all four (see BaseVad). ``extra``: for
    fsmn-vad, ``model`` (name or folder, default "fsmn-vad") and ``device`` ("cpu")."""
    params = dict(end_silence_ms=end_silence_ms, speech_threshold=speech_threshold,
                  max_segment_s=max_segment_s, energy_threshold_db=energy_threshold_db, **extra)
    if name == "fsmn-vad":
        from .fsmn import FsmnVad

        return FsmnVad(**params)
    if name == "silero":
        from .silero import SileroVad

        return SileroVad(**params)
    if name == "energy":
        from .energy import EnergyVad

        return EnergyVad(**params)
    raise ValueError(f"Unknown VAD '{name}'; choose one of {', '.join(NAMES)}")


__all__ = ["NAMES", "Vad", "VadEvent", "create_vad"]
