"""VadExplorer and its maths (funasr_widget/vad/analysis.py): segmentation of whole recordings,
frame agreement, waveform envelopes, and the widget's traits and messages (kernel side).

fsmn-vad runs funasr's real FsmnVADStreaming on the real weights; silero is skipped when the
silero-vad package is not installed."""

from __future__ import annotations

import time

import numpy as np
import pytest
import traitlets

from funasr_widget import Transcriber, VadExplorer
from funasr_widget.audio import level_db, write_wav
from funasr_widget.vad import create_vad
from funasr_widget.vad.analysis import Segmenter, energy_curve, envelope, frame_agreement, regions

RATE = 16_000


def bursts(spans_s, level=0.3, total_s=6.0, noise=1e-4, seed=0):
    """A 440 Hz tone over the given (start, end) spans in seconds, faint noise elsewhere."""
    x = np.random.default_rng(seed).normal(0, noise, int(total_s * RATE)).astype(np.float32)
    for a, b in spans_s:
        n = np.arange(int(a * RATE), int(b * RATE))
        x[n] += (level * np.sin(2 * np.pi * 440 * n / RATE)).astype(np.float32)
    return x


def streamed(name, samples, **params):
    """What the same VAD says when the audio comes live, in 100 ms blocks."""
    vad, events = create_vad(name, **params), []
    for i in range(0, len(samples), 1600):
        events += vad.accept(samples[i : i + 1600], final=i + 1600 >= len(samples))
    return [(a.ms, b.ms) for a, b in zip(events[::2], events[1::2], strict=False)]


# -- regions ----------------------------------------------------------------------------------


def test_energy_regions_of_tone_bursts():
    x = bursts([(1.0, 2.0), (3.5, 4.0)])
    found = regions(x, "energy", end_silence_ms=500)
    # 30 ms frames: speech from the frame holding 1.0 s, reported 200 ms early (look-back);
    # it ends 100 ms after the last loud frame.
    assert len(found) == 2, found
    for (start, end), (a, b) in zip(found, [(1000, 2000), (3500, 4000)], strict=False):
        assert a - 200 - 30 <= start <= a - 200, found
        assert b + 100 <= end <= b + 100 + 30, found


def test_energy_threshold_and_end_silence_change_the_regions():
    x = bursts([(1.0, 1.5), (1.9, 2.4)], level=0.01)  # about -43 dBFS: under -40, over -45
    assert regions(x, "energy", energy_threshold_db=-40) == []
    assert len(regions(x, "energy", energy_threshold_db=-50, end_silence_ms=200)) == 2
    assert len(regions(x, "energy", energy_threshold_db=-50, end_silence_ms=800)) == 1  # bridges the gap


def test_max_segment_cuts_long_speech():
    found = regions(bursts([(0.5, 5.5)]), "energy", max_segment_s=2)
    # cut at the end of the 30 ms frame that reaches the limit
    assert len(found) == 3 and all(b - a < 2000 + 30 for a, b in found), found


def test_silence_has_no_regions():
    assert regions(np.zeros(RATE * 2, np.float32), "energy") == []


@pytest.mark.parametrize("name", ["energy", "fsmn-vad", "silero"])
def test_explorer_regions_are_the_live_regions(models_at, speech, name):
    """The explorer shows what the VAD does on live audio, for every parameter set; for
    fsmn-vad and silero the network ran once and only the decisions are redone."""
    if name == "silero":
        pytest.importorskip("silero_vad")
    segmenter = Segmenter(speech.samples, name)
    grid = [
        dict(),
        dict(end_silence_ms=100, speech_threshold=0.3),
        dict(end_silence_ms=1500, max_segment_s=2),
        dict(speech_threshold=0.9, energy_threshold_db=-30),
        dict(end_silence_ms=3000, speech_threshold=0.05),
    ]
    for params in grid:
        assert segmenter.regions(**params) == streamed(name, speech.samples, **params), params


