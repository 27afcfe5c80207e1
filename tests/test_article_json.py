"""``store.article_json`` must give exactly the text of ``json.dumps(Article.to_dict(), …)``.

``papers.content_hash`` is the SHA-256 of that text and decides whether a refetched paper changed: if the
fast serializer ever drifted from ``to_dict`` by one byte, every stored paper would count as "updated"
on its next fetch. Checked on every Article the recorded corpus parses to (articles, books, MEDLINE
citations).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import pytest

from monitor import pubmed
from monitor.storage.papers import article_json
from monitor.types import Article, Author, Correction, HistoryDate

EFETCH = Path(__file__).parent / "data" / "efetch"
FILES = sorted(p for p in EFETCH.rglob("*") if p.is_file() and p.name.endswith((".xml", ".xml.gz")))


def reference(article: Article) -> str:
    """The canonical form: the standard library encoding ``Article.to_dict()``."""
    return json.dumps(article.to_dict(), ensure_ascii=False, separators=(",", ":"))


def read(path: Path) -> list[Article]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [item for item in pubmed.parse(data) if isinstance(item, Article)]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(EFETCH)))
def test_matches_to_dict_on_the_corpus(path: Path) -> None:
    for article in read(path):
        assert article_json(article) == reference(article), article.pmid


def test_matches_to_dict_on_edge_values() -> None:
    article = Article(
        pmid="1",
        title='Quotes " and \\ backslashes, tab\t, NBSP\u00a0, emoji \U0001f9ec, control \x01',
        authors=(Author(last_name="Ødegård", affiliations=("A", "B")), Author(collective_name="Group")),
        corrections=(Correction("RetractionIn", "J 2020;1:2", "2"),),
        history=(HistoryDate("pubmed", dt.date(2020, 2, 29)),),
        sort_date=dt.date(2020, 1, 1),
    )
    assert article_json(article) == reference(article)
    assert article_json(Article(pmid="2")) == reference(Article(pmid="2"))  # every optional field empty
