"""The scheduled jobs as plain functions: one monitoring cycle (search, store, tag, publish feeds) under the
cycle lease, and the digest under its own. `monitor run` and the daemon (:mod:`monitor.scheduler`) both call
:func:`monitoring_cycle`, so what a manual run and a scheduled run do cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .clock import Clock
from .config import Config, Query
from .cycle import Cycle, Progress
from .entrez import EntrezClient
from .feeds import PublishReport
from .interfaces import CycleStore
from .lease import Lease
from .types import QueryReport, RunReport, Tagger

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CycleResult:
    report: RunReport
    published: PublishReport


def monitoring_cycle(*, config: Config, store: CycleStore, client: EntrezClient, clock: Clock, tagger: Tagger,
                     publish: Callable[[], PublishReport], lease: Lease, wait: float = 0.0,
                     queries: Sequence[Query] | None = None, since: dt.date | None = None,
                     on_query: Callable[[QueryReport], None] | None = None, progress: Progress | None = None,
                     stop: Callable[[], str | None] | None = None,
                     on_cycle: Callable[[Cycle], None] | None = None) -> CycleResult:
    """Hold the cycle lease (waiting up to ``wait`` s, else :class:`~monitor.errors.LeaseBusy`), run every
    query (or ``queries``), then regenerate the feeds — also after a partial failure, so they reflect what
    is stored. ``stop`` is asked between batches; a lost lease stops the cycle the same way.

    Raises :class:`~monitor.errors.Stopped` if stopped, :class:`~monitor.errors.PublishError` if the feeds
    could not be written (the papers are stored either way)."""

    def should_stop() -> str | None:
        # Asked before every query and batch: renewing here too (besides the heartbeat) means a holder that
        # stalled past its expiry finds out before it stores anything more.
        if not lease.lost.is_set() and not lease.renew():
            lease.lost.set()
        if lease.lost.is_set():
            return "the cycle lease was lost (this process stalled past its expiry); stopping between batches"
        return stop() if stop is not None else None

    with lease.held(wait):
        dead = store.close_dead_runs(clock.now(), "its process died mid-cycle (its lease lapsed unreleased); "
                                                  "the next cycle covered its window again")
        if dead:
            log.warning("closed run(s) #%s: left 'running' by a process that died mid-cycle",
                        ", #".join(map(str, dead)))
        cycle = Cycle(config, client, store, clock, progress, tagger=tagger, stop=should_stop)
        if on_cycle is not None:
            on_cycle(cycle)
        report = cycle.run(list(queries) if queries is not None else None, since=since, on_query=on_query)
        published = publish()
    return CycleResult(report, published)
