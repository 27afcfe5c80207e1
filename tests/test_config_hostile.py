"""Configuration that must be refused with one line naming the key (issue 15, row 10), and 300 mutated
copies of the shipped queries.toml: each either loads or is one ConfigError — never a traceback, never an
invalid value accepted."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.errors import ConfigError
from tests.conftest import SHIPPED_CONFIG

SHIPPED = SHIPPED_CONFIG.read_text(encoding="utf-8")
ENV = {"MONITOR_DB_URL": "sqlite:///:memory:"}


def load(tmp_path: Path, text: str | bytes, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    path = tmp_path / "queries.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    (tmp_path / "taxonomy.toml").write_text("", encoding="utf-8")
    return load_config(path, env=ENV if env is None else env)


def refused(tmp_path: Path, text: str | bytes, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize(("every", "why"), [("nan", "finite"), ("inf", "finite"), ("-inf", "finite"),
                                            ("1e30", "between 1 second and 366 days"),
                                            ('"1e30s"', "must be a duration")])
def test_intervals_that_cannot_be_scheduled(tmp_path: Path, every: str, why: str) -> None:
    text = SHIPPED.replace('cycle = "30 3 * * *"', f"every = {every}")
    assert "schedule.every" in refused(tmp_path, text) and why in refused(tmp_path, text)


def test_a_cron_that_never_fires(tmp_path: Path) -> None:
    message = refused(tmp_path, SHIPPED.replace('cycle = "30 3 * * *"', 'cycle = "0 0 31 2 *"'))
    assert "schedule.cycle" in message and "never fires" in message


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    assert load(tmp_path, "\ufeff" + SHIPPED).queries


def test_a_nul_or_escape_in_a_term_is_refused(tmp_path: Path) -> None:
    for escaped in ("\\u0000", "\\u001b[31m"):
        text = re.sub(r"term = '''.*?'''", lambda _, e=escaped: f'term = "probiotics {e} skin"', SHIPPED, count=1, flags=re.S)
        assert "term: contains a control character" in refused(tmp_path, text)
    assert "NUL" in refused(tmp_path, SHIPPED.encode().replace(b"[entrez]", b"[entrez]\x00", 1))


def test_a_sqlite_file_in_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "m.sqlite3"
    message = refused(tmp_path, SHIPPED, env={"MONITOR_DB_URL": f"sqlite:///{missing}"})
    assert message.startswith(f"MONITOR_DB_URL: the folder {missing.parent} does not exist")
    assert load(tmp_path, SHIPPED, env={}).storage.url.endswith("/db/monitor.sqlite3")  # the default is made


def test_a_postgresql_url_without_its_driver_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a))
    message = refused(tmp_path, SHIPPED, env={"MONITOR_DB_URL": "postgresql+psycopg://u@db/monitor"})
    assert "needs the psycopg package" in message and "pip install" in message


# Values no key of queries.toml accepts, and the mutations applied to the shipped file.
HOSTILE = ["nan", "inf", "-inf", "1e30", "-1", "0", '""', '"\\u0000"', '"\\u001b[31m"', "true", "[]", "{}",
           '"0 0 31 2 *"', '"Mars/Olympus"', '"x" ', "1979-05-27T07:32:00Z", '"' + "x" * 5000 + '"']


def _mutate(text: str, rng: random.Random) -> tuple[str, bool]:
    """A mutated copy and whether it is certainly invalid (a hostile value on a key that has one type)."""
    lines = text.splitlines()
    settings = [i for i, ln in enumerate(lines) if re.match(r"^[a-z_]+ = [^\[{]", ln)
                and not ln.startswith(("description", "name"))]
    kind = rng.choice(["value", "value", "delete", "duplicate", "bytes", "truncate"])
    if kind == "value":
        i = rng.choice(settings)
        key = lines[i].split(" = ")[0]
        value = rng.choice(HOSTILE)
        lines[i] = f"{key} = {value}"
        certain = value in ("nan", "inf", "-inf", "true", "[]", "{}", '"\\u0000"', '"\\u001b[31m"')
        return "\n".join(lines), certain and key not in ("to",)
    if kind == "delete":
        del lines[rng.randrange(len(lines))]
    elif kind == "duplicate":
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
    elif kind == "truncate":
        lines = lines[: rng.randrange(len(lines))]
    else:
        raw = bytearray("\n".join(lines).encode())
        for _ in range(rng.randint(1, 5)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return raw.decode("utf-8", "replace"), False
    return "\n".join(lines), False


def test_three_hundred_mutated_configurations(tmp_path: Path) -> None:
    rng = random.Random(20261203)
    loaded = failed = 0
    for n in range(300):
        text, certainly_invalid = _mutate(SHIPPED, rng)
        folder = tmp_path / str(n)
        folder.mkdir()
        try:
            load(folder, text)
        except ConfigError as exc:
            assert "\n" not in str(exc)
            failed += 1
        else:
            assert not certainly_invalid, text
            loaded += 1
    assert failed > 100 and loaded > 10  # both outcomes really happened
