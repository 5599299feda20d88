-- Audit log, persisted format v1. See enclave/src/audit/mod.rs for the design.
--
-- `canonical` holds the exact bytes that were hashed; the other event columns
-- are copies kept for indexed queries and are checked against `canonical` by
-- `audit::verify`. Hashes and signatures are raw bytes (32 and 64).

CREATE TABLE events (
    seq       INTEGER PRIMARY KEY,  -- 1-based, gap-free; the rowid
    id        TEXT    NOT NULL,     -- UUID v7
    time      TEXT    NOT NULL,     -- RFC 3339 UTC, microseconds
    actor     TEXT    NOT NULL,
    role      TEXT    NOT NULL,
    action    TEXT    NOT NULL,
    object    TEXT    NOT NULL,
    outcome   TEXT    NOT NULL,
    canonical BLOB    NOT NULL,
    prev_hash BLOB    NOT NULL,
    hash      BLOB    NOT NULL
) STRICT;

-- Secondary indexes hold the rowid, so `WHERE actor = ? AND seq > ? ORDER BY seq`
-- is an index range scan.
CREATE INDEX events_time ON events (time);
CREATE INDEX events_actor ON events (actor);
CREATE INDEX events_action ON events (action);
CREATE INDEX events_object ON events (object);

-- A signed statement "the chain hash at `seq` is `hash`", covering the events
-- (from_seq, seq]; `hashes` is the concatenation of their 32-byte hashes so that
-- verification can name the first altered event even if the chain was re-hashed.
CREATE TABLE checkpoints (
    seq       INTEGER PRIMARY KEY,
    from_seq  INTEGER NOT NULL,
    hash      BLOB    NOT NULL,
    time      TEXT    NOT NULL,
    hashes    BLOB    NOT NULL,
    key_id    TEXT    NOT NULL,
    signature BLOB    NOT NULL
) STRICT;

-- Append-only against accidents and bugs. Not a security boundary: anyone who
-- can write the file can drop these; the hash chain and signatures catch that.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
