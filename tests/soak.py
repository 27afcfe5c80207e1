"""Soak scenarios: try to break the monitor from outside and count what broke.

Each scenario returns a :class:`Tally` of what it tried and what went wrong — kills, corrupt databases,
lost or duplicated papers, duplicate emails, rate-limit violations, tracebacks, stale or temporary feed
files, peak memory. ``tests/test_soak.py`` runs them at a size CI can afford and asserts every failure count
is zero; ``bench/soak.py`` runs them bigger and prints the figures.

The world is the end-to-end tests' (tests/test_feeds.py FeedWorld: the shipped queries over real records,
a dozen dressed as labelled gut–skin papers so feeds and digests have content), with the installed
`monitor` in real processes against the E-utilities stand-in over loopback, so a kill -9 lands wherever the
process happens to be.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import sqlalchemy as sa

from monitor.lease import QUIET_SECONDS
from tests.conftest import copy_database, db_url, monitor_executable, on_postgres
from tests.eutils_standin import StandIn
from tests.test_cycle_e2e import NOW, TODAY
from tests.test_feeds import FeedWorld

DIGEST = ('\n[digest]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\nsecurity = "none"\ntimeout = 5\n'
          'from = "Monitor <monitor@example.org>"\nto = ["team@example.org"]\n')


@dataclass
class Tally:
    """What a scenario tried (first fields) and what went wrong (the rest: all must stay zero)."""

    kills: int = 0
    runs: int = 0
    faults: int = 0
    corrupt: int = 0
    lost: int = 0
    duplicated: int = 0
    duplicate_emails: int = 0
    pending_left: int = 0
    rate_violations: int = 0
    tracebacks: int = 0
    stale_files: int = 0
    temp_files: int = 0
    unexpected_exits: int = 0
    peak_rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)

    FAILURES = ("corrupt", "lost", "duplicated", "duplicate_emails", "pending_left", "rate_violations",
                "tracebacks", "stale_files", "temp_files", "unexpected_exits")

    def failures(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.FAILURES if getattr(self, name)}

    def merge(self, other: Tally) -> None:
        for f in fields(self):
            if f.name == "notes":
                self.notes += other.notes
            elif f.name == "peak_rss_mb":
                self.peak_rss_mb = max(self.peak_rss_mb, other.peak_rss_mb)
            else:
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def line(self, name: str) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "notes"}
        return f"{name:<22} " + "  ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in shown.items())


class SoakWorld(FeedWorld):
    """The feed world with the installed command in real processes, over loopback, and an SMTP inbox."""

    def __init__(self, standin: StandIn, tmp: Path, smtp_port: int | None = None) -> None:
        super().__init__(standin, tmp)
        self.base_url = standin.base_url
        if smtp_port is not None:
            with self.config.open("a", encoding="utf-8") as fh:
                fh.write(DIGEST.format(port=smtp_port))

    def env(self, now: str = NOW, key: bool = True, db: Path | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "NCBI_"))}
        env.update({"MONITOR_CONFIG": str(self.config), "MONITOR_DB_URL": db_url(db or self.db),
                    "MONITOR_EUTILS_URL": self.base_url, "MONITOR_NOW": now})
        if key:
            env["NCBI_API_KEY"] = "soak-key"
        return env

    def start(self, *args: str, now: str = NOW, db: Path | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([monitor_executable(), *args], env=self.env(now, db=db), cwd=self.tmp,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, *args: str, now: str = NOW, db: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([monitor_executable(), *args], env=self.env(now, db=db), cwd=self.tmp,
                              capture_output=True, text=True, timeout=timeout)

    def monitor(self, *args: str, now: str = NOW, key: bool = False, db: Path | None = None):  # type: ignore[override]
        return self.run(*args, now=now, db=db)


def killed_at_random(world: SoakWorld, args: tuple[str, ...], rng: random.Random, latest: float,
                     tally: Tally, now: str = NOW) -> None:
    """Start ``monitor ARGS`` and kill -9 it after a random moment (it may have finished already)."""
    proc = world.start(*args, now=now)
    time.sleep(rng.uniform(0.05, latest))
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        tally.kills += 1
    _, err = proc.communicate(timeout=60)
    tally.tracebacks += "Traceback" in err


def checked(result: subprocess.CompletedProcess[str], tally: Tally, allowed: tuple[int, ...] = (0,)) -> None:
    tally.runs += 1
    tally.tracebacks += "Traceback" in result.stderr + result.stdout
    if result.returncode not in allowed:
        tally.unexpected_exits += 1
        tally.notes.append(f"exit {result.returncode}: {result.stderr.strip()[-300:]}")


def integrity(db: Path) -> bool:
    """SQLite's integrity check of the file; on PostgreSQL (which a killed client cannot corrupt) that the
    database still answers."""
    if on_postgres():  # a process killed mid-migration leaves no tables (the migration is one transaction)
        tables = {r[0] for r in rows(db, "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
        return "papers" not in tables or rows(db, "SELECT count(*) FROM papers")[0][0] >= 0
    conn = sqlite3.connect(db)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def stored_records(db: Path) -> str:
    """Every stored record's JSON, joined ("" if the run stored nothing or never created the tables)."""
    if not on_postgres() and not db.exists():
        return ""
    try:
        return "".join(r[0] or "" for r in rows(db, "SELECT data FROM papers"))
    except sa.exc.DBAPIError:  # no tables: the run failed before its first batch
        return ""


