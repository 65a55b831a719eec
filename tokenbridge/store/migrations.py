"""Schema changes, numbered and recorded in `schema_migrations` (llm's migrations.py idea).

Append a new `mNNN_*` function to MIGRATIONS; never edit one that has shipped.
Money columns are INTEGER nano-USD (see money.py).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

Migration = Callable[[sqlite3.Connection], None]


def run_script(conn: sqlite3.Connection, script: str) -> None:
    """Statement by statement: `executescript` would commit the migration's open transaction first."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            conn.execute(statement)
            statement = ""


def m001_initial(conn: sqlite3.Connection) -> None:
    run_script(
        conn,
        """
        CREATE TABLE api_keys (
            id          INTEGER PRIMARY KEY,
            name        TEXT NOT NULL UNIQUE,
            key_hash    TEXT NOT NULL UNIQUE,          -- hex SHA-256 of the secret; the secret itself is never stored
            prefix      TEXT NOT NULL,                 -- first characters, to tell keys apart
            group_name  TEXT NOT NULL DEFAULT 'default',
            balance     INTEGER NOT NULL DEFAULT 0,    -- nano-USD; always equals SUM(ledger.amount) of the key
            expires_at  REAL,                          -- unix seconds; NULL = never
            rpm         INTEGER,
            tpm         INTEGER,
            status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
            created_at  REAL NOT NULL
        );
        CREATE TABLE api_key_models (                  -- a key's model allowlist; no rows = every model
            key_id  INTEGER NOT NULL REFERENCES api_keys(id),
            model   TEXT NOT NULL,
            PRIMARY KEY (key_id, model)
        );
        CREATE TABLE ledger (                          -- every balance change, one row each
            id          INTEGER PRIMARY KEY,
            key_id      INTEGER NOT NULL REFERENCES api_keys(id),
            kind        TEXT NOT NULL CHECK (kind IN ('credit', 'charge', 'correction')),
            amount      INTEGER NOT NULL,              -- nano-USD, signed: charges are negative
            request_id  TEXT UNIQUE,                   -- set on charges: the usage row it pays for
            note        TEXT,
            created_at  REAL NOT NULL
        );
        CREATE INDEX ledger_key ON ledger(key_id);
        CREATE TABLE holds (                           -- worst-case cost of requests in flight
            request_id  TEXT PRIMARY KEY,
            key_id      INTEGER NOT NULL REFERENCES api_keys(id),
            amount      INTEGER NOT NULL,
            created_at  REAL NOT NULL
        );
        CREATE INDEX holds_key ON holds(key_id);
        CREATE TABLE usage_events (                    -- one row per authenticated request
            request_id         TEXT PRIMARY KEY,
            created_at         REAL NOT NULL,
            key_id             INTEGER NOT NULL REFERENCES api_keys(id),
            route              TEXT NOT NULL,
            model              TEXT NOT NULL,
            channel            TEXT,
            upstream_model     TEXT,
            status             INTEGER NOT NULL,
            stream             INTEGER NOT NULL,
            prompt_tokens      INTEGER NOT NULL,
            completion_tokens  INTEGER NOT NULL,
            cached_tokens      INTEGER NOT NULL,
            cost               INTEGER NOT NULL,       -- nano-USD, equals -ledger.amount of its charge
            usage_source       TEXT,                   -- upstream | estimated | NULL (no usage: nothing billed)
            end_reason         TEXT NOT NULL,
            attempts           INTEGER NOT NULL,
            latency_ms         REAL NOT NULL,
            ttfb_ms            REAL,
            error              TEXT
        );
        CREATE INDEX usage_key_time ON usage_events(key_id, created_at);
        CREATE INDEX usage_time ON usage_events(created_at);
        """,
    )


def m002_channel_health(conn: sqlite3.Connection) -> None:
    run_script(
        conn,
        """
        CREATE TABLE channel_health (                  -- the last breaker transition per (channel, model)
            channel     TEXT NOT NULL,
            model       TEXT NOT NULL,
            state       TEXT NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
            reason      TEXT NOT NULL,
            retry_in_s  REAL NOT NULL,                 -- open: back-off before the next probe
            changed_at  REAL NOT NULL,
            PRIMARY KEY (channel, model)
        );
        """,
    )


def m003_key_changes(conn: sqlite3.Connection) -> None:
    """A counter that moves when anything auth reads about a key changes, so each process can keep
    keys in memory and drop them when it moves. Balance changes (every request) do not move it."""
    run_script(
        conn,
        """
        CREATE TABLE key_changes (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);
        INSERT INTO key_changes (id, version) VALUES (1, 0);
        CREATE TRIGGER key_inserted AFTER INSERT ON api_keys
        BEGIN UPDATE key_changes SET version = version + 1; END;
        CREATE TRIGGER key_deleted AFTER DELETE ON api_keys
        BEGIN UPDATE key_changes SET version = version + 1; END;
        CREATE TRIGGER key_updated AFTER UPDATE OF name, key_hash, group_name, expires_at, rpm, tpm, status ON api_keys
        BEGIN UPDATE key_changes SET version = version + 1; END;
        CREATE TRIGGER key_model_added AFTER INSERT ON api_key_models
        BEGIN UPDATE key_changes SET version = version + 1; END;
        CREATE TRIGGER key_model_removed AFTER DELETE ON api_key_models
        BEGIN UPDATE key_changes SET version = version + 1; END;
        """,
    )


def m004_hold_owner(conn: sqlite3.Connection) -> None:
    """Which process took each hold, so one is released only once that process is gone (process.py).
    Holds from before this migration have none: they are a crash's leftovers, released at the next start."""
    run_script(conn, "ALTER TABLE holds ADD COLUMN owner TEXT;  -- str(ProcessId): pid, boot id, start time")


def m005_caller_request_id(conn: sqlite3.Connection) -> None:
    """Rows are keyed by the gateway's own id; the caller's X-Request-ID is kept beside it, for tracing.
    Rows written before keep their id (then the caller's, when it sent one) and no caller id."""
    conn.execute("ALTER TABLE usage_events ADD COLUMN caller_request_id TEXT")


def m007_cache_write(conn: sqlite3.Connection) -> None:
    """The prompt tokens a request wrote to the provider's cache (Anthropic's cache_creation_input_tokens),
    priced at the model's `cache_write`; part of prompt_tokens, as cached_tokens are. Rows before: none."""
    conn.execute("ALTER TABLE usage_events ADD COLUMN cache_write_tokens INTEGER NOT NULL DEFAULT 0")


MIGRATIONS: tuple[Migration, ...] = (
    m001_initial,
    m002_channel_health,
    m003_key_changes,
    m004_hold_owner,
    m005_caller_request_id,
    m007_cache_write,
)


def apply_migrations(conn: sqlite3.Connection) -> None:
    """Apply what is missing, each in its own transaction, recording its name."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    for migration in MIGRATIONS:
        # Checked inside the write lock: two workers starting at once apply each migration once.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (migration.__name__,)).fetchone() is None:
                migration(conn)
                conn.execute(
                    "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (migration.__name__, time.time())
                )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
