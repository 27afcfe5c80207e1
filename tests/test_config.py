"""Config loading: every mistake is one line naming the file and key path; overrides from the env."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from monitor.config import load_config, resolve_config_path
from monitor.errors import ConfigError
from tests.conftest import SHIPPED_CONFIG

GOOD = """
lookback_days = 14

[entrez]
email = "team@example.org"
timeout = 30

[storage]
url = "sqlite:///db/monitor.sqlite3"

[[queries]]
name = "gut-skin-axis"
term = '("gastrointestinal microbiome"[mh] OR microbiome[tiab]) AND (psoriasis[mh] OR psoriasis[tiab])'
since = 2024-01-01

[[queries]]
name = "diet"
description = "Diets and skin"
term = '"gluten-free diet"[tiab] AND "dermatitis herpetiformis"[tiab]'
since = 2023-06-01
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "queries.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env=env or {})
    message = str(info.value)
    assert "\n" not in message
    return message


def test_good_config_loads_with_defaults_and_relative_db_path(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD), env={})
    assert [q.name for q in cfg.queries] == ["gut-skin-axis", "diet"]
    assert cfg.queries[1].since == dt.date(2023, 6, 1)
    assert cfg.queries[1].description == "Diets and skin"
    assert cfg.lookback_days == 14
    assert cfg.entrez.email == "team@example.org"
    assert cfg.entrez.timeout == 30.0
    assert cfg.entrez.api_key is None and cfg.entrez.requests_per_second == 3
    assert cfg.storage.url == f"sqlite:///{tmp_path.resolve()}/db/monitor.sqlite3"


def test_environment_overrides(tmp_path: Path) -> None:
    env = {"MONITOR_DB_URL": "sqlite:////tmp/other.sqlite3", "MONITOR_EUTILS_URL": "http://127.0.0.1:9/eutils/",
           "NCBI_API_KEY": "abc123", "NCBI_EMAIL": "me@example.com"}
    cfg = load_config(write(tmp_path, GOOD), env=env)
    assert cfg.storage.url == "sqlite:////tmp/other.sqlite3"
    assert cfg.entrez.base_url == "http://127.0.0.1:9/eutils"
    assert cfg.entrez.api_key == "abc123" and cfg.entrez.requests_per_second == 10
    assert cfg.entrez.email == "me@example.com"


