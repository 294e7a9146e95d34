"""Frozen :class:`EvalConfig`: the single home of the evaluation defaults.

``python -m adaptclip_med.evaluate`` builds one from its arguments; library users build one directly
and call :func:`adaptclip_med.evaluation.run_evaluation`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from adaptclip_med.runtime.errors import DataValidationError
from adaptclip_med.runtime.keys import Key, reuse_key

#: Fields that change the numbers: a run directory only resumes parts made with the same values (plus
#: the code, the model's bytes, device, batch size, images and groups: see :meth:`EvalConfig.key`).
RESULT_FIELDS: tuple[str, ...] = (
    "backbone", "pretrained", "checkpoint", "image_size", "precision", "limit", "pixel_mode", "n_bins",
    "map_range", "target_specificity", "pixel_specificity", "n_boot", "normal_prompts", "group_pattern",
    "engine", "int8", "int8_calibration",
)


@dataclass(frozen=True)
class EvalConfig:
    """Everything one evaluation run needs.

    Attributes:
        datasets: the data sets' labels as the user gave them; a label is a registered data set name
            (``adaptclip_med.data.list_datasets()``) unless ``layouts`` maps it to one.
        layouts: ``((label, registered name), ...)`` for labels that are not themselves registered
            names (``--datasets my_ct=folder``); the reports name the set by its label.
        roots: ``((label, folder), ...)``: the folder of each data set (see :func:`resolve_roots`).
        normal_prompts: ``((name, folder), ...)``: a user folder of normal prompt images per data set
            (flat, or one sub-folder per class); needed for few-shot on polyp sets, which hold no normals.
        group_pattern: ``--group-pattern REGEX``: patient/study id from each image's root-relative
            path (named group ``group`` or the first capture group; ``data.groups``), for every data set;
            prompts avoid the query's group and the bootstrap resamples groups.
        out: run directory (tables, figures, overlays, ``run.json``; resumable).
        shots: prompt shot counts ``k`` (0 = zero-shot; run once, with the first seed).
        seeds: prompt-draw seeds (the paper: 10, 20, 30); tables give mean ± std over them.
        methods: the methods scored on every part (``"adaptclip"``, ``"winclip"``: WinCLIP / WinCLIP+ on
            the same backbone, prompt draws and metrics); with two, ``comparison.csv`` compares them.
        backbone / pretrained / checkpoint / image_size: passed to ``load_model`` (size None: the
            backbone's registered size, 518 for ViT-L-14-336).
        allow_random_backbone: accept random (untrained) backbone weights (tests and demos only).
        device / batch_size / workers: inference settings (``workers`` DataLoader processes; None =
            ``min(4, CPU count)`` on CUDA, 0 on the CPU: see :meth:`loader_workers`).
        precision: ``"fp32"``, autocast of the backbone to ``"bf16"`` / ``"fp16"`` (GPU), or ``"int8"``
            (an exported engine's int8 graph).
        engine / int8 / int8_calibration: what computes the frozen features (``"torch"``,
            ``"onnxruntime"``, ``"openvino"``), the int8 mode (``"weights"``, ``"full"``; None = the
            recommended one) and the normal images ``full`` is calibrated on (``load_model``).
        limit: at most this many query images per class (balanced normal/abnormal), for a quick look.
        pixel_mode: ``"auto"`` / ``"exact"`` / ``"binned"`` pixel metrics (see ``adaptclip_med.metrics``).
        n_bins / map_range: bins (a power of two) and initial range of the binned pixel metrics' histogram
            (it widens to cover every score); map_range is also the figures' colour range.
        target_specificity: operating-point target on the leave-one-out prompt scores.
        pixel_specificity: pixel threshold target on the leave-one-out prompt maps (contours).
        n_boot: bootstrap replicates of the clinical confidence intervals (0 disables them).
        overlays: heat-map overlays per data set × class × shots (top scores, first seed); 0 = none,
            -1 = every image.
        overlay_norm: ``"run"`` (one colour scale for the whole run) or ``"image"`` (per image).
        figures: draw ROC/PR curves, the qualitative grid and the bar chart vs the paper.
        protocol: protocol string for provenance; empty = generated from the settings.
        strict: data loading refuses any skipped file instead of listing it.
        feature_cache: folder of the persistent feature store (``adaptclip_med.features.store``): frozen
            features of every image, float16, reused across runs; None = no store. With a store the
            parts are scored from the rounded features (a separate resume key).
        feature_cache_max_gb: size limit of that folder (least recently used entries go); None = none.
        command_line: the command that started the run (provenance).
        anonymize: no output file carries an input path, file/folder name or DICOM identifier: images
            and patient groups are named by salted pseudonyms (:mod:`adaptclip_med.runtime.privacy`).
        key_file: where ``anonymize`` writes the pseudonym key (and keeps the salt); outside ``out``.
        roi: ``((label, "auto" | mask folder), ...)``: ``--roi`` per data set (absent: none; see
            :func:`resolve_roi` and :mod:`adaptclip_med.evaluation.roi`).
        gate / gate_off / expect_modality / expect_body_part / force: the applicability gate
            (:func:`adaptclip_med.roi.gate.gate_config`): on, the rules switched off, the DICOM values
            expected, and whether rejected images are scored anyway.
        roi_floor: with ``roi``, volume slices whose ROI covers less than this share are skipped before
            encoding (and, with the gate, a single image below it is rejected by ``roi-small``).
    """

    datasets: tuple[str, ...]
    roots: tuple[tuple[str, str], ...]
    layouts: tuple[tuple[str, str], ...] = ()
    normal_prompts: tuple[tuple[str, str], ...] = ()
    group_pattern: str | None = None
    out: str = "reports/run"
    shots: tuple[int, ...] = (0,)
    seeds: tuple[int, ...] = (10, 20, 30)
    methods: tuple[str, ...] = ("adaptclip",)
    backbone: str = "ViT-L-14-336"
    pretrained: str | None = "openai"
    checkpoint: str | None = "adaptclip-mvtec"
    image_size: int | None = None
    allow_random_backbone: bool = False
    device: str = "cpu"
    precision: str = "fp32"
    engine: str = "torch"
    int8: str | None = None
    int8_calibration: str | None = None
    batch_size: int = 8
    workers: int | None = None
    limit: int | None = None
    pixel_mode: str = "auto"
    n_bins: int = 1 << 16
    map_range: tuple[float, float] = (0.0, 1.0)
    target_specificity: float = 0.95
    pixel_specificity: float = 0.99
    n_boot: int = 1000
    overlays: int = 8
    overlay_norm: str = "run"
    figures: bool = True
    protocol: str = ""
    strict: bool = False
    feature_cache: str | None = None
    feature_cache_max_gb: float | None = None
    command_line: str = ""
    anonymize: bool = False
    key_file: str | None = None
    roi: tuple[tuple[str, str], ...] = ()
    gate: bool = False
    gate_off: tuple[str, ...] = ()
    expect_modality: str | None = None
    expect_body_part: str | None = None
    force: bool = False
    roi_floor: float = 0.02

    def roi_for(self, dataset: str) -> str:
        """``--roi`` of one data set: ``"none"``, ``"auto"`` or a folder of masks."""
        return dict(self.roi).get(dataset, "none")

    def gate_config(self) -> object:
        """The :class:`~adaptclip_med.roi.gate.GateConfig` of the run."""
        from adaptclip_med.roi.gate import gate_config

        return gate_config(self.gate, ",".join(self.gate_off), expect_modality=self.expect_modality,
                           expect_body_part=self.expect_body_part, force=self.force, roi_floor=self.roi_floor)

    def root_for(self, dataset: str) -> Path:
        """The folder of one data set."""
        return Path(dict(self.roots)[dataset])

    def prompt_folder_for(self, dataset: str) -> str | None:
        """The user's normal-prompt folder of one data set, if any."""
        return dict(self.normal_prompts).get(dataset)

    def layout_for(self, dataset: str) -> str:
        """The registered data set (folder layout) a label is read with."""
        return dict(self.layouts).get(dataset, dataset)

    def loader_workers(self) -> int:
        """DataLoader processes: ``workers``, or by default ``min(4, CPU count)`` on CUDA and 0 on the CPU."""
        if self.workers is not None:
            return self.workers
        return min(4, os.cpu_count() or 1) if self.device.startswith("cuda") else 0

    def settings_for(self, dataset: str) -> dict[str, object]:
        """The result settings of a part of ``dataset``, by name: :data:`RESULT_FIELDS` (precision is a
        model part of the key), the folder layout, whether normal prompts are the user's, and the
        features' rounding (a ``--feature-cache`` store keeps them as float16)."""
        fields: dict[str, object] = {k: asdict(self)[k] for k in RESULT_FIELDS
                                     if k not in ("normal_prompts", "precision")}
        fields["layout"] = self.layout_for(dataset)
        fields["normal_prompts"] = self.prompt_folder_for(dataset) is not None
        fields["features"] = "float16 store" if self.feature_cache else "fp32"  # the store rounds them
        if self.roi_for(dataset) != "none":  # absent without --roi: today's keys unchanged
            fields["roi"] = _roi_setting(self.roi_for(dataset))
            fields["roi_floor"] = self.roi_floor
        if self.gate:
            fields["gate"] = self.gate_config().to_dict()
        return fields

    def key(self, dataset: str, content: Mapping[str, object], **more: object) -> Key:
        """The reuse key of a part of ``dataset`` (:func:`adaptclip_med.runtime.keys.reuse_key`).

        Args:
            dataset: a label of ``datasets``.
            content: the loaded model's parts (``evaluation.keys.model_content``: backbone config and
                architecture, weights and checkpoint bytes, adapter config, device type, precision).
            more: the part's own parts (``images``, ``groups``).

        The batch size is a part: batched matrix products round differently, so scores move in the last
        digits with it. The data folder's *path* is not (image bytes are): a moved or copied data set
        resumes; a replaced image or retrained checkpoint does not.
        """
        return reuse_key(settings=self.settings_for(dataset), batch_size=self.batch_size, **content, **more)

    def fingerprint(self, dataset: str, content: Mapping[str, object]) -> str:
        """Short hash of :meth:`key` without the images: the run's fingerprint of ``dataset`` (``run.json``)."""
        return self.key(dataset, content).short

    def protocol_string(self) -> str:
        """The protocol string recorded in ``run.json`` and under the tables."""
        if self.protocol:
            return self.protocol
        from adaptclip_med.loading.model_registry import CHECKPOINTS

        ckpt = self.checkpoint or "fresh (untrained) adapters"
        spec = CHECKPOINTS.get(str(self.checkpoint))
        trained = f" (adapters trained on {spec.trained_on})" if spec else ""
        size = self.image_size or "default"
        return (f"AdaptCLIP {ckpt}{trained} on {self.backbone}/{self.pretrained or 'random'} at {size} px; "
                f"shots {list(self.shots)}, prompt seeds {list(self.seeds)}; prompts are normal images "
                "disjoint from the queries")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return asdict(self)


def resolve_roots(datasets: tuple[str, ...] | list[str], root_args: list[str]) -> tuple[tuple[str, str], ...]:
    """Map each data set to its folder.

    Accepted forms: one folder for one data set (the data set's own folder); one folder for several
    data sets (a parent holding one sub-folder per data set name); ``NAME=PATH`` pairs (one per set,
    mixable with a parent folder for the others).

    Raises:
        DataValidationError: a folder is missing, a pair names an unknown set, or a set has no folder.
    """
    pairs = dict(a.split("=", 1) for a in root_args if "=" in a)
    plain = [a for a in root_args if "=" not in a]
    unknown = sorted(set(pairs) - set(datasets))
    if unknown:
        msg = f"--root {unknown[0]}=...: {unknown[0]!r} is not among --datasets {list(datasets)}; fix it"
        raise DataValidationError(msg)
    if len(plain) > 1:
        msg = f"--root: got several folders {plain}; expected one folder, or NAME=PATH pairs"
        raise DataValidationError(msg)
    out: list[tuple[str, str]] = []
    for name in datasets:
        if name in pairs:
            path = Path(pairs[name])
        elif plain and len(datasets) == 1 and not pairs:
            path = Path(plain[0])
        elif plain:
            path = Path(plain[0]) / name
        else:
            msg = f"data set {name!r}: no folder given; pass --root PATH (or {name}=PATH)"
            raise DataValidationError(msg)
        if not path.is_dir():
            msg = (f"data set {name!r}: folder {path} does not exist; expected the data set's folder "
                   f"(or a parent folder holding a sub-folder named {name!r}); fix --root")
            raise DataValidationError(msg)
        out.append((name, str(path)))
    return tuple(out)


def _roi_setting(mode: str) -> str:
    """``auto``, or a mask folder by its content: each file's name and bytes (never the folder's path)."""
    if mode == "auto":
        return mode
    import hashlib

    from adaptclip_med.runtime.io import sha256_file

    files = sorted(p for p in Path(mode).iterdir() if p.is_file())
    listing = "\n".join(f"{p.name} {sha256_file(p)}" for p in files)
    return f"folder {hashlib.sha256(listing.encode()).hexdigest()[:16]}"


def resolve_roi(datasets: tuple[str, ...] | list[str], args: list[str]) -> tuple[tuple[str, str], ...]:
    """``--roi`` values → ``((label, "auto" | folder), ...)`` (data sets at ``none`` left out).

    Accepted: ``none``; ``auto`` (every data set); one folder for one data set; ``NAME=auto|none|PATH``
    pairs (as ``--root``).

    Raises:
        DataValidationError: a pair names an unknown set, a plain folder with several sets, a missing folder.
    """
    pairs = dict(a.split("=", 1) for a in args if "=" in a)
    plain = [a for a in args if "=" not in a]
    if plain and (len(plain) > 1 or pairs):
        msg = f"--roi {' '.join(args)}: expected none, auto, one FOLDER, or NAME=auto|none|PATH pairs"
        raise DataValidationError(msg)
    if plain and plain[0] in ("none", "auto"):
        pairs = dict.fromkeys(datasets, plain[0])
    elif plain:
        if len(datasets) > 1:
            msg = f"--roi {plain[0]}: one mask folder for several data sets; give NAME=PATH pairs"
            raise DataValidationError(msg)
        pairs = {datasets[0]: plain[0]}
    for name, value in pairs.items():
        if name not in datasets:
            msg = f"--roi {name}=...: {name!r} is not among --datasets {list(datasets)}"
            raise DataValidationError(msg)
        if value not in ("none", "auto") and not Path(value).is_dir():
            msg = (f"--roi: mask folder {value} for {name!r} does not exist; expected a folder of masks named "
                   "by the images' file stems, or auto / none")
            raise DataValidationError(msg)
    return tuple((d, pairs[d]) for d in datasets if pairs.get(d, "none") != "none")


def resolve_prompt_folders(datasets: tuple[str, ...] | list[str], args: list[str]) -> tuple[tuple[str, str], ...]:
    """Map ``--normal-prompts`` values to data sets: one folder for one data set, or ``NAME=PATH`` pairs.

    Raises:
        DataValidationError: a pair names an unknown set, a plain folder is ambiguous, or a folder is missing.
    """
    if not args:
        return ()
    pairs = dict(a.split("=", 1) for a in args if "=" in a)
    plain = [a for a in args if "=" not in a]
    if plain and (len(plain) > 1 or len(datasets) > 1 or pairs):
        msg = f"--normal-prompts {plain}: with several data sets (or folders) use NAME=PATH pairs"
        raise DataValidationError(msg)
    if plain:
        pairs = {datasets[0]: plain[0]}
    for name, folder in pairs.items():
        if name not in datasets:
            msg = f"--normal-prompts {name}=...: {name!r} is not among --datasets {list(datasets)}"
            raise DataValidationError(msg)
        if not Path(folder).is_dir():
            msg = f"--normal-prompts: folder {folder} for {name!r} does not exist; expected a folder of normal images"
            raise DataValidationError(msg)
    return tuple(sorted(pairs.items()))
