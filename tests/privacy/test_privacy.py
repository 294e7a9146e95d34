"""adaptclip_med.runtime.privacy: pseudonyms, key file, sanitised command lines and the byte-level audit."""

from __future__ import annotations

import base64
import gzip
import io
import json
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from adaptclip_med.runtime.audit import (
    audit_run,
    collect_identifiers,
    dicom_identifiers,
    find_identifiers,
)
from adaptclip_med.runtime.errors import AdaptCLIPError, DataValidationError
from adaptclip_med.runtime.privacy import (
    PATH_PLACEHOLDER,
    Pseudonymiser,
    check_key_file,
    read_key_file,
    relative_path,
    sanitize_command,
    sanitize_settings,
    scrub,
    write_key_file,
)


def test_pseudonyms_are_salted_stable_and_keep_the_slice_index() -> None:
    a, b = Pseudonymiser(b"s" * 16), Pseudonymiser(b"t" * 16)
    key = "/pacs/PAT-12345_DOE^JOHN/ACC998877.dcm"
    assert a.key_of(key) == Pseudonymiser(b"s" * 16).key_of(key)
    assert a.key_of(key) != b.key_of(key)
    assert a.key_of(key + "#7").endswith("#7") and a.key_of(key + "#7").split("#")[0] == a.key_of(key)
    assert a.key_of(key).startswith("img-") and "PAT" not in a.key_of(key)
    assert a.group_of("PAT-12345").startswith("grp-") and a.group_of(None) is None and a.group_of("") == ""
    assert a.key[a.key_of(key)] == key
    assert scrub(f"cannot read {key}: truncated", pseudonymiser=a) == f"cannot read {a.key_of(key)}: truncated"
    assert scrub("cannot read ACC998877.dcm", pseudonymiser=a) == f"cannot read {a.key_of(key)}"  # bare name too
    assert a.salt_id == Pseudonymiser(b"s" * 16).salt_id != b.salt_id
    assert a.path_of("/pacs/x/../PAT-12345_DOE^JOHN/ACC998877.dcm#2") == a.key_of(key) + "#2"
    assert scrub("cannot read /pacs/other.dcm", folders=["/pacs"]) == "cannot read <path>/other.dcm"
    assert scrub("/pacs/ROE/x.png: truncated; see /tmp/y", "/pacs/ROE/x.png") == "<file>: truncated; see <path>"
    assert Pseudonymiser().salt != Pseudonymiser().salt  # a fresh random salt each time


