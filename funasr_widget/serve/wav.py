"""The only audio the class server decodes: WAV, PCM 16-bit or 32-bit float, mono, 16 kHz,
as the widget sends it. The header is read first and the duration checked against the cap
before a single sample is converted; anything else (FLAC, MP3, a list of paths or URLs in a
text file) is refused by its first bytes. No file name, path or URL is ever looked at.
"""

from __future__ import annotations

import struct

import numpy as np

from .._constants import SAMPLE_RATE

PCM, FLOAT, EXTENSIBLE = 1, 3, 0xFFFE
ACCEPTED = f"WAV (RIFF/WAVE), PCM 16-bit or 32-bit float, mono, {SAMPLE_RATE} Hz"


class AudioRefused(ValueError):
    """The body is not audio this server decodes, or too long; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 415):
        super().__init__(message)
        self.status = status


def _chunks(data: bytes):
    """(id, offset, size) of each RIFF chunk, sizes as the header states them."""
    offset = 12
    while offset + 8 <= len(data):
        ident, size = struct.unpack_from("<4sI", data, offset)
        yield ident, offset + 8, size
        offset += 8 + size + (size & 1)


def duration(data: bytes) -> tuple[float, int, int, int]:
    """From the header alone: (seconds, format, bytes per sample, data offset)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioRefused(f"not a WAV file: this server takes {ACCEPTED}")
    fmt = None
    for ident, offset, size in _chunks(data):
        if ident == b"fmt " and size >= 16:
            fmt = struct.unpack_from("<HHIIHH", data, offset)
            if fmt[0] == EXTENSIBLE and size >= 40:  # the real format is the sub-format GUID's first 2 bytes
                fmt = (struct.unpack_from("<H", data, offset + 24)[0], *fmt[1:])
        elif ident == b"data":
            if fmt is None:
                raise AudioRefused("WAV without a fmt chunk before its data", 400)
            code, channels, rate, _, _, bits = fmt
            if (code, bits) not in ((PCM, 16), (FLOAT, 32)) or channels != 1 or rate != SAMPLE_RATE:
                kind = {PCM: "PCM", FLOAT: "float"}.get(code, f"format {code}")
                raise AudioRefused(
                    f"WAV {kind} {bits}-bit, {channels} channel(s), {rate} Hz: this server takes {ACCEPTED}"
                )
            width = bits // 8
            return size / (width * SAMPLE_RATE), code, width, offset
    raise AudioRefused("WAV without a data chunk", 400)


def decode(data: bytes, max_seconds: float) -> np.ndarray:
    """float32 samples in [-1, 1]; AudioRefused (413) past ``max_seconds``, before decoding."""
    seconds, code, width, offset = duration(data)
    if seconds > max_seconds:
        raise AudioRefused(f"{seconds:.1f} s of audio: this server takes at most {max_seconds:g} s per request", 413)
    body = data[offset : offset + int(seconds * SAMPLE_RATE) * width]
    body = body[: len(body) // width * width]  # a truncated upload: the whole samples it has
    if code == PCM:
        return np.frombuffer(body, "<i2").astype(np.float32) / 32768.0
    samples = np.frombuffer(body, "<f4").astype(np.float32)
    if not np.isfinite(samples).all():
        raise AudioRefused("float WAV with NaN or infinite samples", 400)
    return np.clip(samples, -1.0, 1.0)
