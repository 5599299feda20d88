//! Models that entered the domain, and stewards' approvals of them.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::Store;
use super::identity::{json_from_str, json_to_string};
use super::seal::{KeyValue, MODEL_APPROVALS, check_row, reseal};
use crate::{Error, Result};

/// A component as one researcher uploaded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// SHA-256 of the component: its identity.
    pub sha256: String,
    pub owner_id: String,
    pub owner_username: String,
    /// The uploader's name for it.
    pub name: String,
    pub size: u64,
    /// What intake found: imports, exports, WASI use.
    pub info: serde_json::Value,
    pub uploaded_at: String,
}

/// A steward's decision on a model for a dataset. Every decision is kept;
/// a rejection counts until its author withdraws it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelApprovalRecord {
    pub id: String,
    pub sha256: String,
    pub dataset_id: String,
    /// `approve` or `reject`.
    pub decision: String,
    pub reviewer_id: String,
    pub reviewer_username: String,
    pub comment: String,
    pub at: String,
    /// When its author withdrew it; a withdrawn decision no longer counts.
    pub withdrawn_at: Option<String>,
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
        id: row.try_get("id")?,
        sha256: row.try_get("sha256")?,
        dataset_id: row.try_get("dataset_id")?,
        decision: row.try_get("decision")?,
        reviewer_id: row.try_get("reviewer_id")?,
        reviewer_username: row.try_get("reviewer_username")?,
        comment: row.try_get("comment")?,
        at: row.try_get("at")?,
        withdrawn_at: row.try_get("withdrawn_at")?,
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

    /// Records a decision beside the earlier ones (none is replaced).
    pub async fn put_model_approval(&self, a: &ModelApprovalRecord) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO model_approvals \
             (id, sha256, dataset_id, decision, reviewer_id, reviewer_username, comment, at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.id)
        .bind(&a.sha256)
        .bind(&a.dataset_id)
        .bind(&a.decision)
        .bind(&a.reviewer_id)
        .bind(&a.reviewer_username)
        .bind(&a.comment)
        .bind(&a.at)
        .execute(&mut *tx)
        .await?;
        reseal(
            &mut tx,
            &self.sealer,
            &MODEL_APPROVALS,
            &[KeyValue::Text(&a.id)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks decision `id` withdrawn by its author; false when it is not
    /// theirs, not on this model, or already withdrawn.
    pub async fn withdraw_model_approval(
        &self,
        sha256: &str,
        id: &str,
        reviewer_id: &str,
        at: &str,
    ) -> Result<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let key = [KeyValue::Text(id)];
        check_row(&mut tx, &self.sealer, &MODEL_APPROVALS, &key).await?;
        let n = sqlx::query(
            "UPDATE model_approvals SET withdrawn_at = ? \
             WHERE id = ? AND sha256 = ? AND reviewer_id = ? AND withdrawn_at IS NULL",
        )
        .bind(at)
        .bind(id)
        .bind(sha256)
        .bind(reviewer_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        reseal(&mut tx, &self.sealer, &MODEL_APPROVALS, &key).await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Every decision on `sha256`, by dataset, oldest first.
    pub async fn model_approvals(&self, sha256: &str) -> Result<Vec<ModelApprovalRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT *, {} FROM model_approvals WHERE sha256 = ? ORDER BY dataset_id, at, id",
            MODEL_APPROVALS.select("")
        ))
        .bind(sha256)
        .fetch_all(&self.pool)
        .await?;
        self.sealer.check_all(&MODEL_APPROVALS, &rows)?;
        rows.iter().map(approval_from_row).collect()
    }
}
