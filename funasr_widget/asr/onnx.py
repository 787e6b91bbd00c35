"""ASR on onnxruntime, without torch or funasr: FunASR's own ONNX export of a model folder
(``python -m funasr_widget.models export``, or the hub's ``-onnx`` repositories), fed the
model's own features (frontend.py) and decoded as funasr decodes it.

* SenseVoiceSmall (``model.onnx``: LFR features after am.mvn, a language and a text-norm id ->
  CTC logits): greedy CTC, the same tags, and word times from the same CTC forced alignment
  funasr's ``output_timestamp=True`` runs. Here.
* paraformer-zh (SeacoParaformer, without hotwords: ``hotword=`` needs runtime='torch'): CIF
  tokens, funasr's text clean-up and its CIF-peak token times (asr/onnx_paraformer.py).
* ct-punc for ``punctuation=True``, applied to each segment's text as funasr applies it
  (asr/onnx_punc.py).
* paraformer-zh-streaming: encoder and decoder graphs with their look-back state
  (asr/onnx_streaming.py, its own engine).

An engine here is the torch engine's twin (asr/segment.py): the same options, the same result
dicts, built on a :class:`LoadedModel` whose ``auto`` is the ONNX model. Loading picks
``model_quant.onnx`` (int8) when the folder has one, else ``model.onnx`` (fp32); ct-punc's file
is of the same precision. A model family is registered in MODELS (architecture -> its class).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import numpy as np

from .. import _cache, _torch, models
from ..dependencies import install_hint, installed, require
from ..errors import ModelLoadError
from ..frontend import model_frontend, read_config
from ..models import Progress
from ..onnx_session import check_inputs, export_command, open_session
from . import timestamps
from .base import Engine, LoadedModel
from .onnx_paraformer import ParaformerOnnx
from .onnx_punc import CtPuncOnnx
from .onnx_streaming import ParaformerStreamingOnnx
from .segment import MIN_SAMPLES, parse_tags

FP32, INT8 = "model.onnx", "model_quant.onnx"
RUNTIMES = ("torch", "onnx", "auto")
HOTWORDS = "SeacoParaformer"  # its hotwords need SeACo's own graph, which this runtime does not run


@dataclass(frozen=True)
class Choice:
    """Which runtime loads a folder, from which file, and why (for model_info and diagnose())."""

    runtime: str  # "torch" | "onnx"
    file: str | None  # the .onnx file, for "onnx"
    reason: str

    @property
    def precision(self) -> str | None:
        return None if self.file is None else ("int8" if self.file == INT8 else "fp32")

    def info(self) -> dict:
        """For model_info["runtime"] and diagnose()."""
        return {"runtime": self.runtime, "file": self.file, "precision": self.precision, "reason": self.reason}

    def describe(self) -> str:
        if self.runtime == "torch":
            return f"runtime torch: {self.reason}"
        return f"runtime onnx, {self.file} ({self.precision}): {self.reason}"


def export_file(folder: Path) -> str | None:
    """The ONNX file a folder holds: int8 when there is one (a third of the memory, and faster
    on CPUs with VNNI), else fp32; None when there is none."""
    return next((name for name in (INT8, FP32) if (Path(folder) / name).is_file()), None)


def torch_installed() -> bool:
    """Can this kernel run the torch engines (torch and funasr importable)?"""
    return installed("torch", "funasr")


def choose(runtime: str, folder: Path, architecture: str) -> Choice:
    """Which runtime loads the folder. "auto": torch where torch and funasr are installed and
    the folder has model.pt, else the folder's ONNX export; "onnx" and "torch" as asked."""
    folder = Path(folder)
    file = export_file(folder) if architecture in SUPPORTED else None
    if runtime == "onnx":
        if file is None:
            raise no_export(folder, architecture)
        return Choice("onnx", file, "runtime='onnx' was asked for")
    has_weights = (folder / "model.pt").is_file()
    if runtime == "torch":
        if not has_weights:
            raise ModelLoadError(
                f"{folder} holds only an ONNX export ({file or 'no model.pt'}): torch needs model.pt.",
                "Use runtime='onnx' (or 'auto'), or fetch the model's torch files: funasr_widget.models.fetch(name).",
                code="weights-missing",
            )
        return Choice("torch", None, "runtime='torch' was asked for")
    if torch_installed() and has_weights:
        return Choice("torch", None, "torch and funasr are installed (runtime='onnx' runs the ONNX export)")
    if file is not None:
        why = "torch or funasr is not installed" if has_weights else "the folder has no model.pt"
        return Choice("onnx", file, why)
    if not has_weights:
        raise no_export(folder, architecture)
    raise ModelLoadError(
        "Neither torch and funasr nor an ONNX export are here to run this model "
        f"({folder} has model.pt but no {FP32} / {INT8}).",
        f"{install_hint('asr')}; or, for a kernel without torch (pip install 'funasr-widget[onnx]'), write "
        f"the export once where torch is installed: {export_command(folder)}",
        code="asr-missing",
    )


