"""Facts the whole package shares, each stated once. A leaf module: it imports nothing from
the package, so any module (and the front end, through the widgets' traits) can use it."""

from __future__ import annotations

from typing import Any

SAMPLE_RATE = 16_000  # Hz: the browser resamples to it; the VADs and models work at it
SAMPLES_PER_MS = SAMPLE_RATE // 1000
BLOCK = SAMPLE_RATE // 10  # samples (100 ms): the browser's chunk and the pipeline's step

# The VAD knobs every backend takes, checked where given (vad.check_params) and sent to the
# front end, whose sliders span exactly [min, max] in `step`s. Dictation wants a segment closed
# soon after the speaker pauses (700 ms) and cut at 30 s (segment models decode best below
# that). speech_threshold None means the backend's own (fsmn-vad 0.6, silero 0.5); the value in
# use is reported by the widgets.
KNOBS: dict[str, dict[str, Any]] = {
    "end_silence_ms": {
        "label": "End silence",
        "type": "int",
        "min": 100,
        "max": 10_000,
        "step": 50,
        "default": 700,
        "unit": "ms",
        "doc": "silence that closes a segment",
    },
    "speech_threshold": {
        "label": "Speech threshold",
        "type": "float",
        "min": 0.01,
        "max": 1.0,
        "step": 0.01,
        "default": None,
        "unit": "",
        "doc": "speech score a frame needs (fsmn-vad, silero); None: the backend's own",
    },
    "max_segment_s": {
        "label": "Max segment",
        "type": "float",
        "min": 1.0,
        "max": 300.0,
        "step": 0.5,
        "default": 30.0,
        "unit": "s",
        "doc": "a segment is cut when it grows this long",
    },
    "energy_threshold_db": {
        "label": "Energy threshold",
        "type": "float",
        "min": -120.0,
        "max": 0.0,
        "step": 1.0,
        "default": -45.0,
        "unit": "dBFS",
        "doc": "level the energy VAD calls speech",
    },
}
