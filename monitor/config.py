"""Configuration: ``queries.toml`` → a validated, frozen :class:`Config`.

Owns the file format, the environment overrides and every "what is wrong with my config" message. Each
error names the file and the key path (``queries.toml: queries[2].term: must be a non-empty string``).
Secrets (the NCBI API key, the SMTP password) come only from the environment, never from the file.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .schedule import JobSchedule, cron_trigger, parse_duration, parse_timezone
from .terms import Fallback, TermError, balance_problem, expand, references, resolve_blocks
from .tomlreader import TableReader, load_toml, toml_type

DEFAULT_BASE_URL = "https://eutils.ncbi.nlm.nih.gov/entrez/eutils"
DEFAULT_DB_URL = "sqlite:///db/monitor.sqlite3"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_HINT = "see README 'Configuration'"
MAX_EVERY_SECONDS = 366 * 86400
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True, slots=True)
class EntrezConfig:
    base_url: str = DEFAULT_BASE_URL
    tool: str = "gut-skin-monitor"
    email: str | None = None
    api_key: str | None = None  # only ever from NCBI_API_KEY
    timeout: float = 60.0
    connect_timeout: float = 10.0
    max_attempts: int = 6
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    batch_size: int = 200
    deadline: float = 300.0  # seconds one attempt may take from sending to the last byte
    max_response_mb: float = 128.0  # a response's size cap, compressed and decompressed

    @property
    def requests_per_second(self) -> int:
        """NCBI's published limits: 3/s without a key, 10/s with one."""
        return 10 if self.api_key else 3


@dataclass(frozen=True, slots=True)
class StorageConfig:
    url: str = DEFAULT_DB_URL


@dataclass(frozen=True, slots=True)
class TaggingConfig:
    taxonomy: Path  # absolute: resolved against the config file's folder
    min_relevance: float = 0.5  # feeds and the digest carry papers whose relevance score reaches this


DEFAULT_FEEDS_URL = "http://127.0.0.1:8080/"
DEFAULT_FEEDS_TITLE = "Gut–skin literature monitor"


@dataclass(frozen=True, slots=True)
class FeedsConfig:
    out: Path  # absolute: resolved against the config file's folder
    base_url: str = DEFAULT_FEEDS_URL  # where readers reach the feeds (ends with /)
    limit: int = 100  # items per feed document; older items go to RFC 5005 archive pages
    title: str = DEFAULT_FEEDS_TITLE
SECURITY_PORTS = {"starttls": 587, "tls": 465, "none": 25}


@dataclass(frozen=True, slots=True)
class DigestConfig:
    """The weekly digest email (``[digest]``). The SMTP password only ever comes from
    ``MONITOR_SMTP_PASSWORD``."""

    sender: str  # the ``from`` key
    recipients: tuple[str, ...]  # the ``to`` key
    smtp_host: str = "localhost"
    smtp_port: int = 587
    security: str = "starttls"  # starttls | tls (implicit, "SMTPS") | none
    smtp_user: str | None = None
    smtp_password: str | None = None  # only ever from MONITOR_SMTP_PASSWORD
    subject_prefix: str = "[gut-skin monitor]"
    interval_days: int = 7
    first_days: int = 7
    max_papers: int = 150
    timeout: float = 60.0
    ca_file: Path | None = None  # certificates to trust instead of the system's (a private mail server)


