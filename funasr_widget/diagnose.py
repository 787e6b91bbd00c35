"""Why the microphone does nothing: error texts with their fixes, and the checklist.

The front end reports *what* failed (a code, the browser, the page origin); the
words a user reads, and the fix, are written here, in one place.

Whatever the front end (or anything else) sends, nothing here raises: `clean_env`
turns an `env` message into known keys with known types, and every value shown
to the user is str()-ed and length-capped.
"""

from __future__ import annotations

import html
import math
import numbers
import re
import reprlib
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_TEXT = 300  # characters of any one value shown to the user
MAX_DEVICES = 32
_BROWSERS = ("chrome", "edge", "firefox", "safari", "other")
_PERMISSIONS = ("granted", "denied", "prompt", "unknown")
_CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = MAX_TEXT
_repr.maxlevel, _repr.maxlist, _repr.maxdict, _repr.maxtuple = 2, 8, 8, 8


def _text(value, limit: int = MAX_TEXT) -> str:
    """`value` as a string for the user: str() for strings and numbers, a short repr
    for anything else, cut to `limit` characters; never raises."""
    try:
        if isinstance(value, str):
            text = value
        elif value is None or isinstance(value, (bool, numbers.Number)):
            text = str(value)
        else:
            text = _repr.repr(value)
    except Exception:  # noqa: BLE001 - a diagnosis must not fail
        text = "?"
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _str_or_none(value, limit: int = MAX_TEXT) -> str | None:
    return _text(value, limit) if isinstance(value, str) else None


