"""Data → model: the folder set through build_transforms and draw_prompts into the tiny AdaptCLIP."""

from __future__ import annotations

import torch

from adaptclip_med.data import build_transforms, draw_prompts, load_dataset


def test_folder_set_runs_through_the_tiny_model(tiny_model, synth_png):
    index = load_dataset("folder", synth_png, holdout=2, dedupe_holdout=False)
    cls = index.classes[0]
    transform = build_transforms(224)
    queries = [transform(r.as_dict()) for r in index.records[:3]]
    draw = draw_prompts(index, cls, 1, seed=0, queries=index.records)
    prompts = torch.stack([transform(r.as_dict())["image"] for r in draw.records])
    images = torch.stack([q["image"] for q in queries])
    assert images.shape == (3, 3, 224, 224) and prompts.shape == (1, 3, 224, 224)
    out = tiny_model.predict(images, prompts=prompts)
    assert out.anomaly_map.shape == (3, 224, 224) and torch.isfinite(out.anomaly_map).all()
    assert tiny_model.preprocess(index.records[0].image).equal(queries[0]["image"])  # same 8-bit path
