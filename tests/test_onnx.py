"""The ONNX runtime (asr/onnx*.py): FunASR's own export of a model folder, written here by
``python -m funasr_widget.models export`` from the tiny random-weight SenseVoiceSmall,
paraformer-zh (SeACo-Paraformer) and ct-punc, run on onnxruntime without torch or funasr. fp32
must give the torch engine's tokens, text, tags, word times and punctuation on the same
segments; int8 the same segment structure; a kernel where torch and funasr cannot be imported
must transcribe; bad or missing files must say what to do."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from without_torch import WITHOUT_TORCH

from funasr_widget import Transcriber, models, transcribe
from funasr_widget.asr import load_engine, onnx
from funasr_widget.errors import ModelLoadError
from funasr_widget.frontend import Frontend, read_config

pytestmark = pytest.mark.timeout(600)


def _export(folder: Path) -> str:
    command = [sys.executable, "-m", "funasr_widget.models", "export", str(folder), "--quantize"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=500)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "model.onnx" in out.stdout and "model_quant.onnx" in out.stdout
    return out.stdout


@pytest.fixture(scope="module")
def onnx_store(model_store, tmp_path_factory) -> Path:
    """A models directory: the real FSMN-VAD (with its model.onnx); sensevoice-small,
    paraformer-zh and ct-punc with model.onnx and model_quant.onnx written by the export command;
    "sv-fp32" and "pz-fp32" hold only the fp32 file, "sv-torch" none."""
    root = tmp_path_factory.mktemp("onnx-models")
    shutil.copytree(model_store / "fsmn-vad", root / "fsmn-vad")
    for name in ("sensevoice-small", "paraformer-zh", "ct-punc"):
        shutil.copytree(model_store / name, root / name)
    shutil.copytree(model_store / "sensevoice-small", root / "sv-torch")
    for name in ("sensevoice-small", "paraformer-zh", "ct-punc"):
        _export(root / name)
    for name, fp32 in (("sensevoice-small", "sv-fp32"), ("paraformer-zh", "pz-fp32")):
        shutil.copytree(root / name, root / fp32, ignore=shutil.ignore_patterns(onnx.INT8))
    return root


@pytest.fixture
def onnx_models(onnx_store, monkeypatch):
    monkeypatch.setattr(models, "_models_dir", onnx_store)
    return onnx_store


def live_segments(samples, **kwargs):
    widget = Transcriber(vad="fsmn-vad", device="cpu", **kwargs)
    for i in range(0, len(samples), 1600):
        widget.feed(samples[i : i + 1600])
    widget.feed(np.zeros(0, np.float32), final=True)
    assert widget.wait(timeout=240)
    widget.close()
    return widget.segments


def test_the_export_writes_both_files_and_leaves_no_scratch(onnx_store):
    folder = onnx_store / "sensevoice-small"
    assert (folder / onnx.FP32).stat().st_size > (folder / onnx.INT8).stat().st_size > 0
    assert not list(folder.glob(".export-*"))
    assert onnx.export_file(folder) == onnx.INT8 and onnx.export_file(onnx_store / "sv-fp32") == onnx.FP32
    assert onnx.export_file(onnx_store / "sv-torch") is None


def test_the_frontend_gives_funasrs_features(onnx_store, speech):
    import torch
    from funasr.frontends.wav_frontend import WavFrontend, apply_lfr

    folder = onnx_store / "sv-fp32"
    conf = read_config(folder)["frontend_conf"]
    mine = Frontend(conf, folder / "am.mvn")
    theirs = WavFrontend(cmvn_file=str(folder / "am.mvn"), dither=0.0, **{k: v for k, v in conf.items() if v})
    for n in (1600, 12345, 48000):
        x = speech.samples[8000 : 8000 + n]
        expected, _ = theirs(torch.from_numpy(x)[None], torch.tensor([n]))
        np.testing.assert_allclose(mine.features(x), expected[0].numpy(), rtol=1e-5, atol=1e-4)
    for frames in range(1, 40):  # every length: LFR pads the end as funasr does
        x = np.random.default_rng(frames).standard_normal((frames, 3)).astype(np.float32)
        np.testing.assert_array_equal(mine.lfr(x), apply_lfr(torch.from_numpy(x), 7, 6).numpy())


def test_forced_alignment_is_funasrs(onnx_store):
    import torch
    from funasr.models.sense_voice.utils.ctc_alignment import ctc_forced_align

    rng = np.random.default_rng(0)
    for frames, length in [(30, 5), (12, 6), (50, 1), (40, 12)]:
        logits = rng.standard_normal((frames, 9)).astype(np.float32)
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        targets = list(rng.integers(1, 9, length))
        expected = ctc_forced_align(
            torch.from_numpy(log_probs)[None], torch.tensor([targets]), torch.tensor([frames]), torch.tensor([length])
        )
        assert onnx.ctc_forced_align(log_probs, targets).tolist() == expected[0].tolist()


MARKS = set("，。？、,.?")  # what ct-punc (the tiny one's labels) writes


@pytest.mark.parametrize(
    "folder, options",
    [
        ("sv-fp32", {}),
        ("sv-fp32", {"language": "en", "use_itn": False}),
        ("sv-fp32", {"timestamps": False}),
        ("sv-fp32", {"punctuation": True}),
        ("pz-fp32", {}),
        ("pz-fp32", {"timestamps": False}),
        ("pz-fp32", {"punctuation": True}),
    ],
)
def test_fp32_gives_the_torch_engines_tokens_text_and_times(onnx_models, speech, folder, options):
    torch_engine = load_engine(str(onnx_models / folder), "cpu", runtime="torch", **options)
    onnx_engine = load_engine(str(onnx_models / folder), "cpu", runtime="onnx", **options)
    assert onnx_engine.runtime["runtime"] == "onnx" and onnx_engine.runtime["precision"] == "fp32"
    assert torch_engine.runtime["runtime"] == "torch"
    assert onnx_engine.gives_words == torch_engine.gives_words
    rng = np.random.default_rng(1)
    pieces = [speech.samples[int(a * 16) : int(b * 16)] for a, b in speech.intervals_ms]
    pieces += [speech.samples[s : s + n] for n in (1600, 7000, 40000) for s in rng.integers(0, 100000, 2)]
    words = marks = 0
    for piece in pieces:
        expected = torch_engine.transcribe(piece)
        assert onnx_engine.transcribe(piece) == expected
        words += len(expected.get("words", []))
        marks += len(MARKS & set(expected["text"]))
    assert words or options.get("timestamps") is False  # the times were compared, not absent on both
    assert marks or not options.get("punctuation")  # and the punctuation


def test_ct_punc_gives_funasrs_text(onnx_models):
    """ct-punc on its own, against funasr's torch CTTransformer: Chinese over several
    20-word mini-sentences (the carry-over), English words (spacing, capitals, ASCII marks),
    both mixed, and the empty text."""
    from funasr_widget import _torch
    from funasr_widget.asr.onnx_punc import CtPuncOnnx
    from funasr_widget.samples import ENGLISH, HANZI

    theirs = _torch.auto_model(onnx_models / "ct-punc", "cpu")
    mine = CtPuncOnnx(onnx_models / "ct-punc" / onnx.FP32)
    rng = np.random.default_rng(3)
    english = ENGLISH.split()
    texts = ["", "  ", "的", "hello", " ".join(english), ENGLISH.replace("\n", " 的 ")]
    texts += ["".join(rng.choice(list(HANZI), n)) for n in (5, 19, 20, 21, 47, 130)]
    texts += [" ".join(rng.choice(english + list(HANZI), 60)) for _ in range(3)]
    texts += ["的 一 是 zebra 在 unknownword 了", "x" * 30 + "中" + "y"]
    for text in texts:
        expected = theirs.generate(input=text)[0]["text"] if text.strip() else ""
        assert mine.punctuate(text) == expected, text


def test_paraformer_text_and_times_are_funasrs_postprocessing():
    """The CIF token times and the text clean-up, against funasr's own functions on token
    lists a real vocabulary gives (CJK, BPE pieces with @@, spelt-out letters, specials)."""
    import copy

    import torch
    from funasr.utils.postprocess_utils import sentence_postprocess
    from funasr.utils.timestamp_tools import ts_prediction_lfr6_standard

    from funasr_widget.asr.onnx_paraformer import sentence, token_times

    def outcome(call, *args):
        try:
            return call(*args)
        except Exception as err:  # the same failure counts as the same outcome
            return type(err).__name__

    vocab = ["的", "一", "中国", "<unk>", "a", "b", "c", " ", "hel@@", "lo", "don't", "1", "12", "@", "é", "ab1", "<s>"]
    rng = np.random.default_rng(0)
    for _ in range(1500):
        tokens = [str(t) for t in rng.choice(vocab if rng.random() < 0.6 else vocab[4:10], rng.integers(0, 12))]
        stamps = [[10 * i, 10 * i + 9] for i in range(len(tokens))]
        expected = outcome(lambda t, s: list(sentence_postprocess(t, s)[:2]), list(tokens), copy.deepcopy(stamps))
        assert outcome(lambda t, s: list(sentence(t, s)), list(tokens), copy.deepcopy(stamps)) == expected, tokens
    for _ in range(1000):
        frames = int(rng.integers(3, 150))
        alphas = (rng.random(frames) * rng.choice([0.2, 0.5, 1.0])).astype(np.float32)
        peaks = np.zeros(frames, np.float32)
        peaks[rng.choice(frames, int(rng.integers(0, max(frames // 4, 1))), replace=False)] = 1.0
        tokens = ["x"] * int(rng.integers(0, 20))
        theirs = (torch.from_numpy(alphas.copy()), torch.from_numpy(peaks), list(tokens))
        expected = outcome(lambda *args: ts_prediction_lfr6_standard(*args)[1], *theirs)
        assert outcome(token_times, alphas.copy(), peaks, list(tokens)) == expected


@pytest.mark.parametrize("name, torch_folder", [("sensevoice-small", "sv-torch"), ("paraformer-zh", "paraformer-zh")])
def test_int8_gives_the_same_segment_structure(onnx_models, speech, name, torch_folder):
    torch_segments = transcribe(
        speech.samples, 16000, model=str(onnx_models / torch_folder), vad="fsmn-vad", device="cpu", runtime="torch"
    )
    int8 = transcribe(speech.samples, 16000, model=name, vad="fsmn-vad", device="cpu", runtime="onnx")
    assert len(int8) == len(torch_segments) == len(speech.intervals_ms)
    for mine, theirs in zip(int8, torch_segments, strict=True):
        assert (mine["id"], mine["start"], mine["end"]) == (theirs["id"], theirs["start"], theirs["end"])
        said = {"language", "emotion", "event", "words"}  # what random weights may or may not say
        assert isinstance(mine["text"], str) and mine.keys() - said == theirs.keys() - said
        assert mine.keys() & said <= {"language", "emotion", "event", "words"}
        assert all(mine["start"] <= w["start"] <= w["end"] <= mine["end"] + 0.1 for w in mine.get("words", []))


@pytest.mark.parametrize("folder", ["sv-fp32", "pz-fp32"])
def test_live_gives_what_transcribe_gives_on_onnx(onnx_models, speech, folder):
    folder = str(onnx_models / folder)
    offline = transcribe(speech.samples, 16000, model=folder, vad="fsmn-vad", device="cpu", runtime="onnx")
    assert offline == live_segments(speech.samples, model=folder, runtime="onnx")
    assert len(offline) == len(speech.intervals_ms) and all(s["text"] for s in offline)


def test_hotwords_on_onnx_say_to_use_torch(onnx_models):
    """SeACo's hotwords need its own graph (funasr's SeACo export), which this runtime does not
    run: a clear error with the fix; without hotwords the same folder runs."""
    with pytest.raises(ModelLoadError) as err:
        load_engine("paraformer-zh", "cpu", runtime="onnx", hotword=["的一"])
    assert err.value.code == "onnx-unsupported" and "runtime='torch'" in err.value.hint
    widget = Transcriber(model="paraformer-zh", vad="energy", device="cpu", runtime="onnx", hotword="的一")
    assert widget.wait(timeout=120) and widget.model_state == "error"
    assert "runtime='torch'" in widget.model_info["hint"]
    widget.close()
    assert load_engine("paraformer-zh", "cpu", runtime="onnx").runtime["file"] == onnx.INT8
    assert load_engine("paraformer-zh", "cpu").runtime["runtime"] == "torch"  # auto, torch installed


def test_punctuation_without_ct_puncs_export_says_how_to_make_it(onnx_models, tmp_path, monkeypatch):
    root = tmp_path / "models"
    shutil.copytree(onnx_models / "pz-fp32", root / "paraformer-zh")
    shutil.copytree(onnx_models / "ct-punc", root / "ct-punc", ignore=shutil.ignore_patterns("*.onnx"))
    monkeypatch.setattr(models, "_models_dir", root)
    monkeypatch.setattr(models, "reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelLoadError) as err:
        load_engine("paraformer-zh", "cpu", runtime="onnx", punctuation=True)
    assert "ct-punc" in str(err.value) and "python -m funasr_widget.models export ct-punc" in err.value.hint


def test_model_info_says_which_runtime_which_file_and_why(onnx_models):
    widget = Transcriber(model="sensevoice-small", vad="energy", device="cpu", runtime="onnx")
    assert widget.wait(timeout=120)
    assert widget.model_state == "ready"
    assert widget.model_info["runtime"] == {
        "runtime": "onnx",
        "file": "model_quant.onnx",
        "precision": "int8",
        "reason": "runtime='onnx' was asked for",
    }
    assert "model_quant.onnx (int8)" in widget.model_info["message"]
    row = next(c for c in widget.diagnose() if c.name == "runtime")
    assert row.detail == "onnx, model_quant.onnx (int8): runtime='onnx' was asked for"
    auto = Transcriber(model="sensevoice-small", vad="energy", device="cpu")  # torch is here: torch
    assert auto.wait(timeout=120) and auto.model_info["runtime"]["runtime"] == "torch"
    assert "torch and funasr are installed" in auto.model_info["runtime"]["reason"]
    for w in (widget, auto):
        w.close()


def test_a_kernel_without_torch_or_funasr_transcribes(onnx_store, speech):
    """A fresh process where torch and funasr cannot be imported: runtime 'auto' runs the ASR
    (SenseVoiceSmall; paraformer-zh with ct-punc) and FSMN-VAD on onnxruntime, live and offline,
    and says why; the VAD explorer runs too."""
    code = (
        WITHOUT_TORCH
        + f"""
