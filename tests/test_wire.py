import math

import numpy as np
import pytest

from funasr_widget.wire import MAX_AHEAD, MAX_CHUNK_SAMPLES, MAX_SEQ, Chunk, Reorderer, WireError, decode_chunk


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


@pytest.mark.timeout(30)
def test_gap_is_skipped_once_window_is_full():
    r = Reorderer(window=3)
    out = released(r, chunks(0, 2, 3, 4))
    assert out == [0]  # still waiting for 1
    out += released(r, chunks(5))
    assert out == [0, 2, 3, 4, 5]
    assert (r.gaps, r.lost) == (1, 1)
    with pytest.raises(WireError) as info:  # too late now: counted as late, not as a duplicate
        r.push(chunks(1)[0])
    assert info.value.code == "late" and r.duplicates == 0
    assert released(r, chunks(5)) == [] and r.duplicates == 1


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.mark.timeout(30)
def test_final_chunk_waits_for_the_holes_before_it():
    # The race the concurrency test found: the final chunk overtakes the one before it.
    r = Reorderer()
    assert released(r, chunks(0, 1, 3, final_at=3)) == [0, 1]
    assert released(r, chunks(2)) == [2, 3]
    assert (r.gaps, r.lost) == (0, 0) and not r.holding_final


@pytest.mark.timeout(30)
def test_held_final_is_released_by_restart_or_after_waiting():
    clock = Clock()
    r = Reorderer(clock=clock, final_wait_s=2.0)
    assert released(r, chunks(0, 3, 5, final_at=5)) == [0]
    assert r.expire() == []  # not waited long enough
    clock.now += 1.0
    assert released(r, chunks(2)) == []  # a hole filled while the final waits is kept
    clock.now += 1.5
    assert [c.seq for c in r.expire()] == [2, 3, 5]
    assert (r.gaps, r.lost) == (2, 2)  # 1 and 4
    r2 = Reorderer()
    released(r2, chunks(0, 3, final_at=3))
    assert [c.seq for c in r2.restart()] == [3]


@pytest.mark.timeout(30)
def test_nothing_after_the_final_chunk_is_taken():
    r = Reorderer()
    released(r, chunks(0, 2, final_at=2))
    for bad in (Chunk(3, 0.0, np.zeros(1, np.float32)), Chunk(1, 0.0, np.zeros(1, np.float32), True)):
        with pytest.raises(WireError) as info:
            r.push(bad)
        assert info.value.code == "after-final"
    assert released(r, chunks(1)) == [1, 2]


@pytest.mark.timeout(30)
def test_sequence_number_far_ahead_is_rejected_and_the_take_goes_on():
    r = Reorderer()
    assert released(r, chunks(0, 1)) == [0, 1]
    for far in (2 + MAX_AHEAD + 1, 10**6, MAX_SEQ):
        with pytest.raises(WireError) as info:
            r.push(Chunk(far, 0.0, np.zeros(1, np.float32), final=True))
        assert info.value.code == "seq-ahead"
    assert released(r, chunks(*range(2, 30))) == list(range(2, 30))  # no "duplicates"
    assert (r.duplicates, r.gaps, r.lost) == (0, 0, 0)
    assert released(r, chunks(30 + MAX_AHEAD)) == []  # at the bound: held as a normal hole


@pytest.mark.timeout(30)
def test_sequence_number_far_behind_starts_a_take_or_is_rejected():
    r = Reorderer()
    assert released(r, chunks(*range(50))) == list(range(50))
    assert released(r, chunks(47)) == [] and r.duplicates == 1  # just behind: a duplicate
    with pytest.raises(WireError) as info:
        r.push(chunks(30)[0])
    assert info.value.code == "seq-stale"
    # The counter went back to 0 without a restart(): a new take, not 50 duplicates.
    assert released(r, chunks(1, 0, 2, 3)) == [0, 1, 2, 3]
    assert r.restarts == 1 and r.duplicates == 1


def test_restart_releases_held_chunks_and_resets_sequence():
    r = Reorderer()
    released(r, chunks(0, 1, 3))
    assert [c.seq for c in r.restart()] == [3]
    assert released(r, chunks(0, 1)) == [0, 1]
    assert (r.gaps, r.lost) == (1, 1)


