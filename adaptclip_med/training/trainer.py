"""The training loop: epochs over cached frozen features, per-epoch checkpoints, CSV log, export.

Output folder ``out``::

    run.json                      configuration, model and data identity, skipped files (count, first few)
    skipped.csv                   every file left out (``path,reason,dataset,class``; see adaptclip_med.runtime.skips)
    train_log.csv                 one row per epoch: every loss term (mean over the epoch's queries)
    checkpoints/epoch_NNN/        per-epoch checkpoint (see :mod:`.state`), resumable
    final/                        the last epoch's adapters in our format (``load_model(checkpoint=...)``)
    adaptclip_authors.pth         the same adapters in the authors' format
    cache/                        frozen features (unless another cache folder is given; with a shared
                                  feature store, ``--feature-cache``, the masks only)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from adaptclip_med.features.cache import FeatureCache, feature_spec
from adaptclip_med.features.store import open_feature_store
from adaptclip_med.loading.checkpoint import export_authors as export_authors_checkpoint
from adaptclip_med.loading.checkpoint import save_adapters
from adaptclip_med.runtime.io import atomic_write_json, atomic_write_text
from adaptclip_med.runtime.privacy import relative_path
from adaptclip_med.runtime.skips import Skip, skipped_summary, write_skipped
from adaptclip_med.training.config import TrainConfig
from adaptclip_med.training.features import FeatureSource
from adaptclip_med.training.samples import TrainSample, check_prompt_pool, draw_prompts, epoch_batches
from adaptclip_med.training.schedules import batch_losses, epoch_plan, set_modes, trainable_parameters
from adaptclip_med.training.state import latest_epoch, load_epoch, save_epoch

LOG_NAME = "train_log.csv"
AUTHORS_NAME = "adaptclip_authors.pth"


@dataclass
class TrainResult:
    """What :func:`train_adapters` produced.

    Attributes:
        out: the run folder.
        log: one dict per finished epoch (``epoch``, ``trained``, ``loss``, ``<branch>_<term>``, ...).
        final_dir: the final adapters in our format.
        authors_checkpoint: the export in the authors' format (``None`` if not requested).
        features_computed: images run through the backbone by this call (0 when all were cached).
        cache_note: what the feature cache reused and why it computed the rest (also in ``run.json``).
        skipped: files left out (the loader's, then those that could not be read), as in ``skipped.csv``.
    """

    out: Path
    log: list[dict[str, Any]] = field(default_factory=list)
    final_dir: Path | None = None
    authors_checkpoint: Path | None = None
    features_computed: int = 0
    cache_note: str | None = None
    skipped: list[Skip] = field(default_factory=list)


def model_identity(model: torch.nn.Module) -> dict[str, Any]:
    """Every setting that determines the frozen features (:func:`~.cache.feature_spec`)."""
    return feature_spec(model)


def data_identity(source: FeatureSource, samples: Sequence[TrainSample],
                  pool: Mapping[str, Sequence[Path]]) -> str:
    """A hash of every query (content, mask content, label, class) and prompt image (content)."""
    rows = [[source.sha[s.image], source.sha[s.mask] if s.mask else None, s.label, s.cls] for s in samples]
    prompts = {cls: [source.sha[p] for p in paths] for cls, paths in sorted(pool.items())}
    return hashlib.sha256(json.dumps([rows, prompts]).encode()).hexdigest()


def write_log(path: Path, log: Sequence[Mapping[str, Any]]) -> None:
    """Write the per-epoch log as CSV (columns: union over epochs, first-seen order)."""
    columns: list[str] = []
    for row in log:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(log)
    atomic_write_text(path, buf.getvalue())


def check_store_options(config: TrainConfig, feature_cache: str | Path | None, max_gb: float | None) -> None:
    """Check the shared feature store options before any work.

    Raises:
        ValueError: a store without the cache (``use_cache=False``), a size limit without a store or ≤ 0.
    """
    if feature_cache is not None and not config.use_cache:
        msg = "--feature-cache: a shared feature store with --no-cache (use_cache=False); drop one of them"
        raise ValueError(msg)
    if max_gb is not None and feature_cache is None:
        msg = "--feature-cache-max-gb: got a size limit but no --feature-cache DIR; pass the folder too"
        raise ValueError(msg)
    if max_gb is not None and not max_gb > 0:
        msg = f"--feature-cache-max-gb: got {max_gb}; expected > 0"
        raise ValueError(msg)


def check_out_folder(out: Path, resume: bool) -> int:
    """The epoch to resume after (0 for a new run).

    Raises:
        FileExistsError: ``out`` holds checkpoints and ``resume`` is False.
    """
    done = latest_epoch(out)
    if done and not resume:
        msg = (f"{out}: holds checkpoints up to epoch {done}; expected an empty or new folder. Pass "
               "--resume (resume=True) to continue that run, or choose another --out (nothing was changed).")
        raise FileExistsError(msg)
    return done if resume else 0


def _run_epoch(model: torch.nn.Module, source: FeatureSource, opt: torch.optim.Optimizer,
               samples: Sequence[TrainSample], pool: Mapping[str, Sequence[Path]],
               config: TrainConfig, epoch: int) -> dict[str, Any]:
    """One pass over the queries; returns the epoch's log row (means weighted by batch size)."""
    plan = epoch_plan(config, epoch)
    set_modes(model, plan)
    prompts = draw_prompts(samples, pool, config.seed, epoch) if "pqa" in plan.losses else None
    batches = epoch_batches(len(samples), config.batch_size, config.seed, epoch)
    sums: dict[str, float] = {}
    start, computed = time.perf_counter(), source.computed
    bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", disable=not config.progress, leave=False)
    for batch in bar:
        chosen = [samples[i] for i in batch]
        global_, patches = source.features([s.image for s in chosen])
        prompt_patches = None
        if prompts is not None:
            _, prompt_feats = source.features([prompts[i] for i in batch])
            prompt_patches = [t[:, 1:] for t in prompt_feats]
        label = torch.tensor([s.label for s in chosen], device=source.device)
        mask = source.masks([s.mask for s in chosen])
        terms = batch_losses(model, plan, global_, patches, prompt_patches, label, mask)
        total = sum(v for branch in terms.values() for v in branch.values())
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sums["loss"] = sums.get("loss", 0.0) + total.item() * len(batch)
        for branch, parts in terms.items():
            for name, value in parts.items():
                key = f"{branch}_{name}"
                sums[key] = sums.get(key, 0.0) + value.item() * len(batch)
        bar.set_postfix(loss=f"{total.item():.4f}")
    row: dict[str, Any] = {"epoch": epoch, "trained": "+".join(plan.trained)}
    row.update({k: v / len(samples) for k, v in sums.items()})
    row["seconds"] = round(time.perf_counter() - start, 3)
    row["images_encoded"] = source.computed - computed
    return row


def drop_unreadable(source: FeatureSource, samples: Sequence[TrainSample], pool: Mapping[str, Sequence[Path]],
                    config: TrainConfig, strict: bool, root: Path, dataset: str
                    ) -> tuple[list[TrainSample], dict[str, list[Path]], list[Skip]]:
    """Read every query, mask and prompt once (:meth:`FeatureSource.screen`); leave out what fails.

    A query whose image or mask cannot be read is skipped (listed under its image), an unreadable
    prompt under its class. Returns the kept queries, the kept prompt pool and the skips.

    Raises:
        DataValidationError: ``strict`` and an unreadable file (one line naming it).
        PromptError: a class left without a readable prompt (PQA only).
    """
    failed = source.screen([s.image for s in samples] + [p for paths in pool.values() for p in paths],
                           [s.mask for s in samples if s.mask], progress=config.progress, strict=strict)
    if not failed:
        return list(samples), {cls: list(paths) for cls, paths in pool.items()}, []
    skips: list[Skip] = []
    kept = []
    for s in samples:
        why = failed.get(s.image) or (s.mask in failed and f"mask {s.mask.name}: {failed[s.mask]}")
        if why:
            skips.append(Skip(dataset, relative_path(s.image, root), why, s.cls))
        else:
            kept.append(s)
    skips += [Skip(dataset, relative_path(p, root), failed[p], cls)
              for cls, paths in pool.items() for p in paths if p in failed]
    kept_pool = {cls: [p for p in paths if p not in failed] for cls, paths in pool.items()}
    if "pqa" in config.branches:
        kept_pool = check_prompt_pool(kept, kept_pool, source=f"the readable prompts of {dataset or 'the data'}")
    return kept, kept_pool, skips


def train_adapters(
    model: torch.nn.Module,
    samples: Sequence[TrainSample],
    prompt_pool: Mapping[str, Sequence[str | Path]],
    out: str | Path,
    config: TrainConfig | None = None,
    *,
    cache_dir: str | Path | None = None,
    feature_cache: str | Path | None = None,
    feature_cache_max_gb: float | None = None,
    resume: bool = False,
    export_authors: bool = True,
    skipped: Sequence[Skip] = (),
    strict: bool = False,
    data_root: str | Path | None = None,
    dataset: str = "",
) -> TrainResult:
    """Train the adapters of ``model`` in place (method spec §5) and write the run to ``out``.

    Args:
        model: an ``AdaptCLIP`` from :func:`adaptclip_med.load_model` (fresh or pre-trained adapters).
        samples: queries (see :func:`~adaptclip_med.training.samples.make_samples`).
        prompt_pool: ``{cls: [normal train image paths]}``; needed when PQA is trained.
        out: run folder (see the module docstring).
        config: hyper-parameters; default :class:`TrainConfig` (the method's).
        cache_dir: feature cache folder (default ``out/cache``); may be shared between runs.
        feature_cache: keep the image features in the feature store shared with evaluation at this
            folder instead (``evaluate --feature-cache``; ``cache_dir`` then holds the masks);
            feature_cache_max_gb: its size limit in GiB (least recently used entries go).
        resume: continue from the last checkpoint in ``out`` (exactly as if never interrupted).
        export_authors: also write the final adapters in the authors' ``.pth`` format.
        skipped: files already left out by the loader (listed first in ``skipped.csv``).
        strict: stop at the first image or mask that cannot be read instead of skipping it.
        data_root, dataset: name skipped files relative to ``data_root`` (default: the current
            folder) under the label ``dataset``.

    Returns:
        :class:`TrainResult`; the model is left in eval mode with the final adapters.

    Raises:
        FileExistsError: ``out`` holds checkpoints and ``resume`` is False.
        CheckpointMismatchError: resuming with another configuration, model or data.
        PromptError: a class without normal prompt images (PQA only).
        DataValidationError: ``strict`` and an unreadable file; fewer than 2 readable queries.
        ValueError: bad feature store options (:func:`check_store_options`).
    """
    config = config or TrainConfig()
    out = Path(out)
    check_store_options(config, feature_cache, feature_cache_max_gb)
    start_epoch = check_out_folder(out, resume)
    pool = check_prompt_pool(samples, prompt_pool) if "pqa" in config.branches else {}
    ident_model = model_identity(model)
    source = FeatureSource(model, None, model.device, chunk=config.batch_size, dtype=config.cache_dtype)
    source.hash_files([s.image for s in samples] + [s.mask for s in samples if s.mask]
                      + [p for paths in pool.values() for p in paths], progress=config.progress)
    identity = {**config.result_fields(), **ident_model, "data": data_identity(source, samples, pool)}
    torch.manual_seed(config.seed)
    opt = torch.optim.Adam(trainable_parameters(model, config.branches), lr=config.lr,
                           betas=config.betas, weight_decay=0.0)
    log = load_epoch(out, start_epoch, model, opt, identity) if start_epoch else []
    if config.use_cache:  # only now: a refused resume leaves no trace
        source.cache = FeatureCache(cache_dir or out / "cache", ident_model, config.cache_dtype)
        if feature_cache is not None:
            source.store = open_feature_store(feature_cache, model, config.cache_dtype, feature_cache_max_gb)
    samples, pool, unread = drop_unreadable(source, samples, pool, config, strict,
                                            Path(data_root) if data_root else Path.cwd(), dataset)
    skips = list(dict.fromkeys([*skipped, *unread]))
    write_skipped(out, skips)
    run_info = {"config": config.__dict__, "identity": identity, "queries": len(samples),
                "prompt_classes": sorted(pool), "skipped": skipped_summary(skips)}
    atomic_write_json(out / "run.json", run_info)
    result = TrainResult(out=out, skipped=skips)
    for epoch in range(start_epoch + 1, config.epochs + 1):
        log.append(_run_epoch(model, source, opt, samples, pool, config, epoch))
        if source.cache is not None and epoch == start_epoch + 1:  # what was reused, and why not the rest
            result.cache_note = source.note()
            atomic_write_json(out / "run.json", {**run_info, "feature_cache": result.cache_note})
            if config.progress:
                tqdm.write(result.cache_note, file=sys.stderr)
        save_epoch(out, epoch, model, opt, identity, log)
        write_log(out / LOG_NAME, log)
    model.eval()
    result.log, result.features_computed = log, source.computed
    result.final_dir = out / "final"
    save_adapters(model, result.final_dir, extra={"epoch": len(log), "trained_by": "adaptclip_med.train"})
    if export_authors:
        result.authors_checkpoint = export_authors_checkpoint(model, out / AUTHORS_NAME)
    return result
