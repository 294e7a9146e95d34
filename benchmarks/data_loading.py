"""Images/s from disk to model-ready tensors (``build_transforms``) for PNG, JPEG, TIFF, DICOM and NIfTI.

Writes seeded synthetic files of realistic sizes into a temporary folder (PNG 512² grey MRI-like,
JPEG 620×530 RGB endoscopy-like, TIFF 384×288 RGB in CVC-ClinicDB's form (3 samples tagged MINISBLACK,
read by tifffile), DICOM 512² int16 CT with window tags, uncompressed and RLE Lossless (decoded by a
pydicom plugin), NIfTI 256×256×64 float32
volume read slice by slice, in order: the loader keeps the last volumes decoded), then loads them
through a MONAI ``DataLoader`` (batch 8) with 0 and 2 workers. Prints one line per case. Usage::

    python benchmarks/data_loading.py [--size 518] [--n 48] [--workers 0 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from monai.data import DataLoader, Dataset
from PIL import Image

from adaptclip_med.data import build_transforms
from adaptclip_med.data.synthetic import insert_lesion, synthetic_organ
from adaptclip_med.data.writers import write_dicom, write_nifti


def _cases(root: Path, n: int) -> dict[str, list[dict[str, object]]]:
    rng = np.random.default_rng(0)
    import pydicom
    import tifffile
    from pydicom.uid import RLELossless

    cases: dict[str, list[dict[str, object]]] = {"png": [], "jpeg": [], "tiff_rgb": [], "dicom": [],
                                                 "dicom_rle": [], "nifti_slice": []}
    for i in range(n):
        organ, mask = insert_lesion(synthetic_organ(512, rng), rng)
        png = root / f"mri_{i}.png"
        Image.fromarray(np.uint8(organ * 255)).save(png)
        mpath = root / f"mri_{i}_mask.png"
        Image.fromarray(mask * 255).save(mpath)
        cases["png"].append({"image": str(png), "mask": str(mpath)})
        rgb = np.stack([synthetic_organ(620, rng)[:530]] * 3, -1)
        jpg = root / f"endo_{i}.jpg"
        Image.fromarray(np.uint8(rgb * 255)).save(jpg, quality=90)
        cases["jpeg"].append({"image": str(jpg)})
        stored = np.round(organ * 2000).astype(np.int16)
        tif = root / f"clinicdb_{i}.tif"
        tifffile.imwrite(tif, np.uint8(rgb[:288, :384] * 255), photometric="minisblack", planarconfig="contig")
        cases["tiff_rgb"].append({"image": str(tif)})
        dcm = write_dicom(root / f"ct_{i}.dcm", stored, intercept=-1000.0, window=(40.0, 400.0))
        cases["dicom"].append({"image": str(dcm)})
        ds = pydicom.dcmread(dcm)
        ds.compress(RLELossless)
        ds.save_as(root / f"ct_rle_{i}.dcm")
        cases["dicom_rle"].append({"image": str(root / f"ct_rle_{i}.dcm")})
    volume = np.stack([synthetic_organ(256, rng) for _ in range(64)], axis=-1).astype(np.float32)
    nii = write_nifti(root / "vol.nii.gz", volume)
    cases["nifti_slice"] = [{"image": str(nii), "slice_index": i % 64} for i in range(n)]
    return cases


def _rate(samples: list[dict[str, object]], size: int, workers: int, with_mask: bool) -> float:
    transform = build_transforms(size, with_mask=with_mask, keep_original=False)
    loader = DataLoader(Dataset(samples, transform), batch_size=8, num_workers=workers)
    start = time.perf_counter()
    count = sum(batch["image"].shape[0] for batch in loader)
    return count / (time.perf_counter() - start)


def main() -> None:
    """Print images/s per format and worker count."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=518)
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = _cases(Path(tmp), args.n)
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        print(f"build_transforms({args.size}), batch 8, {args.n} images per case; "
              f"{os.cpu_count()} CPUs, load average {load} (other processes slow every figure)")
        for name, samples in cases.items():
            for workers in args.workers:
                rate = _rate(samples, args.size, workers, with_mask=name == "png")
                extra = " (+mask)" if name == "png" else ""
                print(f"{name + extra:16s} workers={workers}: {rate:7.1f} images/s")


if __name__ == "__main__":
    main()
