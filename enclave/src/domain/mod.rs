//! [`Domain`]: one open data directory with its keyring, metadata store and
//! audit log — the one door every front end (HTTP, CLI, later a console or
//! a client) calls. Each method a front end calls takes the caller and
//! authorizes right after loading its object (`authorization.rs`).
//!
//! Every public method that changes state writes an audit event before it
//! returns; a failed operation writes one with outcome `failure`.
//!
//! The methods are grouped by area: this file holds the catalog, accounts and
//! complaints; `access.rs` the projects, applications and agreements;
//! `grants.rs` the grants, their budgets and usage reports, and consent
//! tables; `jobs/` the job life cycle, a file per stage; `models.rs` models.

mod access;
mod accounts;
mod authorization;
mod cross_check;
mod grants;
mod jobs;
mod models;
mod tally;

pub use access::{
    AgreementText, ApplicationSummary, ApplicationView, DatasetFilter, ReviewConditions, ReviewStep,
};
pub use accounts::{AccountOptions, AccountOutcome};
pub use authorization::{By, audit_object};
pub use cross_check::{Discrepancy, cross_check};
pub use grants::{GrantChange, GrantView, consent_storage_id};
pub use jobs::{
    CampaignPacket, DifferencingPair, DifferencingTracker, ForResearcher, JobOptions, JobSight,
    JobView, OwnJob, ReviewDecision, ReviewPacket, WarmStats,
};
pub use models::{ModelDecision, ModelOptions, ModelRequest, ModelView};
pub use tally::with_client;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::access::authz::{Action, Denial, Object};
use crate::access::{ApplicationLimits, Budgets};
use crate::audit::{AuditLog, AuditOptions, AuditRecord, NewEvent, Outcome};
use crate::calendar::WorkCalendar;
use crate::catalog::{CatalogEntry, CatalogQuery, GradeScale, Manifest, OpenType};
use crate::identity::{
    Identity, IdentityPolicy, LoginOutcome, LoginSuccess, NewUser, Principal, User,
};
use crate::ingest::{self, ImportOptions, QualityReport};
use crate::keyring::Keyring;
use crate::store::{
    ComplaintRecord, DatasetRecord, ImportRecord, ManifestRevision, NewComplaintRecord, Store,
    VersionRecord,
};
use crate::{Error, Result};

/// Paths inside a data directory. The layout is part of the on-disk format.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `keys/`: master key, platform signing key.
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// `meta/anyu.db`: the metadata store.
    pub fn meta_db(&self) -> PathBuf {
        self.root.join("meta").join("anyu.db")
    }
    /// `audit/audit.db`: the audit chain.
    pub fn audit_db(&self) -> PathBuf {
        self.root.join("audit").join("audit.db")
    }
    /// `datasets/<id>/v<N>/`: encrypted dataset versions.
    pub fn datasets(&self) -> PathBuf {
        self.root.join("datasets")
    }
    /// `materials/<id>.bin`: application materials, sealed (see `storage::blob`).
    pub fn materials(&self) -> PathBuf {
        self.root.join("materials")
    }
    /// `releases/<release id>/<format>.bin`: released files, sealed.
    pub fn release(&self, release_id: &str) -> PathBuf {
        self.root.join("releases").join(release_id)
    }
    /// `models/<sha256>.wasm`: researchers' components as uploaded.
    pub fn models(&self) -> PathBuf {
        self.root.join("models")
    }
    /// `spill/`: where a job's operators spill when over their memory.
    pub fn spill(&self) -> PathBuf {
        self.root.join("spill")
    }
    /// A data directory is initialised once its master key exists.
    pub fn is_initialised(&self) -> bool {
        self.keys().join("master.key").exists()
    }
    /// Keys, accounts and the audit trail are the platform account's alone:
    /// refuses `keys/`, its secret files and the databases when group or
    /// others have any permission on them (the error names the path). Every
    /// way into a data directory (`Domain::open`, read-only commands) asks first.
    pub fn check_private(&self) -> Result<()> {
        refuse_readable_by_others(&self.keys())?;
        for key in [
            crate::keyring::MASTER_KEY_FILE,
            crate::keyring::SIGNING_KEY_FILE,
        ] {
            refuse_readable_by_others(&self.keys().join(key))?;
        }
        refuse_readable_by_others(&self.meta_db())?;
        refuse_readable_by_others(&self.audit_db())
    }
}

fn missing_audit_log(dir: &DataDir) -> Error {
    Error::Audit(format!(
        "{} is initialised but its audit log {} is missing or empty: the log is created only by \
         `anyu init`, so its history was removed; restore it from a backup",
        dir.root().display(),
        dir.audit_db().display()
    ))
}

/// The platform's public key, as published.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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

/// What `Domain::rotate_signing_key` did.
#[derive(Debug, Clone, Serialize)]
pub struct KeyRotation {
    pub previous_public_key: String,
    pub next_public_key: String,
    /// SHA-256 of the next key, hex.
    pub next_fingerprint: String,
    /// Seq of the rotation event.
    pub seq: u64,
}

/// Who performs an action, as recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub name: String,
    pub role: String,
}

