"""The weekly digest email: what is due, how it reads, how it is sent, and that it is sent once.

Owns the digest's content rules (:func:`build` is pure: papers, events and runs in, a :class:`Digest` out),
its rendering (Jinja2 templates for the HTML and plain-text parts of one multipart/alternative message),
SMTP delivery (:class:`SmtpMailer`) and the send-once bookkeeping (:func:`send_due`, through the digest log
in :mod:`monitor.storage.digests`). It does not know about feeds or the network to NCBI.

Delivery rule: a paper belongs to the first digest that is *sent* after it was found. A digest is logged with
its papers before it is sent; only a ``sent`` digest delivers them, so a failed or interrupted send leaves
them due and the next digest carries the backlog. (A crash after the SMTP server accepted the message but
before the log says ``sent`` would send those papers again: at least once, never lost.)
"""

from __future__ import annotations

import collections
import datetime as dt
import email.policy
import hashlib
import re
import smtplib
import ssl
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import jinja2

from .clock import Clock
from .config import Config, DigestConfig
from .errors import ConfigError, MailError
from .formats import PUBMED, printable, pubmed_url, short_authors
from .interfaces import DigestStore
from .types import Article, DigestRecord, QueryReport, RunSummary, StoredPaper
from .types import StatusChange as StoredChange

if TYPE_CHECKING:
    from .tagging import Taxonomy

AUTHORS_SHOWN = 3  # a digest entry names this many authors, then "et al."
# Status changes worth an email: the reader may already cite the paper.
STATUS_KINDS = ("retraction", "expression_of_concern", "erratum", "deleted")
STATUS_LABELS = {"retraction": "Retracted", "expression_of_concern": "Expression of concern",
                 "erratum": "Erratum published", "deleted": "Withdrawn from PubMed"}
# Strongest evidence first: the first badge is the one a reader scans for.
DESIGN_BADGES = {
    "meta_analysis": "Meta-analysis", "systematic_review": "Systematic review", "rct": "RCT",
    "clinical_trial": "Clinical trial", "mendelian_randomization": "Mendelian randomization",
    "observational": "Observational", "review": "Review", "case_report": "Case report", "animal": "Animal",
    "in_vitro": "In vitro",
}
OTHER_CONDITION = "Other or unspecified skin condition"
OTHER_INTERVENTION = "No specific intervention (microbiome, gut pathology, mechanisms)"
PUBMED_LINK_PMIDS = 20  # PMIDs per PubMed search link: a link stays under 300 characters
PUBMED_LINKS_MAX = 3  # links per list; past that the digest names the `monitor search` that lists them
TEXT_WIDTH = 72  # the text part's wrapping width (lines never pass 78 columns, a lone long URL aside)
SUMMARY_CHARS = 600
TEMPLATES = Path(__file__).resolve().parent / "templates"


# ------------------------------------------------------------------ values


@dataclass(frozen=True, slots=True)
class Vocabulary:
    """Tag labels and their order (the taxonomy's file order), so the digest groups predictably."""

    labels: dict[str, str]
    conditions: tuple[str, ...]
    interventions: tuple[str, ...]

    @classmethod
    def from_taxonomy(cls, taxonomy: Taxonomy) -> Vocabulary:
        return cls(labels={t.id: t.label for t in taxonomy.tags.values()},
                   conditions=tuple(taxonomy.ids("condition")), interventions=tuple(taxonomy.ids("intervention")))

    def label(self, tag_id: str) -> str:
        return self.labels.get(tag_id, tag_id.replace("_", " ").capitalize())


@dataclass(frozen=True, slots=True)
class DigestPaper:
    pmid: str
    title: str
    url: str
    authors: str
    journal: str
    year: int | None
    badges: tuple[str, ...]  # study designs, strongest first
    conditions: tuple[str, ...]  # condition labels
    interventions: tuple[str, ...]  # intervention and exposure labels
    summary: str  # the abstract's conclusion (or its concluding sentences)
    relevance: float
    retracted: bool

    @property
    def citation(self) -> str:
        """"Smith J, Lee KH, Park S, et al. J Invest Dermatol. 2024": authors, journal, year as sentences
        (a part that already ends with a full stop gets no second one)."""
        return sentences([self.authors, self.journal, str(self.year) if self.year else ""])


