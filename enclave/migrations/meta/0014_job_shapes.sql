-- Oracle campaigns (issue 15): every job's plan shape — a keyed hash of its
-- optimised plan with the constants blanked — and its variant (the same
-- with the constants), per grant. Many variants of one shape are a search
-- over a bound (22 jobs gave one person's exact value).
CREATE TABLE job_shapes (
    job_id   TEXT PRIMARY KEY REFERENCES jobs(id),
    grant_id TEXT NOT NULL,
    shape    TEXT NOT NULL,
    variant  TEXT NOT NULL
) STRICT;
CREATE INDEX job_shapes_by_grant ON job_shapes (grant_id, shape);
