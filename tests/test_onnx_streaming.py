"""paraformer-zh-streaming on onnxruntime (asr/onnx_streaming.py): the package's own export of
the tiny random-weight streaming Paraformer (export_streaming.py, written here by
``python -m funasr_widget.models export``), with the encoder, CIF and decoder look-back state
carried between steps. fp32 must give the torch streaming engine's text call by call (the
partials) and at the flush, fed the same pieces; int8 the same segment structure; a kernel
where torch and funasr cannot be imported must stream and transcribe."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from feeding import feed_live
from without_torch import WITHOUT_TORCH

from funasr_widget import Transcriber, models, transcribe
from funasr_widget.asr import load_engine
from funasr_widget.asr import onnx_streaming as ox
from funasr_widget.asr.streaming import DECODING, STEP
from funasr_widget.frontend import Frontend, read_config

pytestmark = pytest.mark.timeout(600)

NAME = "paraformer-zh-streaming"
GRAPHS = ("model.onnx", "decoder.onnx", "model_quant.onnx", "decoder_quant.onnx")
# (start, end, piece) in samples: how a segment is fed. Whole 600 ms steps and pieces that are
# not; finals that end mid-step (a rest of 60 ms or more is decoded), a hair after a step (under
# 60 ms: funasr re-decodes the look-ahead frames) and exactly on one (an empty rest).
FEEDS = {
    "100ms-pieces": (0, None, 1600),
    "odd-pieces-mid-step-end": (8000, 8000 + 4 * STEP + 5000, 3000),
    "whole-steps-empty-rest": (12345, 12345 + 3 * STEP, STEP),
    "tail-under-60ms": (4000, 4000 + 2 * STEP + 500, 777),
    "one-call": (20000, 20000 + 2 * STEP + 7000, 10**9),
}


@pytest.fixture(scope="module")
def store(model_store, tmp_path_factory) -> Path:
    """fsmn-vad, the streaming Paraformer with its four graphs written by the export command,
    "ps-fp32" with the fp32 graphs only and "ps-torch" with none."""
    root = tmp_path_factory.mktemp("onnx-streaming")
    shutil.copytree(model_store / "fsmn-vad", root / "fsmn-vad")
    shutil.copytree(model_store / NAME, root / NAME)
    shutil.copytree(model_store / NAME, root / "ps-torch")
    command = [sys.executable, "-m", "funasr_widget.models", "export", str(root / NAME), "--quantize"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=500)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert all(name in out.stdout for name in GRAPHS), out.stdout
    shutil.copytree(root / NAME, root / "ps-fp32", ignore=shutil.ignore_patterns("*_quant.onnx"))
    return root


@pytest.fixture
def at_store(store, monkeypatch):
    monkeypatch.setattr(models, "_models_dir", store)
    return store


def feed(engine, samples: np.ndarray, how: tuple) -> list[str]:
    """The text of each accept() call, the last one final."""
    start, end, piece = how
    segment = samples[start:end]
    stream, texts = engine.new_stream(), []
    for i in range(0, len(segment), piece):
        texts.append(engine.accept(stream, segment[i : i + piece], final=i + piece >= len(segment)))
    return texts


def test_the_export_writes_both_graphs_with_their_caches(store):
    import onnxruntime as ort

    folder = store / NAME
    assert all((folder / name).stat().st_size > 0 for name in GRAPHS)
    assert not list(folder.glob(".export-*"))
    encoder = ort.InferenceSession(str(folder / "model.onnx"))
    decoder = ort.InferenceSession(str(folder / "decoder.onnx"))
    assert [i.name for i in encoder.get_inputs()] == ["speech", "start_idx", "feats_cache", "cache_k", "cache_v"]
    assert [i.name for i in decoder.get_inputs()] == [
        "encoder_out",
        "acoustic_embeds",
        "fsmn_cache",
        "cross_k",
        "cross_v",
    ]
    meta = encoder.get_modelmeta().custom_metadata_map
    assert json.loads(meta["chunk_size"]) == DECODING["chunk_size"]
    assert json.loads(meta["encoder_chunk_look_back"]) == DECODING["encoder_chunk_look_back"]


def test_the_look_back_changes_the_text_of_this_model(store, speech):
    """The comparison below would catch a runtime without the look-back: on this model and
    audio, funasr's text with look-back 4/1 is not its text without."""
    from funasr_widget import _torch

    auto = _torch.auto_model(store / "ps-torch", "cpu")
    samples = speech.samples[: 8 * STEP]

    def texts(**look_back):
        cache: dict = {}
        return [
            auto.generate(
                input=samples[i : i + STEP],
                cache=cache,
                is_final=i + STEP >= len(samples),
                chunk_size=DECODING["chunk_size"],
                **look_back,
            )[0]["text"]
            for i in range(0, len(samples), STEP)
        ]

    with_look_back = texts(encoder_chunk_look_back=4, decoder_chunk_look_back=1)
    assert with_look_back != texts(encoder_chunk_look_back=0, decoder_chunk_look_back=0)
    assert with_look_back != texts(encoder_chunk_look_back=4, decoder_chunk_look_back=0)


