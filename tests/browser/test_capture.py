"""Microphone capture end to end: real JupyterLab, real Chromium (fake microphone playing espeak-ng
speech), the real widget front end and kernel side. Run with

    .venv/bin/python -m pytest tests/browser -m browser -x -s              # everything
    .venv/bin/python -m pytest tests/browser -m "browser and not slow" -s  # without the 60 s run

Screenshots land in test-artifacts/ (git-ignored), and the latency figures in
test-artifacts/latency-*.json.
"""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
from browser_harness import ARTIFACTS, INSECURE_HOST, align, check_capture, wait_for

pytestmark = pytest.mark.browser

RATE = 16_000
# Capture only (no ASR model, the numpy energy VAD): these tests are about the audio path.
CELLS = [
    "from funasr_widget import Transcriber\nw = Transcriber(model=None, vad='energy')",
    "w",
]


# -- small steps -------------------------------------------------------------------------------


def open_widget(notebook, browser, name, host="127.0.0.1"):
    nb = notebook(browser, name, CELLS, host=host)
    nb.run_cell(0)
    nb.run_cell(1)
    nb.wait_widget()
    return nb


def button(nb) -> str:
    return nb.widget().locator(".fw-record").inner_text()


def click_record(nb, expect: str = "Stop", timeout_s: float = 15) -> None:
    """Click the Record/Stop button and wait until it reads `expect`."""
    nb.widget().locator(".fw-record").click()
    wait_for(lambda: expect in button(nb), timeout_s, f"button to read {expect!r} (reads {button(nb)!r})")


def seconds(clock: str) -> int:
    m = re.fullmatch(r"\s*(\d+):(\d\d)\s*", clock)
    assert m, f"elapsed time {clock!r} is not mm:ss"
    return int(m[1]) * 60 + int(m[2])


def settled_stats(kernel, timeout_s: float = 10) -> dict:
    """Stats once the take is over: `recording` False (set by the front end after its final chunk)
    and the chunk count no longer moving."""
    wait_for(lambda: kernel.eval("w.recording") is False, timeout_s, "w.recording to become False")
    previous = None
    for _ in range(int(timeout_s / 0.3)):
        stats = kernel.eval("w.session.stats()")
        if previous is not None and stats["chunks"] == previous["chunks"]:
            return stats
        previous = stats
        time.sleep(0.3)
    return previous


def latency_figures(kernel) -> dict:
    kernel.exec("import numpy as np")
    return kernel.eval(
        "(lambda a: {'n': int(len(a)), 'p50': float(np.percentile(a, 50)), 'p95': float(np.percentile(a, 95)),"
        " 'max': float(a.max()), 'min': float(a.min())})(w.session.latencies_ms())"
        " if len(w.session.latencies_ms()) else {'n': 0}",
    )


def fetch_audio(kernel, tmp_path) -> np.ndarray:
    path = tmp_path / "audio.npy"
    kernel.exec(f"import numpy as np\nnp.save({str(path)!r}, w.audio)")
    return np.load(path)


def report(name: str, figures: dict) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"latency-{name}.json").write_text(json.dumps(figures, indent=2))
    print(
        f"\n[{name}] " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
    )


def record_for(nb, kernel, duration_s: float, screenshot: str | None = None) -> dict:
    """Record for `duration_s` through the UI, sampling the meter, the clock and the kernel."""
    assert kernel.eval("w.recording") is False
    click_record(nb, "Stop")
    started = time.monotonic()
    meter, clocks, recording_seen = [], [], []
    shot = None
    while (elapsed := time.monotonic() - started) < duration_s:
        meter.append(nb.meter_percent())
        clocks.append(nb.widget().locator(".fw-elapsed").inner_text())
        if not recording_seen or elapsed > len(recording_seen) * 10:
            recording_seen.append(kernel.eval("w.recording"))
        if screenshot and shot is None and elapsed > 2.0:
            shot = nb.screenshot(screenshot)
        time.sleep(0.25)
    click_record(nb, "Record")
    return {
        "meter": meter,
        "clocks": clocks,
        "recording_seen": recording_seen,
        "screenshot": shot,
        "wall_s": time.monotonic() - started,
    }


# -- the tests ---------------------------------------------------------------------------------


