"""Feeds end to end: `monitor run` against the E-utilities stand-in, then the feed files read back by
feedparser and lxml (with the W3C feed validator's structural rules), `monitor serve` over real HTTP, and
newsboat (a real feed reader) importing feeds.opml and subscribing to every feed.

The stand-in serves real PubMed records; the real corpus holds no gut–skin paper, so a dozen of them carry
the title and abstract of a labelled gut–skin record (tests/data/tagging, real PubMed text) instead: the
shipped tagger then finds them relevant on its own.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import html
import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import feedparser
import pytest
from lxml import etree

from monitor.feeds import feed_guid
from tests.conftest import db_url, require_program, start_serve
from tests.eutils_standin import StandIn
from tests.harness import invoke
from tests.tagging_data import LABELLED
from tests.test_cycle_e2e import NOW, TODAY, World, with_retraction

HISTORY_NS = "http://purl.org/syndication/history/1.0"
ATOM_NS = "http://www.w3.org/2005/Atom"


def dress(standin: StandIn, pmid: str, row: dict, mdat: dt.date = TODAY - dt.timedelta(days=30)) -> None:
    """Give a real record the title and abstract of a labelled gut–skin record (revised on ``mdat``)."""
    root = etree.fromstring(standin.record_xml(pmid))
    article = root.find(".//Article")
    title = article.find("ArticleTitle")
    for child in list(title):
        title.remove(child)
    title.text = row["title"]
    abstract = article.find("Abstract")
    if abstract is None:
        abstract = etree.Element("Abstract")
        title.addnext(abstract)
    for child in list(abstract):
        abstract.remove(child)
    etree.SubElement(abstract, "AbstractText").text = row["abstract"]
    standin.revise(pmid, etree.tostring(root), mdat=mdat)


class FeedWorld(World):
    def __init__(self, standin: StandIn, tmp: Path, run_monitor=None, limit: int = 100) -> None:
        super().__init__(standin, tmp, run_monitor)
        rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]
        self.dressed = self.all_ids[:12]
        for pmid, row in zip(self.dressed, rows):
            dress(standin, pmid, row)
        text = self.config.read_text(encoding="utf-8")
        assert '[feeds]\nout = "feeds" ' in text and "\nlimit = 100 " in text  # the shipped [feeds] table
        self.config.write_text(text.replace("\nlimit = 100 ", f"\nlimit = {limit} "), encoding="utf-8")
        self.out = tmp / "feeds"

    def relevant(self) -> list[dict]:
        return [p for p in self.export() if p["gut_skin_relevant"]]

    def parse(self, rel: str) -> feedparser.FeedParserDict:
        return feedparser.parse((self.out / rel).read_bytes())


@pytest.fixture
def fw(tmp_path: Path) -> Iterator[FeedWorld]:
    """Commands in-process (the stand-in as their transport); `monitor serve` and newsboat run for real."""
    yield FeedWorld(StandIn(today=TODAY, hang_seconds=3.0), tmp_path)


def guids(parsed: feedparser.FeedParserDict) -> list[str]:
    return [e.id for e in parsed.entries]


def expected_guids(feed_path: str, pmids: Iterable[str]) -> list[str]:
    """The guids a feed must hold for these papers: the main feed's are ``pubmed:PMID``, every other feed's
    ``pubmed:PMID/<feed id>`` (readers key items by guid across subscriptions)."""
    return sorted(feed_guid(f"pubmed:{pmid}", feed_path) for pmid in pmids)


def feed_of(rel: str) -> str:
    """The feed a document belongs to: itself, or for an archive page the feed it archives."""
    return rel[len("archive/"):].rsplit("/", 1)[0] + ".xml" if rel.startswith("archive/") else rel


RFC822 = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                    r"\d{4} \d{2}:\d{2}:\d{2} \+0000$")


def check_rss_structure(raw: bytes, rel: str) -> list[str]:
    """The W3C feed validator's structural rules for RSS 2.0, on one document: the channel's required
    elements, each item's title/link/description, exactly one guid (not a permalink), RFC 822 dates.
    Returns the document's guids."""
    root = etree.fromstring(raw)
    assert root.tag == "rss" and root.get("version") == "2.0", rel
    (channel,) = root.findall("channel")
    for name in ("title", "link", "description"):
        assert len(channel.findall(name)) == 1 and (channel.findtext(name) or "").strip(), (rel, name)
    for name in ("lastBuildDate", "pubDate"):
        for date in channel.findall(name):
            assert RFC822.match(date.text or ""), (rel, name, date.text)
    found = []
    for item in channel.findall("item"):
        for name in ("title", "link", "description", "pubDate"):
            assert len(item.findall(name)) == 1 and (item.findtext(name) or "").strip(), (rel, name)
        assert RFC822.match(item.findtext("pubDate") or ""), (rel, item.findtext("pubDate"))
        assert email.utils.parsedate_to_datetime(item.findtext("pubDate")).tzinfo is not None
        (guid,) = item.findall("guid")
        assert guid.get("isPermaLink") == "false" and guid.text, rel
        found.append(guid.text)
    assert len(found) == len(set(found)), rel
    return found


