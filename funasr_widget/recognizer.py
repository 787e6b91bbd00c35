"""The model side of a session: load the VAD and the ASR engine in the background, run
the pipeline, and report the model's state as events.

Loading never blocks capture: audio flows into the pipeline while a model loads,
segments wait for it, and a model that fails to load leaves the VAD running and the
audio kept. Arguments are checked here, in the caller's thread, before any thread starts;
whatever fails later on a thread becomes an event (events.py), never a silent stop.
"""

from __future__ import annotations

import threading
import time
from typing import Any, cast

from . import diagnose
from .asr import check_device, check_model, check_options, load_engine, remote, resolve_device
from .asr.onnx import torch_installed
from .errors import FunasrWidgetError
from .events import Emit, ModelState, Problem, VadChanged
from .failures import model_failure
from .models import default_model
from .pipeline import Pipeline
from .vad import check_name, check_params, create_vad

FALLBACK_VAD = "energy"  # needs no model, so it always starts


class _StallWatch:
    """Says so (a loading state with stalled=True and a hint) when a load reports no progress
    for diagnose.LOAD_STALL_S; a later progress report clears it."""

    def __init__(self, current, emit, info: dict, name):
        self._current, self._emit, self._info, self._name = current, emit, info, name
        self._last = time.monotonic()
        self._done = threading.Event()
        self._lock = threading.Lock()  # no stalled report after stop(): it would follow "ready"
        threading.Thread(target=self._run, name="funasr-widget-load-watch", daemon=True).start()

    def touch(self) -> None:
        self._last = time.monotonic()

    def stop(self) -> None:
        with self._lock:
            self._done.set()

    def _run(self) -> None:
        stalled_at = None
        while not self._done.wait(min(5.0, diagnose.LOAD_STALL_S / 4)):
            idle = time.monotonic() - self._last
            if idle >= diagnose.LOAD_STALL_S and stalled_at != self._last and self._current():
                stalled_at = self._last
                message, hint = diagnose.stalled_load(self._name(), idle)
                with self._lock:
                    if self._done.is_set():
                        return
                    self._emit(
                        ModelState(
                            "loading",
                            {
                                **self._info,
                                "name": self._name(),
                                "stalled": True,
                                "code": "load-stalled",
                                "message": message,
                                "hint": hint,
                            },
                        )
                    )


