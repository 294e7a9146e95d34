"""Export of the frozen backbone's feature graph: ONNX (opset 17), OpenVINO IR, int8 weight-only or full.

The graph is :meth:`FrozenCLIPVision.encode_image` itself, traced: ``images (B, 3, S, S)`` float32
CLIP-normalised → ``global (B, D)`` and one ``layer_<i> (B, N, D)`` per feature layer ``i`` (V-V path,
CLS at token 0), with a dynamic batch ``B`` and the size ``S`` fixed at export (the positional table is
resized for ``S`` while tracing). The TorchScript exporter (``torch.onnx.export(..., dynamo=False)``)
traces the V-V path as written. ONNX Runtime's graph writes each attention (43 of them in a ViT-L with
the V-V path from block 6) as one ``com.microsoft`` ``MultiHeadAttention`` node, which runs without
writing the ``(B, heads, N, N)`` score tensor out (at 518 px the decomposed MatMul / Softmax / MatMul
took ~2.5 s of a ViT-L image's 3.8 s in int8, the fused node ~1.8 s); OpenVINO converts the standard-op
graph (its own transformations fuse the attention).

int8 (:data:`adaptclip_med.engines.INT8_MODES`):

* ``weights`` — OpenVINO: NNCF ``compress_weights`` (int8 asymmetric weights of every MatMul/Conv; its
  CPU plugin quantises the activations at run time, in groups of
  :data:`~adaptclip_med.engines.session.OPENVINO_ACTIVATION_GROUP` channels). ONNX Runtime: its dynamic
  quantisation (``quantize_dynamic``: int8 per-channel weights, each activation quantised at run time
  from its own range). Neither needs calibration.
* ``full`` — post-training quantisation of weights and activations with ranges calibrated on normal
  images: OpenVINO: NNCF ``quantize`` (transformer preset); ONNX Runtime: ``quantize_static`` (QDQ,
  int8 per-channel weights and uint8 activations of the MatMul, Gemm and Conv nodes only, min-max
  calibration: quantising every node — LayerNorm, Softmax, the residual adds and the output tokens —
  lost the image scores' ranking, ρ 0.85 and 4–56 % of decisions kept on the shared medical sets).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from adaptclip_med.model.backbone import FrozenCLIPVision, attend

#: ONNX opset of the exported graph.
OPSET = 17
#: Opset of ONNX Runtime's contrib domain (``MultiHeadAttention``) in its graph.
CONTRIB_OPSET = {"com.microsoft": 1}
#: The graph's input name.
INPUT = "images"
#: File the graph of each engine is stored in (OpenVINO: the ``.xml`` next to its ``.bin``).
MODEL_FILES = {"onnxruntime": "model.onnx", "openvino": "model.xml"}
#: The node types ONNX Runtime's full int8 quantises (the weights' products; the rest stays fp32).
FULL_INT8_OPS = ("MatMul", "Gemm", "Conv")
#: What each (engine, int8 mode) does, in the manifest's words.
METHODS = {
    ("onnxruntime", None): "fp32 graph",
    ("openvino", None): "fp32 graph (inference precision hint f32)",
    ("onnxruntime", "weights"): "onnxruntime.quantization.quantize_dynamic: int8 per-channel weights, "
                                "activations quantised at run time",
    ("openvino", "weights"): "nncf.compress_weights INT8_ASYM: int8 weights; the CPU plugin quantises the "
                             "activations at run time (engines.session.OPENVINO_ACTIVATION_GROUP channels a group)",
    ("onnxruntime", "full"): "onnxruntime.quantization.quantize_static: QDQ on MatMul/Gemm/Conv, int8 "
                             "per-channel weights, uint8 activations, min-max ranges from the calibration images",
    ("openvino", "full"): "nncf.quantize (ModelType.TRANSFORMER): int8 weights and activations, ranges from "
                          "the calibration images",
}


def output_names(feature_layers: Sequence[int]) -> list[str]:
    """``["global", "layer_<i>", ...]``: the graph's outputs, in :class:`ImageFeatures` order."""
    return ["global", *[f"layer_{i}" for i in feature_layers]]