DEFAULT_TIMEZONE = "America/New_York"
# 03:30 US Eastern: inside NCBI's off-peak window (21:00-05:00 ET) and clear of the 01:00-03:00 local hours
# that daylight-saving changes skip or repeat, so the cycle fires exactly once every day.
DEFAULT_CYCLE_CRON = "30 3 * * *"
DEFAULT_DIGEST_CRON = "0 7 * * mon"


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    """``[schedule]``: when ``monitor start`` runs the cycle and the digest, and how it holds the database
    lease. Durations are in seconds."""

    cycle: JobSchedule = JobSchedule(DEFAULT_CYCLE_CRON, None, DEFAULT_TIMEZONE)  # noqa: RUF009 - frozen
    digest: JobSchedule = JobSchedule(DEFAULT_DIGEST_CRON, None, DEFAULT_TIMEZONE)  # noqa: RUF009 - frozen
    timezone: str = DEFAULT_TIMEZONE
    misfire_grace_seconds: float = 6 * 3600.0  # a fire this late (machine asleep) still runs, once
    lease_seconds: float = 120.0  # a lease not renewed for this long is free (its holder died)
    stop_seconds: float = 3.0  # on SIGTERM: wait this long for the current batch, then abandon network I/O

    @property
    def heartbeat_seconds(self) -> float:
        """The lease is renewed four times per lease period, so one slow renewal never loses it."""
        return self.lease_seconds / 4


@dataclass(frozen=True, slots=True)
class Query:
    """One ``[[queries]]`` table. ``term`` is what is sent to NCBI and what the watermark compares: the term
    as written with every ``{block}`` expanded and whitespace collapsed, so editing a block is a term change
    for every query that uses it. ``written`` is the term as written (references unexpanded)."""

    name: str
    term: str
    since: dt.date
    description: str = ""
    written: str = ""
    blocks: tuple[str, ...] = ()  # the blocks the term refers to (directly)
    fallbacks: tuple[Fallback, ...] = ()  # this query's own, then the top-level [fallbacks]


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    queries: tuple[Query, ...]
    entrez: EntrezConfig = field(default_factory=EntrezConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    tagging: TaggingConfig = field(default_factory=lambda: TaggingConfig(Path("taxonomy.toml")))
    lookback_days: int = 30
    feeds: FeedsConfig = field(default_factory=lambda: FeedsConfig(Path("feeds")))
    digest: DigestConfig | None = None  # None: no [digest] table
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    blocks: tuple[tuple[str, str], ...] = ()  # [blocks]: name -> text with inner references expanded
    fallbacks: tuple[Fallback, ...] = ()  # the top-level [fallbacks]

    def expand(self, term: str, where: str = "--term") -> str:
        """A term from outside the file (``monitor queries check --term``) with the file's blocks expanded.
        Raises :class:`ConfigError` naming ``where``."""
        try:
            return expand(term, dict(self.blocks))
        except TermError as exc:
            raise ConfigError(str(exc), key=where) from None

    def query(self, name: str) -> Query:
        for q in self.queries:
            if q.name == name:
                return q
        known = ", ".join(q.name for q in self.queries)
        raise ConfigError(f"no query named {name!r} (known: {known})", path=self.path.name, key="queries")


def resolve_config_path(option: str | None, env: Mapping[str, str] | None = None) -> Path:
    """``--config`` wins, then ``$MONITOR_CONFIG``, then ``./queries.toml``."""
    env = os.environ if env is None else env
    return Path(option or env.get("MONITOR_CONFIG") or "queries.toml")


def load_config(path: Path | str, env: Mapping[str, str] | None = None) -> Config:
    """Read, validate and apply environment overrides. Raises :class:`ConfigError` (exit 2)."""
    path = Path(path)
    env = os.environ if env is None else env
    raw, _ = load_toml(path, missing="pass --config PATH or set MONITOR_CONFIG")
    return _build(raw, path, env)


def _build(raw: dict[str, Any], path: Path, env: Mapping[str, str]) -> Config:
    file = path.name
    top = TableReader(raw, "", file, hint=_HINT)
    lookback = top.number("lookback_days", int, 30, 0, 3650)
    default_since = top.get("since", dt.date)
    entrez = _entrez(top.child("entrez", top.get("entrez", dict, {})), env)
    storage = _storage(top.child("storage", top.get("storage", dict, {})), path, env)
    tagging = _tagging(top.child("tagging", top.get("tagging", dict, {})), path)
    feeds = _feeds(top.child("feeds", top.get("feeds", dict, {})), path, env)
    raw_digest = top.get("digest", dict)
    digest = None if raw_digest is None else _digest(top.child("digest", raw_digest), path, env)
    schedule = _schedule(top.child("schedule", top.get("schedule", dict, {})))
    blocks = _blocks(top.child("blocks", top.get("blocks", dict, {})))
    fallbacks = _fallbacks(top.child("fallbacks", top.get("fallbacks", dict, {})), blocks)
    raw_queries = top.get("queries", list, required=True)
    top.done()
    if not raw_queries:
        raise ConfigError("must list at least one [[queries]] table", path=file, key="queries")
    queries: list[Query] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw_queries):
        q = _query(TableReader(item, f"queries[{i}]", file, hint=_HINT), default_since, blocks, fallbacks)
        if q.name in seen:
            raise ConfigError(
                f"duplicate query name {q.name!r} (also queries[{seen[q.name]}].name)",
                path=file,
                key=f"queries[{i}].name",
            )
        seen[q.name] = i
        queries.append(q)
    return Config(path=path, queries=tuple(queries), entrez=entrez, storage=storage, tagging=tagging,
                  lookback_days=lookback, feeds=feeds, digest=digest, schedule=schedule,
                  blocks=tuple(blocks.items()), fallbacks=fallbacks)


