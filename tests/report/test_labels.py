"""Labels that say what a result is: notices in every table, summary column and PNG; counts per row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from adaptclip_med.evaluation.config import EvalConfig
from adaptclip_med.metrics import ALL_METRICS
from adaptclip_med.reporting.figures import roc_pr_figure, save_figure
from adaptclip_med.reporting.html import parse_markdown_tables
from adaptclip_med.reporting.labels import (
    BAND_FACE,
    UNTRAINED_ADAPTERS,
    UNTRAINED_BACKBONE,
    mark_image,
    run_notice,
)
from adaptclip_med.reporting.overlays import gallery_tags, overlay_figure, panel_title, save_png
from adaptclip_med.reporting.tables import counts_frame, describe_operating_point, seeds_caption, write_tables

BAND = tuple(int(BAND_FACE[i:i + 2], 16) for i in (1, 3, 5))


def _band_rows(png: Path) -> int:
    """Rows of the lower fifth of a PNG holding the notice banner's colour."""
    with Image.open(png) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    low = rgb[int(rgb.shape[0] * 0.8):]
    return int((np.abs(low - BAND).sum(axis=2) < 12).any(axis=1).sum())


def test_run_notice_names_random_backbones_and_untrained_adapters() -> None:
    assert run_notice(None, "adaptclip-mvtec") == run_notice(None, None) == UNTRAINED_BACKBONE
    assert run_notice("openai", None) == UNTRAINED_ADAPTERS
    assert run_notice("openai", "adaptclip-mvtec") is None


def test_figures_and_overlays_carry_the_notice_burned_in_and_as_metadata(tmp_path: Path) -> None:
    fig = Figure(figsize=(3, 2))
    fig.subplots().plot([0, 1], [0, 1])
    png = save_figure(fig, tmp_path / "curve", UNTRAINED_ADAPTERS)[1]
    with Image.open(png) as im:
        assert im.info["Description"] == UNTRAINED_ADAPTERS
    assert _band_rows(png) >= 10
    plain = Figure(figsize=(3, 2))
    plain.subplots().plot([0, 1], [0, 1])
    clean = save_figure(plain, tmp_path / "clean")[1]
    with Image.open(clean) as im:
        assert "Description" not in im.info
    assert _band_rows(clean) == 0

    image = (np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)
    over = overlay_figure(image, np.eye(8, dtype=np.float32), vmin=0, vmax=1, notice=UNTRAINED_BACKBONE)
    assert any(ax.get_ylabel() == "anomaly score" for ax in over.axes)  # the colour bar says what it shows
    path = save_png(over, tmp_path / "o.png", notice=UNTRAINED_BACKBONE)
    assert sum(t.get_text() == UNTRAINED_BACKBONE for t in over.texts) == 1  # marked once
    with Image.open(path) as im:
        assert im.info["Description"] == UNTRAINED_BACKBONE
    assert _band_rows(path) >= 10
    marked = mark_image(Image.new("RGB", (200, 100), "black"), UNTRAINED_BACKBONE)
    assert marked.size[1] > 100 and marked.getpixel((3, marked.size[1] - 5)) == BAND


def _record(cls: str, seed: int, shots: int, labels: list[int], op: dict | None = None) -> dict:
    metrics = {m: {"value": 0.5, "reason": None, "bound": 0.0} for m in ALL_METRICS}
    rows = [{"image_id": i, "path": f"{cls}/{i}.png", "group": "", "label": y, "score": 0.1 * i}
            for i, y in enumerate(labels)]
    return {"dataset": "ct" if cls != "only" else "mr", "cls": cls, "shots": shots, "seed": seed, "metrics": metrics,
            "rows": rows, "pixel_skipped": 1 if cls == "liver" else 0, "clinical": {},
            "operating_point": op or {"reason": "needs at least 2 normal prompts"}, "decision": None}


