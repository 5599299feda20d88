//! Access tables: projects, applications (with history and materials),
//! agreements, grants (with history and counters), usage reports, consent versions.
//!
//! Every read-modify-write goes through a `revision` check: two reviewers
//! acting at once cannot both win, the second gets [`Error::Conflict`].

use serde::Serialize;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use super::identity::{enum_from_str, json_from_str, json_to_string};
use super::seal::{
    APPLICATION_EVENTS, APPLICATIONS, GRANTS, KeyValue, PROJECTS, Sealer, check_row, reseal,
};
use super::{Store, now_rfc3339};
use crate::access::{
    ApplicationDraft, ApplicationFacts, ApplicationState, ApplicationStatus, Grant, GrantStatus,
    NewUsageReport, Usage,
};
use crate::keyring::WrappedKey;
use crate::{Error, Result};

/// A stored project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectRecord {
    pub id: String,
    pub owner_id: String,
    pub organisation: String,
    pub title: String,
    pub scenario_description: String,
    pub scenario_category: String,
    /// Account ids of the members besides the owner.
    pub members: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A stored application.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplicationRecord {
    pub id: String,
    pub project_id: String,
    pub applicant_id: String,
    pub status: ApplicationStatus,
    pub state: ApplicationState,
    pub draft: ApplicationDraft,
    /// Providers of the requested datasets.
    pub providers: Vec<String>,
    /// Fixed at submission: applicant, providers, approvals needed.
    pub facts: Option<ApplicationFacts>,
    pub submitted_at: Option<String>,
    /// Completeness check due by the end of this day (CST, XM:23).
    pub completeness_due: Option<String>,
    /// Review due by the end of this day (CST, SZ:42).
    pub review_due: Option<String>,
    pub revision: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// One step in an application's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApplicationEventRecord {
    pub seq: i64,
    pub event: String,
    pub actor_id: String,
    pub actor_username: String,
    /// `provider_steward` or `platform_admin` for reviewer steps.
    pub capacity: Option<String>,
    /// The provider a steward acted for.
    pub provider: Option<String>,
    pub from_status: String,
    pub to_status: String,
    pub reason: Option<String>,
    /// Conditions a reviewer attached to an approval.
    pub conditions: Option<serde_json::Value>,
    pub at: String,
}

/// An uploaded material's metadata; the content is an encrypted file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaterialRecord {
    pub id: String,
    pub application_id: String,
    pub name: String,
    pub content_type: String,
    pub bytes: u64,
    /// SHA-256 of the plaintext, lowercase hex.
    pub sha256: String,
    #[serde(skip)]
    pub wrapped_key: Option<WrappedKey>,
    pub uploaded_by: String,
    pub uploaded_at: String,
}

/// A signed agreement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgreementRecord {
    pub application_id: String,
    pub user_id: String,
    pub agreement_version: u32,
    pub agreement_sha256: String,
    pub signed_at: String,
    /// The platform-countersigned receipt, verbatim.
    pub receipt_json: String,
}

/// One step in a grant's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantEventRecord {
    pub seq: i64,
    pub event: String,
    /// Username, `monitoring` or `system`.
    pub actor: String,
    pub from_status: String,
    pub to_status: String,
    pub reason: Option<String>,
    pub at: String,
}

/// A stored usage report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReportRecord {
    pub id: String,
    pub grant_id: String,
    pub author_id: String,
    #[serde(flatten)]
    pub report: NewUsageReport,
    pub submitted_at: String,
}

/// A stored consent-table version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentVersionRecord {
    pub dataset_id: String,
    pub version: u64,
    /// Relative to the data directory.
    pub dir: String,
    /// Data subjects who consented.
    pub subjects: u64,
    pub sha256: String,
    pub source_sha256: String,
    pub created_at: String,
    pub created_by: String,
}

/// What a grant charge ran into when it was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ChargeRefusal {
    /// The grant is not active.
    NotActive(GrantStatus),
    /// This budget would be exceeded.
    Budget(&'static str),
}

fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::Internal(format!("stored {what} is negative")))
}

fn to_i64(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Internal(format!("{what} is too large to store")))
}

