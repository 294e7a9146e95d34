"""Overlay panels and figure files: fixed colour limits, contours, file names, PDF + PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from adaptclip_med.reporting.figures import paper_comparison, roc_pr_figure, save_figure
from adaptclip_med.reporting.overlays import overlay_figure, overlay_name, resize_map, save_png


def test_resize_map_keeps_values_and_size() -> None:
    amap = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    big = resize_map(amap, (10, 20))
    assert big.shape == (10, 20) and big.min() >= 0 and big.max() <= 1


def test_overlay_png_with_fixed_limits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = (rng.random((60, 80)) * 255).astype(np.uint8)
    amap = np.zeros((32, 32), dtype=np.float32)
    amap[10:20, 10:20] = 0.8
    mask = (amap > 0.5).astype(np.uint8)
    fig = overlay_figure(image, amap, vmin=0.0, vmax=1.0, threshold=0.5, gt_mask=mask, title="set / k=1 / #3")
    images = [ax for ax in fig.axes if ax.images]
    assert images[1].images[0].get_clim() == (0.0, 1.0)  # the run's limits, not the image's
    assert len(images[2].collections) >= 2  # threshold and ground-truth contours
    path = save_png(fig, tmp_path / "o.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > im.size[1]


def test_overlay_name_hides_identifiers() -> None:
    name = overlay_name(3, "/data/patient_0042/John_Doe.png")
    assert name.startswith("003_") and name.endswith(".png") and "John" not in name and "0042" not in name


def test_figures_pdf_png_and_paper_bars(tmp_path: Path) -> None:
    per_image = pd.DataFrame({"dataset": "br35h", "class": "brain", "shots": [0] * 6 + [1] * 6, "seed": 10,
                              "label": [0, 1] * 6, "score": np.linspace(0, 1, 12)})
    paths = save_figure(roc_pr_figure(per_image, "br35h"), tmp_path / "roc")
    assert [p.suffix for p in paths] == [".pdf", ".png"]
    with Image.open(paths[1]) as im:
        assert abs(im.info["dpi"][0] - 300) < 1
    summary = pd.DataFrame({"dataset": ["br35h", "covid19", "Avg"], "class": ["brain", "chest", "Avg"],
                            "shots": 0, "I-AUROC": [0.8, 0.9, 0.85], "P-AUPR": np.nan})
    fig, table = paper_comparison(summary)
    assert fig is not None
    assert table[["setting", "metric", "paper"]].to_dict("records") == [
        {"setting": "br35h+covid19, k=0", "metric": "I-AUROC", "paper": 90.7}]
    assert table["ours"].iloc[0] == pytest.approx(85.0)
    assert paper_comparison(summary[summary["dataset"] == "br35h"])[0] is None  # covid19 missing: no bar
