"""End to end: `monitor queries check|preview` and a run with a phrase PubMed does not know, through the
installed command, a real SQLite file and the E-utilities stand-in evaluating the terms itself against its
real corpus records (``match_terms``) with an emulated phrase index.

Expected results come from the stand-in (what "PubMed" matches for a term, and its record dates), never
from the monitor's own output.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree

from tests.conftest import SHIPPED_CONFIG, db_url
from tests.eutils_standin import IN_PROCESS_URL, StandIn
from tests.harness import VirtualTime, invoke, standin_overrides

TODAY = dt.date(2026, 11, 22)
NOW = "2026-11-22T03:00:00+00:00"
SINCE = dt.date(1990, 1, 1)
UNKNOWN = "irritable bowel syndrome"
CONFIG = f"""
[entrez]
timeout = 5
max_attempts = 2
backoff_seconds = 0.02
max_backoff_seconds = 0.2

[tagging]
taxonomy = "{SHIPPED_CONFIG.parent / 'taxonomy.toml'}"

[blocks]
gut = '"gut microbiota"[tiab] OR "{UNKNOWN}"[tiab]'

[fallbacks]
FALLBACKS

[[queries]]
name = "gut"
since = {SINCE}
term = '({{gut}}) OR "social fear"[tiab]'

[[queries]]
name = "skin"
since = {SINCE}
term = 'psoria*[tiab] OR pruritus[tiab]'
"""
GUT_TERM = f'(("gut microbiota"[tiab] OR "{UNKNOWN}"[tiab])) OR "social fear"[tiab]'
FALLBACK_TERM = f'(("gut microbiota"[tiab] OR ("{UNKNOWN}"[tiab:~0]))) OR "social fear"[tiab]'
WITH_FALLBACK = f"\"{UNKNOWN}\" = '\"{UNKNOWN}\"[tiab:~0]'"


class Bench:
    def __init__(self, standin: StandIn, tmp: Path, run: Callable[..., object]) -> None:
        self.standin = standin
        self.tmp = tmp
        self._run = run
        self.time = VirtualTime()
        self.config = tmp / "queries.toml"
        self.db = tmp / "monitor.sqlite3"
        self.write(fallback=False)

    def write(self, *, fallback: bool) -> None:
        self.config.write_text(CONFIG.replace("FALLBACKS", WITH_FALLBACK if fallback else ""), encoding="utf-8")

    def monitor(self, *args: str):
        """The command in-process, the stand-in as its transport on virtual time: the rate and every
        request count are exact whatever else the machine is doing."""
        env = {"MONITOR_CONFIG": str(self.config), "MONITOR_DB_URL": db_url(self.db),
               "MONITOR_EUTILS_URL": IN_PROCESS_URL, "MONITOR_NOW": NOW}
        return invoke(args, env, standin_overrides(self.standin, self.time))

    def matches(self, term: str, year: int | None = None) -> list[str]:
        """What the stand-in's PubMed finds for ``term`` among records entered in the window (or a year)."""
        first, last = (SINCE, TODAY) if year is None else (dt.date(year, 1, 1), dt.date(year, 12, 31))
        return sorted((p for p in self.standin.matcher().search(term).ids
                       if first <= self.standin.dates(p).edat <= last), key=int)

    def ncbi_translation(self, term: str) -> str:
        resp = httpx.get(f"{self.standin.base_url}/esearch.fcgi",
                         params={"db": "pubmed", "term": term, "retmax": "0", "api_key": "other"})
        return etree.fromstring(resp.content).findtext("QueryTranslation")

    def stored(self) -> dict[str, list[str]]:
        result = self.monitor("export", "--format", "jsonl")
        assert result.returncode == 0, result.stderr
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        return {r["pmid"]: [q["name"] for q in r["queries"]] for r in rows}


@pytest.fixture
def bench(tmp_path: Path, run_monitor) -> Iterator[Bench]:
    with StandIn(today=TODAY, match_terms=True) as standin:
        standin.set_phrase_index([UNKNOWN])
        yield Bench(standin, tmp_path, run_monitor)


