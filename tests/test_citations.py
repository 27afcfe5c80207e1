"""Reference-manager exports read back by clients we did not write, for every corpus record: pandoc's
citeproc (Debian's pandoc) reading the BibTeX and the CSL-JSON and rendering them with a CSL style, and
bibtexparser / rispy reading BibTeX and RIS. Title, authors, DOI and year (and the journal) must come out
as the JSONL export has them.

Two differences are allowed, each counted and each the only difference where it occurs (README, "Search",
lists them):

- pandoc's smart punctuation turns quotation marks typographic, in BibTeX and CSL-JSON alike: a straight
  apostrophe becomes ’ (O'Leary → O’Leary), and in CSL-JSON a quoted phrase becomes “…” whether its marks
  were ' or ". pandoc 2.17 keeps no LaTeX spelling of a straight apostrophe (``\\textquotesingle`` is
  dropped) and CSL-JSON has no escape for it: for pandoc, every quotation mark compares equal to every
  other, and nothing else is forgiven.
- RIS writes a collective author's commas as semicolons (a comma splits family from given names there).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from monitor.citations import bibtex_title, latex_escape, ris_collective
from monitor.storage import Storage
from monitor.types import Article, Author, Journal
from tests.conftest import DATA, SHIPPED_CONFIG, db_url, monitor_executable, require_program
from tests.test_search import corpus, store_all

FIELDS_CSL = DATA / "citeproc" / "fields.csl"
# The file names a user would give them (pandoc tells a bibliography's format by its extension).
FILES = {"jsonl": "all.jsonl", "bibtex": "all.bib", "csl-json": "all.csl.json", "ris": "all.ris"}
_SPACING = re.compile(r"[ \t\n\r\f\v\x1c-\x1f\x85\u2028\u2029]+")
QUOTES = str.maketrans({c: "'" for c in "'\"‘’“”"})  # pandoc's smart quotes: every quotation mark alike


class Exports(NamedTuple):
    folder: Path
    records: dict[str, dict[str, Any]]  # pmid -> JSONL record

    def path(self, fmt: str) -> Path:
        return self.folder / FILES[fmt]


def export_all(folder: Path, articles: Iterable[Article]) -> Exports:
    """Store ``articles`` (tagged, as a run stores them) and export them with the installed command."""
    db = folder / "c.sqlite3"
    with Storage.open(db_url(db)) as store:
        store_all(store, articles)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "NCBI_"))}
    env.update(MONITOR_CONFIG=str(SHIPPED_CONFIG), MONITOR_DB_URL=db_url(db))
    for fmt, name in FILES.items():
        done = subprocess.run([monitor_executable(), "export", "--format", fmt, "--out", str(folder / name)],
                              capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
    lines = (folder / FILES["jsonl"]).read_text(encoding="utf-8").split("\n")[:-1]  # not splitlines(): U+2028
    return Exports(folder, {r["pmid"]: r for r in map(json.loads, lines)})


@pytest.fixture
def pandoc_installed() -> str:
    """Asked for before the exports are built, so a missing pandoc skips (or fails) at once."""
    return require_program("pandoc")


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    """Every corpus record (real PubMed records and the labelled gut–skin set) in every format."""
    return export_all(tmp_path_factory.mktemp("citations"), corpus())


# ------------------------------------------------------------------ what the JSONL export says


def jsonl_names(record: dict[str, Any]) -> list[str]:
    """Authors as "Family, Given" (given: fore name, else initials); a collective name as written."""
    out = []
    for a in record["authors"]:
        if a.get("collective_name"):
            out.append(_SPACING.sub(" ", a["collective_name"]).strip(" "))
        elif a.get("last_name"):
            given = a.get("fore_name") or a.get("initials")
            out.append(f"{a['last_name']}, {given}" if given else a["last_name"])
    return out


def expected(record: dict[str, Any]) -> dict[str, Any]:
    # Line breaks and runs of spaces are one space in every format (no-break spaces are kept).
    return {"title": _SPACING.sub(" ", record["title"]).strip(" "), "authors": jsonl_names(record),
            "doi": record.get("doi") or None, "year": record.get("year"),
            "journal": (record.get("journal") or {}).get("title") or None}


class Comparison:
    """Field mismatches over many records, with the records that differ only by pandoc's quotes."""

    def __init__(self, client: str) -> None:
        self.client = client
        self.checked = 0
        self.mismatches: dict[str, list[tuple[str, Any, Any]]] = collections.defaultdict(list)
        self.quotes_only: set[str] = set()

    def check(self, pmid: str, got: dict[str, Any], want: dict[str, Any], smart_quotes: bool = False) -> None:
        self.checked += 1
        for field, value in want.items():
            if got.get(field) == value:
                continue
            if smart_quotes and _unsmart(got.get(field)) == _unsmart(value):
                self.quotes_only.add(pmid)
                continue
            self.mismatches[field].append((pmid, got.get(field), value))

    def report(self) -> str:
        counts = {f: len(v) for f, v in self.mismatches.items()}
        examples = [(field, pmid, *_first_difference(got, want)) for field, v in self.mismatches.items()
                    for pmid, got, want in v[:3]]
        return (f"{self.client}: {self.checked} records, mismatches {counts or 0}, typographic quotes only in "
                f"{len(self.quotes_only)}" + (f"; e.g. {examples}" if examples else ""))


    def assert_clean(self, records: int) -> None:
        print(self.report())
        assert self.checked == records, self.report()
        assert not self.mismatches, self.report()


