"""Audio helpers: streaming resampling, the capped session recording, WAV in/out."""

from __future__ import annotations

import math
import numbers
import os
import tempfile
import threading
import wave
from pathlib import Path

import numpy as np

from ._constants import SAMPLE_RATE


def as_mono_float32(samples) -> np.ndarray:
    """Accept a 1-D array or a (frames, channels) array; int16 is scaled to [-1, 1]."""
    x = np.asarray(samples)
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    elif not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"audio must be float or int16 samples, got dtype {x.dtype}")
    if x.ndim == 2:  # (frames, channels), or (channels, frames) for a short channel axis first
        x = x.mean(axis=1) if x.shape[1] <= 8 else x.mean(axis=0)
    if x.ndim != 1:
        raise ValueError(f"audio must be 1-D (or frames x channels), got shape {np.shape(samples)}")
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("audio contains NaN or infinite samples")
    return x


class StreamResampler:
    """Resamples a stream to 16 kHz in pieces, with filter state kept between pieces."""

    def __init__(self, rate: int):
        if rate <= 0:
            raise ValueError(f"sample rate must be positive, got {rate}")
        self.rate = int(rate)
        self._stream = None
        if self.rate != SAMPLE_RATE:
            import soxr

            self._stream = soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def __call__(self, samples: np.ndarray, final: bool = False) -> np.ndarray:
        if self._stream is None:
            return samples
        return self._stream.resample_chunk(samples, last=final)


def resample(samples: np.ndarray, rate: int) -> np.ndarray:
    """Resample a whole signal to 16 kHz."""
    return StreamResampler(rate)(as_mono_float32(samples), final=True)


MAX_RATE = 1_000_000  # Hz; anything above is a mistake (samples passed as the rate?)


def check_rate(sample_rate) -> int:
    """The rate as an int, or a clear TypeError/ValueError."""
    if isinstance(sample_rate, (bool, np.bool_)) or not isinstance(sample_rate, numbers.Real):
        raise TypeError(f"sample_rate must be a number of samples per second, got {type(sample_rate).__name__}")
    try:
        rate = float(sample_rate)
    except OverflowError:
        rate = math.inf
    if not math.isfinite(rate) or rate != int(rate):
        raise ValueError(f"sample_rate must be a whole number of Hz, got {sample_rate!r}")
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"sample_rate must be positive and at most {MAX_RATE} Hz, got {sample_rate!r}")
    return int(rate)


# The one rule of every entry point that takes audio (feed, transcribe, VadExplorer).
RATE_RULE = f"an array is at sample_rate Hz ({SAMPLE_RATE} when not given); a file carries its own rate"


def source_audio(source, sample_rate, who: str) -> tuple[np.ndarray, int]:
    """(mono float32 samples, rate) of a file or an array given to ``who``, by RATE_RULE; a
    ``sample_rate`` given with a file is an error (it would be ignored)."""
    if isinstance(source, (str, os.PathLike)):
        if sample_rate is not None:
            raise ValueError(f"{who}: {RATE_RULE}; leave sample_rate out for a file.")
        return read_audio(source)
    return as_mono_float32(source), check_rate(SAMPLE_RATE if sample_rate is None else sample_rate)


class Recording:
    """The session's audio (float32, 16 kHz), kept up to `max_seconds`.

    The samples live in a file, not in RAM: an hour is 230 MB, which a kernel should not
    hold for a feature most sessions read once. With `path` the file is named and stays
    after close() (a saved session's audio, journal.py); each append is written through at
    once, so a killed kernel loses at most the chunk being written, and sync() makes what
    was written durable. Without one it is an anonymous temporary file, deleted on close().
    An existing file is continued. Audio past the cap is counted in `dropped_seconds`, not
    stored. Thread-safe: the message handler appends while the notebook reads.
    """

    def __init__(self, max_seconds: float = 3600.0, path: str | os.PathLike | None = None):
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self.path = None if path is None else Path(path)
        self._lock = threading.Lock()
        if self.path is None:
            self._file = tempfile.TemporaryFile(prefix="funasr-widget-", buffering=0)
        else:
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
            fd = os.open(self.path, flags, 0o600)
            self._file = os.fdopen(fd, "r+b", buffering=0)
        self._kept = os.fstat(self._file.fileno()).st_size // 4
        self._file.truncate(self._kept * 4)  # a sample torn by a kill
        self._dropped = 0

    def clear(self) -> None:
        with self._lock:
            self._file.truncate(0)
            self._kept = 0
            self._dropped = 0

    def sync(self) -> None:
        """Make what was appended durable (fsync), without holding up append() meanwhile."""
        with self._lock:
            if self._file.closed:
                return
            fd = os.dup(self._file.fileno())
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Close the file: a named one stays (and stays readable), a temporary one is deleted."""
        if self.path is not None:
            self.sync()
        with self._lock:
            self._file.close()

    def append(self, samples: np.ndarray) -> None:
        with self._lock:
            if self._file.closed:
                raise RuntimeError("this recording is closed: its session has ended")
            keep = samples[: max(self.max_samples - self._kept, 0)]
            if len(keep):
                self._file.seek(self._kept * 4)
                data = memoryview(np.ascontiguousarray(keep, dtype="<f4").tobytes())
                while data:  # a raw file may take less than all in one write
                    data = data[self._file.write(data) :]
                self._kept += len(keep)
            self._dropped += len(samples) - len(keep)

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples [start, stop) of the recording."""
        with self._lock:
            stop = self._kept if stop is None else min(stop, self._kept)
            if stop <= start:
                return np.zeros(0, np.float32)
            if not self._file.closed:
                return _read_f32(self._file, start, stop)
            if self.path is None:
                raise RuntimeError(
                    "this recording was released when its session was closed (autosave=False); "
                    "save_wav() or copy `audio` before close()"
                )
            with open(self.path, "rb", buffering=0) as f:
                return _read_f32(f, start, stop)

    @property
    def samples(self) -> np.ndarray:
        return self.read()

    @property
    def seconds(self) -> float:
        return self._kept / SAMPLE_RATE

    @property
    def dropped_seconds(self) -> float:
        return self._dropped / SAMPLE_RATE


def _read_f32(f, start: int, stop: int) -> np.ndarray:
    f.seek(start * 4)
    return np.frombuffer(f.read((stop - start) * 4), "<f4").astype(np.float32)


def pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples as little-endian 16-bit PCM (clipped to [-1, 1], rounded)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")


def write_wav(path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    """Write 16-bit PCM: mono from a 1-D array, or (frames, channels)."""
    path = Path(path)
    pcm = pcm16(samples)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1 if pcm.ndim == 1 else pcm.shape[1])
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())
    return path


def read_audio(path) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32 plus its rate (soundfile when present, else WAV)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no audio file at {path}")
    try:
        import soundfile
    except ImportError:
        soundfile = None
    if soundfile is not None:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        return data.mean(axis=1), rate
    with wave.open(str(path), "rb") as f:
        if f.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is readable without the soundfile package")
        data = np.frombuffer(f.readframes(f.getnframes()), "<i2").reshape(-1, f.getnchannels())
        return as_mono_float32(data), f.getframerate()


def level_db(samples: np.ndarray) -> float:
    """RMS level in dBFS (-120 for digital silence)."""
    if not len(samples):
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(20.0 * math.log10(rms), -120.0) if rms > 0 else -120.0
