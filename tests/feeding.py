"""Feeding audio to a widget as a live microphone would, for the tests."""

import numpy as np

CHUNK = 1600  # 100 ms, the browser's chunk


def feed_live(widget, samples, chunk: int = CHUNK, timeout: float = 240) -> None:
    """`samples` in `chunk`-sized pieces, then the final (empty) chunk; waits until processed."""
    for i in range(0, len(samples), chunk):
        widget.feed(samples[i:i + chunk])
    widget.feed(np.zeros(0, np.float32), final=True)
    assert widget.wait(timeout=timeout), "the pipeline did not finish"
