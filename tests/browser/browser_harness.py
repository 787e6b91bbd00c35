"""Helpers for the browser tests: the server handle, a notebook page, kernel access, test audio."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sysconfig
import time
import urllib.request
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from funasr_widget.audio import read_audio, resample, write_wav

REPO = Path(__file__).resolve().parents[2]
# Which front end serves the notebooks: "lab" (JupyterLab) or "notebook" (Jupyter Notebook 7).
FRONTEND = os.environ.get("FUNASR_WIDGET_TEST_FRONTEND", "lab")
if FRONTEND not in ("lab", "notebook"):
    raise ValueError(f"FUNASR_WIDGET_TEST_FRONTEND={FRONTEND!r}: use 'lab' or 'notebook'")
# 1: the kernel runs the funasr_widget installed in this python's site-packages (a wheel), not
# this working tree's (`make test-wheel`).
INSTALLED = os.environ.get("FUNASR_WIDGET_TEST_INSTALLED", "") == "1"
_VARIANT = "-".join(name for name, on in (("wheel", INSTALLED), ("notebook7", FRONTEND == "notebook")) if on)
ARTIFACTS = REPO / "test-artifacts" / _VARIANT if _VARIANT else REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
KERNEL_NAME = "funasr-widget-test"  # the kernelspec conftest.py installs in the server's data dir
INSECURE_HOST = "insecure.test"  # mapped to 127.0.0.1 inside Chromium only

# The fake microphone: Chromium always reports it as 44.1 kHz stereo.
MIC_RATE = 44_100
SPEECH_TEXT = "The quick brown fox jumps over the lazy dog. Speech recognition runs live inside the notebook."
SPEECH_LEAD_S = 0.3  # digital silence before the speech
MIC_FILE_S = 75.0  # long enough for the 60 s recording, played once (%noloop)
NOISE_RMS = 5e-4  # about -66 dBFS: a quiet room, not digital silence


def check_installed(module_file: str) -> Path:
    """Assert that funasr_widget's `__file__` (as some process imported it) lies in this
    python's site-packages and not in the source tree; return the package folder."""
    package = Path(module_file).resolve().parent
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert package.is_relative_to(site) and not package.is_relative_to(REPO / "funasr_widget"), (
        f"funasr_widget was imported from {package}, not from the installed copy in {site}"
    )
    return package


def chromium_flags(wav: Path, grant_mic: bool = True) -> list[str]:
    """The flags from DESIGN.md 'Browser facts'. grant_mic=False leaves the permission to the test."""
    flags = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        f"--host-resolver-rules=MAP {INSECURE_HOST} 127.0.0.1",
    ]
    if grant_mic:
        flags.append("--use-fake-ui-for-media-stream")
    else:
        # The fake permission UI answers every prompt with "Block".
        flags.append("--use-fake-ui-for-media-stream=deny")
    return flags


# -- test audio -----------------------------------------------------------------------------------


@dataclass
class SpeechFile:
    path: Path  # 44.1 kHz stereo 16-bit WAV the fake microphone plays
    reference: np.ndarray  # the same audio, mono float32 at 16 kHz
    speech_s: float  # length of the spoken part


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as f:
        assert f.getsampwidth() == 2, path
        data = np.frombuffer(f.readframes(f.getnframes()), "<i2").reshape(-1, f.getnchannels())
        return data.astype(np.float32) / 32768.0, f.getframerate()


def make_speech(folder: Path) -> SpeechFile:
    """espeak-ng speech, converted by sox to the fake device's format, with a faint noise floor."""
    raw = folder / "espeak.wav"
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "150", "-a", "150", "-w", str(raw), SPEECH_TEXT],
        check=True,
        capture_output=True,
    )
    voiced = folder / "voiced.wav"
    subprocess.run(
        ["sox", str(raw), "-r", str(MIC_RATE), "-c", "2", "-b", "16", str(voiced), "pad", str(SPEECH_LEAD_S), "0"],
        check=True,
        capture_output=True,
    )
    x, rate = _read_wav(voiced)
    assert rate == MIC_RATE
    speech_s = len(x) / rate - SPEECH_LEAD_S
    total = int(MIC_FILE_S * rate)
    mic = np.zeros((total, 2), np.float32)
    mic[: len(x)] = x[:total]
    mic += np.random.default_rng(1234).normal(0.0, NOISE_RMS, (total, 1)).astype(np.float32)
    path = write_wav(folder / "mic-44k-stereo.wav", mic, rate)
    return SpeechFile(path=path, reference=reference_16k(path), speech_s=speech_s)


