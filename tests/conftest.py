"""Shared fixtures: paths to the real recordings, the installed `monitor` command, config writers,
:func:`require_program` for tests that need a system program (newsboat, pandoc, chromium), and the one
switch between database backends, :func:`db_url`.

**Backends.** Every test that needs a database gets its URL from :func:`db_url` (or the ``store`` fixture).
By default that is a SQLite file in the test's tmp dir. With ``MONITOR_TEST_DB_URL`` set to a PostgreSQL
server URL (``postgresql+psycopg://user@host:port/postgres``; ``.ci/run``'s second pass starts a throwaway
cluster, ``tests/pgcluster.py``), each such URL is instead a fresh PostgreSQL database of its own, created
on first use and dropped when the test ends, so tests stay hermetic on a shared server.
Markers: ``sqlite_only`` (the test is about SQLite itself: files, WAL, its locking) is skipped on the
PostgreSQL pass; ``postgres`` (needs a PostgreSQL server: parity, advisory locks) is skipped without one.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from monitor.storage import Storage

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SHIPPED_CONFIG = ROOT / "queries.toml"


TEST_DB_ENV = "MONITOR_TEST_DB_URL"  # a PostgreSQL server: run the suite against it (the PostgreSQL pass)
REQUIRE_TOOLS_ENV = "MONITOR_REQUIRE_TOOLS"  # "1": a missing program fails the test (CI) instead of skipping
HIDE_TOOLS_ENV = "MONITOR_HIDE_TOOLS"  # comma-separated programs to treat as absent (to try the skips)


def require_program(name: str) -> str:
    """The path of system program ``name``, for a test that needs it (newsboat, pandoc, chromium).

    When it is not installed the test is skipped with the reason (``pytest -ra`` lists it), so the README's
    test command passes on a fresh machine; with ``MONITOR_REQUIRE_TOOLS=1`` (``.ci/run`` sets it) a
    missing program fails the test instead, so CI never skips these tests silently.
    ``MONITOR_HIDE_TOOLS=newsboat,pandoc`` makes the named programs look absent."""
    hidden = {p.strip() for p in os.environ.get(HIDE_TOOLS_ENV, "").split(",") if p.strip()}
    found = None if name in hidden else shutil.which(name)
    if found:
        return found
    # Each program's Debian package has its name; .ci/run installs them.
    reason = f"{name} is not installed (Debian: apt-get install {name}; .ci/run installs it)"
    if os.environ.get(REQUIRE_TOOLS_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_TOOLS_ENV}=1 says every system program must be present")
    pytest.skip(reason)


def start_serve(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 30) -> tuple[subprocess.Popen[str], str]:
    """`monitor serve ARGS` in a subprocess (the installed command), and the URL it printed on start-up
    (fails the test with its stderr if it printed none within ``timeout`` seconds)."""
    proc = subprocess.Popen([monitor_executable(), "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=cwd)
    url = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and url is None:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            break
        m = re.search(r"on (http://127\.0\.0\.1:\d+/)", line)
        url = m.group(1) if m else None
    if url is None:
        detail = proc.stderr.read() if proc.stderr and proc.poll() is not None else "no URL printed"
        proc.kill()
        proc.wait()
        pytest.fail(f"monitor serve {' '.join(args)} did not start: {detail}")
    return proc, url


def monitor_executable() -> str:
    """The installed console script (next to this interpreter), as users run it."""
    beside = Path(sys.executable).with_name("monitor")
    found = str(beside) if beside.exists() else shutil.which("monitor")
    if not found:
        pytest.fail("the `monitor` command is not installed: run `pip install -e '.[test]'` first")
    return found


@pytest.fixture
def run_monitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `monitor` in this process (tests/harness.py) with a clean environment (no real NCBI, no user
    config), from ``tmp_path``; the same signature and result as :func:`run_installed`."""
    from tests.harness import invoke

    monkeypatch.chdir(tmp_path)

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return invoke(args, env)

    return run


@pytest.fixture
def run_installed(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed `monitor` command in a subprocess with a clean environment (no real NCBI, no user
    config): the smoke tests' way, as users run it."""
    exe = monitor_executable()

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("MONITOR_", "NCBI_"))}
        base.update(env or {})
        return subprocess.run([exe, *args], capture_output=True, text=True, env=base, cwd=tmp_path,
                              timeout=timeout)

    return run


# ------------------------------------------------------------------ database backends


def postgres_server() -> str | None:
    """The PostgreSQL server URL of the PostgreSQL pass (``MONITOR_TEST_DB_URL``), else None."""
    return os.environ.get(TEST_DB_ENV) or None


def on_postgres() -> bool:
    return postgres_server() is not None


