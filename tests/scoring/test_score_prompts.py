"""The gate's zero-shot ``prompts`` rule (issue 20, item 2.3): without ``--normals`` each image's global
embedding against CLIP text embeddings of the expected modality and of negatives (a screenshot, a document,
a photograph). The decision on hand-made embeddings; in ``score`` on the tiny random backbone: it runs,
its verdict and reason reach ``scores.csv`` (marked meaningless, never a rejection), ``--gate-off prompts``
switches it off, and with normals the feature rule is used instead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from adaptclip_med.roi.gate import (
    NEGATIVE_PROMPTS,
    PROMPT_REJECT,
    GateConfig,
    modality_prompt,
    prompt_verdict,
)
from adaptclip_med.score import main
from adaptclip_med.scoring import applicability

from .conftest import TINY


def _unit(i: int, d: int = 8) -> np.ndarray:
    v = np.zeros(d, np.float32)
    v[i] = 1.0
    return v


def test_prompt_verdict_on_orthogonal_embeddings() -> None:
    expected, negatives = _unit(0), np.stack([_unit(1), _unit(2), _unit(3)])
    names, config = list(NEGATIVE_PROMPTS), GateConfig()

    def decide(embedding: np.ndarray, **kw: bool):
        return prompt_verdict(embedding, expected, negatives, "an MRI scan", names, config, **kw)

    assert decide(_unit(0)).status == "pass"  # the expected prompt wins outright
    v = decide(_unit(2) * 3.0)  # a negative wins outright (scale does not matter: cosine)
    assert v.status == "reject" and v.findings[0][1] == "prompts"
    assert repr(NEGATIVE_PROMPTS[1]) in v.reasons and "an MRI scan" in v.reasons
    # between the expected prompt and the first negative, slightly nearer the negative: p_neg ≈ 0.67 > p_exp
    v = decide(_unit(0) + 1.01 * _unit(1))
    assert v.status == "warn" and repr(NEGATIVE_PROMPTS[0]) in v.reasons
    p_neg = float(v.reasons.split("(p = ")[1].split(")")[0])
    assert 0.5 < p_neg <= PROMPT_REJECT
    # random backbone weights: said in the reason, and the rule never rejects
    v = decide(_unit(2), random_weights=True)
    assert v.status == "warn" and "random backbone weights: meaningless" in v.reasons
    assert decide(_unit(2)[::-1].copy()).status == "pass"  # orthogonal to every prompt: uniform, ties pass
    assert prompt_verdict(_unit(2), expected, negatives, "x", names, GateConfig(off=("prompts",))).status == "pass"


def test_modality_prompts() -> None:
    assert modality_prompt("MR") == modality_prompt("MRI") == modality_prompt("mri") == "an MRI scan"
    assert modality_prompt("CR") == modality_prompt("xray") == "an X-ray image"
    assert modality_prompt("endoscopy") == "an endoscopy image" and modality_prompt("CT") == "a CT scan"
    assert modality_prompt("XA") == "a XA medical image"


@pytest.fixture(scope="module")
def heads(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One query PNG and a folder of two normals (elliptic 'heads' on a dark ground)."""
    root = tmp_path_factory.mktemp("prompt_heads")
    (root / "normals").mkdir()
    yy, xx = np.mgrid[:128, :128]
    inside = ((yy - 64) / 51) ** 2 + ((xx - 64) / 41) ** 2 < 1
    for i, path in enumerate([root / "query.png", root / "normals" / "n0.png", root / "normals" / "n1.png"]):
        rng = np.random.default_rng(i)
        Image.fromarray(np.where(inside, 150 + rng.normal(0, 12, inside.shape), 4).clip(0, 255).astype(np.uint8)
                        ).save(path)
    return root / "query.png", root / "normals"


def test_score_applies_the_prompts_rule_without_normals(heads: tuple[Path, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    query, normals = heads
    calls: list[dict] = []
    real = applicability.prompt_verdict

    def spy(embedding, expected, negatives, expected_prompt, names, config, random_weights=False):
        calls.append({"dim": embedding.shape, "text_dim": expected.shape, "n": len(negatives),
                      "expected": expected_prompt, "random": random_weights})
        # the image as the first negative's own text embedding: the negative must win
        return real(negatives[0], expected, negatives, expected_prompt, names, config, random_weights)

    monkeypatch.setattr(applicability, "prompt_verdict", spy)
    base = [str(query), "--gate", "on", "--expect-modality", "MR", "--overlays", "none", *TINY]
    out = tmp_path / "prompts"
    assert main([*base, "--out", str(out)]) == 0
    assert len(calls) == 1 and calls[0]["dim"] == calls[0]["text_dim"] and calls[0]["n"] == len(NEGATIVE_PROMPTS)
    assert calls[0]["expected"] == "an MRI scan" and calls[0]["random"]  # --pretrained none: random weights
    row = pd.read_csv(out / "scores.csv").iloc[0]
    assert row["applicability"] == "warn" and np.isfinite(row["score"])  # random weights: never a rejection
    reasons = row["applicability_reasons"]
    assert reasons.startswith(f"prompts: zero-shot prefers {NEGATIVE_PROMPTS[0]!r}"), reasons
    assert "random backbone weights: meaningless" in reasons
    assert "prompts" in json.loads((out / "run.json").read_text())["applicability"]["gate"]["rules"]

    calls.clear()
    off = tmp_path / "off"
    assert main([*base, "--out", str(off), "--gate-off", "prompts"]) == 0
    assert not calls and pd.read_csv(off / "scores.csv")["applicability"].tolist() == ["pass"]

    with_normals = tmp_path / "normals"
    assert main([*base, "--out", str(with_normals), "--normals", str(normals)]) == 0
    assert not calls  # the feature rule instead
    reasons = pd.read_csv(with_normals / "scores.csv", dtype={"applicability_reasons": str})
    assert "prompts:" not in str(reasons["applicability_reasons"].iloc[0])


def test_score_prompts_rule_unpatched_detects_the_modality(heads: tuple[Path, Path], tmp_path: Path) -> None:
    """No --expect-modality: the ROI's detected modality picks the prompt; on random weights pass or warn."""
    out = tmp_path / "plain"
    assert main([str(heads[0]), "--out", str(out), "--gate", "on", "--overlays", "none", *TINY]) == 0
    row = pd.read_csv(out / "scores.csv").iloc[0]
    assert row["applicability"] in ("pass", "warn")
    if row["applicability"] == "warn":
        assert "prompts: zero-shot prefers" in row["applicability_reasons"]
        assert "random backbone weights" in row["applicability_reasons"]
