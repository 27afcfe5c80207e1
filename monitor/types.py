"""Frozen value objects passed between the stages (parse → store → cycle → CLI).

Nothing here does I/O. Parsed records (:class:`Article`, :class:`Deletion`, :class:`RecordError`) come out
of :mod:`monitor.pubmed`; :class:`SearchResult` out of :mod:`monitor.entrez`; :class:`QueryReport` and
:class:`RunReport` out of :mod:`monitor.cycle`. Rows never leave :mod:`monitor.storage`; what it hands out
is at the end of this module.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

# CommentsCorrections RefTypes that change how a reader should treat a paper.
STATUS_REF_TYPES: frozenset[str] = frozenset(
    {
        "RetractionIn",
        "RetractionOf",
        "ErratumIn",
        "ErratumFor",
        "ExpressionOfConcernIn",
        "ExpressionOfConcernFor",
        "UpdateIn",
        "UpdateOf",
        "RepublishedIn",
        "RepublishedFrom",
        "ReprintIn",
        "ReprintOf",
    }
)


@dataclass(frozen=True, slots=True)
class AbstractSection:
    """One ``AbstractText`` element: its ``Label``/``NlmCategory`` (None when unstructured) and its text
    with inline markup (``<i>``, ``<sup>`` …) flattened to plain text."""

    text: str
    label: str | None = None
    category: str | None = None


@dataclass(frozen=True, slots=True)
class Author:
    last_name: str | None = None
    fore_name: str | None = None
    initials: str | None = None
    collective_name: str | None = None
    orcid: str | None = None
    affiliations: tuple[str, ...] = ()

    @property
    def display_name(self) -> str:
        if self.collective_name:
            return self.collective_name
        return " ".join(p for p in (self.fore_name, self.last_name) if p) or (self.initials or "")


@dataclass(frozen=True, slots=True)
class Journal:
    title: str | None = None
    iso_abbreviation: str | None = None
    issn: str | None = None
    volume: str | None = None
    issue: str | None = None
    pages: str | None = None


@dataclass(frozen=True, slots=True)
class MeshQualifier:
    name: str
    ui: str | None = None
    major: bool = False


@dataclass(frozen=True, slots=True)
class MeshHeading:
    descriptor: str
    ui: str | None = None
    major: bool = False
    qualifiers: tuple[MeshQualifier, ...] = ()


@dataclass(frozen=True, slots=True)
class PublicationType:
    name: str
    ui: str | None = None


@dataclass(frozen=True, slots=True)
class Correction:
    """A ``CommentsCorrections`` link whose RefType is in :data:`STATUS_REF_TYPES`."""

    ref_type: str
    ref_source: str | None = None
    pmid: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryDate:
    """``PubmedData/History/PubMedPubDate``: PubStatus (received, accepted, entrez, pubmed, medline …)
    and the date (ISO ``YYYY-MM-DD``; hour/minute dropped)."""

    status: str
    date: dt.date


@dataclass(frozen=True, slots=True)
class Article:
    """One PubMed record (``PubmedArticle``, ``PubmedBookArticle`` or a bare ``MedlineCitation``)."""

    pmid: str
    version: int = 1
    kind: str = "article"  # "article" | "book"
    status: str | None = None  # MedlineCitation@Status (MEDLINE, PubMed-not-MEDLINE, In-Process …)
    title: str = ""
    abstract: tuple[AbstractSection, ...] = ()
    authors: tuple[Author, ...] = ()
    journal: Journal = field(default_factory=Journal)
    pub_date: str | None = None  # as printed: "2019 Mar 5", "1998 Dec-1999 Jan", "2020"
    sort_date: dt.date | None = None  # normalised from pub_date (first day of an unknown month/day)
    doi: str | None = None
    pmcid: str | None = None
    pii: str | None = None
    languages: tuple[str, ...] = ()
    mesh: tuple[MeshHeading, ...] = ()
    keywords: tuple[str, ...] = ()
    publication_types: tuple[PublicationType, ...] = ()
    corrections: tuple[Correction, ...] = ()
    date_revised: dt.date | None = None
    date_completed: dt.date | None = None
    history: tuple[HistoryDate, ...] = ()

    @property
    def abstract_text(self) -> str:
        """The abstract as one string: labelled sections as ``LABEL: text``, joined by blank lines."""
        parts = [f"{s.label}: {s.text}" if s.label else s.text for s in self.abstract]
        return "\n\n".join(p for p in parts if p)

    @property
    def year(self) -> int | None:
        return self.sort_date.year if self.sort_date else None

    @property
    def is_retracted(self) -> bool:
        return any(c.ref_type == "RetractionIn" for c in self.corrections) or any(
            p.name == "Retracted Publication" for p in self.publication_types
        )

    def history_date(self, status: str) -> dt.date | None:
        for h in self.history:
            if h.status == status:
                return h.date
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (dates as ISO strings, tuples as lists). orjson serialises the frozen dataclasses
        directly, ten times faster than ``dataclasses.asdict`` (exports of large collections)."""
        data: dict[str, Any] = orjson.loads(orjson.dumps(self))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Article:
        """Inverse of :meth:`to_dict`."""
        d = dict(data)
        d["abstract"] = tuple(AbstractSection(**s) for s in d.get("abstract", ()))
        d["authors"] = tuple(
            Author(**{**a, "affiliations": tuple(a.get("affiliations", ()))}) for a in d.get("authors", ())
        )
        d["journal"] = Journal(**d.get("journal", {}))
        d["mesh"] = tuple(
            MeshHeading(
                **{**m, "qualifiers": tuple(MeshQualifier(**q) for q in m.get("qualifiers", ()))}
            )
            for m in d.get("mesh", ())
        )
        d["publication_types"] = tuple(PublicationType(**p) for p in d.get("publication_types", ()))
        d["corrections"] = tuple(Correction(**c) for c in d.get("corrections", ()))
        d["history"] = tuple(
            HistoryDate(status=h["status"], date=dt.date.fromisoformat(h["date"]))
            for h in d.get("history", ())
        )
        for key in ("languages", "keywords"):
            d[key] = tuple(d.get(key, ()))
        for key in ("sort_date", "date_revised", "date_completed"):
            if d.get(key):
                d[key] = dt.date.fromisoformat(d[key])
        return cls(**d)


