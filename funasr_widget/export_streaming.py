"""The streaming Paraformer's ONNX graphs with its streaming state as inputs and outputs, so
that onnxruntime decodes with the look-back the torch path uses (asr/onnx_streaming.py).

funasr's own export of ParaformerStreaming gives an encoder without its look-back caches (each
600 ms window attends to itself only) and a decoder without its cross-attention look-back: run
on onnxruntime it gives other text than funasr's torch ``generate`` with
``encoder_chunk_look_back=4, decoder_chunk_look_back=1``. These graphs are built here from the
loaded torch modules instead, computing what funasr's ``forward_chunk`` path computes:

* ``model.onnx`` (the encoder and the CIF predictor's weights): ``speech`` (new LFR frames after
  am.mvn), ``start_idx`` (frames seen so far: the streaming position encoding), ``feats_cache``
  (the previous window's look-ahead frames, the overlap), ``cache_k``/``cache_v`` (every SANM
  layer's look-back keys and values, stacked) -> ``encoder_out``, ``alphas`` (CIF weights before
  the chunk mask), the next ``feats_cache`` and the window's ``keys``/``values`` (the runtime
  keeps the look-back: the first ``chunk`` frames of each window, ``4 * chunk`` at most).
* ``decoder.onnx``: ``encoder_out``, ``acoustic_embeds`` (the CIF's integrated frames),
  ``fsmn_cache`` (each decoder layer's last ``kernel - 1`` FSMN inputs), ``cross_k``/``cross_v``
  (the cross-attention look-back) -> ``log_probs``, the next ``fsmn_cache`` and the window's
  cross-attention ``keys``/``values``.

What is easier outside a graph stays in the runtime: the online frontend, the CIF over chunk
boundaries, the caches' trimming, and funasr's flush of the tail on ``is_final``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from .asr.streaming import DECODING
from .dependencies import require

ENCODER, DECODER = "model.onnx", "decoder.onnx"
ENCODER_INT8, DECODER_INT8 = "model_quant.onnx", "decoder_quant.onnx"
# The settings the torch streaming engine decodes with (asr/streaming.py): the feature overlap
# (chunk_size[0] + chunk_size[2] frames) is fixed in the encoder graph.
CHUNK_SIZE = cast(list[int], DECODING["chunk_size"])
GRAPHS = "funasr-widget streaming paraformer 1"  # metadata "graphs": these graphs, this layout
OPSET = 14


def _modules(torch):
    nn = torch.nn

    class Encoder(nn.Module):
        """SANMEncoderChunkOpt.forward_chunk + the CIF predictor's weights, state explicit."""

        def __init__(self, model, depth: int):
            super().__init__()
            encoder, predictor = model.encoder, model.predictor
            self.layers = nn.ModuleList([*encoder.encoders0, *encoder.encoders])
            self.after_norm = encoder.after_norm if encoder.normalize_before else None
            self.scale = encoder.output_size() ** 0.5
            self.predictor = predictor
            self.overlap = CHUNK_SIZE[0] + CHUNK_SIZE[2]
            log_increment = torch.log(torch.tensor([10000], dtype=torch.float32)) / (depth / 2 - 1)
            # funasr's StreamSinusoidalPositionEncoder computes these the same way (float32)
            self.register_buffer(
                "inv_timescales", torch.exp(torch.arange(depth / 2).type(torch.float32) * (-log_increment))
            )

        def forward(self, speech, start_idx, feats_cache, cache_k, cache_v):
            steps = speech.shape[1]
            positions = (torch.arange(steps, dtype=torch.int64) + start_idx + 1).type(torch.float32)
            scaled_time = positions.reshape(1, -1, 1) * self.inv_timescales.reshape(1, 1, -1)
            encoding = torch.cat([torch.sin(scaled_time), torch.cos(scaled_time)], dim=2)
            x = torch.cat((feats_cache, speech * self.scale + encoding), dim=1)
            next_feats = x[:, -self.overlap :, :]
            keys, values = [], []
            for i, layer in enumerate(self.layers):
                attn = layer.self_attn
                residual = x
                if layer.normalize_before:
                    x = layer.norm1(x)
                q_h, k_h, v_h, v = attn.forward_qkv(x)
                keys.append(k_h)
                values.append(v_h)
                k_all = torch.cat((cache_k[i], k_h), dim=2)
                v_all = torch.cat((cache_v[i], v_h), dim=2)
                fsmn_memory = attn.forward_fsmn(v, None)
                q_h = q_h * attn.d_k ** (-0.5)
                scores = torch.matmul(q_h, k_all.transpose(-2, -1))
                out = attn.forward_attention(v_all, scores, None) + fsmn_memory
                x = residual + out if layer.in_size == layer.size else out
                if not layer.normalize_before:
                    x = layer.norm1(x)
                residual = x
                if layer.normalize_before:
                    x = layer.norm2(x)
                x = residual + layer.feed_forward(x)
                if not layer.normalize_before:
                    x = layer.norm2(x)
            if self.after_norm is not None:
                x = self.after_norm(x)
            p = self.predictor
            output = torch.relu(p.cif_conv1d(p.pad(x.transpose(1, 2)))).transpose(1, 2)
            alphas = torch.sigmoid(p.cif_output(output))
            alphas = torch.nn.functional.relu(alphas * p.smooth_factor - p.noise_threshold).squeeze(-1)
            return x, alphas, next_feats, torch.stack(keys), torch.stack(values)

    class Decoder(nn.Module):
        """ParaformerSANMDecoder.forward_chunk + log_softmax, state explicit."""

        def __init__(self, model):
            super().__init__()
            decoder = model.decoder
            self.attention = nn.ModuleList(decoder.decoders[: decoder.att_layer_num])
            extra = decoder.num_blocks - decoder.att_layer_num
            self.plain = nn.ModuleList(decoder.decoders2 if extra > 1 and decoder.decoders2 is not None else [])
            self.last = nn.ModuleList(decoder.decoders3)
            self.after_norm = decoder.after_norm if decoder.normalize_before else None
            self.output_layer = decoder.output_layer
            fsmn = decoder.decoders[0].self_attn
            self.memory = fsmn.kernel_size - 1

        def _fsmn(self, layer, tgt, state):
            attn = layer.self_attn
            x = torch.cat((state, tgt.transpose(1, 2)), dim=2)
            next_state = x[:, :, -self.memory :]
            x = attn.fsmn_block(x).transpose(1, 2)
            return x + tgt, next_state

        def forward(self, encoder_out, acoustic_embeds, fsmn_cache, cross_k, cross_v):
            x = acoustic_embeds
            states, keys, values = [], [], []
            for i, layer in enumerate([*self.attention, *self.plain]):
                residual = x
                tgt = layer.norm1(x) if layer.normalize_before else x
                tgt = layer.feed_forward(tgt)
                if layer.normalize_before:
                    tgt = layer.norm2(tgt)
                out, state = self._fsmn(layer, tgt, fsmn_cache[i])
                states.append(state)
                x = residual + out
                if i < len(self.attention):
                    src = layer.src_attn
                    residual = x
                    y = layer.norm3(x) if layer.normalize_before else x
                    q_h, k_h, v_h = src.forward_qkv(y, encoder_out)
                    keys.append(k_h)
                    values.append(v_h)
                    k_all = torch.cat((cross_k[i], k_h), dim=2)
                    v_all = torch.cat((cross_v[i], v_h), dim=2)
                    q_h = q_h * src.d_k ** (-0.5)
                    scores = torch.matmul(q_h, k_all.transpose(-2, -1))
                    x = residual + src.forward_attention(v_all, scores, None)
            for layer in self.last:
                x, _, _, _ = layer.forward_chunk(x, encoder_out)
            if self.after_norm is not None:
                x = self.after_norm(x)
            if self.output_layer is not None:
                x = self.output_layer(x)
            return torch.log_softmax(x, dim=-1), torch.stack(states), torch.stack(keys), torch.stack(values)

    return Encoder, Decoder


