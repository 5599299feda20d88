-- Integrity of the authorization state (issue 16).
--
-- Security-relevant rows carry `mac`: HMAC-SHA256 under a key derived from
-- the master key over the row's covered columns (store/seal.rs). Rows that
-- exist at this upgrade get their MAC once, at the next open of the data
-- directory (they are trusted at upgrade); `meta_seal` says whether that
-- happened, as a MAC the key holder alone can write.
ALTER TABLE users ADD COLUMN mac TEXT;
ALTER TABLE applications ADD COLUMN mac TEXT;
ALTER TABLE application_events ADD COLUMN mac TEXT;
ALTER TABLE grants ADD COLUMN mac TEXT;
ALTER TABLE job_reviews ADD COLUMN mac TEXT;
ALTER TABLE releases ADD COLUMN mac TEXT;
ALTER TABLE privacy_ledger ADD COLUMN mac TEXT;

CREATE TABLE meta_seal (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL             -- 'pending', or the MAC of the sealed marker
) STRICT;
INSERT INTO meta_seal (id, state) VALUES (1, 'pending');

-- Model approvals keep every decision: a later approval no longer replaces
-- a rejection; a rejection counts until its author withdraws it.
CREATE TABLE model_decisions (
    id                TEXT PRIMARY KEY,
    sha256            TEXT NOT NULL,
    dataset_id        TEXT NOT NULL,
    decision          TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    reviewer_id       TEXT NOT NULL REFERENCES users(id),
    reviewer_username TEXT NOT NULL,
    comment           TEXT NOT NULL,
    at                TEXT NOT NULL,
    withdrawn_at      TEXT,
    mac               TEXT
) STRICT;

INSERT INTO model_decisions (id, sha256, dataset_id, decision, reviewer_id, reviewer_username, comment, at)
SELECT sha256 || '/' || dataset_id, sha256, dataset_id, decision, reviewer_id, reviewer_username, comment, at
FROM model_approvals;

DROP TABLE model_approvals;
ALTER TABLE model_decisions RENAME TO model_approvals;
CREATE INDEX model_approvals_by_model ON model_approvals(sha256, dataset_id);
