"""Stage 1, plan: load every data set, choose the queries, draw every prompt set — before any model work.

A *part* is one (data set, class, shots, seed): the unit of the tables and of resuming. The parts of one
(data set, class) share their queries, so they form a :class:`ClassGroup`, the unit of encoding: each
query image of a group is encoded once for all its parts. All bad input (unknown set, missing folder,
impossible ``--shots``) surfaces here, before anything is written; files the loaders could not use are
collected as :class:`Skip` entries (``skipped.csv``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from adaptclip_med import data as D
from adaptclip_med.data.prompts import PromptDraw
from adaptclip_med.data.records import Record
from adaptclip_med.evaluation.config import EvalConfig
from adaptclip_med.evaluation.roi import screen_group
from adaptclip_med.reporting.provenance import slug
from adaptclip_med.runtime.errors import AdaptCLIPError, ImageReadError, PromptError
from adaptclip_med.runtime.privacy import Pseudonymiser, relative_path, scrub
from adaptclip_med.runtime.skips import Skip, one_line, strict_error

#: The method of the paper protocol; parts of other methods (``--methods``) carry their name in the stem.
DEFAULT_METHOD = "adaptclip"


def method_suffix(method: str) -> str:
    """``""`` for AdaptCLIP (stems as before), ``"__<method>"`` for another method."""
    return "" if method == DEFAULT_METHOD else f"__{method}"


@dataclass
class Part:
    """One unit of results: the queries of one class, scored with one prompt draw (or zero-shot)."""

    dataset: str
    cls: str
    shots: int
    seed: int
    queries: list[Record]
    has_masks: bool
    prompts: PromptDraw | None = None
    stem: str = ""
    method: str = DEFAULT_METHOD

    def __post_init__(self) -> None:
        self.stem = f"{self.dataset}__{slug(self.cls)}__k{self.shots}__s{self.seed}{method_suffix(self.method)}"


@dataclass
class ClassGroup:
    """The parts of one (data set, class): same queries, so one encode per query serves all of them.

    Attributes:
        dataset: the data set's label.
        cls: class name.
        root: the data set's folder (paths in the outputs are relative to it).
        prompt_root: the user's normal-prompt folder of this set, if any.
        queries: the query records, in scoring order.
        has_masks: at least one abnormal query has a pixel mask.
        parts: every (shots, seed) of this class.
        pseudonymiser: with ``--anonymize``, names every path and patient group in the outputs.
        applicability: ``{record key: {"applicability", "applicability_reasons"}}`` with ``--gate on``.
    """

    dataset: str
    cls: str
    root: Path
    prompt_root: Path | None
    queries: list[Record]
    has_masks: bool
    parts: list[Part] = field(default_factory=list)
    pseudonymiser: Pseudonymiser | None = None
    method: str = DEFAULT_METHOD
    applicability: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        """``<dataset>__<class>`` (+ ``__<method>`` for another method): the name of the group's shard folder."""
        return f"{self.dataset}__{slug(self.cls)}{method_suffix(self.method)}"

    def for_method(self, method: str) -> ClassGroup:
        """The same queries and prompt draws, scored with ``method`` (parts renamed)."""
        group = replace(self, method=method)
        group.parts = [replace(p, method=method) for p in self.parts]
        return group

    def prompt_records(self) -> list[Record]:
        """The distinct prompt images of all parts (first-drawn order): each is encoded once."""
        seen: dict[str, Record] = {}
        for part in self.parts:
            for rec in part.prompts.records if part.prompts is not None else []:
                seen.setdefault(rec.key, rec)
        return list(seen.values())

    def relative(self, path: str) -> str:
        """``path`` relative to the set's folder (or ``normal-prompts/`` + relative to the prompt folder)."""
        if self.pseudonymiser is not None:
            return self.pseudonymiser.path_of(path)
        return relative_path(path, self.root, self.prompt_root)

    def group_id(self, rec: Record) -> str:
        """The record's patient / volume group for the outputs (its pseudonym under ``--anonymize``)."""
        if self.pseudonymiser is not None:
            return self.pseudonymiser.group_of(rec.group) or ""
        return rec.group or ""

    def clean(self, text: str) -> str:
        """A reason line for the outputs, through the one scrubber: no folder of the input, no absolute path;
        under ``--anonymize`` every input path and file name its pseudonym."""
        return scrub(text, folders=[f for f in (self.root, self.prompt_root) if f is not None],
                     pseudonymiser=self.pseudonymiser)

    def relative_key(self, rec: Record) -> str:
        """The record's id for the outputs: root-relative path, plus ``#slice`` for volume slices."""
        path = self.relative(rec.image)
        return path if rec.slice_index is None else f"{path}#{rec.slice_index}"

    def relative_manifest(self, draw: PromptDraw) -> dict[str, object]:
        """The prompt draw's manifest with root-relative paths (no absolute path leaves the run)."""
        manifest = draw.manifest()
        manifest["prompts"] = [{**p, "path": self.relative(str(p["path"])),
                                **({"group": self.pseudonymiser.group_of(p.get("group"))} if self.pseudonymiser
                                   else {})} for p in manifest["prompts"]]
        return manifest


@dataclass
class Plan:
    """What a run will do: the class groups (with their parts), the files the loaders skipped and the files
    they kept with a warning (e.g. an abnormal image whose mask is empty: image-level abnormal, pixels normal)."""

    groups: list[ClassGroup]
    skipped: list[Skip]
    warnings: list[Skip] = field(default_factory=list)

    @property
    def parts(self) -> list[Part]:
        """Every part, in run order."""
        return [p for g in self.groups for p in g.parts]


