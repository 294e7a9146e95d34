"""``python -m adaptclip_med.train`` on real industrial images and on broken MVTec-style trees."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adaptclip_med.train import main

TINY = ["--backbone", "adaptclip-tiny", "--pretrained", "none", "--allow-random-backbone",
        "--image-size", "224", "--quiet"]


def _write_mvtec_tree(root: Path, *, masks: bool = True, train: bool = True) -> Path:
    """A one-class MVTec AD tree: 2 train/good, 2 test/good, 2 test/crack (+ ground_truth masks)."""
    rng = np.random.default_rng(0)
    cls = root / "widget"
    folders = [cls / "test" / "good", cls / "test" / "crack"] + ([cls / "train" / "good"] if train else [])
    for folder in folders:
        folder.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    if masks:
        (cls / "ground_truth" / "crack").mkdir(parents=True)
        for i in range(2):
            mask = np.zeros((32, 32), np.uint8)
            mask[8:16, 8:16] = 255
            Image.fromarray(mask).save(cls / "ground_truth" / "crack" / f"{i:03d}_mask.png")
    return root


@pytest.mark.shared
def test_cli_trains_on_real_mvtec3d_tire_and_resumes(shared_datasets: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = shared_datasets / "mvtec3d_tire"
    out = tmp_path / "tire"
    args = ["--dataset", "mvtec3d", "--root", str(root), "--out", str(out), *TINY]
    assert main([*args, "--epochs", "1", "--precompute"]) == 0
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    assert "authors' format" in capsys.readouterr().out
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["loss"]) < float(rows[0]["loss"])
    # 45 test images + 10 train/good prompts, all encoded by --precompute, none during training.
    assert [int(r["images_encoded"]) for r in rows] == [0, 0]
    assert len(list((out / "cache").glob("*/features/*.npy"))) == 55
    assert main([*args, "--epochs", "3", "--resume", "--schedule", "joint"]) == 2
    assert "schedule: checkpoint 'simultaneous', now 'joint'" in capsys.readouterr().err


def test_root_without_test_split_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "widget" / "train" / "good").mkdir(parents=True)
    rc = main(["--dataset", "mvtec", "--root", str(tmp_path), "--out", str(tmp_path / "run"), *TINY])
    assert rc == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "test" in err
    assert not (tmp_path / "run").exists()


def test_anomalous_images_without_masks_are_a_clear_error(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = _write_mvtec_tree(tmp_path / "data", masks=False)
    rc = main(["--dataset", "mvtec", "--root", str(root), "--out", str(tmp_path / "run"), *TINY])
    assert rc == 2
    err = capsys.readouterr().err
    assert "crack" in err and "mask" in err


def test_class_without_normal_train_images_is_a_clear_error(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = _write_mvtec_tree(tmp_path / "data", train=False)
    rc = main(["--dataset", "mvtec", "--root", str(root), "--out", str(tmp_path / "run"), *TINY])
    assert rc == 2
    assert "class 'widget'" in capsys.readouterr().err
    zero_shot = ["--dataset", "mvtec", "--root", str(root), "--out", str(tmp_path / "zs"), *TINY,
                 "--branches", "va,ta", "--epochs", "1", "--batch-size", "2", "--no-export"]
    assert main(zero_shot) == 0  # zero-shot training needs no prompts