def _entrez(r: TableReader, env: Mapping[str, str]) -> EntrezConfig:
    # Read every key from the file first (so typos are caught), then let the environment win.
    file_base_url = r.text("base_url", DEFAULT_BASE_URL)
    base_url = env.get("MONITOR_EUTILS_URL") or file_base_url or DEFAULT_BASE_URL
    file_email = r.text("email", "")
    if "api_key" in r.table:
        r.fail("api_key", "secrets are not read from the file: set NCBI_API_KEY in the environment")
    cfg = EntrezConfig(
        base_url=base_url.rstrip("/"),
        tool=r.text("tool", "gut-skin-monitor") or "gut-skin-monitor",
        email=(env.get("NCBI_EMAIL") or file_email or None),
        api_key=env.get("NCBI_API_KEY") or None,
        timeout=r.number("timeout", float, 60.0, 0.1, 3600),
        connect_timeout=r.number("connect_timeout", float, 10.0, 0.1, 600),
        max_attempts=r.number("max_attempts", int, 6, 1, 50),
        backoff_seconds=r.number("backoff_seconds", float, 1.0, 0, 600),
        max_backoff_seconds=r.number("max_backoff_seconds", float, 60.0, 0, 3600),
        batch_size=r.number("batch_size", int, 200, 1, 10000),
        deadline=r.number("deadline", float, 300.0, 1, 86400),
        max_response_mb=r.number("max_response_mb", float, 128.0, 1, 4096),
    )
    r.done()
    if not re.match(r"^https?://[^\s/]+", cfg.base_url):
        where = "MONITOR_EUTILS_URL" if env.get("MONITOR_EUTILS_URL") else f"{r.file}: entrez.base_url"
        raise ConfigError(f"{where}: must be an http(s) URL, not {cfg.base_url!r}")
    if cfg.email and not EMAIL_RE.match(cfg.email):
        r.fail("email", f"not an email address: {cfg.email!r}")
    if not re.match(r"^[A-Za-z0-9._-]+$", cfg.tool):
        r.fail("tool", "may contain only letters, digits, '.', '_' and '-' (NCBI logs it)")
    return cfg


def _storage(r: TableReader, path: Path, env: Mapping[str, str]) -> StorageConfig:
    file_url = r.text("url", DEFAULT_DB_URL)
    url = env.get("MONITOR_DB_URL") or file_url or DEFAULT_DB_URL
    r.done()
    if "://" not in url:
        r.fail("url", f"must be a SQLAlchemy URL like {DEFAULT_DB_URL!r}, not {url!r}")
    where = "MONITOR_DB_URL" if env.get("MONITOR_DB_URL") else f"{r.file}: storage.url"
    resolved = absolute_sqlite_url(url, path.resolve().parent)
    _check_database_url(resolved, is_default=url == DEFAULT_DB_URL, where=where)
    return StorageConfig(url=resolved)