def test_config_path_resolution_order() -> None:
    assert resolve_config_path("a.toml", {"MONITOR_CONFIG": "b.toml"}) == Path("a.toml")
    assert resolve_config_path(None, {"MONITOR_CONFIG": "b.toml"}) == Path("b.toml")
    assert resolve_config_path(None, {}) == Path("queries.toml")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("since = 2023-06-01", "since = 2023-06-01\ncolour = 'red'"),
         "queries.toml: queries[1].colour: unknown key (check the spelling; see README 'Configuration')"),
        (("term = '\"gluten-free diet\"[tiab] AND \"dermatitis herpetiformis\"[tiab]'", "term = '   '"),
         "queries.toml: queries[1].term: must be a non-empty string"),
        (("name = \"diet\"", "name = \"gut-skin-axis\""),
         "queries.toml: queries[1].name: duplicate query name 'gut-skin-axis' (also queries[0].name)"),
        (("timeout = 30", "timeout = \"thirty\""),
         "queries.toml: entrez.timeout: must be a number, not the string 'thirty'"),
        (("timeout = 30", "timeout = true"), "queries.toml: entrez.timeout: must be a number, not a boolean"),
        (("lookback_days = 14", "lookback_days = -1"),
         "queries.toml: lookback_days: must be between 0 and 3650, not -1"),
        (("since = 2023-06-01", "since = \"2023-06-01\""),
         "queries.toml: queries[1].since: must be a date like 2024-01-01, not the string '2023-06-01'"),
        (("since = 2023-06-01", "since = 2023-06-01T10:00:00"),
         "queries.toml: queries[1].since: must be a date like 2024-01-01 (no time)"),
        (("since = 2023-06-01", ""),
         "queries.toml: queries[1].since: is required (or set a top-level since = YYYY-MM-DD)"),
        (("name = \"diet\"", "name = \"Diet Papers\""),
         "queries.toml: queries[1].name: must be a slug of lowercase letters, digits and hyphens, not 'Diet Papers'"),
        (("email = \"team@example.org\"", "email = \"team\""),
         "queries.toml: entrez.email: not an email address: 'team'"),
        (("email = \"team@example.org\"", "api_key = \"secret\""),
         "queries.toml: entrez.api_key: secrets are not read from the file: set NCBI_API_KEY in the environment"),
        (("[storage]", "[storage]\npath = 'x'"),
         "queries.toml: storage.path: unknown key (check the spelling; see README 'Configuration')"),
        (("term = '\"gluten-free diet\"[tiab] AND \"dermatitis herpetiformis\"[tiab]'",
          "term = '(\"gluten-free diet\"[tiab] AND celiac[tiab]'"),
         "queries.toml: queries[1].term: has an unclosed '('"),
        (("term = '\"gluten-free diet\"[tiab] AND \"dermatitis herpetiformis\"[tiab]'",
          "term = '\"gluten-free diet[tiab]'"),
         "queries.toml: queries[1].term: has an unmatched double quote"),
        (("lookback_days = 14", "lookback_days = 14\n[entrezz]\nx = 1"),
         "queries.toml: entrezz: unknown key (check the spelling; see README 'Configuration')"),
    ],
)
def test_each_mistake_names_file_and_key(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in GOOD
    # Replace the last occurrence so edits land in queries[1] when the text repeats.
    head, _, tail = GOOD.rpartition(old)
    assert error_of(tmp_path, head + new + tail) == expected


def test_missing_and_empty_queries(tmp_path: Path) -> None:
    assert error_of(tmp_path, "lookback_days = 3\n") == "queries.toml: queries: is required"
    assert error_of(tmp_path, "queries = []\n") == "queries.toml: queries: must list at least one [[queries]] table"


def test_missing_required_name_and_term(tmp_path: Path) -> None:
    assert error_of(tmp_path, "[[queries]]\nterm = 'x[tiab]'\nsince = 2024-01-01\n") == \
        "queries.toml: queries[0].name: is required"
    assert error_of(tmp_path, "[[queries]]\nname = 'a'\nsince = 2024-01-01\n") == \
        "queries.toml: queries[0].term: is required"


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[[queries]\nname = 'a'")
    assert message.startswith(f"{tmp_path / 'queries.toml'}: not valid TOML: ")
    with pytest.raises(ConfigError, match="file not found \\(pass --config PATH or set MONITOR_CONFIG\\)"):
        load_config(tmp_path / "absent.toml", env={})


def test_bad_eutils_url_from_environment(tmp_path: Path) -> None:
    assert error_of(tmp_path, GOOD, env={"MONITOR_EUTILS_URL": "ftp://x"}) == \
        "MONITOR_EUTILS_URL: must be an http(s) URL, not 'ftp://x'"


def test_shipped_queries_toml_is_valid_and_every_term_uses_tiab() -> None:
    cfg = load_config(SHIPPED_CONFIG, env={})
    assert len(cfg.queries) >= 5
    for q in cfg.queries:
        # MeSH-only queries never match fresh, unindexed records (GUIDE §3).
        assert "[tiab]" in q.term, q.name
        assert "[mh]" in q.term or "[Mesh]" in q.term or "[majr]" in q.term, q.name
        assert q.description, q.name


def test_cli_reports_config_error_in_one_line_with_exit_2(tmp_path: Path, run_monitor) -> None:
    path = write(tmp_path, GOOD.replace('name = "diet"', 'name = "gut-skin-axis"'))
    result = run_monitor("--config", str(path), "run")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "monitor: error: queries.toml: queries[1].name: duplicate query name 'gut-skin-axis' (also queries[0].name)"
    ]


def test_cli_uses_monitor_config_env_and_reports_missing_file(tmp_path: Path, run_monitor) -> None:
    result = run_monitor("status", env={"MONITOR_CONFIG": str(tmp_path / "nope.toml")})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"monitor: error: {tmp_path / 'nope.toml'}: file not found (pass --config PATH or set MONITOR_CONFIG)"
    )


def test_typos_are_caught_even_when_the_environment_overrides_the_key(tmp_path: Path) -> None:
    text = GOOD.replace('email = "team@example.org"', 'email = "team@example.org"\nbase_url = 3')
    env = {"MONITOR_EUTILS_URL": "http://127.0.0.1:1/e", "NCBI_EMAIL": "a@b.org"}
    assert error_of(tmp_path, text, env=env) == "queries.toml: entrez.base_url: must be a string, not int 3"


DIGEST = '\n[digest]\nfrom = "Monitor <monitor@example.org>"\nto = ["a@example.org", "Team B <b@example.org>"]\n'


