"""``evaluate --roi`` (@roi pixel metrics, image score inside the ROI) and ``--gate`` in an evaluation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from adaptclip_med.evaluate import main
from adaptclip_med.metrics import ROI_METRICS, PixelAccumulator
from adaptclip_med.metrics import functional as F
from tests.evaluation.conftest import TINY_ARGS

ARGS = ["--datasets", "folder", "--shots", "0", "--seeds", "1", "--batch-size", "4", "--no-figures",
        "--bootstrap", "0"]
WHOLE = ["P-AUROC", "P-AUPR", "P-F1max", "AUPRO", "P-AP"]


def _run(root: Path, out: Path, *more: str) -> pd.DataFrame:
    assert main([*ARGS, "--root", str(root), *TINY_ARGS[:-2], *more, "--out", str(out)]) == 0
    return pd.read_csv(out / "summary.csv")


@pytest.fixture(scope="module")
def roi_folder(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """User ROI masks by file stem: the left 40 of 64 columns."""
    folder = tmp_path_factory.mktemp("roi_masks")
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :40] = 255
    for stem in {p.stem for p in synthetic_root.rglob("case_*.png")}:
        Image.fromarray(mask).save(folder / f"{stem}.png")
    return folder


@pytest.fixture(scope="module")
def runs(synthetic_root: Path, roi_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("roi_runs")
    _run(synthetic_root, base / "none", "--overlays", "0")
    _run(synthetic_root, base / "folder", "--roi", str(roi_folder), "--overlays", "-1")
    return {"none": base / "none", "folder": base / "folder"}


def test_roi_columns_only_with_roi_and_whole_image_unchanged(runs: dict[str, Path]) -> None:
    none, roi = (pd.read_csv(runs[k] / "summary.csv") for k in ("none", "folder"))
    assert not any(c.endswith("@roi") for c in none.columns)
    assert set(ROI_METRICS) <= set(roi.columns)
    assert "P-AUROC@roi" in (runs["folder"] / "tables" / "main.md").read_text()
    assert "P-AUROC@roi" in set(pd.read_csv(runs["folder"] / "metrics_long.csv")["metric"])
    for m in WHOLE:  # the standard pixel metrics keep the model's whole maps
        np.testing.assert_allclose(none[m].to_numpy(float), roi[m].to_numpy(float), rtol=0, atol=1e-12)
    assert "applicability" not in pd.read_csv(runs["folder"] / "per_image.csv").columns


def test_roi_auroc_equals_hand_computation(runs: dict[str, Path], synthetic_root: Path, roi_folder: Path) -> None:
    import json

    from adaptclip_med.data import build_transforms
    from adaptclip_med.data.records import Record
    from adaptclip_med.roi.morphology import to_source_grid

    record = json.loads(next((runs["folder"] / "parts").glob("*k0*.json")).read_text())
    with np.load(runs["folder"] / "parts" / record["maps_file"]) as npz:
        kept = dict(zip(npz["ids"].tolist(), npz["maps"].astype(np.float32), strict=True))
    assert len(kept) == record["n_images"]
    transform = build_transforms(224, with_mask=True)
    roi = to_source_grid(np.asarray(Image.open(roi_folder / "case_000.png")) > 0, (224, 224))
    scores, truth = [], []
    for row in record["rows"]:
        path = synthetic_root / row["path"]
        mask = synthetic_root / "masks" / path.name if row["label"] else None
        rec = Record(str(path), str(mask) if mask else None, row["label"], "folder", "test", None, "folder")
        m = transform(rec.as_dict()).get("mask")
        m = np.zeros((224, 224), bool) if m is None else np.asarray(m).reshape(224, 224) > 0
        scores.append(kept[row["image_id"]][roi])
        truth.append(m[roi])
    hand = F.auroc(np.concatenate(scores), np.concatenate(truth))
    assert record["metrics"]["P-AUROC@roi"]["value"] == pytest.approx(hand, abs=5e-3)  # kept maps are float16
    # the image score is taken inside the ROI: never above the whole-image one (beyond rounding)
    whole = pd.read_csv(runs["none"] / "per_image.csv")["score"].to_numpy()
    inside = pd.read_csv(runs["folder"] / "per_image.csv")["score"].to_numpy()
    assert np.all(inside <= whole + 1e-6)
    assert (runs["folder"] / "overlays" / "index.csv").is_file()


@pytest.mark.parametrize("mode", ["exact", "binned"])
def test_accumulator_roi_counts_only_roi_pixels(mode: str) -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((3, 16, 16)).astype(np.float32)
    masks = rng.random((3, 16, 16)) > 0.8
    roi = np.zeros((3, 16, 16), bool)
    roi[:, 2:12, 3:14] = True
    acc = PixelAccumulator(mode)
    acc.update(maps[:1], masks[:1], roi[:1])
    acc.update(maps[1:], masks[1:], roi[1:])
    got = acc.compute()["P-AUROC"]
    assert got.value == pytest.approx(F.auroc(maps[roi], masks[roi]), abs=got.bound + 1e-12)
    whole = PixelAccumulator(mode)
    whole.update(maps, masks)
    assert PixelAccumulator(mode).compute().keys() == whole.compute().keys()
    with pytest.raises(ValueError, match="ROI"):
        whole.update(maps[:1], masks[:1], roi[:1])


def test_gate_lists_a_blank_image_as_rejected(synthetic_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "set"
    shutil.copytree(synthetic_root, root)
    for sub in ("abnormal", "masks"):  # every abnormal is a query
        Image.fromarray(np.zeros((64, 64), np.uint8)).save(root / sub / "blank.png")
    _run(root, tmp_path / "out", "--gate", "on", "--overlays", "0")
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    row = skipped[skipped["path"].str.contains("blank")]
    assert len(row) == 1 and "applicability reject" in row["reason"].iloc[0] and "blank" in row["reason"].iloc[0]
    per_image = pd.read_csv(tmp_path / "out" / "per_image.csv")
    assert {"applicability", "applicability_reasons"} <= set(per_image.columns)
    assert not per_image["path"].str.contains("blank").any()
    _run(root, tmp_path / "forced", "--gate", "on", "--force", "--overlays", "-1")
    forced = pd.read_csv(tmp_path / "forced" / "per_image.csv")
    blank = forced[forced["path"].str.contains("blank")]
    assert (blank["applicability"] == "reject").all()
    assert blank["applicability_reasons"].str.startswith("scored under --force").all()
    drawn = pd.read_csv(tmp_path / "forced" / "overlays" / "index.csv")  # the verdict goes with each overlay
    assert set(drawn["applicability"]) >= {"reject"} and drawn["applicability"].notna().all()
    assert drawn[drawn["path"].str.contains("blank")]["applicability_reasons"].str.contains("blank").all()


def test_roi_setting_changes_the_key(synthetic_root: Path, roi_folder: Path) -> None:
    from adaptclip_med.evaluation.config import EvalConfig

    base = EvalConfig(datasets=("folder",), roots=(("folder", str(synthetic_root)),))
    keys = {base.key("folder", {}).short}
    for cfg in (EvalConfig(datasets=("folder",), roots=base.roots, roi=(("folder", "auto"),)),
                EvalConfig(datasets=("folder",), roots=base.roots, roi=(("folder", str(roi_folder)),)),
                EvalConfig(datasets=("folder",), roots=base.roots, gate=True)):
        keys.add(cfg.key("folder", {}).short)
    assert len(keys) == 4


def test_kvasir_roi_auto(shared_datasets: Path, tmp_path: Path) -> None:
    args = ["--datasets", "kvasir", "--root", str(shared_datasets / "kvasir_seg"), "--shots", "0", "--seeds", "1",
            "--limit", "4", "--batch-size", "4", "--no-figures", "--bootstrap", "0", "--overlays", "1",
            *TINY_ARGS[:-2]]
    assert main([*args, "--out", str(tmp_path / "none")]) == 0
    assert main([*args, "--roi", "auto", "--out", str(tmp_path / "auto")]) == 0
    none, roi = (pd.read_csv(tmp_path / k / "summary.csv") for k in ("none", "auto"))
    assert set(ROI_METRICS) <= set(roi.columns)
    np.testing.assert_allclose(none["P-AUROC"].to_numpy(float), roi["P-AUROC"].to_numpy(float), atol=1e-12)
    assert roi["P-AUROC@roi"].notna().all()
