"""The fault-injection matrix: every "my microphone does nothing" cause, in real JupyterLab +
Chromium, each reaching the user as its own message with its fix. Run with

    .venv/bin/python -m pytest tests/browser/test_diagnosis.py -m browser -s

One JupyterLab server; four Chromium processes (fake microphone playing speech; the fake
permission prompt answering Block; a silent file; no fake device at all). Each case asserts
the text shown in the widget (or in the cell, for a front end that never loaded) and the
`error` trait or `model_state` in Python, and saves a screenshot to docs/diagnosis/.
The run writes docs/diagnosis.md from what it saw.

Real: insecure origin (insecure.test mapped to loopback: not a secure context), permission
denied (Chromium's prompt answers Block), no device (Chromium without a fake device, on a
machine with none), chosen device gone (an exact deviceId no device has), a permissions policy
(the notebook in an <iframe allow="microphone 'none'">), silent input (a silent file), a
threshold above the voice and a VAD that never closes (real speech and noise, real VAD
knobs), a front end that never loaded (the widget manager's extension fails to load),
model folder missing and corrupt weights (real folders, real funasr), the self-test and
segment playback (what the page played is captured from AudioBufferSourceNode and compared
with the kernel's samples).
Injected at the browser API (a page script), because headless Chromium cannot produce them
with its flags: a busy device (getUserMedia rejects with NotReadableError), an OS-withheld
permission (NotAllowedError "Permission denied by system" while the site's permission is
granted) and an audio engine the browser keeps suspended (AudioContext.resume() never runs).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from browser_harness import (
    ARTIFACTS,
    CHROMIUM,
    FRONTEND,
    INSECURE_HOST,
    MIC_RATE,
    REPO,
    NotebookPage,
    check_time_labels,
    chromium_flags,
    make_utterances,
    wait_for,
    write_wav,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(FRONTEND != "lab", reason="the matrix drives JupyterLab's own page and extensions"),
]

# The screenshots sit next to the report it writes, so docs/diagnosis.md shows them in a clean
# clone; a variant run (wheel, Notebook 7) keeps its own under test-artifacts/.
_MAIN_RUN = ARTIFACTS == REPO / "test-artifacts"
DOC = REPO / "docs" / "diagnosis.md" if _MAIN_RUN else ARTIFACTS / "diagnosis.md"
SHOTS = DOC.parent / "diagnosis"
RATE = 16_000
ROWS: dict[str, dict] = {}  # case -> what was seen, filled as the cases run

# Faults a page script injects: window.__fwFault = {gum: {name, message}} or {suspend: true}.
# Also records every buffer the page plays (window.__fwPlayed), for the playback checks.
INIT_SCRIPT = """
(() => {
  window.__fwPlayed = [];
  const start = AudioBufferSourceNode.prototype.start;
  AudioBufferSourceNode.prototype.start = function (...args) {
    try {
      window.__fwPlayed.push({ rate: this.buffer.sampleRate, data: Array.from(this.buffer.getChannelData(0)) });
    } catch (e) {}
    return start.apply(this, args);
  };
  const md = navigator.mediaDevices;
  if (md && md.getUserMedia) {
    const gum = md.getUserMedia.bind(md);
    md.getUserMedia = async (constraints) => {
      const f = window.__fwFault;
      if (f && f.gum) throw new DOMException(f.gum.message, f.gum.name);
      return gum(constraints);
    };
  }
  const resume = AudioContext.prototype.resume;
  AudioContext.prototype.resume = function () {
    if (window.__fwFault && window.__fwFault.suspend) {
      this.suspend();
      return new Promise(() => {});
    }
    return resume.call(this);
  };
})();
"""

SETUP = "from funasr_widget import Transcriber, diagnose, models\nimport numpy as np\ndiagnose.FRONTEND_WAIT_S = 5.0"


def widget_cell(name: str, args: str = "model=None, vad='energy'") -> str:
    return f"{name} = Transcriber({args})\n{name}"


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    """A long file of speech with pauses (any point of it holds speech within ~2 s)."""
    folder = tmp_path_factory.mktemp("talk")
    u = make_utterances(
        folder,
        ["The quick brown fox jumps over the lazy dog.", "Speech recognition runs live in the notebook."],
        lead_s=0.3,
        gap_s=1.0,
        total_s=0.0,
    )
    from browser_harness import _read_wav

    x, rate = _read_wav(u.path)
    reps = int(np.ceil(240 * rate / len(x)))
    # espeak's loudest vowels touch full scale: halved, a normal, unclipped voice (peaks ~ -6 dBFS)
    path = write_wav(folder / "talk-44k-stereo.wav", 0.5 * np.tile(x, (reps, 1)), rate)
    return path


@pytest.fixture(scope="module")
def silent_wav(tmp_path_factory):
    return write_wav(
        tmp_path_factory.mktemp("silent") / "silent.wav", np.zeros((30 * MIC_RATE, 2), np.float32), MIC_RATE
    )


@pytest.fixture(scope="module")
def browsers(playwright_driver, talk, silent_wav):
    """Four Chromium processes, launched on first use."""
    opened = {}

    def get(kind: str):
        if kind not in opened:
            if kind == "talk":
                args = chromium_flags(talk)
            elif kind == "denied":
                args = chromium_flags(talk, grant_mic=False)
            elif kind == "silent":
                args = chromium_flags(silent_wav)
            else:  # no fake device: this machine has no microphone at all
                args = [a for a in chromium_flags(talk) if "fake-device" not in a and "fake-audio" not in a]
            opened[kind] = playwright_driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        return opened[kind]

    yield get
    for b in opened.values():
        if b.is_connected():
            b.close()


def injecting(context):
    context.add_init_script(INIT_SCRIPT)


@pytest.fixture(scope="module")
def main_nb(lab, browsers, model_store, tmp_path_factory):
    """One notebook in the speech browser, one cell (and widget) per case that runs there."""
    broken = tmp_path_factory.mktemp("broken") / "sensevoice-small"
    shutil.copytree(model_store / "sensevoice-small", broken)
    data = (broken / "model.pt").read_bytes()
    (broken / "model.pt").write_bytes(data[: len(data) // 3])  # an interrupted download
    missing = tmp_path_factory.mktemp("nomodels") / "sensevoice-small"
    bad_onnx = tmp_path_factory.mktemp("badonnx") / "sensevoice-small"  # runtime='onnx' (asr/onnx.py)
    shutil.copytree(model_store / "sensevoice-small", bad_onnx)
    graph = (model_store / "fsmn-vad" / "model.onnx").read_bytes()
    (bad_onnx / "model.onnx").write_bytes(graph[: len(graph) // 2])  # an interrupted export or download
    cells = [SETUP]
    index = {}
    for name, args in [
        ("w_busy", None),
        ("w_os", None),
        ("w_gone", None),
        ("w_suspended", None),
        ("w_threshold", "model=None, vad='energy', energy_threshold_db=-3.0"),
        ("w_noise", "model=None, vad='energy', energy_threshold_db=-90.0, max_segment_s=2.0"),
        ("w_test", None),
        ("w_play", "model=None, vad='energy', end_silence_ms=500"),
        ("w_jserr", None),
        ("w_missing", f"model={str(missing)!r}, vad='energy', device='cpu'"),
        ("w_stall", f"model={str(model_store / 'sensevoice-small')!r}, vad='energy', device='cpu'"),
        ("w_corrupt", f"model={str(broken)!r}, vad='energy', device='cpu'"),
        ("w_badonnx", f"model={str(bad_onnx)!r}, vad='energy', device='cpu', runtime='onnx'"),
        ("w_nofunasr", None),
        ("w_oom", None),
        ("w_cudainit", None),
    ]:
        index[name] = len(cells)
        code = widget_cell(name, *(a for a in [args] if a))
        if name == "w_nofunasr":  # the kernel's environment has no funasr (hidden from the import)
            code = (
                f"import shutil, sys, tempfile\n_copy = shutil.copytree({str(model_store / 'sensevoice-small')!r}, "
                "tempfile.mkdtemp() + '/sensevoice-small')\n_funasr, sys.modules['funasr'] = sys.modules.get('funasr'), None\n"
                "w_nofunasr = Transcriber(model=_copy, vad='energy', device='cpu')\nw_nofunasr.wait(60)\n"
                "sys.modules['funasr'] = _funasr\nw_nofunasr"
            )
        if name in ("w_oom", "w_cudainit"):  # torch reports a GPU, and loading on it fails as CUDA does
            failure = (
                'torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")'
                if name == "w_oom"
                else 'RuntimeError("CUDA error: initialization error")'
            )
            code = (
                "import torch\nfrom funasr_widget import _torch\nfrom unittest import mock\n"
                "def _on_gpu(real, failure):\n"
                "    return lambda path, device, **kw: (_ for _ in ()).throw(failure) if device.startswith('cuda') "
                "else real(path, device, **kw)\n"
                f"with mock.patch.object(torch.cuda, 'is_available', lambda: True), "
                "mock.patch.object(torch.cuda, 'device_count', lambda: 1), "
                "mock.patch.object(torch.cuda, 'empty_cache', lambda: None), "
                f"mock.patch.object(_torch, 'auto_model', _on_gpu(_torch.auto_model, {failure})):\n"
                f"    models.release()\n    {name} = Transcriber(model={str(model_store / 'sensevoice-small')!r}, "
                f"vad='energy', device='cuda')\n    {name}.wait(90)\n{name}"
            )
        if name == "w_jserr":  # a front end whose JavaScript fails as it loads
            code = (
                "class BrokenFront(Transcriber):\n"
                "    _esm = \"throw new Error('funasr-widget test: this front end failed to load')\"\n"
                "w_jserr = BrokenFront(model=None, vad='energy')\nw_jserr"
            )
        if name == "w_stall":  # a load that shows no progress for 1 s counts as stuck, here
            code = "diagnose.LOAD_STALL_S = 1.0\n_stall_log = []\n" + code.replace(
                "\nw_stall", "\nw_stall.observe(lambda c: _stall_log.append(dict(c['new'])), 'model_info')\nw_stall"
            )
        cells.append(code)
    lab.write_notebook("diagnosis.ipynb", cells)
    nb = NotebookPage(lab, browsers("talk"), "diagnosis.ipynb", setup=injecting).open()
    nb.index = index
    nb.run_cell(0)
    yield nb
    nb.close()


def cell_widget(nb, name: str):
    """Run the case's cell (once) and return its widget's output element."""
    i = nb.index[name]
    done = getattr(nb, "done", set())
    nb.done = done
    if name not in done:
        nb.run_cell(i)
        done.add(name)
    out = nb.cell(i).locator(".jp-OutputArea-output:has(.fw-record)")
    out.locator(".fw-record").wait_for(state="visible", timeout=30_000)
    return out


def shoot(element, case: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{case}.png"
    element.screenshot(path=str(path))
    return path


def shown_error(widget, timeout_s: float = 10, words: str = "") -> tuple[str, str]:
    box = widget.locator(".fw-error")
    box.wait_for(state="visible", timeout=timeout_s * 1000)
    if words:
        wait_for(lambda: words in box.inner_text(), timeout_s, f"{words!r} in the error box ({box.inner_text()!r})")
    return widget.locator(".fw-error-message").inner_text(), widget.locator(".fw-error-hint").inner_text()


def record(
    case: str, *, injected: str = "", failure: str, message: str, hint: str, python: str, shot: Path | None
) -> dict:
    row = {
        "case": case,
        "failure": failure,
        "injected": injected,
        "message": message,
        "hint": hint,
        "python": python,
        "screenshot": None if shot is None else str(shot.relative_to(DOC.parent)),
        "passed": False,
    }
    ROWS[case] = row
    return row


def press(widget, label: str = ".fw-record") -> None:
    widget.locator(label).click()


def capture_case(nb, name: str, case: str, code: str, failure: str, *, fault=None, injected="", words="", before=None):
    widget = cell_widget(nb, name)
    kernel = nb.kernel()
    if before:
        before(kernel)
    nb.page.evaluate("f => { window.__fwFault = f; }", fault)
    try:
        press(widget)
        message, hint = shown_error(widget, words=words)
        wait_for(lambda: kernel.eval(f"{name}.error").get("code") == code, 10, f"{name}.error code {code}")
    finally:
        nb.page.evaluate("() => { window.__fwFault = null; }")
    error = kernel.eval(f"{name}.error")
    shot = shoot(widget, case)
    row = record(
        case,
        injected=injected,
        failure=failure,
        message=message,
        hint=hint,
        python=f"{name}.error['code'] == {error['code']!r}",
        shot=shot,
    )
    assert "Record" in widget.locator(".fw-record").inner_text()
    assert kernel.eval(f"{name}.recording") is False
    return row, message, hint, error


# -- the cases -------------------------------------------------------------------------------


def own_page_case(lab, browser, case: str, failure: str, words: str, host: str = "127.0.0.1"):
    """A case that needs its own page (another browser or origin): open, press Record, read
    the error shown; returns (row, message, hint, error trait)."""
    notebook = f"diag-{case}.ipynb"
    lab.write_notebook(notebook, [SETUP, widget_cell("w")])
    nb = NotebookPage(lab, browser, notebook, host=host).open()
    try:
        nb.run_cell(0)
        nb.run_cell(1)
        widget = nb.wait_widget()
        press(widget)
        message, hint = shown_error(widget, words=words)
        error = nb.kernel().eval("w.error")
        row = record(
            case,
            failure=failure,
            message=message,
            hint=hint,
            python=f"w.error['code'] == {error['code']!r}",
            shot=shoot(widget, case),
        )
        return row, message, hint, error
    finally:
        nb.close()


def test_insecure_origin(lab, browsers):
    row, message, hint, error = own_page_case(
        lab,
        browsers("talk"),
        "insecure-origin",
        host=INSECURE_HOST,
        words="localhost",
        failure=f"Jupyter opened at http://{INSECURE_HOST}:{lab.port} (plain http, not localhost)",
    )
    assert error["code"] == "insecure-context" and "secure" in message and "localhost" in hint
    row["passed"] = True


def test_permission_denied(lab, browsers):
    row, message, hint, error = own_page_case(
        lab,
        browsers("denied"),
        "permission-denied",
        words="Site settings",
        failure="the user answers Block to the microphone prompt",
    )
    assert error["code"] == "permission-denied" and "denied" in message.lower()
    row["passed"] = True


def test_no_device(lab, browsers):
    row, message, hint, error = own_page_case(
        lab,
        browsers("nodevice"),
        "no-device",
        words="WSL",
        failure="no microphone at all (Chromium without a fake device, on a machine with none)",
    )
    assert error["code"] == "no-device" and "No microphone" in message
    assert "virtual machine" in hint and "Remote Desktop" in hint
    row["passed"] = True


def test_device_busy(main_nb):
    row, message, hint, error = capture_case(
        main_nb,
        "w_busy",
        "device-busy",
        "device-busy",
        "another application holds the microphone",
        fault={"gum": {"name": "NotReadableError", "message": "Could not start audio source"}},
        injected="getUserMedia rejects with NotReadableError (headless Chromium's fake device is never busy)",
    )
    assert "in use" in message and "Close other apps" in hint
    row["passed"] = True


def test_os_withheld_permission(main_nb):
    # The site holds the permission (as on a Mac where only the OS says no): one real grant first.
    main_nb.page.evaluate(
        "async () => { const s = await navigator.mediaDevices.getUserMedia({audio: true}); "
        "s.getTracks().forEach((t) => t.stop()); }"
    )
    row, message, hint, error = capture_case(
        main_nb,
        "w_os",
        "os-blocked",
        "os-blocked",
        "the site is allowed, but the operating system withholds the microphone (macOS privacy settings)",
        fault={"gum": {"name": "NotAllowedError", "message": "Permission denied by system"}},
        injected="getUserMedia rejects with NotAllowedError 'Permission denied by system' while "
        "navigator.permissions says granted (no OS privacy layer in headless Linux Chromium)",
    )
    assert "operating system" in message and "Privacy & Security" in hint
    assert main_nb.kernel().eval("w_os._env['permission']") == "granted"
    row["passed"] = True


def test_chosen_device_gone(main_nb):
    row, message, hint, error = capture_case(
        main_nb,
        "w_gone",
        "device-gone",
        "overconstrained",
        "the saved input device was unplugged",
        before=lambda k: k.exec("w_gone.device_id = 'a-device-that-was-unplugged'"),
    )
    assert "not available" in message and "Pick another device" in hint
    row["passed"] = True


def test_suspended_audio_engine(main_nb):
    row, message, hint, error = capture_case(
        main_nb,
        "w_suspended",
        "suspended-audio",
        "context-suspended",
        "the browser keeps the page's audio engine suspended (autoplay policy)",
        fault={"suspend": True},
        injected="AudioContext.resume() never completes and the context stays suspended (headless "
        "Chromium starts audio without a gesture)",
    )
    assert "suspended" in message and "Click Record again" in hint
    row["passed"] = True


def test_threshold_above_the_voice(main_nb):
    nb, name = main_nb, "w_threshold"
    widget = cell_widget(nb, name)
    kernel = nb.kernel()
    press(widget)
    try:
        message, hint = shown_error(widget, timeout_s=20, words="no segment opened")
        error = kernel.eval(f"{name}.error")
        fix_button = widget.locator(".fw-error-fix")
        assert fix_button.is_visible(), "the Apply button"
        label = fix_button.inner_text()
        shot = shoot(widget, "threshold-above-voice")
        row = record(
            "threshold-above-voice",
            failure="the energy VAD's threshold (-3 dBFS) is above the speaker's voice",
            message=message,
            hint=hint + f" [button: {label}]",
            python=f"{name}.error['code'] == {error['code']!r}; suggest_threshold() == "
            f"{kernel.eval(f'{name}.suggest_threshold()')}",
            shot=shot,
        )
        assert error["code"] == "threshold-too-high" and "dBFS" in message
        suggested = error["fix"]["energy_threshold_db"]
        assert -70 < suggested < -10, error
        fix_button.click()  # the one-click fix
        wait_for(lambda: kernel.eval(f"{name}.energy_threshold_db") == suggested, 5, "the knob to take the fix")
        wait_for(lambda: kernel.eval(f"len({name}.segments)") > 0, 20, "a segment once the fix applied")
        assert kernel.eval(f"{name}.error") == {}
    finally:
        press(widget)
    row["passed"] = True


def test_vad_never_closes(main_nb):
    nb, name = main_nb, "w_noise"
    widget = cell_widget(nb, name)
    kernel = nb.kernel()
    press(widget)
    try:
        message, hint = shown_error(widget, timeout_s=20, words="never closes")
        error = kernel.eval(f"{name}.error")
        row = record(
            "vad-never-closes",
            failure="the threshold (-90 dBFS) is below the room's noise: segments run "
            "into max_segment_s (2 s) one after another",
            message=message,
            hint=hint,
            python=f"{name}.error['code'] == {error['code']!r}",
            shot=shoot(widget, "vad-never-closes"),
        )
        assert error["code"] == "vad-never-closes" and error["fix"]["energy_threshold_db"] > -90
    finally:
        press(widget)
    row["passed"] = True


def test_silent_input(lab, browsers):
    lab.write_notebook("diag-silent.ipynb", [SETUP, widget_cell("w")])
    nb = NotebookPage(lab, browsers("silent"), "diag-silent.ipynb").open()
    try:
        nb.run_cell(0)
        nb.run_cell(1)
        widget = nb.wait_widget()
        press(widget)
        message, hint = shown_error(widget, timeout_s=15, words="silence")
        error = nb.kernel().eval("w.error")
        row = record(
            "silent-input",
            failure="the microphone delivers digital silence (muted, wrong input)",
            message=message,
            hint=hint,
            python=f"w.error['code'] == {error['code']!r}",
            shot=shoot(widget, "silent-input"),
        )
        press(widget)
        assert error["code"] == "silent-input" and "VirtualBox" in hint
        row["passed"] = True
    finally:
        nb.close()


def test_permissions_policy_blocks_the_microphone(lab, browsers):
    """The notebook inside a frame that may not use the microphone (allow="microphone 'none'")."""
    lab.write_notebook("diag-frame.ipynb", [SETUP, widget_cell("w")])
    frame_url = f"http://127.0.0.1:{lab.port}/fw-test-frame.html"

    def setup(context):
        page_html = (
            f"<!doctype html><title>embedding page</title><body style='margin:0'>"
            f"<iframe allow=\"microphone 'none'\" style='width:1260px;height:880px;border:0' "
            f"src='{lab.url('diag-frame.ipynb')}'></iframe></body>"
        )
        context.route(frame_url, lambda route: route.fulfill(status=200, content_type="text/html", body=page_html))

    context = browsers("talk").new_context(viewport={"width": 1280, "height": 900})
    try:
        setup(context)
        page = context.new_page()
        page.goto(frame_url)
        frame = page.frame_locator("iframe")
        frame.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=90_000)
        frame.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
            state="attached", timeout=90_000
        )
        lab.kernel("diag-frame.ipynb", timeout=60)
        for i in range(2):
            cell = frame.locator(".jp-Notebook .jp-Cell").nth(i)
            cell.locator(".jp-InputArea-editor").click()
            page.keyboard.press("Shift+Enter")
        widget = frame.locator(".jp-OutputArea-output:has(.fw-record)").last
        widget.locator(".fw-record").wait_for(state="visible", timeout=60_000)
        kernel = lab.kernel("diag-frame.ipynb")
        wait_for(
            lambda: kernel.eval("'w' in globals() and w._env.get('policy_allows') is False"),
            20,
            "the env report: the policy forbids the microphone",
        )
        press(widget)
        message, hint = shown_error(widget, words="own")
        error = kernel.eval("w.error")
        row = record(
            "permissions-policy",
            failure="the notebook is embedded in a frame without microphone "
            "permission (<iframe allow=\"microphone 'none'\">; VS Code webviews, some hosted notebooks)",
            message=message,
            hint=hint,
            python=f"w.error['code'] == {error['code']!r}",
            shot=shoot(widget, "permissions-policy"),
        )
        assert error["code"] == "blocked-by-policy" and "permissions policy" in message
        checks = kernel.eval("[[c.name, c.ok] for c in w.diagnose()]")
        assert ["permissions policy", False] in checks, checks
        row["passed"] = True
    finally:
        context.close()
        lab.shutdown("diag-frame.ipynb")


def test_front_end_never_loaded(lab, browsers):
    """The Jupyter widget manager's extension fails to load (a broken or partial install):
    the cell shows the widget's plain-text output, and the kernel notices the silence."""
    lab.write_notebook("diag-nofrontend.ipynb", [SETUP, widget_cell("w")])

    def setup(context):
        context.route("**/lab/extensions/@jupyter-widgets/**", lambda route: route.abort())

    nb = NotebookPage(lab, browsers("talk"), "diag-nofrontend.ipynb", setup=setup).open()
    try:
        nb.run_cell(0)
        nb.run_cell(1)
        output = nb.cell(1).locator(".jp-OutputArea-output")
        wait_for(
            lambda: "Record button" in (output.first.inner_text() if output.count() else ""),
            20,
            "the plain-text output in the cell",
        )
        text = output.first.inner_text()
        kernel = nb.kernel()
        wait_for(
            lambda: kernel.eval("w.error").get("code") == "frontend-missing",
            15,
            "w.error to say the front end never answered",
        )
        error, status = kernel.eval("w.error"), kernel.eval("w.status")
        checks = kernel.eval("[[c.name, c.ok, c.detail] for c in w.diagnose()]")
        SHOTS.mkdir(parents=True, exist_ok=True)
        shot = SHOTS / "frontend-missing.png"
        nb.cell(1).screenshot(path=str(shot))
        row = record(
            "frontend-missing",
            failure="the widget's front end never loads (the widget manager extension "
            "is missing or broken, anywidget absent, a JavaScript error, a front end without widgets)",
            message=text.split("\n")[0],
            hint=text.split("\n", 1)[1] if "\n" in text else "",
            python=f"w.error['code'] == {error['code']!r}; w.status: {status[:80]}...",
            shot=shot,
        )
        assert "anywidget" in text and "JavaScript" in text and "fw-record" not in nb.cell(1).inner_html()
        assert "has not started" in status
        assert checks[0][0] == "kernel link" and checks[0][1] is False and "never answered" in checks[0][2]
        row["passed"] = True
    finally:
        nb.close()


