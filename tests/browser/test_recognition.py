"""Live recognition end to end: real JupyterLab, real Chromium whose fake microphone plays two
espeak-ng sentences, the real FSMN-VAD weights and a tiny random-weight SenseVoice in the kernel.

    .venv/bin/python -m pytest tests/browser/test_recognition.py -m browser -x -s

The tiny model's text is gibberish, so the test checks structure: one segment per sentence,
ordered times, the same texts in the kernel and on the page, partials while speaking and none
at the end. Screenshots: test-artifacts/recognition.png (after) and recognition-partial.png
(while a partial was shown); figures: test-artifacts/recognition.json.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from browser_harness import ARTIFACTS, align, check_capture, check_time_labels, make_utterances, wait_for

pytestmark = pytest.mark.browser

RATE = 16_000
SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Speech recognition runs live in the notebook."]
LEAD_S, GAP_S = 0.5, 1.5
AFTER_SPEECH_S = 2.0  # recorded past the last word: the VAD closes a segment after 700 ms of silence
SAMPLE_EVERY_S = 0.2

# What the kernel notes as it happens: (kind, monotonic time, seconds of audio received, value).
INSTRUMENT = """
import time as _fw_time
_fw_log = []
def _fw_note(kind, value):
    _fw_log.append((kind, _fw_time.monotonic(), w.session.seconds(), value))