def no_export(folder: Path, architecture: str) -> ModelLoadError:
    if architecture not in SUPPORTED:
        return ModelLoadError(
            f"runtime='onnx' does not run {architecture} models yet (it runs {', '.join(SUPPORTED)}).",
            "Use runtime='torch' (pip install 'funasr-widget[asr]').",
            code="onnx-unsupported",
        )
    return ModelLoadError(
        f"{folder} has no ONNX export ({FP32} or {INT8}) for runtime='onnx'.",
        f"Write it once where torch and funasr are installed: {export_command(folder)} "
        "(or funasr_widget.models.fetch(name, runtime='onnx') for a model the hub publishes as ONNX).",
        code="onnx-missing",
    )


def load(folder: Path, architecture: str, name: str, choice: Choice) -> LoadedModel:
    """The folder's ONNX model (``choice.file``), once per file in the process
    (models.release() frees it)."""
    if choice.file is None or architecture not in SUPPORTED:
        raise no_export(folder, architecture)
    path = Path(folder) / choice.file
    model = _cache.shared(("asr-onnx", str(folder), "cpu", choice.file), lambda: MODELS[architecture](path))
    return LoadedModel(
        model, name=name, path=Path(folder), device="cpu", architecture=architecture, notes=(choice.describe(),)
    )


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def ctc_forced_align(log_probs: np.ndarray, targets: list[int], blank: int = 0) -> np.ndarray:
    """For each frame, the target it is aligned to (or ``blank``): the Viterbi path through
    the CTC graph (blank, t1, blank, t2, ..., blank), as funasr's ctc_forced_align."""
    ext = np.full(2 * len(targets) + 1, blank, np.int64)
    ext[1::2] = targets
    frames, states = len(log_probs), len(ext)
    skip = np.zeros(states, bool)  # a state may be reached from two back: a new, different label
    skip[2:] = ext[2:] != ext[:-2]
    best = np.full(states, -np.inf)
    best[0], best[1] = log_probs[0, blank], log_probs[0, ext[1]]
    back = np.zeros((frames, states), np.int64)
    for t in range(1, frames):
        one = np.concatenate([[-np.inf], best[:-1]])
        two = np.where(skip, np.concatenate([[-np.inf, -np.inf], best[:-2]]), -np.inf)
        prev = np.stack([best, one, two])
        back[t] = prev.argmax(0)
        best = log_probs[t, ext] + prev.max(0)
    state = states - 2 + int(best[states - 1] > best[states - 2]) if states > 1 else 0
    path = np.zeros(frames, np.int64)
    path[-1] = state
    for t in range(frames - 1, 0, -1):
        path[t - 1] = path[t] - back[t, path[t]]
    return ext[path]


