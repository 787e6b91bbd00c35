"""What the processes the launcher starts share: a loopback port, dying with the launcher,
the processes below one or in one session, and (Ray's nodes) a priority boost while they start."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """``preexec_fn`` (Linux): the child gets SIGTERM when the launcher dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _processes() -> list[tuple[int, int, int]]:
    """(pid, parent, session) of every process (Linux /proc; empty elsewhere)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            found.append((int(entry.name), int(fields[1]), int(fields[3])))
        except (OSError, IndexError, ValueError):
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for child, parent, _ in _processes():
        children.setdefault(parent, []).append(child)
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def session(sid: int) -> list[int]:
    """Every process of session `sid`, its leader included while it runs (Ray's workers put
    themselves in process groups of their own, but stay in the session)."""
    return [pid for pid, _, member in _processes() if member == sid]


def boosted(boost: int):
    """``preexec_fn`` for a start that must not be starved on a busy machine: dies with the
    launcher, and runs `boost` nice levels above it (where allowed: root) until :func:`unboost`."""

    def preexec() -> None:
        die_with_parent()
        try:
            os.nice(-boost)
        except OSError:
            pass

    return preexec


def unboost(pid: int) -> None:
    """`pid` and everything it started back at the launcher's own priority."""
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    for target in (pid, *descendants(pid)):
        try:
            os.setpriority(os.PRIO_PROCESS, target, mine)
        except OSError:
            pass