def test_run_writes_valid_feeds_that_hold_exactly_the_right_papers(fw: FeedWorld) -> None:
    result = fw.monitor("run", key=True)
    assert result.returncode == 0, result.stderr
    assert "feeds:" in result.stdout and "relevant papers" in result.stdout
    relevant = fw.relevant()
    assert len(relevant) >= 8  # most dressed records; none of the plain corpus records
    assert {p["pmid"] for p in relevant} <= set(fw.dressed)

    files = sorted(p.relative_to(fw.out).as_posix() for p in fw.out.rglob("*.xml"))
    assert "main.xml" in files
    owner: dict[str, str] = {}  # guid -> the feed whose documents carry it
    for rel in files:
        parsed = fw.parse(rel)
        assert parsed.bozo == 0, (rel, parsed.get("bozo_exception"))
        assert parsed.version == "rss20"
        assert guids(parsed) == check_rss_structure((fw.out / rel).read_bytes(), rel)
        for entry in parsed.entries:
            assert entry.title and entry.link.startswith("https://pubmed.ncbi.nlm.nih.gov/")
            assert entry.published_parsed is not None
        for guid in guids(parsed):
            # No guid is shared by two feeds (a feed and its own archive pages may repeat one).
            assert owner.setdefault(guid, feed_of(rel)) == feed_of(rel), (guid, rel, owner[guid])

    main = fw.parse("main.xml")
    assert sorted(guids(main)) == expected_guids("main.xml", (p["pmid"] for p in relevant))
    by_guid = {e.id: e for e in main.entries}
    for p in relevant:
        entry = by_guid[f"pubmed:{p['pmid']}"]
        assert entry.title == p["title"]
        assert entry.link == f"https://pubmed.ncbi.nlm.nih.gov/{p['pmid']}/"
        assert dt.datetime(*entry.published_parsed[:6], tzinfo=dt.UTC) == dt.datetime.fromisoformat(
            p["first_seen_at"])
        terms = {t.term for t in entry.tags}
        assert set(p["conditions"]) | set(p["interventions"]) | set(p["designs"]) == terms
        assert p["abstract"][0]["text"][:60] in html.unescape(entry.content[0].value)
        assert "Why tagged:" in entry.summary

    # Every topic feed holds exactly the relevant papers with that tag (or pair, or query).
    conditions = {c for p in relevant for c in p["conditions"]}
    interventions = {i for p in relevant for i in p["interventions"]}
    assert conditions and interventions
    for path, pmids in expected_membership(relevant, [q.name for q in fw.queries]).items():
        assert sorted(guids(fw.parse(path))) == expected_guids(path, pmids), path
    pairs = {(c, i) for p in relevant for c in p["conditions"] for i in p["interventions"]}
    topic = sorted(conditions)[0] + ".xml"
    papers = {feed_guid(f"pubmed:{p['pmid']}", topic): p for p in relevant}
    for entry in fw.parse(topic).entries:  # a topic feed's item is the paper's, linking PubMed
        assert (entry.title, entry.link) == (papers[entry.id]["title"],
                                             f"https://pubmed.ncbi.nlm.nih.gov/{papers[entry.id]['pmid']}/")
    # No feed for a pair or tag without papers.
    assert not (fw.out / "vitiligo" / "zinc.xml").exists() or ("vitiligo", "zinc") in pairs

    opml = etree.parse(str(fw.out / "feeds.opml"))
    check_opml_structure(opml)
    urls = {o.get("xmlUrl") for o in opml.iter("outline") if o.get("xmlUrl")}
    assert urls == {f"http://127.0.0.1:8080/{f}" for f in files if not f.startswith("archive/")}
    index = (fw.out / "index.html").read_text(encoding="utf-8")
    assert 'href="main.xml"' in index and f">{len(relevant)}</td>" in index


