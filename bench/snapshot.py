"""Everything users read after a fixed stand-in scenario, written to one folder, so two versions of the code
can be compared byte for byte (the renovation of issue 12 must change none of it).

Scenario (the end-to-end tests' world, with a dozen records dressed as labelled gut–skin papers so the feeds
and the digest have content): a first run with the newest records hidden, a second run a day later that
finds them (late arrivals), a third run after one relevant paper is revised with a retraction.
Written: ``export.jsonl`` (`monitor export --format jsonl`), ``feeds/`` (`monitor feed`, every file but
the manifest's timestamps), ``digest.txt`` (the text part of `monitor digest --dry-run --since`, Date and
Message-ID blanked) and ``runs.txt`` (`monitor run` output with the run times blanked).

    .venv/bin/python bench/snapshot.py OUT_DIR        # then: diff -r OUT_A OUT_B
"""

from __future__ import annotations

import argparse
import datetime as dt
import email
import email.policy
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.eutils_standin import StandIn  # noqa: E402
from tests.test_cycle_e2e import TODAY, with_retraction  # noqa: E402
from tests.test_feeds import FeedWorld  # noqa: E402

DIGEST_TABLE = '\n[digest]\nfrom = "monitor@example.org"\nto = ["team@example.org"]\nsmtp_host = "127.0.0.1"\n'


def runner(cwd: Path):  # type: ignore[no-untyped-def]
    exe = str(Path(sys.executable).with_name("monitor"))

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("MONITOR_", "NCBI_"))}
        base.update(env or {})
        return subprocess.run([exe, *args], capture_output=True, text=True, env=base, cwd=cwd, timeout=timeout)

    return run


def checked(result: subprocess.CompletedProcess[str]) -> str:
    if result.returncode != 0:
        raise SystemExit(f"monitor failed ({result.returncode}): {result.stderr}")
    return result.stdout


def scenario(world: FeedWorld, out: Path) -> None:
    late = world.all_ids[-6:]
    world.standin.hide(late)
    logs = [checked(world.monitor("run", key=True))]
    world.standin.publish(late)
    for pmid in late:
        world.standin.set_dates(pmid, edat=TODAY + dt.timedelta(days=1))
    world.standin.today = TODAY + dt.timedelta(days=1)
    logs.append(checked(world.monitor("run", key=True, now="2026-11-23T03:00:00+00:00")))
    target = world.dressed[0]
    world.standin.revise(target, with_retraction(world.standin.record_xml(target).decode()).encode(),
                         mdat=TODAY + dt.timedelta(days=2))
    world.standin.today = TODAY + dt.timedelta(days=2)
    logs.append(checked(world.monitor("run", key=True, now="2026-11-24T03:00:00+00:00")))
    text = re.sub(r"\d+\.\d+s\b", "_s", "\n".join(logs)).replace(str(world.tmp), "TMP")
    (out / "runs.txt").write_text(text, encoding="utf-8")
    (out / "export.jsonl").write_text(checked(world.monitor("export", "--format", "jsonl")), encoding="utf-8")
    checked(world.monitor("feed", "--out", str(out / "feeds"), now="2026-11-24T03:00:00+00:00"))
    manifest = out / "feeds" / ".manifest.json"
    if manifest.exists():
        manifest.unlink()  # internal bookkeeping, not read by users
    with world.config.open("a", encoding="utf-8") as fh:
        fh.write(DIGEST_TABLE)
    eml = out / "digest.eml"
    checked(world.monitor("digest", "--dry-run", "--since", "2026-11-01", "--out", str(eml),
                          now="2026-11-24T03:00:00+00:00"))
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    (out / "digest.txt").write_text(text.get_content(), encoding="utf-8")
    eml.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp, StandIn(today=TODAY, hang_seconds=3.0) as standin:
        world = FeedWorld(standin, Path(tmp), runner(Path(tmp)))
        scenario(world, args.out)
    files = sorted(p for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {len(files)} files to {args.out}")


if __name__ == "__main__":
    main()