class TagInput(NamedTuple):
    """The part of a paper the tagger reads, as plain JSON values (``paper_tagging.tag_input`` stores it).

    Decoding this from JSON costs a fraction of building an :class:`Article`, which is what keeps
    ``monitor retag`` fast. Items are sequences so the decoded JSON arrays are used as they come:
    ``abstract`` holds ``(text, label, category)``, ``mesh`` holds
    ``(descriptor, ui, major, ((qualifier, ui, major), ...))``, ``publication_types`` holds ``(name, ui)``.
    """

    title: str
    abstract: Sequence[Sequence[Any]]
    keywords: Sequence[str]
    mesh: Sequence[Sequence[Any]]
    publication_types: Sequence[Sequence[Any]]

    @classmethod
    def of(cls, article: Article) -> TagInput:
        return cls(
            article.title,
            tuple((s.text, s.label, s.category) for s in article.abstract),
            article.keywords,
            tuple((m.descriptor, m.ui, m.major, tuple((q.name, q.ui, q.major) for q in m.qualifiers))
                  for m in article.mesh),
            tuple((p.name, p.ui) for p in article.publication_types),
        )


@dataclass(frozen=True, slots=True)
class Deletion:
    """``DeleteCitation``: NLM withdrew this PMID."""

    pmid: str


@dataclass(frozen=True, slots=True)
class RecordError:
    """A record the parser could not read; the rest of the batch is still usable."""

    pmid: str | None
    message: str