from pathlib import Path
import numpy as np
from funasr_widget import Transcriber, VadExplorer, models, samples, transcribe
models.set_models_dir(Path({str(onnx_store)!r}))
speech = samples.speech()
offline = transcribe(speech.samples, 16000, model="sensevoice-small", vad="fsmn-vad", device="cpu")
assert len(offline) == len(speech.intervals_ms) and all(s["text"] for s in offline), offline
widget = Transcriber(model="sensevoice-small", vad="fsmn-vad")
for i in range(0, len(speech.samples), 1600):
    widget.feed(speech.samples[i : i + 1600])
widget.feed(np.zeros(0, np.float32), final=True)
assert widget.wait(timeout=240)
assert widget.model_state == "ready", widget.model_info
assert widget.segments == offline, (widget.segments, offline)
runtime = widget.model_info["runtime"]
assert runtime["runtime"] == "onnx" and runtime["reason"] == "torch or funasr is not installed", runtime
assert widget.vad == "fsmn-vad", widget.vad  # not the energy fallback
paraformer = transcribe(speech.samples, 16000, model="paraformer-zh", vad="fsmn-vad", punctuation=True)
assert [(s["start"], s["end"]) for s in paraformer] == [(s["start"], s["end"]) for s in offline], paraformer
assert all(s["text"] and s["words"] for s in paraformer), paraformer
live = Transcriber(model="paraformer-zh", vad="fsmn-vad", punctuation=True)
for i in range(0, len(speech.samples), 1600):
    live.feed(speech.samples[i : i + 1600])
