"""A record whose every text field is hostile, through every output: the feeds and their index, the
digest's headers and both parts, the search table, every export format. Nothing it holds may become markup,
a header, a formula, an escape sequence or a broken document in any of them."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
import re
from pathlib import Path

import feedparser
import pytest
from lxml import etree

from tests.eutils_standin import StandIn
from tests.test_cycle_e2e import TODAY
from tests.test_feeds import FeedWorld, dress

# XML 1.0 cannot carry ESC or other C0 controls, so a record can only bring C1 ones (\x9b is CSI, the
# escape sequence introducer of 8-bit terminals).
EVIL = ("<script>alert(1)</script> ]]> &amp; \x9b31mred\x9b0m \x85 \u202egnp.exe \r\nBcc: evil@example.org "
        "[link=http://evil.test]x[/link] {\\input{/etc/passwd}} =HYPERLINK(\"http://evil.test\")")
TITLE = "Probiotics in psoriasis and the gut microbiome: " + EVIL


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> FeedWorld:
    tmp = tmp_path_factory.mktemp("hostile")
    fw = FeedWorld(StandIn(today=TODAY), tmp)
    pmid = fw.dressed[0]
    dress(fw.standin, pmid, {"title": TITLE, "abstract": "Oral probiotics improved psoriasis via the gut "
                                                         "microbiome. " + EVIL})
    xml = fw.standin.record_xml(pmid)
    root = etree.fromstring(xml)
    root.find(".//Journal/Title").text = "J [/] Tests " + EVIL
    author = root.find(".//AuthorList/Author/LastName")
    if author is not None:
        author.text = "=cmd|' /C calc'!A0 " + EVIL
    fw.standin.revise(pmid, etree.tostring(root))
    fw.hostile = pmid  # type: ignore[attr-defined]
    with fw.config.open("a", encoding="utf-8") as fh:
        fh.write('\n[digest]\nfrom = "monitor@example.org"\nto = ["team@example.org"]\n')
    assert fw.monitor("run", key=True).returncode == 0
    return fw


def no_controls(text: str) -> bool:
    return not any((ord(c) < 32 and c not in "\n\r\t") or 0x7F <= ord(c) <= 0x9F for c in text)


def test_the_feeds_and_their_index_show_it_as_text(world: FeedWorld) -> None:
    assert world.hostile in {p["pmid"] for p in world.relevant()}  # type: ignore[attr-defined]
    for path in [*world.out.rglob("*.xml"), world.out / "feeds.opml"]:
        raw = path.read_bytes()
        etree.fromstring(raw)  # well-formed, whatever the record held
        assert b"<script>" not in raw and "\x9b".encode() not in raw
    main = feedparser.parse((world.out / "main.xml").read_bytes())
    assert main.bozo == 0
    (item,) = [e for e in main.entries if e.id == f"pubmed:{world.hostile}"]  # type: ignore[attr-defined]
    assert "<script>alert(1)</script>" in item.title  # shown as text, the text as written
    index = (world.out / "index.html").read_text(encoding="utf-8")
    assert "<script>" not in index


def test_the_digest_headers_and_parts_hold_it_as_text(world: FeedWorld, tmp_path: Path) -> None:
    out = tmp_path / "digest.eml"
    result = world.monitor("digest", "--dry-run", "--since", "2026-01-01", "--out", str(out))
    assert result.returncode == 0, result.stderr
    message = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
    assert message["Bcc"] is None and all("\n" not in str(v) for v in message.values())
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert no_controls(text) and "\u202e" not in text and "\u202e" not in html


def test_the_search_table_prints_it_as_text(world: FeedWorld) -> None:
    result = world.monitor("search", "probiotics", "psoriasis", "--limit", "0")
    assert result.returncode == 0, result.stderr
    assert no_controls(result.stdout) and "[link=" in result.stdout


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "ris", "bibtex", "csl-json"])
def test_every_export_format_reads_back(world: FeedWorld, fmt: str) -> None:
    result = world.monitor("export", "--format", fmt)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    if fmt == "jsonl":
        records = [json.loads(line) for line in out.split("\n") if line]  # JSON Lines: split on \n only
        as_parsed = re.sub(r"[ \t\r\n]+", " ", TITLE)  # XML whitespace collapsed, everything else kept
        assert any(r["title"] == as_parsed for r in records)
        assert out.splitlines() == out.split("\n")[:-1]  # one record per line for every line reader
    elif fmt in ("json", "csl-json"):
        assert json.loads(out)
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        for row in rows:
            for value in row.values():
                assert not value.startswith(("=", "+", "@", "\t", "\r")), value
    elif fmt == "ris":
        import rispy

        entries = rispy.loads(out)
        assert entries and all(e.get("title") for e in entries)
    else:
        import bibtexparser

        library = bibtexparser.parse_string(out)
        assert not library.failed_blocks and len(library.entries) == len(world.export())
