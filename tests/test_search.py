"""Search: the query language, the FTS5 index kept in step with storage, ranking, every filter, and
`monitor search` / `monitor export` end to end (real SQLite files, the installed command, real PubMed
records, the real tagger)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import gzip
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from monitor import pubmed
from monitor.errors import SearchSyntaxError
from monitor.search import SearchRequest, parse_query, search
from monitor.storage import Storage
from monitor.storage.search import search_row
from monitor.tagging import load_taxonomy, tag
from monitor.types import AbstractSection, Article, Author, Correction, Deletion, Journal, PaperFilter, PublicationType
from tests.conftest import DATA, ROOT, SHIPPED_CONFIG, db_url
from tests.tagging_data import LABELLED, row_to_article

NOW = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=30)


@functools.cache
def corpus() -> tuple[Article, ...]:
    """Every real article in tests/data/efetch plus the 50 labelled gut–skin records (PMID-less ones get
    ids 9,000,000+)."""
    found: dict[str, Article] = {}
    for path in sorted((DATA / "efetch").rglob("*.xml*")):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for item in pubmed.parse(data):
            if isinstance(item, Article):
                found[item.pmid] = item
    for n, line in enumerate(LABELLED.read_text(encoding="utf-8").splitlines()):
        row = json.loads(line)
        row["pmid"] = row.get("pmid") or str(9_000_000 + n)
        found.setdefault(row["pmid"], row_to_article(row))
    return tuple(found.values())


@functools.cache
def taxonomy():
    return load_taxonomy(ROOT / "taxonomy.toml")


def tagger():
    return functools.partial(tag, taxonomy=taxonomy())


def store_all(store: Storage, articles, query: str = "gut-skin-axis", now: dt.datetime = NOW) -> None:
    items = list(articles)
    for i in range(0, len(items), 300):
        store.store_batch(items[i:i + 300], query=query, now=now, tagger=tagger())


@pytest.fixture
def store(tmp_path: Path):
    s = Storage.open(db_url(tmp_path / "m.sqlite3"))
    yield s
    s.close()


def pmids(hits) -> list[str]:
    return [h.paper.article.pmid for h in hits]


def art(pmid: str, title: str, abstract: str = "", **kw) -> Article:
    return Article(pmid=pmid, title=title, abstract=(AbstractSection(abstract),) if abstract else (),
                   sort_date=kw.pop("sort_date", dt.date(2024, 5, 1)), pub_date=kw.pop("pub_date", "2024 May 1"),
                   **kw)


# ------------------------------------------------------------------ the query language


@pytest.mark.parametrize(("text", "fts5"), [
    ("probiotic", '"probiotic"'),
    ("probiotic psoriasis", '"probiotic" AND "psoriasis"'),
    ("GLP-1 agonists", '"GLP-1" AND "agonists"'),
    ("IL-17", '"IL-17"'),
    ("TNF-α ß-glucan", '"TNF-α" AND "ß-glucan"'),
    ('"gut microbiota" acne', '"gut microbiota" AND "acne"'),
    ("probio*", '"probio"*'),
    ('"fecal micro"*', '"fecal micro"*'),
    ("acne OR rosacea", '"acne" OR "rosacea"'),
    ("diet acne OR rosacea", '"diet" AND ("acne" OR "rosacea")'),
    ("probiotic -mouse -mice", '("probiotic") NOT ("mouse" OR "mice")'),
    ("probiotic NOT mouse", '("probiotic") NOT ("mouse")'),
    ("(acne OR rosacea) (diet OR nutrition)", '("acne" OR "rosacea") AND ("diet" OR "nutrition")'),
    ("title:psoriasis", 'title : "psoriasis"'),
    ('author:"de Araujo" MESH:Probiotics', 'authors : "de Araujo" AND mesh : "Probiotics"'),
    ("foo:bar", '"foo:bar"'),  # not a field: searched as written
    ('say "hi', '"say" AND "hi"'),  # an unclosed quote runs to the end
    ('5" quote', '"5" AND "quote"'),
    ("a AND b", '"a" AND "b"'),
    ("OR acne OR", '"acne"'),  # dangling ORs are ignored
    ("acne )) (rosacea", '"acne" AND "rosacea"'),  # unbalanced brackets are forgiven
    ('"a ""quoted"" word"', '"a" AND "quoted" AND "word"'),
    ("NEAR(a b) ^x {title}", '"NEAR" AND ("a" AND "b") AND "^x" AND "{title}"'),  # FTS5 syntax is just text
    ("acne (-mouse)", '("acne") NOT ("mouse")'),
    ("acne OR -mouse", '("acne") NOT ("mouse")'),
    ("--x acne", '"--x" AND "acne"'),  # two hyphens are not an exclusion: searched as written
])
def test_user_syntax_becomes_a_safe_fts5_query(text: str, fts5: str) -> None:
    assert parse_query(text).fts5() == fts5


@pytest.mark.parametrize(("text", "message"), [
    ("", "has no words to search for"),
    ("  -- * () \"\" ", "has no words to search for"),
    ("-mouse", "only excludes words; add at least one word the papers must contain"),
    ("NOT mouse -rat", "only excludes words"),
])
def test_queries_with_nothing_to_find_are_refused(text: str, message: str) -> None:
    with pytest.raises(SearchSyntaxError, match=re.escape(message)):
        parse_query(text)


def test_every_tricky_query_runs_on_the_real_index(store: Storage) -> None:
    store_all(store, corpus())
    everything = PaperFilter()
    for text in ('"gut microbiota" OR microbiome -mouse', "IL-17", "GLP-1", "TNF-α", "probio*", "IL-1β",
                 "NEAR(gut skin)", 'title:"atopic dermatitis"', "author:Denorme", "C++ c# 5'-UTR", "a*",
                 "ω-3 OR omega-3", "Crohn's", "x:y:z", '"unclosed', "AND OR NOT", "α", "10.1172/JCI154225"):
        try:
            hits = search(store, SearchRequest(text, everything, limit=None))
        except SearchSyntaxError:
            assert text == "AND OR NOT", text
            continue
        assert all(h.score is not None for h in hits)
    # Exclusion really excludes, and the rest really contains the words.
    micro = search(store, SearchRequest('"gut microbiota" -mouse -mice', everything, limit=None))
    assert micro
    for h in micro:
        text = " ".join(search_row(h.paper.article)[c] for c in ("title", "abstract", "keywords", "mesh", "authors"))
        assert re.search(r"gut\W+microbiota", text, re.I) and not re.search(r"\bmouse\b|\bmice\b", text, re.I)


# ------------------------------------------------------------------ the index follows the store


def index_table(store: Storage) -> str:
    """The full-text index table of the store's backend (its PMID column first)."""
    return "paper_search" if store.engine.dialect.name == "postgresql" else "papers_fts"


