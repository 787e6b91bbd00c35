"""The browser tests' check that the kernel received the fake microphone's audio
(browser_harness.check_capture), on recordings made here from real speech: it forgives the fake
capture's own 10 ms slips (a Chromium capture buffer skipped or repeated by a starved thread) and
nothing else. No browser needed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "browser"))
from browser_harness import RATE, align, check_capture  # noqa: E402

OFFSET = 8000  # the take starts 0.5 s into the reference: recorded[i] = reference[i + OFFSET]
TAKE = 6 * RATE


@pytest.fixture(scope="module")
def reference(speech) -> np.ndarray:
    return speech.samples


@pytest.fixture
def take(reference) -> np.ndarray:
    return reference[OFFSET : OFFSET + TAKE].copy()


def check(recorded: np.ndarray, reference: np.ndarray):
    lag, _ = align(recorded, reference)
    return check_capture(recorded, reference, lag)


def insert(x: np.ndarray, at_s: float, part: np.ndarray) -> np.ndarray:
    at = int(at_s * RATE)
    return np.concatenate([x[:at], part, x[at:]])


def repeat(x: np.ndarray, at_s: float, n: int = 160) -> np.ndarray:
    at = int(at_s * RATE)
    return insert(x, at_s, x[at - n : at])


def delete(x: np.ndarray, at_s: float, n: int) -> np.ndarray:
    at = int(at_s * RATE)
    return np.concatenate([x[:at], x[at + n :]])


def test_the_same_audio_passes(take, reference):
    result = check(take, reference)
    assert result.problems == [] and result.slips == [], result
    assert len(result.windows) == TAKE // 8000 and all(w.lag == -OFFSET and w.corr > 0.999 for w in result.windows)


def test_a_gain_change_passes(take, reference):
    assert check(0.3 * take, reference).problems == []


@pytest.mark.parametrize("samples", [0.3, 0.5])
def test_a_fractional_sample_delay_passes(reference, samples):
    """The browser's resampling chain and the reference's put the audio a fraction of a sample
    apart (CI: the pauses' noise correlated 0.85 at one whole lag while speech gave 0.99)."""
    spectrum, freqs = np.fft.rfft(reference), np.fft.rfftfreq(len(reference))
    delayed = np.fft.irfft(spectrum * np.exp(-2j * np.pi * freqs * samples), len(reference))
    result = check(delayed[OFFSET : OFFSET + TAKE].astype(np.float32), reference)
    assert result.problems == [] and min(w.corr for w in result.windows) > 0.98, result


@pytest.mark.parametrize(
    "slipped, change",
    [
        (lambda x: insert(x, 2.19, np.zeros(160, np.float32)), 160),  # a buffer of silence
        (lambda x: repeat(x, 2.19), 160),  # a buffer played twice
        (lambda x: delete(x, 2.19, 160), -160),  # a buffer skipped
        (lambda x: repeat(x, 0.2), 160),  # inside the first window
        (lambda x: delete(x, 5.3, 160), -160),  # inside the last one judged (5.0-5.5 s)
        (lambda x: repeat(x, 3.0), 160),  # on a window boundary
        (lambda x: delete(x, 3.3, 320), -320),  # two buffers at once
    ],
    ids=["zeros", "repeat", "skip", "first-window", "last-window", "boundary", "two-buffers"],
)
def test_one_capture_slip_passes(take, reference, slipped, change):
    result = check(slipped(take), reference)
    assert result.problems == [], result
    assert [c for _, c in result.slips] == [change], result


def test_three_slips_pass_even_in_neighbouring_windows(take, reference):
    recorded = delete(repeat(repeat(take, 4.7), 4.2), 3.7, 160)  # one in each of three windows
    result = check(recorded, reference)
    assert result.problems == [], result
    assert result.slips == [(3.7, -160), (4.19, 160), (4.7, 160)], result
    assert [w.slip is not None for w in result.windows[7:10]] == [True, True, True], result


def test_five_slips_fail(take, reference):
    recorded = take
    for at_s in (5.2, 4.2, 3.2, 2.2, 1.2):
        recorded = repeat(recorded, at_s)
    result = check(recorded, reference)
    assert len(result.problems) == 1 and result.problems[0].startswith("5 lag changes (at [1.2, 2.2"), result
    assert result.problems[0].endswith("more than 3")


@pytest.mark.parametrize("n", [1600, 2048])  # a lost worklet chunk; a lost block of no particular size
def test_a_lost_chunk_fails(take, reference, n):
    result = check(delete(take, 2.6, n), reference)
    assert len(result.problems) == 1 and f"the lag changes by {-n} samples" in result.problems[0], result


@pytest.mark.parametrize("at_s", [3.0, 3.2])  # one window; across two
def test_other_audio_fails(take, reference, at_s):
    recorded = take.copy()
    at = int(at_s * RATE)
    recorded[at : at + RATE // 2] = reference[150_000 : 150_000 + RATE // 2]
    result = check(recorded, reference)
    assert result.problems and all("no single slip" in p for p in result.problems), result
    assert "per 0.5 s window:" in str(result) and f"{at_s // 0.5 * 0.5:6.2f} s  lag" in str(result)


def test_missing_audio_fails(take, reference):
    recorded = take.copy()
    recorded[3 * RATE : 4 * RATE] = 0.0
    result = check(recorded, reference)
    judged = [p.split(" correlates ")[0] for p in result.problems]
    assert judged == ["the window at 3.00 s", "the window at 3.50 s"], result


def test_the_digital_silence_that_starts_a_take_is_not_judged(reference):
    recorded = repeat(reference[18000 : 18000 + TAKE].copy(), 0.3)  # speech from the first window on
    recorded[:500] = 0.0  # the capture starting: in the browser, 300 to 500 samples
    result = check(recorded, reference)
    assert result.problems == [] and result.slips == [(0.3, 160)], result
    assert result.windows[0].start == 500


def test_a_silent_recording_fails(take, reference):
    assert check_capture(0.0 * take, reference, -OFFSET).problems == ["the recording is all zeros"]


def test_windows_where_the_reference_is_silent_are_skipped(take, reference):
    silent = reference.copy()
    silent[OFFSET + 2 * RATE : OFFSET + 3 * RATE] = 0.0  # digital silence in the file, so in the take too
    recorded = silent[OFFSET : OFFSET + TAKE].copy()
    result = check(recorded, silent)
    assert result.problems == [], result
    assert result.silent == [2 * RATE, 2 * RATE + 8000] and len(result.windows) == TAKE // 8000 - 2
    assert "reference silent: skipped" in result.table()


def test_white_noise_with_a_slip_passes():
    noise = np.random.default_rng(7).normal(0.0, 5e-4, 10 * RATE).astype(np.float32)
    recorded = repeat(noise[OFFSET : OFFSET + TAKE], 2.5)
    result = check(recorded, noise)
    assert result.problems == [] and [c for _, c in result.slips] == [160], result