def test_digest_table_defaults_and_password_from_the_environment(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, GOOD), env={}).digest is None
    cfg = load_config(write(tmp_path, GOOD + DIGEST), env={"MONITOR_SMTP_PASSWORD": "s3cret"}).digest
    assert cfg is not None
    assert (cfg.sender, cfg.recipients, cfg.smtp_host, cfg.smtp_port, cfg.security, cfg.smtp_password) == (
        "Monitor <monitor@example.org>", ("a@example.org", "Team B <b@example.org>"), "localhost", 587, "starttls",
        "s3cret")
    tls = load_config(write(tmp_path, GOOD + DIGEST + 'security = "tls"\n'), env={}).digest
    assert tls is not None and tls.smtp_port == 465 and tls.smtp_password is None
    one = load_config(write(tmp_path, GOOD + DIGEST.replace('["a@example.org", "Team B <b@example.org>"]',
                                                            '"a@example.org"')), env={}).digest
    assert one is not None and one.recipients == ("a@example.org",)


@pytest.mark.parametrize(("extra", "expected"), [
    ('smtp_password = "x"\n', "digest.smtp_password: secrets are not read from the file: set MONITOR_SMTP_PASSWORD"),
    ('security = "ssl"\n', "digest.security: must be one of starttls, tls, none, not 'ssl'"),
    ("smtp_port = 0\n", "digest.smtp_port: must be between 1 and 65535, not 0"),
    ('subject_prefix = """a\nBcc: x@example.org"""\n', "digest.subject_prefix: must be one line (no line breaks)"),
    ("interval_days = 0\n", "digest.interval_days: must be between 1 and 366, not 0"),
    ('smpt_host = "mail"\n', "digest.smpt_host: unknown key"),
])
def test_digest_mistakes_name_the_key(tmp_path: Path, extra: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD + DIGEST + extra), env={})
    assert str(err.value).startswith(f"queries.toml: {expected}")


@pytest.mark.parametrize(("table", "expected"), [
    ('[digest]\nto = ["a@example.org"]\n', "digest.from: is required"),
    ('[digest]\nfrom = "m@example.org"\n', "digest.to: is required"),
    ('[digest]\nfrom = "m@example.org"\nto = []\n', "digest.to: must list at least one address"),
    ('[digest]\nfrom = "nobody"\nto = ["a@example.org"]\n', "digest.from: not an email address: 'nobody'"),
    ('[digest]\nfrom = "m@example.org"\nto = ["a@example.org", 3]\n', "digest.to[1]: must be a string, not int 3"),
    ('[digest]\nfrom = "m@example.org"\nto = ["a@example.org\\r\\nBcc: x@example.org"]\n',
     "digest.to[0]: must be one address (no line breaks, commas or semicolons)"),
    ('[digest]\nfrom = "m@example.org"\nto = ["a@example.org, b@example.org"]\n',
     "digest.to[0]: must be one address (no line breaks, commas or semicolons)"),
])
def test_digest_addresses_are_checked(tmp_path: Path, table: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD + "\n" + table), env={})
    assert str(err.value).startswith(f"queries.toml: {expected}")


def test_the_shipped_digest_example_loads_when_uncommented(tmp_path: Path) -> None:
    text = SHIPPED_CONFIG.read_text(encoding="utf-8")
    lines = text.splitlines()
    start = lines.index("# [digest]")
    block = []
    for line in lines[start:]:
        if not line.startswith("# "):
            break
        block.append(line[2:])
    digest = load_config(write(tmp_path, text + "\n" + "\n".join(block) + "\n"), env={}).digest
    assert digest is not None and digest.smtp_host == "smtp.example.org" and len(digest.recipients) == 2


BLOCKS = """
[blocks]
skin = '''
psoria*[tiab]
OR {rare}
'''
rare = '"lichen sclerosus"[tiab]'

[fallbacks]
"lichen sclerosus" = '"lichen sclerosus"[tiab:~0]'
"skin-gut axis" = '"skin gut axis"[tiab:~0]'

[[queries]]
name = "probiotics"
term = 'probiotic*[tiab] AND ({skin})'
since = 2024-01-01
fallbacks = { "lichen sclerosus" = '"lichen sclerosus"[tiab:~2]' }

[[queries]]
name = "plain"
term = '"skin-gut axis"[tiab]'
since = 2024-01-01
"""


