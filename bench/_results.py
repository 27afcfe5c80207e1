"""Shared by the bench scripts: the real records they replicate, and adding or replacing one ``## ``
section of bench/RESULTS.md."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from monitor import pubmed
from monitor.types import Article

ROOT = Path(__file__).resolve().parent.parent


def real_records() -> dict[str, Article]:
    """Every real PubMed record in tests/data/efetch that has a title or an abstract, by PMID (the last
    revision seen wins)."""
    seen: dict[str, Article] = {}
    for path in sorted((ROOT / "tests" / "data" / "efetch").rglob("*.xml*")):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for item in pubmed.parse(data):
            if isinstance(item, Article) and (item.title or item.abstract):
                seen[item.pmid] = item
    return seen


def write_section(path: Path, heading: str, body: str) -> None:
    """Replace the section that starts with ``heading`` (up to the next ``## ``) by ``body``, or append it;
    every other section of the file stays as it is."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: body + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + body
    path.write_text(text, encoding="utf-8")