def test_index_rows_from_sql_equal_the_rows_written_while_storing(store: Storage) -> None:
    """Migration 0005 (SQLite) or 0008 (PostgreSQL) and rebuild_search_index fill the index in SQL from the
    stored JSON; store_batch writes it from Articles. Both must give the same rows, on every corpus record
    (PostgreSQL keeps each field as its words: the SQL and the Python that split them must agree)."""
    store_all(store, corpus())
    key = "pmid" if index_table(store) == "paper_search" else "rowid"
    read = f"SELECT {key}, title, abstract, keywords, mesh, authors FROM {index_table(store)} ORDER BY {key}"
    with store.engine.connect() as conn:
        written = conn.exec_driver_sql(read).all()
    assert store.rebuild_search_index() == len(corpus())
    with store.engine.connect() as conn:
        rebuilt = conn.exec_driver_sql(read).all()
    assert len(written) == len(corpus()) and written == rebuilt
    expected = sorted(tuple(search_row(a).values()) for a in corpus())
    if index_table(store) == "paper_search":
        from monitor.storage.pgsearch import normalize

        expected = [(pmid, *map(normalize, texts)) for pmid, *texts in expected]
    assert [tuple(r) for r in written] == expected


def test_revisions_reindex_deletions_unindex_and_storing_twice_changes_nothing(store: Storage) -> None:
    a = art("101", "Zinc and acne vulgaris", "An open trial of oral zinc.")
    b = art("102", "Selenium status in psoriasis")
    store.store_batch([a, b], query="q", now=NOW)
    store.store_batch([a, b], query="q", now=LATER)  # unchanged: nothing re-indexed twice
    find = lambda text: pmids(search(store, SearchRequest(text, PaperFilter(), limit=None)))  # noqa: E731
    assert find("zinc") == ["101"] and find("selenium") == ["102"]
    revised = dataclasses.replace(a, version=2, title="Copper and acne vulgaris")
    store.store_batch([revised], query="q", now=LATER)
    assert find("zinc") == ["101"]  # still in the abstract
    assert find("title:zinc") == [] and find("copper") == ["101"]
    store.store_batch([Deletion("102")], query="q", now=LATER)
    assert find("selenium") == []
    back = dataclasses.replace(b, version=2)
    store.store_batch([back], query="q", now=LATER + dt.timedelta(days=1))  # NLM restores it
    assert find("selenium") == ["102"]
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT count(*) FROM {index_table(store)}").scalar() == 2


