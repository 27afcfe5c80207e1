"""Tagging: the taxonomy (``taxonomy.toml``) and the tagger that applies it to one parsed paper.

Owns the taxonomy file format (:func:`load_taxonomy` validates it; every error names the file and the key
path) and the tagging rules (:func:`tag`). Pure: no I/O besides reading the taxonomy file the caller names,
no database, no network, no randomness — the same article and taxonomy always give the same
:class:`~monitor.types.Tagging`.

How a paper is tagged
---------------------
1. The title, the abstract and the author keywords are joined into one document. Abstract sections keep
   their NlmCategory; an unlabelled abstract that carries its headings inline ("Background: …",
   "METHODS\\n…") is split at them. Sections are cut into sentences.
2. One regular expression, compiled once from every pattern of the taxonomy, runs over the lower-cased
   document: tag patterns, sentence cues (aim, conclusion, future work, exclusion criteria,
   confounders, adverse events, negation, route of administration …), the relevance vocabularies and
   ignore phrases. It is a character trie of the patterns' literal prefixes behind one separator class,
   tried once at each word start, so a scan costs a few steps per word, not one per pattern; which
   patterns matched is looked up (and cached) from the matched text. Cues and vocabulary only mark
   their sentence; tag matches are weighed once every sentence's role is known.
3. Abbreviations defined in the text ("fecal microbiota transplantation (FMT)") make every later
   "FMT" a mention of the same term.
4. Every mention earns the weight of where it is: title, MeSH (major > minor), keywords, or its
   abstract section (Objective/Methods/Results/Conclusions > Background). In an unstructured abstract the
   sentence's role decides: an aim sentence ("we aimed", "this review") counts most, sentences before it
   are background, a "we conclude" sentence counts as a conclusion. Modifiers: a negated mention
   ("without", "no history of"), one inside exclusion criteria, a confounder list or an adverse-event
   list earns nothing; "further studies are needed" earns less. ``weak`` names (bacterial genera) count
   only where the sentence says something was given, never as a microbiome-composition finding.
5. Per tag, the best mention of each sentence counts once; the sum must reach the tag's ``min_score``.
   ``generic`` mentions are dropped when a tag in ``yields_to`` is given. ``combination_of`` tags
   (synbiotics) are also given when their components are given together in one sentence.
6. Designs: publication types first (they alone suffice), then MeSH and text.
7. ``gut_skin_relevant``: a skin-side score (conditions, skin vocabulary) and a gut-side score (gut
   vocabulary, oral diet/nutrition, gut-targeted interventions — nutrients only when taken orally, not
   topical use or blood levels; an unqualified "microbiome" only if the paper never speaks of the skin
   microbiome) are each squashed to [0, 1) and multiplied; the product is ``relevance``.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

try:  # stdlib (3.11+); used only to order patterns by their shortest match
    import re._parser as _sre_parse  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover
    _sre_parse = None
from .types import Article, TagEvidence, Tagging, TagInput

__all__ = ["DEFAULT_TAXONOMY", "TagDef", "Taxonomy", "load_taxonomy", "parse_taxonomy", "tag"]

DEFAULT_TAXONOMY = Path(__file__).resolve().parent.parent / "taxonomy.toml"

KIND_OF_SECTION = {"conditions": "condition", "interventions": "intervention", "designs": "design"}
GUT_SIDE_VALUES = ("always", "unless_topical", "if_oral", "never")
TAG_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
RELEVANCE_TERM_LISTS = ("gut", "gut_weak", "diet", "skin", "skin_microbiome")
RELEVANCE_CUE_LISTS = ("topical", "oral", "blood")
RELEVANCE_MESH_LISTS = ("mesh_gut", "mesh_skin", "mesh_oral", "mesh_topical")
CUE_LISTS = ("aim", "conclusion", "future", "confounder", "exclusion", "adverse", "composition",
             "intervention", "combination", "negation")

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
}
EVIDENCE_PER_TAG = 3  # strongest mentions kept as evidence for each tag (one per sentence)
EVIDENCE_PER_SIDE = 2  # strongest skin-side and gut-side mentions kept as relevance evidence
NEGATION_WINDOW = 48  # characters before a mention searched for a negation prefix

# ─────────────────────────────────────────────── taxonomy ───────────────────────────────────────────────


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
    abbreviations: tuple[str, ...] = ()
    publication_types: tuple[str, ...] = ()
    min_score: float = 1.0
    yields_to: tuple[str, ...] = ()
    absorbs: tuple[str, ...] = ()
    combination_of: tuple[str, ...] = ()
    gut_side: str = "never"


@dataclass(frozen=True, slots=True)
class _Target:
    cls: str  # "tag" | "gut" | "gut_weak" | "diet" | "skin" | "skin_microbiome" | "ignore"
    name: str = ""  # tag id for cls == "tag"
    strength: str = ""  # "strong" | "generic" | "weak" for tags


@dataclass(frozen=True, slots=True)
class _Scanner:
    """One combined expression over many patterns; ``targets[i]`` says what pattern i stands for.

    ``singles`` are the patterns compiled one by one, ``by_first`` the patterns that can start with a
    character. ``cache`` maps a matched text to the patterns that fully match it (filled lazily; it only
    speeds up :func:`_resolve` and never changes a result)."""

    regex: re.Pattern[str]
    body: str  # the trie alone (matches at one position)
    targets: tuple[Any, ...]
    singles: tuple[re.Pattern[str], ...]
    by_first: dict[str, tuple[int, ...]]
    general: tuple[int, ...]
    contextual: frozenset[int]
    cache: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]


@dataclass(frozen=True, eq=False)
class Taxonomy:
    """A validated, compiled taxonomy. ``version`` is the file's version plus a hash of its content."""

    version: str
    source: str
    tags: Mapping[str, TagDef]
    relevance_threshold: float
    relevance_scale: float
    scoring: Mapping[str, float]
    _scanner: _Scanner = field(repr=False)
    _cue_at: re.Pattern[str] = field(repr=False)
    # per pattern: (cue bits, tag actions, is an ignore phrase)
    _pattern_info: tuple[tuple[int, tuple[tuple[int, str, int, int, int], ...], bool], ...] = field(repr=False)
    _negation_filler: re.Pattern[str] = field(repr=False)
    _tracked: frozenset[str] = field(repr=False)
    _order: Mapping[str, tuple[int, str]] = field(repr=False)
    # casefolded MeSH descriptor -> (tag ids it implies, cue bits (oral/topical), is gut-side, is skin-side)
    _mesh_info: Mapping[str, tuple[tuple[str, ...], int, bool, bool]] = field(repr=False)
    _pubtypes: Mapping[str, tuple[str, ...]] = field(repr=False)
    _abbreviations: Mapping[str, frozenset[str]] = field(repr=False)
    _absorbed_by: Mapping[str, tuple[str, ...]] = field(repr=False)
    _combinations: tuple[tuple[str, str, str], ...] = field(repr=False)
    # matched text -> (cue bits, tag actions, ignore) for texts whose patterns have no look-arounds
    _text_cache: dict[str, tuple[int, tuple[Any, ...], bool]] = field(repr=False, default_factory=dict,
                                                                    compare=False)
    # the same for a set of matched patterns (texts matched by patterns with look-arounds land here)
    _ids_cache: dict[tuple[int, ...], tuple[int, tuple[Any, ...], bool]] = field(repr=False, default_factory=dict,
                                                                              compare=False)

    def ids(self, kind: str) -> tuple[str, ...]:
        """Tag ids of one kind (condition | intervention | design), in file order."""
        return tuple(t.id for t in self.tags.values() if t.kind == kind)


