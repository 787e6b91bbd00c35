"""VadExplorer in real JupyterLab + Chromium, on ~67 s of espeak-ng speech (15 sentences, known
pauses) made in the kernel with funasr_widget.samples.speech:

    .venv/bin/python -m pytest tests/browser/test_explorer_ui.py -m browser -x -s

Moves sliders and checks that the regions change on the page and in the kernel, switches to the
real FSMN-VAD, compares two setups, clicks regions (table and canvas) and checks `selected`.
Writes test-artifacts/explorer-timing.json (slider input -> canvas redrawn with the new regions,
and the kernel's share) and the screenshots test-artifacts/explorer*.png (light, narrow, zoomed, dark).
"""

from __future__ import annotations

import json
import statistics
import time

import pytest
from browser_harness import ARTIFACTS, wait_for

pytestmark = pytest.mark.browser

WIDGET = ".jp-OutputArea-output:has(.fwx-canvas)"
MOVES = 12  # slider moves measured per knob (even: each series ends where it began)


def cells(model_store) -> list[str]:
    return [
        "from funasr_widget import VadExplorer, models, samples\n"
        f"models.set_models_dir({str(model_store)!r})\n"
        "sp = samples.speech(samples.SENTENCES * 5)  # 15 sentences, 1.5 s pauses: ~67 s\n"
        "ex = VadExplorer(sp.samples, 16000, vad='energy')",
        "ex",
    ]


def slider(widget, param: str, set_: str = "main"):
    return widget.locator(f".fwx-slider[data-set='{set_}'][data-param='{param}']")


def timings(widget) -> list[dict]:
    return json.loads(widget.locator(".fwx-root").get_attribute("data-timings") or "[]")


def rows(widget) -> int:
    return widget.locator(".fwx-region-row").count()


def move(widget, param: str, value, set_: str = "main", timeout_s: float = 10) -> dict:
    """Set a slider as a user would (input events), wait until the page has redrawn with the
    kernel's answer; the timing of that move."""
    before = len(timings(widget))
    slider(widget, param, set_).fill(str(value))
    wait_for(lambda: len(timings(widget)) > before, timeout_s, f"the redraw after {param}={value}")
    return timings(widget)[-1]


def back_and_forth(widget, param: str, other, back, set_: str = "main") -> list[dict]:
    """MOVES slider moves to `other` and back, ending on `back`; their timings."""
    return [move(widget, param, back if i % 2 else other, set_) for i in range(MOVES)]


def summary(moves: list[dict]) -> dict:
    def stats(key):
        values = sorted(m[key] for m in moves)
        return {
            "median": round(statistics.median(values), 1),
            "max": round(values[-1], 1),
            "p90": round(values[int(0.9 * (len(values) - 1))], 1),
        }

    return {"moves": len(moves), "input_to_redraw_ms": stats("input_to_redraw_ms"), "kernel_ms": stats("kernel_ms")}


def canvas_ink(widget) -> int:
    """How many canvas pixels are drawn (not transparent)."""
    return widget.locator(".fwx-canvas").evaluate(
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }"
    )


def screenshot(nb, widget, name: str, width: int = 1280) -> None:
    """The whole widget: the notebook scrolls inside the page, so make the page tall enough."""
    nb.page.set_viewport_size({"width": width, "height": 900})
    nb.page.wait_for_timeout(300)  # the canvas redraws at its new width
    height = widget.bounding_box()["height"]
    nb.page.set_viewport_size({"width": width, "height": max(900, int(height) + 300)})
    widget.scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    widget.screenshot(path=str(ARTIFACTS / name))
    nb.page.set_viewport_size({"width": 1280, "height": 900})