def test_front_end_javascript_error(main_nb):
    """The widget's JavaScript throws as it loads: the page shows the widget manager's error and
    the kernel says the front end never answered."""
    nb = main_nb
    i = nb.index["w_jserr"]
    nb.run_cell(i)
    kernel = nb.kernel()
    wait_for(
        lambda: kernel.eval("w_jserr.error").get("code") == "frontend-missing",
        20,
        "w_jserr.error to say the front end never answered",
    )
    output = nb.cell(i).locator(".jp-OutputArea-output")
    text = output.first.inner_text() if output.count() else ""
    error, status = kernel.eval("w_jserr.error"), kernel.eval("w_jserr.status")
    checks = kernel.eval("[[c.name, c.ok, c.detail] for c in w_jserr.diagnose()]")
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "frontend-js-error.png"
    nb.cell(i).screenshot(path=str(shot))
    row = record(
        "frontend-js-error",
        failure="the widget's JavaScript throws while loading (a broken bundle, an incompatible front end)",
        message=(text.strip().splitlines() or ["(nothing in the cell)"])[0] + f" / kernel: {status}",
        hint=error["hint"],
        python=f"w.error['code'] == {error['code']!r}",
        shot=shot,
    )
    assert "fw-record" not in nb.cell(i).inner_html()
    assert "has not started" in status and "JavaScript error" in error["hint"]
    assert checks[0][1] is False and "never answered" in checks[0][2]
    row["passed"] = True


