"""WinCLIP / WinCLIP+ against anomalib 2.7.0's ``WinClipModel``: image scores and maps within 1e-4.

Both run on the same seeded open_clip weights and images (make_anomalib_fixture.py beside this file);
ours is built through the toolkit's loading path (``load_model`` on a config JSON and a weights file,
then ``load_winclip``). CI compares against the stored anomalib outputs; where anomalib and an open_clip
it supports (< 2.26.1) are in ``$ADAPTCLIP_ANOMALIB_PATH``, :func:`test_live_anomalib` also runs it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from open_clip.model import CLIP
from safetensors.torch import load_file, save_file

from adaptclip_med import load_model
from adaptclip_med.loading.factory import load_winclip
from adaptclip_med.model.winclip import harmonic_to_patches, window_indices

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-4


def _fixture_module():
    spec = importlib.util.spec_from_file_location("winclip_anomalib_fixture", HERE / "make_anomalib_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FX = _fixture_module()


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    folder = tmp_path_factory.mktemp("winclip")
    config = folder / "winclip-conformance.json"
    config.write_text(json.dumps(FX.MODEL_CFG))
    weights = folder / "weights.safetensors"
    save_file(FX.seeded_state_dict(CLIP(**FX.MODEL_CFG).state_dict()), str(weights))
    model = load_model(backbone=str(config), pretrained=str(weights), image_size=84)
    win = load_winclip(model)
    queries, prompts = FX.images()
    feats = win.encode(queries)
    bank = win.prompt_set([win.encode(p[None]) for p in prompts], [tuple(range(k)) for k in FX.SHOTS])
    out = {}
    for k, res in zip(FX.SHOTS, win.predict_parts(feats, bank), strict=True):
        out[f"k{k}_pred_score"], out[f"k{k}_anomaly_map"] = res.pred_score, res.anomaly_map
        alone = win.predict(queries, prompts[:k] if k else None)  # one bank, from the images: same numbers
        assert torch.equal(alone.pred_score, res.pred_score)
        assert torch.equal(alone.anomaly_map, res.anomaly_map)
    return out


def _max_diffs(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> dict[str, float]:
    assert set(ref) == set(ours)
    return {key: float((ours[key] - ref[key]).abs().max()) for key in sorted(ref)}


def test_matches_anomalib_outputs(ours: dict[str, torch.Tensor]) -> None:
    ref = load_file(str(FX.FIXTURE))
    diffs = _max_diffs(ours, ref)
    assert max(diffs.values()) < TOLERANCE, diffs
    for k in FX.SHOTS:  # the fixture is not degenerate: maps vary within and across images
        assert float(ref[f"k{k}_anomaly_map"].std()) > 1e-3
        assert float(ref[f"k{k}_pred_score"].std()) > 1e-4


def test_live_anomalib(ours: dict[str, torch.Tensor], tmp_path: Path) -> None:
    """anomalib run now, in its own interpreter: it needs open_clip < 2.26.1, the toolkit 3.3.0."""
    folder = os.environ.get("ADAPTCLIP_ANOMALIB_PATH")
    if not folder:
        pytest.skip("set ADAPTCLIP_ANOMALIB_PATH to a folder holding anomalib 2.7.0 and open_clip 2.24 "
                    "(make_anomalib_fixture.py says how); compared to the stored outputs instead")
    target = tmp_path / "live.safetensors"
    env = {**os.environ, "PYTHONPATH": folder}
    subprocess.run([sys.executable, "-W", "ignore", str(HERE / "make_anomalib_fixture.py"), str(target)],
                   check=True, env=env, cwd=tmp_path, capture_output=True, timeout=600)
    diffs = _max_diffs(ours, load_file(str(target)))
    assert max(diffs.values()) < TOLERANCE, diffs


def test_window_layout_and_harmonic_mean() -> None:
    idx = window_indices(3, 2)
    assert idx.tolist() == [[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]]
    got = harmonic_to_patches(torch.tensor([[1.0, 0.75, 0.5, 0.25]]), idx, 3)
    # patch 4 (centre) is under all four windows: 4 / (1 + 4/3 + 2 + 4)
    assert got[0, 1, 1].item() == pytest.approx(4 / (1 + 4 / 3 + 2 + 4))
    assert got[0, 0, 0].item() == 1.0 and got[0, 2, 2].item() == 0.25
    with pytest.raises(ValueError, match="does not fit"):
        window_indices(2, 3)
