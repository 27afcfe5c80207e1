"""Feeds: which RSS feeds exist, what each contains, how an item reads, and writing them to a folder.

The feed set: ``main.xml`` (every gut–skin relevant paper), one feed per condition (``psoriasis.xml``), per
intervention (``probiotics.xml``), per condition × intervention pair that has papers
(``psoriasis/probiotics.xml``) and per query (``query/<name>.xml``). Each is RSS 2.0 holding the newest
``limit`` items; older items live on RFC 5005 archive pages (``archive/<feed>/<n>.xml``, page 1 the oldest;
a page is only written once it is full, so it never changes) linked with ``prev-archive``. A paper that was
already delivered and is then retracted, corrected, flagged or updated gets a separate status-change item;
the paper's own item keeps its guid. ``feeds.opml`` lists every feed; ``index.html`` links them with counts
and explains the tag ids.

Item guids are unique per feed, not per paper: ``pubmed:<pmid>`` in ``main.xml`` and
``pubmed:<pmid>/<feed id>`` elsewhere (``pubmed:123/psoriasis``, ``pubmed:123/psoriasis/probiotics``,
``pubmed:123/query/gut-skin-axis``; a feed's archive pages use its id), status items likewise
(``pubmed:<pmid>:retraction:<notice>/<feed id>``). Readers such as newsboat key items by guid across every
subscription, so a guid shared by two feeds leaves the paper in only one of them.

:func:`plan_feeds` is pure: (relevant papers, status changes, taxonomy, settings) → which documents exist
and which items each holds; :func:`render_document` turns one into the bytes to write, the same for the
same input. :func:`publish` reads the store, renders only the documents whose fingerprint changed since
the last run (a manifest beside the files keeps them), writes each file atomically and leaves unchanged files
untouched (so HTTP validators stay valid); ``monitor feed`` and ``monitor run`` call it.

Each paper's ``<item>`` is serialised once and placed into every document that carries it; feedgen builds
each channel around them. bench/feeds.py measures a large collection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import gc
import hashlib
import html
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

import orjson
from feedgen.ext.base import BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from . import __version__
from .config import FeedsConfig
from .errors import PublishError
from .formats import pubmed_url, short_authors
from .interfaces import FeedStore
from .tagging import Taxonomy
from .types import FeedRow, StatusChange

__all__ = ["Document", "FeedDef", "Plan", "PublishReport", "clean_text", "feed_guid", "plan_feeds", "publish",
           "render_document"]

ATOM_NS = "http://www.w3.org/2005/Atom"
HISTORY_NS = "http://purl.org/syndication/history/1.0"  # RFC 5005
AUTHORS_SHOWN = 5  # a feed item names this many authors, then "et al."
LOCK_FILE = ".lock"
PR_SET_PDEATHSIG = 1  # linux/prctl.h
_IOV_MAX = 512  # pieces per writev call (Linux and macOS allow 1024)
MANIFEST = ".monitor-feeds.json"  # the files we wrote last time, so stale ones can go (never anything else)

STATUS_LABEL = {
    "retraction": "Retracted",
    "erratum": "Erratum",
    "expression_of_concern": "Expression of concern",
    "update": "Updated version",
}
STATUS_SENTENCE = {
    "retraction": "This paper has been retracted.",
    "erratum": "An erratum (correction notice) has been published for this paper.",
    "expression_of_concern": "The journal has published an expression of concern about this paper.",
    "update": "An updated version of this paper has been published.",
}
DESIGN_LABEL_FALLBACK = "design not determined"

# XML 1.0 cannot carry C0 controls (except tab, newline, CR), and C1 controls and non-characters are noise.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ufffe\uffff\ud800-\udfff]")


def clean_text(text: str | None) -> str:
    """Text safe for XML: control characters and lone surrogates removed."""
    if not text:
        return ""
    if text.isprintable():
        # False for every character _CONTROL matches (and for harmless ones such as newlines): when it holds
        # there is nothing to remove, found at a tenth of the substitution's cost.
        return text
    return _CONTROL.sub("", text)


# ───────────────────────────────────────────── the feed set ─────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class FeedDef:
    path: str  # "main.xml", "psoriasis.xml", "psoriasis/probiotics.xml", "query/<name>.xml"
    kind: str  # main | condition | intervention | pair | query
    title: str
    description: str


@dataclass(frozen=True, slots=True)
class ItemRef:
    """One item of a feed before rendering: a paper, or a status change of a paper."""

    guid: str  # the item's key: its guid in the main feed (other feeds add their id, see feed_guid)
    at: dt.datetime
    pmid: str
    fingerprint: str  # changes whenever the rendered item would
    change: StatusChange | None = None
    token: bytes = b""  # what a document's fingerprint takes from this item (see _ref)


def _ref(guid: str, at: dt.datetime, pmid: str, fingerprint: str, change: StatusChange | None = None) -> ItemRef:
    # Encoded once per item rather than once per document that holds it (a paper is in ten or so).
    return ItemRef(guid, at, pmid, fingerprint, change, f"|{guid}|{at.isoformat()}|{fingerprint}".encode())


@dataclass(frozen=True, slots=True)
class Document:
    """One file of a feed: its subscription document or one archive page."""

    path: str
    feed: FeedDef
    title: str
    items: tuple[ItemRef, ...]  # oldest first
    links: tuple[tuple[str, str], ...]  # RFC 5005 (rel, href)
    archive: bool

    def fingerprint(self, settings: FeedsConfig) -> str:
        h = hashlib.sha256(f"{RENDER_VERSION}|{settings.base_url}|{self.title}|{self.feed.description}|"
                           f"{self.links}|{self.archive}".encode())
        h.update(b"".join(item.token for item in self.items))
        return h.hexdigest()


@dataclass(frozen=True, slots=True)
class Plan:
    documents: tuple[Document, ...]
    feeds: tuple[tuple[FeedDef, int], ...]  # every feed and how many items it has
    papers: int
    status_items: int

    def newest(self) -> dt.datetime | None:
        """When the newest item of any feed is dated (what the OPML list and the index say they date from)."""
        return max((d.items[-1].at for d in self.documents if d.items), default=None)


RENDER_VERSION = "2"  # bump when the rendering changes, so every document is written again


def plan_feeds(rows: Sequence[FeedRow], changes: Sequence[StatusChange], taxonomy: Taxonomy,
               settings: FeedsConfig, queries: Sequence[str] = ()) -> Plan:
    """Which feeds exist, which items each holds and how they are paged. Pure.

    ``rows`` are the gut–skin relevant, not withdrawn papers; ``changes`` the status changes of stored papers
    (those of other papers, or that came no later than the paper was first found, are skipped);
    ``queries`` names the configured queries (their feeds exist even while empty)."""
    title = settings.title
    members: dict[str, list[ItemRef]] = {"main.xml": []}
    defs: dict[str, FeedDef] = {"main.xml": FeedDef(
        "main.xml", "main", title,
        "New PubMed papers on the gut–skin axis: the gut microbiome, diet and gut-targeted treatments in "
        "skin disease, tagged by condition, intervention and study design.")}

    def feed(path: str, kind: str, feed_title: str, description: str) -> str:
        if path not in defs:
            defs[path] = FeedDef(path, kind, feed_title, description)
            members[path] = []
        return path

    def query_feed(name: str) -> str:
        return feed(f"query/{name}.xml", "query", f"{title}: query {name}",
                    f"Gut–skin relevant papers found by the query {name!r}.")

    for name in queries:
        query_feed(name)
    # Feed paths per tag id and pair, made once (a large collection has few tags and many papers).
    tag_paths: dict[str, str] = {}
    pair_paths: dict[tuple[str, str], str] = {}

    def tag_feed(tag_id: str, kind: str) -> str:
        path = tag_paths.get(tag_id)
        if path is None:
            label = _label(taxonomy, tag_id)
            path = tag_paths[tag_id] = feed(f"{tag_id}.xml", kind, f"{title}: {label}",
                                            f"Gut–skin relevant papers on {label.lower()}.")
        return path

    def pair_feed(cond: str, interv: str) -> str:
        path = pair_paths.get((cond, interv))
        if path is None:
            c, i = _label(taxonomy, cond), _label(taxonomy, interv)
            path = pair_paths[cond, interv] = feed(f"{cond}/{interv}.xml", "pair", f"{title}: {c} × {i}",
                                                   f"Gut–skin relevant papers on {c.lower()} and {i.lower()}.")
        return path

    placed: list[tuple[ItemRef, list[str]]] = []
    paths_of: dict[str, tuple[FeedRow, list[str]]] = {}
    for row in rows:
        paths = ["main.xml"]
        paths += [tag_feed(cond, "condition") for cond in row.conditions]
        paths += [tag_feed(interv, "intervention") for interv in row.interventions]
        paths += [pair_feed(cond, interv) for cond in row.conditions for interv in row.interventions]
        paths += [query_feed(name) for name in row.queries]
        placed.append((_ref(f"pubmed:{row.pmid}", row.first_seen_at, row.pmid, row.fingerprint), paths))
        paths_of[row.pmid] = (row, paths)
    status_items = 0
    for change in changes:
        found = paths_of.get(change.pmid)
        if found is None or change.at <= found[0].first_seen_at:
            continue  # not a delivered paper, or the change arrived with the paper itself
        row, paths = found
        stamp = change.notice_pmid or change.at.strftime("%Y%m%dT%H%M%SZ")
        placed.append((_ref(f"pubmed:{row.pmid}:{change.kind}:{stamp}", change.at, row.pmid, row.fingerprint,
                            change), paths))
        status_items += 1
    # One sort of every item; each feed then receives its items already in order.
    placed.sort(key=lambda entry: _item_key(entry[0]))
    for item, paths in placed:
        for path in paths:
            members[path].append(item)

    documents: list[Document] = []
    listed: list[tuple[FeedDef, int]] = []
    for path in sorted(members, key=_feed_order):
        items = members[path]
        documents += _pages(defs[path], items, settings)
        listed.append((defs[path], len(items)))
    return Plan(tuple(documents), tuple(listed), len(rows), status_items)


def _feed_order(path: str) -> tuple[int, str]:
    if path == "main.xml":
        return (0, path)
    if path.startswith("query/"):
        return (3, path)
    return (2 if "/" in path else 1, path)


def _item_key(item: ItemRef) -> tuple[dt.datetime, str]:
    return (item.at, item.guid)


def feed_id(feed_path: str) -> str:
    """The id of a feed in its items' guids: its path without ``.xml`` (``psoriasis/probiotics``)."""
    return feed_path[:-len(".xml")] if feed_path.endswith(".xml") else feed_path