impl Actor {
    pub fn new(name: impl Into<String>, role: impl Into<String>) -> Self {
        Actor {
            name: name.into(),
            role: role.into(),
        }
    }
    /// The platform itself (start-up, shutdown, checkpoints).
    pub fn system() -> Self {
        Actor::new("system", "system")
    }
    /// An unauthenticated caller of the public catalog.
    pub fn anonymous() -> Self {
        Actor::new("anonymous", "anonymous")
    }
    /// An authenticated user.
    pub fn user(p: &Principal) -> Self {
        Actor::new(p.username.clone(), p.role.as_str())
    }
    /// The caller of an HTTP request: a user, or anonymous.
    pub fn caller(p: Option<&Principal>) -> Self {
        p.map_or_else(Actor::anonymous, Actor::user)
    }
    /// An operator at the command line on the platform host.
    pub fn operator() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "operator".into());
        Actor::new(format!("cli:{user}"), "admin")
    }

    fn event(&self, action: &str, object: impl Into<String>) -> NewEvent {
        NewEvent::new(self.name.clone(), self.role.clone(), action, object.into())
    }
}

/// How not-open datasets appear in the catalog (REQUIREMENTS §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotOpenListing {
    /// Not listed, and their detail answers "not found" like an unknown id.
    #[default]
    Hidden,
    /// Listed with id, title, provider, open type and grade only.
    NameOnly,
}

/// Where a [`Domain`] reads the time. Deadlines, session expiry and grant
/// validity all follow it, so tests can move time instead of waiting.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The host's clock.
    pub fn system() -> Clock {
        Clock(Arc::new(Utc::now))
    }
    /// Any source of time, e.g. a test's adjustable clock.
    pub fn from_fn(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }
    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// Settings of the access workflow (`[access]` in the configuration).
#[derive(Debug, Clone)]
pub struct AccessOptions {
    /// Working days for the completeness check (XM:23: 3).
    pub completeness_working_days: u32,
    /// Working days for the joint review (SZ:42: 10).
    pub review_working_days: u32,
    /// Limits on applications.
    pub limits: ApplicationLimits,
    /// Budgets of a new grant before reviewers' caps; epsilon and delta are
    /// further capped by the datasets' DP budgets.
    pub default_budgets: Budgets,
    /// Largest uploaded material, in bytes.
    pub max_material_bytes: u64,
    /// Most materials per application.
    pub max_materials: usize,
}

impl Default for AccessOptions {
    fn default() -> Self {
        AccessOptions {
            completeness_working_days: 3,
            review_working_days: 10,
            limits: ApplicationLimits::default(),
            default_budgets: Budgets {
                jobs: 1000,
                epsilon: 10.0,
                delta: 1e-6,
                cpu_seconds: 36_000.0,
                released_rows: 1_000_000,
            },
            max_material_bytes: 10 * 1024 * 1024,
            max_materials: 20,
        }
    }
}

/// Settings of a [`Domain`] that come from the platform configuration.
#[derive(Debug, Clone)]
pub struct DomainOptions {
    pub grades: GradeScale,
    pub audit: AuditOptions,
    pub not_open: NotOpenListing,
    pub identity: IdentityPolicy,
    /// Working days for review and answer deadlines.
    pub calendar: WorkCalendar,
    /// The access workflow's deadlines, limits and default budgets.
    pub access: AccessOptions,
    /// The time source.
    pub clock: Clock,
    /// The job path's worker pool and limits.
    pub jobs: JobOptions,
    /// Limits of researchers' models.
    pub models: ModelOptions,
    /// Account administration (the second administrator).
    pub accounts: AccountOptions,
}

impl Default for DomainOptions {
    fn default() -> Self {
        DomainOptions {
            grades: GradeScale::default(),
            audit: AuditOptions::default(),
            not_open: NotOpenListing::default(),
            identity: IdentityPolicy::default(),
            // Not `WorkCalendar::default()`, which knows no holidays.
            calendar: WorkCalendar::china_mainland(),
            access: AccessOptions::default(),
            clock: Clock::system(),
            jobs: JobOptions::default(),
            models: ModelOptions::default(),
            accounts: AccountOptions::default(),
        }
    }
}

/// What an import produced.
#[derive(Debug, Clone, Serialize)]
pub struct ImportSummary {
    pub dataset_id: String,
    pub version: u64,
    pub manifest_revision: u64,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub quality: QualityReport,
}

/// Public summary of a version's quality: counts only, no row numbers.
#[derive(Debug, Clone, Serialize)]
pub struct QualitySummary {
    pub rows: u64,
    pub passed: bool,
    pub columns_with_nulls: u64,
    pub invalid_format: u64,
    pub out_of_bounds: u64,
    pub not_in_categories: u64,
    pub warnings: Vec<String>,
}

impl From<&QualityReport> for QualitySummary {
    fn from(q: &QualityReport) -> Self {
        QualitySummary {
            rows: q.rows,
            passed: q.passed,
            columns_with_nulls: q.columns.iter().filter(|c| c.nulls > 0).count() as u64,
            invalid_format: q.columns.iter().map(|c| c.invalid_format).sum(),
            out_of_bounds: q.columns.iter().map(|c| c.out_of_bounds).sum(),
            not_in_categories: q.columns.iter().map(|c| c.not_in_categories).sum(),
            warnings: q.warnings.clone(),
        }
    }
}

/// A version as the public catalog shows it.
#[derive(Debug, Clone, Serialize)]
pub struct VersionSummary {
    pub version: u64,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub created_at: String,
    pub quality: QualitySummary,
}

impl From<&VersionRecord> for VersionSummary {
    fn from(v: &VersionRecord) -> Self {
        VersionSummary {
            version: v.version,
            rows: v.rows,
            bytes: v.bytes,
            sha256: v.sha256.clone(),
            created_at: v.created_at.clone(),
            quality: QualitySummary::from(&v.quality),
        }
    }
}

