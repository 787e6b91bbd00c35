"""One truth per fact: each place where entry points used to disagree, kept in agreement.

The sample rate and the knob ranges have one home (_constants.py); every keyword is checked
by one checker (keywords.py); feed, transcribe and VadExplorer follow one sample-rate rule;
speech_threshold is the backend's own everywhere; one error base class; ids never repeat;
non-widget modules import without the front-end bundle, and without import cycles."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import traitlets
from feeding import feed_live

import funasr_widget
from funasr_widget import (
    FunasrWidgetError,
    MissingDependencyError,
    ModelLoadError,
    RecognitionError,
    Transcriber,
    VadExplorer,
    transcribe,
)
from funasr_widget._constants import KNOBS, SAMPLE_RATE
from funasr_widget.audio import write_wav
from funasr_widget.live import LiveSession
from funasr_widget.vad import check_params, knob_table, own_threshold

PACKAGE = Path(funasr_widget.__file__).parent
REPO = PACKAGE.parent

# -- one sample rate, one knob table ------------------------------------------------------------


def test_the_sample_rate_is_written_once():
    bare = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "_constants.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\b16_?000\b", line.split("#")[0])
    ]
    assert not bare, "use _constants.SAMPLE_RATE:\n" + "\n".join(bare)
    from funasr_widget import audio, pipeline, wire
    from funasr_widget.vad import base

    assert audio.SAMPLE_RATE is wire.SAMPLE_RATE is pipeline.SAMPLE_RATE is base.SAMPLE_RATE is SAMPLE_RATE


@pytest.mark.parametrize("name", list(KNOBS))
def test_each_knob_accepts_exactly_its_table_range(name):
    knob = KNOBS[name]
    assert check_params(**{name: knob["min"]})[name] == knob["min"]
    assert check_params(**{name: knob["max"]})[name] == knob["max"]
    for outside in (knob["min"] - knob["step"], knob["max"] + knob["step"]):
        with pytest.raises(ValueError, match=f"{knob['min']} <= {name} <= {knob['max']}"):
            check_params(**{name: outside})


def test_the_explorer_sliders_come_from_the_table():
    explorer = VadExplorer(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    try:
        assert explorer.knobs == knob_table()
        assert explorer.knobs["speech_threshold"]["own"] == {"fsmn-vad": 0.6, "silero": 0.5, "energy": None}
    finally:
        explorer.close()
    source = (REPO / "js" / "explorer.js").read_text()
    assert not re.search(r"\b(min|max|step):\s*-?\d", source), "explorer.js has its own knob ranges again"


# -- one checker for every keyword ------------------------------------------------------------------

ARRAY = np.zeros(SAMPLE_RATE, np.float32)


def _explorer(**kw):
    VadExplorer(ARRAY, SAMPLE_RATE, **kw).close()


def _load_model(**kw):
    w = Transcriber(model=None, vad="energy")
    try:
        w.load_model("sensevoice-small", **kw)
    finally:
        w.close()


ENTRY_POINTS = {
    "Transcriber": lambda **kw: Transcriber(model=None, vad="energy", **kw).close(),
    "transcribe": lambda **kw: transcribe(ARRAY, SAMPLE_RATE, model=None, vad="energy", **kw),
    "LiveSession": lambda **kw: LiveSession(model=None, vad="energy", **kw).close(),
    "load_model": _load_model,
    "VadExplorer": _explorer,
}


@pytest.mark.parametrize(
    "entry, given, close",
    [
        ("Transcriber", {"end_silence": 500}, "end_silence_ms"),  # was: unknown *model* option
        ("Transcriber", {"max_second": 60}, "max_seconds"),
        ("Transcriber", {"lanugage": "en"}, "language"),
        ("Transcriber", {"server_partial": True}, "server_partials"),
        ("transcribe", {"end_silence": 500}, "end_silence_ms"),
        ("transcribe", {"hotwords": "x"}, "hotword"),
        ("LiveSession", {"max_second": 60}, "max_seconds"),
        ("LiveSession", {"use_inv": True}, "use_itn"),
        ("load_model", {"languag": "en"}, "language"),
        ("VadExplorer", {"end_silence": 500}, "end_silence_ms"),
        ("VadExplorer", {"comprae": "silero"}, "compare"),
    ],
)
def test_a_misspelt_keyword_names_the_close_match_across_all(entry, given, close):
    with pytest.raises(TypeError, match=f"did you mean '{close}'"):
        ENTRY_POINTS[entry](**given)


@pytest.mark.parametrize(
    "entry, given, words",
    [
        ("load_model", {"end_silence_ms": 500}, "does not take VAD knobs such as 'end_silence_ms'"),
        ("LiveSession", {"end_silence_ms": 500}, "vad_params="),
        ("VadExplorer", {"language": "en"}, "does not take model options such as 'language'"),
    ],
)
def test_a_keyword_of_another_kind_says_where_it_goes(entry, given, words):
    with pytest.raises(TypeError, match=re.escape(words)):
        ENTRY_POINTS[entry](**given)


def test_the_explorers_params_trait_uses_the_same_checker():
    explorer = VadExplorer(ARRAY, SAMPLE_RATE)
    try:
        with pytest.raises(traitlets.TraitError, match="did you mean 'end_silence_ms'"):
            explorer.params = {"end_silence": 300}
    finally:
        explorer.close()


# -- one sample-rate rule ----------------------------------------------------------------------------


def test_one_sample_rate_rule_for_feed_transcribe_and_the_explorer(tmp_path):
    """An array is at sample_rate (16000 when not given); a file carries its own rate."""
    x = np.zeros(2 * SAMPLE_RATE, np.float32)
    w = Transcriber(model=None, vad="energy")
    try:
        w.feed(x, final=True)
        assert w.wait(timeout=30) and len(w.audio) == len(x)
    finally:
        w.close()
    assert transcribe(x, model=None, vad="energy") == []
    explorer = VadExplorer(x)
    assert explorer.duration == 2.0
    explorer.close()

    path = write_wav(tmp_path / "a.wav", x, 8000)  # a file at another rate: its own is used
    assert VadExplorer(path).duration == 4.0
    with pytest.raises(ValueError) as offline:
        transcribe(path, 8000, model=None, vad="energy")
    with pytest.raises(ValueError) as explored:
        VadExplorer(path, 8000)
    assert "a file carries its own rate" in str(offline.value)
    assert str(offline.value).split(": ", 1)[1] == str(explored.value).split(": ", 1)[1]

    messages = set()
    for call in (
        lambda: transcribe(x, 0, model=None, vad="energy"),
        lambda: VadExplorer(x, 0),
        lambda: LiveSession(model=None, vad="energy").feed(x, 0),
    ):
        with pytest.raises(ValueError) as err:
            call()
        messages.add(str(err.value))
    assert messages == {"sample_rate must be positive and at most 1000000 Hz, got 0"}


# -- speech_threshold: the backend's own, everywhere ---------------------------------------------------


@pytest.mark.parametrize("vad", ["energy", "fsmn-vad", "silero"])
def test_live_transcribe_and_the_explorer_cut_alike(vad, models_at, speech):
    """silero ran at 0.6 in the widget and 0.5 in transcribe(): now each entry point runs
    each backend at its own threshold, and the widget shows the value in use."""
    if vad == "silero":
        pytest.importorskip("silero_vad")
    w = Transcriber(model=None, vad=vad, device="cpu")
    try:
        assert w.speech_threshold == own_threshold(vad)
        feed_live(w, speech.samples)
        live = [(s["start"], s["end"]) for s in w.segments]
        w.speech_threshold = 0.3
        w.speech_threshold = None  # back to the backend's own, shown as its number
        assert w.speech_threshold == own_threshold(vad)
    finally:
        w.close()
    offline = [(s["start"], s["end"]) for s in transcribe(speech.samples, SAMPLE_RATE, model=None, vad=vad)]
    explorer = VadExplorer(speech.samples, SAMPLE_RATE, vad=vad)
    try:
        explored = [(r["start"], r["end"]) for r in explorer.regions]
    finally:
        explorer.close()
    assert live and live == offline == explored


@pytest.mark.parametrize("vad", ["fsmn-vad", "energy"])
def test_a_streaming_models_live_text_is_transcribes(vad, models_at, speech):
    """Live, the streaming Paraformer once heard the end silence the worker had taken before
    the VAD closed the segment, so its text depended on whether the worker had kept up: now
    it hears an open segment only as far as the VAD has given it speech."""
    offline = transcribe(speech.samples, SAMPLE_RATE, model="paraformer-zh-streaming", vad=vad, device="cpu")
    assert len(offline) == len(speech.intervals_ms) and all(s["text"] for s in offline), offline
    for kept_up in (True, False):
        w = Transcriber(model="paraformer-zh-streaming", vad=vad, device="cpu")
        try:
            assert w.wait(timeout=120) and w.model_state == "ready"
            feed_live(w, speech.samples, kept_up=kept_up)
            assert w.segments == offline, kept_up
        finally:
            w.close()


# -- one error base, exported -------------------------------------------------------------------------


def test_one_exported_error_base_with_message_hint_and_code():
    for cls, code in [
        (ModelLoadError, "model-failed"),
        (RecognitionError, "recognition-failed"),
        (MissingDependencyError, "dependency-missing"),
    ]:
        err = cls("what happened", "what to do")
        assert isinstance(err, FunasrWidgetError) and (err.message, err.hint, err.code) == (
            "what happened",
            "what to do",
            code,
        )
        assert str(err) == "what happened\nwhat to do"
        assert cls.__name__ in funasr_widget.__all__
    assert issubclass(MissingDependencyError, ImportError)


# -- ids unique for the life of a widget; on_segment unsubscribes --------------------------------------


def test_ids_never_repeat_and_on_segment_unsubscribes(models_at, speech):
    w = Transcriber(model="sensevoice-small", vad="energy", device="cpu")
    try:
        seen = []
        unsubscribe = w.on_segment(lambda segment: seen.append(segment["id"]))
        also = []
        w.on_segment(lambda segment: also.append(segment["id"]))
        feed_live(w, speech.samples)
        first = [s["id"] for s in w.segments]
        assert first == seen == list(range(len(speech.intervals_ms)))
        again = w.retranscribe()
        assert [s["id"] for s in again] == list(range(len(first), 2 * len(first)))
        unsubscribe()
        unsubscribe()  # a second call does nothing
        feed_live(w, speech.samples)
        ids = [s["id"] for s in w.segments]
        assert len(ids) == len(set(ids)) == 2 * len(first) and min(ids[len(first) :]) >= 2 * len(first)
        assert seen == first and also == first + ids[len(first) :]
    finally:
        w.close()


# -- the package without its front end, and without import cycles -----------------------------------


def _run(code: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_non_widget_modules_import_without_the_bundle(tmp_path):
    copy = tmp_path / "funasr_widget"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("static", "__pycache__"))
    done = _run(
        """
        import sys
        import funasr_widget, funasr_widget.wire, funasr_widget.vad, funasr_widget.errors, funasr_widget.diagnose
        assert funasr_widget.__file__.startswith(sys.argv[1])
        try:
            funasr_widget.Transcriber
        except FileNotFoundError as err:
            print("widget needs the bundle:", err)
        """,
        tmp_path,
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    assert "widget needs the bundle" in done.stdout


@pytest.mark.parametrize(
    "module, not_loaded",
    [
        ("funasr_widget._torch", ("funasr_widget.models", "funasr_widget.diagnose", "funasr_widget.asr")),
        ("funasr_widget.diagnose", ("funasr_widget.asr", "funasr_widget._torch", "funasr_widget.models")),
        ("funasr_widget.models", ("funasr_widget._torch", "funasr_widget.diagnose")),
        ("funasr_widget", ("funasr_widget.transcriber", "funasr_widget.live", "funasr_widget.models")),
    ],
)
def test_leaf_modules_import_no_cycle_and_nothing_heavy(module, not_loaded):
    done = _run(f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))", REPO)
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout))
    assert not loaded & set(not_loaded), sorted(loaded & set(not_loaded))