@dataclass(frozen=True, slots=True)
class Subgroup:
    label: str
    papers: tuple[DigestPaper, ...]
    specific: bool = True  # an intervention, not "no specific intervention"


@dataclass(frozen=True, slots=True)
class Group:
    label: str
    subgroups: tuple[Subgroup, ...]
    specific: bool = True  # a condition, not "other or unspecified"

    @property
    def count(self) -> int:
        return sum(len(s.papers) for s in self.subgroups)


@dataclass(frozen=True, slots=True)
class StatusChange:
    pmid: str
    title: str
    url: str
    label: str
    at: dt.date
    notice_url: str | None  # the retraction/erratum notice on PubMed, when NCBI names it


@dataclass(frozen=True, slots=True)
class QueryCoverage:
    name: str
    runs: int
    ok: int
    degraded: int
    failed: int
    found: int
    new: int
    problem: str | None  # the latest failure or degradation message

    @property
    def status(self) -> str:
        if not self.runs:
            return "not run"
        if self.degraded:
            return "DEGRADED"
        return "FAILED" if self.failed else "ok"


@dataclass(frozen=True, slots=True)
class Digest:
    """Everything one digest says, ready to render (pure data)."""

    period: tuple[dt.datetime, dt.datetime]
    created_at: dt.datetime
    groups: tuple[Group, ...]
    relevant: tuple[str, ...]  # pmids listed
    overflow: tuple[str, ...]  # relevant pmids over max_papers: counted and linked, not listed
    not_relevant: tuple[str, ...]
    condition_counts: tuple[tuple[str, int], ...]
    intervention_counts: tuple[tuple[str, int], ...]
    status_changes: tuple[StatusChange, ...]
    event_ids: tuple[int, ...]
    coverage: tuple[QueryCoverage, ...]
    runs: int
    runs_failed: int
    preview: bool = False

    @property
    def new_count(self) -> int:
        return len(self.relevant) + len(self.overflow)

    @property
    def sections(self) -> dict[str, str]:
        """pmid → section, as the digest log records it."""
        out = {p: "relevant" for p in self.relevant}
        out.update((p, "overflow") for p in self.overflow)
        out.update((p, "not_relevant") for p in self.not_relevant)
        return out

    @property
    def overflow_links(self) -> tuple[str, ...]:
        return pubmed_links(self.overflow)

    @property
    def not_relevant_links(self) -> tuple[str, ...]:
        return pubmed_links(self.not_relevant)

    @property
    def overflow_unlinked(self) -> int:
        """Overflow papers past the PubMed links (see :data:`PUBMED_LINKS_MAX`)."""
        return max(0, len(self.overflow) - PUBMED_LINK_PMIDS * PUBMED_LINKS_MAX)

    @property
    def not_relevant_unlinked(self) -> int:
        return max(0, len(self.not_relevant) - PUBMED_LINK_PMIDS * PUBMED_LINKS_MAX)

    @property
    def search_command(self) -> str:
        """The `monitor search` that lists every paper first found in this digest's period."""
        start, end = (d.date() for d in self.period)
        return f"monitor search --date found --since {start:%Y-%m-%d} --until {end:%Y-%m-%d} --limit 0"


@dataclass(frozen=True, slots=True)
class DigestReport:
    """What :func:`send_due` did. ``status``: sent | resumed (an interrupted digest sent again as it was
    built; ``digest`` is then None) | not_due."""

    status: str
    digest: Digest | None = None
    digest_id: int | None = None
    subject: str | None = None
    recipients: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()  # recipients the server refused (the others got it)
    last_sent: dt.datetime | None = None
    next_due: dt.datetime | None = None
    message: EmailMessage | None = field(default=None, repr=False)

    def log_fields(self) -> dict[str, Any]:
        """The fields of the daemon's log line for this outcome."""
        if self.status == "not_due":
            return {"last_sent": self.last_sent, "next_due": self.next_due}
        return {"digest_id": self.digest_id, "recipients": len(self.recipients), "refused": len(self.refused) or None,
                "papers": self.digest.new_count if self.digest else None}


