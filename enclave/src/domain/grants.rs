//! Grants after signing: reading, suspension and revocation (SZ:63), expiry,
//! the gate and budget charges the job paths use, usage reports (SZ:43(1)),
//! and the consent tables row filters can require (GD:41).

use std::path::Path;

use serde::Serialize;

use super::access::shown_id;
use super::{Actor, Domain, audit_object};
use crate::access::authz::{self, Action, Object};
use crate::access::{
    Grant, GrantActor, GrantEvent, GrantStatus, NewUsageReport, Usage, apply_grant,
};
use crate::audit::Outcome;
use crate::catalog::{Column, DisclosurePolicy, Manifest, Sensitivity};
use crate::identity::{Principal, Role};
use crate::ingest::{self, ImportOptions};
use crate::store::{
    ChargeRefusal, ConsentVersionRecord, GrantEventRecord, NewGrantEvent, UsageReportRecord,
};
use crate::{Error, Result};

/// A change a steward or admin makes to a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantChange {
    /// Stop use until reinstated (rectification, SZ:63).
    Suspend { reason: String },
    /// Lift a suspension, saying why it can end (stored, audited, shown in
    /// the grant's history).
    Reinstate { reason: String },
    /// End the grant for good.
    Revoke { reason: String },
}

/// A grant with its history and whether it can be used right now.
#[derive(Debug, Clone, Serialize)]
pub struct GrantView {
    #[serde(flatten)]
    pub grant: Grant,
    /// Active and inside its validity window now.
    pub usable: bool,
    pub history: Vec<GrantEventRecord>,
}

fn grant_object(id: &str) -> String {
    format!("grant:{id}")
}

/// The storage id of a dataset's consent table: not a catalog id (those have
/// no `.`), so the two never collide, and its AAD differs from the dataset's.
pub fn consent_storage_id(dataset_id: &str) -> String {
    format!("{dataset_id}.consent")
}

/// A grant as `p` may see it: its holder reads the CPU counter in steps
/// (`Usage::as_seen_by_holder`), everyone else as stored.
fn seen_by(p: &Principal, g: &mut Grant) {
    if p.user_id == g.holder_id {
        g.usage = g.usage.as_seen_by_holder();
    }
}