def expected_membership(relevant: list[dict], queries: list[str]) -> dict[str, set[str]]:
    """Feed path -> the PMIDs it must hold, from the JSONL export: every relevant paper in main.xml, each
    condition and intervention feed, each condition × intervention pair that has papers, each query."""
    out: dict[str, set[str]] = {"main.xml": {p["pmid"] for p in relevant}}
    out.update({f"query/{q}.xml": set() for q in queries})
    for p in relevant:
        paths = [f"{t}.xml" for t in p["conditions"] + p["interventions"]]
        paths += [f"{c}/{i}.xml" for c in p["conditions"] for i in p["interventions"]]
        paths += [f"query/{q['name']}.xml" for q in p["queries"]]
        for path in paths:
            out.setdefault(path, set()).add(p["pmid"])
    return out


def check_opml_structure(opml: etree._ElementTree) -> None:
    """OPML 2.0 as the W3C validator checks it: version, head title, RFC 822 head dates, every outline has
    ``text``; a feed outline is ``type="rss"`` with ``xmlUrl`` and ``title``; an outline without a ``type``
    carries nothing but ``text`` (else the validator warns: MissingOutlineType)."""
    root = opml.getroot()
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title") and root.find("head/dateCreated") is None
    for date in ("dateCreated", "dateModified"):
        if root.find(f"head/{date}") is not None:
            assert RFC822.match(root.findtext(f"head/{date}")), date
    outlines = list(root.iter("outline"))
    assert outlines
    for o in outlines:
        assert o.get("text"), o.attrib
        if o.get("type") is None:
            assert set(o.attrib) == {"text"}, o.attrib
        else:
            assert o.get("type") == "rss" and o.get("xmlUrl") and o.get("title"), o.attrib


def test_feed_generation_is_idempotent_and_deterministic(fw: FeedWorld, tmp_path: Path) -> None:
    assert fw.monitor("run", key=True).returncode == 0
    before = {p: p.read_bytes() for p in fw.out.rglob("*") if p.is_file()}
    again = fw.monitor("feed")
    assert again.returncode == 0, again.stderr
    assert "0 rendered, 0 files written, 0 removed" in again.stdout
    assert {p: p.read_bytes() for p in fw.out.rglob("*") if p.is_file()} == before
    # A day later with nothing new: not a byte changes, feeds.opml and index.html included (no generation
    # time in them), so readers' conditional GETs keep getting 304.
    stamps = {p: p.stat().st_mtime_ns for p in before}
    later = fw.monitor("feed", now="2026-11-23T09:30:00+00:00")
    assert later.returncode == 0, later.stderr
    assert "0 rendered, 0 files written, 0 removed" in later.stdout
    assert {p: p.read_bytes() for p in fw.out.rglob("*") if p.is_file()} == before
    assert {p: p.stat().st_mtime_ns for p in before} == stamps
    elsewhere = tmp_path / "copy"
    assert fw.monitor("feed", "--out", str(elsewhere)).returncode == 0
    for path, data in before.items():
        assert (elsewhere / path.relative_to(fw.out)).read_bytes() == data, path


