import math
import threading

import numpy as np
import pytest

from funasr_widget.audio import Recording, read_audio, resample, write_wav
from funasr_widget.session import AudioSession
from funasr_widget.wire import WireError

RATE = 16000


def tone(freq, rate, seconds=1.0):
    n = int(rate * seconds)
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


def peak_hz(x, rate=RATE):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * rate / len(x)


def message(seq, samples, final=False):
    header = {
        "type": "chunk",
        "seq": seq,
        "t": 0.0,
        "sample_rate": RATE,
        "dtype": "float32",
        "n": len(samples),
        "final": final,
    }
    return header, [samples.astype("<f4").tobytes()]


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_feed_resamples_to_16k(rate):
    session = AudioSession()
    session.feed(tone(440, rate, 2.0), rate, final=True)
    audio = session.recording.samples
    assert abs(len(audio) - 2 * RATE) <= 2
    assert abs(peak_hz(audio) - 440) < 1.0


def test_feed_in_pieces_matches_feed_at_once():
    x = tone(440, 44100, 1.0) + tone(3000, 44100, 1.0) * 0.3
    whole = AudioSession()
    whole.feed(x, 44100, final=True)
    pieces = AudioSession()
    bounds = [0, 128, 1000, 1001, 4410, 20000, len(x)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        pieces.feed(x[a:b], 44100, final=b == len(x))
    np.testing.assert_allclose(pieces.recording.samples, whole.recording.samples, atol=1e-5)


def test_feed_rejects_bad_input_clearly():
    session = AudioSession()
    with pytest.raises(ValueError, match="NaN"):
        session.feed(np.array([0.0, np.nan], np.float32), RATE)
    with pytest.raises(ValueError, match="dtype"):
        session.feed(np.array(["a"]), RATE)
    with pytest.raises(ValueError, match="positive"):
        session.feed(np.zeros(10, np.float32), 0)
    assert len(session.recording.samples) == 0


def test_recording_cap_counts_what_it_drops():
    rec = Recording(max_seconds=1.0)
    for _ in range(15):
        rec.append(np.ones(1600, np.float32))
    assert len(rec.samples) == RATE
    assert rec.dropped_seconds == pytest.approx(0.5)


@pytest.mark.timeout(30)
def test_chunks_reassembled_in_order_with_gaps_reported():
    got = []
    session = AudioSession(sink=lambda x, final: got.append((x[0] if len(x) else None, final)))
    pieces = [np.full(1600, i / 16, np.float32) for i in range(10)]
    for seq in [0, 1, 3, 2, 4, 6, 7, 8, 9]:  # 5 never arrives
        session.receive(*message(seq, pieces[seq], final=seq == 9))
    assert [v * 16 for v, _ in got] == [0, 1, 2, 3, 4]  # the final waits for 5 ...
    session.end_take()  # ... until the take ends (`recording` goes false)
    assert [v * 16 for v, _ in got] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert got[-1][1] is True
    stats = session.stats()
    assert (stats["gaps"], stats["lost"], stats["reordered"]) == (1, 1, 1)
    assert stats["seconds"] == pytest.approx(0.9)


def test_malformed_message_is_rejected_and_counted_without_losing_audio():
    session = AudioSession()
    session.receive(*message(0, np.ones(1600, np.float32)))
    header, buffers = message(1, np.ones(1600, np.float32))
    with pytest.raises(WireError):
        session.receive({**header, "n": 1599}, buffers)
    session.receive(header, buffers)
    assert session.stats()["rejected"] == 1
    assert len(session.recording.samples) == 3200


def test_end_take_closes_an_unfinished_one():
    finals = []
    session = AudioSession(sink=lambda x, final: finals.append(final))
    session.receive(*message(0, np.ones(1600, np.float32)))
    session.receive(*message(2, np.ones(1600, np.float32)))  # 1 missing, page reloads
    session.end_take()
    assert finals == [False, False, True]  # held chunk released, then the take closed
    session.receive(*message(0, np.ones(1600, np.float32)))
    assert len(session.recording.samples) == 3 * 1600


@pytest.mark.timeout(60)
def test_concurrent_receivers_lose_nothing():
    # Handlers on several threads (ipykernel subshells): reordering is bounded by the
    # number of threads racing, which the reorder window absorbs.
    session = AudioSession()
    ready = threading.Condition()
    next_seq = 0

    def send():
        nonlocal next_seq
        while True:
            with ready:  # never run more than 4 chunks ahead of what was released
                ready.wait_for(lambda: next_seq >= 400 or next_seq < session.chunks + 4)  # noqa: B023 (nonlocal)
                if next_seq >= 400:
                    return
                seq, next_seq = next_seq, next_seq + 1
            session.receive(*message(seq, np.full(160, seq / 512, np.float32), final=seq == 399))
            with ready:
                ready.notify_all()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    audio = session.recording.samples
    assert np.array_equal(audio[::160] * 512, np.arange(400))
    assert session.stats()["lost"] == 0
    assert not session._reorder.holding_final  # the final chunk was released, not left waiting


def test_silence_detection():
    session = AudioSession()
    session.feed(np.zeros(2 * RATE, np.float32))
    assert not session.silent
    session.feed(np.zeros(2 * RATE, np.float32))
    assert session.silent
    session.feed(tone(440, RATE, 0.1))
    assert not session.silent


def test_wav_round_trip(tmp_path):
    x = tone(440, RATE, 0.5)
    path = write_wav(tmp_path / "a.wav", x)
    y, rate = read_audio(path)
    assert rate == RATE
    np.testing.assert_allclose(y, x, atol=1 / 16384)
    np.testing.assert_allclose(resample(x, RATE), x)


def test_recording_reads_ranges_and_clears():
    rec = Recording(max_seconds=10)
    x = np.arange(48000, dtype=np.float32) / 48000
    rec.append(x[:20000])
    rec.append(x[20000:])
    np.testing.assert_array_equal(rec.samples, x)
    np.testing.assert_array_equal(rec.read(100, 200), x[100:200])
    assert len(rec.read(47990, 60000)) == 10 and len(rec.read(5, 5)) == 0
    rec.clear()
    assert len(rec.samples) == 0 and rec.seconds == 0
    rec.append(x[:10])
    np.testing.assert_array_equal(rec.samples, x[:10])


def resident_mb() -> float:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_recording_does_not_hold_the_audio_in_memory():
    rec = Recording(max_seconds=600)
    block = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    before = resident_mb()
    for _ in range(300):  # 5 minutes: 19 MB of samples
        rec.append(block)
    assert rec.seconds == 300 and resident_mb() - before < 5


# -- the final chunk, sequence numbers, and counting every rejection -----------------


def values(n, *seqs):
    return [np.full(n, s / 64, np.float32) for s in seqs]


@pytest.mark.timeout(30)
def test_final_chunk_overtaking_the_one_before_loses_nothing():
    finals = []
    session = AudioSession(sink=lambda x, final: finals.append(final))
    for seq in (0, 1, 3, 2):  # 3 is final and overtakes 2 (handlers on two threads)
        session.receive(*message(seq, np.full(10, seq / 64, np.float32), final=seq == 3))
    assert np.array_equal(session.recording.samples[::10] * 64, [0, 1, 2, 3])
    assert finals == [False, False, False, True]
    assert (session.stats()["lost"], session.stats()["gaps"]) == (0, 0)


@pytest.mark.timeout(30)
def test_end_take_releases_a_final_chunk_still_waiting_for_a_hole():
    finals = []
    session = AudioSession(sink=lambda x, final: finals.append(final))
    session.receive(*message(0, np.ones(10, np.float32)))
    session.receive(*message(2, np.ones(10, np.float32), final=True))  # 1 never comes
    assert finals == [False]  # the final waits for 1 ...
    session.end_take()  # ... until `recording` goes false and the widget ends the take
    assert finals == [False, True] and len(session.recording.samples) == 20
    assert session.stats()["lost"] == 1


@pytest.mark.timeout(30)
def test_final_chunk_that_waited_too_long_goes_with_the_next_message():
    session = AudioSession()
    session._reorder.final_wait_s = 0.0
    session.receive(*message(0, np.ones(10, np.float32)))
    session.receive(*message(2, np.ones(10, np.float32), final=True))
    assert len(session.recording.samples) == 10
    session.receive(*message(0, np.ones(10, np.float32)))  # anything later releases it first
    assert len(session.recording.samples) == 20
    assert (session.stats()["lost"], session.stats()["duplicates"]) == (1, 1)
    other = AudioSession()
    other.receive(*message(0, np.ones(10, np.float32)))
    other.receive(*message(2, np.ones(10, np.float32), final=True))
    assert other.expire() == 0  # also callable on its own, e.g. on any message
    other._reorder.final_wait_s = 0.0
    assert other.expire() == 1 and len(other.recording.samples) == 20


@pytest.mark.timeout(30)
def test_final_false_string_is_a_bad_header_not_the_end_of_the_take():
    finals = []
    session = AudioSession(sink=lambda x, final: finals.append(final))
    header, buffers = message(0, np.ones(10, np.float32))
    with pytest.raises(WireError):
        session.receive({**header, "final": "false"}, buffers)
    session.receive(header, buffers)
    assert finals == [False]
    stats = session.stats()
    assert stats["rejected"] == 1 and stats["rejected_by"] == {"bad-header": 1}


@pytest.mark.timeout(30)
def test_far_ahead_final_chunk_does_not_drop_the_rest_of_the_take():
    session = AudioSession()
    session.receive(*message(0, np.ones(10, np.float32)))
    with pytest.raises(WireError):
        session.receive(*message(10**6, np.ones(10, np.float32), final=True))
    for seq in range(1, 20):
        session.receive(*message(seq, np.ones(10, np.float32), final=seq == 19))
    stats = session.stats()
    assert len(session.recording.samples) == 200
    assert stats["rejected_by"] == {"seq-ahead": 1}
    assert (stats["duplicates"], stats["lost"]) == (0, 0)
    session.receive(*message(19, np.ones(10, np.float32), final=True))
    assert session.stats()["duplicates"] == 1


@pytest.mark.timeout(30)
def test_counter_back_at_zero_starts_a_new_take():
    finals = []
    session = AudioSession(sink=lambda x, final: finals.append(final))
    for seq in range(30):  # no final chunk: the page was reloaded
        session.receive(*message(seq, np.ones(10, np.float32)))
    for seq in range(30):
        session.receive(*message(seq, np.ones(10, np.float32)))
    assert len(session.recording.samples) == 600
    assert finals.count(True) == 1 and finals[30] is True  # the first take was closed
    assert session.stats()["restarts"] == 1 and session.stats()["duplicates"] == 0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("t", [math.nan, math.inf, -math.inf, 10**400])
def test_unusable_capture_time_never_makes_latency_nan(t):
    session = AudioSession()
    session.receive(*message(0, np.ones(10, np.float32)))
    header, buffers = message(1, np.ones(10, np.float32))
    session.receive({**header, "t": t}, buffers)
    stats = session.stats()
    assert len(session.recording.samples) == 20 and len(session.latencies_ms()) == 1
    assert math.isfinite(stats["latency_ms_p50"]) and math.isfinite(stats["latency_ms_p95"])


@pytest.mark.timeout(30)
def test_every_rejection_is_counted_by_reason():
    session = AudioSession()
    header, buffers = message(0, np.ones(4, np.float32))
    junk = [
        ({**header, "dtype": ["float32"]}, buffers),
        ({**header, "t": 10**400, "n": 5}, buffers),
        ({**header, "sample_rate": 8000}, buffers),
        ({**header, "seq": 10**400}, buffers),
        (["not", "a", "dict"], buffers),
        (header, ["text"]),
        (header, 42),
        ({**header, "final": "true"}, buffers),
    ]
    for content, bufs in junk:
        with pytest.raises(WireError):
            session.receive(content, bufs)
    session.count_rejected("unknown-type")
    stats = session.stats()
    assert stats["rejected"] == len(junk) + 1
    assert stats["rejected_by"] == {
        "bad-buffer": 2,
        "bad-dtype": 1,
        "bad-header": 3,
        "bad-rate": 1,
        "size-mismatch": 1,
        "unknown-type": 1,
    }
    assert stats["chunks"] == 0 and "dropped_seconds" in stats


@pytest.mark.timeout(30)
def test_clipped_samples_are_counted():
    session = AudioSession()
    session.receive(*message(0, np.array([0.5, 1.25, -3.0, 1.0], np.float32)))
    assert np.array_equal(session.recording.samples, [0.5, 1.0, -1.0, 1.0])
    assert session.stats()["clipped"] == 2


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "rate, error",
    [
        ("16000", TypeError),
        (None, TypeError),
        (True, TypeError),
        ([16000], TypeError),
        (16000.5, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (-16000, ValueError),
        (10**400, ValueError),
        (0, ValueError),
    ],
)
def test_feed_rejects_a_bad_rate_before_keeping_anything(rate, error):
    session = AudioSession()
    session.feed(tone(440, 44100, 0.5), 44100)
    kept = len(session.recording.samples)
    with pytest.raises(error, match="sample_rate"):
        session.feed(tone(440, 44100, 0.5), rate)
    with pytest.raises(ValueError, match="NaN"):
        session.feed(np.array([0.0, np.nan], np.float32), 44100)
    assert len(session.recording.samples) == kept
    session.feed(tone(440, 44100, 0.5), 44100.0, final=True)  # a whole float is a rate
    assert abs(len(session.recording.samples) - RATE) <= 2  # nothing of the first feed lost


@pytest.mark.timeout(30)
def test_feed_at_a_new_rate_keeps_the_old_rate_s_tail():
    session = AudioSession()
    session.feed(tone(440, 44100, 0.5), 44100)
    session.feed(tone(440, 48000, 0.5), 48000, final=True)
    assert abs(len(session.recording.samples) - RATE) <= 4
    open_feed = AudioSession()
    open_feed.feed(tone(440, 44100, 0.5), 44100)
    open_feed.end_take()  # the take ends: the resampler's tail is kept, not dropped
    assert abs(len(open_feed.recording.samples) - RATE // 2) <= 2
