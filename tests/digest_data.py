"""Papers for the digest tests: the labelled dev set (real PMIDs, titles and abstracts rewritten from real
papers; the rows that have a PMID) plus real corpus records (which the tagger judges not relevant), and a
helper that stores a "week" of them the way a monitoring run does (tagged, linked, with a run log entry)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json

from monitor import pubmed
from monitor.digest import Vocabulary
from monitor.storage import Storage
from monitor.tagging import Taxonomy, load_taxonomy, tag
from monitor.types import Article, Journal, QueryReport
from tests.conftest import DATA, ROOT
from tests.tagging_data import LABELLED, row_to_article


@functools.lru_cache(maxsize=1)
def taxonomy() -> Taxonomy:
    return load_taxonomy(ROOT / "taxonomy.toml")


def vocabulary() -> Vocabulary:
    return Vocabulary.from_taxonomy(taxonomy())


def dev_articles() -> list[Article]:
    """The dev set as Articles, with the journal and year the rows carry (row_to_article leaves them out)."""
    out = []
    for line in LABELLED.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if not str(row.get("pmid") or "").isdigit():
            continue  # a few rows have no PMID; the store keys papers by PMID
        article = row_to_article(row)
        year = row.get("year")
        out.append(dataclasses.replace(
            article, journal=Journal(title=row.get("journal")),
            sort_date=dt.date(int(year), 1, 1) if year else None, pub_date=str(year) if year else None))
    return out


def corpus_articles() -> list[Article]:
    """Real NCBI records with authors and structured abstracts (biopython's and NCBI's test files)."""
    out: list[Article] = []
    for name in ("biopython/pubmed2.xml", "biopython/pubmed4.xml", "biopython/pubmed5.xml",
                 "ncbi-cxx-toolkit/pubmed11748934.xml"):
        out += [a for a in pubmed.parse((DATA / "efetch" / name).read_bytes()) if isinstance(a, Article)]
    return out


def store_week(store: Storage, articles: list[Article], at: dt.datetime, query: str = "gut-skin-axis",
               status: str = "ok", message: str | None = None) -> int:
    """Store ``articles`` as one monitoring run at ``at`` would: tagged, linked to ``query``, logged."""
    run = store.start_run(at)
    outcome = store.store_batch(articles, query=query, now=at, run_id=run,
                                tagger=functools.partial(tag, taxonomy=taxonomy()))
    store.record_query(run, QueryReport(name=query, status=status, found=len(articles), new=len(outcome.new),
                                        message=message))
    store.finish_run(run, at, "ok" if status == "ok" else "partial")
    return run


def relevant_pmids(articles: list[Article]) -> set[str]:
    return {a.pmid for a in articles if tag(a, taxonomy()).gut_skin_relevant}
