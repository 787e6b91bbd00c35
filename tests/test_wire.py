import numpy as np
import pytest

from funasr_widget.wire import MAX_CHUNK_SAMPLES, Chunk, Reorderer, WireError, decode_chunk


def header(**over):
    h = {"type": "chunk", "seq": 0, "t": 1000.0, "sample_rate": 16000, "dtype": "float32", "n": 4, "final": False}
    h.update(over)
    return h


def test_decodes_float32_and_int16():
    x = np.array([0.5, -0.25, 0.0, 1.0], "<f4")
    assert np.array_equal(decode_chunk(header(), [x.tobytes()]).samples, x)
    pcm = np.array([16384, -32768, 0, 32767], "<i2")
    got = decode_chunk(header(dtype="int16"), [memoryview(pcm.tobytes())]).samples
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [0.5, -1.0, 0.0, 32767 / 32768])


@pytest.mark.parametrize(
    "over, buffers, code",
    [
        ({"dtype": "float64"}, [b"\0" * 32], "bad-dtype"),
        ({"sample_rate": 44100}, [b"\0" * 16], "bad-rate"),
        ({"n": MAX_CHUNK_SAMPLES + 1}, [b""], "oversized"),
        ({"n": 5}, [b"\0" * 16], "size-mismatch"),
        ({}, [], "bad-buffer"),
        ({}, [b"\0" * 16, b"\0" * 16], "bad-buffer"),
        ({"seq": "3"}, [b"\0" * 16], "bad-header"),
        ({"seq": True}, [b"\0" * 16], "bad-header"),
        ({"seq": -1}, [b"\0" * 16], "bad-header"),
        ({"t": None}, [b"\0" * 16], "bad-header"),
    ],
)
def test_rejects_malformed_messages(over, buffers, code):
    with pytest.raises(WireError) as info:
        decode_chunk(header(**over), buffers)
    assert info.value.code == code
    assert str(info.value)  # a readable reason


def test_rejects_nan_and_inf():
    for bad in (np.nan, np.inf):
        x = np.array([0.0, bad, 0.0, 0.0], "<f4")
        with pytest.raises(WireError, match="NaN or infinite"):
            decode_chunk(header(), [x.tobytes()])


def test_empty_final_chunk_is_accepted():
    chunk = decode_chunk(header(n=0, final=True), [])
    assert chunk.final and len(chunk.samples) == 0


def chunks(*seqs, final_at=None):
    return [Chunk(s, 0.0, np.full(1, s, np.float32), s == final_at) for s in seqs]


def released(reorderer, items):
    return [c.seq for item in items for c in reorderer.push(item)]


def test_reorders_late_chunks():
    r = Reorderer()
    assert released(r, chunks(0, 2, 1, 3)) == [0, 1, 2, 3]
    assert (r.gaps, r.lost, r.reordered) == (0, 0, 1)


def test_gap_is_skipped_once_window_is_full():
    r = Reorderer(window=3)
    out = released(r, chunks(0, 2, 3, 4))
    assert out == [0]  # still waiting for 1
    out += released(r, chunks(5))
    assert out == [0, 2, 3, 4, 5]
    assert (r.gaps, r.lost) == (1, 1)
    assert released(r, chunks(1)) == [] and r.duplicates == 1  # too late now


def test_final_chunk_releases_everything():
    r = Reorderer()
    assert released(r, chunks(0, 3, 5, final_at=5)) == [0, 3, 5]
    assert (r.gaps, r.lost) == (2, 3)


def test_restart_releases_held_chunks_and_resets_sequence():
    r = Reorderer()
    released(r, chunks(0, 1, 3))
    assert [c.seq for c in r.restart()] == [3]
    assert released(r, chunks(0, 1)) == [0, 1]
    assert (r.gaps, r.lost) == (1, 1)
