"""diagnose.py never raises, whatever the front end (or anything else) reports."""

import time

import pytest

from funasr_widget.diagnose import MAX_TEXT, Check, Checklist, capture_error, checklist, clean_env

GOOD_ENV = {
    "secure_context": False,
    "origin": "http://10.0.0.5:8888",
    "user_agent": "Mozilla/5.0",
    "browser": "firefox",
    "media_devices": True,
    "permission": "denied",
    "devices": [{"id": "abcdef0123456789", "label": ""}, {"id": "x", "label": "USB mic"}],
    "context_rate": 48000,
    "context_state": "running",
    "policy_allows": True,
    "in_frame": False,
}


class Weird:
    def __str__(self):
        raise RuntimeError("no str")

    __repr__ = __str__


HUGE = "x" * 1_000_000
BAD_ENVS = [
    None,
    [],
    "env",
    42,
    {"origin": 42},
    {"origin": None},
    {"origin": ["http://x"]},
    {"origin": "http://x:99999"},
    {"origin": "http://[::1"},
    {"origin": "http://[::1]:abc"},
    {"origin": HUGE},
    {"devices": "mic"},
    {"devices": 3},
    {"devices": [1, None, "a", ["b"]]},
    {"devices": [{"id": 5, "label": ["l"]}, {"label": None}, {}]},
    {"devices": [{"id": HUGE}] * 10_000},
    {"browser": ["chrome"]},
    {"browser": {"a": 1}},
    {"browser": 7},
    {"permission": ["denied"]},
    {"permission": {}},
    {"context_rate": "48000"},
    {"context_rate": float("nan")},
    {"context_rate": 10**400},
    {"context_rate": True},
    {"context_rate": -1},
    {"context_state": {"x": 1}},
    {"secure_context": "yes"},
    {"secure_context": [True]},
    {"origin": Weird(), "browser": Weird(), "devices": [Weird()]},
    {**GOOD_ENV, "origin": "http://[::1", "browser": ["x"], "devices": {"a": 1}},
]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("env", BAD_ENVS)
def test_clean_env_gives_known_keys_with_known_types(env):
    clean = clean_env(env)
    assert set(clean) == set(clean_env(GOOD_ENV))
    assert clean_env(clean) == clean  # idempotent: the widget can store it and clean again
    assert clean["secure_context"] in (True, False, None) and clean["media_devices"] in (True, False, None)
    assert clean["browser"] in ("chrome", "edge", "firefox", "safari", "other")
    assert clean["permission"] in ("granted", "denied", "prompt", "unknown")
    for key in ("origin", "user_agent", "context_state"):
        assert clean[key] is None or isinstance(clean[key], str) and len(clean[key]) <= MAX_TEXT
    assert clean["context_rate"] is None or clean["context_rate"] > 0
    assert isinstance(clean["devices"], list) and len(clean["devices"]) <= 32
    assert all(
        set(d) == {"id", "label"} and all(isinstance(v, str) and len(v) <= 200 for v in d.values())
        for d in clean["devices"]
    )


@pytest.mark.timeout(30)
def test_clean_env_keeps_good_values():
    clean = clean_env({**GOOD_ENV, "type": "env", "extra": object()})
    assert clean == GOOD_ENV
    assert clean_env({**GOOD_ENV, "context_rate": 44100.0})["context_rate"] == 44100


CODES = [
    "insecure-context",
    "permission-denied",
    "capture-failed",
    "device-busy",
    "no-device",
    "silent-input",
    "",
    None,
    42,
    ["permission-denied"],
    {"a": 1},
    "some-new-code",
    HUGE,
    "BAD CODE!",
    Weird(),
]
DETAILS = ["", None, 42, ["a"], {"b": 2}, HUGE, Weird()]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("env", BAD_ENVS + [GOOD_ENV])
@pytest.mark.parametrize("code", CODES)
def test_capture_error_never_raises_and_caps_what_it_shows(code, env):
    for detail in DETAILS:
        err = capture_error(code, env, detail)
        assert set(err) == {"code", "message", "hint"}
        assert all(isinstance(v, str) for v in err.values())
        assert err["message"] and err["hint"]
        assert len(err["message"]) < 2 * MAX_TEXT + 200 and len(err["hint"]) < 2 * MAX_TEXT + 300
        assert len(err["code"]) <= 40


