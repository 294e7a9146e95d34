"""Memory-bounded device batches on a real tiny model whose batches above 2 images raise a real
``torch.OutOfMemoryError``: same features and scores as an uninterrupted run, one line when it backs
off, one ``error:`` line (exit 2) when even one image does not fit."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from adaptclip_med import data as D
from adaptclip_med import load_model
from adaptclip_med.evaluate import main
from adaptclip_med.evaluation import plan_run
from adaptclip_med.evaluation.config import EvalConfig
from adaptclip_med.features.encode import _encode_checked, encode_batches
from adaptclip_med.features.memory import device_batch

from .conftest import SYN_ARGS, TINY_ARGS

BACKOFF = "memory: encoding {} images at a time did not fit; using 2"


def _fresh_model() -> object:
    """The tiny model of the ``tiny_model`` fixture, as a new object (its device batch starts unbounded)."""
    return load_model(backbone="adaptclip-tiny", pretrained=None, image_size=224, device="cpu",
                      allow_random_backbone=True, seed=0)


def _features(model: object, records: list, transform: object, batch_size: int) -> list[torch.Tensor]:
    """Every tensor of the queries' features (global, then each layer's patches), batch by batch."""
    out = []
    for batch in encode_batches(records, model, transform, batch_size=batch_size):
        out += [batch.feats.global_, *batch.feats.patches]
    return out


def test_backoff_gives_the_features_of_an_uninterrupted_run(synthetic_root: Path, oom_above: object,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = EvalConfig(datasets=("folder",), roots=(("folder", str(synthetic_root)),), shots=(0,), seeds=(1,))
    records = plan_run(config).groups[0].queries
    assert len(records) == 8
    transform = D.build_transforms(224, with_mask=True)
    reference = _features(_fresh_model(), records, transform, batch_size=8)
    model = _fresh_model()
    sizes = oom_above(2)
    ours = _features(model, records, transform, batch_size=8)
    assert len(ours) == len(reference)
    assert all(torch.equal(a, b) for a, b in zip(ours, reference, strict=True))  # bit for bit
    assert sizes == [8, 4, 2, 2, 2, 2] and device_batch(model).size == 2  # halved twice, then kept
    err = capsys.readouterr().err
    assert err.count(BACKOFF.format(8)) == 1 and err.count("\n") == 1
    _features(model, records, transform, batch_size=8)  # the bound is kept: no new attempt, no new line
    assert max(sizes[6:]) == 2 and capsys.readouterr().err == ""


def test_backoff_keeps_refusing_bad_pixels_one_by_one(synthetic_root: Path, oom_above: object) -> None:
    tf = D.build_transforms(224, with_mask=False)
    paths = [*sorted((synthetic_root / "abnormal").glob("*.png"))[:3],
             *sorted((synthetic_root / "normal").glob("*.png"))[:2]]
    images = torch.stack([torch.as_tensor(tf({"image": str(p)})["image"]) for p in paths])
    images[3, 0, 5, 5] = float("nan")
    keep = [0, 1, 2, 4]
    reference = _fresh_model().encode(images[keep], 8)
    oom_above(2)
    feats, bad = _encode_checked(_fresh_model(), images, 8)
    assert bad == [3]
    assert torch.equal(feats.global_, reference.global_)
    assert all(torch.equal(a, b) for a, b in zip(feats.patches, reference.patches, strict=True))


def test_evaluate_backs_off_with_the_scores_of_an_uninterrupted_run(
        synthetic_run: Path, synthetic_root: Path, tmp_path: Path, oom_above: object,
        capsys: pytest.CaptureFixture[str]) -> None:
    sizes = oom_above(2)
    out = tmp_path / "run"
    assert main([*SYN_ARGS, "--root", str(synthetic_root), *TINY_ARGS, "--overlays", "0", "--no-figures",
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count(BACKOFF.format(4)) == 1 and "Traceback" not in err
    assert sum(s > 2 for s in sizes) == 1  # one oversized attempt, then every batch at 2
    for table in ("per_image.csv", "summary.csv", "operating_points.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(out / table), pd.read_csv(synthetic_run / table))
    encodes = json.loads((out / "run.json").read_text())["encodes"]
    assert encodes["device_batch"] == 2
    assert json.loads((synthetic_run / "run.json").read_text())["encodes"]["device_batch"] == 4


def test_out_of_memory_at_batch_one_is_one_error_line(synthetic_root: Path, tmp_path: Path, oom_above: object,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    oom_above(0)
    code = main(["--datasets", "folder", "--root", str(synthetic_root), *TINY_ARGS, "--batch-size", "4",
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err == ("error: out of CPU memory even at batch 1 with adaptclip-tiny at 224 px; "
                   "try --precision bf16 or a smaller --image-size\n")
