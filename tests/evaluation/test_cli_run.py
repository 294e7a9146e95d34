"""``python -m adaptclip_med.evaluate`` end to end on the tiny backbone: outputs, numbers, provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adaptclip_med.metrics import aupr, auroc, average_precision, f1_max
from adaptclip_med.reporting import load_run

FUNCS = {"I-AUROC": auroc, "I-AUPR": aupr, "I-AP": average_precision, "I-F1max": f1_max}


def _recompute_image_metrics(per_image: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, class, shots): mean and population std over seeds, from the saved scores only."""
    rows = []
    for (d, c, k), g in per_image.groupby(["dataset", "class", "shots"]):
        per_seed = {m: [] for m in FUNCS}
        for _, s in g.groupby("seed"):
            for m, fn in FUNCS.items():
                per_seed[m].append(fn(s["score"].to_numpy(), s["label"].to_numpy()))
        rows.append({"dataset": d, "class": c, "shots": k,
                     **{m: np.mean(v) for m, v in per_seed.items()},
                     **{f"{m}_std": np.std(v) for m, v in per_seed.items()}})
    return pd.DataFrame(rows)


def test_outputs_exist_and_run_is_complete(synthetic_run: Path) -> None:
    run = load_run(synthetic_run)
    assert run.complete
    for name in ("per_image.csv", "summary.csv", "metrics_long.csv", "clinical.csv", "operating_points.csv",
                 "tables/main.md", "tables/main.tex", "tables/clinical.md", "prompts/folder/folder/k2_seed1.json",
                 "figures/roc_pr_folder.pdf", "figures/roc_pr_folder.png", "figures/qualitative_folder.png"):
        assert (synthetic_run / name).is_file(), name
    # 4 held-out normals are prompts; 4 normal + 4 abnormal queries; parts: k0 once, k2 for 2 seeds
    assert len(run.per_image) == 3 * 8
    assert sorted(run.per_image.groupby(["shots", "seed"]).size().index.tolist()) == [(0, 1), (2, 1), (2, 2)]
    # --overlays 2: per (class, shots) the 2 highest-scored, 2 highest normals, 2 lowest abnormals (may coincide)
    assert len(run.overlays) == len(run.overlay_index)
    assert run.overlay_index.groupby(["class", "shots"]).size().between(2, 6).all()
    tags = set(";".join(run.overlay_index["gallery"]).split(";"))
    assert tags == {"top", "false_alarm", "miss"}


def test_tables_equal_metrics_recomputed_from_per_image(synthetic_run: Path) -> None:
    run = load_run(synthetic_run)
    ours = run.summary[run.summary["class"] != "Avg"].set_index(["dataset", "class", "shots"])
    ref = _recompute_image_metrics(run.per_image).set_index(["dataset", "class", "shots"])
    for m in FUNCS:
        np.testing.assert_allclose(ours.loc[ref.index, m], ref[m], atol=1e-12)
        np.testing.assert_allclose(ours.loc[ref.index, f"{m}_std"], ref[f"{m}_std"], atol=1e-12)
    md = (synthetic_run / "tables" / "main.md").read_text()
    row = ref.loc[("folder", "folder", 2)]  # class = the label "folder", not the root "syn"
    cell = f"{100 * row['I-AUROC']:.1f} ± {100 * row['I-AUROC_std']:.1f}"
    assert cell in md and "| Avg " in md
    tex = (synthetic_run / "tables" / "main.tex").read_text()
    assert cell.replace("±", r"$\pm$") in tex and r"\toprule" in tex


def test_pixel_metrics_present_with_masks(synthetic_run: Path) -> None:
    summary = load_run(synthetic_run).summary
    row = summary[(summary["class"] == "folder") & (summary["shots"] == 2)].iloc[0]
    for m in ("P-AUROC", "P-AUPR", "P-F1max", "AUPRO"):
        assert 0.0 <= row[m] <= 1.0


def test_run_json_provenance(synthetic_run: Path) -> None:
    run = json.loads((synthetic_run / "run.json").read_text())
    assert run["status"] == "complete"
    assert run["notice"] == "untrained backbone — pipeline demo only"
    assert run["model"]["backbone"] == "adaptclip-tiny" and run["model"]["image_size"] == 224
    assert "torch" in run["versions"] and "monai" in run["versions"]
    assert "adaptclip_med.evaluate" in run["command_line"] and "--allow-random-backbone" in run["command_line"]
    assert "prompts are normal images" in run["protocol"]


def test_operating_point_saved_and_applied(synthetic_run: Path) -> None:
    ops = pd.read_csv(synthetic_run / "operating_points.csv")
    per_image = pd.read_csv(synthetic_run / "per_image.csv")
    k2 = ops[ops["shots"] == 2].iloc[0]
    assert k2["n_normals"] == 2 and np.isfinite(k2["image_threshold"])
    scores = per_image[(per_image["shots"] == 2) & (per_image["seed"] == k2["seed"])]
    flagged = scores["score"] > k2["image_threshold"]
    assert k2["at_threshold_tp"] == int((flagged & (scores["label"] == 1)).sum())
    assert k2["at_threshold_fp"] == int((flagged & (scores["label"] == 0)).sum())
    k0 = ops[ops["shots"] == 0].iloc[0]
    assert "at least 2 normal prompts" in k0["reason"]