def feed_guid(item_key: str, feed_path: str) -> str:
    """The guid an item has in one feed: ``pubmed:<pmid>`` in the main feed, ``pubmed:<pmid>/<feed id>`` in
    every other (readers key items by guid across subscriptions, so no two feeds may share one)."""
    return item_key if feed_path == "main.xml" else f"{item_key}/{feed_id(feed_path)}"


def _label(taxonomy: Taxonomy, tag_id: str) -> str:
    tag = taxonomy.tags.get(tag_id)
    return clean_text(tag.label) if tag else tag_id.replace("_", " ")


def _archive_path(feed_path: str, page: int) -> str:
    return f"archive/{feed_path[:-len('.xml')]}/{page}.xml"


def _pages(feed: FeedDef, items: list[ItemRef], settings: FeedsConfig) -> list[Document]:
    """The subscription document (newest ``limit`` items) and the full archive pages, oldest first. Pages
    are counted from the oldest item and a page exists only once full, so an archive page never changes
    (unless a paper on it is revised); the newest archive page may overlap the subscription document."""
    limit, base = settings.limit, settings.base_url
    full_pages = len(items) // limit if len(items) > limit else 0
    docs = []
    for page in range(1, full_pages + 1):
        links = [("current", base + feed.path)]
        if page > 1:
            links.append(("prev-archive", base + _archive_path(feed.path, page - 1)))
        if page < full_pages:
            links.append(("next-archive", base + _archive_path(feed.path, page + 1)))
        docs.append(Document(_archive_path(feed.path, page), feed, f"{feed.title} (archive page {page})",
                             tuple(items[(page - 1) * limit:page * limit]), tuple(links), True))
    links = [("prev-archive", base + _archive_path(feed.path, full_pages))] if full_pages else []
    docs.append(Document(feed.path, feed, feed.title, tuple(items[-limit:]), tuple(links), False))
    return docs


