"""Run provenance and run-level outputs: ``run.json``, prompt manifests.

Model loading for a run config lives with the model factory (:func:`adaptclip_med.loading.factory.load_model_for`).

``run.json`` records the package versions, the backbone / tag, the checkpoint and its SHA-256, the
image size, the protocol string and the command line, plus ``status`` (``"incomplete"`` until every
table, overlay and figure is written, then ``"complete"``).
"""

from __future__ import annotations

import hashlib
import platform
import re
from pathlib import Path
from typing import Any, Protocol

from adaptclip_med.reporting.labels import UNTRAINED_BACKBONE, notice_of
from adaptclip_med.runtime.io import atomic_write_json, sha256_file
from adaptclip_med.runtime.keys import installed_versions


class RunSettings(Protocol):
    """What the reports read of a run's settings (:class:`adaptclip_med.evaluation.config.EvalConfig` is one).

    Reporting sits below evaluation in the layers, so it names the fields it needs instead of importing it.
    """

    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    backbone: str
    pretrained: str | None
    checkpoint: str | None
    image_size: int | None
    command_line: str
    anonymize: bool

    def protocol_string(self) -> str: ...

    def to_dict(self) -> dict[str, object]: ...

#: Random backbone weights only; a run's notice (which also tells untrained adapters) is ``labels.run_notice``.
UNTRAINED_NOTICE = UNTRAINED_BACKBONE
_PACKAGES = ("adaptclip_med", "torch", "open_clip_torch", "monai", "numpy", "scipy", "scikit-learn",
             "pandas", "matplotlib", "pydicom", "nibabel", "pillow")


def slug(name: str) -> str:
    """A file-name-safe version of a class name (``[A-Za-z0-9_-]``, plus a hash when changed)."""
    clean = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "cls"
    return clean if clean == name else f"{clean}-{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def model_provenance(model: Any, config: RunSettings) -> dict[str, Any]:
    """The model's ``describe()`` (backbone, tag, checkpoint SHA-256, ...), completed from the config.

    A checkpoint directory (our format) gets the SHA-256 of each of its files.
    """
    info: dict[str, Any] = {"backbone": config.backbone, "pretrained": config.pretrained,
                            "checkpoint": config.checkpoint}
    if hasattr(model, "describe"):
        try:
            info.update(model.describe())
        except Exception as err:  # provenance must not stop a finished run
            info["describe_error"] = str(err)
    info["image_size"] = int(getattr(model, "image_size", config.image_size or 0))
    ckpt = info.get("checkpoint_file") or config.checkpoint
    path = Path(str(ckpt)) if ckpt else None
    if info.get("checkpoint_sha256") is None and path is not None:
        if path.is_file():
            info["checkpoint_sha256"] = sha256_file(path)
        elif path.is_dir():
            info["checkpoint_sha256"] = {p.name: sha256_file(p) for p in sorted(path.iterdir()) if p.is_file()}
    return info


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the numbers."""
    return {"python": platform.python_version(), **installed_versions(_PACKAGES)}


def write_run_json(out: Path, config: RunSettings, model: Any, parts: list[Any], status: str,
                   extra: dict[str, Any] | None = None) -> None:
    """Write ``run.json`` (provenance; ``notice`` when the model is untrained, no such key when trained).

    Args:
        extra: more top-level entries (``fingerprints``, ``skipped``, ``encodes``, ... from the pipeline).
    """
    run = {
        "title": f"adaptclip_med evaluation — {', '.join(config.datasets)}",
        "status": status,
        "protocol": config.protocol_string(),
        "command_line": config.command_line,
        "model": model_provenance(model, config),
        "config": config.to_dict(),
        "parts": [p.stem for p in parts],
        "versions": package_versions(),
        **(extra or {}),
    }
    notice = notice_of(config)
    if notice:
        run["notice"] = notice
    if config.anonymize:  # no root, output folder, checkpoint path or command-line path in any file
        from adaptclip_med.runtime.privacy import sanitize_settings

        run = sanitize_settings(run)
    atomic_write_json(out / "run.json", run)


def write_prompt_manifests(out: Path, records: list[dict[str, Any]], notice: str | None = None) -> None:
    """``prompts/<dataset>/<class>/k<shots>_seed<seed>.json``: the prompt manifest of every part.

    ``notice`` (the run's untrained-model notice) is added as each manifest's ``notice`` key; none when None.
    """
    for rec in records:
        if rec.get("prompts") is None:
            continue
        path = out / "prompts" / rec["dataset"] / slug(rec["cls"]) / f"k{rec['shots']}_seed{rec['seed']}.json"
        atomic_write_json(path, {**rec["prompts"], **({"notice": notice} if notice else {})})