def reference_16k(path: Path) -> np.ndarray:
    """What the kernel should receive from the fake microphone playing `path`: mono, 16 kHz."""
    return resample(*read_audio(path))


@dataclass
class Utterances:
    path: Path  # 44.1 kHz stereo 16-bit WAV the fake microphone plays
    reference: np.ndarray  # the same audio, mono float32 at 16 kHz
    intervals_s: list[tuple[float, float]]  # where each sentence is loud, in seconds of the file


def _loud_span(x: np.ndarray, rate: int, below_peak_db: float = 35.0) -> tuple[int, int]:
    """First and last sample of the 10 ms frames within `below_peak_db` of the loudest one."""
    hop = rate // 100
    frames = x[: len(x) // hop * hop].reshape(-1, hop)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (-below_peak_db / 20))
    return int(loud[0]) * hop, int(loud[-1] + 1) * hop


def make_utterances(
    folder: Path,
    sentences: list[str],
    lead_s: float = 0.5,
    gap_s: float = 1.5,
    total_s: float = 30.0,
    noise_rms: float = NOISE_RMS,
) -> Utterances:
    """One espeak-ng utterance per sentence, `lead_s` of silence before the first and `gap_s`
    between them, a faint noise floor throughout, padded to `total_s` (play it with %noloop)."""
    rate = MIC_RATE
    parts, intervals, pos = [np.zeros(int(lead_s * rate), np.float32)], [], int(lead_s * rate)
    for i, sentence in enumerate(sentences):
        raw, wav = folder / f"utterance{i}.espeak.wav", folder / f"utterance{i}.wav"
        subprocess.run(
            ["espeak-ng", "-v", "en-us", "-s", "150", "-a", "150", "-w", str(raw), sentence],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(wav)], check=True, capture_output=True
        )
        x, got = _read_wav(wav)
        assert got == rate
        x = x[:, 0]
        beg, end = _loud_span(x, rate)
        intervals.append(((pos + beg) / rate, (pos + end) / rate))
        gap = np.zeros(int(gap_s * rate) if i < len(sentences) - 1 else 0, np.float32)
        parts += [x, gap]
        pos += len(x) + len(gap)
    voiced = np.concatenate(parts)
    total = max(int(total_s * rate), len(voiced))
    mono = np.zeros(total, np.float32)
    mono[: len(voiced)] = voiced
    mono += np.random.default_rng(4321).normal(0.0, noise_rms, total).astype(np.float32)
    path = write_wav(folder / "mic-utterances-44k-stereo.wav", np.repeat(mono[:, None], 2, axis=1), rate)
    return Utterances(path=path, reference=reference_16k(path), intervals_s=intervals)


def align(recorded: np.ndarray, reference: np.ndarray) -> tuple[int, float]:
    """Lag of `reference` inside `recorded` (by cross-correlation) and the normalised correlation
    of the aligned overlap. recorded[i] ~ reference[i - lag]."""
    from scipy.signal import correlate

    rec = recorded.astype(np.float64)
    ref = reference.astype(np.float64)
    xc = correlate(rec, ref, mode="full", method="fft")
    lag = int(np.argmax(xc)) - (len(ref) - 1)
    a, b = _overlap(rec, ref, lag)
    denom = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return lag, float(np.dot(a, b) / denom) if denom > 0 else 0.0