def retract(standin: StandIn, pmid: str) -> None:
    standin.revise(pmid, with_retraction(standin.record_xml(pmid).decode()).encode())


def test_retracting_a_delivered_paper_adds_one_status_item_and_no_duplicate(fw: FeedWorld) -> None:
    assert fw.monitor("run", key=True).returncode == 0
    target = fw.relevant()[0]
    fw.standin.today = TODAY + dt.timedelta(days=1)
    retract(fw.standin, target["pmid"])
    later = "2026-11-23T03:00:00+00:00"
    result = fw.monitor("run", key=True, now=later)
    assert result.returncode == 0, result.stderr
    main = fw.parse("main.xml")
    ids = guids(main)
    original = f"pubmed:{target['pmid']}"
    status = [e for e in main.entries if e.id.startswith(original + ":")]
    assert ids.count(original) == 1 and len(status) == 1
    (item,) = status
    assert item.id == f"{original}:retraction:99999999"  # in the main feed; topic feeds add their id
    assert item.title == f"[Retracted] {target['title']}"
    assert item.link == "https://pubmed.ncbi.nlm.nih.gov/99999999/"
    assert dt.datetime(*item.published_parsed[:6], tzinfo=dt.UTC) == dt.datetime.fromisoformat(later)
    assert {t.term for t in item.tags} == {"status_change", "retraction"}
    assert ids[0] == item.id  # newest first
    for c in target["conditions"]:  # topic feeds carry it too, under their own guids
        topic = guids(fw.parse(f"{c}.xml"))
        assert topic.count(f"{original}/{c}") == 1 and topic.count(f"{item.id}/{c}") == 1
        assert not {original, item.id} & set(topic)
    assert fw.monitor("run", key=True, now="2026-11-24T03:00:00+00:00").returncode == 0
    assert guids(fw.parse("main.xml")) == ids  # nothing new: no second status item


def test_a_revised_paper_keeps_its_one_item_and_an_erratum_adds_one_status_item(fw: FeedWorld) -> None:
    assert fw.monitor("run", key=True).returncode == 0
    revised, corrected = fw.relevant()[0], fw.relevant()[1]
    before = {e.id: e for e in fw.parse("main.xml").entries}
    fw.standin.today = TODAY + dt.timedelta(days=1)
    # A new revision of the record (PubMed fixes the abstract): same guid, new text, no status item.
    root = etree.fromstring(fw.standin.record_xml(revised["pmid"]))
    (text,) = root.findall(".//Abstract/AbstractText")
    text.text = text.text + " Corrected sentence added in the revision."
    fw.standin.revise(revised["pmid"], etree.tostring(root))
    # An erratum notice linked to another delivered paper.
    xml = fw.standin.record_xml(corrected["pmid"]).decode()
    erratum = ('<CommentsCorrections RefType="ErratumIn"><RefSource>J Test. 2026;1:2</RefSource>'
               '<PMID Version="1">99999998</PMID></CommentsCorrections>')
    xml = (xml.replace("<CommentsCorrectionsList>", "<CommentsCorrectionsList>" + erratum, 1)
           if "<CommentsCorrectionsList>" in xml else xml.replace(
               "</MedlineCitation>", f"<CommentsCorrectionsList>{erratum}</CommentsCorrectionsList></MedlineCitation>", 1))
    fw.standin.revise(corrected["pmid"], xml.encode())
    assert fw.monitor("run", key=True, now="2026-11-23T03:00:00+00:00").returncode == 0
    main = fw.parse("main.xml")
    ids = guids(main)
    assert len(ids) == len(set(ids)) == len(before) + 1  # one new item: the erratum notice
    item = next(e for e in main.entries if e.id == f"pubmed:{revised['pmid']}")
    assert "Corrected sentence added in the revision." in item.content[0].value
    assert item.published == before[item.id].published  # still dated when we first found it
    (status,) = [e for e in main.entries if e.id.startswith(f"pubmed:{corrected['pmid']}:")]
    assert status.id == f"pubmed:{corrected['pmid']}:erratum:99999998"
    assert status.title.startswith("[Erratum] ") and {t.term for t in status.tags} == {"status_change", "erratum"}
    assert not [e for e in main.entries if e.id.startswith(f"pubmed:{revised['pmid']}:")]