def test_the_online_frontend_is_funasrs(store, speech):
    """Frame for frame and bit for bit: funasr's WavFrontendOnline over the same pieces."""
    import torch
    from funasr.frontends.wav_frontend import WavFrontendOnline

    folder = store / "ps-fp32"
    conf = read_config(folder)["frontend_conf"]
    mine = Frontend(conf, folder / "am.mvn")
    theirs = WavFrontendOnline(cmvn_file=str(folder / "am.mvn"), dither=0.0, **{k: v for k, v in conf.items() if v})
    rng = np.random.default_rng(3)
    cases = [[STEP] * 4 + [5000], [STEP, 960], [STEP, 50], [2 * STEP, 0], [1600] * 7, list(rng.integers(400, 12000, 6))]
    for pieces in cases:
        state, cache, at = ox._FrontendState(), {}, 30000
        for k, n in enumerate(pieces):
            final = k == len(pieces) - 1
            x = speech.samples[at : at + n]
            at += n
            expected, _ = theirs(torch.from_numpy(x.copy())[None], [n], cache=cache, is_final=final)
            got = ox.online_features(mine, state, x, final)
            if expected.numel() == 0:  # no frames yet (None), or none left at the end
                assert got is None or not got.size
            else:
                np.testing.assert_array_equal(got, expected[0].numpy())


def test_the_text_is_funasrs_sentence_postprocess():
    from funasr.utils.postprocess_utils import sentence_postprocess

    vocab = ["你", "好", "中", "国", "12", "3", "@", "hel@@", "lo", "world", "a", "b", "c", "x", "it's", "'"]
    vocab += ["<unk>", "</s>", "<s>", "-", "ok@@", "A", "é"]
    rng = np.random.default_rng(0)
    cases = [[], ["a", "b", "c"], ["hel@@", "lo", "world"], ["你", "a", "b", "好"], ["a", "b", "x", "c"]]
    cases += [list(rng.choice(vocab, int(rng.integers(1, 12)))) for _ in range(3000)]
    cases += [list(rng.choice(["a", "b", "c", "x", "你"], int(rng.integers(1, 9)))) for _ in range(2000)]
    cases += [list(rng.choice(["你", "好", "12", "3"], int(rng.integers(1, 6)))) for _ in range(200)]
    for tokens in cases:
        assert ox.sentence([str(t) for t in tokens]) == sentence_postprocess([str(t) for t in tokens])[0], tokens


@pytest.mark.parametrize("how", FEEDS.values(), ids=FEEDS.keys())
def test_fp32_gives_the_torch_engines_text_call_by_call(at_store, speech, how):
    torch_engine = load_engine(str(at_store / "ps-fp32"), "cpu", runtime="torch")
    onnx_engine = load_engine(str(at_store / "ps-fp32"), "cpu", runtime="onnx")
    assert onnx_engine.streaming and isinstance(onnx_engine, ox.OnnxStreamingEngine)
    assert onnx_engine.runtime == {
        "runtime": "onnx",
        "file": "model.onnx",
        "precision": "fp32",
        "reason": "runtime='onnx' was asked for",
    }
    expected = feed(torch_engine, speech.samples, how)
    assert "".join(expected)  # text to compare, not silence on both sides
    assert feed(onnx_engine, speech.samples, how) == expected
    assert feed(onnx_engine, speech.samples, how) == expected  # a second stream starts afresh


