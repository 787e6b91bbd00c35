"""Transport: capture -> on_msg latency and loss in the real browser (JupyterLab + Chromium).

Runs bench/browser_transport.py under pytest with the browser tests' conftest.py as a
plugin: the same server, browser and capture steps as tests/browser/test_capture.py.
Needs what those tests need (Debian's chromium, espeak-ng, sox, playwright, jupyterlab,
the built front end).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from . import common

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> None:
    parser = common.part_args(__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args(argv)
    seconds = args.seconds or (10 if args.quick else 60)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "transport.json"
        env = dict(
            os.environ,
            BENCH_TRANSPORT_OUT=str(out),
            BENCH_TRANSPORT_SECONDS=str(seconds),
            PYTHONPATH=os.pathsep.join(
                filter(None, [str(REPO / "tests" / "browser"), str(REPO), os.environ.get("PYTHONPATH")])
            ),
        )
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-s",
            "-p",
            "conftest",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(REPO),
            "-o",
            "python_files=browser_transport.py",
            "-o",
            "testpaths=",
            str(REPO / "bench" / "browser_transport.py"),
        ]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        if not out.is_file():
            tail = (proc.stdout + proc.stderr)[-3000:]
            common.write(args, {"error": f"the browser run failed (exit {proc.returncode})", "log": tail})
            return
        figures = json.loads(out.read_text())
    common.write(args, {"browser": "Debian chromium (headless) + JupyterLab", **figures})


if __name__ == "__main__":
    main()
