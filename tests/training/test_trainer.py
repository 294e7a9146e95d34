"""The training loop on the tiny backbone: loss, resume, cache equivalence, schedules, export."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from adaptclip_med import load_model
from adaptclip_med.loading.checkpoint import adapter_state
from adaptclip_med.runtime.errors import CheckpointMismatchError
from adaptclip_med.training.config import TrainConfig
from adaptclip_med.training.losses import branch_loss
from adaptclip_med.training.schedules import batch_losses, epoch_plan, set_modes
from adaptclip_med.training.trainer import train_adapters

FAST = {"progress": False, "batch_size": 4}


def _states_equal(a: dict, b: dict, atol: float = 0.0, counters: bool = True) -> bool:
    if not counters:  # load_model does not restore BatchNorm's batch counters (unused with momentum 0.1)
        a, b = ({k: v for k, v in d.items() if not k.endswith("num_batches_tracked")} for d in (a, b))
    return a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=0)
                                        for k in a)


@pytest.fixture(scope="module")
def trained(make_model, synthetic_set, tmp_path_factory):
    """A 3-epoch simultaneous run on the synthetic set: (model, result, cache folder)."""
    samples, pool = synthetic_set
    root = tmp_path_factory.mktemp("trained")
    model = make_model()
    result = train_adapters(model, samples, pool, root / "run", TrainConfig(epochs=3, **FAST),
                            cache_dir=root / "cache")
    return model, result, root / "cache"


def test_loss_falls_and_the_run_folder_is_complete(trained) -> None:
    model, result, _ = trained
    losses = [row["loss"] for row in result.log]
    assert losses[2] < losses[1] < losses[0]
    # Features are computed once, while every image is read before epoch 1 (12 queries + 4 prompt
    # images, the pass that finds unreadable files): the epochs only read the cache.
    assert result.features_computed == 16 and result.skipped == []
    assert [row["images_encoded"] for row in result.log] == [0, 0, 0]
    assert (result.out / "skipped.csv").read_text() == "path,reason,dataset,class\n"
    lines = (result.out / "train_log.csv").read_text().splitlines()
    for column in ("epoch", "loss", "va_ce", "ta_focal", "pqa2_dice_anomalous", "pqa8_dice_normal"):
        assert column in lines[0].split(",")
    assert len(lines) == 4
    for epoch in (1, 2, 3):
        folder = result.out / "checkpoints" / f"epoch_{epoch:03d}"
        assert (folder / "adapters.safetensors").is_file() and (folder / "trainer_state.json").is_file()
    reloaded = load_model(backbone="adaptclip-tiny", pretrained=None, image_size=224, allow_random_backbone=True,
                          checkpoint=result.final_dir)
    assert _states_equal(adapter_state(model), adapter_state(reloaded), counters=False)


def test_resumed_run_equals_uninterrupted_run(trained, make_model, synthetic_set, tmp_path: Path) -> None:
    straight, full, cache = trained
    samples, pool = synthetic_set
    train_adapters(make_model(), samples, pool, tmp_path / "b", TrainConfig(epochs=2, **FAST), cache_dir=cache)
    resumed_model = make_model()  # as in a new process; its adapters are overwritten by the resume:
    with torch.no_grad():
        for p in resumed_model.prompt_query_adapter.parameters():
            p.add_(1.0)
    resumed = train_adapters(resumed_model, samples, pool, tmp_path / "b", TrainConfig(epochs=3, **FAST),
                             cache_dir=cache, resume=True)
    assert _states_equal(adapter_state(straight), adapter_state(resumed_model))
    drop = ("seconds", "images_encoded")
    assert [{k: v for k, v in r.items() if k not in drop} for r in full.log] == [
        {k: v for k, v in r.items() if k not in drop} for r in resumed.log]
    assert resumed.features_computed == 0


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_cached_training_equals_uncached_training(make_model, synthetic_set, tmp_path: Path, dtype: str) -> None:
    # float16 is the default; the uncached path rounds the features exactly as the cache stores them,
    # so both runs see bit-identical inputs and must give identical adapters (no tolerance).
    samples, pool = synthetic_set
    cached, uncached = make_model(), make_model()
    config = {"epochs": 2, **FAST} if dtype == "float16" else {"epochs": 2, "cache_dtype": dtype, **FAST}
    train_adapters(cached, samples, pool, tmp_path / "c", TrainConfig(**config))
    result = train_adapters(uncached, samples, pool, tmp_path / "u", TrainConfig(use_cache=False, **config))
    assert all(row["images_encoded"] >= 12 for row in result.log)  # the backbone runs every epoch
    assert _states_equal(adapter_state(cached), adapter_state(uncached))


def _one_batch(model, samples, pool):
    from adaptclip_med.training.features import FeatureSource

    source = FeatureSource(model, None, "cpu")
    chosen = samples[:3] + samples[-3:]
    global_, patches = source.features([s.image for s in chosen])
    _, prompt = source.features([pool[s.cls][0] for s in chosen])
    label = torch.tensor([s.label for s in chosen])
    return global_, patches, [t[:, 1:] for t in prompt], label, source.masks([s.mask for s in chosen])


def _grads(model, config: TrainConfig, epoch: int, batch) -> dict[str, torch.Tensor | None]:
    plan = epoch_plan(config, epoch)
    set_modes(model, plan)
    model.zero_grad(set_to_none=True)
    terms = batch_losses(model, plan, *batch)
    sum(v for parts in terms.values() for v in parts.values()).backward()
    return {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()
            if n.startswith(("visual_adapter.", "text_adapter."))}


def test_alternate_epoch_gives_the_same_va_ta_gradients_as_simultaneous(make_model, synthetic_set) -> None:
    samples, pool = synthetic_set
    model = make_model()
    batch = _one_batch(model, samples, pool)
    together = _grads(model, TrainConfig(), 1, batch)
    va_stats = model.visual_adapter.global_mlp.net[1].running_mean.clone()
    alternate = TrainConfig(schedule="alternate-epoch")
    ta_epoch = _grads(model, alternate, 1, batch)
    assert torch.equal(model.visual_adapter.global_mlp.net[1].running_mean, va_stats)  # VA frozen, not run
    va_epoch = _grads(model, alternate, 2, batch)
    for name, grad in together.items():
        assert grad is not None and grad.abs().sum() > 0, name
        side, other = (ta_epoch, va_epoch) if name.startswith("text_adapter.") else (va_epoch, ta_epoch)
        torch.testing.assert_close(side[name], grad, rtol=1e-6, atol=1e-9)
        assert other[name] is None


def test_batch_losses_score_the_same_branches_as_the_model(make_model, synthetic_set) -> None:
    samples, pool = synthetic_set
    model = make_model().eval()
    global_, patches, prompt, label, mask = _one_batch(model, samples, pool)
    plan = epoch_plan(TrainConfig(), 1)
    with torch.no_grad():
        ours = batch_losses(model, plan, global_, patches, prompt, label, mask)
        from adaptclip_med.model import ImageFeatures

        ref = model.branch_outputs(ImageFeatures(global_, patches), prompt)
    expected = {"va": branch_loss(ref.va_logits, ref.va_map, label, mask),
                "ta": branch_loss(ref.ta_logits, ref.ta_map, label, mask)}
    for i, layer in enumerate(model.backbone.feature_layers):
        expected[f"pqa{layer}"] = branch_loss(ref.pqa_logits[i], ref.pqa_map[i], label, mask)
    assert ours.keys() == expected.keys()
    for branch, terms in expected.items():
        for name, value in terms.items():
            torch.testing.assert_close(ours[branch][name], value)


def test_exported_authors_checkpoint_reloads_to_the_same_predictions(trained, synthetic_set) -> None:
    model, result, _ = trained
    samples, pool = synthetic_set
    reloaded = load_model(backbone="adaptclip-tiny", pretrained=None, image_size=224, allow_random_backbone=True,
                          checkpoint=result.authors_checkpoint)
    images = torch.stack([model.preprocess(s.image) for s in samples[:4]])
    prompts = torch.stack([model.preprocess(pool["plate"][0])])
    for shots in (None, prompts):
        a, b = model.predict(images, prompts=shots), reloaded.predict(images, prompts=shots)
        torch.testing.assert_close(a.anomaly_map, b.anomaly_map, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.pred_score, b.pred_score, rtol=1e-5, atol=1e-6)


def test_resume_with_another_configuration_is_refused_and_changes_nothing(trained, make_model,
                                                                           synthetic_set) -> None:
    samples, pool = synthetic_set
    out = trained[1].out
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(CheckpointMismatchError, match=r"lr: checkpoint 0\.001, now 0\.002"):
        train_adapters(make_model(), samples, pool, out, TrainConfig(epochs=4, lr=2e-3, **FAST), resume=True)
    with pytest.raises(FileExistsError, match="--resume"):
        train_adapters(make_model(), samples, pool, out, TrainConfig(epochs=4, **FAST))
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert [p for p in after if after[p] != before.get(p)] == []
    assert after == before


def test_zero_shot_and_joint_schedules(make_model, synthetic_set, tmp_path: Path) -> None:
    samples, pool = synthetic_set
    zero = train_adapters(make_model(), samples, {}, tmp_path / "zero",
                          TrainConfig(epochs=1, branches=("va", "ta"), **FAST), export_authors=False)
    assert not any(k.startswith("pqa") for k in zero.log[0]) and zero.features_computed == 12  # queries only
    joint = train_adapters(make_model(), samples, pool, tmp_path / "joint",
                           TrainConfig(epochs=1, schedule="joint", **FAST), export_authors=False)
    assert "joint_ce" in joint.log[0] and "va_ce" not in joint.log[0]
    assert joint.log[0]["trained"] == "va+ta+pqa"