def check_model(model: Any) -> None:
    """The streaming pieces these graphs assume (those of paraformer-zh-streaming)."""
    from funasr.models.scama.encoder import SANMEncoderChunkOpt

    decoder = model.decoder
    fsmn = decoder.decoders[0].self_attn
    problems = []
    if not isinstance(model.encoder, SANMEncoderChunkOpt):
        problems.append(f"encoder {type(model.encoder).__name__} (SANMEncoderChunkOpt expected)")
    if type(model.predictor).__name__ != "CifPredictorV2":
        problems.append(f"predictor {type(model.predictor).__name__} (CifPredictorV2 expected)")
    if fsmn.pad_fn.padding[1] != 0:
        problems.append("a decoder FSMN with right context (sanm_shfit must make it causal)")
    if model.normalize is not None or type(model.encoder.embed).__name__ != "StreamSinusoidalPositionEncoder":
        problems.append("an input layer other than pe_online")
    if problems:
        raise ValueError("This streaming model has " + "; ".join(problems) + ": it cannot be exported here.")


def export(model: Any, folder: Path, quantize: bool) -> list[Path]:
    """Write model.onnx and decoder.onnx (and their int8 twins with ``quantize``) of a loaded
    ParaformerStreaming (funasr's model object) into ``folder``."""
    torch = require("torch", "asr", "Exporting a model to ONNX")
    check_model(model)
    model.eval()
    features = model.encoder.encoders0[0].in_size  # LFR features: n_mels * lfr_m
    Encoder, Decoder = _modules(torch)
    encoder, decoder = Encoder(model, features).eval(), Decoder(model).eval()
    folder = Path(folder)
    first = model.encoder.encoders0[0].self_attn
    heads, d_k = first.h, first.d_k
    layers, size = len(encoder.layers), model.encoder.output_size()
    window = CHUNK_SIZE[0] + CHUNK_SIZE[1] + CHUNK_SIZE[2]
    enc_inputs = (
        torch.randn(1, CHUNK_SIZE[1], features),
        torch.tensor([30], dtype=torch.int64),
        torch.randn(1, CHUNK_SIZE[0] + CHUNK_SIZE[2], features),
        torch.randn(layers, 1, heads, 20, d_k),
        torch.randn(layers, 1, heads, 20, d_k),
    )
    written = [folder / ENCODER, folder / DECODER]
    with torch.no_grad():
        torch.onnx.export(
            encoder,
            enc_inputs,
            str(written[0]),
            dynamo=False,
            opset_version=OPSET,
            input_names=["speech", "start_idx", "feats_cache", "cache_k", "cache_v"],
            output_names=["encoder_out", "alphas", "next_feats_cache", "keys", "values"],
            dynamic_axes={
                "speech": {1: "frames"},
                "cache_k": {3: "look_back"},
                "cache_v": {3: "look_back"},
                "encoder_out": {1: "window"},
                "alphas": {1: "window"},
                "keys": {3: "window"},
                "values": {3: "window"},
            },
        )
        src = decoder.attention[0].src_attn
        dec_layers = len(decoder.attention) + len(decoder.plain)
        dec_inputs = (
            torch.randn(1, window, size),
            torch.randn(1, 3, size),
            torch.randn(dec_layers, 1, size, decoder.memory),
            torch.randn(len(decoder.attention), 1, src.h, 10, src.d_k),
            torch.randn(len(decoder.attention), 1, src.h, 10, src.d_k),
        )
        torch.onnx.export(
            decoder,
            dec_inputs,
            str(written[1]),
            dynamo=False,
            opset_version=OPSET,
            input_names=["encoder_out", "acoustic_embeds", "fsmn_cache", "cross_k", "cross_v"],
            output_names=["log_probs", "next_fsmn_cache", "keys", "values"],
            dynamic_axes={
                "encoder_out": {1: "window"},
                "acoustic_embeds": {1: "tokens"},
                "cross_k": {3: "look_back"},
                "cross_v": {3: "look_back"},
                "log_probs": {1: "tokens"},
                "keys": {3: "window"},
                "values": {3: "window"},
            },
        )
    if quantize:
        written += [_quantize(written[0], folder / ENCODER_INT8), _quantize(written[1], folder / DECODER_INT8)]
    _describe(
        written,
        {
            "graphs": GRAPHS,
            "chunk_size": list(CHUNK_SIZE),
            "encoder_chunk_look_back": DECODING["encoder_chunk_look_back"],
            "decoder_chunk_look_back": DECODING["decoder_chunk_look_back"],
            "scale": encoder.scale,
            "sos": int(model.sos),
            "eos": int(model.eos),
            "blank_id": int(model.blank_id),
            "threshold": float(model.predictor.threshold),
            "tail_threshold": float(model.predictor.tail_threshold),
        },
    )
    return written


def _describe(paths: list[Path], meta: dict) -> None:
    """Record the settings baked into the graphs (the runtime checks them)."""
    import onnx

    for path in paths:
        graph = onnx.load(str(path))
        for key, value in meta.items():
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, json.dumps(value)
        onnx.save(graph, str(path))


def _quantize(source: Path, target: Path) -> Path:
    """int8 MatMul weights, as funasr quantizes its exports (the output layer kept in fp32)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

    nodes = [n.name for n in onnx.load(str(source)).graph.node]
    quantize_dynamic(
        model_input=str(source),
        model_output=str(target),
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        reduce_range=False,
        weight_type=QuantType.QUInt8,
        nodes_to_exclude=[n for n in nodes if "output" in n],
    )
    return target