def test_record_speech(lab, mic_browser, notebook, speech, tmp_path):
    """5 s of espeak speech through the fake microphone arrive intact in the kernel."""
    nb = open_widget(notebook, mic_browser, "capture.ipynb")
    kernel = nb.kernel()
    run = record_for(nb, kernel, duration_s=6.0, screenshot="recording.png")
    stats = settled_stats(kernel)
    nb.screenshot("stopped.png")
    status = kernel.eval("w.status")
    audio = fetch_audio(kernel, tmp_path)
    lag, corr = align(audio, speech.reference)
    capture = check_capture(audio, speech.reference, lag)
    lat = latency_figures(kernel)
    report(
        "5s",
        {
            **lat,
            "lag_samples": lag,
            "correlation": corr,
            "capture_slips": capture.slips,
            "seconds": len(audio) / RATE,
            "chunks": stats["chunks"],
        },
    )
    print(
        f"status after stop: {status!r}\nstats: {stats}\nmeter samples: {[round(m) for m in run['meter']]}\nclock: {run['clocks'][0]} .. {run['clocks'][-1]}"
    )
    print(f"audio against the source, per 0.5 s window:\n{capture.table()}")

    # the kernel saw the take start and end
    assert any(run["recording_seen"]), f"w.recording never became True while recording: {run['recording_seen']}"
    assert kernel.eval("w.recording") is False
    # nothing lost, nothing rejected
    assert stats["gaps"] == 0 and stats["lost"] == 0 and stats["rejected"] == 0, stats
    assert stats["dropped_seconds"] == 0, stats
    # all of the take: about as long as the button was on "Stop"
    assert run["wall_s"] - 1.5 <= len(audio) / RATE <= run["wall_s"] + 0.5, (len(audio) / RATE, run["wall_s"])
    # it is the speech that was played, resampled to 16 kHz mono, but for the fake capture's own
    # 10 ms slips (a starved Chromium audio thread skips or repeats a buffer: check_capture)
    assert not capture.problems, f"recorded audio correlates {corr:.3f} with the source (lag {lag} samples)\n{capture}"
    # the UI moved: meter and clock
    assert len({round(m, 1) for m in run["meter"]}) >= 3 and max(run["meter"]) > 30, run["meter"]
    assert seconds(run["clocks"][0]) <= 1 and seconds(run["clocks"][-1]) >= 4, run["clocks"]
    assert run["screenshot"] is not None and run["screenshot"].exists()
    # the energy VAD's threshold (-45 dBFS on the -60..0 meter) is drawn where the level is read
    threshold = nb.widget().locator(".fw-threshold")
    assert threshold.is_visible() and threshold.evaluate("e => e.style.left") == "25%"
    # and the level made it to the kernel's stats
    assert stats["level_db"] is not None and stats["latency_ms_p50"] is not None, stats


@pytest.mark.slow
def test_record_60s(lab, mic_browser, notebook, tmp_path):
    """A minute of audio: about 600 chunks of 100 ms, none lost; latency figures for the README."""
    nb = open_widget(notebook, mic_browser, "capture60.ipynb")
    kernel = nb.kernel()
    run = record_for(nb, kernel, duration_s=60.0)
    stats = settled_stats(kernel)
    n = kernel.eval("len(w.audio)")
    lat = latency_figures(kernel)
    report("60s", {**lat, "chunks": stats["chunks"], "seconds": n / RATE, "wall_s": run["wall_s"]})
    print(f"stats: {stats}")

    assert stats["gaps"] == 0 and stats["lost"] == 0 and stats["rejected"] == 0, stats
    assert stats["dropped_seconds"] == 0, stats
    assert 580 <= stats["chunks"] <= 625, stats
    # every chunk was a full 100 ms one except the final flush
    assert stats["chunks"] - 1 <= n / 1600 <= stats["chunks"], (n, stats["chunks"])
    assert run["wall_s"] - 1.5 <= n / RATE <= run["wall_s"] + 0.5, (n / RATE, run["wall_s"])
    assert lat["n"] == stats["chunks"], (lat, stats)


def test_insecure_origin(lab, mic_browser, notebook):
    """On http://<not localhost> the browser hides the microphone: say so, with the fix."""
    nb = open_widget(notebook, mic_browser, "insecure.ipynb", host=INSECURE_HOST)
    assert nb.page.evaluate("window.isSecureContext") is False
    origin = f"http://{INSECURE_HOST}:{lab.port}"
    widget = nb.widget()
    widget.locator(".fw-record").click()
    box = widget.locator(".fw-error")
    box.wait_for(state="visible", timeout=10_000)
    # the kernel's text (with the hint from diagnose.py), not the local fallback
    wait_for(
        lambda: "localhost" in widget.locator(".fw-error-hint").inner_text(), 10, "the error hint to mention localhost"
    )
    message = widget.locator(".fw-error-message").inner_text()
    hint = widget.locator(".fw-error-hint").inner_text()
    nb.screenshot("error-insecure-context.png")
    print(f"\nmessage: {message}\nhint: {hint}")
    assert "secure" in message and origin in message, message
    assert "localhost" in hint, hint
    kernel = nb.kernel()
    error = kernel.eval("w.error")
    assert error["code"] == "insecure-context", error
    assert "Record" in button(nb) and kernel.eval("w.recording") is False


