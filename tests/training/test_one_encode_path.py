"""One encode path: ``evaluate``, ``score`` and training turn the same image into the same features,
bit for bit, and share one feature store (``--feature-cache DIR``): one backbone pass per image in all.

Backbone passes are counted by the ``encode_calls`` fixture (tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from adaptclip_med import data as D
from adaptclip_med.evaluate import main as evaluate
from adaptclip_med.evaluation.config import EvalConfig
from adaptclip_med.features.encode import encode_records
from adaptclip_med.features.store import FeatureStore, open_feature_store
from adaptclip_med.scoring import ScoreConfig, run_scoring
from adaptclip_med.scoring.inputs import discover
from adaptclip_med.scoring.scorer import unit_record
from adaptclip_med.train import main as train
from adaptclip_med.training.features import FeatureSource

from .conftest import write_mvtec_tree

TINY = ["--backbone", "adaptclip-tiny", "--pretrained", "none", "--allow-random-backbone", "--image-size", "224"]
#: 4 test queries and the class's 2 train/good images as 2-shot prompts: 6 images
EVAL = [*TINY, "--checkpoint", "none", "--bootstrap", "100", "--shots", "0", "2", "--seeds", "1",
        "--batch-size", "4", "--overlays", "0", "--no-figures"]
#: seed 0: the evaluation's random backbone (its weights are part of the store's key)
TRAIN = [*TINY, "--seed", "0", "--epochs", "1", "--batch-size", "2", "--no-export", "--quiet"]


def _score_config(tree: Path, out: Path, store: Path | None) -> ScoreConfig:
    model = EvalConfig(datasets=(), roots=(), backbone="adaptclip-tiny", pretrained=None, checkpoint=None,
                       image_size=224, allow_random_backbone=True, batch_size=4,
                       feature_cache=None if store is None else str(store))
    return ScoreConfig(inputs=(str(tree / "widget" / "test"),), out=str(out), model=model,
                       normals=str(tree / "widget" / "train" / "good"), overlays="none", dicom=False)


def _load(config: ScoreConfig) -> object:
    from adaptclip_med.loading.factory import load_model_for

    return load_model_for(config.model)


def test_evaluate_score_and_training_share_one_backbone_pass_and_bit_identical_features(
        tmp_path: Path, encode_calls: list[int]) -> None:
    tree = write_mvtec_tree(tmp_path / "data")
    images = sorted((tree / "widget").glob("t*/*/*.png"))  # 2 train/good + 4 test: every image of the runs
    assert len(images) == 6
    store_dir = tmp_path / "features"

    assert evaluate(["--datasets", "mvtec", "--root", str(tree), *EVAL, "--feature-cache", str(store_dir),
                     "--out", str(tmp_path / "eval")]) == 0
    assert sum(encode_calls) == 6  # each image once
    scored = run_scoring(_score_config(tree, tmp_path / "score", store_dir))
    assert scored.scored == 4 and scored.encodes.encoded == 0 and scored.encodes.from_store == 6
    assert train(["--dataset", "mvtec", "--root", str(tree), "--out", str(tmp_path / "train"), *TRAIN,
                  "--feature-cache", str(store_dir)]) == 0
    assert sum(encode_calls) == 6  # neither score nor training ran the backbone again
    assert len(list(store_dir.glob("*/spec.json"))) == 1 and len(list(store_dir.glob("*/??/*.npy"))) == 6

    # The features each consumer hands its heads, read back from the shared store: one set of bits.
    config = _score_config(tree, tmp_path / "unused", store_dir)
    model = _load(config)
    store = open_feature_store(store_dir, model)
    assert isinstance(store, FeatureStore)
    studies, _ = discover([str(p) for p in images])
    records = [unit_record(u) for s in studies for u in s.units]
    evaluation, skipped = encode_records(records, model, D.build_transforms(model.image_size, with_mask=True),
                                         batch_size=4, store=store)
    scoring, _ = encode_records(records, model, D.build_transforms(model.image_size, with_mask=False),
                                batch_size=4, store=store)
    training = FeatureSource(model, None, "cpu", chunk=2, dtype="float16", store=store)
    global_, patches = training.features(images)
    assert not skipped and sum(encode_calls) == 6
    for i, rec in enumerate(records):
        assert Path(rec.image) == images[i]
        ours, theirs = evaluation[rec.key], scoring[rec.key]
        assert torch.equal(ours.global_, theirs.global_) and torch.equal(ours.global_[0], global_[i])
        assert all(torch.equal(a, b) for a, b in zip(ours.patches, theirs.patches, strict=True))
        assert all(torch.equal(a[0], b[i]) for a, b in zip(ours.patches, patches, strict=True))

    # score from the shared store equals score from a store it filled itself (the same rounded features)
    own = run_scoring(_score_config(tree, tmp_path / "score_own", tmp_path / "own"))
    assert own.encodes.encoded == 6
    a, b = (pd.read_csv(tmp_path / run / "scores.csv") for run in ("score", "score_own"))
    pd.testing.assert_frame_equal(a, b)