/// One row of the catalog listing.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogListing {
    #[serde(flatten)]
    pub entry: CatalogEntry,
    pub latest_version: Option<VersionSummary>,
}

/// The catalog detail of one dataset: metadata, versions, quality — never rows.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogDetail {
    #[serde(flatten)]
    pub entry: CatalogEntry,
    pub manifest_revision: u64,
    pub updated_at: String,
    pub versions: Vec<VersionSummary>,
    /// The disclosure rules results on this dataset are checked against, as
    /// in force (the manifest's policy tightened by its grade), so nobody
    /// learns the threshold from suppressed groups. Absent for not-open data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<RulesInForce>,
}

/// What a researcher should know before querying a dataset.
#[derive(Debug, Clone, Serialize)]
pub struct RulesInForce {
    /// Thresholds, dominance, p%, joins, DP and model settings in force.
    pub disclosure: crate::catalog::DisclosurePolicy,
    /// Output reviewers per result (from L3 two, blind).
    pub output_reviewers: u32,
    /// Whether every conditional application is reviewed jointly with the platform.
    pub joint_review: bool,
}

/// UTC+8, where the platform's deadlines run.
pub(crate) fn china_standard_time() -> chrono::FixedOffset {
    chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// Working days within which a public complaint is answered (SZ:65).
pub const COMPLAINT_WORKING_DAYS: u32 = 10;

/// A complaint as filed by anyone, signed in or not.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewComplaint {
    /// The dataset concerned, if any.
    pub dataset_id: Option<String>,
    pub subject: String,
    pub body: String,
    /// How to reach the complainant (optional).
    pub contact: Option<String>,
}

/// A complaint with its deadline status.
#[derive(Debug, Clone, Serialize)]
pub struct ComplaintView {
    #[serde(flatten)]
    pub complaint: ComplaintRecord,
    /// Still open after its due date.
    pub overdue: bool,
    /// Answered after its due date.
    pub answered_late: bool,
}

/// The authority's dashboard figures (`GET /api/admin/overview`).
#[derive(Debug, Clone, Serialize)]
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

/// An open data directory.
pub struct Domain {
    dir: DataDir,
    options: DomainOptions,
    store: Store,
    keyring: Arc<Keyring>,
    audit: AuditLog,
    identity: Identity,
    jobs: jobs::JobRunner,
    models: models::ModelSlot,
    tally: tally::Tally,
}

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Domain")
            .field("root", &self.dir.root)
            .finish_non_exhaustive()
    }
}

/// Seals the metadata rows from before the MACs existed, once, at upgrade
/// (they are trusted then), and records it: a second `metadata.sealed` of one
/// marker version in the chain means someone reset the marker.
async fn seal_existing_rows(store: &Store, audit: &AuditLog) -> Result<()> {
    if let Some(sealing) = store.seal_existing_rows().await? {
        audit
            .append(
                Actor::system()
                    .event("metadata.sealed", "meta")
                    .details(serde_json::json!({
                        "rows": sealing.rows,
                        "marker": sealing.marker,
                    })),
            )
            .await?;
    }
    Ok(())
}

/// A key rotation staged but not finished (a crash, or a rotation whose
/// event failed): finished when the log holds its event, dropped when not.
/// Under the log's one-writer lock, so no rotation under way elsewhere is
/// touched.
async fn finish_interrupted_rotation(dir: &DataDir) -> Result<()> {
    let keys = dir.keys();
    let Some(next) = Keyring::staged_rotation(&keys)? else {
        return Ok(());
    };
    let _lock = crate::audit::lock_dir(&dir.audit_db()).map_err(|_| {
        Error::Conflict(format!(
            "{} is in use by another anyu process (a key rotation under way?)",
            dir.root.display()
        ))
    })?;
    let rotations = crate::audit::list(
        &dir.audit_db(),
        &crate::audit::AuditFilter {
            action: Some(crate::audit::ROTATE_ACTION.into()),
            limit: Some(crate::audit::MAX_LIST_LIMIT),
            ..Default::default()
        },
    )
    .await?;
    let logged = rotations
        .iter()
        .rev()
        .find(|e| e.action == crate::audit::ROTATE_ACTION)
        .and_then(|e| e.details["next_key"].as_str())
        .is_some_and(|k| k == hex::encode(&next));
    if logged {
        tracing::warn!("finishing an interrupted signing-key rotation");
        Keyring::finish_rotation(&keys)
    } else {
        Keyring::abandon_rotation(&keys)
    }
}

/// Creates the data directory's root readable by its owner alone (0700); an
/// existing directory is left as the operator made it.
fn create_private_root(root: &Path) -> Result<()> {
    #[cfg(unix)]
    if !root.exists() {
        use std::os::unix::fs::DirBuilderExt;
        return std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(Error::io("create directory", root));
    }
    std::fs::create_dir_all(root).map_err(Error::io("create directory", root))
}

