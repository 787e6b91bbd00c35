"""A recognition session with no widget: audio in (browser chunks or Python arrays), the
recognizer behind it, and the transcript it produces.

The Transcriber widget is a view of one of these (traits mirror its state);
`transcribe()` runs one over a file or an array; `retranscribe()` runs a fresh one over
a session's recording. Listeners (the widget, `on_segment` callbacks) are called on the
recognition threads; one that raises is reported as a Problem and harms nothing else.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from . import journal, keywords
from .asr import ModelLoadError
from .audio import SAMPLE_RATE, source_audio
from .errors import RecognitionError
from .events import Event, Final, ModelState, Partial, Problem, VadChanged, joined
from .journal import Journal, SavedSession
from .recognizer import Recognizer
from .session import AudioSession

Listener = Callable[[Event], None]


class LiveSession:
    def __init__(
        self,
        model: str | None = "auto",
        vad: str = "fsmn-vad",
        device: str = "auto",
        *,
        max_seconds: float = 3600.0,
        partials: bool = True,
        speculative_final: bool = True,
        vad_params: dict | None = None,
        listener: Listener | None = None,
        autosave: bool = True,
        resume: SavedSession | None = None,
        **options,
    ):
        """`listener` gets every event, from the first (subscribed before any thread starts).
        `autosave`: journal each final segment and keep the recording on disk (journal.py);
        `resume`: a saved session (funasr_widget.sessions()) to go on with: its segments come
        first, new audio is appended to its recording and new segment ids follow its own.
        `speculative_final`: decode a segment during its end silence, as the VAD will close it,
        so its final comes as the VAD closes it (decoding.py); False decodes after the close."""
        if not isinstance(speculative_final, bool):
            raise TypeError(f"speculative_final must be True or False, got {speculative_final!r}")
        self.check(model, vad, device, max_seconds, vad_params or {}, options, autosave=autosave, resume=resume)
        if resume is not None:
            self._journal: Journal | None = Journal.reopen(resume, max_seconds)
        else:
            self._journal = Journal.create(max_seconds) if autosave else None
        self.segments: list[dict] = list(resume.segments) if resume is not None else []
        self.partial = ""
        self.model_state = "none"
        self.model_info: dict[str, Any] = {}
        self.problems: collections.deque[Problem] = collections.deque(maxlen=100)
        self._lock = threading.RLock()
        self._listener = listener
        self._callbacks: list[list[Callable[[dict], None]]] = []  # [callback], one per subscription
        self._closed = False
        self.recognizer = Recognizer(
            model,
            vad,
            device,
            vad_params or {},
            self._on_event,
            partials=partials,
            speculative=speculative_final,
            on_close=self._release,
            **options,
        )
        self.vad_name = self.recognizer.vad_name
        self.audio = AudioSession(
            max_seconds, sink=self.recognizer.push, path=None if self._journal is None else self._journal.audio_path
        )
        # A resumed session's new segments follow its own: ids after its last, times after its audio.
        self._first_id = max((s["id"] for s in self.segments), default=-1) + 1
        self._start_s = self.audio.recording.seconds
        self._next_id = self._first_id  # ids are never given twice (retranscribe() included)

    @staticmethod
    def check(model, vad, device, max_seconds, vad_params: dict, options: dict, *, autosave=True, resume=None) -> None:
        """Every argument checked, as the constructor does, without starting anything."""
        if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or not max_seconds > 0:
            raise ValueError(f"max_seconds must be a positive number of seconds, got {max_seconds!r}")
        journal.check(autosave, resume)
        keywords.check_names(
            options, "LiveSession()", (keywords.OPTION,), LiveSession.__init__, "VAD knobs go in vad_params={...}."
        )
        Recognizer.check(model, vad, device, vad_params, options)

    # -- listeners -------------------------------------------------------------------

    def on_segment(self, callback: Callable[[dict], None]) -> Callable[[], None]:
        """Call `callback(segment)` for every final segment from now on; returns a function
        that unsubscribes it (calling that again does nothing)."""
        if not callable(callback):
            raise TypeError(f"on_segment needs a function taking a segment dict, got {callback!r}")
        token = [callback]  # one subscription, even when the same function is subscribed twice
        with self._lock:
            self._callbacks.append(token)

        def unsubscribe() -> None:
            with self._lock:
                if any(entry is token for entry in self._callbacks):
                    self._callbacks = [entry for entry in self._callbacks if entry is not token]

        return unsubscribe

    def _on_event(self, event: Event) -> None:
        failed = None
        with self._lock:
            if isinstance(event, Final):
                if self._first_id or self._start_s:
                    event = Final(continued(event.segment, self._first_id, self._start_s))
                self._next_id = max(self._next_id, event.segment["id"] + 1)
            callbacks = list(self._callbacks)
            if isinstance(event, ModelState):
                self.model_state, self.model_info = event.state, dict(event.info)
            elif isinstance(event, Partial):
                self.partial = event.text
            elif isinstance(event, Final):
                failed = self._save({"segment": event.segment})  # durable before it is seen
                self.segments.append(event.segment)
            elif isinstance(event, VadChanged):
                self.vad_name = event.name
            elif isinstance(event, Problem):
                self.problems.append(event)
        if self._listener is not None:
            self._call(self._listener, event, "an observer of the widget's traits")
        if isinstance(event, Final):
            for (callback,) in callbacks:
                self._call(callback, dict(event.segment), f"the on_segment callback {_name(callback)}")
        if failed is not None:
            self._on_event(failed)

    def _save(self, entry: dict) -> Problem | None:
        """Journal one entry, the audio so far made durable first (called with the lock held,
        on the recognition thread). The first failure stops autosave and is returned."""
        if self._journal is None:
            return None
        try:
            self.audio.recording.sync()
            self._journal.add(entry)
        except (OSError, TypeError, ValueError) as err:
            self._journal = None
            return Problem(
                "autosave-failed",
                f"Autosave stopped: {type(err).__name__}: {err}.",
                "The transcript and audio are still here: keep them with save_wav() and "
                "to_dataframe(). Free disk space (or fix the sessions folder) for the next session.",
            )
        return None

    def _call(self, fn, arg, what: str) -> None:
        try:
            fn(arg)
        except Exception as err:
            segment = f" on segment {arg.get('id')}" if isinstance(arg, dict) else ""
            problem = Problem(
                "callback-failed",
                f"{what} raised {type(err).__name__}: {err}{segment}.",
                "Recognition goes on and the transcript is complete; fix the callback or "
                "observer (it runs on the recognition thread).",
            )
            if isinstance(arg, Problem) and arg.code == "callback-failed":
                return  # a listener failing on the report of a failure: stop here
            self._on_event(problem)

    # -- audio in ----------------------------------------------------------------------

    def feed(self, samples, sample_rate: int = SAMPLE_RATE, final: bool = False) -> None:
        """Audio from Python, through the same path as the microphone's chunks. Waits while the
        recognition worker is far behind (its queue is bounded: pipeline.MAX_QUEUE_S)."""
        self._check_open()
        self.recognizer.room()
        self.audio.feed(samples, sample_rate, final)

    def set_vad_params(self, **params) -> None:
        self.recognizer.set_vad_params(**params)

    def load(self, model: str, device: str = "auto", **options) -> None:
        self.recognizer.load(model, device, **options)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything fed so far is processed (the model loaded or failed) and every
        closed segment has its final: decoded, or given up (see `given_up`) once the engine has
        been unavailable for decoding.GIVE_UP_AFTER_S (300 s), so wait() always ends. True when
        all that is done; False on timeout (segments may still be waiting for the engine)."""
        return self.recognizer.wait(timeout)

    @property
    def given_up(self) -> list[int]:
        """Ids of the segments given up, not transcribed (an engine unavailable too long, or too
        much speech waiting for it): their finals have empty text and an "error"; their audio
        is in the recording, for retranscribe()."""
        return [self._first_id + i for i in self.recognizer.status()["given_up"]]

    def server_probe(self) -> dict | None:
        """For diagnose(): the remote server asked for (reachable, authenticated, model, round
        trip), checked now; None when the model runs in this kernel. Never holds the token."""
        requested = self.recognizer.requested
        if requested is None or not requested[2].get("server"):
            return None
        from .asr import remote

        model, _device, options = requested
        return remote.probe(
            options["server"],
            remote.DEFAULT_MODEL if model == "auto" else str(model),
            api_key=options.get("api_key"),
            ca_bundle=options.get("ca_bundle"),
        )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this session is closed: create a new Transcriber")

    # -- what a view of the session asks: one method per need, nobody reaches through ----

    def receive(self, content: dict, buffers) -> int:
        """A chunk message from the page (session.py checks, reorders and keeps it); raises
        WireError for one that cannot be used. Returns how many chunks were released."""
        return self.audio.receive(content, buffers)

    def expire(self) -> int:
        """Release a final chunk that waited too long for the ones before it."""
        return self.audio.expire()

    def end_take(self) -> None:
        self.audio.end_take()

    def count_rejected(self, code: str) -> None:
        """Count a message from the page that was refused (shown in stats()["rejected_by"])."""
        self.audio.count_rejected(code)

    def stats(self) -> dict:
        """The audio's counts (session.py) and the recognition worker's (pipeline.py): decodes,
        speculative finals used and dropped, segments pending and given up, audio behind."""
        status = self.recognizer.status()
        return {**self.audio.stats(), **status, "given_up": [self._first_id + i for i in status["given_up"]]}

    def latencies_ms(self) -> np.ndarray:
        return self.audio.latencies_ms()

    def level(self) -> tuple[float | None, bool]:
        """(the last chunk's level in dBFS, whether the input has been digital silence for a while)."""
        return self.audio.last_level_db, self.audio.silent

    def seconds(self) -> float:
        """Seconds of audio recorded so far."""
        return self.audio.recording.seconds

    def samples(self) -> np.ndarray:
        """The recording so far: float32, 16 kHz, mono."""
        return self.audio.recording.samples

    def lag_seconds(self) -> float:
        """Audio queued ahead of the recognition worker."""
        return self.recognizer.pipeline.lag_seconds

    def in_speech(self) -> bool | None:
        """Is a segment open now? None while that cannot be told: no VAD running yet, or the
        VAD more than half a second behind the audio."""
        pipeline = self.recognizer.pipeline
        if pipeline.vad is None or pipeline.lag_seconds >= 0.5:
            return None
        return pipeline.in_speech

    def segment_audio(self, segment_id: int, max_seconds: float) -> tuple[dict, np.ndarray]:
        """(the segment, its samples from the recording: float32, 16 kHz, at most
        `max_seconds`); KeyError for an unknown id, RuntimeError once the recording is released."""
        with self._lock:
            seg = next((s for s in self.segments if s.get("id") == segment_id), None)
        if seg is None:
            raise KeyError(segment_id)
        a = max(int(round(seg["start"] * SAMPLE_RATE)), 0)
        b = max(int(round(seg["end"] * SAMPLE_RATE)), a)
        return seg, self.audio.recording.read(a, min(b, a + int(max_seconds * SAMPLE_RATE)))

    def vad_params(self) -> dict:
        """The VAD knobs in effect (from the next segment on, for ones changed mid-segment)."""
        return self.recognizer.vad_params

    def parts(self) -> dict:
        """The objects doing the work now, for diagnostics, tests and benchmarks: {"vad": the VAD
        (None before the worker starts it), "engine": the ASR engine (None while none is loaded)}."""
        pipeline = self.recognizer.pipeline
        return {"vad": pipeline.vad, "engine": pipeline.engine}

    def set_partials(self, enabled: bool) -> None:
        """Whether the open segment's text is decoded as it grows (Partial events)."""
        self.recognizer.pipeline.partials = bool(enabled)

    # -- results -----------------------------------------------------------------------

    @property
    def text(self) -> str:
        with self._lock:
            return joined(self.segments)

    def replace_segments(self, segments: list[dict]) -> None:
        with self._lock:
            failed = self._save({"transcript": list(segments)})
            self.segments = list(segments)
        if failed is not None:
            self._on_event(failed)

    def retranscribe(self) -> list[dict]:
        """The whole recording transcribed again with the model now loaded; raises (and keeps
        the current transcript) if that fails or no model is ready."""
        self.wait()
        if self.model_state != "ready" or self.recognizer.model_spec is None:
            raise ModelLoadError(
                f"No model is ready (model state: {self.model_state}).",
                "Load one with load_model(name), wait() for it, then retranscribe().",
            )
        name, device, options = self.recognizer.model_spec
        segments = transcribe(
            self.audio.recording.samples,
            SAMPLE_RATE,
            model=name,
            vad=self.vad_name,
            device=device,
            **self.recognizer.vad_params,
            **options,
        )
        # New ids, after every id given so far; the live pipeline's later ones come after these.
        with self._lock:
            first, self._next_id = self._next_id, self._next_id + len(segments)
            self._first_id += len(segments)
        return [{**segment, "id": first + i} for i, segment in enumerate(segments)]

    def raise_if_failed(self) -> None:
        """For offline use: a model that did not load, or any background failure, raises."""
        if self.model_state == "error":
            raise ModelLoadError(
                self.model_info.get("message", "The model failed to load."),
                self.model_info.get("hint", ""),
                code=self.model_info.get("code", "model-failed"),
            )
        if self.problems:
            first = self.problems[0]
            more = f" (and {len(self.problems) - 1} more problems)" if len(self.problems) > 1 else ""
            raise RecognitionError(first.message + more, first.hint)

    # -- the end -------------------------------------------------------------------------

    def close(self) -> None:
        """Finish the open segment (its final text still arrives), then stop the worker and
        close the recording's file. Returns at once. A saved session's files stay, marked
        complete (funasr_widget.sessions()); with autosave=False the recording is deleted."""
        if self._closed:
            return
        self.audio.end_take()
        self._closed = True
        self.recognizer.close()

    def _release(self) -> None:
        self.audio.recording.close()
        if self._journal is not None:
            try:
                self._journal.close()
            except OSError as err:
                self._on_event(Problem("autosave-failed", f"The saved session could not be marked complete: {err}."))


