"""What every storage aggregate shares: the engine (SQLite settings, migrations on open), transactions, the
translation of every database failure into :class:`~monitor.errors.StorageError`, chunked ``IN (…)`` lookups
and dialect-aware upserts. No aggregate's SQL lives here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from ..errors import StorageError

T = TypeVar("T")

IN_CHUNK = 500  # ids per IN (...) clause: below SQLite's variable limit on old builds
OPEN_RETRY_SECONDS = 30.0
BUSY_TIMEOUT_SECONDS = 30.0


def chunks(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``values`` in slices of at most ``size``: one ``IN (…)`` clause each."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


class StorageBase:
    """The engine and the transaction helpers the aggregates build on."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._fts = engine.dialect.name == "sqlite"  # SQLite: the FTS5 index (migration 0005)
        self._watch: Connection | None = None  # a connection of its own for data_version (see browse.py)
        self._watch_lock = threading.Lock()

    @property
    def _search_backend(self) -> str | None:
        """The full-text index papers are kept in: ``fts5`` (SQLite, migration 0005), ``tsvector``
        (PostgreSQL, migration 0008) or None (another database: no index)."""
        return "fts5" if self._fts else "tsvector" if self._postgres else None

    @property
    def shared(self) -> bool:
        """Whether the database is shared by several hosts by nature (PostgreSQL), so published documents are
        kept in it for every host; a SQLite file's host serves its own folder."""
        return self._postgres

    @property
    def url(self) -> str:
        """The database URL with any password hidden (for `monitor status` and messages)."""
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        with self._watch_lock:
            if self._watch is not None:
                with contextlib.suppress(SQLAlchemyError):
                    self._watch.close()
                self._watch = None
        self.engine.dispose()

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise StorageError(f"database error while {doing}: {reason(exc)}") from exc

    @contextlib.contextmanager
    def _tx(self, doing: str, immediate: bool = False) -> Iterator[Connection]:
        """One transaction. ``immediate``: for a transaction that reads before it writes, take SQLite's write
        lock at BEGIN. A deferred one that read first fails at once with "database is locked" if another
        process (a second daemon renewing or trying its lease) committed in between; an immediate one waits
        its turn under the busy timeout instead."""
        if not immediate:
            with self._errors(doing), self.engine.begin() as conn:
                yield conn
            return
        with self._errors(doing), self.engine.connect() as conn:
            conn.execution_options(sqlite_begin_immediate=True)
            with conn.begin():
                yield conn

    def _upsert(self, table: sa.Table) -> Any:
        """``INSERT … ON CONFLICT`` for this dialect (the statement objects of SQLite and PostgreSQL take
        the same ``on_conflict_do_update`` arguments)."""
        if self._postgres:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)


def make_engine(url: str, *, busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> Engine:
    """An engine for ``url``: SQLite in WAL mode with a busy timeout, foreign keys on, and transactions that
    can begin IMMEDIATE; PostgreSQL with the same timeout as its ``lock_timeout`` (a statement waiting for
    another process's lock gives up instead of hanging) and a plan for each execution's own parameters
    (``plan_cache_mode``: psycopg prepares a statement run five times, and a generic plan of a search cannot
    know how many papers its words match); anything else with pre-ping (a server may drop idle
    connections)."""
    if url.startswith("sqlite:///") and not url.endswith(":memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    engine = _make_engine(url, busy_timeout)
    event.listen(engine, "before_cursor_execute", _without_nul, retval=True)
    return engine


def _make_engine(url: str, busy_timeout: float) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": busy_timeout})
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout))
        # pysqlite's own transaction handling defers BEGIN; take control so BEGIN IMMEDIATE is possible.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        _require_driver(parsed)
        options = " ".join(filter(None, [str(parsed.query.get("options", "")),
                                         f"-c lock_timeout={int(busy_timeout * 1000)}",
                                         "-c plan_cache_mode=force_custom_plan"]))
        return sa.create_engine(parsed.difference_update_query(["options"]), pool_pre_ping=True,
                                connect_args={"options": options})
    return sa.create_engine(url, pool_pre_ping=True)


def _clean(value: Any) -> Any:
    return value.replace("\x00", "") if isinstance(value, str) and "\x00" in value else value


def _without_nul(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                 executemany: bool) -> tuple[str, Any]:
    """Every text parameter without NUL characters, on every backend: PostgreSQL's text cannot hold them
    (one would fail the whole transaction) and SQLite must store the same. Paper records are cleaned before
    this (``papers.encoded``, so their JSON and hash agree); this catches the rest (run and job messages)."""
    def scrub(params: Any) -> Any:
        if isinstance(params, dict):
            if any(isinstance(v, str) and "\x00" in v for v in params.values()):
                return {k: _clean(v) for k, v in params.items()}
            return params
        if isinstance(params, (tuple, list)) and any(isinstance(v, str) and "\x00" in v for v in params):
            return type(params)(_clean(v) for v in params)
        return params

    if executemany and isinstance(parameters, (list, tuple)):
        return statement, type(parameters)(scrub(p) for p in parameters)
    return statement, scrub(parameters)


def _require_driver(url: sa.engine.URL) -> None:
    """A PostgreSQL URL needs its driver (psycopg 3 for ``postgresql+psycopg://``): say what to install
    instead of failing on an import."""
    module = url.get_driver_name()
    try:
        __import__(module)
    except ImportError:
        fix = ("pip install 'gut-skin-monitor[postgres]' (psycopg 3)" if module == "psycopg" else
               f"pip install 'gut-skin-monitor[postgres]' and write the URL as postgresql+psycopg://…, or install "
               f"{module}")
        raise StorageError(f"database URL {url.render_as_string(hide_password=True)} needs the Python driver "
                           f"{module}, which is not installed: {fix}") from None


def migrate(engine: Engine) -> None:
    """Bring the schema up to date. Processes that open one new SQLite file at the same moment (two daemons
    started together) can meet SQLite's lock-upgrade conflicts, which fail at once instead of waiting on
    the busy timeout: such an attempt is retried, with growing pauses, for up to half a minute."""
    from .. import migrations

    if _current_revision(engine) == migrations.head_revision():
        return  # up to date: no need to load alembic at all
    deadline = time.monotonic() + OPEN_RETRY_SECONDS
    pause = 0.05
    while True:
        try:
            migrations.upgrade(engine)
            return
        except sa.exc.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def _current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None (new, or not ours) — one cheap read."""
    try:
        with engine.connect() as conn:
            value = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    except sa.exc.DBAPIError:
        return None
    return str(value) if value is not None else None


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("sqlite_begin_immediate")
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_pragmas(busy_timeout: float) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let the "begin" listener issue BEGIN
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    return on_connect


def utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands datetimes back naive; everything we store is UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utc_or_none(value: dt.datetime | None) -> dt.datetime | None:
    return utc(value) if value is not None else None


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)


def reason(exc: BaseException) -> str:
    """The first line of a database error, in words a user can act on."""
    orig = getattr(exc, "orig", None)
    text = str(orig or exc).splitlines()[0]
    if "database is locked" in text or "canceling statement due to lock timeout" in text:
        return "database is locked (another monitor process is writing; try again shortly)"
    if "unaccent" in text and ("control file" in text or "extension" in text):
        return (f"{text} (full-text search needs PostgreSQL's unaccent extension: install the contrib modules, "
                "Debian: apt-get install postgresql-contrib)")
    return text


def safe_url(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable URL)"
