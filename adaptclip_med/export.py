"""``python -m adaptclip_med.export``: write the frozen backbone's feature graph as ONNX or OpenVINO IR.

Only argument parsing lives here; the export is :func:`adaptclip_med.engines.session.export_graph`.
The folder gets ``model.onnx`` (``--format onnx``, run by ONNX Runtime) or ``model.xml`` + ``model.bin``
(``--format openvino``) and ``manifest.json``. Usage: docs/core.md, "Inference engines".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adaptclip_med.runtime.argparsing import CLIParser
from adaptclip_med.runtime.errors import AdaptCLIPError

FORMATS = {"onnx": "onnxruntime", "openvino": "openvino"}

EXAMPLES = """\
examples:
  python -m adaptclip_med.export --format onnx --out exported/vitl-onnx
  python -m adaptclip_med.export --format openvino --int8 weights --out exported/vitl-ov-int8
  python -m adaptclip_med.export --format openvino --int8 full --calibration normals/ --out exported/vitl-ov-ptq"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``export``."""
    p = CLIParser(prog="python -m adaptclip_med.export", epilog=EXAMPLES,
                  formatter_class=argparse.RawDescriptionHelpFormatter,
                  description="Export the frozen CLIP backbone's feature graph (global feature and the V-V "
                              "feature-layer tokens, dynamic batch) for ONNX Runtime or OpenVINO, fp32 or int8, "
                              "with a manifest (weights SHA-256, preprocessing, size, layers, code fingerprint).")
    p.add_argument("--format", choices=tuple(FORMATS), required=True, help="onnx (ONNX Runtime) or openvino (IR)")
    p.add_argument("--int8", choices=("weights", "full"), default=None,
                   help="int8 graph: weights = weight-only (no calibration), full = weights and activations "
                        "calibrated on --calibration (default: fp32)")
    p.add_argument("--calibration", default=None, metavar="DIR",
                   help="folder of normal images of the kind to be scored (--int8 full)")
    p.add_argument("--backbone", default="ViT-L-14-336", help="CLIP backbone (default: ViT-L-14-336)")
    p.add_argument("--pretrained", default="openai",
                   help="backbone weights: open_clip tag or file; 'none' = random (default: openai)")
    p.add_argument("--allow-random-backbone", action="store_true", help="accept --pretrained none (tests)")
    p.add_argument("--image-size", type=int, default=None, help="input size in pixels (default: the backbone's)")
    p.add_argument("--out", required=True, help="output folder")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit code (0 ok, 2 bad input or weights)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    pretrained = None if str(args.pretrained).lower() in ("none", "random", "") else args.pretrained
    try:
        if args.int8 == "full" and not args.calibration:
            msg = "--int8 full is calibrated on normal images: pass --calibration DIR (or use --int8 weights)"
            raise AdaptCLIPError(msg)
        if args.calibration and args.int8 != "full":
            msg = "--calibration: only used with --int8 full; add it or drop --calibration"
            raise AdaptCLIPError(msg)
        from adaptclip_med.engines.session import calibration_images, export_graph
        from adaptclip_med.loading.factory import load_model

        try:
            model = load_model(backbone=args.backbone, pretrained=pretrained, image_size=args.image_size,
                               allow_random_backbone=args.allow_random_backbone)
        except (ValueError, FileNotFoundError, OSError, RuntimeError) as err:
            raise AdaptCLIPError(f"cannot load backbone {args.backbone!r}: {err}") from err
        calibration = calibration_images(args.calibration, model.image_size) if args.calibration else None
        out = Path(args.out)
        info = export_graph(model.backbone, model.image_size, FORMATS[args.format], args.int8, out,
                            calibration=calibration, source=model.provenance)
    except AdaptCLIPError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out / info['file']} ({info['format']}, {info['precision']}"
          + (f" {info['int8']}" if info["int8"] else "") + f", {info['image_size']} px, opset {info['opset']}) "
          f"and {out / 'manifest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
