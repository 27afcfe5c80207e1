"""Render a sample digest and screenshot its HTML part with headless Chromium (docs/digest.png).

Run from the repository root: ``.venv/bin/python docs/digest_screenshot.py`` (needs /usr/bin/chromium; the
tests do not). The sample is the test data: dev-set papers, real NCBI records, a degraded query and a
retraction of a paper sent the week before.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor import digest as digests  # noqa: E402
from monitor.clock import FixedClock  # noqa: E402
from monitor.config import load_config  # noqa: E402
from monitor.storage import Storage  # noqa: E402
from monitor.types import Correction  # noqa: E402
from tests import digest_data as dd  # noqa: E402


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="digest-shot-"))
    config_path = tmp / "queries.toml"
    config_path.write_text((ROOT / "queries.toml").read_text(encoding="utf-8").replace(
        'taxonomy = "taxonomy.toml"', f'taxonomy = "{ROOT / "taxonomy.toml"}"')
        + '\n[digest]\nfrom = "Gut-skin monitor <monitor@example.org>"\nto = ["team@example.org"]\n',
        encoding="utf-8")
    config = load_config(config_path, env={})
    week1 = dt.datetime(2026, 11, 16, 3, tzinfo=dt.UTC)
    week2 = week1 + dt.timedelta(days=7)
    dev, corpus = dd.dev_articles(), dd.corpus_articles()
    with Storage.open(f"sqlite:///{tmp}/m.sqlite3") as store:
        dd.store_week(store, dev[:3], week1)
        digest, _ = digests.build_due(config, store, FixedClock(week1), dd.vocabulary())
        store.begin_digest(created_at=week1, period=digest.period, subject="s", recipients=["team@example.org"],
                           message_id=None, papers_by_section=digest.sections, event_ids=())
        store.finish_digest(1, "sent", week1)
        first = next(a for a in dev[:3] if a.pmid == digest.relevant[0])
        run = store.start_run(week2 - dt.timedelta(days=2))
        store.store_batch([dataclasses.replace(first, version=2, corrections=(
            Correction("RetractionIn", "Sample notice", "99999999"),))], query="gut-skin-axis",
            now=week2 - dt.timedelta(days=2), run_id=run)
        store.finish_run(run, week2 - dt.timedelta(days=2), "ok")
        dd.store_week(store, dev[3:] + corpus, week2)
        dd.store_week(store, [], week2, query="diet-elimination", status="degraded",
                      message="query 'diet-elimination' is degraded (PhraseNotFound 'gluten free diett'): "
                              "fix the term in queries.toml")
        _, message = digests.build_due(config, store, FixedClock(week2 + dt.timedelta(hours=5)), dd.vocabulary())
    html = tmp / "digest.html"
    html.write_text(message.get_body(("html",)).get_content(), encoding="utf-8")
    out = ROOT / "docs" / "digest.png"
    subprocess.run(["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}", f"--screenshot={out}",
                    "--window-size=800,1600", html.as_uri()], check=True, capture_output=True, timeout=120)
    print(f"wrote {out} from {html}")


if __name__ == "__main__":
    main()