def _model_case(nb, name: str, case: str, code: str, failure: str, words: str):
    widget = cell_widget(nb, name)
    kernel = nb.kernel()
    wait_for(
        lambda: kernel.eval(f"{name}.model_state") == "error", 90, f"{name}.model_state == 'error'", interval_s=0.5
    )
    box = widget.locator(".fw-model-error")
    box.wait_for(state="visible", timeout=10_000)
    message = widget.locator(".fw-model-error-message").inner_text()
    hint = widget.locator(".fw-model-error-hint").inner_text()
    info = kernel.eval(f"{name}.model_info")
    row = record(
        case,
        failure=failure,
        message=message,
        hint=hint,
        python=f"{name}.model_state == 'error', model_info['code'] == {info.get('code')!r}",
        shot=shoot(widget, case),
    )
    assert info.get("code") == code, info
    assert words in message + hint, (message, hint)
    checks = kernel.eval(f"[[c.name, c.ok] for c in {name}.diagnose()]")
    assert ["model", False] in checks
    row["passed"] = True


def test_model_folder_missing(main_nb):
    _model_case(
        main_nb,
        "w_missing",
        "model-folder-missing",
        "model-missing",
        "the model folder does not exist (never downloaded, wrong path)",
        "no such folder",
    )


def test_load_without_progress(main_nb):
    nb, name = main_nb, "w_stall"
    widget = cell_widget(nb, name)
    kernel = nb.kernel()
    box = widget.locator(".fw-model-error")
    try:
        wait_for(
            lambda: box.is_visible() and "no progress" in box.inner_text(),
            30,
            "the model box to say the load makes no progress",
        )
        message = widget.locator(".fw-model-error-message").inner_text()
        hint = widget.locator(".fw-model-error-hint").inner_text()
        shot = shoot(widget, "load-stalled")
        row = record(
            "load-stalled",
            failure="a model load makes no progress for a long time (a stuck download, "
            "a swapping machine); here the funasr import, with diagnose.LOAD_STALL_S cut from 120 s to 1 s",
            injected="",
            message=message,
            hint=hint,
            python=f"{name}.model_state == 'loading', model_info['stalled'] is True, code 'load-stalled'",
            shot=shot,
        )
        assert "network" in hint
        wait_for(
            lambda: kernel.eval(f"{name}.model_state") == "ready", 90, "the load to finish after all", interval_s=0.5
        )
        log = kernel.eval("[i.get('code') for i in _stall_log]")
        assert "load-stalled" in log, log
        wait_for(lambda: not box.is_visible(), 10, "the box to go once the load is done")
    finally:
        kernel.exec("diagnose.LOAD_STALL_S = 120.0")
    row["passed"] = True