class _Reader:
    """Pops typed values out of one TOML table so leftovers are unknown keys (typos)."""

    def __init__(self, table: Any, where: str, file: str) -> None:
        self.file, self.where = file, where
        if not isinstance(table, dict):
            self.fail(None, "must be a table")
        self.table = dict(table)

    def key(self, name: str | None) -> str:
        return f"{self.where}.{name}" if (name and self.where) else (name or self.where)

    def fail(self, name: str | None, message: str) -> None:
        raise ConfigError(message, path=self.file, key=self.key(name))

    def text(self, name: str, required: bool = False, default: str = "") -> str:
        if name not in self.table:
            if required:
                self.fail(name, "is required")
            return default
        value = self.table.pop(name)
        if not isinstance(value, str) or not value.strip():
            self.fail(name, "must be a non-empty string")
        return value.strip()

    def number(self, name: str, default: float, low: float, high: float) -> float:
        if name not in self.table:
            return default
        value = self.table.pop(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(name, "must be a number")
        if not low <= value <= high:
            self.fail(name, f"must be between {low:g} and {high:g}, not {value}")
        return float(value)

    def strings(self, name: str) -> tuple[str, ...]:
        if name not in self.table:
            return ()
        value = self.table.pop(name)
        if not isinstance(value, list):
            self.fail(name, "must be an array of strings")
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.fail(f"{name}[{i}]", "must be a non-empty string")
        return tuple(v.strip() for v in value)

    def patterns(self, name: str) -> tuple[str, ...]:
        values = self.strings(name)
        for i, p in enumerate(values):
            problem = _pattern_problem(p)
            if problem:
                self.fail(f"{name}[{i}]", problem)
        return values

    def done(self) -> None:
        if self.table:
            self.fail(min(self.table), "unknown key (check the spelling; see the header of taxonomy.toml)")


def load_taxonomy(path: Path | str = DEFAULT_TAXONOMY) -> Taxonomy:
    """Read, validate and compile a taxonomy file. Raises :class:`ConfigError` naming file and key path."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("file not found (the config's taxonomy setting names it)", path=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(path)) from None
    try:
        raw = tomllib.loads(content.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text: {exc}", path=path.name) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=path.name) from None
    return parse_taxonomy(raw, file=path.name, content=content)


def parse_taxonomy(raw: Mapping[str, Any], *, file: str = "taxonomy.toml", content: bytes | None = None) -> Taxonomy:
    """Validate and compile an already-parsed taxonomy table (``content`` feeds the version hash)."""
    top = _Reader(raw, "", file)
    version = top.text("version", required=True)
    tags: dict[str, TagDef] = {}
    where_of: dict[str, str] = {}
    for section, kind in KIND_OF_SECTION.items():
        table = top.table.pop(section, None)
        if table is None:
            top.fail(section, f"is required: a [{section}.<id>] table for each {kind} tag")
        sec = _Reader(table, section, file)
        if not sec.table:
            sec.fail(None, "must define at least one tag")
        for tag_id in list(sec.table):
            where = f"{section}.{tag_id}"
            if not TAG_ID_RE.match(tag_id):
                sec.fail(tag_id, "tag ids must be lowercase snake_case (a-z, 0-9, _), starting with a letter")
            if tag_id in tags:
                sec.fail(tag_id, f"duplicate tag id (also {where_of[tag_id]}); ids must be unique across kinds")
            tags[tag_id] = _tag_def(_Reader(sec.table.pop(tag_id), where, file), tag_id, kind)
            where_of[tag_id] = where
    rel = _Reader(top.table.pop("relevance", None), "relevance", file)
    threshold = rel.number("threshold", 0.5, 0.0, 1.0)
    scale = rel.number("scale", 1.5, 0.01, 100.0)
    rel_terms = {name: rel.patterns(name) for name in RELEVANCE_TERM_LISTS}
    rel_cues = {name: rel.patterns(name) for name in RELEVANCE_CUE_LISTS}
    rel_mesh = {name: rel.strings(name) for name in RELEVANCE_MESH_LISTS}
    for name in ("gut", "skin"):
        if not rel_terms[name]:
            rel.fail(name, "is required: the vocabulary of this side of the gut–skin link")
    rel.done()
    cues_reader = _Reader(top.table.pop("cues", {}), "cues", file)
    cues = {name: cues_reader.patterns(name) for name in CUE_LISTS}
    cues_reader.done()
    ignore_reader = _Reader(top.table.pop("ignore", {}), "ignore", file)
    ignore = ignore_reader.patterns("patterns")
    ignore_reader.done()
    sc = _Reader(top.table.pop("scoring", {}), "scoring", file)
    scoring = {k: sc.number(k, v, 0.0, 100.0) for k, v in DEFAULT_SCORING.items()}
    sc.done()
    top.done()

    # Cross-references between tags.
    for t in tags.values():
        for key in ("yields_to", "absorbs", "combination_of"):
            for i, other in enumerate(getattr(t, key)):
                if other not in tags:
                    raise ConfigError(f"unknown tag id {other!r}", path=file, key=f"{where_of[t.id]}.{key}[{i}]")
        if t.combination_of and len(t.combination_of) != 2:
            raise ConfigError("must name exactly two tag ids", path=file, key=f"{where_of[t.id]}.combination_of")
        if not (t.patterns or t.generic or t.mesh or t.publication_types or t.combination_of):
            raise ConfigError("needs at least one of patterns, generic, mesh, publication_types",
                              path=file, key=where_of[t.id])

    if content is None:
        content = json.dumps(raw, sort_keys=True, default=str).encode()
    digest = hashlib.sha256(content).hexdigest()[:10]

    # Compile the term scanner: tag patterns, relevance vocabularies, ignore phrases.
    term_entries: list[tuple[str, Any]] = []
    for t in tags.values():
        term_entries += [(p, _Target("tag", t.id, "strong")) for p in t.patterns]
        term_entries += [(p, _Target("tag", t.id, "generic")) for p in t.generic]
        term_entries += [(p, _Target("tag", t.id, "weak")) for p in t.weak]
    owners: dict[str, str] = {}
    for t in tags.values():
        for key in ("patterns", "generic", "weak"):
            for p in getattr(t, key):
                owners.setdefault(_lower_regex(p), f"{where_of[t.id]}.{key}")
    for name, pats in (*rel_terms.items(), *rel_cues.items()):
        for p in pats:
            owners.setdefault(_lower_regex(p), f"relevance.{name}")
    for name, pats in cues.items():
        for p in pats:
            owners.setdefault(_lower_regex(p), f"cues.{name}")
    for i, p in enumerate(ignore):
        if _lower_regex(p) in owners:
            raise ConfigError(f"{p!r} is also listed in {owners[_lower_regex(p)]}; "
                              "an ignore phrase would hide it there",
                              path=file, key=f"ignore.patterns[{i}]")
    # One scanner for everything: tag patterns, sentence cues, relevance vocabularies, ignore phrases.
    entries: list[tuple[str, Any]] = list(term_entries)
    entries += [(p, name) for name, pats in cues.items() for p in pats]
    entries += [(p, name) for name, pats in rel_cues.items() for p in pats]
    entries += [(p, name) for name, pats in rel_terms.items() for p in pats]
    entries += [(p, "ignore") for p in ignore]
    scanner = _build_scanner(entries, file)
    # Where a tag pattern wins at a word start, the cues and vocabulary starting there still count:
    # this expression (cue, relevance and ignore patterns only) finds the longest of them.
    cue_only = _build_scanner([e for e in entries if not isinstance(e[1], _Target)], file)
    cue_at = re.compile(cue_only.body)
    kind_code = {"condition": _K_CONDITION, "intervention": _K_INTERVENTION, "design": _K_DESIGN}
    strength_code = {"strong": _STRONG, "generic": _GENERIC, "weak": _WEAK}
    pattern_info = []
    for targets in scanner.targets:
        acts = []
        names = []
        for t in targets:
            if isinstance(t, _Target):
                td = tags[t.name]
                acts.append((_A_TAG, td.id, kind_code[td.kind], strength_code[t.strength], _GUT_RULES[td.gut_side]))
            else:
                names.append(t)
        pattern_info.append((_mask(names), tuple(acts), "ignore" in names))
    # After a negation cue, these words may come before the negated term: "without a history of AD".
    negation_filler = re.compile(
        r"(?:[\s-]+(?:any|prior|previous|concomitant|current|known|recent|other|oral|systemic|topical|a|an|the|"
        r"history of|use of|evidence of|signs of|with|of)(?!\w))*[\s-]*"
    )

    mesh: dict[str, list[str]] = {}
    pubtypes: dict[str, list[str]] = {}
    abbreviations: dict[str, set[str]] = {}
    absorbed_by: dict[str, list[str]] = {}
    for t in tags.values():
        for m in t.mesh:
            mesh.setdefault(m.casefold(), []).append(t.id)
        for p in t.publication_types:
            pubtypes.setdefault(p.casefold(), []).append(t.id)
        for a in t.abbreviations:
            abbreviations.setdefault(a, set()).add(t.id)
        for other in t.absorbs:
            absorbed_by.setdefault(other, []).append(t.id)
    mesh_relevance = {name: frozenset(m.casefold() for m in names) for name, names in rel_mesh.items()}
    mesh_info = {
        key: (tuple(mesh.get(key, ())),
              (_ORAL if key in mesh_relevance["mesh_oral"] else 0)
              | (_TOPICAL if key in mesh_relevance["mesh_topical"] else 0),
              key in mesh_relevance["mesh_gut"], key in mesh_relevance["mesh_skin"])
        for key in sorted(set(mesh).union(*mesh_relevance.values()))
    }
    combinations = tuple((t.id, t.combination_of[0], t.combination_of[1]) for t in tags.values() if t.combination_of)
    return Taxonomy(
        version=f"{version}+{digest}",
        source=file,
        tags=tags,
        relevance_threshold=threshold,
        relevance_scale=scale,
        scoring=scoring,
        _scanner=scanner,
        _pattern_info=tuple(pattern_info),
        _cue_at=cue_at,
        _negation_filler=negation_filler,
        _order={t: (("condition", "intervention", "design").index(td.kind), t) for t, td in tags.items()},
        _tracked=frozenset(t for combo in combinations for t in combo[1:])
        | frozenset(x for v in absorbed_by.values() for x in v),
        _mesh_info=mesh_info,
        _pubtypes={k: tuple(v) for k, v in pubtypes.items()},
        _abbreviations={k: frozenset(v) for k, v in abbreviations.items()},
        _absorbed_by={k: tuple(v) for k, v in absorbed_by.items()},
        _combinations=combinations,
    )


def _tag_def(r: _Reader, tag_id: str, kind: str) -> TagDef:
    label = r.text("label", required=True)
    mesh = r.strings("mesh")
    patterns = r.patterns("patterns")
    generic = r.patterns("generic")
    weak = r.patterns("weak")
    abbreviations = r.strings("abbreviations")
    for i, a in enumerate(abbreviations):
        if not re.fullmatch(r"[A-Za-z0-9][\w-]{0,11}", a) or not any(ch.isupper() for ch in a):
            r.fail(f"abbreviations[{i}]", f"{a!r} is not an abbreviation (letters/digits with a capital, ≤ 12 chars)")
    publication_types = r.strings("publication_types") if kind == "design" else ()
    min_score = r.number("min_score", DEFAULT_SCORING["min_score"], 0.0, 100.0)
    yields_to = r.strings("yields_to")
    absorbs = r.strings("absorbs")
    combination_of = r.strings("combination_of")
    gut_side = "never"
    if kind == "intervention":
        gut_side = r.text("gut_side", default="always")
        if gut_side not in GUT_SIDE_VALUES:
            r.fail("gut_side", f"must be one of {', '.join(GUT_SIDE_VALUES)}, not {gut_side!r}")
    r.done()
    if tag_id in yields_to or tag_id in absorbs or tag_id in combination_of:
        r.fail(None, "a tag cannot refer to itself in yields_to, absorbs or combination_of")
    return TagDef(tag_id, kind, label, mesh, patterns, generic, weak, abbreviations, publication_types,
                  min_score, yields_to, absorbs, combination_of, gut_side)


def _mask(names: Sequence[str]) -> int:
    if "ignore" in names:
        return 0  # an ignore phrase hides the cue words inside it
    bits = 0
    for name in names:
        bits |= CUE_BITS[name]
    return bits


# ───────────────────────────────────────── pattern compilation ──────────────────────────────────────────

_SPECIAL = set("\\.^$*+?{}[]|()")
_QUANT = set("?*+{")


def _pattern_problem(pattern: str) -> str | None:
    """Why a pattern cannot be used, or None."""
    if "(?P" in pattern:
        return "named groups (?P...) are not allowed; use (?:...)"
    low = _lower_regex(pattern)
    try:
        compiled = re.compile(low)
        re.compile(r"(?<!\w)(?:" + low + r")(?!\w)(?P<_m>)|x")  # catches global flags (?i) mid-pattern
    except re.error as exc:
        return f"not a valid regular expression: {exc}"
    if compiled.groups and re.search(r"\\[1-9]", pattern):
        return "backreferences are not allowed"
    if compiled.fullmatch(""):
        return "matches the empty string"
    return None


def _lower_regex(pattern: str) -> str:
    """Lower-case the literal letters of a regex, leaving escapes (\\W, \\S, \\B, \\D, \\N{...}) alone."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            if pattern[i + 1] == "N" and pattern[i + 2:i + 3] == "{":
                j = pattern.find("}", i)
                j = n - 1 if j < 0 else j
                out.append(pattern[i:j + 1])
                i = j + 1
                continue
            out.append(pattern[i:i + 2])
            i += 2
            continue
        out.append(ch.lower())
        i += 1
    return "".join(out)


def _class_end(p: str, i: int) -> int:
    """Index of the ']' closing the character class that opens at p[i]."""
    j = i + 1
    if p[j:j + 1] == "^":
        j += 1
    if p[j:j + 1] == "]":
        j += 1
    while j < len(p):
        if p[j] == "\\":
            j += 2
            continue
        if p[j] == "]":
            return j
        j += 1
    return len(p) - 1


def _walk(p: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """``(index, char, depth)`` for each character of regex ``p`` from ``start`` that is neither escaped
    nor inside a character class; ``depth`` is the number of groups open before the character."""
    depth, j = 0, start
    while j < len(p):
        ch = p[j]
        if ch == "\\":
            j += 2
            continue
        if ch == "[":
            j = _class_end(p, j) + 1
            continue
        yield j, ch, depth
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        j += 1


def _group_end(p: str, i: int) -> int:
    """Index of the ')' closing the group that opens at p[i]."""
    for j, ch, depth in _walk(p, i):
        if ch == ")" and depth == 1:
            return j
    return len(p) - 1


def _top_split(p: str) -> list[str]:
    """Split a regex at its top-level '|'."""
    parts, start = [], 0
    for j, ch, depth in _walk(p):
        if ch == "|" and depth == 0:
            parts.append(p[start:j])
            start = j + 1
    parts.append(p[start:])
    return parts


def _expand_each(variants: list[str], budget: list[int]) -> list[tuple[str, str]] | None:
    """Expand every variant and concatenate; None as soon as one cannot be expanded."""
    out: list[tuple[str, str]] = []
    for v in variants:
        e = _expand(v, budget)
        if e is None:
            return None
        out += e
    return out


def _expand(p: str, budget: list[int]) -> list[tuple[str, str]] | None:
    """Rewrite a pattern as alternatives that each start with one literal character: ``[(char, rest)]``.

    Leading alternations, optional groups and small character classes are multiplied out, so the pattern
    can sit in its first character's bucket. None when the start is not literal (``\\w``, ``.``,
    look-arounds, repeated groups) or the expansion grows too large.
    """
    budget[0] -= 1
    if budget[0] < 0:
        return None
    alts = _top_split(p)
    if len(alts) > 1:
        return _expand_each(alts, budget)
    if not p:
        return None
    ch = p[0]
    if ch == "(":
        if p.startswith("(?:"):
            inner_start = 3
        elif p[1:2] == "?":
            return None  # look-around or inline flags
        else:
            inner_start = 1
        j = _group_end(p, 0)
        inner, after = p[inner_start:j], p[j + 1:]
        if after[:1] == "?" and after[1:2] not in ("?", "+"):
            variants = [a + after[1:] for a in _top_split(inner)] + [after[1:]]
        elif after[:1] in _QUANT:
            return None
        else:
            variants = [a + after for a in _top_split(inner)]
        return _expand_each(variants, budget)
    if ch == "[":
        j = _class_end(p, 0)
        body, after = p[1:j], p[j + 1:]
        if not body or body[0] == "^" or "\\" in body or after[:1] in _QUANT or len(body) > 12:
            return None
        if "-" in body.strip("-"):
            return None  # ranges: leave to the general bucket
        out = []
        for c in dict.fromkeys(body):
            e = _expand(re.escape(c) + after, budget)
            if e is None:
                return None
            out += e
        return out
    if ch == "\\":
        nxt = p[1:2]
        if not nxt or nxt.isalnum():
            return None
        first, rest = nxt, p[2:]
    elif ch in _SPECIAL:
        return None
    else:
        first, rest = ch, p[1:]
    if rest[:1] == "?" and rest[1:2] not in ("?", "+"):
        tail = rest[1:]
        e = _expand(tail, budget) if tail else None
        if e is None:
            return None
        return [(first, tail)] + e
    if rest[:1] in _QUANT:
        return None
    return [(first, rest)]


def _min_width(p: str) -> tuple[int, int]:
    """Shortest and longest match of a pattern (an ordering hint only)."""
    if _sre_parse is None:  # pragma: no cover
        return (len(p), len(p))
    try:
        lo, hi = _sre_parse.parse(p).getwidth()
    except (re.error, ValueError, TypeError, OverflowError):  # pragma: no cover - patterns were validated
        return (len(p), len(p))
    return (lo, min(hi, 10_000))


def _literal_prefix(p: str) -> tuple[str, str]:
    """Split a regex into its leading plain literal characters and the rest."""
    out: list[str] = []
    i, n = 0, len(p)
    while i < n:
        ch = p[i]
        if ch == "\\":
            nxt = p[i + 1:i + 2]
            if not nxt or nxt.isalnum():
                break
            width = 2
        elif ch in _SPECIAL:
            break
        else:
            nxt, width = ch, 1
        if p[i + width:i + width + 1] in _QUANT and p[i + width:i + width + 1] != "":
            break
        out.append(nxt)
        i += width
    return "".join(out), p[i:]


def _build_scanner(entries: Sequence[tuple[str, Any]], file: str) -> _Scanner:
    """Compile ``(pattern, target)`` pairs into one expression.

    Identical patterns are merged (one mention, several targets). Each pattern is multiplied out into
    alternatives that start with literal text, and the alternatives are arranged as a character trie,
    so at a word start the engine follows one path instead of trying every pattern. At a trie node,
    longer literal paths are tried before shorter ones, and among the rest the pattern with the longer
    minimum match first: at one position the more specific pattern wins. The expression has no groups
    (a match object with hundreds of groups is slow to build); :func:`_resolve` finds which patterns
    matched from the matched text.
    """
    merged: dict[str, list[Any]] = {}
    for pattern, target in entries:
        low = _lower_regex(pattern)
        bucket = merged.setdefault(low, [])
        if target not in bucket:
            bucket.append(target)
    patterns = list(merged)
    targets = tuple(tuple(merged[p]) for p in patterns)
    root: dict[str, Any] = {}
    by_first: dict[str, list[int]] = {}
    for idx, p in enumerate(patterns):
        expansions = _expand(p, [200])
        if expansions is None:
            alternatives = [("", f"(?:{p})")]
            by_first.setdefault("", []).append(idx)
        else:
            alternatives = [_literal_prefix(re.escape(f) + r) for f, r in expansions]
            for f, _ in expansions:
                if idx not in by_first.setdefault(f, []):
                    by_first[f].append(idx)
        for prefix, rest in alternatives:
            node = root
            for ch in prefix:
                node = node.setdefault(ch, {})
            w = _min_width(re.escape(prefix) + rest)
            node.setdefault("", []).append(((-w[0], -w[1]), idx, rest + r"(?!\w)"))
    body = _emit_trie(root) if root else r"(?!x)x"
    try:
        # The separator is consumed and the word only looked at, so every word start is tried once and a
        # match never hides the words after its first one (only [ignore] phrases hide, see tag()).
        regex = re.compile(_SEPARATOR + "(?=(" + body + "))")
        singles = tuple(re.compile(r"(?<!\w)(?:" + p + r")(?!\w)") for p in patterns)
    except re.error as exc:  # pragma: no cover - each pattern compiled alone; report rather than crash
        raise ConfigError(f"the patterns do not compile together: {exc}", path=file) from None
    general = tuple(by_first.pop("", ()))
    contextual = frozenset(i for i, p in enumerate(patterns) if _CONTEXT_RE.search(p))
    return _Scanner(regex, body, targets, singles, {k: tuple(v) + general for k, v in by_first.items()}, general,
                    contextual, {})


# A match starts with the separator before the word (the document starts with a newline): a leading
# character set lets the engine skip to candidate places, several times faster than (?<!\w) at every
# character. Words glued to other characters are not matched.
_SEPARATOR = r"[ \t\n\r\f\v(\[{/\\\-\"'“”‘’,;:.!?<>=+*%&@#~|®©™°±×·•…]"
# Word-initial letters of biomedical English, most frequent first: the trie tries them in this order.
_FIRST_ORDER = {c: i for i, c in enumerate("atspiocwmdrfbehglnuvykjqzx0123456789")}


def _emit_trie(node: dict[str, Any]) -> str:
    parts = []
    for ch in sorted((k for k in node if k), key=lambda c: (_FIRST_ORDER.get(c, 99), c)):
        child = node[ch]
        chain = [ch]
        while len(child) == 1 and "" not in child:  # compress single-child paths
            (only,) = child
            chain.append(only)
            child = child[only]
        parts.append("".join(re.escape(c) for c in chain) + _emit_trie(child))
    parts += [alt for _, _, alt in sorted(node.get("", ()))]
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


def _resolve(scanner: _Scanner, low: str, start: int, end: int) -> tuple[int, ...]:
    """The patterns that match exactly ``low[start:end]`` where the scan found a match there.

    A pattern without look-arounds that fully matches the text matches it in place too; only patterns
    with look-arounds are re-checked against the surrounding text."""
    entry = scanner.cache.get(low[start:end])
    if entry is None:
        entry = _candidates(scanner, low[start:end])
    fixed, contextual = entry
    if not contextual:
        return fixed
    verified = [i for i in contextual if _matches_at(scanner.singles[i], low, start, end)]
    return fixed + tuple(verified) if (fixed or verified) else contextual


def _candidates(scanner: _Scanner, text: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    pool = scanner.by_first.get(text[:1], scanner.general)
    hits = [i for i in pool if scanner.singles[i].fullmatch(text)]
    entry = (tuple(i for i in hits if i not in scanner.contextual),
             tuple(i for i in hits if i in scanner.contextual))
    if len(scanner.cache) < 500_000:
        scanner.cache[text] = entry
    return entry


def _matches_at(rx: re.Pattern[str], low: str, start: int, end: int) -> bool:
    m = rx.match(low, start)
    return m is not None and m.end() == end


_CONTEXT_RE = re.compile(r"\(\?<?[=!]|\\[bBAZ]|[$^]")


# ───────────────────────────────────────────── the document ─────────────────────────────────────────────

_HEADINGS = (
    r"background(?:\s*(?:&|and)\s*aims?)?|introduction|context|rationale|importance|aims?(?: of the study)?|"
    r"objectives?|purpose(?: of (?:the )?(?:review|study))?|goals?|hypothesis|methods?|methodology|"
    r"materials? and methods?|patients? and methods?|subjects and methods|study design|"
    r"design(?:,? setting,? and participants)?|setting|participants|interventions?|measurements?|"
    r"main outcome measures?|search (?:methods|strategy)|selection criteria|eligibility criteria|"
    r"data (?:collection and analysis|sources|extraction|synthesis)|study selection|results?|main results|"
    r"findings|recent findings|observations|case (?:summary|presentation|report|description)|"
    r"conclusions?(?: and relevance)?|authors.? conclusions|interpretation|discussion|summary|implications?|"
    r"limitations?|significance"
)
# A heading ("Background:", "(1) Methods.", "RESULTS" on a line of its own) at the start of a sentence.
_HEADING_TAIL = r"[ \t]*(?:\(\d\)[ \t]*)?(" + _HEADINGS + r")[ \t]*(?::|\.(?=\s)|\n|[ \t]+[-–—][ \t]+)[ \t\n]*"
_LEADING_HEADING = re.compile(_HEADING_TAIL)  # run on lower-cased text, at the start of each sentence
_LEADING_HEADING_START = re.compile(r"[ \t]*(?:\(\d\)[ \t]*)?[A-Za-z &]{3,40}[.:]")
# Between two sentences: a full stop (! ?) and the space after it, before a capital, digit or opening
# bracket or quote; or a line break and the space after it. The stop stays with its sentence.
_SENTENCE_END = re.compile(r"[.!?\n](?:(?<=\n)\s*|[ \t]+(?=[A-Z0-9(\[“\"']))")
_ABBR_DEF = re.compile(r"\(\s*([A-Za-z][A-Za-z0-9-]*[A-Z][A-Za-z0-9-]*|[A-Z][A-Za-z0-9-]+)\s*\)")
_DASHES = {"\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
           "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2019": "'"}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _category_of(label: str | None, category: str | None) -> str | None:
    if category and category.upper() not in ("UNASSIGNED", "UNLABELLED"):
        return category.upper()
    return _category_of_label(label) if label else None


def _category_of_label(label: str) -> str | None:
    lab = label.lower()
    if any(k in lab for k in ("conclu", "interpretation", "implication", "significance")):
        return "CONCLUSIONS"
    if "summary" in lab:
        return "RESULTS" if "case" in lab else "CONCLUSIONS"
    if any(k in lab for k in ("result", "finding", "observation", "case")):
        return "RESULTS"
    if any(k in lab for k in ("aim", "objective", "purpose", "goal", "hypothes")):
        return "OBJECTIVE"
    if any(k in lab for k in ("method", "design", "setting", "participant", "patient", "subject", "intervention",
                              "measure", "search", "selection", "eligib", "data", "material")):
        return "METHODS"
    if any(k in lab for k in ("background", "introduction", "context", "rationale", "importance")):
        return "BACKGROUND"
    return None


# Cue classes as bits, so a sentence's cues are one int.
CUE_BITS = {name: 1 << i for i, name in enumerate(
    ("aim", "conclusion", "future", "confounder", "exclusion", "adverse", "composition", "intervention",
     "combination", "topical", "oral", "blood", "negation", "skin", "skin_microbiome", "gut", "gut_weak",
     "diet"))}
_AIM, _CONCLUSION, _FUTURE, _CONFOUNDER, _EXCLUSION, _ADVERSE, _COMPOSITION, _INTERVENTION, _COMBINATION, \
    _TOPICAL, _ORAL, _BLOOD, _NEGATION, _SKIN, _SKIN_MICROBIOME, _GUT, _GUT_WEAK, _DIET = CUE_BITS.values()
_DROP_ANY = _EXCLUSION  # a mention inside exclusion criteria never counts
_VOCAB = _SKIN | _SKIN_MICROBIOME | _GUT | _GUT_WEAK | _DIET
_VOCAB_BITS = (_SKIN, _SKIN_MICROBIOME, _GUT, _GUT_WEAK, _DIET)
_BITS_OF = {sum(combo): combo for n in range(1, 6) for combo in itertools.combinations(_VOCAB_BITS, n)}
_POSITIONAL = _NEGATION | _COMBINATION  # cues whose position matters, not just their sentence

# Term actions: what one pattern match does.
_A_TAG = 1
_K_CONDITION, _K_INTERVENTION, _K_DESIGN = range(3)
_STRONG, _GENERIC, _WEAK = range(3)
_GUT_RULES = {"always": 0, "unless_topical": 1, "if_oral": 2, "never": 3}


def _build_document(paper: TagInput) -> tuple[str, list[list[Any]]]:
    """Join title, abstract sections and keywords; cut into sentences.

    A sentence is ``[start, end, source, weight, cues, section]``; the document starts with a newline so
    every word has a separator before it (the scanners need one). An unlabelled abstract section is
    split where a heading ("Background:", "METHODS\\n", "Aim. …") starts a sentence."""
    pieces: list[str] = ["\n"]
    sentences: list[list[Any]] = []
    pos = 1
    title = paper.title
    if title:
        sentences.append([pos, pos + len(title), "title", 0.0, 0, "title"])
        pieces += (title, "\n\n")
        pos += len(title) + 2
    for text, label, category in paper.abstract:
        if not text:
            continue
        cat = _category_of(label, category)
        if cat is not None or label:
            section, source, low_text = cat or "UNSTRUCTURED", f"abstract:{cat or 'UNASSIGNED'}", None
        else:
            section, source, low_text = "UNSTRUCTURED", "abstract", None
            if ":" in text or "\n" in text or _LEADING_HEADING_START.match(text):
                low_text = text.lower()
                if len(low_text) != len(text):
                    low_text = text.translate(_ASCII_LOWER)
        s = 0
        if low_text is not None:
            h = _LEADING_HEADING.match(low_text)
            if h:
                section = _category_of_label(h.group(1)) or "UNSTRUCTURED"
                source = f"abstract:{section}" if section != "UNSTRUCTURED" else "abstract"
                s = h.end()
        if low_text is None:
            for stop, end in [m.span() for m in _SENTENCE_END.finditer(text, s)]:
                cut = stop if text[stop] == "\n" else stop + 1
                if cut > s:
                    sentences.append([pos + s, pos + cut, source, 0.0, 0, section])
                s = end
        else:
            for m in _SENTENCE_END.finditer(text, s):
                cut = m.start() + (1 if text[m.start()] != "\n" else 0)
                if cut > s:
                    sentences.append([pos + s, pos + cut, source, 0.0, 0, section])
                s = m.end()
                h = _LEADING_HEADING.match(low_text, s)
                if h:
                    section = _category_of_label(h.group(1)) or "UNSTRUCTURED"
                    source = f"abstract:{section}" if section != "UNSTRUCTURED" else "abstract"
                    s = h.end()
        if s < len(text):
            sentences.append([pos + s, pos + len(text), source, 0.0, 0, section])
        pieces += (text, "\n\n")
        pos += len(text) + 2
    for kw in paper.keywords:
        if kw.strip():
            sentences.append([pos, pos + len(kw), "keyword", 0.0, 0, "keyword"])
            pieces += (kw, "\n\n")
            pos += len(kw) + 2
    return "".join(pieces), sentences


_SECTION_WEIGHT_KEY = {"title": "title", "keyword": "keyword", "OBJECTIVE": "objective", "METHODS": "methods",
                       "RESULTS": "results", "CONCLUSIONS": "conclusions", "BACKGROUND": "background"}
_ROLE_SOURCE = {role: f"abstract:{role}" for role in ("OBJECTIVE", "BACKGROUND", "CONCLUSIONS", "UNASSIGNED")}


def _weigh_sentences(sentences: list[list[Any]], w: Mapping[str, float]) -> None:
    """Give each sentence its base weight and (in unstructured abstracts) its role as evidence source.

    A sentence of a labelled section, the title or a keyword weighs what its section weighs (other
    sections: ``body_sentence``). A run of unstructured sentences is read as an abstract: the aim
    sentence, what comes before it (background), the first sentence, conclusion sentences, the body."""
    body = w["body_sentence"]
    section_weight = {section: w[key] for section, key in _SECTION_WEIGHT_KEY.items()}
    i, n = 0, len(sentences)
    while i < n:
        s = sentences[i]
        section = s[5]
        if section != "UNSTRUCTURED":
            if section == "BACKGROUND" and s[4] & _AIM:
                s[3] = w["aim_sentence"]
            else:
                s[3] = section_weight.get(section, body)
            i += 1
            continue
        source = s[2]
        j = i + 1
        while j < n and sentences[j][5] == "UNSTRUCTURED" and sentences[j][2] == source:
            j += 1
        aim_at = None
        for k in range(i, j):
            if sentences[k][4] & _AIM:
                aim_at = k
                break
        if aim_at is not None and aim_at - i >= math.ceil(0.6 * (j - i)):
            aim_at = None  # a late "this article also reviews" does not make the abstract background
        for k in range(i, j):
            r = sentences[k]
            cues = r[4]
            if cues & _AIM:
                r[3], r[2] = w["aim_sentence"], _ROLE_SOURCE["OBJECTIVE"]
            elif aim_at is not None and k < aim_at:
                r[3], r[2] = w["before_aim"], _ROLE_SOURCE["BACKGROUND"]
            elif k == i:
                r[3], r[2] = w["first_sentence"], _ROLE_SOURCE["BACKGROUND"]
            elif cues & _CONCLUSION:
                r[3], r[2] = w["conclusion_sentence"], _ROLE_SOURCE["CONCLUSIONS"]
            else:
                r[3], r[2] = body, _ROLE_SOURCE["UNASSIGNED"]
        i = j


# ─────────────────────────────────────────────── tagging ────────────────────────────────────────────────


def tag(paper: Article | TagInput, taxonomy: Taxonomy) -> Tagging:
    """Tag one paper (a parsed article or the stored :class:`~monitor.types.TagInput` of one).
    Deterministic; see the module docstring for the rules."""
    if isinstance(paper, Article):
        paper = TagInput.of(paper)
    tx = taxonomy
    w = tx.scoring
    # hot-loop constants as locals (a global lookup per use costs more than the work itself)
    A_TAG = _A_TAG
    K_CONDITION, K_INTERVENTION, WEAK, GENERIC = _K_CONDITION, _K_INTERVENTION, _WEAK, _GENERIC
    ADVERSE, FUTURE, CONFOUNDER, INTERVENTION, COMPOSITION = _ADVERSE, _FUTURE, _CONFOUNDER, _INTERVENTION, \
        _COMPOSITION
    gut_route = _gut_route
    doc, sentences = _build_document(paper)
    if not doc.isascii():
        for bad, good in _DASHES.items():
            if bad in doc:
                doc = doc.replace(bad, good)
    low = doc.lower()
    if len(low) != len(doc):  # a few Unicode capitals lower-case to two characters; keep offsets aligned
        low = doc.translate(_ASCII_LOWER)
    n_sent = len(sentences)
    starts = [s[0] for s in sentences]

    # One pass over the text. Cue bits go to the sentence (one int per sentence); negation cues mark
    # where a negated word starts; tag matches are kept for weighing once the sentence weights are known.
    scanner = tx._scanner
    text_cache = tx._text_cache
    combination_at: dict[int, list[int]] = {}
    negated_at: set[int] = set()
    vocab_at: dict[tuple[int, int], tuple[int, int]] = {}  # (vocabulary bit, sentence) -> first mention
    matches: list[tuple[int, int, tuple[Any, ...]]] = []
    paper_cues = 0
    filler = tx._negation_filler
    cue_at = tx._cue_at
    vocab_bits, bits_of, positional = _VOCAB, _BITS_OF, _POSITIONAL
    ignore_end = 0
    si = 0
    next_start = starts[1] if n_sent > 1 else len(doc) + 1
    seen_vocab = 0
    for m in scanner.regex.finditer(low):
        st = m.end()  # the separator was consumed; the word starts here
        en = m.end(1)
        if st < ignore_end:
            continue  # inside an ignore phrase
        text = low[st:en]
        info = text_cache.get(text)
        if info is None:
            info = _text_info(tx, low, st, en)
        mask, acts, ignore = info
        if ignore:
            ignore_end = en
            continue
        if acts:
            cm = cue_at.match(low, st)
            if cm is not None and cm.end() != en:
                shorter = text_cache.get(low[st:cm.end()])
                if shorter is None:
                    shorter = _text_info(tx, low, st, cm.end())
                mask |= shorter[0]
        if st >= next_start:
            while si + 1 < n_sent and starts[si + 1] <= st:
                si += 1
            next_start = starts[si + 1] if si + 1 < n_sent else len(doc) + 1
            seen_vocab = 0
        if mask:
            if mask & positional:
                if mask & _COMBINATION:
                    combination_at.setdefault(si, []).append(st)
                if mask & _NEGATION:
                    fm = filler.match(low, en)
                    negated_at.add(fm.end() if fm else en)
            new_vocab = mask & vocab_bits & ~seen_vocab
            if new_vocab and st not in negated_at:
                for bit in bits_of[new_vocab]:
                    vocab_at[(bit, si)] = (st, en)
                seen_vocab |= new_vocab
            sentences[si][4] |= mask
            paper_cues |= mask
        if acts:
            matches.append((st, en, acts))
    _weigh_sentences(sentences, w)
    title_cues = sentences[0][4] if sentences and sentences[0][5] == "title" else 0

    # MeSH headings the taxonomy knows: (descriptor, casefolded, major topic, what it implies)
    mesh_info = tx._mesh_info
    mesh_hits = []
    for heading in paper.mesh:
        name = heading[0]
        key = name.casefold()
        info = mesh_info.get(key)
        if info is not None:
            mesh_hits.append((name, key, heading[2] or any(q[2] for q in heading[3]), info))
            paper_cues |= info[1]

    # Abbreviations defined in the text add mentions.
    if "(" in doc:
        extra = _abbreviation_matches(doc, matches, tx)
        if extra:
            matches = sorted(matches + extra, key=_first)

    # Mentions. found[tag] = {key: [best weight, best non-generic weight, mention, non-generic mention]}
    # where key is a sentence index (or ("mesh", name) / ("pt", name)) and a mention is (source, start, end).
    found: dict[str, dict[Any, list[Any]]] = {}
    skin: dict[Any, tuple[float, str, str]] = {}
    gut: dict[Any, tuple[float, str, str]] = {}
    weak_pending: list[tuple[str, int, float, str, int, int]] = []
    tags_in_sentence: dict[int, set[str]] = {}  # only for tags that absorb others or form combinations
    positions: dict[tuple[str, int], list[int]] = {}
    tracked = tx._tracked
    future = w["future_work"]
    si = -1
    cues = 0
    weight0 = 0.0
    source = ""
    next_start = 0
    for start, end, acts in matches:
        if start >= next_start:
            while si + 1 < n_sent and starts[si + 1] <= start:
                si += 1
            next_start = starts[si + 1] if si + 1 < n_sent else len(doc) + 1
            s = sentences[si]
            cues, weight0, source = s[4], s[3], s[2]
            if cues & _DROP_ANY:
                weight0 = 0.0
        base = 0.0 if start in negated_at else weight0
        for code, tag_id, kind, strength, gut_rule in acts:
            if code == A_TAG:
                if tag_id in tracked:
                    tags_in_sentence.setdefault(si, set()).add(tag_id)
                weight = base
                if kind == K_CONDITION:
                    if cues & ADVERSE:
                        continue
                elif cues & FUTURE:
                    if kind == K_INTERVENTION and cues & CONFOUNDER:
                        continue
                    weight *= future
                elif kind == K_INTERVENTION and cues & CONFOUNDER:
                    continue
                if weight <= 0.0:
                    continue
                if kind == K_CONDITION:
                    old = skin.get(si)
                    if old is None or weight > old[0]:
                        skin[si] = (weight, source, doc[start:end])
                elif strength == WEAK and (not cues & INTERVENTION or cues & COMPOSITION):
                    continue
                if kind == K_INTERVENTION and gut_rule != 3 and gut_route(gut_rule, cues, title_cues, paper_cues):
                    old = gut.get(si)
                    if old is None or weight > old[0]:
                        gut[si] = (weight, source, doc[start:end])
                if strength == WEAK:
                    weak_pending.append((tag_id, si, weight, source, start, end))
                    continue
                entries = found.get(tag_id)
                if entries is None:
                    entries = found[tag_id] = {}
                slot = entries.get(si)
                if slot is None:
                    slot = entries[si] = [0.0, 0.0, None, None]
                if weight > slot[0]:
                    slot[0], slot[2] = weight, (source, start, end)
                if strength != GENERIC and weight > slot[1]:
                    slot[1], slot[3] = weight, (source, start, end)
                if tag_id in tracked:
                    positions.setdefault((tag_id, si), []).append(start)

    # Weak mentions are dropped where an absorbing tag is named in the same sentence.
    for tag_id, si, weight, source, start, end in weak_pending:
        absorbers = tx._absorbed_by.get(tag_id)
        if absorbers and tags_in_sentence.get(si, set()).intersection(absorbers):
            continue
        _add_mention(found, tag_id, si, weight, _WEAK, (source, start, end))
    # Relevance vocabularies: the best sentence weight per side and sentence.
    for (bit, si), (v_start, v_end) in vocab_at.items():
        text = doc[v_start:v_end]
        s = sentences[si]
        cues = s[4]
        if cues & _DROP_ANY:
            continue
        if bit == _SKIN or bit == _SKIN_MICROBIOME:
            if not cues & _ADVERSE:
                _keep(skin, si, s[3], s[2], text)
        elif bit == _GUT:
            _keep(gut, si, s[3], s[2], text)
        elif bit == _DIET:
            if not (cues & _BLOOD and not cues & _ORAL):
                _keep(gut, si, s[3], s[2], text)
        elif not paper_cues & _SKIN_MICROBIOME:  # gut_weak: "microbiome" with no skin microbiome in the paper
            _keep(gut, si, s[3] * 0.5, s[2], text)

    # MeSH headings and publication types.
    tags = tx.tags
    for name, key, major, (mesh_tags, _cues, mesh_gut, mesh_skin) in mesh_hits:
        weight = w["mesh_major"] if major else w["mesh_minor"]
        mention = ("mesh", -1, name + ("*" if major else ""))
        for tag_id in mesh_tags:
            td = tags[tag_id]
            _add_mention(found, tag_id, ("mesh", key), weight, _STRONG, mention)
            if td.kind == "condition":
                _keep(skin, ("mesh", key), weight, "mesh", str(mention[2]))
            elif td.kind == "intervention" and _gut_route(_GUT_RULES[td.gut_side], 0, title_cues, paper_cues):
                _keep(gut, ("mesh", key), weight, "mesh", str(mention[2]))
        if mesh_gut:
            _keep(gut, ("mesh", key), weight, "mesh", str(mention[2]))
        if mesh_skin:
            _keep(skin, ("mesh", key), weight, "mesh", str(mention[2]))
    for pt in paper.publication_types:
        pt_name = pt[0]
        for tag_id in tx._pubtypes.get(pt_name.casefold(), ()):
            _add_mention(found, tag_id, ("pt", pt_name), w["publication_type"], _STRONG,
                         ("publication_type", -1, pt_name))

    # Combinations (synbiotics): both components given together in one sentence.
    for combo_id, a, b in tx._combinations:
        if a not in found or b not in found:
            continue
        for si in sorted(k for k in found[a] if isinstance(k, int) and k in found[b] and k in combination_at):
            pos_a, pos_b = positions.get((a, si), []), positions.get((b, si), [])
            spans = [(min(x, y), max(x, y)) for x in pos_a for y in pos_b]
            if spans and not any(lo < c < hi for c in combination_at[si] for lo, hi in spans):
                continue
            weight = min(found[a][si][0], found[b][si][0])
            s = sentences[si]
            _add_mention(found, combo_id, si, weight, _STRONG, (s[2], s[0], s[1]))

    # Scores: generic mentions yield to more specific tags; thresholds.
    totals: dict[str, float] = {}
    provisional: set[str] = set()
    for tag_id, entries in found.items():
        score = 0.0
        for v in entries.values():
            score += v[0]
        totals[tag_id] = score
        if score >= tags[tag_id].min_score:
            provisional.add(tag_id)
    final: dict[str, bool] = {}  # tag id -> whether its generic mentions were dropped
    for tag_id, entries in found.items():
        td = tags[tag_id]
        if td.yields_to and not provisional.isdisjoint(td.yields_to):
            score = 0.0
            for v in entries.values():
                score += v[1]
            if score >= td.min_score:
                final[tag_id] = True
        elif tag_id in provisional:
            final[tag_id] = False

    scale = tx.relevance_scale
    skin_score = sum(v[0] for v in skin.values())
    gut_score = sum(v[0] for v in gut.values())
    relevance = round((1.0 - math.exp(-skin_score / scale)) * (1.0 - math.exp(-gut_score / scale)), 4)

    # Evidence: the strongest mention of each sentence (document order breaks ties), a few per tag.
    evidence: list[TagEvidence] = []
    order = tx._order
    for tag_id in sorted(final, key=order.__getitem__):
        if final[tag_id]:
            best = [(v[1], v[3]) for v in found[tag_id].values() if v[3] is not None and v[1] > 0.0]
        else:
            best = [(v[0], v[2]) for v in found[tag_id].values() if v[2] is not None]
        if len(best) > 1:
            best.sort(key=_first, reverse=True)
        tag_kind = tags[tag_id].kind
        for weight, (src, a, b) in best[:EVIDENCE_PER_TAG]:
            evidence.append(TagEvidence(tag_id, tag_kind, src, b if a < 0 else doc[a:b], round(weight, 3)))
    for side, side_entries in (("skin_side", skin), ("gut_side", gut)):
        ranked = sorted(side_entries.items(), key=_weight_of_item, reverse=True)[:EVIDENCE_PER_SIDE]
        for _key, (side_weight, side_src, side_text) in ranked:
            evidence.append(TagEvidence(side, "relevance", side_src, side_text, round(side_weight, 3)))

    kinds = {"condition": [], "intervention": [], "design": []}  # type: dict[str, list[str]]
    for tag_id in final:
        kinds[tags[tag_id].kind].append(tag_id)
    return Tagging(
        conditions=tuple(sorted(kinds["condition"])),
        interventions=tuple(sorted(kinds["intervention"])),
        designs=tuple(sorted(kinds["design"])),
        gut_skin_relevant=relevance >= tx.relevance_threshold,
        relevance=relevance,
        evidence=tuple(evidence),
        taxonomy_version=tx.version,
    )


def _weight_of_item(item: tuple[Any, tuple[float, str, str]]) -> float:
    return item[1][0]


def _text_info(tx: Taxonomy, low: str, start: int, end: int) -> tuple[int, tuple[Any, ...], bool]:
    """Cue bits, tag actions and ignore flag of the patterns that matched ``low[start:end]``."""
    scanner = tx._scanner
    text = low[start:end]
    ids = _resolve(scanner, low, start, end)
    info = tx._ids_cache.get(ids)
    if info is None:
        mask, ignore = 0, False
        acts: list[tuple[int, str, int, int, int]] = []
        for i in ids:
            m, a, ig = tx._pattern_info[i]
            mask |= m
            acts += a
            ignore = ignore or ig
        info = (0, (), True) if ignore else (mask, tuple(acts), False)
        tx._ids_cache[ids] = info
    entry = scanner.cache.get(text)
    if entry is not None and not entry[1] and len(tx._text_cache) < 500_000:
        tx._text_cache[text] = info  # no look-arounds: the text alone decides
    return info


def _first(item: tuple[Any, ...]) -> Any:
    return item[0]


def _add_mention(found: dict[str, dict[Any, list[Any]]], tag_id: str, key: Any, weight: float, strength: int,
                 mention: tuple[str, int, Any]) -> None:
    slot = found.setdefault(tag_id, {}).get(key)
    if slot is None:
        slot = found[tag_id][key] = [0.0, 0.0, None, None]
    if weight > slot[0]:
        slot[0], slot[2] = weight, mention
    if strength != _GENERIC and weight > slot[1]:
        slot[1], slot[3] = weight, mention


def _keep(side: dict[Any, tuple[float, str, str]], key: Any, weight: float, source: str, text: str) -> None:
    old = side.get(key)
    if old is None or weight > old[0]:
        side[key] = (weight, source, text)


def _gut_route(rule: int, cues: int, title_cues: int, paper_cues: int) -> bool:
    """Does a mention of an intervention with this gut_side rule count towards the gut side?"""
    if rule == 0:  # always
        return True
    if rule == 3:  # never
        return False
    if cues & _ORAL:
        return True
    if rule == 1:  # unless_topical
        if cues & _TOPICAL:
            return False
        return not (title_cues & _TOPICAL and not paper_cues & _ORAL)
    # if_oral: an oral mention, or an unqualified one in a paper that speaks of oral use and never topical
    if cues & (_TOPICAL | _BLOOD):
        return False
    return bool(paper_cues & _ORAL) and not paper_cues & _TOPICAL


def _abbreviation_matches(doc: str, matches: list[tuple[int, int, tuple[Any, ...]]],
                          tx: Taxonomy) -> list[tuple[int, int, tuple[Any, ...]]]:
    """Mentions through abbreviations the text defines: "<term> (ABBR)" makes every "ABBR" that term."""
    defs = list(_ABBR_DEF.finditer(doc))
    if not defs or not matches:
        return []
    starts = [m[0] for m in matches]
    defined: dict[str, tuple[Any, ...]] = {}
    def_spans: set[int] = set()
    for m in defs:
        abbr = m.group(1)
        if abbr in defined or len(abbr) > 12:
            continue
        j = k = m.start()
        while k > 0 and doc[k - 1] in " \t":
            k -= 1
        i = bisect.bisect_left(starts, k) - 1
        found: list[Any] = []
        while i >= 0 and starts[i] >= k - 80:
            _, end, acts = matches[i]
            if end == k:
                found += acts
            i -= 1
        if not found:
            declared = tx._abbreviations.get(abbr) or tx._abbreviations.get(abbr[:-1] if abbr.endswith("s") else "")
            if declared:
                # a listed abbreviation may follow its long form at up to three words' distance
                i = bisect.bisect_left(starts, j) - 1
                while i >= 0 and starts[i] >= j - 80 and not found:
                    _, end, acts = matches[i]
                    gap = doc[end:j]
                    if end <= j and len(gap.split()) <= 3 and "." not in gap:
                        found += [a for a in acts if a[1] in declared]
                    i -= 1
        if found:
            defined[abbr] = tuple(found)
            def_spans.add(m.start(1))
    if not defined:
        return []
    taken = set(starts)
    out = []
    for abbr, acts in defined.items():
        i = doc.find(abbr)
        while i >= 0:
            j = i + len(abbr)
            if doc[j:j + 1] == "s":
                j += 1
            before, after = doc[i - 1:i], doc[j:j + 1]
            if (i not in def_spans and i not in taken and not (before.isalnum() or before in "_-")
                    and not (after.isalnum() or after in "_-")):
                out.append((i, j, acts))
            i = doc.find(abbr, i + 1)
    return out