@pytest.fixture
def records() -> list[dict]:
    op = {"image_threshold": 0.42, "name": "max leave-one-out normal score, k = 4 (α = 0.2)", "n_normals": 4,
          "alpha": 0.2, "target_specificity": 0.95}
    return [_record("liver", 10, 0, [0, 0, 1]), _record("lung", 10, 0, [0, 1, 1, 1]),
            _record("liver", 10, 4, [0, 0, 1], op), _record("liver", 20, 4, [0, 0, 1], op),
            _record("lung", 10, 4, [0, 1, 1, 1], op), _record("lung", 20, 4, [0, 1, 1, 1], op),
            _record("only", 10, 0, [0, 1])]


def test_counts_per_row_with_skips_by_class_and_by_data_set(records: list[dict]) -> None:
    for r in records:
        r["skipped"] = [{"path": "lung/9.png", "reason": "truncated"}] if r["cls"] == "lung" else []
    # as the pipeline writes it: no class column; the scoring-time skip of lung is listed too
    skipped = pd.DataFrame({"dataset": ["ct", "ct", "ct", "mr"], "path": ["lung/9.png", "b", "c", "d"],
                            "reason": ["bad"] * 4})
    c = counts_frame(records, skipped).set_index(["dataset", "class", "shots"])
    cols = ["n_normal", "n_abnormal", "n_skipped", "n_pixel_skipped"]
    assert c.loc[("ct", "liver", 4), cols].tolist() == [2, 1, 0, 1]
    assert c.loc[("ct", "lung", 0), "n_skipped"] == 1
    assert c.loc[("ct", "Avg", 4), ["n_normal", "n_abnormal", "n_skipped"]].tolist() == [3, 4, 3]
    assert c.loc[("mr", "only", 0), "n_skipped"] == 1  # a single-class set: its only row counts all
    assert c.loc[("Avg", "Avg", 0), ["n_normal", "n_abnormal", "n_skipped"]].tolist() == [4, 5, 4]


def test_tables_carry_notice_counts_seed_caption_and_the_operating_point_rule(records: list[dict],
                                                                             tmp_path: Path) -> None:
    config = EvalConfig(datasets=("ct", "mr"), roots=(("ct", "."), ("mr", ".")), seeds=(10, 20), pretrained="openai",
                        checkpoint=None)
    pd.DataFrame({"dataset": ["ct"], "path": ["x.dcm"], "reason": ["not DICOM"]}).to_csv(tmp_path / "skipped.csv",
                                                                                       index=False)
    summary = write_tables(tmp_path, records, config)
    assert set(summary["notice"]) == {UNTRAINED_ADAPTERS}
    on_disk = pd.read_csv(tmp_path / "summary.csv")
    assert {"n_normal", "n_abnormal", "n_skipped", "n_pixel_skipped", "notice"} <= set(on_disk.columns)
    assert on_disk.set_index(["dataset", "class", "shots"]).loc[("ct", "Avg", 4), "n_skipped"] == 1
    for table in [*tmp_path.glob("tables/*.md"), *tmp_path.glob("tables/*.tex")]:
        assert UNTRAINED_ADAPTERS.split(" — ")[0] in table.read_text(encoding="utf-8"), table.name
    main = (tmp_path / "tables" / "main.md").read_text(encoding="utf-8")
    table = parse_markdown_tables(main)[0]
    assert list(table.frame.columns[:6]) == ["Dataset", "Class", "k", "n normal", "n abnormal", "n skipped"]
    assert table.frame.set_index(["Dataset", "Class", "k"]).loc[("ct", "Avg", "4"), "n normal"] == "3"
    assert "k ≥ 1: mean ± std over prompt seeds [10, 20]; k = 0 (zero-shot): one run" in main
    assert "Pixel metrics leave out 1 abnormal image(s) without a ground-truth mask (ct / liver: 1)" in main
    ops = (tmp_path / "tables" / "operating_points.md").read_text(encoding="utf-8")
    assert ("max leave-one-out normal score, k = 4 (α = 0.2); rests on 4 normal images (too few for α = 0.05: "
            "bounds false alarms at 0.2 only)") in ops
    assert r"k $\geq$ 1" in (tmp_path / "tables" / "main.tex").read_text(encoding="utf-8")


