"""Search parity: the same ~1,600 real records stored in SQLite (FTS5) and in PostgreSQL (tsvector), the same
user queries run on both, the same result sets — apart from the differences listed below, each of which is
checked against the two engines' own stemmers or PostgreSQL's ``unaccent`` rules rather than taken on trust.

Listed differences (README, Search; docs/deploy-postgres.md):

- **Stemming.** SQLite's FTS5 uses the original Porter stemmer, PostgreSQL the Snowball English stemmer
  (Porter 2). Most words stem alike; some do not: Porter stems *generalized*, *general*, *generation* and
  *generated* all to "gener", Snowball keeps "general" apart; Snowball stems *randomly* to "random" like
  *randomized*, Porter keeps "randomli". A paper found on one backend only must contain a word that this
  backend's stemmer conflates with the query word and the other's does not.
- **Folding.** PostgreSQL's ``unaccent`` also folds letters that have no accent to remove in Unicode (ß → ss,
  Ø → O, Æ → AE …), SQLite's ``remove_diacritics`` does not: ``strasse`` finds *Straße* and ``odegard`` finds
  *Ødegård* on PostgreSQL only (``Straße`` and ``Ødegård`` find them on both).

Needs a PostgreSQL server (the ``postgres`` marker: the PostgreSQL pass of ``.ci/run``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitor.search import SearchRequest, search
from monitor.storage import Storage
from monitor.storage.search import search_row
from monitor.types import PaperFilter
from tests.conftest import db_url
from tests.test_search import UNICODE, corpus, store_all

pytestmark = pytest.mark.postgres

SAME = [
    # words, stems, plurals
    "probiotic", "probiotics", "studies", "study", "inflammation", "inflammatory", "randomised", "zinc",
    "children", "mice", "women", "cells",
    # several words, phrases, prefixes
    "probiotic psoriasis", "vitamin D", "patients with psoriasis", '"gut microbiota"', '"quality of life"',
    '"patients with"', "probio*", '"fecal micro"*', "a*",
    # OR, NOT, grouping
    "acne OR rosacea", "diet acne OR rosacea", "(acne OR rosacea) (diet OR nutrition)", "probiotic NOT mouse",
    '"gut microbiota" -mouse -mice', "ω-3 OR omega-3",
    # fields
    "title:psoriasis", 'title:"atopic dermatitis"', "abstract:probiotic", "keyword:microbiome", "mesh:humans",
    "author:smith", 'author:"de Araujo"', "abstract:microbiota -author:smith", "title:skin OR author:smith",
    # terms with punctuation, accents, Greek letters
    "IL-17", "GLP-1", "TNF-α", "IL-1β", "Crohn's", "10.1172/JCI154225", "kobner", "Köbner", "ß-glucan", "Straße",
    "Ødegård", '"gut–skin axis"', "x:y:z", '"unclosed', "NEAR(gut skin)",
    # words that are JSON keys or values of the stored records: they match only papers that say them
    "article", "journal", "null", "true", "abstract", "author", "the",
]
STEMMING = ["generalized", "randomized"]
FOLDING = ["strasse", "odegard"]
FILTERED = [
    ("probiotic", PaperFilter(conditions=("atopic_dermatitis",))),
    ("cells", PaperFilter(designs=("animal",))),
    ("patients", PaperFilter(since=__import__("datetime").date(2015, 1, 1))),
    ("microbiota", PaperFilter(relevant_only=True)),
]


@pytest.fixture
def both(tmp_path: Path):  # type: ignore[no-untyped-def]
    sqlite = Storage.open(f"sqlite:///{tmp_path}/parity.sqlite3")  # SQLite whatever the pass
    postgres = Storage.open(db_url(tmp_path / "parity-pg.sqlite3"))
    assert postgres.engine.dialect.name == "postgresql"
    papers = list(corpus()) + [UNICODE]
    for store in (sqlite, postgres):
        store_all(store, papers)
    yield sqlite, postgres
    sqlite.close()
    postgres.close()


def found(store: Storage, text: str, filters: PaperFilter | None = None) -> set[str]:
    request = SearchRequest(text, filters or PaperFilter(), limit=None)
    return {h.paper.article.pmid for h in search(store, request)}


def texts() -> dict[str, str]:
    """Each paper's indexed text (what search_row gives both backends)."""
    papers = list(corpus()) + [UNICODE]
    return {a.pmid: " ".join(v for k, v in search_row(a).items() if k != "rowid") for a in papers}


