"""The taxonomy: ``taxonomy.toml`` read, validated and compiled into what the tagger runs.

Owns the taxonomy file format (:func:`load_taxonomy` reads a file, :func:`parse_taxonomy` a parsed table;
every error is a :class:`~monitor.errors.ConfigError` naming the file and the key path), the value types
of a taxonomy (:class:`TagDef`, :class:`Taxonomy`) and its compilation into :class:`Rules`: one scanner
over every pattern (:mod:`monitor.patterns`), what each pattern stands for (:class:`PatternInfo`: tag
actions and sentence-cue bits), what each known MeSH descriptor implies (:class:`MeshInfo`), and the
relations between tags (abbreviations, absorbs, combinations). The tagger itself is
:mod:`monitor.tagging`. Pure: no I/O besides reading the file the caller names.

Sentence cues and relevance vocabularies are bits (:data:`CUE_BITS`), so a sentence's cues are one int.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .cues import (
    CUE_BITS,
    GENERIC,
    GUT_RULES,
    K_CONDITION,
    K_DESIGN,
    K_INTERVENTION,
    ORAL,
    STRAIN,
    STRONG,
    TOPICAL,
    WEAK,
)
from .document import SentenceWeights
from .errors import ConfigError
from .patterns import Scanner, build_scanner, lower_regex, pattern_problem
from .tomlreader import TableReader, load_toml

__all__ = [
    "DEFAULT_TAXONOMY", "Calibration", "Combination", "MeshInfo", "PatternInfo", "Rules", "TagAction", "TagDef",
    "Taxonomy", "load_taxonomy", "parse_taxonomy",
]

DEFAULT_TAXONOMY = Path(__file__).resolve().parent.parent / "taxonomy.toml"

KIND_OF_SECTION = {"conditions": "condition", "interventions": "intervention", "designs": "design"}
KINDS = ("condition", "intervention", "design")
GUT_SIDE_VALUES = ("always", "unless_topical", "if_oral", "never")
TAG_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
RELEVANCE_TERM_LISTS = ("gut", "gut_weak", "diet", "skin", "skin_microbiome")
RELEVANCE_CUE_LISTS = ("topical", "oral", "blood", "nongut_microbiome")
RELEVANCE_MESH_LISTS = ("mesh_gut", "mesh_skin", "mesh_oral", "mesh_topical")
CUE_LISTS = ("aim", "conclusion", "future", "confounder", "exclusion", "adverse", "composition",
             "intervention", "combination", "negation", "subject_group", "live")
_HINT = "see the header of taxonomy.toml"

DEFAULT_SCORING: dict[str, float] = {
    "min_score": 1.0,
    "title": 3.0,
    "mesh_major": 3.0,
    "mesh_minor": 1.5,
    "keyword": 2.0,
    "publication_type": 5.0,
    "objective": 1.5,
    "methods": 1.2,
    "results": 1.0,
    "conclusions": 1.2,
    "background": 0.4,
    "aim_sentence": 1.5,
    "before_aim": 0.5,
    "first_sentence": 0.5,
    "conclusion_sentence": 1.2,
    "body_sentence": 1.0,
    "future_work": 0.3,
    "subject_list": 1.0,
}

_KIND_CODE = {"condition": K_CONDITION, "intervention": K_INTERVENTION, "design": K_DESIGN}
_STRENGTH_CODE = {"strong": STRONG, "generic": GENERIC, "weak": WEAK, "strain": STRAIN}
PATTERN_KEYS = ("patterns", "generic", "weak", "strains")

# After a negation cue, these words may come before the negated term: "without a history of AD".
_NEGATION_FILLER = (
    r"(?:[\s-]+(?:any|prior|previous|concomitant|current|known|recent|other|oral|systemic|topical|a|an|the|"
    r"history of|use of|evidence of|signs of|with|of)(?!\w))*[\s-]*"
)

# ───────────────────────────────────────────── value types ──────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class TagDef:
    """One tag as the taxonomy defines it (patterns are kept as written)."""

    id: str
    kind: str  # condition | intervention | design
    label: str
    mesh: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    generic: tuple[str, ...] = ()
    weak: tuple[str, ...] = ()
    strains: tuple[str, ...] = ()
    abbreviations: tuple[str, ...] = ()
    publication_types: tuple[str, ...] = ()
    min_score: float = 1.0
    yields_to: tuple[str, ...] = ()
    absorbs: tuple[str, ...] = ()
    combination_of: tuple[str, ...] = ()
    taxa_ignored_in: tuple[str, ...] = ()
    gut_side: str = "never"


@dataclass(frozen=True, slots=True)
class Target:
    """What a tag pattern stands for in the scanner: the tag and how strongly the pattern names it."""

    tag_id: str
    strength: str  # "strong" | "generic" | "weak" | "strain"


class TagAction(NamedTuple):
    """What one match of a tag pattern does: mention ``tag_id`` (kind, strength and gut-side rule as codes)."""

    tag_id: str
    kind: int  # K_CONDITION | K_INTERVENTION | K_DESIGN
    strength: int  # STRONG | GENERIC | WEAK | STRAIN
    gut_rule: int  # GUT_ALWAYS | GUT_UNLESS_TOPICAL | GUT_IF_ORAL | GUT_NEVER


class PatternInfo(NamedTuple):
    """What a match of one pattern (or of several that match the same words) means.

    ``cues``: the sentence-cue and vocabulary bits it sets; ``actions``: the tags it mentions; ``ignore``:
    an [ignore] phrase, which hides everything inside it."""

    cues: int
    actions: tuple[TagAction, ...]
    ignore: bool


class MeshInfo(NamedTuple):
    """What a MeSH descriptor the taxonomy knows implies: tags, route cues (oral/topical), relevance sides."""

    tags: tuple[str, ...]
    cues: int
    gut: bool
    skin: bool


class Combination(NamedTuple):
    """``tag_id`` is given when ``first`` and ``second`` are given together in one sentence (synbiotics)."""

    tag_id: str
    first: str
    second: str


@dataclass(frozen=True, slots=True, eq=False)
class Rules:
    """The taxonomy compiled for the tagger.

    ``scanner`` finds every pattern in one pass; ``pattern_info[i]`` is what its pattern i means;
    ``cue_at`` finds the longest cue or vocabulary word at a position (they still count under a longer
    tag match); ``negation_filler`` the words allowed between a negation and the negated term.
    ``tracked`` are the tags whose positions per sentence matter (absorbed and combined tags),
    ``absorbing`` the tags that absorb another's taxa;
    ``order`` sorts tag ids for evidence (kind, then id); ``sentence_weights`` are the [scoring] weights
    of sentences by section and role. The caches map a matched text (or a set of
    matched patterns) to its :class:`PatternInfo`; they only speed tagging up."""

    scanner: Scanner
    cue_at: re.Pattern[str]
    pattern_info: tuple[PatternInfo, ...]
    negation_filler: re.Pattern[str]
    tracked: frozenset[str]
    absorbing: frozenset[str]
    order: Mapping[str, tuple[int, str]]
    mesh: Mapping[str, MeshInfo]  # casefolded descriptor -> what it implies
    pubtypes: Mapping[str, tuple[str, ...]]  # casefolded publication type -> design tag ids
    abbreviations: Mapping[str, frozenset[str]]  # declared abbreviation -> tag ids
    absorbed_by: Mapping[str, tuple[str, ...]]
    combinations: tuple[Combination, ...]
    sentence_weights: SentenceWeights
    text_cache: dict[str, PatternInfo] = field(default_factory=dict)
    ids_cache: dict[tuple[int, ...], PatternInfo] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, eq=False)
class Taxonomy:
    """A validated, compiled taxonomy. ``version`` is the file's version plus a hash of its content."""

    version: str
    source: str
    tags: Mapping[str, TagDef]
    relevance_threshold: float
    relevance_scale: float
    scoring: Mapping[str, float]
    calibration: Calibration
    rules: Rules = field(repr=False)

    def ids(self, kind: str) -> tuple[str, ...]:
        """Tag ids of one kind (condition | intervention | design), in file order."""
        return tuple(t.id for t in self.tags.values() if t.kind == kind)


