"""``score --roi`` and the applicability gate around the scorer: decided per unit *before* encoding.

:func:`plan_study` reads each unit's display picture once (only when ``--roi`` or the gate is on), finds
its anatomy ROI (``auto``: :func:`adaptclip_med.roi.anatomy_mask`; a folder: the user's mask of the same
file stem, non-zero = inside) and runs the metadata and pixel rules (:mod:`adaptclip_med.roi.gate`).
Units that are rejected (without ``--force``) or, in a volume, whose ROI is below the floor are not
given to the scorer, so they cost no backbone time. :meth:`StudyPlan.merge` puts the scorer's results
back in unit order, applies the ROI to the map (outside: the map's minimum) and the score (the fused
score with the map's peak taken inside the ROI, :func:`adaptclip_med.model.fusion.score_with_peak`),
and adds the feature rule (the image's global embedding against the normals') or, without normals, the
``prompts`` rule (the global embedding against CLIP text embeddings of the expected modality and of
negatives, computed once per run by :func:`prompt_texts`; meaningful only with real backbone weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adaptclip_med.model.fusion import score_with_peak
from adaptclip_med.reporting.overlays import applicability_note
from adaptclip_med.roi import anatomy_mask, detect_modality
from adaptclip_med.roi.gate import (
    MODALITY_PROMPTS,
    NEGATIVE_PROMPTS,
    GateConfig,
    Verdict,
    below_floor,
    feature_verdict,
    gate_config,
    metadata_verdict,
    modality_prompt,
    nearest_distances,
    pixel_verdict,
    prompt_verdict,
)
from adaptclip_med.roi.morphology import decorate as decorate  # re-exported: scoring.run draws overlays with it
from adaptclip_med.roi.morphology import to_source_grid
from adaptclip_med.roi.source import display_image, user_mask
from adaptclip_med.runtime.errors import AdaptCLIPError, ImageReadError
from adaptclip_med.scoring.inputs import Study

ROI_MODES = ("none", "auto")


class Rejected(str):
    """A unit's place in the results when the gate rejected it: the reasons (not a read error)."""

    __slots__ = ()


def check_roi(roi: str) -> None:
    """``none``, ``auto`` or an existing folder of masks.

    Raises:
        AdaptCLIPError: anything else.
    """
    if roi not in ROI_MODES and not Path(roi).is_dir():
        msg = f"--roi {roi!r}: expected none, auto or a folder of masks (named by the images' file stems)"
        raise AdaptCLIPError(msg)


@dataclass(frozen=True)
class PromptTexts:
    """The ``prompts`` rule's text side, encoded once per run: prompt → ``(D,)`` unit-norm embedding.

    Attributes:
        features: every modality prompt (and ``--expect-modality``'s), and the negatives.
        random_weights: the backbone has random weights (the verdict is noise; it only warns).
    """

    features: dict[str, np.ndarray]
    random_weights: bool = False

    def verdict(self, embedding: np.ndarray, modality: str, gate: GateConfig) -> Verdict:
        """The ``prompts`` verdict of one global ``embedding`` for the expected ``modality``."""
        expected = modality_prompt(modality)
        if expected not in self.features:
            return Verdict()
        negatives = np.stack([self.features[n] for n in NEGATIVE_PROMPTS])
        return prompt_verdict(embedding, self.features[expected], negatives, expected, NEGATIVE_PROMPTS, gate,
                              random_weights=self.random_weights)


def prompt_texts(model: Any, gate: GateConfig, random_weights: bool) -> PromptTexts | None:
    """Encode the modality prompts and the negatives once with the model's frozen text encoder (None when
    the ``prompts`` rule is off, or the text and image embeddings differ in width)."""
    if not gate.on("prompts"):
        return None
    import open_clip

    prompts = list(dict.fromkeys([*MODALITY_PROMPTS.values(), *NEGATIVE_PROMPTS,
                                  *([modality_prompt(gate.expect_modality)] if gate.expect_modality else [])]))
    encoder = model.text_encoder
    tokens = open_clip.tokenize(prompts, context_length=int(encoder.positional_embedding.shape[0]))
    feats = encoder.zero_shot_features(tokens).numpy()
    if feats.shape[1] != int(getattr(model.backbone, "embed_dim", feats.shape[1])):
        return None
    return PromptTexts(dict(zip(prompts, feats, strict=True)), random_weights)


