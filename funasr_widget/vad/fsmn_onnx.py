"""FSMN-VAD without funasr or torch: the same model run by onnxruntime, for kernels whose
ASR runs on a server (a remote engine), where importing funasr only for the VAD would
cost ~500 MB per kernel (torch and every funasr model module) against ~90 MB here.

The steps are funasr's, on the same folder: kaldi-native-fbank features (80 mels, 25/10 ms,
hamming, no dither: funasr's own fbank when torchaudio is absent), low frame rate splicing
(5 frames, step 1, the first frame repeated twice before the stream and the last after it),
the folder's am.mvn, the FSMN network from ``model.onnx`` (FunASR's export of the same
weights; its caches carry the 20-frame memory across calls), then funasr's decisions
(fsmn_rules.py) over each frame's silence probability. The events are funasr's FsmnVad's
(tests/test_vad.py compares them).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .. import _cache, models
from .._constants import SAMPLE_RATE, SAMPLES_PER_MS
from ..dependencies import require
from ..frontend import fbank_options, read_cmvn
from ..onnx_session import open_session
from .base import BaseVad, PredictedEnd, VadEvent
from .fsmn_rules import FsmnDecisions

ONNX_FILE = "model.onnx"


def available(folder: Path) -> bool:
    """Can this runtime run the folder: onnxruntime and kaldi-native-fbank installed, and a
    model.onnx next to the weights?"""
    import importlib.util

    return (
        (Path(folder) / ONNX_FILE).is_file()
        and importlib.util.find_spec("onnxruntime") is not None
        and importlib.util.find_spec("kaldi_native_fbank") is not None
    )


class _Model:
    """What the folder fixes: frontend options, CMVN, decision options, the ONNX session."""

    def __init__(self, folder: Path, threads: int):
        import yaml

        config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        self.frontend = config["frontend_conf"]
        self.opts = SimpleNamespace(**config["model_conf"])
        self.shift, self.scale = read_cmvn(folder / "am.mvn")
        self.session = open_session(folder / ONNX_FILE, threads)
        self.caches = [i for i in self.session.get_inputs() if i.name.startswith("in_cache")]


class FsmnOnnxVad(BaseVad):
    name = "fsmn-vad"
    default_threshold = 0.6  # the model's speech_noise_thres, as FsmnVad

    def __init__(self, *, model: str = "fsmn-vad", threads: int = 1, **params):
        super().__init__(**params)
        for module in ("onnxruntime", "kaldi_native_fbank", "yaml"):  # before fetching a model it cannot run
            require(module, "remote", "FSMN-VAD without torch")
        folder = models.fetch(model)
        if not available(folder):
            raise FileNotFoundError(f"{folder} has no {ONNX_FILE}: FunASR's ONNX export of the FSMN-VAD weights")
        # one session per folder in the process, listed and freed as models are (models.loaded())
        self._model = _cache.shared(("fsmn-vad-onnx", str(folder), "cpu", threads), lambda: _Model(folder, threads))
        self._lfr_m, self._lfr_n = int(self._model.frontend.get("lfr_m", 5)), int(self._model.frontend.get("lfr_n", 1))
        if self._lfr_n != 1:
            raise ValueError(f"{folder}: lfr_n {self._lfr_n} is not supported (FSMN-VAD uses 1)")
        self._offset = 0  # samples fed through earlier streams (before a final flush)
        self._new_stream()

    def _new_stream(self) -> None:
        import kaldi_native_fbank as knf

        self._fbank = knf.OnlineFbank(fbank_options(self._model.frontend))
        self._read = 0  # fbank frames taken so far
        self._frames: list[np.ndarray] = []  # fbank frames kept for splicing (lfr_m - 1 at most)
        self._spliced = 0  # LFR frames made so far
        self._caches = [
            np.zeros([d if isinstance(d, int) else 1 for d in c.shape], np.float32) for c in self._model.caches
        ]
        self._decisions = FsmnDecisions(self._model.opts)
        self._fed = 0

    def accept(self, samples: np.ndarray, final: bool = False) -> list[VadEvent]:
        silence = self._silence(samples, final)
        p = self.params
        origin = self._offset // SAMPLES_PER_MS
        for kind, ms in self._decisions.push(
            silence, p["speech_threshold"], p["end_silence_ms"], p["max_segment_s"], final
        ):
            self._emit(kind, origin + ms)
        if final:  # a new stream from here, as funasr starts a new cache
            self._offset += self._fed
            self._new_stream()
        return self._take_events()

    def _silence(self, samples: np.ndarray, final: bool) -> np.ndarray:
        """The silence probability of each new 10 ms frame these samples complete."""
        samples = np.asarray(samples, np.float32).ravel()
        self._fbank.accept_waveform(SAMPLE_RATE, samples * 32768.0)  # funasr scales to 16-bit levels
        self._fed += len(samples)
        ready = self._fbank.num_frames_ready
        # copies: get_frame gives a view of memory that pop() frees
        new = [np.array(self._fbank.get_frame(i), np.float32) for i in range(self._read, ready)]
        if ready > self._read:
            self._fbank.pop(ready - self._read)
        self._read = ready
        return self._score(self._splice(new, final))

    def silence_scores(self, samples: np.ndarray) -> tuple[np.ndarray, SimpleNamespace]:
        """A whole recording's silence probability per 10 ms frame, and the model's decision
        options: what the VAD explorer replays its knobs over (vad/analysis.py)."""
        self._new_stream()
        try:
            return self._silence(samples, True), self._model.opts
        finally:
            self._new_stream()

    def _splice(self, new: list[np.ndarray], final: bool) -> np.ndarray:
        """LFR frames for the fbank frames so far: frame i is frames i-2..i+2 side by side
        (lfr_m = 5); the first frame stands in before the stream, the last after it at the end."""
        m, half = self._lfr_m, (self._lfr_m - 1) // 2
        if new and self._spliced == 0 and not self._frames:
            self._frames = [new[0]] * half  # left context of the first frame
        frames = self._frames + new
        if final and frames:
            frames = frames + [frames[-1]] * half
        count = max(len(frames) - m + 1, 0)  # each needs its right context
        out = [np.concatenate(frames[i : i + m]) for i in range(count)]
        self._spliced += count
        self._frames = frames[count:]  # the next one's left context and what it waits for
        if not out:
            return np.zeros((0, self._model.shift.shape[0]), np.float32)
        return (np.stack(out) + self._model.shift) * self._model.scale

    def _score(self, feats: np.ndarray) -> np.ndarray:
        if not len(feats):
            return np.zeros(0)
        m = self._model
        names = [o.name for o in m.session.get_outputs()]
        inputs = {
            "speech": feats[None].astype(np.float32),
            **{c.name: v for c, v in zip(m.caches, self._caches, strict=False)},
        }
        outputs = dict(zip(names, m.session.run(names, inputs), strict=False))
        self._caches = [outputs["out" + c.name[2:]] for c in m.caches]
        return outputs["logits"][0, :, int(m.opts.sil_pdf_ids[0])].astype(np.float64)

    @property
    def trailing_silence_ms(self) -> int:
        return self._decisions.trailing_silence_ms if self.in_speech else 0

    def predicted_end(self) -> PredictedEnd | None:
        p = self.params
        found = self._decisions.predicted_end(p["end_silence_ms"], p["max_segment_s"]) if self.in_speech else None
        if found is None:
            return None
        origin = self._offset // SAMPLES_PER_MS
        # a frame is judged once its right context is in: half the splice and one fbank window later
        context_ms = (self._lfr_m - 1) // 2 * 10 + int(self._model.frontend.get("frame_length", 25))
        return PredictedEnd(origin + found[0], origin + found[1] + context_ms)

    def speech_until_ms(self) -> int | None:
        until = self._decisions.speech_until_ms if self.in_speech else None
        return None if until is None else self._offset // SAMPLES_PER_MS + until

    def reset(self) -> None:
        self._offset = 0
        self._new_stream()
        super().reset()