def rows(db: Path, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    """The rows of ``sql`` in the database :func:`db_url` gives for ``db``."""
    engine = sa.create_engine(db_url(db), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def export_of(world: SoakWorld, db: Path | None = None) -> list[dict[str, object]]:
    result = world.run("export", "--format", "jsonl", db=db)
    return [json.loads(line) for line in result.stdout.splitlines()]


def reference_export(world: SoakWorld, tally: Tally) -> list[dict[str, object]]:
    """A never-disturbed first run into a database of its own, and its export: what a scenario must end with.
    Then NCBI's rate window is waited out: that run is another monitor (another database, so another lease)
    on the same NCBI client, and nothing in the monitor can space its requests against it — the next
    process's first burst could otherwise land within a second of its last requests."""
    reference = world.tmp / "reference.sqlite3"
    checked(world.run("run", db=reference), tally)
    want = export_of(world, reference)
    time.sleep(QUIET_SECONDS + 0.1)
    return want


def compare_papers(got: list[dict[str, object]], want: list[dict[str, object]], tally: Tally) -> None:
    """Lost and duplicated papers (and papers whose stored content differs) against a reference."""
    pmids = Counter(str(p["pmid"]) for p in got)
    tally.duplicated += sum(n - 1 for n in pmids.values() if n > 1)
    tally.lost += len({str(p["pmid"]) for p in want} - set(pmids))
    mine = {str(p["pmid"]): p for p in got}
    for p in want:
        other = mine.get(str(p["pmid"]))
        if other is not None and _content(other) != _content(p):
            tally.lost += 1  # the same paper with other content: what it should hold is lost
            tally.notes.append(f"PMID {p['pmid']} differs from the reference")


def _content(paper: dict[str, object]) -> dict[str, object]:
    volatile = {"queries", "first_seen_at", "updated_at"}
    return {k: v for k, v in paper.items() if k not in volatile}


# ---------------------------------------------------------------- kills


def kill_runs(world: SoakWorld, kills: int, rng: random.Random) -> Tally:
    """kill -9 first backfills at random moments, then finish: the database equals a never-killed run."""
    tally = Tally()
    want = reference_export(world, tally)
    for _ in range(kills):
        killed_at_random(world, ("run",), rng, 2.5, tally)
        tally.corrupt += not integrity(world.db)
    checked(world.run("run"), tally)
    tally.corrupt += not integrity(world.db)
    compare_papers(export_of(world), want, tally)
    tally.rate_violations += world.standin.rate_limited_count
    return tally


def kill_feeds(world: SoakWorld, kills: int, rng: random.Random, papers: int = 1500) -> Tally:
    """kill -9 `monitor feed` mid-write after the data changed: the next run leaves no stale or temp file.
    ``papers`` more relevant papers (copies of a dressed record) make a rendering long enough to be hit."""
    tally = Tally()
    first = world.queries[0]
    world.standin.add_synthetic(papers, 95_000_000, world.dressed[0], ("2025-02-01", "2025-06-30"),
                                term=world.term(first.name))
    checked(world.run("run"), tally)
    out = world.tmp / "feeds"
    env_now = NOW
    for n in range(kills):
        # A new base URL changes every document, so each killed run was rewriting all of them.
        env_now = (dt.datetime.fromisoformat(NOW) + dt.timedelta(minutes=n + 1)).isoformat()
        _set_base_url(world, f"http://feeds{n}.example.org/")
        killed_at_random(world, ("feed",), rng, 2.5, tally, now=env_now)
    # The clock never goes back: the finishing run and the fresh one run at the last killed run's time. (At
    # an earlier time, a last "killed" run that finished first would have left its later lastBuildDate on
    # the feeds without items, which the finishing run rightly leaves alone: they did not change.)
    checked(world.run("feed", now=env_now), tally)
    fresh = world.tmp / "fresh"
    checked(world.run("feed", "--out", str(fresh), now=env_now), tally)
    tally.stale_files += _differences(out, fresh)
    tally.temp_files += sum(1 for _ in out.rglob(".*.tmp"))
    return tally


def _set_base_url(world: SoakWorld, url: str) -> None:
    """Point [feeds] base_url at ``url`` (its line in the copied shipped config, or a new one)."""
    lines = world.config.read_text(encoding="utf-8").splitlines()
    at = lines.index("[feeds]")
    end = next((i for i in range(at + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    for i in range(at + 1, end):
        if lines[i].startswith("base_url ="):
            lines[i] = f'base_url = "{url}"'
            break
    else:
        lines.insert(at + 1, f'base_url = "{url}"')
    world.config.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _differences(folder: Path, fresh: Path) -> int:
    """Files that differ between two feed folders (the bookkeeping files aside)."""
    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
                if p.is_file() and not p.name.startswith(".")}
    a, b = files(folder), files(fresh)
    return sum(1 for k in set(a) | set(b) if a.get(k) != b.get(k))


def kill_retags(world: SoakWorld, kills: int, rng: random.Random, taxonomy_edit: Callable[[str], str]) -> Tally:
    """kill -9 `monitor retag` after a taxonomy edit: a finishing retag gives what one clean retag gives."""
    tally = Tally()
    checked(world.run("run"), tally)
    reference = world.tmp / "reference.sqlite3"
    copy_database(world.db, reference)
    _edit_taxonomy(world, taxonomy_edit)
    checked(world.run("retag", db=reference), tally)
    want = export_of(world, reference)
    for _ in range(kills):
        killed_at_random(world, ("retag",), rng, 1.5, tally)
        tally.corrupt += not integrity(world.db)
    checked(world.run("retag"), tally)
    compare_papers(export_of(world), want, tally)
    return tally


def _edit_taxonomy(world: SoakWorld, edit: Callable[[str], str]) -> None:
    import re

    from tests.conftest import SHIPPED_CONFIG

    edited = world.tmp / "taxonomy.toml"
    edited.write_text(edit((SHIPPED_CONFIG.parent / "taxonomy.toml").read_text(encoding="utf-8")),
                      encoding="utf-8")
    text = re.sub(r'taxonomy = ".*"', f'taxonomy = "{edited}"', world.config.read_text(encoding="utf-8"))
    world.config.write_text(text, encoding="utf-8")


def kill_digests(world: SoakWorld, kills: int, rng: random.Random, inbox: list[bytes]) -> Tally:
    """kill -9 `monitor digest` at random moments (some after the server accepted the message): no email
    twice except that window, and then with the same Message-ID; nothing left pending; every relevant
    paper delivered in a sent digest."""
    import email
    import email.policy

    tally = Tally()
    checked(world.run("run"), tally)
    send_at = (dt.datetime.fromisoformat(NOW) + dt.timedelta(hours=5)).isoformat()
    for _ in range(kills):
        killed_at_random(world, ("digest", "--force"), rng, 1.2, tally, now=send_at)
    checked(world.run("digest", "--force", now=send_at), tally)
    ids = Counter(str(email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"])
                  for raw in inbox)
    # The same Message-ID twice is the documented window (killed after the server's 250); two different
    # messages carrying the same paper would be a real duplicate.
    tally.notes.append(f"{len(inbox)} emails, {len(ids)} distinct Message-IDs")
    ledger = _digest_ledger(world.db, tally)
    tally.duplicate_emails += sum(1 for mid in ids if mid not in ledger.sent)  # an email no sent row explains
    tally.lost += len(ledger.relevant - set(ledger.delivered))
    return tally


@dataclass(frozen=True, slots=True)
class _Ledger:
    sent: set[str]  # Message-IDs of the digests logged sent
    delivered: Counter[int]  # how many sent digests delivered each relevant paper
    relevant: set[int]


def _digest_ledger(db: Path, tally: Tally) -> _Ledger:
    """What the digest log says was delivered; counts pending digests and papers delivered twice."""
    tally.pending_left += rows(db, "SELECT count(*) FROM digests WHERE status = 'pending'")[0][0]
    sent = {r[0] for r in rows(db, "SELECT message_id FROM digests WHERE status = 'sent'")}
    delivered = Counter(r[0] for r in rows(
        db, "SELECT dp.pmid FROM digest_papers dp JOIN digests d ON d.id = dp.digest_id "
            "WHERE d.status = 'sent' AND dp.section != 'not_relevant'"))
    relevant = {r[0] for r in rows(db, "SELECT pmid FROM paper_tagging WHERE gut_skin_relevant")}
    tally.duplicated += sum(n - 1 for n in delivered.values() if n > 1)
    return _Ledger(sent, delivered, relevant)


def kill_digests_at_the_worst_moment(world: SoakWorld, kills: int, inbox: Inbox) -> Tally:
    """kill -9 `monitor digest` after the SMTP server took the message and before it answered: the next send
    resends that very message (same Message-ID, the documented at-least-once window), never a new one beside
    it; no digest stays pending; every relevant paper is delivered in exactly one sent digest."""
    import email
    import email.policy

    tally = Tally()
    checked(world.run("run"), tally)
    inbox.delay = 1.0
    at = dt.datetime.fromisoformat(NOW) + dt.timedelta(hours=5)
    for n in range(kills):
        now = (at + dt.timedelta(days=7 * n)).isoformat()  # a digest due each time
        before = len(inbox.received)
        proc = world.start("digest", now=now)
        deadline = time.monotonic() + 30
        while len(inbox.received) == before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            tally.kills += 1
        proc.communicate(timeout=30)
        checked(world.run("digest", now=now), tally)  # resumes the interrupted one
    inbox.delay = 0.0
    ids = [str(email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]) for raw in inbox.received]
    ledger = _digest_ledger(world.db, tally)
    twice = Counter(ids)
    tally.notes.append(f"{len(ids)} emails, {len(twice)} distinct Message-IDs, {len(ledger.sent)} sent digests, "
                       f"{sum(1 for n in twice.values() if n > 1)} sent twice under one Message-ID (the window)")
    tally.duplicate_emails += sum(1 for mid in twice if mid not in ledger.sent)  # a copy no sent digest explains
    return tally


# ---------------------------------------------------------------- faults and company


def faulty_runs(world: SoakWorld, rate: float, seed: int) -> Tally:
    """A fault rate on every request until a run completes: the database converges to the fault-free one."""
    tally = Tally()
    want = reference_export(world, tally)
    world.standin.reset_log()
    world.standin.fault_rate(rate, ["429", "500", "503", "reset", "truncate", "short_read", "error_body",
                                    "timeout"], seed=seed)
    for _ in range(40):
        result = world.run("run")
        checked(result, tally, allowed=(0, 1))
        if result.returncode == 0:
            break
    world.standin.clear_faults()
    tally.faults += sum(1 for r in world.standin.log if r.fault)
    compare_papers(export_of(world), want, tally)
    tally.rate_violations += world.standin.rate_limited_count
    return tally


def two_at_once(world: SoakWorld, pairs: int) -> Tally:
    """Two runs at once, a feed during a run, a retag during a run: nothing stored twice, nothing lost, no
    rate violation, every process ends cleanly (the second run may refuse: the lease)."""
    tally = Tally()
    want = reference_export(world, tally)
    for n in range(pairs):
        now = (dt.datetime.fromisoformat(NOW) + dt.timedelta(days=n)).isoformat()
        for second in (("run",), ("feed",), ("retag",)):
            first = world.start("run", now=now)
            time.sleep(0.2)
            other = world.run(*second, now=now)
            out, err = first.communicate(timeout=300)
            both = [subprocess.CompletedProcess(first.args, first.returncode, out, err), other]
            if second == ("run",):  # one of the two runs holds the cycle lease; the other says who does
                for result in both:
                    checked(result, tally, allowed=(0, 1))
                    if result.returncode == 1 and "holds the cycle lease" not in result.stderr:
                        tally.unexpected_exits += 1
                if all(r.returncode for r in both):
                    tally.unexpected_exits += 1
            else:  # a feed or a retag beside a run: both finish (they wait for each other's writes)
                for result in both:
                    checked(result, tally)
    tally.corrupt += not integrity(world.db)
    compare_papers(export_of(world), want, tally)
    tally.rate_violations += world.standin.rate_limited_count
    return tally


@dataclass
class Inbox:
    """An aiosmtpd handler that keeps the raw messages; with ``delay``, it holds its "250" that long after
    taking a message (the worst moment to kill a sender: the server has it, the log does not say so)."""

    received: list[bytes] = field(default_factory=list)
    delay: float = 0.0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        import asyncio

        self.received.append(envelope.original_content)  # type: ignore[attr-defined]
        if self.delay:
            await asyncio.sleep(self.delay)
        return "250 Message accepted for delivery"


def smtp_server() -> Iterator[tuple[Inbox, int]]:
    from aiosmtpd.controller import Controller

    class Loopback(Controller):
        def _trigger_server(self) -> None:  # learn the OS-chosen port before aiosmtpd's readiness check
            self.port = self.server.sockets[0].getsockname()[1]
            super()._trigger_server()

    inbox = Inbox()
    controller = Loopback(inbox, hostname="127.0.0.1", port=0)
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        controller.stop()


def world(tmp: Path, smtp_port: int | None = None) -> tuple[StandIn, SoakWorld]:
    standin = StandIn(today=TODAY, hang_seconds=1.0).start()
    return standin, SoakWorld(standin, tmp, smtp_port)


# ---------------------------------------------------------------- hostile answers from "NCBI"


def _record(title: bytes, abstract: bytes = b"Probiotics and psoriasis.", pmid: bytes = b"31999001") -> bytes:
    return (b"<PubmedArticle><MedlineCitation Status=\"MEDLINE\" Owner=\"NLM\"><PMID Version=\"1\">" + pmid +
            b"</PMID><Article><Journal><Title>J Test</Title></Journal><ArticleTitle>" + title +
            b"</ArticleTitle><Abstract><AbstractText>" + abstract + b"</AbstractText></Abstract></Article>"
            b"</MedlineCitation></PubmedArticle>")


def hostile_bodies(text_node_mb: int = 50) -> dict[str, tuple[bytes, list[tuple[str, str]], int, float]]:
    """name → (efetch body, extra headers, how many requests get it, trickle seconds per byte). Those sent
    to every attempt make the query fail (a clear one-line error); the others are recovered by a retry."""
    import gzip

    head = b'<?xml version="1.0"?>\n'
    open_set, close_set = b"<PubmedArticleSet>", b"</PubmedArticleSet>"
    laughs = b"".join(b'<!ENTITY l%d "&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;">' % ((i,) + (i - 1,) * 10)
                      for i in range(1, 10))
    bomb = gzip.compress(bytes(1 << 30), compresslevel=9)  # 1 GiB of zeros in about 1 MB
    big = b"gut " * (text_node_mb * (1 << 20) // 4)
    return {
        "xxe": (head + b'<!DOCTYPE PubmedArticleSet [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + open_set +
                _record(b"Probiotics &x; in psoriasis") + close_set, [], 99, 0.0),
        "parameter entity": (head + b'<!DOCTYPE PubmedArticleSet [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> '
                             b"%p;]>" + open_set + _record(b"Probiotics") + close_set, [], 99, 0.0),
        "billion laughs": (head + b'<!DOCTYPE PubmedArticleSet [<!ENTITY l0 "ha">' + laughs + b"]>" + open_set +
                           _record(b"&l9;") + close_set, [], 99, 0.0),
        "xinclude": (head + b'<PubmedArticleSet xmlns:xi="http://www.w3.org/2001/XInclude">' +
                     _record(b'<xi:include href="file:///etc/passwd" parse="text"/>') + close_set, [], 99, 0.0),
        "gzip bomb": (bomb, [("Content-Encoding", "gzip")], 99, 0.0),
        "invalid utf-8": (head + open_set + _record(b"Probiotics \xff\xfe in psoriasis") + close_set, [], 99, 0.0),
        "html with 200": (b"<html><body><h1>Service unavailable</h1></body></html>", [], 99, 0.0),
        "trickle": (head + open_set + _record(b"Probiotics") + close_set, [], 1, 0.02),
        f"{text_node_mb} MB text node": (head + open_set + _record(b"Probiotics in psoriasis", big) + close_set,
                                         [], 1, 0.0),
    }


def hostile_answers(world: SoakWorld, text_node_mb: int = 50) -> Tally:
    """Each hostile efetch answer in turn, in a real `monitor run`: it ends (0 or 1) within its deadline,
    with at most one error line and no traceback, nothing it tried to smuggle in is stored, peak memory
    stays bounded."""
    tally = Tally()
    text = world.config.read_text(encoding="utf-8").replace("timeout = 1", "timeout = 1\ndeadline = 3", 1)
    world.config.write_text(text.replace("max_attempts = 6", "max_attempts = 2"), encoding="utf-8")
    first = world.queries[0]
    for name, (body, headers, count, trickle) in hostile_bodies(text_node_mb).items():
        world.standin.clear_faults()
        world.standin.inject("body", count=count, endpoint="efetch", body=body, headers=headers,
                             trickle_seconds=trickle)
        began = time.monotonic()
        proc = world.start("run", "--query", first.name, "--since", "1940-01-01",
                           db=world.tmp / f"{len(tally.notes)}.sqlite3")
        peak = _peak_rss_mb(proc)
        out, err = proc.communicate(timeout=120)
        tally.runs += 1
        tally.peak_rss_mb = max(tally.peak_rss_mb, peak)
        tally.tracebacks += "Traceback" in out + err
        errors = [ln for ln in err.splitlines() if ln.startswith("monitor: error")]
        if proc.returncode not in (0, 1) or len(errors) > 1:
            tally.unexpected_exits += 1
        why = next((ln.strip() for ln in out.splitlines() if ln.startswith(" ")), "")  # a failed query's reason
        tally.notes.append(f"{name}: exit {proc.returncode} in {time.monotonic() - began:.1f}s, peak "
                           f"{peak:.0f} MB, {why[:160] or 'stored'}")
        stored = stored_records(world.tmp / f"{len(tally.notes) - 1}.sqlite3")
        tally.corrupt += "root:" in stored or "hahaha" in stored  # a file or an expansion got in
    world.standin.clear_faults()
    return tally


def _peak_rss_mb(proc: subprocess.Popen[str]) -> float:
    """The highest resident memory of a running process, sampled until it ends."""
    import psutil

    peak = 0
    try:
        ps = psutil.Process(proc.pid)
        while proc.poll() is None:
            peak = max(peak, ps.memory_info().rss)
            time.sleep(0.02)
    except psutil.NoSuchProcess:
        pass
    return peak / (1 << 20)