# ─────────────────────────────────────────────── items ──────────────────────────────────────────────────

# Items are written as text, not built as lxml trees: at a hundred thousand papers the trees cost most of a
# generation. The escaping is lxml's own (the output is byte-identical to serialising an lxml element), and
# every string has been through clean_text, so nothing XML cannot carry reaches these helpers.
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;",
                               "\n": "&#10;", "\t": "&#9;"})
_NEEDS_ESCAPE = re.compile("[&<>\r]")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


_DOI_SAFE = re.compile(r"[A-Za-z0-9/:;()._<>-]+")  # what quote() below leaves as it is
_HTML_SPECIAL = re.compile("[&<>\"']")


def _html(value: str) -> str:
    """html.escape, skipped when there is nothing to escape (most names, dates and labels)."""
    return html.escape(value) if _HTML_SPECIAL.search(value) else value


@functools.lru_cache(maxsize=64)  # a handful of domains (one per tag kind), used by every item
def _category_open(domain: str) -> str:
    return f'<category domain="{_attr(domain)}">'


def _text(value: str) -> str:
    """Element text as lxml escapes it."""
    return value.translate(_TEXT_ESCAPES) if _NEEDS_ESCAPE.search(value) else value


def _attr(value: str) -> str:
    """An attribute value (in double quotes) as lxml escapes it."""
    return value.translate(_ATTR_ESCAPES)


@functools.lru_cache(maxsize=4096)  # the papers one run finds share their first-found time
def rfc822(at: dt.datetime) -> str:
    """RFC 822 date in UTC as RSS wants it ("Sun, 22 Nov 2026 06:00:00 +0000"), as email.utils formats it."""
    u = at.astimezone(dt.UTC)
    return (f"{_DAYS[u.weekday()]}, {u.day:02d} {_MONTHS[u.month - 1]} {u.year:04d} "
            f"{u.hour:02d}:{u.minute:02d}:{u.second:02d} +0000")


class RenderedItem(NamedTuple):
    """One ``<item>`` in two pieces around the end of its guid: ``head`` ends with the item's key
    (``…<guid isPermaLink="false">pubmed:123``), ``tail`` starts after ``</guid>``. Each document puts its
    own guid ending between them (:func:`_guid_end`), so an item is still serialised only once."""

    head: bytes
    tail: bytes


def _guid_end(feed_path: str) -> bytes:
    """What follows an item's key in this feed's guids (see :func:`feed_guid`), with the closing tag."""
    return f"{_text(feed_guid('', feed_path))}</guid>".encode()


