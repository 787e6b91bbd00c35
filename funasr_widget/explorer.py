"""The VadExplorer widget: tune a VAD's parameters by eye and ear on one recording.

Traits and message handling only: segmenting, agreement and the waveform summaries are in
vad/analysis.py. The samples never go into a trait: the front end gets a min/max envelope
of the window it shows, and a region's samples when the user clicks it to listen.
"""

from __future__ import annotations

import math
import threading
import time

import anywidget
import numpy as np
import traitlets as t

from . import keywords
from ._bundle import bundle
from .audio import SAMPLE_RATE, resample, source_audio
from .dependencies import require
from .transcriber import Transcriber
from .vad import DEFAULTS, NAMES, check_name, check_params, knob_table
from .vad.analysis import Segmenter, energy_curve, envelope, frame_agreement
from .vad.base import BaseVad
from .writer import OneWriter

ENVELOPE_BINS = 2000  # about a pixel each on a wide canvas, until the front end says its width
MAX_BINS = 8192
MIN_VIEW_S = 0.05
ENERGY_FRAME_MS = 30  # the energy VAD's frame, so its threshold line reads against this curve


def _as_regions(pairs) -> list[dict]:
    return [{"start": a / 1000, "end": b / 1000, "duration": round((b - a) / 1000, 3)} for a, b in pairs]


def _load(source, sample_rate) -> np.ndarray:
    if isinstance(source, Transcriber):  # its recording carries its rate, as a file does
        if sample_rate is not None:
            raise ValueError("VadExplorer(transcriber): its audio carries its own sample rate; leave sample_rate out")
        samples, rate = source.audio, SAMPLE_RATE
    else:
        samples, rate = source_audio(source, sample_rate, "VadExplorer()")
    x = resample(samples, rate)  # also rejects NaN, odd shapes and dtypes
    if not len(x):
        raise ValueError(
            "VadExplorer got no audio"
            + (": record or feed some into the Transcriber first" if isinstance(source, Transcriber) else "")
        )
    return x


