-- Identity: real-name accounts, login sessions and API tokens.
-- Secrets are never stored: passwords as Argon2id PHC strings, tokens as SHA-256 hex.

CREATE TABLE users (
    id                     TEXT PRIMARY KEY,
    username               TEXT NOT NULL UNIQUE,
    real_name              TEXT NOT NULL,
    organisation           TEXT NOT NULL,
    organisation_type      TEXT NOT NULL,
    role                   TEXT NOT NULL CHECK (role IN ('researcher', 'steward', 'admin', 'auditor')),
    provider_agencies_json TEXT NOT NULL,
    verified               INTEGER NOT NULL CHECK (verified IN (0, 1)),
    credit_flags_json      TEXT NOT NULL,
    disabled               INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    password_hash          TEXT NOT NULL,
    failed_logins          INTEGER NOT NULL DEFAULT 0,
    locked_until           TEXT,
    created_at             TEXT NOT NULL,
    updated_at             TEXT NOT NULL
) STRICT;

CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;

CREATE INDEX sessions_by_user ON sessions(user_id);

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user_id    TEXT NOT NULL REFERENCES users(id),
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
) STRICT;

CREATE INDEX api_tokens_by_user ON api_tokens(user_id);