def test_fp32_matches_at_every_edge_of_a_step(at_store, speech):
    """Segments of every length around the 60 ms tail and the 600 ms step, in one call or in
    random pieces followed by an empty final call (as the pipeline closes a segment)."""
    torch_engine = load_engine(str(at_store / "ps-fp32"), "cpu", runtime="torch")
    onnx_engine = load_engine(str(at_store / "ps-fp32"), "cpu", runtime="onnx")
    rng = np.random.default_rng(11)
    lengths = [0, 1, 400, 959, 960, 961, 5000, STEP - 1, STEP, STEP + 1, STEP + 959, STEP + 960, 2 * STEP]
    for length in lengths + [int(n) for n in rng.integers(1, 50000, 12)]:
        start, piece = int(rng.integers(0, 90000)), int(rng.integers(100, 20000))
        segment = speech.samples[start : start + length]
        for pieces in ([segment], [segment[i : i + piece] for i in range(0, length, piece)] + [segment[:0]]):
            texts = []
            for engine in (torch_engine, onnx_engine):
                stream = engine.new_stream()
                texts.append([engine.accept(stream, p, final=k == len(pieces) - 1) for k, p in enumerate(pieces)])
            assert texts[1] == texts[0], (start, length, piece)


def test_int8_gives_the_same_segment_structure(at_store, speech):
    torch_segments = transcribe(speech.samples, 16000, model=str(at_store / "ps-torch"), vad="fsmn-vad", device="cpu")
    int8 = transcribe(speech.samples, 16000, model=NAME, vad="fsmn-vad", device="cpu", runtime="onnx")
    engine = load_engine(NAME, "cpu", runtime="onnx")
    assert engine.runtime is not None and engine.runtime["precision"] == "int8"
    assert len(int8) == len(torch_segments) == len(speech.intervals_ms)
    for mine, theirs in zip(int8, torch_segments, strict=True):
        assert (mine["id"], mine["start"], mine["end"]) == (theirs["id"], theirs["start"], theirs["end"])
        assert mine.keys() == theirs.keys() and isinstance(mine["text"], str) and mine["text"]
    # int8 may move a token across a step (its CIF weights are not fp32's): text, not equality
    partials = feed(engine, speech.samples, FEEDS["100ms-pieces"])
    assert len(partials) == len(
        feed(load_engine(str(at_store / "ps-torch"), "cpu"), speech.samples, FEEDS["100ms-pieces"])
    )
    assert all(isinstance(t, str) for t in partials) and "".join(partials)


def test_live_gives_what_transcribe_gives_on_onnx(at_store, speech):
    offline = transcribe(
        speech.samples, 16000, model=str(at_store / "ps-fp32"), vad="fsmn-vad", device="cpu", runtime="onnx"
    )
    torch_segments = transcribe(
        speech.samples, 16000, model=str(at_store / "ps-fp32"), vad="fsmn-vad", device="cpu", runtime="torch"
    )
    assert [s["text"] for s in offline] == [s["text"] for s in torch_segments]
    assert len(offline) == len(speech.intervals_ms)
    for kept_up in (True, False):  # the worker heard each 100 ms as it came, or took them queued up
        widget = Transcriber(model=str(at_store / "ps-fp32"), vad="fsmn-vad", device="cpu", runtime="onnx")
        try:
            feed_live(widget, speech.samples, kept_up=kept_up)
        finally:
            widget.close()
        assert widget.segments == offline, kept_up


