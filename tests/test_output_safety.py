"""Outputs that cannot be turned against their reader: no CSV cell a spreadsheet would evaluate, no stored
text that a terminal would obey (rich markup, escape sequences, C0/C1 controls), whatever a record holds."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest

from monitor.formats import csv_cell, printable
from monitor.storage import Storage
from monitor.types import AbstractSection, Article, Author, Journal
from tests.conftest import db_url

NOW = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.UTC)
FORMULAS = ["=HYPERLINK(\"http://evil.test\",\"click\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
HOSTILE_TITLE = ("Probiotics [link=http://evil.test]click[/link] [bold]loud[/bold] \x1b[31mred\x1b[0m "
                 "\x1b]8;;http://evil.test\x07link\x1b]8;;\x07 \x9b2J \x07bell")


@pytest.mark.parametrize("value", FORMULAS)
def test_a_cell_that_would_start_a_formula_is_neutralised(value: str) -> None:
    assert csv_cell(value) == "'" + value
    assert csv_cell("-0.25") == "-0.25"  # a number is data
    assert csv_cell("Probiotics in psoriasis") == "Probiotics in psoriasis" and csv_cell(3) == 3


def test_printable_removes_every_control_character() -> None:
    text = printable(HOSTILE_TITLE + "\nnext\tcol")
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in text)
    assert "[link=http://evil.test]click[/link]" in text and "next col" in text


@pytest.fixture
def hostile_db(tmp_path: Path) -> Path:
    db = tmp_path / "m.sqlite3"
    article = Article(
        pmid="31000001", title=HOSTILE_TITLE, sort_date=dt.date(2024, 1, 1),
        abstract=(AbstractSection("Probiotics =SUM(A1) helped [red]patients[/red] \x1b[2J."),),
        authors=(Author(last_name="=cmd|' /C calc'!A0", fore_name="@Eve"),),
        journal=Journal(title="J [/] Tests", iso_abbreviation="J [/] Tests"), keywords=("-1+1",),
    )
    with Storage.open(db_url(db)) as s:
        s.store_batch([article], query="q", now=NOW)
    return db


def env(db: Path) -> dict[str, str]:
    from tests.conftest import SHIPPED_CONFIG

    return {"MONITOR_CONFIG": str(SHIPPED_CONFIG), "MONITOR_DB_URL": db_url(db)}


def test_the_search_table_shows_stored_text_as_text(hostile_db: Path, run_monitor) -> None:
    result = run_monitor("search", "probiotics", env=env(hostile_db))
    assert result.returncode == 0, result.stderr  # "J [/] Tests" used to crash rich's markup parser
    out = result.stdout
    assert not any((ord(c) < 32 and c not in "\n") or 0x7F <= ord(c) <= 0x9F for c in out)
    assert "\x1b" not in out and "[link=" in out and "evil.test" in out and "J [/]" in out


@pytest.mark.parametrize("command", [("export", "--format", "csv"), ("search", "probiotics", "--format", "csv")])
def test_no_csv_cell_starts_a_formula(hostile_db: Path, run_monitor, command: tuple[str, ...]) -> None:
    result = run_monitor(*command, env=env(hostile_db))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 1
    cells = [v for v in rows[0].values() if v]
    formulas = [v for v in cells if v.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert all(v.replace(".", "").lstrip("-").isdigit() for v in formulas), formulas  # only plain numbers
    assert rows[0]["keywords"] == "'-1+1" and rows[0]["authors"].startswith("@Eve") is False


def test_short_author_lists_and_pubmed_links_are_written_one_way() -> None:
    from monitor.formats import pubmed_url, short_authors

    assert short_authors(["Smith J", "", "Lee KH"], 3) == "Smith J, Lee KH"
    assert short_authors(iter(["A", "B", "C"]), 3) == "A, B, C"
    assert short_authors(("A", "B", "C", "D"), 3) == "A, B, C, et al."  # never "et al.."
    consortium = (f"Author {i}" for i in range(10_000))
    assert short_authors(consortium, 5).endswith("Author 4, et al.") and next(consortium) == "Author 6"
    assert pubmed_url("31000001") == "https://pubmed.ncbi.nlm.nih.gov/31000001/"
