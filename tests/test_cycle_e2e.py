"""End to end: the `monitor` command, the shipped queries.toml, a real SQLite file, and the E-utilities
stand-in serving real PubMed records — in-process on virtual time (tests/harness.py), so the rate limit and
every retry are exercised without waiting; the tests marked as smoke tests run the installed command in a
subprocess against the stand-in over loopback HTTP.

Each query term is mapped by the stand-in to a slice of real corpus PMIDs (overlapping, so some papers are
found by several queries); tests then change the world between runs and check what the database holds
through `monitor export`, the way other tools read it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from monitor.config import load_config
from tests.conftest import SHIPPED_CONFIG, db_url
from tests.eutils_standin import IN_PROCESS_URL, StandIn
from tests.harness import VirtualTime, invoke, standin_overrides

TODAY = dt.date(2026, 11, 22)
NOW = "2026-11-22T03:00:00+00:00"
FAST_RETRIES = {"timeout = 60": "timeout = 1", "backoff_seconds = 1.0": "backoff_seconds = 0.02\nmax_backoff_seconds = 0.2",
                # the copied config lives in a tmp dir: point it at the shipped taxonomy
                'taxonomy = "taxonomy.toml"': f'taxonomy = "{SHIPPED_CONFIG.parent / "taxonomy.toml"}"'}


class World:
    """The stand-in with the shipped queries wired to real records, plus a config and DB for the CLI.

    ``run_monitor`` None: commands run in-process with the stand-in as their transport, on one virtual
    clock for the whole world; else that runner (a subprocess) talks to the stand-in over loopback."""

    def __init__(self, standin: StandIn, tmp: Path, run_monitor: Callable[..., object] | None = None) -> None:
        self.standin = standin
        self.tmp = tmp
        self._run = run_monitor
        self.time = VirtualTime()
        self.queries = load_config(SHIPPED_CONFIG, env={}).queries
        corpus = sorted((p for p in standin.pmids() if len(p) == 8), key=int)[:120]
        # Query i matches 15 records starting at 8*i: neighbours share 7 records.
        self.matches: dict[str, list[str]] = {}
        for i, q in enumerate(self.queries):
            ids = corpus[8 * i: 8 * i + 15]
            self.matches[q.name] = ids
            standin.set_query(q.term, ids)
        self.all_ids = sorted({p for ids in self.matches.values() for p in ids}, key=int)
        for n, pmid in enumerate(self.all_ids):
            standin.set_dates(pmid, edat=dt.date(2025, 1, 1) + dt.timedelta(days=3 * n))
        self.config = tmp / "queries.toml"
        text = SHIPPED_CONFIG.read_text(encoding="utf-8")
        for old, new in FAST_RETRIES.items():
            assert old in text
            text = text.replace(old, new)
        self.config.write_text(text, encoding="utf-8")
        self.db = tmp / "monitor.sqlite3"
        self.base_url = standin.base_url if run_monitor is not None else IN_PROCESS_URL

    def term(self, name: str) -> str:
        return next(q.term for q in self.queries if q.name == name)

    def monitor(self, *args: str, now: str = NOW, key: bool = False, db: Path | None = None):
        env = {"MONITOR_CONFIG": str(self.config), "MONITOR_DB_URL": db_url(db or self.db),
               "MONITOR_EUTILS_URL": self.base_url, "MONITOR_NOW": now}
        if key:
            env["NCBI_API_KEY"] = "test-key"
        if self._run is None:
            return invoke(args, env, standin_overrides(self.standin, self.time))
        return self._run(*args, env=env)

    def export(self, db: Path | None = None) -> list[dict]:
        result = self.monitor("export", "--format", "jsonl", db=db)
        assert result.returncode == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """The world in-process: the stand-in is never bound to a socket."""
    yield World(StandIn(today=TODAY, hang_seconds=3.0), tmp_path)


@pytest.fixture
def loopback_world(tmp_path: Path, run_installed) -> Iterator[World]:
    """The world as users meet it: the installed command in a subprocess, the stand-in over loopback."""
    with StandIn(today=TODAY, hang_seconds=3.0) as standin:
        yield World(standin, tmp_path, run_installed)


def lines_by_query(stdout: str) -> dict[str, str]:
    """The per-query lines and the total of `monitor run` (the feeds summary after them is not a query)."""
    return {line.split()[0]: line for line in stdout.splitlines()
            if line and not line.startswith((" ", "feeds: "))}


def counts(line: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"(found|new|updated|deleted)\s+(\d+)", line)}


def test_first_second_and_third_run(world: World) -> None:
    late = world.all_ids[-6:]
    world.standin.hide(late)

    first = world.monitor("run")
    assert first.returncode == 0, first.stderr
    rows = lines_by_query(first.stdout)
    assert set(rows) == {q.name for q in world.queries} | {"total"}
    visible = [p for p in world.all_ids if p not in late]
    assert counts(rows["total"])["new"] == len(visible)
    for name, ids in world.matches.items():
        assert counts(rows[name])["found"] == len([p for p in ids if p not in late])
    papers = world.export()
    assert [p["pmid"] for p in papers] == visible  # every matching record once, PMID order
    by_pmid = {p["pmid"]: p for p in papers}
    for name, ids in world.matches.items():
        for pmid in ids:
            if pmid not in late:
                assert name in [q["name"] for q in by_pmid[pmid]["queries"]]
    shared = [p for p in papers if len(p["queries"]) > 1]
    assert shared, "neighbouring queries overlap, so some papers must be linked to two queries"
    assert world.standin.max_in_any_window(1.0) <= 3
    assert world.standin.rate_limited_count == 0
    assert all(r.params.get("tool") == "gut-skin-monitor" for r in world.standin.log)

    # New records appear a day later: exactly those are fetched and stored.
    world.standin.publish(late)
    for pmid in late:
        world.standin.set_dates(pmid, edat=TODAY + dt.timedelta(days=1))
    world.standin.today = TODAY + dt.timedelta(days=1)
    world.standin.reset_log()
    second = world.monitor("run", now="2026-11-23T03:00:00+00:00")
    assert second.returncode == 0, second.stderr
    assert counts(lines_by_query(second.stdout)["total"]) == {"found": counts(lines_by_query(second.stdout)[
        "total"])["found"], "new": len(late), "updated": 0}
    efetches = world.standin.requests_for("efetch")
    # Only queries that match a late record fetch anything; by id or from the history server.
    assert 0 < len(efetches) <= sum(1 for ids in world.matches.values() if set(ids) & set(late))
    assert {p for r in efetches if "id" in r.params for p in r.params["id"].split(",")} <= set(late)
    after = world.export()
    assert [p["pmid"] for p in after] == world.all_ids
    untouched = [p for p in after if p["pmid"] not in late]
    assert all(p["updated_at"] == NOW for p in untouched)  # nothing else was rewritten
    assert world.standin.max_in_any_window(1.0) <= 3

    # Nothing new: no efetch at all, and the database does not change.
    before = world.export()
    world.standin.reset_log()
    third = world.monitor("run", now="2026-11-23T09:00:00+00:00")
    assert third.returncode == 0, third.stderr
    assert world.standin.requests_for("efetch") == []
    assert counts(lines_by_query(third.stdout)["total"])["new"] == 0
    assert world.export() == before
    assert world.standin.max_in_any_window(1.0) <= 3


def test_export_carries_every_parsed_field(world: World) -> None:
    assert world.monitor("run", key=True).returncode == 0
    papers = world.export()
    fields = {"pmid", "version", "status", "title", "abstract", "abstract_text", "authors", "journal",
              "pub_date", "sort_date", "year", "doi", "pmcid", "pii", "languages", "mesh", "keywords",
              "publication_types", "corrections", "date_revised", "date_completed", "history", "queries",
              "first_seen_at", "updated_at", "deleted", "retracted", "kind"}
    for paper in papers:
        assert fields <= set(paper), fields - set(paper)
        assert paper["title"]
        assert paper["queries"] and all(q["first_found_at"] == NOW for q in paper["queries"])
    assert any(p["mesh"] and p["mesh"][0]["descriptor"] for p in papers)
    assert any(p["doi"] for p in papers)
    assert any(p["authors"] and p["authors"][0]["last_name"] for p in papers)
    assert {"title", "volume", "issue", "pages", "iso_abbreviation"} <= set(papers[0]["journal"])

    csv_out = world.tmp / "papers.csv"
    result = world.monitor("export", "--format", "csv", "--out", str(csv_out))
    assert result.returncode == 0, result.stderr
    import csv

    rows = list(csv.DictReader(csv_out.open(encoding="utf-8")))
    assert [r["pmid"] for r in rows] == [p["pmid"] for p in papers]
    assert rows[0]["title"] == papers[0]["title"]


def test_degraded_query_is_reported_and_stores_nothing(world: World) -> None:
    bad = world.queries[2].name
    world.standin.degrade(world.term(bad), errors=[("PhraseNotFound", "skin-gut axis")], warnings=[])
    result = world.monitor("run", key=True)
    assert result.returncode == 1
    row = lines_by_query(result.stdout)[bad]
    assert "DEGRADED" in row
    assert "PhraseNotFound 'skin-gut axis'" in result.stdout
    assert f"({bad})" in result.stderr and "did not complete" in result.stderr
    stored = {p["pmid"]: [q["name"] for q in p["queries"]] for p in world.export()}
    assert all(bad not in names for names in stored.values())
    only_bad = set(world.matches[bad]) - {p for n, ids in world.matches.items() if n != bad for p in ids}
    assert not only_bad & set(stored)
    status = world.monitor("status")
    assert f"{bad}: never run" in status.stdout
    assert "degraded" in status.stdout


def test_faults_that_succeed_after_retries(world: World) -> None:
    # Nine faults back to back on the same request: give the client ten attempts.
    world.config.write_text(world.config.read_text().replace("max_attempts = 6", "max_attempts = 10"))
    for kind in ("429", "500", "502", "503", "reset", "truncate", "short_read", "error_body"):
        world.standin.inject(kind, endpoint="efetch" if kind == "truncate" else None)
    world.standin.inject("timeout", endpoint="esearch", hang_seconds=2.0)
    result = world.monitor("run", key=True)
    assert result.returncode == 0, result.stderr
    assert len(world.export()) == len(world.all_ids)
    faults = [r.fault for r in world.standin.log if r.fault]
    assert sorted(faults) == sorted(["429", "500", "502", "503", "reset", "truncate", "short_read",
                                     "error_body", "timeout"])


def test_exhausted_retries_fail_loudly_lose_nothing_and_next_run_completes(world: World, tmp_path: Path) -> None:
    reference = tmp_path / "reference.sqlite3"
    assert world.monitor("run", key=True, db=reference).returncode == 0

    # Let the first query store its papers, then make every efetch fail.
    first = world.queries[0]
    assert world.monitor("run", "--query", first.name, key=True).returncode == 0
    stored_before = world.export()
    world.standin.inject("503", count=10_000, endpoint="efetch")
    failed = world.monitor("run", key=True)
    assert failed.returncode == 1
    assert "efetch failed after 6 attempts: HTTP 503" in failed.stdout
    assert "FAILED" in lines_by_query(failed.stdout)[world.queries[1].name]
    after = world.export()
    # Nothing lost, nothing half-stored: the same papers with the same content and their old links; the
    # only change allowed is a link from a query that really matches an already-stored paper.
    assert [p["pmid"] for p in after] == [p["pmid"] for p in stored_before]
    for old, new in zip(stored_before, after):
        assert {k: v for k, v in old.items() if k != "queries"} == {k: v for k, v in new.items() if k != "queries"}
        assert old["queries"] == new["queries"][: len(old["queries"])]
        for link in new["queries"][len(old["queries"]):]:
            assert new["pmid"] in world.matches[link["name"]]
    status = world.monitor("status").stdout
    assert f"{world.queries[1].name}: never run" in status  # its watermark did not move

    world.standin.clear_faults()
    again = world.monitor("run", key=True)
    assert again.returncode == 0, again.stderr
    assert strip_volatile(world.export()) == strip_volatile(world.export(db=reference))


def strip_volatile(papers: list[dict]) -> list[dict]:
    return papers  # all timestamps come from MONITOR_NOW, so nothing differs between equal databases


def test_thirty_percent_faults_converge_to_the_fault_free_database(world: World, tmp_path: Path) -> None:
    # Small batches: many requests, so a 30% fault rate hits every stage many times.
    world.config.write_text(world.config.read_text().replace("batch_size = 200", "batch_size = 3"))
    reference = tmp_path / "reference.sqlite3"
    assert world.monitor("run", key=True, db=reference).returncode == 0
    baseline = len(world.standin.log)
    world.standin.reset_log()
    world.standin.fault_rate(0.3, ["429", "500", "503", "reset", "truncate", "short_read", "error_body",
                                   "timeout"], seed=20261122)
    outcomes = []
    for _ in range(6):
        outcomes.append(world.monitor("run", key=True).returncode)
        if outcomes[-1] == 0:
            break
    assert outcomes[-1] == 0, outcomes
    faults = sum(1 for r in world.standin.log if r.fault)
    # Faults really happened, at both endpoints (p = 0.3 per request; 0.15 leaves room for chance).
    assert baseline >= 30 and len(world.standin.log) > baseline
    assert faults >= 0.15 * len(world.standin.log)
    assert {r.endpoint for r in world.standin.log if r.fault} == {"esearch", "efetch"}
    papers = world.export()
    assert len({p["pmid"] for p in papers}) == len(papers)  # no duplicates
    assert papers == world.export(db=reference)


def with_retraction(xml: str) -> str:
    """The record with a RetractionIn link to notice PMID 99999999 (as PubMed adds it on retraction)."""
    correction = ('<CommentsCorrections RefType="RetractionIn"><RefSource>J Test. 2026;1:1</RefSource>'
                  '<PMID Version="1">99999999</PMID></CommentsCorrections>')
    if "<CommentsCorrectionsList>" in xml:
        return xml.replace("<CommentsCorrectionsList>", "<CommentsCorrectionsList>" + correction, 1)
    return xml.replace("</MedlineCitation>",
                       f"<CommentsCorrectionsList>{correction}</CommentsCorrectionsList></MedlineCitation>", 1)


def test_revision_retraction_and_deletion_reach_the_store(world: World) -> None:
    assert world.monitor("run", key=True).returncode == 0
    target, gone = world.all_ids[3], world.all_ids[4]
    xml = world.standin.record_xml(target).decode()
    version = re.search(r'<PMID Version="(\d+)">' + target, xml)
    assert version
    revised = xml.replace(f'<PMID Version="{version.group(1)}">{target}',
                          f'<PMID Version="{int(version.group(1)) + 1}">{target}', 1)
    revised = with_retraction(revised)
    world.standin.today = TODAY + dt.timedelta(days=1)
    world.standin.revise(target, revised.encode())
    world.standin.delete(gone)
    world.standin.set_dates(gone, mdat=TODAY + dt.timedelta(days=1))
    world.standin.reset_log()

    result = world.monitor("run", key=True, now="2026-11-23T03:00:00+00:00")
    assert result.returncode == 0, result.stderr
    total = counts(lines_by_query(result.stdout)["total"])
    assert total["new"] == 0 and total["updated"] == 1
    fetched = {pmid for r in world.standin.requests_for("efetch") for pmid in r.params["id"].split(",")}
    assert target in fetched
    paper = next(p for p in world.export() if p["pmid"] == target)
    assert paper["version"] == int(version.group(1)) + 1
    assert paper["retracted"] is True
    assert {"ref_type": "RetractionIn", "ref_source": "J Test. 2026;1:1", "pmid": "99999999"} in paper["corrections"]
    assert len([p for p in world.export() if p["pmid"] == target]) == 1


def test_date_window_splitting_over_the_9999_cap(tmp_path: Path) -> None:
    standin = StandIn(today=TODAY)
    world = World(standin, tmp_path)
    name = world.queries[0].name
    template = world.matches[name][0]
    extra = standin.add_synthetic(12_000, 90_000_000, template, ("2025-03-01", "2025-03-20"),
                                  term=world.term(name))
    config = world.config.read_text().replace("batch_size = 200", "batch_size = 5000")
    world.config.write_text(config)
    result = world.monitor("run", "--query", name, key=True)
    assert result.returncode == 0, result.stderr
    assert counts(lines_by_query(result.stdout)[name])["new"] == 12_000 + len(world.matches[name])
    searches = standin.requests_for("esearch")
    assert len(searches) >= 3  # the whole window, then its halves
    assert all(int(r.params.get("retstart", 0)) <= 9998 for r in searches)
    assert standin.rate_limited_count == 0
    stored = {p["pmid"] for p in world.export()}
    assert set(extra) <= stored


def test_run_single_query_with_since_and_bad_values(world: World) -> None:
    name = world.queries[1].name
    result = world.monitor("run", "--query", name, "--since", "2025-02-01", key=True)
    assert result.returncode == 0, result.stderr
    assert "[2025-02-01..2026-11-22]" in result.stdout
    assert "watermark kept" in result.stdout  # later than the query's own since: no gap allowed
    papers = world.export()
    assert papers and all([q["name"] for q in p["queries"]] == [name] for p in papers)

    unknown = world.monitor("run", "--query", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("monitor: error: queries.toml: queries: no query named 'nope' (known: ")
    bad_date = world.monitor("run", "--since", "yesterday")
    assert (bad_date.returncode, bad_date.stderr.strip()) == (
        2, "monitor: error: --since: not a date in YYYY-MM-DD form: 'yesterday'")


def test_smoke_the_installed_command_over_loopback(loopback_world: World) -> None:
    """Smoke test: the console script in a subprocess, real HTTP to the stand-in, NCBI's real rate limit."""
    world = loopback_world
    first = world.monitor("run")
    assert first.returncode == 0, first.stderr
    assert counts(lines_by_query(first.stdout)["total"])["new"] == len(world.all_ids)
    assert [p["pmid"] for p in world.export()] == world.all_ids
    assert world.standin.max_in_any_window(1.0) <= 3 and world.standin.rate_limited_count == 0


