"""Saved sessions: each dictation's transcript and audio, written to disk as they are made,
so that a crash or a kernel restart loses nothing.

One private folder per session (0700, files 0600) under `sessions_dir()`:

    <id>/session.json     what the session is: id, created, sample rate, cap, `complete`
                          (closed cleanly); replaced atomically
    <id>/segments.jsonl   one line per final segment, appended and fsynced as each is made:
                          {"segment": {...}}, or {"transcript": [...]} when retranscribe()
                          replaced them all
    <id>/audio.f32        the recording: float32 little-endian samples at 16 kHz, appended
                          as chunks arrive (audio.Recording), fsynced with each segment

The newest KEEP_SESSIONS sessions are kept, none last written more than KEEP_DAYS days ago,
and no more than KEEP_BYTES in all (an hour of audio is 230 MB): older ones are deleted when a new session starts, never one still in use (its
journal is locked while a session writes it). What is on disk is untrusted input: a folder
someone else could write to, odd names and oversized or corrupt files are ignored with a
warning, and every read is bounded.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import secrets
import stat
import sys
import threading
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ._constants import SAMPLE_RATE
from .errors import FunasrWidgetError
from .events import joined

try:  # POSIX: a session's journal is locked (flock) while a session writes it
    import fcntl
except ImportError:  # Windows: an open file cannot be deleted, which guards it instead
    fcntl = None  # type: ignore[assignment]

SESSIONS_ENV = "FUNASR_WIDGET_SESSIONS"
KEEP_SESSIONS = 20
KEEP_DAYS = 30
KEEP_BYTES = 2 * 2**30
FORMAT = 1
META, JOURNAL, AUDIO = "session.json", "segments.jsonl", "audio.f32"
_META_TMP = META + ".tmp"
_FILES = (META, _META_TMP, JOURNAL, AUDIO)  # all a session folder holds: deleting removes only these
_META_MAX_BYTES = 64 * 1024
_JOURNAL_MAX_BYTES = 64 * 2**20  # a day of dictation is a few MB; more is not ours
_SCAN_MAX = 1000  # entries looked at in the sessions folder
_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")  # UTC start time, then random: sorts by age
_POSIX = os.name == "posix"
# Files are opened without following a link (POSIX) and without newline translation (Windows).
_FLAGS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


class _Ignored(Exception):
    """A session folder that is not read: the reason, for the warning."""


def sessions_dir() -> Path:
    """Where sessions are saved: $FUNASR_WIDGET_SESSIONS, else the platform's per-user data
    folder (~/.local/share or $XDG_DATA_HOME, ~/Library/Application Support, %LOCALAPPDATA%)."""
    chosen = os.environ.get(SESSIONS_ENV)
    if chosen:
        return Path(chosen).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "funasr-widget" / "sessions"


def sessions() -> list[SavedSession]:
    """The saved sessions, newest first (see the README's "Saved sessions")."""
    root = _root(create=False)
    if root is None:
        return []
    found, ignored = [], []
    with os.scandir(root) as entries:
        for n, entry in enumerate(entries):
            if n == _SCAN_MAX:
                ignored.append(("...", f"only the first {_SCAN_MAX} entries are looked at"))
                break
            if not _ID.fullmatch(entry.name):
                ignored.append((entry.name, "not a saved session"))
                continue
            try:
                found.append(SavedSession(root / entry.name))
            except _Ignored as why:
                ignored.append((entry.name, str(why)))
    if ignored:
        listed = "; ".join(f"{name} ({why})" for name, why in ignored[:5])
        more = f" and {len(ignored) - 5} more" if len(ignored) > 5 else ""
        warnings.warn(f"funasr_widget.sessions() ignored in {root}: {listed}{more}", stacklevel=2)
    return sorted(found, key=lambda s: (s.created, s.id), reverse=True)


class SavedSession:
    """One saved session as it is on disk: `segments` and `text` (read when listed),
    `audio()` (read when asked), `id`, `created`, `seconds`, and `complete` (False: the
    session is still running, or its kernel stopped without closing it).
    `Transcriber(resume=saved)` goes on with it; `delete()` removes it."""

    def __init__(self, folder: Path):
        _check_private(folder)
        meta = _read_meta(folder)
        self.path = folder
        self.id: str = meta["id"]
        self.created = datetime.fromtimestamp(meta["created"], timezone.utc).astimezone()
        self.complete: bool = meta["complete"]
        self._max_samples = int(meta["max_seconds"] * SAMPLE_RATE)
        self.segments, bad = replay(_read_private(folder / JOURNAL, _JOURNAL_MAX_BYTES, missing_ok=True))
        if bad:
            warnings.warn(f"saved session {self.id}: {bad} unreadable journal line(s) skipped", stacklevel=3)

    @property
    def text(self) -> str:
        return joined(self.segments)

    @property
    def seconds(self) -> float:
        """Seconds of audio recorded (now: a running session's grows)."""
        try:
            size = os.lstat(self.path / AUDIO).st_size
        except FileNotFoundError:
            return 0.0
        return min(size // 4, self._max_samples) / SAMPLE_RATE

    def audio(self, start: float = 0.0, stop: float | None = None) -> np.ndarray:
        """The recording (or seconds [start, stop) of it): float32 samples at 16 kHz."""
        for name, value in (("start", start), ("stop", stop)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf
            ):
                raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
        try:
            fd = _open_private(self.path / AUDIO, os.O_RDONLY)
        except FileNotFoundError:
            return np.zeros(0, np.float32)
        with os.fdopen(fd, "rb") as f:
            n = min(os.fstat(f.fileno()).st_size // 4, self._max_samples)
            a = min(int(round(start * SAMPLE_RATE)), n)
            b = n if stop is None else min(max(int(round(stop * SAMPLE_RATE)), a), n)
            f.seek(a * 4)
            return np.frombuffer(f.read((b - a) * 4), "<f4").astype(np.float32)

    def delete(self) -> None:
        """Remove this session's files (refused while a session is still writing it)."""
        try:
            removed = _remove(self.path)
        except OSError as err:
            raise FunasrWidgetError(
                f"Saved session {self.id} could not be deleted: {err}.",
                f"Files this package did not write are left as they are: look in {self.path}.",
                code="session-not-deleted",
            ) from None
        if not removed:
            raise FunasrWidgetError(
                f"Saved session {self.id} is in use: a widget or session is still writing it.",
                "Close that widget (close()) first, or let its kernel stop.",
                code="session-in-use",
            )

    def __repr__(self) -> str:
        state = "closed" if self.complete else "not closed"
        return (
            f"<SavedSession {self.id}: {self.created:%Y-%m-%d %H:%M}, {len(self.segments)} segments, "
            f"{self.seconds:.1f} s, {state}>"
        )


def replay(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The segments a journal holds, and how many of its lines were unreadable. A last line
    without its newline (a kernel killed mid-write) is skipped and not counted."""
    segments: list[dict[str, Any]] = []
    lines = data.split(b"\n")
    bad = 0
    for line in lines[:-1]:  # the piece after the last newline is unfinished
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            bad += 1
            continue
        if isinstance(entry, dict) and _is_segment(entry.get("segment")):
            segments.append(entry["segment"])
        elif (
            isinstance(entry, dict)
            and isinstance(entry.get("transcript"), list)
            and all(map(_is_segment, entry["transcript"]))
        ):
            segments = list(entry["transcript"])
        else:
            bad += 1
    return segments, bad


def _is_segment(value: object) -> bool:
    return (
        isinstance(value, dict)
        and type(value.get("id")) is int
        and isinstance(value.get("text"), str)
        and _finite(value.get("start"))
        and _finite(value.get("end"))
    )


def _finite(value: object) -> bool:
    """A plain finite number (JSON's NaN and Infinity are not; neither is true)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Journal:
    """The files of the session being recorded, written as it goes (live.LiveSession).
    `add()` appends one entry and fsyncs it; `close()` marks the session complete.
    Thread-safe; the journal stays locked until close()."""

    def __init__(self, folder: Path, meta: dict[str, Any], fd: int):
        self.folder, self._meta, self._fd = folder, meta, fd
        self._lock = threading.Lock()

    @property
    def audio_path(self) -> Path:
        return self.folder / AUDIO

    @classmethod
    def create(cls, max_seconds: float) -> Journal:
        """A new session folder; older sessions beyond retention are pruned."""
        root = _root(create=True)
        assert root is not None
        now = time.time()
        while True:
            session_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(3)
            try:
                os.mkdir(root / session_id, 0o700)
                break
            except FileExistsError:
                continue
        folder = root / session_id
        fd = os.open(folder / JOURNAL, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | _FLAGS, 0o600)
        _lock(fd)
        meta = {
            "format": FORMAT,
            "id": session_id,
            "created": now,
            "sample_rate": SAMPLE_RATE,
            "dtype": "float32",
            "max_seconds": float(max_seconds),
            "complete": False,
        }
        journal = cls(folder, meta, fd)
        journal._write_meta()
        _fsync_dir(root)
        prune(root, KEEP_SESSIONS, KEEP_DAYS, KEEP_BYTES)
        return journal

    @classmethod
    def reopen(cls, saved: SavedSession, max_seconds: float) -> Journal:
        """Go on writing a saved session: its journal is cut after its last whole line (a
        line torn by a kill would spoil the next one) and it is marked not complete."""
        try:
            _check_private(saved.path)
            meta = _read_meta(saved.path)
            fd = _open_private(saved.path / JOURNAL, os.O_RDWR | os.O_CREAT | os.O_APPEND)
        except (_Ignored, OSError) as err:
            raise FunasrWidgetError(
                f"Saved session {saved.id} cannot be resumed: {err}.",
                "List what is saved with funasr_widget.sessions() and resume one of those.",
                code="session-gone",
            ) from None
        if not _lock(fd, wait=False):
            os.close(fd)
            raise FunasrWidgetError(
                f"Saved session {saved.id} is in use: a widget or session is still writing it.",
                "Close that widget (close()) first; a session is resumed by one widget at a time.",
                code="session-in-use",
            )
        size = os.fstat(fd).st_size
        if size > _JOURNAL_MAX_BYTES:
            os.close(fd)
            raise FunasrWidgetError(f"Saved session {saved.id}'s journal is over {_JOURNAL_MAX_BYTES} bytes.")
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, size)
        os.ftruncate(fd, data.rfind(b"\n") + 1)
        meta.update(complete=False, max_seconds=max(float(max_seconds), meta["max_seconds"]))
        meta.pop("closed", None)
        journal = cls(saved.path, meta, fd)
        journal._write_meta()
        return journal

    def add(self, entry: dict[str, Any]) -> None:
        """Append one entry as a line and fsync it (raises OSError or TypeError)."""
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        with self._lock:
            _write_all(self._fd, line)
            os.fsync(self._fd)

    def close(self) -> None:
        """Mark the session complete; the files stay."""
        with self._lock:
            if self._fd < 0:
                return
            try:
                self._meta.update(complete=True, closed=time.time())
                self._write_meta()
            finally:
                os.close(self._fd)  # and the lock with it
                self._fd = -1

    def _write_meta(self) -> None:
        tmp = self.folder / _META_TMP
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FLAGS, 0o600)
        try:
            _write_all(fd, json.dumps(self._meta).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.folder / META)
        _fsync_dir(self.folder)


def prune(root: Path, keep: int, days: float, max_bytes: int) -> list[str]:
    """Delete sessions beyond the newest `keep`, last written more than `days` ago, or past
    `max_bytes` counted from the newest, except those in use and folders that are not plainly
    ours; returns the ids deleted."""
    with os.scandir(root) as entries:
        names = [e.name for e in itertools.islice(entries, _SCAN_MAX) if _ID.fullmatch(e.name)]
    found = []
    for name in names:
        try:
            _check_private(root / name)
            found.append((_read_meta(root / name)["created"], name))
        except (_Ignored, OSError):
            continue  # not plainly ours, half made or gone: never deleted (sessions() warns)
    cutoff = time.time() - days * 86400
    deleted = []
    total = 0
    for rank, (_, name) in enumerate(sorted(found, reverse=True)):
        try:
            total += _size(root / name)
            if rank < keep and _last_written(root / name) >= cutoff and total <= max_bytes:
                continue
            if _remove(root / name):
                deleted.append(name)
        except OSError:
            continue  # gone already, or files this package did not write: left as they are
    return deleted


def check(autosave: object, resume: object) -> None:
    """The widget's and session's `autosave` and `resume` arguments, checked where given."""
    if not isinstance(autosave, bool):
        raise TypeError(f"autosave must be True or False, got {autosave!r}")
    if resume is not None and not isinstance(resume, SavedSession):
        raise TypeError(
            f"resume takes a saved session from funasr_widget.sessions() (or None), got {type(resume).__name__}"
        )
    if resume is not None and not autosave:
        raise ValueError("resume= goes on writing into the saved session, so it needs autosave=True")
    if autosave:
        _root(create=False)  # a sessions folder that is not private is refused now, before anything starts


# -- files, read as untrusted input ---------------------------------------------------------


def _root(create: bool) -> Path | None:
    """The sessions folder, checked: ours and writable by no one else (None if absent)."""
    root = sessions_dir()
    if create:
        root.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(root, 0o700)
    try:
        st = os.stat(root)  # the folder chosen may be reached through a link; what is inside may not
    except FileNotFoundError:
        return None
    why = "is not a folder" if not stat.S_ISDIR(st.st_mode) else _not_private(st, write_only=True)
    if why:
        raise FunasrWidgetError(
            f"The sessions folder {root} {why}: sessions are not saved or read there.",
            f"Make it yours and private (chmod 700), point ${SESSIONS_ENV} at a private folder, "
            "or pass autosave=False.",
            code="sessions-unsafe",
        )
    return root


def _not_private(st: os.stat_result, write_only: bool = False) -> str:
    """Why a file or folder is not plainly ours ('' when it is)."""
    if not _POSIX:
        return ""
    if st.st_uid != os.getuid():
        return f"belongs to another user (uid {st.st_uid})"
    if st.st_mode & (0o022 if write_only else 0o077):
        return f"is open to other users (mode {stat.S_IMODE(st.st_mode):o})"
    return ""


def _check_private(folder: Path) -> None:
    st = os.lstat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise _Ignored("not a folder")
    why = _not_private(st)
    if why:
        raise _Ignored(why)


def _open_private(path: Path, flags: int) -> int:
    """A file descriptor for a regular file that is ours; links are not followed."""
    fd = os.open(path, flags | _FLAGS, 0o600)
    st = os.fstat(fd)
    why = "not a regular file" if not stat.S_ISREG(st.st_mode) else _not_private(st)
    if why:
        os.close(fd)
        raise _Ignored(f"{path.name} {why}")
    return fd


def _read_private(path: Path, limit: int, missing_ok: bool = False) -> bytes:
    try:
        fd = _open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        if missing_ok:
            return b""
        raise _Ignored(f"no {path.name}") from None
    except OSError as err:  # a link (ELOOP), a permission, ...
        raise _Ignored(f"{path.name}: {err.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        if os.fstat(fd).st_size > limit:
            raise _Ignored(f"{path.name} is over {limit} bytes")
        return f.read(limit)  # a file still growing is read up to the limit


def _read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads(_read_private(folder / META, _META_MAX_BYTES))
    except (ValueError, RecursionError):
        raise _Ignored(f"{META} is not JSON") from None
    if not (
        isinstance(meta, dict)
        and meta.get("format") == FORMAT
        and meta.get("id") == folder.name
        and _finite(meta.get("created"))
        and meta.get("sample_rate") == SAMPLE_RATE
        and meta.get("dtype") == "float32"
        and _finite(meta.get("max_seconds"))
        and meta["max_seconds"] > 0
        and isinstance(meta.get("complete"), bool)
    ):
        raise _Ignored(f"{META} is not one this version wrote")
    return meta


def _last_written(folder: Path) -> float:
    times = [folder.lstat().st_mtime]
    for name in (META, JOURNAL, AUDIO):
        with contextlib.suppress(FileNotFoundError):
            times.append(os.lstat(folder / name).st_mtime)
    return max(times)


def _size(folder: Path) -> int:
    return sum(os.lstat(folder / name).st_size for name in _FILES if os.path.lexists(folder / name))


def _remove(folder: Path) -> bool:
    """Delete a session folder's files and the folder; False when it is in use. Files this
    package does not write are left, and the folder with them."""
    try:
        fd = os.open(folder / JOURNAL, os.O_RDONLY | _FLAGS)
    except FileNotFoundError:
        fd = -1
    try:
        if fd >= 0 and not _lock(fd, wait=False):
            return False
        for name in _FILES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(folder / name)
        os.rmdir(folder)
    finally:
        if fd >= 0:
            os.close(fd)
    return True


def _lock(fd: int, wait: bool = True) -> bool:
    """Take the journal's lock (False: another session holds it)."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(folder: Path) -> None:
    """Make a folder's new entries durable (POSIX; Windows cannot open a folder)."""
    if not _POSIX:
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "KEEP_BYTES",
    "KEEP_DAYS",
    "KEEP_SESSIONS",
    "SESSIONS_ENV",
    "Journal",
    "SavedSession",
    "check",
    "sessions",
    "sessions_dir",
]