class Calibration(NamedTuple):
    """``p = 1 / (1 + exp(-(slope * logit(raw) + intercept)))``: maps the raw relevance score in [0, 1] to a
    probability-like score (0 stays 0 and 1 stays 1; slope 1 and intercept 0 change nothing). The two
    numbers are fitted offline on the labelled sets (``bench/tagging_eval.py --fit-calibration``)."""

    slope: float
    intercept: float


@dataclass(frozen=True, slots=True)
class _Relevance:
    """The [relevance] table as read."""

    threshold: float
    scale: float
    calibration: Calibration
    terms: dict[str, tuple[str, ...]]
    cues: dict[str, tuple[str, ...]]
    mesh: dict[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class _Sections:
    """Every table of the file, read and checked, before compilation."""

    version: str
    tags: dict[str, TagDef]
    where_of: dict[str, str]  # tag id -> its table's key path (for errors)
    relevance: _Relevance
    cues: dict[str, tuple[str, ...]]
    ignore: tuple[str, ...]
    scoring: dict[str, float]


# ─────────────────────────────────────────────── reading ────────────────────────────────────────────────


def load_taxonomy(path: Path | str = DEFAULT_TAXONOMY) -> Taxonomy:
    """Read, validate and compile a taxonomy file. Raises :class:`ConfigError` naming file and key path."""
    path = Path(path)
    raw, content = load_toml(path, missing="the config's taxonomy setting names it", shown_as=path.name)
    return parse_taxonomy(raw, file=path.name, content=content)


def parse_taxonomy(raw: Mapping[str, Any], *, file: str = "taxonomy.toml", content: bytes | None = None) -> Taxonomy:
    """Validate and compile an already-parsed taxonomy table (``content`` feeds the version hash)."""
    sections = _read_sections(TableReader(raw, "", file, hint=_HINT))
    _check_references(sections, file)
    _check_ignore(sections, file)
    if content is None:
        content = json.dumps(raw, sort_keys=True, default=str).encode()
    digest = hashlib.sha256(content).hexdigest()[:10]
    return Taxonomy(
        version=f"{sections.version}+{digest}",
        source=file,
        tags=sections.tags,
        relevance_threshold=sections.relevance.threshold,
        relevance_scale=sections.relevance.scale,
        scoring=sections.scoring,
        calibration=sections.relevance.calibration,
        rules=_compile(sections, file),
    )


def _read_sections(top: TableReader) -> _Sections:
    version = top.word("version", required=True)
    tags, where_of = _read_tags(top)
    relevance = _read_relevance(top.child("relevance", top.pop_raw("relevance")))
    cues_reader = top.child("cues", top.pop_raw("cues", {}))
    cues = {name: _patterns(cues_reader, name) for name in CUE_LISTS}
    cues_reader.done()
    ignore_reader = top.child("ignore", top.pop_raw("ignore", {}))
    ignore = _patterns(ignore_reader, "patterns")
    ignore_reader.done()
    sc = top.child("scoring", top.pop_raw("scoring", {}))
    scoring = {k: sc.number(k, float, v, 0.0, 100.0) for k, v in DEFAULT_SCORING.items()}
    sc.done()
    top.done()
    return _Sections(version, tags, where_of, relevance, cues, ignore, scoring)


def _read_tags(top: TableReader) -> tuple[dict[str, TagDef], dict[str, str]]:
    """Every [conditions.<id>], [interventions.<id>] and [designs.<id>] table, in file order."""
    tags: dict[str, TagDef] = {}
    where_of: dict[str, str] = {}
    for section, kind in KIND_OF_SECTION.items():
        table = top.pop_raw(section)
        if table is None:
            top.fail(section, f"is required: a [{section}.<id>] table for each {kind} tag")
        sec = top.child(section, table)
        if not sec.table:
            sec.fail(None, "must define at least one tag")
        for tag_id in list(sec.table):
            if not TAG_ID_RE.match(tag_id):
                sec.fail(tag_id, "tag ids must be lowercase snake_case (a-z, 0-9, _), starting with a letter")
            if tag_id in tags:
                sec.fail(tag_id, f"duplicate tag id (also {where_of[tag_id]}); ids must be unique across kinds")
            tags[tag_id] = _tag_def(sec.child(tag_id, sec.pop_raw(tag_id)), tag_id, kind)
            where_of[tag_id] = f"{section}.{tag_id}"
    return tags, where_of


def _tag_def(r: TableReader, tag_id: str, kind: str) -> TagDef:
    label = r.word("label", required=True)
    mesh = r.strings("mesh")
    patterns = _patterns(r, "patterns")
    generic = _patterns(r, "generic")
    weak = _patterns(r, "weak")
    strains = _patterns(r, "strains")
    abbreviations = r.strings("abbreviations")
    for i, a in enumerate(abbreviations):
        if not re.fullmatch(r"[A-Za-z0-9][\w-]{0,11}", a) or not any(ch.isupper() for ch in a):
            r.fail(f"abbreviations[{i}]", f"{a!r} is not an abbreviation (letters/digits with a capital, ≤ 12 chars)")
    publication_types = r.strings("publication_types") if kind == "design" else ()
    min_score = r.number("min_score", float, DEFAULT_SCORING["min_score"], 0.0, 100.0)
    yields_to = r.strings("yields_to")
    absorbs = r.strings("absorbs")
    combination_of = r.strings("combination_of")
    taxa_ignored_in = r.strings("taxa_ignored_in")
    gut_side = "never"
    if kind == "intervention":
        gut_side = r.word("gut_side", default="always")
        if gut_side not in GUT_SIDE_VALUES:
            r.fail("gut_side", f"must be one of {', '.join(GUT_SIDE_VALUES)}, not {gut_side!r}")
    r.done()
    if tag_id in yields_to or tag_id in absorbs or tag_id in combination_of:
        r.fail(None, "a tag cannot refer to itself in yields_to, absorbs or combination_of")
    return TagDef(tag_id, kind, label, mesh, patterns, generic, weak, strains, abbreviations, publication_types,
                  min_score, yields_to, absorbs, combination_of, taxa_ignored_in, gut_side)


def _read_relevance(rel: TableReader) -> _Relevance:
    threshold = rel.number("threshold", float, 0.5, 0.0, 1.0)
    scale = rel.number("scale", float, 1.5, 0.01, 100.0)
    calibration = _calibration(rel)
    terms = {name: _patterns(rel, name) for name in RELEVANCE_TERM_LISTS}
    cues = {name: _patterns(rel, name) for name in RELEVANCE_CUE_LISTS}
    mesh = {name: rel.strings(name) for name in RELEVANCE_MESH_LISTS}
    for name in ("gut", "skin"):
        if not terms[name]:
            rel.fail(name, "is required: the vocabulary of this side of the gut–skin link")
    rel.done()
    return _Relevance(threshold, scale, calibration, terms, cues, mesh)


def _calibration(rel: TableReader) -> Calibration:
    """``calibration = [slope, intercept]`` (default: no change)."""
    value = rel.get("calibration", list, [1.0, 0.0])
    if len(value) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        rel.fail("calibration", "must be two numbers: [slope, intercept]")
    slope, intercept = float(value[0]), float(value[1])
    if not (0.01 <= slope <= 100.0 and -100.0 <= intercept <= 100.0):
        rel.fail("calibration", f"slope must be between 0.01 and 100 and intercept between -100 and 100, not {value}")
    return Calibration(slope, intercept)


def _patterns(r: TableReader, name: str) -> tuple[str, ...]:
    """An array of patterns, each checked by :func:`~monitor.patterns.pattern_problem`."""
    values = r.strings(name)
    for i, p in enumerate(values):
        problem = pattern_problem(p)
        if problem:
            r.fail(f"{name}[{i}]", problem)
    return values


def _check_references(sections: _Sections, file: str) -> None:
    """Cross-references between tags name known tags; every tag can be found somehow."""
    tags, where_of = sections.tags, sections.where_of
    for t in tags.values():
        for key in ("yields_to", "absorbs", "combination_of", "taxa_ignored_in"):
            for i, other in enumerate(getattr(t, key)):
                if other not in tags:
                    raise ConfigError(f"unknown tag id {other!r}", path=file, key=f"{where_of[t.id]}.{key}[{i}]")
        if t.combination_of and len(t.combination_of) != 2:
            raise ConfigError("must name exactly two tag ids", path=file, key=f"{where_of[t.id]}.combination_of")
        if not (t.patterns or t.generic or t.strains or t.mesh or t.publication_types or t.combination_of):
            raise ConfigError("needs at least one of patterns, generic, mesh, publication_types",
                              path=file, key=where_of[t.id])


def _check_ignore(sections: _Sections, file: str) -> None:
    """An ignore phrase may not repeat a pattern listed elsewhere: it would hide it there."""
    owners: dict[str, str] = {}
    for t in sections.tags.values():
        for key in PATTERN_KEYS:
            for p in getattr(t, key):
                owners.setdefault(lower_regex(p), f"{sections.where_of[t.id]}.{key}")
    for name, pats in (*sections.relevance.terms.items(), *sections.relevance.cues.items()):
        for p in pats:
            owners.setdefault(lower_regex(p), f"relevance.{name}")
    for name, pats in sections.cues.items():
        for p in pats:
            owners.setdefault(lower_regex(p), f"cues.{name}")
    for i, p in enumerate(sections.ignore):
        if lower_regex(p) in owners:
            raise ConfigError(f"{p!r} is also listed in {owners[lower_regex(p)]}; "
                              "an ignore phrase would hide it there",
                              path=file, key=f"ignore.patterns[{i}]")


# ────────────────────────────────────────────── compiling ───────────────────────────────────────────────


def _compile(sections: _Sections, file: str) -> Rules:
    """Compile the read tables into the tagger's :class:`Rules`."""
    tags = sections.tags
    # One scanner for everything: tag patterns, sentence cues, relevance vocabularies, ignore phrases.
    entries: list[tuple[str, Hashable]] = []
    for t in tags.values():
        entries += [(p, Target(t.id, "strong")) for p in t.patterns]
        entries += [(p, Target(t.id, "generic")) for p in t.generic]
        entries += [(p, Target(t.id, "weak")) for p in t.weak]
        entries += [(p, Target(t.id, "strain")) for p in t.strains]
    entries += [(p, name) for name, pats in sections.cues.items() for p in pats]
    entries += [(p, name) for name, pats in sections.relevance.cues.items() for p in pats]
    entries += [(p, name) for name, pats in sections.relevance.terms.items() for p in pats]
    entries += [(p, "ignore") for p in sections.ignore]
    scanner = build_scanner(entries, file)
    # Where a tag pattern wins at a word start, the cues and vocabulary starting there still count:
    # this expression (cue, relevance and ignore patterns only) finds the longest of them.
    cue_only = build_scanner([e for e in entries if not isinstance(e[1], Target)], file)
    absorbed_by: dict[str, list[str]] = {}
    for t in tags.values():
        for other in t.absorbs:
            absorbed_by.setdefault(other, []).append(t.id)
    combinations = tuple(Combination(t.id, t.combination_of[0], t.combination_of[1])
                         for t in tags.values() if t.combination_of)
    return Rules(
        scanner=scanner,
        cue_at=re.compile(cue_only.body),
        pattern_info=tuple(_pattern_info(targets, tags) for targets in scanner.targets),
        negation_filler=re.compile(_NEGATION_FILLER),
        tracked=frozenset(t for combo in combinations for t in (combo.first, combo.second))
        | frozenset(x for v in absorbed_by.values() for x in v),
        absorbing=frozenset(x for v in absorbed_by.values() for x in v),
        order={t: (KINDS.index(td.kind), t) for t, td in tags.items()},
        mesh=_mesh_info(tags, sections.relevance.mesh),
        pubtypes=_by_name(tags, "publication_types"),
        abbreviations={k: frozenset(v) for k, v in _by_name(tags, "abbreviations", fold=False).items()},
        absorbed_by={k: tuple(v) for k, v in absorbed_by.items()},
        combinations=combinations,
        sentence_weights=SentenceWeights.of(sections.scoring),
    )


def _pattern_info(targets: Sequence[Hashable], tags: Mapping[str, TagDef]) -> PatternInfo:
    """What one (merged) pattern means: its tag actions and its cue bits."""
    actions = []
    names: list[str] = []
    for t in targets:
        if isinstance(t, Target):
            td = tags[t.tag_id]
            actions.append(TagAction(td.id, _KIND_CODE[td.kind], _STRENGTH_CODE[t.strength], GUT_RULES[td.gut_side]))
        else:
            names.append(str(t))
    return PatternInfo(cue_mask(names), tuple(actions), "ignore" in names)


def cue_mask(names: Sequence[str]) -> int:
    """The bits of cue and vocabulary list names (none for an ignore phrase: it hides the cue words inside)."""
    if "ignore" in names:
        return 0
    bits = 0
    for name in names:
        bits |= CUE_BITS[name]
    return bits


def _by_name(tags: Mapping[str, TagDef], key: str, *, fold: bool = True) -> dict[str, tuple[str, ...]]:
    """Tag ids by each name listed under ``key`` (casefolded unless ``fold`` is false), in file order."""
    out: dict[str, list[str]] = {}
    for t in tags.values():
        for name in getattr(t, key):
            bucket = out.setdefault(name.casefold() if fold else name, [])
            if fold or t.id not in bucket:
                bucket.append(t.id)
    return {k: tuple(v) for k, v in out.items()}


def _mesh_info(tags: Mapping[str, TagDef], lists: Mapping[str, tuple[str, ...]]) -> dict[str, MeshInfo]:
    """Every MeSH descriptor the taxonomy names (casefolded, sorted) and what it implies."""
    mesh = _by_name(tags, "mesh")
    relevance = {name: frozenset(m.casefold() for m in names) for name, names in lists.items()}
    return {
        key: MeshInfo(mesh.get(key, ()),
                      (ORAL if key in relevance["mesh_oral"] else 0)
                      | (TOPICAL if key in relevance["mesh_topical"] else 0),
                      key in relevance["mesh_gut"], key in relevance["mesh_skin"])
        for key in sorted(set(mesh).union(*relevance.values()))
    }


def load_tag_names(path: Path | str = DEFAULT_TAXONOMY) -> tuple[TagDef, ...]:
    """The tags of a taxonomy file as written — ids, kinds, labels, MeSH headings, patterns, abbreviations —
    without validating or compiling its rules: what filter values and labels need, at a fraction of the cost
    of :func:`load_taxonomy` (which compiles every pattern). A malformed entry is skipped here; loading the
    taxonomy for tagging reports it."""
    path = Path(path)
    raw, _ = load_toml(path, missing="the config's taxonomy setting names it", shown_as=path.name)
    out = []
    for section, kind in KIND_OF_SECTION.items():
        tables = raw.get(section)
        for tag_id, table in (tables.items() if isinstance(tables, dict) else ()):
            if isinstance(table, dict):
                out.append(TagDef(id=tag_id, kind=kind, label=str(table.get("label") or tag_id),
                                  mesh=_strings(table.get("mesh")), patterns=_strings(table.get("patterns")),
                                  abbreviations=_strings(table.get("abbreviations"))))
    return tuple(out)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()