def test_the_network_runs_once_per_recording(models_at, speech, monkeypatch):
    from funasr_widget.vad import analysis

    segmenter = Segmenter(speech.samples, "fsmn-vad")
    first = segmenter.regions()

    def again(_samples):
        raise AssertionError("the network ran again")

    monkeypatch.setattr(analysis, "_fsmn_scores", again)
    assert segmenter.regions(end_silence_ms=3000) != first  # the decisions are redone, from the cache
    assert segmenter.regions() == first


# -- frame agreement ------------------------------------------------------------------------


def test_agreement_identical():
    a = [(120, 480), (900, 1310)]
    assert frame_agreement(a, list(a), 2000) == 1.0


def test_agreement_disjoint():
    assert frame_agreement([(0, 500)], [(500, 1000)], 1000) == 0.0


def test_agreement_empty():
    assert frame_agreement([], [], 1000) == 1.0
    assert frame_agreement([], [(0, 250)], 1000) == 0.75


def test_agreement_partial_overlap():
    # frames 25..49 and 50..74 differ: 50 of 100
    assert frame_agreement([(0, 500)], [(250, 750)], 1000) == 0.5
    # 20 ms frames, 9 of them: [0, 100) is frames 0-4, [40, 180) frames 2-8 -> 2 + 4 differ
    assert frame_agreement([(0, 100)], [(40, 180)], 180, frame_ms=20) == pytest.approx(3 / 9)


def test_agreement_counts_a_frame_by_its_middle():
    # 10 ms frames: (0, 15) covers the middle of frame 0 (5 ms) only; (0, 16) also frame 1 (15 ms)
    assert frame_agreement([(0, 15)], [(0, 10)], 100) == 1.0
    assert frame_agreement([(0, 16)], [(0, 10)], 100) == 0.9
    # a duration that is not a whole number of frames: the last, short frame counts too
    assert frame_agreement([(0, 1005)], [], 1005) == 0.0


def test_agreement_needs_a_duration():
    with pytest.raises(ValueError, match="positive"):
        frame_agreement([], [], 0)


# -- envelope and energy curve ------------------------------------------------------------------


def test_envelope_min_max_per_bin():
    mins, maxs = envelope(np.arange(10, dtype=np.float32), 5)
    assert mins.tolist() == [0, 2, 4, 6, 8] and maxs.tolist() == [1, 3, 5, 7, 9]


def test_envelope_bins_cover_the_signal():
    x = np.random.default_rng(1).normal(size=100_003).astype(np.float32)
    mins, maxs = envelope(x, 2000)
    assert len(mins) == len(maxs) == 2000 and mins.dtype == maxs.dtype == np.float32
    assert mins.min() == x.min() and maxs.max() == x.max()
    edges = np.arange(2001) * len(x) // 2000
    for i in (0, 777, 1999):
        assert mins[i] == x[edges[i] : edges[i + 1]].min() and maxs[i] == x[edges[i] : edges[i + 1]].max()


def test_envelope_of_short_signals():
    assert [len(v) for v in envelope(np.ones(7, np.float32), 2000)] == [7, 7]
    assert [len(v) for v in envelope(np.zeros(0, np.float32), 10)] == [0, 0]


def test_energy_curve_is_level_db_per_frame():
    x = bursts([(0.1, 0.2)], total_s=0.5)
    x[-500:] = 0  # digital silence at the end
    curve = energy_curve(x, 30)
    frames = [x[i : i + 480] for i in range(0, len(x), 480)]
    assert len(curve) == len(frames) == 17
    assert curve == pytest.approx([level_db(f) for f in frames], abs=1e-4)
    assert curve[-1] == -120.0


# -- the widget ---------------------------------------------------------------------------------


@pytest.fixture
def sent(monkeypatch):
    """The custom messages widgets send, as (content, [buffer bytes])."""
    messages = []
    monkeypatch.setattr(
        VadExplorer,
        "send",
        lambda self, content, buffers=None: messages.append((content, [bytes(b) for b in buffers or []])),
    )
    return messages


