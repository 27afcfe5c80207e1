"""The stand-in evaluating PubMed syntax itself (``match_terms``) and emulating PubMed's phrase index: it must
answer an unknown phrase the way NCBI does, in NCBI's byte layout (tests/data/esearch/esearch8.xml)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree

from tests.eutils_standin import StandIn

DATA = Path(__file__).resolve().parent / "data"
HTTP = httpx.Client(timeout=30)  # generous: a loaded CI machine can be slow to schedule the server thread


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with StandIn(today=dt.date(2026, 11, 20), enforce_rate_limit=False, match_terms=True) as s:
        yield s


def esearch(s: StandIn, term: str, **params: object) -> etree._Element:
    resp = HTTP.get(f"{s.base_url}/esearch.fcgi", params={"db": "pubmed", "term": term, **params})
    assert resp.status_code == 200
    return etree.fromstring(resp.content)


def entries(root: etree._Element, name: str) -> list[tuple[str, str]]:
    found = root.find(name)
    return [] if found is None else [(el.tag, el.text or "") for el in found]


def test_an_unknown_word_is_answered_byte_for_byte_like_the_recorded_ncbi_response(standin: StandIn) -> None:
    standin.set_phrase_index(["abcXYZ"])
    resp = HTTP.get(f"{standin.base_url}/esearch.fcgi", params={"db": "pubmed", "term": "abcXYZ"})
    assert resp.content == (DATA / "esearch" / "esearch8.xml").read_bytes()


def test_an_unknown_phrase_is_broken_into_its_words(standin: StandIn) -> None:
    standin.set_phrase_index([])
    as_phrase = esearch(standin, '"gut microbiota"[tiab]', retmax=100)
    as_words = esearch(standin, "gut[tiab] AND microbiota[tiab]", retmax=100)
    standin.set_phrase_index(["Gut Microbiota"])  # any case
    broken = esearch(standin, '"gut microbiota"[tiab]', retmax=100)
    phrase_ids = [e.text for e in as_phrase.iterfind("IdList/Id")]
    assert phrase_ids, "the corpus has records with the phrase (metapub 38147649, 38329942)"
    assert [e.text for e in broken.iterfind("IdList/Id")] == [e.text for e in as_words.iterfind("IdList/Id")]
    assert entries(broken, "WarningList") == [("QuotedPhraseNotFound", '"gut microbiota"')]
    assert broken.find("ErrorList") is None
    assert broken.findtext("QueryTranslation") == '("gut"[Title/Abstract] AND "microbiota"[Title/Abstract])'
    assert as_phrase.findtext("QueryTranslation") == '"gut microbiota"[Title/Abstract]'
    # Proximity does not go through the phrase index.
    near = esearch(standin, '"gut microbiota"[tiab:~0]', retmax=100)
    assert [e.text for e in near.iterfind("IdList/Id")] == phrase_ids
    assert near.find("WarningList") is None


def test_a_hyphenated_unknown_phrase_finds_nothing_and_the_rest_still_runs(standin: StandIn) -> None:
    standin.set_phrase_index(["gut-microbiota axis"])
    root = esearch(standin, '"gut-microbiota axis"[tiab] OR melanoma[tiab]', retmax=100)
    melanoma = esearch(standin, "melanoma[tiab]", retmax=100)
    assert root.findtext("Count") == melanoma.findtext("Count") != "0"
    assert entries(root, "ErrorList") == [("PhraseNotFound", "gut-microbiota axis")]


def test_registered_terms_and_date_windows_still_work(standin: StandIn) -> None:
    standin.set_phrase_index(["gut microbiota"])
    standin.set_query('"gut microbiota"[tiab]', ["38147649"])  # a registered term answers as registered
    root = esearch(standin, '"gut microbiota"[tiab]')
    assert [e.text for e in root.iterfind("IdList/Id")] == ["38147649"]
    assert root.find("WarningList") is None
    window = esearch(standin, "melanoma[tiab]", datetype="edat", mindate="1900/01/01", maxdate="1900/12/31")
    assert window.findtext("Count") == "0"
    assert window.findtext("QueryTranslation").endswith("AND 1900/01/01:1900/12/31[Date - Entry]")


def test_wildcard_cap_message(standin: StandIn) -> None:
    standin.set_phrase_index([], wildcard_cap=2)
    root = esearch(standin, "mela*[tiab]")
    assert ("OutputMessage", "Wildcard search for 'mela*' used only the first 2 variations. Lengthen root word "
                             "to search for all endings.") in entries(root, "WarningList")