def _overlap(rec: np.ndarray, ref: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """The parts of `rec` and `ref` that meet at `lag` (recorded[i] ~ reference[i - lag])."""
    r0, f0 = max(lag, 0), max(-lag, 0)
    n = max(min(len(rec) - r0, len(ref) - f0), 0)
    return rec[r0 : r0 + n], ref[f0 : f0 + n]


# The fake microphone's capture thread works in 10 ms buffers. Starved of CPU, it can skip or
# repeat one (seen on the shared 2-core CI machine), which shifts the rest of the take by exactly
# 10 ms: 160 samples at 16 kHz. Nothing of ours slips by a whole buffer (the worklet's chunks are
# 1600 samples, numbered, and the kernel counts what is lost), so the checks below forgive that
# and only that.
RATE = 16_000  # the references' rate, and the kernel's
CAPTURE_BUFFER = 160
SLIP_TOLERANCE = 2  # samples either side of a whole number of buffers
MAX_SLIP_BUFFERS = 3  # the most buffers one slip may skip or repeat (a lost 1600-sample chunk is 10)
MAX_SLIPS = 3


@dataclass
class Window:
    """One window of a recording compared with the reference (see check_capture)."""

    start: int  # its first sample in the recording
    lag: int  # the single lag that fits it best: recorded[i] ~ reference[i - lag]
    corr: float  # the normalised correlation at that lag
    # For a window that fits no single lag well but fits the reference with one slip inside:
    # (lag before, lag after, the recording's first sample after the slip, correlation).
    slip: tuple[int, int, int, float] | None = None

    def lags(self) -> tuple[int, int]:
        """The lag at the window's start and at its end."""
        return (self.slip[0], self.slip[1]) if self.slip else (self.lag, self.lag)


@dataclass
class CaptureCheck:
    """What check_capture found: `problems` is empty when the recording is the reference."""

    windows: list[Window]
    silent: list[int]  # starts of the windows skipped because the reference is silent there
    # (seconds into the recording, lag change in samples); a change between two windows is
    # placed at the later one's start.
    slips: list[tuple[float, int]]
    problems: list[str]

    def table(self) -> str:
        """One line per window: start (s), best lag, correlation, and how it was judged."""
        rows = [(start, f"{start / RATE:6.2f} s  reference silent: skipped") for start in self.silent]
        for w in self.windows:
            row = f"{w.start / RATE:6.2f} s  lag {w.lag:6d}  corr {w.corr:.4f}"
            if w.slip:
                before, after, at, corr = w.slip
                row += f"  slip {before} -> {after} at {at / RATE:.3f} s: corr {corr:.4f}"
            rows.append((w.start, row))
        return "\n".join(row for _, row in sorted(rows))

    def __str__(self) -> str:
        return "\n".join([*self.problems, "per 0.5 s window:", self.table()])


def _fraction(rec: np.ndarray, ref: np.ndarray, lag: int) -> float:
    """The part of a sample by which `rec` lags `ref` beyond the whole `lag` (a parabola through
    the cross-correlation at lag - 1, lag, lag + 1), within half a sample."""
    before, at, after = (float(np.dot(*_overlap(rec, ref, lag + k))) for k in (-1, 0, 1))
    curve = before - 2 * at + after
    return float(np.clip(0.5 * (before - after) / curve, -0.5, 0.5)) if curve < 0 else 0.0


def _delayed(x: np.ndarray, samples: float) -> np.ndarray:
    """`x` delayed by a fraction of a sample (by its spectrum's phase)."""
    spectrum, freqs = np.fft.rfft(x), np.fft.rfftfreq(len(x))
    return np.fft.irfft(spectrum * np.exp(-2j * np.pi * freqs * samples), len(x))


def _slip_sizes() -> list[int]:
    """Every lag change that check_capture takes for skipped or repeated capture buffers."""
    whole = [sign * k * CAPTURE_BUFFER for k in range(1, MAX_SLIP_BUFFERS + 1) for sign in (1, -1)]
    return [d + t for d in whole for t in range(-SLIP_TOLERANCE, SLIP_TOLERANCE + 1)]


def _split(a: np.ndarray, ref: np.ndarray, start: int, before: int, after: int) -> tuple[int, float] | None:
    """The best place for one slip inside the recording's window `a` (at `start`) from lag
    `before` to lag `after`: (first sample of `a` at the new lag, correlation with the reference
    so stitched); None if either lag puts the window outside the reference."""
    n = len(a)
    f1, f2 = start - before, start - after
    if min(f1, f2) < 0 or max(f1, f2) + n > len(ref):
        return None
    b1, b2 = ref[f1 : f1 + n], ref[f2 : f2 + n]

    def cum(x: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(x)])

    # k = 0..n: a[:k] against b1[:k], a[k:] against b2[k:].
    d1, d2, e1, e2 = cum(a * b1), cum(a * b2), cum(b1 * b1), cum(b2 * b2)
    dot, energy = d1 + (d2[-1] - d2), e1 + (e2[-1] - e2)
    denom = np.sqrt(np.dot(a, a) * np.maximum(energy, 0.0))
    corr = np.divide(dot, denom, out=np.zeros_like(dot), where=denom > 0)
    k = int(np.argmax(corr))
    return k, float(corr[k])


