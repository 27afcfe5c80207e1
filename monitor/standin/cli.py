"""``python -m monitor.standin``: serve the E-utilities stand-in on loopback by hand, so the monitor can be
pointed at it (``MONITOR_EUTILS_URL``) without NCBI. By default it serves the bundled gut–skin sample on port
8081 (``monitor serve`` has 8080) and evaluates every term as PubMed syntax over it, so the shipped queries find
what PubMed would find among those records.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .corpus import DEFAULT_CORPUS
from .service import StandIn

DEFAULT_PORT = 8081  # not monitor serve's 8080: both can run at once


def parser(default_corpus: Path = DEFAULT_CORPUS) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m monitor.standin",
                                description="Serve the NCBI E-utilities stand-in on loopback.")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port to listen on (default {DEFAULT_PORT}; 0: any free port, printed)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--corpus", type=Path, default=default_corpus,
                   help=f"a PubMed XML file or a folder of them (default: {default_corpus})")
    p.add_argument("--all-ids-for", action="append", default=[], metavar="TERM",
                   help="make TERM match every corpus record (repeatable)")
    p.add_argument("--config", type=Path, metavar="QUERIES_TOML",
                   help="make every query term in this monitor config match every corpus record")
    p.add_argument("--today", type=dt.date.fromisoformat, default=None, help="YYYY-MM-DD for reldate")
    p.add_argument("--no-rate-limit", action="store_true", help="do not answer 429 above 3 (10) req/s")
    p.add_argument("--match", action=argparse.BooleanOptionalAction, default=True,
                   help="evaluate unregistered terms as PubMed syntax against the corpus records (default: on)")
    p.add_argument("--unknown-phrase", action="append", default=[], metavar="PHRASE",
                   help="a phrase the phrase index does not know (repeatable; implies --match)")
    return p


def main(argv: Sequence[str] | None = None, *, standin_class: type[StandIn] = StandIn) -> int:
    """Serve until Ctrl-C or SIGTERM. The first line on stdout is the base URL (scripts read it)."""
    args = parser(standin_class.default_corpus).parse_args(argv)
    if not args.corpus.exists():
        print(f"python -m monitor.standin: error: --corpus: {args.corpus} does not exist", file=sys.stderr)
        return 2
    standin = standin_class(args.corpus, today=args.today, enforce_rate_limit=not args.no_rate_limit,
                            host=args.host, port=args.port, match_terms=args.match or bool(args.unknown_phrase))
    if args.unknown_phrase:
        standin.set_phrase_index(args.unknown_phrase)
    terms = list(args.all_ids_for)
    if args.config:
        from ..config import load_config  # only this mode needs the monitor itself

        terms += [q.term for q in load_config(args.config, env={}).queries]
    for term in terms:
        standin.set_query(term, standin.pmids())
    try:
        standin.start()
    except OSError as exc:
        print(f"python -m monitor.standin: error: cannot listen on {args.host}:{args.port}: "
              f"{exc.strerror or exc} (choose another --port, or --port 0 for any free one)", file=sys.stderr)
        return 1
    try:
        print(standin.base_url, flush=True)
        how = "other terms are evaluated as PubMed syntax" if standin.match_terms else "other terms match nothing"
        print(f"{len(standin.pmids())} records from {args.corpus}; {len(terms)} terms match them all, {how}.\n"
              f"Point the monitor at it: MONITOR_EUTILS_URL={standin.base_url} monitor run   (Ctrl-C stops)",
              file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()
    return 0