def test_key_file_is_private_outside_the_run_and_restores_the_salt(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    pseud = Pseudonymiser()
    name = pseud.key_of("/pacs/PAT-1/a.dcm")
    with pytest.raises(DataValidationError, match="inside the run folder"):
        write_key_file(run / "key.json", pseud, run)
    with pytest.raises(DataValidationError, match="inside the run folder"):
        check_key_file(run / "sub" / ".." / "key.json", run)
    with pytest.raises(DataValidationError, match="is a folder"):
        check_key_file(tmp_path, run)
    key = write_key_file(tmp_path / "secure" / "key.json", pseud, run)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    data = json.loads(key.read_text(encoding="utf-8"))
    assert data["pseudonyms"] == {name: "/pacs/PAT-1/a.dcm"}
    assert read_key_file(key) == {name: "/pacs/PAT-1/a.dcm"} and read_key_file(tmp_path / "none.json") == {}
    again = Pseudonymiser.from_key_file(key)
    assert again.salt == pseud.salt and again.key_of("/pacs/PAT-1/a.dcm") == name
    (tmp_path / "bad.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(DataValidationError, match="not a pseudonym key file"):
        Pseudonymiser.from_key_file(tmp_path / "bad.json")
    assert Pseudonymiser.from_key_file(tmp_path / "absent.json").key == {}


def test_relative_path_keeps_the_deepest_root_the_prompt_prefix_and_the_slice(tmp_path: Path) -> None:
    roots = {"ct": tmp_path / "data", "prompts": tmp_path / "data" / "extra"}
    assert relative_path(str(tmp_path / "data" / "PAT-1" / "a.dcm"), roots) == "PAT-1/a.dcm"
    assert relative_path(str(tmp_path / "data" / "extra" / "n.png"), roots) == "n.png"
    assert relative_path(str(tmp_path / "data" / "vol.nii.gz") + "#12", roots) == "vol.nii.gz#12"
    assert relative_path("/elsewhere/PAT-9/x.png", roots) == "x.png"
    data, normals = tmp_path / "data", tmp_path / "normals"
    assert relative_path(normals / "n1.png", data, normals) == "normal-prompts/n1.png"
    assert relative_path(data / "normal" / "a.png", data, normals) == "normal/a.png"
    (tmp_path / "link").symlink_to(data)  # a link keeps its own name, under the folder as given
    assert relative_path(tmp_path / "link" / "a.png", tmp_path) == "link/a.png"


@pytest.mark.parametrize(("command", "expected"), [
    ("/opt/venv/bin/python -m adaptclip_med.evaluate --datasets br35h --root br35h=/pacs/PAT-1 --out runs/x "
     "--checkpoint adaptclip-mvtec --shots 0 1",
     "python -m adaptclip_med.evaluate --datasets br35h --root br35h=<path> --out <path> "
     "--checkpoint adaptclip-mvtec --shots 0 1"),
    ("python -m adaptclip_med.score scan.dcm /pacs/PAT-1 --out=runs/x --threshold 0.5 --root data",
     "python -m adaptclip_med.score <path> <path> --out=<path> --threshold 0.5 --root <path>"),
    ("python -m adaptclip_med.evaluate --pretrained /w/ViT-L-14.pt --checkpoint /ck/run --protocol 'a b'",
     "python -m adaptclip_med.evaluate --pretrained <path> --checkpoint <path> --protocol 'a b'"),
])
def test_sanitize_command_replaces_every_path(command: str, expected: str) -> None:
    assert sanitize_command(command) == expected


def test_sanitize_settings_keeps_labels_and_names() -> None:
    settings = {"datasets": ["br35h"], "roots": [["br35h", "/pacs/PAT-1"]], "out": "runs",
                "command_line": "python -m m --root /pacs", "backbone": "ViT-L-14-336",
                "checkpoint": "/ck/x", "model": {"checkpoint_file": "/ck/x/adapters.safetensors"}, "shots": [0, 1],
                "protocol": "AdaptCLIP on adaptclip-tiny/random at 224 px", "note": "a b/c d"}
    clean = sanitize_settings(settings)
    assert clean["roots"] == [["br35h", PATH_PLACEHOLDER]] and clean["out"] == PATH_PLACEHOLDER
    assert clean["command_line"] == "python -m m --root <path>"
    assert clean["backbone"] == "ViT-L-14-336" and clean["datasets"] == ["br35h"] and clean["shots"] == [0, 1]
    assert clean["checkpoint"] == clean["model"]["checkpoint_file"] == PATH_PLACEHOLDER
    assert "/pacs" not in json.dumps(clean) and "/ck" not in json.dumps(clean)
    assert clean["protocol"] == settings["protocol"] and clean["note"] == "a b/c d"  # prose is not a path
    assert sanitize_settings({"x": "/data/my scans/a.dcm", "y": "C:\\scans\\a b.dcm"}) == {
        "x": PATH_PLACEHOLDER, "y": PATH_PLACEHOLDER}


def test_collect_identifiers_reads_tags_and_names(identified_archive: Path) -> None:
    files = sorted(str(p) for p in identified_archive.rglob("*.dcm"))
    tags = dicom_identifiers(files[0])
    assert tags["DOE^JOHN"] == tags["JOHN"] == "PatientName" and tags["PAT-12345"] == "PatientID"
    assert tags["19470312"] == "PatientBirthDate" and tags["St Elsewhere General"] == "InstitutionName"
    found = collect_identifiers(files, {"ct": identified_archive}, allowed=["ct"])
    for value in ("PAT-12345_DOE^JOHN", "ACC998877", "ACC112233", "ROE^JANE", "HOUSE^GREGORY",
                  str(identified_archive.resolve()), "PAT-12345_DOE^JOHN/ACC998877.dcm"):
        assert value in found, value
    assert all(len(v) >= 4 for v in found)
    assert dicom_identifiers(identified_archive / "missing.dcm") == {}


def test_find_identifiers_looks_inside_names_text_gzip_npz_and_png_chunks(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "overlays").mkdir(parents=True)
    forbidden = {"PAT-12345": "DICOM PatientID", "ACC998877": "input file or folder name"}
    (run / "clean.csv").write_text("path,score\nimg-abc,0.5\n", encoding="utf-8")
    assert find_identifiers(run, forbidden) == []
    (run / "per_image.csv").write_text("path\nPAT-12345/x.dcm\n", encoding="utf-8")
    (run / "map.nii.gz").write_bytes(gzip.compress(b"descrip ACC998877 ..."))
    buf = io.BytesIO()
    np.savez_compressed(buf, ids=np.array(["ACC998877"]))
    (run / "maps.npz").write_bytes(buf.getvalue())
    info = PngImagePlugin.PngInfo()
    info.add_text("Source", "PAT-12345", zip=True)
    Image.new("RGB", (8, 8)).save(run / "overlays" / "001.png", pnginfo=info)
    Image.new("RGB", (8, 8)).save(run / "overlays" / "ACC998877.png")
    hits = find_identifiers(run, forbidden)
    with pytest.raises(AdaptCLIPError, match=r"3 output file\(s\) .* still contain patient data: map\.nii\.gz"):
        audit_run(run, ["/x/ACC998877.dcm"], {"set": "/x"})
    assert hits == [("map.nii.gz", "input file or folder name"), ("maps.npz", "input file or folder name"),
                    ("overlays/001.png", "DICOM PatientID"), ("overlays/ACC998877.png", "input file or folder name"),
                    ("per_image.csv", "DICOM PatientID")]


def test_find_identifiers_scans_data_uris_decoded_not_their_base64_text(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    forbidden = {"DOE3": "DICOM PatientName"}
    chance = base64.b64encode(base64.b64decode("xADOE3G2"))  # encoded text holds DOE3; the bytes do not
    assert b"DOE3" in chance and b"DOE3" not in base64.b64decode(chance)
    (run / "index.html").write_bytes(b'<img src="data:image/png;base64,' + chance + b'">')
    assert find_identifiers(run, forbidden) == []
    info = PngImagePlugin.PngInfo()
    info.add_text("Source", "DOE3^JOHN3", zip=True)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG", pnginfo=info)
    embedded = base64.b64encode(buf.getvalue())
    (run / "index.html").write_bytes(b'<p>ok</p><img src="data:image/png;base64,' + embedded + b'">')
    assert find_identifiers(run, forbidden) == [("index.html", "DICOM PatientName")]  # in the decoded PNG
    (run / "index.html").write_text("<p>DOE3</p>", encoding="utf-8")
    assert find_identifiers(run, forbidden) == [("index.html", "DICOM PatientName")]  # plain text


def test_values_that_cannot_identify_anyone_are_not_forbidden(tmp_path: Path) -> None:
    """pydicom's MR_small: NameOfPhysiciansReadingStudy ``----``, StationName ``000000000`` are placeholders."""
    from pydicom.data import get_testdata_file

    from adaptclip_med.runtime.privacy import can_identify

    assert not any(can_identify(v) for v in ("", "   ", "----", "000000000", "AB", "^^^", "1111"))
    assert all(can_identify(v) for v in ("DOE^JOHN", "PAT-12345", "19470312", "1.2.840.1"))
    tags = dicom_identifiers(get_testdata_file("MR_small.dcm"))
    assert "----" not in tags and "000000000" not in tags and "CompressedSamples^MR1" in tags
    assert "TOSHIBA" not in tags  # InstitutionName, but inside the Manufacturer the profile keeps (TOSHIBA_MEC)
    run = tmp_path / "run"
    run.mkdir()
    (run / "table.md").write_text("| a | b |\n|----|----|\n| 0000000000 | 1 |\n", encoding="utf-8")
    audit_run(run, [get_testdata_file("MR_small.dcm")], {"set": Path(get_testdata_file("MR_small.dcm")).parent})