def test_upgrade_from_0003_indexes_stored_papers(tmp_path: Path) -> None:
    from monitor import migrations

    url = db_url(tmp_path / "old.sqlite3")
    with Storage.open(url, migrate=False) as s:
        migrations.upgrade(s.engine, "0003")

    class Before0005(Storage):
        """Storage at 0003 had no index yet: it stores without touching one, as the code of that time did."""

        _search_backend = None

    old = Before0005(sa.create_engine(url))
    old.store_batch([art("7", "Rosacea and Helicobacter pylori"), art("8", "Withdrawn rosacea paper")],
                    query="q", now=NOW)
    old.store_batch([Deletion("8")], query="q", now=NOW)
    old.close()
    with Storage.open(url) as s:
        assert pmids(search(s, SearchRequest("rosacea", PaperFilter()))) == ["7"]


# ------------------------------------------------------------------ ranking and filters


def test_a_title_hit_ranks_above_an_abstract_hit(store: Storage) -> None:
    in_abstract = art("201", "Diet and the skin",
                      "We studied rosacea patients who took rifaximin for small intestinal bacterial overgrowth.")
    in_title = art("200", "Rifaximin for rosacea", "A trial of an oral antibiotic in patients with skin redness.")
    store.store_batch([in_abstract, in_title], query="q", now=NOW)
    hits = search(store, SearchRequest("rifaximin", PaperFilter()))
    assert pmids(hits) == ["200", "201"]
    assert hits[0].score < hits[1].score  # bm25: lower is better
    assert "\x02rifaximin\x03" in hits[1].snippet.lower()  # the abstract hit shows its match
    by_date = search(store, SearchRequest("rifaximin", PaperFilter(), sort="date"))
    assert pmids(by_date) == ["201", "200"]  # same date: higher PMID first


