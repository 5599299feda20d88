//! Public complaints and their answers.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A complaint as filed by anyone, signed in or not.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComplaint {
    /// The dataset concerned, if any.
    pub dataset_id: Option<String>,
    pub subject: String,
    pub body: String,
    /// How to reach the complainant (optional).
    pub contact: Option<String>,
}

impl From<enclave::domain::NewComplaint> for NewComplaint {
    fn from(v: enclave::domain::NewComplaint) -> Self {
        Self {
            dataset_id: v.dataset_id,
            subject: v.subject,
            body: v.body,
            contact: v.contact,
        }
    }
}

impl From<NewComplaint> for enclave::domain::NewComplaint {
    fn from(v: NewComplaint) -> Self {
        Self {
            dataset_id: v.dataset_id,
            subject: v.subject,
            body: v.body,
            contact: v.contact,
        }
    }
}

/// A complaint with its deadline status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ComplaintView {
    #[serde(flatten)]
    pub complaint: ComplaintRecord,
    /// Still open after its due date.
    pub overdue: bool,
    /// Answered after its due date.
    pub answered_late: bool,
}

impl From<enclave::domain::ComplaintView> for ComplaintView {
    fn from(v: enclave::domain::ComplaintView) -> Self {
        Self {
            complaint: v.complaint.into(),
            overdue: v.overdue,
            answered_late: v.answered_late,
        }
    }
}

/// A stored complaint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
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

impl From<enclave::store::ComplaintRecord> for ComplaintRecord {
    fn from(v: enclave::store::ComplaintRecord) -> Self {
        Self {
            id: v.id,
            dataset_id: v.dataset_id,
            subject: v.subject,
            body: v.body,
            contact: v.contact,
            submitted_by: v.submitted_by,
            submitted_at: v.submitted_at,
            due_date: v.due_date,
            status: v.status,
            answer: v.answer,
            answered_by: v.answered_by,
            answered_at: v.answered_at,
        }
    }
}
