"""What a new segment costs on the kernel -> browser wire: the same at segment 300 as at
segment 10 (it used to re-send the whole transcript, O(n) per segment, O(n^2) per session).
Measured on the widget's own comm: every message it sends, JSON plus binary buffers."""

import json

import numpy as np
import pytest

from funasr_widget import Transcriber

RATE = 16_000
SEGMENTS = 300


def segment_costs(widget: Transcriber, n: int) -> list[int]:
    """Feed n tone bursts (n energy-VAD segments); bytes sent per segment, in order."""
    sent = [0]
    send = widget.comm.send

    def counting(data=None, metadata=None, buffers=None):
        sent[0] += len(json.dumps(data, default=str)) + sum(len(memoryview(b)) for b in buffers or [])
        return send(data=data, metadata=metadata, buffers=buffers)

    widget.comm.send = counting
    at_segment = []
    widget.on_segment(lambda _segment: at_segment.append(sent[0]))
    t = np.arange(int(0.3 * RATE)) / RATE
    burst = np.concatenate([(0.3 * np.sin(2 * np.pi * 440 * t)), np.zeros(int(0.4 * RATE))]).astype(np.float32)
    for _ in range(n):
        widget.feed(burst)
    widget.feed(np.zeros(RATE, np.float32), final=True)
    assert widget.wait(timeout=120)
    return list(np.diff([0, *at_segment]))


@pytest.mark.timeout(300)
def test_bytes_per_segment_stay_flat():
    w = Transcriber(model=None, vad="energy", end_silence_ms=200)
    costs = segment_costs(w, SEGMENTS)
    w.close()
    assert len(costs) == SEGMENTS
    early, late = np.median(costs[10:60]), np.median(costs[-50:])
    print(f"\nbytes per segment: median {early:.0f} at segments 10-60, {late:.0f} at {SEGMENTS - 50}-{SEGMENTS}")
    assert late <= early * 1.1 + 16, (early, late)
    assert late < 1000, late
