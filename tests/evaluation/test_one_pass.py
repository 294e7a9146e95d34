"""One backbone pass per image: the staged pipeline gives the numbers of per-part ``model.predict``,
with N + P encodes (N queries, P distinct prompt images) instead of one per query per part."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from adaptclip_med import data as D
from adaptclip_med.evaluation import plan_run, run_evaluation
from adaptclip_med.evaluation.config import EvalConfig
from adaptclip_med.metrics import calibrate_threshold, conformal_threshold

from .conftest import SYN_ARGS


def _config(root: Path, out: Path, **kw: object) -> EvalConfig:
    base = {"datasets": ("folder",), "roots": (("folder", str(root)),), "out": str(out), "shots": (0, 2),
            "seeds": (1, 2), "backbone": "adaptclip-tiny", "pretrained": None, "checkpoint": None,
            "image_size": 224, "allow_random_backbone": True, "batch_size": 4, "n_boot": 100, "overlays": 0,
            "figures": False}
    return EvalConfig(**{**base, **kw})


def _reference(config: EvalConfig, model: object) -> tuple[dict, dict]:
    """Today's per-part path: predict every part's queries, re-encode the prompts for leave-one-out."""
    scores, thresholds = {}, {}
    for part in plan_run(config).parts:
        tf = D.build_transforms(model.image_size, with_mask=part.has_masks)
        images = torch.stack([torch.as_tensor(tf(r.as_dict())["image"]) for r in part.queries])
        prompts = None
        if part.prompts is not None:
            prompts = torch.stack([torch.as_tensor(tf(r.as_dict())["image"]) for r in part.prompts.records])
        bank = model.fit_prompts(prompts) if prompts is not None else None
        out = [model.predict(images[i:i + 4], prompts=bank, batch_size=4) for i in range(0, len(images), 4)]
        scores[(part.shots, part.seed)] = np.concatenate([o.pred_score.numpy() for o in out]).astype(np.float64)
        if prompts is not None:
            loo = [model.predict(prompts[i:i + 1], prompts=model.fit_prompts(torch.cat([prompts[:i], prompts[i + 1:]])))
                   for i in range(prompts.shape[0])]
            thresholds[(part.shots, part.seed)] = (
                conformal_threshold(np.array([float(o.pred_score[0]) for o in loo])).value,
                calibrate_threshold(np.stack([o.anomaly_map[0].numpy() for o in loo]), 0.99))
    return scores, thresholds


def test_staged_pipeline_equals_per_part_predict(synthetic_run: Path, synthetic_root: Path, tiny_model: object) -> None:
    assert SYN_ARGS[SYN_ARGS.index("--batch-size") + 1] == "4"
    config = _config(synthetic_root, synthetic_run)
    scores, thresholds = _reference(config, tiny_model)
    per_image = pd.read_csv(synthetic_run / "per_image.csv")
    for (k, seed), ref in scores.items():
        ours = per_image[(per_image["shots"] == k) & (per_image["seed"] == seed)]["score"].to_numpy()
        np.testing.assert_array_equal(ours, ref)  # identical, not merely close
    ops = pd.read_csv(synthetic_run / "operating_points.csv")
    for (k, seed), (image_thr, pixel_thr) in thresholds.items():
        row = ops[(ops["shots"] == k) & (ops["seed"] == seed)].iloc[0]
        assert row["image_threshold"] == image_thr and row["pixel_threshold"] == pytest.approx(pixel_thr, abs=0)


def test_each_image_is_encoded_once(synthetic_root: Path, tmp_path: Path, encode_calls: list[int]) -> None:
    calls = encode_calls
    config = _config(synthetic_root, tmp_path / "run", shots=(0, 1, 2, 4), seeds=(10, 20, 30))
    plan = plan_run(config)
    n_queries = sum(len(g.queries) for g in plan.groups)
    n_prompts = len({r.key for g in plan.groups for r in g.prompt_records()})
    result = run_evaluation(config)
    assert len(plan.parts) == 10 and n_queries == 8 and 1 <= n_prompts <= 4
    assert sum(calls) == n_queries + n_prompts == result.encodes.encoded  # not 10 parts × 8 + LOO re-encodes
    assert list(result.timings) == ["plan", "model", "score", "write"] and all(v >= 0 for v in result.timings.values())
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["timings_s"]
    assert [k for k in recorded if k != "note"] == ["plan", "model", "score"]  # written before "write" ends
    again = run_evaluation(config)  # all parts reused: no backbone pass at all
    assert sum(calls) == n_queries + n_prompts and again.encodes.encoded == 0 and len(again.reused) == 10
