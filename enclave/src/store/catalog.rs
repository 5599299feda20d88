//! Catalog tables: datasets, manifest revisions, data versions.

use ring::digest;
use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, now_rfc3339};
use crate::catalog::{Manifest, OpenType};
use crate::ingest::QualityReport;
use crate::{Error, Result};

/// A dataset as the catalog knows it: its current manifest and newest version.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetRecord {
    pub manifest: Manifest,
    pub manifest_revision: u64,
    pub created_at: String,
    pub updated_at: String,
    pub latest_version: Option<VersionRecord>,
}

/// One immutable encrypted version of a dataset.
#[derive(Debug, Clone, Serialize)]
pub struct VersionRecord {
    pub dataset_id: String,
    pub version: u64,
    pub manifest_revision: u64,
    /// Directory of the version, relative to the data directory.
    #[serde(skip)]
    pub dir: String,
    pub rows: u64,
    pub bytes: u64,
    /// SHA-256 of the encrypted Parquet file.
    pub sha256: String,
    /// SHA-256 of the file the steward imported.
    pub source_sha256: String,
    pub source_bytes: u64,
    pub quality: QualityReport,
    pub created_at: String,
    pub created_by: String,
}

/// A stored manifest revision.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestRevision {
    pub dataset_id: String,
    pub revision: u64,
    pub sha256: String,
    pub open_type: OpenType,
    pub legal_basis: Option<String>,
    pub created_at: String,
    pub created_by: String,
}

/// What an import hands to the store once its files are in place.
#[derive(Debug, Clone)]
pub struct ImportRecord<'a> {
    pub manifest: &'a Manifest,
    pub manifest_toml: &'a str,
    /// Required when the open type differs from the current manifest's (SZ:15).
    pub legal_basis: Option<&'a str>,
    pub version: u64,
    pub dir: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub source_sha256: String,
    pub source_bytes: u64,
    pub quality: &'a QualityReport,
    pub actor: &'a str,
}

fn open_type_str(t: OpenType) -> &'static str {
    match t {
        OpenType::Unconditional => "unconditional",
        OpenType::Conditional => "conditional",
        OpenType::NotOpen => "not_open",
    }
}

fn parse_open_type(s: &str) -> Result<OpenType> {
    match s {
        "unconditional" => Ok(OpenType::Unconditional),
        "conditional" => Ok(OpenType::Conditional),
        "not_open" => Ok(OpenType::NotOpen),
        other => Err(Error::Internal(format!(
            "stored open type `{other}` is unknown"
        ))),
    }
}

fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::Internal(format!("stored {what} is negative")))
}

fn to_i64(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::InvalidArgument(format!("{what} is too large")))
}

fn version_from_row(row: &SqliteRow) -> Result<VersionRecord> {
    let quality: String = row.try_get("quality_json")?;
    Ok(VersionRecord {
        dataset_id: row.try_get("dataset_id")?,
        version: to_u64(row.try_get("version")?, "version")?,
        manifest_revision: to_u64(row.try_get("manifest_revision")?, "manifest revision")?,
        dir: row.try_get("dir")?,
        rows: to_u64(row.try_get("rows")?, "row count")?,
        bytes: to_u64(row.try_get("bytes")?, "byte count")?,
        sha256: row.try_get("sha256")?,
        source_sha256: row.try_get("source_sha256")?,
        source_bytes: to_u64(row.try_get("source_bytes")?, "source size")?,
        quality: serde_json::from_str(&quality)
            .map_err(|e| Error::Internal(format!("stored quality report unreadable: {e}")))?,
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
    })
}

const VERSION_COLUMNS: &str = "dataset_id, version, manifest_revision, dir, rows, bytes, sha256, \
     source_sha256, source_bytes, quality_json, created_at, created_by";