/// Refuses `path` (when it exists) if group or others have any permission on it.
fn refuse_readable_by_others(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = std::fs::metadata(path) else {
            return Ok(());
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            let fix = if meta.is_dir() { "700" } else { "600" };
            return Err(Error::Conflict(format!(
                "{} has mode {mode:04o}, which lets group or others read it; \
                 run `chmod {fix} {}` before starting anyu",
                path.display(),
                path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl Domain {
    /// Creates a data directory: keys, metadata store, audit log. Refuses a
    /// directory that is already initialised, so a key is never replaced.
    pub async fn init(root: &Path, options: DomainOptions) -> Result<Domain> {
        let dir = DataDir::new(root);
        if dir.is_initialised() {
            return Err(Error::Conflict(format!(
                "{} is already initialised",
                root.display()
            )));
        }
        create_private_root(root)?;
        Keyring::init(&dir.keys())?;
        let domain = Self::open_dir(root, options, true).await?;
        domain
            .audit
            .append(
                Actor::operator()
                    .event("platform.init", format!("data_dir:{}", root.display()))
                    .details(serde_json::json!({
                        "master_key_id": domain.keyring.key_id(),
                        "signing_public_key": hex::encode(domain.keyring.public_key()),
                    })),
            )
            .await?;
        seal_existing_rows(&domain.store, &domain.audit).await?;
        Ok(domain)
    }

    /// Opens an initialised data directory.
    pub async fn open(root: &Path, options: DomainOptions) -> Result<Domain> {
        Self::open_dir(root, options, false).await
    }

    /// Opens a data directory; only `init` may create its audit log. A log
    /// missing or empty beside an initialised directory is a deleted history,
    /// never a fresh start.
    async fn open_dir(root: &Path, options: DomainOptions, creating: bool) -> Result<Domain> {
        let dir = DataDir::new(root);
        if !dir.is_initialised() {
            return Err(Error::NotFound(format!(
                "initialised data directory at {} (run `anyu init`)",
                root.display()
            )));
        }
        dir.check_private()?;
        if !creating {
            finish_interrupted_rotation(&dir).await?;
        }
        let keyring = Arc::new(Keyring::open(&dir.keys())?);
        if !creating && !dir.audit_db().is_file() {
            return Err(missing_audit_log(&dir));
        }
        let store = Store::open(&dir.meta_db(), &keyring).await?;
        let audit = AuditLog::open(
            &dir.audit_db(),
            keyring.signing_key(),
            options.audit.clone(),
        )
        .await
        .map_err(|e| match e {
            Error::Conflict(_) => Error::Conflict(format!(
                "{} is in use by another anyu process (a running server?); \
                     read-only commands still work, changes need it stopped",
                root.display()
            )),
            other => other,
        })?;
        if !creating && audit.head().0 == 0 {
            return Err(missing_audit_log(&dir));
        }
        let tamper_log = audit.clone();
        store.on_tamper(Box::new(move |table, row| {
            let log = tamper_log.clone();
            let event = Actor::system()
                .event("metadata.tampered", format!("{table}:{row}"))
                .outcome(Outcome::Failure)
                .details(serde_json::json!({ "table": table, "row": row }));
            tokio::spawn(async move {
                if let Err(e) = log.append(event).await {
                    tracing::error!(error = %e, "could not audit a metadata MAC failure");
                }
            });
        }));
        if !creating {
            seal_existing_rows(&store, &audit).await?;
        }
        let now = options.clock.now();
        let identity = Identity::new(store.clone(), options.identity.clone())
            .with_person_key(keyring.derive(crate::identity::PERSON_KEY_LABEL));
        let jobs = jobs::JobRunner::new(options.jobs.workers, options.jobs.target_partitions);
        let domain = Domain {
            dir,
            options,
            store,
            keyring,
            audit,
            identity,
            jobs,
            models: models::ModelSlot::default(),
            tally: tally::Tally::default(),
        };
        // Accounts from before organisations were entities (migration 0013).
        let adopted = domain.identity.adopt_free_text_organisations(now).await?;
        if adopted > 0 {
            domain
                .record(
                    &Actor::system(),
                    "organisation.adopt",
                    "organisations",
                    Outcome::Success,
                    serde_json::json!({ "accounts": adopted }),
                )
                .await?;
        }
        Ok(domain)
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }
    pub fn store(&self) -> &Store {
        &self.store
    }
    pub fn options(&self) -> &DomainOptions {
        &self.options
    }

    /// Appends an audit event for `actor`; used for actions outside this crate
    /// (server start and stop, denied requests).
    pub async fn record(
        &self,
        actor: &Actor,
        action: &str,
        object: impl Into<String>,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> Result<AuditRecord> {
        self.audit
            .append(
                actor
                    .event(action, object)
                    .outcome(outcome)
                    .details(details),
            )
            .await
    }

    /// Imports `data_path` as the next version of the dataset described by the
    /// manifest at `manifest_path`. Atomic: on any error no version exists.
    pub async fn import_dataset(
        &self,
        actor: &Actor,
        manifest_path: &Path,
        data_path: &Path,
        options: &ImportOptions,
        legal_basis: Option<&str>,
    ) -> Result<ImportSummary> {
        let result = self
            .try_import(actor, manifest_path, data_path, options, legal_basis)
            .await;
        if result.is_ok() {
            self.forget_all_warm_sessions();
        }
        let object = match &result {
            Ok(s) => format!("dataset:{}@v{}", s.dataset_id, s.version),
            Err(_) => format!("file:{}", data_path.display()),
        };
        let (outcome, details) = match &result {
            Ok(s) => (
                Outcome::Success,
                serde_json::json!({
                    "rows": s.rows, "bytes": s.bytes, "sha256": s.sha256,
                    "manifest_revision": s.manifest_revision,
                    "quality_passed": s.quality.passed,
                }),
            ),
            Err(e) => (
                Outcome::Failure,
                serde_json::json!({ "error_code": e.code(), "manifest": manifest_path.display().to_string() }),
            ),
        };
        self.record(actor, "dataset.import", object, outcome, details)
            .await?;
        result
    }

    async fn try_import(
        &self,
        actor: &Actor,
        manifest_path: &Path,
        data_path: &Path,
        options: &ImportOptions,
        legal_basis: Option<&str>,
    ) -> Result<ImportSummary> {
        let manifest_toml = std::fs::read_to_string(manifest_path)
            .map_err(Error::io("read manifest", manifest_path))?;
        let manifest = Manifest::parse_with(&manifest_toml, &self.options.grades)?;

        // Check the open-type rule before the (possibly long) import.
        if let Some(current) = self.store.dataset(manifest.id()).await?
            && current.manifest.dataset.open_type != manifest.dataset.open_type
            && legal_basis.is_none_or(|s| s.trim().is_empty())
        {
            return Err(Error::InvalidArgument(format!(
                "dataset `{}` changes open type: a legal basis is required (SZ:15)",
                manifest.id()
            )));
        }

        let keyring = Arc::clone(&self.keyring);
        let root = self.dir.datasets();
        let data = data_path.to_path_buf();
        let opts = options.clone();
        let m = manifest.clone();
        let outcome =
            tokio::task::spawn_blocking(move || ingest::import(&keyring, &root, &m, &data, &opts))
                .await
                .map_err(|e| Error::Internal(format!("import task failed: {e}")))??;

        let dir = outcome
            .file
            .dir
            .strip_prefix(self.dir.root())
            .unwrap_or(&outcome.file.dir)
            .display()
            .to_string();
        let record = ImportRecord {
            manifest: &manifest,
            manifest_toml: &manifest_toml,
            legal_basis,
            version: outcome.version,
            dir,
            rows: outcome.file.rows,
            bytes: outcome.file.bytes,
            sha256: outcome.file.sha256.clone(),
            source_sha256: outcome.source_sha256.clone(),
            source_bytes: outcome.source_bytes,
            quality: &outcome.quality,
            actor: &actor.name,
        };
        let revision: ManifestRevision = match self.store.record_import(&record).await {
            Ok(r) => r,
            Err(e) => {
                // The version's files exist but the catalog refused them: remove them
                // so the data directory never holds an unrecorded version.
                let _ = std::fs::remove_dir_all(&outcome.file.dir);
                return Err(e);
            }
        };
        Ok(ImportSummary {
            dataset_id: outcome.dataset_id,
            version: outcome.version,
            manifest_revision: revision.revision,
            rows: outcome.file.rows,
            bytes: outcome.file.bytes,
            sha256: outcome.file.sha256,
            quality: outcome.quality,
        })
    }

    fn visible(&self, record: &DatasetRecord) -> bool {
        record.manifest.dataset.open_type != OpenType::NotOpen
            || self.options.not_open == NotOpenListing::NameOnly
    }

    fn listing(record: &DatasetRecord) -> CatalogListing {
        if record.manifest.dataset.open_type == OpenType::NotOpen {
            return CatalogListing {
                entry: CatalogEntry::name_only(&record.manifest),
                latest_version: None,
            };
        }
        CatalogListing {
            entry: CatalogEntry::from_manifest(&record.manifest),
            latest_version: record.latest_version.as_ref().map(VersionSummary::from),
        }
    }

    /// Searches the catalog. Metadata only; audited as `catalog.read`.
    pub async fn catalog<'a>(
        &self,
        by: impl Into<By<'a>>,
        query: &CatalogQuery,
    ) -> Result<Vec<CatalogListing>> {
        let actor = &self
            .acting(by.into(), Action::ReadCatalog, "catalog")
            .await?;
        let records = self.store.list_datasets().await?;
        let listings: Vec<CatalogListing> = records
            .iter()
            .filter(|r| self.visible(r) && query.matches(&r.manifest))
            .map(Self::listing)
            .collect();
        self.record_or_tally(
            actor,
            "catalog.read",
            "catalog",
            Outcome::Success,
            serde_json::json!({ "query": query, "results": listings.len() }),
        )
        .await?;
        Ok(listings)
    }

    /// One catalog entry with its versions and quality summaries. A hidden
    /// not-open dataset answers exactly like an unknown id.
    pub async fn catalog_entry<'a>(
        &self,
        by: impl Into<By<'a>>,
        id: &str,
    ) -> Result<CatalogDetail> {
        let actor = &self
            .acting(by.into(), Action::ReadCatalog, "catalog")
            .await?;
        let record = self.store.dataset(id).await?.filter(|r| self.visible(r));
        let Some(record) = record else {
            self.record_or_tally(
                actor,
                "catalog.read",
                format!("dataset:{id}"),
                Outcome::Failure,
                serde_json::json!({ "error_code": "not_found" }),
            )
            .await?;
            return Err(Error::NotFound(format!("dataset `{id}`")));
        };
        let versions = if record.manifest.dataset.open_type == OpenType::NotOpen {
            Vec::new()
        } else {
            self.store
                .versions(id)
                .await?
                .iter()
                .map(VersionSummary::from)
                .collect()
        };
        let rules = (record.manifest.dataset.open_type != OpenType::NotOpen).then(|| {
            let grades = &self.options.grades;
            let level = grades
                .get(&record.manifest.dataset.grade)
                .cloned()
                .unwrap_or_else(|| grades.strictest());
            RulesInForce {
                disclosure: record.manifest.effective_policy(grades),
                output_reviewers: level.reviewers_required,
                joint_review: level.joint_review,
            }
        });
        let detail = CatalogDetail {
            entry: Self::listing(&record).entry,
            manifest_revision: record.manifest_revision,
            updated_at: record.updated_at.clone(),
            versions,
            rules,
        };
        self.record_or_tally(
            actor,
            "catalog.read",
            format!("dataset:{id}"),
            Outcome::Success,
            serde_json::json!({}),
        )
        .await?;
        Ok(detail)
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Exchanges a username and password for a session. `client` is the
    /// caller's network origin (the per-client throttle's key). Every attempt
    /// is audited (`auth.login`), refusals with their reason; the caller sees
    /// only the public error.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: &str,
    ) -> Result<LoginSuccess> {
        let outcome = self
            .identity
            .login(username, password, client, self.now())
            .await?;
        match &outcome {
            LoginOutcome::Success(s) => {
                let actor = Actor::new(s.user.username.clone(), s.user.role.as_str());
                self.record(
                    &actor,
                    "auth.login",
                    format!("user:{}", s.user.id),
                    Outcome::Success,
                    serde_json::json!({ "expires_at": s.expires_at }),
                )
                .await?;
            }
            LoginOutcome::Refused(r) => {
                // A known account is the actor; an unknown name is recorded only
                // when it is a well-formed username (never arbitrary input).
                let actor = match r.role {
                    Some(role) => Actor::new(username, role.as_str()),
                    None => Actor::anonymous(),
                };
                let typed = crate::identity::validate_username(username)
                    .ok()
                    .map(|()| username);
                let object = r
                    .user_id
                    .as_ref()
                    .map_or_else(|| "user:unknown".to_string(), |id| format!("user:{id}"));
                self.record(
                    &actor,
                    "auth.login",
                    object,
                    Outcome::Denied,
                    serde_json::json!({ "reason": r.reason.as_str(), "username": typed }),
                )
                .await?;
            }
        }
        outcome.into_result()
    }

    /// Resolves a bearer token to its principal. A success is not audited
    /// (every request does it); a refused token (unknown, expired, revoked, or
    /// a disabled account's) is, as `auth.invalid_token`: it is a stolen,
    /// replayed or guessed credential until shown otherwise.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        let result = self.identity.authenticate(token, self.now()).await;
        if let Err(Error::Unauthenticated(_)) = &result {
            self.record_or_tally(
                &Actor::anonymous(),
                "auth.invalid_token",
                "auth",
                Outcome::Denied,
                Identity::refused_token_details(token),
            )
            .await?;
        }
        result
    }

    /// Ends the caller's session.
    pub async fn logout<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        token: &str,
    ) -> Result<()> {
        let principal = self
            .allowed_on_platform(caller.into(), Action::Logout, "auth")
            .await?;
        self.identity.logout(token, self.now()).await?;
        self.record(
            &Actor::user(principal),
            "auth.logout",
            format!("user:{}", principal.user_id),
            Outcome::Success,
            serde_json::json!({}),
        )
        .await?;
        Ok(())
    }

    /// The caller's own account.
    pub async fn me<'a>(&self, caller: impl Into<Option<&'a Principal>>) -> Result<User> {
        let caller = caller.into();
        let user_id = caller.map(|p| p.user_id.as_str()).unwrap_or_default();
        let own = Object::User { user_id };
        self.authorize(caller, Action::ReadOwnAccount, &own, "me")
            .await?;
        self.identity.get_user_by_id(user_id).await
    }

    /// Every account (administrators).
    pub async fn users<'a>(&self, by: impl Into<By<'a>>) -> Result<Vec<User>> {
        self.acting(by.into(), Action::ManageUsers, "users").await?;
        self.identity.list_users().await
    }

    /// Audit events matching `filter`; reading is itself audited (`audit.read`).
    pub async fn audit_events<'a>(
        &self,
        by: impl Into<By<'a>>,
        filter: &crate::audit::AuditFilter,
    ) -> Result<Vec<AuditRecord>> {
        let actor = self.acting(by.into(), Action::ReadAudit, "audit").await?;
        let events = self.audit.list(filter).await?;
        self.record(
            &actor,
            "audit.read",
            "audit",
            Outcome::Success,
            serde_json::json!({ "results": events.len() }),
        )
        .await?;
        Ok(events)
    }

    /// The platform's public signing key, for anyone to pin: receipts,
    /// certificates and the audit log's signatures verify under it.
    pub async fn platform_keys(&self) -> Result<PlatformKeys> {
        let key = self.keyring.public_key();
        let fingerprint = |k: &[u8]| hex::encode(ring::digest::digest(&ring::digest::SHA256, k));
        let schedule = crate::audit::key_schedule(&self.dir.audit_db())
            .await?
            .map_err(Error::Audit)?;
        let keys = schedule.keys();
        let introduced = |(_, seq): &(Vec<u8>, u64)| (*seq).max(1);
        let predecessors = keys
            .windows(2)
            .map(|w| RetiredKey {
                signing_public_key: hex::encode(&w[0].0),
                fingerprint: fingerprint(&w[0].0),
                introduced_at_seq: introduced(&w[0]),
                rotated_at_seq: w[1].1,
            })
            .collect();
        Ok(PlatformKeys {
            algorithm: "Ed25519".into(),
            signing_public_key: hex::encode(&key),
            fingerprint: fingerprint(&key),
            predecessors,
            introduced_at_seq: keys.last().map_or(1, introduced),
        })
    }

    /// Rotates the platform signing key (the host's operator, `anyu keys
    /// rotate`): a new key pair is staged beside the current one, and the
    /// chained event `platform.key_rotate` names both keys with the current
    /// key's endorsement of the next. The caller then closes the domain —
    /// the last checkpoint is signed with the current key — and calls
    /// [`Keyring::finish_rotation`]; from the next open the new key signs.
    pub async fn rotate_signing_key(&self) -> Result<KeyRotation> {
        let keys = self.dir.keys();
        let previous = self.keyring.public_key();
        let next = Keyring::stage_rotation(&keys)?;
        let endorsement = self
            .keyring
            .sign(&crate::audit::endorsement_message(&previous, &next));
        let event = self
            .audit
            .append(
                Actor::operator()
                    .event(crate::audit::ROTATE_ACTION, "platform:signing_key")
                    .details(serde_json::json!({
                        "previous_key": hex::encode(&previous),
                        "previous_key_id": crate::audit::key_fingerprint(&previous),
                        "next_key": hex::encode(&next),
                        "next_key_id": crate::audit::key_fingerprint(&next),
                        "endorsement": hex::encode(&endorsement),
                    })),
            )
            .await;
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                let _ = Keyring::abandon_rotation(&keys);
                return Err(e);
            }
        };
        Ok(KeyRotation {
            previous_public_key: hex::encode(&previous),
            next_public_key: hex::encode(&next),
            next_fingerprint: hex::encode(ring::digest::digest(&ring::digest::SHA256, &next)),
            seq: event.seq,
        })
    }

    /// The signed head record of the audit log as it stands, for an auditor
    /// to keep outside the host (`anyu audit verify --head FILE` checks the
    /// log still holds it). Audited as `audit.head_read`.
    pub async fn signed_head<'a>(&self, by: impl Into<By<'a>>) -> Result<serde_json::Value> {
        let actor = self.acting(by.into(), Action::ReadAudit, "audit").await?;
        let path = crate::audit::head_record_path(&self.dir.audit_db());
        let bytes = std::fs::read(&path).map_err(Error::io("read", &path))?;
        let head: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| Error::Audit("the signed head record does not parse".into()))?;
        self.record(
            &actor,
            "audit.head_read",
            "audit",
            Outcome::Success,
            serde_json::json!({ "seq": head["seq"] }),
        )
        .await?;
        Ok(head)
    }

    /// Records a refused request (`authz.denied`).
    pub async fn deny(
        &self,
        principal: Option<&Principal>,
        action: Action,
        object: &str,
        denial: Denial,
    ) -> Result<()> {
        self.record_or_tally(
            &Actor::caller(principal),
            "authz.denied",
            object,
            Outcome::Denied,
            serde_json::json!({ "action": action.as_str(), "denial": denial }),
        )
        .await?;
        Ok(())
    }

    /// Creates an account with a password the host's operator chose (the
    /// demo, the test harness, a first administrator); audited as
    /// `user.create` by `actor`. Front ends call [`Domain::open_account`].
    pub async fn create_user(&self, actor: &Actor, new: NewUser) -> Result<User> {
        let username = new.username.clone();
        let must_change = new.must_change_password;
        let result = self.identity.create_user(new, self.now()).await;
        let (outcome, object, details) = match &result {
            Ok(u) => (
                Outcome::Success,
                format!("user:{}", u.id),
                serde_json::json!({
                    "username": u.username, "role": u.role.as_str(),
                    "organisation_id": u.organisation_id, "must_change_password": must_change,
                }),
            ),
            Err(e) => (
                Outcome::Failure,
                audit_object("username", &username),
                serde_json::json!({ "error_code": e.code() }),
            ),
        };
        self.record(actor, "user.create", object, outcome, details)
            .await?;
        result
    }

    /// Disables an account and ends its sessions; audited as `user.disable`.
    pub async fn disable_user<'a>(&self, by: impl Into<By<'a>>, username: &str) -> Result<User> {
        let actor = &self.acting(by.into(), Action::ManageUsers, "users").await?;
        let user = self.identity.disable_user(username, self.now()).await?;
        self.audited_user_change(actor, "user.disable", &user, serde_json::json!({}))
            .await?;
        Ok(user)
    }

    /// The current time, from the configured [`Clock`].
    pub fn now(&self) -> DateTime<Utc> {
        self.options.clock.now()
    }

    /// Today's date where the platform's deadlines run (China Standard Time).
    pub fn today(&self) -> chrono::NaiveDate {
        self.now()
            .with_timezone(&china_standard_time())
            .date_naive()
    }

    /// Files a public complaint about open data (SZ:65); due in 10 working days.
    pub async fn file_complaint<'a>(
        &self,
        by: impl Into<By<'a>>,
        c: NewComplaint,
    ) -> Result<ComplaintView> {
        let actor = &self
            .acting(by.into(), Action::FileComplaint, "complaints")
            .await?;
        fn field(name: &str, value: &str, max: usize) -> Result<()> {
            let n = value.trim().chars().count();
            if n == 0 || n > max {
                return Err(Error::InvalidArgument(format!(
                    "`{name}` must be 1 to {max} characters"
                )));
            }
            Ok(())
        }
        field("subject", &c.subject, 200)?;
        field("body", &c.body, 5000)?;
        if let Some(contact) = &c.contact {
            field("contact", contact, 200)?;
        }
        if let Some(id) = &c.dataset_id
            && !crate::catalog::is_dataset_id(id)
        {
            return Err(Error::InvalidArgument(
                "`dataset_id` must be 2-64 characters of a-z, 0-9 and _, starting with a letter"
                    .into(),
            ));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let due = self
            .options
            .calendar
            .add_working_days(self.today(), COMPLAINT_WORKING_DAYS);
        let due = due.format("%Y-%m-%d").to_string();
        let record = self
            .store
            .insert_complaint(&NewComplaintRecord {
                id: &id,
                dataset_id: c.dataset_id.as_deref(),
                subject: c.subject.trim(),
                body: c.body.trim(),
                contact: c.contact.as_deref().map(str::trim),
                submitted_by: &actor.name,
                due_date: &due,
            })
            .await?;
        // The complaint text stays in the metadata store; the audit log records the fact.
        self.record(
            actor,
            "complaint.file",
            format!("complaint:{id}"),
            Outcome::Success,
            serde_json::json!({ "dataset_id": c.dataset_id, "due_date": due }),
        )
        .await?;
        Ok(self.complaint_view(record))
    }

    /// Every complaint with its overdue flag.
    pub async fn complaints<'a>(&self, by: impl Into<By<'a>>) -> Result<Vec<ComplaintView>> {
        self.acting(by.into(), Action::HandleComplaints, "complaints")
            .await?;
        self.all_complaints().await
    }

    async fn all_complaints(&self) -> Result<Vec<ComplaintView>> {
        Ok(self
            .store
            .list_complaints()
            .await?
            .into_iter()
            .map(|c| self.complaint_view(c))
            .collect())
    }

    /// Platform figures for the authority's dashboard: datasets by open type,
    /// accounts by role, complaints open and overdue, the audit head.
    pub async fn overview<'a>(&self, by: impl Into<By<'a>>) -> Result<Overview> {
        self.acting(by.into(), Action::ViewOverview, "overview")
            .await?;
        let mut datasets = std::collections::BTreeMap::new();
        for d in self.store.list_datasets().await? {
            let key = serde_json::to_value(d.manifest.dataset.open_type)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            *datasets.entry(key).or_insert(0u64) += 1;
        }
        let mut accounts = std::collections::BTreeMap::new();
        for u in self.identity.list_users().await? {
            if !u.disabled {
                *accounts.entry(u.role.as_str().to_string()).or_insert(0u64) += 1;
            }
        }
        let complaints = self.all_complaints().await?;
        let today = self.today();
        let mut applications = std::collections::BTreeMap::new();
        for st in crate::access::ApplicationStatus::ALL {
            applications.insert(st.as_str().to_string(), 0u64);
        }
        let mut applications_overdue = 0;
        for a in self.store.list_applications().await? {
            *applications
                .entry(a.status.as_str().to_string())
                .or_insert(0) += 1;
            if a.deadline(today).1 {
                applications_overdue += 1;
            }
        }
        let (audit_seq, audit_hash) = self.audit.head();
        Ok(Overview {
            today: self.today().format("%Y-%m-%d").to_string(),
            datasets_by_open_type: datasets,
            active_accounts_by_role: accounts,
            complaints_open: complaints
                .iter()
                .filter(|c| c.complaint.status == "open")
                .count() as u64,
            complaints_overdue: complaints.iter().filter(|c| c.overdue).count() as u64,
            applications_by_status: applications,
            applications_overdue,
            grants_by_status: self.grant_counts().await?,
            audit_head_seq: audit_seq,
            audit_head_hash: audit_hash,
        })
    }

    /// Answers an open complaint; audited as `complaint.answer`.
    pub async fn answer_complaint<'a>(
        &self,
        by: impl Into<By<'a>>,
        id: &str,
        answer: &str,
    ) -> Result<ComplaintView> {
        let actor = &self
            .acting(by.into(), Action::HandleComplaints, "complaints")
            .await?;
        let n = answer.trim().chars().count();
        if n == 0 || n > 5000 {
            return Err(Error::InvalidArgument(
                "`answer` must be 1 to 5000 characters".into(),
            ));
        }
        let record = self
            .store
            .answer_complaint(id, answer.trim(), &actor.name)
            .await?;
        let view = self.complaint_view(record);
        self.record(
            actor,
            "complaint.answer",
            format!("complaint:{id}"),
            Outcome::Success,
            serde_json::json!({ "late": view.answered_late }),
        )
        .await?;
        Ok(view)
    }

    fn complaint_view(&self, c: ComplaintRecord) -> ComplaintView {
        let today = self.today().format("%Y-%m-%d").to_string();
        let answered_day = c.answered_at.as_ref().and_then(|t| {
            chrono::DateTime::parse_from_rfc3339(t).ok().map(|t| {
                t.with_timezone(&china_standard_time())
                    .date_naive()
                    .format("%Y-%m-%d")
                    .to_string()
            })
        });
        // Dates in YYYY-MM-DD compare correctly as text.
        let overdue = c.status == "open" && today > c.due_date;
        let answered_late = answered_day.is_some_and(|d| d > c.due_date);
        ComplaintView {
            complaint: c,
            overdue,
            answered_late,
        }
    }

    /// Writes the final audit checkpoint and closes the stores.
    pub async fn close(&self) -> Result<()> {
        self.flush_anonymous_tally().await?;
        self.audit.close().await?;
        self.store.close().await;
        Ok(())
    }
}