def _number(value) -> float | None:
    """A finite real number (not a bool), or None."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        x = float(value)
    except (OverflowError, ValueError, TypeError):
        return None
    return x if math.isfinite(x) else None


def clean_env(content) -> dict:
    """The front end's `env` report reduced to known keys with known types.

    Always the same keys: secure_context, media_devices (bool or None: unknown),
    origin, user_agent, context_state (capped str or None), browser (one of
    chrome/edge/firefox/safari/other), permission (granted/denied/prompt/unknown),
    devices (up to 32 {"id", "label"} dicts of capped strings), context_rate
    (a positive number or None). Anything else is dropped; a value of the wrong
    type becomes "unknown". `content` that is not a dict gives the all-unknown env.
    Cleaning a cleaned env changes nothing.
    """
    c = content if isinstance(content, dict) else {}

    def flag(name):
        value = c.get(name)
        return value if isinstance(value, bool) else None

    browser = c.get("browser")
    permission = c.get("permission")
    devices = []
    raw_devices = c.get("devices")
    if isinstance(raw_devices, (list, tuple)):
        for d in raw_devices[:MAX_DEVICES]:
            if isinstance(d, dict):
                devices.append({"id": _str_or_none(d.get("id"), 200) or "",
                                "label": _str_or_none(d.get("label"), 200) or ""})
    rate = _number(c.get("context_rate"))
    return {
        "secure_context": flag("secure_context"),
        "origin": _str_or_none(c.get("origin"), 200),
        "user_agent": _str_or_none(c.get("user_agent")),
        "browser": browser if isinstance(browser, str) and browser in _BROWSERS else "other",
        "media_devices": flag("media_devices"),
        "permission": permission if isinstance(permission, str) and permission in _PERMISSIONS else "unknown",
        "devices": devices,
        "context_rate": (int(rate) if rate.is_integer() else rate) if rate is not None and rate > 0 else None,
        "context_state": _str_or_none(c.get("context_state"), 40),
    }


def _port(origin: str) -> int | None:
    try:
        return urlsplit(origin).port if origin.startswith("http") else None
    except ValueError:  # "http://x:99999", "http://[::1"
        return None


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
    port = _port(origin)
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
    "recording-elsewhere": lambda env: (
        "This widget is already recording in another tab or window.",
        "Stop the recording there (or close that tab), then press Record here again.",
    ),
    "insecure-context": _insecure,
    "permission-denied": _permission,
}


def capture_error(code: str, env: dict | None = None, detail: str = "") -> dict:
    """The `error` trait value for a capture failure reported by the front end.

    Never raises: a `code` that is not a short lower-case name becomes
    "capture-failed" (an unknown but well-formed one keeps its name and gets the
    generic text); `env` is cleaned (see clean_env); `detail` is str()-ed and capped.
    """
    if not (isinstance(code, str) and _CODE.fullmatch(code)):
        code = "capture-failed"
    env = clean_env(env)
    message, hint = _TEXTS.get(code, _TEXTS["capture-failed"])(env)
    detail = "" if detail is None else _text(detail)
    if detail and (code not in _TEXTS or code in ("capture-failed", "device-busy")):
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
    """Everything known about the capture path, first failure first in reading order.

    Never raises, whatever the arguments hold: a value of the wrong type counts as
    unknown, and every text is capped.
    """
    try:
        return _checklist(env, stats, error, model_state, model_info, last_seen)
    except Exception as err:  # noqa: BLE001 - a bug here must not hide the diagnosis's reason
        return Checklist([Check("diagnosis", None, _text(f"could not be built: {type(err).__name__}: {err}"))])


def _checklist(env, stats, error, model_state, model_info, last_seen) -> Checklist:
    seen = isinstance(env, dict) and env != {}  # the front end's env report came
    env = clean_env(env)
    stats = stats if isinstance(stats, dict) else {}
    error = error if isinstance(error, dict) else {}
    model_info = model_info if isinstance(model_info, dict) else {}
    secure = env["secure_context"]
    permission = env["permission"]
    devices = env["devices"]
    rows = Checklist()
    seen_at = _number(last_seen)
    age = None if seen_at is None else time.monotonic() - seen_at
    rows.append(Check(
        "kernel link", seen or age is not None,
        f"last message from the front end {age:.1f} s ago" if age is not None
        else "messages from the front end" if seen
        else "no message from the widget yet: is it displayed in a live page?",
    ))
    rows.append(Check(
        "secure context", secure if seen else None,
        f"origin {env['origin'] or '?'}" + ("" if secure or not seen else f": {_insecure(env)[1]}"),
    ))
    rows.append(Check(
        "permission", {"granted": True, "denied": False}.get(permission),
        permission + (f": {_permission(env)[1]}" if permission == "denied" else ""),
    ))
    rows.append(Check(
        "devices", bool(devices) if seen else None,
        _text(", ".join(d["label"] or d["id"][:8] or "(unnamed)" for d in devices) or "none seen"),
    ))
    rate = env["context_rate"]
    state = env["context_state"]
    rows.append(Check(
        "sample rate", None if rate is None else state != "suspended",
        "not started" if rate is None else f"device {rate} Hz -> 16000 Hz, audio engine {state or '?'}",
    ))

    def count(name) -> float:
        value = _number(stats.get(name))
        return 0 if value is None else int(value) if value.is_integer() and abs(value) < 1e15 else value

    chunks = count("chunks")
    rejected_by = stats.get("rejected_by")
    reasons = ""
    if isinstance(rejected_by, dict) and rejected_by:
        reasons = " (" + ", ".join(f"{_text(k, 40)}: {_text(v, 20)}" for k, v in list(rejected_by.items())[:8]) + ")"
    rows.append(Check(
        "audio received", chunks > 0 if chunks or seen else None,
        _text(f"{chunks} chunks, {count('seconds'):.1f} s, {count('rejected')} rejected{reasons}, "
              f"{count('lost')} lost in {count('gaps')} gaps, {count('duplicates')} duplicates"
              + (f", {count('dropped_seconds'):.1f} s over the cap dropped" if count("dropped_seconds") else "")),
    ))
    level = _number(stats.get("level_db"))
    rows.append(Check(
        "input level", None if level is None else level > -80,
        "no audio yet" if level is None else f"last chunk {level:.1f} dBFS",
    ))
    state = model_state if isinstance(model_state, str) else None
    rows.append(Check(
        "model", {"ready": True, "error": False}.get(state),
        _text(f"{_text(model_state, 40)}: " + _text(model_info.get("message") or model_info.get("name") or "")),
    ))
    if error:
        rows.append(Check("last error", False,
                          _text(f"{_text(error.get('message'))} Fix: {_text(error.get('hint'))}", 2 * MAX_TEXT)))
    return rows
