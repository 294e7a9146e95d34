"""A run-time size the backbone's patches cannot tile is refused at the start, in one line naming the
nearest valid sizes (it used to run to the end and list every image as "unusable pixels")."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adaptclip_med import load_model

#: the tiny backbone's patches are 14 px: 192 is not a multiple, 182 and 196 are
BAD = ["--image-size", "192"]


def _args_with(args: list[str], size: list[str]) -> list[str]:
    i = args.index("--image-size")
    return [*args[:i], *size, *args[i + 2:]]


def test_evaluate_refuses_a_size_off_the_patch_grid(cli, syn_args, tiny_args, synthetic_root: Path,
                                                    tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = cli([*syn_args, "--root", str(synthetic_root), *_args_with(tiny_args, BAD), "--out", str(out)])
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:"), proc.stderr
    assert "image size 192" in errors[0] and "182 or 196" in errors[0] and "multiple of 14" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (out / "per_image.csv").exists()


def test_load_model_names_the_nearest_valid_sizes() -> None:
    with pytest.raises(ValueError, match=r"nearest valid: 182 or 196"):
        load_model("adaptclip-tiny", pretrained=None, allow_random_backbone=True, image_size=192)
    with pytest.raises(ValueError, match=r"at least 28\); nearest valid: 28$"):
        load_model("adaptclip-tiny", pretrained=None, allow_random_backbone=True, image_size=10)
    model = load_model("adaptclip-tiny", pretrained=None, allow_random_backbone=True, image_size=196)
    out = model.predict(torch.zeros(1, 3, 196, 196))
    assert tuple(out.anomaly_map.shape) == (1, 196, 196)
