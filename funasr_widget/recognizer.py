"""The model side of a widget: load the VAD and the ASR engine in the background,
run the pipeline, and report the model's state as events.

Loading never blocks capture: audio flows into the pipeline while a model
loads, segments wait for it, and a model that fails to load leaves the VAD
running and the audio kept.
"""

from __future__ import annotations

import os
import threading

from .asr import ModelLoadError, load_engine, resolve_device
from .audio import as_mono_float32, read_audio, resample
from .models import default_model
from .pipeline import Emit, Pipeline
from .vad import create_vad

# Dictation wants a segment to close soon after the speaker pauses: 700 ms of silence.
VAD_DEFAULTS = {"end_silence_ms": 700, "speech_threshold": 0.6, "max_segment_s": 30.0,
                "energy_threshold_db": -45.0}


class Recognizer:
    def __init__(self, model: str | None, vad: str, device: str, vad_params: dict, emit: Emit,
                 *, partials: bool = True, **options):
        self.emit = emit
        self._vad_name = vad
        self.pipeline = Pipeline(lambda: self._create_vad(vad_params), emit, partials=partials)
        self._loader: threading.Thread | None = None
        if model is None:
            self.pipeline.set_engine(None)
            emit("model", {"state": "none", "info": {"message": "Capture only: no ASR model."}})
        else:
            self.load(model, device, **options)

    def load(self, model: str, device: str = "auto", **options) -> None:
        """Load (or switch to) an ASR model in the background."""
        self._loader = threading.Thread(target=self._load, args=(model, device, options), daemon=True)
        self._loader.start()

    def _load(self, model: str, device: str, options: dict) -> None:
        try:
            device = resolve_device(device)
            name = default_model(device) if model == "auto" else model
        except ModelLoadError as err:
            name = model
            self._failed(name, device, err)
            return
        info = {"name": name, "device": device, "progress": None}

        def progress(fraction: float | None, message: str = "") -> None:
            text = message or f"Loading {name} on {device}"
            self.emit("model", {"state": "loading", "info": {**info, "progress": fraction, "message": text}})

        progress(None)
        try:
            engine = load_engine(name, device, progress=progress, **options)
        except ModelLoadError as err:
            self._failed(name, device, err)
            return
        self.pipeline.set_engine(engine)
        self.emit("model", {"state": "ready", "info": {**info, "progress": 1.0,
                                                       "message": f"{name} ready on {device}"}})

    def _failed(self, name: str, device: str, err: ModelLoadError) -> None:
        self.pipeline.set_engine(None)  # segments still come, with empty text; the audio is kept
        self.emit("model", {"state": "error", "info": {
            "name": name, "device": device, "progress": None, "message": str(err), "hint": err.hint}})

    def _create_vad(self, params: dict):
        try:
            return create_vad(self._vad_name, **params)
        except (ModelLoadError, ImportError) as err:
            hint = getattr(err, "hint", "") or "Install or place the VAD model, then create the widget again."
            self.emit("error", {"code": "vad-failed", "hint": hint,
                                "message": f"VAD {self._vad_name!r} could not start ({err}); using the energy VAD instead."})
            return create_vad("energy", **params)

    def push(self, samples, final: bool = False) -> None:
        self.pipeline.push(samples, final)

    def set_vad_params(self, **params) -> None:
        self.pipeline.set_vad_params(**params)

    def wait(self, timeout: float | None = None) -> bool:
        if self._loader is not None:
            self._loader.join(timeout)
            if self._loader.is_alive():
                return False
        return self.pipeline.wait(timeout)

    def close(self) -> None:
        self.pipeline.close()


def transcribe(source, sample_rate: int | None = None, model: str = "auto", vad: str = "fsmn-vad",
               device: str = "auto", **options) -> list[dict]:
    """Transcribe a file or an array offline; gives the segments live streaming gives.

    The audio goes through the same pipeline as the microphone, which cuts it into
    the same 100 ms blocks, so the VAD cuts it the same way. `options` may hold VAD
    parameters (see VAD_DEFAULTS) and model options.
    """
    if isinstance(source, (str, os.PathLike)):
        samples, rate = read_audio(source)
    elif sample_rate is None:
        raise ValueError("transcribe(array) needs sample_rate=")
    else:
        samples, rate = as_mono_float32(source), sample_rate
    vad_params = {k: options.pop(k, v) for k, v in VAD_DEFAULTS.items()}
    segments: list[dict] = []
    state: dict = {}

    def collect(kind: str, payload) -> None:
        if kind == "segment":
            segments.append(payload)
        elif kind == "model":
            state.update(payload)

    recognizer = Recognizer(model, vad, device, vad_params, collect, partials=False, **options)
    try:
        recognizer.push(resample(samples, rate), final=True)
        recognizer.wait()
    finally:
        recognizer.close()
    if state.get("state") == "error":
        info = state["info"]
        raise ModelLoadError(info["message"], info.get("hint", ""))
    return segments
