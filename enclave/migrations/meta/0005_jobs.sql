-- The SQL path (and later models): jobs, their output reviews, and releases.
-- Result values never sit here: candidate results and released files are
-- sealed files (storage::blob) whose wrapped keys are kept in these rows.

CREATE TABLE jobs (
    id                 TEXT PRIMARY KEY,
    grant_id           TEXT NOT NULL REFERENCES grants(id),
    requester_id       TEXT NOT NULL REFERENCES users(id),
    requester_username TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('sql')),
    query_text         TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('queued', 'running', 'checked', 'pending_review',
                                                       'released', 'rejected', 'failed', 'cancelled')),
    error_code         TEXT,
    error_message      TEXT,
    plan_summary       TEXT,
    facts_json         TEXT,            -- query::PlanFacts
    datasets_json      TEXT NOT NULL,   -- versions read: [{dataset_id, version, sha256}]
    checks_json        TEXT,            -- disclosure::CheckReport
    rows_scanned       INTEGER NOT NULL DEFAULT 0,
    result_rows        INTEGER,
    suppressed_groups  INTEGER,
    result_key_json    TEXT,            -- wrapped key of the sealed candidate result
    result_sha256      TEXT,
    reviewers_required INTEGER NOT NULL,
    cpu_seconds        REAL NOT NULL DEFAULT 0,
    submitted_at       TEXT NOT NULL,
    started_at         TEXT,
    finished_at        TEXT,
    revision           INTEGER NOT NULL
) STRICT;

CREATE INDEX jobs_by_requester ON jobs(requester_id, submitted_at);
CREATE INDEX jobs_by_status ON jobs(status);
CREATE INDEX jobs_by_grant ON jobs(grant_id);

-- Output review votes (blind: a reviewer sees others' votes only after voting).
CREATE TABLE job_reviews (
    job_id            TEXT NOT NULL REFERENCES jobs(id),
    reviewer_id       TEXT NOT NULL REFERENCES users(id),
    reviewer_username TEXT NOT NULL,
    decision          TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment           TEXT NOT NULL,
    at                TEXT NOT NULL,
    PRIMARY KEY (job_id, reviewer_id)
) STRICT;

CREATE TABLE releases (
    id               TEXT PRIMARY KEY,
    job_id           TEXT NOT NULL UNIQUE REFERENCES jobs(id),
    grant_id         TEXT NOT NULL REFERENCES grants(id),
    certificate_json TEXT NOT NULL,
    files_json       TEXT NOT NULL,     -- [{format, bytes, sha256, wrapped_key}]
    released_at      TEXT NOT NULL
) STRICT;

CREATE INDEX releases_by_grant ON releases(grant_id);
