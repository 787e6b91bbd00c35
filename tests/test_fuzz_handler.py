"""Property-based fuzz test of the Transcriber's message handler.

Random chunk headers, buffers, env, error and unknown messages are interleaved with
one good take (a `start`, then chunks 0..k in order, the last one final), all sent
through `_handle_custom_msg`, the path a real comm message takes. Whatever the junk:
the good audio comes out bit-exact, every bad message is counted with a reason,
nothing escapes the handler, and `diagnose()` still renders.
"""

from __future__ import annotations

import concurrent.futures
import math
import time

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from funasr_widget import Transcriber  # noqa: E402

EXAMPLES = 200
VIEW = "v1"
WINDOW = 5  # wire.Reorderer's default: a resent chunk this close behind is a duplicate
KNOWN_TYPES = {"chunk", "start", "hello", "env", "error", "stop", "started", "refused", "segment", "transcript"}

# -- JSON-ish junk: what a comm message can carry (plus ints too big for a float) ---------

huge_ints = st.builds(lambda sign, exp: sign * 10**exp, st.sampled_from([1, -1]), st.sampled_from([16, 20, 400]))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["", "false", "true", "float32", "int16", "chunk", "http://x:99999", "http://[::1"]),
    st.builds(lambda k: "x" * k, st.just(100_000)),  # a huge message
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)

junk_buffers = st.one_of(
    st.none(),
    st.just([]),
    st.integers(),
    st.text(max_size=8),
    st.lists(
        st.one_of(
            st.binary(max_size=12), st.text(max_size=4), st.integers(), st.none(), st.lists(st.floats(), max_size=3)
        ),
        max_size=3,
    ),
)


def good_header(seq: int, n: int, dtype: str, t: float, final: bool) -> dict:
    return {
        "type": "chunk",
        "view": VIEW,
        "seq": seq,
        "t": t,
        "sample_rate": 16000,
        "dtype": dtype,
        "n": n,
        "final": final,
    }


# Each corruption turns a good chunk (seq = the next expected one) into one the contract
# says must be rejected: if the widget took it, it would take the good chunk's place.
def _corrupt(header: dict, payload: bytes, kind: str, value):
    h, bufs = dict(header), [memoryview(payload)]
    if kind == "final":  # anything but a bool
        h["final"] = value if not isinstance(value, bool) else "false"
    elif kind == "dtype":
        h["dtype"] = value if value not in ("float32", "int16") else "float64"
    elif kind == "rate":
        h["sample_rate"] = value if value != 16000 or isinstance(value, bool) else 44100
    elif kind == "seq":  # negative, not an int, or beyond 2**53 - 1
        h["seq"] = (
            value if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53) else -1 - value
        )
    elif kind == "t":  # not a number at all (NaN/inf/huge are numbers: the audio is kept)
        h["t"] = value if not isinstance(value, (int, float)) or isinstance(value, bool) else str(value)
    elif kind == "n":  # not an integer, or an integer the buffer does not match
        h["n"] = h["n"] + (value or 1) if isinstance(value, int) and not isinstance(value, bool) else value
    elif kind == "missing":
        del h[value]
    elif kind == "buffers":
        bufs = value
        if _acceptable(h, bufs):  # by chance a valid buffer list: make it one byte too long
            bufs = [b"\0" * (h["n"] * (2 if h["dtype"] == "int16" else 4) + 1)]
    elif kind == "odd-bytes":
        bufs = [memoryview(payload + b"\0")]
    elif kind == "nan":
        h["dtype"], h["n"] = "float32", 4
        bufs = [memoryview(np.array([0.0, value, 0.0, 0.0], "<f4").tobytes())]
    elif kind == "ahead":  # a valid chunk whose seq is absurdly far ahead
        h["seq"] = h["seq"] + 1001 + value
    return h, bufs


def _acceptable(h: dict, bufs) -> bool:
    """Whether decode_chunk's buffer rules would take `bufs` for header `h`."""
    bufs = [] if bufs is None else bufs
    if not isinstance(bufs, (list, tuple)) or not all(isinstance(b, (bytes, bytearray, memoryview)) for b in bufs):
        return False
    if h["n"] == 0 and h["final"] and not any(len(b) for b in bufs):
        return True
    return len(bufs) == 1 and len(bufs[0]) == h["n"] * (2 if h["dtype"] == "int16" else 4)


corruptions = st.one_of(
    st.tuples(st.just("final"), json_values),
    st.tuples(st.just("dtype"), json_values),
    st.tuples(st.just("rate"), json_values),
    st.tuples(st.just("seq"), json_values),
    st.tuples(st.just("t"), json_values),
    st.tuples(st.just("n"), json_values),
    st.tuples(st.just("missing"), st.sampled_from(["seq", "t", "sample_rate", "n", "dtype"])),
    st.tuples(st.just("buffers"), junk_buffers),
    st.tuples(st.just("odd-bytes"), st.none()),
    st.tuples(st.just("nan"), st.sampled_from([math.nan, math.inf, -math.inf])),
    st.tuples(st.just("ahead"), st.integers(0, 10**30)),
)