def _check_database_url(url: str, *, is_default: bool, where: str) -> None:
    """A SQLite file must go in a folder that exists (only the default ``db/`` beside the config is made on
    first use: a typo must not silently start an empty database elsewhere); another database's driver must
    be installed."""
    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        folder = Path(url[len("sqlite:///"):]).parent
        if not folder.is_dir() and not is_default:
            raise ConfigError(f"{where}: the folder {folder} does not exist; create it (or fix the path: a "
                              "new, empty database would be started there)")
        return
    scheme = url.split("://", 1)[0]
    drivers = {"postgresql+psycopg": ("psycopg", "psycopg[binary]"), "postgresql": ("psycopg2", "psycopg2-binary"),
               "postgresql+psycopg2": ("psycopg2", "psycopg2-binary")}
    if scheme in drivers:
        module, package = drivers[scheme]
        import importlib.util

        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"{where}: {scheme} needs the {module} package, which is not installed: "
                              f"pip install '{package}' (or pip install 'gut-skin-monitor[postgres]')")


def _tagging(r: TableReader, path: Path) -> TaggingConfig:
    """The taxonomy file (tags, synonyms, MeSH) lives beside the config unless told otherwise."""
    name = r.text("taxonomy", "taxonomy.toml") or "taxonomy.toml"
    min_relevance = r.number("min_relevance", float, 0.5, 0.0, 1.0)
    r.done()
    return TaggingConfig(taxonomy=(path.resolve().parent / name), min_relevance=min_relevance)


def _feeds(r: TableReader, path: Path, env: Mapping[str, str]) -> FeedsConfig:
    """Where feeds are written and the public URL they are served under (MONITOR_FEEDS_URL overrides)."""
    out = r.text("out", "feeds") or "feeds"
    file_url = r.text("base_url", DEFAULT_FEEDS_URL)
    base_url = env.get("MONITOR_FEEDS_URL") or file_url or DEFAULT_FEEDS_URL
    limit = r.number("limit", int, 100, 1, 10_000)
    title = r.text("title", DEFAULT_FEEDS_TITLE)
    r.done()
    if not re.match(r"^https?://[^\s/]+(/\S*)?$", base_url):
        where = "MONITOR_FEEDS_URL" if env.get("MONITOR_FEEDS_URL") else f"{r.file}: feeds.base_url"
        raise ConfigError(f"{where}: must be the http(s) URL readers use to reach the feeds, not {base_url!r}")
    if not (title or "").strip():
        r.fail("title", "must be a non-empty string")
    return FeedsConfig(out=path.resolve().parent / out, base_url=base_url.rstrip("/") + "/", limit=limit,
                       title=(title or "").strip())
