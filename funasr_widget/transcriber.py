"""The Transcriber widget: a view of one LiveSession (live.py), traits and messages only.

It maps the front end's messages to session calls and the session's events to traits;
audio handling lives in session.py, recognition in pipeline.py and recognizer.py, the
texts in diagnose.py, and the small policies it applies in rooms of their own: takes.py
(which page records), levels.py (the threshold hint), selftest.py, playback.py. Every
change of its state, from whatever thread, goes through one lock (writer.py); the page may
set only `recording`, `device_id` and the VAD knobs. The message protocol:

    front end -> kernel   hello {view}        a view appeared: the kernel replays the transcript
                          start {view, ...}   answered by started {view} or refused {view, ...}
                          chunk {view, ...}   + one binary buffer (wire.py)
                          env {...}, error {code, ...}
                          segment-audio {view, id}   answered by segment-audio {view, id,
                                              sample_rate, n, start, truncated} + ONE int16 buffer
                                              (or {view, id, error}); one answer per view in flight
                          segment-audio-received {view}   that answer arrived
                          apply-hint {}       the threshold hint's fix (the Apply button)
                          self-test {view, seconds}   the Test button: answered by self-test
                          self-test-result {view, sample_rate, n} + ONE float32 buffer: what the
                                              self-test recorded (and played back); refused
                                              when no self-test was asked for
    kernel -> front end   segment {segment}   one new final segment (appended, never re-sent)
                          self-test {view, seconds}   record that long (view null: any page),
                                              play it back, send the result
                          transcript {view, segments}   the whole transcript, for one view or
                                              (view null) for all, after retranscribe()
                          stop {}

`segments` and `text` are Python-side traits (observable, never synced): a new segment
costs one small message whatever the transcript's length.
"""

from __future__ import annotations

import pathlib
import threading
import time
from collections.abc import Callable

import anywidget
import numpy as np
import traitlets as t

from . import diagnose, keywords, playback, selftest
from ._bundle import bundle
from ._constants import SAMPLE_RATE
from .audio import write_wav
from .dependencies import require
from .events import Backlog, Final, Lag, ModelState, Partial, Problem, VadChanged
from .journal import SavedSession
from .levels import LevelWatch, shown_error
from .live import LiveSession, joined
from .takes import Takes
from .vad import DEFAULTS, check_params, effective, own_threshold
from .wire import WireError
from .writer import OneWriter

_STATS_INTERVAL_S = 0.1  # the stats trait is a display: 10 updates/s is plenty
_BEHIND = "Transcribing:"