def test_every_filter(store: Storage) -> None:
    """Each filter against an oracle computed from what `iter_papers` says is stored."""
    papers = list(corpus())
    store_all(store, papers[:900], query="gut-skin-axis", now=NOW)
    store_all(store, papers[600:], query="probiotics-fmt", now=LATER)  # 300 shared, linked to both
    retracted = dataclasses.replace(papers[0], version=papers[0].version + 1,
                                    corrections=(Correction("RetractionIn", "x", "1"),),
                                    publication_types=(PublicationType("Retracted Publication"),))
    store.store_batch([retracted], query="gut-skin-axis", now=LATER, tagger=tagger())
    stored = {p.article.pmid: p for p in store.iter_papers()}

    def tags(p, kind):
        t = p.tagging
        return set() if t is None else set({"condition": t.conditions, "intervention": t.interventions,
                                            "design": t.designs}[kind])

    cases = [
        (PaperFilter(conditions=("atopic_dermatitis",)), lambda p: "atopic_dermatitis" in tags(p, "condition")),
        (PaperFilter(conditions=("acne", "rosacea")), lambda p: tags(p, "condition") & {"acne", "rosacea"}),
        (PaperFilter(interventions=("probiotics",)), lambda p: "probiotics" in tags(p, "intervention")),
        (PaperFilter(designs=("rct",)), lambda p: "rct" in tags(p, "design")),
        (PaperFilter(designs=("review",), conditions=("psoriasis",)),
         lambda p: "review" in tags(p, "design") and "psoriasis" in tags(p, "condition")),
        (PaperFilter(queries=("probiotics-fmt",)), lambda p: "probiotics-fmt" in dict(p.queries)),
        (PaperFilter(since=dt.date(2019, 1, 1)), lambda p: p.article.sort_date and p.article.sort_date >= dt.date(2019, 1, 1)),
        (PaperFilter(until=dt.date(2000, 12, 31)), lambda p: p.article.sort_date and p.article.sort_date <= dt.date(2000, 12, 31)),
        (PaperFilter(since=LATER.date(), date_field="found"), lambda p: p.first_seen_at >= LATER),
        (PaperFilter(until=NOW.date(), date_field="found"), lambda p: p.first_seen_at.date() <= NOW.date()),
        (PaperFilter(relevant_only=True), lambda p: p.tagging is not None and p.tagging.gut_skin_relevant),
        (PaperFilter(exclude_retracted=True), lambda p: not p.article.is_retracted),
    ]
    for filters, keep in cases:
        expected = {pmid for pmid, p in stored.items() if keep(p)}
        assert expected, filters  # every filter is exercised on papers that pass it
        assert expected != set(stored), filters  # …and on papers that do not
        listed = search(store, SearchRequest(None, filters, limit=None))
        assert set(pmids(listed)) == expected, filters
        assert [p.article.pmid for p in store.iter_papers(filters=filters)] == sorted(expected, key=int)
    assert retracted.pmid not in pmids(search(store, SearchRequest(None, PaperFilter(exclude_retracted=True), limit=None)))
    # Without text the newest publications come first.
    dates = [h.paper.article.sort_date or dt.date.min for h in search(store, SearchRequest(None, PaperFilter(), limit=50))]
    assert dates == sorted(dates, reverse=True)


# ------------------------------------------------------------------ the command


def env_for(db: Path) -> dict[str, str]:
    return {"MONITOR_CONFIG": str(SHIPPED_CONFIG), "MONITOR_DB_URL": db_url(db), "COLUMNS": "160"}


def trial(pmid: str, title: str, abstract: str, keywords: tuple[str, ...] = ("Probiotics", "Psoriasis")) -> Article:
    return art(pmid, title, abstract, publication_types=(PublicationType("Randomized Controlled Trial"),),
               journal=Journal(title="Journal of Dermatological Treatment", iso_abbreviation="J Dermatolog Treat",
                               volume="33", issue="2", pages="812-19"),
               authors=(Author(last_name="Øster", fore_name="Jürgen"),), keywords=keywords)


@pytest.fixture
def acceptance_db(tmp_path: Path) -> Path:
    db = tmp_path / "m.sqlite3"
    with Storage.open(db_url(db)) as s:
        store_all(s, corpus())
        store_all(s, [
            trial("9100001", "Probiotic supplementation in plaque psoriasis: a randomized, double-blind, "
                  "placebo-controlled trial", "Adults with plaque psoriasis received a multi-strain probiotic "
                  "or placebo for 12 weeks. PASI fell more with the probiotic."),
            trial("9100002", "Gut microbiota modulation in psoriasis: a randomized controlled trial",
                  "Patients with psoriasis were randomized to oral Lactobacillus probiotics or placebo; the "
                  "probiotic arm improved."),
            trial("9100003", "A probiotic for atopic dermatitis: a randomized controlled trial",
                  "Children with atopic dermatitis received oral probiotics or placebo.",
                  keywords=("Probiotics", "Atopic dermatitis")),
            art("9100004", "Probiotics and the gut-skin axis in psoriasis: a narrative review",
                "We review probiotic trials in psoriasis patients and the gut microbiome.",
                publication_types=(PublicationType("Review"),)),
        ])
    return db


