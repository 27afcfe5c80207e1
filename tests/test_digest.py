"""The weekly digest end to end: the installed `monitor digest` command, a real SQLite file filled the way
monitoring runs fill it, and a real SMTP server (aiosmtpd) on a loopback port the OS picks. Messages are read
back from the bytes the server received, with the email package's parser. The HTML part is laid out by
headless Chromium (Playwright on the system's /usr/bin/chromium) at a phone's width.

Papers: the labelled dev set (real PMIDs; most gut-skin relevant) and real NCBI records (judged not
relevant), see tests/digest_data.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import os
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from monitor import digest as digests
from monitor.clock import FixedClock
from monitor.config import load_config
from monitor.storage import Storage
from monitor.tagging import load_taxonomy
from monitor.types import Article, Correction
from tests import digest_data as dd
from tests.conftest import DATA, SHIPPED_CONFIG, db_url, require_program

GOLDEN = DATA / "digest"
WEEK1 = dt.datetime(2026, 11, 16, 3, 0, tzinfo=dt.UTC)
SEND_HOUR = dt.timedelta(hours=5)  # digests go out at 08:00, runs happen at 03:00
RECIPIENTS = ["Derm Team <derm@example.org>", "research@example.org"]


class Inbox:
    """What the SMTP server accepted: (envelope sender, envelope recipients, raw message bytes)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted for delivery"

    def messages(self) -> list[EmailMessage]:
        return [email.message_from_bytes(raw, policy=email.policy.default) for _, _, raw in self.received]