def test_corrupt_weights(main_nb):
    _model_case(
        main_nb,
        "w_corrupt",
        "corrupt-weights",
        "weights-corrupt",
        "model.pt is truncated (an interrupted download)",
        "interrupted download",
    )


def test_corrupt_onnx(main_nb):
    _model_case(
        main_nb,
        "w_badonnx",
        "corrupt-onnx",
        "weights-corrupt",
        "model.onnx is truncated, with runtime='onnx' (an interrupted export or download)",
        "python -m funasr_widget.models export",
    )


def test_funasr_not_installed(main_nb):
    _model_case(
        main_nb,
        "w_nofunasr",
        "asr-missing",
        "asr-missing",
        "funasr is not installed where the kernel runs (hidden from the import in this kernel)",
        "pip install",
    )
    ROWS["asr-missing"]["injected"] = "in the kernel: sys.modules['funasr'] = None while the model loads"


@pytest.mark.parametrize(
    "name, case, words",
    [("w_oom", "cuda-oom", "ran out of GPU memory"), ("w_cudainit", "cuda-init-failed", "could not use CUDA")],
)
def test_cuda_failure_while_loading_falls_back_to_the_cpu(main_nb, name, case, words):
    widget = cell_widget(main_nb, name)
    kernel = main_nb.kernel()
    wait_for(lambda: kernel.eval(f"{name}.model_state") == "ready", 90, f"{name} ready on the CPU", interval_s=0.5)
    info = kernel.eval(f"{name}.model_info")
    status = widget.locator(".fw-status").inner_text()
    badge = widget.locator(".fw-model").inner_text()
    row = record(
        case,
        injected="in the kernel: torch reports a GPU and loading on it raises CUDA's own error "
        "(this machine has no GPU)",
        failure=f"device='cuda' and the load fails: {words.replace('could not', 'cannot')}",
        message=status,
        hint=badge,
        python=f"{name}.model_info['device'] == {info['device']!r}, notes",
        shot=shoot(widget, case),
    )
    assert info["device"] == "cpu" and words in info["message"] and "CPU" in status, (info, status)
    assert "on cpu" in badge, badge
    kernel.exec("models.release()")
    row["passed"] = True