# ------------------------------------------------------------------ content (pure)


def build(papers: Iterable[StoredPaper], events: Iterable[StoredChange], runs: Iterable[RunSummary], *,
          vocabulary: Vocabulary, queries: Sequence[str], period: tuple[dt.datetime, dt.datetime],
          now: dt.datetime, max_papers: int, preview: bool = False, min_relevance: float = 0.5) -> Digest:
    """The digest of these papers (first found in ``period``), status events and runs; a paper is listed when
    its relevance score reaches ``min_relevance`` (``[tagging] min_relevance``)."""
    relevant: list[StoredPaper] = []
    not_relevant: list[str] = []
    for p in papers:
        if p.tagging is not None and p.tagging.relevance >= min_relevance:
            relevant.append(p)
        else:
            not_relevant.append(p.article.pmid)
    relevant.sort(key=lambda p: (-(p.tagging.relevance if p.tagging else 0.0), int(p.article.pmid)))
    listed, over = relevant[:max_papers], relevant[max_papers:]
    conditions: collections.Counter[str] = collections.Counter()
    interventions: collections.Counter[str] = collections.Counter()
    for p in relevant:
        assert p.tagging is not None
        conditions.update(p.tagging.conditions)
        interventions.update(p.tagging.interventions)
    event_list, run_list = list(events), list(runs)
    return Digest(
        period=period, created_at=now, groups=_group(listed, vocabulary),
        relevant=tuple(p.article.pmid for p in listed), overflow=tuple(p.article.pmid for p in over),
        not_relevant=tuple(sorted(not_relevant, key=int)),
        condition_counts=_ordered_counts(conditions, vocabulary.conditions, vocabulary),
        intervention_counts=_ordered_counts(interventions, vocabulary.interventions, vocabulary),
        status_changes=tuple(_status_change(e) for e in event_list), event_ids=tuple(e.id for e in event_list),
        coverage=_coverage(run_list, queries), runs=len(run_list),
        runs_failed=sum(1 for r in run_list if r.status != "ok"), preview=preview,
    )


def _ordered_counts(counts: collections.Counter[str], order: Sequence[str],
                    vocabulary: Vocabulary) -> tuple[tuple[str, int], ...]:
    """Most papers first; ties in taxonomy order."""
    rank = {t: i for i, t in enumerate(order)}
    return tuple((vocabulary.label(t), n) for t, n in
                 sorted(counts.items(), key=lambda kv: (-kv[1], rank.get(kv[0], len(rank)), kv[0])))


def _primary(tags: Sequence[str], weights: dict[str, float], order: Sequence[str]) -> str | None:
    """The tag with the most evidence weight (ties: taxonomy order): each paper is listed once, under it."""
    if not tags:
        return None
    rank = {t: i for i, t in enumerate(order)}
    return min(tags, key=lambda t: (-weights.get(t, 0.0), rank.get(t, len(rank)), t))


def _group(papers: list[StoredPaper], vocabulary: Vocabulary) -> tuple[Group, ...]:
    buckets: dict[str | None, dict[str | None, list[DigestPaper]]] = {}
    for p in papers:
        tagging = p.tagging
        assert tagging is not None
        weights: dict[str, float] = collections.defaultdict(float)
        for e in tagging.evidence:
            weights[e.tag] += e.weight
        condition = _primary(tagging.conditions, weights, vocabulary.conditions)
        intervention = _primary(tagging.interventions, weights, vocabulary.interventions)
        buckets.setdefault(condition, {}).setdefault(intervention, []).append(_paper(p, vocabulary))

    def order(ids: Iterable[str | None], vocab_order: Sequence[str]) -> list[str | None]:
        rank = {t: i for i, t in enumerate(vocab_order)}
        return sorted(ids, key=lambda t: (t is None, rank.get(t or "", len(rank)), t or ""))

    groups = []
    for condition in order(buckets, vocabulary.conditions):
        subs = buckets[condition]
        groups.append(Group(
            label=vocabulary.label(condition) if condition else OTHER_CONDITION,
            subgroups=tuple(Subgroup(label=vocabulary.label(i) if i else OTHER_INTERVENTION, papers=tuple(subs[i]),
                                     specific=i is not None)
                            for i in order(subs, vocabulary.interventions)),
            specific=condition is not None,
        ))
    return tuple(groups)