class SenseVoiceOnnx:
    """SenseVoiceSmall's export with its frontend and tokenizer."""

    # The ids of the language and text-norm queries in SenseVoiceSmall's embedding (funasr's
    # lid_dict and textnorm_dict): fixed by the architecture, not stored in the folder.
    LANGUAGE = {"auto": 0, "zh": 3, "en": 4, "yue": 7, "ja": 11, "ko": 12, "nospeech": 13}
    TEXT_NORM = {"withitn": 14, "woitn": 15}
    QUERIES = 4  # language, event, emotion and text-norm frames before the speech
    BLANK = 0
    FRAME_MS = 60  # one LFR frame (6 x 10 ms)

    def __init__(self, path: Path):
        folder = path.parent
        config = read_config(folder)
        self.frontend = model_frontend(folder, config)
        spm = require("sentencepiece", "onnx", "SenseVoice's tokenizer")
        bpe = (config.get("tokenizer_conf") or {}).get("bpemodel")
        candidates = [folder / Path(bpe).name] if bpe else []
        candidates += sorted(folder.glob("*.bpe.model")) + [folder / "bpe.model"]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise ModelLoadError(
                f"{folder} has no sentencepiece model (bpe.model) for SenseVoice's tokens.",
                "Fetch or copy the model folder again.",
                code="weights-missing",
            )
        self.tokenizer = spm.SentencePieceProcessor(model_file=str(found))
        self.session = open_session(path, _torch.threads())
        check_inputs(self.session, path, {"speech": 3, "speech_lengths": 1, "language": 1, "textnorm": 1})
        vocab = self.session.get_outputs()[0].shape[-1]
        if isinstance(vocab, int) and vocab != self.tokenizer.get_piece_size():
            raise ModelLoadError(
                f"{path} gives {vocab} tokens but {found.name} has {self.tokenizer.get_piece_size()}: "
                "the export is not of this folder's model.",
                f"Delete it and write it again: {export_command(folder)}",
                code="weights-corrupt",
            )

    def logits(self, samples: np.ndarray, language: str, use_itn: bool) -> np.ndarray:
        """[frames, vocab] CTC log-probabilities, the four query frames first."""
        feats = self.frontend.features(samples)
        logits, lengths = self.session.run(
            ["ctc_logits", "encoder_out_lens"],
            {
                "speech": feats[None],
                "speech_lengths": np.array([len(feats)], np.int32),
                "language": np.array([self.LANGUAGE.get(language, 0)], np.int32),
                "textnorm": np.array([self.TEXT_NORM["withitn" if use_itn else "woitn"]], np.int32),
            },
        )
        return _log_softmax(logits[0, : int(lengths[0])].astype(np.float32))

    def generate(self, samples: np.ndarray, language: str = "auto", use_itn: bool = True, times: bool = True) -> dict:
        """What funasr's SenseVoiceSmall.inference gives for one segment: {"text"} and, with
        ``times``, "timestamp" ([[start_ms, end_ms]]) and "words"."""
        log_probs = self.logits(samples, language, use_itn)
        best = [k for k, _ in groupby(log_probs.argmax(-1).tolist())]
        text = self.tokenizer.decode([t for t in best if t != self.BLANK])
        if not times:
            return {"text": text}
        try:
            return {"text": text, **self._times(log_probs, text)}
        except IndexError:  # as the torch path: text without times when the pieces do not line up
            return {"text": text}

    def _times(self, log_probs: np.ndarray, text: str) -> dict:
        tokens = self.tokenizer.encode(text, out_type=str)[self.QUERIES :]
        ids = [i for piece in self.tokenizer.encode(tokens) for i in (piece or [124])]
        if not ids:
            return {}
        speech = log_probs[self.QUERIES :].copy()
        speech[speech.argmax(-1) == self.BLANK, self.BLANK] = 0.0  # as funasr: blank frames stay blank
        aligned = ctc_forced_align(speech, ids, self.BLANK)
        last = (len(speech) * self.FRAME_MS - 30) / 1000
        stamps, start, n = [], 0, 0
        for token, run in groupby(aligned.tolist()):
            end = start + len(list(run))
            if token != self.BLANK:
                left = max((start * self.FRAME_MS - 30) / 1000, 0)
                stamps.append((tokens[n], left, min((end * self.FRAME_MS - 30) / 1000, last)))
                n += 1
            start = end
        return _words(stamps)


