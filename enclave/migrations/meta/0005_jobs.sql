-- The SQL path (and later models): jobs, their output reviews, and releases.
-- Result values are never stored in the clear: candidates and released
-- files are sealed (storage::blob) and their data keys wrapped by the master key.

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
    result_sha256      TEXT,            -- of the candidate's Arrow IPC bytes (job_results)
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

-- A job's candidate result, sealed (storage::blob; AAD anyu:result:<job id>).
-- Results are at most max_output_rows rows, so they live beside their job
-- and are written in the job's own transaction.
CREATE TABLE job_results (
    job_id           TEXT PRIMARY KEY REFERENCES jobs(id),
    sealed           BLOB NOT NULL,
    wrapped_key_json TEXT NOT NULL,
    sha256           TEXT NOT NULL
) STRICT;

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
