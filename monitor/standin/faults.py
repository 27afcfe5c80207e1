"""Fault injection: the failures a test scripts (:meth:`FaultInjector.inject`: the next N requests fail this
way) or draws at random with a seed (:meth:`FaultInjector.fault_rate`), and the reply each kind puts on the
wire — NCBI's 429 body, Apache error pages, a hang, a reset, a truncated or short body, an ``<ERROR>`` body.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .ncbi import (
    DEFAULT_ERROR_BODY,
    FAULT_KINDS,
    HTML_TYPE,
    XML_TYPE,
    Reply,
    cut_mid_record,
    efetch_error_body,
    esearch_error_body,
    rate_limit_body,
    status_page,
)


@dataclass(slots=True)
class Scripted:
    """One scripted fault: its kind, how many more requests it hits, which endpoint (None: any), options."""

    kind: str
    remaining: int
    endpoint: str | None
    options: dict[str, Any]


@dataclass(slots=True)
class RandomFaults:
    p: float
    kinds: tuple[str, ...]
    rng: random.Random
    endpoint: str | None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent the request, for the 429 body: the API key or client, its count in the last second, the limit."""

    who: str
    count: int
    limit: int


def check_kind(kind: str) -> None:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(FAULT_KINDS)}")


class FaultInjector:
    """Scripted and random faults. Every method takes ``lock`` (shared with the rest of the stand-in)."""

    def __init__(self, lock: threading.RLock, hang_seconds: float) -> None:
        self.hang_seconds = hang_seconds
        self._lock = lock
        self._scripted: list[Scripted] = []
        self._random: RandomFaults | None = None

    def inject(self, kind: str, count: int = 1, endpoint: str | None = None, *, retry_after: int | None = None,
               hang_seconds: float | None = None, message: str | None = None, body: bytes | None = None,
               headers: Sequence[tuple[str, str]] = (), content_type: str = XML_TYPE,
               trickle_seconds: float = 0.0) -> None:
        """Answer the next ``count`` requests (to ``endpoint``, or any) with fault ``kind``.

        ``retry_after`` adds a Retry-After header to "429"; ``hang_seconds`` overrides the "timeout"
        hang; ``message`` overrides the ERROR text of "error_body". "body" answers 200 with exactly
        ``body`` and ``headers`` (hostile answers: entity tricks, a compressed bomb with its own
        Content-Encoding, invalid UTF-8, an HTML page), sent a byte at a time with ``trickle_seconds``.
        """
        check_kind(kind)
        options = {"retry_after": retry_after, "hang_seconds": hang_seconds, "message": message, "body": body,
                   "headers": list(headers), "content_type": content_type, "trickle_seconds": trickle_seconds}
        with self._lock:
            self._scripted.append(Scripted(kind, count, endpoint, options))

    def fault_rate(self, p: float, kinds: Sequence[str], seed: int, endpoint: str | None = None) -> None:
        """From now on, each request (to ``endpoint``, or any) not already scripted by :meth:`inject`
        fails with probability ``p``, the kind drawn from ``kinds``. Seeded: the same request sequence
        gets the same faults."""
        for kind in kinds:
            check_kind(kind)
        with self._lock:
            self._random = RandomFaults(p, tuple(kinds), random.Random(seed), endpoint) if p > 0 else None

    def clear(self) -> None:
        with self._lock:
            self._scripted.clear()
            self._random = None

    def next_fault(self, endpoint: str) -> Scripted | None:
        """The fault this request to ``endpoint`` gets, if any (scripted ones first)."""
        with self._lock:
            for plan in self._scripted:
                if plan.endpoint in (None, endpoint):
                    plan.remaining -= 1
                    if plan.remaining <= 0:
                        self._scripted.remove(plan)
                    return plan
            rnd = self._random
            if rnd and rnd.endpoint in (None, endpoint) and rnd.rng.random() < rnd.p:
                return Scripted(rnd.rng.choice(rnd.kinds), 1, endpoint, {})
            return None

    def reply(self, plan: Scripted, endpoint: str, caller: Caller, answer: Callable[[], Reply]) -> Reply:
        """What fault ``plan`` puts on the wire; ``answer`` gives the reply the request would have had (the
        "truncate" and "short_read" kinds damage it)."""
        kind, opts = plan.kind, plan.options
        if kind == "429":
            extra = [("Retry-After", str(opts["retry_after"]))] if opts.get("retry_after") is not None else []
            body = rate_limit_body(caller.who, caller.count, caller.limit)
            return Reply(429, "application/json", body, extra, gzip_ok=False)
        if kind in ("500", "502", "503"):
            return Reply(int(kind), HTML_TYPE, status_page(int(kind)), gzip_ok=False)
        if kind == "timeout":
            hang = opts.get("hang_seconds")
            return Reply(0, "", b"", mode="timeout", hang_seconds=self.hang_seconds if hang is None else hang)
        if kind == "reset":
            return Reply(0, "", b"", mode="reset")
        if kind == "body":
            return Reply(200, opts["content_type"], opts["body"] or b"", list(opts["headers"]), gzip_ok=False,
                         trickle_seconds=opts["trickle_seconds"])
        if kind == "error_body":
            message = opts.get("message") or DEFAULT_ERROR_BODY[endpoint]
            body = esearch_error_body(message) if endpoint == "esearch" else efetch_error_body(message)
            return Reply(200, XML_TYPE, body)
        reply = answer()
        if kind == "truncate":
            reply.body = cut_mid_record(reply.body)
        else:
            reply.mode = "short_read"
        return reply
