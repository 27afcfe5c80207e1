"""What the web app is given by the composition root (:meth:`monitor.app.App.web_app`): the store behind a
narrow protocol, the tag vocabulary, the query names, the feed folder (or, with a shared database, the
published documents in it), the status report and today's date. Nothing here opens a database or reads a
file."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..interfaces import BrowseStore, DocumentReader
from ..types import StatusReport

if TYPE_CHECKING:
    from ..explain import Explanation
    from ..tagging import Taxonomy
    from ..types import StoredPaper

KINDS = ("condition", "intervention", "design")


@dataclass(frozen=True, slots=True)
class Labels:
    """Tag ids of each kind in the taxonomy's order, and their labels."""

    conditions: tuple[str, ...]
    interventions: tuple[str, ...]
    designs: tuple[str, ...]
    names: dict[str, str]
    aliases: dict[str, str] = field(default_factory=dict)  # every name a user may filter by → tag id

    @classmethod
    def from_taxonomy(cls, taxonomy: Taxonomy) -> Labels:
        from ..search import tag_aliases

        return cls(tuple(taxonomy.ids("condition")), tuple(taxonomy.ids("intervention")),
                   tuple(taxonomy.ids("design")), {t.id: t.label for t in taxonomy.tags.values()},
                   tag_aliases(taxonomy.tags.values()))

    def ids(self, kind: str) -> tuple[str, ...]:
        """The ids of one kind (condition | intervention | design); none for another kind."""
        return {"condition": self.conditions, "intervention": self.interventions, "design": self.designs}.get(kind, ())

    def label(self, tag: str) -> str:
        return self.names.get(tag, tag.replace("_", " ").capitalize())


@dataclass(frozen=True, slots=True)
class WebContext:
    """Everything the web app reads. ``known_queries`` lists the query names a filter may name (the
    configured ones and any that found a stored paper); ``status`` builds what `monitor status` shows.
    ``documents``: serve the feeds from the database's published documents (a shared PostgreSQL database:
    every host serves what the last cycle published) instead of the ``feeds`` folder."""

    store: BrowseStore
    labels: Labels
    query_names: tuple[str, ...]
    known_queries: Callable[[], set[str]]
    feeds: Path
    status: Callable[[], StatusReport]
    today: Callable[[], dt.date]
    title: str = "Gut–skin literature monitor"
    documents: DocumentReader | None = None
    # why a paper has its tags under the current taxonomy, and a note when its stored tags are older
    explain: Callable[[StoredPaper], tuple[Explanation, str | None]] | None = None