def played(page) -> list[dict]:
    return page.evaluate("() => window.__fwPlayed.splice(0)")


def test_self_test(main_nb):
    nb, name = main_nb, "w_test"
    widget = cell_widget(nb, name)
    kernel = nb.kernel()
    played(nb.page)
    press(widget, ".fw-selftest")
    result = widget.locator(".fw-selftest-result")
    wait_for(lambda: "Peak" in result.inner_text(), 15, "the self-test's verdict in the widget")
    wait_for(lambda: nb.page.evaluate("() => window.__fwPlayed.length") > 0, 10, "the playback")
    text = result.inner_text()
    got = kernel.eval(f"{name}.self_test_result")
    kernel.exec(f"np.save('/tmp/fw-selftest.npy', {name}._self_test.audio)")
    recorded = np.load("/tmp/fw-selftest.npy")
    buffers = played(nb.page)
    row = record(
        "self-test",
        failure="'does my microphone work at all?': the Test mic button (or w.self_test())",
        message=text,
        hint="",
        python=f"{name}.self_test_result: code {got['code']!r}, peak {got['peak_db']} dBFS, RMS {got['rms_db']} dBFS",
        shot=shoot(widget, "self-test"),
    )
    assert got["code"] == "ok" and got["ok"] and -40 < got["rms_db"] < -5, got
    assert 2.5 <= len(recorded) / RATE <= 3.5, len(recorded)
    play = np.array(buffers[-1]["data"], np.float32)
    assert buffers[-1]["rate"] == RATE and len(play) == len(recorded)
    assert np.max(np.abs(play - recorded)) < 1e-6, "the page played what the kernel judged"
    # and from Python
    wait_for(lambda: widget.locator(".fw-selftest").inner_text() == "Test mic", 10, "the playback to end")
    kernel.exec(f"{name}.self_test(seconds=1.5)")
    wait_for(
        lambda: kernel.eval(f"{name}.self_test_result").get("code") not in (None, "running"),
        15,
        "w.self_test(seconds=1.5)'s result",
    )
    assert kernel.eval(f"{name}.self_test_result")["code"] == "ok", kernel.eval(f"{name}.self_test_result")
    assert 1.2 <= kernel.eval(f"{name}.self_test_result")["seconds"] <= 2.0
    row["passed"] = True


