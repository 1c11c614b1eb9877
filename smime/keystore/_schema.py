"""The versioned schema. Each step is applied once, in order, inside one transaction."""

from __future__ import annotations

# Steps are written in the SQL both SQLite and PostgreSQL accept; "{serial}" is the dialect's
# auto-increment primary key. Never edit a released step: append a new one.
STEPS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE keys (
            id {serial},
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            subject TEXT NOT NULL,
            emails TEXT NOT NULL,
            domains TEXT NOT NULL,
            not_before BIGINT NOT NULL,
            not_after BIGINT NOT NULL,
            can_encrypt INTEGER NOT NULL,
            pem TEXT NOT NULL,
            size BIGINT NOT NULL,
            pinned INTEGER NOT NULL DEFAULT 0,
            revoked INTEGER NOT NULL DEFAULT 0,
            first_seen BIGINT NOT NULL,
            last_seen BIGINT NOT NULL,
            last_used BIGINT,
            use_count BIGINT NOT NULL DEFAULT 0,
            source_message_id TEXT,
            capabilities TEXT NOT NULL DEFAULT '',
            obtained TEXT NOT NULL,
            UNIQUE (kind, name))""",
        "CREATE INDEX keys_fp ON keys (fingerprint)",
        "CREATE INDEX keys_lru ON keys (kind, pinned, last_used, last_seen)",
        """CREATE TABLE key_names (
            key_id BIGINT NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
            value TEXT NOT NULL,
            is_domain INTEGER NOT NULL)""",
        "CREATE INDEX key_names_value ON key_names (value, is_domain)",
        "CREATE INDEX key_names_key ON key_names (key_id)",
        """CREATE TABLE pending (
            id {serial},
            address TEXT NOT NULL,
            domain TEXT NOT NULL,
            old_fingerprint TEXT,
            new_fingerprint TEXT NOT NULL,
            message_id TEXT,
            reason TEXT NOT NULL,
            created BIGINT NOT NULL,
            pem TEXT NOT NULL,
            capabilities TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'pending')""",
        """CREATE TABLE audit (
            id {serial},
            at BIGINT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            name TEXT NOT NULL,
            old_fingerprint TEXT,
            new_fingerprint TEXT,
            domain TEXT NOT NULL DEFAULT '',
            message_id TEXT,
            detail TEXT NOT NULL DEFAULT '')""",
        "CREATE INDEX audit_domain ON audit (domain, at)",
        "CREATE INDEX audit_msg ON audit (message_id, at)",
        """CREATE TABLE alerts (
            id {serial},
            at BIGINT NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL)""",
    ),
    (
        # Lookups used to parse every candidate's PEM for its key usage; store it instead.
        # Rows written before this step are filled in by SqlKeyStore._upgrade (a parse each).
        "ALTER TABLE keys ADD COLUMN can_sign INTEGER",
        # The size cap was checked with sum(size) over every harvested key on each harvest
        # (90 ms at 300k keys, inside the write lock); keep the running total instead.
        "CREATE TABLE harvested_total (total BIGINT NOT NULL)",
        "INSERT INTO harvested_total (total) SELECT coalesce(sum(size), 0) FROM keys WHERE kind = 'harvested'",
    ),
)

VERSION = len(STEPS)