class LoopbackController(Controller):
    """aiosmtpd's Controller on port 0: learn the port the OS chose before the readiness check uses it."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, LoopbackController]]:
    inbox = Inbox()
    controller = LoopbackController(inbox, hostname="127.0.0.1", port=0)
    controller.start()
    yield inbox, controller
    if controller._thread is not None:
        controller.stop()


class Site:
    """A config (shipped queries + a [digest] table), a database, and the `monitor` command against them."""

    def __init__(self, tmp: Path, run_monitor, port: int, extra: str = "") -> None:
        self.tmp = tmp
        self._run = run_monitor
        self.db = tmp / "monitor.sqlite3"
        self.config = tmp / "queries.toml"
        self.write_config(port, extra)
        self.store = Storage.open(db_url(self.db))

    def write_config(self, port: int, extra: str = "") -> None:
        text = SHIPPED_CONFIG.read_text(encoding="utf-8").replace(
            'taxonomy = "taxonomy.toml"', f'taxonomy = "{SHIPPED_CONFIG.parent / "taxonomy.toml"}"')
        text += (f'\n[digest]\nsmtp_host = "127.0.0.1"\nsmtp_port = {port}\nsecurity = "none"\ntimeout = 5\n'
                 f'from = "Gut-skin monitor <monitor@example.org>"\nto = {RECIPIENTS!r}\n'.replace("'", '"') + extra)
        self.config.write_text(text, encoding="utf-8")

    def monitor(self, *args: str, now: dt.datetime, env: dict[str, str] | None = None):
        return self._run(*args, env={"MONITOR_CONFIG": str(self.config), "MONITOR_DB_URL": db_url(self.db),
                                     "MONITOR_NOW": now.isoformat(), **(env or {})})


@pytest.fixture
def site(tmp_path: Path, run_monitor, smtp) -> Iterator[Site]:
    s = Site(tmp_path, run_monitor, smtp[1].port)
    yield s
    s.store.close()


def paper_links(text: str) -> list[str]:
    """PMIDs of the papers a part links to (one link per listed paper)."""
    return re.findall(r"https://pubmed\.ncbi\.nlm\.nih\.gov/(\d+)/", text)


def parts(msg: EmailMessage) -> tuple[str, str]:
    assert msg.get_content_type() == "multipart/alternative"
    kinds = [p.get_content_type() for p in msg.iter_parts()]
    assert kinds == ["text/plain", "text/html"]  # plain first: clients show the last part they can render
    # Line ends are CRLF on the wire (quoted-printable keeps them); compare text with plain newlines.
    return tuple(msg.get_body((kind,)).get_content().replace("\r\n", "\n") for kind in ("plain", "html"))


def listed(msg: EmailMessage) -> list[str]:
    """PMIDs listed as new papers (the text part's paper links before the status/coverage sections)."""
    text, _ = parts(msg)
    return paper_links(text.split("\nSTATUS CHANGES OF PAPERS SENT BEFORE\n")[0].split("\nCOVERAGE\n")[0])


def test_two_weeks_each_relevant_paper_exactly_once_and_a_rerun_sends_nothing(site: Site, smtp) -> None:
    inbox, _ = smtp
    dev, corpus = dd.dev_articles(), dd.corpus_articles()
    week1, week2 = dev[:9] + corpus[:3], dev[9:] + corpus[3:]
    dd.store_week(site.store, week1, WEEK1)

    first = site.monitor("digest", now=WEEK1 + SEND_HOUR)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("sent digest #1 to 2 of 2 recipients: ")
    (sender, rcpts, _), = inbox.received
    assert sender == "monitor@example.org" and rcpts == ["derm@example.org", "research@example.org"]
    (msg,) = inbox.messages()
    text, html = parts(msg)
    relevant1 = dd.relevant_pmids(week1)
    assert sorted(listed(msg)) == sorted(relevant1)  # each once; nothing judged not relevant is listed
    for pmid in relevant1:
        assert html.count(f'href="https://pubmed.ncbi.nlm.nih.gov/{pmid}/"') == 1
    n = len(relevant1)
    assert msg["Subject"] == f"[gut-skin monitor] {n} new papers, 9 Nov 2026 to 16 Nov 2026"
    assert msg["To"] == ", ".join(RECIPIENTS) and msg["From"] == "Gut-skin monitor <monitor@example.org>"
    not_relevant = sorted({a.pmid for a in week1} - relevant1, key=int)
    assert f"Found but judged not relevant to the gut-skin axis: {len(not_relevant)}." in text
    assert "https://pubmed.ncbi.nlm.nih.gov/?term=" + "+".join(not_relevant) in text
    assert "<script" not in html.lower() and not re.search(r'(src|href)=(?!"https://pubmed\.ncbi\.nlm\.nih\.gov/)', html)
    assert "Monitoring runs in this period: 1 (all ok)." in text

    # Same time again, and a day later: nothing is due, nothing is sent.
    for later in (WEEK1 + SEND_HOUR, WEEK1 + SEND_HOUR + dt.timedelta(days=1)):
        again = site.monitor("digest", now=later)
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith("no digest due: the last one (up to 2026-11-16 08:00 UTC) was sent; "
                                       "the next is due from 2026-11-21 22:24 UTC")
    assert len(inbox.received) == 1

    week2_at = WEEK1 + dt.timedelta(days=7)
    dd.store_week(site.store, week2, week2_at)
    second = site.monitor("digest", now=week2_at + SEND_HOUR)
    assert second.returncode == 0, second.stderr
    msg2 = inbox.messages()[1]
    assert sorted(listed(msg2)) == sorted(dd.relevant_pmids(week2))
    assert not set(listed(msg2)) & relevant1
    assert msg2["Subject"].endswith("16 Nov 2026 to 23 Nov 2026")
    assert msg2["Message-ID"] != msg["Message-ID"]

    # A forced re-send right away has nothing new: it says so instead of repeating papers.
    forced = site.monitor("digest", "--force", now=week2_at + SEND_HOUR + dt.timedelta(minutes=1))
    assert forced.returncode == 0, forced.stderr
    text3, html3 = parts(inbox.messages()[2])
    assert listed(inbox.messages()[2]) == [] and "No new papers this week." in text3
    assert "No new papers this week" in html3


def test_an_smtp_outage_fails_loudly_and_the_next_digest_carries_the_backlog(site: Site, smtp,
                                                                             run_monitor) -> None:
    inbox, controller = smtp
    dev, corpus = dd.dev_articles(), dd.corpus_articles()
    weeks = [dev[:6] + corpus[:1], dev[6:12] + corpus[1:3], dev[12:] + corpus[3:]]
    at = [WEEK1 + dt.timedelta(days=7 * i) for i in range(3)]

    dd.store_week(site.store, weeks[0], at[0])
    assert site.monitor("digest", now=at[0] + SEND_HOUR).returncode == 0

    controller.stop()  # the mail server is down for week 2
    dd.store_week(site.store, weeks[1], at[1])
    down = site.monitor("digest", now=at[1] + SEND_HOUR)
    assert down.returncode == 1
    lines = down.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"monitor: error: cannot send through SMTP server 127.0.0.1:{controller.port} (none): ")
    assert lines[0].endswith(f"Digest #2 is logged as failed; its {len(dd.relevant_pmids(weeks[1]))} new papers "
                             "stay due and go in the next digest")

    # Back up (on another port) for week 3: one digest with weeks 2 and 3, nothing from week 1.
    inbox2 = type(inbox)()
    controller2 = LoopbackController(inbox2, hostname="127.0.0.1", port=0)
    controller2.start()
    try:
        site.write_config(controller2.port)
        dd.store_week(site.store, weeks[2], at[2])
        back = site.monitor("digest", now=at[2] + SEND_HOUR)
        assert back.returncode == 0, back.stderr
    finally:
        controller2.stop()
    (msg,) = inbox2.messages()
    assert sorted(listed(msg)) == sorted(dd.relevant_pmids(weeks[1]) | dd.relevant_pmids(weeks[2]))
    assert msg["Subject"].endswith("16 Nov 2026 to 30 Nov 2026")
    text, _ = parts(msg)
    assert "Monitoring runs in this period: 2 (all ok)." in text
    log = [(d.id, d.status) for d in site.store.digest_log()]
    assert log == [(3, "sent"), (2, "failed"), (1, "sent")]
    sent_first = set(listed(inbox.messages()[0]))
    assert sent_first == dd.relevant_pmids(weeks[0]) and not sent_first & set(listed(msg))