# -- malformed headers and buffers: only WireError, always with a reason ------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("final", ["false", "true", 0, 1, None, [], {}, "", 1.0])
def test_final_must_be_a_bool(final):
    with pytest.raises(WireError) as info:
        decode_chunk(header(final=final), [b"\0" * 16])
    assert info.value.code == "bad-header"
    assert decode_chunk(header(final=True), [b"\0" * 16]).final is True
    assert decode_chunk(header(final=False), [b"\0" * 16]).final is False
    h = header()
    del h["final"]
    assert decode_chunk(h, [b"\0" * 16]).final is False


class Weird:
    def __str__(self):
        raise RuntimeError("no")

    __repr__ = __str__


JUNK_HEADERS = [
    {"dtype": ["float32"]},
    {"dtype": {"a": 1}},
    {"dtype": Weird()},
    {"t": 10**400},
    {"seq": 10**400},
    {"seq": MAX_SEQ + 1},
    {"n": 10**400},
    {"n": -1},
    {"n": 4.0},
    {"n": None},
    {"sample_rate": 10**400},
    {"sample_rate": "16000"},
    {"sample_rate": [16000]},
    {"sample_rate": 16000.0},
    {"t": "now"},
    {"t": [1.0]},
    {"t": True},
    {"seq": 1.5},
    {"seq": Weird()},
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("over", JUNK_HEADERS)
def test_malformed_headers_raise_only_wire_error(over):
    try:
        chunk = decode_chunk(header(**over), [b"\0" * 16])
    except WireError as err:
        assert err.code and str(err)
    else:  # only an unusable capture time is accepted, as "unknown"
        assert set(over) == {"t"} and math.isnan(chunk.captured_ms)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("content", [None, [], "chunk", 3, b"x", ["seq", 0]])
def test_content_that_is_not_a_dict_is_a_bad_header(content):
    with pytest.raises(WireError) as info:
        decode_chunk(content, [b"\0" * 16])
    assert info.value.code == "bad-header"


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "buffers",
    [
        ["text" * 4],
        [16],
        [None],
        [[0.0] * 4],
        7,
        "abcd" * 4,
        b"\0" * 16,
        {"a": b"\0" * 16},
        np.zeros(4, np.float32),
        [Weird()],
    ],
)
def test_buffers_that_are_not_bytes_are_bad_buffers(buffers):
    with pytest.raises(WireError) as info:
        decode_chunk(header(), buffers)
    assert info.value.code == "bad-buffer"


@pytest.mark.timeout(30)
def test_buffer_kinds_that_are_bytes_like_are_accepted():
    x = np.array([0.5, -0.25, 0.0, 1.0], "<f4")
    strided = np.zeros(8, "<f4")
    strided[::2] = x
    for buf in (
        x.tobytes(),
        bytearray(x.tobytes()),
        memoryview(x),
        x,
        memoryview(x.tobytes()).cast("f"),
        memoryview(strided)[::2],
    ):
        assert np.array_equal(decode_chunk(header(), (buf,)).samples, x)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("t", [math.nan, math.inf, -math.inf, 10**400, -(10**400)])
def test_unusable_capture_time_keeps_the_audio_but_no_latency(t):
    x = np.array([0.5, -0.25, 0.0, 1.0], "<f4")
    chunk = decode_chunk(header(t=t), [x.tobytes()])
    assert math.isnan(chunk.captured_ms) and np.array_equal(chunk.samples, x)


@pytest.mark.timeout(30)
def test_float_samples_outside_unit_range_are_clipped_and_counted():
    x = np.array([1.5, -2.0, 1.0, -1.0], "<f4")
    chunk = decode_chunk(header(), [x.tobytes()])
    assert np.array_equal(chunk.samples, [1.0, -1.0, 1.0, -1.0]) and chunk.clipped == 2
    big = np.array([np.finfo(np.float32).max, 0, 0, 0], "<f4")
    assert decode_chunk(header(), [big.tobytes()]).clipped == 1


@pytest.mark.timeout(30)
def test_late_chunk_of_the_previous_take_does_not_displace_the_new_one():
    r = Reorderer()
    released(r, chunks(*range(40), 41, final_at=41))
    assert [c.seq for c in r.restart()] == [41]  # end_take before 40 came
    r.restart()  # the next take's "start" ends the (empty) take again
    with pytest.raises(WireError) as info:
        r.push(chunks(40)[0])  # 40 loses the race with end_take
    assert info.value.code == "previous-take"
    assert released(r, chunks(*range(45))) == list(range(45))  # the new take reaches 40 itself
    assert r.duplicates == 0
