"""Paraformer (paraformer-zh: SeACo-Paraformer without hotwords) on onnxruntime, without torch
or funasr: the graph ``python -m funasr_widget.models export`` writes (funasr's encoder, CIF
predictor and decoder; export.py says why not funasr's SeACo graph), decoded as funasr's torch
``SeacoParaformer.inference`` decodes it when no hotwords are given.

* ``model.onnx``: ``speech [B, T, 560]`` (LFR features after am.mvn), ``speech_lengths`` ->
  ``logits`` (log-probabilities per CIF token), ``token_num``, and the 3x upsampled CIF weights
  and peaks (``us_alphas``, ``us_cif_peak``) the token times come from.
* Tokens: the argmax of each of the first ``token_num`` rows, less blank, <s> and </s>, named by
  the folder's token list.
* Times: funasr's ``ts_prediction_lfr6_standard`` (a token runs from one CIF fire to the next,
  60 ms LFR frames upsampled 3x, 1.5 frames earlier; silences over 12 frames are cut off).
* Text: funasr's ``sentence_postprocess`` (CJK characters one by one, BPE pieces ``@@`` joined
  into words, spelt-out letters into an upper-case abbreviation), with its times.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import _torch
from ..errors import ModelLoadError
from ..frontend import model_frontend, read_config, read_tokens
from ..onnx_session import check_inputs, check_width, export_command, open_session

FIRE = np.float32(1.0 - 1e-4)  # a CIF weight sum this high fires a token (funasr's threshold)
SHIFT = -1.5  # frames: funasr moves every fire this much earlier
EDGE = 5  # upsampled frames of silence before the first or after the last fire that count as silence
LONGEST = 12  # upsampled frames one token may last; the rest is silence
UPSAMPLE = 3
FRAME_S = 10.0 * 6 / 1000 / UPSAMPLE  # one upsampled frame: a third of a 60 ms LFR frame
SPECIAL = ("<s>", "</s>", "<unk>", "<OOV>")  # dropped from the text
SILENCE = "<sil>"


class ParaformerOnnx:
    """A Paraformer folder's export with its frontend and token list."""

    def __init__(self, path: Path):
        folder = path.parent
        config = read_config(folder)
        self.frontend = model_frontend(folder, config)
        self.tokens = read_tokens(folder, config, "the Paraformer")
        conf = config.get("model_conf") or {}
        self.blank, self.sos, self.eos = (int(conf.get(k, d)) for k, d in (("blank_id", 0), ("sos", 1), ("eos", 2)))
        self.session = open_session(path, _torch.threads())
        check_inputs(self.session, path, {"speech": 3, "speech_lengths": 1})
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        if not {"logits", "token_num", "us_alphas", "us_cif_peak"} <= outputs.keys():
            raise ModelLoadError(
                f"{path} is not the Paraformer export this runtime reads: it gives {sorted(outputs)}, "
                "not logits, token_num, us_alphas and us_cif_peak (funasr's own SeACo export takes "
                "hotword embeddings and always mixes them in).",
                f"Delete it and write it again with this package's command: {export_command(folder)}",
                code="weights-corrupt",
            )
        check_width(path, outputs["logits"][-1], len(self.tokens), "token list")

    def generate(self, samples: np.ndarray, language: str = "auto", use_itn: bool = True, times: bool = True) -> dict:
        """What funasr's SeacoParaformer.inference gives for one segment without hotwords:
        {"text", "timestamp": [[start_ms, end_ms], ...]} (``language``, ``use_itn`` and
        ``times`` change nothing here, as in funasr: its text is the same with or without)."""
        feats = self.frontend.features(samples)
        logits, token_num, alphas, peaks = self.session.run(
            ["logits", "token_num", "us_alphas", "us_cif_peak"],
            {"speech": feats[None], "speech_lengths": np.array([len(feats)], np.int32)},
        )
        count = int(token_num[0])
        if count < 1:
            return {"text": ""}
        ids = logits[0, :count].argmax(-1).tolist()
        tokens = [self.tokens[i] for i in ids if i not in (self.blank, self.sos, self.eos)]
        stamps = token_times(alphas[0].astype(np.float32), peaks[0].astype(np.float32), tokens)
        text, stamps = sentence(tokens, stamps)
        return {"text": text, "timestamp": stamps}


def _fires(alphas: np.ndarray) -> np.ndarray:
    """funasr's cif_wo_hidden: the running CIF weight sum at each frame, less one threshold
    each time it fires (float32, as torch sums)."""
    out = np.empty_like(alphas)
    total = np.float32(0.0)
    for t, alpha in enumerate(alphas):
        total = np.float32(total + alpha)
        out[t] = total
        if total >= FIRE:
            total = np.float32(total - FIRE)
    return out