class Recognizer:
    """VAD + ASR for one session. `emit` receives every event (from worker threads)."""

    def __init__(
        self,
        model: str | None,
        vad: str,
        device: str,
        vad_params: dict,
        emit: Emit,
        *,
        partials: bool = True,
        speculative: bool = True,
        on_close=None,
        **options,
    ):
        self.vad_name = check_name(vad)
        self._vad_params = check_params(**vad_params)
        self._remote = bool(options.get("server"))
        self._runtime = options.get("runtime", "auto")  # the ASR's and FSMN-VAD's (asr/onnx.py)
        if model is not None:
            self.check_model(model, device, options)
        self.emit = emit
        self.model_spec: tuple | None = None  # (model, device, options) of the engine in use
        self.requested: tuple | None = None  # (model, device, options) of the last load() asked for
        self._load_lock = threading.Lock()
        self._generation = 0  # only the newest load() may hand over its engine
        self._loader: threading.Thread | None = None
        self.pipeline = Pipeline(self._make_vad, emit, partials=partials, speculative=speculative, on_close=on_close)
        if model is None:
            self.pipeline.set_engine(None)
            emit(ModelState("none", {"message": "Capture only: no ASR model."}))
        else:
            self.load(model, device, **options)

    @staticmethod
    def check(model: str | None, vad: str, device: str, vad_params: dict, options: dict) -> None:
        """Every argument checked, as the constructor checks them, without starting anything."""
        check_name(vad)
        check_params(**vad_params)
        if model is not None:
            Recognizer.check_model(model, device, options)

    @staticmethod
    def check_model(model, device, options) -> None:
        check_model(model)
        check_device(device)
        check_options(options)

    def load(self, model: str, device: str = "auto", **options) -> None:
        """Load (or switch to) an ASR model in the background; the arguments are checked now."""
        self.check_model(model, device, options)
        self.requested = (model, device, check_options(options))  # for diagnose(): the server to probe
        with self._load_lock:
            self._generation += 1
            self._loader = threading.Thread(
                target=self._load,
                args=(self._generation, model, device, options),
                name="funasr-widget-loader",
                daemon=True,
            )
            self._loader.start()

    def _load(self, generation: int, model: str, device: str, options: dict) -> None:
        name = str(model)
        info: dict[str, Any] = {"name": name, "device": device, "progress": None}
        server = options.get("server")  # a remote engine: the model runs there, `device` is unused
        try:
            if server:
                name = remote.DEFAULT_MODEL if model == "auto" else str(model)
                info.update(name=name, server=server, device="remote")
            else:
                # onnxruntime runs on the CPU: no torch import to find a GPU (asr/onnx.py)
                on_cpu = (
                    device == "cpu" or device == "auto" and (options.get("runtime") == "onnx" or not torch_installed())
                )
                device = "cpu" if on_cpu else resolve_device(device)
                name = default_model(device) if model == "auto" else str(model)
                info.update(name=name, device=device)

            def progress(fraction: float | None, message: str = "") -> None:
                watch.touch()
                text = message or f"Loading {name} on {device}"
                self.emit(ModelState("loading", {**info, "progress": fraction, "message": text}))

            watch = _StallWatch(lambda: self._current(generation), self.emit, info, lambda: name)
            progress(None)
            try:
                engine = load_engine(name, device, progress=progress, **options)
            finally:
                watch.stop()
        except Exception as err:  # every failure reaches the user, with what to do
            code = err.code if isinstance(err, FunasrWidgetError) else "model-failed"
            known = None if isinstance(err, FunasrWidgetError) else model_failure(err, device=device)
            if isinstance(err, FunasrWidgetError):
                message, hint = err.message, err.hint
            elif known is not None:
                code, message, hint = known
            else:
                message = f"Loading {name} failed: {type(err).__name__}: {err}"
                hint = "Check the model folder and options, then call load_model() again."
            if self._current(generation):
                self.pipeline.set_engine(None)  # segments still come, with empty text; audio is kept
                self.emit(ModelState("error", {**info, "code": code, "message": message, "hint": hint}))
            return
        if self._current(generation):
            if server:  # "auto" is the server's only model: say which
                name = engine.name
                info.update(name=name)
            self.model_spec = (name, device, options)
            self.pipeline.set_engine(engine)
            rtt_ms = cast(remote.RemoteEngine, engine).rtt_ms if server else 0.0
            where = f"the server {server} ({rtt_ms:.0f} ms round trip)" if server else device
            notes = list(engine.notes)  # a CPU fallback, timestamps off (asr/)
            if notes and not server:
                info.update(device=engine.device, notes=notes)
                where = engine.device
            if engine.runtime:  # torch or onnx, the file and why (asr/onnx.Choice)
                info.update(runtime=engine.runtime)
            message = f"{name} ready on {where}" + "".join(f". {note}" for note in notes)
            self.emit(ModelState("ready", {**info, "progress": 1.0, "message": message}))
        else:
            engine.close()  # a newer load() was asked for meanwhile: this one is never used

    def _current(self, generation: int) -> bool:
        with self._load_lock:
            return generation == self._generation

    def _make_vad(self):
        """The chosen VAD, or the energy VAD (with a Problem saying why) when it cannot start.
        A session whose ASR runs on a server runs FSMN-VAD on onnxruntime where it can: the
        same events, and the kernel never imports funasr or torch (vad/fsmn_onnx.py); so does a
        session with runtime='onnx', or runtime='auto' where torch or funasr is not installed."""
        extra = {}
        if self.vad_name == "fsmn-vad":
            if self._runtime == "onnx":
                extra = {"runtime": "onnx"}
            elif self._runtime == "auto" and (self._remote or not torch_installed()):
                extra = {"runtime": "auto"}
        try:
            return create_vad(self.vad_name, **self._vad_params, **extra)
        except Exception as err:
            if self.vad_name == FALLBACK_VAD:
                raise
            hint = getattr(err, "hint", "") or "Install or place the VAD model, then create the widget again."
            self.emit(
                Problem(
                    "vad-failed",
                    f"VAD {self.vad_name!r} could not start ({err}); using the {FALLBACK_VAD} VAD instead.",
                    hint,
                )
            )
            self.vad_name = FALLBACK_VAD
            self.emit(VadChanged(FALLBACK_VAD))
            return create_vad(FALLBACK_VAD, **self._vad_params)

    def push(self, samples, final: bool = False) -> None:
        self.pipeline.push(samples, final)

    def room(self, timeout: float | None = None) -> bool:
        """Wait until the pipeline's queue has room (Python's feed() waits; pipeline.py)."""
        return self.pipeline.room(timeout)

    def status(self) -> dict:
        """The pipeline's counts: decodes, speculative finals, segments given up (pipeline.py)."""
        return self.pipeline.status()

    def set_vad_params(self, **params) -> None:
        """Checked here; applied on the worker from the next segment."""
        params = check_params(**params)
        self._vad_params.update(params)
        self.pipeline.set_vad_params(**params)

    @property
    def vad_params(self) -> dict:
        return dict(self._vad_params)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the model has loaded (or failed), everything pushed is processed and each
        closed segment has its final (decoded, or given up: decoding.GIVE_UP_AFTER_S of an
        unavailable engine); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        loader = self._loader
        if loader is not None:
            if loader is threading.current_thread():
                raise RuntimeError(
                    "wait() was called from a model-state observer, which runs on the "
                    "loading thread and would wait for itself: call it from the notebook"
                )
            loader.join(timeout)
            if loader.is_alive():
                return False
        return self.pipeline.wait(None if deadline is None else max(deadline - time.monotonic(), 0))

    def close(self) -> None:
        self.pipeline.close()
