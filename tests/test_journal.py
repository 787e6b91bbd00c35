"""Nothing lost: saved sessions (funasr_widget/journal.py) survive a killed kernel, stay
private, are bounded, and a widget goes on with one."""

from __future__ import annotations

import json
import os
import queue
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest

from funasr_widget import FunasrWidgetError, Transcriber, journal, sessions, transcribe
from funasr_widget.journal import AUDIO, JOURNAL, KEEP_SESSIONS, META, sessions_dir
from funasr_widget.live import LiveSession

RATE = 16_000
CHUNK = 1600

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX modes, owners and signals")


def bursts(n: int, on_s: float = 0.4, off_s: float = 0.8, freq: float = 440.0) -> np.ndarray:
    """n tone bursts with silences between: n segments for the energy VAD."""
    t = np.arange(int(on_s * RATE)) / RATE
    burst = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    gap = np.zeros(int(off_s * RATE), np.float32)
    return np.concatenate([gap] + [np.concatenate([burst, gap]) for _ in range(n)])


def dictate(target, samples: np.ndarray) -> None:
    """Feed `samples` in browser-sized chunks, then the final chunk, and wait for the finals."""
    for i in range(0, len(samples), CHUNK):
        target.feed(samples[i : i + CHUNK])
    target.feed(np.zeros(0, np.float32), final=True)
    assert target.wait(timeout=60)


def finish(session) -> None:
    """Close and wait until the worker has closed the files (the journal is unlocked)."""
    session.close()
    assert session.wait(timeout=30)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A sessions folder of this test's own (not created yet: the first session makes it)."""
    root = tmp_path / "sessions"
    monkeypatch.setenv("FUNASR_WIDGET_SESSIONS", str(root))
    return root


def saved_one(samples: np.ndarray, **kwargs):
    """A closed session holding `samples` (energy VAD, no model); the SavedSession."""
    s = LiveSession(None, "energy", **kwargs)
    dictate(s, samples)
    finish(s)
    return sessions()[0]


# -- the kill: a kernel-like child process SIGKILLed mid-dictation -------------------------

CHILD = textwrap.dedent(
    """
    import json, sys, threading, time
    import numpy as np
    from funasr_widget.live import LiveSession

    audio = np.load(sys.argv[1])
    out = threading.Lock()

    def say(line):
        with out:
            sys.stdout.write(line + "\\n")
            sys.stdout.flush()

    session = LiveSession("sensevoice-small", "energy", "cpu")
    session.on_segment(lambda segment: say("final " + json.dumps(segment)))
    if not session.wait(timeout=400) or session.model_state != "ready":
        say("failed " + json.dumps(session.model_info))
        sys.exit(1)
    say("ready")
    fed = 0
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline:  # dictating until killed: the speech, looped
        for i in range(0, len(audio), 1600):
            session.feed(audio[i : i + 1600])
            fed += len(audio[i : i + 1600])
            say(f"fed {fed}")
            time.sleep(0.05)  # about twice real time
    say("end")
    """
)


