"""Re-export of the E-utilities stand-in, which lives in :mod:`monitor.standin`, over the tests' corpus: the
real NCBI recordings in ``tests/data/efetch`` (the package's default is the bundled gut–skin sample). Also a
script, as before: ``python tests/eutils_standin.py --port 0 --all-ids-for 'gut skin'``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from monitor.standin import *  # noqa: F403
from monitor.standin import StandIn as _PackagedStandIn
from monitor.standin.cli import main as _main

DEFAULT_CORPUS = Path(__file__).resolve().parent / "data" / "efetch"


class StandIn(_PackagedStandIn):
    """:class:`monitor.standin.StandIn` serving ``tests/data/efetch`` unless told otherwise."""

    default_corpus: ClassVar[Path] = DEFAULT_CORPUS


def main(argv: Sequence[str] | None = None) -> int:
    return _main(argv, standin_class=StandIn)


if __name__ == "__main__":
    sys.exit(main())