def check_capture(
    recorded: np.ndarray,
    reference: np.ndarray,
    lag: int,
    window: int = 8000,
    search: int = 2400,
    min_corr: float = 0.9,
) -> CaptureCheck:
    """Whether `recorded` (16 kHz) is `reference` played through the fake microphone, forgiving
    only the fake capture's own slips: one or a few whole 10 ms buffers skipped or repeated.

    The recording is cut into windows of `window` samples from its first sample that is not
    zero (a take begins with a few hundred samples of digital silence, 300 to 500 seen, while
    the capture starts), or from where `lag` (align()'s global lag) puts the reference's start
    if that is later. The last part-window and the windows that fall outside the reference are
    not judged. A window whose reference is silent at `lag` (zero energy: no correlation to
    speak of) is skipped and listed as such. Each other window gets the lag within `search`
    samples of `lag` that fits it best (to the sample) and the correlation there.

    A window under `min_corr` passes only if it is the reference with one slip inside it:
    stitched from the lag the window before ends at and the lag of the window after, split where
    that fits best, it must correlate `min_corr` or better. Where one of those two lags is
    unknown (the first or last window, or a neighbour under `min_corr` itself), the known one
    and that lag moved by 1 to MAX_SLIP_BUFFERS buffers are tried.

    Problems, one sentence each: a window under `min_corr` that no such slip explains; a lag
    change (inside a window or between two) that is not 1 to MAX_SLIP_BUFFERS whole buffers of
    CAPTURE_BUFFER samples (± SLIP_TOLERANCE); more than MAX_SLIPS lag changes; a recording of
    zeros; no window to judge."""
    from scipy.signal import butter, correlate, sosfiltfilt

    # The browser's chain (the file's 44.1 kHz -> the context's rate -> our 16 kHz resampler) and
    # the reference's (44.1 -> 16 kHz at once) place the audio a fraction of a sample apart and
    # differ near 8 kHz, which decorrelates broadband noise (0.3 sample: 0.87 in the pauses, where
    # speech still gives 0.99). So: below 3 kHz, with the reference moved by that fraction.
    low_pass = butter(8, 3000, fs=RATE, output="sos")
    rec, ref = (sosfiltfilt(low_pass, x.astype(np.float64)) for x in (recorded, reference))
    ref = _delayed(ref, _fraction(rec, ref, lag))
    ref_energy = np.concatenate([[0.0], np.cumsum(ref * ref)])
    sound = np.flatnonzero(recorded)
    windows, silent = [], []
    for start in range(max(lag, int(sound[0]) if len(sound) else len(rec)), len(rec) - window + 1, window):
        if start - lag + window > len(ref):
            break
        at_lag = reference[start - lag : start - lag + window]
        if not np.any(at_lag):
            silent.append(start)
            continue
        a = rec[start : start + window]
        lo, hi = max(start - lag - search, 0), min(start - lag + search + window, len(ref))
        dots = correlate(ref[lo:hi], a, mode="valid")  # dots[j] = a . ref[lo + j : lo + j + window]
        f0 = np.arange(lo, hi - window + 1)
        denom = np.sqrt(np.dot(a, a) * np.maximum(ref_energy[f0 + window] - ref_energy[f0], 0.0))
        corr = np.divide(dots, denom, out=np.zeros_like(dots), where=denom > 0)
        best = int(np.argmax(corr))
        windows.append(Window(start=start, lag=start - int(f0[best]), corr=float(corr[best])))

    problems: list[str] = []
    good = [w.corr >= min_corr for w in windows]
    for i, w in enumerate(windows):
        if good[i]:
            continue
        # The lags either side: the previous window's end lag (if it fits), the next one's lag
        # (if it fits by itself). Left to right, so that slips in neighbouring windows chain.
        previous = windows[i - 1] if i > 0 else None
        before = previous.lags()[1] if previous and (good[i - 1] or previous.slip) else None
        after = windows[i + 1].lag if i + 1 < len(windows) and good[i + 1] else None
        if before is not None and after is not None:
            pairs = [(before, after)] if before != after else []
        elif before is not None:
            pairs = [(before, before + d) for d in _slip_sizes()]
        elif after is not None:
            pairs = [(after - d, after) for d in _slip_sizes()]
        else:
            pairs = []
        a = rec[w.start : w.start + window]
        fits = [(fit, pair) for pair in pairs if (fit := _split(a, ref, w.start, *pair))]
        if fits:
            (k, corr), (l1, l2) = max(fits, key=lambda f: f[0][1])
            if corr >= min_corr:
                w.slip = (l1, l2, w.start + k, corr)
        if w.slip is None:
            problems.append(
                f"the window at {w.start / RATE:.2f} s correlates {w.corr:.3f} with the reference (best lag "
                f"{w.lag}), and no single slip of whole 10 ms capture buffers inside it explains that"
            )

    slips: list[tuple[float, int]] = []
    lag_so_far = None
    for w in windows:
        if not (w.corr >= min_corr or w.slip):
            continue
        first, last = w.lags()
        if lag_so_far is not None and abs(first - lag_so_far) > SLIP_TOLERANCE:  # not a best lag's jitter
            slips.append((round(w.start / RATE, 3), first - lag_so_far))
        if w.slip:
            slips.append((round(w.slip[2] / RATE, 3), last - first))
        lag_so_far = last
    for at, change in slips:
        if change not in _slip_sizes():
            problems.append(
                f"at {at:.2f} s the lag changes by {change} samples: not a skip or repeat of 1 to {MAX_SLIP_BUFFERS} "
                f"whole 10 ms capture buffers ({CAPTURE_BUFFER} samples each, ± {SLIP_TOLERANCE})"
            )
    if len(slips) > MAX_SLIPS:
        problems.append(f"{len(slips)} lag changes (at {[at for at, _ in slips]} s): more than {MAX_SLIPS}")
    if not len(sound):
        problems.append("the recording is all zeros")
    elif not windows:
        problems.append(f"no {window}-sample window of the recording (at lag {lag}) has reference audio to compare")
    return CaptureCheck(windows=windows, silent=silent, slips=slips, problems=problems)


