"""Several prompt banks over shared images (the evaluation's shots × seeds): same numbers as one bank each."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adaptclip_med.model.prompt_query import nearest_prompt_patch, top_k_mean

BANKS = [(), (0,), (1,), (0, 2), (1, 3), (0, 2, 3, 1), (3, 3)]  # zero-shot, nested, overlapping, repeated


@pytest.fixture(scope="module")
def encoded(tiny_model):
    images = torch.randn(7, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    feats = tiny_model.encode(images)
    return feats.select(slice(0, 3)), [feats.select(slice(3 + i, 4 + i)) for i in range(4)]


def test_each_bank_equals_scoring_it_alone(tiny_model, encoded):
    queries, prompts = encoded
    outs = tiny_model.predict_parts(queries, tiny_model.prompt_set(prompts, BANKS), details=True)
    assert len(outs) == len(BANKS)
    for bank, out in zip(BANKS, outs, strict=True):
        ref = tiny_model.predict_features(queries, tiny_model.bank_from_features([prompts[i] for i in bank])
                                          if bank else None)
        assert out.shots == len(bank) == ref.shots
        assert torch.equal(out.anomaly_map, ref.anomaly_map) and torch.equal(out.pred_score, ref.pred_score)
        assert out.maps.keys() == ref.maps.keys() and all(torch.equal(out.maps[k], ref.maps[k]) for k in ref.maps)
    lean = tiny_model.predict_parts(queries, tiny_model.prompt_set(prompts, BANKS[:2]))
    assert lean[1].maps == {} and torch.equal(lean[1].anomaly_map, outs[1].anomaly_map)
    assert not torch.equal(outs[1].anomaly_map, outs[2].anomaly_map)  # different banks, different maps


def test_zero_shot_only_set_needs_no_prompts(tiny_model, encoded):
    queries, _ = encoded
    (out,) = tiny_model.predict_parts(queries, tiny_model.prompt_set([], [()]))
    assert torch.equal(out.anomaly_map, tiny_model.predict_features(queries).anomaly_map)


def test_bad_sets_are_refused(tiny_model, encoded):
    queries, prompts = encoded
    with pytest.raises(ValueError, match="refers to image"):
        tiny_model.prompt_set(prompts[:2], [(0, 2)])
    small = tiny_model.encode(torch.randn(1, 3, 112, 112))
    with pytest.raises(ValueError, match="encoded at 112 px"):
        tiny_model.predict_parts(queries, tiny_model.prompt_set([small], [(0,)]))


def test_nearest_patch_matches_brute_force_with_ties():
    gen = torch.Generator().manual_seed(0)
    query = torch.randn(2, 16, 8, generator=gen)
    image = torch.randn(16, 8, generator=gen)
    memory = torch.cat([image, torch.randn(16, 8, generator=gen), image]).unsqueeze(0)  # image 2 == image 0
    memory[0, 20] = query[0, 5] * 3  # an exact match inside image 1
    distance, index, matched = nearest_prompt_patch(query, memory)
    full = 1.0 - F.normalize(query, dim=-1) @ F.normalize(memory[0], dim=-1).t()
    best, where = full.min(dim=-1)
    torch.testing.assert_close(distance, best, rtol=0, atol=1e-6)
    assert torch.equal(index, where) and (index < 32).all()  # ties go to the first copy, as torch.min
    assert index[0, 5] == 20 and distance[0, 5].abs() < 1e-6
    assert torch.equal(matched, F.normalize(memory[0], dim=-1)[index])


@pytest.mark.parametrize("n", [12, 196, 300, 576, 700])
def test_top_k_mean_equals_topk(n):
    values = torch.randn(2, 5, n, generator=torch.Generator().manual_seed(n), requires_grad=True)
    ours = top_k_mean(values, 10)
    ref = values.topk(10, dim=-1).values.mean(dim=-1)
    assert torch.equal(ours, ref)
    (grad,) = torch.autograd.grad(ours.sum(), values)
    assert torch.equal(grad, torch.autograd.grad(ref.sum(), values)[0])  # training's gradients unchanged


def test_a_query_that_is_a_prompt_is_stable_under_rounding(tiny_model, encoded):
    """A query equal to a prompt has ``1 − cos`` ≈ 0 at every patch, with either sign after rounding; the
    alignment distance is clamped at 0, so the harmonic mean over the layers stays 0 instead of
    ``n / Σ 1/x`` of mixed-sign ±1e-7 values (which reached 4.0 between torch and an engine)."""
    from adaptclip_med.model.backbone import ImageFeatures

    _, prompts = encoded
    bank = tiny_model.bank_from_features(prompts)
    same = prompts[0]
    gen = torch.Generator().manual_seed(0)
    nudged = ImageFeatures(same.global_, [p + 1e-6 * torch.randn(p.shape, generator=gen) for p in same.patches])
    exact, rounded = tiny_model.predict_features(same, bank), tiny_model.predict_features(nudged, bank)
    assert float(exact.maps["align"].max()) < 1e-6 and float(rounded.maps["align"].max()) < 1e-5
    assert float(rounded.maps["align"].min()) >= 0.0
    assert abs(float(exact.pred_score[0]) - float(rounded.pred_score[0])) < 1e-4
    assert float((exact.anomaly_map - rounded.anomaly_map).abs().max()) < 1e-4
