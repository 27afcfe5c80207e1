"""PostgreSQL full-text search: the ``paper_search`` table (one row per stored, not withdrawn paper: the
words of each field — letters and digits, everything else a single space, as ``monitor_search_text()``
and the storage code write them — and two generated, weighted ``tsvector`` columns: ``document``, every
field, and ``head``, title, keywords and MeSH only, so ranking can start with the papers whose title,
keywords or MeSH have the words without reading their whole document), their GIN indexes, and the text
search configuration ``monitor_search`` (``unaccent``, then an English Snowball stemmer without stop
words).

PostgreSQL only; on SQLite (where migration 0005's FTS5 index does this job) it does nothing. An existing
PostgreSQL database gets every stored paper indexed from its JSON on upgrade. ``unaccent`` comes with
PostgreSQL's contrib modules (Debian: ``postgresql-contrib``); it is a trusted extension, so the database
owner may create it. The table is not in ``monitor.storage.schema.metadata`` (it exists on one dialect
only); ``include_in_schema_comparison`` leaves it out of the migrations-vs-metadata comparison.

The fill SQL is a frozen copy of ``monitor.storage.pgsearch.REBUILD_SQL`` as it was when this migration was
written (a migration must not change when later code does).

Revision ID: 0008
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SETUP = [
    "CREATE EXTENSION IF NOT EXISTS unaccent",
    # Snowball without a stop-word list: SQLite's FTS5 index drops no words, so a phrase with "of" in it
    # means the same on both backends.
    "CREATE TEXT SEARCH DICTIONARY monitor_english (TEMPLATE = snowball, Language = english)",
    "CREATE TEXT SEARCH CONFIGURATION monitor_search (COPY = simple)",
    "ALTER TEXT SEARCH CONFIGURATION monitor_search ALTER MAPPING FOR asciiword, word, numword, "
    "hword_asciipart, hword_part, hword_numpart WITH unaccent, monitor_english",
    # Whole hyphenated words, URLs, e-mail addresses, signed and decimal numbers are not words of ours (the
    # indexed text never has them; ts_headline on raw text then marks the parts, as the index matched them).
    "ALTER TEXT SEARCH CONFIGURATION monitor_search DROP MAPPING IF EXISTS FOR asciihword, hword, numhword, "
    "email, url, host, url_path, file, sfloat, float, int, version, protocol, entity, tag",
    # Word boundaries as SQLite's unicode61 tokenizer draws them: anything that is not a letter or a digit.
    # The storage code writes the fields already so (in Python, cheaper than this regular expression); the
    # fill below and a rebuild use it.
    "CREATE FUNCTION monitor_search_text(text) RETURNS text LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE "
    "AS $$ SELECT btrim(regexp_replace($1, '[^[:alnum:]]+', ' ', 'g')) $$",
]

TABLE = """
CREATE TABLE paper_search (
    pmid BIGINT PRIMARY KEY REFERENCES papers (pmid) ON DELETE CASCADE,
    title TEXT NOT NULL DEFAULT '',
    abstract TEXT NOT NULL DEFAULT '',
    keywords TEXT NOT NULL DEFAULT '',
    mesh TEXT NOT NULL DEFAULT '',
    authors TEXT NOT NULL DEFAULT '',
    head tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('monitor_search'::regconfig, left(title, 1000)), 'A') ||
        setweight(to_tsvector('monitor_search'::regconfig, left(keywords, 1000)), 'B') ||
        setweight(to_tsvector('monitor_search'::regconfig, left(mesh, 1000)), 'C')
    ) STORED,
    document tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('monitor_search'::regconfig, title), 'A') ||
        setweight(to_tsvector('monitor_search'::regconfig, keywords), 'B') ||
        setweight(to_tsvector('monitor_search'::regconfig, mesh), 'C') ||
        setweight(to_tsvector('monitor_search'::regconfig, abstract), 'D') ||
        setweight(to_tsvector('monitor_search'::regconfig, authors), 'D')
    ) STORED
) WITH (toast_tuple_target = 128)
"""

# Ranking reads ``head`` of every first-tier match: it stays in the row, uncompressed (decompressing it was
# most of the ranking time), while the texts and ``document`` go to the TOAST table (toast_tuple_target),
# so a heap page holds about twenty rows. Each field is cut at 1,000 characters in ``head`` so that a row
# always fits a page (``document`` has everything).
HEAD_STORAGE = "ALTER TABLE paper_search ALTER COLUMN head SET STORAGE PLAIN"

FILL = """
INSERT INTO paper_search (pmid, title, abstract, keywords, mesh, authors)
SELECT p.pmid, monitor_search_text(p.title),
  monitor_search_text(coalesce((SELECT string_agg(s.value->>'text', E'\\n' ORDER BY s.n)
            FROM jsonb_array_elements(d.j->'abstract') WITH ORDINALITY AS s(value, n)), '')),
  monitor_search_text(coalesce((SELECT string_agg(k.value, '; ' ORDER BY k.n)
            FROM jsonb_array_elements_text(d.j->'keywords') WITH ORDINALITY AS k(value, n)), '')),
  monitor_search_text(coalesce((SELECT string_agg(m.value->>'descriptor', '; ' ORDER BY m.n)
            FROM jsonb_array_elements(d.j->'mesh') WITH ORDINALITY AS m(value, n)), '')),
  monitor_search_text(coalesce((SELECT string_agg(
              CASE WHEN coalesce(a.value->>'collective_name', '') <> '' THEN a.value->>'collective_name'
                   ELSE coalesce(nullif(trim(coalesce(a.value->>'fore_name', '') || ' ' ||
                                             coalesce(a.value->>'last_name', '')), ''),
                                 a.value->>'initials', '')
              END, '; ' ORDER BY a.n)
            FROM jsonb_array_elements(d.j->'authors') WITH ORDINALITY AS a(value, n)), ''))