def _item_xml(title: str, link: str, key: str, at: dt.datetime, description: str, content: str,
              authors: str, categories: Iterable[tuple[str, str]]) -> RenderedItem:
    """One RSS 2.0 ``<item>``, serialised once and placed into every document that carries it (the channel
    around the items is feedgen's; feedgen's own entries cost about 100 µs each to build). Every text
    passed in is already clean (callers build it from clean_text'ed parts and our own constants)."""
    cdata = content.replace("]]>", "]]&gt;")
    head = (f"<item><title>{_text(title)}</title><link>{_text(link)}</link>"
            f"<description>{_text(description)}</description>"
            f"<content:encoded><![CDATA[{cdata}]]></content:encoded>"
            f'<guid isPermaLink="false">{_text(key)}')
    parts = [f'{_category_open(domain)}{_text(term)}</category>' for term, domain in categories]
    parts.append(f"<pubDate>{rfc822(at)}</pubDate>")
    if authors:
        parts.append(f"<dc:creator>{_text(authors)}</dc:creator>")
    parts.append("</item>")
    return RenderedItem(head.encode("utf-8"), "".join(parts).encode("utf-8"))


class _Labels(dict[str, str]):
    """Tag id → its clean label; an id the taxonomy does not know reads as itself with spaces."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        super().__init__((tag_id, clean_text(tag.label)) for tag_id, tag in taxonomy.tags.items())

    def __missing__(self, tag_id: str) -> str:
        return tag_id.replace("_", " ")


def _paper_xml(pmid: str, at: dt.datetime, record: Mapping[str, Any], tagging: Mapping[str, Any],
               labels: Mapping[str, str], base: str) -> RenderedItem:
    title = clean_text(record.get("title")) or f"(untitled) PMID {pmid}"
    retracted = is_retracted(record)
    if retracted:
        title = f"[Retracted] {title}"
    authors = short_authors(author_names(record.get("authors") or ()), AUTHORS_SHOWN)
    why = why_tagged(tagging.get("evidence") or (), labels)
    conditions, interventions = tagging.get("conditions") or (), tagging.get("interventions") or ()
    designs_ids = tagging.get("designs") or ()
    designs = ", ".join([labels[d] for d in designs_ids]) or DESIGN_LABEL_FALLBACK
    source = journal_line(record)
    description = " · ".join(p for p in (source, designs, why and f"Why tagged: {why}") if p)
    categories = [(c, f"{base}index.html#conditions") for c in conditions]
    categories += [(i, f"{base}index.html#interventions") for i in interventions]
    categories += [(d, f"{base}index.html#designs") for d in designs_ids]
    tags = [labels[t] for t in (*conditions, *interventions)]
    content = _paper_html(pmid, record, retracted, authors, source, designs, tags, why)
    return _item_xml(title, pubmed_url(pmid), f"pubmed:{pmid}", at, description, content, authors, categories)


def _status_xml(ref: ItemRef, record: Mapping[str, Any], base: str) -> RenderedItem:
    change = ref.change
    assert change is not None
    pmid = ref.pmid
    label = STATUS_LABEL.get(change.kind, change.kind.replace("_", " ").capitalize())
    original = clean_text(record.get("title")) or f"PMID {pmid}"
    notice = pubmed_url(change.notice_pmid) if change.notice_pmid else None
    sentence = STATUS_SENTENCE.get(change.kind, f"Status change: {label}.")
    source = journal_line(record)
    description = f"{sentence} Original paper: {original} ({source}) {pubmed_url(pmid)}"
    e = _html
    parts = [f"<p><strong>{e(sentence)}</strong></p>",
             f'<p>Original paper: <a href="{e(pubmed_url(pmid))}">{e(original)}</a> — {e(source)}</p>']
    if notice:
        parts.append(f'<p>Notice: <a href="{e(notice)}">PMID {e(change.notice_pmid or "")}</a></p>')
    categories = [("status_change", f"{base}index.html#status"), (change.kind, f"{base}index.html#status")]
    authors = short_authors(author_names(record.get("authors") or ()), AUTHORS_SHOWN)
    return _item_xml(f"[{label}] {original}", notice or pubmed_url(pmid), ref.guid, change.at, description,
                     "\n".join(parts), authors, categories)


def is_retracted(record: Mapping[str, Any]) -> bool:
    """As :attr:`Article.is_retracted`, on the stored JSON of a record."""
    return any(c.get("ref_type") == "RetractionIn" for c in record.get("corrections") or ()) or any(
        p.get("name") == "Retracted Publication" for p in record.get("publication_types") or ())


def author_names(authors: Sequence[Mapping[str, Any]]) -> Iterator[str]:
    """Surname and initials (collective names as written) of a stored record's authors, lazily."""
    for au in authors:
        if au.get("collective_name"):
            yield clean_text(au["collective_name"])
        elif au.get("last_name"):
            yield clean_text(f"{au['last_name']} {au['initials']}" if au.get("initials") else au["last_name"])


def journal_line(record: Mapping[str, Any]) -> str:
    """"J Invest Dermatol. 2024;144(3):512-20." from what the record has."""
    j = record.get("journal") or {}
    name = clean_text(j.get("iso_abbreviation") or j.get("title") or "")
    sort_date = record.get("sort_date") or ""
    year = sort_date[:4] if sort_date else ""
    volume = clean_text(j.get("volume") or "")
    issue = f"({clean_text(j['issue'])})" if j.get("issue") else ""
    pages = f":{clean_text(j['pages'])}" if j.get("pages") else ""
    out = name.rstrip(".") + "." if name else ""
    if year:
        out += f" {year}" + (f";{volume}{issue}{pages}" if volume else "") + "."
    return out.strip()