def select_queries(records: list[Record], limit: int | None) -> list[Record]:
    """At most ``limit`` records, alternating normal / abnormal (sorted by path) while both last."""
    ordered = sorted(records, key=lambda r: r.key)
    if limit is None or len(ordered) <= limit:
        return ordered
    normal = [r for r in ordered if r.label == 0]
    abnormal = [r for r in ordered if r.label == 1]
    picked: list[Record] = []
    while len(picked) < limit:
        for pool in (normal, abnormal):
            if pool and len(picked) < limit:
                picked.append(pool.pop(0))
    return sorted(picked, key=lambda r: r.key)


def _listed(name: str, problems: list[tuple[str, str]], root: Path, prompt_root: Path | None,
            pseudonymiser: Pseudonymiser | None) -> list[Skip]:
    """A loader's ``(path, reason)`` list as rows of ``skipped.csv`` / ``warnings.csv``: root-relative (or
    pseudonymous) paths, one-line reasons through the one scrubber."""
    folders = [f for f in (root, prompt_root) if f is not None]
    if pseudonymiser:
        return [Skip(name, pseudonymiser.path_of(path),
                     scrub(one_line(why), folders=folders, pseudonymiser=pseudonymiser)) for path, why in problems]
    return [Skip(name, relative_path(path, root, prompt_root), scrub(one_line(why), folders=folders))
            for path, why in problems]


def plan_run(config: EvalConfig, pseudonymiser: Pseudonymiser | None = None) -> Plan:
    """Load every data set and draw every prompt set (all bad input surfaces here).

    ``pseudonymiser`` (``--anonymize``) names every input path and group of the outputs.

    Raises:
        AdaptCLIPError: unknown data set, a folder without the expected tree, no normal prompts, no
            test image at all, ...
    """
    groups: list[ClassGroup] = []
    skipped: list[Skip] = []
    warnings: list[Skip] = []
    gate = config.gate_config()
    for name in config.datasets:
        folder = config.prompt_folder_for(name)
        options: dict[str, object] = {"label": name, **({"normal_prompts": folder} if folder else {})}
        if config.group_pattern:
            options["group_pattern"] = config.group_pattern
        root = config.root_for(name)
        index = D.load_dataset(config.layout_for(name), root, **options)
        prompt_root = Path(folder) if folder else None
        if config.strict and index.problems:
            raise strict_error(*index.problems[0])
        skipped += _listed(name, index.problems, root, prompt_root, pseudonymiser)
        warnings += _listed(name, index.warnings, root, prompt_root, pseudonymiser)
        for cls in index.classes:
            queries = select_queries([r for r in index.records if r.cls == cls], config.limit)
            if not queries:
                continue
            group = ClassGroup(name, cls, root, prompt_root, queries, index.has_masks, pseudonymiser=pseudonymiser)
            skipped += screen_group(group, config.roi_for(name), gate)  # --roi / --gate: before any encode
            if group.queries:
                skipped += _draw_parts(group, index, config)
            if group.queries:
                groups += [group if m == DEFAULT_METHOD else group.for_method(m) for m in config.methods]
    if not groups:
        msg = f"data sets {list(config.datasets)}: no test images found; check --root and --limit"
        raise AdaptCLIPError(msg)
    return Plan(groups, skipped, warnings)


def _draw_parts(group: ClassGroup, index: D.DatasetIndex, config: EvalConfig) -> list[Skip]:
    """Add every (shots, seed) part to ``group``; returns the files found unreadable while drawing.

    Drawing prompts compares images (near-duplicate exclusion), so it reads them: a file that cannot be
    decoded is taken out of the queries and the prompt pool, listed, and the draws start again
    (``strict``: the error stops the run, one line).

    Raises:
        PromptError: ``--shots k`` impossible for this class.
        ImageReadError: with ``strict``, the first unreadable file.
    """
    skipped: list[Skip] = []
    while True:
        group.parts = []
        try:
            for k in sorted(set(config.shots)):
                for seed in (config.seeds[:1] if k == 0 else config.seeds):
                    draw = None
                    if k > 0:
                        draw = D.draw_prompts(index, group.cls, k, seed, queries=group.queries)
                    group.parts.append(Part(group.dataset, group.cls, k, seed, group.queries, group.has_masks, draw))
            return skipped
        except ImageReadError as err:
            bad = str(err.path)
            if config.strict or not _drop(group, index, bad):
                raise
            skipped.append(Skip(group.dataset, group.relative(bad), group.clean(one_line(err.problem)), group.cls))
        except PromptError as err:
            msg = f"data set {group.dataset!r}, class {group.cls!r}: --shots {k} is impossible: {err}"
            raise PromptError(msg) from err


def _drop(group: ClassGroup, index: D.DatasetIndex, path: str) -> bool:
    """Remove the records of image ``path`` from the group's queries and its prompt pool; True if any."""
    before = len(group.queries) + len(index.prompt_pool.get(group.cls, []))
    group.queries = [r for r in group.queries if r.image != path]
    if group.cls in index.prompt_pool:
        index.prompt_pool[group.cls] = [r for r in index.prompt_pool[group.cls] if r.image != path]
    return len(group.queries) + len(index.prompt_pool.get(group.cls, [])) < before
