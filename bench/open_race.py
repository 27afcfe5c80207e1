"""Open race: several processes opening (and so migrating) a fresh database at the same instant.

For each backend of ``--db-url`` (default SQLite; ``--db-url sqlite --db-url postgres`` measures both in one
run, see bench/_backends.py) and each of ``--trials`` trials: a fresh, empty database; ``--processes``
separate Python processes (started ahead, each waiting for a common instant) call ``Storage.open`` on it
and count its papers. A trial fails if any process fails; the schema must end at the head revision once.

    .venv/bin/python bench/open_race.py [--trials 20] [--processes 3] [--db-url sqlite --db-url postgres]

Target (issue 16): 20 trials × 3 processes on a fresh database, 0 failures. Before the advisory lock,
PostgreSQL failed 9 of 10 trials with 3 processes (``duplicate key value violates unique constraint
"pg_type_typname_nsp_index"`` on ``CREATE TABLE alembic_version``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _backends import Backend, add_arguments, backends, server_version  # noqa: E402

CHILD = """
import sys, time
from monitor.storage import Storage
url, start = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
try:
    with Storage.open(url) as s:
        s.count_papers()
    print("ok")
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}")
"""


def fresh_url(backend: Backend, workdir: Path, trial: int) -> str:
    """A new, empty database for one trial (a new file, or a new database on the same server)."""
    import sqlalchemy as sa

    if backend.url.startswith("sqlite"):
        return f"sqlite:///{workdir / f'race-{trial}.sqlite3'}"
    url = sa.engine.make_url(backend.url)
    name = f"{url.database}_t{trial}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def drop(url: str, backend: Backend) -> None:
    import sqlalchemy as sa

    if url.startswith("sqlite"):
        return
    admin = sa.create_engine(backend.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {sa.engine.make_url(url).database} WITH (FORCE)")
    admin.dispose()


def trial(url: str, processes: int) -> list[str]:
    """One trial: the outcome line of each process."""
    start = time.time() + 2.0  # every process imported and waiting by then
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, url, repr(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) for _ in range(processes)]
    return [(p.communicate(timeout=300)[0].strip().splitlines() or ["no output"])[-1] for p in procs]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--processes", type=int, default=3)
    add_arguments(ap)
    args = ap.parse_args()
    from monitor import migrations
    from monitor.storage import Storage

    failed_any = False
    with tempfile.TemporaryDirectory() as tmp, backends(args, Path(tmp), "race") as found:
        print(f"{dt.date.today()}; {os.cpu_count()} cores, Python {platform.python_version()}, "
              + ", ".join(server_version(b.url) for b in found))
        for backend in found:
            failures: list[str] = []
            began = time.perf_counter()
            for n in range(args.trials):
                url = fresh_url(backend, Path(tmp), n)
                outcomes = trial(url, args.processes)
                failures += [f"trial {n}: {o}" for o in outcomes if o != "ok"]
                with Storage.open(url) as s, s.engine.connect() as conn:
                    head = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
                if head != [migrations.head_revision()]:
                    failures.append(f"trial {n}: schema at {head}, expected [{migrations.head_revision()}]")
                drop(url, backend)
            failed_trials = len({f.split(":")[0] for f in failures})
            failed_any |= bool(failures)
            print(f"{backend.name}: {args.trials} trials x {args.processes} processes opening a fresh database: "
                  f"{failed_trials} trials failed ({time.perf_counter() - began:.0f} s)")
            for line in failures[:5]:
                print(f"  {line}")
    return 1 if failed_any else 0


if __name__ == "__main__":
    sys.exit(main())
