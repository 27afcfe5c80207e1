"""Startup benchmark: wall time of the installed `monitor` command for `monitor --help` and for a typical
`monitor search` on a collection of 20,000 papers (issue 13: ≤ 0.25 s and ≤ 0.4 s).

Builds the collection with bench/search.py's bulk loader (real records replicated under fresh PMIDs, the
index built as migration 0005 builds it) in a temporary folder, then runs each command ``--runs`` times as
a fresh process (what a user waits for: interpreter start-up, imports, opening the database, the query,
printing) and reports the median and the slowest. Also lists, for `--help`, which heavy libraries got
imported (none should be).

    .venv/bin/python bench/startup.py [--papers 20000] [--runs 11] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _results import write_section  # noqa: E402
from search import bulk_load_sqlite, corpus, prepared_rows  # noqa: E402

from monitor.storage import Storage  # noqa: E402

MONITOR = str(Path(sys.executable).with_name("monitor"))
TARGETS = {"monitor --help": 0.25, "monitor search probiotic": 0.4}


def timed(args: list[str], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        result = subprocess.run(args, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - began)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed: {result.stderr}")
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--papers", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--results", type=Path, help="write the figures into this RESULTS.md section")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "monitor.sqlite3"
        with Storage.open(f"sqlite:///{db}") as store:
            pass  # the schema
        bulk_load_sqlite(db, args.papers, prepared_rows(corpus()))
        with Storage.open(f"sqlite:///{db}") as store:
            store.rebuild_search_index()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "NCBI_"))}
        env.update({"MONITOR_CONFIG": str(ROOT / "queries.toml"), "MONITOR_DB_URL": f"sqlite:///{db}",
                    "COLUMNS": "120"})
        commands = {"monitor --help": [MONITOR, "--help"],
                    "monitor search probiotic": [MONITOR, "search", "probiotic", "--condition", "psoriasis"]}
        lines = [f"collection: {args.papers} papers; {args.runs} runs of each command as a fresh process", ""]
        for name, argv in commands.items():
            times = timed(argv, env, args.runs)
            median, worst = statistics.median(times), max(times)
            verdict = "met" if median <= TARGETS[name] else "NOT met"
            lines.append(f"{name:<28} median {median:.3f} s  slowest {worst:.3f} s  "
                         f"(target <= {TARGETS[name]} s: {verdict})")
        probe = ("import sys\nfrom monitor.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
                 "heavy = ('sqlalchemy', 'httpx', 'rich', 'lxml', 'jinja2', 'alembic', 'apscheduler', 'orjson')\n"
                 "print(','.join(m for m in heavy if m in sys.modules) or 'none')")
        loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.split()[-1]
        lines.append(f"heavy libraries imported by --help: {loaded}")
    text = "\n".join(lines)
    print(text)
    if args.results:
        command = f".venv/bin/python bench/startup.py --papers {args.papers} --runs {args.runs}"
        heading = "## Startup (bench/startup.py)"
        write_section(args.results, heading, f"{heading}\n\n```\n$ {command}\n{text}\n```\n")


if __name__ == "__main__":
    main()
