"""FunASR's speech frontend without torch or funasr: the features its models are fed, for the
models run on onnxruntime (asr/onnx*.py, vad/fsmn_onnx.py), and the folder's config and token
list as funasr reads them.

The steps are funasr's ``WavFrontend``, with the folder's own ``frontend_conf``:
kaldi-native-fbank filter banks (funasr's fbank when torchaudio is absent) of the samples
scaled to 16-bit levels, no dither (the widget decodes deterministically, as its torch path
does); low frame rate splicing (``lfr_m`` frames side by side every ``lfr_n``, the first frame
repeated before the stream and the last after it); then the folder's am.mvn shift and scale.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ._constants import SAMPLE_RATE
from .errors import ModelLoadError


def read_cmvn(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The shift and scale vectors of a Kaldi nnet-text am.mvn (<AddShift>, <Rescale>)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    found = {}
    for tag, values in zip(lines, lines[1:], strict=False):
        words = values.split()
        if tag.split()[:1] in (["<AddShift>"], ["<Rescale>"]) and words[:1] == ["<LearnRateCoef>"]:
            found[tag.split()[0]] = np.array(words[3:-1], np.float32)
    if len(found) != 2:
        raise ValueError(f"{path} has no <AddShift> and <Rescale> vectors")
    return found["<AddShift>"], found["<Rescale>"]


def read_config(folder: Path) -> dict:
    """A model folder's config.yaml, with the file names its configuration.json gives
    (``file_path_metas``: the hub folders name their tokenizer and CMVN files there)."""
    import yaml

    folder = Path(folder)
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    metas_file = folder / "configuration.json"
    if metas_file.is_file():
        metas = json.loads(metas_file.read_text(encoding="utf-8")).get("file_path_metas") or {}
        for section, value in metas.items():
            if isinstance(value, dict) and isinstance(config.get(section), dict):
                config[section] = {**config[section], **value}
    return config


def read_tokens(folder: Path, config: dict, model: str) -> list[str]:
    """A character-vocabulary model's token list (Paraformer, ct-punc): the file its
    ``tokenizer_conf`` names (``token_list``), else tokens.json or tokens.txt (one a line), as
    funasr's tokenizer reads them. A missing or unreadable list is a ModelLoadError."""
    named = (config.get("tokenizer_conf") or {}).get("token_list")
    candidates = [folder / Path(named).name] if isinstance(named, str) else []
    try:
        for path in [*candidates, folder / "tokens.json", folder / "tokens.txt"]:
            if path.is_file():
                text = path.read_text(encoding="utf-8")
                if path.suffix == ".json":
                    return [str(t) for t in json.loads(text)]
                return [line.rstrip() for line in text.splitlines()]
        problem = "none of tokens.json, tokens.txt"
    except (OSError, ValueError) as err:
        problem = str(err)
    raise ModelLoadError(
        f"{folder} has no readable token list for {model} ({problem}).",
        "Fetch or copy the model folder again.",
        code="weights-missing",
    )


def model_frontend(folder: Path, config: dict) -> Frontend:
    """The features a model folder's ``frontend_conf`` and CMVN file (am.mvn) give."""
    conf = config.get("frontend_conf") or {}
    return Frontend(conf, folder / Path(conf.get("cmvn_file") or "am.mvn").name)


def fbank_options(frontend: dict):
    """kaldi-native-fbank options for a folder's ``frontend_conf``."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = float(frontend.get("fs", SAMPLE_RATE))
    opts.frame_opts.frame_length_ms = float(frontend.get("frame_length", 25))
    opts.frame_opts.frame_shift_ms = float(frontend.get("frame_shift", 10))
    opts.frame_opts.window_type = str(frontend.get("window", "hamming"))
    opts.frame_opts.snip_edges = bool(frontend.get("snip_edges", True))
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = int(frontend.get("n_mels", 80))
    opts.energy_floor = 0.0  # what funasr's frontends pass
    return opts


class Frontend:
    """One folder's frontend: ``features(samples)`` gives a whole segment's model input."""

    def __init__(self, frontend: dict, cmvn_file: Path | None):
        self.options = fbank_options(frontend)
        self.lfr_m, self.lfr_n = int(frontend.get("lfr_m", 1)), int(frontend.get("lfr_n", 1))
        self.shift: np.ndarray | None
        self.scale: np.ndarray | None
        self.shift, self.scale = read_cmvn(cmvn_file) if cmvn_file else (None, None)

    def fbank(self, samples: np.ndarray) -> np.ndarray:
        """[frames, n_mels] filter banks of one whole stretch of 16 kHz float samples."""
        import kaldi_native_fbank as knf

        bank = knf.OnlineFbank(self.options)
        bank.accept_waveform(SAMPLE_RATE, np.asarray(samples, np.float32).ravel() * 32768.0)
        bank.input_finished()
        frames = [bank.get_frame(i) for i in range(bank.num_frames_ready)]
        return np.array(frames, np.float32).reshape(len(frames), self.options.mel_opts.num_bins)

    def lfr(self, frames: np.ndarray) -> np.ndarray:
        """funasr's apply_lfr: ceil(T / lfr_n) rows of lfr_m frames side by side, the first
        frame repeated (lfr_m - 1) // 2 times before and the last as often as needed after."""
        m, n = self.lfr_m, self.lfr_n
        if m == 1 and n == 1 or not len(frames):
            return frames
        rows = -(-len(frames) // n)
        left = (m - 1) // 2
        padded = np.concatenate([np.repeat(frames[:1], left, 0), frames])
        need = (rows - 1) * n + m  # frames the last row reaches
        if need > len(padded):
            padded = np.concatenate([padded, np.repeat(padded[-1:], need - len(padded), 0)])
        index = np.arange(rows)[:, None] * n + np.arange(m)[None, :]
        return padded[index].reshape(rows, m * frames.shape[1])

    def normalize(self, feats: np.ndarray) -> np.ndarray:
        if self.shift is None:
            return feats
        return (feats + self.shift) * self.scale

    def features(self, samples: np.ndarray) -> np.ndarray:
        """[rows, lfr_m * n_mels] model input for one whole segment."""
        return self.normalize(self.lfr(self.fbank(samples))).astype(np.float32)
