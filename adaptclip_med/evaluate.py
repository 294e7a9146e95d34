"""``python -m adaptclip_med.evaluate``: score data sets with AdaptCLIP and write tables, figures, overlays.

Only argument parsing lives here: the arguments become one frozen :class:`EvalConfig`, handed to
:func:`adaptclip_med.evaluation.run_evaluation`. Usage: docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import difflib
import shlex
import sys
from dataclasses import replace

from adaptclip_med.evaluation.config import EvalConfig, resolve_prompt_folders, resolve_roi, resolve_roots
from adaptclip_med.runtime.argparsing import CLIParser, require_values
from adaptclip_med.runtime.errors import AdaptCLIPError

#: Kept in step with ``adaptclip_med.loading.factory.PRECISIONS`` (not imported: ``--help`` must not load torch).
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
#: Kept in step with ``adaptclip_med.engines.ENGINES`` / ``INT8_MODES``.
ENGINES = ("torch", "onnxruntime", "openvino")
INT8_MODES = ("weights", "full")

DESCRIPTION = """\
Measure how well AdaptCLIP separates normal from abnormal images (and, where masks exist, finds the
lesion), on one or more data sets, with 0 or more normal example images ("shots") per class.

Writes into --out: per_image.csv (one score per image), summary.csv and tables/main.md|.tex
(paper-style metrics, mean ± std over prompt seeds, with an Avg row), tables/clinical.md
(sensitivity at 95 % specificity and the reverse, with 95 % confidence intervals), operating_points.csv
(a decision threshold calibrated on the normal examples only), heat-map overlays, figures, prompt
manifests and run.json (versions, checkpoint hash, settings). Re-running the same command resumes an
interrupted run. Research use only: not a diagnostic device."""

EXAMPLES = """\
examples:
  python -m adaptclip_med.evaluate --datasets br35h --root data/br35h --shots 0 --out reports/br35h
  python -m adaptclip_med.evaluate --datasets br35h covid19 kvasir endo --root data --shots 0 1 2 4 \\
      --seeds 10 20 30 --checkpoint adaptclip-mvtec --backbone ViT-L-14-336 --out reports/medical
  python -m adaptclip_med.evaluate --datasets kvasir --root kvasir=/data/Kvasir-SEG --shots 0 --limit 20"""


def _none(value: str) -> str | None:
    return None if value.lower() in ("none", "random", "") else value


def add_model_arguments(m: argparse._ArgumentGroup) -> None:
    """The model options (``--backbone --pretrained --checkpoint --image-size --allow-random-backbone``).

    Shared with ``python -m adaptclip_med.score``.
    """
    m.add_argument("--backbone", default="ViT-L-14-336", help="CLIP backbone (default: ViT-L-14-336)")
    m.add_argument("--pretrained", type=_none, default="openai",
                   help="backbone weights: open_clip tag or file; 'none' = random (default: openai)")
    m.add_argument("--checkpoint", type=_none, default="adaptclip-mvtec",
                   help="adapters: adaptclip-mvtec, adaptclip-visa, a folder of ours, an authors' .pth, or "
                        "'none' (default: adaptclip-mvtec)")
    m.add_argument("--image-size", type=int, default=None, help="input size in pixels (default: the backbone's)")
    m.add_argument("--allow-random-backbone", action="store_true",
                   help="accept random backbone weights (pipeline tests only; scores are meaningless)")


def add_store_arguments(r: argparse._ArgumentGroup) -> None:
    """``--feature-cache`` and ``--feature-cache-max-gb`` (shared with ``python -m adaptclip_med.score``)."""
    r.add_argument("--feature-cache", default=None, metavar="DIR",
                   help="keep the backbone features of every image here (float16, keyed by image bytes, weights "
                        "and settings) and reuse them in later runs of evaluate, score and train: new seeds, "
                        "shots or checkpoints cost no backbone time (default: none)")
    r.add_argument("--feature-cache-max-gb", type=float, default=None, metavar="GB",
                   help="size limit of --feature-cache; least recently used entries are deleted (default: none)")


def store_checks(args: argparse.Namespace) -> tuple[tuple[str, object, bool, str], ...]:
    """The checks of :func:`add_store_arguments`' values (rows for ``require_values``).

    Raises:
        AdaptCLIPError: a size limit without a store folder.
    """
    if args.feature_cache_max_gb is not None and not args.feature_cache:
        msg = "--feature-cache-max-gb: got a size limit but no --feature-cache DIR; pass the folder too"
        raise AdaptCLIPError(msg)
    return (("--feature-cache-max-gb", args.feature_cache_max_gb,
             args.feature_cache_max_gb is None or args.feature_cache_max_gb > 0, "> 0"),)


def add_device_arguments(r: argparse._ArgumentGroup) -> None:
    """``--device`` and ``--batch-size`` (shared with ``python -m adaptclip_med.score``)."""
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default: cpu)")
    r.add_argument("--batch-size", type=int, default=8,
                   help="images per forward pass; bounds memory (default: 8; 32 suits a large GPU)")
    add_engine_arguments(r)


def add_engine_arguments(r: argparse._ArgumentGroup) -> None:
    """``--precision``, ``--engine``, ``--int8`` and ``--int8-calibration`` (``evaluate``, ``score``, ``train``)."""
    r.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="backbone arithmetic: fp32, bf16 / fp16 autocast (fp16 on GPUs), or int8 (with --engine "
                        "onnxruntime or openvino) (default: fp32)")
    r.add_argument("--engine", choices=ENGINES, default="torch",
                   help="what computes the backbone features: torch, or its exported graph run by onnxruntime or "
                        "openvino on the CPU (built on first use, cached) (default: torch)")
    r.add_argument("--int8", choices=INT8_MODES, default=None,
                   help="with --precision int8: weights (weight-only, no calibration) or full (weights and "
                        "activations, calibrated on --int8-calibration) (default: weights)")
    r.add_argument("--int8-calibration", default=None, metavar="DIR",
                   help="folder of normal images of the kind scored, to calibrate --int8 full")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its ``--help`` is meant to be read by clinicians too)."""
    p = CLIParser(prog="python -m adaptclip_med.evaluate", description=DESCRIPTION,
                  epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("what to evaluate")
    d.add_argument("--datasets", nargs="+", required=True, metavar="NAME",
                   help="registered data set names (see `python -m adaptclip_med.datasets --list`), or "
                        "LABEL=NAME to read a folder with a registered layout under your own name "
                        "(e.g. my_ct=folder; the reports say my_ct)")
    d.add_argument("--root", nargs="+", default=[], metavar="PATH",
                   help="the data set's folder (one data set); a folder holding one sub-folder per data set; "
                        "or NAME=PATH pairs")
    d.add_argument("--normal-prompts", nargs="+", default=[], metavar="PATH",
                   help="folder of normal example images for sets that have none (polyp sets: kvasir, endo, "
                        "clinicdb, colondb); one folder for one data set, or NAME=PATH pairs")
    d.add_argument("--group-pattern", default=None, metavar="REGEX",
                   help="patient/study id from the image path relative to --root (named group 'group' or the "
                        "first capture group), e.g. '^(?:normal|abnormal)/(p\\d+)_'; default: the loader's rule")
    d.add_argument("--shots", nargs="+", type=int, default=[0], metavar="K",
                   help="normal example images per class; 0 = zero-shot (default: 0)")
    d.add_argument("--seeds", nargs="+", type=int, default=[10, 20, 30], metavar="S",
                   help="seeds for drawing the example images; results are averaged (default: 10 20 30)")
    d.add_argument("--methods", nargs="+", default=["adaptclip"], choices=["adaptclip", "winclip"],
                   help="methods to score every part with, on the same images and prompts (AdaptCLIP always, "
                        "the reference); with winclip, comparison.csv and tables/comparison.md compare them "
                        "(default: adaptclip)")
    d.add_argument("--limit", type=int, default=None, metavar="N",
                   help="at most N images per class (half normal, half abnormal), for a quick look")
    add_model_arguments(p.add_argument_group("model"))
    r = p.add_argument_group("running")
    r.add_argument("--out", default="reports/run", help="output folder; re-use it to resume (default: reports/run)")
    add_device_arguments(r)
    r.add_argument("--workers", type=int, default=None,
                   help="image-loading processes (default: min(4, CPU count) with --device cuda, else 0)")
    add_store_arguments(r)
    r.add_argument("--strict", action="store_true",
                   help="stop at the first unreadable or unusable file (default: skip it and list it in skipped.csv)")
    o = p.add_argument_group("metrics and outputs")
    o.add_argument("--pixel-metrics", choices=("auto", "exact", "binned"), default="auto",
                   help="exact pixel metrics, or binned (bounded memory; an error bound covering every pixel "
                        "is reported in summary.csv) (default: auto: exact up to 40 M pixels per class)")
    o.add_argument("--bins", type=int, default=1 << 16,
                   help="bins of the binned pixel metrics, a power of two (default: 65536)")
    o.add_argument("--map-range", nargs=2, type=float, default=[0.0, 1.0], metavar=("LOW", "HIGH"),
                   help="colour range of the figures and initial range of the binned histogram, which widens "
                        "to cover every score (default: 0 1)")
    o.add_argument("--target-specificity", type=float, default=0.95,
                   help="specificity targeted by the calibrated threshold (default: 0.95)")
    o.add_argument("--pixel-specificity", type=float, default=0.99,
                   help="pixel specificity of the calibrated contour threshold (default: 0.99)")
    o.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates of the CIs; 0 = none")
    o.add_argument("--overlays", type=int, default=8,
                   help="heat-map overlays per data set, class and shot count (top scores); -1 = all, 0 = none")
    o.add_argument("--overlay-norm", choices=("run", "image"), default="run",
                   help="one colour scale for the whole run (default) or per image")
    o.add_argument("--no-figures", action="store_true", help="skip the ROC/PR, qualitative and bar figures")
    o.add_argument("--protocol", default="", help="protocol text recorded with the results")
    g = p.add_argument_group("anatomy ROI and applicability gate (docs/roi.md)")
    g.add_argument("--roi", nargs="+", default=["none"], metavar="auto|none|FOLDER",
                   help="image score inside the anatomy ROI and pixel metrics again on its pixels only (@roi "
                        "columns): auto (found per modality), none (default), a folder of masks named by the "
                        "images' file stems (one data set), or NAME=auto|none|PATH pairs")
    from adaptclip_med.roi.options import add_gate_arguments

    add_gate_arguments(g)
    a = p.add_argument_group("patient data")
    a.add_argument("--anonymize", action="store_true",
                   help="no output file carries a path, file or folder name or DICOM identifier of the input: "
                        "images are named by salted pseudonyms (docs/privacy.md)")
    a.add_argument("--key-file", default=None, metavar="PATH",
                   help="with --anonymize: where the pseudonym key (pseudonym -> file) is written; must lie "
                        "outside --out; re-use it to keep the same pseudonyms")
    return p


def parse_datasets(values: list[str]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """``--datasets`` values → (labels, ``((label, registered name), ...)`` for ``LABEL=NAME`` values).

    Raises:
        AdaptCLIPError: unknown registered name (with a "did you mean"), empty or repeated label.
    """
    from adaptclip_med.data import list_datasets

    known = list_datasets()
    labels: list[str] = []
    layouts: list[tuple[str, str]] = []
    for value in values:
        label, _, name = value.partition("=")
        name = name or label
        if not label or not name or "/" in label:
            msg = f"--datasets {value!r}: expected NAME or LABEL=NAME (LABEL without '/')"
            raise AdaptCLIPError(msg)
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            msg = f"unknown data set {name!r}; {hint}registered: {', '.join(known)}"
            raise AdaptCLIPError(msg)
        if label in labels:
            msg = f"--datasets: {label!r} given twice; give each data set once (LABEL=NAME to tell copies apart)"
            raise AdaptCLIPError(msg)
        labels.append(label)
        if name != label:
            layouts.append((label, name))
    return tuple(labels), tuple(layouts)


def config_from_args(args: argparse.Namespace, argv: list[str]) -> EvalConfig:
    """Turn parsed arguments into the frozen config (validates names and folders)."""
    labels, layouts = parse_datasets(args.datasets)
    checks = (
        ("--shots", min(args.shots), min(args.shots) >= 0, "k >= 0"),
        ("--batch-size", args.batch_size, args.batch_size >= 1, ">= 1"),
        ("--limit", args.limit, args.limit is None or args.limit >= 1, ">= 1"),
        ("--workers", args.workers, args.workers is None or args.workers >= 0, ">= 0"),
        *store_checks(args),
        ("--bins", args.bins, args.bins >= 2 and not args.bins & (args.bins - 1), "a power of two >= 2"),
        ("--map-range", args.map_range, args.map_range[0] < args.map_range[1], "LOW < HIGH"),
        ("--target-specificity", args.target_specificity, 0 < args.target_specificity <= 1, "in (0, 1]"),
        ("--pixel-specificity", args.pixel_specificity, 0 < args.pixel_specificity <= 1, "in (0, 1]"),
        ("--bootstrap", args.bootstrap, args.bootstrap >= 0, ">= 0"),
        ("--overlays", args.overlays, args.overlays >= -1, ">= -1"),
    )
    require_values(checks)
    if args.key_file and not args.anonymize:
        msg = "--key-file: only used with --anonymize (it holds the pseudonym key); add --anonymize or drop it"
        raise AdaptCLIPError(msg)
    from adaptclip_med.runtime.privacy import check_key_file

    check_key_file(args.key_file, args.out)
    return EvalConfig(
        datasets=labels, layouts=layouts, roots=resolve_roots(labels, args.root),
        normal_prompts=resolve_prompt_folders(labels, args.normal_prompts), group_pattern=args.group_pattern,
        out=args.out,
        shots=tuple(args.shots), seeds=tuple(args.seeds), methods=tuple(dict.fromkeys(["adaptclip", *args.methods])),
        backbone=args.backbone, pretrained=args.pretrained,
        checkpoint=args.checkpoint, image_size=args.image_size, allow_random_backbone=args.allow_random_backbone,
        device=args.device, precision=args.precision, batch_size=args.batch_size, workers=args.workers,
        engine=args.engine, int8=args.int8, int8_calibration=args.int8_calibration,
        limit=args.limit,
        pixel_mode=args.pixel_metrics, n_bins=args.bins, map_range=tuple(args.map_range),
        target_specificity=args.target_specificity, pixel_specificity=args.pixel_specificity,
        n_boot=args.bootstrap, overlays=args.overlays, overlay_norm=args.overlay_norm,
        figures=not args.no_figures, protocol=args.protocol, strict=args.strict,
        feature_cache=args.feature_cache, feature_cache_max_gb=args.feature_cache_max_gb,
        command_line=shlex.join([sys.executable, "-m", "adaptclip_med.evaluate", *argv]),
        anonymize=args.anonymize, key_file=args.key_file,
        roi=resolve_roi(labels, args.roi), gate=args.gate == "on",
        gate_off=tuple(sorted({n.strip() for n in args.gate_off.split(",") if n.strip()})),
        expect_modality=args.expect_modality, expect_body_part=args.expect_body_part, force=args.force,
        roi_floor=args.roi_floor,
    )


def report_lines(result: object) -> list[str]:
    """What the CLI prints after a run: reuse and why, encodes, skipped files; the last line names index.html."""
    from adaptclip_med.runtime.skips import screen_lines

    lines = [f"{len(result.computed)} part(s) computed, {len(result.reused)} reused from an earlier run"
             + (" (same settings, weights, checkpoint and image bytes)" if result.reused else "")]
    lines += [f"  recomputed {stem}: {why}" for stem, why in result.why.items()]
    enc = result.encodes
    many = getattr(result, "processes", 1) > 1
    lines.append(f"backbone encodes: {enc.encoded} image(s)"
                 + (f" by {result.processes} processes" if many else "")
                 + (f", {enc.from_store} from the feature store" if enc.from_store else "")
                 + (f"; {result.batches_reused} batch(es) read from the ranks' shards" if many and
                    result.batches_reused else
                    f"; {result.batches_reused} batch(es) resumed from an interrupted run" if result.batches_reused
                    else ""))
    lines += screen_lines(result.skipped, result.out / 'skipped.csv')
    lines += screen_lines(getattr(result, "warnings", []), result.out / "warnings.csv", "kept with a warning")
    if result.store_note:
        lines.append(result.store_note)
    lines.append(f"tables: {result.out / 'tables' / 'main.md'}  summary: {result.out / 'summary.csv'}")
    if getattr(result, "key_file", None):
        lines.append(f"pseudonym key (keep private, do not share): {result.key_file}")
    lines.append(f"report: {result.out / 'index.html'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad input or weights)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    ctx = None
    try:
        config = config_from_args(args, argv)  # bad names and folders fail here, before torch loads
        from adaptclip_med.evaluation import run_evaluation
        from adaptclip_med.runtime.distributed import init_from_env

        ctx, device = init_from_env(config.device)  # under torchrun: join the job (one GPU per rank)
        result = run_evaluation(replace(config, device=device), ctx=ctx)
    except AdaptCLIPError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if ctx is not None:
            ctx.close()
    if not ctx.is_main:
        print(f"rank {ctx.rank}/{ctx.world_size}: scored {result.share_batches} batch(es), its share; rank 0 "
              "writes the tables")
        return 0
    print("\n".join(report_lines(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
