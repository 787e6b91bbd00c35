"""ct-punc (CT-Transformer punctuation) on onnxruntime, without torch or funasr: funasr's export
(``model.onnx``: word ids ``inputs [B, N]`` and ``text_lengths`` -> one punctuation ``logits``
row per word), fed and read as funasr's torch ``CTTransformer.inference`` does, so
``punctuation=True`` gives the same text on either runtime.

* Words: each run of ASCII characters is one word, every other character its own (or, where the
  folder names a ``jieba_usr_dict``, Chinese runs cut by jieba with that dictionary); ids from
  the folder's token list, unknown words as <unk>.
* Mini-sentences of 20 words: each is decoded with the words carried over from the one before;
  what follows its last full stop or question mark is carried on to the next (a carry over 200
  words is cut at its last comma).
* Marks: the label's mark after each word (ASCII ``, . ?`` after an English word), English
  words spaced and capitalised at a sentence start, and the text closed with a full stop.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .. import _torch
from ..errors import MissingDependencyError, ModelLoadError
from ..frontend import read_config, read_tokens
from ..onnx_session import check_inputs, check_width, open_session

WORDS_PER_CALL = 20  # funasr's split_size
LONGEST_CARRY = 200  # words carried over before a comma counts as a sentence end
FULL_STOPS = ("。", "？")
ASCII_MARKS = {"，": ",", "。": ".", "？": "?"}
NONE = "_"  # the label of "no mark"
_ENGLISH = re.compile(r"^[a-zA-Z']+$")


def _ascii(word: str) -> bool:
    """funasr's test of a word's script: its first character is one UTF-8 byte."""
    return len(word[0].encode()) == 1


class CtPuncOnnx:
    """A ct-punc folder's export with its token list and punctuation labels."""

    def __init__(self, path: Path):
        folder = path.parent
        config = read_config(folder)
        tokens = read_tokens(folder, config, "ct-punc")
        conf = config.get("model_conf") or {}
        self.marks: list[str] = list(conf.get("punc_list") or [])
        if not self.marks:
            raise ModelLoadError(
                f"{folder}/config.yaml names no punctuation labels (model_conf.punc_list).",
                "Fetch or copy the ct-punc folder again.",
                code="weights-missing",
            )
        self.sentence_end = int(conf.get("sentence_end_id", 3))
        self.ids = {t: i for i, t in enumerate(tokens)}
        unk = (config.get("tokenizer_conf") or {}).get("unk_symbol", "<unk>")
        self.unk = self.ids.get(unk, len(tokens) - 1)
        self.jieba = _jieba(folder, config.get("jieba_usr_dict"))
        self.session = open_session(path, _torch.threads())
        check_inputs(self.session, path, {"inputs": 2, "text_lengths": 1})
        check_width(path, self.session.get_outputs()[0].shape[-1], len(self.marks), "punctuation marks")

    def words(self, text: str) -> list[str]:
        """funasr's split_words: the words ct-punc labels."""
        if self.jieba is not None:
            return self._jieba_words(text)
        words: list[str] = []
        for chunk in text.split():
            run = ""
            for c in chunk:
                if len(c.encode()) == 1:
                    run += c
                    continue
                if run:
                    words.append(run)
                    run = ""
                words.append(c)
            if run:
                words.append(run)
        return words

    def _jieba_words(self, text: str) -> list[str]:
        groups: list[tuple[bool, list[str]]] = []  # (English?, words), alternating scripts
        for word in text.split():
            english = bool(_ENGLISH.match(word))
            if groups and groups[-1][0] == english:
                groups[-1][1].append(word)
            else:
                groups.append((english, [word]))
        words: list[str] = []
        for english, group in groups:
            if english:
                words += group
            else:
                line = "".join(" " + w if _ENGLISH.match(w) else w for w in group).strip()
                words += list(self.jieba.cut(line, HMM=False))
        return words

    def labels(self, ids: list[int]) -> np.ndarray:
        """The best label of each word of one mini-sentence."""
        (logits,) = self.session.run(
            ["logits"], {"inputs": np.array([ids], np.int32), "text_lengths": np.array([len(ids)], np.int32)}
        )
        return logits[0].argmax(-1)

    def punctuate(self, text: str) -> str:
        """The text with ct-punc's marks, as funasr's torch ct-punc gives it."""
        if not text or not text.strip():
            return ""
        words = self.words(text)
        ids = [self.ids.get(w, self.unk) for w in words]
        chunks = [range(i, min(i + WORDS_PER_CALL, len(words))) for i in range(0, len(words), WORDS_PER_CALL)]
        out = ""
        carry_words: list[str] = []
        carry_ids: list[int] = []
        for n, chunk in enumerate(chunks):
            part = carry_words + [words[i] for i in chunk]
            part_ids = carry_ids + [ids[i] for i in chunk]
            marks = [int(x) for x in self.labels(part_ids)]
            if n < len(chunks) - 1:
                end, comma = -1, -1
                for i in range(len(marks) - 2, 1, -1):
                    if self.marks[marks[i]] in FULL_STOPS:
                        end = i
                        break
                    if comma < 0 and self.marks[marks[i]] == "，":
                        comma = i
                if end < 0 and len(part) > LONGEST_CARRY and comma >= 0:
                    end = comma
                    marks[end] = self.sentence_end
                carry_words, carry_ids = part[end + 1 :], part_ids[end + 1 :]
                part, marks = part[: end + 1], marks[: end + 1]
            out += self._join(part, marks)
        return self._close(out) if out else out

    def _join(self, words: list[str], marks: list[int]) -> str:
        pieces: list[str] = []
        for i, word in enumerate(words):
            if (i == 0 or self.marks[marks[i - 1]] in FULL_STOPS) and _ascii(word):
                word = word.capitalize()
            if i == 0 and _ascii(word) or i > 0 and _ascii(word) and _ascii(words[i - 1]):
                word = " " + word
            words[i] = word  # the next word's test sees this one as written (funasr's list)
            pieces.append(word)
            mark = self.marks[marks[i]]
            if mark != NONE:
                pieces.append(ASCII_MARKS.get(mark, mark) if _ascii(word) else mark)
        return "".join(pieces)

    @staticmethod
    def _close(text: str) -> str:
        """funasr's last step: end the text with a full stop (a trailing comma becomes one)."""
        last = text[-1]
        if last in ("，", "、"):
            return text[:-1] + "。"
        if last == ",":
            return text[:-1] + "."
        if last not in FULL_STOPS and len(last.encode()) != 1:
            return text + "。"
        if last not in (".", "?") and len(last.encode()) == 1:
            return text + "."
        return text


def _jieba(folder: Path, name: object):
    """jieba with the folder's user dictionary, where its config names one (the large ct-punc
    cuts Chinese into words with it, as funasr does); None when it names none."""
    if not isinstance(name, str):
        return None
    path = folder / Path(name).name
    try:
        import jieba  # type: ignore[import-untyped]
    except ImportError as exc:
        raise MissingDependencyError(
            f"This ct-punc folder cuts Chinese into words with jieba ({path.name}), which is not installed.",
            "pip install jieba in the kernel's environment, then restart the kernel",
            package="jieba",
            extra="onnx",
        ) from exc
    jieba.load_userdict(str(path))
    return jieba
