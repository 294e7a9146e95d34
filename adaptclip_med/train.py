"""``python -m adaptclip_med.train``: train the adapters on industrial data (argparse only).

Example::

    python -m adaptclip_med.train --dataset mvtec --root /data/mvtec_anomaly_detection --out runs/mvtec

See docs/training.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from adaptclip_med.evaluate import add_engine_arguments
from adaptclip_med.runtime.argparsing import CLIParser
from adaptclip_med.runtime.errors import AdaptCLIPError
from adaptclip_med.training.config import BRANCHES, SCHEDULES, TrainConfig


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    d = TrainConfig()
    p = CLIParser(prog="python -m adaptclip_med.train", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="registered data set: mvtec, visa, mvtec3d, magnetic_tile, ...")
    p.add_argument("--root", required=True, help="the data set folder as distributed by its publisher")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/mvtec")
    p.add_argument("--backbone", default="ViT-L-14-336")
    p.add_argument("--pretrained", default="openai", help="open_clip tag or weights file; 'none' = random")
    p.add_argument("--allow-random-backbone", action="store_true", help="permit --pretrained none (tests)")
    p.add_argument("--image-size", type=int, default=None, help="default: the backbone's (518 for ViT-L)")
    p.add_argument("--checkpoint", default=None, help="start from these adapters instead of fresh ones")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--betas", type=float, nargs=2, default=list(d.betas), metavar=("B1", "B2"))
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    p.add_argument("--branches", default=",".join(d.branches),
                   help=f"comma-separated subset of {','.join(BRANCHES)} (zero-shot only: va,ta)")
    p.add_argument("--device", default=d.device, help="cpu, cuda, cuda:1, mps")
    add_engine_arguments(p)
    p.add_argument("--cache-dir", default=None,
                   help="feature cache folder (default OUT/cache; with --feature-cache: the masks only)")
    p.add_argument("--feature-cache", default=None, metavar="DIR",
                   help="keep the image features in the store shared with evaluate --feature-cache DIR: "
                        "images an evaluation (or another training) encoded are not encoded again")
    p.add_argument("--feature-cache-max-gb", type=float, default=None, metavar="GB",
                   help="size limit of --feature-cache; least recently used entries are deleted (default: none)")
    p.add_argument("--cache-dtype", choices=("float16", "float32"), default=d.cache_dtype)
    p.add_argument("--no-cache", action="store_true", help="recompute the backbone every epoch (slow)")
    p.add_argument("--precompute", action="store_true",
                   help="fill the feature cache before epoch 1 (under torchrun: each process fills its share)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--no-export", action="store_true", help="skip the authors'-format export")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable or unusable file (default: skip it and list it in skipped.csv)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, train, print where the results are; return the exit status."""
    args = build_parser().parse_args(argv)
    from adaptclip_med.runtime.distributed import init_from_env  # torch loads after parsing: --help answers at once
    from adaptclip_med.training.api import train

    pretrained = None if str(args.pretrained).lower() == "none" else args.pretrained
    ctx = None
    try:
        ctx, args.device = init_from_env(args.device)
        if ctx.active and not (args.precompute and not args.no_cache):
            msg = (f"torchrun with {ctx.world_size} processes shards the feature precompute only; pass "
                   "--precompute (training itself then runs on rank 0 from the shared cache)")
            raise AdaptCLIPError(msg)
        config = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, betas=tuple(args.betas), seed=args.seed,
            schedule=args.schedule, branches=tuple(b.strip() for b in args.branches.split(",") if b.strip()),
            cache_dtype=args.cache_dtype, use_cache=not args.no_cache, device=args.device,
            progress=not args.quiet,
        )
        result = train(args.dataset, args.root, args.out, backbone=args.backbone, pretrained=pretrained,
                       image_size=args.image_size, checkpoint=args.checkpoint,
                       allow_random_backbone=args.allow_random_backbone, config=config,
                       cache_dir=args.cache_dir, feature_cache=args.feature_cache, engine=args.engine,
                       precision=args.precision, int8=args.int8, int8_calibration=args.int8_calibration,
                       feature_cache_max_gb=args.feature_cache_max_gb, resume=args.resume, precompute=args.precompute,
                       export_authors=not args.no_export, strict=args.strict, ctx=ctx)
    except (AdaptCLIPError, ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if ctx is not None:
            ctx.close()
    if result is None:
        print(f"rank {ctx.rank}: stored its share of the feature cache; rank 0 trains")
        return 0
    from adaptclip_med.runtime.skips import screen_lines

    for line in screen_lines(result.skipped, result.out / "skipped.csv"):
        print(line)
    last = result.log[-1] if result.log else {}
    print(f"trained {len(result.log)} epoch(s); final loss {last.get('loss', float('nan')):.4f}")
    print(f"adapters: {result.final_dir}")
    if result.authors_checkpoint:
        print(f"authors' format: {result.authors_checkpoint}")
    print(f"loss log: {result.out / 'train_log.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