@pytest.fixture
def explorers():
    made = []

    def make(*args, **kwargs):
        made.append(VadExplorer(*args, **kwargs))
        return made[-1]

    yield make
    for explorer in made:
        explorer.close()


def as_pairs(regions_s):
    return [(round(r["start"] * 1000), round(r["end"] * 1000)) for r in regions_s]


def test_from_an_array(speech, explorers):
    ex = explorers(speech.samples, RATE)
    assert ex.duration == pytest.approx(len(speech.samples) / RATE)
    assert ex.view == {"start": 0.0, "end": pytest.approx(ex.duration, abs=1e-4)}
    assert as_pairs(ex.regions) == regions(speech.samples, "energy", **ex.params)
    assert len(ex.regions) == 3 and ex.agreement is None and ex.compare_regions == []
    assert all(r["duration"] == pytest.approx(r["end"] - r["start"]) for r in ex.regions)


def test_from_an_array_at_another_rate(speech, explorers):
    from funasr_widget.audio import resample

    at_8k = resample(speech.samples, RATE)[::2].copy()  # any rate: resampled to 16 kHz
    ex = explorers(at_8k, 8000)
    assert ex.duration == pytest.approx(len(speech.samples) / RATE, abs=0.01)
    assert len(ex.regions) == 3


def test_from_a_file(speech, explorers, tmp_path):
    path = write_wav(tmp_path / "speech.wav", speech.samples)
    ex = explorers(str(path))
    assert len(ex.regions) == 3
    assert explorers(path).regions == ex.regions


def test_from_a_transcriber(speech, explorers):
    tr = Transcriber(model=None, vad="energy")
    try:
        tr.feed(speech.samples, RATE, final=True)
        ex = explorers(tr)
        assert ex.duration == pytest.approx(len(speech.samples) / RATE)
        assert len(ex.regions) == 3
    finally:
        tr.close()


def test_bad_sources():
    with pytest.raises(ValueError, match="sample_rate must be positive"):
        VadExplorer(np.zeros(RATE, np.float32), 0)
    with pytest.raises(ValueError, match="NaN"):
        VadExplorer(np.full(RATE, np.nan, np.float32), RATE)
    with pytest.raises(ValueError, match="no audio"):
        VadExplorer(np.zeros(0, np.float32), RATE)
    with pytest.raises(FileNotFoundError):
        VadExplorer("/no/such/file.wav")
    tr = Transcriber(model=None, vad="energy")
    try:
        with pytest.raises(ValueError, match="record or feed"):
            VadExplorer(tr)
    finally:
        tr.close()


def test_bad_parameters(speech, explorers):
    with pytest.raises(ValueError, match="Unknown VAD 'silero-vad'. Did you mean 'silero'"):
        VadExplorer(speech.samples, RATE, vad="silero-vad")
    with pytest.raises(ValueError, match="Did you mean 'fsmn-vad'"):
        VadExplorer(speech.samples, RATE, compare="fsmn")
    with pytest.raises(ValueError, match="100 <= end_silence_ms <= 10000"):
        VadExplorer(speech.samples, RATE, end_silence_ms=50)
    with pytest.raises(TypeError, match="did you mean 'end_silence_ms'"):
        VadExplorer(speech.samples, RATE, compare={"end_silence": 300})
    ex = explorers(speech.samples, RATE)
    with pytest.raises(traitlets.TraitError, match="unknown keyword 'silence'"):
        ex.params = {"silence": 3}
    with pytest.raises(traitlets.TraitError, match="max_segment_s"):
        ex.params = {"max_segment_s": 0.5}
    assert ex.params["max_segment_s"] == 30.0  # unchanged


def test_a_parameter_change_resegments(speech, explorers):
    ex = explorers(speech.samples, RATE)
    ex.params = {"end_silence_ms": 3000}  # the 1.5 s pauses no longer end a region
    assert ex.params["end_silence_ms"] == 3000 and ex.params["energy_threshold_db"] == -45.0
    assert len(ex.regions) == 1
    assert as_pairs(ex.regions) == regions(speech.samples, "energy", **ex.params)
    assert "1 regions" in ex.status or "1 region" in ex.status
    ex.params = {"end_silence_ms": 300, "energy_threshold_db": -5}  # nothing is that loud
    assert ex.regions == []