def _paper(p: StoredPaper, vocabulary: Vocabulary) -> DigestPaper:
    a, t = p.article, p.tagging
    assert t is not None
    designs = sorted(t.designs, key=lambda d: list(DESIGN_BADGES).index(d) if d in DESIGN_BADGES else 99)
    return DigestPaper(
        pmid=a.pmid, title=one_line(a.title) or "(no title)", url=pubmed_url(a.pmid),
        authors=short_authors(author_names(a), AUTHORS_SHOWN),
        journal=one_line(a.journal.iso_abbreviation or a.journal.title or ""), year=a.year,
        badges=tuple(DESIGN_BADGES.get(d, vocabulary.label(d)) for d in designs),
        conditions=tuple(vocabulary.label(x) for x in t.conditions),
        interventions=tuple(vocabulary.label(x) for x in t.interventions),
        summary=summary(a), relevance=t.relevance, retracted=a.is_retracted,
    )


def _status_change(e: StoredChange) -> StatusChange:
    notice = e.notice_pmid
    return StatusChange(pmid=e.pmid, title=one_line(e.title) or "(no title)", url=pubmed_url(e.pmid),
                        label=STATUS_LABELS.get(e.kind, e.kind.replace("_", " ").capitalize()), at=e.at.date(),
                        notice_url=pubmed_url(str(notice)) if notice and str(notice).isdigit() else None)


def _coverage(runs: list[RunSummary], queries: Sequence[str]) -> tuple[QueryCoverage, ...]:
    per: dict[str, list[QueryReport]] = {q: [] for q in queries}
    for r in runs:
        for q in r.queries:
            per.setdefault(q.name, []).append(q)
    out = []
    for name, reports in per.items():
        problems = [q.message for q in reports if q.status != "ok" and q.message]
        out.append(QueryCoverage(
            name=name, runs=len(reports), ok=sum(q.status == "ok" for q in reports),
            degraded=sum(q.status == "degraded" for q in reports), failed=sum(q.status == "failed" for q in reports),
            found=max((q.found for q in reports), default=0), new=sum(q.new for q in reports),
            problem=one_line(problems[-1]) if problems else None,
        ))
    return tuple(out)


# ------------------------------------------------------------------ text helpers (pure)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])")
# "Conclusion: …", or "Conclusion" as a heading on a line of its own.
_INLINE_CONCLUSION = re.compile(r"(?:^|\n|\.\s)\s*(?:conclusions?|interpretation)(?:\s*:\s*|[ \t]*\n\s*)",
                                re.IGNORECASE)
_CONCLUDING = re.compile(r"^(?:in conclusion|in summary|to conclude|taken together|collectively|overall|"
                         r"(?:these|our) (?:findings|results|data)|we conclude|this study (?:shows|suggests|"
                         r"demonstrates))\b", re.IGNORECASE)
# Sentences that close an abstract without concluding anything.
_BOILERPLATE = re.compile(
    r"^(?:\(?(?:c|©)\)?\s*(?:\d{4}|copyright)|copyright\b|©|trial registration|clinical ?trials?\.gov|"
    r"(?:clinical )?trial (?:registration|number)|registration number|prospero|level of evidence|funding|"
    r"this article is protected|all rights reserved|published by|(?:nct|isrctn|chictr|drks|actrn)\s*[-:]?\s*\d)",
    re.IGNORECASE)
_FINISHED = re.compile(r"[.!?…][\"'’”)\]]*$")
CONCLUDING_MIN_CHARS = 100  # a last sentence shorter than this brings the one before it
# Inline headings of an abstract flattened into one section ("OBJECTIVE: …"): not part of a sentence.
_INLINE_HEADING = re.compile(r"(?:(?<=^)|(?<=\s))(?:background|introduction|objectives?|aims?|purpose|context|"
                             r"importance|methods?|design|setting|results?|findings)\s*:\s+", re.IGNORECASE)


