"""A cache of the web app's aggregate reads, keyed on the database's data version.

Facet counts, result counts, the evidence map and trend counts are the same for every visitor until the
database changes, and over a large collection some cost tens or hundreds of milliseconds (the facets of
the whole collection scan every tag row). :class:`CachedReads` answers them from memory while
:meth:`~monitor.interfaces.BrowseStore.data_version` is unchanged; a commit by any other connection (a
`monitor run`, a retag) empties it (on PostgreSQL the counter is the server's next transaction id: any
writing transaction empties it). Where the database has no version counter, a cached value is used for at
most ``ttl`` seconds. Everything else passes straight through to the store.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..interfaces import BrowseStore
from ..types import EvidenceMap, Facets, PaperDetail, PaperFilter, SearchHit, StoredPaper, TextNode, TrendCounts

T = TypeVar("T")


class CachedReads:
    """A :class:`~monitor.interfaces.BrowseStore` whose aggregate reads are cached (thread-safe)."""

    def __init__(self, store: BrowseStore, *, size: int = 512, ttl: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._size, self._ttl, self._monotonic = size, ttl, monotonic
        self._entries: OrderedDict[tuple[Any, ...], tuple[float, Any]] = OrderedDict()
        self._version: int | None = None
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def _cached(self, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        version = self._store.data_version()
        now = self._monotonic()
        with self._lock:
            if version is not None and version != self._version:
                self._entries.clear()
                self._version = version
            found = self._entries.get(key)
            if found is not None and (version is not None or now - found[0] < self._ttl):
                self._entries.move_to_end(key)
                self.hits += 1
                return found[1]  # type: ignore[no-any-return]
        value = compute()
        with self._lock:
            self.misses += 1
            self._entries[key] = (now, value)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    # ---------------------------------------------------------------- cached

    def facets(self, text: TextNode | None, filters: PaperFilter) -> Facets:
        return self._cached(("facets", text, filters), lambda: self._store.facets(text, filters))

    def count_matching(self, text: TextNode | None, filters: PaperFilter) -> int:
        return self._cached(("count", text, filters), lambda: self._store.count_matching(text, filters))

    def evidence_map(self, filters: PaperFilter) -> EvidenceMap:
        return self._cached(("map", filters), lambda: self._store.evidence_map(filters))

    def trend_counts(self, kind: str, filters: PaperFilter) -> TrendCounts:
        return self._cached(("trends", kind, filters), lambda: self._store.trend_counts(kind, filters))

    # ---------------------------------------------------------------- passed through

    def data_version(self) -> int | None:
        return self._store.data_version()

    def search(self, text: TextNode | None, filters: PaperFilter, *, sort: str = "relevance",
               limit: int | None = 20, offset: int = 0) -> list[SearchHit]:
        return self._store.search(text, filters, sort=sort, limit=limit, offset=offset)

    def iter_papers(self, *, include_deleted: bool = True, relevant_only: bool = False, batch: int = 1000,
                    filters: PaperFilter | None = None) -> Iterator[StoredPaper]:
        return self._store.iter_papers(include_deleted=include_deleted, relevant_only=relevant_only, batch=batch,
                                       filters=filters)

    def linked_query_names(self) -> set[str]:
        return self._store.linked_query_names()

    def count_papers(self, *, include_deleted: bool = False) -> int:
        return self._store.count_papers(include_deleted=include_deleted)

    def paper_detail(self, pmid: str) -> PaperDetail | None:
        return self._store.paper_detail(pmid)

    def recent_papers(self, filters: PaperFilter, *, limit: int, offset: int = 0) -> list[StoredPaper]:
        return self._store.recent_papers(filters, limit=limit, offset=offset)
