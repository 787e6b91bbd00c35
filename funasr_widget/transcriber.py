"""The Transcriber widget: traits and message dispatch, nothing else.

Audio handling lives in session.py, the error texts in diagnose.py, the
recognition in pipeline.py and recognizer.py; this class only wires them to the
front end and to the notebook.
"""

from __future__ import annotations

import pathlib
import time
from typing import Callable

import anywidget
import traitlets as t

from . import diagnose
from .audio import SAMPLE_RATE, write_wav
from .recognizer import VAD_DEFAULTS, Recognizer, transcribe
from .session import AudioSession
from .wire import WireError

_STATIC = pathlib.Path(__file__).parent / "static"
_STATS_INTERVAL_S = 0.1  # the stats trait is a display: 10 updates/s is plenty
_BEHIND = "Transcribing:"


def _joined(segments: list[dict]) -> str:
    return " ".join(s["text"] for s in segments if s["text"])


class Transcriber(anywidget.AnyWidget):
    _esm = _STATIC / "widget.js"
    _css = _STATIC / "widget.css"

    status = t.Unicode("Press Record to start.").tag(sync=True)
    error = t.Dict().tag(sync=True)
    recording = t.Bool(False).tag(sync=True)
    device_id = t.Unicode("").tag(sync=True)
    stats = t.Dict().tag(sync=True)

    model_state = t.Unicode("none").tag(sync=True)  # none | loading | ready | error
    model_info = t.Dict().tag(sync=True)  # {name, device, message, hint, progress}
    partial = t.Unicode("").tag(sync=True)
    segments = t.List().tag(sync=True)
    text = t.Unicode("").tag(sync=True)

    vad = t.Unicode("").tag(sync=True)  # the VAD backend's name, read-only
    # VAD knobs: a change takes effect from the next segment.
    end_silence_ms = t.Int(VAD_DEFAULTS["end_silence_ms"]).tag(sync=True)
    speech_threshold = t.Float(VAD_DEFAULTS["speech_threshold"]).tag(sync=True)
    max_segment_s = t.Float(VAD_DEFAULTS["max_segment_s"]).tag(sync=True)
    energy_threshold_db = t.Float(VAD_DEFAULTS["energy_threshold_db"]).tag(sync=True)

    def __init__(self, model: str | None = "auto", vad: str = "fsmn-vad", device: str = "auto", *,
                 max_seconds: float = 3600.0, **options):
        """`model`: a registry name, a local folder, "auto" (by device) or None for capture only.

        `options` go to the model where it supports them (language, use_itn,
        hotword, punctuation, trust_remote_code).
        """
        super().__init__(vad=vad)
        self._options = options
        self._callbacks: list[Callable[[dict], None]] = []
        self._recognizer = Recognizer(model, vad, device, self._vad_params(), self._on_event, **options)
        self._session = AudioSession(max_seconds, sink=self._recognizer.push)
        self._env: dict = {}
        self._last_seen: float | None = None
        self._stats_sent = 0.0
        self.on_msg(self._on_message)
        self.observe(self._on_vad_param, list(VAD_DEFAULTS))
        self.observe(self._on_recording, "recording")

    # -- recognition events (from the worker thread) ---------------------------

    def _on_event(self, kind: str, payload) -> None:
        if kind == "model":
            self.model_state, self.model_info = payload["state"], payload["info"]
            self.status = payload["info"].get("message", self.status)
        elif kind == "partial":
            self.partial = payload
        elif kind == "segment":
            self.segments = [*self.segments, payload]
            self.text = _joined(self.segments)
            for callback in self._callbacks:
                callback(payload)
        elif kind == "lag":
            behind = payload > 1.0
            if behind or self.status.startswith(_BEHIND):
                self.status = f"{_BEHIND} {payload:.1f} s behind real time (catching up, nothing is dropped)" \
                    if behind else "Caught up with real time."
        elif kind == "status":
            self.status = payload
        elif kind == "error":
            self.error = payload
            if payload["code"] == "vad-failed":
                self.vad = "energy"  # what the recognizer fell back to

    def _on_recording(self, change) -> None:
        # The front end sends the final chunk before it clears `recording`, so this
        # only closes a take that ended without one (a reloaded page).
        if not change["new"]:
            self._session.end_take()
            self._publish_stats(force=True)
            self.status = f"Stopped: {self._session.recording.seconds:.1f} s recorded. Press Record to go on."

    def _vad_params(self) -> dict:
        return {name: getattr(self, name) for name in VAD_DEFAULTS}

    def _on_vad_param(self, _change) -> None:
        self._recognizer.set_vad_params(**self._vad_params())

    # -- messages from the front end ---------------------------------------

    def _on_message(self, _widget, content, buffers) -> None:
        # May run on a subshell thread: validate and hand on, never block.
        self._last_seen = time.monotonic()
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "chunk":
                self._session.receive(content, buffers)
                self._after_audio(final=bool(content.get("final")))
            elif kind == "start":
                self._session.end_take()
                self.error = {}
                self.status = f"Recording from {content.get('device_label') or 'the default microphone'}"
            elif kind == "env":
                self._env = {k: v for k, v in content.items() if k != "type"}
            elif kind == "error":
                self.error = diagnose.capture_error(content.get("code", ""), self._env, content.get("message", ""))
                self.status = self.error["message"]
            else:
                self._session.rejected["unknown-type"] += 1
                self._publish_stats(force=True)
        except WireError as err:
            self.status = f"Rejected a bad audio message ({err.code}): {err}"
            self._publish_stats(force=True)

    def _after_audio(self, final: bool) -> None:
        if self._session.silent and not self.error:
            self.error = diagnose.capture_error("silent-input", self._env)
        elif not self._session.silent and self.error.get("code") == "silent-input":
            self.error = {}
        self._publish_stats(force=final)

    def _publish_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._stats_sent >= _STATS_INTERVAL_S:
            self._stats_sent = now
            self.stats = self._session.stats()

    # -- Python API ----------------------------------------------------------

    @property
    def audio(self):
        """The session's audio so far: float32, 16 kHz, mono."""
        return self._session.recording.samples

    def feed(self, samples, sample_rate: int = 16_000, final: bool = False) -> None:
        """Push audio from Python through the same path as the microphone."""
        self._session.feed(samples, sample_rate, final)
        self._after_audio(final)

    def save_wav(self, path) -> pathlib.Path:
        """Write the session's audio as 16 kHz mono 16-bit WAV."""
        return write_wav(path, self.audio)

    def stop(self) -> None:
        """Ask the front end to stop recording (as the Stop button does)."""
        self.send({"type": "stop"})

    def load_model(self, model: str, device: str = "auto", **options) -> None:
        """Load another model (or retry after fixing one) without losing the session."""
        self._options = options
        self._recognizer.load(model, device, **options)

    def retranscribe(self) -> list[dict]:
        """Transcribe the whole recording again with the current model, replacing `segments`.

        For audio recorded while the model could not load.
        """
        self.wait()
        info = self.model_info
        segments = transcribe(self.audio, SAMPLE_RATE, model=info.get("name", "auto"), vad=self.vad,
                              device=info.get("device", "auto"), **self._vad_params(), **self._options)
        self.segments = segments
        self.text = _joined(segments)
        return segments

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything fed so far has been processed; False on timeout."""
        return self._recognizer.wait(timeout)

    def on_segment(self, callback: Callable[[dict], None]) -> None:
        """Call `callback(segment)` for every final segment from now on."""
        self._callbacks.append(callback)

    def to_dataframe(self):
        """The segments as a pandas DataFrame (one row per segment, with duration)."""
        import pandas as pd

        frame = pd.DataFrame(self.segments, columns=sorted({"id", "start", "end", "text"}.union(*self.segments)))
        frame["duration"] = frame["end"] - frame["start"]
        return frame.set_index("id")

    def diagnose(self) -> diagnose.Checklist:
        """What is known about the capture path; prints as a checklist."""
        return diagnose.checklist(self._env, self._session.stats(), self.error, self.model_state,
                                  self.model_info, self._last_seen)

    def close(self) -> None:
        self._recognizer.close()
        super().close()
