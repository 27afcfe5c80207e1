"""Re-export of the PubMed-like query matcher, which lives in :mod:`monitor.standin.matcher`."""

from monitor.standin.matcher import *  # noqa: F403
