"""Tags and tag inputs: what the tagger reads of each paper (kept when the paper is stored, so a retag never
re-reads records), each paper's tagging with its evidence, and the ``paper_tags`` rows filters use. A retag
writes only what changed; a taxonomy edit that leaves a paper's tags and evidence alone only relabels it.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..types import Article, TagChanges, Tagger, Tagging, TagInput
from .base import StorageBase, chunks
from .schema import paper_tag_inputs, paper_tagging, paper_tags, papers


def tag_input_json(article: Article) -> str:
    """The fields the tagger reads (:class:`~monitor.types.TagInput`: title, abstract, keywords, MeSH,
    publication types) as compact JSON.

    ``tests/test_storage_tags.py`` checks that tagging :func:`decode_tag_input` of this gives the same tags
    as tagging the whole article, on every corpus record, so retags and runs cannot disagree."""
    return orjson.dumps(tuple(TagInput.of(article))).decode("utf-8")


def decode_tag_input(text: str) -> TagInput:
    """The :class:`~monitor.types.TagInput` that :func:`tag_input_json` wrote (JSON arrays kept as lists)."""
    return TagInput(*orjson.loads(text))


def tagging_json(tagging: Tagging) -> str:
    """A tagging as ``paper_tagging.tagging`` stores it: its JSON without ``taxonomy_version``, which has a
    column of its own, so a new taxonomy that gives a paper the same tags and evidence only relabels it.
    (:class:`Tagging` serialises its fields in definition order; the version is the last.)"""
    text = orjson.dumps(tagging).decode("utf-8")
    return text[:text.rindex(',"taxonomy_version":')] + "}"


def stored_tagging(text: str, taxonomy_version: str | None) -> Tagging:
    """The :class:`Tagging` of a stored row (rows written before the version moved out of the JSON still
    carry it inside; the column wins)."""
    data = orjson.loads(text)
    data["taxonomy_version"] = taxonomy_version or data.get("taxonomy_version", "")
    return Tagging.from_dict(data)


def tags_part(tagging_json: str) -> str:
    """The part of a stored tagging's JSON that :func:`_tag_rows` reads: :class:`Tagging` serialises its
    fields in definition order, so everything before ``"relevance"`` is the tag ids and the relevance flag
    (equal prefixes mean equal ``paper_tags`` rows, without decoding the evidence)."""
    return tagging_json[:tagging_json.find(',"relevance":')]


def tags_head(tagging_json: str) -> dict[str, Any]:
    """The tag ids of a stored tagging, decoding only the JSON before its evidence when it has the usual
    layout (a tenth of the work), the whole of it otherwise."""
    try:
        head = orjson.loads(tags_part(tagging_json) + "}")
        if "conditions" in head and "interventions" in head:
            return head  # type: ignore[no-any-return]
    except orjson.JSONDecodeError:
        pass
    return orjson.loads(tagging_json)  # type: ignore[no-any-return]


def _tag_rows(tagging: dict[str, Any]) -> set[tuple[str, str]]:
    """The ``paper_tags`` rows of a tagging (as stored JSON: no need to rebuild its evidence objects);
    ``gut_skin_relevant`` rides along as a pseudo-tag."""
    rows = {("condition", t) for t in tagging["conditions"]}
    rows |= {("intervention", t) for t in tagging["interventions"]}
    rows |= {("design", t) for t in tagging["designs"]}
    if tagging["gut_skin_relevant"]:
        rows.add(("relevance", "gut_skin_relevant"))
    return rows


@dataclass
class Changes:
    """A running tally of what saving taggings changed (frozen into :class:`TagChanges`)."""

    examined: int = 0
    changed: int = 0
    rewritten: int = 0
    relabelled: int = 0
    added: collections.Counter[str] = field(default_factory=collections.Counter)
    removed: collections.Counter[str] = field(default_factory=collections.Counter)

    def merge(self, other: Changes) -> None:
        self.examined += other.examined
        self.changed += other.changed
        self.rewritten += other.rewritten
        self.relabelled += other.relabelled
        self.added.update(other.added)
        self.removed.update(other.removed)

    def frozen(self) -> TagChanges:
        return TagChanges(examined=self.examined, changed=self.changed, rewritten=self.rewritten,
                          relabelled=self.relabelled, added=tuple(sorted(self.added.items())),
                          removed=tuple(sorted(self.removed.items())))


@dataclass
class _Writes:
    """The statements one :func:`save_taggings` call will run, gathered first so each kind runs once."""

    deletes: list[dict[str, Any]] = field(default_factory=list)
    inserts: list[dict[str, Any]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    firsts: list[dict[str, Any]] = field(default_factory=list)  # papers tagged for the first time
    relabel: dict[str, list[int]] = field(default_factory=dict)  # version -> pmids otherwise unchanged

    def run(self, conn: Connection) -> None:
        if self.deletes:
            conn.execute(paper_tags.delete().where(
                paper_tags.c.pmid == sa.bindparam("p"), paper_tags.c.kind == sa.bindparam("k"),
                paper_tags.c.tag == sa.bindparam("t")), self.deletes)
        if self.inserts:
            conn.execute(paper_tags.insert(), self.inserts)
        if self.firsts:
            conn.execute(paper_tagging.insert(), self.firsts)
        if self.updates:
            conn.execute(paper_tagging.update().where(paper_tagging.c.pmid == sa.bindparam("p")), self.updates)
        for version, pmids in self.relabel.items():
            for chunk in chunks(pmids):
                conn.execute(paper_tagging.update().where(paper_tagging.c.pmid.in_(chunk))
                             .values(taxonomy_version=version))


Stored = dict[str, tuple[str | None, str | None]]  # pmid -> (tagging JSON, taxonomy version), None if untagged


def save_tag_inputs(conn: Connection, inputs: dict[str, str], fresh: set[str]) -> None:
    """Keep each paper's tagger input (:func:`tag_input_json`, by PMID; new rows for new papers)."""
    rows = [{"pmid": int(pmid), "tag_input": tag_input} for pmid, tag_input in inputs.items()]
    inserts = [r for r in rows if str(r["pmid"]) in fresh]
    if inserts:
        conn.execute(paper_tag_inputs.insert(), inserts)
    for r in rows:
        if str(r["pmid"]) in fresh:
            continue
        done = conn.execute(paper_tag_inputs.update().where(paper_tag_inputs.c.pmid == r["pmid"])
                            .values(tag_input=r["tag_input"]))
        if done.rowcount == 0:  # stored before tag inputs were kept
            conn.execute(paper_tag_inputs.insert().values(**r))


