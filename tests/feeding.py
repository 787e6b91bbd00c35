"""Feeding audio to a widget as a live microphone would, for the tests."""

import time

import numpy as np

CHUNK = 1600  # 100 ms, the browser's chunk


def feed_live(widget, samples, chunk: int = CHUNK, timeout: float = 240) -> None:
    """`samples` in `chunk`-sized pieces, then the final (empty) chunk; waits until processed."""
    for i in range(0, len(samples), chunk):
        widget.feed(samples[i : i + chunk])
    widget.feed(np.zeros(0, np.float32), final=True)
    assert widget.wait(timeout=timeout), "the pipeline did not finish"


def partials_mid_sentence(widget, speech) -> list:
    """Speak up to the middle of `speech`'s first sentence, in real-time-ish chunks, then
    a little silence, with the segment still open; returns the partial texts seen."""
    partials = []
    widget.observe(lambda change: partials.append(change["new"]), "partial")
    beg, end = speech.intervals_ms[0]
    head = speech.samples[: (beg + (end - beg) // 2) * 16]
    for i in range(0, len(head), CHUNK):
        widget.feed(head[i : i + CHUNK])
        time.sleep(0.05)  # partials are decoded when the worker is idle, at a bounded rate
    assert widget.wait(timeout=60)
    time.sleep(0.6)
    widget.feed(np.zeros(CHUNK, np.float32))
    assert widget.wait(timeout=60)
    return partials
