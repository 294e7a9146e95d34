"""``run_scoring(config)``: score unlabelled images, volumes and DICOM series; resumable; written atomically.

Each 2-D image (an image file, a NIfTI slice, a DICOM slice or frame) is read through the same
:func:`adaptclip_med.data.build_transforms` pipeline as evaluation and encoded by the same loop
(:mod:`adaptclip_med.features.encode`; with ``model.feature_cache`` the persistent feature store shared
with ``evaluate`` and ``train`` is consulted first, so an image either of them encoded costs no
backbone pass). Its score and map go to the run's result record (:class:`~.scorer.ResultRecord`,
``cache/<key>.npz``), where ``key`` hashes the file's bytes (SHA-256), the slice index and the run's
fingerprint: the one reuse key (:func:`adaptclip_med.runtime.keys.reuse_key`, as an evaluation part's):
code fingerprint, library versions, the model's parts (backbone config content and architecture,
weights and checkpoint bytes, adapter config, device type, precision:
:func:`adaptclip_med.evaluation.keys.model_content`), batch size, settings (backbone, weights tag,
checkpoint, image size) and the normal images' bytes. A re-run reuses what it finds and rebuilds the
tables and files from it; under another key it says why it scores again (``ScoreResult.why``).
Layout of ``--out``: docs/scoring.md.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from adaptclip_med.evaluation.config import EvalConfig
from adaptclip_med.evaluation.keys import ContentHasher, model_content
from adaptclip_med.evaluation.run import open_store
from adaptclip_med.features.encode import EncodeStats, FeatureStore, encode_prompts
from adaptclip_med.features.memory import device_batch
from adaptclip_med.features.store import FeatureStore as DiskStore
from adaptclip_med.loading.factory import load_model_for
from adaptclip_med.metrics.operating_point import is_anomalous
from adaptclip_med.reporting import provenance as P
from adaptclip_med.reporting.labels import notice_of
from adaptclip_med.reporting.overlay_file import write_overlay
from adaptclip_med.roi.gate import GateConfig
from adaptclip_med.runtime import privacy as PV
from adaptclip_med.runtime.audit import audit_run
from adaptclip_med.runtime.errors import AdaptCLIPError
from adaptclip_med.runtime.io import atomic_path, atomic_write_json
from adaptclip_med.runtime.keys import Key, reuse_key
from adaptclip_med.runtime.locks import hold
from adaptclip_med.scoring import applicability as A
from adaptclip_med.scoring import folder as F
from adaptclip_med.scoring import outputs as O
from adaptclip_med.scoring.dicom_export import export_dicom
from adaptclip_med.scoring.inputs import Study, discover
from adaptclip_med.scoring.scorer import ResultRecord, Scorer, scrub, unit_record
from adaptclip_med.scoring.slice_refs import COLUMNS as REF_COLUMNS
from adaptclip_med.scoring.slice_refs import SliceRef, slice_refs

OVERLAY_MODES = ("peak", "all", "none")
#: Words every run writes (levels, folders, descriptions): a folder of that name is not flagged by the audit.
OUTPUT_WORDS = ("image", "slice", "frame", "series", "volume", "multiframe", "overlays", "overlay", "volumes",
                "dicom", "cache", "prompts", "normals", "scores", "skipped", "anomaly", "score", "AdaptCLIP")


@dataclass(frozen=True)
class ScoreConfig:
    """Everything one ``score`` run needs.

    Attributes:
        inputs: files or folders to score (searched recursively).
        out: output folder (re-use it to resume).
        model: the model and device settings, as for ``evaluate`` (an :class:`EvalConfig` without data
            sets: ``backbone``, ``pretrained``, ``checkpoint``, ``image_size``, ``allow_random_backbone``,
            ``device``, ``batch_size``, ``feature_cache`` / ``feature_cache_max_gb`` (the feature
            store shared with ``evaluate`` and ``train``), and the calibration targets
            ``target_specificity`` / ``pixel_specificity``); model loading and calibration are shared
            with evaluation.
        normals: folder of normal images of the same kind (few-shot prompts; >= 2 also calibrate the
            threshold by leave-one-out); at most ``max_normals`` are used, evenly spaced.
        threshold: image-score threshold (overrides the calibrated one).
        pixel_threshold: map threshold of contours and Segmentations (default: calibrated, else ``threshold``).
        topk: slices averaged in a volume's ``topk_mean``.
        overlays: ``"peak"`` (each image; a volume's peak slice), ``"all"`` (every slice) or ``"none"``.
        dicom: write Parametric Map / Segmentation / Secondary Captures for DICOM sources.
        anonymize: pseudonyms instead of names in every output; ``key_file`` receives the key.
        command_line: recorded in ``run.json`` (not under ``anonymize``).
        replace: ``out`` may hold another run's results (other inputs or settings): replace them.
    """

    inputs: tuple[str, ...]
    out: str = "reports/score"
    model: EvalConfig = field(default_factory=lambda: EvalConfig(datasets=(), roots=()))
    normals: str | None = None
    max_normals: int = 16
    threshold: float | None = None
    pixel_threshold: float | None = None
    topk: int = 3
    overlays: str = "peak"
    dicom: bool = True
    anonymize: bool = False
    key_file: str | None = None
    command_line: str = ""
    replace: bool = False
    roi: str = "none"
    gate: GateConfig = field(default_factory=lambda: GateConfig(enabled=False))

    @property
    def untrained(self) -> bool:
        """Random backbone weights or untrained adapters: outputs are pipeline demos only."""
        return self.model.pretrained is None or self.model.checkpoint is None


@dataclass
class ScoreResult:
    """What :func:`run_scoring` wrote: counts and the main files."""

    out: Path
    scored: int = 0
    reused: int = 0
    skipped: int = 0
    encodes: EncodeStats = field(default_factory=EncodeStats)
    store_note: str = ""
    overlays: int = 0
    dicom_files: list[str] = field(default_factory=list)
    nifti_files: list[str] = field(default_factory=list)
    notice: str | None = None
    why: str = ""
    notes: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


class _Namer:
    """Names in outputs: root-relative names, or salted pseudonyms (``img-<12 hex>``) under ``--anonymize``."""

    def __init__(self, config: ScoreConfig) -> None:
        PV.check_key_file(config.key_file, config.out)
        self.key_file = config.key_file
        self.pseudo = PV.Pseudonymiser.from_key_file(config.key_file) if config.anonymize else None

    def __call__(self, name: str, path: str | Path | None = None, suffix: str = "") -> str:
        """``name``, or the pseudonym of the resolved ``path`` (+ ``suffix``, e.g. ``/series-3``)."""
        if self.pseudo is None:
            return name
        return self.pseudo.name(f"{Path(path).resolve()}{suffix}" if path is not None else name)


def _load_normals(config: ScoreConfig, namer: _Namer, hasher: ContentHasher) -> tuple[list[Any], list[dict]]:
    """The normal images as records of the encode path (at most ``max_normals``, evenly spaced) and their manifest."""
    if not config.normals:
        return [], []
    studies, _ = discover([config.normals])
    # every image and series slice; the middle slice / frame of a volume or multi-frame file
    units = [u for s in studies for u in (s.units if s.kind in ("image", "series") else [s.units[len(s.units) // 2]])]
    if len(units) > config.max_normals:
        units = [units[round(float(i))] for i in np.linspace(0, len(units) - 1, config.max_normals)]
    if not units:
        msg = f"--normals {config.normals}: no readable normal images found; expected PNG/JPEG/TIFF/DICOM/NIfTI files"
        raise AdaptCLIPError(msg)
    root = Path(config.normals)
    manifest = []
    for unit in units:
        rel = Path(unit.path).relative_to(root).as_posix() if root.is_dir() else Path(unit.path).name
        name = namer(f"normals/{rel}", unit.path)
        manifest.append({"image": name, "slice_index": unit.slice_index, "sha256": hasher.file(unit.path)})
    return [unit_record(u) for u in units], manifest


def _threshold(config: ScoreConfig, model: Any, feats: list[Any] | None) -> dict[str, Any]:
    """The operating point: given on the command line, or by leave-one-out over the normals' features."""
    from adaptclip_med.evaluation.score import leave_one_out

    info: dict[str, Any] = {"image_threshold": config.threshold, "pixel_threshold": config.pixel_threshold}
    if config.threshold is None and config.pixel_threshold is None:
        op, reason = leave_one_out(model, feats, config.model)
        if op is None:
            info["source"] = f"none ({reason}; pass --threshold or --normals with >= 2 images)"
            return info
        info.update(op.to_dict())
        info["source"] = f"calibrated by leave-one-out over {op.n_normals} normal images"
        return info
    if info["pixel_threshold"] is None:
        info["pixel_threshold"] = config.threshold
    info["source"] = "given on the command line"
    return info


def _fingerprint(config: ScoreConfig, model: Any, manifest: list[dict], hasher: ContentHasher) -> Key:
    """The run's reuse key of everything but the image (:func:`adaptclip_med.runtime.keys.reuse_key`): the
    model's parts (weights and checkpoint bytes, config, architecture, device, precision), batch size,
    settings and the normals' bytes."""
    m = config.model
    return reuse_key(**model_content(model, hasher), batch_size=m.batch_size, images=[n["sha256"] for n in manifest],
                     settings={"backbone": m.backbone, "pretrained": m.pretrained, "checkpoint": m.checkpoint,
                               "image_size": int(model.image_size), "axis": 2})


def _study_rows(study: Study, sid: str, results: list[Any], thr: dict[str, Any], config: ScoreConfig,
                overlay_of: dict[int, str], notice: str | None, skipped: list[tuple[str, str]],
                refs: list[SliceRef]) -> list[dict]:
    level = {"image": "image", "nifti": "slice", "series": "slice", "multiframe": "frame"}[study.kind]
    rows, scores = [], []
    reasons = {item for item in results if isinstance(item, str)}
    if study.kind != "image" and len(reasons) == 1 and all(isinstance(item, str) for item in results):
        skipped.append((sid, reasons.pop()))  # the whole file or series failed: one row, not one per frame
        return []
    for k, item in enumerate(results):
        uid = sid if study.kind == "image" else f"{sid}#{k}"
        if isinstance(item, str):
            skipped.append((uid, item))
            continue
        above = None if thr["image_threshold"] is None else is_anomalous(item["score"], thr["image_threshold"])
        rows.append({"id": uid, "level": level, "slice": None if study.kind == "image" else k, "score": item["score"],
                     "above_threshold": above, "overlay": overlay_of.get(k, ""), "notice": notice or "",
                     **refs[k].columns})
        scores.append((k, item["score"]))
    if study.is_volume and scores:
        summary = O.volume_summary([s for _, s in scores], config.topk)
        above = None if thr["image_threshold"] is None else is_anomalous(summary["score"], thr["image_threshold"])
        peak = scores[int(summary["peak_slice"])][0]
        rows.append({"id": sid, "level": {"nifti": "volume"}.get(study.kind, study.kind), "score": summary["score"],
                     "topk_mean": summary["topk_mean"], "peak_slice": peak,
                     "above_threshold": above, "notice": notice or "", **refs[peak].columns})  # the peak's
    return rows


def run_scoring(config: ScoreConfig, store: FeatureStore | None = None) -> ScoreResult:
    """Check ``--out`` (before the model loads), hold its lock (and the feature store's) and score.

    The run owns ``out`` through its manifest (:mod:`adaptclip_med.scoring.folder`): results of other
    inputs or settings there are refused unless ``config.replace``; only files an earlier run recorded
    are deleted.

    Raises:
        AdaptCLIPError: as :func:`_score`, ``out`` unusable, taken by another run, or holding other results.
    """
    out = Path(config.out)
    F.check_out(out)
    fields = ("max_normals", "threshold", "pixel_threshold", "topk", "overlays", "dicom", "anonymize")
    model = config.model
    sig = F.signature(config.inputs, config.normals, {
        **{k: getattr(config, k) for k in fields}, "backbone": model.backbone,
        "pretrained": model.pretrained, "checkpoint": model.checkpoint, "image_size": model.image_size,
        "target_specificity": model.target_specificity,
        **({"applicability": A.settings(config.roi, config.gate)} if A.active(config.roi, config.gate) else {})})
    with ExitStack() as stack:
        stack.enter_context(hold(out))
        if model.feature_cache:
            stack.enter_context(hold(model.feature_cache))
        old = F.claim(out, sig, config.replace)
        return _score(config, store, old, sig)


def _score(config: ScoreConfig, store: FeatureStore | None, old: dict | None, sig: dict) -> ScoreResult:
    """Score every input and write ``scores.csv``, ``skipped.csv``, overlays, NIfTI / DICOM maps, ``run.json``.

    Args:
        config: the run's settings.
        store: a feature store consulted before the backbone (normals and images); default: the one of
            ``config.model.feature_cache``, if set (the store ``evaluate`` and ``train`` share).

    Raises:
        AdaptCLIPError: nothing to score, bad ``--normals`` / ``--key-file``, or the model cannot load.
    """
    from adaptclip_med.data import build_transforms

    if config.overlays not in OVERLAY_MODES:
        msg = f"--overlays {config.overlays!r}: expected one of {', '.join(OVERLAY_MODES)}"
        raise AdaptCLIPError(msg)
    out, namer = Path(config.out), _Namer(config)
    studies, problems = discover(config.inputs, exclude=[out])
    notes_out = [f"note: --out lies inside the input {'(name withheld: --anonymize)' if config.anonymize else p}: "
                 "its files are not read as input"
                 for p in F.inside(out, [*config.inputs, *([config.normals] if config.normals else [])])]
    skipped = [(namer(name), scrub(reason)) for name, reason in problems]
    if not studies:
        _write_csv(out / "skipped.csv", pd.DataFrame(skipped, columns=["id", "reason"]))
        raise AdaptCLIPError(_nothing_msg(config, skipped, out))
    model = load_model_for(config.model)
    notice = notice_of(config.model)  # evaluate's notice: untrained backbone vs untrained adapters
    marked = {"notice": notice} if notice else {}  # JSON files: the key only for an untrained model
    transform = build_transforms(model.image_size, with_mask=False)
    hasher = ContentHasher()
    store = store if store is not None else open_store(config.model, model, hasher)
    result = ScoreResult(out, notice=notice, notes=notes_out)
    normals, manifest = _load_normals(config, namer, hasher)
    feats = None  # the normals, encoded once (the one encode path): prompt bank and calibration
    if normals:
        encoded = encode_prompts(normals, model, transform, batch_size=config.model.batch_size, store=store,
                                 stats=result.encodes)
        feats = [encoded[r.key] for r in normals]
    thr = _threshold(config, model, feats)
    if config.normals and thr["image_threshold"] is None:
        result.notes.append(f"note: no threshold calibrated on --normals: {thr['source'].removeprefix('none (')[:-1]};"
                            " above_threshold stays empty")
    key = _fingerprint(config, model, manifest, hasher)
    settings, fingerprint = key.parts, key.digest
    bank = None if feats is None else model.bank_from_features(feats)
    record = ResultRecord(out / "cache", key, hasher)
    result.why = record.why
    scorer = Scorer(model, transform, bank, record, config.model.batch_size, store=store, stats=result.encodes)
    gated = A.active(config.roi, config.gate)  # --roi / the gate: decided per unit before encoding
    scorer.details = gated
    normal_g = A.normal_globals(feats) if gated else (None, None)
    # without normals: the zero-shot prompts rule (text encoded once; noise with a random backbone)
    prompts = A.prompt_texts(model, config.gate, config.model.pretrained is None) if gated and feats is None \
        else None
    rows, notes, warned, index = [], {}, {}, {}
    with tqdm(total=sum(len(s.units) for s in studies), desc="scoring", unit="img", disable=None) as bar:
        for study in studies:
            series = study.kind == "series"
            sid = namer(study.name, study.dicom_files[0].parent if series else study.units[0].path,
                        f"/{study.name.rsplit('/', 1)[-1]}" if series else "")
            if study.notes:  # a DICOM series' gaps / duplicate slices: on screen and in run.json "warnings"
                warned[sid] = [scrub(n) for n in study.notes]
                for note in warned[sid]:
                    tqdm.write(f"warning: {sid}: {note}", file=sys.stderr)
            keep = (bool(study.dicom_files) and config.dicom) or config.overlays == "all"
            plan = A.plan_study(study, config.roi, config.gate) if gated else None
            results = scorer.score(study.units if plan is None else [study.units[k] for k in plan.score],
                                   keep_pictures=keep, bar=bar)
            if plan is not None:
                bar.update(len(study.units) - len(plan.score))
                results = plan.merge(study, results, *normal_g, prompts=prompts)
            refs = slice_refs(study, namer.pseudo)  # named and shown as a viewer does
            tag = O.file_tag(sid, fingerprint, thr["pixel_threshold"],
                             *([A.settings(config.roi, config.gate)] if gated else []))
            overlay_of = _overlays(study, results, scorer, thr, config, out, tag, notice, refs, sid)
            result.overlays += len(overlay_of)
            made = _study_files(study, results, sid, tag, fingerprint, thr, config, out, notice, result, notes,
                                namer.pseudo)
            study_rows = _study_rows(study, sid, results, thr, config, overlay_of, notice, skipped, refs)
            index[sid] = {"overlays": sorted(set(overlay_of.values())), **made}
            rows += _point_back(study_rows, made) if plan is None else A.study_rows(
                plan, study, sid, _point_back(study_rows, made), skipped, notice)
    result.scored, result.reused, result.skipped = scorer.scored, scorer.reused, len(skipped)
    result.store_note = store.note() if isinstance(store, DiskStore) else ""
    if not rows:
        _write_csv(out / "skipped.csv", pd.DataFrame(skipped, columns=["id", "reason"]))
        raise AdaptCLIPError(_nothing_msg(config, skipped, out))
    columns = ["id", "level", "slice", "score", "topk_mean", "peak_slice", *REF_COLUMNS, "above_threshold", "overlay",
               "nifti_map", "dicom", "notice",
               *(["applicability", "applicability_reasons"] if config.gate.enabled else [])]
    table = pd.DataFrame(rows, columns=columns)
    ints = ["slice", "peak_slice", "InstanceNumber", "voxel_index"]
    table[ints] = table[ints].astype("Int64")
    _write_csv(out / "scores.csv", table)
    _write_csv(out / "skipped.csv", pd.DataFrame(skipped, columns=["id", "reason"]))
    if manifest:
        atomic_write_json(out / "prompts.json", {"normals": manifest, "k": len(manifest), **marked})
    run = {"title": "adaptclip_med score", **marked, "settings": settings, "threshold": thr,
           "config": {k: v for k, v in asdict(config).items() if k not in ("inputs", "normals", "key_file",
                                                                         "command_line", "out", "model", "roi",
                                                                         "gate")},
           **({"applicability": A.settings(config.roi, config.gate)} if gated else {}),
           "command_line": "" if config.anonymize else config.command_line, "inputs": len(config.inputs),
           "counts": {"scored": result.scored, "reused": result.reused, "skipped": result.skipped},
           "device_batch": device_batch(model).effective(config.model.batch_size),
           "dicom_notes": notes, "warnings": warned, "outputs": index, "versions": P.package_versions()}
    atomic_write_json(out / "run.json", run)
    written = ["scores.csv", "skipped.csv", "run.json", *(["prompts.json"] if manifest else []),
               *(f for entry in index.values() for f in [*entry["overlays"], *entry["dicom"], entry["nifti"]] if f)]
    result.dropped = F.finish(out, old, sig, written)  # before the audit: an earlier run's files are gone
    if namer.pseudo is not None:
        if namer.key_file is not None:
            PV.write_key_file(namer.key_file, namer.pseudo, out)
        given = [*config.inputs, *([config.normals] if config.normals else [])]
        roots = {f"input {i}": str(Path(p).resolve().parent) for i, p in enumerate(given)}
        vocabulary = _vocabulary(run) | set(columns) | set(OUTPUT_WORDS)  # our own words, not patient data
        audit_run(out, [u.path for s in studies for u in s.units] + list(namer.pseudo.key.values()), roots,
                  allowed=vocabulary)
    return result


def _study_files(study: Study, results: list[Any], sid: str, tag: str, fingerprint: str, thr: dict[str, Any],
                 config: ScoreConfig, out: Path, notice: str | None, result: ScoreResult,
                 notes: dict[str, list[str]], pseudo: PV.Pseudonymiser | None = None) -> dict[str, Any]:
    """The NIfTI map (NIfTI input) or the DICOM objects (DICOM input) of one study; adds to ``result``.

    Returns ``{"nifti": path or "", "dicom": [paths]}``, relative to ``out``.
    """
    made: dict[str, Any] = {"nifti": "", "dicom": []}
    good = [(u, r) for u, r in zip(study.units, results, strict=True) if isinstance(r, dict)]
    if not good:
        return made
    if study.kind == "nifti":
        path = out / "volumes" / f"{tag}.nii.gz"
        O.write_nifti_map(study.units[0].path, {u.slice_index: r["map"] for u, r in good}, path, notice=notice)
        made["nifti"] = path.relative_to(out).as_posix()
        result.nifti_files.append(made["nifti"])
    if not (study.dicom_files and config.dicom):
        return made
    files = study.dicom_files if study.kind == "multiframe" else [Path(u.path) for u, _ in good]
    try:
        done = export_dicom(files, [r["map"] for _, r in good], [r["image"] for _, r in good], out / "dicom" / tag,
                            key=f"{tag}|{fingerprint}", model_name=config.model.backbone,
                            pixel_threshold=thr["pixel_threshold"], notice=notice,
                            pseudonymiser=pseudo, pseudonym=sid)
    except (ValueError, TypeError, AttributeError, KeyError) as err:  # highdicom refused the source
        reason = scrub(f"{type(err).__name__}: {str(err).splitlines()[0]}")
        done = {"files": [], "notes": [f"no DICOM outputs: {reason}"]}
        tqdm.write(f"warning: {sid}: no DICOM outputs ({reason})", file=sys.stderr)
    made["dicom"] = [Path("dicom", f).as_posix() for f in done["files"]]
    result.dicom_files += made["dicom"]
    if done["notes"]:
        notes[sid] = done["notes"]
    return made


def _point_back(rows: list[dict], made: dict[str, Any]) -> list[dict]:
    """Add each row's output files (relative to ``--out``): ``nifti_map`` and ``dicom`` (``;``-separated).

    A study's row (image, volume, series) lists all its DICOM objects; a slice / frame row the objects
    holding every slice (Parametric Map, Segmentation) and its own Secondary Capture.
    """
    shared = [f for f in made["dicom"] if "/overlay/" not in f]
    captures = sorted(f for f in made["dicom"] if "/overlay/" in f)
    sliced = [r for r in rows if r["level"] in ("slice", "frame")]
    for j, row in enumerate(sliced):
        row["dicom"] = ";".join(shared + ([captures[j]] if len(captures) == len(sliced) else []))
    for row in rows:
        row["nifti_map"] = made["nifti"]
        row.setdefault("dicom", ";".join(made["dicom"]))
    return rows


def _overlays(study: Study, results: list[Any], scorer: Scorer, thr: dict[str, Any], config: ScoreConfig,
              out: Path, tag: str, notice: str | None, refs: list[SliceRef], sid: str = "") -> dict[int, str]:
    """Write the overlay PNGs of one study, radiological convention (``refs``); ``{unit index: path relative
    to out}``."""
    good = [k for k, r in enumerate(results) if isinstance(r, dict)]
    if config.overlays == "none" or not good:
        return {}
    peak = max(good, key=lambda k: results[k]["score"])
    picks = good if config.overlays == "all" or study.kind == "image" else [peak]
    written = {}
    for k in picks:
        item = results[k]
        rel = Path("overlays") / f"{O.file_tag(tag, item['key'], notice, thr['image_threshold'])}.png"  # reusable
        written[k] = rel.as_posix()
        if (out / rel).is_file():
            continue
        image = item["image"] if item["image"] is not None else scorer.picture(study.units[k])
        shown, amap = refs[k].show(A.decorate(np.asarray(image), item.get("roi")), np.asarray(item["map"]))
        write_overlay(out / rel, shown, amap, score=item["score"], threshold=thr["pixel_threshold"],
                      label=A.title_label(f"{sid if study.kind == 'image' else f'{sid}#{k}'}: {refs[k].label}", item),
                      notice=notice, image_threshold=thr["image_threshold"],
                      letters=refs[k].letters)
    return written


def _vocabulary(tree: Any) -> set[str]:
    """Every key of a JSON tree and its ``_``-separated words."""
    words: set[str] = set()
    if isinstance(tree, dict):
        for key, value in tree.items():
            words |= {str(key), *str(key).split("_")} | _vocabulary(value)
    elif isinstance(tree, list):
        for value in tree:
            words |= _vocabulary(value)
    return words


def _nothing_msg(config: ScoreConfig, skipped: list[tuple[str, str]], out: Path) -> str:
    return (f"nothing to score in {len(config.inputs)} input(s): {len(skipped)} file(s) skipped, with the reasons "
            f"in {out / 'skipped.csv'}")


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
