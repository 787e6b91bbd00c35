"""What the processes the launcher starts share: a loopback port, dying with the launcher,
and (Ray's head) a priority boost while it starts."""

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


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


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
