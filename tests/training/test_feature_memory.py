"""Training's frozen features on a tiny model whose batches above 2 images raise a real
``torch.OutOfMemoryError``: the features of an uninterrupted run, one line when it backs off."""

from __future__ import annotations

import pytest
import torch

from adaptclip_med.features.memory import device_batch
from adaptclip_med.training.features import FeatureSource


def test_features_back_off_with_the_values_of_an_uninterrupted_run(make_model, synthetic_set, oom_above: object,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    paths = [s.image for s in synthetic_set[0][:6]]
    reference = FeatureSource(make_model(), None, "cpu", chunk=8).features(paths)
    model = make_model()
    sizes = oom_above(2)
    ours = FeatureSource(model, None, "cpu", chunk=8).features(paths)
    assert sizes == [6, 3, 2, 2, 2] and device_batch(model).size == 2  # halved, rounded up: 6 → 3 → 2
    assert torch.equal(ours[0], reference[0])
    assert all(torch.equal(a, b) for a, b in zip(ours[1], reference[1], strict=True))
    assert capsys.readouterr().err.count("memory: encoding 6 images at a time did not fit; using 2") == 1
