"""Alembic migrations for the monitor's schema, run in-process by :func:`monitor.storage.base.migrate`.

They live inside the package so an installed ``monitor`` can upgrade any database it opens. To add one:
write ``versions/NNNN_what.py`` with ``revision``/``down_revision`` and ``upgrade()``, change the tables in
:mod:`monitor.storage.schema` to match, and run ``pytest tests/test_storage_schema.py`` (it checks the two agree).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

HERE = Path(__file__).resolve().parent


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    cfg = alembic_config()
    with engine.connect() as conn:
        # Two processes opening a new database at once (two daemons) must migrate one after the other: on
        # SQLite, take the write lock at BEGIN (see monitor.storage.base._sqlite_begin) so the second waits.
        conn.execution_options(sqlite_begin_immediate=True)
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
