"""Soak: try to break the monitor from outside, at a size CI cannot afford, and print what broke.

The scenarios are tests/soak.py's (tests/test_soak.py runs them small): kill -9 at random moments of
`monitor run`, `feed`, `retag` and `digest` (``--kills`` each), 30% and 60% injected NCBI faults until a run
completes, hostile answers from "NCBI" (entity tricks, XInclude, a gzip bomb, invalid UTF-8, HTML with a
200, a trickle, a 50 MB text node), and two commands at once. Each prints its figures: kills, corrupt
databases, lost and duplicated papers, duplicate emails, pending digests left, rate-limit violations,
tracebacks, stale and temporary feed files, unexpected exits, peak memory.

    .venv/bin/python bench/soak.py [--kills 25] [--seed 1] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _results import write_section  # noqa: E402

from tests import soak  # noqa: E402


def add_a_synonym(taxonomy: str) -> str:
    return re.sub(r"patterns = \[", "patterns = ['cutaneous', ", taxonomy, count=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=25, help="kill -9s per command (four commands)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--feed-papers", type=int, default=5000, help="relevant papers behind the killed feeds")
    ap.add_argument("--results", type=Path)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    lines, total = [], soak.Tally()
    began = time.monotonic()

    def scenario(name: str, run, smtp: bool = False) -> None:  # type: ignore[no-untyped-def]
        with tempfile.TemporaryDirectory() as tmp:
            servers = soak.smtp_server() if smtp else None
            inbox, port = next(servers) if servers else (None, None)
            standin, world = soak.world(Path(tmp), port)
            try:
                tally = run(world, inbox)
            finally:
                standin.stop()
                if servers:
                    servers.close()
        total.merge(tally)
        lines.append(tally.line(name))
        for note in tally.notes:
            lines.append(f"    {note}")
        print(lines[-1 - len(tally.notes)], flush=True)

    scenario("kill run", lambda w, _: soak.kill_runs(w, args.kills, rng))
    scenario("kill feed", lambda w, _: soak.kill_feeds(w, args.kills, rng, args.feed_papers))
    scenario("kill retag", lambda w, _: soak.kill_retags(w, args.kills, rng, add_a_synonym))
    scenario("kill digest", lambda w, inbox: soak.kill_digests(w, args.kills, rng, inbox.received), smtp=True)
    scenario("kill digest at 250", lambda w, inbox: soak.kill_digests_at_the_worst_moment(w, 20, inbox), smtp=True)
    scenario("faults 30%", lambda w, _: soak.faulty_runs(w, 0.3, args.seed))
    scenario("faults 60%", lambda w, _: soak.faulty_runs(w, 0.6, args.seed))
    scenario("hostile answers", lambda w, _: soak.hostile_answers(w))
    scenario("two at once", lambda w, _: soak.two_at_once(w, 3))
    total.notes.clear()
    lines.append(total.line("total"))
    lines.append(f"failures: {total.failures() or 'none'}; {time.monotonic() - began:.0f} s")
    text = "\n".join(lines)
    print(lines[-2], lines[-1], sep="\n")
    if args.results:
        command = f".venv/bin/python bench/soak.py --kills {args.kills} --seed {args.seed}"
        heading = "## Soak (bench/soak.py)"
        write_section(args.results, heading, f"{heading}\n\n```\n$ {command}\n{text}\n```\n")


if __name__ == "__main__":
    main()