@dataclass
class StudyPlan:
    """What happens to each unit of one study: scored, skipped (a reason) or rejected (a verdict).

    Attributes:
        verdicts: per unit (``None`` when the gate is off).
        rois: per unit, the source-grid ROI (``None`` without ``--roi``).
        skip: unit index → reason (unreadable, ROI below the floor in a volume).
        score: indices handed to the scorer.
        modalities: per unit, the modality the ``prompts`` rule expects (``--expect-modality``, else the
            detected one; ``None`` when the rule is off).
    """

    gate: GateConfig
    verdicts: list[Verdict | None] = field(default_factory=list)
    rois: list[np.ndarray | None] = field(default_factory=list)
    skip: dict[int, str] = field(default_factory=dict)
    score: list[int] = field(default_factory=list)
    modalities: list[str | None] = field(default_factory=list)

    def merge(self, study: Study, scored: list[Any], normals: np.ndarray | None,
              normal_distances: np.ndarray | None, prompts: PromptTexts | None = None) -> list[Any]:
        """The results in unit order: the scorer's (ROI and the feature rule, or without normals the
        ``prompts`` rule, applied), skip reasons, rejections."""
        results: list[Any] = [None] * len(study.units)
        for k, item in zip(self.score, scored, strict=True):
            results[k] = item
            if not isinstance(item, dict):
                continue
            verdict = self.verdicts[k]
            if verdict is not None and normals is not None and normal_distances is not None and "global" in item:
                d = float(nearest_distances(np.asarray(item["global"])[None], normals)[0])
                verdict.extend(feature_verdict(d, normal_distances, self.gate))
            elif verdict is not None and normals is None and prompts is not None and "global" in item:
                modality = self.modalities[k] if k < len(self.modalities) else None
                if modality:
                    verdict.extend(prompts.verdict(np.asarray(item["global"]), modality, self.gate))
            if self.rois[k] is not None:
                reason = apply_roi(item, self.rois[k])
                if reason:
                    results[k] = reason
                    continue
            if verdict is not None and verdict.rejected and not self.gate.force:
                results[k] = Rejected(verdict.reasons)
            elif verdict is not None:
                item["applicability"] = self.columns(k)
        for k, reason in self.skip.items():
            results[k] = reason
        for k, verdict in enumerate(self.verdicts):
            if results[k] is None and verdict is not None:
                results[k] = Rejected(verdict.reasons)
        return results

    def columns(self, k: int) -> dict[str, str]:
        """The ``applicability`` / ``applicability_reasons`` cells of unit ``k`` ({} with the gate off)."""
        verdict = self.verdicts[k] if k < len(self.verdicts) else None
        return {} if verdict is None else verdict.cells(self.gate.force)

    def volume_columns(self, ks: list[int]) -> dict[str, str]:
        """A volume row's cells: the worst of its scored slices, with counts."""
        verdicts = [self.verdicts[k] for k in ks if self.verdicts[k] is not None]
        if not verdicts:
            return {}
        worst = max((v.status for v in verdicts), key=("pass", "warn", "reject").index)
        counts = {s: sum(v.status == s for v in verdicts) for s in ("warn", "reject")}
        text = ", ".join(f"{n} slice(s) {s}" for s, n in counts.items() if n)
        return {"applicability": worst, "applicability_reasons": text}


def plan_study(study: Study, roi: str, gate: GateConfig) -> StudyPlan:
    """Decide per unit, before any encoding: ROI, metadata and pixel rules (see the module)."""
    plan = StudyPlan(gate)
    volume = study.kind != "image"
    for k, unit in enumerate(study.units):
        verdict = metadata_verdict(unit.path, gate) if gate.enabled else None
        mask, modality = None, None
        try:
            picture, dicom_modality, _ = display_image(unit.path, unit.slice_index)
            if gate.on("prompts"):
                modality = gate.expect_modality or detect_modality(picture, dicom_modality)
            if roi != "none" and picture.max() > picture.min():
                if roi == "auto":
                    mask = anatomy_mask(picture, modality if modality and not gate.expect_modality
                                        else detect_modality(picture, dicom_modality))
                else:
                    mask = user_mask(roi, unit.path, unit.slice_index, picture.shape[:2])
            if verdict is not None:
                verdict.extend(pixel_verdict(picture, mask, gate))
        except (ImageReadError, OSError) as err:
            plan.verdicts.append(verdict)
            plan.rois.append(None)
            plan.modalities.append(None)
            plan.skip[k] = str(err)
            continue
        plan.verdicts.append(verdict)
        plan.rois.append(mask)
        plan.modalities.append(modality)
        if mask is not None and volume and mask.mean() < gate.roi_floor:
            plan.skip[k] = below_floor(mask.mean(), gate.roi_floor)
        elif mask is not None and not mask.any():
            plan.skip[k] = "empty ROI: nothing to score"
        elif verdict is not None and verdict.rejected and not gate.force:
            continue  # rejected before encoding
        else:
            plan.score.append(k)
    return plan