def test_check_names_the_phrase_shows_the_translation_and_the_fix(bench: Bench) -> None:
    translation = bench.ncbi_translation(GUT_TERM)
    bench.standin.reset_log()
    result = bench.monitor("queries", "check")
    assert result.returncode == 1
    out = result.stdout
    assert "gut: REFUSED (degraded: a run stores nothing)" in out
    assert f"QuotedPhraseNotFound '\"{UNKNOWN}\"' (degrading)" in out
    assert f"  translation: {translation}\n" in out
    assert '("irritable"[Title/Abstract] AND "bowel"[Title/Abstract] AND "syndrome"[Title/Abstract])' in out
    assert f'try: proximity search (no phrase index needed; any order, adjacent): "{UNKNOWN}"[tiab:~0]' in out
    assert f"try: or keep the phrase and add a fallback to queries.toml: [fallbacks] \"{UNKNOWN}\"" in out
    assert "skin: ok" in out
    assert result.stderr.strip() == ("monitor: error: 1 of 2 would be refused as degraded (gut): fix the term or "
                                     "add a fallback (see the lines above)")
    searches = bench.standin.requests_for("esearch")
    assert len(searches) == 2  # one request per query
    assert all(r.params["retmax"] == "0" and "rettype" not in r.params for r in searches)
    assert bench.standin.max_in_any_window(1.0) <= 3 and bench.standin.rate_limited_count == 0


def test_check_with_a_fallback_years_and_a_term_from_the_command_line(bench: Bench) -> None:
    bench.write(fallback=True)
    result = bench.monitor("queries", "check", "gut", "--years", "3")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("gut: runs with fallback")
    assert f"fallback for '{UNKNOWN}' (1×): (\"{UNKNOWN}\"[tiab:~0])" in out
    assert f"with fallbacks: {len(bench.standin.matcher().search(FALLBACK_TERM).ids):,} records" in out
    years = "  ".join(f"{y} {len(bench.matches(FALLBACK_TERM, y)):,}" for y in (2024, 2025, 2026))
    assert f"per year (Entrez date): {years}" in out
    answered = [r for r in bench.standin.requests_for("esearch") if not r.rate_limited]
    assert len(answered) == 2 + 3  # the term, the rewritten term, three years (a 429 on a loaded host is retried)

    term = bench.monitor("queries", "check", "--term", "{gut} AND social[tiab]")
    assert term.returncode == 0, term.stderr  # the top-level fallback applies to a --term as well
    assert term.stdout.startswith("--term: runs with fallback")
    bad = bench.monitor("queries", "check", "--term", "{guts}")
    assert (bad.returncode, bad.stderr.strip()) == (2, "monitor: error: --term: unknown block {guts} (known: gut)")
    unknown = bench.monitor("queries", "check", "nope")
    assert unknown.returncode == 2 and "no query named 'nope' (known: gut, skin)" in unknown.stderr