@pytest.mark.timeout(30)
def test_capture_error_texts():
    err = capture_error("insecure-context", {"origin": "http://10.0.0.5:8888"})
    assert "http://localhost:8888" in err["hint"] and "10.0.0.5" in err["message"]
    assert "localhost:<port>" in capture_error("insecure-context", {"origin": "http://x:99999"})["hint"]
    assert "Firefox" not in capture_error("permission-denied", {"browser": ["firefox"]})["hint"]
    assert "crossed-out" in capture_error("permission-denied", {"browser": "firefox"})["hint"]
    assert capture_error(None)["code"] == "capture-failed"
    err = capture_error("capture-failed", None, HUGE)
    assert err["message"].startswith("The microphone could not be started. (xxx") and len(err["message"]) < 400
    assert capture_error("some-new-code", {}, "why")["message"].endswith("(why)")


STATS = [
    None,
    [],
    {},
    {"chunks": "3", "seconds": "1.5", "level_db": "loud", "rejected": None},
    {"chunks": 10**400, "seconds": float("nan"), "level_db": float("inf"), "lost": [1]},
    {
        "chunks": 5,
        "seconds": 0.5,
        "rejected": 2,
        "rejected_by": {"bad-header": 2, ("t",): HUGE},
        "duplicates": 1,
        "dropped_seconds": 3.0,
        "level_db": -30.0,
    },
]
ERRORS = [None, {}, [], "boom", {"message": HUGE, "hint": ["h"]}, {"message": Weird(), "hint": None}, {"code": 1}]
MODEL_INFO = [None, {}, [], "x", {"message": HUGE}, {"name": ["n"]}, {"message": Weird()}]
MODEL_STATE = ["ready", "error", "loading", None, 3, ["ready"], HUGE]
LAST_SEEN = [None, time.monotonic(), "now", float("nan"), 10**400, [1]]


def render(rows: Checklist) -> None:
    assert isinstance(rows, Checklist) and all(isinstance(c, Check) for c in rows)
    assert "diagnosis" not in [c.name for c in rows]  # built for real, not by the safety net
    text, page = str(rows), rows._repr_html_()
    assert text and page.startswith("<table>")
    assert all(isinstance(c.detail, str) and len(c.detail) <= 2 * MAX_TEXT for c in rows)
    assert len(text) < 20 * 2 * MAX_TEXT
    rows.failed  # noqa: B018


@pytest.mark.timeout(120)
@pytest.mark.parametrize("env", BAD_ENVS + [GOOD_ENV, {}])
def test_checklist_never_raises(env):
    for i, stats in enumerate(STATS):
        for j, error in enumerate(ERRORS):
            info = MODEL_INFO[(i + j) % len(MODEL_INFO)]
            state = MODEL_STATE[(i * 3 + j) % len(MODEL_STATE)]
            seen = LAST_SEEN[(i + 2 * j) % len(LAST_SEEN)]
            render(checklist(env, stats, error, state, info, seen))


@pytest.mark.timeout(30)
def test_checklist_reads_a_good_env():
    rows = checklist(
        GOOD_ENV,
        {"chunks": 5, "seconds": 0.5, "rejected": 1, "rejected_by": {"bad-header": 1}, "level_db": -30.0},
        {},
        "ready",
        {"name": "m"},
        time.monotonic(),
    )
    by = {c.name: c for c in rows}
    assert by["kernel link"].ok and by["secure context"].ok is False
    assert "http://localhost:8888" in by["secure context"].detail
    assert by["permission"].ok is False and "crossed-out" in by["permission"].detail
    assert by["devices"].detail == "abcdef01, USB mic"
    assert "48000 Hz" in by["sample rate"].detail
    assert "bad-header: 1" in by["audio received"].detail
    assert by["model"].ok
    assert [c.name for c in checklist({}, {}, {}, "none", None, None).failed] == ["kernel link"]