def _first_difference(got: Any, want: Any) -> tuple[Any, Any]:
    """The first differing element of two lists (author lists run to thousands), else the values."""
    if isinstance(got, list) and isinstance(want, list):
        for i, (g, w) in enumerate(zip(got, want)):
            if g != w:
                return f"[{i}] {g!r}", w
        return f"{len(got)} names", f"{len(want)} names"
    return got, want


def _unsmart(value: Any) -> Any:
    if isinstance(value, str):
        return value.translate(QUOTES)
    if isinstance(value, list):
        return [_unsmart(v) for v in value]
    return value


# ------------------------------------------------------------------ pandoc


def csl_names(item: dict[str, Any]) -> list[str]:
    """CSL names as a style with ``name-as-sort-order`` and ``demote-non-dropping-particle="never"`` prints
    them: "non-dropping-particle Family, Given dropping-particle" (no space after a particle that ends in a
    hyphen or an apostrophe: "el-Aziz", "d’Udekem")."""
    out = []
    for name in item.get("author", ()):
        if "literal" in name:
            out.append(name["literal"])
            continue
        family, given = name.get("family", ""), name.get("given", "")
        particle = name.get("non-dropping-particle")
        if particle:
            family = particle + ("" if particle.endswith(("-", "'", "’")) else " ") + family
        if name.get("dropping-particle"):
            given = f"{given} {name['dropping-particle']}".strip()
        out.append(f"{family}, {given}" if given else family)
    return out


def csl_fields(item: dict[str, Any]) -> dict[str, Any]:
    parts = (item.get("issued") or {}).get("date-parts") or [[None]]
    return {"title": item.get("title"), "authors": csl_names(item), "doi": item.get("DOI"),
            "year": parts[0][0], "journal": item.get("container-title")}


