"""Exported inference engines for the frozen backbone: ONNX Runtime and OpenVINO, fp32 and int8.

The frozen backbone's feature graph (image batch → the global feature and the ``L`` V-V feature-layer
tokens the adapters consume) is exported once per engine (:mod:`.graph`: ONNX opset 17 through the
TorchScript exporter — ONNX Runtime's with its fused attention node, OpenVINO IR converted from the
standard-op export — int8 weight-only or fully quantised with a calibration set) and
run by :class:`.session.EngineEncoder`, which ``load_model(engine=...)`` attaches to the backbone. The
adapters, the prompt bank and the scoring stay in torch. Built graphs are cached on disk under the user
cache folder, keyed like the feature store (:func:`.session.engine_key`). Usage and tolerances:
docs/core.md, "Inference engines".
"""

from __future__ import annotations

#: Engines that compute the frozen features: torch itself, or an exported graph.
ENGINES: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
#: int8 modes: ``weights`` (weight-only; no calibration, the recommended one) or ``full`` (post-training
#: quantisation of weights and activations, calibrated on normal images).
INT8_MODES: tuple[str, ...] = ("weights", "full")
#: The int8 mode ``precision="int8"`` selects when none is named (docs/core.md says why).
DEFAULT_INT8 = "weights"