def test_acceptance_probiotic_psoriasis_rct(acceptance_db: Path, run_monitor) -> None:
    env = env_for(acceptance_db)
    result = run_monitor("search", "probiotic", "--condition", "psoriasis", "--design", "rct", "--format", "json",
                         "--limit", "0", env=env)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    everything = [json.loads(line) for line in run_monitor("export", env=env).stdout.split("\n") if line]
    word = re.compile(r"\bprobiotics?\b", re.I)  # the index stems: probiotic = probiotics
    expected = {p["pmid"] for p in everything
                if "psoriasis" in p["conditions"] and "rct" in p["designs"] and not p["deleted"]
                and word.search(" ".join([p["title"], p["abstract_text"], *p["keywords"],
                                          *(m["descriptor"] for m in p["mesh"])]))}
    assert {"9100001", "9100002"} <= expected and "9100003" not in expected and "9100004" not in expected
    assert {p["pmid"] for p in got} == expected
    scores = [p["search"]["score"] for p in got]
    assert scores == sorted(scores) and [p["search"]["rank"] for p in got] == list(range(1, len(got) + 1))
    assert got[0]["pmid"] == "9100001"  # the word in the title twice beats one mention in the title
    assert all("**" in p["search"]["snippet"] for p in got)
    table = run_monitor("search", "probiotic", "--condition", "Psoriasis", "--design", "RCT", env=env)
    assert table.returncode == 0, table.stderr
    assert "Probiotic supplementation in plaque psoriasis" in table.stdout and "9100002" in table.stdout
    assert f"{len(expected)} papers" in table.stdout


def test_search_errors_are_one_line_exit_2(acceptance_db: Path, run_monitor) -> None:
    env = env_for(acceptance_db)
    for args, message in [
        (("search",), "monitor: error: give words to search for, or at least one filter (see monitor search --help)"),
        (("search", "-mouse"), "monitor: error: search '-mouse' only excludes words; add at least one word the "
                               "papers must contain"),
        (("search", '"--"'), "monitor: error: search '\"--\"' has no words to search for (punctuation alone is "
                             "not indexed); give a word, a \"phrase\" or a prefix*"),
        (("search", "x", "--condition", "chilblains"), "monitor: error: --condition: unknown tag 'chilblains'; "
                                                       "known: atopic_dermatitis, psoriasis, rosacea"),
        (("export", "--design", "anecdote"), "monitor: error: --design: unknown tag 'anecdote'; known: rct"),
        (("search", "x", "--since", "2024-13"), "monitor: error: --since: expected a year (2024), a month "
                                                "(2024-03) or a day (2024-03-15), got '2024-13'"),
        (("search", "x", "--since", "2025", "--until", "2024"), "monitor: error: --since 2025 is after --until 2024"),
        (("search", "x", "--query", "nope"), "monitor: error: --query: no query named 'nope' (known: "),
        (("search", "x", "--out", "f.ris"), "monitor: error: --out needs a machine format"),
        (("search", "x", "--format", "xml"), "monitor: error: Invalid value for '--format': 'xml' is not one of"),
        (("search", "x", "--limit", "-1"), "monitor: error: Invalid value for '--limit': -1 is not in the range x>=0."),
    ]:
        result = run_monitor(*args, env=env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(message), (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_export_filters_keep_the_old_default(acceptance_db: Path, run_monitor) -> None:
    env = env_for(acceptance_db)
    everything = [json.loads(line) for line in run_monitor("export", env=env).stdout.split("\n") if line]
    assert len(everything) == len(corpus()) + 4
    rcts = run_monitor("export", "--design", "rct", "--condition", "psoriasis", "--format", "csv", env=env)
    assert rcts.returncode == 0, rcts.stderr
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(rcts.stdout)))
    expected = [p["pmid"] for p in everything if "rct" in p["designs"] and "psoriasis" in p["conditions"]]
    assert [r["pmid"] for r in rows] == expected and "9100001" in expected


# ------------------------------------------------------------------ reference-manager formats


UNICODE = Article(
    pmid="9200001", version=1, title="Köbner phenomenon, ß-glucan & IL-17–TNF-α signalling in 50% of "
    "patients: the {gut}–skin axis_revisited",
    abstract=(AbstractSection("Straße cohort: ω-3 and β-carotene lowered IL-1β by 30% ($12 per dose).", "RESULTS",
                              "RESULTS"),),
    authors=(Author(last_name="Ødegård", fore_name="Åsa"), Author(last_name="Müller", fore_name="Jürgen K",
                                                                    initials="JK"),
             Author(collective_name="Gut–Skin Study Group & Co")),
    journal=Journal(title="Acta Dermato-Venereologica", iso_abbreviation="Acta Derm Venereol", issn="1651-2057",
                    volume="104", issue="3", pages="adv1234"),
    pub_date="2024 Mar 5", sort_date=dt.date(2024, 3, 5), doi="10.2340/actadv.v104.1234", pmcid="PMC1234567",
    languages=("eng",), keywords=("Köbner", "gut–skin axis"),
    mesh=(), publication_types=(PublicationType("Randomized Controlled Trial"),))


