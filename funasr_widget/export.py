"""A model folder's ONNX files, written with funasr's own export (torch and funasr are needed
this once; the kernels that run the files then need neither: asr/onnx.py, vad/fsmn_onnx.py).

``python -m funasr_widget.models export NAME_OR_FOLDER [--quantize]`` writes ``model.onnx``
(and, with ``--quantize``, ``model_quant.onnx``: int8 MatMul weights) next to ``model.pt``;
a streaming Paraformer also gets ``decoder.onnx``. torch >= 2.9's new exporter needs onnxscript,
writes a large ``model.onnx.data`` beside the graph and fails on the streaming Paraformer's
decoder, so the legacy exporter is used: one self-contained file per graph. The files are
written in a scratch folder inside the model folder and moved in when all are done, so an
interrupted export never leaves a half-written model.onnx where the runtime would load it.
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import _torch, models
from .dependencies import require
from .models import Progress


@contextmanager
def _seaco_without_hotwords() -> Iterator[None]:
    """SeACo-Paraformer exported as its encoder, CIF predictor and decoder (funasr's
    BiCifParaformer export: log-probabilities, token count, and the upsampled CIF weights and
    peaks the word times come from), which is what funasr's torch path decodes when no hotwords
    are given. funasr's own SeACo export writes a graph that always mixes in the hotword head
    (bias_embed in, no no-hotword path) and hard-codes the real model's sizes (a 512-wide bias
    embedding, NO_BIAS id 8377, a seaco decoder of at least 3 blocks), so it fails on any other."""
    from funasr.models.bicif_paraformer import export_meta
    from funasr.models.seaco_paraformer.model import SeacoParaformer

    def export(model, **kwargs):
        return export_meta.export_rebuild_model(model, **{"max_seq_len": 512, **kwargs})

    original = SeacoParaformer.export
    SeacoParaformer.export = export
    try:
        yield
    finally:
        SeacoParaformer.export = original


@contextmanager
def _legacy_exporter() -> Iterator[None]:
    """torch.onnx.export with ``dynamo=False`` while funasr's export calls it."""
    torch = require("torch", "asr", "Exporting a model to ONNX")
    original = torch.onnx.export
    torch.onnx.export = functools.partial(original, dynamo=False)
    try:
        yield
    finally:
        torch.onnx.export = original


def export(model: str | os.PathLike, quantize: bool = False, progress: Progress | None = None) -> list[Path]:
    """Write the ONNX files of a model folder (a name, hub id or path) next to its model.pt;
    returns their paths. Needs torch, funasr and onnx (the `asr` and `export` extras)."""
    if not isinstance(quantize, bool):
        raise TypeError(f"quantize must be True or False, got {quantize!r}")
    report = progress or (lambda fraction, message: None)
    folder = models.resolve(str(model))
    if not (folder / "model.pt").is_file():
        raise models.ModelLoadError(
            f"{folder} has no model.pt: the export is written from the torch weights.",
            "Fetch the model's torch files first: funasr_widget.models.fetch(name).",
            code="weights-missing",
        )
    require("onnx", "export", "Exporting a model to ONNX")
    report(None, f"loading {folder.name} with funasr")
    auto = _torch.auto_model(folder, "cpu")
    report(None, f"exporting {folder.name} to ONNX" + (" (and int8)" if quantize else ""))
    with tempfile.TemporaryDirectory(prefix=".export-", dir=folder) as scratch:
        with _legacy_exporter(), _seaco_without_hotwords(), _torch.quiet():
            if type(auto.model).__name__ == "ParaformerStreaming":  # with its look-back caches
                from . import export_streaming

                export_streaming.export(auto.model, Path(scratch), quantize)
            else:
                auto.export(type="onnx", quantize=quantize, output_dir=scratch, device="cpu")
        written = []
        for file in sorted(Path(scratch).glob("*.onnx")):
            os.replace(file, folder / file.name)
            written.append(folder / file.name)
    report(1.0, "wrote " + ", ".join(p.name for p in written))
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m funasr_widget.models export",
        description="Write a model folder's ONNX files (model.onnx, model_quant.onnx) with funasr's export, "
        "for kernels that run models on onnxruntime without torch (runtime='onnx').",
    )
    parser.add_argument("model", help=f"a model name ({', '.join(models.REGISTRY)}), hub id or model folder")
    parser.add_argument("--quantize", action="store_true", help="also write model_quant.onnx (int8 weights)")
    args = parser.parse_args(argv)
    try:
        paths = export(args.model, args.quantize, lambda fraction, message: print(message, flush=True))
    except models.ModelLoadError as err:
        parser.exit(1, f"error: {err}\n")
    for path in paths:
        print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
