"""Voice activity detection: where speech starts and ends in a 16 kHz stream.

Three backends behind one small interface (:class:`Vad`):

* ``"fsmn-vad"``: FunASR's FSMN model (real weights from a local folder), the default.
* ``"silero"``: the silero-vad package (optional: ``pip install 'funasr-widget[silero]'``).
* ``"energy"``: loudness against ``threshold_db``; no model at all.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from .._constants import KNOBS
from ..dependencies import installed
from .base import DEFAULTS, Vad, VadEvent, accepted, check_params

if TYPE_CHECKING:
    from .energy import EnergyVad
    from .fsmn import FsmnVad
    from .silero import SileroVad

NAMES = ("fsmn-vad", "silero", "energy")
RUNTIMES = ("funasr", "onnx", "auto")  # fsmn-vad's


def check_name(name) -> str:
    """`name` if it is a VAD backend; else a ValueError naming the close match and the choices."""
    if isinstance(name, str) and name in NAMES:
        return name
    if not isinstance(name, str):
        raise TypeError(f"vad must be a string, one of {', '.join(NAMES)}; got {name!r}")
    close = difflib.get_close_matches(name.lower(), NAMES, 1, cutoff=0.5) or [
        n for n in NAMES if name.lower().startswith(n.split("-")[0])
    ]
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown VAD {name!r}.{hint} Choose one of {', '.join(NAMES)}.")


def create_vad(name: str = "fsmn-vad", **params) -> Vad:
    """A new VAD; the parameters are checked here (ranges: _constants.KNOBS).

    Every backend accepts all four knobs (end_silence_ms, speech_threshold,
    max_segment_s, energy_threshold_db), using those that apply to it. For fsmn-vad also
    ``model`` (name or folder, default "fsmn-vad"), ``device`` ("cpu") and ``runtime``:
    "funasr" (the default where funasr is installed, else "auto"), "onnx" (onnxruntime, no funasr nor torch in the process:
    fsmn_onnx.py; needs the folder's model.onnx) or "auto" (onnx when it can run, else
    funasr). Both give the same events."""
    name = check_name(name)
    if name == "fsmn-vad":
        # funasr where it is installed, else onnxruntime (a kernel with the [onnx] extra only)
        runtime = params.pop("runtime", None) or ("funasr" if installed("funasr", "torch") else "auto")
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        if runtime != "funasr":
            from .. import models
            from . import fsmn_onnx

            if runtime == "onnx" or fsmn_onnx.available(models.fetch(params.get("model", "fsmn-vad"))):
                params.pop("device", None)  # onnxruntime runs it on the CPU: a 0.4M model
                return fsmn_onnx.FsmnOnnxVad(**params)
    return _backend(name)(**params)


def _backend(name: str) -> type[FsmnVad | SileroVad | EnergyVad]:
    """The class of a backend, imported on first use (none imports its model here)."""
    if name == "fsmn-vad":
        from .fsmn import FsmnVad

        return FsmnVad
    if name == "silero":
        from .silero import SileroVad

        return SileroVad
    from .energy import EnergyVad

    return EnergyVad


def own_threshold(name: str) -> float | None:
    """The backend's own speech_threshold, which ``speech_threshold=None`` (the default
    everywhere) stands for: fsmn-vad 0.6, silero 0.5; None for energy (it has no score)."""
    return _backend(check_name(name)).default_threshold


def effective(name: str, params: dict) -> dict:
    """``params`` as backend ``name`` runs them: speech_threshold None is its own."""
    if params.get("speech_threshold", 0) is None:
        return {**params, "speech_threshold": own_threshold(name)}
    return dict(params)


def knob_table() -> dict:
    """The knob table for a front end: _constants.KNOBS, and for speech_threshold each
    backend's own value (what None means), as the sliders show it."""
    table = {name: dict(knob) for name, knob in KNOBS.items()}
    table["speech_threshold"]["own"] = {name: own_threshold(name) for name in NAMES}
    return table


__all__ = [
    "DEFAULTS",
    "NAMES",
    "Vad",
    "VadEvent",
    "accepted",
    "check_name",
    "check_params",
    "create_vad",
    "effective",
    "knob_table",
    "own_threshold",
]
