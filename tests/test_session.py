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
    header = {"type": "chunk", "seq": seq, "t": 0.0, "sample_rate": RATE, "dtype": "float32",
              "n": len(samples), "final": final}
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
    for a, b in zip(bounds, bounds[1:]):
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


def test_chunks_reassembled_in_order_with_gaps_reported():
    got = []
    session = AudioSession(sink=lambda x, final: got.append((x[0] if len(x) else None, final)))
    pieces = [np.full(1600, i, np.float32) for i in range(10)]
    for seq in [0, 1, 3, 2, 4, 6, 7, 8, 9]:  # 5 never arrives
        session.receive(*message(seq, pieces[seq], final=seq == 9))
    assert [v for v, _ in got] == [0, 1, 2, 3, 4, 6, 7, 8, 9]
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
                ready.wait_for(lambda: next_seq >= 400 or next_seq < session.chunks + 4)
                if next_seq >= 400:
                    return
                seq, next_seq = next_seq, next_seq + 1
            session.receive(*message(seq, np.full(160, seq, np.float32), final=seq == 399))
            with ready:
                ready.notify_all()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    audio = session.recording.samples
    assert np.array_equal(audio[::160], np.arange(400))
    assert session.stats()["lost"] == 0


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