# -- the JupyterLab server ------------------------------------------------------------------------


class KernelError(RuntimeError):
    pass


class Kernel:
    """A second jupyter_client connection to a notebook's kernel, for reading its state."""

    def __init__(self, kernel_id: str, connection_file: Path):
        from jupyter_client import BlockingKernelClient

        self.id = kernel_id
        self.client = BlockingKernelClient(connection_file=str(connection_file))
        self.client.load_connection_file()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def exec(self, code: str, timeout: float = 60) -> str:
        """Run code in the kernel's namespace; return its stdout; raise KernelError on an exception."""
        kc = self.client
        msg_id = kc.execute(code, store_history=False, allow_stdin=False)
        out, err = [], None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"kernel did not finish in {timeout} s: {code!r}")
            try:
                msg = kc.get_iopub_msg(timeout=left)
            except Exception:  # queue.Empty
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content.get("name") == "stdout":
                out.append(content["text"])
            elif kind == "error":
                err = "\n".join(content.get("traceback", [])) or f"{content.get('ename')}: {content.get('evalue')}"
            elif kind == "status" and content.get("execution_state") == "idle":
                break
        if err is not None:
            raise KernelError(re.sub(r"\x1b\[[0-9;]*m", "", err))
        return "".join(out)

    def eval(self, expr: str, timeout: float = 60):
        """The JSON value of a Python expression evaluated in the kernel."""
        marker = "@@kernel-eval@@"
        text = self.exec(f"import json as _fw_json\nprint({marker!r} + _fw_json.dumps({expr}, default=str))", timeout)
        line = [ln for ln in text.splitlines() if ln.startswith(marker)][-1]
        return json.loads(line[len(marker) :])

    def close(self) -> None:
        self.client.stop_channels()


