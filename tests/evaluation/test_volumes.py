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


def _head_volume(n_slices: int = 4, speck: tuple[int, ...] = (0, 3)) -> np.ndarray:
    """``(64, 64, n)``: an elliptic head with a brighter lesion-free texture, except slices ``speck``,
    which hold only a 4 × 4 bright speck (anatomy far below a 2 % floor)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    head = (((yy - 32) / 26) ** 2 + ((xx - 32) / 20) ** 2 < 1)
    vol = np.zeros((64, 64, n_slices), dtype=np.int16)
    for z in range(n_slices):
        if z in speck:
            vol[30:34, 30:34, z] = 800
        else:
            vol[..., z] = np.where(head, 600 + rng.normal(0, 30, head.shape), 0).astype(np.int16)
    return vol


def test_roi_floor_skips_volume_slices_before_encoding(tmp_path: Path, tiny_args: list[str]) -> None:
    from adaptclip_med.evaluate import main

    root = tmp_path / "vols"
    for i in range(2):
        write_nifti(root / "normal" / f"n{i}.nii.gz", _head_volume())
    write_nifti(root / "abnormal" / "a0.nii.gz", _head_volume())
    label = np.zeros((64, 64, 4), dtype=np.uint8)
    label[28:36, 28:36, 1] = 1
    write_nifti(root / "masks" / "a0.nii.gz", label)
    out = tmp_path / "run"
    args = ["--datasets", "volume", "--root", str(root), "--shots", "0", *tiny_args, "--overlays", "0",
            "--no-figures", "--bootstrap", "0", "--roi", "auto", "--out", str(out)]
    assert main(args) == 0
    skipped = pd.read_csv(out / "skipped.csv")
    floor = skipped[skipped["reason"].str.startswith("ROI below the floor")]
    assert len(floor) == 3 * 2, skipped  # slices 0 and 3 of each queried volume
    assert floor["reason"].str.contains(r"of the slice < 2%").all()
    per_image = pd.read_csv(out / "per_image.csv")
    assert len(per_image) == 3 * 2  # the head slices only
    run = __import__("json").loads((out / "run.json").read_text())
    assert run["encodes"]["images_encoded"] == len(per_image)  # the skipped slices cost no backbone pass
    assert main([*args[:-1], str(tmp_path / "low"), "--roi-floor", "0"]) == 0  # floor 0: every slice is scored
    assert len(pd.read_csv(tmp_path / "low" / "per_image.csv")) == 3 * 4