def one_line(text: str | None) -> str:
    """Whitespace (line breaks included) collapsed to single spaces and control characters removed: nothing
    we print can break a line structure, in a header or in the text part, or reach a terminal as an escape."""
    return " ".join(printable(text or "").split())


def pubmed_links(pmids: Sequence[str]) -> tuple[str, ...]:
    """PubMed searches listing these PMIDs (PubMed takes PMIDs separated by spaces), at most
    :data:`PUBMED_LINK_PMIDS` a link (so a link stays short enough to read and to copy from a phone) and at
    most :data:`PUBMED_LINKS_MAX` links: a list of thousands (after a backfill) is not linked PMID by PMID;
    the digest names the local search that lists them instead."""
    limit = PUBMED_LINK_PMIDS * PUBMED_LINKS_MAX
    return tuple(PUBMED + "?" + urllib.parse.urlencode({"term": " ".join(pmids[i:i + PUBMED_LINK_PMIDS])})
                 for i in range(0, min(len(pmids), limit), PUBMED_LINK_PMIDS))


def sentences(parts: Iterable[str]) -> str:
    """Non-empty parts joined as sentences ("Smith J, et al. J Invest Dermatol. 2024"): each part's own
    final full stop is the separator, never doubled ("et al.." is what joining with ". " gives)."""
    return ". ".join(p.rstrip(". ") for p in parts if p.rstrip(". "))


def author_names(article: Article) -> Iterator[str]:
    """Surname and initials (collective names as written), one line each, lazily."""
    for a in article.authors:
        if a.collective_name:
            yield one_line(a.collective_name)
        elif a.last_name:
            yield one_line(f"{a.last_name} {a.initials or ''}")


def summary(article: Article, limit: int = SUMMARY_CHARS) -> str:
    """The abstract's conclusion: a CONCLUSIONS section, an inline ``Conclusion:`` heading, a sentence that
    opens a conclusion (``In conclusion, …``); failing those (an unstructured abstract), its concluding
    sentences: the last one, with the one before when the last is short, leaving out trailing trial
    registrations, copyright lines and the like."""
    sections = article.abstract
    concl = [s.text for s in sections if (s.category or "").upper() == "CONCLUSIONS"
             or (s.label or "").upper().startswith(("CONCLUSION", "INTERPRETATION"))]
    if concl:
        return _clip(one_line(" ".join(concl)), limit)
    whole = "\n".join(s.text for s in sections)
    inline = list(_INLINE_CONCLUSION.finditer(whole))
    if inline:
        return _clip(one_line(whole[inline[-1].end():]), limit)
    found = [s for s in _SENTENCE_END.split(_INLINE_HEADING.sub("", one_line(whole))) if s]
    for i, sentence in enumerate(found):
        if i and _CONCLUDING.match(sentence):
            return _clip(" ".join(found[i:i + 2]), limit)
    while found and (_BOILERPLATE.match(found[-1]) or not _FINISHED.search(found[-1])):
        found.pop()  # closing boilerplate, or a last sentence cut off mid-way (PubMed truncates some abstracts)
    if not found:
        return ""
    last = found[-1:] if len(found[-1]) >= CONCLUDING_MIN_CHARS else found[-2:]
    return _clip(" ".join(last), limit)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + " …"


# ------------------------------------------------------------------ rendering


def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters["wrap"] = _wrap
    env.filters["fit"] = _fit
    env.filters["day"] = lambda d: f"{d:%-d %b %Y}"
    env.filters["plural"] = lambda n, word, many=None: f"{n} {word if n == 1 else (many or word + 's')}"
    return env


_URL = re.compile(r"^(?:https?|ftp)://\S+$")
LINE_MAX = 78  # no line of the text part is longer (a URL alone on its line aside)


def _fit(text: str, indent: str = "") -> str:
    """One line as it is (spacing kept, e.g. a table row) if it fits in :data:`LINE_MAX` columns, else wrapped."""
    line = indent + text
    return line if len(line) <= LINE_MAX else _wrap(text, indent=indent)


