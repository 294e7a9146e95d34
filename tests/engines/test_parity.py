"""fp32 engines equal torch (features and maps ≤ 1e-4, image scores ≤ 1e-5); int8 keeps the ranking.

On the tiny random backbone and on the conformance fixture's CLIP with the authors' adapters, zero-shot
and 4-shot, through ``load_model(engine=...)`` and ``model.predict``. Tolerance tiers: docs/core.md.
"""

from __future__ import annotations

import pytest
import torch
from scipy.stats import pearsonr, spearmanr

ENGINES = ("onnxruntime", "openvino")


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def _check_fp32(model, ref, images: torch.Tensor) -> None:
    queries, prompts = images[:6], images[6:10]
    want, got = ref.encode(queries), model.encode(queries)
    for a, b in zip([want.global_, *want.patches], [got.global_, *got.patches], strict=True):
        assert _max_abs(a, b) <= 1e-4
    for shots in (None, prompts):
        w, g = ref.predict(queries, shots), model.predict(queries, shots)
        assert _max_abs(w.anomaly_map, g.anomaly_map) <= 1e-4
        assert _max_abs(w.pred_score, g.pred_score) <= 1e-5


@pytest.mark.parametrize("engine", ENGINES)
def test_fp32_engine_equals_torch_on_the_tiny_backbone(engine, tiny, torch_model, images) -> None:
    _check_fp32(tiny(engine=engine), torch_model, images)


def test_fp32_engine_equals_torch_on_the_conformance_model(conformance_dir) -> None:
    from safetensors.torch import load_file

    from adaptclip_med import load_model
    from adaptclip_med.data.transforms.clip_input import ClipNormalize

    kwargs = {"backbone": str(conformance_dir / "open_clip_config.json"),
              "pretrained": str(conformance_dir / "clip_openai_format.safetensors"),
              "checkpoint": conformance_dir / "adapters_official_format.pth", "image_size": 224}
    inputs = load_file(str(conformance_dir / "inputs.safetensors"))
    norm = ClipNormalize()
    u8 = torch.cat([inputs["query.resized_u8"], inputs["prompt.resized_u8"]])
    full = torch.stack([norm(img.numpy()) for img in u8])
    images = torch.nn.functional.interpolate(full, size=224, mode="bilinear", antialias=True)
    images = torch.cat([images, images.flip(-1)])[:10]  # 6 queries + 4 prompts
    _check_fp32(load_model(**kwargs, engine="onnxruntime"), load_model(**kwargs), images)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode", ["weights", "full"])
def test_int8_keeps_maps_and_ranking(engine, mode, tiny, torch_model, images) -> None:
    calibration = images[6:10] if mode == "full" else None
    model = tiny(engine=engine, precision="int8", int8=mode, calibration=calibration)
    queries, prompts = images[:6], images[6:10]
    for shots in (None, prompts):
        w, g = torch_model.predict(queries, shots), model.predict(queries, shots)
        assert pearsonr(w.anomaly_map.flatten(), g.anomaly_map.flatten())[0] >= 0.99
        assert spearmanr(w.maps["pre_blur"].flatten(), g.maps["pre_blur"].flatten())[0] >= 0.99
        assert _max_abs(w.pred_score, g.pred_score) <= 0.05


def test_int8_default_mode_is_weight_only(tiny) -> None:
    model = tiny(engine="openvino", precision="int8")
    assert model.backbone.engine.identity()["int8"] == "weights"
    assert model.describe()["engine"]["precision"] == "int8"


def test_openvino_int8_weights_quantises_activations_at_run_time(tiny) -> None:
    from adaptclip_med.engines.session import OPENVINO_ACTIVATION_GROUP

    runtime = tiny(engine="openvino", precision="int8").backbone.engine.runtime
    assert int(runtime.get_property("DYNAMIC_QUANTIZATION_GROUP_SIZE")) == OPENVINO_ACTIVATION_GROUP