def sqlite_stemmer(store: Storage) -> Callable[[str], str]:
    """SQLite's own stem of a word: index it in a scratch FTS5 table with the search index's tokenizer and
    read the term back."""
    conn = store.engine.raw_connection()
    cur = conn.cursor()
    cur.execute("CREATE VIRTUAL TABLE temp.stems USING fts5(x, tokenize = 'porter unicode61 remove_diacritics 2')")
    cur.execute("CREATE VIRTUAL TABLE temp.stem_terms USING fts5vocab(temp, stems, 'row')")

    def stem(word: str) -> str:
        cur.execute("DELETE FROM temp.stems")
        cur.execute("INSERT INTO temp.stems (x) VALUES (?)", (word,))
        (term,) = cur.execute("SELECT term FROM temp.stem_terms").fetchone()
        return str(term)

    return stem


def postgres_stemmer(store: Storage) -> Callable[[str], str]:
    """PostgreSQL's stem of a word under the search configuration."""
    def stem(word: str) -> str:
        with store.engine.connect() as conn:
            return str(conn.execute(sa.text("SELECT (ts_lexize('monitor_english', unaccent(lower(:w))))[1]"),
                                    {"w": word}).scalar())

    return stem


def test_the_same_queries_find_the_same_papers_on_both_backends(both) -> None:  # type: ignore[no-untyped-def]
    sqlite, postgres = both
    assert len(SAME) >= 30
    differ = {q: (found(sqlite, q), found(postgres, q)) for q in SAME}
    differ = {q: (a, b) for q, (a, b) in differ.items() if a != b}
    assert differ == {}, {q: (sorted(a - b)[:5], sorted(b - a)[:5]) for q, (a, b) in differ.items()}
    for text, filters in FILTERED:
        a, b = found(sqlite, text, filters), found(postgres, text, filters)
        assert a == b and a, (text, filters)
    # The top hit agrees where one paper is clearly about the thing (ranking is not the same function).
    best = {q: [search(s, SearchRequest(q, PaperFilter(), limit=1))[0].paper.article.pmid for s in both]
            for q in ("kobner", "probiotic psoriasis", 'author:"de Araujo"')}
    assert all(a == b for a, b in best.values()), best


def test_json_keys_and_values_match_only_papers_that_say_them(both) -> None:  # type: ignore[no-untyped-def]
    """The old PostgreSQL search matched the stored JSON, so `article`, `journal`, `null`, `true` found (nearly)
    every paper. Now a hit must have the word (or a word it stems from) in its indexed text, and every paper
    with the word itself is a hit."""
    everything = texts()
    for store in both:
        for word in ("article", "journal", "null", "true", "abstract", "author"):
            hits = found(store, word)
            loose = {p for p, t in everything.items() if re.search(rf"\b{word[:5]}", t, re.I)}
            exact = {p for p, t in everything.items() if re.search(rf"\b{word}\b", t, re.I)}
            assert exact <= hits <= loose, (store.engine.dialect.name, word)
            assert len(hits) < len(everything) / 10, (store.engine.dialect.name, word)


def test_stemming_differences_are_what_the_stemmers_say(both) -> None:  # type: ignore[no-untyped-def]
    sqlite, postgres = both
    stem_sqlite, stem_pg = sqlite_stemmer(sqlite), postgres_stemmer(postgres)
    everything = texts()
    for query in STEMMING:
        a, b = found(sqlite, query), found(postgres, query)
        assert a != b, query  # still a difference (else move the query to SAME)
        for pmid in a ^ b:
            words = {w.lower() for w in re.findall(r"[^\W_]+", everything[pmid])}
            if pmid in a:  # SQLite only: Porter conflates one of its words with the query, Snowball does not
                why = [w for w in words if stem_sqlite(w) == stem_sqlite(query) and stem_pg(w) != stem_pg(query)]
            else:
                why = [w for w in words if stem_pg(w) == stem_pg(query) and stem_sqlite(w) != stem_sqlite(query)]
            assert why, (query, pmid)


def test_folding_differences_are_what_unaccent_says(both) -> None:  # type: ignore[no-untyped-def]
    sqlite, postgres = both
    everything = texts()
    with postgres.engine.connect() as conn:
        def fold(text: str) -> str:
            return str(conn.execute(sa.text("SELECT lower(unaccent(:t))"), {"t": text}).scalar())

        for query in FOLDING:
            a, b = found(sqlite, query), found(postgres, query)
            assert a < b, query  # PostgreSQL finds more, never less
            for pmid in b - a:
                assert query in fold(everything[pmid]) and query not in everything[pmid].lower(), (query, pmid)


def test_postgresql_plans_each_search_for_its_own_words(both) -> None:  # type: ignore[no-untyped-def]
    """psycopg prepares a statement after five executions, and PostgreSQL then may switch it to a generic
    plan that cannot know how many papers a word matches (a search's statements differ only in their bound
    words): at a million papers that made typical searches 2-4x slower (bench/RESULTS.md, Search). Every
    connection plans each execution for its own parameters."""
    _, postgres = both
    for _ in range(8):  # past psycopg's prepare threshold on one pooled connection
        search(postgres, SearchRequest("probiotic", PaperFilter(), limit=5))
    with postgres.engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_custom_plan"