ParsedItem = Article | Deletion | RecordError


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One ESearch response, checked: ``errors``/``warnings`` are NCBI's ErrorList/WarningList entries as
    ``(element name, text)`` pairs."""

    count: int
    ids: tuple[str, ...]
    retstart: int = 0
    webenv: str | None = None
    query_key: str | None = None
    query_translation: str | None = None
    errors: tuple[tuple[str, str], ...] = ()
    warnings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """What storing one batch did (counts by PMID)."""

    new: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class QueryReport:
    """One query's part of a run."""

    name: str
    status: str  # "ok" | "degraded" | "failed"
    window: tuple[dt.date, dt.date] | None = None
    found: int = 0
    new: int = 0
    updated: int = 0
    deleted: int = 0
    skipped: int = 0  # malformed records reported and skipped
    missing: int = 0  # records EFetch did not return though asked twice (reported in ``message``)
    message: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class RunReport:
    run_id: int
    started_at: dt.datetime
    finished_at: dt.datetime
    queries: tuple[QueryReport, ...]

    @property
    def ok(self) -> bool:
        return all(q.status == "ok" for q in self.queries)

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        return "failed" if all(q.status != "ok" for q in self.queries) else "partial"


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A retraction, erratum, expression of concern, update or withdrawal that appeared on a stored paper at
    ``at``: the one shape feeds, the digest and the web pages read. ``notice_pmid`` is the PMID of the notice
    itself when PubMed gives it; ``id`` is the event's row (what a digest records as delivered); ``title``
    and ``doi`` are the paper's, for readers who see the change without the paper."""

    pmid: str
    kind: str  # retraction | erratum | expression_of_concern | update | deleted
    at: dt.datetime
    notice_pmid: str | None = None
    id: int = 0
    title: str = ""
    doi: str | None = None


@dataclass(frozen=True, slots=True)
class TagEvidence:
    """Why one tag (or one side of the gut–skin relevance) was given.

    ``kind`` is ``condition`` | ``intervention`` | ``design`` | ``relevance`` (for relevance, ``tag`` is
    ``skin_side`` or ``gut_side``). ``source`` is ``mesh`` | ``title`` | ``abstract:<SECTION>`` (the
    NlmCategory, or the role a sentence of an unstructured abstract plays) | ``keyword`` |
    ``publication_type``. ``text`` is the matched text as written; ``weight`` what the mention earned.
    """

    tag: str
    kind: str
    source: str
    text: str
    weight: float


@dataclass(frozen=True, slots=True)
class Tagging:
    """The tags of one paper (ids sorted) with their evidence and the taxonomy version that made them.

    Field order matters to :mod:`monitor.storage.tags`: the tags and ``gut_skin_relevant`` come before
    ``relevance`` (it compares that prefix of stored JSON) and ``taxonomy_version`` comes last (it is
    stored in a column of its own, cut from the JSON)."""

    conditions: tuple[str, ...] = ()
    interventions: tuple[str, ...] = ()
    designs: tuple[str, ...] = ()
    gut_skin_relevant: bool = False
    relevance: float = 0.0
    evidence: tuple[TagEvidence, ...] = ()
    taxonomy_version: str = ""

    @property
    def tags(self) -> tuple[str, ...]:
        """Every tag id (conditions, interventions, designs), sorted."""
        return tuple(sorted((*self.conditions, *self.interventions, *self.designs)))

    def evidence_for(self, tag: str) -> tuple[TagEvidence, ...]:
        return tuple(e for e in self.evidence if e.tag == tag)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples as lists, evidence as a list of dicts)."""
        data: dict[str, Any] = orjson.loads(orjson.dumps(self))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Tagging:
        """Inverse of :meth:`to_dict`."""
        return cls(
            conditions=tuple(data.get("conditions", ())),
            interventions=tuple(data.get("interventions", ())),
            designs=tuple(data.get("designs", ())),
            gut_skin_relevant=bool(data.get("gut_skin_relevant", False)),
            relevance=float(data.get("relevance", 0.0)),
            evidence=tuple(TagEvidence(**e) for e in data.get("evidence", ())),
            taxonomy_version=str(data.get("taxonomy_version", "")),
        )


# ------------------------------------------------------------------ search queries

@dataclass(frozen=True, slots=True)
class TextTerm:
    """A word, a phrase (several words in order) or a prefix (``prefix``: the last word may continue)
    that a paper must contain, optionally only in one indexed column (title, abstract, keywords, mesh,
    authors). ``text`` is what the user wrote; the index tokenizes it as it tokenized the papers, so
    ``GLP-1`` is the phrase "glp 1"."""

    text: str
    prefix: bool = False
    column: str | None = None

    def fts5(self) -> str:
        """As an SQLite FTS5 query: always a quoted string, so nothing the user typed is FTS5 syntax."""
        quoted = '"' + self.text.replace('"', '""') + '"' + ("*" if self.prefix else "")
        return f"{self.column} : {quoted}" if self.column else quoted


@dataclass(frozen=True, slots=True)
class TextAny:
    """At least one of ``parts``."""

    parts: tuple[TextNode, ...]

    def fts5(self) -> str:
        return " OR ".join(_fts5_group(p) for p in self.parts)


@dataclass(frozen=True, slots=True)
class TextAll:
    """Every one of ``parts`` (at least one) and none of ``excluded``."""

    parts: tuple[TextNode, ...]
    excluded: tuple[TextNode, ...] = ()

    def fts5(self) -> str:
        query = " AND ".join(_fts5_group(p) for p in self.parts)
        if self.excluded:
            # FTS5's NOT is binary and binds tightest: bracket both sides.
            query = f"({query}) NOT ({' OR '.join(_fts5_group(e) for e in self.excluded)})"
        return query


TextNode = TextTerm | TextAny | TextAll


def _fts5_group(node: TextNode) -> str:
    return node.fts5() if isinstance(node, TextTerm) else f"({node.fts5()})"


# ------------------------------------------------------------------ what storage hands out

Tagger = Callable[[TagInput], Tagging]
"""What tags one paper: :func:`monitor.tagging.tag` bound to a taxonomy."""


@dataclass(frozen=True, slots=True)
class StoredMeta:
    """What :func:`monitor.storage.papers.decide` needs to know about the stored copy of a paper."""

    version: int
    date_revised: dt.date | None
    content_hash: str
    deleted: bool


@dataclass(frozen=True, slots=True)
class QueryState:
    """A query's watermark: its term and window at its last successful run."""

    name: str
    term: str
    last_success_at: dt.datetime
    window_start: dt.date
    window_end: dt.date


