//! Models and stewards' decisions on them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A model with its approvals.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelView {
    #[serde(flatten)]
    pub model: ModelRecord,
    /// Stewards' decisions, by dataset (the newest per dataset counts).
    pub approvals: Vec<ModelApprovalRecord>,
}

impl From<enclave::domain::ModelView> for ModelView {
    fn from(v: enclave::domain::ModelView) -> Self {
        Self {
            model: v.model.into(),
            approvals: v.approvals.into_iter().map(Into::into).collect(),
        }
    }
}

/// A steward's decision on a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ModelDecision {
    Approve,
    Reject,
}

impl From<enclave::domain::ModelDecision> for ModelDecision {
    fn from(v: enclave::domain::ModelDecision) -> Self {
        match v {
            enclave::domain::ModelDecision::Approve => Self::Approve,
            enclave::domain::ModelDecision::Reject => Self::Reject,
        }
    }
}

impl From<ModelDecision> for enclave::domain::ModelDecision {
    fn from(v: ModelDecision) -> Self {
        match v {
            ModelDecision::Approve => Self::Approve,
            ModelDecision::Reject => Self::Reject,
        }
    }
}

/// A component as one researcher uploaded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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

impl From<enclave::store::ModelRecord> for ModelRecord {
    fn from(v: enclave::store::ModelRecord) -> Self {
        Self {
            sha256: v.sha256,
            owner_id: v.owner_id,
            owner_username: v.owner_username,
            name: v.name,
            size: v.size,
            info: v.info,
            uploaded_at: v.uploaded_at,
        }
    }
}

/// A steward's decision on a model for a dataset. Every decision is kept;
/// a rejection counts until its author withdraws it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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

impl From<enclave::store::ModelApprovalRecord> for ModelApprovalRecord {
    fn from(v: enclave::store::ModelApprovalRecord) -> Self {
        Self {
            id: v.id,
            sha256: v.sha256,
            dataset_id: v.dataset_id,
            decision: v.decision,
            reviewer_id: v.reviewer_id,
            reviewer_username: v.reviewer_username,
            comment: v.comment,
            at: v.at,
            withdrawn_at: v.withdrawn_at,
        }
    }
}
