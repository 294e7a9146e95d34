"""``python -m adaptclip_med.score INPUT... --out DIR``: anomaly scores and heat maps for unlabelled studies.

Argument parsing only; the work is :func:`adaptclip_med.scoring.run_scoring`. Usage: docs/scoring.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from adaptclip_med.demo import tiny_setup
from adaptclip_med.evaluate import add_device_arguments, add_model_arguments, add_store_arguments, store_checks
from adaptclip_med.evaluation.config import EvalConfig
from adaptclip_med.runtime.argparsing import CLIParser, require_values
from adaptclip_med.runtime.errors import AdaptCLIPError, WeightsNotFoundError, exception_line

DESCRIPTION = """\
Score images, scans and folders that have no labels: one anomaly score per image, slice or frame (and
per volume / series: the maximum and the top-k mean over slices, with the peak slice), and a heat map.

INPUT is an image (PNG/JPEG/TIFF/DICOM), a DICOM series folder, a NIfTI volume, or a folder of any of
these (searched recursively; DICOM files are grouped into series by SeriesInstanceUID).

Writes into --out: scores.csv, skipped.csv (files that could not be read, with the reason), overlays/
(image | map | overlay PNGs), volumes/ (a NIfTI map per NIfTI volume, on its grid), dicom/ (per DICOM
series: a Parametric Map, a Segmentation at the threshold and colour Secondary Captures, to open next to
the scan in a DICOM viewer) and run.json. Re-running the same command reuses every image already scored.
Research use only: not a diagnostic device."""

EXAMPLES = """\
examples:
  python -m adaptclip_med.score scan_folder/ --out reports/scan
  python -m adaptclip_med.score ct_series/ --normals normal_ct/ --out reports/ct
  python -m adaptclip_med.score brain.nii.gz photos/ --threshold 0.6 --anonymize --key-file ~/keys/ct.json \\
      --out reports/shared
  python -m adaptclip_med.score scan_folder/ --demo-model --out reports/try   # no weights: pipeline demo