def save_taggings(conn: Connection, taggings: dict[str, Tagging], stored: Stored | None = None) -> Changes:
    """Write the taggings that differ from the stored ones. ``stored`` maps a stored paper's pmid to its
    (tagging JSON, taxonomy version), both None if it has none yet; papers the caller did not pass are
    looked up, and pmids of papers not stored are skipped. Where only the taxonomy version differs, one
    statement per version relabels the rows."""
    changes = Changes(examined=len(taggings))
    stored = dict(stored or {})
    for chunk in chunks([int(p) for p in taggings if p not in stored]):
        stored.update((str(r.pmid), (r.tagging, r.taxonomy_version)) for r in conn.execute(
            sa.select(papers.c.pmid, paper_tagging.c.tagging, paper_tagging.c.taxonomy_version)
            .select_from(papers.outerjoin(paper_tagging, paper_tagging.c.pmid == papers.c.pmid))
            .where(papers.c.pmid.in_(chunk))))
    writes = _Writes()
    for pmid, tagging in taggings.items():
        if pmid in stored:  # else: not a stored paper
            _plan_one(int(pmid), tagging, *stored[pmid], writes, changes)
    writes.run(conn)
    return changes


def _plan_one(pmid: int, tagging: Tagging, old: str | None, old_version: str | None, writes: _Writes,
              changes: Changes) -> None:
    """Add to ``writes`` what storing ``tagging`` over the stored one (``old``) takes."""
    text = tagging_json(tagging)
    if text == old:
        if old_version != tagging.taxonomy_version:
            writes.relabel.setdefault(tagging.taxonomy_version, []).append(pmid)
            changes.rewritten += 1
            changes.relabelled += 1
        return
    if old and tags_part(old) == tags_part(text):
        before = after = set()  # same tags; only relevance, evidence or version changed
    else:
        before = _tag_rows(orjson.loads(old)) if old else set()
        after = _tag_rows({"conditions": tagging.conditions, "interventions": tagging.interventions,
                           "designs": tagging.designs, "gut_skin_relevant": tagging.gut_skin_relevant})
    for kind, tag in before - after:
        writes.deletes.append({"p": pmid, "k": kind, "t": tag})
        changes.removed[tag] += 1
    for kind, tag in after - before:
        writes.inserts.append({"pmid": pmid, "kind": kind, "tag": tag})
        changes.added[tag] += 1
    row = {"tagging": text, "taxonomy_version": tagging.taxonomy_version,
           "relevance": tagging.relevance, "gut_skin_relevant": tagging.gut_skin_relevant}
    if old is None:
        writes.firsts.append({"pmid": pmid, **row})
    else:
        writes.updates.append({"p": pmid, **row})
    changes.changed += before != after
    changes.rewritten += 1