live.feed(np.zeros(0, np.float32), final=True)
assert live.wait(timeout=240) and live.segments == paraformer, (live.segments, paraformer)
assert live.model_info["runtime"]["runtime"] == "onnx", live.model_info
explorer = VadExplorer(speech.samples, 16000, vad="fsmn-vad", compare="energy")
regions = explorer.segment()
assert len(regions) == len(speech.intervals_ms), regions
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "funasr"))
assert not heavy, heavy
print("ok", len(offline))
"""
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=400)
    assert out.returncode == 0 and "ok" in out.stdout, out.stdout[-2000:] + out.stderr[-3000:]


def test_torch_missing_and_no_export_says_both_ways(onnx_store):
    code = (
        WITHOUT_TORCH
        + f"""
from funasr_widget.asr import load_engine
from funasr_widget.errors import ModelLoadError
try:
    load_engine({str(onnx_store / "sv-torch")!r})
except ModelLoadError as err:
    print(err.code, "|", err.hint)
"""
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.startswith("asr-missing |"), out.stdout + out.stderr[-2000:]
    assert "funasr-widget[asr]" in out.stdout and "python -m funasr_widget.models export" in out.stdout


def _broken_copy(onnx_store, tmp_path, source, damage) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(onnx_store / source, folder)
    damage(folder / onnx.FP32)
    return folder


@pytest.mark.parametrize("source", ["sv-fp32", "pz-fp32"])
@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda f: f.write_bytes(f.read_bytes()[: f.stat().st_size // 2]), "truncated or corrupt"),
        (lambda f: shutil.copy(models.resolve("fsmn-vad") / "model.onnx", f), "not this model's export"),
    ],
    ids=["truncated", "another-models-graph"],
)
def test_a_bad_onnx_file_is_a_clear_error_with_the_fix(onnx_models, tmp_path, source, damage, words):
    folder = _broken_copy(onnx_models, tmp_path, source, damage)
    widget = Transcriber(model=str(folder), vad="energy", device="cpu", runtime="onnx")
    assert widget.wait(timeout=120)
    assert widget.model_state == "error"
    assert widget.model_info["code"] == "weights-corrupt"
    assert words in widget.model_info["message"] + widget.model_info["hint"]
    assert f"python -m funasr_widget.models export {str(folder)!r} --quantize" in widget.model_info["hint"]
    widget.close()


def test_runtime_onnx_without_an_export_says_how_to_make_one(onnx_models):
    with pytest.raises(ModelLoadError) as err:
        load_engine(str(onnx_models / "sv-torch"), "cpu", runtime="onnx")
    assert err.value.code == "onnx-missing"
    assert "python -m funasr_widget.models export" in err.value.hint and "sv-torch" in err.value.hint


def test_runtime_is_checked_where_given(onnx_models):
    with pytest.raises(ValueError, match="'torch', 'onnx', 'auto'"):
        Transcriber(model="sensevoice-small", vad="energy", runtime="tensorrt")
    with pytest.raises(TypeError, match="runtime"):
        transcribe(np.zeros(1600, np.float32), 16000, model="sensevoice-small", runtime=1)
    with pytest.raises(ModelLoadError, match="runs on the CPU"):
        load_engine("sensevoice-small", "cuda", runtime="onnx")


def test_fetch_onnx_takes_the_hubs_onnx_repository(tmp_path, onnx_store, monkeypatch):
    """The download is mocked (no hub here); what fetch does with it is real."""
    monkeypatch.setattr(models, "_models_dir", tmp_path)
    calls = []

    def download(hub_id, dest, progress):
        calls.append(hub_id)
        shutil.copytree(onnx_store / "sv-fp32", dest, ignore=shutil.ignore_patterns("model.pt"))
        progress(0.5, "downloading model.onnx")

    monkeypatch.setattr(models, "reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(models, "_download", download)
    reports = []
    folder = models.fetch("sensevoice-small", lambda f, m: reports.append(f), runtime="onnx")
    assert calls == ["iic/SenseVoiceSmall-onnx"] and reports == [0.0, 0.5, 1.0]
    assert (folder / onnx.FP32).is_file() and not (folder / "model.pt").exists()
    assert models.fetch("sensevoice-small", runtime="onnx") == folder and len(calls) == 1
    engine = load_engine("sensevoice-small", "cpu")  # no model.pt: auto takes the export
    assert engine.runtime == {
        "runtime": "onnx",
        "file": "model.onnx",
        "precision": "fp32",
        "reason": "the folder has no model.pt",
    }
    with pytest.raises(ModelLoadError, match="only an ONNX export"):
        load_engine("sensevoice-small", "cpu", runtime="torch")
    from funasr_widget.export import export

    with pytest.raises(ModelLoadError, match="no model.pt"):
        export("sensevoice-small")


def test_fetch_onnx_adds_the_export_to_a_torch_folder(tmp_path, onnx_store, monkeypatch):
    monkeypatch.setattr(models, "_models_dir", tmp_path)
    shutil.copytree(onnx_store / "sv-torch", tmp_path / "sensevoice-small")

    def download(hub_id, dest, progress):
        shutil.copytree(onnx_store / "sensevoice-small", dest, ignore=shutil.ignore_patterns("model.pt"))

    monkeypatch.setattr(models, "reachable", lambda timeout=3.0: True)
    monkeypatch.setattr(models, "_download", download)
    folder = models.fetch("sensevoice-small", runtime="onnx")
    assert {p.name for p in folder.iterdir()} >= {"model.pt", "config.yaml", onnx.FP32, onnx.INT8}
    assert not list(tmp_path.glob("*partial*"))


@pytest.mark.parametrize("name", ["paraformer-zh", "paraformer-zh-streaming"])
def test_fetch_onnx_says_what_to_run_when_the_hub_has_none(tmp_path, monkeypatch, name):
    monkeypatch.setattr(models, "_models_dir", tmp_path)
    with pytest.raises(ModelLoadError) as err:
        models.fetch(name, runtime="onnx")
    assert err.value.code == "onnx-missing"
    assert f"python -m funasr_widget.models export {name} --quantize" in err.value.hint
    monkeypatch.setattr(models, "reachable", lambda timeout=3.0: False)
    with pytest.raises(ModelLoadError) as err:
        models.fetch("sensevoice-small", runtime="onnx")
    assert "iic/SenseVoiceSmall-onnx" in err.value.hint and "export" in err.value.hint


def test_the_explorer_on_onnxruntime_finds_funasrs_regions(onnx_models, speech, monkeypatch):
    """Where funasr is not installed, FSMN-VAD (and so the explorer) runs on onnxruntime."""
    from funasr_widget import VadExplorer, vad
    from funasr_widget.vad.fsmn_onnx import FsmnOnnxVad

    with_funasr = VadExplorer(speech.samples, 16000, vad="fsmn-vad", end_silence_ms=500)
    monkeypatch.setattr(vad, "installed", lambda *modules: False)
    assert isinstance(vad.create_vad("fsmn-vad"), FsmnOnnxVad)
    without = VadExplorer(speech.samples, 16000, vad="fsmn-vad", end_silence_ms=500)
    assert without.regions == with_funasr.regions and len(without.regions) == len(speech.intervals_ms)
