-- Organisations as entities, persons behind accounts, forced password changes,
-- privileged account changes awaiting a second administrator (issue #16).

-- One row per organisation. `name_key` is the name normalised (NFKC, zero-width
-- characters and whitespace removed, Latin letters case-folded): two spellings
-- of one name are one organisation. `credit_code` (统一社会信用代码) is NULL only
-- for organisations migrated from the free-text column and for individuals.
CREATE TABLE organisations (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    name_key          TEXT NOT NULL UNIQUE,
    credit_code       TEXT UNIQUE,
    organisation_type TEXT NOT NULL,
    created_at        TEXT NOT NULL
) STRICT;

-- NULL until the account's free-text organisation is turned into an entity
-- (done once, when the data directory is opened after this migration).
ALTER TABLE users ADD COLUMN organisation_id TEXT REFERENCES organisations(id);
-- HMAC-SHA256 (key derived from the master key) of the 身份证号, hex; never the
-- number. NULL: an account made before persons were bound; it counts as its own person.
ALTER TABLE users ADD COLUMN person_key TEXT;
-- The next session can only change the password (new accounts, resets).
ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0
    CHECK (must_change_password IN (0, 1));
-- A one-time reset code (stored as the password hash) stops working at this time.
ALTER TABLE users ADD COLUMN password_expires_at TEXT;

CREATE INDEX users_by_person ON users(person_key);
CREATE INDEX users_by_organisation ON users(organisation_id);

-- A privileged account change (creating a steward or an admin, resetting a
-- privileged account's password) waiting for another administrator.
CREATE TABLE account_requests (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('create_user', 'reset_password')),
    username          TEXT NOT NULL,
    body_json         TEXT NOT NULL,   -- the new account (never a password) or {}
    requested_by      TEXT NOT NULL,   -- account id, or cli:<user> for the host operator
    requested_by_name TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'refused')),
    decided_by        TEXT,
    decided_by_name   TEXT,
    created_at        TEXT NOT NULL,
    decided_at        TEXT
) STRICT;

CREATE INDEX account_requests_by_status ON account_requests(status);