def _words(stamps: list[tuple[str, float, float]]) -> dict:
    """funasr's SenseVoice post(): pieces to words ("▁" starts one; ASCII letters join the word
    before), times in whole ms."""
    times: list[list[int]] = []
    words: list[str] = []
    previous = None
    for i, (piece, start, end) in enumerate(stamps):
        begin, finish = int(start * 1000), int(end * 1000)
        if piece == "▁":
            continue
        if i == 0 or piece.startswith("▁"):
            piece = piece[1:] if i and piece.startswith("▁") else piece
            times.append([begin, finish])
            words.append(piece)
        elif previous is not None and previous.isalpha() and previous.isascii() and piece.isalpha() and piece.isascii():
            piece = previous + piece
            times[-1][1] = finish
            words[-1] = piece
        else:
            times.append([begin, finish])
            words.append(piece)
        previous = piece
    return {"timestamp": times, "words": words}


# The model families this runtime runs: architecture (config.yaml's ``model:``) -> the class
# that loads its export. Each has ``generate(samples, language, use_itn, times) -> dict``.
MODELS: dict[str, type] = {
    "SenseVoiceSmall": SenseVoiceOnnx,
    "SeacoParaformer": ParaformerOnnx,
    "ParaformerStreaming": ParaformerStreamingOnnx,  # a streaming engine: onnx_streaming.py
}
SUPPORTED = tuple(MODELS)


def punctuation_model(precision: str | None, progress: Progress | None = None) -> CtPuncOnnx:
    """The ct-punc folder's export (of ``precision``, else the one it has), once per file."""
    folder = models.fetch("ct-punc", progress, runtime="onnx")
    wanted = (INT8, FP32) if precision == "int8" else (FP32, INT8)
    file = next((f for f in wanted if (folder / f).is_file()), None)
    if file is None:
        raise ModelLoadError(
            f"punctuation=True on runtime='onnx' needs ct-punc's ONNX export, and {folder} has none.",
            f"Write it once where torch and funasr are installed: {export_command(folder)}",
            code="onnx-missing",
        )
    return _cache.shared(("punc-onnx", str(folder), "cpu", file), lambda: CtPuncOnnx(folder / file))


class OnnxSegmentEngine(Engine):
    """A segment engine on onnxruntime: what SegmentEngine gives, without torch."""

    def __init__(
        self, loaded: LoadedModel, options: dict, progress: Progress | None = None, precision: str | None = None
    ):
        super().__init__(loaded, options)
        self._language = self.options.get("language") or "auto"
        self._use_itn = self.options.get("use_itn", True)
        self._times = bool(self.options.get("timestamps", True))
        if self.architecture == HOTWORDS and self.options.get("hotword"):
            raise ModelLoadError(
                "hotword= needs SeACo-Paraformer's hotword graph, which runtime='onnx' does not run "
                "(funasr's SeACo export is fixed to the real model's sizes and always mixes the hotword "
                "head in).",
                "Use runtime='torch' (pip install 'funasr-widget[asr]') for hotwords, or leave hotword out.",
                code="onnx-unsupported",
            )
        self._punctuation = punctuation_model(precision, progress) if self.options.get("punctuation") else None

    @property
    def gives_words(self) -> bool:
        return self._times

    def transcribe(self, samples: np.ndarray) -> dict:
        """As SegmentEngine.transcribe: {"text"}, the tags SenseVoice says, and "words"."""
        samples = np.asarray(samples, np.float32).ravel()
        if len(samples) < MIN_SAMPLES:
            return {"text": ""}
        result = self.model.generate(samples, self._language, self._use_itn, self._times)
        if self._punctuation is not None:  # as funasr: ct-punc over the model's whole text, tags and all
            result["text"] = self._punctuation.punctuate(str(result.get("text", "")))
        parsed = parse_tags(str(result.get("text", "")))
        found = timestamps.words(self.architecture, result, parsed["text"]) if self._times else None
        if found is not None:
            parsed["words"] = found
        return parsed
