"""A throwaway PostgreSQL cluster for tests and benchmarks, from the Debian binaries (``postgresql`` package,
``/usr/lib/postgresql/<version>/bin``): ``initdb`` into a folder, ``pg_ctl start`` on a free loopback port
with its socket in the same folder, trust authentication on loopback only, durability switched off (a
test cluster is thrown away, never recovered). Never a system service.

``initdb`` refuses to run as root: as root the cluster is created and run as the ``postgres`` user
(``runuser``), which owns the folder.

    python -m tests.pgcluster start DIR   # prints the server URL (postgresql+psycopg://…/postgres)
    python -m tests.pgcluster stop DIR    # stops it and deletes DIR

``.ci/run`` starts one for the suite's PostgreSQL pass; ``bench/`` scripts start one with ``--postgres``.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SERVICE_USER = "postgres"
URL_FILE = "url.txt"


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL server binaries (Debian layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Cluster:
    """A running throwaway cluster: its folder and the URL of its ``postgres`` database (superuser)."""

    folder: Path
    url: str

    def stop(self, *, delete: bool = True) -> None:
        stop(self.folder, delete=delete)


def _as_owner(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", SERVICE_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def start(folder: Path, *, shared_buffers: str = "128MB", durable: bool = False, extra: tuple[str, ...] = ()) -> Cluster:
    """initdb into ``folder/data`` and start the server; returns when it accepts connections.

    ``durable`` False (tests): no fsync at all. True (benchmarks): fsync and full-page writes on, as a real
    server runs, with ``synchronous_commit=off`` — what SQLite's WAL mode with ``synchronous=NORMAL`` does
    too (a power cut may lose the last commits, never corrupts)."""
    binaries = bin_dir()
    if binaries is None:
        raise RuntimeError("PostgreSQL server binaries not found (Debian: apt-get install postgresql "
                           "postgresql-contrib)")
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, SERVICE_USER, SERVICE_USER)
        folder.chmod(0o755)
    data = folder / "data"
    if not (data / "PG_VERSION").exists():  # else: a cluster kept by an earlier run, started again
        _run(_as_owner([str(binaries / "initdb"), "-D", str(data), "--auth=trust", "--username=postgres",
                        "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]))
    port = free_port()
    options = ["-c", "listen_addresses=127.0.0.1", "-c", f"port={port}", "-c", f"unix_socket_directories={folder}",
               "-c", "synchronous_commit=off", "-c", "max_connections=300", "-c", f"shared_buffers={shared_buffers}",
               *(() if durable else ("-c", "fsync=off", "-c", "full_page_writes=off")), *extra]
    _run(_as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"),
                    "-w", "-t", "60", "-o", " ".join(options), "start"]))
    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    (folder / URL_FILE).write_text(url + "\n")
    _wait_ready(url)
    return Cluster(folder, url)


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
    if done.returncode != 0:
        raise RuntimeError(f"{Path(cmd[cmd.index('--') + 1] if '--' in cmd else cmd[0]).name} failed: "
                           f"{(done.stderr or done.stdout).strip()}")


def _wait_ready(url: str, seconds: float = 30.0) -> None:
    import sqlalchemy as sa

    deadline = time.monotonic() + seconds
    engine = sa.create_engine(url)
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
                return
            except sa.exc.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        engine.dispose()


def stop(folder: Path, *, delete: bool = True) -> None:
    """Stop the cluster in ``folder`` (if running) and delete the folder (``delete`` False: keep it, shut
    down cleanly, for :func:`start` to start again)."""
    binaries = bin_dir()
    data = folder / "data"
    if binaries is not None and (data / "postmaster.pid").exists():
        mode = "immediate" if delete else "fast"
        subprocess.run(_as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop"]),
                       capture_output=True, cwd="/")
    if delete:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="A throwaway PostgreSQL cluster (tests and benchmarks).")
    ap.add_argument("action", choices=("start", "stop"))
    ap.add_argument("folder", type=Path)
    ap.add_argument("--shared-buffers", default="128MB")
    args = ap.parse_args(argv)
    if args.action == "start":
        print(start(args.folder, shared_buffers=args.shared_buffers).url)
    else:
        stop(args.folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