def test_unreachable_ncbi_is_one_line_and_exit_1(loopback_world: World) -> None:
    world = loopback_world
    port = world.standin.port
    world.standin.stop()
    began = time.monotonic()
    result = world.monitor("run")
    assert result.returncode == 1 and time.monotonic() - began < 15
    assert "Traceback" not in result.stderr + result.stdout
    # Nothing answers: one line naming where and why, not one per query and attempt.
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"monitor: error: nothing answers at 127.0.0.1:{port} (connection refused)")
    assert "MONITOR_EUTILS_URL" in line
    status = world.monitor("status").stdout
    assert "failed" in status and "never run" in status  # the run is logged; no watermark moved


def test_status_shows_watermarks_and_runs(world: World) -> None:
    assert world.monitor("run", key=True).returncode == 0
    result = world.monitor("status")
    assert result.returncode == 0, result.stderr
    assert f"papers: {len(world.all_ids)} stored" in result.stdout
    for q in world.queries:
        assert f"  {q.name}: last success 2026-11-22 03:00 UTC, window {q.since}..2026-11-22" in result.stdout
    assert "#1 2026-11-22 03:00 UTC  ok" in result.stdout


def test_papers_are_tagged_on_run_and_a_synonym_change_retags_exactly_the_affected(world: World) -> None:
    assert world.monitor("run", key=True).returncode == 0, "first run"
    before = {p["pmid"]: p for p in world.export()}
    for p in before.values():
        assert p["taxonomy_version"] and isinstance(p["relevance"], float)
        assert set(p) >= {"conditions", "interventions", "designs", "gut_skin_relevant", "tag_evidence"}
        for ev in p["tag_evidence"]:
            assert set(ev) == {"tag", "kind", "source", "text", "weight"} and ev["text"]
    assert any(p["designs"] for p in before.values())

    # A word that names no skin disease, present in a few titles: make it a rosacea synonym.
    def words(text: str) -> set[str]:
        return {w for w in re.findall(r"[a-z]{7,}", text.lower())}

    title_words: dict[str, set[str]] = {}
    for pmid, p in before.items():
        for w in words(p["title"]):
            title_words.setdefault(w, set()).add(pmid)
    word = sorted(w for w, ids in title_words.items() if 2 <= len(ids) <= len(before) // 4)[0]
    in_text = {pmid for pmid, p in before.items()
               if word in words(" ".join([p["title"], p["abstract_text"], " ".join(p["keywords"])]))}
    taxonomy = (SHIPPED_CONFIG.parent / "taxonomy.toml").read_text(encoding="utf-8")
    old_line = "patterns = ['rosacea\\w*', 'acne rosacea']"
    assert old_line in taxonomy
    edited = world.tmp / "taxonomy.toml"
    edited.write_text(taxonomy.replace(old_line, f"patterns = ['rosacea\\w*', 'acne rosacea', '{word}']"))
    world.config.write_text(re.sub(r'taxonomy = ".*"', f'taxonomy = "{edited}"', world.config.read_text()))

    result = world.monitor("retag")
    assert result.returncode == 0, result.stderr
    after = {p["pmid"]: p for p in world.export()}
    changed = {pmid for pmid in before
               if {k: before[pmid][k] for k in ("conditions", "interventions", "designs", "gut_skin_relevant")}
               != {k: after[pmid][k] for k in ("conditions", "interventions", "designs", "gut_skin_relevant")}}
    gained = {pmid for pmid in before if "rosacea" in after[pmid]["conditions"]
              and "rosacea" not in before[pmid]["conditions"]}
    assert title_words[word] - {p for p in before if "rosacea" in before[p]["conditions"]} <= gained
    assert changed <= in_text  # nothing without the word changed
    assert gained and changed == gained  # the new synonym only ever adds rosacea
    assert f"tags changed on {len(changed)}, {len(before)} rewritten" in result.stdout
    assert re.search(rf"^  rosacea\s+\+{len(gained)}\s+-0$", result.stdout, re.M)
    for pmid in before:
        if pmid in gained:
            assert any(e["tag"] == "rosacea" and e["text"].lower() == word for e in after[pmid]["tag_evidence"])

    again = world.monitor("retag")
    assert again.returncode == 0 and "tags changed on 0, 0 rewritten" in again.stdout  # idempotent
    assert world.export() == list(after.values())


def test_records_efetch_leaves_out_are_asked_for_again_then_reported(world: World) -> None:
    import httpx

    from monitor.app import Overrides

    lost = world.all_ids[2]
    inner = world.standin.transport(world.time.monotonic)

    def leave_out(request: httpx.Request) -> httpx.Response:
        response = inner.handle_request(request)
        if not request.url.path.endswith("efetch.fcgi"):
            return response
        body = response.read()  # httpx has decoded it
        # Drop the lost PMID's whole record, as when NCBI silently returns fewer records than asked for.
        kept = re.sub(rb"<PubmedArticle>(?:(?!</PubmedArticle>).)*?<PMID[^>]*>" + lost.encode() +
                      rb"</PMID>.*?</PubmedArticle>\s*", b"", body, flags=re.S)
        headers = [(k, v) for k, v in response.headers.items() if k.lower() not in ("content-encoding",
                                                                                   "content-length")]
        return httpx.Response(response.status_code, headers=headers, stream=httpx.ByteStream(kept))

    overrides = Overrides(transport=httpx.MockTransport(leave_out), monotonic=world.time.monotonic,
                          sleep=world.time.sleep)
    env = {"MONITOR_CONFIG": str(world.config), "MONITOR_DB_URL": db_url(world.db),
           "MONITOR_EUTILS_URL": world.base_url, "MONITOR_NOW": NOW}
    result = invoke(["run"], env, overrides)
    assert result.returncode == 0, result.stderr
    names = [n for n, ids in world.matches.items() if lost in ids]
    for name in names:
        line = lines_by_query(result.stdout)[name]
        assert "MISSING 1" in line and f"PMIDs {lost}" in line and "the next run asks again" in line
    asked = [r for r in world.standin.requests_for("efetch") if lost in r.params.get("id", "").split(",")]
    assert asked  # asked for again on its own, after its batch (or the history server) left it out
    assert lost not in {p["pmid"] for p in world.export()}
    assert len(world.export()) == len(world.all_ids) - 1  # everything else is stored


def test_a_database_failure_mid_query_keeps_the_batches_before_it_and_moves_no_watermark(world: World,
                                                                                          tmp_path: Path) -> None:
    """Batches are stored on a worker while the next is fetched (monitor.pipeline): a store that fails
    is still reported as one line, the batches committed before it stay, nothing after it is stored, the
    query's watermark stays, and the next run completes."""
    import sqlalchemy as sa

    from monitor.storage import Storage
    from tests.conftest import on_postgres

    first = world.queries[0]
    reference = tmp_path / "reference.sqlite3"
    assert world.monitor("run", "--query", first.name, db=reference).returncode == 0
    world.config.write_text(world.config.read_text(encoding="utf-8").replace("batch_size = 200", "batch_size = 4"),
                            encoding="utf-8")
    order = sorted(world.matches[first.name], key=int, reverse=True)  # fetched newest first, four per batch
    store = Storage.open(db_url(world.db))
    failing = int(order[9])  # in the third batch
    with store.engine.begin() as conn:
        if on_postgres():
            conn.exec_driver_sql("CREATE FUNCTION injected_failure() RETURNS trigger LANGUAGE plpgsql AS "
                                 "$$ BEGIN RAISE EXCEPTION 'injected failure'; END $$")
            conn.exec_driver_sql(f"CREATE TRIGGER fail BEFORE INSERT ON papers FOR EACH ROW "
                                 f"WHEN (NEW.pmid = {failing}) EXECUTE FUNCTION injected_failure()")
        else:
            conn.exec_driver_sql(f"CREATE TRIGGER fail BEFORE INSERT ON papers WHEN NEW.pmid = {failing} "
                                 "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")

    failed = world.monitor("run", "--query", first.name)
    assert failed.returncode != 0
    assert "injected failure" in failed.stdout + failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr
    assert [p["pmid"] for p in world.export()] == sorted(order[:8], key=int)  # two batches; the third rolled back
    assert f"{first.name}: never run" in world.monitor("status").stdout

    with store.engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER fail" + (" ON papers" if on_postgres() else "")))
    store.close()
    again = world.monitor("run", "--query", first.name)
    assert again.returncode == 0, again.stdout + again.stderr
    assert world.export() == world.export(db=reference)