def why_tagged(evidence: Sequence[Mapping[str, Any]], labels: Mapping[str, str]) -> str:
    """One line from the evidence: each condition and intervention with where its best mention was."""
    parts = []
    seen: set[str] = set()
    for ev in evidence:
        tag_id = str(ev.get("tag") or "")
        if not tag_id or tag_id in seen or ev.get("kind") not in ("condition", "intervention"):
            continue
        seen.add(tag_id)
        where = str(ev.get("source", "")).replace("abstract:", "abstract, ").replace("_", " ").lower()
        parts.append(f"{labels[tag_id]} ({where}: “{clean_text(ev.get('text'))}”)")
    return "; ".join(parts)


def _paper_html(pmid: str, record: Mapping[str, Any], retracted: bool, authors: str, source: str, designs: str,
                tags: Sequence[str], why: str) -> str:
    e = _html
    out = []
    if retracted:
        out.append("<p><strong>This paper has been retracted.</strong></p>")
    if authors:
        out.append(f"<p>{e(authors)}</p>")
    cite = e(source)
    doi = clean_text(record.get("doi"))
    if doi:
        href = doi if _DOI_SAFE.fullmatch(doi) else quote(doi, safe="/:;()._-<>")
        cite += f' <a href="https://doi.org/{e(href)}">doi:{e(doi)}</a>'
    out.append(f'<p>{cite} <a href="{e(pubmed_url(pmid))}">PMID {e(pmid)}</a></p>')
    out.append(f"<p><strong>Design:</strong> {e(designs)}"
               + (f" · <strong>Tags:</strong> {e(', '.join(tags))}" if tags else "") + "</p>")
    if why:
        out.append(f"<p><strong>Why tagged:</strong> {e(why)}</p>")
    sections = record.get("abstract") or ()
    for section in sections:
        text = clean_text(section.get("text"))
        if not text:
            continue
        label = clean_text(section.get("label"))
        out.append(f"<p><strong>{e(label)}:</strong> {e(text)}</p>" if label else f"<p>{e(text)}</p>")
    if not sections:
        out.append("<p>(No abstract in PubMed.)</p>")
    return "\n".join(out)


# ───────────────────────────────────────────── documents ────────────────────────────────────────────────


class _History(BaseExtension):  # type: ignore[misc]
    """feedgen extension: RFC 5005 links (as atom:link) and the fh:archive marker on archive pages."""

    def __init__(self) -> None:
        self.links: list[tuple[str, str]] = []
        self.archive = False

    def extend_ns(self) -> dict[str, str]:
        return {"fh": HISTORY_NS}

    def extend_rss(self, rss_feed: etree._Element) -> etree._Element:
        channel = rss_feed[0]
        for rel, href in self.links:
            etree.SubElement(channel, f"{{{ATOM_NS}}}link", rel=rel, href=href, type="application/rss+xml")
        if self.archive:
            etree.SubElement(channel, f"{{{HISTORY_NS}}}archive")
        return rss_feed


def render_document(doc: Document, items: Mapping[str, RenderedItem], settings: FeedsConfig, now: dt.datetime,
                    channels: dict[str, FeedGenerator] | None = None) -> list[bytes]:
    """One feed document as the pieces to write one after the other (no copy of the whole file): feedgen
    builds the channel, the items (item key → rendered ``<item>``) go in newest first, each with this
    feed's guid ending. ``lastBuildDate`` is
    the newest item's date, so an unchanged document stays byte-identical; ``now`` only dates an empty one.
    ``channels`` keeps one feedgen channel per feed for its archive pages (what differs per page is set
    again each time; building a FeedGenerator costs twice as much as reusing one)."""
    fg = channels.get(doc.feed.path) if channels is not None else None
    if fg is None:
        fg = FeedGenerator()
        fg.load_extension("dc", atom=False, rss=True)
        fg.register_extension("history", _History, None, atom=False, rss=True)
        fg.description(clean_text(doc.feed.description))
        fg.language("en")
        fg.generator("gut-skin-monitor", version=__version__)
        fg.docs("https://www.rssboard.org/rss-specification")
        if channels is not None:
            channels[doc.feed.path] = fg
    fg.title(clean_text(doc.title))
    fg.link([{"href": settings.base_url + doc.path, "rel": "self"},
             {"href": settings.base_url + "index.html", "rel": "alternate"}], replace=True)
    fg.lastBuildDate(doc.items[-1].at if doc.items else now)
    fg.history.links = list(doc.links)
    fg.history.archive = doc.archive
    head = fg.rss_str(pretty=False)
    cut = head.rindex(b"</channel>")
    pieces = [head[:cut]]
    end = _guid_end(doc.feed.path)
    for ref in reversed(doc.items):
        item = items[ref.guid]
        pieces += (item.head, end, item.tail)
    pieces.append(head[cut:])
    return pieces


