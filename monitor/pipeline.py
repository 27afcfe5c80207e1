"""Storing one batch while the next is fetched and parsed: at most one batch in flight, on one worker thread.

Owns the overlap and nothing else. A cycle spends its time on three things that can run side by side: waiting
for NCBI, parsing XML (CPU in this process) and storing (mostly waiting for the database: PostgreSQL's
server builds the search index on its own core; SQLite's C code runs without Python's lock). Storing batch
*n* on a worker while this thread fetches and parses batch *n + 1* hides most of the store.

What callers keep, unchanged from storing inline:
- batches are stored in the order they were submitted, each whole in its own transaction, never two at
  once (one worker, and :meth:`BatchPipeline.submit` waits for the batch in flight before starting the next);
- a batch's ``then`` runs in the caller's thread, in order, so the caller's tallies need no lock;
- a failed store is raised in the caller's thread (at the next ``submit`` or on leaving the ``with``), and
  nothing submitted after it is stored;
- leaving the ``with`` block, for any reason (an error, Ctrl-C, a stop), waits until the batch in flight is
  committed or rolled back, so no store outlives the block and no worker thread is left behind (feed
  rendering forks only when it runs the process's only thread).

``threaded=False`` stores inline in ``submit``: for a database another connection cannot see (in-memory
SQLite) or a caller that wants the plain order of events.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Generic, TypeVar

B = TypeVar("B")
T = TypeVar("T")


class BatchPipeline(Generic[B, T]):
    """``with BatchPipeline(store) as pipe: pipe.submit(batch, then)`` — ``store(batch)`` runs on a worker,
    ``then(result)`` in this thread once it is done."""

    def __init__(self, store: Callable[[B], T], *, threaded: bool = True) -> None:
        self._store = store
        self._threaded = threaded
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: tuple[Future[T], Callable[[T], None]] | None = None

    def __enter__(self) -> BatchPipeline[B, T]:
        if self._threaded:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        return self

    def submit(self, batch: B, then: Callable[[T], None]) -> None:
        """Finish the batch in flight (its ``then``, or its error raised here), then start storing this one."""
        self.drain()
        if self._pool is None:
            then(self._store(batch))
            return
        self._in_flight = (self._pool.submit(self._store, batch), then)

    def drain(self) -> None:
        """Wait for the batch in flight and run its ``then``; its store's error is raised here."""
        if self._in_flight is None:
            return
        future, then = self._in_flight
        self._in_flight = None
        then(future.result())

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # Leaving for any reason: the batch in flight still ends whole (committed or rolled back) and, once
        # committed, is counted. Its own failure, if any, is the graver one (the database), so it is raised
        # in place of the caller's error (which stays attached as its context).
        try:
            self.drain()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