def _wrap(text: str, width: int = TEXT_WIDTH, indent: str = "") -> str:
    """Words filled into lines of ``width`` columns after ``indent``. A URL longer than a line gets a line
    of its own (whole, so mail clients can link it); any other word longer than a line is cut, so no line
    but a lone URL's passes the width."""
    lines: list[str] = []
    line = ""
    room = max(width - len(indent), 20)
    for word in text.split():
        while len(word) > room and not _URL.match(word):
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:room])
            word = word[room:]
        if line and len(line) + 1 + len(word) > room:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return "\n".join(indent + w for w in lines) or indent.rstrip()


def render_text(digest: Digest) -> str:
    return _environment(False).get_template("digest.txt.j2").render(d=digest)


def render_html(digest: Digest) -> str:
    return _environment(True).get_template("digest.html.j2").render(d=digest)


def subject(digest: Digest, prefix: str) -> str:
    start, end = (d.date() for d in digest.period)
    n = digest.new_count
    what = "no new papers" if n == 0 else f"{n} new paper{'s' if n != 1 else ''}"
    if digest.status_changes:
        k = len(digest.status_changes)
        what += f", {k} status change{'s' if k != 1 else ''}"
    preview = " (preview)" if digest.preview else ""
    return one_line(f"{prefix} {what}, {start:%-d %b %Y} to {end:%-d %b %Y}{preview}")


_HEADER_POLICY = email.policy.SMTP.clone(max_line_length=998)