@st.composite
def plans(draw):
    """(good chunks, the junk to send before each of them)."""
    n_chunks = draw(st.integers(1, 8))
    good = []
    for _seq in range(n_chunks):
        good.append(
            {
                "n": draw(st.integers(0, 400)),
                "dtype": draw(st.sampled_from(["int16", "float32"])),
                # a capture time the kernel cannot use still keeps the audio
                "t": draw(
                    st.one_of(
                        st.builds(lambda: time.time() * 1000.0),
                        st.floats(allow_nan=True, allow_infinity=True),
                        huge_ints,
                    )
                ),
                "seed": draw(st.integers(0, 2**32 - 1)),
            }
        )
    junk = draw(
        st.lists(
            st.lists(
                st.one_of(
                    st.tuples(st.just("bad-chunk"), corruptions, st.booleans()),
                    st.tuples(st.just("duplicate"), st.integers(1, WINDOW)),
                    st.tuples(
                        st.just("env"),
                        st.dictionaries(
                            st.sampled_from(
                                [
                                    "secure_context",
                                    "origin",
                                    "user_agent",
                                    "browser",
                                    "media_devices",
                                    "permission",
                                    "devices",
                                    "context_rate",
                                    "context_state",
                                    "view",
                                ]
                            )
                            | st.text(max_size=6),
                            json_values,
                            max_size=6,
                        ),
                    ),
                    st.tuples(
                        st.just("error"),
                        st.dictionaries(st.sampled_from(["code", "name", "message", "view"]), json_values, max_size=4),
                    ),
                    st.tuples(
                        st.just("unknown"),
                        json_values
                        | st.dictionaries(
                            st.just("type"), json_values | st.sampled_from(sorted(KNOWN_TYPES)) | st.text(max_size=8)
                        ),
                    ),
                ),
                max_size=4,
            ),
            min_size=n_chunks,
            max_size=n_chunks,
        )
    )
    return good, junk


def samples_for(spec: dict):
    rng = np.random.default_rng(spec["seed"])
    if spec["dtype"] == "int16":
        pcm = rng.integers(-32768, 32768, spec["n"]).astype("<i2")
        if spec["n"] > 2:
            pcm[:2] = (-32768, 32767)
        return pcm.tobytes(), pcm.astype(np.float32) / np.float32(32768.0)
    x = rng.uniform(-1.0, 1.0, spec["n"]).astype("<f4")
    if spec["n"] > 2:
        x[:2] = (-1.0, 1.0)  # the bounds are inside the range: kept as they are
    return x.tobytes(), x.astype(np.float32)


def bounded(fn, timeout: float = 30.0):
    """Run fn() with a time limit, so a hang fails this example instead of stalling CI."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(fn).result(timeout=timeout)
    finally:
        pool.shutdown(wait=False)


def guard_callbacks(w, escaped: list) -> None:
    """ipywidgets' dispatcher logs and swallows what a callback raises: record it instead."""
    dispatcher = w._msg_callbacks

    def guard(cb):
        def call(*args, **kwargs):
            try:
                return cb(*args, **kwargs)
            except BaseException as err:  # noqa: BLE001
                escaped.append(err)
                raise

        return call

    dispatcher.callbacks = [guard(cb) for cb in dispatcher.callbacks]


@pytest.mark.timeout(600)
# database=None: no .hypothesis/ folder in the working tree; a failure prints its example.
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plans())
def test_handler_survives_junk_and_keeps_the_good_audio(plan):
    good, junk = plan
    w = bounded(lambda: Transcriber(model=None, vad="energy"))
    escaped: list = []
    try:
        guard_callbacks(w, escaped)

        def send(content, buffers=()):
            w._handle_custom_msg(content, list(buffers) if isinstance(buffers, (list, tuple)) else buffers)

        send({"type": "start", "view": VIEW})
        expected, bad, unknown, duplicates, sent = [], 0, 0, 0, []
        for seq, (spec, extras) in enumerate(zip(good, junk, strict=False)):
            payload, audio = samples_for(spec)
            final = seq == len(good) - 1
            header = good_header(seq, spec["n"], spec["dtype"], spec["t"], final)
            for kind, *args in extras:
                if kind == "bad-chunk":
                    (corruption, value), other_view = args
                    h, bufs = _corrupt(header, payload, corruption, value)
                    if other_view:
                        h["view"] = "v2"
                    send(h, bufs)
                    bad += 1
                    event(f"corruption: {corruption}")
                elif kind == "duplicate" and sent:
                    back = min(args[0], len(sent))
                    send(*sent[-back])  # a resent chunk: dropped and counted as a duplicate
                    duplicates += 1
                elif kind == "env":
                    send({**args[0], "type": "env"})
                elif kind == "error":
                    send({**args[0], "type": "error"})
                elif kind == "unknown":
                    content = args[0]
                    if (
                        isinstance(content, dict)
                        and isinstance(content.get("type"), str)
                        and content["type"] in KNOWN_TYPES
                    ):
                        content = {**content, "type": None}  # junk, not a message the widget knows
                    send(content, [])
                    unknown += 1
            message = (header, [memoryview(payload)] if spec["n"] or not final else [])
            send(*message)
            sent.append(message)
            expected.append(audio)

        event(f"bad chunks: {min(bad, 5)}{'+' if bad >= 5 else ''}")
        assert not escaped, f"the handler raised: {escaped!r}"
        np.testing.assert_array_equal(w.audio, np.concatenate(expected))
        assert w.audio.dtype == np.float32
        stats = w.stats
        assert stats["rejected"] == bad + unknown, stats
        assert sum(stats["rejected_by"].values()) == stats["rejected"]
        assert stats["rejected_by"].get("unknown-type", 0) == unknown, stats
        assert "handler-error" not in stats["rejected_by"], stats  # junk that got past the checks
        assert stats["duplicates"] == duplicates
        assert stats["chunks"] == len(good) and stats["lost"] == 0
        for key in ("latency_ms_p50", "latency_ms_p95"):
            assert stats[key] is None or math.isfinite(stats[key])
        report = w.diagnose()
        assert str(report) and report._repr_html_().startswith("<table>")
        assert "diagnosis" not in [c.name for c in report]  # built, not replaced by the safety net
    finally:
        bounded(w.close)