def _digest(r: TableReader, path: Path, env: Mapping[str, str]) -> DigestConfig:
    """``[digest]``: where and how the weekly email goes. Addresses and the subject prefix end up in mail
    headers, so line breaks are refused here rather than trusted to be escaped later."""
    if "smtp_password" in r.table or "password" in r.table:
        r.fail("smtp_password" if "smtp_password" in r.table else "password",
               "secrets are not read from the file: set MONITOR_SMTP_PASSWORD in the environment")
    sender = r.text("from", required=True) or ""
    raw_to = r.get("to", (list, str), required=True)
    to_list = [raw_to] if isinstance(raw_to, str) else list(raw_to)
    if not to_list:
        r.fail("to", "must list at least one address")
    recipients: list[str] = []
    for i, item in enumerate(to_list):
        where = f"to[{i}]" if isinstance(raw_to, list) else "to"
        if not isinstance(item, str):
            r.fail(where, f"must be a string, not {toml_type(item)}")
        recipients.append(_address(r, where, item))
    security = r.text("security", "starttls") or "starttls"
    if security not in SECURITY_PORTS:
        r.fail("security", f"must be one of starttls, tls, none, not {security!r}")
    host = (r.text("smtp_host", "localhost") or "").strip()
    if not host or any(c.isspace() for c in host):
        r.fail("smtp_host", f"must be a host name, not {host!r}")
    user = r.text("smtp_user", "") or None
    ca_name = r.text("ca_file", "") or ""
    ca_file = path.resolve().parent / ca_name if ca_name.strip() else None
    if ca_file is not None and not ca_file.is_file():
        r.fail("ca_file", f"no such file: {ca_file} (a PEM file of the certificates that sign your SMTP server's)")
    if ca_file is not None and security == "none":
        r.fail("ca_file", 'is only used with security = "starttls" or "tls"')
    prefix = r.text("subject_prefix", "[gut-skin monitor]") or ""
    if any(c in prefix for c in "\r\n\x00"):
        r.fail("subject_prefix", "must be one line (no line breaks)")
    cfg = DigestConfig(
        sender=_address(r, "from", sender),
        recipients=tuple(dict.fromkeys(recipients)),
        smtp_host=host,
        smtp_port=r.number("smtp_port", int, SECURITY_PORTS[security], 1, 65535),
        security=security,
        smtp_user=user,
        smtp_password=env.get("MONITOR_SMTP_PASSWORD") or None,
        subject_prefix=" ".join(prefix.split()),
        interval_days=r.number("interval_days", int, 7, 1, 366),
        first_days=r.number("first_days", int, 7, 1, 3650),
        max_papers=r.number("max_papers", int, 150, 1, 10000),
        timeout=r.number("timeout", float, 60.0, 0.1, 3600),
        ca_file=ca_file,
    )
    r.done()
    return cfg


def _schedule(r: TableReader) -> ScheduleConfig:
    """``[schedule]`` (issue 7): ``cycle`` (cron) or ``every`` (interval) for the monitoring cycle, ``digest``
    (cron), ``timezone`` for both crons, and the daemon's lease and shutdown timings."""
    timezone = r.text("timezone", DEFAULT_TIMEZONE) or ""
    try:
        parse_timezone(timezone)
    except ValueError as exc:
        r.fail("timezone", str(exc))
    if "cycle" in r.table and "every" in r.table:
        r.fail("every", "give either cycle (a cron expression) or every (an interval), not both")
    cycle = JobSchedule(DEFAULT_CYCLE_CRON, None, timezone)
    if "every" in r.table:
        raw = r.get("every", (str, int, float))
        try:
            seconds = parse_duration(raw)
        except ValueError as exc:
            r.fail("every", str(exc))
        if not 1 <= seconds <= MAX_EVERY_SECONDS:
            r.fail("every", f"must be between 1 second and 366 days, not {raw!r}")
        cycle = JobSchedule(None, seconds, timezone)
    else:
        cycle = JobSchedule(_cron(r, "cycle", DEFAULT_CYCLE_CRON, timezone), None, timezone)
    digest = JobSchedule(_cron(r, "digest", DEFAULT_DIGEST_CRON, timezone), None, timezone)
    grace = _seconds(r, "misfire_grace_seconds", 6 * 3600.0, 1, 7 * 86400)
    lease = _seconds(r, "lease_seconds", 120.0, 1, 86400)
    stop = _seconds(r, "stop_seconds", 3.0, 0, 600)
    r.done()
    return ScheduleConfig(cycle=cycle, digest=digest, timezone=timezone, misfire_grace_seconds=grace,
                          lease_seconds=lease, stop_seconds=stop)


def _cron(r: TableReader, name: str, default: str, timezone: str) -> str:
    expr = " ".join((r.text(name, default) or "").split())
    try:
        cron_trigger(expr, timezone)
    except ValueError as exc:
        r.fail(name, str(exc))
    return expr


def _seconds(r: TableReader, name: str, default: float, minimum: float, maximum: float) -> float:
    """A number of seconds, or a duration string like "90s", "5m", "6h"."""
    raw = r.get(name, (str, int, float), default)
    value = raw
    if isinstance(raw, str):
        try:
            value = parse_duration(raw)
        except ValueError as exc:
            r.fail(name, str(exc))
    if not minimum <= value <= maximum:
        r.fail(name, f"must be between {minimum:g} and {maximum:g} seconds, not {raw!r}")
    return float(value)


