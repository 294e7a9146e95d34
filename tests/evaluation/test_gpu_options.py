"""GPU-path options on a CPU machine: argument handling, worker defaults, bf16 autocast close to fp32."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from adaptclip_med.evaluate import build_parser, config_from_args, main
from adaptclip_med.evaluation.config import EvalConfig


def test_precision_and_workers_arguments(synthetic_root: Path) -> None:
    argv = ["--datasets", "folder", "--root", str(synthetic_root), "--precision", "bf16"]
    config = config_from_args(build_parser().parse_args(argv), argv)
    assert config.precision == "bf16" and config.workers is None and config.loader_workers() == 0  # CPU: 0
    base = {"datasets": ("x",), "roots": (("x", "."),)}
    assert EvalConfig(**base, device="cuda").loader_workers() == min(4, os.cpu_count() or 1)
    assert EvalConfig(**base, device="cuda", workers=2).loader_workers() == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--precision", "fp8"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_cuda_without_a_gpu_is_one_line(synthetic_root: Path, tmp_path: Path, tiny_args: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--datasets", "folder", "--root", str(synthetic_root), *tiny_args, "--device", "cuda",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no CUDA GPU" in err


def test_bf16_autocast_on_cpu_is_close_to_fp32(synthetic_root: Path) -> None:
    from adaptclip_med import load_model
    from adaptclip_med.data import build_transforms

    images = sorted((synthetic_root / "abnormal").glob("*.png"))[:2]
    tf = build_transforms(224, with_mask=False)
    batch = torch.stack([torch.as_tensor(tf({"image": str(p)})["image"]) for p in images])
    out = {}
    for precision in ("fp32", "bf16"):
        model = load_model("adaptclip-tiny", None, image_size=224, allow_random_backbone=True, precision=precision)
        feats = model.encode(batch)
        assert feats.global_.dtype == torch.float32  # features come back in float32 either way
        out[precision] = model.predict_features(feats)
    diff = (out["fp32"].anomaly_map - out["bf16"].anomaly_map).abs().max().item()
    assert 0 < diff < 0.05  # autocast ran (not identical) and stays close
    assert (out["fp32"].pred_score - out["bf16"].pred_score).abs().max().item() < 0.05
