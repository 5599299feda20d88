-- Catalog: datasets, their manifest revisions, and immutable data versions.

CREATE TABLE datasets (
    id               TEXT PRIMARY KEY,
    open_type        TEXT NOT NULL,
    grade            TEXT NOT NULL,
    provider         TEXT NOT NULL,
    manifest_revision INTEGER NOT NULL,
    manifest_json    TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
) STRICT;

-- Every manifest a dataset ever had. A change of open type records its legal basis (SZ:15).
CREATE TABLE dataset_manifests (
    dataset_id   TEXT NOT NULL REFERENCES datasets(id),
    revision     INTEGER NOT NULL,
    manifest_toml TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    open_type    TEXT NOT NULL,
    legal_basis  TEXT,
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    PRIMARY KEY (dataset_id, revision)
) STRICT;

-- Immutable encrypted data versions; `dir` is relative to the data directory.
CREATE TABLE dataset_versions (
    dataset_id        TEXT NOT NULL REFERENCES datasets(id),
    version           INTEGER NOT NULL,
    manifest_revision INTEGER NOT NULL,
    dir               TEXT NOT NULL,
    rows              INTEGER NOT NULL,
    bytes             INTEGER NOT NULL,
    sha256            TEXT NOT NULL,
    source_sha256     TEXT NOT NULL,
    source_bytes      INTEGER NOT NULL,
    quality_json      TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    created_by        TEXT NOT NULL,
    PRIMARY KEY (dataset_id, version)
) STRICT;