def test_segment_playback_and_time_labels(main_nb):
    nb, name = main_nb, "w_play"
    widget = cell_widget(nb, name)
    kernel = nb.kernel()
    press(widget)
    wait_for(lambda: kernel.eval(f"len({name}.segments)") >= 2, 30, "two segments")
    press(widget)
    wait_for(lambda: kernel.eval(f"{name}.recording") is False, 10, "the take to end")
    assert kernel.eval(f"{name}.wait(30)")
    segments = kernel.eval(f"{name}.segments")
    lines = widget.locator(".fw-final")
    wait_for(lambda: lines.count() == len(segments), 10, "one line per segment")
    # every [mm:ss] label lies inside the transcript box and is readable
    assert len(check_time_labels(widget)) == len(segments)
    # click the last line: the page plays that segment's samples, as the kernel recorded them
    played(nb.page)
    seg = segments[-1]
    lines.nth(len(segments) - 1).click()
    wait_for(lambda: nb.page.evaluate("() => window.__fwPlayed.length") > 0, 10, "the segment's playback")
    buffers = played(nb.page)
    kernel.exec(f"np.save('/tmp/fw-seg.npy', {name}.segment_audio({seg['id']})[0])")
    expected = np.load("/tmp/fw-seg.npy")
    play = np.array(buffers[-1]["data"], np.float32)
    shot = shoot(widget, "segment-playback")
    row = record(
        "segment-playback",
        failure="'what did the model hear?': click a transcript line",
        message=lines.nth(len(segments) - 1).inner_text(),
        hint="",
        python=f"segment {seg['id']} ({seg['start']:.2f}-{seg['end']:.2f} s): {len(play)} samples "
        f"played = {len(expected)} in the recording",
        shot=shot,
    )
    assert buffers[-1]["rate"] == RATE and len(play) == len(expected) > 0.2 * RATE
    assert np.max(np.abs(play - expected)) <= 1.5 / 32768, "int16 on the wire: within one step"
    row["passed"] = True