impl Domain {
    /// One grant.
    pub async fn grant(&self, id: &str) -> Result<Grant> {
        self.store
            .grant(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("grant `{}`", shown_id(id))))
    }

    /// The grant `id`, once `caller` may perform `action` on it (401, then
    /// 404, then 403).
    async fn authorized_grant<'a>(
        &self,
        caller: Option<&'a Principal>,
        action: Action,
        id: &str,
    ) -> Result<(&'a Principal, Grant)> {
        let object = audit_object("grant", id);
        let p = self.signed_in(caller, action, &object).await?;
        let g = self.grant(id).await?;
        let providers = g.providers();
        let target = Object::Grant {
            holder_id: &g.holder_id,
            providers: &providers,
        };
        self.authorize(Some(p), action, &target, &object).await?;
        Ok((p, g))
    }

    /// A grant with its history, as `caller` may read it.
    pub async fn grant_view<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
    ) -> Result<GrantView> {
        let (p, grant) = self
            .authorized_grant(caller.into(), Action::ReadGrant, id)
            .await?;
        let mut view = self.view_of_grant(grant).await?;
        seen_by(p, &mut view.grant);
        Ok(view)
    }

    async fn view_of_grant(&self, grant: Grant) -> Result<GrantView> {
        Ok(GrantView {
            usable: grant.check_usable(self.now()).is_ok(),
            history: self.store.grant_events(&grant.id).await?,
            grant,
        })
    }

    /// The grants the caller may read: a researcher's own, a steward's over
    /// their providers' data, all for admins and auditors.
    pub async fn grants_for<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
    ) -> Result<Vec<Grant>> {
        let p = self.list_for(caller.into(), "grants").await?;
        let mut grants = self.store.list_grants().await?;
        grants.retain(|g| {
            let providers = g.providers();
            let object = Object::Grant {
                holder_id: &g.holder_id,
                providers: &providers,
            };
            authz::may_read(p, &object)
        });
        for g in &mut grants {
            seen_by(p, g);
        }
        Ok(grants)
    }

    /// Suspends, reinstates or revokes a grant. Audited as `grant.<event>`;
    /// refusals with outcome `denied`.
    pub async fn change_grant<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
        change: GrantChange,
    ) -> Result<GrantView> {
        let (p, mut g) = self
            .authorized_grant(caller.into(), Action::ManageGrant, id)
            .await?;
        let by = match p.role {
            Role::Admin => GrantActor::Admin {
                user_id: p.user_id.clone(),
            },
            Role::Steward => GrantActor::Steward {
                user_id: p.user_id.clone(),
                provider: g
                    .providers()
                    .into_iter()
                    .find(|x| p.provider_agencies.contains(x))
                    .unwrap_or_default(),
            },
            Role::Researcher | Role::Auditor => {
                return Err(Error::Internal(
                    "a non-manager reached the grant management path".into(),
                ));
            }
        };
        let event = match change {
            GrantChange::Suspend { reason } => GrantEvent::Suspend { by, reason },
            GrantChange::Reinstate { reason } => GrantEvent::Reinstate { by, reason },
            GrantChange::Revoke { reason } => GrantEvent::Revoke { by, reason },
        };
        let action = format!("grant.{}", event.name());
        let t = match apply_grant(&g.facts(), &g.state, &event) {
            Ok(t) => t,
            Err(e) => {
                let e = Error::from(e);
                self.record(
                    &Actor::user(p),
                    &action,
                    grant_object(id),
                    Outcome::Denied,
                    serde_json::json!({ "error_code": e.code() }),
                )
                .await?;
                return Err(e);
            }
        };
        let reason = match (&t.to, &event) {
            (crate::access::GrantState::Suspended { reason, .. }, _)
            | (crate::access::GrantState::Revoked { reason, .. }, _)
            | (_, GrantEvent::Reinstate { reason, .. }) => Some(reason.trim().to_string()),
            _ => None,
        };
        g.state = t.to.clone();
        // Before the change is stored: no job may pick up a session kept from before it.
        self.forget_warm_sessions(id);
        self.store
            .save_grant_state(
                &g,
                &NewGrantEvent {
                    event: &t.event,
                    actor: &p.username,
                    from_status: t.from.as_str(),
                    to_status: t.to.status(),
                    reason: reason.as_deref(),
                },
            )
            .await?;
        self.record(
            &Actor::user(p),
            &action,
            grant_object(id),
            Outcome::Success,
            serde_json::json!({ "from": t.from, "to": t.to.status(), "reason": reason }),
        )
        .await?;
        self.view_of_grant(g).await
    }

    /// Expires every active or suspended grant whose period has ended; the
    /// server runs this at start and then every minute. Audited as
    /// `grant.expire` by `system`. Returns the expired grants' ids.
    pub async fn expire_grants(&self) -> Result<Vec<String>> {
        let now = self.now();
        let due = self.store.grants_due_to_expire(&now.to_rfc3339()).await?;
        let mut expired = Vec::new();
        for id in due {
            let mut g = self.grant(&id).await?;
            let event = GrantEvent::Expire {
                by: GrantActor::System,
                at: now,
            };
            let Ok(t) = apply_grant(&g.facts(), &g.state, &event) else {
                continue;
            };
            g.state = t.to.clone();
            self.forget_warm_sessions(&id);
            match self
                .store
                .save_grant_state(
                    &g,
                    &NewGrantEvent {
                        event: &t.event,
                        actor: "system",
                        from_status: t.from.as_str(),
                        to_status: t.to.status(),
                        reason: None,
                    },
                )
                .await
            {
                Ok(_) => {}
                // Changed meanwhile (e.g. revoked): the next sweep looks again.
                Err(Error::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
            self.record(
                &Actor::system(),
                "grant.expire",
                grant_object(&id),
                Outcome::Success,
                serde_json::json!({ "from": t.from, "valid_until": g.valid_until }),
            )
            .await?;
            expired.push(id);
        }
        Ok(expired)
    }

    /// The gate of every job: the grant exists, `p` holds it, and it is usable
    /// now (active, inside its window). Refusals are [`Error::Denied`].
    pub async fn usable_grant(&self, p: &Principal, id: &str) -> Result<Grant> {
        let g = self.grant(id).await?;
        if g.holder_id != p.user_id {
            return Err(Error::Denied {
                code: "not_grant_holder",
                message: "only the grant's holder may use it".into(),
            });
        }
        g.check_usable(self.now())?;
        Ok(g)
    }

    /// Charges a job's consumption against a grant's budgets, atomically:
    /// concurrent charges can never overspend together. A refused charge is
    /// [`Error::Denied`] (`budget_exhausted` naming the budget, or
    /// `grant_not_active`). Audited as `grant.charge`.
    pub async fn charge_grant(&self, actor: &Actor, id: &str, charge: &Usage) -> Result<Usage> {
        let outcome = self.store.charge_grant(id, charge).await?;
        let (result, audit_outcome, details) = match outcome {
            Ok(usage) => (
                Ok(usage),
                Outcome::Success,
                serde_json::json!({ "charge": charge, "usage": usage }),
            ),
            Err(ChargeRefusal::Budget(budget)) => (
                Err(Error::Denied {
                    code: "budget_exhausted",
                    message: format!("the grant's {budget} budget would be exceeded"),
                }),
                Outcome::Denied,
                serde_json::json!({ "charge": charge, "budget": budget }),
            ),
            Err(ChargeRefusal::NotActive(status)) => (
                Err(Error::Denied {
                    code: "grant_not_active",
                    message: format!("the grant is {}", status.as_str()),
                }),
                Outcome::Denied,
                serde_json::json!({ "charge": charge, "status": status }),
            ),
        };
        self.record(
            actor,
            "grant.charge",
            grant_object(id),
            audit_outcome,
            details,
        )
        .await?;
        result
    }

    /// Files a usage report on a grant (any state: reports are due after the
    /// end too). Audited as `usage_report.file`.
    pub async fn file_usage_report<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        grant_id: &str,
        report: NewUsageReport,
    ) -> Result<UsageReportRecord> {
        let (p, g) = self
            .authorized_grant(caller.into(), Action::ReportUsage, grant_id)
            .await?;
        report.validate()?;
        let record = UsageReportRecord {
            id: uuid::Uuid::now_v7().to_string(),
            grant_id: g.id.clone(),
            author_id: p.user_id.clone(),
            report,
            submitted_at: crate::store::now_rfc3339(),
        };
        self.store.insert_usage_report(&record).await?;
        self.record(
            &Actor::user(p),
            "usage_report.file",
            grant_object(grant_id),
            Outcome::Success,
            serde_json::json!({ "report_id": record.id, "outputs": record.report.outputs.len() }),
        )
        .await?;
        Ok(record)
    }

    /// The usage reports of a grant.
    pub async fn usage_reports<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        grant_id: &str,
    ) -> Result<Vec<UsageReportRecord>> {
        self.authorized_grant(caller.into(), Action::ReadGrant, grant_id)
            .await?;
        self.store.usage_reports(grant_id).await
    }

    /// Grants by status, for the overview.
    pub(crate) async fn grant_counts(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let mut counts = std::collections::BTreeMap::new();
        for s in GrantStatus::ALL {
            counts.insert(s.as_str().to_string(), 0);
        }
        for g in self.store.list_grants().await? {
            *counts
                .entry(g.state.status().as_str().to_string())
                .or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Imports the consent table of a dataset (GD:41): a file with one column
    /// named like the dataset's privacy unit, one row per data subject who
    /// consented. Each import is a complete new version (withdrawn consents
    /// are simply absent), stored encrypted like a dataset version. Audited
    /// as `consent.import`.
    pub async fn import_consent(
        &self,
        actor: &Actor,
        dataset_id: &str,
        data_path: &Path,
        options: &ImportOptions,
    ) -> Result<ConsentVersionRecord> {
        let result = self
            .try_import_consent(actor, dataset_id, data_path, options)
            .await;
        let (outcome, object, details) = match &result {
            Ok(c) => (
                Outcome::Success,
                format!("consent:{}@v{}", c.dataset_id, c.version),
                serde_json::json!({ "subjects": c.subjects, "sha256": c.sha256 }),
            ),
            Err(e) => (
                Outcome::Failure,
                format!("consent:{}", shown_id(dataset_id)),
                serde_json::json!({ "error_code": e.code() }),
            ),
        };
        self.record(actor, "consent.import", object, outcome, details)
            .await?;
        result
    }

    async fn try_import_consent(
        &self,
        actor: &Actor,
        dataset_id: &str,
        data_path: &Path,
        options: &ImportOptions,
    ) -> Result<ConsentVersionRecord> {
        let record = self
            .store
            .dataset(dataset_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("dataset `{}`", shown_id(dataset_id))))?;
        let unit = record
            .manifest
            .privacy_unit_column()
            .cloned()
            .ok_or_else(|| {
                Error::InvalidArgument(
                    "the dataset has no privacy unit, so consents cannot be matched to rows".into(),
                )
            })?;
        let manifest = consent_manifest(&record.manifest, &unit);
        let keyring = std::sync::Arc::clone(&self.keyring);
        let root = self.dir.datasets();
        let data = data_path.to_path_buf();
        let opts = options.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            ingest::import(&keyring, &root, &manifest, &data, &opts)
        })
        .await
        .map_err(|e| Error::Internal(format!("consent import task failed: {e}")))??;
        let subjects = outcome
            .quality
            .privacy_unit
            .as_ref()
            .map_or(outcome.file.rows, |p| p.distinct_units);
        let dir = outcome
            .file
            .dir
            .strip_prefix(self.dir.root())
            .unwrap_or(&outcome.file.dir)
            .display()
            .to_string();
        let c = ConsentVersionRecord {
            dataset_id: dataset_id.to_string(),
            version: outcome.version,
            dir,
            subjects,
            sha256: outcome.file.sha256.clone(),
            source_sha256: outcome.source_sha256.clone(),
            created_at: crate::store::now_rfc3339(),
            created_by: actor.name.clone(),
        };
        if let Err(e) = self.store.insert_consent_version(&c).await {
            let _ = std::fs::remove_dir_all(&outcome.file.dir);
            return Err(e);
        }
        self.forget_all_warm_sessions();
        Ok(c)
    }

    /// The newest consent table of a dataset, if any.
    pub async fn consent(&self, dataset_id: &str) -> Result<Option<ConsentVersionRecord>> {
        self.store.latest_consent(dataset_id).await
    }
}

/// The in-code manifest a consent table is imported with: the privacy-unit
/// column alone (same name, type and ID format), identifying, not nullable.
fn consent_manifest(dataset: &Manifest, unit: &Column) -> Manifest {
    let mut m = dataset.clone();
    m.dataset.id = consent_storage_id(&dataset.dataset.id);
    m.columns = vec![Column {
        sensitivity: Sensitivity::Identifier,
        nullable: false,
        bounds: None,
        categories: None,
        ..unit.clone()
    }];
    m.disclosure = DisclosurePolicy::default();
    m
}