w.observe(lambda change: _fw_note("partial", change["new"]), "partial")
w.on_segment(lambda seg: _fw_note("segment", seg["id"]))
"""


@pytest.fixture(scope="module")
def utterances(tmp_path_factory):
    return make_utterances(tmp_path_factory.mktemp("utterances"), SENTENCES, lead_s=LEAD_S, gap_s=GAP_S)


@pytest.fixture(scope="module")
def sentences_browser(launch_browser, utterances):
    browser = launch_browser(grant_mic=True, wav=utterances.path)
    yield browser
    browser.close()


def click_record(nb, expect: str, timeout_s: float = 15) -> None:
    button = nb.widget().locator(".fw-record")
    button.click()
    wait_for(lambda: expect in button.inner_text(), timeout_s, f"the button to read {expect!r}")


def test_recognize_two_sentences(lab, sentences_browser, notebook, utterances, model_store, tmp_path):
    t_begin = time.monotonic()
    cells = [
        "from funasr_widget import Transcriber, models\n"
        f"models.set_models_dir({str(model_store)!r})\n"
        "w = Transcriber(model='sensevoice-small', vad='fsmn-vad', device='cpu')",
        "w",
    ]
    nb = notebook(sentences_browser, "recognition.ipynb", cells)
    nb.run_cell(0)
    nb.run_cell(1)
    widget = nb.wait_widget()
    kernel = nb.kernel()
    kernel.exec(INSTRUMENT)

    # The model is loaded before the first word: the kernel says so, and so does the badge.
    def model_ready():
        state = kernel.eval("w.model_state")
        if state == "error":
            raise AssertionError(f"the model failed to load: {kernel.eval('w.model_info')}")
        return state == "ready"

    wait_for(model_ready, 90, "w.model_state == 'ready'", interval_s=0.3)
    badge = widget.locator(".fw-model")
    wait_for(
        lambda: badge.get_attribute("data-state") == "ready" and "ready" in badge.inner_text(),
        10,
        "the .fw-model badge to show ready",
    )
    badge_text = badge.inner_text()
    t_ready = time.monotonic()

    # Record both sentences, sampling the partial in the kernel and on the page.
    speech_end_s = utterances.intervals_s[-1][1]
    click_record(nb, "Stop")
    started = time.monotonic()
    samples = []  # (seconds since Record, kernel partial, page partial)
    partial_shot, shot_with_final = None, False
    partial_box, finals = widget.locator(".fw-partial"), widget.locator(".fw-final")
    while (elapsed := time.monotonic() - started) < speech_end_s + AFTER_SPEECH_S:
        kernel_partial = kernel.eval("w.partial")
        page_partial = partial_box.text_content() or ""
        samples.append((round(elapsed, 2), kernel_partial, page_partial))
        # The first partial on screen, then (better) one under the first sentence's final line.
        if page_partial.strip() and (partial_shot is None or (not shot_with_final and finals.count())):
            partial_shot = nb.screenshot("recognition-partial.png")
            shot_with_final = finals.count() > 0
        time.sleep(max(0.0, SAMPLE_EVERY_S - (time.monotonic() - started - elapsed)))
    click_record(nb, "Record")
    wait_for(lambda: kernel.eval("w.recording") is False, 10, "w.recording to become False")
    assert kernel.eval("w.wait(60)") is True, "the pipeline did not finish within 60 s of Stop"

    segments = kernel.eval("w.segments")
    final_partial = kernel.eval("w.partial")
    log = kernel.eval("_fw_log")
    wait_for(
        lambda: finals.count() == len(segments),
        10,
        f"{len(segments)} .fw-final elements on the page (there are {finals.count()})",
    )
    wait_for(lambda: (partial_box.text_content() or "") == "", 5, "the page's .fw-partial to be empty")
    page_finals = [finals.nth(i).text_content() or "" for i in range(finals.count())]
    shot = nb.screenshot("recognition.png")
    # Each line's [mm:ss] is drawn inside the transcript and readable (it once sat outside its box).
    assert len(check_time_labels(widget)) == len(segments)

    # Where the speech landed in the session: align what the kernel received with the file.
    path = tmp_path / "audio.npy"
    kernel.exec(f"import numpy as np\nnp.save({str(path)!r}, w.audio)")
    audio = np.load(path)
    lag, corr = align(audio, utterances.reference)
    capture = check_capture(audio, utterances.reference, lag)
    spoken = [(a + lag / RATE, b + lag / RATE) for a, b in utterances.intervals_s]

    # Figures for the report.
    partial_events = [(round(rec_s, 2), text) for kind, _, rec_s, text in log if kind == "partial"]
    nonempty_events = [(s, text) for s, text in partial_events if text]
    emitted = {value: (mono, rec_s) for kind, mono, rec_s, value in log if kind == "segment"}
    latency = []
    for seg in segments:
        _, rec_s = emitted[seg["id"]]
        ends = [b for a, b in spoken if seg["start"] - 0.3 <= b and a <= seg["end"] + 0.3]
        latency.append(round(rec_s - ends[-1], 2) if ends else None)
    figures = {
        "segments": [{k: seg[k] for k in ("id", "start", "end", "text")} for seg in segments],
        "spoken_s": [(round(a, 2), round(b, 2)) for a, b in spoken],
        "lag_s": round(lag / RATE, 3),
        "correlation": round(corr, 3),
        "capture_slips": capture.slips,
        "audio_s": round(len(audio) / RATE, 2),
        "partial_events": len(partial_events),
        "nonempty_partial_events": len(nonempty_events),
        "kernel_polls": len(samples),
        "kernel_polls_nonempty": sum(1 for _, k, _ in samples if k),
        "page_polls_nonempty": sum(1 for _, _, p in samples if p.strip()),
        "speech_end_to_segment_s": latency,
        "badge": badge_text,
        "partial_screenshot": None
        if partial_shot is None
        else f"{partial_shot.name} ({'under a final line' if shot_with_final else 'first partial'})",
        "model_ready_after_s": round(t_ready - t_begin, 1),
        "test_s": round(time.monotonic() - t_begin, 1),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "recognition.json").write_text(json.dumps(figures, indent=2, ensure_ascii=False))
    print("\n" + json.dumps(figures, indent=2, ensure_ascii=False))
    print("partial events (audio s, text):", [(s, t[:30]) for s, t in partial_events])
    print("polls (s, kernel, page):", [(s, k[:20], p[:20]) for s, k, p in samples])
    print(f"audio against the file, per 0.5 s window:\n{capture.table()}")

    # The kernel heard the file (sanity for the timing figures below), but for the fake capture's
    # own 10 ms slips (a starved Chromium audio thread skips or repeats a buffer: check_capture).
    assert not capture.problems, f"recorded audio correlates {corr:.3f} with the file (lag {lag} samples)\n{capture}"
    # One segment per sentence, in order, each with text.
    assert len(segments) >= 2, segments
    for seg in segments:
        assert 0 <= seg["start"] < seg["end"], seg
        assert isinstance(seg["text"], str) and seg["text"].strip(), seg
    assert [s["id"] for s in segments] == list(range(len(segments))), segments
    for a, b in zip(segments, segments[1:], strict=False):
        assert a["end"] <= b["start"], (a, b)
    for a, b in spoken:
        assert any(seg["start"] < b and a < seg["end"] for seg in segments), (
            f"no segment covers the sentence spoken at {a:.2f}-{b:.2f} s: {segments}"
        )
    assert kernel.eval("w.text") == " ".join(s["text"] for s in segments if s["text"])
    # The page shows one final line per segment, with its text.
    assert len(page_finals) == len(segments), (page_finals, segments)
    for seg, line in zip(segments, page_finals, strict=False):
        assert seg["text"] in line, (seg["text"], line)
    # A partial was shown while speaking, and is gone at the end.
    assert any(a - 0.2 <= s <= b + 1.0 for s, _ in nonempty_events for a, b in spoken), (
        f"no non-empty partial during speech: {partial_events}"
    )
    assert any(k or p.strip() for _, k, p in samples), f"the polls never saw a partial: {samples}"
    assert final_partial == "", final_partial
    assert shot.exists()
