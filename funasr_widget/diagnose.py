"""Why the microphone does nothing: error texts with their fixes, and the checklist.

The front end reports *what* failed (a code, the browser, the page origin); the
words a user reads, and the fix, are written here, in one place.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

_PERMISSION_FIX = {
    "chrome": "Click the icon left of the address bar (tune/lock) > Site settings > Microphone: Allow, then reload the page.",
    "edge": "Click the lock left of the address bar > Permissions for this site > Microphone: Allow, then reload the page.",
    "firefox": "Click the crossed-out microphone in the address bar > clear 'Blocked Temporarily' or the saved block, then press Record again.",
    "safari": "Safari > Settings for This Website (or Settings > Websites > Microphone) > set this site to Allow, then reload.",
}
_PERMISSION_FIX_OTHER = "Allow microphone access for this site in the browser's site settings, then reload the page."
_OS_FIX = " If the browser already allows it, check the operating system's privacy settings for the microphone."


def _insecure(env: dict) -> tuple[str, str]:
    origin = env.get("origin") or "this page"
    port = urlsplit(origin).port if origin.startswith("http") else None
    local = f"http://localhost:{port}" if port else "http://localhost:<port>"
    return (
        f"The microphone is blocked because {origin} is not a secure origin.",
        f"Browsers only allow microphones on https:// pages or on localhost. Open JupyterLab at {local} "
        "(on a remote machine: `ssh -L 8888:localhost:8888 host`, then open http://localhost:8888), "
        "or serve it over HTTPS.",
    )


def _permission(env: dict) -> tuple[str, str]:
    browser = env.get("browser", "other")
    return (
        "Microphone permission was denied for this page.",
        _PERMISSION_FIX.get(browser, _PERMISSION_FIX_OTHER) + _OS_FIX,
    )


_TEXTS = {
    "no-media-devices": lambda env: (
        "This browser exposes no media devices API (navigator.mediaDevices is missing).",
        "Use a current Chrome, Edge, Firefox or Safari on http://localhost or https://.",
    ),
    "no-device": lambda env: (
        "No microphone was found.",
        "Plug in or enable a microphone (check the operating system's sound settings), then press Record again.",
    ),
    "device-busy": lambda env: (
        "The microphone is in use or could not be opened (NotReadableError).",
        "Close other apps or tabs using it (video calls, recorders), or pick another device, then try again.",
    ),
    "overconstrained": lambda env: (
        "The chosen microphone is not available any more (OverconstrainedError).",
        "Pick another device in the list (or 'Default') and press Record again.",
    ),
    "context-suspended": lambda env: (
        "The browser kept the audio engine suspended.",
        "Click Record again (browsers only start audio after a click on the page); "
        "check that the tab is not muted.",
    ),
    "silent-input": lambda env: (
        "The microphone sends pure silence.",
        "It may be muted (hardware switch or operating system), or the wrong input is selected: "
        "pick another device in the list.",
    ),
    "capture-failed": lambda env: (
        "The microphone could not be started.",
        "Reload the page and try again; run `widget.diagnose()` for details.",
    ),
    "insecure-context": _insecure,
    "permission-denied": _permission,
}


def capture_error(code: str, env: dict | None = None, detail: str = "") -> dict:
    """The `error` trait value for a capture failure reported by the front end."""
    env = env or {}
    message, hint = _TEXTS.get(code, _TEXTS["capture-failed"])(env)
    if detail and code in ("capture-failed", "device-busy"):
        message = f"{message} ({detail})"
    return {"code": code, "message": message, "hint": hint}


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not known yet
    detail: str


class Checklist(list):
    """A list of Check rows that prints as a readable table in a notebook."""

    _MARK = {True: "ok", False: "FAIL", None: "?"}

    def __str__(self) -> str:
        width = max((len(c.name) for c in self), default=0)
        return "\n".join(f"[{self._MARK[c.ok]:>4}] {c.name:<{width}}  {c.detail}" for c in self)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour = {True: "#1a7f37", False: "#cf222e", None: "#6e7781"}
        rows = "".join(
            f"<tr><td style='color:{colour[c.ok]};font-weight:bold'>{self._MARK[c.ok]}</td>"
            f"<td>{html.escape(c.name)}</td><td style='text-align:left'>{html.escape(c.detail)}</td></tr>"
            for c in self
        )
        return f"<table>{rows}</table>"

    @property
    def failed(self) -> list[Check]:
        return [c for c in self if c.ok is False]


def checklist(env: dict, stats: dict, error: dict, model_state: str, model_info: dict, last_seen: float | None) -> Checklist:
    """Everything known about the capture path, first failure first in reading order."""
    seen = env != {}
    secure = env.get("secure_context")
    permission = env.get("permission", "unknown")
    devices = env.get("devices") or []
    rows = Checklist()
    age = None if last_seen is None else time.monotonic() - last_seen
    rows.append(Check(
        "kernel link", seen,
        "no message from the widget yet: is it displayed in a live page?" if not seen
        else f"last message from the front end {age:.1f} s ago",
    ))
    rows.append(Check(
        "secure context", secure if seen else None,
        f"origin {env.get('origin', '?')}" + ("" if secure or not seen else f": {_insecure(env)[1]}"),
    ))
    rows.append(Check(
        "permission", {"granted": True, "denied": False}.get(permission),
        permission + (f": {_permission(env)[1]}" if permission == "denied" else ""),
    ))
    rows.append(Check(
        "devices", bool(devices) if seen else None,
        ", ".join(d.get("label") or d.get("id", "?")[:8] or "(unnamed)" for d in devices) or "none seen",
    ))
    rate = env.get("context_rate")
    rows.append(Check(
        "sample rate", None if rate is None else env.get("context_state") != "suspended",
        "not started" if rate is None else f"device {rate} Hz -> 16000 Hz, audio engine {env.get('context_state')}",
    ))
    chunks = stats.get("chunks", 0)
    rows.append(Check(
        "audio received", chunks > 0 if chunks or seen else None,
        f"{chunks} chunks, {stats.get('seconds', 0):.1f} s, {stats.get('rejected', 0)} rejected, "
        f"{stats.get('lost', 0)} lost in {stats.get('gaps', 0)} gaps",
    ))
    level = stats.get("level_db")
    rows.append(Check(
        "input level", None if level is None else level > -80,
        "no audio yet" if level is None else f"last chunk {level:.1f} dBFS",
    ))
    rows.append(Check(
        "model", {"ready": True, "error": False}.get(model_state),
        f"{model_state}: " + (model_info.get("message") or model_info.get("name") or ""),
    ))
    if error:
        rows.append(Check("last error", False, f"{error.get('message')} Fix: {error.get('hint')}"))
    return rows