def test_run_with_fallback_stores_and_without_is_refused_naming_the_phrase(bench: Bench) -> None:
    refused = bench.monitor("run")
    assert refused.returncode == 1
    assert refused.stdout.split()[:2] == ["gut", "DEGRADED"]
    assert f"QuotedPhraseNotFound '\"{UNKNOWN}\"'" in refused.stdout
    assert f'fix: proximity search (no phrase index needed; any order, adjacent): "{UNKNOWN}"[tiab:~0]' in refused.stdout
    stored = bench.stored()
    assert not [p for p, names in stored.items() if "gut" in names]
    assert sorted((p for p, names in stored.items() if "skin" in names), key=int) == bench.matches(
        "psoria*[tiab] OR pruritus[tiab]")

    bench.write(fallback=True)
    ran = bench.monitor("run")
    assert ran.returncode == 0, ran.stderr + ran.stdout
    expected = bench.matches(FALLBACK_TERM)
    assert expected, "the corpus has records for the gut query"
    line = next(x for x in ran.stdout.splitlines() if x.startswith("gut "))
    assert f"found {len(expected):>6}" in line
    assert f"(fallback used: QuotedPhraseNotFound '{UNKNOWN}': searched (\"{UNKNOWN}\"[tiab:~0]) instead)" in line
    stored = bench.stored()
    assert sorted((p for p, names in stored.items() if "gut" in names), key=int) == expected
    # The broadened search (the phrase's words ANDed) would have found other records: none were stored.
    broadened = set(bench.matches(GUT_TERM))
    assert not (broadened - set(expected)) & {p for p, n in stored.items() if "gut" in n}

    # The next (incremental) run uses the fallback for the revision search too, and is no backfill.
    bench.standin.reset_log()
    again = bench.monitor("run")
    assert again.returncode == 0, again.stderr
    revisions = [r.params["term"] for r in bench.standin.requests_for("esearch") if r.params.get("datetype") == "mdat"]
    assert FALLBACK_TERM in revisions


def test_a_fallback_that_is_itself_unknown_leaves_the_query_refused(bench: Bench) -> None:
    bench.standin.set_phrase_index([UNKNOWN, "bowel syndrome"])
    bench.config.write_text(CONFIG.replace("FALLBACKS", f"\"{UNKNOWN}\" = '\"bowel syndrome\"[tiab]'"),
                            encoding="utf-8")
    result = bench.monitor("run", "--query", "gut")
    assert result.returncode == 1
    assert result.stdout.split()[:2] == ["gut", "DEGRADED"]
    assert "QuotedPhraseNotFound '\"bowel syndrome\"'" in result.stdout
    assert (f"(fallback used: QuotedPhraseNotFound '{UNKNOWN}': searched (\"bowel syndrome\"[tiab]) instead, and "
            "the result was still degraded)") in result.stdout
    assert not bench.stored()
    check = bench.monitor("queries", "check", "gut")
    assert check.returncode == 1
    assert "with fallbacks: " in check.stdout and "; still degraded:" in check.stdout


def test_preview_a_changed_term(bench: Bench) -> None:
    bench.write(fallback=True)
    assert bench.monitor("run").returncode == 0
    new_term = 'psoria*[tiab] OR "social fear"[tiab]'
    result = bench.monitor("queries", "preview", "gut", "--term", new_term, "--sample", "2")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    stored = bench.stored()
    mine = {p for p, names in stored.items() if "gut" in names}
    new = set(bench.matches(new_term))
    old_count = len(bench.matches(FALLBACK_TERM))  # the old term as the run searched it
    assert f"records in the window: old term {old_count:,} -> new term {len(new):,}" in out
    dropped = mine - set(bench.standin.matcher().search(new_term).ids)
    assert f"stored papers of this query: {len(mine):,}; no longer matched: {len(dropped):,}" in out
    added = sorted(new - set(stored), key=int)
    relinked = len(new & set(stored) - mine)
    assert f"new papers it would bring in: {len(added):,}" in out
    if relinked:
        assert f"already stored via other queries, would be linked: {relinked:,}" in out
    for pmid in sorted(added, key=lambda p: (bench.standin.dates(p).edat, int(p)), reverse=True)[:2]:
        assert f"    {pmid}  " in out
    assert "backfill: yes — the term differs from the one the stored papers were found with" in out

    same = bench.monitor("queries", "preview", "gut")
    assert same.returncode == 0, same.stderr
    assert "backfill: no — the term is the one the stored papers were found with" in same.stdout
    assert "no longer matched: 0" in same.stdout

    bench.write(fallback=False)
    refused = bench.monitor("queries", "preview", "skin", "--term", f'"{UNKNOWN}"[tiab]')
    assert refused.returncode == 1
    assert "would be refused (degraded)" in refused.stdout
    assert bench.monitor("queries", "preview", "nope").returncode == 2
