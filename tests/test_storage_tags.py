"""Tags and tag inputs: taggings stored, diffed and relabelled; retag; the compact tagger input. Real SQLite files in tmp dirs."""

from __future__ import annotations

import dataclasses

from monitor import pubmed
from monitor.storage import Storage
from monitor.types import Article, TagInput
from tests.conftest import DATA
from tests.storage_data import LATER, NOW, meta, real_articles  # noqa: F401


def test_a_new_taxonomy_that_changes_nothing_only_relabels(store: Storage) -> None:
    from monitor.types import Tagging

    a, b = real_articles()
    store.store_batch([a, b], query="q", now=NOW)
    store.retag(lambda paper: Tagging(conditions=("acne",), taxonomy_version="v1"))
    changes = store.retag(lambda paper: Tagging(conditions=("acne",), taxonomy_version="v2"))
    assert (changes.examined, changes.changed, changes.rewritten, changes.relabelled, changes.added) == (2, 0, 2, 2, ())
    assert store.taxonomy_versions() == {"v2": 2}
    assert {p.tagging.taxonomy_version for p in store.iter_papers()} == {"v2"}


def test_taggings_are_stored_diffed_and_idempotent(store: Storage) -> None:
    from monitor.types import TagEvidence, Tagging

    a, b = real_articles()
    store.store_batch([a, b], query="q", now=NOW)
    ev = (TagEvidence("psoriasis", "condition", "title", "psoriasis", 3.0),)
    t1 = Tagging(conditions=("psoriasis",), designs=("rct",), gut_skin_relevant=True, relevance=0.8,
                 evidence=ev, taxonomy_version="v1")
    changes = store.save_taggings({a.pmid: t1})
    assert (changes.examined, changes.changed, changes.rewritten) == (1, 1, 1)
    assert dict(changes.added) == {"psoriasis": 1, "rct": 1, "gut_skin_relevant": 1} and not changes.removed
    assert store.save_taggings({a.pmid: t1}).rewritten == 0  # same tags again: nothing written
    t2 = Tagging(conditions=("acne",), designs=("rct",), taxonomy_version="v2")
    changes = store.save_taggings({a.pmid: t2})
    assert dict(changes.added) == {"acne": 1}
    assert dict(changes.removed) == {"psoriasis": 1, "gut_skin_relevant": 1}
    stored = {p.article.pmid: p.tagging for p in store.iter_papers()}
    assert stored[a.pmid] == t2 and stored[b.pmid] is None
    assert store.taxonomy_versions() == {"v2": 1, None: 1}


def test_retag_tags_everything_once_then_changes_nothing(store: Storage) -> None:
    from monitor.types import Tagging

    a, b = real_articles()
    store.store_batch([a, b], query="q", now=NOW)
    tagger = lambda paper: Tagging(conditions=("acne",) if paper.title == a.title else (), taxonomy_version="v")  # noqa: E731
    first = store.retag(tagger, batch=1)
    # One paper gains a tag; both get a stored tagging for the first time.
    assert (first.examined, first.changed, first.rewritten) == (2, 1, 2)
    again = store.retag(tagger, batch=1)
    assert (again.examined, again.changed, again.rewritten, again.added, again.removed) == (2, 0, 0, (), ())


def test_store_batch_tags_new_and_revised_papers_in_the_same_transaction(store: Storage) -> None:
    from monitor.types import Tagging

    a, _ = real_articles()
    verdicts = iter([("lupus",), ("psoriasis",), ("acne",)])  # a tagger whose verdict changes each call

    def tagger(paper: TagInput) -> Tagging:
        return Tagging(conditions=next(verdicts), taxonomy_version="v")

    def stored() -> tuple[str, ...]:
        return next(store.iter_papers()).tagging.conditions

    store.store_batch([a], query="q", now=NOW, tagger=tagger)
    assert stored() == ("lupus",)
    store.store_batch([a], query="q", now=LATER, tagger=tagger)  # unchanged: its tags are not rewritten
    assert stored() == ("lupus",)
    revised = dataclasses.replace(a, version=a.version + 1)
    store.store_batch([revised], query="q", now=LATER, tagger=tagger)
    assert stored() == ("acne",)


def test_tagging_the_compact_tag_input_equals_tagging_the_whole_article() -> None:
    """Retag reads only `tag_input`; a run tags the whole Article. They must never disagree."""
    import gzip

    from monitor.storage.tags import decode_tag_input, tag_input_json
    from monitor.tagging import load_taxonomy, tag
    from tests.conftest import ROOT

    taxonomy = load_taxonomy(ROOT / "taxonomy.toml")
    checked = 0
    for path in sorted((DATA / "efetch").rglob("*.xml*")):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        for article in pubmed.parse(data):
            if isinstance(article, Article):
                light = decode_tag_input(tag_input_json(article))
                assert tag(light, taxonomy) == tag(article, taxonomy), article.pmid
                checked += 1
    assert checked >= 1500