FROM papers AS p CROSS JOIN LATERAL (SELECT p.data::jsonb AS j) AS d
WHERE NOT p.deleted
"""

INDEXES = [
    "CREATE INDEX ix_paper_search_document ON paper_search USING gin (document)",
    "CREATE INDEX ix_paper_search_head ON paper_search USING gin (head)",
    # Newest first (`monitor search --sort date`, listings without text): PostgreSQL cannot walk
    # ix_papers_sort_date backwards for DESC NULLS LAST, so it sorted every match instead.
    "CREATE INDEX ix_papers_newest ON papers (sort_date DESC NULLS LAST, pmid DESC)",
    # Tag filters (--condition psoriasis --design rct) read (tag, kind) → pmid from the index alone, and the
    # planner learns that kind and tag go together (without it, it expected a hundred papers tagged
    # psoriasis where there were ten thousand, and chose nested loops).
    "CREATE INDEX ix_paper_tags_lookup ON paper_tags (tag, kind, pmid)",
    "CREATE STATISTICS st_paper_tags_kind_tag (mcv, dependencies) ON kind, tag FROM paper_tags",
    "ANALYZE paper_search",
    "ANALYZE paper_tags",
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in SETUP:
        op.execute(statement)
    op.execute(TABLE)
    op.execute(HEAD_STORAGE)
    op.execute(FILL)
    for index in INDEXES:  # after the fill: building a GIN index at once is faster than growing it row by row
        op.execute(index)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP STATISTICS st_paper_tags_kind_tag")
    op.execute("DROP INDEX ix_paper_tags_lookup")
    op.execute("DROP INDEX ix_papers_newest")
    op.execute("DROP TABLE paper_search")
    op.execute("DROP FUNCTION monitor_search_text(text)")
    op.execute("DROP TEXT SEARCH CONFIGURATION monitor_search")
    op.execute("DROP TEXT SEARCH DICTIONARY monitor_english")
