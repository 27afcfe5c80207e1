"""The test helpers themselves: :func:`tests.conftest.require_program` skips, or fails under
MONITOR_REQUIRE_TOOLS=1, when a system program is absent (checked in a child pytest, whose outcome is the
thing under test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, require_program

_PROBE = '''
from tests.conftest import require_program

def test_needs_it():
    require_program({name!r})
'''


def _run_probe(tmp_path: Path, name: str, **env: str) -> subprocess.CompletedProcess[str]:
    probe = tmp_path / "test_probe.py"
    probe.write_text(_PROBE.format(name=name), encoding="utf-8")
    clean = {k: v for k, v in os.environ.items() if k not in ("MONITOR_REQUIRE_TOOLS", "MONITOR_HIDE_TOOLS")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), str(probe)], capture_output=True, text=True,
                          cwd=ROOT, env={**clean, "PYTHONPATH": str(ROOT), **env}, timeout=120)


def test_a_missing_program_skips_with_the_reason(tmp_path: Path) -> None:
    done = _run_probe(tmp_path, "no-such-program-xyz")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout
    assert "SKIPPED" in done.stdout and "no-such-program-xyz is not installed" in done.stdout  # -ra lists why


def test_a_missing_program_fails_when_tools_are_required(tmp_path: Path) -> None:
    done = _run_probe(tmp_path, "no-such-program-xyz", MONITOR_REQUIRE_TOOLS="1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed" in done.stdout and "MONITOR_REQUIRE_TOOLS=1" in done.stdout


def test_a_hidden_program_counts_as_missing(tmp_path: Path) -> None:
    done = _run_probe(tmp_path, "sh", MONITOR_HIDE_TOOLS="newsboat, sh")
    assert done.returncode == 0 and "1 skipped" in done.stdout and "sh is not installed" in done.stdout


def test_a_present_program_is_returned_by_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONITOR_HIDE_TOOLS", raising=False)
    found = require_program("sh")
    assert Path(found).name == "sh" and os.access(found, os.X_OK)
