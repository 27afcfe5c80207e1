"""The `monitor` command's contract: one-line errors, exit codes, atomic export, no tracebacks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import SHIPPED_CONFIG, database_untouched, db_url


def env_for(tmp_path: Path) -> dict[str, str]:
    return {"MONITOR_CONFIG": str(SHIPPED_CONFIG), "MONITOR_DB_URL": db_url(tmp_path / "m.sqlite3")}


def test_usage_errors_are_one_line_and_exit_2(run_monitor) -> None:
    for args, expected in [
        (("frobnicate",), "monitor: error: No such command 'frobnicate'. (see monitor --help)"),
        (("export", "--format", "xml"),
         "monitor: error: Invalid value for '--format': 'xml' is not one of 'bibtex', 'csl-json', 'csv', 'json', 'jsonl', 'ris'. (see monitor --help)"),
        (("status", "--runs", "0"),
         "monitor: error: Invalid value for '--runs': 0 is not in the range 1<=x<=1000. (see monitor --help)"),
    ]:
        result = run_monitor(*args)
        assert (result.returncode, result.stderr.strip()) == (2, expected)


def test_help_and_version(run_monitor) -> None:
    assert run_monitor("--version").stdout.strip() == "monitor, version 0.1.0"
    result = run_monitor("--help")
    assert result.returncode == 0
    for command in ("run", "export", "status"):
        assert f"  {command} " in result.stdout


def test_export_on_empty_database_and_bad_destinations(tmp_path: Path, run_monitor) -> None:
    env = env_for(tmp_path)
    empty = run_monitor("export", env=env)
    assert (empty.returncode, empty.stdout) == (0, "")
    csv_empty = run_monitor("export", "--format", "csv", env=env)
    assert csv_empty.stdout.splitlines()[0].startswith("pmid,version,status,deleted,retracted,title,")
    missing = run_monitor("export", "--out", str(tmp_path / "no" / "such" / "x.jsonl"), env=env)
    assert (missing.returncode, missing.stderr.strip()) == (
        2, f"monitor: error: --out: folder {tmp_path / 'no' / 'such'} does not exist")
    folder = run_monitor("export", "--out", str(tmp_path), env=env)
    assert (folder.returncode, folder.stderr.strip()) == (
        2, f"monitor: error: --out: {tmp_path} is a directory; give a file name")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left behind


def test_status_on_a_fresh_database(tmp_path: Path, run_monitor) -> None:
    result = run_monitor("status", env=env_for(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "papers: 0 stored" in result.stdout
    assert "gut-skin-axis: never run (first run backfills from 2024-01-01)" in result.stdout
    assert "recent runs: none yet (run `monitor run`)" in result.stdout


@pytest.mark.sqlite_only("a SQLite file; test_missing_postgresql_database_is_one_line_exit_1 is the counterpart")
def test_unusable_database_is_one_line_exit_1(tmp_path: Path, run_monitor) -> None:
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not sqlite" * 200)
    result = run_monitor("status", env={**env_for(tmp_path), "MONITOR_DB_URL": db_url(junk)})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"monitor: error: cannot open database sqlite:///{junk}")
    assert junk.read_bytes() == b"not sqlite" * 200  # nothing already stored is touched


@pytest.mark.postgres
def test_missing_postgresql_database_is_one_line_exit_1(tmp_path: Path, run_monitor) -> None:
    import sqlalchemy as sa

    url = sa.engine.make_url(db_url(tmp_path / "m.sqlite3")).set(database="not_created_yet")
    result = run_monitor("status", env={**env_for(tmp_path), "MONITOR_DB_URL": url.render_as_string(False)})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("monitor: error: cannot open database postgresql+psycopg://")
    assert 'database "not_created_yet" does not exist' in lines[0]


def test_future_since_is_refused(tmp_path: Path, run_monitor) -> None:
    env = {**env_for(tmp_path), "MONITOR_NOW": "2026-11-22T00:00:00Z"}
    result = run_monitor("run", "--since", "2027-01-01", env=env)
    assert (result.returncode, result.stderr.strip()) == (2, "monitor: error: --since: 2027-01-01 is in the future")
    bad_now = run_monitor("run", env={**env_for(tmp_path), "MONITOR_NOW": "soon"})
    assert (bad_now.returncode, bad_now.stderr.strip()) == (
        2, "monitor: error: MONITOR_NOW: not an ISO 8601 date-time: 'soon'")


def test_closed_pipe_is_quiet(tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import monitor_executable

    env = {"MONITOR_CONFIG": str(SHIPPED_CONFIG), "MONITOR_DB_URL": db_url(tmp_path / "m.sqlite3"),
           "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([monitor_executable(), "export", "--format", "csv"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader goes away before the header is written
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err and b"internal error" not in err


def test_broken_taxonomy_is_one_line_exit_2_before_anything_runs(tmp_path: Path, run_monitor) -> None:
    from tests.conftest import ROOT

    taxonomy = (ROOT / "taxonomy.toml").read_text(encoding="utf-8")
    old = "patterns = ['rosacea\\w*', 'acne rosacea']"
    assert old in taxonomy
    bad = tmp_path / "taxonomy.toml"
    bad.write_text(taxonomy.replace(old, "patterns = ['rosacea\\w*', 'acne (rosacea']"), encoding="utf-8")
    config = tmp_path / "queries.toml"
    config.write_text(SHIPPED_CONFIG.read_text(encoding="utf-8"), encoding="utf-8")  # taxonomy.toml beside it
    env = {"MONITOR_CONFIG": str(config), "MONITOR_DB_URL": db_url(tmp_path / "m.sqlite3"),
           "MONITOR_EUTILS_URL": "http://127.0.0.1:9/never-contacted"}
    for command in ("run", "retag"):
        result = run_monitor(command, env=env)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, result.stderr
        assert lines[0].startswith("monitor: error: taxonomy.toml: conditions.rosacea.patterns[1]: "), lines[0]
        assert database_untouched(tmp_path / "m.sqlite3")  # nothing was opened, nothing was fetched
    (tmp_path / "taxonomy.toml").unlink()
    missing = run_monitor("retag", env=env)
    assert missing.returncode == 2 and "taxonomy.toml" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1


def test_the_format_names_the_cli_offers_are_the_writers() -> None:
    from monitor.export import WRITERS
    from monitor.formats import EXPORT_FORMATS, SEARCH_FORMATS

    assert set(EXPORT_FORMATS) == set(WRITERS) and set(SEARCH_FORMATS) == {"table", *WRITERS}


def test_help_loads_no_storage_network_or_output_libraries() -> None:
    """`monitor --help` must start fast: none of the heavy libraries may be imported for it."""
    import subprocess

    code = ("import sys; from monitor.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('sqlalchemy', 'httpx', 'rich', 'lxml', 'jinja2', 'alembic', 'apscheduler') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