def test_permission_denied(lab, launch_browser, notebook):
    """The user (here: Chromium's fake permission UI) blocks the microphone."""
    browser = launch_browser(grant_mic=False)
    try:
        nb = open_widget(notebook, browser, "denied.ipynb")
        widget = nb.widget()
        widget.locator(".fw-record").click()
        widget.locator(".fw-error").wait_for(state="visible", timeout=10_000)
        wait_for(
            lambda: "Site settings" in widget.locator(".fw-error-hint").inner_text(),
            10,
            "the Chrome fix in the error hint",
        )
        message = widget.locator(".fw-error-message").inner_text()
        hint = widget.locator(".fw-error-hint").inner_text()
        nb.screenshot("error-permission-denied.png")
        print(f"\nmessage: {message}\nhint: {hint}")
        assert "permission" in message.lower() and "denied" in message.lower(), message
        assert "Microphone: Allow" in hint and "reload" in hint, hint
        kernel = nb.kernel()
        error = kernel.eval("w.error")
        assert error["code"] == "permission-denied", error
        assert "Record" in button(nb) and kernel.eval("w.recording") is False
        assert kernel.eval("w._env.get('permission')") == "denied"
    finally:
        browser.close()


def test_reload_mid_recording(lab, mic_browser, notebook):
    """Reloading the page while recording keeps the kernel and the audio it already had."""
    nb = open_widget(notebook, mic_browser, "reload.ipynb")
    kernel = nb.kernel()
    kernel.exec("import os\n_fw_marker = os.getpid()")
    pid, kernel_id = kernel.eval("_fw_marker"), kernel.id
    click_record(nb, "Stop")
    time.sleep(3.0)
    before = kernel.eval("len(w.audio)")
    nb.reload()
    print(f"\nafter the reload, before showing the widget again: w.recording={kernel.eval('w.recording')}")

    # same kernel, not restarted, still answering
    assert lab.session("reload.ipynb")["kernel"]["id"] == kernel_id
    assert kernel.eval("os.getpid()") == pid and kernel.eval("_fw_marker") == pid
    audio_s = kernel.eval("len(w.audio)") / RATE
    stats = kernel.eval("w.session.stats()")
    print(f"\nbefore reload {before / RATE:.2f} s, after {audio_s:.2f} s; stats {stats}")
    assert audio_s >= 2.0 and audio_s >= before / RATE, (audio_s, before)
    assert stats["lost"] == 0 and stats["gaps"] == 0 and stats["rejected"] == 0, stats

    # show the widget again: it must not claim to be recording
    nb.run_cell(1)
    nb.wait_widget()
    assert "Record" in button(nb), button(nb)
    nb.screenshot("after-reload.png")
    wait_for(
        lambda: kernel.eval("w.recording") is False,
        5,
        "w.recording to be False once the widget is shown again after the reload (the page that was recording is gone)",
    )

    # and it records again, appending to the same session
    click_record(nb, "Stop")
    time.sleep(1.5)
    click_record(nb, "Record")
    stats = settled_stats(kernel)
    again_s = kernel.eval("len(w.audio)") / RATE
    assert again_s >= audio_s + 1.0, (again_s, audio_s)
    assert stats["lost"] == 0 and stats["gaps"] == 0 and stats["rejected"] == 0, stats


def test_a_second_tab_is_refused_while_the_first_records(lab, mic_browser, notebook):
    """One widget, shown in two tabs of the same notebook: only one of them records at a time,
    and the second is told why in its own widget."""
    from browser_harness import NotebookPage

    nb = open_widget(notebook, mic_browser, "two-tabs.ipynb")
    kernel = nb.kernel()
    click_record(nb, "Stop")
    second = NotebookPage(lab, mic_browser, "two-tabs.ipynb").open()
    try:
        second.run_cell(1)  # `w` again: a view of the same widget in the second tab
        widget = second.wait_widget()
        widget.locator(".fw-record").click()
        widget.locator(".fw-error").wait_for(state="visible", timeout=10_000)
        message = widget.locator(".fw-error-message").inner_text()
        hint = widget.locator(".fw-error-hint").inner_text()
        wait_for(
            lambda: "Record" in widget.locator(".fw-record").inner_text(),
            10,
            "the second tab's button to go back to Record",
        )
        second.screenshot("second-tab-refused.png")
        print(f"\nsecond tab: {message} / {hint}")
        assert "another" in message.lower() and hint, (message, hint)
        # The first tab records on, undisturbed.
        before = kernel.eval("len(w.audio)")
        time.sleep(1.0)
        assert kernel.eval("len(w.audio)") >= before + 0.8 * RATE
        assert "Stop" in button(nb) and kernel.eval("w.recording") is True
        click_record(nb, "Record")
        stats = settled_stats(kernel)
        assert stats["lost"] == 0 and stats["rejected"] == 0, stats
        # Once the first has stopped, the second may record.
        widget.locator(".fw-record").click()
        wait_for(lambda: "Stop" in widget.locator(".fw-record").inner_text(), 15, "the second tab to record")
        time.sleep(1.0)
        widget.locator(".fw-record").click()
        wait_for(lambda: kernel.eval("w.recording") is False, 10, "the second tab's take to end")
        assert kernel.eval("len(w.audio)") >= stats["seconds"] * RATE + 0.8 * RATE
    finally:
        second.context.close()