class Transcriber(OneWriter, anywidget.AnyWidget):
    _esm = bundle("widget.js")
    _css = bundle("widget.css")
    # Set in __init__ once every argument is checked; None (the class's) when they were refused.
    _live: LiveSession = None  # type: ignore[assignment]
    PAGE_WRITABLE = frozenset({"recording", "device_id", *DEFAULTS})

    status = t.Unicode("Press Record to start.", read_only=True).tag(sync=True)
    error = t.Dict(read_only=True).tag(sync=True)  # {code, message, hint} or {}
    recording = t.Bool(False, read_only=True).tag(sync=True)  # set by the front end
    device_id = t.Unicode("").tag(sync=True)
    stats = t.Dict(read_only=True).tag(sync=True)

    model_state = t.Unicode("none", read_only=True).tag(sync=True)  # none | loading | ready | error
    model_info = t.Dict(read_only=True).tag(sync=True)  # {name, device, message, hint, progress}
    partial = t.Unicode("", read_only=True).tag(sync=True)
    segments: t.List = t.List(read_only=True)  # Python only: the front end gets `segment` messages
    text = t.Unicode("", read_only=True)

    self_test_result = t.Dict(read_only=True).tag(sync=True)  # {code, ok, peak_db, rms_db, message, hint}
    vad = t.Unicode("", read_only=True).tag(sync=True)  # the VAD backend in use
    # VAD knobs: checked on assignment (a wrong value raises and the old one stays);
    # a change takes effect from the next segment.
    end_silence_ms = t.Int(DEFAULTS["end_silence_ms"]).tag(sync=True)
    # The value in use: the backend's own (vad.own_threshold) unless set; None sets it back.
    speech_threshold = t.Float(None, allow_none=True).tag(sync=True)
    max_segment_s = t.Float(DEFAULTS["max_segment_s"]).tag(sync=True)
    energy_threshold_db = t.Float(DEFAULTS["energy_threshold_db"]).tag(sync=True)

    def __init__(
        self,
        model: str | None = "auto",
        vad: str = "fsmn-vad",
        device: str = "auto",
        *,
        max_seconds: float = 3600.0,
        autosave: bool = True,
        resume: SavedSession | None = None,
        speculative_final: bool = True,
        **options,
    ):
        """`model`: a registry name, a local folder, "auto" (by device) or None for capture only.
        `vad`: "fsmn-vad", "silero" or "energy". `options`: VAD knobs (end_silence_ms,
        speech_threshold, max_segment_s, energy_threshold_db) and model options (language,
        use_itn, hotword, punctuation, trust_remote_code). Remote mode: server="https://...",
        api_key (else $FUNASR_WIDGET_API_KEY), ca_bundle, server_partials; `model` is then the
        server's model name ("custom" for "auto"). `autosave`: keep the transcript and the
        recording on disk as they are made (funasr_widget.sessions()); `resume`: a saved
        session to go on with. `speculative_final`: decode each segment during its end silence,
        so its final comes as the VAD closes it (False: decode after the close). Everything is
        checked here."""
        if not isinstance(speculative_final, bool):
            raise TypeError(f"speculative_final must be True or False, got {speculative_final!r}")
        vad_params, self._options = keywords.split(options, "Transcriber()", own=Transcriber.__init__)
        knobs = effective(vad, {**DEFAULTS, **vad_params})
        # before a comm opens
        LiveSession.check(model, vad, device, max_seconds, knobs, self._options, autosave=autosave, resume=resume)
        super().__init__(**knobs)
        self.set_trait("vad", vad)
        self._env: dict = {}
        self._last_seen: float | None = None
        self._stats_sent = 0.0
        self._displayed_at: float | None = None  # the last time a cell displayed this widget
        # Policies, each in its room; called with the widget's lock held.
        self._takes = Takes()
        self._levels = LevelWatch(vad, knobs)
        self._self_test = selftest.SelfTest()
        self._in_flight = playback.InFlight()
        self._live = LiveSession(
            model,
            vad,
            device,
            max_seconds=max_seconds,
            vad_params=knobs,
            listener=self._on_event,
            autosave=autosave,
            resume=resume,
            speculative_final=speculative_final,
            **self._options,
        )
        if resume is not None:  # the saved transcript, shown from the start
            self._show(segments=list(self._live.segments), text=self._live.text)
        self.on_msg(self._on_message)
        self.observe(self._on_vad_param, list(DEFAULTS))
        self.observe(self._on_recording, "recording")

    def _show(self, **traits) -> None:
        """Set several traits as one step."""
        with self.writing():
            for name, value in traits.items():
                self.set_trait(name, value)

    # -- trait checks --------------------------------------------------------------

    @t.validate(*DEFAULTS)
    def _valid_knob(self, proposal):
        try:
            return check_params(**{proposal.trait.name: proposal.value})[proposal.trait.name]
        except (TypeError, ValueError) as err:
            raise t.TraitError(str(err)) from None

    @t.validate("device_id")
    def _valid_device_id(self, proposal):
        if len(proposal.value) > 512:
            raise t.TraitError("device_id is a browser device id (at most 512 characters)")
        return proposal.value

    def _page_rejected(self, name: str, code: str) -> None:
        self._live.count_rejected(code)
        self._publish_stats(force=True)

    # -- recognition events (from the worker and loader threads) -------------------

    def _on_event(self, event) -> None:
        with self.writing():
            if isinstance(event, Final):
                self._levels.segment(event.segment["start"], event.segment["end"])
                self._show_level_hint()
                self.send({"type": "segment", "segment": event.segment})
                self._show(segments=list(self._live.segments), text=self._live.text)
            elif isinstance(event, ModelState):
                self._show(
                    model_state=event.state,
                    model_info=event.info,
                    status=event.info.get("message", self.status),
                )
            elif isinstance(event, Partial):
                self._show(partial=event.text)
            elif isinstance(event, Lag):
                behind = event.seconds > 1.0
                if behind or self.status.startswith(_BEHIND):
                    self._show(
                        status=f"{_BEHIND} {event.seconds:.1f} s behind real time (catching up, nothing is dropped)"
                        if behind
                        else "Caught up with real time."
                    )
            elif isinstance(event, Backlog):
                self._show(
                    status=(
                        f"Waiting for the engine ({event.reason}): {event.segments} segment(s), "
                        f"{event.seconds:.1f} s of speech, kept; next try in {event.retry_in_s:.0f} s. "
                        "Recording goes on."
                        if event.segments
                        else "The engine is back: the waiting segments are transcribed."
                    )
                )
            elif isinstance(event, VadChanged):
                self._show(vad=event.name)
                self._levels.configure(vad=event.name)
            elif isinstance(event, Problem):
                self._show(error=event.as_dict(), status=event.message)

    def _on_recording(self, change) -> None:
        # The front end sends the final chunk before it clears `recording`, so this
        # only closes a take that ended without one (a reloaded page).
        if not change["new"]:
            self._end_take()

    def _end_take(self) -> None:
        self._live.end_take()
        with self.writing():
            self._takes.release()
            self._publish_stats(force=True)
            self._show(status=f"Stopped: {self._live.seconds():.1f} s recorded. Press Record to go on.")

    def _on_vad_param(self, change) -> None:
        # Observers run after the write, on the writer's thread: of two writes from two
        # threads, the later observer may run first. So the session gets the value the
        # trait holds now, never change["new"], and the last call leaves them equal.
        name = change["name"]
        own = own_threshold(self.vad) if name == "speech_threshold" and self.speech_threshold is None else None
        if own is not None:  # None is the backend's own: shown as the number it stands for
            self.speech_threshold = own  # (a None skips validation, so it is set here)
            return
        with self.writing():
            value = getattr(self, name)
            self._live.set_vad_params(**{name: value})
            self._levels.configure(**{name: value})
            self._show_level_hint()

    # -- messages from the front end ---------------------------------------

    def _on_message(self, _widget, content, buffers) -> None:
        # May run on a subshell thread: validate and hand on, never block, never raise.
        self._last_seen = time.monotonic()
        try:
            with self.writing():
                if self.error.get("code") == "frontend-missing":
                    self._show(error={})
            self._live.expire()  # a final chunk still waiting for its holes gives up in time
            self._dispatch(content if isinstance(content, dict) else {}, buffers)
        except WireError as err:
            self._show(status=f"Rejected a bad audio message ({err.code}): {err}")
            self._publish_stats(force=True)
        except Exception as err:  # junk that got past the checks: counted, never raised into the comm
            self._live.count_rejected("handler-error")
            self._show(status=f"Ignored a message that could not be handled ({type(err).__name__}).")
            self._publish_stats(force=True)

    def _dispatch(self, content: dict, buffers) -> None:
        kind = content.get("type")
        view = content.get("view") if isinstance(content.get("view"), str) else None
        if kind == "chunk":
            self._chunk(view, content, buffers)
        elif kind == "start":
            self._start(view, content)
        elif kind == "hello":
            self._hello(view)
        elif kind == "env":
            self._env = diagnose.clean_env(content)
        elif kind == "segment-audio":
            self._send_segment_audio(view, content.get("id"))
        elif kind == "segment-audio-received":
            with self.writing():
                self._in_flight.done(view)
        elif kind == "apply-hint":
            self.apply_hint()
        elif kind == "self-test":
            self._self_test_asked(view, content.get("seconds"))
        elif kind == "self-test-result":
            self._self_test_done(content, buffers)
        elif kind == "error":
            error = diagnose.capture_error(content.get("code", ""), self._env, content.get("message", ""))
            self._show(error=error, status=error["message"])
        else:
            self._rejected("unknown-type")

    def _rejected(self, code: str) -> None:
        self._live.count_rejected(code)
        self._publish_stats(force=True)

    def _chunk(self, view: str | None, content: dict, buffers) -> None:
        with self.writing():
            owns = self._takes.owns(view)
        if not owns:
            self._rejected("other-view")
            return
        self._live.receive(content, buffers)
        self._after_audio(final=content.get("final") is True)

    def _start(self, view: str | None, content: dict) -> None:
        with self.writing():
            if self._takes.busy_elsewhere(view, self.recording):
                self.send({"type": "refused", "view": view, **diagnose.capture_error("recording-elsewhere")})
                return
            self._end_take()
            self._takes.claim(view)
            label = content.get("device_label")
            label = label[:200] if isinstance(label, str) and label else "the default microphone"
            self._show(error={}, status=f"Recording from {label}")
            self.send({"type": "started", "view": view})

    def _hello(self, view: str | None) -> None:
        """A new view: give it the transcript; a take whose page is gone is ended."""
        with self.writing():
            if self._takes.abandoned(view, self.recording):
                self._end_take()
                self._show(recording=False)
            self.send({"type": "transcript", "view": view, "segments": list(self._live.segments)})

    def _after_audio(self, final: bool) -> None:
        level_db, silent = self._live.level()
        in_speech = self._live.in_speech()
        with self.writing():
            if silent and not self.error:
                self._show(error=diagnose.capture_error("silent-input", self._env))
            elif not silent and self.error.get("code") == "silent-input":
                self._show(error={})
            self._levels.chunk(level_db, in_speech)
            self._show_level_hint()
            self._publish_stats(force=final)

    def _show_level_hint(self) -> None:
        """The level watch's finding in `error` (levels.shown_error says when)."""
        with self.writing():
            error = shown_error(self.error, self._levels.hint())
            if error is not None:
                self._show(error=error, **({"status": error["message"]} if error else {}))

    def suggest_threshold(self) -> dict:
        """The knob value that would let the voice through (or stop a VAD that never closes),
        e.g. {"energy_threshold_db": -46.0}; {} when the levels show no such problem."""
        with self.writing():
            found = self._levels.hint()
        return dict(found["fix"]) if found else {}

    def apply_hint(self) -> dict:
        """Apply suggest_threshold() to the VAD knobs (from the next segment); returns what was set."""
        with self.writing():
            fix = self.suggest_threshold()
            for name, value in fix.items():
                setattr(self, name, value)
            if fix:
                self._show(
                    status="Set " + ", ".join(f"{k} = {v:g}" for k, v in fix.items()) + ": speak again to check."
                )
        return fix

    # -- front end that never answered ---------------------------------------

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):
            data["text/plain"] = diagnose.plain_text(self.status)
            shown = self._displayed_at = time.monotonic()
            timer = threading.Timer(diagnose.FRONTEND_WAIT_S, self._check_frontend, args=(shown,))
            timer.daemon = True
            timer.start()
        return bundle

    def _check_frontend(self, shown: float) -> None:
        with self.writing():
            seen = self._last_seen
            if (
                self._displayed_at != shown
                or (seen is not None and seen >= shown)
                or self._live is None
                or self.comm is None
            ):  # answered, displayed again since, or closed
                return
            message, hint = diagnose.FRONTEND_MISSING
            message = f"{message[:-1]} ({diagnose.FRONTEND_WAIT_S:.0f} s after the cell displayed it)."
            if not self.error:
                self._show(error={"code": "frontend-missing", "message": message, "hint": hint})
            self._show(status=message)

    # -- segment playback and the self-test ----------------------------------

    def segment_audio(self, segment_id) -> tuple[np.ndarray, float]:
        """(float32 samples at 16 kHz, start in seconds) of one segment, from the recording,
        at most playback.MAX_S; KeyError for an unknown id."""
        seg, samples = self._live.segment_audio(segment_id, playback.MAX_S)
        return samples, seg["start"]

    def _send_segment_audio(self, view: str | None, segment_id) -> None:
        if isinstance(segment_id, bool) or not isinstance(segment_id, int):
            self._rejected("bad-segment-id")
            return
        with self.writing():
            if not self._in_flight.begin(view):  # this page has not received the last answer yet
                self._rejected("segment-audio-busy")
                return
        try:  # read outside the lock: up to 1.9 MB from the recording's file
            seg, samples = self._live.segment_audio(segment_id, playback.MAX_S)
        except (KeyError, RuntimeError, ValueError) as err:  # unknown id, a closed recording
            with self.writing():
                self._in_flight.done(view)
                self.send(
                    {
                        "type": "segment-audio",
                        "view": view,
                        "id": segment_id,
                        "error": f"no audio for segment {segment_id} ({err})",
                    }
                )
            return
        header, buffers = playback.answer(seg, samples)
        with self.writing():
            self.send({**header, "view": view}, buffers=buffers)

    def self_test(self, seconds: float = 3.0) -> None:
        """The "does my microphone work at all" check: the front end records `seconds`, plays
        them back in the browser and sends them here; `self_test_result` then holds the peak and
        RMS level and a verdict ({code, ok, peak_db, rms_db, message, hint}), shown in the widget.
        Returns at once (the widget's Test button does the same)."""
        seconds = selftest.check_seconds(seconds)
        if self.recording:
            raise RuntimeError("the widget is recording: stop first, then run the self-test")
        self._begin_self_test(seconds, None)

    def _begin_self_test(self, seconds: float, view: str | None) -> None:
        with self.writing():
            self._show(self_test_result=self._self_test.start(seconds))
            self.send({"type": "self-test", "view": view, "seconds": seconds})

    def _self_test_asked(self, view: str | None, seconds) -> None:
        try:
            seconds = selftest.check_seconds(seconds)
        except ValueError:
            self._rejected("bad-self-test")
            return
        with self.writing():
            if self.recording:
                self._show(status="Recording: stop first, then run the self-test.")
            else:
                self._begin_self_test(seconds, view)

    def _self_test_done(self, content: dict, buffers) -> None:
        with self.writing():
            result = self._self_test.finish(content, buffers, self._env)
            if result is None:  # no self-test was asked for
                self._rejected("unsolicited-self-test")
            elif result["code"] == "failed":
                self._show(self_test_result=result)
            else:
                self._show(self_test_result=result, status=result["message"])

    def _publish_stats(self, force: bool = False) -> None:
        with self.writing():
            now = time.monotonic()
            if force or now - self._stats_sent >= _STATS_INTERVAL_S:
                self._stats_sent = now
                self._show(stats=self._live.stats())

    # -- Python API ----------------------------------------------------------

    @property
    def session(self) -> LiveSession:
        """The headless session this widget shows (live.py): its transcript, audio, stats."""
        return self._live

    @property
    def audio(self):
        """The session's audio so far: float32, 16 kHz, mono."""
        return self._live.samples()

    def feed(self, samples, sample_rate: int = SAMPLE_RATE, final: bool = False) -> None:
        """Push audio from Python through the same path as the microphone: an array needs its
        sample_rate (resampled to 16 kHz here), as in transcribe() and VadExplorer."""
        self._live.feed(samples, sample_rate, final)
        self._after_audio(final)

    def save_wav(self, path) -> pathlib.Path:
        """Write the session's audio as 16 kHz mono 16-bit WAV."""
        return write_wav(path, self.audio)

    def stop(self) -> None:
        """Ask the front end to stop recording (as the Stop button does)."""
        with self.writing():
            self.send({"type": "stop"})

    def load_model(self, model: str, device: str = "auto", **options) -> None:
        """Load another model (or retry after fixing one) without losing the session.
        The arguments are checked now; the load runs in the background."""
        keywords.check_names(
            options,
            "load_model()",
            (keywords.OPTION,),
            Transcriber.load_model,
            "Set VAD knobs as traits: w.end_silence_ms = 500.",
        )
        self._live.load(model, device, **options)
        self._options = options

    def retranscribe(self) -> list[dict]:
        """Transcribe the whole recording again with the loaded model, replacing `segments`
        (for audio recorded while the model could not load). If that fails it raises and
        the transcript stays as it was."""
        segments = self._live.retranscribe()
        with self.writing():
            self._live.replace_segments(segments)
            self._show(segments=list(segments), text=joined(segments))
            self.send({"type": "transcript", "view": None, "segments": segments})
        return segments

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything fed so far has been processed; False on timeout."""
        return self._live.wait(timeout)

    def on_segment(self, callback: Callable[[dict], None]) -> Callable[[], None]:
        """Call `callback(segment)` for every final segment from now on (on the recognition
        thread; an exception there is reported in `error` and harms nothing else). Returns a
        function that unsubscribes it."""
        return self._live.on_segment(callback)

    def to_dataframe(self, words: bool = False):
        """The segments as a pandas DataFrame (one row per segment, with duration); with
        ``words=True`` the words table: one row per timed word (segment id, text, start,
        end, duration; session seconds), empty when the model gives no word times."""
        pd = require("pandas", "notebooks", "to_dataframe()")

        segments = self.segments
        if words:
            rows = [{"segment": s["id"], **w} for s in segments for w in s.get("words") or ()]
            table = pd.DataFrame(rows, columns=["segment", "text", "start", "end"])
            table["duration"] = table["end"] - table["start"]
            return table
        columns = sorted({"id", "start", "end", "text"}.union(*segments) - {"words"})
        frame = pd.DataFrame(segments, columns=columns)
        frame["duration"] = frame["end"] - frame["start"]
        return frame.set_index("id")

    def diagnose(self) -> diagnose.Checklist:
        """What is known about the capture path; prints as a checklist."""
        with self.writing():
            level_hint = self._levels.hint()
        rows = diagnose.checklist(
            self._env,
            self._live.stats(),
            self.error,
            self.model_state,
            self.model_info,
            self._last_seen,
            displayed_at=self._displayed_at,
            level_hint=level_hint,
            self_test=self.self_test_result,
        )
        server = self._live.server_probe()  # a remote engine: checked now (bounded by its timeouts)
        if server is not None:
            at = next((i + 1 for i, row in enumerate(rows) if row.name == "model"), len(rows))
            rows.insert(at, diagnose.server_check(server))
        return rows

    def close(self) -> None:
        """Stop: the open segment is finished (its text still arrives in `segments`), then
        the worker stops. The saved session's files stay (funasr_widget.sessions())."""
        if self._live is not None:  # None when the constructor refused its arguments
            self._live.close()
        super().close()
