"""Schema changes, numbered and recorded in `schema_migrations` (llm's migrations.py idea).

Append a new `mNNN_*` function to MIGRATIONS; never edit one that has shipped.
Money columns are INTEGER nano-USD (see money.py).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from tokenbridge.ids import public_id

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


def _migrated_account_names(conn: sqlite3.Connection) -> list[tuple[int, str]]:
    """(key id, account name) for every key: its own name, unless an older key's name equals it but
    for case (account names are case-insensitive, key names were not): then `NAME-<key id>`."""
    taken: set[str] = set()
    names = []
    for key_id, name in conn.execute("SELECT id, name FROM api_keys ORDER BY id"):
        candidate, n = name, 1
        while candidate.casefold() in taken:
            suffix = f"-{key_id}" + (f"-{n}" if n > 1 else "")
            candidate, n = name[: 64 - len(suffix)] + suffix, n + 1
        taken.add(candidate.casefold())
        names.append((key_id, candidate))
    return names


def m006_accounts(conn: sqlite3.Connection) -> None:
    """People behind the keys (issue 13, SPEC §9): accounts hold the wallet and the group; keys belong to
    one, with spend limits and IP allowlists; the ledger is per account; sessions, sign-in failures
    and redemption codes get their tables.

    Each existing key gets an account of its own (id = the key's id, so every ledger row, hold and
    usage row maps over as it is) holding its balance and group; see _migrated_account_names for
    names equal but for case. api_keys and ledger are rebuilt (SQLite's 12-step way: foreign keys
    off, new table, copy, drop, rename; apply_migrations checks them before the commit)."""
    run_script(
        conn,
        """
        CREATE TABLE accounts (
            id             INTEGER PRIMARY KEY,
            name           TEXT NOT NULL UNIQUE COLLATE NOCASE,
            password_hash  TEXT,                       -- NULL: no password sign-in yet
            role           TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('admin', 'member')),
            status         TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
            group_name     TEXT NOT NULL DEFAULT 'default',
            balance        INTEGER NOT NULL DEFAULT 0, -- nano-USD; always equals SUM(ledger.amount) of the account
            created_at     REAL NOT NULL
        );
        """,
    )
    for key_id, name in _migrated_account_names(conn):
        conn.execute(
            "INSERT INTO accounts (id, name, group_name, balance, created_at)"
            " SELECT id, ?, group_name, balance, created_at FROM api_keys WHERE id = ?",
            (name, key_id),
        )
    run_script(
        conn,
        """
        CREATE TABLE api_keys_new (
            id            INTEGER PRIMARY KEY,
            public_id     TEXT NOT NULL UNIQUE,        -- key_ + 16 base62: what API paths name
            account_id    INTEGER NOT NULL REFERENCES accounts(id),
            name          TEXT NOT NULL,
            key_hash      TEXT NOT NULL UNIQUE,
            prefix        TEXT NOT NULL,
            expires_at    REAL,
            rpm           INTEGER,
            tpm           INTEGER,
            spend_limit   INTEGER,                     -- nano-USD per spend_period; NULL = the wallet is the limit
            spend_period  TEXT CHECK (spend_period IN ('total', 'day', 'month')),
            allow_ips     TEXT,                        -- JSON array of CIDRs; NULL = any address
            status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'revoked')),
            created_at    REAL NOT NULL,
            UNIQUE (account_id, name)
        );
        INSERT INTO api_keys_new (id, public_id, account_id, name, key_hash, prefix, expires_at, rpm, tpm, status,
                                  created_at)
            SELECT id, 'key_migrating_' || id, id, name, key_hash, prefix, expires_at, rpm, tpm, status, created_at FROM api_keys;
        CREATE TABLE ledger_new (
            id          INTEGER PRIMARY KEY,
            account_id  INTEGER NOT NULL REFERENCES accounts(id),
            key_id      INTEGER REFERENCES api_keys(id),   -- the key that spent, on charges
            kind        TEXT NOT NULL CHECK (kind IN ('credit', 'charge', 'correction', 'redeem')),
            amount      INTEGER NOT NULL,
            request_id  TEXT UNIQUE,
            code_id     INTEGER REFERENCES redemption_codes(id),
            note        TEXT,
            created_at  REAL NOT NULL
        );
        INSERT INTO ledger_new (id, account_id, key_id, kind, amount, request_id, note, created_at)
            SELECT id, key_id, CASE WHEN kind = 'charge' THEN key_id END, kind, amount, request_id, note, created_at
            FROM ledger;
        DROP TABLE ledger;
        ALTER TABLE ledger_new RENAME TO ledger;
        CREATE INDEX ledger_account ON ledger(account_id);
        CREATE INDEX ledger_key_time ON ledger(key_id, created_at, amount);  -- a key's spend in its period
        DROP TABLE api_keys;
        ALTER TABLE api_keys_new RENAME TO api_keys;
        CREATE TRIGGER key_inserted AFTER INSERT ON api_keys
        BEGIN UPDATE key_changes SET version = version + 1; END;
        CREATE TRIGGER key_deleted AFTER DELETE ON api_keys
        BEGIN UPDATE key_changes SET version = version + 1; END;
        CREATE TRIGGER key_updated AFTER UPDATE OF account_id, name, key_hash, expires_at, rpm, tpm, spend_limit,
            spend_period, allow_ips, status ON api_keys
        BEGIN UPDATE key_changes SET version = version + 1; END;
        CREATE TRIGGER account_updated AFTER UPDATE OF name, status, group_name, role ON accounts
        BEGIN UPDATE key_changes SET version = version + 1; END;
        ALTER TABLE holds ADD COLUMN account_id INTEGER REFERENCES accounts(id);
        UPDATE holds SET account_id = key_id;
        CREATE INDEX holds_account ON holds(account_id);
        ALTER TABLE usage_events ADD COLUMN account_id INTEGER REFERENCES accounts(id);
        UPDATE usage_events SET account_id = key_id;
        CREATE INDEX usage_account_time ON usage_events(account_id, created_at);
        CREATE TABLE sessions (
            token_hash    TEXT PRIMARY KEY,            -- SHA-256 of the cookie's token; the token is never stored
            account_id    INTEGER NOT NULL REFERENCES accounts(id),
            created_at    REAL NOT NULL,
            expires_at    REAL NOT NULL,
            last_seen_at  REAL NOT NULL
        );
        CREATE INDEX sessions_account ON sessions(account_id);
        CREATE TABLE sign_in_failures (
            id          INTEGER PRIMARY KEY,
            name        TEXT,
            address     TEXT,
            created_at  REAL NOT NULL
        );
        CREATE INDEX sign_in_failures_name ON sign_in_failures(name, created_at);
        CREATE INDEX sign_in_failures_address ON sign_in_failures(address, created_at);
        CREATE TABLE redemption_codes (
            id           INTEGER PRIMARY KEY,
            public_id    TEXT NOT NULL UNIQUE,         -- code_ + 16 base62: what API paths name
            code_hash    TEXT NOT NULL UNIQUE,         -- SHA-256 of the code; the code is shown once, never stored
            prefix       TEXT NOT NULL,
            amount       INTEGER NOT NULL,             -- nano-USD, >= 0
            status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
            expires_at   REAL,
            note         TEXT,
            created_at   REAL NOT NULL,
            redeemed_by  INTEGER REFERENCES accounts(id),
            redeemed_at  REAL
        );
        """,
    )
    ids = [(public_id("key_"), key_id) for (key_id,) in conn.execute("SELECT id FROM api_keys")]
    conn.executemany("UPDATE api_keys SET public_id = ? WHERE id = ?", ids)


MIGRATIONS: tuple[Migration, ...] = (
    m001_initial,
    m002_channel_health,
    m003_key_changes,
    m004_hold_owner,
    m005_caller_request_id,
    m006_accounts,
)


def apply_migrations(conn: sqlite3.Connection) -> None:
    """Apply what is missing, each in its own transaction, recording its name.

    Foreign keys are off while they run (SQLite's 12-step table rebuild needs it: a DROP TABLE would
    delete through them) and checked whole before each commit, then on again."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        for migration in MIGRATIONS:
            _apply(conn, migration)
    finally:
        conn.execute("PRAGMA foreign_keys = ON")


def _apply(conn: sqlite3.Connection, migration: Migration) -> None:
    # Checked inside the write lock: two workers starting at once apply each migration once.
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (migration.__name__,)).fetchone() is None:
            migration(conn)
            broken = conn.execute("PRAGMA foreign_key_check").fetchone()
            if broken is not None:
                raise sqlite3.IntegrityError(f"{migration.__name__}: a row of {broken[0]} points at nothing")
            conn.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)", (migration.__name__, time.time())
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
