"""The front end's files: found when built, and a missing one says how to build it."""

from __future__ import annotations

import re

import pytest

from funasr_widget import _bundle


def test_built_bundle_is_found():
    for name in ("widget.js", "widget.css", "explorer.js", "explorer.css"):
        path = _bundle.bundle(name)
        assert path.is_file() and path.parent == _bundle.STATIC and path.stat().st_size > 0, path


def test_missing_bundle_says_how_to_build_it(tmp_path, monkeypatch):
    static = tmp_path / "funasr_widget" / "static"
    static.mkdir(parents=True)
    monkeypatch.setattr(_bundle, "STATIC", static)
    with pytest.raises(FileNotFoundError) as info:
        _bundle.bundle("widget.js")
    message = str(info.value)
    assert "front end was not built" in message
    assert str(static / "widget.js") in message
    assert "`npm ci && npm run build`" in message
    assert "pip install ." in message and "wheel" in message


def test_missing_bundle_in_a_source_tree_names_it(tmp_path, monkeypatch):
    (tmp_path / "js").mkdir()
    (tmp_path / "package.json").write_text("{}")
    static = tmp_path / "funasr_widget" / "static"
    monkeypatch.setattr(_bundle, "STATIC", static)
    with pytest.raises(FileNotFoundError, match=re.escape(f"in the source tree ({tmp_path})")):
        _bundle.bundle("explorer.css")
