"""The transport figure, in the real browser: run by bench/transport.py through pytest with
tests/browser/conftest.py as a plugin (its JupyterLab server, Chromium with the fake
microphone), reusing the capture test's steps. Not part of the test suite (tests/ only).

Records BENCH_TRANSPORT_SECONDS (default 60) of the fake microphone through the widget's
Record button (capture only: no model, the energy VAD) and writes capture -> on_msg
latency percentiles and the loss counters to $BENCH_TRANSPORT_OUT (JSON).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from test_capture import RATE, open_widget, record_for, settled_stats

LATENCIES = (
    "(lambda a: {'n': int(len(a)), 'p50': float(np.percentile(a, 50)), "
    "'p95': float(np.percentile(a, 95)), 'p99': float(np.percentile(a, 99)), "
    "'max': float(a.max()), 'min': float(a.min())})(w.session.latencies_ms())"
)


def test_transport(lab, mic_browser, notebook):
    seconds = float(os.environ.get("BENCH_TRANSPORT_SECONDS", "60"))
    nb = open_widget(notebook, mic_browser, "bench-transport.ipynb")
    kernel = nb.kernel()
    run = record_for(nb, kernel, duration_s=seconds)
    stats = settled_stats(kernel)
    kernel.exec("import numpy as np")
    latency = kernel.eval(LATENCIES)
    received_s = kernel.eval("len(w.audio)") / RATE
    figures = {
        "seconds": seconds,
        "wall_s": run["wall_s"],
        "received_s": received_s,
        "chunks": stats["chunks"],
        "expected_chunks": round(received_s * 10),
        "gaps": stats["gaps"],
        "lost": stats["lost"],
        "rejected": stats["rejected"],
        "reordered": stats["reordered"],
        "dropped_seconds": stats["dropped_seconds"],
        "latency_ms": latency,
    }
    Path(os.environ["BENCH_TRANSPORT_OUT"]).write_text(json.dumps(figures, indent=1))
    assert latency["n"] == stats["chunks"], (latency, stats)
