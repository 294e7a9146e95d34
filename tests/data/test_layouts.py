"""Each publisher's tree, generated small in the test, read by its loader; errors for wrong trees."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from adaptclip_med.data import build_transforms, list_datasets, load_dataset
from adaptclip_med.runtime.errors import DataValidationError, ImageReadError, PromptError


def _img(path: Path, value: int = 120, size: tuple[int, int] = (24, 32), ext_mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full(size, value, np.uint8)
    arr[0, 0] = 0
    Image.fromarray(arr).convert(ext_mode).save(path)
    return path


def _mask(path: Path, size: tuple[int, int] = (24, 32)) -> Path:
    arr = np.zeros(size, np.uint8)
    arr[5:10, 5:10] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _counts(index) -> tuple[int, int, int]:
    c = index.counts()
    return tuple(sum(v[k] for v in c.values()) for k in ("normal", "abnormal", "masks"))


def test_mvtec_and_mpdd(tmp_path):
    for cls in ("bottle", "screw"):
        for i in range(3):
            _img(tmp_path / cls / "train" / "good" / f"{i:03d}.png")
        _img(tmp_path / cls / "test" / "good" / "000.png")
        for defect in ("crack", "scratch"):
            _img(tmp_path / cls / "test" / defect / "000.png", 200)
            _mask(tmp_path / cls / "ground_truth" / defect / "000_mask.png")
    for name in ("mvtec", "mpdd"):
        index = load_dataset(name, tmp_path)
        assert index.classes == ["bottle", "screw"]
        assert _counts(index) == (8, 4, 4)
        assert {len(v) for v in index.prompt_pool.values()} == {3}
        assert all(r.split == "train" for v in index.prompt_pool.values() for r in v)
        rec = next(r for r in index.records if r.label == 1)
        assert rec.mask.endswith("000_mask.png")
        assert build_transforms(16)(rec.as_dict())["mask"].sum() > 0


def test_mvtec_missing_mask_is_reported(tmp_path):
    _img(tmp_path / "bottle" / "train" / "good" / "000.png")
    _img(tmp_path / "bottle" / "test" / "crack" / "000.png")
    index = load_dataset("mvtec", tmp_path)
    assert index.problems and "mask missing" in index.problems[0][1]
    with pytest.raises(DataValidationError, match="strict"):
        load_dataset("mvtec", tmp_path, strict=True)


def test_btad(tmp_path):
    _img(tmp_path / "01" / "train" / "ok" / "0000.bmp")
    _img(tmp_path / "01" / "test" / "ok" / "0001.bmp")
    _img(tmp_path / "01" / "test" / "ko" / "0002.bmp", 220)
    _mask(tmp_path / "01" / "ground_truth" / "ko" / "0002.png")
    index = load_dataset("btad", tmp_path)
    assert _counts(index) == (2, 1, 1) and index.prompt_pool["01"][0].image.endswith("0000.bmp")


def test_visa_with_and_without_split_csv(tmp_path):
    for i in range(2):
        _img(tmp_path / "candle" / "Data" / "Images" / "Normal" / f"{i:04d}.JPG", ext_mode="RGB")
    _img(tmp_path / "candle" / "Data" / "Images" / "Anomaly" / "000.JPG", 210, ext_mode="RGB")
    _mask(tmp_path / "candle" / "Data" / "Masks" / "Anomaly" / "000.png")
    index = load_dataset("visa", tmp_path, holdout=1, dedupe_holdout=False)
    assert _counts(index) == (2, 1, 1) and len(index.prompt_pool["candle"]) == 1
    (tmp_path / "split_csv").mkdir()
    (tmp_path / "split_csv" / "1cls.csv").write_text(
        "object,split,label,image,mask\n"
        "candle,train,normal,candle/Data/Images/Normal/0000.JPG,\n"
        "candle,test,normal,candle/Data/Images/Normal/0001.JPG,\n"
        "candle,test,anomaly,candle/Data/Images/Anomaly/000.JPG,candle/Data/Masks/Anomaly/000.png\n")
    index = load_dataset("visa", tmp_path)
    assert [r.split for r in index.prompt_pool["candle"]] == ["train"] and len(index.records) == 2


def test_headct(tmp_path):
    for i in range(6):
        _img(tmp_path / "head_ct" / "head_ct" / f"{i:03d}.png", 50 + 10 * i)
    (tmp_path / "labels.csv").write_text("id, hemorrhage\n" + "".join(f"{i}, {int(i >= 3)}\n" for i in range(5)))
    index = load_dataset("headct", tmp_path, holdout=1, dedupe_holdout=False)
    assert _counts(index) == (3, 2, 0)
    assert any("005" in p and "no row" in why for p, why in index.problems)


@pytest.mark.parametrize(("name", "images", "masks", "mask_name"), [
    ("kvasir", "Kvasir-SEG/images", "Kvasir-SEG/masks", "{}.jpg"),
    ("endo", "segmented-images/images", "segmented-images/masks", "{}.jpg"),
    ("clinicdb", "CVC-ClinicDB/Original", "CVC-ClinicDB/Ground Truth", "{}.tif"),
    ("colondb", "CVC-ColonDB/images", "CVC-ColonDB/masks", "{}.png"),
    ("isic", "ISBI2016_ISIC_Part1_Test_Data", "ISBI2016_ISIC_Part1_Test_GroundTruth", "{}_Segmentation.png"),
])
def test_lesion_only_sets(tmp_path, name, images, masks, mask_name):
    ext = Path(mask_name).suffix
    for i in range(3):
        _img(tmp_path / images / f"{i + 1}{ext if ext != '.png' else '.jpg'}", ext_mode="RGB")
        _mask(tmp_path / masks / mask_name.format(i + 1))
    index = load_dataset(name, tmp_path)
    assert _counts(index) == (0, 3, 3) and not index.problems and not index.has_normals
    with pytest.raises(PromptError, match="normal_prompts"):
        from adaptclip_med.data import draw_prompts

        draw_prompts(index, index.classes[0], 1, seed=0)
    out = build_transforms(16)(index.records[0].as_dict())
    assert out["mask"].sum() > 0


def test_covid19_v1_and_newer_layout(tmp_path):
    for sub in ("COVID-19 Radiography Database/NORMAL", "COVID-19 Radiography Database/COVID-19"):
        for i in range(3):
            _img(tmp_path / "v1" / sub / f"x{i}.png", 30 * i + 10)
    for sub in ("COVID-19_Radiography_Dataset/Normal/images", "COVID-19_Radiography_Dataset/COVID/images"):
        for i in range(2):
            _img(tmp_path / "v4" / sub / f"x{i}.png")
    assert _counts(load_dataset("covid19", tmp_path / "v1", holdout=1, dedupe_holdout=False)) == (3, 3, 0)
    assert _counts(load_dataset("covid19", tmp_path / "v4", holdout=1, dedupe_holdout=False)) == (2, 2, 0)


def test_unknown_name_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match=r"br35h.*mvtec"):
        load_dataset("mvtek", tmp_path)
    with pytest.raises(DataValidationError, match=r"yes.*not found"):
        load_dataset("brain_mri", tmp_path)
    for name in list_datasets():
        with pytest.raises(DataValidationError, match=rf"{name}: data set folder .*nowhere.* not found"):
            load_dataset(name, tmp_path / "nowhere")
    (tmp_path / "head_ct").mkdir()
    with pytest.raises(DataValidationError, match=r"labels\.csv"):
        load_dataset("headct", tmp_path)
    with pytest.raises(DataValidationError, match="root=None"):
        load_dataset("kvasir", None)
    assert {"folder", "volume", "meta", "br35h", "visa"} <= set(list_datasets())


def test_empty_class_folder_and_zero_byte_file_are_reported(tmp_path):
    (tmp_path / "yes").mkdir()
    _img(tmp_path / "no" / "a.png")
    _img(tmp_path / "no" / "b.png")
    (tmp_path / "no" / "empty.png").write_bytes(b"")
    index = load_dataset("brain_mri", tmp_path, holdout=0)
    problems = dict(index.problems)
    assert "empty folder" in problems[str(tmp_path / "yes")]
    assert "0 bytes" in problems[str(tmp_path / "no" / "empty.png")]
    assert len(index.records) == 2


def _cvc_tiffs(root: Path, n: int = 3) -> None:
    """CVC-ClinicDB as published: ``Original/<i>.tif`` 3-samples-per-pixel RGB, ``Ground Truth/<i>.tif``."""
    import tifffile

    rng = np.random.default_rng(0)
    for d in ("Original", "Ground Truth"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        rgb = rng.integers(0, 255, (3, 28, 36), dtype=np.uint8)  # planar: one plane per sample
        tifffile.imwrite(root / "Original" / f"{i}.tif", rgb, photometric="rgb", planarconfig="separate")
        mask = np.zeros((28, 36, 3), np.uint8)
        mask[5:12, 6:14] = 255
        tifffile.imwrite(root / "Ground Truth" / f"{i}.tif", mask, photometric="minisblack", planarconfig="contig")


def test_clinicdb_publisher_tiffs_count_right(tmp_path):
    _cvc_tiffs(tmp_path / "CVC-ClinicDB")
    index = load_dataset("clinicdb", tmp_path)
    assert _counts(index) == (0, 3, 3) and not index.problems
    empty = np.zeros((28, 36, 3), np.uint8)
    import tifffile

    tifffile.imwrite(tmp_path / "CVC-ClinicDB" / "Ground Truth" / "2.tif", empty, photometric="minisblack")
    tifffile.imwrite(tmp_path / "CVC-ClinicDB" / "Ground Truth" / "9.tif", empty, photometric="minisblack")
    index = load_dataset("clinicdb", tmp_path)
    problems = {Path(p).name: why for p, why in index.problems}
    warnings = {Path(p).name: why for p, why in index.warnings}
    assert _counts(index) == (0, 3, 3)  # the abnormal image with an empty mask is kept (publisher's label)
    assert set(problems) == {"9.tif"} and "without its image" in problems["9.tif"]
    assert set(warnings) == {"2.tif"} and "empty (no foreground pixel)" in warnings["2.tif"]
    assert "kept" in warnings["2.tif"]


def test_every_layout_lists_unusable_files(tmp_path):
    """MVTec-like trees: a folder named like an image, a 1x1 image, a mask without image (skipped); an empty
    mask (kept, warned)."""
    root = tmp_path / "mvtec"
    _img(root / "bottle" / "train" / "good" / "000.png")
    _img(root / "bottle" / "train" / "good" / "001.png", size=(1, 1))
    (root / "bottle" / "test" / "good" / "dir.png").mkdir(parents=True)
    _img(root / "bottle" / "test" / "crack" / "000.png")
    _mask(root / "bottle" / "ground_truth" / "crack" / "000_mask.png")
    _img(root / "bottle" / "test" / "crack" / "001.png")
    _img(root / "bottle" / "ground_truth" / "crack" / "001_mask.png", value=0)
    _mask(root / "bottle" / "ground_truth" / "crack" / "007_mask.png")
    index = load_dataset("mvtec", root)
    problems = {str(Path(p).relative_to(root)): why for p, why in index.problems}
    assert set(problems) == {"bottle/train/good/001.png", "bottle/test/good/dir.png",
                             "bottle/ground_truth/crack/007_mask.png"}
    assert "1x1" in problems["bottle/train/good/001.png"] and "folder" in problems["bottle/test/good/dir.png"]
    assert "without its image" in problems["bottle/ground_truth/crack/007_mask.png"]
    assert [(str(Path(p).relative_to(root)), "empty" in why) for p, why in index.warnings] == [
        ("bottle/test/crack/001.png", True)]
    assert _counts(index) == (1, 2, 2)
    with pytest.raises(DataValidationError) as err:
        load_dataset("mvtec", root, strict=True)
    assert len(str(err.value).splitlines()) == 1 and "strict mode" in str(err.value)


def test_meta_json_items_are_screened_once_per_file(tmp_path):
    import json

    _img(tmp_path / "a.png")
    (tmp_path / "zero.nii.gz").write_bytes(b"")
    _img(tmp_path / "b.png")
    _img(tmp_path / "b_mask.png", value=0)  # an empty mask of an abnormal image
    item = {"cls_name": "x", "specie_name": "good", "mask_path": ""}
    meta = {"test": {"x": [{**item, "img_path": "a.png", "anomaly": 0},
                           {**item, "img_path": "zero.nii.gz", "anomaly": 0, "slice_index": 0},
                           {**item, "img_path": "zero.nii.gz", "anomaly": 0, "slice_index": 1},
                           {**item, "img_path": "b.png", "mask_path": "b_mask.png", "anomaly": 1}]}}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    index = load_dataset("meta", tmp_path, holdout=0, dedupe_holdout=False)
    problems = [(Path(p).name, why) for p, why in index.problems]
    assert [p for p, _ in problems] == ["zero.nii.gz"] and "0 bytes" in problems[0][1]
    assert [(Path(p).name, "empty (no foreground" in why) for p, why in index.warnings] == [("b.png", True)]
    assert [Path(r.image).name for r in index.records] == ["a.png", "b.png"]


def test_long_thin_images_are_refused_above_8_to_1_and_warned_of_above_3_to_1(tmp_path):
    """Every image is squashed to the model's square: a 4000x8 strip means nothing, a 4:1 image is distorted."""
    root = tmp_path / "mvtec"
    _img(root / "bottle" / "train" / "good" / "000.png")
    _img(root / "bottle" / "test" / "good" / "000.png")
    _img(root / "bottle" / "test" / "good" / "strip.png", size=(8, 4000))
    _img(root / "bottle" / "test" / "good" / "wide.png", size=(16, 64))
    index = load_dataset("mvtec", root)
    problems = {Path(p).name: why for p, why in index.problems}
    warnings = {Path(p).name: why for p, why in index.warnings}
    assert set(problems) == {"strip.png"} and "aspect ratio 500:1 (above 8:1)" in problems["strip.png"]
    assert set(warnings) == {"wide.png"} and "aspect ratio 4.0:1 (above 3:1)" in warnings["wide.png"]
    assert _counts(index) == (3, 0, 0)
    with pytest.raises(ImageReadError, match=r"strip\.png: image is 8x4000 pixels \(HxW\), aspect ratio 500:1"):
        build_transforms(32)({"image": str(root / "bottle" / "test" / "good" / "strip.png")})