def test_switching_backend_resegments(models_at, speech, explorers):
    ex = explorers(speech.samples, RATE)
    ex.vad = "fsmn-vad"
    assert as_pairs(ex.regions) == streamed("fsmn-vad", speech.samples, **ex.params)


def test_compare_two_backends(models_at, speech, explorers):
    ex = explorers(speech.samples, RATE, vad="energy", compare="fsmn-vad")
    assert ex.compare_vad == "fsmn-vad" and ex.compare_params == ex.params
    assert len(ex.compare_regions) == 3
    expected = frame_agreement(as_pairs(ex.regions), as_pairs(ex.compare_regions), ex.duration * 1000)
    assert ex.agreement == pytest.approx(expected, abs=1e-3) and 0.8 < ex.agreement < 1.0
    ex.compare_vad = ""
    assert ex.agreement is None and ex.compare_regions == []


def test_compare_two_parameter_sets(speech, explorers):
    ex = explorers(speech.samples, RATE, compare={"end_silence_ms": 3000})
    assert ex.compare_vad == "energy" and ex.compare_params["end_silence_ms"] == 3000
    assert len(ex.regions) == 3 and len(ex.compare_regions) == 1
    assert 0 < ex.agreement < 1
    ex.compare_params = {"end_silence_ms": ex.params["end_silence_ms"]}
    assert ex.agreement == 1.0 and ex.compare_regions == ex.regions


def test_apply_to_a_transcriber(speech, explorers):
    ex = explorers(speech.samples, RATE, end_silence_ms=400, energy_threshold_db=-50, max_segment_s=12)
    tr = Transcriber(model=None, vad="energy")
    try:
        message = ex.apply_to(tr)
        assert (tr.end_silence_ms, tr.energy_threshold_db, tr.max_segment_s) == (400, -50.0, 12.0)
        assert "Warning" not in message and "end_silence_ms=400" in message
    finally:
        tr.close()
    other = Transcriber(model=None, vad="silero")  # its VAD is made on first use: not here
    try:
        assert "Warning" in ex.apply_to(other) and "silero" in ex.apply_to(other)
        assert other.end_silence_ms == 400
    finally:
        other.close()


def test_regions_dataframe(speech, explorers):
    ex = explorers(speech.samples, RATE, compare={"end_silence_ms": 3000})
    frame = ex.regions_dataframe()
    assert list(frame.columns) == ["start", "end", "duration"] and len(frame) == 3
    assert frame["duration"].tolist() == [r["duration"] for r in ex.regions]
    assert len(ex.regions_dataframe(compare=True)) == 1


# -- messages from the front end -----------------------------------------------------------------


def wait_until(predicate, timeout_s=10):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_set_requests_run_in_the_worker_latest_first(speech, explorers, sent):
    ex = explorers(speech.samples, RATE)
    with ex._lock:  # a segmentation in progress: requests pile up meanwhile
        for seq, silence in enumerate([300, 1000, 3000], start=1):
            ex._on_message(ex, {"type": "set", "seq": seq, "view_id": "v", "params": {"end_silence_ms": silence}}, [])
            time.sleep(0.05)
    wait_until(lambda: any(m.get("seq") == 3 for m, _ in sent))
    answered = [m["seq"] for m, _ in sent if m["type"] == "segmented"]
    assert answered == [1, 3], answered  # 2 was overtaken by 3 while it waited
    assert ex.params["end_silence_ms"] == 3000 and len(ex.regions) == 1
    assert sent[-1][0]["view_id"] == "v" and sent[-1][0]["ms"] >= 0


def test_a_bad_request_is_reported_not_raised(speech, explorers, sent):
    ex = explorers(speech.samples, RATE)
    ex._on_message(ex, {"type": "set", "seq": 1, "vad": "nope"}, [])
    wait_until(lambda: sent)
    assert "Unknown VAD" in ex.status and ex.vad == "energy"


