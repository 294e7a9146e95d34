"""``python -m adaptclip_med.train`` on real industrial images and on broken MVTec-style trees."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from adaptclip_med.train import main

from ..conftest import load_bad_corpus_module
from .conftest import write_mvtec_tree

TINY = ["--backbone", "adaptclip-tiny", "--pretrained", "none", "--allow-random-backbone",
        "--image-size", "224", "--quiet"]


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


def test_anomalous_images_without_masks_are_skipped_or_one_line_under_strict(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_mvtec_tree(tmp_path / "data", masks=False)
    args = ["--dataset", "mvtec", "--root", str(root), *TINY, "--epochs", "1", "--batch-size", "2", "--no-export"]
    assert main([*args, "--out", str(tmp_path / "strict"), "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "widget/test/crack/000.png: mask missing" in err and "--strict" in err
    assert not (tmp_path / "strict").exists()  # stopped before any work
    # default: both anomalous images are listed as skipped; training runs on the two normal queries
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "2 file(s) skipped" in out and "mvtec: widget/test/crack/000.png: mask missing" in out
    rows = list(csv.DictReader((tmp_path / "run" / "skipped.csv").open()))
    assert [r["path"] for r in rows] == ["widget/test/crack/000.png", "widget/test/crack/001.png"]


def test_bad_files_are_skipped_listed_and_training_completes(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    corpus = load_bad_corpus_module()
    root = write_mvtec_tree(tmp_path / "data")
    cls = root / "widget"
    good = cls / "test" / "good"
    (good / "empty.png").write_bytes(b"")  # the loader's screen: 0 bytes
    corpus._png(good / "dot.png", np.zeros((1, 1), np.uint8))  # the loader's screen: 1x1
    corpus._truncate(cls / "test" / "crack" / "000.png", cls / "test" / "crack" / "002.png")  # decode: a query
    shutil.copy(cls / "ground_truth" / "crack" / "000_mask.png", cls / "ground_truth" / "crack" / "002_mask.png")
    corpus._truncate(cls / "train" / "good" / "000.png", cls / "train" / "good" / "cut.png")  # decode: a prompt
    out = tmp_path / "run"
    args = ["--dataset", "mvtec", "--root", str(root), *TINY, "--epochs", "1", "--batch-size", "2", "--no-export"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "4 file(s) skipped" in printed and "trained 1 epoch(s)" in printed
    rows = {r["path"]: r for r in csv.DictReader((out / "skipped.csv").open())}
    assert set(rows) == {"widget/test/good/empty.png", "widget/test/good/dot.png", "widget/test/crack/002.png",
                         "widget/train/good/cut.png"}
    assert all(list(r) == ["path", "reason", "dataset", "class"] and r["dataset"] == "mvtec" for r in rows.values())
    assert "empty" in rows["widget/test/good/empty.png"]["reason"]
    assert "too small" in rows["widget/test/good/dot.png"]["reason"]
    assert rows["widget/test/crack/002.png"]["reason"] == "PNG file is truncated or corrupt"
    assert rows["widget/train/good/cut.png"]["class"] == "widget"
    assert not any(str(tmp_path) in r["reason"] for r in rows.values())
    run = json.loads((out / "run.json").read_text())
    assert run["skipped"]["count"] == 4 and run["skipped"]["file"] == "skipped.csv"
    assert run["queries"] == 4  # 2 good + 2 crack; the broken ones left out
    assert (out / "final").is_dir()
    assert main([*args, "--out", str(tmp_path / "strict"), "--strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--strict" in err and "Traceback" not in err


def test_class_without_normal_train_images_is_a_clear_error(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = write_mvtec_tree(tmp_path / "data", train=False)
    rc = main(["--dataset", "mvtec", "--root", str(root), "--out", str(tmp_path / "run"), *TINY])
    assert rc == 2
    assert "class 'widget'" in capsys.readouterr().err
    zero_shot = ["--dataset", "mvtec", "--root", str(root), "--out", str(tmp_path / "zs"), *TINY,
                 "--branches", "va,ta", "--epochs", "1", "--batch-size", "2", "--no-export"]
    assert main(zero_shot) == 0  # zero-shot training needs no prompts