def click_time(widget, kernel, seconds: float, upper: bool = True) -> None:
    """Click the canvas at a time of the recording (in A's half, or B's)."""
    box = widget.locator(".fwx-canvas").bounding_box()
    view = kernel.eval("ex.view")
    x = (seconds - view["start"]) / (view["end"] - view["start"]) * box["width"]
    widget.locator(".fwx-canvas").click(position={"x": x, "y": box["height"] * (0.3 if upper else 0.6)})


def test_explore_vad_parameters(lab, mic_browser, notebook, model_store):
    nb = notebook(mic_browser, "explorer.ipynb", cells(model_store))
    nb.run_cell(0, timeout_ms=120_000)
    nb.run_cell(1)
    widget = nb.page.locator(WIDGET).last
    widget.locator(".fwx-canvas").wait_for(state="visible", timeout=30_000)
    kernel = nb.kernel()
    duration = kernel.eval("ex.duration")
    assert 60 <= duration <= 75, duration

    # the regions: one per sentence, in the table and drawn over the waveform
    assert kernel.eval("len(ex.regions)") == 15
    wait_for(lambda: rows(widget) == 15, 10, "15 region rows")
    wait_for(lambda: canvas_ink(widget) > 20_000, 10, "the waveform and regions on the canvas")
    assert widget.locator(".fwx-agreement").is_hidden()  # no comparison yet
    # the energy backend shows its threshold slider, not the speech-score one
    assert slider(widget, "energy_threshold_db").is_visible()
    assert slider(widget, "speech_threshold").is_hidden()

    # a longer end silence than the 1.5 s pauses merges the sentences (up to max_segment_s)
    move(widget, "end_silence_ms", 2000)
    assert kernel.eval("ex.params['end_silence_ms']") == 2000
    merged = kernel.eval("len(ex.regions)")
    assert merged < 15 and rows(widget) == merged, (merged, rows(widget))
    move(widget, "max_segment_s", 10)
    assert rows(widget) == kernel.eval("len(ex.regions)") > merged
    move(widget, "max_segment_s", 30)
    move(widget, "end_silence_ms", 700)
    assert rows(widget) == kernel.eval("len(ex.regions)") == 15

    # timing: the slider moves the kernel answers, energy VAD
    energy = back_and_forth(widget, "end_silence_ms", 2000, 700)
    energy += back_and_forth(widget, "energy_threshold_db", -30, -45)

    # the real FSMN-VAD: the first run scores the recording (seconds), then only decisions rerun
    started = time.monotonic()
    widget.locator(".fwx-panel[data-set='main'] .fwx-vad").select_option("fsmn-vad")
    wait_for(
        lambda: kernel.eval("ex.vad") == "fsmn-vad" and "fsmn-vad:" in kernel.eval("ex.status"),
        60,
        "fsmn-vad to segment the recording",
    )
    first_fsmn = {"select_to_regions_s": round(time.monotonic() - started, 2), "status": kernel.eval("ex.status")}
    wait_for(lambda: slider(widget, "speech_threshold").is_visible(), 10, "the speech threshold slider")
    assert slider(widget, "energy_threshold_db").is_hidden()
    wait_for(lambda: rows(widget) == kernel.eval("len(ex.regions)") == 15, 10, "fsmn-vad's 15 regions")
    fsmn = back_and_forth(widget, "end_silence_ms", 2000, 700)
    fsmn += back_and_forth(widget, "speech_threshold", 0.95, 0.6)
    assert kernel.eval("ex.params['speech_threshold']") == 0.6

    # B: the energy VAD beside it, with its agreement
    widget.locator(".fwx-panel[data-set='compare'] .fwx-vad").select_option("energy")
    wait_for(lambda: kernel.eval("ex.compare_vad") == "energy", 10, "B to be the energy VAD")
    agreement = widget.locator(".fwx-agreement")
    wait_for(lambda: "%" in agreement.inner_text(), 10, "the agreement")
    value = kernel.eval("ex.agreement")
    assert 0.5 < value <= 1.0 and f"{value * 100:.1f} %" in agreement.inner_text()
    wait_for(
        lambda: widget.locator(".fwx-compare-row").count() == kernel.eval("len(ex.compare_regions)") == 15,
        10,
        "B's rows",
    )
    compared = back_and_forth(widget, "energy_threshold_db", -30, -45, set_="compare")
    assert kernel.eval("ex.compare_params['energy_threshold_db']") == -45

    # clicking a row selects the region in the kernel, and its audio arrives to play
    widget.locator(".fwx-region-row").nth(3).click()
    wait_for(lambda: (kernel.eval("ex.selected") or {}).get("index") == 3, 10, "selected to be region 3")
    region = kernel.eval("ex.regions[3]")
    played = wait_for(lambda: widget.locator(".fwx-root").get_attribute("data-played"), 10, "the clip to play")
    assert abs(json.loads(played)["samples"] - region["duration"] * 16000) <= 1, (played, region)
    assert widget.locator(".fwx-region-row").nth(3).get_attribute("data-selected") is not None

    # clicking a region on the canvas: A's half, then B's
    seventh = kernel.eval("ex.regions[6]")
    click_time(widget, kernel, (seventh["start"] + seventh["end"]) / 2)
    wait_for(lambda: (kernel.eval("ex.selected") or {}).get("index") == 6, 10, "selected to be region 6")
    b_region = kernel.eval("ex.compare_regions[2]")
    click_time(widget, kernel, (b_region["start"] + b_region["end"]) / 2, upper=False)
    wait_for(
        lambda: kernel.eval("ex.selected") == {"index": 2, "compare": True, **b_region},
        10,
        "selected to be B's region 2",
    )

    # drag to zoom: the kernel's view follows, and a finer envelope is drawn
    canvas = widget.locator(".fwx-canvas")
    box = canvas.bounding_box()
    nb.page.mouse.move(box["x"] + box["width"] * 0.10, box["y"] + 60)
    nb.page.mouse.down()
    nb.page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + 60, steps=5)
    nb.page.mouse.up()
    wait_for(
        lambda: kernel.eval("ex.view")["end"] - kernel.eval("ex.view")["start"] < duration * 0.2,
        10,
        "the view to zoom in",
    )
    view = kernel.eval("ex.view")
    assert view["start"] == pytest.approx(duration * 0.10, abs=1.0), view
    wait_for(lambda: widget.locator(".fwx-window").inner_text().startswith("0:0"), 5, "the window label")
    nb.page.wait_for_timeout(300)
    screenshot(nb, widget, "explorer-zoom.png")
    widget.locator(".fwx-fit").click()
    wait_for(lambda: kernel.eval("ex.view")["end"] == pytest.approx(duration, abs=0.01), 10, "the whole recording")
    nb.page.wait_for_timeout(300)

    figures = {
        "recording_s": round(duration, 1),
        "energy": summary(energy),
        "fsmn-vad": summary(fsmn),
        "fsmn-vad_vs_energy": summary(compared),
        "fsmn-vad_first_run": first_fsmn,
        "note": "input_to_redraw_ms: slider input event -> the animation frame after the canvas was "
        "redrawn with the kernel's new regions; kernel_ms: segmentation (both setups) in the kernel",
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "explorer-timing.json").write_text(json.dumps(figures, indent=2))
    print("\n" + json.dumps(figures, indent=2))
    screenshot(nb, widget, "explorer.png")
    screenshot(nb, widget, "explorer-narrow.png", width=700)  # e.g. beside JupyterLab's side bar

    # the dark theme: the canvas redraws in its colours
    nb.page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    nb.page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
    nb.page.locator(".lm-Menu-itemLabel").get_by_text("JupyterLab Dark", exact=True).click()
    nb.page.locator("body[data-jp-theme-light='false']").wait_for(state="attached", timeout=15_000)
    nb.page.wait_for_timeout(1000)
    screenshot(nb, widget, "explorer-dark.png")