def test_archives_page_old_items_with_rfc5005_links(tmp_path: Path) -> None:
    fw = FeedWorld(StandIn(today=TODAY), tmp_path, limit=3)
    assert fw.monitor("run", key=True).returncode == 0
    relevant = fw.relevant()
    assert len(relevant) >= 7
    main = fw.parse("main.xml")
    assert len(main.entries) == 3
    pages = sorted((fw.out / "archive" / "main").glob("*.xml"), key=lambda p: int(p.stem))
    assert [p.stem for p in pages] == [str(n) for n in range(1, len(relevant) // 3 + 1)]
    seen = set(guids(main))
    for n, page in enumerate(pages, 1):
        parsed = feedparser.parse(page.read_bytes())
        assert parsed.bozo == 0 and len(parsed.entries) == 3
        seen |= set(guids(parsed))
        doc = etree.parse(str(page))
        assert doc.find(f".//{{{HISTORY_NS}}}archive") is not None
        rels = {ln.get("rel"): ln.get("href") for ln in doc.iter(f"{{{ATOM_NS}}}link")}
        assert rels["current"] == "http://127.0.0.1:8080/main.xml"
        assert rels.get("prev-archive") == (f"http://127.0.0.1:8080/archive/main/{n - 1}.xml" if n > 1 else None)
    assert seen == {f"pubmed:{p['pmid']}" for p in relevant}  # a reader can backfill everything
    sub = etree.parse(str(fw.out / "main.xml"))
    rels = {ln.get("rel"): ln.get("href") for ln in sub.iter(f"{{{ATOM_NS}}}link")}
    assert rels["prev-archive"] == f"http://127.0.0.1:8080/archive/main/{len(pages)}.xml"
    assert sub.find(f".//{{{HISTORY_NS}}}archive") is None


def test_hostile_titles_and_abstracts_render_as_text(tmp_path: Path) -> None:
    from monitor.config import load_config
    from monitor.feeds import publish
    from monitor.storage import Storage
    from monitor.tagging import load_taxonomy
    from monitor.types import AbstractSection, Article, TagEvidence, Tagging
    from tests.conftest import SHIPPED_CONFIG

    config = load_config(SHIPPED_CONFIG, env={})
    taxonomy = load_taxonomy(config.tagging.taxonomy)
    hostile = "<script>alert('x')</script> & <i>Lactobacillus</i> in psoriasis\x07 \x00]]>"
    article = Article(pmid="31000001", title=hostile,
                      abstract=(AbstractSection("Results <b>bold</b> & ]]> end\x0b.", "RESULTS", "RESULTS"),))
    tagging = Tagging(conditions=("psoriasis",), interventions=("probiotics",), gut_skin_relevant=True,
                      relevance=0.9, taxonomy_version="t",
                      evidence=(TagEvidence("psoriasis", "condition", "title", "psoriasis<", 3.0),))
    now = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    with Storage.open(db_url(tmp_path / "h.sqlite3")) as store:
        store.store_batch([article], query="q", now=now, tagger=lambda paper: tagging)
        publish(store, taxonomy, config.feeds, now, out=tmp_path / "out")
    raw = (tmp_path / "out" / "main.xml").read_bytes()
    etree.fromstring(raw)  # well-formed
    assert b"<script>" not in raw and b"\x07" not in raw and b"\x00" not in raw
    (entry,) = feedparser.parse(raw).entries
    assert entry.title == hostile.replace("\x07", "").replace("\x00", "")  # the text, as written
    content = entry.content[0].value
    assert "<b>" not in content and "Results &lt;b&gt;bold&lt;/b&gt; &amp; ]]&gt; end." in content
    assert "“psoriasis&lt;”" in content
    assert feedparser.parse(raw).bozo == 0


@pytest.fixture
def served(fw: FeedWorld) -> Iterator[tuple[FeedWorld, str, subprocess.Popen]]:
    assert fw.monitor("run", key=True).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "NCBI_"))}
    env.update({"MONITOR_CONFIG": str(fw.config), "MONITOR_DB_URL": db_url(fw.db), "MONITOR_NOW": NOW})
    proc, url = start_serve(["--port", "0"], env, fw.tmp)
    try:
        yield fw, url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def get(url: str, path: str, headers: dict[str, str] | None = None, method: str = "GET"):
    host, port = url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp, body


