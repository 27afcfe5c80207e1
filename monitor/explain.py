"""Explanations: why a paper got each tag and its relevance score, in sentences a clinician can check.

Owns :func:`explain` (a paper and a taxonomy → :class:`Explanation`, a value object) and
:func:`render_text` (that object → plain text, what ``monitor explain PMID`` prints). For every tag the
tagger gave, and for each side of the gut–skin relevance, an explanation lists the sentences that caused
it, with the matched words marked, and the sentences that were considered and discounted (background,
future work, negation, exclusion criteria, a confounder or adverse-event list, a taxon found by a
composition analysis, a passing mention …), each with the reason. Tags that were considered but not given
are listed with why not, so a wrong or missing tag can be understood and reported. Pure: it re-runs the
tagger (:func:`monitor.tagging.analyse`) and reads what it kept; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .document import Document
from .errors import UsageError
from .tagging import Analysis, Considered, Verdict, analyse
from .taxonomy import Taxonomy
from .types import Article, StoredPaper, TagInput

__all__ = ["MARK_CLOSE", "MARK_OPEN", "Explanation", "Finding", "Quote", "explain", "render_text"]

MARK_OPEN, MARK_CLOSE = "«", "»"
BACKGROUND = "background or future work: weighs little and never gives a tag alone"
PASSING = "passing mention: too little on its own"
_KIND_ORDER = ("condition", "intervention", "design")


@dataclass(frozen=True, slots=True)
class Quote:
    """A sentence (or a MeSH heading, a publication type) and what it earned: ``text`` has the matched
    words between :data:`MARK_OPEN` and :data:`MARK_CLOSE`; ``note`` says why it was discounted (or that
    it only counted as background)."""

    source: str
    text: str
    weight: float
    note: str = ""


@dataclass(frozen=True, slots=True)
class Finding:
    """One tag (or one side of relevance): given or not, its score and what the tagger needed, the quotes
    that caused it and those it considered and discounted."""

    name: str
    label: str
    kind: str  # condition | intervention | design | relevance
    given: bool
    score: float
    summary: str
    caused_by: tuple[Quote, ...]
    discounted: tuple[Quote, ...]


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why one paper was tagged as it was."""

    title: str
    relevance: float
    relevant: bool
    threshold: float
    raw_relevance: float
    sides: tuple[Finding, ...]  # skin side, gut side
    given: tuple[Finding, ...]  # the tags given, conditions first
    not_given: tuple[Finding, ...]  # tags with mentions that were not given


def explain(paper: Article | TagInput, taxonomy: Taxonomy) -> Explanation:
    """The explanation of how ``taxonomy`` tags ``paper``."""
    a = analyse(paper, taxonomy)
    by_target: dict[str, list[Considered]] = {}
    for c in a.considered:
        by_target.setdefault(c.target, []).append(c)
    verdicts = list(a.verdicts)
    decided = {v.tag_id for v in verdicts}
    verdicts += [Verdict(t, 0.0, False, (), "every mention was discounted") for t in by_target
                 if t in taxonomy.tags and t not in decided]
    findings = [_tag_finding(v, by_target.get(v.tag_id, []), a, taxonomy) for v in verdicts]
    order = {kind: i for i, kind in enumerate(_KIND_ORDER)}
    findings.sort(key=lambda f: (order.get(f.kind, 9), f.name))
    sides = tuple(_side_finding(name, by_target.get(name, []), score, a.document, taxonomy)
                  for name, score in (("skin_side", a.skin_score), ("gut_side", a.gut_score)))
    t = a.tagging
    title = a.document.text[a.document.starts[0]:a.document.ends[0]] if a.document.sections[:1] == ["title"] else ""
    return Explanation(title, t.relevance, t.gut_skin_relevant, taxonomy.relevance_threshold, a.raw_relevance, sides,
                       tuple(f for f in findings if f.given), tuple(f for f in findings if not f.given))


def checked_pmid(pmid: str) -> str:
    """``pmid`` if it is written as a PMID (digits, at most nine), else a UsageError saying so."""
    if not pmid.isdigit() or len(pmid) > 9:
        raise UsageError(f"{pmid!r} is not a PMID: give the number, e.g. `monitor explain 31234567`")
    return pmid


def explain_stored(pmid: str, stored: StoredPaper | None, taxonomy: Taxonomy) -> tuple[Explanation, str | None]:
    """`monitor explain`: the explanation of a stored paper under ``taxonomy``, with a note when its stored
    tags come from another taxonomy version; a UsageError when ``pmid`` is not stored."""
    if stored is None:
        raise UsageError(f"PMID {pmid} is not stored: `monitor search` lists stored papers, "
                         "`monitor run` fetches new ones")
    note = None
    if stored.tagging is not None and stored.tagging.taxonomy_version != taxonomy.version:
        note = f"(the stored tags come from taxonomy {stored.tagging.taxonomy_version}: run `monitor retag`)"
    return explain(stored.article, taxonomy), note


