"""Dump the tagging of every corpus and dev-set record, one JSON line each, so two versions of the tagger
can be compared byte for byte (``cmp before.jsonl after.jsonl``).

Tags every article in ``tests/data/efetch`` (real PubMed records, parsed with :mod:`monitor.pubmed`, in
file order, duplicates included) and every row of the labelled sets (``tests/data/tagging/labelled.jsonl``
and ``dev2.jsonl``, copies of ``../shared/tagging-dev/dev.jsonl`` and ``dev2.jsonl``). Each record is tagged twice:
from the parsed article and from its stored tag input decoded the way ``monitor retag`` decodes it (JSON
arrays as lists), so both paths are covered. A line is ``{"id": …, "path": "article"|"stored", "tagging":
…}`` with the tagging as stored (its JSON without ``taxonomy_version``, which changes with any edit of
taxonomy.toml, even of a comment).

    .venv/bin/python bench/tagging_dump.py [--out bench/out/tagging-dump.jsonl] [--taxonomy taxonomy.toml]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitor import pubmed  # noqa: E402 - after the sys.path line
from monitor.storage.tags import decode_tag_input, tag_input_json  # noqa: E402
from monitor.tagging import DEFAULT_TAXONOMY, Taxonomy, load_taxonomy, tag  # noqa: E402
from monitor.types import Article, Tagging  # noqa: E402
from tests.tagging_data import DEV2, LABELLED, row_to_article  # noqa: E402

LABELLED_SETS = (LABELLED, DEV2)


def corpus() -> Iterator[tuple[str, Article]]:
    for path in sorted((ROOT / "tests" / "data" / "efetch").rglob("*.xml*")):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for item in pubmed.parse(data):
            if isinstance(item, Article):
                yield f"{path.relative_to(ROOT)}:{item.pmid}", item


def labelled() -> Iterator[tuple[str, Article]]:
    seen: set[Path] = set()
    for path in LABELLED_SETS:
        if not path.exists() or path.resolve() in seen:
            continue
        seen.add(path.resolve())
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                yield f"{path.name}:{n}:{row['id']}", row_to_article(row)


def stored(tagging: Tagging) -> bytes:
    text = orjson.dumps(tagging)
    return text[:text.rindex(b',"taxonomy_version":')] + b"}"


def dump(taxonomy: Taxonomy) -> Iterator[bytes]:
    for rec_id, article in (*corpus(), *labelled()):
        key = orjson.dumps(rec_id)
        yield b'{"id":' + key + b',"path":"article","tagging":' + stored(tag(article, taxonomy)) + b"}\n"
        again = decode_tag_input(tag_input_json(article))
        yield b'{"id":' + key + b',"path":"stored","tagging":' + stored(tag(again, taxonomy)) + b"}\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "tagging-dump.jsonl")
    ap.add_argument("--taxonomy", type=Path, default=DEFAULT_TAXONOMY)
    args = ap.parse_args()
    taxonomy = load_taxonomy(args.taxonomy)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines = 0
    with open(args.out, "wb") as fh:
        for line in dump(taxonomy):
            fh.write(line)
            lines += 1
    print(f"{lines} taggings ({lines // 2} records, two paths each) written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