def apply_roi(item: dict[str, Any], roi: np.ndarray) -> str:
    """Confine one result to its source-grid ``roi`` in place: map outside = the map's minimum, score from
    the peak inside (the fusion's rule); keeps ``roi`` for the overlay. Returns a skip reason or ""."""
    amap = np.asarray(item["map"], dtype=np.float32)
    inside = to_source_grid(roi, amap.shape)
    if not inside.any():
        return "empty ROI on the map grid: nothing to score"
    parts = item.get("parts") or {}
    peak = float(amap[inside].max())
    if parts:
        tensors = {k: torch.tensor([v], dtype=torch.float32) for k, v in parts.items()}
        item["score"] = float(score_with_peak(tensors, torch.tensor([peak], dtype=torch.float32))[0])
    item["map"] = np.where(inside, amap, amap.min()).astype(np.float32)
    item["roi"] = roi
    return ""


def title_label(label: str, item: dict[str, Any]) -> str:
    """The overlay label with the result's applicability verdict (unchanged with the gate off)."""
    note = applicability_note(item.get("applicability"))
    return f"{label} {note}" if note else label


def normal_globals(feats: list[Any] | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The normals' ``(n, D)`` global embeddings and leave-one-out nearest distances (None with < 2)."""
    from adaptclip_med.roi.gate import leave_one_out_distances

    if not feats or len(feats) < 2:
        return None, None
    g = np.stack([np.asarray(f.global_, dtype=np.float32).reshape(-1) for f in feats])
    return g, leave_one_out_distances(g)


def active(roi: str, gate: GateConfig) -> bool:
    """True when ``--roi`` or the gate changes anything (else the run is today's, untouched)."""
    return roi != "none" or gate.enabled


def settings(roi: str, gate: GateConfig) -> dict[str, Any]:
    """``run.json``'s record of the ROI and gate settings."""
    return {"roi": roi if roi in ROI_MODES else "folder", "gate": gate.to_dict()}


def study_rows(plan: StudyPlan, study: Study, sid: str, rows: list[dict], skipped: list[tuple[str, str]],
               notice: str | None) -> list[dict]:
    """Add the applicability cells to one study's ``rows``; rejected units move from ``skipped`` to rows
    without a score (``applicability`` ``reject`` and the reasons)."""
    if not plan.gate.enabled:
        return rows
    for row in rows:
        if row["level"] in ("image", "slice", "frame"):
            row.update(plan.columns(0 if row["slice"] is None else int(row["slice"])))
        else:
            row.update(plan.volume_columns([k for k, v in enumerate(plan.verdicts) if v is not None
                                            and k not in plan.skip]))
    level = {"image": "image", "nifti": "slice", "series": "slice", "multiframe": "frame"}[study.kind]
    kept = []
    for uid, reason in skipped:
        if not isinstance(reason, Rejected) or not (uid == sid or uid.startswith(f"{sid}#")):
            kept.append((uid, reason))
            continue
        k = int(uid.rsplit("#", 1)[1]) if uid != sid else None
        whole = uid == sid and study.kind != "image"
        rows.append({"id": uid, "level": {"nifti": "volume"}.get(study.kind, study.kind) if whole else level,
                     "slice": k, "score": None, "above_threshold": None, "notice": notice or "",
                     "applicability": "reject", "applicability_reasons": str(reason)})
    skipped[:] = kept
    return rows


def from_args(args: Any) -> tuple[str, GateConfig]:
    """``(roi, gate)`` from parsed arguments (:func:`add_arguments`).

    Raises:
        AdaptCLIPError: a bad ``--roi``, rule name or level.
    """
    check_roi(args.roi)
    gate = gate_config(args.gate == "on", args.gate_off, expect_modality=args.expect_modality,
                       expect_body_part=args.expect_body_part, warn=args.gate_warn, reject=args.gate_reject,
                       roi_floor=args.roi_floor, force=args.force)
    return args.roi, gate