# -- the report ------------------------------------------------------------------------------

ORDER = [
    "insecure-origin",
    "permission-denied",
    "no-device",
    "device-busy",
    "device-gone",
    "suspended-audio",
    "os-blocked",
    "permissions-policy",
    "silent-input",
    "threshold-above-voice",
    "vad-never-closes",
    "frontend-missing",
    "frontend-js-error",
    "model-folder-missing",
    "load-stalled",
    "corrupt-weights",
    "corrupt-onnx",
    "self-test",
    "segment-playback",
]


@pytest.fixture(scope="module", autouse=True)
def write_report():
    yield
    if not ROWS:
        return
    lines = [
        "# What the user sees when the microphone does nothing",
        "",
        "Generated by `tests/browser/test_diagnosis.py` (real JupyterLab + Chromium, fake microphone) "
        f"on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Each row is what the widget showed in that "
        "run (the screenshots in `diagnosis/` are from it too). Injected: only what headless Chromium cannot "
        "do with its own flags, at the browser API (a page script); everything else is the real failure.",
        "",
        "| case | what the user sees | injected? | pass |",
        "|---|---|---|---|",
    ]

    def md(text: str) -> str:  # widget text as markdown: "[00:04](…" must not become a link
        return (text or "").replace("[", "\\[").replace("]", "\\]").replace("<", "&lt;")

    def cell(text: str) -> str:
        return md(text).replace("|", "\\|").replace("\n", " ").strip()

    cases = ORDER + sorted(set(ROWS) - set(ORDER))
    for case in cases:
        row = ROWS.get(case)
        if row is None:
            lines.append(f"| [{case}](#{case}) | (not run) | | no |")
            continue
        lines.append(
            f"| [{case}](#{case}) | {cell(row['message'])[:160]} | {'yes' if row['injected'] else 'no'} | "
            f"{'yes' if row['passed'] else 'NO'} |"
        )
    for case in cases:
        row = ROWS.get(case)
        if row is None:
            continue
        lines += [
            "",
            f"## {case}",
            "",
            f"**Failure:** {md(row['failure'])}",
            "",
            f"**What the user sees:** {md(row['message'])}",
            "",
        ]
        if row["hint"]:
            lines += [f"**The fix shown:** {md(row['hint'])}", ""]
        lines += [
            f"**In Python:** `{row['python']}`",
            "",
            f"**Injected:** {row['injected'] or 'no: the real failure'}",
            "",
            f"**Passed:** {'yes' if row['passed'] else 'NO'}",
            "",
        ]
        if row["screenshot"]:
            lines += [f"![{case}]({row['screenshot']})", ""]
    lines += [
        "",
        "Not in this matrix (no way to cause them in this browser run; unit-tested in tests/test_levels.py with the "
        "real exception types): funasr/torch missing (`asr-missing`: the install command), CUDA out of memory "
        "(`cuda-oom`), CUDA initialisation failure (`cuda-init-failed`).",
        "",
    ]
    # Only a run of the whole matrix rewrites the report; a partial one (-k) writes beside it.
    doc = DOC if set(ORDER) <= set(ROWS) else ARTIFACTS / "diagnosis-partial.md"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(lines))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "diagnosis.json").write_text(json.dumps(ROWS, indent=2))
