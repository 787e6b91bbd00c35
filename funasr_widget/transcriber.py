"""The Transcriber widget: traits and message dispatch, nothing else.

Audio handling lives in session.py, the error texts in diagnose.py, the
recognition in pipeline.py; this class only wires them to the front end.
"""

from __future__ import annotations

import pathlib
import time

import anywidget
import traitlets as t

from . import diagnose
from .audio import write_wav
from .session import AudioSession
from .wire import WireError

_STATIC = pathlib.Path(__file__).parent / "static"
_STATS_INTERVAL_S = 0.1  # the stats trait is a display: 10 updates/s is plenty


class Transcriber(anywidget.AnyWidget):
    _esm = _STATIC / "widget.js"
    _css = _STATIC / "widget.css"

    status = t.Unicode("Press Record to start.").tag(sync=True)
    error = t.Dict().tag(sync=True)
    recording = t.Bool(False).tag(sync=True)
    device_id = t.Unicode("").tag(sync=True)
    stats = t.Dict().tag(sync=True)

    def __init__(self, *, max_seconds: float = 3600.0, **kwargs):
        super().__init__(**kwargs)
        self._session = AudioSession(max_seconds)
        self._env: dict = {}
        self._last_seen: float | None = None
        self._stats_sent = 0.0
        self.on_msg(self._on_message)

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
                self._session.start()
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

    def diagnose(self) -> diagnose.Checklist:
        """What is known about the capture path; prints as a checklist."""
        return diagnose.checklist(self._env, self._session.stats(), self.error, "none", {}, self._last_seen)
