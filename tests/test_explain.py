"""Explanations (issue 17): for each tag and for relevance, the sentences that caused it with the matched
words marked, and the sentences considered and discounted with the reason; ``monitor explain PMID``
in-process (click's CliRunner) on a real SQLite file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import cli
from monitor.explain import MARK_CLOSE, MARK_OPEN, Explanation, Finding, explain, render_text
from monitor.storage import Storage
from monitor.tagging import DEFAULT_TAXONOMY, load_taxonomy, tag
from monitor.taxonomy import Taxonomy
from monitor.types import AbstractSection, Article
from tests.conftest import SHIPPED_CONFIG

NOW = dt.datetime(2026, 11, 22, 12, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def tx() -> Taxonomy:
    return load_taxonomy(DEFAULT_TAXONOMY)


def trial() -> Article:
    return Article(pmid="4242", title="Oral zinc for adults with rosacea: a randomised trial", abstract=(
        AbstractSection("Probiotics and omega-3 fatty acids have been tried in rosacea.", "Background", "BACKGROUND"),
        AbstractSection("Adults took 30 mg zinc sulphate capsules daily; those without rosacea served as controls. "
                        "Patients who had used antibiotics were excluded.", "Methods", "METHODS"),
        AbstractSection("Rosacea scores fell with zinc.", "Results", "RESULTS"),
    ))


def finding(e: Explanation, name: str) -> Finding:
    for f in (*e.sides, *e.given, *e.not_given):
        if f.name == name:
            return f
    raise AssertionError(f"{name} not explained: {[f.name for f in (*e.given, *e.not_given)]}")


def test_given_tags_list_the_sentences_that_caused_them_with_marks(tx):
    e = explain(trial(), tx)
    zinc = finding(e, "zinc")
    assert zinc.given and zinc.kind == "intervention"
    sources = [q.source for q in zinc.caused_by]
    assert sources[0] == "title" and "abstract:METHODS" in sources and "abstract:RESULTS" in sources
    assert f"Oral {MARK_OPEN}zinc{MARK_CLOSE} for adults" in zinc.caused_by[0].text
    assert all(q.weight > 0 for q in zinc.caused_by)


def test_background_and_excluded_mentions_are_discounted_with_reasons(tx):
    e = explain(trial(), tx)
    omega = finding(e, "omega_3")
    assert not omega.given and omega.summary == "not given: passing mention: score 0.4 below 1"
    assert [q.note.split(":")[0] for q in omega.discounted] == ["background or future work"]
    antibiotics = finding(e, "antibiotics")
    assert not antibiotics.given
    assert [q.note for q in antibiotics.discounted] == ["inside exclusion criteria"]
    assert f"{MARK_OPEN}antibiotics{MARK_CLOSE} were excluded" in antibiotics.discounted[0].text


def test_negated_condition_is_discounted_but_the_studied_one_is_given(tx):
    e = explain(trial(), tx)
    rosacea = finding(e, "rosacea")
    assert rosacea.given
    negated = [q for q in rosacea.discounted if q.note == "negated"]
    assert negated and f"without {MARK_OPEN}rosacea{MARK_CLOSE}" in negated[0].text


def test_relevance_sides_and_score_match_the_tagging(tx):
    e = explain(trial(), tx)
    t = tag(trial(), tx)
    assert (e.relevance, e.relevant) == (t.relevance, t.gut_skin_relevant)
    gut = finding(e, "gut_side")
    assert any(f"{MARK_OPEN}zinc" in q.text for q in gut.caused_by)  # oral zinc counts towards the gut side
    assert finding(e, "skin_side").score > 0


def test_every_given_tag_is_explained_and_nothing_else_is_given(tx):
    t = tag(trial(), tx)
    e = explain(trial(), tx)
    assert sorted(f.name for f in e.given) == sorted(t.tags)
    assert all(not f.given for f in e.not_given)


def test_plain_text_rendering(tx):
    text = render_text(explain(trial(), tx))
    assert text.startswith("Oral zinc for adults with rosacea: a randomised trial\n")
    assert "Relevance " in text and "Tags given:" in text and "Considered, not given:" in text
    assert "  zinc (Zinc) — given: score" in text
    flat = " ".join(text.split())
    assert "- [abstract:METHODS; inside exclusion criteria] Patients who had used «antibiotics» were excluded." in flat
    assert all(len(line) <= 100 for line in text.splitlines() if line.startswith("    "))


# ───────────────────────────────────────────── monitor explain ──────────────────────────────────────────


@pytest.fixture()
def db(tmp_path: Path, tx) -> str:
    url = f"sqlite:///{tmp_path}/monitor.sqlite3"
    with Storage.open(url) as store:
        store.store_batch([trial()], query="gut-skin-axis", now=NOW, tagger=lambda a: tag(a, tx))
    return url


def invoke(db_url: str, *args: str):
    runner = CliRunner()
    return runner.invoke(cli, ["--config", str(SHIPPED_CONFIG), "explain", *args],
                         env={"MONITOR_DB_URL": db_url, "MONITOR_CONFIG": ""}, catch_exceptions=False)


def test_explain_command_prints_the_explanation(db, tx):
    result = invoke(db, "4242")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"PMID 4242, tagged with taxonomy {tx.version}"
    assert lines[1] == "Oral zinc for adults with rosacea: a randomised trial"
    assert result.output.endswith(render_text(explain(trial(), tx)))


@pytest.mark.parametrize("pmid,message", [
    ("999", "PMID 999 is not stored: `monitor search` lists stored papers, `monitor run` fetches new ones"),
    ("zinc", "'zinc' is not a PMID: give the number, e.g. `monitor explain 31234567`"),
])
def test_explain_command_errors_are_one_line_exit_2(db, pmid, message):
    result = CliRunner().invoke(cli, ["--config", str(SHIPPED_CONFIG), "explain", pmid],
                                env={"MONITOR_DB_URL": db})
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == f"monitor: error: {message}"
