"""Real-browser harness: one JupyterLab server per test session, Chromium with a fake microphone.

Nothing here is mocked: a real JupyterLab server (own config/data/runtime/settings dirs in a tmp
folder), real Chromium (Debian's /usr/bin/chromium driven by Playwright), a real kernel running
this repo's funasr_widget. The fake microphone plays a WAV generated at test time with espeak-ng.

Two environment variables change what runs (`make test-wheel` sets both):
- FUNASR_WIDGET_TEST_FRONTEND=notebook: the server is Jupyter Notebook 7 (`jupyter notebook`)
  instead of JupyterLab (`lab`, the default).
- FUNASR_WIDGET_TEST_INSTALLED=1: the kernel imports the funasr_widget installed in this
  python's site-packages (no PYTHONPATH to the source tree), and every notebook checks so.
Artifacts then go to test-artifacts/<wheel|notebook7|wheel-notebook7>/.

Fixtures
- lab (session): the running server; `lab.url(nb)`, `lab.write_notebook(...)`, `lab.kernel(nb)`.
- speech (session): the fake microphone's WAV and its 16 kHz mono reference.
- mic_browser (module): Chromium with the fake microphone granted (and insecure.test mapped to loopback).
- launch_browser (session): a factory for Chromium with other flags (e.g. permission denied).
- notebook (function): a factory `notebook(browser, name, cells, host=...)` -> NotebookPage.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import pytest
from browser_harness import (
    ARTIFACTS,
    CHROMIUM,
    FRONTEND,
    INSTALLED,
    KERNEL_NAME,
    LabServer,
    NotebookPage,
    SpeechFile,
    check_installed,
    chromium_flags,
    make_speech,
)

# Text producers consulted when a test fails: (section title, callable -> str).
_FAILURE_REPORTERS: list[tuple[str, object]] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running (e.g. the 60 s recording); deselect with -m 'not slow'")


def pytest_report_header(config):
    import funasr_widget

    server = "Jupyter Notebook 7" if FRONTEND == "notebook" else "JupyterLab"
    package = "installed" if INSTALLED else "source tree"
    return f"browser tests: {server}; funasr_widget from the {package} ({Path(funasr_widget.__file__).parent})"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and rep.when in ("setup", "call") and "browser" in item.keywords:
        for title, produce in list(_FAILURE_REPORTERS):
            try:
                text = produce()
            except Exception as err:  # a report must never hide the real failure
                text = f"(could not collect: {err!r})"
            if text:
                rep.sections.append((title, text))


def _skip_reason() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is not installed"
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        import jupyterlab  # noqa: F401
        import playwright  # noqa: F401

        if FRONTEND == "notebook":
            import notebook  # noqa: F401
    except ImportError as err:
        return f"{err.name} is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    if INSTALLED:
        import funasr_widget

        bundle = check_installed(funasr_widget.__file__) / "static" / "widget.js"
    else:
        bundle = LabServer.REPO / "funasr_widget" / "static" / "widget.js"
    if not bundle.exists() or "fw-record" not in bundle.read_text(errors="replace"):
        pytest.fail(f"{bundle} is not the built front end: run `npm install && npm run build` first")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # a variant's subfolder too (the tests mkdir one level)
    base = tmp_path_factory.mktemp("lab")
    dirs = {name: base / name for name in ("config", "data", "runtime", "settings", "workspaces", "ipython", "root")}
    for d in dirs.values():
        d.mkdir()
    # The kernel is this venv's python, running this working tree's funasr_widget (or, INSTALLED,
    # the venv's own copy: no path to the source tree). Its own name: in a venv, jupyter_core
    # prefers the env's "python3" spec over the user data dir's.
    spec = dirs["data"] / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if INSTALLED:
        paths = [p for p in paths if Path(p).resolve() != LabServer.REPO]
    else:
        paths.insert(0, str(LabServer.REPO))
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (funasr-widget tests)",
                "language": "python",
                "env": {"PYTHONPATH": os.pathsep.join(paths)},
                "metadata": {"debugger": False},
            }
        )
    )
    # No news / update pop-ups over the notebook.
    notif = dirs["settings"] / "@jupyterlab" / "apputils-extension"
    notif.mkdir(parents=True)
    (notif / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True})
    )

    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        IPYTHONDIR=str(dirs["ipython"]),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
    )
    log_path = base / "jupyter-server.log"
    log = open(log_path, "wb")
    app = "JupyterNotebookApp" if FRONTEND == "notebook" else "LabApp"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            FRONTEND,
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            "--ServerApp.allow_remote_access=True",
            f"--ServerApp.root_dir={dirs['root']}",
            f"--{app}.user_settings_dir={dirs['settings']}",
            f"--{app}.workspaces_dir={dirs['workspaces']}",
        ]
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        cwd=dirs["root"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = LabServer(
        port=port,
        token=token,
        root=dirs["root"],
        runtime_dir=dirs["runtime"],
        log_path=log_path,
        proc=proc,
        frontend=FRONTEND,
    )
    reporter = ("jupyter server log (tail)", lambda: server.log_tail())
    _FAILURE_REPORTERS.append(reporter)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"jupyter {FRONTEND} exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                server.api("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError, OSError) as err:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"jupyter {FRONTEND} did not answer /api/status in 90 s:\n{server.log_tail()}"
                    ) from err
                time.sleep(0.3)
        yield server
    finally:
        server.close_kernels()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()
        _FAILURE_REPORTERS.remove(reporter)


@pytest.fixture(scope="session")
def speech(tmp_path_factory) -> SpeechFile:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    return make_speech(tmp_path_factory.mktemp("speech"))


@pytest.fixture(scope="session")
def playwright_driver():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def launch_browser(playwright_driver, speech):
    """launch_browser(grant_mic=True, wav=None) -> a Browser whose fake microphone plays `wav`
    (default: the `speech` file); closed at the end of the session at the latest."""
    opened = []

    def launch(grant_mic: bool = True, wav=None):
        browser = playwright_driver.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=chromium_flags(wav or speech.path, grant_mic=grant_mic)
        )
        opened.append(browser)
        return browser

    yield launch
    for b in opened:
        if b.is_connected():
            b.close()


@pytest.fixture(scope="module")
def mic_browser(launch_browser):
    """Chromium with the fake microphone, permission granted; insecure.test resolves to loopback."""
    browser = launch_browser(grant_mic=True)
    yield browser
    browser.close()


@pytest.fixture
def notebook(lab, request):
    """notebook(browser, name, cells, host="127.0.0.1") -> NotebookPage (opened, kernel idle)."""
    pages: list[NotebookPage] = []

    def open_(browser, name: str, cells: list[str], host: str = "127.0.0.1") -> NotebookPage:
        lab.write_notebook(name, cells)
        page = NotebookPage(lab, browser, name, host=host)
        pages.append(page)
        reporter = (f"browser console ({name})", page.console_text)
        _FAILURE_REPORTERS.append(reporter)
        page.reporter = reporter
        page.open()
        if INSTALLED:  # the kernel itself says where its funasr_widget comes from
            check_installed(page.kernel().eval("__import__('funasr_widget').__file__"))
        return page

    yield open_
    for page in pages:
        if getattr(page, "reporter", None) in _FAILURE_REPORTERS:
            _FAILURE_REPORTERS.remove(page.reporter)
        page.close()