impl Store {
    /// Records a finished import in one transaction: the manifest (a new revision
    /// when its text changed) and the new version. An open-type change without a
    /// legal basis is refused and nothing is written.
    pub async fn record_import(&self, rec: &ImportRecord<'_>) -> Result<ManifestRevision> {
        let id = rec.manifest.id();
        let now = now_rfc3339();
        let sha = hex::encode(digest::digest(
            &digest::SHA256,
            rec.manifest_toml.as_bytes(),
        ));
        let open_type = rec.manifest.dataset.open_type;
        let manifest_json = serde_json::to_string(rec.manifest)
            .map_err(|e| Error::Internal(format!("manifest does not serialize: {e}")))?;
        let quality_json = serde_json::to_string(rec.quality)
            .map_err(|e| Error::Internal(format!("quality report does not serialize: {e}")))?;

        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let current = sqlx::query(
            "SELECT revision, sha256, open_type FROM dataset_manifests \
             WHERE dataset_id = ? ORDER BY revision DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;

        let legal_basis = rec.legal_basis.map(str::trim).filter(|s| !s.is_empty());
        let (revision, created_at) = match current {
            Some(row) => {
                let revision: i64 = row.try_get("revision")?;
                let old_sha: String = row.try_get("sha256")?;
                let old_type = parse_open_type(row.try_get("open_type")?)?;
                if old_type != open_type && legal_basis.is_none() {
                    return Err(Error::InvalidArgument(format!(
                        "dataset `{id}` changes open type from {} to {}: a legal basis is required (SZ:15)",
                        open_type_str(old_type),
                        open_type_str(open_type)
                    )));
                }
                let created_at: String =
                    sqlx::query_scalar("SELECT created_at FROM datasets WHERE id = ?")
                        .bind(id)
                        .fetch_one(&mut *tx)
                        .await?;
                if old_sha == sha {
                    (revision, created_at)
                } else {
                    (revision + 1, created_at)
                }
            }
            None => (1, now.clone()),
        };
        let is_new_revision =
            sqlx::query("SELECT 1 FROM dataset_manifests WHERE dataset_id = ? AND revision = ?")
                .bind(id)
                .bind(revision)
                .fetch_optional(&mut *tx)
                .await?
                .is_none();

        sqlx::query(
            "INSERT INTO datasets (id, open_type, grade, provider, manifest_revision, manifest_json, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT(id) DO UPDATE SET open_type = excluded.open_type, grade = excluded.grade, \
             provider = excluded.provider, manifest_revision = excluded.manifest_revision, \
             manifest_json = excluded.manifest_json, updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(open_type_str(open_type))
        .bind(&rec.manifest.dataset.grade)
        .bind(&rec.manifest.dataset.provider)
        .bind(revision)
        .bind(&manifest_json)
        .bind(&created_at)
        .bind(&now)
        .execute(&mut *tx)
        .await?;

        if is_new_revision {
            sqlx::query(
                "INSERT INTO dataset_manifests (dataset_id, revision, manifest_toml, sha256, open_type, legal_basis, created_at, created_by) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(revision)
            .bind(rec.manifest_toml)
            .bind(&sha)
            .bind(open_type_str(open_type))
            .bind(legal_basis)
            .bind(&now)
            .bind(rec.actor)
            .execute(&mut *tx)
            .await?;
        }

        let inserted = sqlx::query(&format!(
            "INSERT INTO dataset_versions ({VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(id)
        .bind(to_i64(rec.version, "version")?)
        .bind(revision)
        .bind(&rec.dir)
        .bind(to_i64(rec.rows, "row count")?)
        .bind(to_i64(rec.bytes, "byte count")?)
        .bind(&rec.sha256)
        .bind(&rec.source_sha256)
        .bind(to_i64(rec.source_bytes, "source size")?)
        .bind(&quality_json)
        .bind(&now)
        .bind(rec.actor)
        .execute(&mut *tx)
        .await;
        if let Err(sqlx::Error::Database(e)) = &inserted
            && e.is_unique_violation()
        {
            return Err(Error::Conflict(format!(
                "dataset `{id}` already has version {}",
                rec.version
            )));
        }
        inserted?;
        tx.commit().await?;

        Ok(ManifestRevision {
            dataset_id: id.to_string(),
            revision: revision as u64,
            sha256: sha,
            open_type,
            legal_basis: legal_basis.map(str::to_string),
            created_at: now,
            created_by: rec.actor.to_string(),
        })
    }

    /// Every dataset with its current manifest and newest version, ordered by id.
    pub async fn list_datasets(&self) -> Result<Vec<DatasetRecord>> {
        let rows = sqlx::query(
            "SELECT id, manifest_revision, manifest_json, created_at, updated_at FROM datasets ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.dataset_from_row(&row).await?);
        }
        Ok(out)
    }

    /// One dataset, or `None` when the id is unknown.
    pub async fn dataset(&self, id: &str) -> Result<Option<DatasetRecord>> {
        let row = sqlx::query(
            "SELECT id, manifest_revision, manifest_json, created_at, updated_at FROM datasets WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Some(self.dataset_from_row(&row).await?)),
            None => Ok(None),
        }
    }

    /// All versions of a dataset, newest first.
    pub async fn versions(&self, id: &str) -> Result<Vec<VersionRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM dataset_versions WHERE dataset_id = ? ORDER BY version DESC"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_from_row).collect()
    }

    /// Manifest revisions of a dataset, oldest first.
    pub async fn manifest_revisions(&self, id: &str) -> Result<Vec<ManifestRevision>> {
        let rows = sqlx::query(
            "SELECT dataset_id, revision, sha256, open_type, legal_basis, created_at, created_by \
             FROM dataset_manifests WHERE dataset_id = ? ORDER BY revision",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ManifestRevision {
                    dataset_id: row.try_get("dataset_id")?,
                    revision: to_u64(row.try_get("revision")?, "revision")?,
                    sha256: row.try_get("sha256")?,
                    open_type: parse_open_type(row.try_get("open_type")?)?,
                    legal_basis: row.try_get("legal_basis")?,
                    created_at: row.try_get("created_at")?,
                    created_by: row.try_get("created_by")?,
                })
            })
            .collect()
    }

    async fn dataset_from_row(&self, row: &SqliteRow) -> Result<DatasetRecord> {
        let id: String = row.try_get("id")?;
        let json: String = row.try_get("manifest_json")?;
        let manifest: Manifest = serde_json::from_str(&json)
            .map_err(|e| Error::Internal(format!("stored manifest of `{id}` unreadable: {e}")))?;
        let latest = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM dataset_versions WHERE dataset_id = ? ORDER BY version DESC LIMIT 1"
        ))
        .bind(&id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(DatasetRecord {
            manifest,
            manifest_revision: to_u64(row.try_get("manifest_revision")?, "manifest revision")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            latest_version: latest.as_ref().map(version_from_row).transpose()?,
        })
    }
}
