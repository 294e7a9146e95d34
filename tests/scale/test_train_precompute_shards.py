"""Training's feature precompute split over ranks: shares are disjoint, cover every image, fill one cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from adaptclip_med.data import make_synthetic_folder
from adaptclip_med.runtime.distributed import Dist
from adaptclip_med.training import make_samples, precompute_features


@pytest.fixture(scope="module")
def train_set(tmp_path_factory: pytest.TempPathFactory):
    root = make_synthetic_folder(tmp_path_factory.mktemp("train_syn"), n_normal=4, n_abnormal=3, size=48, seed=5)
    items = [(p, None, 0, "syn") for p in sorted((root / "normal").glob("*.png"))[:2]]
    items += [(p, root / "masks" / p.name, 1, "syn") for p in sorted((root / "abnormal").glob("*.png"))]
    return make_samples(items, source="synthetic"), {"syn": sorted((root / "normal").glob("*.png"))[2:]}


def _entries(cache: Path) -> set[str]:
    return {p.name for p in cache.glob("*/features/*.npy")}


def test_ranks_fill_disjoint_shares_of_one_cache(tiny_model, train_set, tmp_path):
    samples, pool = train_set
    cache = tmp_path / "cache"
    n0 = precompute_features(tiny_model, samples, pool, cache, progress=False, ctx=Dist(0, 2))
    after_rank0 = _entries(cache)
    n1 = precompute_features(tiny_model, samples, pool, cache, progress=False, ctx=Dist(1, 2))
    assert (n0, n1) == (4, 3) and len(after_rank0) == 4  # 7 distinct images, every other one by content key
    assert len(_entries(cache)) == 7 and after_rank0 < _entries(cache)
    # the full cache: a single process (rank 0 training afterwards) computes nothing
    assert precompute_features(tiny_model, samples, pool, cache, progress=False) == 0
    single = tmp_path / "single"
    assert precompute_features(tiny_model, samples, pool, single, progress=False) == 7
    assert _entries(single) == _entries(cache)
