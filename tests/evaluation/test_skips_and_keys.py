"""Bad files skipped and listed (never fatal, never silent); reuse keyed by bytes, not paths; labels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from adaptclip_med.evaluate import main
from adaptclip_med.loading.checkpoint import save_adapters


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_unreadable_files_are_skipped_and_listed(synthetic_root: Path, tmp_path: Path, tiny_args: list[str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(synthetic_root, tmp_path / "bad set")
    (root / "normal" / "zero.png").write_bytes(b"")  # listed by the loader
    (root / "abnormal" / "trunc.png").write_bytes((root / "abnormal" / "case_000.png").read_bytes()[:300])
    shutil.copy(root / "masks" / "case_000.png", root / "masks" / "trunc.png")  # fails when drawing prompts
    shutil.copy(root / "abnormal" / "case_001.png", root / "abnormal" / "badmask.png")  # fails while scoring:
    (root / "masks" / "badmask.png").write_bytes((root / "masks" / "case_001.png").read_bytes()[:60])
    out = tmp_path / "run"
    args = ["--datasets", "folder", "--root", str(root), *tiny_args, "--shots", "0", "2", "--seeds", "1",
            "--overlays", "1", "--no-figures", "--bootstrap", "0"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert "3 file(s) skipped" in "\n".join(printed) and "abnormal/trunc.png" in "\n".join(printed)
    assert printed[-1] == f"report: {out / 'index.html'}"  # the last line names the report
    skipped = pd.read_csv(out / "skipped.csv")
    assert sorted(skipped["path"]) == ["abnormal/badmask.png", "abnormal/trunc.png", "normal/zero.png"]
    assert all(isinstance(r, str) and r and "\n" not in r and str(root) not in r for r in skipped["reason"])
    assert json.loads((out / "run.json").read_text())["skipped"]["count"] == 3
    per_image = pd.read_csv(out / "per_image.csv")
    assert not per_image["path"].str.contains("trunc|zero|badmask").any()
    assert len(per_image) == 2 * 8  # every good file scored, in both parts
    assert not per_image["path"].map(lambda p: Path(p).is_absolute()).any()
    part = json.loads(next((out / "parts").glob("folder__*__k2__s1.json")).read_text())
    assert {s["path"] for s in part["skipped"]} <= {"abnormal/badmask.png", "abnormal/trunc.png"}
    assert "abnormal/badmask.png" in {s["path"] for s in part["skipped"]}  # failed while scoring
    roles = {g["role"] for g in part["gallery"]}
    assert roles == {"top", "normal_high", "abnormal_low"}  # the report's top, false-alarm and miss galleries
    low = min((g for g in part["gallery"] if g["role"] == "abnormal_low"), key=lambda g: g["score"])
    assert low["score"] == min(r["score"] for r in part["rows"] if r["label"] == 1)
    op = part["operating_point"]
    assert op["rule"] == "max leave-one-out normal score, k = 2" and op["n_normals"] == 2
    assert op["alpha"] == pytest.approx(1 / 3)

    code = main([*args, "--strict", "--out", str(tmp_path / "strict")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "zero.png" in err and "--strict" in err


def test_reuse_is_keyed_by_image_and_checkpoint_bytes(synthetic_root: Path, tmp_path: Path, tiny_model: object,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(synthetic_root, tmp_path / "data")
    ckpt = Path(save_adapters(tiny_model, tmp_path / "ckpt"))
    out = tmp_path / "run"
    args = ["--datasets", "my_set=folder", "--root", f"my_set={root}", "--backbone", "adaptclip-tiny",
            "--pretrained", "none", "--checkpoint", str(ckpt), "--allow-random-backbone", "--image-size", "224",
            "--bootstrap", "0", "--shots", "0", "--overlays", "0", "--no-figures", "--out", str(out)]
    assert main(args) == 0
    assert "1 part(s) computed" in capsys.readouterr().out
    summary = pd.read_csv(out / "summary.csv")
    assert "my_set" in set(summary["dataset"]) and "folder" not in set(summary["dataset"])  # the user's label

    moved = _copy(root, tmp_path / "elsewhere" / "data")  # same bytes (and class name) elsewhere: reused
    assert main([a.replace(str(root), str(moved)) for a in args]) == 0
    assert "0 part(s) computed, 1 reused" in capsys.readouterr().out

    image = root / "abnormal" / "case_000.png"  # a query (some normals are held out as prompts)
    pixels = np.asarray(Image.open(image)).copy()
    Image.fromarray(255 - pixels).save(image)  # same name, other content
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "1 part(s) computed, 0 reused" in printed and "image, mask or prompt bytes changed" in printed

    with torch.no_grad():
        tiny_model.visual_adapter.global_mlp.net[0].weight.add_(0.01)  # "retrained" into the same folder
    save_adapters(tiny_model, ckpt)
    try:
        assert main(args) == 0
    finally:
        with torch.no_grad():
            tiny_model.visual_adapter.global_mlp.net[0].weight.sub_(0.01)
    printed = capsys.readouterr().out
    assert "1 part(s) computed, 0 reused" in printed and "checkpoint bytes changed" in printed