def test_overlay_names_carry_no_identifiers(synthetic_run: Path) -> None:
    index = load_run(synthetic_run).overlay_index
    for file, path in zip(index["file"], index["path"], strict=True):
        assert Path(path).stem not in file and "case_" not in file
    assert index["vmin"].nunique() == 1 and index["vmax"].nunique() == 1  # one colour scale per run


@pytest.mark.shared
def test_shared_br35h_and_kvasir_subset(shared_datasets: Path, tmp_path: Path, tiny_args: list[str]) -> None:
    from adaptclip_med.evaluate import main

    out = tmp_path / "shared"
    roots = [f"br35h={shared_datasets / 'br35h'}", f"kvasir={shared_datasets / 'kvasir_seg'}"]
    code = main(["--datasets", "br35h", "kvasir", "--root", *roots, "--shots", "0", "--limit", "4",
                 *tiny_args, "--overlays", "0", "--no-figures", "--out", str(out)])
    assert code == 0
    run = load_run(out)
    summary = run.summary.set_index(["dataset", "class"])
    ref = _recompute_image_metrics(run.per_image[run.per_image["dataset"] == "br35h"])
    assert summary.loc[("br35h", "brain"), "I-AUROC"] == pytest.approx(ref["I-AUROC"].iloc[0], abs=1e-12)
    assert np.isnan(summary.loc[("br35h", "brain"), "P-AUPR"])           # classification-only set
    assert "no ground-truth masks" in summary.loc[("br35h", "brain"), "na_reasons"]
    assert np.isnan(summary.loc[("kvasir", "colon"), "I-AUROC"])         # polyp set: no normal images
    assert "no normal images" in summary.loc[("kvasir", "colon"), "na_reasons"]
    assert 0.0 <= summary.loc[("kvasir", "colon"), "P-AUPR"] <= 1.0
    assert "N/A" in (out / "tables" / "main.md").read_text()
    assert len(run.per_image) == 8


@pytest.mark.shared
def test_polyp_set_few_shot_with_a_user_folder_of_normal_prompts(shared_datasets: Path, tmp_path: Path,
                                                                 tiny_args: list[str]) -> None:
    from adaptclip_med.evaluate import main

    out, normals = tmp_path / "kvasir_fewshot", shared_datasets / "endo_normal_prompts" / "images"
    code = main(["--datasets", "kvasir", "--root", str(shared_datasets / "kvasir_seg"), "--normal-prompts",
                 str(normals), "--shots", "2", "--seeds", "10", "--limit", "2", *tiny_args, "--overlays", "0",
                 "--no-figures", "--out", str(out)])
    assert code == 0
    manifest = json.loads(next((out / "prompts").rglob("k2_seed10.json")).read_text())
    # from the user's folder, named relative to it (no absolute path in the outputs)
    assert [p["path"].split("/")[0] for p in manifest["prompts"]] == ["normal-prompts", "normal-prompts"]
    assert all((normals / p["path"].split("/", 1)[1]).is_file() for p in manifest["prompts"])
    assert all(len(p["sha256"]) == 64 for p in manifest["prompts"])
    summary = load_run(out).summary.set_index(["dataset", "class"])
    assert 0.0 <= summary.loc[("kvasir", "colon"), "P-AUROC"] <= 1.0


def test_normal_prompts_folder_must_exist(tmp_path: Path, synthetic_root: Path, tiny_args: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from adaptclip_med.evaluate import main

    code = main(["--datasets", "folder", "--root", str(synthetic_root), "--normal-prompts",
                 str(tmp_path / "missing"), *tiny_args, "--out", str(tmp_path / "out")])
    assert code == 2 and "--normal-prompts" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()



def test_rerender_replaces_old_overlays(synthetic_run: Path, synthetic_root: Path, tmp_path: Path,
                                        syn_args: list[str], tiny_args: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from adaptclip_med.evaluate import main

    out = tmp_path / "copy"
    shutil.copytree(synthetic_run, out)
    args = [*syn_args, "--root", str(synthetic_root), *tiny_args, "--overlays", "1", "--no-figures",
            "--out", str(out)]
    assert main(args) == 0
    assert "0 part(s) computed, 3 reused" in capsys.readouterr().out
    pngs = {p.relative_to(out).as_posix() for p in (out / "overlays").rglob("*.png")}
    index = pd.read_csv(out / "overlays" / "index.csv")
    assert pngs == set(index["file"])  # the old four removed
    # per (class, shots): the highest-scored image, highest-scored normal, lowest-scored abnormal (may coincide)
    assert index.groupby(["class", "shots"]).size().between(1, 3).all()
    assert (out / "summary.csv").read_text() == (synthetic_run / "summary.csv").read_text()