@posix_only
@pytest.mark.timeout(900)
def test_a_killed_kernel_loses_no_final_segment_and_no_written_audio(store, model_store, speech, tmp_path):
    np.save(tmp_path / "speech.npy", speech.samples)
    env = {**os.environ, "FUNASR_WIDGET_MODELS": str(model_store), "FUNASR_WIDGET_SESSIONS": str(store)}
    with open(tmp_path / "stderr.txt", "w") as errors:  # the child keeps its own handle
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path / "speech.npy")],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env=env,
        )
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in child.stdout:
            lines.put(line)
        lines.put(None)  # the child is gone

    reader = threading.Thread(target=read)
    reader.start()
    seen, finals = [], 0
    try:
        deadline = time.monotonic() + 800
        while finals < 3:  # three finals reported: the fourth sentence is being spoken
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            if line is None or line.startswith(("failed", "end")):
                said = (tmp_path / "stderr.txt").read_text()[-2000:]
                pytest.fail(f"the child stopped before three finals: {seen[-3:]} {line}\n{said}")
            seen.append(line)
            finals += line.startswith("final ")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        reader.join(timeout=30)
    assert child.returncode == -signal.SIGKILL
    while (line := lines.get_nowait()) is not None:  # what it said before it died counts too
        seen.append(line)

    reported = [json.loads(line[len("final ") :]) for line in seen if line.startswith("final ")]
    fed = max(int(line.split()[1]) for line in seen if line.startswith("fed "))
    [saved] = sessions()
    assert not saved.complete  # killed, never closed
    # Every final the child reported was journaled before its callbacks ran.
    assert saved.segments[: len(reported)] == reported and len(saved.segments) <= len(reported) + 1
    assert [s["id"] for s in saved.segments] == list(range(len(saved.segments)))
    # The audio: all that was fed, at most the one chunk being written more (fed, not yet reported).
    audio = saved.audio()
    assert fed <= len(audio) <= fed + CHUNK
    looped = np.tile(speech.samples, len(audio) // len(speech.samples) + 1)
    np.testing.assert_array_equal(audio, looped[: len(audio)])
    assert saved.seconds == len(audio) / RATE

    # A killed session can be gone on with: its lock died with the kernel.
    resumed = LiveSession(None, "energy", resume=saved)
    assert resumed.segments == saved.segments
    finish(resumed)
    assert sessions()[0].complete


# -- where, and how private --------------------------------------------------------------


@posix_only
def test_folders_are_0700_and_files_0600(store):
    saved_one(bursts(1))
    [folder] = list(store.iterdir())
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert sorted(p.name for p in folder.iterdir()) == sorted([AUDIO, JOURNAL, META])
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}