@dataclass
class LabServer:
    REPO = REPO

    port: int
    token: str
    root: Path
    runtime_dir: Path
    log_path: Path
    proc: subprocess.Popen
    frontend: str = "lab"  # "lab" (JupyterLab) or "notebook" (Notebook 7)

    def __post_init__(self):
        self._kernels: dict[str, Kernel] = {}

    def log_tail(self, n: int = 120) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-n:]
            return "\n".join(ln if len(ln) < 400 else ln[:400] + " [...]" for ln in lines)
        except OSError:
            return ""

    def api(self, method: str, path: str, body=None):
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            data = resp.read()
            return json.loads(data) if data else None

    def url(self, notebook: str, host: str = "127.0.0.1") -> str:
        if self.frontend == "notebook":
            return f"http://{host}:{self.port}/notebooks/{notebook}?token={self.token}"
        return f"http://{host}:{self.port}/lab/tree/{notebook}?reset&token={self.token}"

    def write_notebook(self, name: str, cells: list[str]) -> Path:
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {
            "name": KERNEL_NAME,
            "display_name": "Python 3 (funasr-widget tests)",
            "language": "python",
        }
        nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
        path = self.root / name
        nbformat.write(nb, str(path))
        return path

    def session(self, notebook: str) -> dict | None:
        for s in self.api("GET", "/api/sessions"):
            if s.get("path") == notebook or s.get("notebook", {}).get("path") == notebook:
                return s
        return None

    def kernel(self, notebook: str, timeout: float = 30) -> Kernel:
        """A client on the kernel of the notebook's session (waits for the session to exist)."""
        deadline = time.monotonic() + timeout
        while (s := self.session(notebook)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no kernel session for {notebook}")
            time.sleep(0.3)
        kid = s["kernel"]["id"]
        if kid not in self._kernels:
            self._kernels[kid] = Kernel(kid, self.runtime_dir / f"kernel-{kid}.json")
        return self._kernels[kid]

    def shutdown(self, notebook: str) -> None:
        s = self.session(notebook)
        if s is None:
            return
        k = self._kernels.pop(s["kernel"]["id"], None)
        if k:
            k.close()
        self.api("DELETE", f"/api/sessions/{s['id']}")

    def close_kernels(self) -> None:
        for k in self._kernels.values():
            k.close()
        self._kernels.clear()
        try:
            for s in self.api("GET", "/api/sessions"):
                self.api("DELETE", f"/api/sessions/{s['id']}")
        except Exception:
            pass


# -- a notebook in the browser ---------------------------------------------------------------------

IDLE = ".jp-Notebook-ExecutionIndicator[data-status='idle']"
WIDGET = ".jp-OutputArea-output:has(.fw-record)"


class NotebookPage:
    def __init__(self, lab: LabServer, browser, name: str, host: str = "127.0.0.1", setup=None):
        """`setup(context)`, if given, runs on the new browser context before the page opens
        (init scripts, routes: the fault-injection matrix uses it)."""
        self.lab, self.browser, self.name, self.host = lab, browser, name, host
        self.setup = setup
        self.console: list[str] = []
        self.context = None
        self.page = None

    # lifecycle
    def open(self, timeout_ms: float = 90_000) -> NotebookPage:
        self.context = self.browser.new_context(viewport={"width": 1280, "height": 900})
        if self.setup is not None:
            self.setup(self.context)
        self.page = page = self.context.new_page()
        page.on("console", lambda m: self.console.append(f"[{m.type}] {m.text}"))
        page.on("pageerror", lambda e: self.console.append(f"[pageerror] {e}"))
        # JupyterLab asks "leave site?" for an unsaved notebook on reload: say yes.
        page.on("dialog", lambda d: d.accept())
        page.goto(self.lab.url(self.name, self.host), timeout=timeout_ms)
        self.wait_ready(timeout_ms)
        expected = "Jupyter Notebook" if self.lab.frontend == "notebook" else "JupyterLab"
        assert self.app_name() == expected, f"{self.app_name()!r} serves {page.url}, not {expected}"
        return self

    def app_name(self) -> str:
        """The front end serving the page ("JupyterLab", "Jupyter Notebook"), from its page config."""
        return self.page.evaluate(
            "() => JSON.parse(document.getElementById('jupyter-config-data').textContent).appName"
        )

    def wait_ready(self, timeout_ms: float = 90_000) -> None:
        """The notebook is shown, its kernel started and connected, and idle."""
        page = self.page
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=timeout_ms)
        page.locator(".jp-NotebookPanel-toolbar .jp-KernelName").filter(has_text="Python 3").wait_for(
            timeout=timeout_ms
        )
        self.lab.kernel(self.name, timeout=timeout_ms / 1000)
        self.wait_idle(timeout_ms)

    def wait_idle(self, timeout_ms: float = 60_000) -> None:
        self.page.locator(IDLE).first.wait_for(state="attached", timeout=timeout_ms)

    def reload(self, timeout_ms: float = 90_000) -> None:
        self.page.reload(timeout=timeout_ms)
        self.wait_ready(timeout_ms)

    def close(self) -> None:
        if self.context is not None:
            try:
                self.context.close()
            except Exception:
                pass
        try:
            self.lab.shutdown(self.name)
        except Exception:
            pass

    def console_text(self) -> str:
        return "\n".join(self.console[-200:])

    # cells
    def cell(self, i: int):
        return self.page.locator(".jp-Notebook .jp-Cell").nth(i)

    def run_cell(self, i: int, timeout_ms: float = 60_000) -> None:
        """Click into cell i, Shift+Enter, wait until it has run (execution count shown, kernel idle)."""
        cell = self.cell(i)
        cell.locator(".jp-InputArea-editor").click()
        before = cell.locator(".jp-InputPrompt").inner_text()
        self.page.keyboard.press("Shift+Enter")
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            prompt = cell.locator(".jp-InputPrompt").inner_text().strip()
            if re.search(r"\[\d+\]", prompt) and prompt != before.strip():
                break
            if time.monotonic() > deadline:
                self.page.screenshot(path=str(ARTIFACTS / f"timeout-{self.name}-cell{i}.png"))
                raise TimeoutError(f"cell {i} did not finish (prompt {prompt!r})")
            time.sleep(0.1)
        self.wait_idle(timeout_ms)

    # the widget
    def widget(self):
        return self.page.locator(WIDGET).last

    def wait_widget(self, timeout_ms: float = 30_000):
        w = self.widget()
        try:
            w.locator(".fw-record").wait_for(state="visible", timeout=timeout_ms)
        except Exception as err:
            outputs = self.page.locator(".jp-Notebook .jp-OutputArea").all_inner_texts()
            self.page.screenshot(path=str(ARTIFACTS / f"no-widget-{self.name}.png"))
            raise AssertionError(f"the widget did not render; cell outputs: {outputs}") from err
        return w

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.widget().screenshot(path=str(path))
        return path

    def kernel(self) -> Kernel:
        return self.lab.kernel(self.name)

    def meter_percent(self) -> float:
        """The level meter's fill, in % of the meter (from its style width, else its box)."""
        return (
            self.widget()
            .locator(".fw-meter-fill")
            .evaluate(
                """el => {
                 const w = el.style.width;
                 if (w && w.endsWith('%')) return parseFloat(w);
                 const p = el.parentElement.getBoundingClientRect().width;
                 return p ? 100 * el.getBoundingClientRect().width / p : 0;
               }"""
            )
        )


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.1):
    """Poll `predicate` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def check_time_labels(widget) -> list[str]:
    """Assert that every transcript line's [mm:ss] label is drawn inside the transcript box and is
    readable (its text's own box, not just the element's, has a size and a visible colour);
    return the labels."""
    labels = widget.locator(".fw-time")
    texts = []
    for i in range(labels.count()):
        label = labels.nth(i)
        label.scroll_into_view_if_needed()
        box = widget.locator(".fw-transcript").bounding_box()
        drawn = label.evaluate("""el => { const r = document.createRange(); r.selectNodeContents(el);
                                          const b = r.getBoundingClientRect();
                                          return {x: b.x, y: b.y, width: b.width, height: b.height,
                                                  color: getComputedStyle(el).color}; }""")
        text = label.inner_text()
        assert re.fullmatch(r"\[\d\d:\d\d\]", text), text
        assert drawn["width"] > 10 and drawn["height"] > 5, drawn
        assert box["x"] <= drawn["x"] and drawn["x"] + drawn["width"] <= box["x"] + box["width"], (text, drawn, box)
        inside_y = box["y"] <= drawn["y"] and drawn["y"] + drawn["height"] <= box["y"] + box["height"] + 1
        assert inside_y, (text, drawn, box)
        assert drawn["color"] not in ("rgba(0, 0, 0, 0)", "transparent"), drawn
        texts.append(text)
    return texts
