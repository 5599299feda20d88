-- The access workflow (REQUIREMENTS §3-4): projects, applications with their
-- history and materials, signed agreements, grants, usage reports, consent tables.
-- Structured values are JSON in *_json columns; the columns beside them are
-- copies for filtering. `revision` guards read-modify-write (optimistic locking).

CREATE TABLE projects (
    id                   TEXT PRIMARY KEY,
    owner_id             TEXT NOT NULL REFERENCES users(id),
    organisation         TEXT NOT NULL,
    title                TEXT NOT NULL,
    scenario_description TEXT NOT NULL,
    scenario_category    TEXT NOT NULL,
    members_json         TEXT NOT NULL,   -- user ids besides the owner
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
) STRICT;

CREATE INDEX projects_by_owner ON projects(owner_id);

CREATE TABLE applications (
    id                TEXT PRIMARY KEY,
    project_id        TEXT NOT NULL REFERENCES projects(id),
    applicant_id      TEXT NOT NULL REFERENCES users(id),
    status            TEXT NOT NULL,
    state_json        TEXT NOT NULL,      -- access::ApplicationState
    draft_json        TEXT NOT NULL,      -- access::ApplicationDraft
    providers_json    TEXT NOT NULL,      -- providers of the requested datasets
    facts_json        TEXT,               -- access::ApplicationFacts, fixed at submission
    submitted_at      TEXT,
    completeness_due  TEXT,               -- YYYY-MM-DD, China Standard Time
    review_due        TEXT,               -- YYYY-MM-DD, China Standard Time
    revision          INTEGER NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
) STRICT;

CREATE INDEX applications_by_applicant ON applications(applicant_id);
CREATE INDEX applications_by_status ON applications(status);

-- Every step of every application, in order: who, what, from and to which state.
CREATE TABLE application_events (
    application_id  TEXT NOT NULL REFERENCES applications(id),
    seq             INTEGER NOT NULL,
    event           TEXT NOT NULL,
    actor_id        TEXT NOT NULL,
    actor_username  TEXT NOT NULL,
    capacity        TEXT,                 -- provider_steward / platform_admin for reviews
    provider        TEXT,
    from_status     TEXT NOT NULL,
    to_status       TEXT NOT NULL,
    reason          TEXT,
    conditions_json TEXT,                 -- reviewer-imposed row filters and budgets
    at              TEXT NOT NULL,
    PRIMARY KEY (application_id, seq)
) STRICT;

-- Uploaded materials, encrypted at rest (file: materials/<id>.bin; key wrapped here).
CREATE TABLE application_materials (
    id              TEXT PRIMARY KEY,
    application_id  TEXT NOT NULL REFERENCES applications(id),
    name            TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    bytes           INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    wrapped_key_json TEXT NOT NULL,
    uploaded_by     TEXT NOT NULL,
    uploaded_at     TEXT NOT NULL
) STRICT;

CREATE INDEX materials_by_application ON application_materials(application_id);

-- Signed use agreements (SZ:43): the platform-countersigned receipt, verbatim.
CREATE TABLE agreements (
    application_id    TEXT PRIMARY KEY REFERENCES applications(id),
    user_id           TEXT NOT NULL REFERENCES users(id),
    agreement_version INTEGER NOT NULL,
    agreement_sha256  TEXT NOT NULL,
    signed_at         TEXT NOT NULL,
    receipt_json      TEXT NOT NULL
) STRICT;

CREATE TABLE grants (
    id              TEXT PRIMARY KEY,
    application_id  TEXT NOT NULL UNIQUE REFERENCES applications(id),
    holder_id       TEXT NOT NULL REFERENCES users(id),
    status          TEXT NOT NULL,
    valid_until     TEXT NOT NULL,        -- RFC 3339 UTC, for the expiry sweep
    grant_json      TEXT NOT NULL,        -- access::Grant without the counters
    jobs_used       INTEGER NOT NULL DEFAULT 0,
    epsilon_used    REAL NOT NULL DEFAULT 0,
    delta_used      REAL NOT NULL DEFAULT 0,
    cpu_seconds_used REAL NOT NULL DEFAULT 0,
    rows_released   INTEGER NOT NULL DEFAULT 0,
    revision        INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
) STRICT;

CREATE INDEX grants_by_holder ON grants(holder_id);
CREATE INDEX grants_by_status ON grants(status, valid_until);

CREATE TABLE grant_events (
    grant_id   TEXT NOT NULL REFERENCES grants(id),
    seq        INTEGER NOT NULL,
    event      TEXT NOT NULL,
    actor      TEXT NOT NULL,
    from_status TEXT NOT NULL,
    to_status  TEXT NOT NULL,
    reason     TEXT,
    at         TEXT NOT NULL,
    PRIMARY KEY (grant_id, seq)
) STRICT;

-- Usage feedback (SZ:43(1), GD:46).
CREATE TABLE usage_reports (
    id           TEXT PRIMARY KEY,
    grant_id     TEXT NOT NULL REFERENCES grants(id),
    author_id    TEXT NOT NULL REFERENCES users(id),
    report_json  TEXT NOT NULL,
    submitted_at TEXT NOT NULL
) STRICT;

CREATE INDEX usage_reports_by_grant ON usage_reports(grant_id);

-- Consent tables (GD:41): each version an encrypted Parquet file of privacy-unit
-- values under datasets/<dataset>.consent/v<N>/, recorded here.
CREATE TABLE consent_versions (
    dataset_id   TEXT NOT NULL REFERENCES datasets(id),
    version      INTEGER NOT NULL,
    dir          TEXT NOT NULL,
    subjects     INTEGER NOT NULL,
    sha256       TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    PRIMARY KEY (dataset_id, version)
) STRICT;