class VadExplorer(OneWriter, anywidget.AnyWidget):
    """Speech regions of a VAD over a recording's waveform, with its parameters as sliders.

    `source`: an array (with `sample_rate`), an audio file's path, or a Transcriber (its
    audio so far). `vad`: the backend ("energy", "fsmn-vad", "silero"). `compare`: a second
    backend's name, or a dict of parameters for a second run of the same backend.
    `params`: end_silence_ms, speech_threshold, max_segment_s, energy_threshold_db
    (defaults as the Transcriber's). Changing `vad`, `params`, `compare_vad` or
    `compare_params` re-segments.

    Written from the notebook, the comm handler and its worker thread: every write and
    message goes through one lock (writer.py). The page sets nothing directly: it sends
    requests (`set`, `zoom`, `envelope`, `play`).
    """

    _esm = bundle("explorer.js")
    _css = bundle("explorer.css")

    vad = t.Unicode("energy").tag(sync=True)
    params = t.Dict().tag(sync=True)
    compare_vad = t.Unicode("").tag(sync=True)  # "" for no comparison
    compare_params = t.Dict().tag(sync=True)
    regions = t.List().tag(sync=True)  # [{start, end, duration}] in seconds
    compare_regions = t.List().tag(sync=True)
    agreement = t.Float(None, allow_none=True).tag(sync=True)  # 0..1, share of 10 ms frames
    selected = t.Dict(None, allow_none=True).tag(sync=True)  # {index, start, end, duration}
    duration = t.Float(0.0).tag(sync=True)
    status = t.Unicode("").tag(sync=True)
    view = t.Dict().tag(sync=True)  # {start, end} in seconds: the window the canvas shows
    backends = t.List(list(NAMES)).tag(sync=True)
    knobs = t.Dict().tag(sync=True)  # vad.knob_table(): the sliders' ranges, steps, units, own thresholds

    def __init__(self, source, sample_rate: int | None = None, *, vad: str = "energy", compare=None, **params):
        keywords.check_names(params, "VadExplorer()", (keywords.KNOB,), VadExplorer.__init__)
        check_name(vad)
        check_params(**params)
        if isinstance(compare, dict):
            compare_vad, compare_params = vad, {**params, **check_params(**compare)}
        elif compare is None or compare == "":
            compare_vad, compare_params = "", params
        else:
            compare_vad, compare_params = check_name(compare), params
        samples = _load(source, sample_rate)
        duration = len(samples) / SAMPLE_RATE
        super().__init__(
            vad=vad,
            params=params,
            compare_vad=compare_vad,
            compare_params=compare_params,
            duration=duration,
            view={"start": 0.0, "end": duration},
            knobs=knob_table(),
        )
        self._samples = samples
        self._energy = energy_curve(samples, ENERGY_FRAME_MS)
        self._segmenters: dict[str, Segmenter] = {}
        self._bins = ENVELOPE_BINS
        self._lock = threading.RLock()  # one segmentation at a time (notebook thread or worker)
        self._quiet = False  # while a front-end request sets several traits
        self.segment()
        self.observe(self._on_setup, ["vad", "params", "compare_vad", "compare_params"])
        self.observe(lambda _change: self._send_envelope("view"), "view")
        self.on_msg(self._on_message)
        # Front-end requests run on this thread, so the message handler never waits for a
        # model; only the latest request waiting counts (a dragged slider sends many).
        self._pending: dict | None = None
        self._wake = threading.Condition()
        self._closed = False
        threading.Thread(target=self._serve, name="vad-explorer", daemon=True).start()

    # -- validation ----------------------------------------------------------------------

    @t.validate("vad")
    def _valid_vad(self, proposal):
        if proposal.value not in NAMES:
            raise t.TraitError(f"Unknown VAD {proposal.value!r}; choose one of {', '.join(NAMES)}")
        return proposal.value

    @t.validate("compare_vad")
    def _valid_compare_vad(self, proposal):
        if proposal.value not in ("", *NAMES):
            raise t.TraitError(f"Unknown VAD {proposal.value!r}; choose one of {', '.join(NAMES)}, or ''")
        return proposal.value

    @t.validate("view")
    def _valid_view(self, proposal):
        return self._window(proposal.value.get("start", 0.0), proposal.value.get("end", self.duration))

    @t.validate("params", "compare_params")
    def _valid_params(self, proposal):
        # A partial dict changes those knobs only; speech_threshold None is each backend's own.
        try:
            keywords.check_names(proposal.value, f"VadExplorer.{proposal.trait.name}", (keywords.KNOB,))
            merged = {**DEFAULTS, **getattr(self, proposal.trait.name), **proposal.value}
            return BaseVad(**merged).params
        except (TypeError, ValueError) as err:
            raise t.TraitError(f"{proposal.trait.name}: {err}") from err

    def _page_rejected(self, name: str, code: str) -> None:
        self.status = f"Ignored an update of {name!r} from the page ({code}): it sends requests, not traits."

    # -- segmentation ----------------------------------------------------------------------

    def segment(self) -> list[dict]:
        """Segment the recording with the current setup(s); returns (and sets) `regions`."""
        with self._lock:
            started = time.perf_counter()
            try:
                main = self._run(self.vad, self.params)
                other = self._run(self.compare_vad, self.compare_params) if self.compare_vad else None
            except Exception as err:
                self.status = f"Segmenting failed: {err}"
                raise
            ms = (time.perf_counter() - started) * 1000
            self._last_ms = ms
            text = f"{self.vad}: {len(main)} regions"
            if other is not None:
                text += f"; {self.compare_vad}: {len(other)} regions"
            with self.writing():  # one step, and one message: the front end redraws once
                self.regions = _as_regions(main)
                self.compare_regions = _as_regions(other or [])
                self.agreement = None if other is None else frame_agreement(main, other, self.duration * 1000)
                self.status = f"{text} (segmented in {ms:.0f} ms)"
            return self.regions

    def _run(self, name: str, params: dict):
        segmenter = self._segmenters.get(name)
        if segmenter is None:
            # The first run of a backend loads it and scores the whole recording: seconds.
            self.status = f"Running {name} over the recording (once; later changes are fast)…"
            segmenter = self._segmenters[name] = Segmenter(self._samples, name)
        return segmenter.regions(**params)

    def _on_setup(self, _change) -> None:
        if not self._quiet:
            self.segment()

    # -- messages from the front end -------------------------------------------------------

    def _on_message(self, _widget, content, _buffers) -> None:
        # May run on a subshell thread: hand anything slow to the worker.
        kind = content.get("type") if isinstance(content, dict) else None
        try:
            if kind == "set":
                with self._wake:
                    self._pending = content
                    self._wake.notify()
            elif kind in ("zoom", "envelope"):
                self._bins = int(min(max(content.get("bins") or ENVELOPE_BINS, 16), MAX_BINS))
                window = self._window(content.get("start", 0.0), content.get("end", self.duration))
                if kind == "zoom" and window != self.view:
                    self.view = window  # its observer sends the envelope
                else:
                    self._send_envelope(content.get("tag", "view"), window)
            elif kind == "play":
                self._play(content.get("index"), bool(content.get("compare")))
        except (TypeError, ValueError) as err:
            self.status = f"Ignored a malformed {kind!r} message from the front end: {err}"

    def _serve(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                request, self._pending = self._pending or {}, None
            with self._lock:
                try:
                    self._quiet = True  # segment once for all the traits set here
                    try:
                        for name in ("vad", "params", "compare_vad", "compare_params"):
                            if name in request:
                                setattr(self, name, request[name])
                    finally:
                        self._quiet = False
                    self.segment()
                except Exception as err:  # shown in the widget; the notebook is not listening
                    self.status = f"Could not apply that: {err}"
            with self.writing():
                self.send(
                    {
                        "type": "segmented",
                        "seq": request.get("seq"),
                        "view_id": request.get("view_id"),
                        "ms": round(self._last_ms, 1),
                    }
                )

    def _window(self, start: float, end: float) -> dict:
        span = min(max(float(end) - float(start), MIN_VIEW_S), self.duration)
        start = min(max(float(start), 0.0), self.duration - span)
        return {"start": round(start, 4), "end": round(start + span, 4)}

    def _send_envelope(self, tag: str, window: dict | None = None) -> None:
        """The waveform's min/max in `bins` slices of the window, and the energy curve's
        frames there (max-pooled to at most `bins`), as one float32 buffer."""
        window = window or self.view
        start, end = window["start"], window["end"]
        mins, maxs = envelope(self._samples[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)], self._bins)
        frame_s = ENERGY_FRAME_MS / 1000
        first, last = int(start / frame_s), min(math.ceil(end / frame_s), len(self._energy))
        pool = max(math.ceil((last - first) / self._bins), 1)
        db = self._energy[first:last]
        db = np.pad(db, (0, -len(db) % pool), constant_values=-120.0).reshape(-1, pool).max(axis=1)
        with self.writing():
            self.send(
                {
                    "type": "envelope",
                    "tag": tag,
                    "start": start,
                    "end": end,
                    "bins": len(mins),
                    "db_start": first * frame_s,
                    "db_step": frame_s * pool,
                    "db_count": len(db),
                },
                buffers=[np.concatenate([mins, maxs, db]).astype(np.float32).tobytes()],
            )

    def _play(self, index, compare: bool) -> None:
        with self.writing():  # the region selected is the region sent, whatever re-segments meanwhile
            regions = self.compare_regions if compare else self.regions
            if not isinstance(index, int) or not 0 <= index < len(regions):
                return
            region = regions[index]
            self.selected = {"index": index, **region, **({"compare": True} if compare else {})}
            # A region is at most max_segment_s long; the cap keeps a stale index from sending more.
            longest = (self.compare_params if compare else self.params)["max_segment_s"]
            begin = int(region["start"] * SAMPLE_RATE)
            clip = self._samples[begin : begin + int(min(region["duration"], longest) * SAMPLE_RATE)]
            self.send(
                {
                    "type": "audio",
                    "index": index,
                    "compare": compare,
                    "sample_rate": SAMPLE_RATE,
                    "start": region["start"],
                },
                buffers=[clip.astype(np.float32).tobytes()],
            )

    # -- Python API ----------------------------------------------------------------------------

    def apply_to(self, transcriber: Transcriber) -> str:
        """Give `transcriber` these parameters (from its next segment on); returns what was done,
        with a warning when its VAD is not the one they were tuned with."""
        with transcriber.hold_trait_notifications():
            for name, value in self.params.items():
                setattr(transcriber, name, value)
        knobs = ", ".join(f"{k}={v}" for k, v in self.params.items())
        if transcriber.vad and transcriber.vad != self.vad:
            return (
                f"Warning: set {knobs}, but the transcriber runs the {transcriber.vad} VAD and these "
                f"values were tuned with {self.vad}: explore with vad={transcriber.vad!r} to check them."
            )
        return f"Set {knobs} on the transcriber ({transcriber.vad or self.vad} VAD)."

    def regions_dataframe(self, compare: bool = False):
        """The regions (or, with compare=True, the comparison's) as a pandas DataFrame, in seconds."""
        pd = require("pandas", "notebooks", "regions_dataframe()")

        frame = pd.DataFrame(self.compare_regions if compare else self.regions, columns=["start", "end", "duration"])
        frame.index.name = "region"
        return frame

    def close(self) -> None:
        if hasattr(self, "_wake"):  # not when __init__ failed before starting the worker
            with self._wake:
                self._closed = True
                self._wake.notify()
        super().close()
