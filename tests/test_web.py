"""The web app in-process (Flask's test client) over a database two real `monitor run`s filled (see
tests/web_world.py): pages, the JSON API with exact shapes and status codes, bad parameters named, stored
text escaped, the security headers, the feed folder as before, and — the acceptance of issue 14 — the API
agreeing with `monitor search` and `monitor export` on the same database for a set of filter combinations.
"""

from __future__ import annotations

import collections
import datetime as dt
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from monitor.app import App, Overrides
from monitor.clock import FixedClock
from monitor.config import load_config
from monitor.errors import StorageError
from tests.eutils_standin import StandIn
from tests.test_cycle_e2e import TODAY
from tests.web_world import HOSTILE, LATER, WebWorld


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> WebWorld:
    return WebWorld(StandIn(today=TODAY), tmp_path_factory.mktemp("web")).build()


@pytest.fixture(scope="module")
def app(world: WebWorld) -> Iterator[App]:
    a = App(_config=load_config(world.config, env=world.env()),
            overrides=Overrides(clock=FixedClock(dt.datetime.fromisoformat(LATER))))
    yield a
    a.close()


@pytest.fixture(scope="module")
def client(app: App, world: WebWorld) -> FlaskClient:
    assert world.monitor("feed", now=LATER).returncode == 0
    return app.web_app().test_client()


@pytest.fixture(scope="module")
def exported(world: WebWorld) -> list[dict[str, Any]]:
    """Every stored paper, as `monitor export --format jsonl` writes it."""
    return world.export()


def get_json(client: FlaskClient, path: str, status: int = 200) -> Any:
    response = client.get(path)
    assert response.status_code == status, (path, response.data[:300])
    assert response.mimetype == "application/json"
    return response.get_json()


# ------------------------------------------------------------------ pages


