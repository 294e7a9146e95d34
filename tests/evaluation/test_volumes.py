"""Volume outputs: the NIfTI map lands on the source voxels (through the canonical reorientation)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from adaptclip_med.data import build_transforms
from adaptclip_med.data.writers import write_nifti
from adaptclip_med.reporting.volumes import map_volume

FLIP_X = [[-2.0, 0, 0, 40.0], [0, 1.5, 0, -10.0], [0, 0, 3.0, 5.0], [0, 0, 0, 1]]


def _volume(lesion: bool = True) -> np.ndarray:
    vol = np.full((32, 24, 4), 100, dtype=np.int16)
    if lesion:
        vol[5:10, 15:20, 2] = 1000  # bright block at known voxels, not centred, non-square grid
    return vol


def _world_centre(img: nib.Nifti1Image, sel: np.ndarray) -> np.ndarray:
    idx = np.argwhere(sel).mean(axis=0)
    return (img.affine @ np.append(idx, 1.0))[:3]


def test_map_volume_lands_on_the_source_voxels(tmp_path: Path) -> None:
    src = write_nifti(tmp_path / "v.nii.gz", _volume(), affine=FLIP_X)
    sample = build_transforms(28, with_mask=False)({"image": str(src), "mask": None, "slice_index": 2})
    shown = np.asarray(sample["image_u8"])[..., 0].astype(np.float32) / 255.0  # the slice as the model saw it
    out = map_volume(str(src), {2: shown})
    data = np.asarray(out.dataobj)
    source = nib.load(str(src))
    assert data.shape == (32, 24, 4)
    hot = _world_centre(out, data > 0.5 * data.max())
    truth = _world_centre(source, np.asarray(source.dataobj) > 500)
    np.testing.assert_allclose(hot, truth, atol=1e-6)
    assert np.all(data[..., [0, 1, 3]] == 0)  # unscored slices stay 0


def test_cli_writes_volume_maps_and_montage(tmp_path: Path, tiny_args: list[str]) -> None:
    from adaptclip_med.evaluate import main

    root = tmp_path / "vols_kilo"  # input names use non-hex letters: no hashed output name can hold them
    for i in range(2):
        write_nifti(root / "normal" / f"case_yankee{i}.nii.gz", _volume(lesion=False), affine=FLIP_X)
    write_nifti(root / "abnormal" / "case_zulu.nii.gz", _volume(), affine=FLIP_X)
    write_nifti(root / "masks" / "case_zulu.nii.gz", (_volume() > 500).astype(np.uint8), affine=FLIP_X)
    out = tmp_path / "run"
    code = main(["--datasets", "volume", "--root", str(root), "--shots", "0", *tiny_args, "--overlays", "0",
                 "--no-figures", "--bootstrap", "0", "--pixel-metrics", "binned", "--out", str(out)])
    assert code == 0
    long = pd.read_csv(out / "metrics_long.csv").set_index("metric")
    assert 0.0 <= long.loc["P-AUROC", "value"] <= 1.0 and long.loc["P-AUROC", "bound"] > 0  # streamed
    niftis = sorted((out / "volumes").rglob("*.nii.gz"))
    assert niftis, "no volume map written"
    for path in niftis:
        img = nib.load(str(path))
        assert img.shape == (32, 24, 4)
        assert np.allclose(img.affine, nib.load(str(root / "abnormal" / "case_zulu.nii.gz")).affine)  # source space
        assert path.with_name(path.name.replace(".nii.gz", "_montage.png")).is_file()
        rel = path.relative_to(out).as_posix()
        assert not any(word in rel for word in ("zulu", "yankee", "kilo")), rel  # no input file/folder name


def test_slice_maps_stream_to_disk_not_memory(tmp_path: Path) -> None:
    from adaptclip_med.evaluation import plan_run
    from adaptclip_med.evaluation.config import EvalConfig
    from adaptclip_med.evaluation.score import PartScorer

    root = tmp_path / "vols"
    write_nifti(root / "normal" / "n0.nii.gz", _volume(lesion=False), affine=FLIP_X)
    write_nifti(root / "abnormal" / "a0.nii.gz", _volume(), affine=FLIP_X)
    write_nifti(root / "masks" / "a0.nii.gz", (_volume() > 500).astype(np.uint8), affine=FLIP_X)
    config = EvalConfig(datasets=("volume",), roots=(("volume", str(root)),), shots=(0,), seeds=(1,),
                        pixel_mode="binned", overlays=0, out=str(tmp_path / "run"))
    part = plan_run(config).parts[0]
    group = plan_run(config).groups[0]
    scorer = PartScorer.create(part, group, config, tmp_path / "run")
    recs = part.queries
    rng = np.random.default_rng(0)
    maps = rng.random((len(recs), 28, 28)).astype(np.float32)
    masks = [None if r.mask is None else np.zeros((28, 28), np.uint8) for r in recs]
    scorer.stream_volumes(recs, maps)
    scorer.apply(recs, masks, scorer.extract(recs, maps.max(axis=(1, 2)).astype(np.float64), maps))
    assert scorer.held_map_bytes() == 0 and scorer.evaluator.pixel.maps == []  # nothing kept per slice
    files = sorted((tmp_path / "run" / "parts" / f"{part.stem}.volumes").glob("*.npy"))
    assert len(files) == 2  # one memmap per volume, on disk
    stored = np.concatenate([np.load(f) for f in files])
    np.testing.assert_array_equal(np.sort(stored.ravel()), np.sort(maps.astype(np.float16).ravel()))
