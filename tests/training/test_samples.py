"""Samples, prompt pools and the seeded epoch plans: validation errors and determinism."""

from __future__ import annotations

from pathlib import Path

import pytest

from adaptclip_med.runtime.errors import DataValidationError, PromptError
from adaptclip_med.training.samples import check_prompt_pool, draw_prompts, epoch_batches, make_samples


def test_anomalous_image_without_mask_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "bad.png"
    image.write_bytes(b"x")
    with pytest.raises(DataValidationError, match=r"bad\.png: anomalous training image without a mask"):
        make_samples([(image, None, 1, "tire")], source="root X")


def test_empty_sample_list_names_the_source() -> None:
    with pytest.raises(DataValidationError, match="my-root: no query images found"):
        make_samples([], source="my-root")


def test_class_without_prompts_is_refused(synthetic_set) -> None:
    samples, pool = synthetic_set
    with pytest.raises(PromptError, match=r"class 'tile'.*no normal train image"):
        check_prompt_pool(samples, {"plate": pool["plate"]})


def test_a_query_is_never_its_own_prompt(synthetic_set) -> None:
    samples, pool = synthetic_set
    leaky = {cls: [*paths, samples[0].image] for cls, paths in pool.items()}
    checked = check_prompt_pool(samples, leaky)
    assert samples[0].image not in checked[samples[0].cls]
    assert checked == {cls: sorted(paths) for cls, paths in pool.items()}


def test_prompts_are_same_class_and_depend_only_on_seed_and_epoch(synthetic_set) -> None:
    samples, pool = synthetic_set
    first = draw_prompts(samples, pool, seed=10, epoch=1)
    assert first == draw_prompts(samples, pool, seed=10, epoch=1)
    assert all(p in pool[s.cls] for p, s in zip(first, samples, strict=True))
    assert any(draw_prompts(samples, pool, seed=10, epoch=e) != first for e in range(2, 6))


def test_trailing_singleton_batch_is_merged_and_nothing_dropped() -> None:
    batches = epoch_batches(17, 8, seed=10, epoch=1)
    assert [len(b) for b in batches] == [8, 9]
    assert sorted(i for b in batches for i in b) == list(range(17))
    assert batches == epoch_batches(17, 8, seed=10, epoch=1)
    assert batches != epoch_batches(17, 8, seed=10, epoch=2)
    assert [len(b) for b in epoch_batches(18, 8, seed=10, epoch=1)] == [8, 8, 2]


def test_single_query_cannot_be_batch_normalised() -> None:
    with pytest.raises(DataValidationError, match="got 1 training query image"):
        epoch_batches(1, 8, seed=0, epoch=1)