class FusedAttention(torch.autograd.Function):
    """:func:`attend` when run; one ONNX Runtime ``com.microsoft`` ``MultiHeadAttention`` node when exported.

    Inputs and output ``(B, N, W)``; the node's default scale is ``1 / sqrt(W / heads)``, as in :func:`attend`.
    """

    @staticmethod
    def forward(ctx: object, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
        return attend(q, k, v, heads)

    @staticmethod
    def symbolic(g: object, q: object, k: object, v: object, heads: int) -> object:
        out = g.op("com.microsoft::MultiHeadAttention", q, k, v, num_heads_i=int(heads))
        out.setType(q.type())
        return out


class FeatureGraph(nn.Module):
    """``encode_image`` as a module with tensor outputs (what the exporter traces).

    Args:
        fused_attention: trace each attention as :class:`FusedAttention` (ONNX Runtime's graph).
    """

    def __init__(self, backbone: FrozenCLIPVision, fused_attention: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.attention = FusedAttention.apply if fused_attention else attend

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.backbone.encode_image(images, self.attention)
        return (feats.global_, *feats.patches)


def export_onnx(backbone: FrozenCLIPVision, image_size: int, path: Path, fused_attention: bool = False) -> Path:
    """Write the fp32 feature graph of ``backbone`` at ``image_size`` px to ``path`` (ONNX, :data:`OPSET`).

    The backbone must be on the CPU (it is traced there; the engines run on the CPU).

    Args:
        fused_attention: write each attention as ONNX Runtime's ``MultiHeadAttention`` (a graph for
            ONNX Runtime only); otherwise standard ONNX ops.
    """
    names = output_names(backbone.feature_layers)
    example = torch.zeros(2, 3, image_size, image_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on the shape checks of the positional table
        torch.onnx.export(FeatureGraph(backbone, fused_attention).eval(), (example,), str(path), dynamo=False,
                          opset_version=OPSET, custom_opsets=CONTRIB_OPSET if fused_attention else None,
                          input_names=[INPUT], output_names=names, do_constant_folding=True,
                          dynamic_axes={n: {0: "batch"} for n in [INPUT, *names]})
    return path


class _Calibration:
    """ONNX Runtime's calibration reader over ``(1, 3, S, S)`` arrays."""

    def __init__(self, samples: Sequence[np.ndarray]) -> None:
        self._it = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        sample = next(self._it, None)
        return None if sample is None else {INPUT: sample}


def _samples(calibration: torch.Tensor | None) -> list[np.ndarray]:
    if calibration is None or calibration.shape[0] == 0:
        msg = "int8 'full' quantisation needs calibration images (normal images of the kind scored)"
        raise ValueError(msg)
    return [calibration[i:i + 1].detach().to("cpu", torch.float32).numpy() for i in range(calibration.shape[0])]


def inline_weight_identities(path: Path) -> Path:
    """Rewrite the ONNX file at ``path`` so that every node reads shared weights from the initializer itself.

    The exporter writes a weight used twice (the V-V path's output projection is the original path's) as
    an ``Identity`` of the initializer; ONNX Runtime's quantisers take only initializers as weights, so those
    products stayed fp32 (19 of ViT-L's, ~0.3 s an image). Returns ``path``.
    """
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    weights = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias = {n.output[0]: n.input[0] for n in graph.node
             if n.op_type == "Identity" and n.input[0] in weights and n.output[0] not in outputs}
    if not alias:
        return path
    kept = [n for n in graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for node in kept:
        for i, name in enumerate(node.input):
            node.input[i] = alias.get(name, name)
    del graph.node[:]
    graph.node.extend(kept)
    onnx.save(model, str(path))
    return path


def quantize_onnx(src: Path, dst: Path, mode: str, calibration: torch.Tensor | None = None) -> Path:
    """ONNX Runtime int8 graph of the fp32 ONNX ``src`` (:data:`METHODS`).

    ``calibration``: ``(C, 3, S, S)`` preprocessed normal images, for ``full``.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    src = inline_weight_identities(src)
    if mode == "weights":
        quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8)
    elif mode == "full":
        reader = _Calibration(_samples(calibration))
        quantize_static(str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=list(FULL_INT8_OPS))
    else:
        msg = f"int8 mode {mode!r}; expected 'weights' or 'full'"
        raise ValueError(msg)
    return dst


def to_openvino(src: Path, dst: Path, mode: str | None = None, calibration: torch.Tensor | None = None) -> Path:
    """OpenVINO IR (``dst``: ``.xml`` + ``.bin``) of the ONNX ``src``, fp32 or int8 by ``mode`` (:data:`METHODS`)."""
    import openvino as ov

    model = ov.convert_model(str(src))
    if mode is not None:
        import nncf

        if mode == "weights":
            model = nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)
        elif mode == "full":
            samples = _samples(calibration)
            model = nncf.quantize(model, nncf.Dataset(samples), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(samples))
        else:
            msg = f"int8 mode {mode!r}; expected 'weights' or 'full'"
            raise ValueError(msg)
    ov.save_model(model, str(dst), compress_to_fp16=False)
    return dst


def build_graph(backbone: FrozenCLIPVision, image_size: int, engine: str, int8: str | None, folder: Path,
                calibration: torch.Tensor | None = None) -> Path:
    """Export ``backbone`` for ``engine`` into ``folder`` (:data:`MODEL_FILES`); return the model file.

    Args:
        engine: ``"onnxruntime"`` or ``"openvino"``.
        int8: None (fp32), ``"weights"`` or ``"full"``.
        calibration: ``(C, 3, S, S)`` preprocessed normal images (``full`` only).
    """
    if engine not in MODEL_FILES:
        msg = f"engine {engine!r}; expected one of {', '.join(MODEL_FILES)}"
        raise ValueError(msg)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / MODEL_FILES[engine]
    fused = engine == "onnxruntime"
    if fused and int8 is None:
        return export_onnx(backbone, image_size, target, fused_attention=True)
    fp32 = export_onnx(backbone, image_size, folder / "fp32.onnx", fused_attention=fused)
    try:
        if engine == "onnxruntime":
            return quantize_onnx(fp32, target, int8, calibration)
        return to_openvino(fp32, target, int8, calibration)
    finally:
        fp32.unlink(missing_ok=True)