def token_times(alphas: np.ndarray, peaks: np.ndarray, tokens: list[str]) -> list[list[int]]:
    """[start_ms, end_ms] of each token from the upsampled CIF weights and peaks (funasr's
    ts_prediction_lfr6_standard): a token lasts from its fire to the next; when the peaks do not
    give one fire more than there are tokens, the weights are rescaled to sum to that and fired
    again."""
    if not tokens:
        return []
    if tokens[-1] == "</s>":
        tokens = tokens[:-1]
    fires = np.flatnonzero(peaks >= FIRE) + SHIFT
    if len(fires) != len(tokens) + 1:
        alphas = alphas / np.float32(alphas.sum(dtype=np.float32) / np.float32(len(tokens) + 1))
        peaks = _fires(alphas.astype(np.float32))
        fires = np.flatnonzero(peaks >= FIRE) + SHIFT
    frames = len(peaks)
    spans: list[list[float]] = []
    labels: list[str] = []  # each span's token, or SILENCE
    if fires[0] > EDGE:
        spans.append([0.0, fires[0] * FRAME_S])
        labels.append(SILENCE)
    for i in range(len(fires) - 1):
        labels.append(tokens[i])  # more fires than tokens: funasr's IndexError too
        if fires[i + 1] - fires[i] <= LONGEST:
            spans.append([fires[i] * FRAME_S, fires[i + 1] * FRAME_S])
        else:  # a long gap: the token, then silence
            cut = fires[i] + LONGEST
            spans += [[fires[i] * FRAME_S, cut * FRAME_S], [cut * FRAME_S, fires[i + 1] * FRAME_S]]
            labels.append(SILENCE)
    if frames - fires[-1] > EDGE:
        end = (frames + fires[-1]) * 0.5
        spans[-1][1] = end * FRAME_S
        spans.append([end * FRAME_S, frames * FRAME_S])
        labels.append(SILENCE)
    elif spans:
        spans[-1][1] = frames * FRAME_S
    return [[int(a * 1000), int(b * 1000)] for (a, b), label in zip(spans, labels, strict=False) if label != SILENCE]


def _bare(word: str) -> str:
    for special in (" ", *SPECIAL):
        word = word.replace(special, "")
    return word


def _cjk(word: str) -> bool:
    """funasr's isChinese on a whole string: it sorts between U+4E00 and U+9FFF, or is a digit or @."""
    return "\u4e00" <= word <= "\u9fff" or "0" <= word <= "9" or word == "@"


def _alpha(word: str) -> bool:
    """funasr's test of a letter (or a whole token): alphabetic or an apostrophe, not CJK."""
    return (word.isalpha() or word == "'") and not (word.isalpha() and _cjk(word))


def _all_cjk(words) -> bool:
    """funasr's isAllChinese: of a token list (each token tested whole, its specials taken
    out), or of one token (a string: each character tested)."""
    return bool(words) and all(_cjk(_bare(w)) for w in words)


def _all_letters(words) -> bool:
    """funasr's isAllAlpha, of a token list or of one token's characters, as _all_cjk."""
    return bool(words) and all(_alpha(_bare(w)) for w in words)


def _letter(word: str) -> bool:
    return len(word) == 1 and word.encode("utf-8").isalpha()


def _abbreviations(words: list[str], stamps: list[list[int]]) -> tuple[list[str], list[list[int]]]:
    """funasr's abbr_dispose: single letters separated by " " become one upper-case word
    spanning their times; the other words keep theirs."""
    n = len(words)
    starts: dict[int, int] = {}  # first letter -> last letter of an abbreviation
    i = 0
    while i < n:
        if _letter(words[i]) and i + 2 < n and words[i + 1] == " " and _letter(words[i + 2]):
            last, j = i + 2, i + 3
            while j + 1 < n and words[j] == " " and _letter(words[j + 1]):
                last, j = j + 1, j + 2
            starts[i] = last
            i = last + 1
            continue
        i += 1
    slot, count = [], 0  # index of each word's time (spaces share the next word's)
    for word in words:
        slot.append(count)
        count += word != " "
    out: list[str] = []
    times: list[list[int]] = []
    i = 0
    while i < n:
        if i in starts:
            begin = stamps[slot[i]][0]
            last = starts[i]
            out.append("".join(w.upper() for w in words[i : last + 1] if w.encode("utf-8").isalpha()))
            if stamps and slot[last] < len(stamps):
                times.append([begin, stamps[slot[last]][1]])
            i = last + 1
            continue
        out.append(words[i])
        if words[i] != " " and slot[i] < len(stamps):
            times.append(list(stamps[slot[i]]))
        i += 1
    return out, times


def sentence(tokens: list[str], stamps: list[list[int]]) -> tuple[str, list[list[int]]]:
    """funasr's sentence_postprocess with times: the text (words joined by spaces) and the
    time of each word."""
    words = [t for t in tokens if t not in SPECIAL]
    joined: list[str] = []
    times: list[list[int]] = []
    if _all_cjk(words):
        joined, times = [w.replace(" ", "") for w in words], list(stamps)
    else:
        mixed = not _all_letters(words)
        piece, begin, end, fresh, space = "", -1, -1, True, False
        for i, word in enumerate(words):
            if fresh:
                begin, end = stamps[i]
            if mixed and _all_cjk(word):  # a CJK token: no space before it
                if space:
                    joined.pop()
                joined.append(word)
                times.append([begin, end])
                begin, fresh, space = end, True, False
            elif "@@" in word:  # a piece of a word: the word goes on
                piece += word.replace("@@", "")
                end, fresh, space = stamps[i][1], False, False
            elif not mixed or _all_letters(word):
                joined += [piece + word, " "]
                piece = ""
                end = stamps[i][1]
                times.append([begin, end])
                begin, fresh, space = end, True, True
            else:
                joined.append(word)
    joined, times = _abbreviations(joined, times)
    return " ".join(w for w in joined if w != " ").strip(), times