fn project_from_row(row: &SqliteRow) -> Result<ProjectRecord> {
    let members: String = row.try_get("members_json")?;
    Ok(ProjectRecord {
        id: row.try_get("id")?,
        owner_id: row.try_get("owner_id")?,
        organisation: row.try_get("organisation")?,
        title: row.try_get("title")?,
        scenario_description: row.try_get("scenario_description")?,
        scenario_category: row.try_get("scenario_category")?,
        members: json_from_str(&members, "project members")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const APPLICATION_COLUMNS: &str = "id, project_id, applicant_id, status, state_json, draft_json, \
     providers_json, facts_json, submitted_at, completeness_due, review_due, revision, created_at, updated_at";

fn application_from_row(row: &SqliteRow) -> Result<ApplicationRecord> {
    let state: String = row.try_get("state_json")?;
    let draft: String = row.try_get("draft_json")?;
    let providers: String = row.try_get("providers_json")?;
    let facts: Option<String> = row.try_get("facts_json")?;
    Ok(ApplicationRecord {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        applicant_id: row.try_get("applicant_id")?,
        status: enum_from_str(row.try_get("status")?, "application status")?,
        state: json_from_str(&state, "application state")?,
        draft: json_from_str(&draft, "application draft")?,
        providers: json_from_str(&providers, "application providers")?,
        facts: facts
            .as_deref()
            .map(|f| json_from_str(f, "application facts"))
            .transpose()?,
        submitted_at: row.try_get("submitted_at")?,
        completeness_due: row.try_get("completeness_due")?,
        review_due: row.try_get("review_due")?,
        revision: row.try_get("revision")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn application_event_from_row(row: &SqliteRow) -> Result<ApplicationEventRecord> {
    let conditions: Option<String> = row.try_get("conditions_json")?;
    Ok(ApplicationEventRecord {
        seq: row.try_get("seq")?,
        event: row.try_get("event")?,
        actor_id: row.try_get("actor_id")?,
        actor_username: row.try_get("actor_username")?,
        capacity: row.try_get("capacity")?,
        provider: row.try_get("provider")?,
        from_status: row.try_get("from_status")?,
        to_status: row.try_get("to_status")?,
        reason: row.try_get("reason")?,
        conditions: conditions
            .as_deref()
            .map(|c| json_from_str(c, "review conditions"))
            .transpose()?,
        at: row.try_get("at")?,
    })
}

fn material_from_row(row: &SqliteRow) -> Result<MaterialRecord> {
    let key: String = row.try_get("wrapped_key_json")?;
    Ok(MaterialRecord {
        id: row.try_get("id")?,
        application_id: row.try_get("application_id")?,
        name: row.try_get("name")?,
        content_type: row.try_get("content_type")?,
        bytes: to_u64(row.try_get("bytes")?, "material size")?,
        sha256: row.try_get("sha256")?,
        wrapped_key: Some(json_from_str(&key, "material key")?),
        uploaded_by: row.try_get("uploaded_by")?,
        uploaded_at: row.try_get("uploaded_at")?,
    })
}

const GRANT_COLUMNS: &str = "grant_json, status, revision, jobs_used, epsilon_used, delta_used, \
     cpu_seconds_used, rows_released";

fn grant_from_row(row: &SqliteRow) -> Result<Grant> {
    let json: String = row.try_get("grant_json")?;
    let mut g: Grant = json_from_str(&json, "grant")?;
    g.revision = row.try_get("revision")?;
    g.usage = Usage {
        jobs: to_u64(row.try_get("jobs_used")?, "jobs used")?,
        epsilon: row.try_get("epsilon_used")?,
        delta: row.try_get("delta_used")?,
        cpu_seconds: row.try_get("cpu_seconds_used")?,
        released_rows: to_u64(row.try_get("rows_released")?, "rows released")?,
    };
    let status: GrantStatus = enum_from_str(row.try_get("status")?, "grant status")?;
    if status != g.state.status() {
        return Err(Error::Internal(
            "stored grant status differs from its state".into(),
        ));
    }
    Ok(g)
}

impl Store {
    fn sealed_grant(&self, row: &SqliteRow) -> Result<Grant> {
        self.sealer.check(&GRANTS, row)?;
        grant_from_row(row)
    }
}

/// The grant JSON without the counters, which live in their own columns.
fn grant_json(g: &Grant) -> Result<String> {
    let mut stored = g.clone();
    stored.usage = Usage::default();
    json_to_string(&stored, "grant")
}

async fn next_seq(
    tx: &mut Transaction<'_, Sqlite>,
    table: &str,
    key: &str,
    id: &str,
) -> Result<i64> {
    let row = sqlx::query(&format!(
        "SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM {table} WHERE {key} = ?"
    ))
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get("next")?)
}

/// An application step about to be recorded.
#[derive(Debug, Clone)]
pub struct NewApplicationEvent<'a> {
    pub event: &'a str,
    pub actor_id: &'a str,
    pub actor_username: &'a str,
    pub capacity: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub from_status: ApplicationStatus,
    pub to_status: ApplicationStatus,
    pub reason: Option<&'a str>,
    pub conditions: Option<&'a serde_json::Value>,
}

impl<'a> NewApplicationEvent<'a> {
    /// A step with no reviewer capacity, reason or conditions.
    pub fn new(
        event: &'a str,
        actor_id: &'a str,
        actor_username: &'a str,
        from_status: ApplicationStatus,
        to_status: ApplicationStatus,
    ) -> Self {
        NewApplicationEvent {
            event,
            actor_id,
            actor_username,
            capacity: None,
            provider: None,
            from_status,
            to_status,
            reason: None,
            conditions: None,
        }
    }
}

async fn insert_application_event(
    tx: &mut Transaction<'_, Sqlite>,
    sealer: &Sealer,
    application_id: &str,
    e: &NewApplicationEvent<'_>,
    at: &str,
) -> Result<()> {
    let seq = next_seq(tx, "application_events", "application_id", application_id).await?;
    sqlx::query(
        "INSERT INTO application_events (application_id, seq, event, actor_id, actor_username, \
         capacity, provider, from_status, to_status, reason, conditions_json, at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(application_id)
    .bind(seq)
    .bind(e.event)
    .bind(e.actor_id)
    .bind(e.actor_username)
    .bind(e.capacity)
    .bind(e.provider)
    .bind(e.from_status.as_str())
    .bind(e.to_status.as_str())
    .bind(e.reason)
    .bind(
        e.conditions
            .map(|c| json_to_string(c, "review conditions"))
            .transpose()?,
    )
    .bind(at)
    .execute(&mut **tx)
    .await?;
    reseal(
        tx,
        sealer,
        &APPLICATION_EVENTS,
        &[KeyValue::Text(application_id), KeyValue::Int(seq)],
    )
    .await
}

/// A grant step about to be recorded.
#[derive(Debug, Clone)]
pub struct NewGrantEvent<'a> {
    pub event: &'a str,
    pub actor: &'a str,
    pub from_status: &'a str,
    pub to_status: GrantStatus,
    pub reason: Option<&'a str>,
}

async fn insert_grant_event(
    tx: &mut Transaction<'_, Sqlite>,
    grant_id: &str,
    e: &NewGrantEvent<'_>,
    at: &str,
) -> Result<()> {
    let seq = next_seq(tx, "grant_events", "grant_id", grant_id).await?;
    sqlx::query(
        "INSERT INTO grant_events (grant_id, seq, event, actor, from_status, to_status, reason, at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(grant_id)
    .bind(seq)
    .bind(e.event)
    .bind(e.actor)
    .bind(e.from_status)
    .bind(e.to_status.as_str())
    .bind(e.reason)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn stale() -> Error {
    Error::Conflict("the record changed meanwhile; reload it and try again".into())
}

impl Store {
    /// Stores a new project.
    pub async fn insert_project(&self, p: &ProjectRecord) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO projects (id, owner_id, organisation, title, scenario_description, \
             scenario_category, members_json, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&p.id)
        .bind(&p.owner_id)
        .bind(&p.organisation)
        .bind(&p.title)
        .bind(&p.scenario_description)
        .bind(&p.scenario_category)
        .bind(json_to_string(&p.members, "project members")?)
        .bind(&p.created_at)
        .bind(&p.updated_at)
        .execute(&mut *tx)
        .await?;
        reseal(&mut tx, &self.sealer, &PROJECTS, &[KeyValue::Text(&p.id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    fn sealed_project(&self, row: &SqliteRow) -> Result<ProjectRecord> {
        self.sealer.check(&PROJECTS, row)?;
        project_from_row(row)
    }

    /// One project, or `None`.
    pub async fn project(&self, id: &str) -> Result<Option<ProjectRecord>> {
        let row = sqlx::query(&format!(
            "SELECT *, {} FROM projects WHERE id = ?",
            PROJECTS.select("")
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.sealed_project(r)).transpose()
    }

    /// Every project, newest first.
    pub async fn list_projects(&self) -> Result<Vec<ProjectRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT *, {} FROM projects ORDER BY created_at DESC, id",
            PROJECTS.select("")
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.sealed_project(r)).collect()
    }

    /// Stores a new application with its first history step.
    pub async fn insert_application(
        &self,
        a: &ApplicationRecord,
        event: &NewApplicationEvent<'_>,
    ) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(&format!(
            "INSERT INTO applications ({APPLICATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&a.id)
        .bind(&a.project_id)
        .bind(&a.applicant_id)
        .bind(a.status.as_str())
        .bind(json_to_string(&a.state, "application state")?)
        .bind(json_to_string(&a.draft, "application draft")?)
        .bind(json_to_string(&a.providers, "application providers")?)
        .bind(
            a.facts
                .as_ref()
                .map(|f| json_to_string(f, "application facts"))
                .transpose()?,
        )
        .bind(&a.submitted_at)
        .bind(&a.completeness_due)
        .bind(&a.review_due)
        .bind(a.revision)
        .bind(&a.created_at)
        .bind(&a.updated_at)
        .execute(&mut *tx)
        .await?;
        insert_application_event(&mut tx, &self.sealer, &a.id, event, &a.created_at).await?;
        reseal(
            &mut tx,
            &self.sealer,
            &APPLICATIONS,
            &[KeyValue::Text(&a.id)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One application, or `None`.
    pub async fn application(&self, id: &str) -> Result<Option<ApplicationRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {APPLICATION_COLUMNS}, {} FROM applications WHERE id = ?",
            APPLICATIONS.select("")
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| {
                self.sealer.check(&APPLICATIONS, r)?;
                application_from_row(r)
            })
            .transpose()
    }

    /// Every application, newest first.
    pub async fn list_applications(&self) -> Result<Vec<ApplicationRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {APPLICATION_COLUMNS}, {} FROM applications ORDER BY created_at DESC, id",
            APPLICATIONS.select("")
        ))
        .fetch_all(&self.pool)
        .await?;
        self.sealer.check_all(&APPLICATIONS, &rows)?;
        rows.iter().map(application_from_row).collect()
    }

    /// Writes `a` over the stored application whose revision is still
    /// `a.revision`, and records `event`. Returns the new revision. A concurrent
    /// change in between is [`Error::Conflict`].
    pub async fn save_application(
        &self,
        a: &ApplicationRecord,
        event: &NewApplicationEvent<'_>,
    ) -> Result<i64> {
        let at = now_rfc3339();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let n = self.update_application(&mut tx, a, &at).await?;
        if n == 0 {
            return Err(stale());
        }
        insert_application_event(&mut tx, &self.sealer, &a.id, event, &at).await?;
        tx.commit().await?;
        Ok(a.revision + 1)
    }

    /// The history of an application, oldest first.
    pub async fn application_events(&self, id: &str) -> Result<Vec<ApplicationEventRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT *, {} FROM application_events WHERE application_id = ? ORDER BY seq",
            APPLICATION_EVENTS.select("")
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        self.sealer.check_all(&APPLICATION_EVENTS, &rows)?;
        rows.iter().map(application_event_from_row).collect()
    }

    /// Stores a material's metadata (its encrypted file is written first).
    pub async fn insert_material(&self, m: &MaterialRecord) -> Result<()> {
        let key = m
            .wrapped_key
            .as_ref()
            .ok_or_else(|| Error::Internal("material without a key".into()))?;
        sqlx::query(
            "INSERT INTO application_materials (id, application_id, name, content_type, bytes, sha256, \
             wrapped_key_json, uploaded_by, uploaded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&m.id)
        .bind(&m.application_id)
        .bind(&m.name)
        .bind(&m.content_type)
        .bind(to_i64(m.bytes, "material size")?)
        .bind(&m.sha256)
        .bind(json_to_string(key, "material key")?)
        .bind(&m.uploaded_by)
        .bind(&m.uploaded_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The materials of an application, oldest first.
    pub async fn materials(&self, application_id: &str) -> Result<Vec<MaterialRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM application_materials WHERE application_id = ? ORDER BY uploaded_at, id",
        )
        .bind(application_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(material_from_row).collect()
    }

    /// The signed agreement of an application, if any.
    pub async fn agreement(&self, application_id: &str) -> Result<Option<AgreementRecord>> {
        let row = sqlx::query("SELECT * FROM agreements WHERE application_id = ?")
            .bind(application_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| -> Result<AgreementRecord> {
            Ok(AgreementRecord {
                application_id: row.try_get("application_id")?,
                user_id: row.try_get("user_id")?,
                agreement_version: u32::try_from(row.try_get::<i64, _>("agreement_version")?)
                    .map_err(|_| Error::Internal("stored agreement version out of range".into()))?,
                agreement_sha256: row.try_get("agreement_sha256")?,
                signed_at: row.try_get("signed_at")?,
                receipt_json: row.try_get("receipt_json")?,
            })
        })
        .transpose()
    }

    /// Signing, in one transaction: the application moves to
    /// `agreement_signed` (revision-checked), the agreement is stored, and the
    /// grant is created with its first history step.
    pub async fn sign_agreement(
        &self,
        application: &ApplicationRecord,
        event: &NewApplicationEvent<'_>,
        agreement: &AgreementRecord,
        grant: &Grant,
    ) -> Result<()> {
        let at = now_rfc3339();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if self.update_application(&mut tx, application, &at).await? == 0 {
            return Err(stale());
        }
        insert_application_event(&mut tx, &self.sealer, &application.id, event, &at).await?;
        sqlx::query(
            "INSERT INTO agreements (application_id, user_id, agreement_version, agreement_sha256, \
             signed_at, receipt_json) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&agreement.application_id)
        .bind(&agreement.user_id)
        .bind(i64::from(agreement.agreement_version))
        .bind(&agreement.agreement_sha256)
        .bind(&agreement.signed_at)
        .bind(&agreement.receipt_json)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO grants (id, application_id, holder_id, status, valid_until, grant_json, \
             revision, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&grant.id)
        .bind(&grant.application_id)
        .bind(&grant.holder_id)
        .bind(grant.state.status().as_str())
        .bind(grant.valid_until.to_rfc3339())
        .bind(grant_json(grant)?)
        .bind(grant.revision)
        .bind(&grant.created_at)
        .bind(&grant.updated_at)
        .execute(&mut *tx)
        .await?;
        reseal(&mut tx, &self.sealer, &GRANTS, &[KeyValue::Text(&grant.id)]).await?;
        insert_grant_event(
            &mut tx,
            &grant.id,
            &NewGrantEvent {
                event: "create",
                actor: event.actor_username,
                from_status: "none",
                to_status: grant.state.status(),
                reason: None,
            },
            &at,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One grant, or `None`.
    pub async fn grant(&self, id: &str) -> Result<Option<Grant>> {
        let row = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS}, {} FROM grants WHERE id = ?",
            GRANTS.select("")
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.sealed_grant(r)).transpose()
    }

    /// The grant created from an application, if any.
    pub async fn grant_for_application(&self, application_id: &str) -> Result<Option<Grant>> {
        let row = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS}, {} FROM grants WHERE application_id = ?",
            GRANTS.select("")
        ))
        .bind(application_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.sealed_grant(r)).transpose()
    }

    /// Every grant, newest first.
    pub async fn list_grants(&self) -> Result<Vec<Grant>> {
        let rows = sqlx::query(&format!(
            "SELECT {GRANT_COLUMNS}, {} FROM grants ORDER BY created_at DESC, id",
            GRANTS.select("")
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.sealed_grant(r)).collect()
    }

    /// Ids of active or suspended grants whose validity ended by `now` (RFC 3339 UTC).
    pub async fn grants_due_to_expire(&self, now: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id FROM grants WHERE status IN ('active', 'suspended') AND valid_until <= ? ORDER BY id",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(Error::from))
            .collect()
    }

    /// Writes the state of `g` (revision-checked) and records `event`.
    pub async fn save_grant_state(&self, g: &Grant, event: &NewGrantEvent<'_>) -> Result<i64> {
        let at = now_rfc3339();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        check_row(&mut tx, &self.sealer, &GRANTS, &[KeyValue::Text(&g.id)]).await?;
        let n = sqlx::query(
            "UPDATE grants SET status = ?, grant_json = ?, revision = revision + 1, updated_at = ? \
             WHERE id = ? AND revision = ?",
        )
        .bind(g.state.status().as_str())
        .bind(grant_json(g)?)
        .bind(&at)
        .bind(&g.id)
        .bind(g.revision)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(stale());
        }
        reseal(&mut tx, &self.sealer, &GRANTS, &[KeyValue::Text(&g.id)]).await?;
        insert_grant_event(&mut tx, &g.id, event, &at).await?;
        tx.commit().await?;
        Ok(g.revision + 1)
    }

    /// The history of a grant, oldest first.
    pub async fn grant_events(&self, id: &str) -> Result<Vec<GrantEventRecord>> {
        let rows = sqlx::query("SELECT * FROM grant_events WHERE grant_id = ? ORDER BY seq")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| -> Result<GrantEventRecord> {
                Ok(GrantEventRecord {
                    seq: row.try_get("seq")?,
                    event: row.try_get("event")?,
                    actor: row.try_get("actor")?,
                    from_status: row.try_get("from_status")?,
                    to_status: row.try_get("to_status")?,
                    reason: row.try_get("reason")?,
                    at: row.try_get("at")?,
                })
            })
            .collect()
    }

    /// Adds `charge` to a grant's counters if the grant is active and no budget
    /// would be exceeded — one UPDATE, so concurrent charges can never overspend
    /// together. Returns the new usage, or why the charge was refused.
    pub async fn charge_grant(
        &self,
        id: &str,
        charge: &Usage,
    ) -> Result<std::result::Result<Usage, ChargeRefusal>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        match charge_on(&mut tx, &self.sealer, id, charge).await? {
            Some(u) => {
                tx.commit().await?;
                Ok(Ok(u))
            }
            None => {
                drop(tx);
                Ok(Err(self.charge_refusal(id, charge).await?))
            }
        }
    }

    /// Why `charge` does not fit the grant now.
    pub(crate) async fn charge_refusal(&self, id: &str, charge: &Usage) -> Result<ChargeRefusal> {
        let g = self
            .grant(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("grant `{id}`")))?;
        if g.state.status() != GrantStatus::Active {
            return Ok(ChargeRefusal::NotActive(g.state.status()));
        }
        let budget = g
            .usage
            .exceeds(charge, &g.budgets)
            .ok_or_else(|| Error::Internal("grant charge refused without a reason".into()))?;
        Ok(ChargeRefusal::Budget(budget))
    }

    /// Stores a usage report.
    pub async fn insert_usage_report(&self, r: &UsageReportRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO usage_reports (id, grant_id, author_id, report_json, submitted_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&r.id)
        .bind(&r.grant_id)
        .bind(&r.author_id)
        .bind(json_to_string(&r.report, "usage report")?)
        .bind(&r.submitted_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The usage reports of a grant, oldest first.
    pub async fn usage_reports(&self, grant_id: &str) -> Result<Vec<UsageReportRecord>> {
        let rows =
            sqlx::query("SELECT * FROM usage_reports WHERE grant_id = ? ORDER BY submitted_at, id")
                .bind(grant_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| -> Result<UsageReportRecord> {
                let json: String = row.try_get("report_json")?;
                Ok(UsageReportRecord {
                    id: row.try_get("id")?,
                    grant_id: row.try_get("grant_id")?,
                    author_id: row.try_get("author_id")?,
                    report: json_from_str(&json, "usage report")?,
                    submitted_at: row.try_get("submitted_at")?,
                })
            })
            .collect()
    }

    /// Records a consent-table version.
    pub async fn insert_consent_version(&self, c: &ConsentVersionRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO consent_versions (dataset_id, version, dir, subjects, sha256, source_sha256, \
             created_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.dataset_id)
        .bind(to_i64(c.version, "consent version")?)
        .bind(&c.dir)
        .bind(to_i64(c.subjects, "consent subjects")?)
        .bind(&c.sha256)
        .bind(&c.source_sha256)
        .bind(&c.created_at)
        .bind(&c.created_by)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest consent-table version of a dataset, if any.
    pub async fn latest_consent(&self, dataset_id: &str) -> Result<Option<ConsentVersionRecord>> {
        let row = sqlx::query(
            "SELECT * FROM consent_versions WHERE dataset_id = ? ORDER BY version DESC LIMIT 1",
        )
        .bind(dataset_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| -> Result<ConsentVersionRecord> {
            Ok(ConsentVersionRecord {
                dataset_id: row.try_get("dataset_id")?,
                version: to_u64(row.try_get("version")?, "consent version")?,
                dir: row.try_get("dir")?,
                subjects: to_u64(row.try_get("subjects")?, "consent subjects")?,
                sha256: row.try_get("sha256")?,
                source_sha256: row.try_get("source_sha256")?,
                created_at: row.try_get("created_at")?,
                created_by: row.try_get("created_by")?,
            })
        })
        .transpose()
    }
}

impl Store {
    async fn update_application(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        a: &ApplicationRecord,
        at: &str,
    ) -> Result<u64> {
        let key = [KeyValue::Text(&a.id)];
        check_row(tx, &self.sealer, &APPLICATIONS, &key).await?;
        let n = update_application_row(tx, a, at).await?;
        reseal(tx, &self.sealer, &APPLICATIONS, &key).await?;
        Ok(n)
    }
}

async fn update_application_row(
    tx: &mut Transaction<'_, Sqlite>,
    a: &ApplicationRecord,
    at: &str,
) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE applications SET status = ?, state_json = ?, draft_json = ?, providers_json = ?, \
         facts_json = ?, submitted_at = ?, completeness_due = ?, review_due = ?, \
         revision = revision + 1, updated_at = ? WHERE id = ? AND revision = ?",
    )
    .bind(a.state.status().as_str())
    .bind(json_to_string(&a.state, "application state")?)
    .bind(json_to_string(&a.draft, "application draft")?)
    .bind(json_to_string(&a.providers, "application providers")?)
    .bind(
        a.facts
            .as_ref()
            .map(|f| json_to_string(f, "application facts"))
            .transpose()?,
    )
    .bind(&a.submitted_at)
    .bind(&a.completeness_due)
    .bind(&a.review_due)
    .bind(at)
    .bind(&a.id)
    .bind(a.revision)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

/// The conditional charge on one connection or transaction: `None` when the
/// grant is not active or a budget would be exceeded.
/// Call it inside a transaction: the counters and their MAC change together.
pub(crate) async fn charge_on(
    conn: &mut sqlx::SqliteConnection,
    sealer: &Sealer,
    id: &str,
    charge: &Usage,
) -> Result<Option<Usage>> {
    charge.validate()?;
    check_row(conn, sealer, &GRANTS, &[KeyValue::Text(id)]).await?;
    // The 1e-9 tolerances match `Usage::exceeds`.
    let row = sqlx::query(
        "UPDATE grants SET jobs_used = jobs_used + ?1, epsilon_used = epsilon_used + ?2, \
         delta_used = delta_used + ?3, cpu_seconds_used = cpu_seconds_used + ?4, \
         rows_released = rows_released + ?5, updated_at = ?6 \
         WHERE id = ?7 AND status = 'active' \
         AND jobs_used + ?1 <= json_extract(grant_json, '$.budgets.jobs') \
         AND epsilon_used + ?2 <= json_extract(grant_json, '$.budgets.epsilon') + 1e-9 \
         AND delta_used + ?3 <= json_extract(grant_json, '$.budgets.delta') * (1 + 1e-9) \
         AND cpu_seconds_used + ?4 <= json_extract(grant_json, '$.budgets.cpu_seconds') + 1e-9 \
         AND rows_released + ?5 <= json_extract(grant_json, '$.budgets.released_rows') \
         RETURNING jobs_used, epsilon_used, delta_used, cpu_seconds_used, rows_released",
    )
    .bind(to_i64(charge.jobs, "job charge")?)
    .bind(charge.epsilon)
    .bind(charge.delta)
    .bind(charge.cpu_seconds)
    .bind(to_i64(charge.released_rows, "row charge")?)
    .bind(now_rfc3339())
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    if row.is_some() {
        reseal(conn, sealer, &GRANTS, &[KeyValue::Text(id)]).await?;
    }
    row.map(|row| -> Result<Usage> {
        Ok(Usage {
            jobs: to_u64(row.try_get("jobs_used")?, "jobs used")?,
            epsilon: row.try_get("epsilon_used")?,
            delta: row.try_get("delta_used")?,
            cpu_seconds: row.try_get("cpu_seconds_used")?,
            released_rows: to_u64(row.try_get("rows_released")?, "rows released")?,
        })
    })
    .transpose()
}