def test_blocks_are_expanded_into_the_term_the_monitor_sends(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BLOCKS), env={})
    probiotics, plain = cfg.queries
    assert probiotics.term == 'probiotic*[tiab] AND ((psoria*[tiab] OR ("lichen sclerosus"[tiab])))'
    assert probiotics.written == "probiotic*[tiab] AND ({skin})"
    assert probiotics.blocks == ("skin",)
    # The query's own fallback wins over the top-level one for the same phrase; the others still apply.
    assert [(f.phrase, f.replacement) for f in probiotics.fallbacks] == [
        ("lichen sclerosus", '"lichen sclerosus"[tiab:~2]'), ("skin-gut axis", '"skin gut axis"[tiab:~0]')]
    assert probiotics.fallbacks[0].where == 'queries[0].fallbacks."lichen sclerosus"'
    assert [f.phrase for f in plain.fallbacks] == ["lichen sclerosus", "skin-gut axis"]
    assert cfg.expand("{rare} AND diet[tiab]") == '("lichen sclerosus"[tiab]) AND diet[tiab]'


def test_a_block_edit_is_a_term_change_for_the_queries_that_use_it(tmp_path: Path) -> None:
    from monitor.cycle import plan_window
    from monitor.types import QueryState

    before = load_config(write(tmp_path, BLOCKS), env={})
    after = load_config(write(tmp_path, BLOCKS.replace("psoria*[tiab]", "psoria*[tiab] OR rosacea[tiab]")), env={})
    now = dt.datetime(2026, 11, 22, 3, tzinfo=dt.UTC)
    for old, new in zip(before.queries, after.queries):
        state = QueryState(old.name, old.term, now - dt.timedelta(days=1), old.since, now.date())
        window = plan_window(new, state, now.date(), 30)
        assert window.backfill == (new.name == "probiotics"), new.name  # "plain" does not use the block


@pytest.mark.parametrize(("change", "expected"), [
    (("{skin})'", "{skn})'"), "queries.toml: queries[0].term: unknown block {skn} (known: rare, skin)"),
    (("OR {rare}", "OR {skin}"), "queries.toml: blocks.skin: blocks refer to each other in a cycle: skin -> skin"),
    (("rare = '\"lichen sclerosus\"[tiab]'", "rare = '(\"lichen sclerosus\"[tiab]'"),
     "queries.toml: blocks.rare: has an unclosed '('"),
    (("AND ({skin})'", "AND ({skin}'"), "queries.toml: queries[0].term: has an unclosed '(' (after expanding blocks)"),
    (("AND ({skin})'", "AND ({skin} OR {rare)'"),
     "queries.toml: queries[0].term: has a stray '{' (block references look like {skin_conditions})"),
    (("rare = ", "Rare = "), "queries.toml: blocks.Rare: block names are lowercase letters, digits and '_' "
                             "(starting with a letter), not 'Rare'"),
    (("'\"skin gut axis\"[tiab:~0]'", "'\"skin gut axis\"[tiab:~0] OR {nope}'"),
     'queries.toml: fallbacks."skin-gut axis": unknown block {nope} (known: rare, skin)'),
    (("'\"lichen sclerosus\"[tiab:~2]'", "''"),
     'queries.toml: queries[0].fallbacks."lichen sclerosus": must be a non-empty string (the PubMed syntax '
     'to search instead of the phrase)'),
    (("[fallbacks]", "[fallbacks]\n'\"quoted\"' = 'x[tiab]'"),
     "queries.toml: fallbacks.\"\"quoted\"\": the key is the phrase as written in the term, without quotes or "
     "field tag"),
])
def test_block_and_fallback_mistakes_name_the_key(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    assert change[0] in BLOCKS
    assert error_of(tmp_path, BLOCKS.replace(*change)) == expected


def test_the_shipped_skin_block_exists_once_and_every_query_uses_it() -> None:
    text = SHIPPED_CONFIG.read_text(encoding="utf-8")
    # One condition per block line: each heading of the skin side is written exactly once in the file.
    for heading in ('"Dermatitis, Atopic"[mh]', '"Alopecia Areata"[mh]', '"Skin Aging"[mh]', '"Pruritus"[mh]',
                    '"lichen sclerosus"[tiab]', '"skin diseases"[tiab]'):
        assert text.count(heading) == 1, heading
    cfg = load_config(SHIPPED_CONFIG, env={})
    skin = dict(cfg.blocks)["skin"]
    for q in cfg.queries:
        assert "skin" in q.blocks, q.name
        assert skin in q.term, q.name
        assert "{" not in q.term and "}" not in q.term, q.name
