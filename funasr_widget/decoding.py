"""The decode queue: closed segments -> the ASR engine -> finals, in id order.

Finals come in the order the segments closed. A decode error gives that one segment an
empty text with the reason. An engine that is unavailable for now (a server down) keeps
closed segments waiting, in order and with their audio, retried with backoff; the oldest
is given up (a Problem, an empty final with the reason; its audio stays in the recording)
past MAX_BACKLOG_S of waiting audio, and every waiting one once the engine has been
unavailable for GIVE_UP_AFTER_S, so `wait()` always ends. Segments that close while a
model is still loading wait the same way, under the same MAX_BACKLOG_S bound.

Audio that is not live (``offline``: transcribe()) has its closed segments decoded the way
funasr's VAD path does: gathered, then shortest first in batches (transcribe_batch).

While a segment is open: partial text (a streaming engine's steps, or a re-decode at a
bounded rate), and, once its end silence has begun, a speculative final: the segment
decoded exactly as the VAD will close it if the silence goes on, late enough that speech
is unlikely to resume and early enough that it is done when the VAD closes. If the VAD
closes it there, that result is the final at once; otherwise it is dropped and counted. A
streaming model's final is the flush of its stream: a fork of the stream hears the rest up to
the predicted end and is flushed, while the stream itself waits (exactly what the close would
feed it, from the same state), until the close or until speech resumes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ._constants import SAMPLE_RATE
from .asr.base import Decoder, EngineUnavailable
from .events import Backlog, Emit, Final, Partial, Problem
from .segmenter import Segment, Segmenter, ms_to_samples

RETRY_FIRST_S, RETRY_MAX_S = 1.0, 30.0  # backoff for an unavailable engine: doubles up to the cap
MAX_BACKLOG_S = 600.0  # closed segments' audio kept waiting for an engine (unavailable or loading)
GIVE_UP_AFTER_S = 300.0  # an engine unavailable this long: what waits for it is given up
OFFLINE_BATCH_S = 300.0  # audio not live: closed segments gather up to this much, then a batch
# A speculative final starts when the VAD would close the segment within its expected decode
# time (measured: the mean cost per second of audio of recent decodes) times this, plus a margin.
SPECULATE_SAFETY, SPECULATE_MARGIN_MS = 1.5, 100.0


@dataclass
class _Speculation:
    segment: int
    end_ms: int
    result: dict


@dataclass
class DecodeStats:
    decodes: int = 0  # final and speculative decodes run (offline batches count each segment)
    partial_decodes: int = 0
    speculative: int = 0  # speculative finals decoded
    speculative_used: int = 0  # ... published as the final
    speculative_dropped: int = 0  # ... dropped: speech resumed, or the VAD closed elsewhere
    given_up: list[int] = field(default_factory=list)  # segment ids given up (engine unavailable)

    def as_dict(self) -> dict:
        return {
            "decodes": self.decodes,
            "partial_decodes": self.partial_decodes,
            "speculative": self.speculative,
            "speculative_used": self.speculative_used,
            "speculative_dropped": self.speculative_dropped,
            "given_up": list(self.given_up),
        }


class DecodeQueue:
    """Runs on the pipeline's worker thread only; `emit` receives Partial, Final, Backlog and
    Problem events."""

    def __init__(self, emit: Emit, *, partials: bool, partial_interval_s: float, speculative: bool):
        self._emit = emit
        self.partials = partials
        self.partial_interval_s = partial_interval_s
        self.speculative = speculative
        self.offline = False  # audio not live: batch the closed segments (set by transcribe())
        self.engine: Decoder | None = None
        self._engine_failed = False  # no engine will come: segments get empty text
        self._waiting: list[Segment] = []  # closed, waiting for the engine
        self.at_end = False  # the last audio was final: nothing more to batch with
        self.retry_at: float | None = None  # when to try an unavailable engine again
        self._retry_s = 0.0
        self._unavailable_since: float | None = None
        self._last_partial = 0.0
        self._partial_pos = 0  # audio position (samples) of the last partial re-decode
        self._partial_segment = -1  # the segment the last partial was of
        self._cost_per_s: float | None = None  # seconds of decoding per second of audio (recent finals)
        self._speculation: _Speculation | None = None
        self.stats = DecodeStats()

    # -- from the pipeline ------------------------------------------------------------

    def set_engine(self, engine: Decoder | None) -> None:
        """A loaded engine (or None: the load failed). A replaced engine is closed."""
        old, self.engine, self._engine_failed = self.engine, engine, engine is None
        self._cost_per_s = None
        self._drop_speculation()
        if old is not None and old is not engine:
            self._close(old)
        self.decode_closed()

    def closed(self, segment: Segment) -> None:
        self._waiting.append(segment)
        self._emit(Partial(""))
        self.decode_closed()

    def stepped(self, segment: Segment) -> None:
        """A block was added to the open segment: a streaming engine decodes as it comes.
        Without partials, a 2-pass engine has no first pass, and audio that is not live goes
        to a streaming engine whole at the segment's end: one call, which funasr steps
        through in the same 600 ms strides (the same text), for less overhead."""
        engine = self.engine
        if engine is None or not engine.streaming or not (self.partials or not (engine.two_pass or self.offline)):
            return
        spec = self._speculation
        if spec is not None and spec.segment == segment.id and self._flushes(engine):
            if segment.settled <= segment.length_to(spec.end_ms):
                return  # its flush is decoded on a fork: the stream waits for the close, as the fork did
            self._drop_speculation()  # speech resumed past the end it was decoded for
        try:
            new = self._stream_feed(segment, final=False)
        except Exception as err:  # the final decode of the segment tries again with what is left
            self._emit(Problem("decode-failed", f"Streaming decode failed: {type(err).__name__}: {err}"))
            return
        if new:
            segment.text += new
            self._emit(Partial(segment.text))

    def idle(self, cutter: Segmenter) -> None:
        """The queue is empty: a speculative final when one is due, else a partial."""
        try:
            if not self._speculate(cutter):
                self._partial(cutter)
        except EngineUnavailable:
            pass  # optional work: the finals' retries report the outage
        except Exception as err:
            self._emit(Problem("decode-failed", f"Partial decoding failed: {type(err).__name__}: {err}"))

    def finish(self) -> None:
        """The session ends: one last try, then what still waits is given up; the engine closed."""
        self._engine_failed = self.engine is None  # still loading: none will come
        self.retry_at = None
        self.decode_closed(last=True)
        if self.engine is not None:
            self._close(self.engine)

    @property
    def pending(self) -> int:
        """Closed segments without their final yet."""
        return len(self._waiting)

    # -- finals -----------------------------------------------------------------------

    def decode_closed(self, last: bool = False) -> None:
        if self.engine is None and not self._engine_failed:
            self._trim_backlog()
            return  # still loading: keep the segments (bounded), decode them once it is ready
        if self.retry_at is not None and time.monotonic() < self.retry_at:
            self._trim_backlog()
            return  # the engine is unavailable: the segments wait, in order, for the retry
        if self._batching():
            if not (last or self.at_end) and self._backlog_s() < OFFLINE_BATCH_S:
                return  # offline: closed segments gather, then go in batches
            self._decode_batch()  # what it could not decode, the loop below does one by one
        while self._waiting:
            seg = self._waiting[0]
            try:
                result = self._decode(seg) if self.engine is not None else {"text": ""}
            except EngineUnavailable as err:
                if last:
                    self._give_up(self._waiting.pop(0), f"not transcribed: {err}")
                    continue
                self._unavailable(err)
                return
            except Exception as err:  # this segment only: the next one is cut and decoded as usual
                result = self._failed(seg, err)
            self._waiting.pop(0)
            self._final(seg, result)
        if self.retry_at is not None:  # the engine is back and the backlog is sent
            self.retry_at, self._retry_s, self._unavailable_since = None, 0.0, None
            self._emit(Backlog(0, 0.0))

    def _unavailable(self, err: EngineUnavailable) -> None:
        now = time.monotonic()
        if self._unavailable_since is None:
            self._unavailable_since = now
        if now - self._unavailable_since >= GIVE_UP_AFTER_S:
            while self._waiting:
                self._give_up(
                    self._waiting.pop(0),
                    f"not transcribed: the engine was unavailable for more than {GIVE_UP_AFTER_S:.0f} s ({err})",
                )
        self._retry_s = min(max(2 * self._retry_s, RETRY_FIRST_S), RETRY_MAX_S)
        self.retry_at = now + self._retry_s
        self._trim_backlog()
        self._emit(Backlog(len(self._waiting), self._backlog_s(), str(err), self._retry_s))

    def _final(self, seg: Segment, result: dict) -> None:
        assert seg.end_ms is not None
        self._emit(
            Final(
                {
                    "id": seg.id,
                    "start": seg.start_ms / 1000,
                    "end": seg.end_ms / 1000,
                    **in_session(result, seg.start_ms),
                }
            )
        )

    def _failed(self, seg: Segment, err: Exception) -> dict:
        reason = f"{type(err).__name__}: {err}"
        self._emit(
            Problem(
                "decode-failed",
                f"Segment {seg.id} could not be decoded ({reason}).",
                "Its audio is kept: retranscribe() tries again.",
            )
        )
        return {"text": "", "error": reason}

    def _decode(self, seg: Segment) -> dict:
        engine = self.engine
        assert engine is not None
        spec, self._speculation = self._speculation, None
        if spec is not None:
            if spec.segment == seg.id and spec.end_ms == seg.end_ms:  # closed where it was decoded
                self.stats.speculative_used += 1
                return spec.result
            self.stats.speculative_dropped += 1  # speech resumed, or the VAD closed it elsewhere
        self.stats.decodes += 1
        if self._flushes(engine):
            return {"text": seg.text + self._stream_feed(seg, final=True)}
        return self._timed(engine.transcribe, seg.audio())  # 2-pass: the streamed text was the partial

    def _timed(self, transcribe, audio) -> dict:
        """A decode, its cost per second of audio measured (the next ones are planned by it)."""
        started = time.monotonic()
        result = transcribe(audio)
        if len(audio) >= SAMPLE_RATE // 2:  # shorter ones are mostly fixed overhead
            cost = (time.monotonic() - started) / (len(audio) / SAMPLE_RATE)
            self._cost_per_s = cost if self._cost_per_s is None else 0.7 * self._cost_per_s + 0.3 * cost
        return result

    def _expected_ms(self, audio_ms: int) -> float:
        """How long a decode of this much audio is expected to take (0: not measured yet)."""
        return 0.0 if self._cost_per_s is None else self._cost_per_s * audio_ms

    def _batching(self) -> bool:
        """Audio that is not live (transcribe()) and an engine that decodes whole segments:
        decode as funasr's VAD path does (asr/segment.py)."""
        engine = self.engine
        return (
            self.offline and engine is not None and self.retry_at is None and (engine.two_pass or not engine.streaming)
        )

    def _decode_batch(self) -> None:
        """The waiting segments in one transcribe_batch call; their finals in id order (a
        segment that failed gets its error). If the call itself fails, they stay waiting,
        for the one-by-one decode."""
        if len(self._waiting) < 2 or self.engine is None:
            return
        try:
            results = self.engine.transcribe_batch([seg.audio() for seg in self._waiting])
        except Exception:
            return
        self.stats.decodes += len(results)
        for seg, result in zip(list(self._waiting), results, strict=False):
            self._waiting.pop(0)
            self._final(seg, self._failed(seg, result) if isinstance(result, Exception) else result)

    def _backlog_s(self) -> float:
        return sum(seg.length or 0 for seg in self._waiting) / SAMPLE_RATE

    def _trim_backlog(self) -> None:
        """Waiting audio is bounded: past MAX_BACKLOG_S the oldest segment is given up."""
        while len(self._waiting) > 1 and self._backlog_s() > MAX_BACKLOG_S:
            waiting_for = "the engine" if self.engine is not None else "the model to load"
            self._give_up(
                self._waiting.pop(0),
                f"not transcribed: more than {MAX_BACKLOG_S:.0f} s of speech waited for {waiting_for}",
            )

    def _give_up(self, seg: Segment, reason: str) -> None:
        self.stats.given_up.append(seg.id)
        self._emit(
            Problem(
                "decode-failed",
                f"Segment {seg.id} was {reason}.",
                "Its audio is in the recording: retranscribe() once the engine is back.",
            )
        )
        self._final(seg, {"text": "", "error": reason})

    def _close(self, engine: Decoder) -> None:
        try:
            engine.close()
        except Exception as err:  # a connection that will not close harms nothing else
            self._emit(Problem("engine-close-failed", f"Closing {engine.name or 'the engine'} failed: {err!r}"))

    # -- while a segment is open ------------------------------------------------------

    def _stream_feed(self, seg: Segment, final: bool) -> str:
        """Give a streaming engine the segment's audio it has not heard yet: up to its end
        once closed, and while open only what is surely in it (Segment.settled)."""
        assert self.engine is not None
        if seg.stream is None:
            seg.stream = self.engine.new_stream()
        fresh = seg.unheard(seg.settled if seg.length is None else seg.length)
        if not len(fresh) and not final:
            return ""
        return self.engine.accept(seg.stream, fresh, final=final)

    def _drop_speculation(self) -> None:
        if self._speculation is not None:
            self._speculation = None
            self.stats.speculative_dropped += 1

    def _speculate(self, cutter: Segmenter) -> bool:
        """Decode the open segment as the VAD will close it, once that close is near (see the
        module's docstring); True when it did. A streaming model's final is its stream's
        flush: that runs on a fork of the stream, as soon as the audio up to the end has come."""
        seg, engine = cutter.open, self.engine
        if not self.speculative or self.offline or seg is None or engine is None or self._waiting:
            return False  # finals due go first
        if self.retry_at is not None:
            return False
        spec = self._speculation
        predicted = cutter.predicted_end()
        if predicted is None or ms_to_samples(predicted.end_ms) > cutter.pos:
            return False  # speech goes on, or the audio up to the end has not come yet
        if spec is not None and spec.end_ms == predicted.end_ms:
            return False  # this very audio is decoded already
        flush = self._flushes(engine)  # a streaming model's final is a short flush: speculate at once
        if self._cost_per_s is not None and not flush:
            expected_ms = self._expected_ms(predicted.end_ms - seg.start_ms) * SPECULATE_SAFETY + SPECULATE_MARGIN_MS
            if predicted.due_ms - cutter.pos * 1000 // SAMPLE_RATE > expected_ms:
                return False  # not yet: the later it starts, the less likely speech resumes
        if spec is not None:
            self._drop_speculation()  # speech resumed after it, and stopped again
        self.stats.decodes += 1
        try:
            if flush:
                result = self._flushed_fork(seg, predicted.end_ms)
            else:
                result = self._timed(engine.transcribe, seg.audio(predicted.end_ms))
        except EngineUnavailable:
            raise
        except Exception:  # the final decode will report it
            return True
        self.stats.speculative += 1
        self._speculation = _Speculation(seg.id, predicted.end_ms, result)
        return True

    @staticmethod
    def _flushes(engine: Decoder) -> bool:
        """Is the final the stream's flush (a streaming model on its own, not 2-pass)?"""
        return engine.streaming and not engine.two_pass

    def _flushed_fork(self, seg: Segment, end_ms: int) -> dict:
        """The final a close at `end_ms` gives: a fork of the stream hears the rest up to there
        and is flushed (the stream itself then waits: stepped())."""
        assert self.engine is not None
        stream = self.engine.new_stream() if seg.stream is None else self.engine.fork(seg.stream)
        rest = seg.audio(end_ms)[seg.heard :]
        return {"text": seg.text + self.engine.accept(stream, rest, final=True)}

    def _partial(self, cutter: Segmenter) -> None:
        """Re-decode the open segment, at a bounded rate and only when caught up; not while
        the speaker pauses (a re-decode would show the words already shown), and never one
        that could still be running when the VAD closes the segment: it would hold up the
        final (the end silence is shorter than a long segment's decode on a slow CPU)."""
        seg, engine, vad = cutter.open, self.engine, cutter.vad
        if not self.partials or seg is None or engine is None or vad is None or engine.streaming or self._waiting:
            return  # finals waiting go first
        if not engine.partials or self._speculation is not None:
            return  # an engine that declines partials (a remote one, unless asked); or the end is decoded
        if seg.id != self._partial_segment:  # a new segment: its first partial is due
            self._partial_segment, self._last_partial, self._partial_pos = seg.id, 0.0, 0
        now = time.monotonic()
        if now - self._last_partial < self.partial_interval_s:
            return
        silence_ms = vad.trailing_silence_ms
        if silence_ms and self._partial_pos and silence_ms >= (cutter.pos - self._partial_pos) * 1000 // SAMPLE_RATE:
            return  # nothing but silence since the last one
        open_ms = cutter.pos * 1000 // SAMPLE_RATE - seg.start_ms
        if silence_ms + self._expected_ms(open_ms) >= vad.params["end_silence_ms"]:
            return  # it could outlast the segment, speaking or not
        self._last_partial = now
        self._partial_pos = cutter.pos
        self.stats.partial_decodes += 1
        text = self._timed(engine.transcribe_partial, seg.audio())["text"]
        self._emit(Partial(text))


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
