-- Researchers' WebAssembly models (SZ:27(3), SZ:44): the code that entered the
-- domain, stewards' approvals of a model for a dataset, and model jobs.
--
-- `jobs.kind` gains 'model'. SQLite cannot change a CHECK constraint in place,
-- so the table is rebuilt. sqlx runs SQLite migrations inside a transaction,
-- where `PRAGMA foreign_keys` cannot be switched off; instead the rows that
-- reference jobs are set aside and put back once the new table has the name,
-- so no foreign key is ever left dangling (checked at commit: deferred).

PRAGMA defer_foreign_keys = ON;

CREATE TABLE jobs_new (
    id                 TEXT PRIMARY KEY,
    grant_id           TEXT NOT NULL REFERENCES grants(id),
    requester_id       TEXT NOT NULL REFERENCES users(id),
    requester_username TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('sql', 'model')),
    query_text         TEXT NOT NULL,   -- the SQL, or a model's input SQL
    status             TEXT NOT NULL CHECK (status IN ('queued', 'running', 'checked', 'pending_review',
                                                       'released', 'rejected', 'failed', 'cancelled')),
    error_code         TEXT,
    error_message      TEXT,
    plan_summary       TEXT,
    facts_json         TEXT,
    datasets_json      TEXT NOT NULL,
    checks_json        TEXT,
    rows_scanned       INTEGER NOT NULL DEFAULT 0,
    result_rows        INTEGER,
    suppressed_groups  INTEGER,
    result_sha256      TEXT,
    reviewers_required INTEGER NOT NULL,
    cpu_seconds        REAL NOT NULL DEFAULT 0,
    submitted_at       TEXT NOT NULL,
    started_at         TEXT,
    finished_at        TEXT,
    revision           INTEGER NOT NULL,
    model_sha256       TEXT,            -- kind = 'model': the component's SHA-256
    model_params       TEXT,            -- kind = 'model': the params string given to run()
    CHECK ((kind = 'model') = (model_sha256 IS NOT NULL))
) STRICT;

INSERT INTO jobs_new (id, grant_id, requester_id, requester_username, kind, query_text, status,
                      error_code, error_message, plan_summary, facts_json, datasets_json,
                      checks_json, rows_scanned, result_rows, suppressed_groups, result_sha256,
                      reviewers_required, cpu_seconds, submitted_at, started_at, finished_at,
                      revision)
SELECT id, grant_id, requester_id, requester_username, kind, query_text, status,
       error_code, error_message, plan_summary, facts_json, datasets_json,
       checks_json, rows_scanned, result_rows, suppressed_groups, result_sha256,
       reviewers_required, cpu_seconds, submitted_at, started_at, finished_at,
       revision
FROM jobs;

CREATE TEMP TABLE keep_releases AS SELECT * FROM releases;
CREATE TEMP TABLE keep_reviews AS SELECT * FROM job_reviews;
CREATE TEMP TABLE keep_results AS SELECT * FROM job_results;
DELETE FROM releases;
DELETE FROM job_reviews;
DELETE FROM job_results;

DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;

INSERT INTO job_results SELECT * FROM keep_results;
INSERT INTO job_reviews SELECT * FROM keep_reviews;
INSERT INTO releases SELECT * FROM keep_releases;
DROP TABLE keep_results;
DROP TABLE keep_reviews;
DROP TABLE keep_releases;

CREATE INDEX jobs_by_requester ON jobs(requester_id, submitted_at);
CREATE INDEX jobs_by_status ON jobs(status);
CREATE INDEX jobs_by_grant ON jobs(grant_id);

-- A model job's log (log.write lines, WASI stdout/stderr): model output that
-- may hold data, so sealed like the result (AAD anyu:log:<job id>) and shown
-- to output reviewers only, never released.
ALTER TABLE job_results ADD COLUMN log_sealed BLOB;
ALTER TABLE job_results ADD COLUMN log_key_json TEXT;

-- A component as its uploader sent it. The bytes live in models/<sha256>.wasm
-- (code, not data: stored plain, checked against the hash on every load).
CREATE TABLE models (
    sha256          TEXT NOT NULL,
    owner_id        TEXT NOT NULL REFERENCES users(id),
    owner_username  TEXT NOT NULL,
    name            TEXT NOT NULL,
    size            INTEGER NOT NULL,
    info_json       TEXT NOT NULL,      -- imports, exports, WASI use (sandbox::ModelInfo)
    uploaded_at     TEXT NOT NULL,
    PRIMARY KEY (sha256, owner_id)
) STRICT;

-- A steward's decision on running a model (by hash) on a dataset of their
-- provider. The newest decision counts; history is in the audit log.
CREATE TABLE model_approvals (
    sha256            TEXT NOT NULL,
    dataset_id        TEXT NOT NULL,
    decision          TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    reviewer_id       TEXT NOT NULL REFERENCES users(id),
    reviewer_username TEXT NOT NULL,
    comment           TEXT NOT NULL,
    at                TEXT NOT NULL,
    PRIMARY KEY (sha256, dataset_id)
) STRICT;