def expected_keywords(out: dict[str, str]) -> list[str]:
    """Author keywords, then the monitor's tags as the JSON export reports them."""
    (record,) = json.loads(out["json"])
    tags = [f"condition:{t}" for t in record["conditions"]] + [f"intervention:{t}" for t in record["interventions"]]
    tags += [f"design:{t}" for t in record["designs"]] + (["gut-skin-relevant"] if record["gut_skin_relevant"] else [])
    assert "design:rct" in tags
    return ["Köbner", "gut–skin axis", *tags]


def export_formats(tmp_path: Path, run_monitor, article: Article, *extra: str) -> dict[str, str]:
    db = tmp_path / "u.sqlite3"
    with Storage.open(db_url(db)) as s:
        store_all(s, [article] + [a for a in corpus() if a.journal.pages and "-" in a.journal.pages][:5])
    out = {}
    for fmt in ("ris", "bibtex", "csl-json", "json", "jsonl", "csv"):
        result = run_monitor("search", *extra, "--format", fmt, "--limit", "0", env=env_for(db))
        assert result.returncode == 0, result.stderr
        out[fmt] = result.stdout
        target = tmp_path / f"all.{fmt}"
        exported = run_monitor("export", "--format", fmt, "--out", str(target), env=env_for(db))
        assert exported.returncode == 0, exported.stderr
        assert exported.stderr.strip() == f"wrote 6 papers to {target}"
    return out


def test_ris_parses_with_rispy_and_keeps_every_field(tmp_path: Path, run_monitor) -> None:
    import rispy

    out = export_formats(tmp_path, run_monitor, UNICODE, "Köbner")
    (entry,) = rispy.loads(out["ris"])
    assert entry["type_of_reference"] == "JOUR"
    assert entry["title"] == UNICODE.title
    assert entry["authors"] == ["Ødegård, Åsa", "Müller, Jürgen K", "Gut–Skin Study Group & Co"]
    assert entry["secondary_title"] == "Acta Dermato-Venereologica"
    assert entry["alternate_title1"] == "Acta Derm Venereol"
    assert (entry["year"], entry["date"]) == ("2024", "2024/03/05")
    assert (entry["volume"], entry["number"], entry["start_page"]) == ("104", "3", "adv1234")
    assert (entry["doi"], entry["accession_number"], entry["issn"]) == (UNICODE.doi, "9200001", "1651-2057")
    assert entry["abstract"] == UNICODE.abstract_text
    assert entry["keywords"] == expected_keywords(out)
    assert entry["urls"] == ["https://pubmed.ncbi.nlm.nih.gov/9200001/"]
    whole = rispy.loads((tmp_path / "all.ris").read_text(encoding="utf-8"))
    assert len(whole) == 6
    for e in whole:
        if e["accession_number"] != "9200001":  # real records with page ranges: SP/EP expanded
            assert int(e["end_page"].lstrip("Ee")) >= int(e["start_page"].lstrip("Ee")) if (
                e["start_page"].lstrip("Ee").isdigit() and e["end_page"].lstrip("Ee").isdigit()) else True
            assert e["authors"] and e["year"] and e["secondary_title"]


