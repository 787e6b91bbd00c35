"""FSMN-VAD's decisions without funasr: funasr's FsmnVADStreaming state machine
(multi-utterance mode, as FsmnVad runs it) restated over per-frame silence probabilities.

A 200 ms voting window turns 10 ms frames into speech/silence changes, and a start/end
state machine turns those into segment events. Branches that cannot change the segments
are left out (funasr's dB and SNR gates default to -100, below any frame's level). Two
users: the VAD explorer, which reruns the decisions over stored scores on every slider
move (analysis.py), and the funasr-free FSMN-VAD (fsmn_onnx.py). Both are checked against
funasr's own segments (tests/test_vad.py, tests/test_explorer.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


class FsmnDecisions:
    """Feed silence probabilities (one per 10 ms frame) with :meth:`push`; get the
    segment events ``("start" | "end", ms)`` in this stream's clock. ``opts`` has the
    model's fixed options (funasr's ``vad_opts``, or config.yaml's model_conf as
    attributes); threshold, end silence and segment cap are given per push, as funasr
    takes them per call. ``final`` marks the stream's last frame, which funasr judges
    differently: a caller that streams must keep frames back until it knows which is last
    (low frame rate splicing does: its last frames wait for their right context)."""

    def __init__(self, opts):
        f = self.frame_ms = opts.frame_in_ms
        self._opts = opts
        self._win = int(opts.window_size_ms / f)
        self._to_speech = int(opts.sil_to_speech_time_thres / f)
        self._to_silence = int(opts.speech_to_sil_time_thres / f)
        self._latency = self._win + (int(opts.lookback_time_start_point / f) if opts.do_extend else 0)
        self._lookahead = int(opts.lookahead_time_end_point / f)
        self._frame = 0  # index of the next frame to judge
        self._buf = 0  # funasr's data_buf_start_frame: the first frame not yet given to a segment
        self._events: list[tuple[str, int]] = []
        self._reset()

    def _reset(self) -> None:
        self._window = [0] * self._win
        self._pos = self._sum = 0
        self._speaking = self.in_segment = False
        self.silent = 0  # silent frames since the last speech frame, in a segment
        self._start = -1
        self._last_speech = 0
        self._seg_end = 0  # ms: the end of the frames given to the open segment

    def push(
        self, silence: Iterable[float], threshold: float, end_silence_ms: int, max_segment_s: float, final: bool = False
    ) -> list[tuple[str, int]]:
        p = self._opts
        sil = np.asarray(silence, np.float64)
        if len(sil):
            with np.errstate(divide="ignore"):  # log(0) where funasr would raise
                speech = np.exp(np.log(1.0 - sil)) >= np.exp(np.log(sil) * p.speech_2_noise_ratio) + threshold
            end_silence = end_silence_ms - p.speech_to_sil_time_thres  # ms, as funasr sets it
            max_frames = int(max_segment_s * 1000) / self.frame_ms
            last = len(speech) - 1
            for k, frame_speech in enumerate(speech.tolist()):
                self._judge(int(frame_speech), final and k == last, end_silence, max_frames)
        events, self._events = self._events, []
        return events

    @property
    def trailing_silence_ms(self) -> int:
        """How much of the end silence has passed in an open segment (as FsmnVad reports it)."""
        if not self.in_segment or not self.silent:
            return 0
        return self.silent * self.frame_ms + self._opts.speech_to_sil_time_thres

    @property
    def speech_until_ms(self) -> int | None:
        """The end of the frames given to the open segment so far (funasr's output buffer):
        its end event is there or later. None when none is open."""
        return self._seg_end if self.in_segment else None

    def predicted_end(self, end_silence_ms: int, max_segment_s: float) -> tuple[int, int] | None:
        """(end ms, ms of frames judged by then) of the open segment if silence goes on."""
        if not self.in_segment or not self.silent:
            return None
        o = self._opts
        return closing(
            self._frame,
            self.silent,
            self._start,
            self.frame_ms,
            end_silence_ms - o.speech_to_sil_time_thres,
            max_segment_s,
            o.lookahead_time_end_point if o.do_extend else None,
        )

    # -- funasr's per-frame logic ----------------------------------------------------------

    def _pop(self, frame: int, first: bool = False) -> None:  # PopDataToOutputBuf for one frame
        self._buf = max(self._buf, frame) + 1
        if first:
            self._events.append(("start", frame * self.frame_ms))
        self._seg_end = (frame + 1) * self.frame_ms

    def _voice(self, frame: int) -> None:
        self._last_speech = frame
        self._pop(frame)

    def _end(self, frame: int) -> None:
        for t in range(self._last_speech + 1, frame):
            self._voice(t)
        self._pop(frame)
        self._events.append(("end", self._seg_end))
        self._reset()

    def _judge(self, frame_speech: int, final: bool, end_silence: float, max_frames: float) -> None:
        cur = self._frame
        self._frame += 1
        # The voting window (funasr's WindowDetector).
        self._sum += frame_speech - self._window[self._pos]
        self._window[self._pos] = frame_speech
        self._pos = (self._pos + 1) % self._win
        was = self._speaking
        if not was and self._sum >= self._to_speech:
            self._speaking = True
        elif was and self._sum <= self._to_silence:
            self._speaking = False
        now = self._speaking
        if now or was:  # a speech frame, or the first silent one
            self.silent = 0
            if not self.in_segment:
                if now and not was:
                    start = max(self._buf, cur - self._latency)
                    self.in_segment, self._start = True, start
                    self._pop(start, first=True)
                    for t in range(start + 1, cur + 1):
                        self._voice(t)
                return
            if now and not was:
                for t in range(self._last_speech + 1, cur):
                    self._voice(t)
            if cur - self._start + 1 > max_frames or final:  # cut at the length limit, else extend
                self._end(cur)
            else:
                self._voice(cur)
            return
        self.silent += 1
        if not self.in_segment:
            if cur >= self._latency:
                self._buf = max(self._buf, cur - self._latency)
        elif self.silent * self.frame_ms >= end_silence:
            back = int(end_silence / self.frame_ms)
            if self._opts.do_extend:
                back = max(0, back - self._lookahead - 1)
            self._end(cur - back)
        elif cur - self._start + 1 > max_frames or final:
            self._end(cur)
        elif self._opts.do_extend and self.silent <= self._lookahead:
            self._voice(cur)


def closing(
    next_frame: int,
    silent: int,
    start: int,
    frame_ms: int,
    end_silence: float,
    max_segment_s: float,
    lookahead_ms: int | None,
) -> tuple[int, int] | None:
    """Where funasr's state machine ends a segment in silence (see _judge): at the frame whose
    silent count reaches ``end_silence`` (ms: end silence less speech_to_sil_time_thres), ending
    that many frames back (less the look-ahead when extending); None when the length cap cuts
    it first. Returns (end ms, ms judged by then), in the stream's clock."""
    close = next_frame - silent + max(math.ceil(end_silence / frame_ms), 1) - 1
    before = close - 1  # the last frame judged before it: cut at the cap there?
    if before >= next_frame and before - start + 1 > int(max_segment_s * 1000) / frame_ms:
        return None
    back = int(end_silence / frame_ms)
    if lookahead_ms is not None:
        back = max(0, back - int(lookahead_ms / frame_ms) - 1)
    return (close - back + 1) * frame_ms, (close + 1) * frame_ms


def decide(
    silence: np.ndarray, opts, threshold: float, end_silence_ms: int, max_segment_s: float
) -> list[tuple[int, int]]:
    """The (start_ms, end_ms) segments of a whole recording's silence probabilities."""
    events = FsmnDecisions(opts).push(silence, threshold, end_silence_ms, max_segment_s, final=True)
    return [(a[1], b[1]) for a, b in zip(events[::2], events[1::2], strict=False)]


__all__ = ["FsmnDecisions", "closing", "decide"]