def _address(r: TableReader, key: str, value: str) -> str:
    """One mailbox, ``user@example.org`` or ``Name <user@example.org>``; nothing that could break a header."""
    from email.utils import parseaddr

    text = value.strip()
    if any(c in text for c in "\r\n\x00,;"):
        r.fail(key, f"must be one address (no line breaks, commas or semicolons): {value!r}")
    _, addr = parseaddr(text)
    if not addr or not EMAIL_RE.match(addr):
        r.fail(key, f"not an email address: {value!r}")
    return text


def absolute_sqlite_url(url: str, base: Path) -> str:
    """A relative ``sqlite:///x`` path is taken relative to the config file's folder, not the cwd."""
    prefix = "sqlite:///"
    if url.startswith(prefix):
        rest = url[len(prefix):]
        if rest and rest != ":memory:" and not rest.startswith("/"):
            return prefix + str(base / rest)
    return url


def _blocks(r: TableReader) -> dict[str, str]:
    """``[blocks]``: named pieces of PubMed syntax that terms include as ``{name}`` (issue 18)."""
    raw: dict[str, str] = {}
    for name in list(r.table):
        raw[name] = r.text(name, required=True) or ""
    r.done()
    try:
        return resolve_blocks(raw)
    except TermError as exc:
        r.fail(exc.block, str(exc))


def _fallbacks(r: TableReader, blocks: dict[str, str]) -> tuple[Fallback, ...]:
    """``[fallbacks]`` (or a query's ``fallbacks``): phrase -> the PubMed syntax to search instead when NCBI
    reports that phrase as not found. Values may use ``{block}`` references."""
    out: list[Fallback] = []
    for phrase in list(r.table):
        key = f'"{phrase}"' if not re.match(r"^[A-Za-z0-9_-]+$", phrase) else phrase
        value = r.table.pop(phrase)
        if not isinstance(value, str) or not value.strip():
            r.fail(key, "must be a non-empty string (the PubMed syntax to search instead of the phrase)")
        if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
            r.fail(key, "contains a control character (a NUL or escape): remove it")
        if not phrase.strip() or phrase != phrase.strip() or '"' in phrase:
            r.fail(key, "the key is the phrase as written in the term, without quotes or field tag")
        try:
            replacement = expand(value, blocks)
        except TermError as exc:
            r.fail(key, str(exc))
        out.append(Fallback(phrase=phrase, replacement=replacement, where=r.key(key)))
    r.done()
    return tuple(out)


def _query(r: TableReader, default_since: dt.date | None, blocks: dict[str, str] | None = None,
           shared_fallbacks: tuple[Fallback, ...] = ()) -> Query:
    blocks = blocks or {}
    name = r.text("name", required=True) or ""
    if not NAME_RE.match(name):
        r.fail("name", f"must be a slug of lowercase letters, digits and hyphens, not {name!r}")
    term = r.text("term", required=True) or ""
    since = r.get("since", dt.date, default_since)
    if since is None:
        r.fail("since", "is required (or set a top-level since = YYYY-MM-DD)")
    description = r.text("description", "") or ""
    own = _fallbacks(r.child("fallbacks", r.get("fallbacks", dict, {})), blocks)
    r.done()
    try:
        expanded = expand(term, blocks)
    except TermError as exc:
        r.fail("term", str(exc))
    mine = {f.phrase.lower() for f in own}
    fallbacks = own + tuple(f for f in shared_fallbacks if f.phrase.lower() not in mine)
    return Query(name=name, term=expanded, since=since, description=description.strip(),
                 written=" ".join(term.split()), blocks=references(term), fallbacks=fallbacks)


def term_problem(term: str) -> str | None:
    """Cheap local checks that catch typos before NCBI silently reinterprets the query."""
    return balance_problem(term)
