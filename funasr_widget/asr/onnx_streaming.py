"""paraformer-zh-streaming on onnxruntime, without torch or funasr: the twin of the torch
streaming engine (asr/streaming.py), giving its text call by call.

The graphs are this package's own export (export_streaming.py): the encoder and decoder with
their look-back caches as inputs and outputs, so the 600 ms steps look back 4 encoder chunks
and 1 decoder chunk as the torch path does. Around them, in numpy, what funasr's
``ParaformerStreaming.inference`` keeps between calls:

* the samples short of a 600 ms step (``prev_samples``), and the online frontend's state
  (samples short of a 10 ms frame, filter-bank frames not yet spliced into an LFR frame);
* the encoder's position, its feature overlap and its per-layer look-back keys and values;
* the CIF's carried weight and frame (a token may straddle two steps);
* the decoder's FSMN memories and cross-attention look-back.

``final`` flushes as funasr does: the rest of the audio (or, under 60 ms of it, the last
window's look-ahead frames again), the CIF tail weight, then a fresh state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import _torch
from ..errors import ModelLoadError
from ..frontend import Frontend, model_frontend, read_config, read_tokens
from ..onnx_session import check_inputs, check_width, export_command, open_session
from .base import LoadedModel
from .streaming import DECODING, STEP, StreamingEngine

GRAPHS = "funasr-widget streaming paraformer 1"  # export_streaming.GRAPHS (no torch import here)
DECODER, DECODER_INT8 = "decoder.onnx", "decoder_quant.onnx"
TAIL_SAMPLES = 960  # a final piece shorter than this re-decodes the look-ahead frames (funasr)
DROPPED = ("<s>", "</s>", "<unk>", "<OOV>")  # tokens funasr's sentence_postprocess leaves out

# --- the online frontend -------------------------------------------------------------


@dataclass
class _FrontendState:
    samples: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # short of a frame
    splice: np.ndarray | None = None  # filter-bank frames not yet in an LFR frame


def _online_lfr(inputs: np.ndarray, m: int, n: int, final: bool) -> tuple[np.ndarray, np.ndarray]:
    """funasr's WavFrontendOnline.apply_lfr: the LFR rows ready now and the frames kept for the
    next call; the last row is padded with the last frame only when ``final``."""
    total, dim = inputs.shape
    rows = int(np.ceil((total - (m - 1) // 2) / n))
    splice = rows
    last = (total - m) // n + 1
    padding = m - (total - last * n)
    padded = inputs
    if final:
        if padding > 0:
            copies = int((2 * m - 2 * total + (rows - 1 + last) * n) / 2 * (rows - last))
            padded = np.concatenate([inputs] + [inputs[-1:]] * copies)
    elif padding > 0:
        rows = splice = last
    splice = min(total - 1, splice * n)
    flat = padded.reshape(-1)
    rows = max(rows, 0)
    if rows and (rows - 1) * n * dim + m * dim > flat.size:
        raise ValueError(f"LFR over {total} frames needs more than it has")
    index = (np.arange(rows)[:, None] * n * dim + np.arange(m * dim)[None, :]).reshape(-1)
    return flat[index].reshape(rows, m * dim), inputs[splice:]


def online_features(frontend: Frontend, state: _FrontendState, samples: np.ndarray, final: bool) -> np.ndarray | None:
    """funasr's WavFrontendOnline on one piece of audio: [rows, lfr_m * n_mels] after am.mvn,
    or None where it gives no frames."""
    frame = int(frontend.options.frame_opts.frame_length_ms * frontend.options.frame_opts.samp_freq / 1000)
    shift = int(frontend.options.frame_opts.frame_shift_ms * frontend.options.frame_opts.samp_freq / 1000)
    m, n = frontend.lfr_m, frontend.lfr_n
    audio = np.concatenate([state.samples, samples])
    frames = int((len(audio) - frame) / shift + 1)
    frames = frames if frames >= 1 and len(audio) >= frame else 0
    state.samples = audio[-(len(audio) - frames * shift) :]  # as funasr slices (all of it when 0 frames)
    if frames:
        feats = frontend.fbank(audio)
        if state.splice is None:
            state.splice = np.repeat(feats[:1], (m - 1) // 2, 0)
        if not (final or len(feats) + len(state.splice) >= m):
            state.splice = np.concatenate([state.splice, feats])
            return None
        stacked = np.concatenate([state.splice, feats])
    elif final and state.splice is not None:
        stacked = state.splice
    else:
        return None
    if m == 1 and n == 1:
        rows, state.splice = stacked, stacked[len(stacked) :]
    else:
        rows, state.splice = _online_lfr(stacked, m, n, final)
    return frontend.normalize(rows).astype(np.float32)


# --- funasr's text post-processing ----------------------------------------------------


def _hanzi_like(text: str) -> bool:
    # funasr compares whole strings against the CJK and digit ranges (so "12" counts)
    return "\u4e00" <= text <= "\u9fff" or "0" <= text <= "9" or text == "@"


def _cleaned(items) -> list[str]:
    out = []
    for item in items:
        for mark in (" ", "</s>", "<s>", "<unk>", "<OOV>"):
            item = item.replace(mark, "")
        out.append(item)
    return out


def _all_hanzi(items) -> bool:
    cleaned = _cleaned(items)
    return bool(cleaned) and all(_hanzi_like(c) for c in cleaned)


def _all_letters(items) -> bool:
    cleaned = _cleaned(items)
    return bool(cleaned) and all((c.isalpha() or c == "'") and not (c.isalpha() and _hanzi_like(c)) for c in cleaned)


def _letter(word: str) -> bool:
    return len(word) == 1 and word.encode("utf-8").isalpha()


def _join_abbreviations(words: list[str]) -> list[str]:
    """Single letters separated by spaces ("a b c") become one upper-case word ("ABC")."""
    size, begins, ends, skip_to = len(words), [], [], -1
    for i in range(size):
        if i <= skip_to or not _letter(words[i]):
            continue
        if i + 2 < size and words[i + 1] == " " and _letter(words[i + 2]):
            begins.append(i)
            end = i + 2
            # funasr skips past an abbreviation only when it grew beyond its first two letters
            while end + 2 < size and words[end + 1] == " " and _letter(words[end + 2]):
                end = skip_to = end + 2
            ends.append(end)
    out, skip_to = [], -1
    for i in range(size):
        if i <= skip_to:
            continue
        if i not in begins:
            out.append(words[i])
            continue
        word, j = words[i].upper(), i + 1
        while j < size:
            if j in ends:
                word += words[j].upper()
                skip_to = j
                break
            if words[j].encode("utf-8").isalpha():
                word += words[j].upper()
            j += 1
        out.append(word)
    return out


def sentence(tokens: list[str]) -> str:
    """The text funasr's sentence_postprocess makes of a Paraformer's tokens: characters
    joined, "@@" pieces glued to the next, words of letters spaced, and spelt-out letters
    joined into one upper-case abbreviation."""
    words = [t for t in tokens if t not in DROPPED]
    pieces: list[str] = []
    if _all_hanzi(words):
        pieces = [w.replace(" ", "") for w in words]
    elif _all_letters(words):
        item = ""
        for w in words:
            if "@@" in w:
                item += w.replace("@@", "")
            else:
                pieces += [item + w, " "]
                item = ""
    else:
        item, spaced = "", False
        for w in words:
            if _all_hanzi(w):
                if spaced:
                    pieces.pop()
                pieces.append(w)
                spaced = False
            elif "@@" in w:
                item += w.replace("@@", "")
                spaced = False
            elif _all_letters(w):
                pieces += [item + w, " "]
                item, spaced = "", True
            else:
                pieces.append(w)
    return "".join(_join_abbreviations(pieces)).strip()


# --- the model --------------------------------------------------------------------------


@dataclass
class StreamState:
    """One segment's decoding state (what funasr's ``cache`` dict holds)."""

    pending: list[np.ndarray] = field(default_factory=list)  # the engine's: audio not yet sent
    size: int = 0
    previous: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # short of a step
    frontend: _FrontendState = field(default_factory=_FrontendState)
    start: int = 0  # LFR frames seen (the position encoding)
    feats: np.ndarray | None = None  # the last window's look-ahead frames
    keys: np.ndarray | None = None  # encoder look-back [layers, 1, heads, frames, d_k]
    values: np.ndarray | None = None
    cif_weight: np.float32 = field(default_factory=lambda: np.float32(0.0))
    cif_frame: np.ndarray | None = None
    fsmn: np.ndarray | None = None  # decoder FSMN memories [layers, 1, dim, kernel - 1]
    cross_keys: np.ndarray | None = None  # decoder look-back [layers, 1, heads, frames, d_k]
    cross_values: np.ndarray | None = None


def _settings(session) -> dict:
    """What the export recorded in the graph's metadata (JSON values; the quantizer's own
    entries are left out)."""
    found = {}
    for key, value in session.get_modelmeta().custom_metadata_map.items():
        try:
            found[key] = json.loads(value)
        except ValueError:
            continue
    return found


class ParaformerStreamingOnnx:
    """The two graphs, the folder's frontend and tokens, and the state loop between them."""

    def __init__(self, encoder_path: Path):
        """``encoder_path``: model.onnx (fp32) or model_quant.onnx (int8); the decoder of the same
        precision sits beside it."""
        folder = encoder_path.parent
        decoder_path = folder / (DECODER_INT8 if encoder_path.name.endswith("_quant.onnx") else DECODER)
        if not decoder_path.is_file():
            raise ModelLoadError(
                f"{folder} has {encoder_path.name} but not {decoder_path.name}: the streaming "
                "Paraformer needs both graphs.",
                f"Write them again: {export_command(folder)}",
                code="weights-corrupt",
            )
        config = read_config(folder)
        self.frontend = model_frontend(folder, config)
        self.tokens = read_tokens(folder, config, "the streaming Paraformer")
        threads = _torch.threads()
        self.encoder = open_session(encoder_path, threads)
        self.decoder = open_session(decoder_path, threads)
        if {i.name for i in self.encoder.get_inputs()} == {"speech", "speech_lengths"}:
            raise ModelLoadError(
                f"{encoder_path} is funasr's own streaming export (funasr-export, or the hub's -onnx "
                "repository): its encoder has no look-back caches, so it cannot give the text of the torch "
                "path, which looks back 4 encoder chunks and 1 decoder chunk.",
                "Write this package's streaming export from the torch weights (model.pt: "
                f"funasr_widget.models.fetch(name) brings them): {export_command(folder)}",
                code="onnx-missing",
            )
        enc_inputs = {"speech": 3, "start_idx": 1, "feats_cache": 3, "cache_k": 5, "cache_v": 5}
        check_inputs(self.encoder, encoder_path, enc_inputs)
        dec_inputs = {"encoder_out": 3, "acoustic_embeds": 3, "fsmn_cache": 4, "cross_k": 5, "cross_v": 5}
        check_inputs(self.decoder, decoder_path, dec_inputs)
        meta = _settings(self.encoder)
        if meta.get("graphs") != GRAPHS or meta.get("chunk_size") != DECODING["chunk_size"]:
            raise ModelLoadError(
                f"{encoder_path} is not the streaming export this package runs (it has {meta.get('graphs')!r}).",
                f"Delete it and write it again: {export_command(folder)}",
                code="weights-corrupt",
            )
        check_width(decoder_path, self.decoder.get_outputs()[0].shape[-1], len(self.tokens), "token list")
        self.chunk = list(meta["chunk_size"])
        self.encoder_look_back = int(meta["encoder_chunk_look_back"]) * self.chunk[1]
        self.decoder_look_back = int(meta["decoder_chunk_look_back"]) * self.chunk[1]
        self.scale = np.float32(meta["scale"])
        self.drop = {int(meta["sos"]), int(meta["eos"]), int(meta["blank_id"])}
        self.threshold = float(meta["threshold"])
        self.tail = np.float32(meta["tail_threshold"])
        inputs = {i.name: i.shape for i in self.encoder.get_inputs()}
        self.feature_dim = int(inputs["speech"][2])
        self.overlap = int(inputs["feats_cache"][1])
        self.enc_layers, _, self.enc_heads, _, self.enc_dk = inputs["cache_k"]
        dec = {i.name: i.shape for i in self.decoder.get_inputs()}
        self.dim = int(dec["encoder_out"][2])
        self.fsmn_shape = tuple(int(d) for d in dec["fsmn_cache"])
        self.cross_shape = tuple(dec["cross_k"])

    def new_state(self) -> StreamState:
        state = StreamState()
        state.feats = np.zeros((1, self.overlap, self.feature_dim), np.float32)
        state.keys = np.zeros((self.enc_layers, 1, self.enc_heads, 0, self.enc_dk), np.float32)
        state.values = state.keys
        state.cif_frame = np.zeros(self.dim, np.float32)
        state.fsmn = np.zeros(self.fsmn_shape, np.float32)
        layers, _, heads, _, d_k = self.cross_shape
        state.cross_keys = np.zeros((layers, 1, heads, 0, d_k), np.float32)
        state.cross_values = state.cross_keys
        return state

    def generate(self, state: StreamState, samples: np.ndarray, final: bool) -> str:
        """funasr's ParaformerStreaming.inference on one call's audio: the text of the tokens
        decoded from every whole 600 ms step in it (and, with ``final``, from the rest)."""
        audio = np.concatenate([state.previous, np.asarray(samples, np.float32)])
        steps = len(audio) // STEP + int(final)
        rest = 0 if final else len(audio) % STEP
        tokens: list[str] = []
        for i in range(steps):
            last = final and i == steps - 1
            tokens += self._step(state, audio[i * STEP : (i + 1) * STEP], last)
        state.previous = audio[len(audio) - rest :] if rest else np.zeros(0, np.float32)
        if final:
            state.__dict__.update(self.new_state().__dict__)
        return sentence(tokens)

    def _step(self, state: StreamState, piece: np.ndarray, final: bool) -> list[str]:
        assert state.feats is not None and state.keys is not None and state.values is not None
        if final and len(piece) < TAIL_SAMPLES:
            # funasr re-encodes the last window's look-ahead frames (scaled once more, as its
            # in-place scaling of that cache leaves them) and no new frames
            speech = np.zeros((1, 0, self.feature_dim), np.float32)
            overlap = state.feats * self.scale
        else:
            feats = online_features(self.frontend, state.frontend, piece, final)
            if feats is None:  # funasr fails on a step without frames; none of its steps is one
                return []
            speech, overlap = feats[None], state.feats
        encoder_out, alphas, next_feats, keys, values = self.encoder.run(
            None,
            {
                "speech": speech,
                "start_idx": np.array([state.start], np.int64),
                "feats_cache": overlap,
                "cache_k": state.keys,
                "cache_v": state.values,
            },
        )
        state.start += speech.shape[1]
        if speech.shape[1]:
            state.feats = next_feats
        kept = keys.shape[3] - self.chunk[2]
        state.keys = np.concatenate([state.keys, keys[:, :, :, :kept]], 3)[:, :, :, -self.encoder_look_back :]
        state.values = np.concatenate([state.values, values[:, :, :, :kept]], 3)[:, :, :, -self.encoder_look_back :]
        weights = alphas[0].copy()
        weights[: self.chunk[0]] = 0.0
        if not final:
            weights[self.chunk[0] + self.chunk[1] :] = 0.0
        embeds = self._cif(state, encoder_out[0], weights, final)
        if not len(embeds):
            return []
        log_probs, fsmn, cross_keys, cross_values = self.decoder.run(
            None,
            {
                "encoder_out": encoder_out,
                "acoustic_embeds": embeds[None],
                "fsmn_cache": state.fsmn,
                "cross_k": state.cross_keys,
                "cross_v": state.cross_values,
            },
        )
        state.fsmn = fsmn
        back = self.decoder_look_back
        state.cross_keys = np.concatenate([state.cross_keys, cross_keys], 3)[:, :, :, -back:]
        state.cross_values = np.concatenate([state.cross_values, cross_values], 3)[:, :, :, -back:]
        ids = log_probs[0].argmax(-1).tolist()
        return [self.tokens[i] for i in ids if i not in self.drop]

    def _cif(self, state: StreamState, hidden: np.ndarray, alphas: np.ndarray, final: bool) -> np.ndarray:
        """funasr's CifPredictorV2.forward_chunk after the weights: integrate weight by weight,
        firing a token each time the sum reaches the threshold, the remainder carried to the
        next step (float32 throughout, in funasr's order)."""
        assert state.cif_frame is not None
        hidden = np.concatenate([state.cif_frame[None], hidden])
        alphas = np.concatenate([[state.cif_weight], alphas]).astype(np.float32)
        if final:
            hidden = np.concatenate([hidden, np.zeros((1, hidden.shape[1]), np.float32)])
            alphas = np.concatenate([alphas, [self.tail]]).astype(np.float32)
        integrate = np.float32(0.0)
        frame = np.zeros(hidden.shape[1], np.float32)
        fired = []
        for alpha, h in zip(alphas, hidden, strict=True):
            if alpha + integrate < self.threshold:
                integrate = integrate + alpha
                frame = frame + alpha * h
            else:
                frame = frame + (np.float32(self.threshold) - integrate) * h
                fired.append(frame)
                integrate = integrate + alpha
                integrate = integrate - np.float32(self.threshold)
                frame = integrate * h
        state.cif_weight = integrate
        state.cif_frame = frame / integrate if integrate > 0.0 else frame
        return np.stack(fired).astype(np.float32) if fired else np.zeros((0, hidden.shape[1]), np.float32)


class OnnxStreamingEngine(StreamingEngine):
    """StreamingEngine on onnxruntime: the same steps, partials and flush, without torch."""

    def __init__(self, loaded: LoadedModel, options: dict):
        super().__init__(loaded, options)
        if self.options.get("punctuation"):  # as the torch path (asr/__init__.py)
            raise ModelLoadError(
                f"punctuation=True is for segment models, not {self.name}.",
                "Punctuate the final segment texts instead.",
            )

    def new_stream(self) -> StreamState:
        return self.model.new_state()

    def _step(self, stream: StreamState, chunk: np.ndarray, final: bool) -> str:
        return str(self.model.generate(stream, chunk, final))
