"""Alembic migrations for the monitor's schema, run in-process by :func:`monitor.storage.base.migrate`.

They live inside the package so an installed ``monitor`` can upgrade any database it opens. To add one:
write ``versions/NNNN_what.py`` with ``revision``/``down_revision`` and ``upgrade()``, change the tables in
:mod:`monitor.storage.schema` to match, and run ``pytest tests/test_storage_schema.py`` (it checks the two agree).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # alembic is imported only when a schema may change: opening an up-to-date database is fast
    from alembic.config import Config
    from sqlalchemy.engine import Engine

HERE = Path(__file__).resolve().parent


def head_revision() -> str:
    """The newest migration's revision, from the file names (``versions/NNNN_what.py`` with revision
    ``NNNN``, one line of history): known without importing alembic. tests/test_storage_schema.py checks it
    against alembic's own head."""
    return max(p.name[:4] for p in (HERE / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


# The key of the PostgreSQL advisory lock migrations run under ("monitor" in ASCII). Advisory locks are per
# database, so databases on one server do not wait for each other.
MIGRATION_LOCK_KEY = 0x6D6F6E69746F72


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    cfg = alembic_config()
    with engine.connect() as conn:
        # Two processes opening a new database at once (two daemons) must migrate one after the other: on
        # SQLite, take the write lock at BEGIN (see monitor.storage.base._sqlite_begin) so the second waits;
        # on PostgreSQL, where nothing else would (its DDL races on the catalogue), take an advisory lock
        # held to the end of the transaction, before Alembic reads or creates anything. The second process
        # then finds the schema up to date. A migration of a big database may take minutes: no lock timeout.
        conn.execution_options(sqlite_begin_immediate=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL lock_timeout = 0")
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