class TagsMixin(StorageBase):
    """Retagging and the taxonomy versions of stored taggings."""

    def retag(self, tagger: Tagger, *, batch: int = 2000,
              progress: Callable[[int], None] | None = None) -> TagChanges:
        """Tag every stored (not withdrawn) paper again, writing only what changed, one transaction per
        batch. Running it twice with the same taxonomy changes nothing the second time.

        A cycle storing a new revision meanwhile cannot be overwritten with tags of the old one: on SQLite
        each batch holds the write lock from its read to its write; on PostgreSQL (whose reads take no
        locks) each batch first locks its papers' rows, in PMID order as ``store_batch`` does, and only then
        reads their tagger input, so a revision is either stored before the batch reads it or waits until
        the batch has committed (and is then tagged by the cycle)."""
        total = Changes()
        last = -1
        while True:
            with self._tx("retagging papers", immediate=True) as conn:
                rows, last_seen = _retag_batch(conn, last, batch, lock=self._postgres)
                if last_seen is None:
                    break
                taggings = {str(r.pmid): tagger(_tag_input(conn, r.pmid, r.tag_input)) for r in rows}
                stored: Stored = {str(r.pmid): (r.tagging, r.taxonomy_version) for r in rows}
                total.merge(save_taggings(conn, taggings, stored))
            last = last_seen
            if progress:
                progress(len(rows))
        return total.frozen()

    def save_taggings(self, taggings: dict[str, Tagging]) -> TagChanges:
        """Store these taggings (pmid → tagging) where they differ from the stored ones."""
        with self._tx("saving tags") as conn:
            return save_taggings(conn, taggings).frozen()

    def taxonomy_versions(self) -> dict[str | None, int]:
        """How many stored papers each taxonomy version tagged (None: not tagged yet)."""
        with self._tx("reading taxonomy versions") as conn:
            rows = conn.execute(
                sa.select(paper_tagging.c.taxonomy_version, sa.func.count())
                .select_from(papers.outerjoin(paper_tagging, paper_tagging.c.pmid == papers.c.pmid))
                .where(papers.c.deleted.is_(False)).group_by(paper_tagging.c.taxonomy_version))
            return {r[0]: int(r[1]) for r in rows}


def _retag_batch(conn: Connection, after: int, size: int, *, lock: bool) -> tuple[list[Any], int | None]:
    """The next retag batch: each paper's PMID, tagger input and stored tagging, for up to ``size`` stored,
    not withdrawn papers after PMID ``after``; and the last PMID the batch covered (None: no papers left).
    ``lock`` (PostgreSQL): lock the papers' rows first, then read what they hold now."""
    query = (sa.select(papers.c.pmid, paper_tag_inputs.c.tag_input, paper_tagging.c.tagging,
                       paper_tagging.c.taxonomy_version)
             .select_from(papers
                          .outerjoin(paper_tag_inputs, paper_tag_inputs.c.pmid == papers.c.pmid)
                          .outerjoin(paper_tagging, paper_tagging.c.pmid == papers.c.pmid))
             .where(papers.c.deleted.is_(False)).order_by(papers.c.pmid))
    if not lock:
        found = list(conn.execute(query.where(papers.c.pmid > after).limit(size)))
        return found, (int(found[-1].pmid) if found else None)
    pmids = list(conn.execute(sa.select(papers.c.pmid).where(papers.c.pmid > after, papers.c.deleted.is_(False))
                              .order_by(papers.c.pmid).limit(size)).scalars())
    if not pmids:
        return [], None
    rows: list[Any] = []
    for chunk in chunks(pmids):
        conn.execute(sa.select(papers.c.pmid).where(papers.c.pmid.in_(chunk)).order_by(papers.c.pmid)
                     .with_for_update(key_share=True)).all()
    for chunk in chunks(pmids):  # a new statement: it sees what a transaction we waited for committed
        rows += conn.execute(query.where(papers.c.pmid.in_(chunk))).all()
    return rows, int(pmids[-1])


def _tag_input(conn: Connection, pmid: int, tag_input: str | None) -> TagInput:
    if tag_input is not None:
        return decode_tag_input(tag_input)
    # Stored before tag inputs were kept: decode the whole record once and keep its input from now on.
    from .papers import stored_article

    article = stored_article(conn, str(pmid))
    conn.execute(paper_tag_inputs.insert().values(pmid=pmid, tag_input=tag_input_json(article)))
    return TagInput.of(article)
