"""The recognition worker: one thread per session that takes audio from a bounded queue,
cuts it into segments (segmenter.py) and decodes them (decoding.py).

The comm handler and `feed()` only enqueue. When audio has queued up (a file transcribed
offline, or a live stream catching up after a long decode), the worker takes up to
MAX_BATCH_S of it at once (the segmenter gives the VAD all its whole blocks in one call).

The queue is bounded: past MAX_QUEUE_S of audio queued, live audio is not held but counted
(``behind_seconds``) and stands in as silence of its length, so the session's clock and
the segments' times stay right while memory stays flat; `room()` lets Python's `feed()`
wait for space instead (offline input loses nothing).

Nothing that fails here stops the worker: every step reports its own failures as events
(events.py), and every item is counted as processed. `wait()` returns once everything
pushed so far is processed and every segment closed by then has its final (decoded, or
given up: decoding.py bounds how long an unavailable engine is waited for).
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
import weakref
from collections.abc import Callable

import numpy as np

from ._constants import BLOCK, SAMPLE_RATE
from .asr.base import Decoder
from .decoding import DecodeQueue
from .events import Emit, Final, Lag, Problem
from .segmenter import Segmenter
from .vad.base import Vad

MAX_BATCH_S = 10.0  # queued audio taken in one step when behind
MAX_QUEUE_S = 120.0  # audio queued ahead of the worker, at most (7.7 MB of float32)


class Pipeline:
    """Feed 16 kHz audio with `push`; events (events.py) arrive through `emit(event)`:
    Partial, Final, Lag, Backlog and Problem. `make_vad` is called on the worker (a VAD
    model can take seconds to load), again after a VAD failure; `on_close` runs there last."""

    def __init__(
        self,
        make_vad: Callable[[], Vad],
        emit: Emit,
        *,
        partials: bool = True,
        partial_interval_s: float = 0.5,
        speculative: bool = True,
        on_close: Callable[[], None] | None = None,
    ):
        self._emit_to = emit
        self._on_close = on_close
        self._closed = False
        self.cutter = Segmenter(make_vad, self.emit, closed=self._segment_closed, stepped=self._segment_stepped)
        self.decoder = DecodeQueue(
            self.emit, partials=partials, partial_interval_s=partial_interval_s, speculative=speculative
        )
        self._queue: queue.Queue = queue.Queue()
        self._next_item: tuple | None = None  # taken from the queue while batching, not yet run
        self._done = threading.Condition()
        self._pushed = 0
        self._processed = 0
        self._queued_samples = 0
        self._behind_samples = 0  # live audio not queued (the queue was full), replaced by silence
        self._segments_closed = 0
        self._segments_final = 0
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
                if self._queued_samples + len(payload) > MAX_QUEUE_S * SAMPLE_RATE and len(payload):
                    kind, payload = "silence", len(payload)  # see the module's docstring
                    self._behind_samples += payload
                else:
                    self._queued_samples += len(payload)
        self._queue.put((kind, payload, final))

    def push(self, samples: np.ndarray, final: bool = False) -> None:
        self._put("audio", samples, final)

    def room(self, timeout: float | None = None) -> bool:
        """Wait until the queue has room (less than MAX_QUEUE_S queued); False on timeout.
        Returns at once on the worker's own thread (a callback feeding audio)."""
        if threading.current_thread() is self._thread:
            return True
        with self._done:
            return self._done.wait_for(
                lambda: (
                    self._queued_samples < MAX_QUEUE_S * SAMPLE_RATE / 2 or self._closed or not self._thread.is_alive()
                ),
                timeout,
            )

    def set_engine(self, engine: Decoder | None) -> None:
        """Hand over a loaded ASR engine (or None after a failed load); the one it replaces is closed."""
        self._put("engine", engine)

    def set_vad_params(self, **params) -> None:
        self._put("params", params)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything pushed so far is processed and each segment closed by then
        has its final (decoded or given up); False on timeout."""
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "wait() was called from a segment callback or observer, which runs "
                "on the recognition thread and would wait for itself: call it from "
                "the notebook instead"
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._done:
            target = self._pushed
            if not self._done.wait_for(lambda: self._processed >= target or not self._thread.is_alive(), timeout):
                return False
            closed = self._segments_closed
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            return self._done.wait_for(lambda: self._segments_final >= closed or not self._thread.is_alive(), left)

    def status(self) -> dict:
        """What the worker has done: decodes, speculative finals, segments given up (ids),
        segments still waiting for their final, audio behind."""
        with self._done:
            pending = self._segments_closed - self._segments_final
            behind = self._behind_samples / SAMPLE_RATE
        return {**self.decoder.stats.as_dict(), "pending": pending, "behind_seconds": round(behind, 2)}

    @property
    def lag_seconds(self) -> float:
        return self._queued_samples / SAMPLE_RATE

    @property
    def in_speech(self) -> bool:
        """A segment is open now (read from any thread; levels.py watches it)."""
        return self.cutter.open is not None

    @property
    def vad(self) -> Vad | None:
        return self.cutter.vad

    @property
    def engine(self) -> Decoder | None:
        return self.decoder.engine

    @property
    def partials(self) -> bool:
        return self.decoder.partials

    @partials.setter
    def partials(self, on: bool) -> None:
        self.decoder.partials = bool(on)

    @property
    def offline(self) -> bool:
        return self.decoder.offline

    @offline.setter
    def offline(self, on: bool) -> None:
        """Audio that is not live (transcribe()): closed segments decoded in batches."""
        self.decoder.offline = bool(on)

    def close(self) -> None:
        """Finish what is queued (an open segment needs a final push first), then stop."""
        with self._done:
            if self._closed:
                return
            self._closed = True
            self._pushed += 1
            self._done.notify_all()
        self._queue.put(("close", None, False))

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def emit(self, event) -> None:
        """Hand an event on; a failing listener must not stop the worker."""
        if isinstance(event, Final):
            with self._done:
                self._segments_final += 1
                self._done.notify_all()
        try:
            self._emit_to(event)
        except Exception as err:  # the listener reports its own failures; this is the last guard
            print(f"funasr-widget: an event listener failed: {err!r}")

    # -- the worker ------------------------------------------------------------

    def _segment_closed(self, segment) -> None:
        with self._done:
            self._segments_closed += 1
        self.decoder.closed(segment)

    def _segment_stepped(self, segment) -> None:
        self.decoder.stepped(segment)

    def _take(self) -> tuple | None:
        """The next item; None when a retry of waiting segments is due first."""
        if self._next_item is not None:
            item, self._next_item = self._next_item, None
            return item
        retry_at = self.decoder.retry_at
        timeout = None if retry_at is None else max(retry_at - time.monotonic(), 0.0)
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
        self.cutter.start()
        while True:
            item = self._take()
            if item is None:
                self.decoder.decode_closed()  # a retry is due; it reports its own failures
                continue
            kind, payload, final = item
            items, samples = 1, 0
            try:
                if kind == "close":
                    self.decoder.finish()
                    if self._on_close is not None:
                        self._on_close()
                    return
                if kind == "audio":
                    pieces, final = self._take_audio_batch(payload, final)
                    items, samples = len(pieces), sum(len(x) for x in pieces)
                    self._audio(pieces, final)
                elif kind == "silence":  # live audio that found the queue full: its length only
                    for start in range(0, payload, BLOCK):
                        self.cutter.cut([np.zeros(min(BLOCK, payload - start), np.float32)], False)
                    self._audio([np.zeros(0, np.float32)], final)
                elif kind == "params":
                    self.cutter.set_params(**payload)
                else:
                    self.decoder.set_engine(payload)
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
                    self._queued_samples -= samples
                    self._done.notify_all()  # room() waits on this
                if kind == "audio":
                    self.emit(Lag(self.lag_seconds))
                if kind != "close" and self._next_item is None and self._queue.empty():
                    # Caught up: a speculative final or a partial, before wait() sees the item
                    # done, so what it does is decided by the audio fed so far, not by a race.
                    self.decoder.idle(self.cutter)
                with self._done:
                    self._processed += items
                    self._done.notify_all()

    def _audio(self, pieces: list[np.ndarray], final: bool) -> None:
        self.cutter.cut(pieces, final)
        self.decoder.at_end = final  # the end of the audio: what waits for a batch goes now
        if final:
            self.decoder.decode_closed()


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