def _opml(feeds: list[tuple[FeedDef, int]], settings: FeedsConfig, newest: dt.datetime | None) -> bytes:
    """The OPML 2.0 list of every feed, grouped. A function of the content only (no generation time), so an
    unchanged list keeps its bytes and its HTTP validators: ``dateModified`` is the newest item's date.
    Group outlines carry only ``text``: OPML 2.0 defines no folder type, and the W3C validator warns about
    an outline with other attributes (``title``) but no ``type``; readers take an outline without
    ``xmlUrl`` as a folder."""
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = clean_text(settings.title)
    if newest is not None:
        etree.SubElement(head, "dateModified").text = rfc822(newest)
    etree.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    body = etree.SubElement(root, "body")
    groups = {"main": "Main", "condition": "Conditions", "intervention": "Interventions",
              "pair": "Condition × intervention", "query": "Queries"}
    for kind, label in groups.items():
        chosen = [(f, n) for f, n in feeds if f.kind == kind]
        if not chosen:
            continue
        folder = etree.SubElement(body, "outline", text=label)
        for f, n in chosen:
            etree.SubElement(folder, "outline", type="rss", text=clean_text(f.title), title=clean_text(f.title),
                             xmlUrl=settings.base_url + f.path, htmlUrl=settings.base_url + "index.html",
                             description=f"{n} item{'s' if n != 1 else ''}")
    return etree.tostring(root, encoding="utf-8", xml_declaration=True, pretty_print=True)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="alternate" type="application/rss+xml" title="{title}" href="main.xml">
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;color:#222}}
table{{border-collapse:collapse;width:100%}}td,th{{padding:.25rem .5rem;border-bottom:1px solid #ddd;text-align:left}}
td.n{{text-align:right}}code{{background:#f3f3f3;padding:0 .2rem}}h2{{margin-top:2rem}}</style></head>
<body><h1>{title}</h1>
<p>{papers} gut–skin relevant papers, {changes} status changes. Subscribe to any feed below in your RSS
reader (copy the link), or import <a href="feeds.opml">all feeds as OPML</a>. Tags are the ids in each item's
categories; papers are tagged with the taxonomy described below.</p>
{sections}
<h2 id="status">Status changes</h2>
<p>When a paper already in a feed is retracted, gets an erratum or an expression of concern, or is updated,
the feed carries a separate item marked [Retracted], [Erratum], [Expression of concern] or
[Updated version]; the paper's own item is not repeated.</p>
<p><small>Generated by gut-skin-monitor {version}{newest}.</small></p>
</body></html>
"""


def _index(feeds: list[tuple[FeedDef, int]], taxonomy: Taxonomy, settings: FeedsConfig, newest: dt.datetime | None,
           papers: int, changes: int) -> bytes:
    """The feed list as a web page. Like the OPML list, a function of the content only (dated by the newest
    item, not by when it was generated), so an unchanged page keeps its bytes."""
    e = _html
    counts = {f.path: n for f, n in feeds}
    sections = []
    groups = [("main", "Main feed", None), ("condition", "Conditions", "conditions"),
              ("intervention", "Interventions and exposures", "interventions"),
              ("pair", "Condition × intervention", None), ("query", "Queries", None)]
    for kind, heading, anchor in groups:
        chosen = [(f, n) for f, n in feeds if f.kind == kind]
        if not chosen:
            continue
        rows = []
        for f, n in chosen:
            tag_id = f.path[:-4] if kind in ("condition", "intervention") else ""
            rows.append(f'<tr><td><a href="{e(f.path)}">{e(f.title)}</a></td>'
                        f'<td>{"<code>" + e(tag_id) + "</code>" if tag_id else ""}</td>'
                        f'<td class="n">{n}</td></tr>')
        head = f'<h2 id="{anchor}">{e(heading)}</h2>' if anchor else f"<h2>{e(heading)}</h2>"
        sections.append(head + "<table><tr><th>Feed</th><th>Tag id</th><th>Items</th></tr>" + "".join(rows)
                        + "</table>")
    # Designs have no feeds of their own but appear as item categories: list them so the ids are explained.
    design_rows = "".join(f"<tr><td>{e(t.label)}</td><td><code>{e(t.id)}</code></td></tr>"
                          for t in taxonomy.tags.values() if t.kind == "design")
    sections.append('<h2 id="designs">Study designs</h2><table><tr><th>Design</th><th>Tag id</th></tr>'
                    + design_rows + "</table>")
    untagged = [t for t in taxonomy.tags.values() if t.kind in ("condition", "intervention")
                and f"{t.id}.xml" not in counts]
    if untagged:
        sections.append("<p>No papers yet for: " + ", ".join(f"{e(t.label)} (<code>{e(t.id)}</code>)"
                                                             for t in untagged) + ".</p>")
    page = _PAGE.format(title=e(settings.title), papers=papers, changes=changes, sections="\n".join(sections),
                        version=e(__version__),
                        newest=newest.strftime("; newest item %Y-%m-%d %H:%M UTC") if newest else "")
    return page.encode("utf-8")


# ─────────────────────────────────────────────── writing ────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class WriteReport:
    written: int
    unchanged: int
    removed: int
    out: Path


def _write_if_changed(target: Path, parts: Sequence[bytes]) -> bool:
    """Write ``parts`` to ``target`` atomically unless it already holds exactly those bytes."""
    try:
        if target.stat().st_size == sum(map(len, parts)) and target.read_bytes() == b"".join(parts):
            return False
    except (FileNotFoundError, NotADirectoryError):
        pass
    _atomic_write(target, parts)
    return True


def _listing(files: Mapping[str, str]) -> bytes:
    """The manifest's bytes: each file we wrote and the fingerprint of what it holds."""
    return orjson.dumps({"version": 1, "files": dict(files)}, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)


@contextlib.contextmanager
def _folder_lock(out: Path) -> Iterator[None]:
    """One publisher at a time per folder (a daemon's cycle and a `monitor feed`, or a run and the orphan
    of a killed one): an exclusive lock on ``out/.lock``, released when the process (and its forked
    renderer) ends, however it ends."""
    try:
        import fcntl
    except ImportError:  # not POSIX: one publisher at a time is then the deployment's business
        yield
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        fh = open(out / LOCK_FILE, "a+b")
    except OSError as exc:
        raise PublishError(f"cannot write feeds to {out}: {exc.strerror or exc} (check feeds.out in the config "
                           "and that the folder is writable)") from None
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _remove_leftovers(out: Path) -> None:
    """Temporary files of runs that died mid-write (``.name.XXXX.tmp``; under the folder lock no living run
    has any)."""
    for tmp in out.rglob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()


def _read_manifest(out: Path) -> dict[str, str]:
    """The files we wrote last time and the fingerprint of what each holds."""
    try:
        data = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        files = data["files"] if isinstance(data, dict) and data.get("version") == 1 else {}
    except (FileNotFoundError, NotADirectoryError, ValueError, KeyError):
        return {}
    # Only plain relative names below `out`: a damaged manifest must never delete anything else.
    return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)
            and not k.startswith(("/", "\\")) and ".." not in k.replace("\\", "/").split("/")}


def _atomic_write(target: Path, parts: Sequence[bytes]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb", buffering=0) as fh:
            for start in range(0, len(parts), _IOV_MAX):
                chunk = parts[start:start + _IOV_MAX]
                # writev hands the kernel every piece at once, without joining them into one copy first.
                done = os.writev(fd, chunk) if hasattr(os, "writev") else 0
                rest = memoryview(b"".join(chunk))[done:]
                while rest:  # what writev did not take (rare on files), or everything without writev
                    rest = rest[fh.write(rest) or 0:]
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _die_with(parent: int) -> None:
    """In a forked renderer: be killed when the parent dies (Linux's PR_SET_PDEATHSIG), so a killed
    `monitor feed` never leaves a child writing files after it; exit at once if it already died."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _prune_empty_dirs(folder: Path, stop: Path) -> None:
    while folder != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


# ─────────────────────────────────────────────── publish ────────────────────────────────────────────────


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Publishing holds a million small objects and makes no reference cycles; the cyclic collector's
    passes over them cost about a fifth of a large generation, so it waits until we are done."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class PublishReport:
    feeds: int
    documents: int  # feed documents including archive pages
    rendered: int  # documents rendered this time (the others were unchanged since the last run)
    papers: int
    status_items: int
    write: WriteReport
    plan: Plan
    processes: int = 1  # 2 when a large rendering was split over a forked process


def publish(store: FeedStore, taxonomy: Taxonomy, settings: FeedsConfig, now: dt.datetime,
            queries: Sequence[str] = (), out: Path | None = None, *, workers: int | None = None,
            min_relevance: float = 0.5) -> PublishReport:
    """Plan every feed from the store, render the documents whose content changed since the last run
    (fingerprints in a manifest beside them), and write them with the OPML list and the index to ``out``
    (default ``settings.out``). Idempotent: a second run with nothing new writes nothing. The feeds carry
    the papers whose relevance score reaches ``min_relevance`` (``[tagging] min_relevance``).

    A large rendering (a first generation, a new base_url) is split over two processes where that is safe
    (see :func:`_render_split`); ``workers=1`` keeps it in this process. The output is the same either way."""
    out = out or settings.out
    with _gc_paused(), _folder_lock(out):
        rows = store.feed_rows(min_relevance)
        plan = plan_feeds(rows, store.status_changes(), taxonomy, settings, queries)
        previous = _read_manifest(out)
        wanted = {d.path: d.fingerprint(settings) for d in plan.documents}
        stale = [d for d in plan.documents
                 if previous.get(d.path) != wanted[d.path] or not (out / d.path).is_file()]
        job = _RenderJob({row.pmid: row.tagging_json for row in rows}, _Labels(taxonomy), settings, now, out)
        try:
            _remove_leftovers(out)
            if stale:
                # Forget what is about to be rewritten before touching it: a run killed midway leaves those
                # documents unknown to the manifest, so the next run renders them again.
                pending = {k: v for k, v in previous.items() if k not in {d.path for d in stale}}
                _write_if_changed(out / MANIFEST, [_listing(pending)])
            done = _render_split(stale, job, store, workers)
            newest = plan.newest()
            extra = [_write_if_changed(out / "feeds.opml", [_opml(list(plan.feeds), settings, newest)]),
                     _write_if_changed(out / "index.html", [_index(list(plan.feeds), taxonomy, settings, newest,
                                                                   plan.papers, plan.status_items)])]
            for rel in done.incomplete:
                wanted[rel] = "incomplete"  # rendered again next time
            removed = 0
            for rel in sorted(set(previous) - set(wanted) - {"feeds.opml", "index.html"}):
                stale_file = out / rel
                if stale_file.is_file():
                    stale_file.unlink()
                    removed += 1
                    _prune_empty_dirs(stale_file.parent, out)
            # Unchanged: left alone, like the files it lists.
            _write_if_changed(out / MANIFEST, [_listing({**wanted, "feeds.opml": "", "index.html": ""})])
        except OSError as exc:
            raise PublishError(f"cannot write feeds to {out}: {exc.strerror or exc} (check feeds.out in the "
                               "config and that the folder is writable)") from None
    written = done.written + sum(extra)
    report = WriteReport(written, len(stale) + len(extra) - written, removed, out)
    return PublishReport(len(plan.feeds), len(plan.documents), len(stale), plan.papers, plan.status_items, report,
                         plan, done.processes)


# ───────────────────────────────────────── rendering in bulk ────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class _RenderJob:
    """What rendering documents needs besides the records: stored tagging JSON by PMID (decoded per item, by
    whichever process renders it), the tag labels, the settings, the time, the folder."""

    taggings: Mapping[str, str]
    labels: Mapping[str, str]
    settings: FeedsConfig
    now: dt.datetime
    out: Path


@dataclass(frozen=True, slots=True)
class _Rendered:
    written: int
    incomplete: tuple[str, ...]  # documents that lost items whose paper changed while we read
    processes: int = 1


def _render_and_write(docs: Sequence[Document], job: _RenderJob, records: Mapping[str, str | bytes]) -> _Rendered:
    """Render each document (each item once) from the stored ``records`` and write it; OSError goes to the
    caller."""
    items: dict[str, RenderedItem] = {}
    channels: dict[str, FeedGenerator] = {}
    base = job.settings.base_url
    written = 0
    incomplete = []
    for doc in docs:
        present = []
        for ref in doc.items:
            if ref.pmid not in records:
                continue  # changed while we read (a concurrent run): rendered next time
            present.append(ref)
            if ref.guid not in items:
                record = orjson.loads(records[ref.pmid])
                items[ref.guid] = (_status_xml(ref, record, base) if ref.change else _paper_xml(
                    ref.pmid, ref.at, record, orjson.loads(job.taggings[ref.pmid]), job.labels, base))
        if len(present) != len(doc.items):
            incomplete.append(doc.path)
            doc = dataclasses.replace(doc, items=tuple(present))
        written += _write_if_changed(job.out / doc.path, render_document(doc, items, job.settings, job.now, channels))
    return _Rendered(written, tuple(incomplete))


PARALLEL_MIN_ITEMS = 20_000  # below this many item placements one process is quicker than forking


def _render_split(docs: Sequence[Document], job: _RenderJob, store: FeedStore, workers: int | None) -> _Rendered:
    """:func:`_render_and_write` over ``docs``, in two processes when the job is large, fork is available
    (Linux) and this process runs no other thread (forking a threaded process, e.g. the scheduler daemon,
    is not safe: that case stays in one process). The documents are split by time — the older archive
    pages to a forked child, the newer pages and the subscription documents here — so most items are
    rendered by one side only. The child shares the plan by fork, reads its own records through its own
    database connections, and reports back through a pipe."""

    def pmids(part: Sequence[Document]) -> set[str]:
        return {ref.pmid for doc in part for ref in doc.items}

    placements = sum(len(d.items) for d in docs)
    if workers is None:
        workers = 2 if placements >= PARALLEL_MIN_ITEMS and (os.cpu_count() or 1) >= 2 else 1
    if workers < 2 or len(docs) < 2 or not hasattr(os, "fork") or not sys.platform.startswith("linux") \
            or threading.active_count() > 1:
        return _render_and_write(docs, job, store.feed_records(pmids(docs)))
    ordered = sorted(docs, key=lambda d: (d.items[0].at if d.items else job.now, d.path))
    half, count, cut = placements / 2, 0, len(ordered)
    for index, doc in enumerate(ordered):
        if count >= half:
            cut = index
            break
        count += len(doc.items)
    older, newer = ordered[:cut], ordered[cut:]
    own = store.reopened()  # connects only when the child uses it
    shared = store.feed_records(pmids(docs)) if own is None else None  # in-memory: read once, before forking
    read_end, write_end = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: render its half, report, and leave without running the parent's cleanup
        code = 1
        try:
            _die_with(parent)
            os.close(read_end)
            records = shared if shared is not None else (own or store).feed_records(pmids(older))
            result = _render_and_write(older, job, records)
            report = {"written": result.written, "incomplete": list(result.incomplete)}
            code = 0
        except BaseException as exc:
            report = {"error": getattr(exc, "strerror", None) or str(exc) or type(exc).__name__}
        finally:
            with contextlib.suppress(BaseException):
                os.write(write_end, orjson.dumps(report))
            os._exit(code)
    os.close(write_end)
    try:
        mine = _render_and_write(newer, job, shared if shared is not None else store.feed_records(pmids(newer)))
    finally:
        with os.fdopen(read_end, "rb") as pipe:
            answer = pipe.read()
        os.waitpid(pid, 0)
    theirs: dict[str, Any] = orjson.loads(answer) if answer else {"error": "the rendering process died"}
    if "error" in theirs:
        raise OSError(f"rendering older archive pages: {theirs['error']}")
    return _Rendered(mine.written + int(theirs["written"]), mine.incomplete + tuple(theirs["incomplete"]), 2)