def test_a_kernel_without_torch_or_funasr_streams(store, speech):
    how = FEEDS["odd-pieces-mid-step-end"]
    expected = feed(load_engine(str(store / "ps-fp32"), "cpu", runtime="torch"), speech.samples, how)
    code = (
        WITHOUT_TORCH
        + f"""
import json
from pathlib import Path
import numpy as np
from funasr_widget import models, samples, transcribe
from funasr_widget.asr import load_engine
models.set_models_dir(Path({str(store)!r}))
speech = samples.speech()
engine = load_engine({str(store / "ps-fp32")!r})
assert engine.runtime["reason"] == "torch or funasr is not installed", engine.runtime
start, end, piece = {list(how)!r}
segment = speech.samples[start:end]
stream, texts = engine.new_stream(), []
for i in range(0, len(segment), piece):
    texts.append(engine.accept(stream, segment[i : i + piece], final=i + piece >= len(segment)))
offline = transcribe(speech.samples, 16000, model={NAME!r}, vad="fsmn-vad", device="cpu")
assert len(offline) == len(speech.intervals_ms) and all(s["text"] for s in offline), offline
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "funasr"))
assert not heavy, heavy
print(json.dumps(texts))
"""
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda f: (f / "decoder.onnx").unlink(), "needs both graphs"),
        (lambda f: (f / "model.onnx").write_bytes((f / "model.onnx").read_bytes()[:5000]), "truncated or corrupt"),
        (lambda f: shutil.copy(models.resolve("fsmn-vad") / "model.onnx", f / "model.onnx"), "not this model's export"),
    ],
    ids=["no-decoder", "truncated", "another-models-graph"],
)
def test_a_bad_export_is_a_clear_error_with_the_fix(at_store, tmp_path, damage, words):
    folder = tmp_path / "broken"
    shutil.copytree(at_store / "ps-fp32", folder)
    damage(folder)
    widget = Transcriber(model=str(folder), vad="energy", device="cpu", runtime="onnx")
    assert widget.wait(timeout=120)
    assert widget.model_state == "error"
    assert widget.model_info["code"] == "weights-corrupt"
    assert words in widget.model_info["message"] + widget.model_info["hint"]
    assert f"python -m funasr_widget.models export {str(folder)!r} --quantize" in widget.model_info["hint"]
    widget.close()


def test_funasrs_own_streaming_export_is_refused_with_the_fix(at_store, tmp_path):
    """funasr's export (what the hub's -onnx repository holds) has no encoder look-back: it
    cannot give the torch path's text, and loading it says what to run instead."""
    from funasr_widget import _torch
    from funasr_widget.errors import ModelLoadError
    from funasr_widget.export import _legacy_exporter

    folder = tmp_path / "funasr-export"
    shutil.copytree(at_store / "ps-torch", folder)
    auto = _torch.auto_model(folder, "cpu")
    with _legacy_exporter(), _torch.quiet():
        auto.export(type="onnx", quantize=False, output_dir=str(folder), device="cpu")
    assert (folder / "model.onnx").is_file() and (folder / "decoder.onnx").is_file()
    with pytest.raises(ModelLoadError) as err:
        load_engine(str(folder), "cpu", runtime="onnx")
    assert err.value.code == "onnx-missing" and "no look-back caches" in str(err.value)
    assert f"python -m funasr_widget.models export {str(folder)!r} --quantize" in err.value.hint


def test_two_pass_on_onnx_runs_both_passes_on_onnxruntime(store, model_store, tmp_path):
    """runtime="onnx" reaches the partials model of a 2-pass engine too, not only the finals'."""
    folder = tmp_path / "sensevoice-small"
    shutil.copytree(model_store / "sensevoice-small", folder)
    command = [sys.executable, "-m", "funasr_widget.models", "export", str(folder)]
    subprocess.run(command, check=True, capture_output=True, timeout=500)
    engine = load_engine(str(folder), "cpu", runtime="onnx", partials_model=str(store / NAME))
    assert isinstance(engine.first, ox.OnnxStreamingEngine)
    assert (engine.first.runtime["runtime"], engine.second.runtime["runtime"]) == ("onnx", "onnx")
