"""A kernel without torch or funasr records through the widget: real JupyterLab, real Chromium
whose fake microphone plays two espeak-ng sentences, and a kernel where torch and funasr cannot
be imported (a meta-path finder, as with only the [onnx] extra installed). runtime 'auto' then
runs FSMN-VAD and the tiny SenseVoiceSmall's export (written here by the export command) on
onnxruntime.

    .venv/bin/python -m pytest tests/browser/test_onnx_kernel.py -m browser -x -s
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest
from browser_harness import make_utterances, wait_for
from without_torch import WITHOUT_TORCH

pytestmark = pytest.mark.browser

SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Speech recognition runs live in the notebook."]


@pytest.fixture(scope="module")
def exported_store(model_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx-kernel-models")
    for name in ("fsmn-vad", "sensevoice-small"):
        shutil.copytree(model_store / name, root / name)
    command = [sys.executable, "-m", "funasr_widget.models", "export", str(root / "sensevoice-small")]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return root


def test_a_torch_free_kernel_records_and_transcribes(lab, launch_browser, notebook, exported_store, tmp_path):
    utterances = make_utterances(tmp_path, SENTENCES, lead_s=0.5, gap_s=1.5)
    browser = launch_browser(grant_mic=True, wav=utterances.path)
    cells = [
        WITHOUT_TORCH + "from funasr_widget import Transcriber, models\n"
        f"models.set_models_dir({str(exported_store)!r})\n"
        "w = Transcriber(model='sensevoice-small', vad='fsmn-vad')",
        "w",
    ]
    nb = notebook(browser, "onnx-kernel.ipynb", cells)
    nb.run_cell(0)
    nb.run_cell(1)
    widget = nb.wait_widget()
    kernel = nb.kernel()

    def ready():
        state = kernel.eval("w.model_state")
        assert state != "error", kernel.eval("w.model_info")
        return state == "ready"

    wait_for(ready, 90, "w.model_state == 'ready'", interval_s=0.3)
    button = widget.locator(".fw-record")
    button.click()
    wait_for(lambda: "Stop" in button.inner_text(), 15, "the button to read Stop")
    time.sleep(utterances.intervals_s[-1][1] + 2.0)
    button.click()
    wait_for(lambda: kernel.eval("w.recording") is False, 10, "w.recording to become False")
    assert kernel.eval("w.wait(60)") is True

    segments = kernel.eval("w.segments")
    assert len(segments) >= len(SENTENCES) and all(s["text"].strip() for s in segments), segments
    finals = widget.locator(".fw-final")
    wait_for(lambda: finals.count() == len(segments), 10, "one final line per segment on the page")
    info = kernel.eval("w.model_info")
    assert info["runtime"]["runtime"] == "onnx", info
    assert kernel.eval("w.vad") == "fsmn-vad"
    assert kernel.eval("sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'funasr'))") == []