def test_serve_validators_gzip_health_and_live_updates(served) -> None:
    fw, url, proc = served
    resp, body = get(url, "/main.xml")
    assert resp.status == 200 and resp.getheader("Content-Type") == "application/rss+xml; charset=utf-8"
    assert body == (fw.out / "main.xml").read_bytes()
    etag, modified = resp.getheader("ETag"), resp.getheader("Last-Modified")
    assert etag and modified
    assert get(url, "/main.xml", {"If-None-Match": etag})[0].status == 304
    assert get(url, "/main.xml", {"If-Modified-Since": modified})[0].status == 304
    assert get(url, "/main.xml", {"If-None-Match": '"other"'})[0].status == 200
    resp, zipped = get(url, "/main.xml", {"Accept-Encoding": "gzip"})
    assert resp.getheader("Content-Encoding") == "gzip" and gzip.decompress(zipped) == body
    assert resp.getheader("ETag") != etag  # a different representation, a different validator
    assert get(url, "/index.html")[1] == (fw.out / "index.html").read_bytes()
    resp, home = get(url, "/")  # the web app's home page now; the feeds' index stays at /index.html
    assert resp.status == 200 and b'href="/index.html"' in home
    assert get(url, "/feeds.opml")[0].getheader("Content-Type") == "text/x-opml; charset=utf-8"
    resp, health = get(url, "/healthz")
    assert resp.status == 200 and json.loads(health)["status"] == "ok"
    for bad in ("/../queries.toml", "/.monitor-feeds.json", "/nope.xml", "/%2e%2e/queries.toml"):
        assert get(url, bad)[0].status == 404, bad
    assert get(url, "/main.xml", method="POST")[0].status == 405
    assert get(url, "/main.xml", method="HEAD")[1] == b""

    # While it runs, a new relevant record arrives and `monitor run` writes it: served at once.
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]
    row = next(r for r in rows[12:] if r["gut_skin_relevant"])
    newcomer = fw.all_ids[20]  # stored by the first run, not relevant; now revised into a gut–skin paper
    fw.standin.today = TODAY + dt.timedelta(days=1)
    dress(fw.standin, newcomer, row, mdat=TODAY + dt.timedelta(days=1))
    assert fw.monitor("run", key=True, now="2026-11-23T03:00:00+00:00").returncode == 0
    assert newcomer in {p["pmid"] for p in fw.relevant()}
    resp, body2 = get(url, "/main.xml", {"If-None-Match": etag})
    assert resp.status == 200 and f"pubmed:{newcomer}".encode() in body2 and resp.getheader("ETag") != etag

    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - began < 5


