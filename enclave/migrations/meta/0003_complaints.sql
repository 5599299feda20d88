-- Public complaints about open data (SZ:65): answered within 10 working days.

CREATE TABLE complaints (
    id           TEXT PRIMARY KEY,
    dataset_id   TEXT,
    subject      TEXT NOT NULL,
    body         TEXT NOT NULL,
    contact      TEXT,
    submitted_by TEXT NOT NULL,
    submitted_at TEXT NOT NULL,
    due_date     TEXT NOT NULL,      -- YYYY-MM-DD, China Standard Time
    status       TEXT NOT NULL CHECK (status IN ('open', 'answered')),
    answer       TEXT,
    answered_by  TEXT,
    answered_at  TEXT
) STRICT;

CREATE INDEX complaints_status_due ON complaints (status, due_date);
