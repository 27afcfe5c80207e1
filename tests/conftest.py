"""Shared fixtures: paths to the real recordings, the installed `monitor` command, config writers, and
:func:`require_program` for tests that need a system program (newsboat, pandoc, chromium)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SHIPPED_CONFIG = ROOT / "queries.toml"


REQUIRE_TOOLS_ENV = "MONITOR_REQUIRE_TOOLS"  # "1": a missing program fails the test (CI) instead of skipping
HIDE_TOOLS_ENV = "MONITOR_HIDE_TOOLS"  # comma-separated programs to treat as absent (to try the skips)


def require_program(name: str) -> str:
    """The path of system program ``name``, for a test that needs it (newsboat, pandoc, chromium).

    When it is not installed the test is skipped with the reason (``pytest -ra`` lists it), so the README's
    test command passes on a fresh machine; with ``MONITOR_REQUIRE_TOOLS=1`` (``.ci/run`` sets it) a
    missing program fails the test instead, so CI never skips these tests silently.
    ``MONITOR_HIDE_TOOLS=newsboat,pandoc`` makes the named programs look absent."""
    hidden = {p.strip() for p in os.environ.get(HIDE_TOOLS_ENV, "").split(",") if p.strip()}
    found = None if name in hidden else shutil.which(name)
    if found:
        return found
    # Each program's Debian package has its name; .ci/run installs them.
    reason = f"{name} is not installed (Debian: apt-get install {name}; .ci/run installs it)"
    if os.environ.get(REQUIRE_TOOLS_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_TOOLS_ENV}=1 says every system program must be present")
    pytest.skip(reason)


def monitor_executable() -> str:
    """The installed console script (next to this interpreter), as users run it."""
    beside = Path(sys.executable).with_name("monitor")
    found = str(beside) if beside.exists() else shutil.which("monitor")
    if not found:
        pytest.fail("the `monitor` command is not installed: run `pip install -e '.[test]'` first")
    return found


@pytest.fixture
def run_monitor(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the installed `monitor` command with a clean environment (no real NCBI, no user config)."""
    exe = monitor_executable()

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("MONITOR_", "NCBI_"))}
        base.update(env or {})
        return subprocess.run([exe, *args], capture_output=True, text=True, env=base, cwd=tmp_path,
                              timeout=timeout)

    return run