@dataclass(frozen=True, slots=True)
class StoredPaper:
    """A stored paper with what the monitor knows about it."""

    article: Article
    deleted: bool
    first_seen_at: dt.datetime
    updated_at: dt.datetime
    queries: tuple[tuple[str, dt.datetime], ...]  # (query name, first found at)
    tagging: Tagging | None = None  # None until the paper has been tagged


@dataclass(frozen=True, slots=True)
class FeedRow:
    """What the feeds plan with: a relevant paper's PMID, first-found time, a fingerprint of its stored
    record and tagging (changes when either does), its condition and intervention tags, its queries, and
    its stored tagging JSON (decoded only when an item is rendered: the items show designs and evidence)."""

    pmid: str
    first_seen_at: dt.datetime
    fingerprint: str
    conditions: tuple[str, ...]
    interventions: tuple[str, ...]
    queries: tuple[str, ...]
    tagging_json: str = field(default="{}", compare=False)


@dataclass(frozen=True, slots=True)
class TagChanges:
    """What (re)tagging changed: papers examined and changed, and per tag id how many papers gained or
    lost it (``gut_skin_relevant`` counts as a tag here)."""

    examined: int = 0
    changed: int = 0  # papers whose tags (or relevance flag) changed
    rewritten: int = 0  # papers whose stored tagging changed at all (evidence, score, taxonomy version)
    relabelled: int = 0  # of those, papers whose tagging only changed its taxonomy version
    added: tuple[tuple[str, int], ...] = ()
    removed: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One entry of the run log with its per-query outcomes."""

    id: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    status: str
    queries: tuple[QueryReport, ...]


@dataclass(frozen=True, slots=True)
class DigestRecord:
    """One row of the digest log."""

    id: int
    created_at: dt.datetime
    period_start: dt.datetime
    period_end: dt.datetime
    status: str  # pending | sent | failed
    subject: str
    recipients: tuple[str, ...]
    message_id: str | None
    finished_at: dt.datetime | None
    error: str | None
    papers: int  # papers recorded with it (listed or counted)
    message: bytes | None = field(default=None, repr=False)  # the email as sent (None before migration 0007)


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """Who holds (or last held, if ``expires_at`` has passed) a lease."""

    name: str
    holder: str
    host: str
    pid: int
    purpose: str
    acquired_at: dt.datetime
    heartbeat_at: dt.datetime
    expires_at: dt.datetime
    released_at: dt.datetime | None = None  # set when the holder gave it up (then expires_at is that time)


@dataclass(frozen=True, slots=True)
class DocumentMeta:
    """A published document kept in the database (a feed, an archive page, the OPML list, the index page):
    its path below the feed folder and its validators. ``etag``: SHA-256 of the body (hex); ``changed_at``:
    when its content last changed; ``mtime_ns``: the modification time of the file it was published from."""

    path: str
    etag: str
    size: int
    changed_at: dt.datetime
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """A published document and its bytes."""

    meta: DocumentMeta
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class JobState:
    """A scheduled job's last fire and how it ended."""

    job: str
    last_fire_at: dt.datetime
    last_finished_at: dt.datetime | None
    outcome: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class PaperFilter:
    """Which stored papers a search or an export keeps. Tag lists mean "any of these"; different fields
    must all hold. ``date_field``: ``published`` compares the publication date (``sort_date``: an unknown
    month or day counts as the first), ``found`` the UTC day the monitor first stored the paper."""

    conditions: tuple[str, ...] = ()
    interventions: tuple[str, ...] = ()
    designs: tuple[str, ...] = ()
    queries: tuple[str, ...] = ()
    since: dt.date | None = None
    until: dt.date | None = None
    date_field: str = "published"
    relevant_only: bool = False
    exclude_retracted: bool = False
    include_deleted: bool = False