class NewsboatItem(NamedTuple):
    feedurl: str
    guid: str
    title: str
    url: str


def newsboat(home: Path, *, urls: list[str] | None = None, opml: Path | None = None) -> list[NewsboatItem]:
    """Subscribe newsboat (its own cache and config in ``home``) to ``urls``, or import ``opml`` into its url
    list the way a user does (``newsboat -i``), reload every feed, and read back what it stored."""
    exe = require_program("newsboat")
    home.mkdir(parents=True, exist_ok=True)
    url_file, cache = home / "urls", home / "cache.db"
    if urls is not None or not url_file.exists():  # else: keep what an earlier call subscribed to
        url_file.write_text("".join(u + "\n" for u in urls or ()), encoding="utf-8")
    (home / "config").write_text("", encoding="utf-8")
    env = {**os.environ, "HOME": str(home), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    common = [exe, "-u", str(url_file), "-c", str(cache), "-C", str(home / "config")]
    if opml is not None:
        imported = subprocess.run([*common, "-i", str(opml)], capture_output=True, text=True, env=env, timeout=60)
        assert imported.returncode == 0, imported.stdout + imported.stderr
    done = subprocess.run([*common, "-x", "reload"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(cache) as db:
        rows = db.execute("SELECT feedurl, guid, title, url FROM rss_item WHERE deleted = 0").fetchall()
    return sorted(NewsboatItem(*row) for row in rows)


@pytest.fixture
def newsboat_installed() -> str:
    """Asked for before the feeds are built, so a missing newsboat skips (or fails) at once."""
    return require_program("newsboat")


def test_newsboat_imports_the_opml_and_every_feed_shows_exactly_its_papers(newsboat_installed: str, served,
                                                                           tmp_path: Path) -> None:
    """The OPML list a user imports, every feed subscribed at once: newsboat keys items by guid across all
    subscriptions, so this is where a guid shared by two feeds would leave one of them empty."""
    fw, url, _proc = served
    # Publish with the served address as the feeds' public URL, so the OPML list points at this server.
    env = {"MONITOR_CONFIG": str(fw.config), "MONITOR_DB_URL": db_url(fw.db), "MONITOR_NOW": NOW,
           "MONITOR_FEEDS_URL": url}
    published = invoke(["feed"], env)
    assert published.returncode == 0, published.stderr
    relevant = fw.relevant()
    expected = expected_membership(relevant, [q.name for q in fw.queries])
    opml_urls = [o.get("xmlUrl") for o in etree.parse(str(fw.out / "feeds.opml")).iter("outline") if o.get("xmlUrl")]
    assert sorted(opml_urls) == sorted(url + path for path in expected)

    items = newsboat(tmp_path / "all", opml=fw.out / "feeds.opml")
    subscribed = (tmp_path / "all" / "urls").read_text(encoding="utf-8")
    assert all(u in subscribed for u in opml_urls)
    titles = {p["pmid"]: p["title"] for p in relevant}
    shown: dict[str, list[NewsboatItem]] = {path: [] for path in expected}
    for item in items:
        assert item.feedurl.startswith(url), item
        shown[item.feedurl[len(url):]].append(item)
    counts = {path: len(shown[path]) for path in expected}
    print("newsboat items per feed:", counts)
    empty_with_papers = [path for path in expected if expected[path] and not shown[path]]
    assert empty_with_papers == []
    for path, pmids in expected.items():
        got = shown[path]
        assert sorted(i.guid for i in got) == expected_guids(path, pmids), path
        assert sorted((i.title, i.url) for i in got) == sorted(
            (titles[p], f"https://pubmed.ncbi.nlm.nih.gov/{p}/") for p in pmids), path
    # A second reload adds nothing and loses nothing.
    assert newsboat(tmp_path / "all") == items


def test_newsboat_reads_the_main_feed_alone(newsboat_installed: str, served, tmp_path: Path) -> None:
    fw, url, _proc = served
    relevant = fw.relevant()
    main = newsboat(tmp_path / "main", urls=[url + "main.xml"])
    assert sorted(i.title for i in main) == sorted(p["title"] for p in relevant)


def test_feed_and_serve_errors_are_one_line(fw: FeedWorld, tmp_path: Path) -> None:
    assert fw.monitor("run", key=True).returncode == 0
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = fw.monitor("feed", "--out", str(blocker / "sub"))
    assert result.returncode == 1
    assert result.stderr.startswith("monitor: error: cannot write feeds to") and result.stderr.count("\n") == 1
    result = fw.monitor("serve", "--port", "70000")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    text = fw.config.read_text(encoding="utf-8").replace("\nlimit = 100 ", "\nlimit = 0 ")
    fw.config.write_text(text, encoding="utf-8")
    result = fw.monitor("feed")
    assert result.returncode == 2
    assert "feeds.limit: must be between 1 and 10000, not 0" in result.stderr


# A large rendering is split over a forked process (feeds._render_split). The check runs in a fresh Python
# so that no thread of this test process (servers of other tests) keeps the split from happening.
_SPLIT_SCRIPT = r"""
import dataclasses, datetime as dt, json, sys
from pathlib import Path
from monitor.config import load_config
from monitor.errors import PublishError
from monitor.feeds import publish
from monitor.storage import Storage
from monitor.tagging import load_taxonomy, tag
from tests.tagging_data import LABELLED, row_to_article

tmp = Path(sys.argv[1])
config = load_config(Path(sys.argv[2]), env={})
taxonomy = load_taxonomy(config.tagging.taxonomy)
rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
now = dt.datetime(2026, 11, 22, 6, 0, tzinfo=dt.timezone.utc)
settings = dataclasses.replace(config.feeds, limit=4)
names = [q.name for q in config.queries]
out = {}
with Storage.open(sys.argv[3]) as store:
    for n in range(4):  # four batches of the labelled records under fresh PMIDs, a day apart, two queries
        batch = [dataclasses.replace(row_to_article(r), pmid=str(32_000_000 + n * 1000 + i)) for i, r in enumerate(rows)]
        store.store_batch(batch, query=names[n % 2], now=now - dt.timedelta(days=4 - n),
                          tagger=lambda a: tag(a, taxonomy))
    for workers in (1, 2, 2):
        r = publish(store, taxonomy, settings, now, queries=names, out=tmp / f"w{workers}", workers=workers)
        out.setdefault(str(workers), []).append([r.processes, r.rendered, r.write.written, r.documents])
    (tmp / "blocked").mkdir()
    (tmp / "blocked" / "archive").write_text("a file where a folder must go")
    try:
        publish(store, taxonomy, settings, now, queries=names, out=tmp / "blocked", workers=2)
    except PublishError as exc:
        out["error"] = str(exc)
print(json.dumps(out))
"""


def test_a_large_rendering_split_over_two_processes_writes_the_same_bytes(tmp_path: Path) -> None:
    from tests.conftest import SHIPPED_CONFIG

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "NCBI_"))}
    done = subprocess.run([sys.executable, "-c", _SPLIT_SCRIPT, str(tmp_path), str(SHIPPED_CONFIG),
                           db_url(tmp_path / "split.sqlite3")],
                          capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    (serial,) = result["1"]
    first, again = result["2"]
    assert serial[0] == 1 and first[0] == 2  # one process, then split over two
    assert first[1] == first[3] == serial[3] > 20 and first[2] == serial[2]  # every document rendered and written
    assert again[1:3] == [0, 0]  # nothing changed: nothing rendered or written
    one, two = tmp_path / "w1", tmp_path / "w2"
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    assert any(str(f).startswith("archive/") for f in files)
    for rel in files:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel
    assert "cannot write feeds to" in result["error"] and "\n" not in result["error"]
