"""The soak, bounded for CI (tests/soak.py; `bench/soak.py` runs it bigger): kill -9 at random moments of
`monitor run`, `feed`, `retag` and `digest` (23 kills), 30% and 60% injected NCBI faults, two commands at
once. Every failure count must be zero."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import soak

SEED = 20261203


def add_a_synonym(taxonomy: str) -> str:
    """A taxonomy edit that changes tags: the first tag's patterns gain a common word."""
    return re.sub(r"patterns = \[", "patterns = ['cutaneous', ", taxonomy, count=1)


@pytest.fixture
def smtp() -> Iterator[tuple[soak.Inbox, int]]:
    yield from soak.smtp_server()


def assert_clean(tally: soak.Tally) -> None:
    assert tally.failures() == {}, (tally.line("failed"), tally.notes)


@pytest.mark.parametrize("what", ["run", "feed", "retag", "digest"])
def test_kill_minus_nine_at_random_moments(tmp_path: Path, smtp, what: str) -> None:
    inbox, port = smtp
    standin, world = soak.world(tmp_path, port)
    rng = random.Random(f"{SEED}-{what}")
    try:
        if what == "run":
            tally = soak.kill_runs(world, 6, rng)
        elif what == "feed":
            tally = soak.kill_feeds(world, 6, rng)
        elif what == "retag":
            tally = soak.kill_retags(world, 5, rng, add_a_synonym)
        else:
            tally = soak.kill_digests(world, 6, rng, inbox.received)
    finally:
        standin.stop()
    assert_clean(tally)
    assert tally.kills >= (1 if what == "retag" else 3), tally.line(what)  # most attempts really killed


def test_killed_after_the_server_took_the_digest(tmp_path: Path, smtp) -> None:
    inbox, port = smtp
    standin, world = soak.world(tmp_path, port)
    try:
        tally = soak.kill_digests_at_the_worst_moment(world, 5, inbox)
    finally:
        standin.stop()
    assert_clean(tally)
    assert tally.kills == 5 and "5 sent twice under one Message-ID" in tally.notes[-1], tally.notes


@pytest.mark.parametrize("rate", [0.3, 0.6])
def test_injected_faults_converge(tmp_path: Path, rate: float) -> None:
    standin, world = soak.world(tmp_path)
    try:
        tally = soak.faulty_runs(world, rate, SEED)
    finally:
        standin.stop()
    assert_clean(tally)
    assert tally.faults > 5


def test_two_commands_at_once(tmp_path: Path) -> None:
    standin, world = soak.world(tmp_path)
    try:
        tally = soak.two_at_once(world, 1)
    finally:
        standin.stop()
    assert_clean(tally)


def test_hostile_answers_from_ncbi(tmp_path: Path) -> None:
    standin, world = soak.world(tmp_path)
    try:
        tally = soak.hostile_answers(world, text_node_mb=50)
    finally:
        standin.stop()
    assert_clean(tally)
    bomb = next(n for n in tally.notes if n.startswith("gzip bomb"))
    assert "exit 1" in bomb and "max_response_mb" in bomb
    assert tally.peak_rss_mb < 1024, tally.notes  # the bomb itself stays far lower: see bench/soak.py
    assert all(float(n.split(" in ")[1].split("s,")[0]) < 30 for n in tally.notes), tally.notes
