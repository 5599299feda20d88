//! Complaints table (SZ:65).

use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, now_rfc3339};
use crate::{Error, Result};

/// A stored complaint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComplaintRecord {
    pub id: String,
    pub dataset_id: Option<String>,
    pub subject: String,
    pub body: String,
    pub contact: Option<String>,
    pub submitted_by: String,
    pub submitted_at: String,
    /// Answer due by the end of this day (China Standard Time).
    pub due_date: String,
    /// `open` or `answered`.
    pub status: String,
    pub answer: Option<String>,
    pub answered_by: Option<String>,
    pub answered_at: Option<String>,
}

/// A complaint about to be stored.
#[derive(Debug, Clone)]
pub struct NewComplaintRecord<'a> {
    pub id: &'a str,
    pub dataset_id: Option<&'a str>,
    pub subject: &'a str,
    pub body: &'a str,
    pub contact: Option<&'a str>,
    pub submitted_by: &'a str,
    pub due_date: &'a str,
}

const COLUMNS: &str = "id, dataset_id, subject, body, contact, submitted_by, submitted_at, \
     due_date, status, answer, answered_by, answered_at";

fn from_row(row: &SqliteRow) -> Result<ComplaintRecord> {
    Ok(ComplaintRecord {
        id: row.try_get("id")?,
        dataset_id: row.try_get("dataset_id")?,
        subject: row.try_get("subject")?,
        body: row.try_get("body")?,
        contact: row.try_get("contact")?,
        submitted_by: row.try_get("submitted_by")?,
        submitted_at: row.try_get("submitted_at")?,
        due_date: row.try_get("due_date")?,
        status: row.try_get("status")?,
        answer: row.try_get("answer")?,
        answered_by: row.try_get("answered_by")?,
        answered_at: row.try_get("answered_at")?,
    })
}

impl Store {
    /// Stores a new, open complaint.
    pub async fn insert_complaint(&self, c: &NewComplaintRecord<'_>) -> Result<ComplaintRecord> {
        sqlx::query(
            "INSERT INTO complaints (id, dataset_id, subject, body, contact, submitted_by, submitted_at, due_date, status) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open')",
        )
        .bind(c.id)
        .bind(c.dataset_id)
        .bind(c.subject)
        .bind(c.body)
        .bind(c.contact)
        .bind(c.submitted_by)
        .bind(now_rfc3339())
        .bind(c.due_date)
        .execute(&self.pool)
        .await?;
        self.complaint(c.id)
            .await?
            .ok_or_else(|| Error::Internal("stored complaint vanished".into()))
    }

    /// One complaint, or `None`.
    pub async fn complaint(&self, id: &str) -> Result<Option<ComplaintRecord>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM complaints WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// All complaints, open ones first, each group by due date.
    pub async fn list_complaints(&self) -> Result<Vec<ComplaintRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM complaints ORDER BY status = 'answered', due_date, submitted_at"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Records the answer to an open complaint; an answered one is a conflict.
    pub async fn answer_complaint(
        &self,
        id: &str,
        answer: &str,
        by: &str,
    ) -> Result<ComplaintRecord> {
        let done = sqlx::query(
            "UPDATE complaints SET status = 'answered', answer = ?, answered_by = ?, answered_at = ? \
             WHERE id = ? AND status = 'open'",
        )
        .bind(answer)
        .bind(by)
        .bind(now_rfc3339())
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if done == 0 {
            return match self.complaint(id).await? {
                Some(_) => Err(Error::Conflict("the complaint was already answered".into())),
                None => Err(Error::NotFound(format!("complaint `{id}`"))),
            };
        }
        self.complaint(id)
            .await?
            .ok_or_else(|| Error::Internal("answered complaint vanished".into()))
    }
}
