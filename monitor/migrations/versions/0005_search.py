"""Full-text search: an SQLite FTS5 index over title, abstract, keywords, MeSH descriptors and authors,
and indexes on ``papers`` for newest-first listings and for the columns search filters read (both
dialects).

SQLite only (``papers_fts`` is a virtual table; on PostgreSQL ``Storage.search`` falls back to plain
matching and this migration does nothing). The rowid is the PMID; withdrawn papers are not indexed.
The table is not in ``monitor.storage.schema.metadata``: SQLAlchemy cannot describe a virtual table, and SQLite
owns its shadow tables (``papers_fts_data`` …), so ``store.include_in_schema_comparison`` leaves them out
of the migrations-vs-metadata comparison.

The SQL below fills the index from the stored JSON. It is a frozen copy of
``monitor.storage.search.FTS_REBUILD_SQL`` as it was when this migration was written (a migration must not change
when later code does); ``tests/test_search.py`` checks that both give the same rows as the Python
path that indexes papers while they are stored.

Revision ID: 0005
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CREATE = (
    "CREATE VIRTUAL TABLE papers_fts USING fts5(title, abstract, keywords, mesh, authors, "
    "tokenize = 'porter unicode61 remove_diacritics 2')"
)

FILL = """
INSERT INTO papers_fts (rowid, title, abstract, keywords, mesh, authors)
SELECT p.pmid, p.title,
  coalesce((SELECT group_concat(json_extract(s.value, '$.text'), char(10))
            FROM json_each(p.data, '$.abstract') AS s), ''),
  coalesce((SELECT group_concat(k.value, '; ') FROM json_each(p.data, '$.keywords') AS k), ''),
  coalesce((SELECT group_concat(json_extract(m.value, '$.descriptor'), '; ')
            FROM json_each(p.data, '$.mesh') AS m), ''),
  coalesce((SELECT group_concat(
              CASE WHEN coalesce(json_extract(a.value, '$.collective_name'), '') != ''
                   THEN json_extract(a.value, '$.collective_name')
                   ELSE coalesce(nullif(trim(coalesce(json_extract(a.value, '$.fore_name'), '') || ' ' ||
                                             coalesce(json_extract(a.value, '$.last_name'), '')), ''),
                                 json_extract(a.value, '$.initials'), '')
              END, '; ')
            FROM json_each(p.data, '$.authors') AS a), '')
FROM papers AS p WHERE NOT p.deleted
"""


def upgrade() -> None:
    # Newest-first listings (search without text, --sort date) walk this index instead of sorting.
    op.create_index("ix_papers_sort_date", "papers", ["sort_date"])
    # What search filters and the date order read, so searches need not touch the wide paper rows.
    op.create_index("ix_papers_search", "papers", ["pmid", "deleted", "retracted", "sort_date", "first_seen_at"])
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(CREATE)
    op.execute(FILL)


def downgrade() -> None:
    op.drop_index("ix_papers_search", table_name="papers")
    op.drop_index("ix_papers_sort_date", table_name="papers")
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TABLE papers_fts")
