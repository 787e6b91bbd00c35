"""Feeding audio to a widget as a live microphone would, and watching what it sends back,
for the tests."""

import time

import numpy as np

CHUNK = 1600  # 100 ms, the browser's chunk


def feed_live(widget, samples, chunk: int = CHUNK, timeout: float = 240, kept_up: bool = False) -> None:
    """`samples` in `chunk`-sized pieces, then the final (empty) chunk; waits until processed.
    kept_up: each piece is processed before the next comes, as a worker that keeps up with a
    microphone hears it (else they queue, and the worker takes several at once)."""
    for i in range(0, len(samples), chunk):
        widget.feed(samples[i : i + chunk])
        if kept_up:
            assert widget.wait(timeout=timeout), "the pipeline did not keep up"
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


class Sent:
    """The custom messages the kernel sends to the page, recorded from the widget's comm."""

    def __init__(self, widget):
        self.messages: list[dict] = []
        send = widget.comm.send

        def recording(data=None, metadata=None, buffers=None):
            if isinstance(data, dict) and data.get("method") == "custom":
                self.messages.append(data["content"])
            return send(data=data, metadata=metadata, buffers=buffers)

        widget.comm.send = recording

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m.get("type") == kind]