def test_status_changes_of_sent_papers_are_reported_once(site: Site, smtp) -> None:
    inbox, _ = smtp
    dev = dd.dev_articles()
    dd.store_week(site.store, dev[:5], WEEK1)
    assert site.monitor("digest", now=WEEK1 + SEND_HOUR).returncode == 0
    sent = listed(inbox.messages()[0])
    victim = next(a for a in dev[:5] if a.pmid == sent[0])
    retracted = dataclasses.replace(victim, version=victim.version + 1,
                                    corrections=(Correction("RetractionIn", "J Test. 2026", "99999999"),))
    later = WEEK1 + dt.timedelta(days=3)
    run = site.store.start_run(later)
    site.store.store_batch([retracted], query="gut-skin-axis", now=later, run_id=run)
    site.store.finish_run(run, later, "ok")

    week2 = WEEK1 + dt.timedelta(days=7)
    assert site.monitor("digest", now=week2 + SEND_HOUR).returncode == 0
    msg = inbox.messages()[1]
    text, html = parts(msg)
    assert listed(msg) == []  # the retracted paper is not new
    section = text.split("STATUS CHANGES OF PAPERS SENT BEFORE\n")[1].split("COVERAGE")[0]
    assert paper_links(section) == [victim.pmid, "99999999"]  # the paper and the retraction notice
    assert "* RETRACTED (19 Nov 2026): " in section
    assert "RETRACTED</span>" in html and msg["Subject"].startswith("[gut-skin monitor] no new papers, 1 status change")

    assert site.monitor("digest", now=week2 + dt.timedelta(days=7) + SEND_HOUR).returncode == 0
    text3, _ = parts(inbox.messages()[2])
    assert "STATUS CHANGES" not in text3


