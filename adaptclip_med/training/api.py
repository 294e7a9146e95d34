"""Train from a registered data set folder: the Python face of ``python -m adaptclip_med.train``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from adaptclip_med.features.cache import FeatureCache
from adaptclip_med.features.store import open_feature_store
from adaptclip_med.runtime.distributed import Dist, shard, together
from adaptclip_med.runtime.errors import DataValidationError
from adaptclip_med.runtime.privacy import relative_path
from adaptclip_med.runtime.skips import Skip, one_line, strict_error
from adaptclip_med.training.config import TrainConfig
from adaptclip_med.training.features import FeatureSource
from adaptclip_med.training.samples import TrainSample, check_prompt_pool, make_samples
from adaptclip_med.training.trainer import (
    TrainResult,
    check_out_folder,
    check_store_options,
    model_identity,
    train_adapters,
)


def samples_from_index(index: object) -> tuple[list[TrainSample], dict[str, list[Path]]]:
    """Queries and prompt pools of a :class:`adaptclip_med.data.DatasetIndex`.

    Queries are its test records (normal and anomalous); prompts its normal train images per class.

    Raises:
        DataValidationError: no test records, an anomalous record without a mask, or volume slices.
    """
    slices = [r for r in index.records if r.slice_index is not None]
    if slices:
        msg = (f"{slices[0].image}: data set {index.name!r} yields volume slices; expected 2-D industrial "
               "images (training uses MVTec AD or VisA). Train on an industrial set.")
        raise DataValidationError(msg)
    items = [(r.image, r.mask, r.label, r.cls) for r in index.records]
    samples = make_samples(items, source=f"{index.name} test split at {index.root}")
    pool = {cls: [Path(r.image) for r in recs] for cls, recs in index.prompt_pool.items()}
    return samples, pool


def precompute_features(model: object, samples: Sequence[TrainSample], prompt_pool: Mapping[str, Sequence[Path]],
                        cache_dir: str | Path | None, dtype: str = "float16", progress: bool = True,
                        batch_size: int = 8, ctx: Dist | None = None, feature_cache: str | Path | None = None,
                        feature_cache_max_gb: float | None = None) -> int:
    """Fill the feature cache for every query and prompt image; return how many were computed.

    Args:
        model: an ``AdaptCLIP``; the cache entries are keyed by its backbone identity.
        samples: queries; prompt_pool: ``{cls: [paths]}``; cache_dir: the cache folder (unused with
            ``feature_cache``).
        dtype: ``"float16"`` or ``"float32"`` storage.
        ctx: under ``torchrun``, this rank's place: it computes only its share of the images (sorted
            by content hash, every ``world_size``-th), so N ranks fill one cache folder together.
        feature_cache: fill the feature store shared with evaluation at this folder instead of the
            training cache (:func:`adaptclip_med.features.store.open_feature_store`);
            feature_cache_max_gb: its size limit.

    Raises:
        ValueError: neither ``cache_dir`` nor ``feature_cache`` (there is nowhere to put the features).
    """
    if cache_dir is None and feature_cache is None:
        msg = "precompute_features: got no cache_dir and no feature_cache; expected a folder to fill"
        raise ValueError(msg)
    if feature_cache is not None:
        store = open_feature_store(feature_cache, model, dtype, feature_cache_max_gb)
        source = FeatureSource(model, None, model.device, chunk=batch_size, dtype=dtype, store=store)
    else:
        source = FeatureSource(model, FeatureCache(cache_dir, model_identity(model), dtype), model.device,
                               chunk=batch_size)
    paths = list(dict.fromkeys([s.image for s in samples] + [Path(p) for ps in prompt_pool.values() for p in ps]))
    source.hash_files(paths, progress=progress)
    if ctx is not None and ctx.active:
        paths = shard(paths, ctx, key=lambda p: f"{source.sha[p]}|{p}")
    done = 0
    step = batch_size * 4
    for start in tqdm(range(0, len(paths), step), desc="precomputing features", disable=not progress):
        done += source.fill(paths[start:start + step])
    return done


def train(
    dataset: str,
    root: str | Path,
    out: str | Path,
    *,
    backbone: str = "ViT-L-14-336",
    pretrained: str | None = "openai",
    image_size: int | None = None,
    checkpoint: str | Path | None = None,
    allow_random_backbone: bool = False,
    config: TrainConfig | None = None,
    cache_dir: str | Path | None = None,
    feature_cache: str | Path | None = None,
    feature_cache_max_gb: float | None = None,
    resume: bool = False,
    precompute: bool = False,
    export_authors: bool = True,
    strict: bool = False,
    ctx: Dist | None = None,
    engine: str = "torch",
    precision: str = "fp32",
    int8: str | None = None,
    int8_calibration: str | Path | None = None,
) -> TrainResult | None:
    """Train AdaptCLIP's adapters on an industrial data set (method spec §5).

    Args:
        dataset: a registered data set name (``"mvtec"``, ``"visa"``, ``"mvtec3d"``, ``"magnetic_tile"``).
        root: its folder, as distributed by the publisher.
        out: run folder (checkpoints, CSV log, final adapters, authors' export, cache).
        backbone, pretrained, image_size, allow_random_backbone: passed to
            :func:`adaptclip_med.load_model` (the adapters start fresh, seeded by ``config.seed``).
        checkpoint: start from these adapters instead of fresh ones (fine-tuning).
        config: hyper-parameters (default: the method's).
        cache_dir: feature cache (default ``out/cache``); with ``feature_cache``, of the masks only.
        feature_cache: keep the image features in the feature store shared with evaluation at this
            folder (``evaluate --feature-cache``): images it holds are not encoded again.
        feature_cache_max_gb: size limit of ``feature_cache`` (least recently used entries go).
        resume: continue the run in ``out`` exactly.
        precompute: fill the feature cache (or store) for all images before the first epoch.
        export_authors: also write ``out/adaptclip_authors.pth``.
        strict: stop at the first unusable file (a problem the loader lists, or an image or mask that
            cannot be read) with a one-line error; by default such files are skipped and listed on
            ``TrainResult.skipped``, in ``out/skipped.csv`` and in ``out/run.json``.
        ctx: under ``torchrun`` (``precompute`` only): every rank fills its share of the cache, then
            rank 0 trains from the full cache and the others return ``None``.
        engine, precision, int8, int8_calibration: what computes the frozen features
            (:func:`adaptclip_med.load_model`: ``"torch"``, or an exported ``"onnxruntime"`` /
            ``"openvino"`` graph, fp32 or ``"int8"``); part of the feature cache's key.

    Raises:
        DataValidationError: missing test split; with ``strict``, the first unusable file.
        PromptError: a class without normal train images.
        CheckpointMismatchError: ``resume`` with another configuration.
        ValueError: ``feature_cache`` without the cache, or a bad ``feature_cache_max_gb``.
    """
    from adaptclip_med.data import load_dataset
    from adaptclip_med.loading.factory import load_model

    config = config or TrainConfig()
    check_store_options(config, feature_cache, feature_cache_max_gb)  # before any work
    check_out_folder(Path(out), resume)
    index = load_dataset(dataset, root)
    if strict and index.problems:
        raise strict_error(*index.problems[0])
    skipped = [Skip(dataset, relative_path(path, Path(root)), one_line(why)) for path, why in index.problems]
    samples, pool = samples_from_index(index)
    if "pqa" in config.branches:
        pool = check_prompt_pool(samples, pool, source=f"{dataset} at {root}")
    model = load_model(backbone=backbone, pretrained=pretrained, checkpoint=checkpoint, image_size=image_size,
                       device=config.device, allow_random_backbone=allow_random_backbone, seed=config.seed,
                       engine=engine, precision=precision, int8=int8, calibration=int8_calibration)
    cache_dir = Path(cache_dir) if cache_dir else Path(out) / "cache"
    ctx = ctx or Dist()
    if precompute and config.use_cache:
        # every rank stores its share, then waits for the others: rank 0 then finds the whole cache
        together(ctx, lambda: precompute_features(model, samples, pool, cache_dir, config.cache_dtype,
                                                  config.progress and ctx.is_main, config.batch_size, ctx,
                                                  feature_cache, feature_cache_max_gb))
    if not ctx.is_main:
        return None
    return train_adapters(model, samples, pool, out, config, cache_dir=cache_dir, feature_cache=feature_cache,
                          feature_cache_max_gb=feature_cache_max_gb, resume=resume,
                          export_authors=export_authors, skipped=skipped, strict=strict, data_root=root,
                          dataset=dataset)
