"""onnxruntime sessions for the models run without torch (asr/onnx.py, vad/fsmn_onnx.py):
threads set deliberately, and a file that cannot be read turned into an error that says
how to make a good one."""

from __future__ import annotations

from pathlib import Path

from .dependencies import require
from .errors import ModelLoadError


def export_command(folder: Path) -> str:
    """The command that writes a folder's ONNX files (needs torch and funasr once)."""
    return f"python -m funasr_widget.models export {str(folder)!r} --quantize"


def open_session(path: Path, threads: int):
    """An onnxruntime session on the CPU with ``threads`` threads for each operator and one
    operator at a time (these graphs are sequential: a second pool would only contend for the
    same cores). A truncated or foreign file is a ModelLoadError with the fix."""
    ort = require("onnxruntime", "onnx", "Running a model without torch")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(int(threads), 1)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: its warnings are about graph rewrites
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... classes
        raise ModelLoadError(
            f"{path} is not a model onnxruntime can load ({type(exc).__name__}: {str(exc)[:200]}).",
            "The file is truncated or corrupt (an interrupted download or export?): delete it and "
            f"write it again with {export_command(path.parent)}, or fetch the model again.",
            code="weights-corrupt",
        ) from exc


def check_inputs(session, path: Path, expected: dict[str, int]) -> None:
    """The graph takes the inputs this runtime feeds (name -> rank): a graph exported from
    another model (a mismatched file) fails here, at load, not at the first segment."""
    found = {i.name: len(i.shape) for i in session.get_inputs()}
    wrong = {name: rank for name, rank in expected.items() if found.get(name) != rank}
    if wrong:
        raise ModelLoadError(
            f"{path} is not this model's export: it takes inputs {sorted(found)}, not {sorted(expected)}.",
            f"Delete it and write it again from this folder's weights: {export_command(path.parent)}",
            code="weights-corrupt",
        )


def check_width(path: Path, width: object, expected: int, what: str) -> None:
    """The graph's last output axis (`width`, an int when fixed) holds as many entries as the
    folder's `what` (its token list, its punctuation marks): else the export is another model's."""
    if isinstance(width, int) and width != expected:
        raise ModelLoadError(
            f"{path} gives {width} entries but the folder's {what} has {expected}: "
            "the export is not of this folder's model.",
            f"Delete it and write it again: {export_command(path.parent)}",
            code="weights-corrupt",
        )
