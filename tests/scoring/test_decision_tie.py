"""``score --threshold X``: an image scoring exactly X is normal (``above_threshold`` False), one above it is
anomalous — the same rule as evaluate's confusion counts and the conformal bound (``score > threshold``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from adaptclip_med.score import main

from .conftest import TINY


def test_a_score_equal_to_the_threshold_is_normal(score_inputs: dict[str, Path], tmp_path: Path) -> None:
    first = tmp_path / "first"
    assert main([str(score_inputs["png"]), "--out", str(first), *TINY]) == 0
    rows = pd.read_csv(first / "scores.csv").sort_values("score")
    low, high = float(rows["score"].iloc[0]), float(rows["score"].iloc[-1])
    assert low < high
    second = tmp_path / "second"
    assert main([str(score_inputs["png"]), "--out", str(second), "--threshold", repr(low), *TINY]) == 0
    again = pd.read_csv(second / "scores.csv").set_index("id")
    by_score = dict(zip(again["score"].astype(float), again["above_threshold"], strict=True))
    assert str(by_score[low]) == "False"  # the tie: normal
    assert str(by_score[high]) == "True"
