"""Training and evaluation share one feature store (``--feature-cache DIR``) on the same images.

An image encoded by one is not encoded by the other, and training from the store gives the adapters
of a training without any cache (float16: the store's rounding, which the uncached path applies too;
float32: exact). Backbone passes are counted by the ``encode_calls`` fixture (tests/conftest.py).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from adaptclip_med.evaluate import main as evaluate
from adaptclip_med.runtime.distributed import Dist
from adaptclip_med.train import main as train
from adaptclip_med.training import make_samples, precompute_features

from .conftest import write_mvtec_tree

TINY = ["--backbone", "adaptclip-tiny", "--pretrained", "none", "--allow-random-backbone", "--image-size", "224"]
#: 4 test queries (2 good, 2 crack) and the class's 2 train/good images as the 2-shot prompts: 6 images
EVAL = [*TINY, "--checkpoint", "none", "--bootstrap", "100", "--shots", "0", "2", "--seeds", "1",
        "--batch-size", "4", "--overlays", "0", "--no-figures"]
#: the same 6 images (queries: the test split, prompts: train/good); seed 0 = the evaluation's random
#: backbone (its weights are part of the key: another seed would be another backbone)
TRAIN = [*TINY, "--seed", "0", "--epochs", "2", "--batch-size", "2", "--no-export", "--quiet"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mvtec_tree(tmp_path_factory.mktemp("shared_store") / "data")


def _evaluate(tree: Path, out: Path, store: Path) -> None:
    assert evaluate(["--datasets", "mvtec", "--root", str(tree), *EVAL, "--feature-cache", str(store),
                     "--out", str(out)]) == 0


def _train(tree: Path, out: Path, *extra: str) -> list[int]:
    """Train; return the images encoded per epoch (``train_log.csv``)."""
    assert train(["--dataset", "mvtec", "--root", str(tree), "--out", str(out), *TRAIN, *extra]) == 0
    return [int(r["images_encoded"]) for r in csv.DictReader((out / "train_log.csv").open())]


def _assert_same_adapters(a: Path, b: Path) -> None:
    left, right = (load_file(run / "final" / "adapters.safetensors") for run in (a, b))
    assert left.keys() == right.keys()
    assert all(torch.equal(left[k], right[k]) for k in left), "adapters differ"


def test_training_after_an_evaluation_encodes_nothing_and_equals_training_without_a_cache(
        tree: Path, tmp_path: Path, encode_calls: list[int]) -> None:
    store = tmp_path / "features"
    _evaluate(tree, tmp_path / "eval", store)
    assert sum(encode_calls) == 6
    encode_calls.clear()
    assert _train(tree, tmp_path / "shared", "--feature-cache", str(store)) == [0, 0]
    assert sum(encode_calls) == 0  # not even while screening the files
    note = json.loads((tmp_path / "shared" / "run.json").read_text())["feature_cache"]
    assert "6 image(s) reused, 0 computed and stored" in note
    assert len(list(store.glob("*/spec.json"))) == 1  # one setting: the evaluation's entries were the ones read
    assert list((tmp_path / "shared" / "cache").glob("*/masks/*.npy"))  # masks stay in the training cache
    assert not list((tmp_path / "shared" / "cache").glob("*/features/*.npy"))
    _train(tree, tmp_path / "uncached", "--no-cache")  # float16 by default: rounded as the store rounds
    assert sum(encode_calls) > 0
    _assert_same_adapters(tmp_path / "shared", tmp_path / "uncached")


def test_evaluation_after_a_training_encodes_nothing_and_scores_as_from_its_own_store(
        tree: Path, tmp_path: Path, encode_calls: list[int], capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "features"
    _train(tree, tmp_path / "train", "--feature-cache", str(store))
    assert sum(encode_calls) == 6
    encode_calls.clear()
    _evaluate(tree, tmp_path / "from_training", store)
    assert sum(encode_calls) == 0
    assert "backbone encodes: 0 image(s), 6 from the feature store" in capsys.readouterr().out
    _evaluate(tree, tmp_path / "from_evaluation", tmp_path / "own")  # a store an evaluation filled itself
    a, b = (pd.read_csv(tmp_path / run / "per_image.csv") for run in ("from_training", "from_evaluation"))
    pd.testing.assert_frame_equal(a, b)


def test_float32_store_equals_training_without_a_cache_and_is_kept_apart(tree: Path, tmp_path: Path,
                                                                         encode_calls: list[int]) -> None:
    store = tmp_path / "features"
    f32 = ["--cache-dtype", "float32", "--feature-cache", str(store)]
    assert _train(tree, tmp_path / "fill", *f32, "--precompute") == [0, 0]  # all 6 before epoch 1
    assert sum(encode_calls) == 6
    encode_calls.clear()
    assert _train(tree, tmp_path / "read", *f32) == [0, 0] and sum(encode_calls) == 0
    _train(tree, tmp_path / "uncached", "--cache-dtype", "float32", "--no-cache")
    _assert_same_adapters(tmp_path / "fill", tmp_path / "uncached")
    _assert_same_adapters(tmp_path / "read", tmp_path / "uncached")
    specs = [json.loads(p.read_text()) for p in store.glob("*/spec.json")]
    assert [s["dtype"] for s in specs] == ["float32"]  # evaluation's float16 entries live in another folder


def test_precompute_ranks_fill_disjoint_shares_of_the_shared_store(tiny_model: object, tmp_path: Path) -> None:
    root = write_mvtec_tree(tmp_path / "data")
    images = sorted((root / "widget" / "test").rglob("*.png"))
    samples = make_samples([(p, None, 0, "widget") for p in images], source="test")
    pool = {"widget": sorted((root / "widget" / "train" / "good").glob("*.png"))}
    store = tmp_path / "features"

    def entries() -> set[str]:
        return {p.name for p in store.glob("*/??/*.npy")}

    def share(ctx: Dist | None) -> int:
        return precompute_features(tiny_model, samples, pool, None, progress=False, ctx=ctx, feature_cache=store)

    assert share(Dist(0, 2)) == 3 and len(entries()) == 3  # 6 images, every other one by content key
    assert share(Dist(1, 2)) == 3 and len(entries()) == 6
    assert share(None) == 0  # rank 0 then trains from the full store
    with pytest.raises(ValueError, match="no cache_dir and no feature_cache"):
        precompute_features(tiny_model, samples, pool, None, progress=False)


@pytest.mark.parametrize(("extra", "message"), [
    (["--feature-cache", "{D}", "--no-cache"], "--feature-cache: a shared feature store with --no-cache"),
    (["--feature-cache-max-gb", "1"], "no --feature-cache DIR"),
    (["--feature-cache", "{D}", "--feature-cache-max-gb", "0"], "--feature-cache-max-gb: got 0.0; expected > 0"),
])
def test_store_options_are_checked_before_any_work(extra: list[str], message: str, tree: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    extra = [x.replace("{D}", str(tmp_path / "D")) for x in extra]
    assert train(["--dataset", "mvtec", "--root", str(tree), "--out", str(out), *TRAIN, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "D").exists()
