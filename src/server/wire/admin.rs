//! The audit log, the overview and the platform keys.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    /// Refused by a rule (authorization, policy).
    Denied,
    /// Attempted and failed.
    Failure,
}

impl From<enclave::audit::Outcome> for Outcome {
    fn from(v: enclave::audit::Outcome) -> Self {
        match v {
            enclave::audit::Outcome::Success => Self::Success,
            enclave::audit::Outcome::Denied => Self::Denied,
            enclave::audit::Outcome::Failure => Self::Failure,
        }
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    /// 1-based, gap-free position in the chain.
    pub seq: u64,
    /// UUID v7.
    pub id: String,
    /// RFC 3339 UTC with microseconds.
    pub time: String,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub object: String,
    pub outcome: Outcome,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
    /// Hex SHA-256 of the previous event ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// Hex SHA-256 of `prev_hash` bytes followed by the canonical event.
    pub hash: String,
}

impl From<enclave::audit::AuditRecord> for AuditRecord {
    fn from(v: enclave::audit::AuditRecord) -> Self {
        Self {
            seq: v.seq,
            id: v.id,
            time: v.time,
            actor: v.actor,
            role: v.role,
            action: v.action,
            object: v.object,
            outcome: v.outcome.into(),
            details: v.details,
            prev_hash: v.prev_hash,
            hash: v.hash,
        }
    }
}

/// Filter for [`AuditLog::list`]; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Exact actor.
    pub actor: Option<String>,
    /// Action prefix, e.g. `dataset.` or `catalog.read`.
    pub action: Option<String>,
    /// Exact object.
    pub object: Option<String>,
    /// Only events with a larger seq.
    pub since_seq: Option<u64>,
    /// At most this many events (default [`DEFAULT_LIST_LIMIT`], max [`MAX_LIST_LIMIT`]).
    pub limit: Option<u64>,
}

impl From<enclave::audit::AuditFilter> for AuditFilter {
    fn from(v: enclave::audit::AuditFilter) -> Self {
        Self {
            actor: v.actor,
            action: v.action,
            object: v.object,
            since_seq: v.since_seq,
            limit: v.limit,
        }
    }
}

impl From<AuditFilter> for enclave::audit::AuditFilter {
    fn from(v: AuditFilter) -> Self {
        Self {
            actor: v.actor,
            action: v.action,
            object: v.object,
            since_seq: v.since_seq,
            limit: v.limit,
        }
    }
}

/// The platform's public key, as published.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlatformKeys {
    pub algorithm: String,
    /// Hex; pin it (`anyu audit verify --public-key`, `verify-release`, `verify-receipt`).
    pub signing_public_key: String,
    /// SHA-256 of the key, to compare by eye with the one printed at `anyu init`.
    pub fingerprint: String,
    /// Keys rotated out, oldest first: each signed the log up to the
    /// rotation event that introduced its successor, and still verifies
    /// what it signed (certificates, receipts, checkpoints).
    pub predecessors: Vec<RetiredKey>,
    /// Seq of the event that introduced the current key (1: `platform.init`).
    pub introduced_at_seq: u64,
}

/// A signing key rotated out (`anyu keys rotate`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RetiredKey {
    /// Hex.
    pub signing_public_key: String,
    /// SHA-256 of the key, hex.
    pub fingerprint: String,
    /// Seq of the event that introduced it (1: `platform.init`).
    pub introduced_at_seq: u64,
    /// Seq of the `platform.key_rotate` event that retired it (signed by it).
    pub rotated_at_seq: u64,
}

impl From<enclave::domain::PlatformKeys> for PlatformKeys {
    fn from(v: enclave::domain::PlatformKeys) -> Self {
        Self {
            algorithm: v.algorithm,
            signing_public_key: v.signing_public_key,
            fingerprint: v.fingerprint,
            predecessors: v
                .predecessors
                .into_iter()
                .map(|k| RetiredKey {
                    signing_public_key: k.signing_public_key,
                    fingerprint: k.fingerprint,
                    introduced_at_seq: k.introduced_at_seq,
                    rotated_at_seq: k.rotated_at_seq,
                })
                .collect(),
            introduced_at_seq: v.introduced_at_seq,
        }
    }
}

/// The authority's dashboard figures (`GET /api/admin/overview`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Overview {
    /// The day deadlines are measured against (China Standard Time).
    pub today: String,
    pub datasets_by_open_type: std::collections::BTreeMap<String, u64>,
    pub active_accounts_by_role: std::collections::BTreeMap<String, u64>,
    pub complaints_open: u64,
    /// Open past their due date (10 working days, SZ:65).
    pub complaints_overdue: u64,
    /// Applications by status (drafts included).
    pub applications_by_status: std::collections::BTreeMap<String, u64>,
    /// Applications whose completeness check or review is past its due date.
    pub applications_overdue: u64,
    /// Grants by status.
    pub grants_by_status: std::collections::BTreeMap<String, u64>,
    pub audit_head_seq: u64,
    pub audit_head_hash: String,
}

impl From<enclave::domain::Overview> for Overview {
    fn from(v: enclave::domain::Overview) -> Self {
        Self {
            today: v.today,
            datasets_by_open_type: v.datasets_by_open_type,
            active_accounts_by_role: v.active_accounts_by_role,
            complaints_open: v.complaints_open,
            complaints_overdue: v.complaints_overdue,
            applications_by_status: v.applications_by_status,
            applications_overdue: v.applications_overdue,
            grants_by_status: v.grants_by_status,
            audit_head_seq: v.audit_head_seq,
            audit_head_hash: v.audit_head_hash,
        }
    }
}