def _tag_finding(verdict: Verdict, considered: Sequence[Considered], a: Analysis, taxonomy: Taxonomy) -> Finding:
    td = taxonomy.tags[verdict.tag_id]
    if verdict.given:
        summary = f"given: score {verdict.score:.2f} ≥ {td.min_score:g}"
        if verdict.yielded:
            summary += f" (generic words left to {', '.join(verdict.yielded)})"
    else:
        summary = f"not given: {verdict.reason}"
    caused, discounted = _quotes(considered, a.document, counted_if_given=verdict.given)
    return Finding(verdict.tag_id, td.label, td.kind, verdict.given, verdict.score, summary, caused, discounted)


def _side_finding(name: str, considered: Sequence[Considered], score: float, doc: Document,
                  taxonomy: Taxonomy) -> Finding:
    label = "skin disease or skin words" if name == "skin_side" else (
        "gut, gut microbiome, oral diet or nutrition, gut-targeted treatment")
    caused, discounted = _quotes(considered, doc, counted_if_given=True)
    summary = f"score {score:.2f}"
    return Finding(name, label, "relevance", score > 0.0, score, summary, caused, discounted)


def _quotes(considered: Iterable[Considered], doc: Document,
            counted_if_given: bool) -> tuple[tuple[Quote, ...], tuple[Quote, ...]]:
    """Group the mentions by sentence: a sentence with a counted mention is a cause (or, for a tag that
    was not given, a discounted passing mention); the others are discounted with their reason."""
    counted: dict[int | str, list[Considered]] = {}
    dropped: dict[int | str, list[Considered]] = {}
    for c in considered:
        key: int | str = c.sentence if c.sentence >= 0 else f"{c.text}"
        (dropped if c.reason else counted).setdefault(key, []).append(c)
    caused, discounted = [], []
    for key, group in counted.items():
        quote = _quote(group, doc, "")
        if isinstance(key, int) and doc.context[key]:
            discounted.append(Quote(quote.source, quote.text, quote.weight, BACKGROUND))
        elif not counted_if_given:
            discounted.append(Quote(quote.source, quote.text, quote.weight, PASSING))
        else:
            caused.append(quote)
    for key, group in dropped.items():
        if key not in counted:
            discounted.append(_quote(group, doc, group[0].reason))
    caused.sort(key=lambda q: -q.weight)
    return tuple(caused), tuple(discounted)


def _quote(group: Sequence[Considered], doc: Document, note: str) -> Quote:
    first = group[0]
    weight = max(c.weight for c in group)
    if first.sentence < 0:  # "MeSH: <descriptor>" or "publication type: <name>"
        source, _, name = first.text.partition(": ")
        return Quote(source, name, weight, note)
    si = first.sentence
    return Quote(doc.sources[si], _marked(doc, si, [(c.start, c.end) for c in group]), weight, note)


def _marked(doc: Document, si: int, spans: Sequence[tuple[int, int]]) -> str:
    """The sentence with the spans marked (overlapping or nested spans are merged)."""
    start, end = doc.starts[si], doc.ends[si]
    merged: list[list[int]] = []
    for a, b in sorted((max(a, start), min(b, end)) for a, b in spans if b > a):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    out, pos = [], start
    for a, b in merged:
        out += [doc.text[pos:a], MARK_OPEN, doc.text[a:b], MARK_CLOSE]
        pos = b
    out.append(doc.text[pos:end])
    return " ".join("".join(out).split())


def render_text(e: Explanation, *, width: int = 100, causes: int = 3) -> str:
    """Plain text: relevance with both sides, then every tag given, then the tags considered but not given;
    at most ``causes`` causing sentences per finding (the strongest; the rest are counted), every
    discounted one."""
    verdict = "gut–skin relevant" if e.relevant else "not gut–skin relevant"
    lines = [e.title or "(no title)", "",
             f"Relevance {e.relevance:.2f}: {verdict} (threshold {e.threshold:g}; raw score {e.raw_relevance:.2f})"]
    for side in e.sides:
        lines += _finding_lines(side, width, causes)
    for heading, group in (("Tags given", e.given), ("Considered, not given", e.not_given)):
        lines += ["", f"{heading}:"] if group else []
        for f in group:
            lines += _finding_lines(f, width, causes)
    return "\n".join(lines) + "\n"


def _finding_lines(f: Finding, width: int, causes: int) -> list[str]:
    lines = ["", f"  {f.name} ({f.label}) — {f.summary}"]
    for q in f.caused_by[:causes]:
        lines += _wrap(f"+ [{q.source}, {q.weight:g}] {q.text}", width, "    ")
    if len(f.caused_by) > causes:
        lines.append(f"    + … and {len(f.caused_by) - causes} more")
    for q in f.discounted:
        lines += _wrap(f"- [{q.source}; {q.note}] {q.text}", width, "    ")
    return lines


def _wrap(text: str, width: int, indent: str) -> list[str]:
    words, lines, line = text.split(), [], indent
    for word in words:
        if len(line) + len(word) + 1 > width and line.strip():
            lines.append(line.rstrip())
            line = indent + "  "
        line += word + " "
    if line.strip():
        lines.append(line.rstrip())
    return lines