class _Databases:
    """The PostgreSQL databases tests created (by the path of the SQLite file each stands for), and an
    AUTOCOMMIT engine on the server to create and drop them."""

    def __init__(self) -> None:
        self.urls: dict[str, str] = {}
        self._admin: Any = None

    def admin(self, server: str) -> Any:
        if self._admin is None:
            import sqlalchemy as sa

            self._admin = sa.create_engine(server, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        return self._admin

    def create(self, server: str, key: str) -> str:
        import sqlalchemy as sa

        name = "monitor_test_" + hashlib.sha1(f"{os.getpid()}:{key}".encode()).hexdigest()[:16]
        with self.admin(server).connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        url = sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)
        self.urls[key] = url
        return url

    def drop(self, under: Path | None = None) -> None:
        """Drop the databases created so far (``under``: only those standing for a path below it)."""
        import sqlalchemy as sa

        keys = [k for k in self.urls if under is None or Path(k).is_relative_to(Path(under).resolve())]
        if not keys:
            return
        server = postgres_server()
        assert server is not None
        with self.admin(server).connect() as conn:
            for key in keys:
                name = sa.engine.make_url(self.urls.pop(key)).database
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


_DATABASES = _Databases()


def db_url(path: Path | str) -> str:
    """The database URL a test uses where it would use the SQLite file ``path``: ``sqlite:///PATH``, or on
    the PostgreSQL pass a fresh database of its own (the same one for the same path within a test)."""
    server = postgres_server()
    if server is None:
        return f"sqlite:///{path}"
    key = str(Path(path).resolve())
    return _DATABASES.urls.get(key) or _DATABASES.create(server, key)


def copy_database(source: Path, target: Path) -> None:
    """Make the database of ``target`` a copy of the one of ``source`` (both as :func:`db_url` paths): the
    file copied, or on PostgreSQL a database created from the other as its template (whose connections are
    ended first: a template must be idle)."""
    if not on_postgres():
        Path(target).write_bytes(Path(source).read_bytes())
        return
    import sqlalchemy as sa

    server = postgres_server()
    assert server is not None
    src, dst = sa.engine.make_url(db_url(source)).database, sa.engine.make_url(db_url(target)).database
    with _DATABASES.admin(server).connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {dst} WITH (FORCE)")
        conn.exec_driver_sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (src,))
        conn.exec_driver_sql(f"CREATE DATABASE {dst} TEMPLATE {src}")


def database_untouched(path: Path) -> bool:
    """Whether the database :func:`db_url` gives for ``path`` was never opened by the monitor: no SQLite
    file, or a PostgreSQL database without tables."""
    if not on_postgres():
        return not Path(path).exists()
    import sqlalchemy as sa

    engine = sa.create_engine(db_url(path), poolclass=sa.pool.NullPool)
    try:
        return not sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def drop_databases(under: Path | None = None) -> None:
    """Drop the PostgreSQL databases created so far (their connections are ended first); ``under``: only
    those standing for a path below that folder."""
    _DATABASES.drop(under)


@pytest.fixture(autouse=True)
def _drop_test_databases(request: pytest.FixtureRequest) -> Iterator[None]:
    """When a test ends, drop the PostgreSQL databases of paths in its own tmp dir; databases of a module's
    or session's fixtures (paths from tmp_path_factory) live until the session ends."""
    # Asked for now, so that tmp_path is torn down after this fixture, not before.
    own = request.getfixturevalue("tmp_path") if on_postgres() and "tmp_path" in request.fixturenames else None
    yield
    if own is not None:
        drop_databases(own)


@pytest.fixture(autouse=True, scope="session")
def _drop_session_databases() -> Iterator[None]:
    yield
    if on_postgres():
        drop_databases()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only(reason): about SQLite itself; skipped on the PostgreSQL pass")
    config.addinivalue_line("markers", "postgres: needs a PostgreSQL server (MONITOR_TEST_DB_URL); skipped without")


def pytest_runtest_setup(item: pytest.Item) -> None:
    only = item.get_closest_marker("sqlite_only")
    if only is not None and on_postgres():
        why = only.args[0] if only.args else "it is about SQLite itself"
        pytest.skip(f"SQLite only: {why}")
    if item.get_closest_marker("postgres") is not None and not on_postgres():
        pytest.skip(f"needs a PostgreSQL server: set {TEST_DB_ENV} (the PostgreSQL pass of .ci/run does)")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Storage]:
    """A real store (SQLite in a tmp dir, or a fresh PostgreSQL database on that pass), the schema
    migrated as every open does."""
    from monitor.storage import Storage

    s = Storage.open(db_url(tmp_path / "db" / "monitor.sqlite3"))
    yield s
    s.close()