def test_seed_caption_and_operating_point_wording() -> None:
    assert seeds_caption([0], [10, 20, 30]) == "k = 0 (zero-shot): one run, no prompts to draw"
    assert seeds_caption([2], [10]) == "k ≥ 1: one prompt seed (10)"
    assert describe_operating_point({"reason": "needs 2 prompts"}) == "none: needs 2 prompts"
    assert describe_operating_point({"image_threshold": 0.3, "method": "leave-one-out", "n_normals": 3}) == (
        "leave-one-out; rests on 3 normal images")
    conformal = {"image_threshold": 0.3, "name": "leave-one-out normal score 19 of 19 (conformal, α = 0.05)",
                 "n_normals": 19, "alpha": 0.05, "target_specificity": 0.95}
    assert describe_operating_point(conformal) == ("leave-one-out normal score 19 of 19 (conformal, α = 0.05); "
                                                   "rests on 19 normal images")


def test_galleries_rank_false_alarms_and_misses_and_titles_read_plainly() -> None:
    rows = [{"label": y, "score": s} for y, s in [(0, 0.9), (0, 0.2), (1, 0.8), (1, 0.1), (1, 0.5), (0, 0.6)]]
    tags = gallery_tags(rows, kept=list(range(6)), n=2)
    assert [i for i, t in tags.items() if "top" in t] == [0, 2]
    assert sorted(i for i, t in tags.items() if "false_alarm" in t) == [0, 5]
    assert sorted(i for i, t in tags.items() if "miss" in t) == [3, 4]
    assert 1 not in tags
    title = panel_title("chest_ct", "lung", 4, 3, 1, 0.1, 0.42)
    assert title == ("Abnormal image (ground truth) · score 0.100 · below the threshold 0.42: missed (false "
                     "negative)\nchest_ct / lung · k = 4 · image 3")
    assert "false alarm" in panel_title("ct", "lung", 4, 0, 0, 0.9, 0.42)
    gated = panel_title("ct", "lung", 4, 0, 0, 0.9, 0.42, {"applicability": "warn",
                                                         "applicability_reasons": "saturated: 19 % at the maximum"})
    assert gated.endswith("ct / lung · k = 4 · image 0 [applicability warn: saturated: 19 % at the maximum]")
    assert panel_title("ct", "lung", 4, 0, 0, 0.9, 0.42, {"applicability": "pass", "applicability_reasons": ""}
                       ).endswith("image 0 [applicability pass]")


def test_roc_figure_draws_every_seed_and_says_what_the_legend_is() -> None:
    rng = np.random.default_rng(0)
    per_image = pd.DataFrame({"dataset": "ct", "class": np.repeat(["a", "b"], 10).tolist() * 3,
                              "shots": [0] * 20 + [2] * 40, "seed": [10] * 20 + [10] * 20 + [20] * 20,
                              "label": [0, 1] * 30, "score": rng.random(60)})
    fig = roc_pr_figure(per_image, "ct")
    roc = fig.axes[0]
    assert len([ln for ln in roc.lines if len(ln.get_xdata())]) == 1 + 2 + 1  # k=0, k=2 × 2 seeds, chance line
    labels = [t.get_text() for t in roc.get_legend().get_texts()]
    assert labels[0].startswith("k = 0, zero-shot: AUROC") and labels[1].startswith("k = 2, 2 seeds: AUROC")
    assert "2 classes pooled" in fig.get_suptitle() and "tables average per class" in fig.get_suptitle()


def test_kept_maps_include_the_miss_gallery_maps(tmp_path: Path) -> None:
    from adaptclip_med.reporting.overlays import load_kept_maps

    maps = np.random.default_rng(0).random((3, 8, 8)).astype(np.float16)
    np.savez_compressed(tmp_path / "p.npz", ids=np.array([4]), maps=maps[:1], miss_ids=np.array([0, 7]),
                        miss_maps=maps[1:], miss_roles=np.array(["normal_high", "abnormal_low"]))
    kept = load_kept_maps(tmp_path / "p.npz")
    assert sorted(kept) == [0, 4, 7] and kept[7].dtype == np.float32
    np.testing.assert_array_equal(kept[0], maps[1].astype(np.float32))
    np.savez_compressed(tmp_path / "old.npz", ids=np.array([1]), maps=maps[:1])
    assert sorted(load_kept_maps(tmp_path / "old.npz")) == [1]