SNIPPET_OPEN, SNIPPET_CLOSE = "\x02", "\x03"  # never in PubMed text; formatters turn them into markup


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result: the paper, its score and a snippet with the matched words marked."""

    paper: StoredPaper
    score: float | None  # lower is better: bm25 on SQLite, minus ts_rank on PostgreSQL; None: no text
    snippet: str | None  # matched words between SNIPPET_OPEN and SNIPPET_CLOSE


# ------------------------------------------------------------------ what the web app browses


@dataclass(frozen=True, slots=True)
class PaperDetail:
    """One paper as its page shows it: the stored paper and every event of its history, oldest first
    (``revised`` for a new version, ``retraction``, ``erratum``, ``expression_of_concern``, ``update``,
    ``deleted`` for a withdrawal)."""

    paper: StoredPaper
    events: tuple[StatusChange, ...]


@dataclass(frozen=True, slots=True)
class Facets:
    """How many papers of one result set carry each condition, intervention and design tag (tags with
    none left out), and how many papers the set holds."""

    total: int
    conditions: Mapping[str, int]
    interventions: Mapping[str, int]
    designs: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class MapCell:
    """Papers that study one condition with one intervention, and how many of them have each design."""

    condition: str
    intervention: str
    papers: int
    designs: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class EvidenceMap:
    """Conditions × interventions over one set of papers: the non-empty cells, and the papers per
    condition and per intervention (a paper with several tags counts once in each)."""

    papers: int
    conditions: Mapping[str, int]
    interventions: Mapping[str, int]
    cells: tuple[MapCell, ...]


@dataclass(frozen=True, slots=True)
class TrendCounts:
    """Papers per month (``YYYY-MM``) for each tag of one kind, and for the whole set (``total``, each
    paper once); months without papers are absent."""

    by_tag: Mapping[str, Mapping[str, int]]
    total: Mapping[str, int]


# ------------------------------------------------------------------ `monitor status`


@dataclass(frozen=True, slots=True)
class QueryStatus:
    """A configured query and its watermark (None: never run); ``term_changed``: the next run backfills."""

    name: str
    since: dt.date
    state: QueryState | None
    term_changed: bool


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A scheduled job: its schedule in words (None: off), its last fire and the next ones. For an interval
    job the next fire is known only once it has fired (``due_now``: it is overdue)."""

    name: str
    schedule: str | None
    state: JobState | None
    every: bool = False
    next_fires: tuple[dt.datetime, ...] = ()
    due_now: bool = False


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Everything `monitor status` (and the web app's status page) shows."""

    database: str
    papers: int
    papers_with_withdrawn: int
    taxonomy_versions: tuple[tuple[str | None, int], ...]  # most papers first
    queries: tuple[QueryStatus, ...]
    runs: tuple[RunSummary, ...]
    timezone: str
    jobs: tuple[JobStatus, ...]
    leases: tuple[tuple[str, LeaseRow | None], ...]
    real_now: dt.datetime  # leases live in real time, whatever MONITOR_NOW says
