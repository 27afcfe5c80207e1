"""Shared by the bench scripts: the databases a benchmark runs on, from ``--db-url`` options.

Each ``--db-url`` names a backend to measure, in the order given, so one run prints PostgreSQL next to
SQLite:

- ``sqlite`` (the default): a fresh SQLite file in the benchmark's work folder;
- ``postgres``: a throwaway PostgreSQL cluster started for the run from the Debian binaries
  (``tests/pgcluster.py``; fsync on, ``synchronous_commit=off`` like SQLite's WAL with
  ``synchronous=NORMAL``; ``shared_buffers`` from ``--pg-shared-buffers``), stopped and deleted at the end;
- ``postgresql+psycopg://user@host/db``: a PostgreSQL server you run; the benchmark creates a fresh
  database on it (the user needs CREATEDB) and drops it at the end. The database named in the URL is only
  used to connect.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@dataclass(frozen=True, slots=True)
class Backend:
    """One database a benchmark runs on: ``name`` for the tables (SQLite, PostgreSQL) and its URL."""

    name: str
    url: str


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--db-url", action="append", metavar="URL",
                    help="a database to measure: sqlite (default), postgres (a throwaway cluster), or a "
                         "postgresql+psycopg:// server URL (a fresh database is created there); repeat to "
                         "measure several in one run")
    ap.add_argument("--pg-shared-buffers", default="1GB", help="shared_buffers of the throwaway cluster")


@contextlib.contextmanager
def backends(args: argparse.Namespace, workdir: Path, label: str, *,
             keep: Path | None = None) -> Iterator[list[Backend]]:
    """The backends of ``args.db_url``, each a fresh, empty database; cleaned up on exit. ``keep``: a
    throwaway cluster lives in ``keep/pg-N`` and is stopped, not deleted, at the end, with its database
    ``monitor_bench_LABEL``; a later run with the same ``keep`` starts it again and finds that database as
    it was left (the benchmark then decides whether to rebuild it)."""
    import sqlalchemy as sa

    from tests import pgcluster

    found: list[Backend] = []
    created: list[tuple[str, str]] = []  # (server URL, database)
    clusters: list[pgcluster.Cluster] = []
    try:
        for n, spec in enumerate(args.db_url or ["sqlite"]):
            if spec == "sqlite":
                found.append(Backend("SQLite", f"sqlite:///{workdir / f'{label}-{n}.sqlite3'}"))
                continue
            if spec == "postgres":
                # Its own folder under the system temp dir: as root the server runs as `postgres`, which must
                # be able to reach it (a private work folder would not do).
                folder = keep / f"pg-{n}" if keep else Path(tempfile.mkdtemp(prefix="monitor-bench-pg-"))
                folder.mkdir(parents=True, exist_ok=True)
                folder.chmod(0o755)
                clusters.append(pgcluster.start(folder, shared_buffers=args.pg_shared_buffers, durable=True))
                spec = clusters[-1].url
                if keep:
                    found.append(Backend("PostgreSQL", _kept_database(spec, f"monitor_bench_{label}")))
                    continue
            if not spec.startswith("postgresql"):
                raise SystemExit(f"--db-url {spec!r}: expected sqlite, postgres or a postgresql+psycopg:// URL")
            name = f"monitor_bench_{label}_{os.getpid()}_{n}"
            admin = sa.create_engine(spec, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
            admin.dispose()
            created.append((spec, name))
            found.append(Backend("PostgreSQL", sa.engine.make_url(spec).set(database=name)
                                 .render_as_string(hide_password=False)))
        yield found
    finally:
        for server, name in created:
            admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.dispose()
        for cluster in clusters:
            cluster.stop(delete=keep is None)


def _kept_database(server: str, name: str) -> str:
    """The URL of database ``name`` on ``server``, created if it does not exist yet."""
    import sqlalchemy as sa

    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).scalar():
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)


def server_version(url: str) -> str:
    """``SQLite 3.x`` or ``PostgreSQL 15.x`` for the machine line of a report."""
    import sqlalchemy as sa

    if url.startswith("sqlite"):
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SHOW server_version").scalar()
    engine.dispose()
    return f"PostgreSQL {version}"
