"""Each optional extra, missing: the error names the package and the extra that brings it
(`pip install 'funasr-widget[extra]'`). The packages are hidden from a fresh interpreter by a
meta-path finder, so the rest of the environment stays as it is."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

BLOCK = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {hidden!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)", name=name)
sys.meta_path.insert(0, Hide())
"""

REPORT = """
import json
from funasr_widget import FunasrWidgetError, MissingDependencyError
try:
    run()
except MissingDependencyError as err:
    print(json.dumps({{"type": type(err).__name__, "message": err.message, "hint": err.hint, "code": err.code,
                       "package": err.package, "extra": err.extra, "base": isinstance(err, FunasrWidgetError)}}))
"""


def run_hidden(hidden: set[str], body: str, *args: str) -> dict:
    """Run `body` (defining run()) with `hidden` packages absent; the MissingDependencyError it raised."""
    code = BLOCK.format(hidden=hidden) + textwrap.dedent(body) + REPORT.format()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no MissingDependencyError:\n{done.stdout}\n{done.stderr}"
    return json.loads(lines[-1])


def assert_names(report: dict, package: str, extra: str) -> None:
    assert report["base"] and report["extra"] == extra and report["code"] == f"{extra}-missing", report
    assert package in report["message"], report
    assert f"pip install 'funasr-widget[{extra}]'" in report["hint"], report


def test_a_server_without_httpx_names_the_remote_extra():
    report = run_hidden(
        {"httpx"},
        """
        def run():
            from funasr_widget.asr import load_engine
            load_engine("custom", server="http://127.0.0.1:9")
        """,
    )
    assert_names(report, "httpx", "remote")


def test_the_widget_shows_the_missing_remote_extra():
    """Transcriber(server=...) without httpx said "check the model folder": now the model
    state carries the extra to install."""
    code = BLOCK.format(hidden={"httpx"}) + textwrap.dedent(
        """
        import json
        from funasr_widget import Transcriber
        w = Transcriber(vad="energy", server="http://127.0.0.1:9")
        w.wait(timeout=60)
        print(json.dumps({"state": w.model_state, **w.model_info}))
        w.close()
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    info = json.loads(done.stdout.splitlines()[-1])
    assert info["state"] == "error" and info["code"] == "remote-missing", info
    assert "httpx" in info["message"] and "funasr-widget[remote]" in info["hint"], info


def test_recognition_without_funasr_names_the_asr_extra(model_store):
    report = run_hidden(
        {"funasr"},
        """
        import sys
        def run():
            from funasr_widget.asr import load_engine
            load_engine(sys.argv[1], device="cpu", runtime="torch")
        """,
        str(model_store / "sensevoice-small"),
    )
    assert_names(report, "funasr", "asr")


def test_a_device_without_torch_names_the_asr_extra():
    report = run_hidden(
        {"torch"},
        """
        def run():
            from funasr_widget.asr import resolve_device
            resolve_device("auto")
        """,
    )
    assert_names(report, "torch", "asr")


def test_silero_without_its_package_names_the_silero_extra():
    pytest.importorskip("torch")
    report = run_hidden(
        {"silero_vad"},
        """
        def run():
            from funasr_widget.vad import create_vad
            create_vad("silero")
        """,
    )
    assert_names(report, "silero-vad", "silero")


def test_a_dataframe_without_pandas_names_the_notebooks_extra():
    report = run_hidden(
        {"pandas"},
        """
        def run():
            from funasr_widget import Transcriber
            w = Transcriber(model=None, vad="energy")
            try:
                w.to_dataframe()
            finally:
                w.close()
        """,
    )
    assert_names(report, "pandas", "notebooks")