exit codes:
  0    scored (files that could not be read are listed in skipped.csv)
  2    nothing was scored: a bad argument, a missing input path, an unusable or busy --out, missing
       weights, a write that failed (e.g. a full disk); one "error:" line says which
  130  interrupted (Ctrl-C); run the same command again to resume"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``score`` (model options shared with ``evaluate``)."""
    p = CLIParser(prog="python -m adaptclip_med.score", description=DESCRIPTION, epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, DICOM/NIfTI files, or folders")
    p.add_argument("--out", required=True, help="output folder; re-use it to resume")
    p.add_argument("--replace", action="store_true",
                   help="--out holds results of other inputs or settings: replace them (only files an earlier "
                        "run recorded in its manifest are deleted)")
    p.add_argument("--demo-model", action="store_true",
                   help="no weights needed: the random tiny backbone (pipeline demo only; every output is marked)")
    add_model_arguments(p.add_argument_group("model"))
    r = p.add_argument_group("running")
    add_device_arguments(r)
    add_store_arguments(r)
    d = p.add_argument_group("normal examples and threshold")
    d.add_argument("--normals", default=None, metavar="DIR",
                   help="folder of normal images like the inputs: few-shot prompts; with >= 2 images the "
                        "threshold is calibrated on them by leave-one-out")
    d.add_argument("--max-normals", type=int, default=16, help="use at most this many normals (default: 16)")
    d.add_argument("--threshold", type=float, default=None,
                   help="image-score threshold of the above_threshold column (default: calibrated on --normals)")
    d.add_argument("--pixel-threshold", type=float, default=None,
                   help="map threshold of contours and the DICOM Segmentation (default: calibrated, else --threshold)")
    d.add_argument("--target-specificity", type=float, default=0.95,
                   help="specificity the calibrated image threshold aims at on the normals (default: 0.95)")
    from adaptclip_med.roi.options import add_score_arguments

    add_score_arguments(p.add_argument_group("anatomy ROI and applicability gate (docs/roi.md)"))
    o = p.add_argument_group("outputs")
    o.add_argument("--overlays", choices=("peak", "all", "none"), default="peak",
                   help="overlay PNGs: each image and each volume's peak slice (default), every slice, or none")
    o.add_argument("--topk", type=int, default=3, help="slices averaged in a volume's topk_mean (default: 3)")
    o.add_argument("--no-dicom", action="store_true", help="do not write DICOM outputs for DICOM inputs")
    o.add_argument("--anonymize", action="store_true",
                   help="name every input by a salted pseudonym; no file name, path or patient identifier in "
                        "any output (DICOM outputs get the pseudonym as patient name and ID)")
    o.add_argument("--key-file", default=None, metavar="FILE",
                   help="with --anonymize: write the key (pseudonym -> path) here, outside --out")
    return p


def config_from_args(args: argparse.Namespace, argv: list[str]):
    """Validate the arguments and build the :class:`~adaptclip_med.scoring.ScoreConfig`."""
    from adaptclip_med.scoring import ScoreConfig
    from adaptclip_med.scoring.applicability import from_args as gate_from_args

    checks = (
        ("--batch-size", args.batch_size, args.batch_size >= 1, ">= 1"),
        ("--max-normals", args.max_normals, args.max_normals >= 1, ">= 1"),
        ("--topk", args.topk, args.topk >= 1, ">= 1"),
        ("--target-specificity", args.target_specificity, 0 < args.target_specificity <= 1, "in (0, 1]"),
        *((flag, v, v is None or 0 <= v <= 1, "in [0, 1] (scores are in [0, 1])")
          for flag, v in (("--threshold", args.threshold), ("--pixel-threshold", args.pixel_threshold))),
        *store_checks(args),
    )
    require_values(checks)
    if args.key_file and not args.anonymize:
        msg = "--key-file is the key of --anonymize's pseudonyms; pass --anonymize too (or drop --key-file)"
        raise AdaptCLIPError(msg)
    for given in [*args.inputs, *([args.normals] if args.normals else [])]:
        if not Path(given).exists():
            msg = f"input {given}: no such file or folder; check the path"
            raise AdaptCLIPError(msg)
    if args.demo_model:  # what the notebooks fall back to (adaptclip_med.demo.tiny_setup)
        tiny = tiny_setup("--demo-model")
        args.backbone, args.pretrained, args.checkpoint = tiny.backbone, tiny.pretrained, tiny.checkpoint
        args.image_size, args.allow_random_backbone = tiny.image_size, True
    roi, gate = gate_from_args(args)
    model = EvalConfig(datasets=(), roots=(), backbone=args.backbone, pretrained=args.pretrained,
                       checkpoint=args.checkpoint, image_size=args.image_size,
                       allow_random_backbone=args.allow_random_backbone, device=args.device,
                       precision=args.precision, engine=args.engine, int8=args.int8,
                       int8_calibration=args.int8_calibration,
                       batch_size=args.batch_size, target_specificity=args.target_specificity,
                       feature_cache=args.feature_cache, feature_cache_max_gb=args.feature_cache_max_gb)
    return ScoreConfig(
        inputs=tuple(args.inputs), out=args.out, model=model, normals=args.normals, max_normals=args.max_normals,
        threshold=args.threshold, pixel_threshold=args.pixel_threshold, topk=args.topk, overlays=args.overlays,
        dicom=not args.no_dicom, anonymize=args.anonymize, key_file=args.key_file, replace=args.replace,
        roi=roi, gate=gate, command_line=shlex.join([sys.executable, "-m", "adaptclip_med.score", *argv]))


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad input, weights or --out, 130 interrupted)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        from adaptclip_med.scoring import run_scoring

        config = config_from_args(args, argv)
        if config.anonymize and not config.key_file:
            print("note: --anonymize without --key-file: the pseudonyms cannot be traced back to the files")
        res = run_scoring(config)
    except WeightsNotFoundError as err:
        print(f"error: {str(err).splitlines()[0]}; to run without weights pass --demo-model (random tiny "
              "backbone, pipeline demo only, every output marked)", file=sys.stderr)
        return 2
    except AdaptCLIPError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except OSError as err:  # a full disk or a folder made read-only mid-run
        where = f" ({err.filename})" if err.filename else ""
        print(f"error: cannot write the outputs: {err.strerror or exception_line(err)}{where}", file=sys.stderr)
        return 2
    for note in res.notes:
        print(note)
    if res.notice:
        print(f"NOTE: {res.notice}: these scores show the pipeline, not AdaptCLIP's performance")
    extra = [f"{len(res.nifti_files)} NIfTI map(s) in {res.out / 'volumes'}"] if res.nifti_files else []
    extra += [f"{len(res.dicom_files)} DICOM object(s) in {res.out / 'dicom'}"] if res.dicom_files else []
    print(f"{res.scored} image(s) scored, {res.reused} reused, {res.skipped} skipped (listed in "
          f"{res.out / 'skipped.csv'})")
    if res.why:
        print(f"scored again, not reused from {res.out / 'cache'}: {res.why}")
    if res.store_note:
        print(res.store_note)
    print(f"wrote {res.out / 'scores.csv'}; {res.overlays} overlay(s) in {res.out / 'overlays'}"
          + "".join(f"; {e}" for e in extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
