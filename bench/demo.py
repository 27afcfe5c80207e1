"""How long a newcomer waits for `monitor demo`: the installed command in a fresh folder, as users run it.

Run from the repository root::

    .venv/bin/python bench/demo.py [--runs 3] [--results bench/RESULTS.md]

Each run starts ``monitor demo --no-serve`` in a new temporary folder (a first contact: empty database) and
reports its wall time, then once more in the same folder (the second run, which must change nothing), and
once with ``--port 0`` until its page is served (wall time from the start to the first 200 of ``/``). The
relevant papers are counted in the written ``feeds/main.xml``. Target (issue 13): >= 40 relevant papers,
a digest preview and a served page in under 60 s. ``--results`` writes the "Demo" section of that file.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._results import write_section  # noqa: E402 - after the sys.path line

HEADING = "## Demo (bench/demo.py)"
EXE = str(Path(sys.executable).with_name("monitor"))
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "NCBI_"))}


def timed_run(folder: Path) -> tuple[float, int]:
    """Wall seconds of `monitor demo --no-serve --dir folder`, and the items of its main feed."""
    began = time.perf_counter()
    subprocess.run([EXE, "demo", "--no-serve", "--dir", str(folder)], check=True, capture_output=True, env=ENV)
    seconds = time.perf_counter() - began
    return seconds, (folder / "feeds" / "main.xml").read_text(encoding="utf-8").count("<item>")


def served(folder: Path) -> float:
    """Wall seconds from starting `monitor demo --port 0` to the first 200 of its page."""
    began = time.perf_counter()
    proc = subprocess.Popen([EXE, "demo", "--port", "0", "--dir", str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=ENV)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            found = re.search(r"serving .* on (http://\S+/) ", line)
            if found:
                httpx.get(found.group(1), timeout=10).raise_for_status()
                return time.perf_counter() - began
        raise SystemExit("monitor demo never said it was serving")
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--results", type=Path)
    args = ap.parse_args()
    firsts: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        for i in range(args.runs):
            seconds, relevant = timed_run(Path(tmp) / f"run{i}")
            firsts.append(seconds)
        again, again_relevant = timed_run(Path(tmp) / "run0")
        serve = served(Path(tmp) / "serve")
    lines = [
        f"first run (fresh folder), {args.runs} runs: median {statistics.median(firsts):.1f} s, "
        f"max {max(firsts):.1f} s; {relevant} relevant papers in feeds/main.xml",
        f"second run (same folder): {again:.1f} s; {again_relevant} relevant papers (unchanged)",
        f"--port 0: page served {serve:.1f} s after the command started",
        f"target: >= 40 relevant papers and a served page in < 60 s: "
        f"{'met' if relevant >= 40 and max(firsts) < 60 and serve < 60 else 'NOT met'}",
    ]
    print("\n".join(lines))
    if args.results:
        body = "\n".join([
            HEADING, "",
            f"Date: {time.strftime('%Y-%m-%d')}; machine: {os.cpu_count()} cores (shared), Python "
            f"{platform.python_version()}. Command: `.venv/bin/python bench/demo.py --runs {args.runs} "
            "--results bench/RESULTS.md` (the installed `monitor demo`, wall time including interpreter start).",
            "", "```", *lines, "```", ""])
        write_section(args.results, HEADING, body)
    return 0 if relevant >= 40 and max(firsts) < 60 and serve < 60 else 1


if __name__ == "__main__":
    sys.exit(main())