def test_the_environment_variable_chooses_the_folder(store, tmp_path, monkeypatch):
    saved = saved_one(bursts(1))
    assert saved.path.parent == store and sessions_dir() == store
    monkeypatch.setenv("FUNASR_WIDGET_SESSIONS", str(tmp_path / "elsewhere"))
    assert sessions() == []  # nothing there yet
    saved_one(bursts(1))
    assert [p.parent for p in (s.path for s in sessions())] == [tmp_path / "elsewhere"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux data folder")
def test_without_the_variable_sessions_go_to_the_user_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("FUNASR_WIDGET_SESSIONS")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert sessions_dir() == tmp_path / "data" / "funasr-widget" / "sessions"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert sessions_dir() == tmp_path / "home" / ".local" / "share" / "funasr-widget" / "sessions"
    saved = saved_one(bursts(1))
    assert saved.path.parent == sessions_dir()


# -- what close(), autosave=False and resume do ---------------------------------------


def test_close_keeps_the_transcript_and_the_audio(store):
    w = Transcriber(model=None, vad="energy")
    x = bursts(3)
    dictate(w, x)
    w.close()
    assert w.wait(timeout=30)
    [saved] = sessions()
    assert saved.complete and saved.segments == w.segments and len(saved.segments) == 3
    assert saved.text == w.text
    np.testing.assert_array_equal(saved.audio(), x)
    np.testing.assert_array_equal(w.audio, x)  # the widget's audio stays readable too
    np.testing.assert_array_equal(saved.audio(1.0, 2.0), x[RATE : 2 * RATE])
    with pytest.raises(ValueError, match="seconds"):
        saved.audio(-1)
    saved.delete()
    assert sessions() == [] and not saved.path.exists()


def test_autosave_false_writes_nothing(store, tmp_path):
    s = LiveSession(None, "energy", autosave=False)
    dictate(s, bursts(1))
    finish(s)
    w = Transcriber(model=None, vad="energy", autosave=False)
    dictate(w, bursts(1))
    w.close()
    transcribe(bursts(1), RATE, model=None, vad="energy")  # offline: off unless asked
    assert not store.exists()
    transcribe(bursts(2), RATE, model=None, vad="energy", autosave=True)
    [saved] = sessions()
    assert len(saved.segments) == 2 and saved.complete


def test_autosave_and_resume_are_checked_where_given(store):
    with pytest.raises(TypeError, match="autosave must be True or False"):
        Transcriber(model=None, vad="energy", autosave="no")
    with pytest.raises(TypeError, match="sessions()"):
        LiveSession(None, "energy", resume="20261207-015539-5d9b14")
    with pytest.raises(TypeError, match="autosave must be True or False"):
        transcribe(bursts(1), RATE, model=None, vad="energy", autosave=1)
    saved = saved_one(bursts(1))
    with pytest.raises(ValueError, match="autosave=True"):
        LiveSession(None, "energy", resume=saved, autosave=False)
    assert len(sessions()) == 1  # nothing was started by the refused calls


def test_resume_continues_the_ids_the_times_and_the_audio(store):
    first = bursts(2)
    w = Transcriber(model=None, vad="energy")
    dictate(w, first)
    w.close()
    assert w.wait(timeout=30)
    [saved] = sessions()

    again = Transcriber(model=None, vad="energy", resume=saved)
    assert again.segments == saved.segments and again.text == saved.text  # shown from the start
    more = bursts(2, freq=660.0)
    dictate(again, more)
    offset = len(first) / RATE
    assert [s["id"] for s in again.segments] == [0, 1, 2, 3]
    for old, new in zip(saved.segments, again.segments[2:], strict=True):  # the same bursts, later
        assert new["start"] == round(old["start"] + offset, 3) and new["end"] == round(old["end"] + offset, 3)
    np.testing.assert_array_equal(again.audio, np.concatenate([first, more]))
    heard = again.segment_audio(3)[0]  # the new burst is where the shifted times say
    assert np.argmax(np.abs(np.fft.rfft(heard))) * RATE / len(heard) == pytest.approx(660, abs=10)
    again.close()
    assert again.wait(timeout=30)

    [after] = sessions()  # the same saved session, gone on with
    assert after.id == saved.id and after.complete
    assert after.segments == again.segments
    np.testing.assert_array_equal(after.audio(), np.concatenate([first, more]))


@posix_only
def test_a_session_in_use_is_neither_resumed_twice_nor_deleted(store):
    s = LiveSession(None, "energy")
    dictate(s, bursts(1))
    [running] = sessions()
    assert not running.complete
    with pytest.raises(FunasrWidgetError, match="in use"):
        running.delete()
    with pytest.raises(FunasrWidgetError, match="in use"):
        LiveSession(None, "energy", resume=running)
    finish(s)
    running.delete()
    assert sessions() == []


# -- recovery reads what a crash leaves ------------------------------------------------


def test_a_journal_line_torn_by_a_kill_is_skipped_and_cut_on_resume(store):
    saved = saved_one(bursts(2))
    with open(saved.path / JOURNAL, "ab") as f:
        f.write(b'{"segment":{"id":2,"start":3.1,"te')  # killed mid-write
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unfinished last line is expected: no warning
        [recovered] = sessions()
    assert recovered.segments == saved.segments

    again = LiveSession(None, "energy", resume=recovered)
    dictate(again, bursts(1))
    finish(again)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [after] = sessions()
    assert [s["id"] for s in after.segments] == [0, 1, 2]


def test_unreadable_journal_lines_are_skipped_with_a_warning(store):
    saved = saved_one(bursts(2))
    lines = (saved.path / JOURNAL).read_bytes().splitlines(keepends=True)
    junk = [b"not json\n", b'{"segment": {"id": "x"}}\n', b'{"segment": {"id": 7, "start": NaN}}\n']
    (saved.path / JOURNAL).write_bytes(lines[0] + b"".join(junk) + lines[1])
    with pytest.warns(UserWarning, match="3 unreadable journal line"):
        [recovered] = sessions()
    assert recovered.segments == saved.segments


def test_sessions_are_listed_newest_first(store):
    made = [saved_one(bursts(1)).id for _ in range(3)]
    assert [s.id for s in sessions()] == made[::-1]
    created = [s.created for s in sessions()]
    assert created == sorted(created, reverse=True) and created[0].tzinfo is not None


# -- retention ---------------------------------------------------------------------------


def backdate(saved, days: float) -> None:
    then = time.time() - days * 86400
    for p in [saved.path, *saved.path.iterdir()]:
        os.utime(p, (then, then))


@posix_only
def test_retention_keeps_the_newest_sessions_and_never_the_one_in_use(store):
    in_use = LiveSession(None, "energy")  # the oldest, and still recording
    dictate(in_use, bursts(1))
    backdate(sessions()[0], 40)
    made = [saved_one(np.zeros(CHUNK, np.float32)).id for _ in range(KEEP_SESSIONS + 1)]
    stale = next(s for s in sessions() if s.id == made[-1])
    backdate(stale, 31)  # recent by order, but last written a month ago
    saved_one(np.zeros(CHUNK, np.float32))  # a new session starts: older ones are pruned

    listed = sessions()
    kept = {s.id for s in listed}
    assert len(listed) == KEEP_SESSIONS  # the newest 20 less the stale one, plus the one in use
    assert made[-1] not in kept and made[0] not in kept and made[1] not in kept
    assert set(made[2:-1]) <= kept
    assert listed[-1].id not in made and not listed[-1].complete  # the one in use, kept
    finish(in_use)


@posix_only
def test_retention_bounds_the_bytes_kept_counting_from_the_newest(store, monkeypatch):
    made = [saved_one(np.zeros(10 * CHUNK, np.float32)).id for _ in range(4)]
    one = sum(f.stat().st_size for f in sessions()[0].path.iterdir())
    monkeypatch.setattr(journal, "KEEP_BYTES", int(1.5 * one))  # room for the new one and one more
    newest = saved_one(np.zeros(10 * CHUNK, np.float32)).id  # a new session starts: pruned by size
    assert [s.id for s in sessions()] == [newest, made[-1]]


# -- what is not plainly ours is refused or ignored, and never deleted ---------------------


@posix_only
def test_a_sessions_folder_others_can_write_to_is_refused(store):
    saved_one(bursts(1))
    store.chmod(0o777)
    with pytest.raises(FunasrWidgetError, match="open to other users") as err:
        sessions()
    assert err.value.code == "sessions-unsafe" and "FUNASR_WIDGET_SESSIONS" in err.value.hint
    with pytest.raises(FunasrWidgetError, match="autosave=False"):
        LiveSession(None, "energy")
    with pytest.raises(FunasrWidgetError, match="open to other users"):
        Transcriber(model=None, vad="energy")  # refused before the widget opens a comm
    assert len(list(store.iterdir())) == 1  # nothing was started
    store.chmod(0o700)
    assert len(sessions()) == 1


@posix_only
def test_odd_contents_are_ignored_with_a_warning_and_kept(store, tmp_path):
    good = saved_one(bursts(1))
    odd = {name: saved_one(bursts(1)) for name in ("open", "link", "big", "junk")}
    odd["open"].path.chmod(0o755)
    (odd["link"].path / META).unlink()
    (tmp_path / "elsewhere.json").write_bytes((good.path / META).read_bytes())
    (odd["link"].path / META).symlink_to(tmp_path / "elsewhere.json")
    os.truncate(odd["big"].path / JOURNAL, 65 * 2**20)  # sparse: costs no disk
    (odd["junk"].path / META).write_text("{")
    (store / "notes.txt").write_text("mine")

    with pytest.warns(UserWarning) as caught:
        listed = sessions()
    assert [s.id for s in listed] == [good.id]
    message = str(caught[0].message)
    for why in ("open to other users", "session.json", "over", "not JSON", "notes.txt (not a saved session)"):
        assert why in message
    for name in ("open", "link", "junk"):
        backdate(odd[name], 40)
    finish(LiveSession(None, "energy"))  # a new session starts: it prunes nothing it cannot read
    assert all(s.path.exists() for s in odd.values()) and (store / "notes.txt").exists()