def pandoc(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run([require_program("pandoc"), *args], capture_output=True, text=True, input=stdin,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("fmt, reader", [("bibtex", "bibtex"), ("csl-json", "csljson")])
def test_pandoc_reads_every_record_as_exported(pandoc_installed: str, exports: Exports, fmt: str, reader: str) -> None:
    """pandoc's bibliography readers (what ``--citeproc`` uses) on the whole export: the references they
    build carry each record's title, authors, DOI, year and journal exactly (typographic quotes aside)."""
    items = json.loads(pandoc("-f", reader, "-t", "csljson", str(exports.path(fmt))))
    comparison = Comparison(f"pandoc -f {reader}")
    for item in items:
        pmid = item["id"].removeprefix("pmid")
        comparison.check(pmid, csl_fields(item), expected(exports.records[pmid]), smart_quotes=True)
    comparison.assert_clean(len(exports.records))


_MARK = re.compile(r"⟦(URL|TITLE|AUTHORS|DOI|YEAR|JOURNAL)⟧")


def rendered_entries(text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(pmid, fields) from the bibliography tests/data/citeproc/fields.csl renders: one paragraph per item,
    each field after its marker."""
    for paragraph in text.split("\n\n"):
        if not paragraph.strip():
            continue
        pieces = _MARK.split(paragraph.strip())
        fields = dict(zip(pieces[1::2], pieces[2::2]))
        pmid = fields["URL"].rstrip("/").rsplit("/", 1)[1]
        yield pmid, {"title": fields.get("TITLE"), "authors": fields["AUTHORS"].split("⟦AND⟧") if "AUTHORS" in fields
                     else [], "doi": fields.get("DOI"), "year": int(fields["YEAR"]) if "YEAR" in fields else None,
                     "journal": fields.get("JOURNAL")}


@pytest.mark.parametrize("fmt", ["bibtex", "csl-json"])
def test_pandoc_citeproc_renders_every_record_as_written(pandoc_installed: str, exports: Exports, fmt: str,
                                                         tmp_path: Path) -> None:
    """``pandoc --citeproc`` renders the whole export as a bibliography (a CSL style that prints each field
    and re-cases nothing): what a reader of the document sees is each record's title, authors, DOI, year
    and journal as PubMed wrote them."""
    doc = tmp_path / "doc.md"
    doc.write_text('---\nnocite: "@*"\n---\n', encoding="utf-8")
    text = pandoc("--citeproc", "--bibliography", str(exports.path(fmt)), "--csl", str(FIELDS_CSL), "-t", "plain",
                  "--wrap=none", str(doc))
    comparison = Comparison(f"pandoc --citeproc ({fmt})")
    for pmid, fields in rendered_entries(text):
        comparison.check(pmid, fields, expected(exports.records[pmid]), smart_quotes=True)
    comparison.assert_clean(len(exports.records))


# ------------------------------------------------------------------ bibtexparser and rispy


def test_bibtexparser_reads_every_record_as_exported(exports: Exports) -> None:
    import bibtexparser
    from bibtexparser.middlewares import LatexDecodingMiddleware, SeparateCoAuthors
    from pylatexenc.latex2text import LatexNodes2Text

    library = bibtexparser.parse_string(exports.path("bibtex").read_text(encoding="utf-8"),
                                        append_middleware=[SeparateCoAuthors(), LatexDecodingMiddleware()])
    decode = LatexNodes2Text().latex_to_text  # names stay braced in the list SeparateCoAuthors makes
    raw = bibtexparser.parse_string(exports.path("bibtex").read_text(encoding="utf-8"))
    assert not library.failed_blocks and not raw.failed_blocks
    verbatim = {e.key: {f.key: f.value for f in e.fields} for e in raw.entries}
    comparison = Comparison("bibtexparser")
    for entry in library.entries:
        fields = {f.key: f.value for f in entry.fields}
        pmid = fields["pmid"]
        authors = [decode(a) for a in fields.get("author", [])]
        comparison.check(pmid, {"title": fields["title"], "authors": authors,
                                # doi is verbatim: read without LaTeX decoding, as citeproc reads it
                                "doi": verbatim[entry.key].get("doi"), "year": int(fields["year"]) if "year" in fields
                                else None, "journal": fields.get("journal")}, expected(exports.records[pmid]))
    comparison.assert_clean(len(exports.records))


def test_rispy_reads_every_record_as_exported(exports: Exports) -> None:
    import rispy

    entries = rispy.loads(exports.path("ris").read_text(encoding="utf-8"))
    comparison = Comparison("rispy")
    collective = 0
    for entry in entries:
        pmid = entry["accession_number"]
        record = exports.records[pmid]
        want = expected(record)
        # Collective names keep no comma in RIS (listed difference); every other name is "Family, Given".
        want["authors"] = [ris_collective(n) if a.get("collective_name") else n
                           for n, a in zip(want["authors"], [a for a in record["authors"]
                                                              if a.get("collective_name") or a.get("last_name")])]
        collective += sum(1 for a in record["authors"] if a.get("collective_name"))
        comparison.check(pmid, {"title": entry.get("title"), "authors": entry.get("authors", []),
                                "doi": entry.get("doi"), "year": int(entry["year"]) if entry.get("year") else None,
                                "journal": entry.get("secondary_title")}, want)
        for a in record["authors"]:
            if a.get("collective_name"):
                assert "," not in ris_collective(a["collective_name"])
    assert collective > 0  # the corpus has collective authors (consortia), so the rule is exercised
    comparison.assert_clean(len(exports.records))


# ------------------------------------------------------------------ the notation the issue names


NOTATION = [
    "K-ras mutations in mitomycin C-treated cells",
    "IL-17 and IL-23 in psoriasis: a GWAS of 1,000 patients",
    "Lactobacillus rhamnosus GG in atopic dermatitis: SCORAD after 8 weeks",
    "D-glucose and glutathione S-transferase -- an in vitro study --- of HaCaT keratinocytes",
    "mRNA and p53 in skin. the gut-skin axis? yes: Escherichia coli Nissle 1917",
    "Effect of 1,25(OH)2D3 on TNF-α & IFN-γ in {braced} and 100% of $5 ~ costs_total #1 \\ ^ ok",
    "[Probiotics in Crohn's disease and eczema (author's transl)]",
]


def notation_articles() -> list[Article]:
    names = (Author(last_name="van der Berg", fore_name="Jan"), Author(collective_name="COVIDSurg Collaborative, "
                                                                                     "GlobalSurg Collaborative"),
             Author(last_name="O'Leary", initials="MH"), Author(last_name="el-Aziz", initials="MA"))
    dois = ["10.1007/978-3-319-2914-6_18", "10.1002/(SICI)1097-4636(199603)30:3<385::AID-JBM13>3.0.CO;2-J",
            "10.1000/a%b#c~d", "10.1000/odd{brace", "10.1000/x_y_z", "10.1000/plain", "10.1000/end"]
    return [Article(pmid=str(9_800_000 + i), title=title, authors=names, doi=doi,
                    journal=Journal(title="Journal of Investigative Dermatology", iso_abbreviation="J Invest Dermatol",
                                    volume="1", pages="10-19"),
                    pub_date="2024 Mar 5") for i, (title, doi) in enumerate(zip(NOTATION, dois))]


def test_capitals_dashes_and_dois_survive_citeproc_as_written(pandoc_installed: str, tmp_path: Path) -> None:
    """The examples of issue 13 (and harder ones) through pandoc --citeproc, exactly: nothing re-cased,
    ``--`` and ``---`` kept, DOIs with ``_``, ``<>``, ``%``, ``#`` and ``~`` as written."""
    articles = notation_articles()
    out = export_all(tmp_path, articles)
    bib = out.path("bibtex").read_text(encoding="utf-8")
    assert "{K-ras}" in bib and "{IL-17}" in bib and "{Lactobacillus}" in bib and "{GG}" in bib
    assert "{SCORAD}" in bib and "{D-glucose}" in bib and "{C-treated}" in bib and "-{}-" in bib
    assert "doi = {10.1007/978-3-319-2914-6_18}" in bib and "\\_18" not in bib
    doc = tmp_path / "doc.md"
    doc.write_text('---\nnocite: "@*"\n---\n', encoding="utf-8")
    for fmt in ("bibtex", "csl-json"):
        text = pandoc("--citeproc", "--bibliography", str(out.path(fmt)), "--csl", str(FIELDS_CSL), "-t", "plain",
                      "--wrap=none", str(doc))
        got = dict(rendered_entries(text))
        for a in articles:
            want = expected(out.records[a.pmid])
            fields = got[a.pmid]
            assert _unsmart(fields["title"]) == _unsmart(a.title), (fmt, fields["title"])
            assert _unsmart(fields["authors"]) == _unsmart(want["authors"]), (fmt, fields["authors"])
            # A DOI with an unbalanced brace cannot stand in a BibTeX value: it is percent-encoded there.
            assert fields["doi"] == (a.doi if fmt == "csl-json" or "{" not in (a.doi or "")
                                     else (a.doi or "").replace("{", "%7B")), (fmt, fields["doi"])
            assert (fields["year"], fields["journal"]) == (2024, "Journal of Investigative Dermatology")


@pytest.mark.parametrize("title, braced", [
    ("K-ras in skin", "{K-ras} in skin"),
    ("the gut: a review", "{the} gut: {a} review"),
    ("Cost of $IL care", "{Cost} of {{\\$IL}} care"),
    ("a -- b --- c", "{a} -{}- b -{}-{}- c"),
    ("100% of 5_000 & more", "100\\% {of} 5\\_000 \\& more"),
])
def test_bibtex_title_braces_what_citeproc_would_recase(title: str, braced: str) -> None:
    assert bibtex_title(title) == braced


def test_latex_escape_keeps_double_hyphens_apart() -> None:
    assert latex_escape("a--b---c") == "a-{}-b-{}-{}-c"
    assert latex_escape("x_y {z}") == "x\\_y \\{z\\}"


def test_an_article_without_authors_doi_or_date_still_exports(pandoc_installed: str, tmp_path: Path) -> None:
    bare = dataclasses.replace(notation_articles()[0], authors=(), doi=None, pub_date=None, pmid="9899999",
                               journal=Journal())
    out = export_all(tmp_path, [bare])
    assert "doi" not in out.path("bibtex").read_text(encoding="utf-8")
    items = json.loads(pandoc("-f", "bibtex", "-t", "csljson", str(out.path("bibtex"))))
    assert [i["title"] for i in items] == [bare.title] and "author" not in items[0]