def continued(segment: dict, first_id: int, start_s: float) -> dict:
    """A resumed session's segment: its id after the saved ones, its times after their audio."""
    shift = lambda t: round(t + start_s, 3)  # noqa: E731
    moved = {**segment, "id": segment["id"] + first_id, "start": shift(segment["start"]), "end": shift(segment["end"])}
    if segment.get("words"):
        moved["words"] = [{**w, "start": shift(w["start"]), "end": shift(w["end"])} for w in segment["words"]]
    return moved


def _name(fn) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def transcribe(
    source,
    sample_rate: int | None = None,
    model: str | None = "auto",
    vad: str = "fsmn-vad",
    device: str = "auto",
    *,
    autosave: bool = False,
    **options,
) -> list[dict]:
    """Transcribe a file or an array offline; gives the segments live streaming gives.

    The audio goes through the same pipeline as the microphone, which cuts it into the
    same 100 ms blocks, so the VAD cuts it the same way. `options`: VAD parameters
    (end_silence_ms, speech_threshold, max_segment_s, energy_threshold_db) and model
    options (language, use_itn, hotword, punctuation, trust_remote_code), or a server's
    (server, api_key, ca_bundle: asr/remote.py). `autosave=True` keeps the segments and
    audio as a saved session (funasr_widget.sessions()), as a widget does. Raises
    ModelLoadError if the model cannot load and RecognitionError if any part failed:
    never a truncated list."""
    vad_params, model_options = keywords.split(options, "transcribe()", own=transcribe)
    samples, rate = source_audio(source, sample_rate, "transcribe()")
    session = LiveSession(
        model,
        vad,
        device,
        max_seconds=len(samples) / rate + 1.0,
        partials=False,
        vad_params=vad_params,
        autosave=autosave,
        **model_options,
    )
    session.recognizer.pipeline.offline = True  # decoded as funasr's batch path does (pipeline.py)
    try:
        session.feed(samples, int(rate), final=True)
        session.wait()
    finally:
        session.close()
        session.wait()  # until the worker has closed the files: a saved session is complete
    session.raise_if_failed()
    return list(session.segments)


__all__ = ["LiveSession", "RecognitionError", "joined", "transcribe"]