def test_a_title_with_line_breaks_cannot_add_headers_or_markup(site: Site, smtp) -> None:
    inbox, _ = smtp
    base = next(a for a in dd.dev_articles() if a.pmid in dd.relevant_pmids(dd.dev_articles()))
    evil = dataclasses.replace(base, title="Probiotics in psoriasis\r\nBcc: victim@example.net\r\n\r\n"
                                           "<script>alert(1)</script><img src=http://tracker.example/x.png>")
    dd.store_week(site.store, [evil], WEEK1)
    result = site.monitor("digest", now=WEEK1 + SEND_HOUR)
    assert result.returncode == 0, result.stderr
    (_, rcpts, raw), = inbox.received
    assert rcpts == ["derm@example.org", "research@example.org"]
    msg = inbox.messages()[0]
    assert msg["Bcc"] is None and b"victim@example.net" not in raw.split(b"\r\n\r\n")[0]
    text, html = parts(msg)
    title = "* Probiotics in psoriasis Bcc: victim@example.net <script>alert(1)</script><img"
    assert title in " ".join(text.split())  # one paragraph of the body (wrapped), not a header
    assert "<script" not in html and "<img" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def _blank_volatile(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    head = "".join(f"{k}: {'<blanked>' if k in ('Date', 'Message-ID') else v}\n"
                   for k, v in msg.items() if k in ("Subject", "From", "To", "Date", "Message-ID", "Auto-Submitted"))
    return head + "\n" + parts(msg)[0]


@pytest.mark.parametrize("name", ["week1", "empty"])
def test_golden_text_part(site: Site, name: str) -> None:
    """The plain-text part (and the headers that are not volatile) byte for byte; regenerate with
    UPDATE_GOLDEN=1 after a deliberate change and review the diff."""
    if name == "week1":
        dev, corpus = dd.dev_articles(), dd.corpus_articles()
        dd.store_week(site.store, dev[:8] + corpus[:2], WEEK1)
        dd.store_week(site.store, [], WEEK1 + dt.timedelta(hours=1), query="diet-elimination", status="degraded",
                      message="query 'diet-elimination' is degraded (PhraseNotFound 'gluten free diett')")
    out = site.tmp / "digest.eml"
    result = site.monitor("digest", "--dry-run", "--out", str(out), now=WEEK1 + SEND_HOUR)
    assert result.returncode == 0, result.stderr
    actual = _blank_volatile(out.read_bytes())
    golden = GOLDEN / f"{name}.expected"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
    assert actual == golden.read_text(encoding="utf-8")


def test_dry_run_writes_a_message_and_marks_nothing_and_since_previews_sent_papers(site: Site, smtp) -> None:
    inbox, _ = smtp
    dev = dd.dev_articles()
    dd.store_week(site.store, dev[:6], WEEK1)
    out = site.tmp / "digest.eml"
    dry = site.monitor("digest", "--dry-run", "--out", str(out), now=WEEK1 + SEND_HOUR)
    assert dry.returncode == 0, dry.stderr
    assert dry.stderr.strip().startswith(f"wrote the digest to {out}: ")
    assert dry.stderr.strip().endswith("nothing was sent or marked sent")
    preview = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
    assert inbox.received == [] and site.store.digest_log() == []
    assert site.monitor("digest", now=WEEK1 + SEND_HOUR).returncode == 0
    assert sorted(listed(inbox.messages()[0])) == sorted(listed(preview)) == sorted(dd.relevant_pmids(dev[:6]))

    # --since shows papers already sent (a preview of a range), to stdout; still nothing is sent or logged.
    since = site.monitor("digest", "--since", "2026-11-01", now=WEEK1 + SEND_HOUR + dt.timedelta(hours=1))
    assert since.returncode == 0, since.stderr
    shown = email.message_from_bytes(since.stdout.encode("ascii"), policy=email.policy.default)
    assert sorted(listed(shown)) == sorted(dd.relevant_pmids(dev[:6]))
    assert shown["Subject"].endswith("1 Nov 2026 to 16 Nov 2026 (preview)")
    assert len(inbox.received) == 1 and len(site.store.digest_log()) == 1


def test_cli_errors_are_one_line(site: Site, tmp_path: Path) -> None:
    now = WEEK1 + SEND_HOUR
    cases = [
        (("digest", "--out", "x.eml"), 2,
         "monitor: error: --out: only with --dry-run or --since (a sent digest is not written to a file)"),
        (("digest", "--since", "2027-01-01"), 2, "monitor: error: --since: 2027-01-01 is in the future"),
        (("digest", "--since", "last week"), 2,
         "monitor: error: --since: not a date in YYYY-MM-DD form: 'last week'"),
        (("digest", "--dry-run", "--force"), 2,
         "monitor: error: --force: only when sending (not with --dry-run or --since)"),
    ]
    for args, code, expected in cases:
        result = site.monitor(*args, now=now)
        assert (result.returncode, result.stderr.strip()) == (code, expected)
    site.config.write_text(site.config.read_text(encoding="utf-8") + 'smtp_user = "monitor"\n', encoding="utf-8")
    no_password = site.monitor("digest", now=now)
    assert (no_password.returncode, no_password.stderr.strip()) == (
        2, "monitor: error: MONITOR_SMTP_PASSWORD: digest.smtp_user is 'monitor' but MONITOR_SMTP_PASSWORD is not set")
    bare = tmp_path / "bare.toml"
    bare.write_text(SHIPPED_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")
    missing = site._run("digest", env={"MONITOR_CONFIG": str(bare), "MONITOR_DB_URL": db_url(site.db)})
    assert (missing.returncode, missing.stderr.strip()) == (
        2, "monitor: error: bare.toml: digest: missing: add a [digest] table with from, to and smtp_host "
           "(see README 'Weekly digest')")
    assert site.store.digest_log() == []


# ------------------------------------------------------------------ pure parts


def test_summary_prefers_the_conclusion() -> None:
    from monitor import pubmed

    (structured,) = [a for a in pubmed.parse((DATA / "efetch" / "biopython" / "pubmed5.xml").read_bytes())
                     if isinstance(a, Article)]
    conclusions = [s.text for s in structured.abstract if s.category == "CONCLUSIONS"]
    assert conclusions and digests.summary(structured) == digests._clip(" ".join(conclusions), 600)
    inline = Article(pmid="1", abstract=(dd.dev_articles()[0].abstract[0],))
    assert "Conclusion" in inline.abstract_text and not digests.summary(inline).lower().startswith("conclusion")
    plain = Article(pmid="2", abstract=(digests_section("We studied 40 adults. Stool was sequenced. "
                                                        "In conclusion, diet mattered. Nothing else did."),))
    assert digests.summary(plain) == "In conclusion, diet mattered. Nothing else did."
    short = Article(pmid="3", abstract=(digests_section("OBJECTIVE: One. Two. Three."),))
    assert digests.summary(short) == "Two. Three."  # the concluding sentences, not the objective
    assert digests.summary(Article(pmid="4")) == ""


def test_an_unstructured_abstract_is_summarised_by_its_concluding_sentences() -> None:
    background = "Atopic dermatitis is a common inflammatory skin disease of childhood with a rising prevalence."
    methods = "We randomised 40 children with moderate disease to a probiotic mixture or to placebo for 8 weeks."
    result = "SCORAD fell by 10 points more with the probiotic than with placebo, and fewer children needed steroids."
    closing = "Probiotics may help."
    one = Article(pmid="5", abstract=(digests_section(f"{background} {methods} {result}"),))
    assert digests.summary(one) == result  # the last sentence, not the background
    two = Article(pmid="6", abstract=(digests_section(f"{background} {methods} {result} {closing}"),))
    assert digests.summary(two) == f"{result} {closing}"  # a short last sentence brings the one before
    registered = Article(pmid="7", abstract=(digests_section(
        f"{background} {methods} {result} Trial registration: NCT01234567. (c) 2024 The Authors."),))
    assert digests.summary(registered) == result  # registration and copyright lines are not the conclusion
    # Every unstructured dev-set abstract: the summary is taken from its end, never its first sentence.
    for a in dd.dev_articles():
        if len(a.abstract) == 1 and not a.abstract[0].label and "conclu" not in a.abstract_text.lower():
            sentences = digests._SENTENCE_END.split(digests.one_line(a.abstract_text))
            if len(sentences) > 3:
                assert digests.summary(a).rstrip(" …") in " ".join(sentences[-3:]), a.pmid


def digests_section(text: str):
    from monitor.types import AbstractSection

    return AbstractSection(text=text)


def test_short_authors_and_links() -> None:
    from monitor import pubmed
    from monitor.types import Author

    (one, two) = [a for a in pubmed.parse((DATA / "efetch" / "biopython" / "pubmed2.xml").read_bytes())
                  if isinstance(a, Article)]
    for a in (one, two):
        short = digests.short_authors(digests.author_names(a), digests.AUTHORS_SHOWN)
        first = a.authors[0]
        assert short.startswith(f"{first.last_name} {first.initials}")
        assert short.endswith(", et al.") == (len(a.authors) > 3)
    group = Article(pmid="5", authors=(Author(collective_name="The\nEczema Group"), Author(last_name="Li", initials="X")))
    assert digests.short_authors(digests.author_names(group), 3) == "The Eczema Group, Li X"
    pmids = [str(10_000_000 + i) for i in range(450)]
    links = digests.pubmed_links(pmids)
    per = digests.PUBMED_LINK_PMIDS
    assert len(links) == digests.PUBMED_LINKS_MAX and all(len(link) < 300 for link in links)
    assert links[1] == "https://pubmed.ncbi.nlm.nih.gov/?term=" + "+".join(pmids[per:2 * per])
    assert digests.pubmed_links(pmids[:5]) == ("https://pubmed.ncbi.nlm.nih.gov/?term=" + "+".join(pmids[:5]),)
    assert digests.sentences(["Smith J, Lee K, Park S, et al.", "J Invest Dermatol.", "2024"]) == (
        "Smith J, Lee K, Park S, et al. J Invest Dermatol. 2024")


def test_every_relevant_paper_is_listed_once_and_the_rest_is_counted(tmp_path: Path) -> None:
    with Storage.open(db_url(tmp_path / "m.sqlite3")) as store:
        dev, corpus = dd.dev_articles(), dd.corpus_articles()
        dd.store_week(store, dev + corpus, WEEK1)
        papers = store.papers_first_found(WEEK1, WEEK1)
    relevant = dd.relevant_pmids(dev)
    for cap in (100, 5):
        d = digests.build(papers, [], [], vocabulary=dd.vocabulary(), queries=["gut-skin-axis"],
                          period=(WEEK1, WEEK1), now=WEEK1, max_papers=cap)
        grouped = [p.pmid for g in d.groups for s in g.subgroups for p in s.papers]
        assert len(grouped) == len(set(grouped)) == min(cap, len(relevant))
        assert set(grouped) | set(d.overflow) == relevant and not set(grouped) & set(d.overflow)
        assert set(d.not_relevant) == {a.pmid for a in dev + corpus} - relevant
        assert d.new_count == len(relevant)
        labels = [g.label for g in d.groups]
        vocab = dd.vocabulary()
        order = [vocab.label(c) for c in vocab.conditions] + [digests.OTHER_CONDITION]
        assert labels == sorted(labels, key=order.index)  # conditions in taxonomy order
    text = digests.render_text(d)
    assert f"And {len(relevant) - 5} more relevant papers found this week" in text


def test_migration_0004_upgrades_a_0003_database(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from monitor import migrations

    url = db_url(tmp_path / "old.sqlite3")
    engine = sa.create_engine(url)
    migrations.upgrade(engine, "0003")
    engine.dispose()
    with Storage.open(url) as store:
        dd.store_week(store, dd.dev_articles()[:2], WEEK1)
        assert store.digest_log() == [] and store.last_sent_digest() is None
    engine = sa.create_engine(url)
    tables = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert {"digests", "digest_papers", "digest_events"} <= tables


# ------------------------------------------------------------------ TLS and login against a real server

PASSWORD = "correct horse battery staple"


class TlsInbox(Inbox):
    """Also records, per message, whether the session was encrypted and who logged in."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[tuple[bool, bytes | None]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        encrypted = server.transport.get_extra_info("ssl_object") is not None
        self.sessions.append((encrypted, getattr(session.auth_data, "login", None)))
        return await super().handle_DATA(server, session, envelope)


def _authenticate(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult, LoginPassword

    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"digest-bot" \
        and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class TlsController(LoopbackController):
    """aiosmtpd with a certificate from a test CA: STARTTLS required before AUTH, or TLS from the first byte
    (``implicit``). The readiness check speaks TLS as a client that trusts the test CA."""

    def __init__(self, inbox: Inbox, ca, implicit: bool) -> None:
        import ssl

        server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_side)
        self.client_side = ssl.create_default_context()
        ca.configure_trust(self.client_side)
        self.implicit = implicit
        tls = {"ssl_context": server_side} if implicit else {"tls_context": server_side, "require_starttls": True}
        # aiosmtpd only counts STARTTLS as TLS for auth_require_tls, so with TLS from the first byte it would
        # not offer AUTH at all; the handler checks that the session was encrypted either way.
        super().__init__(inbox, hostname="127.0.0.1", port=0, authenticator=_authenticate,
                         auth_require_tls=not implicit, **tls)

    def _trigger_server(self) -> None:
        import socket

        self.port = self.server.sockets[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", self.port), 1.0) as raw:
            if self.implicit:
                with self.client_side.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    s.recv(1024)
            else:
                raw.recv(1024)


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_the_digest_goes_out_over_tls_with_a_login(tmp_path: Path, run_monitor, security: str) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    inbox = TlsInbox()
    controller = TlsController(inbox, ca, implicit=security == "tls")
    controller.start()
    try:
        site = Site(tmp_path, run_monitor, controller.port, extra='smtp_user = "digest-bot"\nca_file = "ca.pem"\n')
        site.config.write_text(site.config.read_text(encoding="utf-8").replace(
            'security = "none"', f'security = "{security}"'), encoding="utf-8")
        dev = dd.dev_articles()
        dd.store_week(site.store, dev[:8], WEEK1)
        now = WEEK1 + SEND_HOUR

        wrong = site.monitor("digest", now=now, env={"MONITOR_SMTP_PASSWORD": "wrong"})
        assert wrong.returncode == 1 and len(wrong.stderr.strip().splitlines()) == 1
        assert f"SMTP server 127.0.0.1:{controller.port} ({security}) refused the login for 'digest-bot'" \
            in wrong.stderr and "MONITOR_SMTP_PASSWORD" in wrong.stderr

        unset = site.monitor("digest", now=now, env={"MONITOR_SMTP_PASSWORD": ""})
        assert unset.returncode == 2 and "MONITOR_SMTP_PASSWORD is not set" in unset.stderr

        # Without the private CA the server's certificate is not trusted: a clear message, nothing sent.
        site.config.write_text(site.config.read_text(encoding="utf-8").replace('ca_file = "ca.pem"\n', ""),
                               encoding="utf-8")
        untrusted = site.monitor("digest", now=now, env={"MONITOR_SMTP_PASSWORD": PASSWORD})
        assert untrusted.returncode == 1 and "certificate we do not trust" in untrusted.stderr \
            and "digest.ca_file" in untrusted.stderr and len(untrusted.stderr.strip().splitlines()) == 1
        assert inbox.received == []
        site.config.write_text(site.config.read_text(encoding="utf-8") + 'ca_file = "ca.pem"\n', encoding="utf-8")

        sent = site.monitor("digest", now=now, env={"MONITOR_SMTP_PASSWORD": PASSWORD})
        assert sent.returncode == 0, sent.stderr
        assert inbox.sessions == [(True, b"digest-bot")]  # encrypted, logged in
        (msg,) = inbox.messages()
        assert sorted(listed(msg)) == sorted(dd.relevant_pmids(dev[:8]))  # the failed attempts lost nothing
        again = site.monitor("digest", now=now, env={"MONITOR_SMTP_PASSWORD": PASSWORD})
        assert again.returncode == 0 and again.stdout.startswith("no digest due") and len(inbox.received) == 1
        site.store.close()
    finally:
        controller.stop()


def test_ca_file_must_exist_and_needs_tls(tmp_path: Path, run_monitor) -> None:
    site = Site(tmp_path, run_monitor, 2525, extra='ca_file = "missing.pem"\n')
    site.store.close()
    missing = site.monitor("digest", "--dry-run", now=WEEK1)
    assert missing.returncode == 2 and "digest.ca_file" in missing.stderr and "no such file" in missing.stderr
    (tmp_path / "ca.pem").write_text("not used")
    site.write_config(2525, extra='ca_file = "ca.pem"\n')  # with security = "none"
    plain = site.monitor("digest", "--dry-run", now=WEEK1)
    assert plain.returncode == 2 and 'only used with security = "starttls" or "tls"' in plain.stderr


# ------------------------------------------------------------------ phones (headless Chromium) and the text part

PHONE_WIDTH = 360  # the narrowest common phone viewport, in CSS pixels
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
URL_RE = re.compile(r"https?://[^\s<>\"']+")
_LAYOUT_JS = """() => {
  const width = window.innerWidth;
  const visible = Array.from(document.body.querySelectorAll('*')).filter(e => e.getClientRects().length);
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: width,
    overflowing: visible.filter(e => e.getBoundingClientRect().right > width + 0.5)
                        .map(e => e.tagName + ': ' + e.textContent.trim().slice(0, 60)),
    nowrap: visible.filter(e => getComputedStyle(e).whiteSpace === 'nowrap' && e.textContent.trim())
                   .map(e => e.textContent.trim().slice(0, 60)),
    text: document.body.innerText,
  };
}"""


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium (the system's, through Playwright: nothing is downloaded)."""
    executable = require_program("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def phone_layout(browser, html: str, width: int = PHONE_WIDTH) -> dict:
    """Lay ``html`` out in a ``width`` px wide viewport: the document's scroll width, elements that reach past
    the viewport, elements that refuse to wrap, and the text as shown."""
    page = browser.new_page(viewport={"width": width, "height": 800})
    try:
        page.set_content(html, wait_until="load")
        return page.evaluate(_LAYOUT_JS)
    finally:
        page.close()


def assert_fits_a_phone(browser, html: str, what: str) -> dict:
    layout = phone_layout(browser, html)
    print(f"{what}: scrollWidth {layout['scrollWidth']} px in a {layout['innerWidth']} px viewport")
    assert layout["innerWidth"] == PHONE_WIDTH
    assert layout["scrollWidth"] <= layout["innerWidth"], (what, layout["scrollWidth"], layout["overflowing"][:5])
    assert layout["overflowing"] == [], what
    assert layout["nowrap"] == [], what  # every label may wrap
    return layout


def assert_readable_text(text: str, what: str) -> None:
    """The text part: no "et al..", no line over 78 columns but a URL alone on its line, no URL over 300
    characters."""
    assert "et al.." not in text, what
    for line in text.splitlines():
        assert len(line) <= 78 or re.fullmatch(r"\s*https?://\S+", line), (what, line)
    urls = URL_RE.findall(text)
    assert urls and max(map(len, urls)) <= 300, (what, max(urls, key=len))


def worst_case_digest() -> digests.Digest:
    """A digest built to be wide: every condition and intervention label (the longest is "Bullous disorders
    (pemphigus, pemphigoid, dermatitis herpetiformis)"), every design, an unbroken 130-character word, a
    long journal name, a long query name and a failure message with a long URL, 500 overflow papers and
    3,000 papers judged not relevant."""
    vocab = dd.vocabulary()
    conditions = tuple(vocab.label(c) for c in vocab.conditions)
    interventions = tuple(vocab.label(i) for i in vocab.interventions)
    week = (WEEK1, WEEK1 + dt.timedelta(days=7))
    word = "Dimethylaminopropyl" * 7
    paper = digests.DigestPaper(
        pmid="39000001", title=f"Probiotics in {word} and psoriasis: a randomized trial", url=digests.pubmed_url("39000001"),
        authors="Ødegård Å, Smith J, Lee KH, et al.",
        journal="Journal of the European Academy of Dermatology and Venereology : JEADV", year=2026,
        badges=tuple(digests.DESIGN_BADGES.values()), conditions=conditions, interventions=interventions,
        summary="In conclusion, " + " ".join(["the gut-skin axis matters"] * 20) + ".", relevance=0.9, retracted=True)
    plain = dataclasses.replace(paper, pmid="39000002", title="A short title", retracted=False, conditions=conditions[:1],
                                interventions=interventions[:1], badges=("RCT",), authors="Li X.")
    groups = (digests.Group(conditions[8], (digests.Subgroup(interventions[0], (paper, plain)),
                                            digests.Subgroup(digests.OTHER_INTERVENTION, (plain,), specific=False))),
              digests.Group(digests.OTHER_CONDITION, (digests.Subgroup(interventions[1], (plain,)),), specific=False))
    problem = ("query 'a-very-long-query-name-used-by-nobody' is degraded (PhraseNotFound 'gluten free diett'); "
               "see https://pubmed.ncbi.nlm.nih.gov/?term=" + "%22gluten+free+diett%22+OR+" * 8 + "x")
    coverage = (digests.QueryCoverage("a-very-long-query-name-used-by-nobody", 7, 5, 1, 1, 123456, 9999, problem),
                digests.QueryCoverage("gut-skin-axis", 7, 7, 0, 0, 40, 12, None))
    change = digests.StatusChange("39000003", "An expression of concern about " + word, digests.pubmed_url("39000003"),
                                  "Expression of concern", WEEK1.date(), digests.pubmed_url("39000004"))
    return digests.Digest(
        period=week, created_at=week[1], groups=groups, relevant=("39000001", "39000002"),
        overflow=tuple(str(38_000_000 + i) for i in range(500)),
        not_relevant=tuple(str(30_000_000 + i) for i in range(3000)),
        condition_counts=tuple((c, 1000 + i) for i, c in enumerate(conditions)),
        intervention_counts=tuple((c, 10 + i) for i, c in enumerate(interventions)),
        status_changes=(change,), event_ids=(1,), coverage=coverage, runs=7, runs_failed=2)


def test_a_digest_of_real_papers_fits_a_phone_and_its_text_part_reads_well(browser, site: Site) -> None:
    dev, corpus = dd.dev_articles(), dd.corpus_articles()
    dd.store_week(site.store, dev + corpus, WEEK1)
    dd.store_week(site.store, [], WEEK1 + dt.timedelta(hours=1), query="diet-elimination", status="degraded",
                  message="query 'diet-elimination' is degraded (PhraseNotFound 'gluten free diett')")
    out = site.tmp / "digest.eml"
    result = site.monitor("digest", "--dry-run", "--out", str(out), now=WEEK1 + SEND_HOUR)
    assert result.returncode == 0, result.stderr
    text, html = parts(email.message_from_bytes(out.read_bytes(), policy=email.policy.default))
    layout = assert_fits_a_phone(browser, html, "dev set + corpus digest")
    assert_readable_text(text, "dev set + corpus digest")
    # Conditions and interventions are named as such in words, not only told apart by colour.
    shown = layout["text"]
    assert "CONDITIONS" in shown and "INTERVENTIONS AND EXPOSURES" in shown
    assert re.search(r"^Conditions?: \S", shown, re.MULTILINE) and re.search(r"^Interventions?: \S", shown, re.MULTILINE)
    assert re.search(r"^ {2}Conditions?: \S", text, re.MULTILINE) and "  Tags:" not in text


def test_the_widest_digest_fits_a_phone_and_its_text_part_reads_well(browser) -> None:
    digest = worst_case_digest()
    layout = assert_fits_a_phone(browser, digests.render_html(digest), "worst-case digest")
    text = digests.render_text(digest)
    assert_readable_text(text, "worst-case digest")
    shown = layout["text"]
    (paper, plain) = digest.groups[0].subgroups[0].papers
    assert f"Conditions: {' '.join(paper.conditions)}" in shown
    assert f"Interventions: {' '.join(paper.interventions)}" in shown
    assert f"Condition: {plain.conditions[0]}" in shown and f"Intervention: {plain.interventions[0]}" in shown
    assert f"Intervention: {digest.groups[0].subgroups[0].label}" in shown  # subgroup headings say what they are
    # 3,000 not-relevant papers: a few short PubMed links and the local search that lists them all.
    urls = URL_RE.findall(text)
    assert len([u for u in urls if re.search(r"\?term=\d+(\+\d+)*$", u)]) == 2 * digests.PUBMED_LINKS_MAX
    assert digest.search_command in text and digest.search_command in digests.render_html(digest)
    assert "The first 60 on PubMed:" in text


def test_a_digest_interrupted_mid_send_is_resent_as_it_was_never_rebuilt(site: Site, smtp) -> None:
    """A crash between the SMTP DATA and the "sent" log line leaves the digest pending: the next send is the
    same message with the same Message-ID (mail clients collapse the copy), not a rebuilt one."""
    inbox, _ = smtp
    dd.store_week(site.store, dd.dev_articles()[:6], WEEK1)
    config = load_config(site.config, env={"MONITOR_DB_URL": db_url(site.db)})
    vocabulary = digests.Vocabulary.from_taxonomy(load_taxonomy(config.tagging.taxonomy))
    mailer = digests.SmtpMailer(digests.require(config))

    class DiesAfterTheServerAccepted:
        def send(self, message: EmailMessage) -> tuple[str, ...]:
            mailer.send(message)  # the server has it (250) …
            raise KeyboardInterrupt  # … and the process is killed before the log says "sent"

    clock = FixedClock(WEEK1 + SEND_HOUR)
    with pytest.raises(KeyboardInterrupt):
        digests.send_due(config, site.store, clock, DiesAfterTheServerAccepted(), vocabulary)
    (pending,) = site.store.pending_digests()
    dd.store_week(site.store, dd.dev_articles()[6:9], WEEK1 + dt.timedelta(hours=6))  # found since
    clock.advance(hours=2)
    resumed = site.monitor("digest", now=clock.now())
    assert resumed.returncode == 0, resumed.stderr
    assert f"sent digest #{pending.id} again" in resumed.stdout
    first, again = inbox.messages()
    assert first["Message-ID"] == again["Message-ID"] == pending.message_id
    assert listed(first) == listed(again)  # the same content, not rebuilt with the papers found since
    assert site.store.pending_digests() == [] and site.store.digest_log()[0].status == "sent"
    later = site.monitor("digest", "--force", now=clock.now())  # the papers found since still go out, once
    assert later.returncode == 0, later.stderr
    newest = inbox.messages()[-1]
    assert newest["Message-ID"] != first["Message-ID"]
    assert not set(listed(newest)) & set(listed(first)) and listed(newest)


def test_two_digest_commands_started_together_send_one_email(tmp_path: Path, smtp) -> None:
    """Two real processes race: the digest lease lets one send; the other says who holds it (or finds
    nothing due) — never a second copy."""
    import subprocess

    from tests.conftest import monitor_executable

    inbox, controller = smtp
    site = Site(tmp_path, None, controller.port)
    dd.store_week(site.store, dd.dev_articles()[:8], WEEK1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "NCBI_"))}
    env.update({"MONITOR_CONFIG": str(site.config), "MONITOR_DB_URL": db_url(site.db),
                "MONITOR_NOW": (WEEK1 + SEND_HOUR).isoformat()})
    for _ in range(3):
        procs = [subprocess.Popen([monitor_executable(), "digest"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        outcomes = [(p.wait(timeout=60), p.stdout.read() + p.stderr.read()) for p in procs]
        for code, text in outcomes:
            assert code in (0, 1) and "Traceback" not in text, text
            assert code == 0 or "holds the digest lease" in text
    assert len(inbox.received) == 1  # three rounds of two: one email
    assert [d.status for d in site.store.digest_log()] == ["sent"]
    site.store.close()
