"""On CUDA, running out of memory or CUDA failing to start while a model loads falls back to
the CPU with a note; any other load failure is reported as it is. Faults are injected:
the machine need not have a GPU."""

from __future__ import annotations

import pytest
import torch

from funasr_widget import Transcriber, _torch, models
from funasr_widget.asr import ModelLoadError, load_engine
from funasr_widget.failures import cuda_failure

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch says it has one GPU; loading on it fails as `failure` says."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    real = _torch.auto_model
    state = {"failure": None, "devices": []}

    def auto_model(path, device, **kwargs):
        state["devices"].append(device)
        if device.startswith("cuda"):
            raise state["failure"]
        return real(path, device, **kwargs)

    monkeypatch.setattr(_torch, "auto_model", auto_model)
    yield state
    models.release()


@pytest.mark.parametrize(
    "failure, words",
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "ran out of GPU memory"),
        (RuntimeError("CUDA error: initialization error"), "could not use CUDA"),
    ],
)
def test_cuda_failure_during_load_falls_back_to_the_cpu(models_at, fake_cuda, failure, words):
    fake_cuda["failure"] = failure
    engine = load_engine("fun-asr-nano", device="cuda")
    assert fake_cuda["devices"] == ["cuda", "cpu"]
    assert engine.device == "cpu" and words in engine.notes[0] and "CPU" in engine.notes[0]
    assert engine.transcribe(torch.zeros(16000).numpy())["text"] is not None


def test_the_widget_says_where_the_model_runs(models_at, fake_cuda):
    fake_cuda["failure"] = RuntimeError("CUDA error: no CUDA GPUs are available")
    widget = Transcriber(model="sensevoice-small", vad="energy", device="cuda")
    assert widget.wait(timeout=120)
    widget.close()
    assert widget.model_state == "ready"
    assert widget.model_info["device"] == "cpu" and "runs on the CPU" in widget.model_info["message"]
    assert widget.model_info["notes"]


def test_other_load_failures_are_not_hidden(models_at, fake_cuda):
    fake_cuda["failure"] = ModelLoadError("Could not load the model: bad weights", "fetch it again")
    with pytest.raises(ModelLoadError, match="bad weights"):
        load_engine("sensevoice-small", device="cuda")
    assert fake_cuda["devices"] == ["cuda"]


def test_cuda_failure_is_found_in_the_cause_chain():
    try:
        try:
            raise RuntimeError("CUDA driver version is insufficient for CUDA runtime version")
        except RuntimeError as inner:
            raise ModelLoadError("Could not load the model") from inner
    except ModelLoadError as outer:
        assert "CUDA driver" in cuda_failure(outer)
    assert cuda_failure(ValueError("shape mismatch")) is None