def message(digest: Digest, cfg: DigestConfig) -> EmailMessage:
    """The email: plain text and HTML as multipart/alternative (text first, so clients prefer HTML).

    Header values are built only from validated config and our own one-line strings; the email package
    refuses CR/LF in a header value anyway, so no paper title can add a header."""
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["Subject"] = subject(digest, cfg.subject_prefix)
    msg["From"] = cfg.sender
    msg["To"] = ", ".join(cfg.recipients)
    msg["Date"] = format_datetime(digest.created_at)
    msg["Message-ID"] = message_id(digest, cfg.sender)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(render_text(digest), subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(render_html(digest), subtype="html", charset="utf-8", cte="quoted-printable")
    # The bodies are encoded above (quoted-printable, 76-column lines). For the headers, the email package's
    # 78-column folding puts a subject that starts with "[" on a continuation line, which its own parser then
    # reads back with a leading space; RFC 5322 allows 998 columns, so headers are not folded.
    for part in msg.walk():
        part.policy = _HEADER_POLICY
    return msg


def message_id(digest: Digest, sender: str) -> str:
    """Deterministic: the same digest content at the same time gets the same id."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    content = ",".join([f"{k}:{v}" for k, v in sorted(digest.sections.items())]
                       + [f"event:{e}" for e in digest.event_ids])
    digest_hash = hashlib.sha256(content.encode()).hexdigest()[:16]
    return f"<digest.{digest.created_at:%Y%m%dT%H%M%S}.{digest_hash}@{domain}>"


# ------------------------------------------------------------------ sending


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> tuple[str, ...]:
        """Deliver; return the recipients the server refused (the others got it). Raises MailError."""
        ...


class SmtpMailer:
    """SMTP with STARTTLS, implicit TLS or neither; login when ``smtp_user`` is set."""

    def __init__(self, cfg: DigestConfig, ssl_context: ssl.SSLContext | None = None) -> None:
        self.cfg = cfg
        self.ssl_context = ssl_context

    def check(self) -> None:
        """Problems we can see before connecting."""
        if self.cfg.smtp_user and not self.cfg.smtp_password:
            raise ConfigError(f"digest.smtp_user is {self.cfg.smtp_user!r} but MONITOR_SMTP_PASSWORD is not set",
                              key="MONITOR_SMTP_PASSWORD")

    def send(self, message: EmailMessage) -> tuple[str, ...]:
        cfg = self.cfg
        self.check()
        where = f"{cfg.smtp_host}:{cfg.smtp_port} ({cfg.security})"
        envelope_to = [parseaddr(r)[1] for r in cfg.recipients]
        try:
            context = self.ssl_context or ssl.create_default_context(
                cafile=str(cfg.ca_file) if cfg.ca_file else None)
            if cfg.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout,
                                                     context=context)
            else:
                smtp = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=cfg.timeout)
            with smtp:
                smtp.ehlo()
                if cfg.security == "starttls":
                    smtp.starttls(context=context)
                    smtp.ehlo()
                if cfg.smtp_user:
                    smtp.login(cfg.smtp_user, cfg.smtp_password or "")
                refused = smtp.send_message(message, from_addr=parseaddr(cfg.sender)[1], to_addrs=envelope_to)
        except smtplib.SMTPAuthenticationError as exc:
            raise MailError(f"SMTP server {where} refused the login for {cfg.smtp_user!r}: {_smtp_reason(exc)}; "
                            "check digest.smtp_user and MONITOR_SMTP_PASSWORD") from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise MailError(f"SMTP server {where} does not support {exc}; check digest.security "
                            "(starttls, tls or none)") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            raise MailError(f"SMTP server {where} refused every recipient ({', '.join(exc.recipients)}); "
                            "check digest.to") from exc
        except ssl.SSLCertVerificationError as exc:
            raise MailError(f"SMTP server {where} sent a certificate we do not trust ({exc.verify_message}); if "
                            "the server uses a private certificate authority, set digest.ca_file to its PEM "
                            "file") from exc
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise MailError(f"cannot send through SMTP server {where}: {_smtp_reason(exc)}; check digest.smtp_host, "
                            "digest.smtp_port and digest.security, and that the server is up") from exc
        return tuple(sorted(refused))


def _smtp_reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {one_line(text)}"
    return one_line(str(exc)) or type(exc).__name__


# ------------------------------------------------------------------ what is due, and sending it once


def require(config: Config) -> DigestConfig:
    if config.digest is None:
        raise ConfigError("missing: add a [digest] table with from, to and smtp_host (see README 'Weekly digest')",
                          path=config.path.name, key="digest")
    return config.digest


# A preview needs no mail settings: without a [digest] table it uses the defaults, addressed to placeholders
# (RFC 2606 example addresses; a preview is never sent).
PREVIEW_SETTINGS = DigestConfig(sender="Gut-skin monitor <monitor@example.org>", recipients=("you@example.org",))


def settings(config: Config) -> DigestConfig:
    """The ``[digest]`` settings, or :data:`PREVIEW_SETTINGS` without that table (for building and previewing
    only: sending calls :func:`require`)."""
    return config.digest or PREVIEW_SETTINGS


def next_due(last_sent_end: dt.datetime, interval_days: int) -> dt.datetime:
    """A digest is due once 80% of the interval has passed since the last one sent, so a send that was
    retried a day late does not push every later week back (the scheduler decides the exact time)."""
    return last_sent_end + dt.timedelta(days=interval_days) * 0.8


def collect(config: Config, store: DigestStore, vocabulary: Vocabulary, *, since: dt.datetime, until: dt.datetime,
            undelivered_only: bool = True, preview: bool = False) -> Digest:
    """Read what a digest for ``[since, until]`` contains and build it."""
    cfg = settings(config)
    return build(
        store.papers_first_found(since, until, undelivered_only=undelivered_only),
        store.status_events_of_delivered(since, until, STATUS_KINDS, undelivered_only=undelivered_only),
        store.runs_between(since, until),
        vocabulary=vocabulary, queries=[q.name for q in config.queries], period=(since, until), now=until,
        max_papers=cfg.max_papers, preview=preview, min_relevance=config.tagging.min_relevance,
    )


def due_period(config: Config, store: DigestStore, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """From the end of the last sent digest (or ``first_days`` back, for the first one) to now."""
    last = store.last_sent_digest()
    start = last.period_end if last else now - dt.timedelta(days=settings(config).first_days)
    return (min(start, now), now)


def build_due(config: Config, store: DigestStore, clock: Clock, vocabulary: Vocabulary) -> tuple[Digest, EmailMessage]:
    """The digest :func:`send_due` would send now (for ``--dry-run``); nothing is logged."""
    now = clock.now()
    since, until = due_period(config, store, now)
    digest = collect(config, store, vocabulary, since=since, until=until)
    return digest, message(digest, settings(config))


def preview(config: Config, store: DigestStore, clock: Clock, vocabulary: Vocabulary,
            since: dt.date) -> tuple[Digest, EmailMessage]:
    """Every paper first found from ``since`` (00:00 UTC) to now, delivered before or not; nothing is logged."""
    start = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC)
    digest = collect(config, store, vocabulary, since=start, until=clock.now(), undelivered_only=False,
                     preview=True)
    return digest, message(digest, settings(config))


def send_due(config: Config, store: DigestStore, clock: Clock, mailer: Mailer, vocabulary: Vocabulary, *,
             force: bool = False) -> DigestReport:
    """Send the digest if one is due (or ``force``), logging which papers it delivered: the one entry point
    for `monitor digest` and the daemon, which call it holding the digest lease (so never two at once).

    Exactly once, as far as SMTP allows: the message (with its Message-ID) is stored with the digest's row
    *before* it is sent. A digest a crash left ``pending`` is sent again from that row — the same bytes,
    the same Message-ID — before anything new is built; mail clients collapse the copy if the server had
    already accepted the first. Returns ``not_due`` when the last digest sent is recent; raises
    :class:`MailError` (after logging the digest as failed) when sending fails, leaving its papers due."""
    cfg = require(config)
    if isinstance(mailer, SmtpMailer):
        mailer.check()  # a missing password is a config problem: say so before building anything
    for pending in store.pending_digests():
        if pending.message is not None:
            return _resume(pending, store, clock, mailer, cfg)
        # Left by a version that did not keep messages: nothing to resend; its papers become due again.
        store.finish_digest(pending.id, "failed", clock.now(), "interrupted before it was sent (no stored "
                            "message to resend); its papers went into the next digest")
    now = clock.now()
    last = store.last_sent_digest()
    if last is not None and not force:
        due = next_due(last.period_end, cfg.interval_days)
        if now < due:
            return DigestReport(status="not_due", last_sent=last.period_end, next_due=due)
    since, until = due_period(config, store, now)
    digest = collect(config, store, vocabulary, since=since, until=until)
    msg = message(digest, cfg)
    digest_id = store.begin_digest(created_at=now, period=(since, until), subject=str(msg["Subject"]),
                                   recipients=cfg.recipients, message_id=str(msg["Message-ID"]),
                                   papers_by_section=digest.sections, event_ids=digest.event_ids,
                                   message=bytes(msg))
    refused = _send(mailer, msg, digest_id, store, clock, f"its {digest.new_count} new papers stay due and go in "
                                                           "the next digest")
    return DigestReport(status="sent", digest=digest, digest_id=digest_id, subject=str(msg["Subject"]),
                        recipients=cfg.recipients, refused=refused, last_sent=until,
                        next_due=next_due(until, cfg.interval_days), message=msg)


def _resume(pending: DigestRecord, store: DigestStore, clock: Clock, mailer: Mailer,
            cfg: DigestConfig) -> DigestReport:
    """Send an interrupted digest again, exactly as it was built (same bytes, same Message-ID)."""
    assert pending.message is not None
    msg = email.message_from_bytes(pending.message, _class=EmailMessage, policy=email.policy.default)
    refused = _send(mailer, msg, pending.id, store, clock, "its papers stay due and go in the next digest")
    return DigestReport(status="resumed", digest_id=pending.id, subject=pending.subject,
                        recipients=pending.recipients, refused=refused, last_sent=pending.period_end,
                        next_due=next_due(pending.period_end, cfg.interval_days), message=msg)


def _send(mailer: Mailer, msg: EmailMessage, digest_id: int, store: DigestStore, clock: Clock,
          consequence: str) -> tuple[str, ...]:
    """Send a logged digest and record the outcome: ``sent``, or ``failed`` (then :class:`MailError`)."""
    try:
        refused = mailer.send(msg)
    except MailError as exc:
        store.finish_digest(digest_id, "failed", clock.now(), str(exc))
        raise MailError(f"{exc}. Digest #{digest_id} is logged as failed; {consequence}") from exc
    except Exception as exc:
        store.finish_digest(digest_id, "failed", clock.now(), f"{type(exc).__name__}: {exc}")
        raise
    # A signal or Ctrl-C here leaves it pending: the next send resends the same message (never a rebuild).
    store.finish_digest(digest_id, "sent", clock.now())
    return refused
