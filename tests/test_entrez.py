"""E-utilities client: parameters, retries, backoff, error bodies, degraded queries, date splitting, limiter.

The HTTP edge is an ``httpx.MockTransport`` that answers with real NCBI bodies from tests/data; the
end-to-end behaviour over real loopback HTTP is in test_cycle_e2e.py.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import threading
import urllib.parse
from collections.abc import Callable

import httpx
import pytest

from monitor.config import EntrezConfig
from monitor.entrez import EntrezClient, RateLimiter, parse_esearch, shared_rate_limiter
from monitor.errors import EntrezError, QueryDegraded, RateLimited
from monitor.types import Article
from tests.conftest import DATA

ESEARCH_OK = (DATA / "esearch" / "esearch1.xml").read_bytes()
ESEARCH_HISTORY = (DATA / "esearch" / "esearch2.xml").read_bytes()
ESEARCH_NOT_FOUND = (DATA / "esearch" / "esearch8.xml").read_bytes()
EFETCH_TWO = (DATA / "efetch" / "biopython" / "pubmed2.xml").read_bytes()
ERROR_BODY = (DATA / "errors" / "biopython_esummary8.xml").read_bytes()


class Recorder:
    """Scripted responses; records each request's form fields."""

    def __init__(self, responses: list[Callable[[httpx.Request], httpx.Response] | httpx.Response]) -> None:
        self.responses = list(responses)
        self.forms: list[dict[str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.forms.append(dict(urllib.parse.parse_qsl(request.content.decode())))
        self.forms[-1]["_path"] = request.url.path
        item = self.responses.pop(0) if len(self.responses) > 1 else self.responses[0]
        return item(request) if callable(item) else item


def client_for(recorder: Recorder, sleeps: list[float] | None = None, **overrides) -> EntrezClient:
    config = EntrezConfig(base_url="http://ncbi.test/entrez/eutils", email="team@example.org",
                          max_attempts=overrides.pop("max_attempts", 4), backoff_seconds=1.0, **overrides)
    unlimited = RateLimiter(1000)
    record = sleeps if sleeps is not None else []
    return EntrezClient(config, limiter=unlimited, transport=httpx.MockTransport(recorder),
                        sleep=record.append, rng=random.Random(7))


def ok(body: bytes) -> httpx.Response:
    return httpx.Response(200, content=body, headers={"Content-Type": "text/xml; charset=UTF-8"})


def test_esearch_sends_etiquette_and_window_and_parses_real_response() -> None:
    rec = Recorder([ok(ESEARCH_OK)])
    client = client_for(rec)
    result = client.esearch("biopython", datetype="edat", mindate=dt.date(2024, 1, 2),
                            maxdate=dt.date(2024, 2, 3))
    form = rec.forms[0]
    assert form["_path"] == "/entrez/eutils/esearch.fcgi"
    assert form["tool"] == "gut-skin-monitor" and form["email"] == "team@example.org"
    assert "api_key" not in form
    assert (form["db"], form["term"], form["usehistory"]) == ("pubmed", "biopython", "y")
    assert (form["datetype"], form["mindate"], form["maxdate"]) == ("edat", "2024/01/02", "2024/02/03")
    assert form["retmax"] == "9999"
    assert result.count == 63 and len(result.ids) == 20 and result.ids[0] == "41282813"
    assert result.query_translation == '"biopython"[All Fields]'


def test_api_key_is_sent_when_configured() -> None:
    rec = Recorder([ok(ESEARCH_OK)])
    client_for(rec, api_key="k3y").esearch("x")
    assert rec.forms[0]["api_key"] == "k3y"


def test_history_response_parsed() -> None:
    result = parse_esearch(ESEARCH_HISTORY)
    assert result.webenv and result.webenv.startswith("MCID_") and result.query_key == "1"


def test_phrase_not_found_is_a_degraded_query_not_an_empty_result() -> None:
    client = client_for(Recorder([ok(ESEARCH_NOT_FOUND)]))
    with pytest.raises(QueryDegraded) as info:
        client.esearch("abcXYZ", query_name="axis")
    assert info.value.problems == (("PhraseNotFound", "abcXYZ"),)
    assert "query 'axis' is degraded (PhraseNotFound 'abcXYZ')" in str(info.value)


def test_field_not_found_and_phrase_ignored_in_warnings_are_degraded() -> None:
    body = ESEARCH_OK.replace(
        b"</eSearchResult>",
        b"<ErrorList><FieldNotFound>tiabx</FieldNotFound></ErrorList>"
        b"<WarningList><PhraseIgnored>and</PhraseIgnored></WarningList></eSearchResult>")
    with pytest.raises(QueryDegraded) as info:
        client_for(Recorder([ok(body)])).esearch("x")
    assert info.value.problems == (("FieldNotFound", "tiabx"), ("PhraseIgnored", "and"))


def test_no_items_found_output_message_alone_is_not_degraded() -> None:
    body = ESEARCH_NOT_FOUND.replace(b"<ErrorList><PhraseNotFound>abcXYZ</PhraseNotFound></ErrorList>", b"")
    result = client_for(Recorder([ok(body)])).esearch("x")
    assert result.count == 0 and result.warnings == (("OutputMessage", "No items found."),)


@pytest.mark.parametrize("first", [
    httpx.Response(429, json={"error": "API rate limit exceeded", "api-key": "1.2.3.4", "count": "4", "limit": "3"}),
    httpx.Response(500, text="<html>Internal Server Error</html>"),
    httpx.Response(502, text="Bad Gateway"),
    httpx.Response(503, text="Service Unavailable"),
    ok(ERROR_BODY.replace(b"eSummaryResult", b"eSearchResult")),
    ok(ESEARCH_OK[: len(ESEARCH_OK) // 2]),
    ok(b""),
])
def test_transient_failures_are_retried_with_backoff(first: httpx.Response) -> None:
    sleeps: list[float] = []
    rec = Recorder([first, ok(ESEARCH_OK)])
    result = client_for(rec, sleeps).esearch("biopython")
    assert result.count == 63
    assert len(rec.forms) == 2
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 1.0  # equal jitter on a 1 s base


def test_network_errors_are_retried() -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ReadTimeout("slow", request=request)
        if calls["n"] == 2:
            raise httpx.ConnectError("connection reset by peer", request=request)
        if calls["n"] == 3:
            raise httpx.RemoteProtocolError("incomplete chunked read", request=request)
        return ok(ESEARCH_OK)

    sleeps: list[float] = []
    result = client_for(Recorder([flaky]), sleeps, max_attempts=4).esearch("x")
    assert result.count == 63 and calls["n"] == 4
    # Exponential: ceilings 1, 2, 4 seconds, each delay in [ceiling/2, ceiling].
    assert [0.5 <= sleeps[0] <= 1, 1 <= sleeps[1] <= 2, 2 <= sleeps[2] <= 4] == [True] * 3


def test_retry_after_is_honoured() -> None:
    sleeps: list[float] = []
    rec = Recorder([httpx.Response(429, headers={"Retry-After": "7"}, text="{}"), ok(ESEARCH_OK)])
    client_for(rec, sleeps).esearch("x")
    assert sleeps == [7.0]


def test_attempts_are_bounded_then_a_clear_error() -> None:
    sleeps: list[float] = []
    rec = Recorder([httpx.Response(503, text="down")])
    with pytest.raises(EntrezError) as info:
        client_for(rec, sleeps, max_attempts=3).esearch("x")
    assert len(rec.forms) == 3 and len(sleeps) == 2
    assert str(info.value).startswith("esearch failed after 3 attempts: HTTP 503 down")
    assert "the next run retries from the same point" in str(info.value)


def test_persistent_429_raises_rate_limited() -> None:
    with pytest.raises(RateLimited):
        client_for(Recorder([httpx.Response(429, text="{}")]), max_attempts=2).esearch("x")


def test_client_errors_are_not_retried_and_name_the_setting() -> None:
    rec = Recorder([httpx.Response(404, text="Not Found")])
    with pytest.raises(EntrezError) as info:
        client_for(rec).esearch("x")
    assert len(rec.forms) == 1
    assert "HTTP 404" in str(info.value) and "MONITOR_EUTILS_URL" in str(info.value)


def test_efetch_posts_batches_and_parses_records() -> None:
    rec = Recorder([ok(EFETCH_TWO)])
    client = client_for(rec, batch_size=2)
    batches = list(client.efetch(["11748933", "11700088", "1", "2", "3"]))
    assert [f["id"] for f in rec.forms] == ["11748933,11700088", "1,2", "3"]
    assert all(f["_path"].endswith("/efetch.fcgi") and f["retmode"] == "xml" for f in rec.forms)
    assert sorted(a.pmid for a in batches[0] if isinstance(a, Article)) == ["11700088", "11748933"]


def test_truncated_efetch_body_is_retried_not_half_stored() -> None:
    sleeps: list[float] = []
    cut = EFETCH_TWO[: int(len(EFETCH_TWO) * 0.7)]
    rec = Recorder([ok(cut), ok(EFETCH_TWO)])
    (batch,) = list(client_for(rec, sleeps).efetch(["11748933", "11700088"]))
    assert len(rec.forms) == 2 and len(sleeps) == 1
    assert len([a for a in batch if isinstance(a, Article)]) == 2


def test_efetch_error_body_is_an_error_not_an_empty_batch() -> None:
    body = b'<?xml version="1.0" ?>\n<eFetchResult>\n\t<ERROR>Empty id list - nothing todo</ERROR>\n</eFetchResult>\n'
    with pytest.raises(EntrezError, match="Empty id list - nothing todo"):
        list(client_for(Recorder([ok(body)]), max_attempts=2).efetch(["1"]))


def test_efetch_history_pages_with_webenv() -> None:
    rec = Recorder([ok(ESEARCH_HISTORY), ok(EFETCH_TWO)])
    client = client_for(rec, batch_size=40)
    result = client.esearch("x")
    list(client.efetch_history(result))
    fetches = rec.forms[1:]
    pages = -(-result.count // 40)
    assert result.count > 40
    assert [(f["retstart"], f["retmax"]) for f in fetches] == [(str(40 * i), "40") for i in range(pages)]
    assert all(f["WebEnv"] == result.webenv and f["query_key"] == "1" for f in fetches)


def esearch_body(count: int, ids: list[str]) -> bytes:
    id_xml = "".join(f"<Id>{i}</Id>\n" for i in ids)
    return (f'<?xml version="1.0" encoding="UTF-8" ?>\n<eSearchResult><Count>{count}</Count>'
            f"<RetMax>{len(ids)}</RetMax><RetStart>0</RetStart><QueryKey>1</QueryKey><WebEnv>MCID_1</WebEnv>"
            f"<IdList>\n{id_xml}</IdList><TranslationSet/><QueryTranslation>x</QueryTranslation>"
            "</eSearchResult>").encode()


def test_date_range_is_halved_until_each_slice_is_under_the_cap() -> None:
    # 40 days, 500 records a day: 20,000 ids in all. Each response tells the count for its window.
    def answer(request: httpx.Request) -> httpx.Response:
        form = dict(urllib.parse.parse_qsl(request.content.decode()))
        lo = dt.datetime.strptime(form["mindate"], "%Y/%m/%d").date()
        hi = dt.datetime.strptime(form["maxdate"], "%Y/%m/%d").date()
        days = (hi - lo).days + 1
        count = 500 * days
        ids = [str(lo.toordinal() * 1000 + i) for i in range(min(count, 9999))]
        return ok(esearch_body(count, ids))

    rec = Recorder([answer])
    start = dt.date(2024, 1, 1)
    slices = list(client_for(rec).search_slices("x", "edat", start, start + dt.timedelta(days=39)))
    assert all(s.result.count <= 9999 for s in slices)
    covered = [(s.mindate, s.maxdate) for s in slices]
    assert covered[0][0] == start and covered[-1][1] == start + dt.timedelta(days=39)
    for (_, prev_hi), (lo, _) in itertools.pairwise(covered):
        assert lo == prev_hi + dt.timedelta(days=1)  # contiguous, no gap, no overlap
    assert sum(s.result.count for s in slices) == 20000


def test_single_day_over_the_cap_is_an_error() -> None:
    rec = Recorder([ok(esearch_body(12000, [str(i) for i in range(9999)]))])
    day = dt.date(2024, 5, 5)
    with pytest.raises(EntrezError, match="matches 12000 records on 2024-05-05 alone"):
        list(client_for(rec).search_slices("x", "edat", day, day, query_name="axis"))


def test_rate_limiter_never_lets_more_than_n_start_in_a_window() -> None:
    now = [0.0]
    starts: list[float] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(3, monotonic=lambda: now[0], sleep=sleep)
    for _ in range(10):
        limiter.acquire()
        starts.append(now[0])
        now[0] += 0.01  # each request takes 10 ms
    for i in range(len(starts) - 3):
        assert starts[i + 3] - starts[i] >= 1.0
    assert starts[-1] < 4.0  # and it does not wait longer than needed


def test_a_request_counts_from_when_its_answer_came() -> None:
    """NCBI counts arrivals: the first request of a fresh process opens a connection (TLS handshake) and can
    arrive well after it started, while the fourth, on the open connection, arrives at once. Counting from
    start times, the fourth would start 1.1 s after the first started yet arrive within a second of it."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(3, monotonic=lambda: now[0], sleep=sleep)
    answers = []
    for _ in range(3):
        start = limiter.acquire()
        now[0] += 0.3  # handshake, request, answer
        limiter.settle(start)
        answers.append(now[0])
    limiter.acquire()
    assert now[0] >= answers[0] + 1.1  # not 1.1 s after the first start
    assert now[0] < answers[0] + 1.2


def test_rate_limiter_is_shared_and_thread_safe() -> None:
    assert shared_rate_limiter(3) is shared_rate_limiter(3)
    import time

    limiter = RateLimiter(3, period=0.3, margin=0.0)
    starts: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(3):
            limiter.acquire()
            with lock:
                starts.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    starts.sort()
    assert len(starts) == 12
    assert all(starts[i + 3] - starts[i] >= 0.29 for i in range(len(starts) - 3))


def test_a_429_waits_out_ncbis_one_second_window_even_with_short_backoff() -> None:
    # Rejected requests count toward the key's window, and another process may share the key: retrying a
    # 429 within the second cannot succeed. Other failures keep the configured (here tiny) backoff.
    sleeps: list[float] = []
    rec = Recorder([httpx.Response(429, text="{}"), httpx.Response(503, text="down"), ok(ESEARCH_OK)])
    config = EntrezConfig(base_url="http://ncbi.test/entrez/eutils", email="team@example.org", max_attempts=4,
                          backoff_seconds=0.02, max_backoff_seconds=0.2)
    client = EntrezClient(config, limiter=RateLimiter(1000), transport=httpx.MockTransport(rec),
                          sleep=sleeps.append, rng=random.Random(7))
    assert client.esearch("x").count == 63
    assert sleeps[0] == 1.0 and sleeps[1] <= 0.04
