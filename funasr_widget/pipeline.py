"""The recognition worker: audio queue -> VAD -> ASR -> events.

One thread per widget owns the VAD and drives the ASR engine; the comm handler
only enqueues. Audio is cut into fixed 100 ms blocks before the VAD, so the
same audio gives the same segments whether it came in browser chunks, from
`feed()` in any piece size, or from a file. When audio has queued up (a file
transcribed offline, or a live stream catching up after a long decode), the
worker takes up to MAX_BATCH_S of it at once: the VAD gets all its whole blocks
in one call, which costs a fraction of one call per block and gives the same
events (a VAD's events do not depend on how its input is cut); the blocks are
then replayed one by one, each event applied at the block holding its time, so
segments, their audio and a streaming model's partials come as they would live.
Audio that is not live (``offline``, set by transcribe()) has its closed segments decoded
the way funasr's VAD path does: gathered, then shortest first in batches (the engine's
transcribe_batch), their finals still in id order and the same as live.

Nothing that fails here stops the worker: a VAD error is reported and the VAD restarted
(its clock re-anchored at the current position), a decode error gives that one segment an
empty text with the reason, and every item is counted as processed, so `wait()` returns.
An engine that is unavailable for now (a server down) keeps closed segments waiting, in
order and with their audio, retried with backoff while the VAD goes on cutting; past
MAX_BACKLOG_S of waiting audio the oldest is given up (its audio stays in the recording).
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ._constants import BLOCK, SAMPLE_RATE
from .asr.base import EngineUnavailable
from .events import Backlog, Emit, Final, Lag, Partial, Problem
from .vad.base import VadEvent

HISTORY_S = 5.0  # audio kept before a segment opens: VAD start events look back in time
MAX_BATCH_S = 10.0  # queued audio taken in one step when behind
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 30.0  # backoff for an unavailable engine: doubles up to the cap
MAX_BACKLOG_S = 600.0  # closed segments' audio kept waiting for an unavailable engine
OFFLINE_BATCH_S = 300.0  # audio not live: closed segments gather up to this much, then a batch


@dataclass
class _Segment:
    id: int
    start_ms: int
    end_ms: int | None = None
    samples: list[np.ndarray] = field(default_factory=list)
    stream: object = None  # a streaming engine's per-segment cache
    fed_blocks: int = 0  # how much of `samples` the streaming engine has seen
    fed_samples: int = 0
    text: str = ""  # streaming text so far

    @property
    def length(self) -> int | None:
        """Samples up to the end event (None while open): audio after it is not ours."""
        return None if self.end_ms is None else max((self.end_ms - self.start_ms) * SAMPLE_RATE // 1000, 0)

    def audio(self) -> np.ndarray:
        return np.concatenate(self.samples or [np.zeros(0, np.float32)])[: self.length]


class Pipeline:
    """Feed 16 kHz audio with `push`; events (events.py) arrive through `emit(event)`:
    Partial, Final, Lag and Problem. `make_vad` is called on the worker (a VAD model can
    take seconds to load), again after a VAD failure; `on_close` runs there last."""

    def __init__(
        self,
        make_vad: Callable[[], object],
        emit: Emit,
        *,
        partials: bool = True,
        partial_interval_s: float = 0.5,
        on_close: Callable[[], None] | None = None,
    ):
        self._make_vad = make_vad
        self.vad = None
        self._vad_origin = 0  # pipeline position (samples) of the VAD's ms 0
        self._emit_to = emit
        self._on_close = on_close
        self._closed = False
        self.partials = partials
        self.partial_interval_s = partial_interval_s
        self._engine = None
        self._engine_failed = False
        self._queue: queue.Queue = queue.Queue()
        self._next_item: tuple | None = None  # taken from the queue while batching, not yet run
        self._done = threading.Condition()
        self._pushed = 0
        self._processed = 0
        self._queued_samples = 0
        self._carry = np.zeros(0, np.float32)  # less than one block, waiting for more
        self._pos = 0  # samples through the VAD so far
        self._history: list[np.ndarray] = []  # recent blocks, newest last
        self._history_start = 0
        self._open: _Segment | None = None
        self._waiting: list[_Segment] = []  # closed, waiting for the engine
        self._at_end = False  # the last audio item was final: nothing more to batch with
        # Audio that is not live (transcribe() sets it): closed segments gather and are decoded
        # in batches, shortest first, as funasr's VAD path does; finals still in id order.
        self.offline = False
        self._retry_at: float | None = None  # when to try an unavailable engine again
        self._retry_s = 0.0
        self._next_id = 0
        self._last_partial = 0.0
        self._partial_pos = 0  # audio position (samples) of the last partial re-decode
        self._partial_cost = 0.0  # seconds the last partial re-decode took
        self._thread = threading.Thread(target=self._run, name="funasr-widget-pipeline", daemon=True)
        self._thread.start()
        _running.add(self)

    # -- called from any thread ------------------------------------------------

    def _put(self, kind: str, payload, final: bool = False) -> None:
        with self._done:
            if self._closed:
                raise RuntimeError("this recognizer is closed; make a new one")
            self._pushed += 1
            if kind == "audio":
                self._queued_samples += len(payload)
        self._queue.put((kind, payload, final))

    def push(self, samples: np.ndarray, final: bool = False) -> None:
        self._put("audio", samples, final)

    def set_engine(self, engine) -> None:
        """Hand over a loaded ASR engine (or None after a failed load)."""
        self._put("engine", engine)

    def set_vad_params(self, **params) -> None:
        self._put("params", params)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything pushed so far has been processed; False on timeout."""
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "wait() was called from a segment callback or observer, which runs "
                "on the recognition thread and would wait for itself: call it from "
                "the notebook instead"
            )
        with self._done:
            target = self._pushed
            return self._done.wait_for(lambda: self._processed >= target or not self._thread.is_alive(), timeout)

    @property
    def lag_seconds(self) -> float:
        return self._queued_samples / SAMPLE_RATE

    @property
    def in_speech(self) -> bool:
        """A segment is open now (read from any thread; levels.py watches it)."""
        return self._open is not None

    def close(self) -> None:
        """Finish what is queued (an open segment needs a final push first), then stop."""
        with self._done:
            if self._closed:
                return
            self._closed = True
            self._pushed += 1
        self._queue.put(("close", None, False))

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def emit(self, event) -> None:
        """Hand an event on; a failing listener must not stop the worker."""
        try:
            self._emit_to(event)
        except Exception as err:  # the listener reports its own failures; this is the last guard
            print(f"funasr-widget: an event listener failed: {err!r}")

    # -- the worker ------------------------------------------------------------

    def _take(self) -> tuple | None:
        """The next item; None when a retry of waiting segments is due first."""
        if self._next_item is not None:
            item, self._next_item = self._next_item, None
            return item
        timeout = None if self._retry_at is None else max(self._retry_at - time.monotonic(), 0.0)
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _take_audio_batch(self, samples: np.ndarray, final: bool) -> tuple[list[np.ndarray], bool]:
        """The audio item just taken, and the audio items queued right behind it, up to
        MAX_BATCH_S and up to a final one; the first other item waits in _next_item."""
        pieces, size = [samples], len(samples)
        while not final and size < MAX_BATCH_S * SAMPLE_RATE and self._next_item is None:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item[0] != "audio":
                self._next_item = item
                break
            pieces.append(item[1])
            size += len(item[1])
            final = item[2]
        return pieces, final

    def _run(self) -> None:
        self._start_vad()
        while True:
            item = self._take()
            if item is None:
                self._decode_closed()  # a retry is due; it reports its own failures
                continue
            kind, payload, final = item
            items, samples = 1, 0
            try:
                if kind == "close":
                    self._engine_failed = self._engine is None  # still loading: none will come
                    self._retry_at = None  # one last try, then what still waits is given up
                    self._decode_closed(last=True)
                    if self._on_close is not None:
                        self._on_close()
                    return
                if kind == "audio":
                    pieces, final = self._take_audio_batch(payload, final)
                    items, samples = len(pieces), sum(len(x) for x in pieces)
                    self._audio(pieces, final)
                    self._at_end = final  # the end of the audio: what waits for a batch goes now
                    if final:
                        self._decode_closed()
                elif kind == "params":
                    self.vad.set_params(**payload)
                else:
                    self._engine, self._engine_failed = payload, payload is None
                    self._decode_closed()
            except Exception as err:  # the last guard: the steps below report their own
                self.emit(
                    Problem(
                        "worker-failed",
                        f"Recognition failed: {type(err).__name__}: {err}",
                        "The audio is kept: fix the cause, then call retranscribe().",
                    )
                )
            finally:
                with self._done:
                    self._processed += items
                    self._queued_samples -= samples
                    self._done.notify_all()
                if kind == "audio":
                    self.emit(Lag(self.lag_seconds))
            if self._next_item is None and self._queue.empty():
                try:
                    self._maybe_partial()
                except EngineUnavailable:
                    pass  # a partial is optional: the finals' retries report the outage
                except Exception as err:
                    self.emit(Problem("decode-failed", f"Partial decoding failed: {type(err).__name__}: {err}"))

    def _start_vad(self) -> None:
        """(Re)create the VAD; its ms 0 is the current position."""
        self.vad = self._make_vad()
        self._vad_origin = self._pos

    def _vad_events(self, x: np.ndarray, final: bool) -> list:
        """The VAD's events for `x`, in pipeline ms. A VAD that raises is restarted (a segment
        open in it is closed here) and that stretch of audio has no events."""
        try:
            events = self.vad.accept(x, final=final)
        except Exception as err:
            self.emit(
                Problem(
                    "vad-failed",
                    f"The VAD failed ({type(err).__name__}: {err}); it was "
                    "restarted and this stretch of audio was not cut.",
                    "If this repeats, choose another VAD (vad='energy').",
                )
            )
            self._restart_vad = True
            return [VadEvent("end", (self._pos + len(x)) * 1000 // SAMPLE_RATE)] if self._open else []
        origin_ms = self._vad_origin * 1000 // SAMPLE_RATE
        return [VadEvent(e.kind, origin_ms + e.ms) for e in events]

    def _audio(self, pieces: list[np.ndarray], final: bool) -> None:
        """Whole 100 ms blocks go to the VAD in one call (all of them, when final)."""
        if len(self._carry):
            pieces = [self._carry, *pieces]
        x = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        whole = len(x) if final else len(x) // BLOCK * BLOCK
        self._carry = x[whole:]
        if whole or final:
            self._blocks(x[:whole], final)

    def _blocks(self, x: np.ndarray, final: bool) -> None:
        self._restart_vad = False
        events = self._vad_events(x, final)
        pending = 0
        for i in range(0, max(len(x), 1), BLOCK):
            self._block(x[i : i + BLOCK])
            last = i + BLOCK >= len(x)
            while pending < len(events) and (last or events[pending].ms * SAMPLE_RATE // 1000 <= self._pos):
                event = events[pending]
                pending += 1
                if event.kind == "start" and self._open is None:
                    self._open_segment(event.ms)
                elif event.kind == "end" and self._open is not None:
                    self._close_segment(event.ms)
            # Without partials, a 2-pass engine has no first pass, and audio that is not live
            # goes to a streaming engine whole at the segment's end: one call, which funasr
            # steps through in the same 600 ms strides (the same text), for less overhead.
            if (
                self._open is not None
                and self._engine is not None
                and self._engine.streaming
                and (self.partials or not (self._engine.two_pass or self.offline))
            ):
                self._stream_step()
        if self._restart_vad:
            self._start_vad()

    def _block(self, block: np.ndarray) -> None:
        self._history.append(block)
        self._pos += len(block)
        if self._open is not None:
            self._open.samples.append(block)
        keep_from = self._pos - int(HISTORY_S * SAMPLE_RATE)
        while self._history and self._history_start + len(self._history[0]) < keep_from:
            self._history_start += len(self._history.pop(0))

    def _slice(self, start_ms: int, end_ms: int | None = None) -> np.ndarray:
        """Audio between two session times, from the recent history."""
        audio = np.concatenate(self._history) if self._history else np.zeros(0, np.float32)
        a = max(start_ms * SAMPLE_RATE // 1000 - self._history_start, 0)
        b = None if end_ms is None else max(end_ms * SAMPLE_RATE // 1000 - self._history_start, a)
        return audio[a:b]

    def _open_segment(self, start_ms: int) -> None:
        self._open = _Segment(self._next_id, start_ms, samples=[self._slice(start_ms)])
        self._next_id += 1
        self._last_partial = 0.0
        self._partial_pos = 0

    def _close_segment(self, end_ms: int) -> None:
        seg, self._open = self._open, None
        seg.end_ms = end_ms
        self._waiting.append(seg)
        self.emit(Partial(""))
        self._decode_closed()

    def _decode_closed(self, last: bool = False) -> None:
        if self._engine is None and not self._engine_failed:
            return  # still loading: keep the segments, decode them once it is ready
        if self._retry_at is not None and time.monotonic() < self._retry_at:
            self._trim_backlog()
            return  # the engine is unavailable: the segments wait, in order, for the retry
        if self._batching():
            if not (last or self._at_end) and self._backlog_s() < OFFLINE_BATCH_S:
                return  # offline: closed segments gather, then go in batches
            self._decode_batch()  # what it could not decode, the loop below does one by one
        while self._waiting:
            seg = self._waiting[0]
            try:
                result = self._decode(seg) if self._engine is not None else {"text": ""}
            except EngineUnavailable as err:
                if last:
                    self._give_up(self._waiting.pop(0), f"not transcribed: {err}")
                    continue
                self._retry_s = min(max(2 * self._retry_s, RETRY_FIRST_S), RETRY_MAX_S)
                self._retry_at = time.monotonic() + self._retry_s
                self._trim_backlog()
                self.emit(Backlog(len(self._waiting), self._backlog_s(), str(err), self._retry_s))
                return
            except Exception as err:  # this segment only: the next one is cut and decoded as usual
                reason = f"{type(err).__name__}: {err}"
                result = {"text": "", "error": reason}
                self.emit(
                    Problem(
                        "decode-failed",
                        f"Segment {seg.id} could not be decoded ({reason}).",
                        "Its audio is kept: retranscribe() tries again.",
                    )
                )
            self._waiting.pop(0)
            self.emit(
                Final(
                    {
                        "id": seg.id,
                        "start": seg.start_ms / 1000,
                        "end": seg.end_ms / 1000,
                        **in_session(result, seg.start_ms),
                    }
                )
            )
        if self._retry_at is not None:  # the engine is back and the backlog is sent
            self._retry_at, self._retry_s = None, 0.0
            self.emit(Backlog(0, 0.0))

    def _batching(self) -> bool:
        """Audio that is not live (``offline``: transcribe()) with an engine that can decode
        several segments at once: decode them as funasr's VAD path does (asr/segment.py)."""
        return (
            self.offline
            and self._engine is not None
            and self._retry_at is None
            and hasattr(self._engine, "transcribe_batch")
        )  # a 2-pass one: its second pass

    def _decode_batch(self) -> None:
        """The waiting segments in one transcribe_batch call; their finals in id order (a
        segment that failed gets its error). If the call itself fails, they stay waiting, for
        the one-by-one decode."""
        if len(self._waiting) < 2:
            return
        try:
            results = self._engine.transcribe_batch([seg.audio() for seg in self._waiting])
        except Exception:
            return
        for seg, result in zip(list(self._waiting), results, strict=False):
            if isinstance(result, Exception):  # that segment only, as one by one
                reason = f"{type(result).__name__}: {result}"
                self.emit(
                    Problem(
                        "decode-failed",
                        f"Segment {seg.id} could not be decoded ({reason}).",
                        "Its audio is kept: retranscribe() tries again.",
                    )
                )
                result = {"text": "", "error": reason}
            self._waiting.pop(0)
            self.emit(
                Final(
                    {
                        "id": seg.id,
                        "start": seg.start_ms / 1000,
                        "end": seg.end_ms / 1000,
                        **in_session(result, seg.start_ms),
                    }
                )
            )

    def _backlog_s(self) -> float:
        return sum(seg.length or 0 for seg in self._waiting) / SAMPLE_RATE

    def _trim_backlog(self) -> None:
        """Waiting audio is bounded: past MAX_BACKLOG_S the oldest segment is given up."""
        while len(self._waiting) > 1 and self._backlog_s() > MAX_BACKLOG_S:
            self._give_up(
                self._waiting.pop(0),
                f"not transcribed: more than {MAX_BACKLOG_S:.0f} s of speech waited for the engine",
            )

    def _give_up(self, seg: _Segment, reason: str) -> None:
        self.emit(
            Problem(
                "decode-failed",
                f"Segment {seg.id} was {reason}.",
                "Its audio is in the recording: retranscribe() once the engine is back.",
            )
        )
        self.emit(
            Final({"id": seg.id, "start": seg.start_ms / 1000, "end": seg.end_ms / 1000, "text": "", "error": reason})
        )

    def _decode(self, seg: _Segment) -> dict:
        if not self._engine.streaming or self._engine.two_pass:
            return self._engine.transcribe(seg.audio())  # 2-pass: the streamed text was the partial
        return {"text": seg.text + self._stream_feed(seg, final=True)}

    def _stream_step(self) -> None:
        try:
            new = self._stream_feed(self._open, final=False)
        except Exception as err:  # the final decode of the segment tries again with what is left
            self.emit(Problem("decode-failed", f"Streaming decode failed: {type(err).__name__}: {err}"))
            return
        if new:
            self._open.text += new
            self.emit(Partial(self._open.text))

    def _stream_feed(self, seg: _Segment, final: bool) -> str:
        """Give a streaming engine the segment's audio it has not seen yet."""
        if seg.stream is None:
            seg.stream = self._engine.new_stream()
        fresh = np.concatenate(seg.samples[seg.fed_blocks :] or [np.zeros(0, np.float32)])
        if seg.length is not None:
            fresh = fresh[: max(seg.length - seg.fed_samples, 0)]
        seg.fed_blocks = len(seg.samples)
        seg.fed_samples += len(fresh)
        return self._engine.accept(seg.stream, fresh, final=final)

    def _maybe_partial(self) -> None:
        """Re-decode the open segment, at a bounded rate and only when caught up; not
        while the speaker pauses: a re-decode then would show the words already shown,
        and one still running when the segment closes holds up its final text."""
        seg = self._open
        if not self.partials or seg is None or self._engine is None or self._engine.streaming or self._waiting:
            return  # finals waiting go first
        if not self._engine.partials:
            return  # an engine that declines partials (a remote one, unless asked)
        now = time.monotonic()
        if now - self._last_partial < self.partial_interval_s:
            return
        silence_ms = getattr(self.vad, "trailing_silence_ms", 0)
        if silence_ms and self._partial_pos:
            since_ms = (self._pos - self._partial_pos) * 1000 // SAMPLE_RATE
            end_silence_ms = getattr(self.vad, "params", {}).get("end_silence_ms", 0)
            if silence_ms >= since_ms or silence_ms + self._partial_cost * 1000 >= end_silence_ms:
                return  # nothing but silence since the last one, or it would outlast the segment
        self._last_partial = now
        self._partial_pos = self._pos
        text = self._engine.transcribe_partial(seg.audio())["text"]
        self._partial_cost = time.monotonic() - now
        self.emit(Partial(text))


def in_session(result: dict, start_ms: int) -> dict:
    """A segment's result with its word times (seconds from the segment's start) moved to
    session seconds, as the segment's own start and end are."""
    if not result.get("words"):
        return result
    offset = start_ms / 1000
    return {
        **result,
        "words": [
            {**w, "start": round(w["start"] + offset, 3), "end": round(w["end"] + offset, 3)} for w in result["words"]
        ],
    }


# A worker still inside torch when the interpreter exits can abort the process ("terminate
# called..."): at exit, each running pipeline is closed and given a moment to finish.
_running: weakref.WeakSet = weakref.WeakSet()
EXIT_WAIT_S = 5.0


@atexit.register
def _stop_all() -> None:
    deadline = time.monotonic() + EXIT_WAIT_S
    pipelines = list(_running)
    for pipeline in pipelines:
        pipeline.close()
    for pipeline in pipelines:
        pipeline.join(max(deadline - time.monotonic(), 0.0))
