-- Output review: which reviewer fetched which revision of a result's review
-- packet. A vote counts only from a reviewer who read the packet of the
-- result as it stands (issue: nobody approves what they have not seen).
CREATE TABLE job_review_reads (
    job_id       TEXT NOT NULL REFERENCES jobs(id),
    reviewer_id  TEXT NOT NULL REFERENCES users(id),
    job_revision INTEGER NOT NULL,
    at           TEXT NOT NULL,
    PRIMARY KEY (job_id, reviewer_id)
) STRICT;
