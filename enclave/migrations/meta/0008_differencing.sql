-- Differencing protection: the sketches of the privacy units behind each row
-- of a result (disclosure::differencing::Stored, JSON), sealed like the
-- result itself (storage::blob; AAD anyu:differencing:<job id>) and written
-- in the job's own transaction. Never released: every later job of the same
-- grant or researcher is compared against them.
CREATE TABLE job_fingerprints (
    job_id           TEXT PRIMARY KEY REFERENCES jobs(id),
    grant_id         TEXT NOT NULL REFERENCES grants(id),
    requester_id     TEXT NOT NULL REFERENCES users(id),
    sealed           BLOB NOT NULL,
    wrapped_key_json TEXT NOT NULL
) STRICT;

CREATE INDEX job_fingerprints_by_grant ON job_fingerprints(grant_id);
CREATE INDEX job_fingerprints_by_requester ON job_fingerprints(requester_id);