PAGES = ["/", "/?page=2", "/search", "/search?q=probiotic&relevant=1", "/search?condition=psoriasis",
         "/map", "/map?design=rct&since=2010", "/trends", "/trends?by=intervention&date=published&since=2000",
         "/status"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_html_with_the_security_headers(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.data[:500]
    assert response.mimetype == "text/html"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = response.get_data(as_text=True)
    assert '<main id="main"' in body and "<nav" in body and "<html lang=\"en\">" in body
    assert "http://" not in body.replace("http://127.0.0.1", "").replace("http://www.w3.org", "")  # no external asset
    assert " style=" not in body and "<script" not in body  # nothing the CSP would block


def test_the_home_page_lists_the_newest_relevant_papers_with_their_tags(client: FlaskClient,
                                                                       exported: list[dict[str, Any]]) -> None:
    relevant = [p for p in exported if p["gut_skin_relevant"] and not p["deleted"]]
    newest = sorted(relevant, key=lambda p: (p["first_seen_at"], int(p["pmid"])), reverse=True)
    body = client.get("/").get_data(as_text=True)
    shown = [line.split("/paper/")[1].split('"')[0] for line in body.splitlines() if 'class="paper-title"' in line]
    assert shown == [p["pmid"] for p in newest[:20]]
    assert f"{len(relevant)} relevant papers" in body
    first = newest[0]
    assert "Conditions:" in body and "Interventions:" in body
    if any(p["retracted"] for p in newest[:20]):
        assert ">Retracted</span>" in body
    assert first["title"].split("<")[0][:40] in body


def test_stored_text_is_escaped_everywhere(client: FlaskClient, world: WebWorld) -> None:
    for path in ("/", f"/paper/{world.hostile}", "/search?q=" + world.hostile, "/search?relevant=1&per_page=100"):
        body = client.get(path).get_data(as_text=True)
        assert '<script>alert("x")</script>' not in body and "<b>bold</b>" not in body, path
    page = client.get(f"/paper/{world.hostile}").get_data(as_text=True)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    detail = get_json(client, f"/api/papers/{world.hostile}")
    assert detail["title"].startswith(HOSTILE)  # JSON carries the text as it is


def test_the_paper_page_shows_the_whole_record_with_evidence_and_history(client: FlaskClient, world: WebWorld,
                                                                        exported: list[dict[str, Any]]) -> None:
    record = next(p for p in exported if p["pmid"] == world.retracted)
    body = client.get(f"/paper/{world.retracted}").get_data(as_text=True)
    assert f'href="https://pubmed.ncbi.nlm.nih.gov/{world.retracted}/"' in body
    if record["doi"]:
        assert f'href="https://doi.org/{record["doi"]}"' in body
    assert "Retracted" in body and "Retraction notice" in body and "notice 99999999" in body
    assert f"score {record['relevance']:.2f}" in body
    for q in record["queries"]:
        assert f"query <a href=\"/search?query={q['name']}\">{q['name']}</a>" in body
    assert "<mark title=" in body  # evidence highlighted in the text
    for e in record["tag_evidence"]:
        assert f"<td>{e['source']}</td>" in body
    assert client.get("/paper/1").status_code == 404
    assert client.get("/paper/abc").status_code == 404


def test_the_paper_page_explains_each_tag_as_monitor_explain_does(client: FlaskClient, app: App,
                                                                  exported: list[dict[str, Any]]) -> None:
    from markupsafe import escape

    from monitor.explain import MARK_CLOSE, MARK_OPEN

    paper = next(p for p in exported if p["gut_skin_relevant"] and p["conditions"] and p["interventions"])
    explanation, _ = app.explain(paper["pmid"])
    body = client.get(f"/paper/{paper['pmid']}").get_data(as_text=True)
    why = body.split('<h2 id="why-h">Why these tags</h2>')[1].split("</section>")[0]
    assert f"Relevance {explanation.relevance:.2f}: gut–skin relevant" in why
    assert len(explanation.given) >= 2 and why.count('<details class="finding">') == (
        len(explanation.sides) + len(explanation.given) + len(explanation.not_given))
    for f in explanation.sides + explanation.given:
        assert f"<strong>{escape(f.label)}</strong>" in why and str(escape(f.summary)) in why
        for q in f.caused_by + f.discounted:
            html = str(escape(q.text)).replace(MARK_OPEN, "<mark>").replace(MARK_CLOSE, "</mark>")
            assert html in why, (f.name, q.text)
    assert "<mark>" in why and MARK_OPEN not in why


# ------------------------------------------------------------------ the API


def test_api_papers_pages_and_item_shape(client: FlaskClient) -> None:
    whole = get_json(client, "/api/papers?relevant=1&per_page=100")
    assert set(whole) == {"total", "page", "per_page", "pages", "sort", "papers", "facets"}
    assert whole["total"] == len(whole["papers"]) > 20 and whole["pages"] == 1 and whole["sort"] == "date"
    item = whole["papers"][0]
    assert set(item) == {"pmid", "title", "journal", "year", "pub_date", "doi", "conditions", "interventions",
                         "designs", "gut_skin_relevant", "relevance", "status", "first_seen_at", "score", "snippet"}
    paged = []
    for page in range(1, whole["total"] // 7 + 2):
        part = get_json(client, f"/api/papers?relevant=1&per_page=7&page={page}")
        assert part["total"] == whole["total"] and part["pages"] == -(-whole["total"] // 7)
        paged += part["papers"]
    assert paged == whole["papers"]
    assert get_json(client, "/api/papers?relevant=1&page=999")["papers"] == []


def test_api_paper_is_the_export_record_with_flags_and_history(client: FlaskClient, world: WebWorld,
                                                              exported: list[dict[str, Any]]) -> None:
    detail = get_json(client, f"/api/papers/{world.retracted}")
    record = next(p for p in exported if p["pmid"] == world.retracted)
    events = detail.pop("events")
    assert detail.pop("status_flags") == ["retracted"]
    assert detail == record
    assert [e["kind"] for e in events] == ["retraction", "revised"]
    assert events[0] == {"kind": "retraction", "at": LATER, "notice_pmid": "99999999"}
    assert get_json(client, "/api/papers/1", 404) == {"error": "no stored paper has PMID 1", "parameter": "pmid"}
    assert get_json(client, "/api/papers/12a", 400)["parameter"] == "pmid"


BAD = [
    ("/api/papers?condition=eczema-ish", "condition", "condition: unknown tag 'eczema-ish'; known: atopic_dermatitis"),
    ("/api/papers?intervention=x", "intervention", "intervention: unknown tag 'x'"),
    ("/api/papers?design=rct,nope", "design", "design: unknown tag 'nope'"),
    ("/api/papers?query=nope", "query", "query: no query named 'nope'"),
    ("/api/papers?since=2024-13", "since", "since: expected a year (2024), a month (2024-03) or a day"),
    ("/api/papers?until=soon", "until", "until: expected a year"),
    ("/api/papers?since=2025&until=2024", "since", "since 2025 is after until 2024"),
    ("/api/papers?date=revised", "date", "date: expected one of published, found, got 'revised'"),
    ("/api/papers?sort=best", "sort", "sort: expected one of relevance, date"),
    ("/api/papers?relevant=maybe", "relevant", "relevant: expected 1 or 0"),
    ("/api/papers?page=0", "page", "page: expected a whole number from 1 to 100000, got '0'"),
    ("/api/papers?per_page=1000", "per_page", "per_page: expected a whole number from 1 to 100"),
    ("/api/papers?q=-mouse", "q", "only excludes words"),
    ("/api/papers?q=%22%22", "q", "has no words to search for"),
    ("/api/papers?conditon=acne", "conditon", "unknown parameter 'conditon'"),
    ("/api/map?design=nope", "design", "design: unknown tag 'nope'"),
    ("/api/map?q=acne", "q", "unknown parameter 'q'"),
    ("/api/trends?by=design", "by", "by: expected one of condition, intervention"),
    ("/api/trends?date=x", "date", "date: expected one of found, published"),
    ("/api/trends?since=1900&until=2026", "since", "at most 600 months"),
    ("/api/trends.csv?until=x", "until", "until: expected a year"),
]


@pytest.mark.parametrize(("path", "parameter", "message"), BAD)
def test_a_bad_parameter_is_400_naming_it(client: FlaskClient, path: str, parameter: str, message: str) -> None:
    body = get_json(client, path, 400)
    assert set(body) == {"error", "parameter"} and body["parameter"] == parameter
    assert message in body["error"] and "\n" not in body["error"]
    page = client.get(path.replace("/api/papers", "/search").replace("/api/", "/").replace("trends.csv", "trends"))
    assert page.status_code == 400 and page.mimetype == "text/html"


def test_unknown_paths_and_methods(client: FlaskClient) -> None:
    assert get_json(client, "/api/nope", 404)["error"] == "no such endpoint: /api/nope"
    assert client.get("/nope").status_code == 404
    response = client.post("/api/papers")
    assert response.status_code == 405 and response.headers["Allow"] == "GET, HEAD"
    assert client.post("/search").status_code == 405


# ------------------------------------------------------------------ acceptance: the same answers as the CLI

COMBINATIONS: list[tuple[list[str], dict[str, str]]] = [
    (["probiotic"], {"q": "probiotic"}),
    (["probiotic", "--condition", "atopic_dermatitis"], {"q": "probiotic", "condition": "atopic_dermatitis"}),
    (["microbiota OR microbiome -mouse", "--relevant"], {"q": "microbiota OR microbiome -mouse", "relevant": "1"}),
    (['"gut microbiota"', "--sort", "date"], {"q": '"gut microbiota"', "sort": "date"}),
    (["--relevant", "--design", "rct"], {"relevant": "1", "design": "rct"}),
    (["--relevant", "--condition", "psoriasis,acne", "--intervention", "probiotics"],
     {"relevant": "1", "condition": "psoriasis,acne", "intervention": "probiotics"}),
    (["--relevant", "--since", "2026-12", "--date", "found"], {"relevant": "1", "since": "2026-12", "date": "found"}),
    (["--since", "1999-03", "--until", "1999-10", "--relevant"], {"since": "1999-03", "until": "1999-10", "relevant": "1"}),
    (["--query", "gut-skin-axis", "--exclude-retracted"], {"query": "gut-skin-axis", "exclude_retracted": "1"}),
    (["skin", "--design", "review", "--design", "systematic_review"], {"q": "skin", "design": "review,systematic_review"}),
]


def query_string(params: dict[str, str]) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


def cli_search(world: WebWorld, args: list[str]) -> list[dict[str, Any]]:
    result = world.monitor("search", *args, "--format", "jsonl", "--limit", "0", now=LATER)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def tag_counts(papers: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, collections.Counter[str]] = {k: collections.Counter() for k in ("conditions", "interventions",
                                                                                   "designs")}
    for p in papers:
        for kind, counter in out.items():
            counter.update(p[kind])
    return {kind: dict(counter) for kind, counter in out.items()}


@pytest.mark.parametrize(("cli_args", "params"), COMBINATIONS, ids=[" ".join(c) for c, _ in COMBINATIONS])
def test_api_papers_equals_monitor_search_and_facets_equal_the_export(
        client: FlaskClient, world: WebWorld, exported: list[dict[str, Any]], cli_args: list[str],
        params: dict[str, str]) -> None:
    expected = cli_search(world, cli_args)
    api = get_json(client, f"/api/papers?{query_string(params)}&per_page=100")
    assert expected, "a combination that finds nothing proves little"
    assert [p["pmid"] for p in api["papers"]] == [r["pmid"] for r in expected]
    assert api["total"] == len(expected)
    for item, record in zip(api["papers"], expected):
        assert item["snippet"] == record["search"]["snippet"] and item["title"] == record["title"]
        assert item["conditions"] == record["conditions"] and item["gut_skin_relevant"] == record["gut_skin_relevant"]
    by_pmid = {p["pmid"]: p for p in exported}
    assert api["facets"] == tag_counts([by_pmid[r["pmid"]] for r in expected])
    if "q" not in params:  # the same filters on `monitor export` select the same papers
        filtered = world.monitor("export", "--format", "jsonl", "--exclude-deleted", *cli_args, now=LATER)
        assert filtered.returncode == 0, filtered.stderr
        assert sorted(json.loads(line)["pmid"] for line in filtered.stdout.splitlines()) == sorted(
            r["pmid"] for r in expected)


def map_from_export(papers: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, dict[str, int]]]:
    cells: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for p in papers:
        if p["gut_skin_relevant"] and not p["deleted"]:
            for c in p["conditions"]:
                for i in p["interventions"]:
                    cells[(c, i)].append(p)
    return {key: (len(ps), dict(collections.Counter(d for p in ps for d in p["designs"])))
            for key, ps in cells.items()}


@pytest.mark.parametrize(("params", "export_args"), [
    ({}, []), ({"design": "rct"}, ["--design", "rct"]), ({"design": "review,observational"}, ["--design", "review,observational"]),
    ({"since": "1998", "until": "1999-06"}, ["--since", "1998", "--until", "1999-06"]),
    ({"since": "2026-12", "date": "found"}, ["--since", "2026-12", "--date", "found"]),
])
def test_every_map_cell_equals_the_count_from_the_export(client: FlaskClient, world: WebWorld, params: dict[str, str],
                                                         export_args: list[str]) -> None:
    result = world.monitor("export", "--format", "jsonl", *export_args, now=LATER)
    assert result.returncode == 0, result.stderr
    papers = [json.loads(line) for line in result.stdout.splitlines()]
    expected = map_from_export(papers)
    api = get_json(client, f"/api/map?{query_string(params)}")
    got = {(c["condition"], c["intervention"]): (c["papers"], c["designs"]) for c in api["cells"]}
    assert got == expected and expected
    relevant = [p for p in papers if p["gut_skin_relevant"] and not p["deleted"]]
    assert api["papers"] == len(relevant)
    assert {c["id"]: c["papers"] for c in api["conditions"] if c["papers"]} == tag_counts(relevant)["conditions"]
    page = client.get(f"/map?{query_string(params)}").get_data(as_text=True)
    for (c, i), (n, _) in expected.items():  # every cell links to the search that lists exactly its papers
        link = "/search?" + query_string({**params, "condition": c, "intervention": i, "relevant": "1"})
        assert link.replace("&", "&amp;") in page
        listed = get_json(client, link.replace("/search", "/api/papers") + "&per_page=100")
        assert listed["total"] == n


def test_trends_equal_monthly_counts_from_the_export(client: FlaskClient, exported: list[dict[str, Any]]) -> None:
    relevant = [p for p in exported if p["gut_skin_relevant"] and not p["deleted"]]
    api = get_json(client, "/api/trends?by=condition&date=found")
    assert api["months"][-1] == "2026-12" and len(api["months"]) == 60
    for series in api["series"]:
        expected = collections.Counter(p["first_seen_at"][:7] for p in relevant if series["tag"] in p["conditions"])
        assert dict(zip(api["months"], series["counts"])) == {m: expected.get(m, 0) for m in api["months"]}
    found = collections.Counter(p["first_seen_at"][:7] for p in relevant)
    assert dict(zip(api["months"], api["total"])) == {m: found.get(m, 0) for m in api["months"]}
    assert sum(api["total"]) == len(relevant) and api["total"][-2] and api["total"][-1]  # both runs' months
    published = get_json(client, "/api/trends?by=intervention&date=published&since=1990&until=2026")
    for series in published["series"]:
        expected = collections.Counter(p["sort_date"][:7] for p in relevant
                                       if series["tag"] in p["interventions"] and p["sort_date"]
                                       and "1990" <= p["sort_date"][:4] <= "2026")
        assert {m: n for m, n in zip(published["months"], series["counts"]) if n} == dict(expected)
    csv_text = client.get("/api/trends.csv?by=condition&date=found").get_data(as_text=True).splitlines()
    assert csv_text[0] == "month," + ",".join(s["tag"] for s in api["series"]) + ",all_relevant"
    assert csv_text[-1] == ",".join([api["months"][-1], *(str(s["counts"][-1]) for s in api["series"]),
                                     str(api["total"][-1])])


def test_export_links_give_what_monitor_search_writes(client: FlaskClient, world: WebWorld) -> None:
    result = world.monitor("search", "probiotic", "--relevant", "--format", "jsonl", "--limit", "0", now=LATER)
    response = client.get("/export?q=probiotic&relevant=1&format=jsonl")
    assert response.status_code == 200 and response.get_data(as_text=True) == result.stdout
    assert response.headers["Content-Disposition"] == 'attachment; filename="gut-skin-papers.jsonl"'
    ris = client.get("/export?q=probiotic&relevant=1&format=ris").get_data(as_text=True)
    assert ris.count("TY  - JOUR") == len(result.stdout.splitlines()) > 0
    page = client.get("/search?q=probiotic&relevant=1").get_data(as_text=True)
    for fmt in ("ris", "bibtex", "csl-json", "csv", "jsonl"):
        assert f'href="/export?q=probiotic&amp;relevant=1&amp;format={fmt}"' in page
    assert client.get("/export?q=probiotic").status_code == 400  # no format


def test_facet_links_narrow_the_search(client: FlaskClient) -> None:
    api = get_json(client, "/api/papers?relevant=1&per_page=100")
    condition, n = next(iter(api["facets"]["conditions"].items()))
    page = client.get("/search?relevant=1").get_data(as_text=True)
    assert f'href="/search?relevant=1&amp;condition={condition}"' in page
    assert get_json(client, f"/api/papers?relevant=1&condition={condition}")["total"] == n


# ------------------------------------------------------------------ feeds, paths, failures


def test_feed_files_are_served_as_before(client: FlaskClient, world: WebWorld) -> None:
    response = client.get("/main.xml")
    body = (world.tmp / "feeds" / "main.xml").read_bytes()
    assert response.status_code == 200 and response.data == body
    assert response.headers["Content-Type"] == "application/rss+xml; charset=utf-8"
    etag = response.headers["ETag"]
    assert client.get("/main.xml", headers={"If-None-Match": etag}).status_code == 304
    zipped = client.get("/main.xml", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped.data) == body
    assert client.get("/index.html").data == (world.tmp / "feeds" / "index.html").read_bytes()
    assert client.get("/feeds.opml").headers["Content-Type"] == "text/x-opml; charset=utf-8"
    assert get_json(client, "/healthz")["status"] == "ok"
    for bad in ("/../queries.toml", "/.monitor-feeds.json", "/nope.xml", "/monitor.sqlite3"):
        assert client.get(bad).status_code == 404, bad
    page = client.get("/", headers={"Accept-Encoding": "gzip"})
    assert page.headers["Content-Encoding"] == "gzip" and b"<html" in gzip.decompress(page.data)


@pytest.mark.parametrize("path", ["/main.xml\x00.html", "/search\x01", "/paper/1\x7f", "/\xff\xfe"])
def test_paths_no_route_could_mean_are_400(client: FlaskClient, path: str) -> None:
    response = client.get("/", environ_overrides={"PATH_INFO": path})
    assert response.status_code == 400 and response.data == b"bad request path\n"


class BrokenStore:
    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise StorageError("database error while reading papers: disk I/O error")
        return fail


def test_an_unreadable_database_is_503_not_a_traceback(tmp_path: Path, app: App) -> None:
    from monitor.web import Labels, WebContext, create_app

    ctx = WebContext(store=BrokenStore(), labels=Labels.from_taxonomy(app.taxonomy),  # type: ignore[arg-type]
                     query_names=(), known_queries=set, feeds=tmp_path, status=app.status,
                     today=lambda: dt.date(2026, 12, 22))
    c = create_app(ctx).test_client()
    body = get_json(c, "/api/papers?q=acne", 503)
    assert body["parameter"] is None and "disk I/O error" in body["error"] and "try again" in body["error"]
    page = c.get("/map")
    assert page.status_code == 503 and b"disk I/O error" in page.data
