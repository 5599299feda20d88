//! `anyu audit verify --deep`: the metadata store cross-checked against the
//! audit chain. The chain is signed and anchored outside the host; rows of
//! the store are MAC'd but the MAC key lives on the host. A row with no
//! event behind it is a change nobody recorded: each is reported by kind and
//! id, never by value.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::Result;
use crate::audit::{self, AuditFilter, AuditRecord, MAX_LIST_LIMIT, Outcome};
use crate::store::Store;

/// One row of the store the chain does not account for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discrepancy {
    /// `release_without_event`, `user_without_event`, `role_without_event`,
    /// `grant_without_event`, `approval_without_event`, `metadata_resealed`.
    pub kind: &'static str,
    /// The row's id (`application/seq` for review steps).
    pub id: String,
}

/// Every successful event of `action` in the log at `audit_db`.
async fn events(audit_db: &Path, action: &str) -> Result<Vec<AuditRecord>> {
    let mut out = Vec::new();
    let mut since = 0;
    loop {
        let page = audit::list(
            audit_db,
            &AuditFilter {
                action: Some(action.to_string()),
                since_seq: Some(since),
                limit: Some(MAX_LIST_LIMIT),
                ..Default::default()
            },
        )
        .await?;
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        out.extend(
            page.into_iter()
                .filter(|e| e.action == action && e.outcome == Outcome::Success),
        );
        since = last;
    }
    Ok(out)
}

/// Cross-checks the store against the log: every release has its
/// `job.release` event, every account its `user.create` with the role it
/// has now, every grant its `grant.create`, every approval of an
/// application its `application.approve` by the same person, and the rows
/// were sealed at most once per marker version (`metadata.sealed`).
pub async fn cross_check(store: &Store, audit_db: &Path) -> Result<Vec<Discrepancy>> {
    let mut found = Vec::new();
    let mut note = |kind, id: String| found.push(Discrepancy { kind, id });

    let released: Vec<String> = events(audit_db, "job.release")
        .await?
        .iter()
        .filter_map(|e| e.details["release_id"].as_str().map(str::to_string))
        .collect();
    for r in store.list_releases().await? {
        if !released.contains(&r.id) {
            note("release_without_event", r.id);
        }
    }

    let created: HashMap<String, String> = events(audit_db, "user.create")
        .await?
        .into_iter()
        .map(|e| {
            let role = e.details["role"].as_str().unwrap_or_default().to_string();
            (e.object, role)
        })
        .collect();
    for u in store.list_users().await? {
        match created.get(&format!("user:{}", u.id)) {
            None => note("user_without_event", u.id),
            Some(role) if role != u.role.as_str() => note("role_without_event", u.id),
            Some(_) => {}
        }
    }

    let grants: Vec<String> = events(audit_db, "grant.create")
        .await?
        .into_iter()
        .map(|e| e.object)
        .collect();
    let approvals = events(audit_db, "application.approve").await?;
    for g in store.list_grants().await? {
        if !grants.contains(&format!("grant:{}", g.id)) {
            note("grant_without_event", g.id.clone());
        }
        let object = format!("application:{}", g.application_id);
        let mut recorded: Vec<&str> = approvals
            .iter()
            .filter(|e| e.object == object)
            .map(|e| e.actor.as_str())
            .collect();
        for step in store.application_events(&g.application_id).await? {
            if step.event != "approve" {
                continue;
            }
            match recorded.iter().position(|a| *a == step.actor_username) {
                Some(i) => {
                    recorded.swap_remove(i);
                }
                None => note(
                    "approval_without_event",
                    format!("{}/{}", g.application_id, step.seq),
                ),
            }
        }
    }

    // One sealing per marker version (events from before versions: v1).
    let mut sealings: HashMap<u64, usize> = HashMap::new();
    for e in events(audit_db, "metadata.sealed").await? {
        *sealings
            .entry(e.details["marker"].as_u64().unwrap_or(1))
            .or_default() += 1;
    }
    if sealings.values().any(|n| *n > 1) {
        note("metadata_resealed", "meta_seal".into());
    }
    Ok(found)
}