def test_zoom_sends_a_finer_envelope(speech, explorers, sent):
    ex = explorers(speech.samples, RATE)
    ex._on_message(ex, {"type": "zoom", "start": 2.0, "end": 3.0, "bins": 800}, [])
    assert ex.view == {"start": 2.0, "end": 3.0}
    content, [buffer] = sent[-1]
    assert content["type"] == "envelope" and content["bins"] == 800
    values = np.frombuffer(buffer, np.float32)
    assert len(values) == 2 * 800 + content["db_count"]
    mins, maxs = values[:800], values[800:1600]
    window = speech.samples[2 * RATE : 3 * RATE]
    assert mins.min() == window.min() and maxs.max() == window.max()
    assert content["db_step"] == pytest.approx(0.03) and content["db_count"] == 34
    # out of range: clamped into the recording
    ex._on_message(ex, {"type": "zoom", "start": -5, "end": 1e9, "bins": 100}, [])
    assert ex.view == {"start": 0.0, "end": pytest.approx(ex.duration, abs=1e-4)}
    # the whole of a long recording stays within `bins` values
    ex._on_message(ex, {"type": "envelope", "tag": "overview", "start": 0, "end": ex.duration, "bins": 100}, [])
    content, [buffer] = sent[-1]
    assert content["tag"] == "overview" and content["bins"] == 100 and content["db_count"] <= 100
    assert len(buffer) == 4 * (200 + content["db_count"])


def test_clicking_a_region_selects_it_and_sends_its_samples(speech, explorers, sent):
    ex = explorers(speech.samples, RATE, compare={"end_silence_ms": 3000})
    ex._on_message(ex, {"type": "play", "index": 1}, [])
    region = ex.regions[1]
    assert ex.selected == {"index": 1, **region}
    content, [buffer] = sent[-1]
    assert content["type"] == "audio" and content["sample_rate"] == RATE
    clip = np.frombuffer(buffer, np.float32)
    begin = int(region["start"] * RATE)
    assert np.array_equal(clip, speech.samples[begin : begin + len(clip)])
    assert len(clip) == pytest.approx(region["duration"] * RATE, abs=1)
    ex._on_message(ex, {"type": "play", "index": 0, "compare": True}, [])
    assert ex.selected["compare"] is True and ex.selected["end"] == ex.compare_regions[0]["end"]
    count = len(sent)
    ex._on_message(ex, {"type": "play", "index": 99}, [])  # stale index: nothing happens
    assert len(sent) == count and ex.selected["index"] == 0


def test_the_page_sets_no_trait_and_writers_on_three_threads_leave_regions_matching_params(speech, explorers, sent):
    import threading

    ex = explorers(speech.samples, RATE)
    before = (ex.regions, ex.vad, ex.params)
    state = {"regions": [], "vad": "silero", "params": {"end_silence_ms": 100}}
    ex._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}}, "buffers": []})
    assert (ex.regions, ex.vad, ex.params) == before and "Ignored an update" in ex.status

    def notebook():
        for silence in [300, 600, 900, 1200] * 3:
            ex.params = {"end_silence_ms": silence}

    def page():
        for i in range(40):
            ex._on_message(ex, {"type": "zoom", "start": i * 0.05, "end": i * 0.05 + 1, "bins": 100}, [])
            ex._on_message(ex, {"type": "play", "index": 0}, [])
            ex._on_message(ex, {"type": "set", "seq": i, "params": {"end_silence_ms": 400 + 10 * i}}, [])

    threads = [threading.Thread(target=notebook), threading.Thread(target=page)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    wait_until(lambda: ex._pending is None, 60)
    with ex._lock:  # the worker's last request done: what is shown is what these params give
        shown = list(ex.regions)
        assert ex.segment() == shown
    assert all(m["type"] != "audio" or m["index"] == 0 for m, _ in sent)
