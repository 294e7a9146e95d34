"""``evaluate --anonymize``: no output file carries a patient identifier; the key lives outside the run.

The input is a PACS-style export with identifiers in the DICOM tags AND in the folder and file names
(``normal/PAT-12340_DOE0^JOHN0/ACC998870_0.dcm``); every byte of every output file is scanned.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
import os
import re
import stat
from pathlib import Path

import pandas as pd

from adaptclip_med.runtime.audit import collect_identifiers, find_identifiers

TINY = ["--backbone", "adaptclip-tiny", "--pretrained", "none", "--checkpoint", "none", "--allow-random-backbone",
        "--image-size", "224", "--bootstrap", "20", "--shots", "0", "2", "--seeds", "1", "--overlays", "3"]


def _evaluate(args: list[str]) -> tuple[int, str, str]:
    from adaptclip_med.evaluate import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def _forbidden(root: Path) -> dict[str, str]:
    inputs = [str(p) for p in root.rglob("*") if p.is_file() or (p.is_dir() and p.parent.name == "normal")]
    found = collect_identifiers(inputs, {"ct": root}, allowed=["ct", "archive"])
    for value in ("DOE0^JOHN0", "PAT-12340", "ACC998870", "19470312", "St Elsewhere General",
                  "HOUSE^GREGORY", "PAT-55555_EMPTY^CASE", str(root.resolve())):
        assert value in found, value  # the audit list covers tags, names and the root
    return found


def test_anonymized_run_has_no_identifier_in_any_output_byte(identified_folder_set: Path, tmp_path: Path) -> None:
    out, key = tmp_path / "run", tmp_path / "private" / "key.json"
    code, stdout, stderr = _evaluate(["--datasets", "ct=folder", "--root", f"ct={identified_folder_set}", *TINY,
                                      "--anonymize", "--key-file", str(key), "--out", str(out)])
    assert code == 0, stderr
    assert (out / "index.html").is_file() and (out / "per_image.csv").is_file()
    hits = find_identifiers(out, _forbidden(identified_folder_set))
    assert hits == [], hits
    per_image = pd.read_csv(out / "per_image.csv")
    assert per_image["path"].str.match(r"^img-[0-9a-f]{12}(#\d+)?$").all(), per_image["path"].tolist()
    skipped = pd.read_csv(out / "skipped.csv")
    assert len(skipped) == 1 and skipped["path"].iloc[0].startswith("img-")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    mapping = json.loads(key.read_text(encoding="utf-8"))["pseudonyms"]
    # the key maps back to the identifying input paths (which patients are test images depends on the hold-out)
    assert any(re.search(r"/normal/PAT-1234\d_DOE\d\^JOHN\d", v) for v in mapping.values())
    assert set(per_image["path"].str.split("#").str[0]) <= set(mapping)
    assert str(key) in stdout  # the console says where the key went

    # the same key file: the same pseudonyms (a resumed or repeated run names images the same)
    again = tmp_path / "run2"
    assert _evaluate(["--datasets", "ct=folder", "--root", f"ct={identified_folder_set}", *TINY, "--anonymize",
                      "--key-file", str(key), "--out", str(again)])[0] == 0
    assert sorted(pd.read_csv(again / "per_image.csv")["path"]) == sorted(per_image["path"])


def test_key_file_inside_the_run_folder_is_refused(identified_folder_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, _, stderr = _evaluate(["--datasets", "ct=folder", "--root", f"ct={identified_folder_set}", *TINY,
                                 "--anonymize", "--key-file", str(out / "key.json"), "--out", str(out)])
    assert code == 2 and "inside the run folder" in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_shared_outputs_of_a_plain_run_carry_no_identifier(identified_folder_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, _, stderr = _evaluate(["--datasets", "ct=folder", "--root", f"ct={identified_folder_set}", *TINY,
                                 "--out", str(out)])
    assert code == 0, stderr
    forbidden = _forbidden(identified_folder_set)
    shared = [out / "index.html", *sorted((out / "tables").iterdir())]
    assert find_identifiers(out, forbidden, files=shared) == []  # embedded images are scanned decoded
    names = [p.relative_to(out).as_posix() for sub in ("figures", "overlays") for p in (out / sub).rglob("*")]
    assert names and not [n for n in names if any(v in n for v in forbidden)]
    per_image = pd.read_csv(out / "per_image.csv")  # local tracing: root-relative paths, never absolute
    assert not per_image["path"].str.startswith("/").any()
    assert per_image["path"].str.startswith(("normal/", "abnormal/")).all()
    assert find_identifiers(out, forbidden) != []  # the local CSVs do name the files: --anonymize is for that
    # patient group ids: keyed with this installation's secret (0600, in the user cache), not a bare hash
    secret_file = Path(os.environ["ADAPTCLIP_CACHE_DIR"]) / "install-secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = bytes.fromhex(secret_file.read_text().strip())
    patients = [f"PAT-1234{i}" for i in range(9)]
    unkeyed = {f"pt-{hashlib.sha256(f'adaptclip_med pt:{p}'.encode()).hexdigest()[:16]}" for p in patients}
    keyed = {f"pt-{hmac.new(secret, f'adaptclip_med pt:{p}'.encode(), hashlib.sha256).hexdigest()[:16]}"
             for p in patients}
    groups = set(per_image["group"].dropna())
    assert groups and groups <= keyed and not groups & unkeyed
