"""The full-text index over learnings, kept in step by the database itself.

PostgreSQL: `Learning.search`, a tsvector a trigger computes from the title
and tags (weight A), the files (B) and the body (C), under a GIN index.
SQLite: an FTS5 table (`knowledge_learning_fts`, external content, Porter
stemming) that triggers keep in step with `knowledge_learning`.

Triggers rather than save hooks, so bulk_create and update() keep the index
too. On SQLite, a migration that alters knowledge_learning remakes the table
and drops its triggers: such a migration must call `install` again (a test,
tests/knowledge/test_rank.py, checks the triggers are there).
"""

from typing import Any

# Paths and tags are split into words at any punctuation, as FTS5's tokenizer does.
POSTGRES_INSTALL = [
    """
    CREATE OR REPLACE FUNCTION knowledge_learning_search() RETURNS trigger AS $$
    BEGIN
      NEW.search :=
        setweight(to_tsvector('english', coalesce(NEW.title, '')), 'A') ||
        setweight(to_tsvector('english',
          regexp_replace(coalesce(NEW.tags::text, ''), '[^[:alnum:]]+', ' ', 'g')), 'A') ||
        setweight(to_tsvector('english',
          regexp_replace(coalesce(NEW.files::text, ''), '[^[:alnum:]]+', ' ', 'g')), 'B') ||
        setweight(to_tsvector('english', coalesce(NEW.body, '')), 'C');
      RETURN NEW;
    END
    $$ LANGUAGE plpgsql
    """,
    "DROP TRIGGER IF EXISTS knowledge_learning_search ON knowledge_learning",
    """
    CREATE TRIGGER knowledge_learning_search
    BEFORE INSERT OR UPDATE OF title, body, tags, files ON knowledge_learning
    FOR EACH ROW EXECUTE FUNCTION knowledge_learning_search()
    """,
    "UPDATE knowledge_learning SET title = title",
    "CREATE INDEX IF NOT EXISTS knowledge_learning_search_gin "
    "ON knowledge_learning USING gin (search)",
]
POSTGRES_REMOVE = [
    "DROP INDEX IF EXISTS knowledge_learning_search_gin",
    "DROP TRIGGER IF EXISTS knowledge_learning_search ON knowledge_learning",
    "DROP FUNCTION IF EXISTS knowledge_learning_search()",
]

COLUMNS = "title, tags, files, body"
SQLITE_INSTALL = [
    "DROP TABLE IF EXISTS knowledge_learning_fts",
    f"""
    CREATE VIRTUAL TABLE knowledge_learning_fts USING fts5(
      {COLUMNS}, content='knowledge_learning', content_rowid='id',
      tokenize='porter unicode61'
    )
    """,
    "DROP TRIGGER IF EXISTS knowledge_learning_fts_insert",
    "DROP TRIGGER IF EXISTS knowledge_learning_fts_delete",
    "DROP TRIGGER IF EXISTS knowledge_learning_fts_update",
    f"""
    CREATE TRIGGER knowledge_learning_fts_insert AFTER INSERT ON knowledge_learning BEGIN
      INSERT INTO knowledge_learning_fts(rowid, {COLUMNS})
      VALUES (new.id, new.title, new.tags, new.files, new.body);
    END
    """,
    f"""
    CREATE TRIGGER knowledge_learning_fts_delete AFTER DELETE ON knowledge_learning BEGIN
      INSERT INTO knowledge_learning_fts(knowledge_learning_fts, rowid, {COLUMNS})
      VALUES ('delete', old.id, old.title, old.tags, old.files, old.body);
    END
    """,
    f"""
    CREATE TRIGGER knowledge_learning_fts_update
    AFTER UPDATE OF {COLUMNS} ON knowledge_learning BEGIN
      INSERT INTO knowledge_learning_fts(knowledge_learning_fts, rowid, {COLUMNS})
      VALUES ('delete', old.id, old.title, old.tags, old.files, old.body);
      INSERT INTO knowledge_learning_fts(rowid, {COLUMNS})
      VALUES (new.id, new.title, new.tags, new.files, new.body);
    END
    """,
    "INSERT INTO knowledge_learning_fts(knowledge_learning_fts) VALUES ('rebuild')",
]
SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS knowledge_learning_fts_insert",
    "DROP TRIGGER IF EXISTS knowledge_learning_fts_delete",
    "DROP TRIGGER IF EXISTS knowledge_learning_fts_update",
    "DROP TABLE IF EXISTS knowledge_learning_fts",
]
SQLITE_TRIGGERS = {
    "knowledge_learning_fts_insert",
    "knowledge_learning_fts_delete",
    "knowledge_learning_fts_update",
}


def statements(vendor: str, install: bool) -> list[str]:
    if vendor == "postgresql":
        return POSTGRES_INSTALL if install else POSTGRES_REMOVE
    if vendor == "sqlite":
        return SQLITE_INSTALL if install else SQLITE_REMOVE
    return []


def install(apps: Any = None, schema_editor: Any = None) -> None:
    """Create (or re-create) the index and its triggers; a migration's RunPython."""
    run(schema_editor, statements(schema_editor.connection.vendor, True))


def remove(apps: Any = None, schema_editor: Any = None) -> None:
    run(schema_editor, statements(schema_editor.connection.vendor, False))


def run(schema_editor: Any, sql: list[str]) -> None:
    with schema_editor.connection.cursor() as cursor:
        for statement in sql:
            cursor.execute(statement)
