"""The exception tree. Every error the package raises on purpose is a :class:`MonitorError`; the CLI turns
one into a single line on stderr and an exit code (``exit_code``), never a traceback.

    MonitorError
    ├── ConfigError          bad queries.toml / environment          (exit 2)
    ├── UsageError           bad command-line value                  (exit 2)
    │   └── SearchSyntaxError  a search the index cannot run (empty, only exclusions …)
    ├── EntrezError          E-utilities gave up or answered an error (exit 1)
    │   ├── RateLimited      HTTP 429 after every retry
    │   ├── Unreachable      no route to NCBI at all (DNS, refused, proxy): the cycle stops at once
    │   └── QueryDegraded    NCBI dropped part of a query (PhraseNotFound, FieldNotFound …)
    ├── ParseError           a response that is not the XML we asked for
    ├── StorageError         database unreachable, locked, or schema problems
    ├── PublishError         feeds could not be written
    ├── MailError            the digest could not be sent
    ├── LeaseBusy            another process holds the cycle lease          (exit 1)
    └── Stopped              a cycle stopped between batches (SIGTERM, or its lease was lost)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .types import LeaseRow


class MonitorError(Exception):
    """Base of every error the monitor raises deliberately."""

    exit_code = 1


class ConfigError(MonitorError):
    """The configuration is invalid. ``path`` is the file, ``key`` the dotted key path (``queries[2].term``)."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        self.path = path
        self.key = key
        self.detail = message
        prefix = ": ".join(p for p in (path, key) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class UsageError(MonitorError):
    """A bad command-line value."""

    exit_code = 2


class ParameterError(UsageError):
    """A bad value of one named option or parameter. ``parameter`` is its name as the caller spells it
    (``--condition`` on the command line, ``condition`` in the web API), so each front end can point at it."""

    def __init__(self, message: str, *, parameter: str) -> None:
        self.parameter = parameter
        super().__init__(message)


class SearchSyntaxError(UsageError):
    """``monitor search`` text that cannot become an index query; the message says what to change."""


class EntrezError(MonitorError):
    """An E-utilities request failed for good (after retries) or NCBI answered with an error body."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(message)


class RateLimited(EntrezError):
    """NCBI kept answering HTTP 429."""


class Unreachable(EntrezError):
    """NCBI cannot be reached for a local reason (the name does not resolve, nothing listens, the proxy
    refuses): retrying for minutes, or trying the other queries, cannot help; the cycle stops at once."""


class QueryDegraded(EntrezError):
    """NCBI silently changed the query (a phrase or field tag was not found); its results are not trusted.

    ``problems`` are ``(kind, text)`` pairs from ErrorList/WarningList, e.g. ``("PhraseNotFound", "abcXYZ")``.
    """

    def __init__(self, query: str, problems: tuple[tuple[str, str], ...]) -> None:
        self.query = query
        self.problems = problems
        listed = "; ".join(f"{kind} {text!r}" for kind, text in problems)
        super().__init__(
            f"query {query!r} is degraded ({listed}): NCBI would run a broader search than written; "
            "fix the term in queries.toml"
        )


class ParseError(MonitorError):
    """A document is not the PubMed/E-utilities XML we expected."""


class StorageError(MonitorError):
    """The database could not be used."""


class PublishError(MonitorError):
    """Feeds or pages could not be written."""


class MailError(MonitorError):
    """The digest email could not be sent."""


class LeaseBusy(MonitorError):
    """Another process holds the lease (``lease``: who, since when)."""

    def __init__(self, message: str, lease: LeaseRow) -> None:
        self.lease = lease
        super().__init__(message)


class Stopped(MonitorError):
    """A cycle was asked to stop and did so between batches: what was stored is complete, nothing is
    half-stored, and the query's watermark did not move (the next cycle covers the same window)."""
