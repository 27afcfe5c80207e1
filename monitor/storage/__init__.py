"""Storage: the only package that knows SQL. It speaks :mod:`monitor.types`; rows never leave it.

One module per aggregate, on one shared base (:mod:`.base`: engine, transactions, error wrapping into
:class:`~monitor.errors.StorageError`, chunked ``IN`` lookups, upserts), with every table defined once in
:mod:`.schema`:

- :mod:`.papers`    papers and revisions, links to queries, status-change events
- :mod:`.tags`      tag inputs, taggings, ``paper_tags`` rows, retag
- :mod:`.search`    the full-text index, ranked search, paper filters
- :mod:`.runs`      watermarks and the run log
- :mod:`.digests`   the digest log and what is still to deliver
- :mod:`.leases`    lease rows and each scheduled job's last fire
- :mod:`.feedrows`  the reads the feeds plan and render from
- :mod:`.browse`    the web app's reads: a paper's page, recent papers, facets, the evidence map, trends
- :mod:`.documents` published documents (feeds, archives, OPML, index) any host can serve
- :mod:`.pgsearch`  PostgreSQL's full-text search (the tsvector index, tsquery, ranking tiers, headlines)

:class:`Storage` composes them. Consumers depend on the narrow protocols of :mod:`monitor.interfaces`, not
on this class. The same code runs on PostgreSQL: only upserts need a dialect import, chosen from the engine.
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from ..errors import StorageError
from . import base
from .base import BUSY_TIMEOUT_SECONDS, make_engine, reason, safe_url
from .browse import BrowseMixin
from .digests import DigestsMixin
from .documents import DocumentsMixin
from .feedrows import FeedRowsMixin
from .leases import LeasesMixin
from .papers import PapersMixin
from .runs import RunsMixin
from .search import SearchMixin
from .tags import TagsMixin

__all__ = ["Storage"]


class Storage(PapersMixin, TagsMixin, SearchMixin, RunsMixin, DigestsMixin, LeasesMixin, FeedRowsMixin,
              BrowseMixin, DocumentsMixin):
    """The database behind the monitor. Create with :meth:`open` (runs migrations)."""

    @classmethod
    def open(cls, url: str, *, migrate: bool = True,
             busy_timeout: float = BUSY_TIMEOUT_SECONDS) -> Storage:
        """Connect (creating a SQLite file's folder if needed) and bring the schema up to date.
        ``busy_timeout``: how long SQLite waits for another process's write lock before failing."""
        try:
            engine = make_engine(url, busy_timeout=busy_timeout)
            if migrate:
                base.migrate(engine)
            return cls(engine)
        except (SQLAlchemyError, OSError) as exc:
            raise StorageError(f"cannot open database {safe_url(url)}: {reason(exc)}; "
                               "check storage.url / MONITOR_DB_URL") from exc

    @property
    def threads_share_data(self) -> bool:
        """Whether a connection opened by another thread sees this database (not so for in-memory SQLite,
        where each thread's connection is a database of its own): a batch can then be stored on a worker."""
        url = self.engine.url
        return not (url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"))

    def reopened(self) -> Storage | None:
        """A new Storage on the same database with connections of its own, for a forked process (which must
        not use its parent's); None for an in-memory database, which another connection would not see. No
        connection is made until it is used."""
        if not self.threads_share_data:
            return None
        return Storage(make_engine(self.engine.url.render_as_string(hide_password=False)))

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