def test_bibtex_parses_with_bibtexparser_and_keeps_every_field(tmp_path: Path, run_monitor) -> None:
    import bibtexparser
    from bibtexparser.middlewares import LatexDecodingMiddleware

    out = export_formats(tmp_path, run_monitor, UNICODE, "Köbner")
    library = bibtexparser.parse_string(out["bibtex"], append_middleware=[LatexDecodingMiddleware()])
    assert not library.failed_blocks
    (entry,) = library.entries
    fields = {f.key: f.value for f in entry.fields}
    assert (entry.entry_type, entry.key) == ("article", "pmid9200001")
    assert fields["title"] == UNICODE.title
    assert fields["author"] == "Ødegård, Åsa and Müller, Jürgen K and Gut–Skin Study Group & Co"
    assert fields["journal"] == "Acta Dermato-Venereologica"
    assert (fields["year"], fields["month"], fields["volume"], fields["number"], fields["pages"]) == (
        "2024", "3", "104", "3", "adv1234")
    assert (fields["doi"], fields["pmid"], fields["pmcid"], fields["issn"]) == (
        UNICODE.doi, "9200001", "PMC1234567", "1651-2057")
    assert fields["abstract"] == UNICODE.abstract_text
    assert fields["keywords"] == ", ".join(expected_keywords(out))
    whole = bibtexparser.parse_string((tmp_path / "all.bibtex").read_text(encoding="utf-8"))
    assert not whole.failed_blocks and len(whole.entries) == 6
    assert len({e.key for e in whole.entries}) == 6
    for e in whole.entries:
        f = {x.key: x.value for x in e.fields}
        if f["pmid"] != "9200001":
            assert "--" in f["pages"] and f["author"] and f["year"] and f["journal"]


def test_csl_json_and_json_parse_and_keep_every_field(tmp_path: Path, run_monitor) -> None:
    out = export_formats(tmp_path, run_monitor, UNICODE, "kobner")  # accents are folded when matching
    (item,) = json.loads(out["csl-json"])
    assert item["type"] == "article-journal" and item["title"] == UNICODE.title
    assert item["author"] == [{"family": "Ødegård", "given": "Åsa"}, {"family": "Müller", "given": "Jürgen K"},
                              {"literal": "Gut–Skin Study Group & Co"}]
    assert (item["container-title"], item["container-title-short"]) == ("Acta Dermato-Venereologica",
                                                                        "Acta Derm Venereol")
    assert item["issued"] == {"date-parts": [[2024, 3, 5]]}
    assert (item["volume"], item["issue"], item["page"], item["DOI"], item["PMID"], item["PMCID"]) == (
        "104", "3", "adv1234", UNICODE.doi, "9200001", "PMC1234567")
    assert item["abstract"] == UNICODE.abstract_text and item["keyword"] == ", ".join(expected_keywords(out))
    assert len(json.loads((tmp_path / "all.csl-json").read_text(encoding="utf-8"))) == 6
    (record,) = json.loads(out["json"])
    assert record["title"] == UNICODE.title and record["authors"][0]["last_name"] == "Ødegård"
    assert "**Köbner**" in record["search"]["snippet"] or "**Köbner**" in record["title"] + record["search"]["snippet"]
    assert [json.loads(line)["pmid"] for line in out["jsonl"].splitlines()] == ["9200001"]
    assert len(json.loads((tmp_path / "all.json").read_text(encoding="utf-8"))) == 6
    import csv
    import io

    (row,) = list(csv.DictReader(io.StringIO(out["csv"])))
    assert row["rank"] == "1" and row["title"] == UNICODE.title and row["pmid"] == "9200001"


@pytest.mark.parametrize("text", ["Köbner", "kobner", "KÖBNER", "ß-glucan", "Straße", "TNF-α", "IL-1β", "ω-3",
                                  '"gut–skin axis"', "gut-skin", "β-carotene", "Ødegård"])
def test_unicode_terms_find_the_paper(store: Storage, text: str) -> None:
    store.store_batch([UNICODE, *corpus()[:50]], query="q", now=NOW)
    assert pmids(search(store, SearchRequest(text, PaperFilter()))) == ["9200001"]


def test_labels_and_synonyms_users_see_work_as_filter_values(acceptance_db: Path, run_monitor) -> None:
    env = env_for(acceptance_db)
    by_id = run_monitor("export", "--condition", "atopic_dermatitis", env=env)
    assert by_id.returncode == 0, by_id.stderr
    for name in ("eczema", "Eczema", "Atopic dermatitis / eczema", "atopic-dermatitis", "AD"):
        same = run_monitor("export", "--condition", name, env=env)
        assert same.returncode == 0 and same.stdout == by_id.stdout, (name, same.stderr)
    rct = run_monitor("export", "--design", "randomized controlled trial", env=env)
    assert rct.returncode == 0 and rct.stdout == run_monitor("export", "--design", "rct", env=env).stdout
