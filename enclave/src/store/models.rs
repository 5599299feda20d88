//! Models that entered the domain, and stewards' approvals of them.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::Store;
use super::identity::{json_from_str, json_to_string};
use crate::{Error, Result};

/// A component as one researcher uploaded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelRecord {
    /// SHA-256 of the component: its identity.
    pub sha256: String,
    pub owner_id: String,
    pub owner_username: String,
    /// The uploader's name for it.
    pub name: String,
    pub size: u64,
    /// What intake found: imports, exports, WASI use.
    #[schema(value_type = Object)]
    pub info: serde_json::Value,
    pub uploaded_at: String,
}

/// A steward's decision on a model for a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelApprovalRecord {
    pub sha256: String,
    pub dataset_id: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub reviewer_id: String,
    pub reviewer_username: String,
    pub comment: String,
    pub at: String,
}

fn model_from_row(row: &SqliteRow) -> Result<ModelRecord> {
    let size: i64 = row.try_get("size")?;
    let info: String = row.try_get("info_json")?;
    Ok(ModelRecord {
        sha256: row.try_get("sha256")?,
        owner_id: row.try_get("owner_id")?,
        owner_username: row.try_get("owner_username")?,
        name: row.try_get("name")?,
        size: u64::try_from(size).map_err(|_| Error::Internal("stored model size".into()))?,
        info: json_from_str(&info, "model info")?,
        uploaded_at: row.try_get("uploaded_at")?,
    })
}

fn approval_from_row(row: &SqliteRow) -> Result<ModelApprovalRecord> {
    Ok(ModelApprovalRecord {
        sha256: row.try_get("sha256")?,
        dataset_id: row.try_get("dataset_id")?,
        decision: row.try_get("decision")?,
        reviewer_id: row.try_get("reviewer_id")?,
        reviewer_username: row.try_get("reviewer_username")?,
        comment: row.try_get("comment")?,
        at: row.try_get("at")?,
    })
}

impl Store {
    /// Records an upload; the same owner uploading the same bytes again
    /// keeps the first record (`false`).
    pub async fn insert_model(&self, m: &ModelRecord) -> Result<bool> {
        let n = sqlx::query(
            "INSERT OR IGNORE INTO models (sha256, owner_id, owner_username, name, size, info_json, uploaded_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&m.sha256)
        .bind(&m.owner_id)
        .bind(&m.owner_username)
        .bind(&m.name)
        .bind(i64::try_from(m.size).map_err(|_| Error::Internal("model size".into()))?)
        .bind(json_to_string(&m.info, "model info")?)
        .bind(&m.uploaded_at)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// The record of `sha256` uploaded by `owner_id`.
    pub async fn model_of(&self, sha256: &str, owner_id: &str) -> Result<Option<ModelRecord>> {
        let row = sqlx::query("SELECT * FROM models WHERE sha256 = ? AND owner_id = ?")
            .bind(sha256)
            .bind(owner_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(model_from_row).transpose()
    }

    /// Every upload of `sha256`, oldest first.
    pub async fn model_uploads(&self, sha256: &str) -> Result<Vec<ModelRecord>> {
        let rows =
            sqlx::query("SELECT * FROM models WHERE sha256 = ? ORDER BY uploaded_at, owner_id")
                .bind(sha256)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(model_from_row).collect()
    }

    /// Uploads, newest first; only `owner_id`'s when given.
    pub async fn list_models(&self, owner_id: Option<&str>) -> Result<Vec<ModelRecord>> {
        let rows = match owner_id {
            Some(o) => {
                sqlx::query(
                    "SELECT * FROM models WHERE owner_id = ? ORDER BY uploaded_at DESC, sha256",
                )
                .bind(o)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query("SELECT * FROM models ORDER BY uploaded_at DESC, sha256")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(model_from_row).collect()
    }

    /// Records a decision, replacing an earlier one on the same pair.
    pub async fn put_model_approval(&self, a: &ModelApprovalRecord) -> Result<()> {
        sqlx::query(
            "INSERT OR REPLACE INTO model_approvals \
             (sha256, dataset_id, decision, reviewer_id, reviewer_username, comment, at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.sha256)
        .bind(&a.dataset_id)
        .bind(&a.decision)
        .bind(&a.reviewer_id)
        .bind(&a.reviewer_username)
        .bind(&a.comment)
        .bind(&a.at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The decisions on `sha256`, by dataset.
    pub async fn model_approvals(&self, sha256: &str) -> Result<Vec<ModelApprovalRecord>> {
        let rows =
            sqlx::query("SELECT * FROM model_approvals WHERE sha256 = ? ORDER BY dataset_id")
                .bind(sha256)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(approval_from_row).collect()
    }
}
