//! MACs over the security-relevant rows of the metadata store.
//!
//! Someone who can write `meta/anyu.db` but does not hold the master key must
//! not be able to make a researcher an admin, widen a grant, reset a budget,
//! add a vote or a release. Each such row carries `mac` = HMAC-SHA256 under
//! `Keyring::derive("anyu:meta-mac")` over `json_array('<table>', <columns>)`
//! as SQLite renders it (one canonical encoding, computed by the same engine
//! on write and on load). Every write of a sealed row recomputes its MAC in
//! the same transaction; every load checks it, and a mismatch is
//! [`Error::MetadataTampered`] naming the table and the row's key, never a value.
//!
//! Rows that existed before the MACs were introduced are sealed once, at the
//! first open of the upgraded store ([`Store::seal_existing_rows`]): they are
//! trusted at upgrade. The marker that says this happened is itself a MAC, so
//! it cannot be reset without the key; the domain records the sealing as an
//! audit event (`metadata.sealed`), so a second one is visible in the chain.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::Store;
use crate::{Error, Result};

/// A table whose rows carry a MAC.
pub(crate) struct Sealed {
    pub table: &'static str,
    /// The key columns, in order; they name the row in errors.
    pub key: &'static [&'static str],
    /// Every covered column (the key included).
    pub columns: &'static [&'static str],
}

pub(crate) const USERS: Sealed = Sealed {
    table: "users",
    key: &["id"],
    columns: &[
        "id",
        "username",
        "real_name",
        "organisation",
        "organisation_type",
        "role",
        "provider_agencies_json",
        "verified",
        "credit_flags_json",
        "disabled",
        "password_hash",
        "organisation_id",
        "person_key",
        "must_change_password",
    ],
};

pub(crate) const APPLICATIONS: Sealed = Sealed {
    table: "applications",
    key: &["id"],
    columns: &[
        "id",
        "project_id",
        "applicant_id",
        "status",
        "state_json",
        "draft_json",
        "providers_json",
        "facts_json",
        "revision",
    ],
};

pub(crate) const APPLICATION_EVENTS: Sealed = Sealed {
    table: "application_events",
    key: &["application_id", "seq"],
    columns: &[
        "application_id",
        "seq",
        "event",
        "actor_id",
        "actor_username",
        "capacity",
        "provider",
        "from_status",
        "to_status",
        "reason",
        "conditions_json",
        "at",
    ],
};

pub(crate) const GRANTS: Sealed = Sealed {
    table: "grants",
    key: &["id"],
    columns: &[
        "id",
        "application_id",
        "holder_id",
        "status",
        "valid_until",
        "grant_json",
        "jobs_used",
        "epsilon_used",
        "delta_used",
        "cpu_seconds_used",
        "rows_released",
        "revision",
    ],
};

pub(crate) const JOB_REVIEWS: Sealed = Sealed {
    table: "job_reviews",
    key: &["job_id", "reviewer_id"],
    columns: &[
        "job_id",
        "reviewer_id",
        "reviewer_username",
        "decision",
        "comment",
        "at",
    ],
};

pub(crate) const RELEASES: Sealed = Sealed {
    table: "releases",
    key: &["id"],
    columns: &[
        "id",
        "job_id",
        "grant_id",
        "certificate_json",
        "files_json",
        "released_at",
    ],
};

pub(crate) const PRIVACY_LEDGER: Sealed = Sealed {
    table: "privacy_ledger",
    key: &["dataset_id", "researcher_id"],
    columns: &["dataset_id", "researcher_id", "epsilon_used", "delta_used"],
};

pub(crate) const MODEL_APPROVALS: Sealed = Sealed {
    table: "model_approvals",
    key: &["id"],
    columns: &[
        "id",
        "sha256",
        "dataset_id",
        "decision",
        "reviewer_id",
        "reviewer_username",
        "comment",
        "at",
        "withdrawn_at",
    ],
};

/// Every column of a job: what runs (kind, SQL, model, versions read),
/// for whom (requester, grant), where it is (status, revision) and what the
/// reviewers are shown (checks, counts, the candidate's hash).
pub(crate) const JOBS: Sealed = Sealed {
    table: "jobs",
    key: &["id"],
    columns: &[
        "id",
        "grant_id",
        "requester_id",
        "requester_username",
        "kind",
        "query_text",
        "status",
        "error_code",
        "error_message",
        "plan_summary",
        "facts_json",
        "datasets_json",
        "checks_json",
        "rows_scanned",
        "result_rows",
        "suppressed_groups",
        "result_sha256",
        "reviewers_required",
        "cpu_seconds",
        "submitted_at",
        "started_at",
        "finished_at",
        "revision",
        "model_sha256",
        "model_params",
        "dp_json",
    ],
};

pub(crate) const PROJECTS: Sealed = Sealed {
    table: "projects",
    key: &["id"],
    columns: &[
        "id",
        "owner_id",
        "organisation",
        "title",
        "scenario_description",
        "scenario_category",
        "members_json",
        "created_at",
        "updated_at",
    ],
};

pub(crate) const SESSIONS: Sealed = Sealed {
    table: "sessions",
    key: &["token_hash"],
    columns: &[
        "token_hash",
        "user_id",
        "created_at",
        "expires_at",
        "revoked_at",
    ],
};

pub(crate) const API_TOKENS: Sealed = Sealed {
    table: "api_tokens",
    key: &["id"],
    columns: &[
        "id",
        "token_hash",
        "user_id",
        "name",
        "created_at",
        "expires_at",
        "revoked_at",
        "scopes",
    ],
};

/// Every sealed table.
pub(crate) const ALL: [&Sealed; 12] = [
    &USERS,
    &APPLICATIONS,
    &APPLICATION_EVENTS,
    &GRANTS,
    &JOB_REVIEWS,
    &RELEASES,
    &PRIVACY_LEDGER,
    &MODEL_APPROVALS,
    &JOBS,
    &PROJECTS,
    &SESSIONS,
    &API_TOKENS,
];

/// The tables sealed since migration 0015: a store sealed before it has
/// these rows without MACs once, at the upgrade.
const SINCE_V2: [&Sealed; 4] = [&JOBS, &PROJECTS, &SESSIONS, &API_TOKENS];

/// A key column's value, for [`reseal`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyValue<'a> {
    Text(&'a str),
    Int(i64),
}

impl Sealed {
    /// The extra select list a load adds: `mac_input`, `mac`, `mac_row`.
    /// `alias` prefixes the columns (for joins); empty for none.
    pub fn select(&self, alias: &str) -> String {
        self.select_named(alias, "")
    }

    /// As [`Sealed::select`], the three names prefixed with `name` (two
    /// sealed tables in one join), checked with [`Sealer::check_named`].
    pub fn select_named(&self, alias: &str, name: &str) -> String {
        let p = |c: &str| {
            if alias.is_empty() {
                c.to_string()
            } else {
                format!("{alias}.{c}")
            }
        };
        let cols: Vec<String> = self.columns.iter().map(|c| p(c)).collect();
        let key: Vec<String> = self.key.iter().map(|c| p(c)).collect();
        format!(
            "json_array('{}', {}) AS {name}mac_input, {} AS {name}mac, {} AS {name}mac_row",
            self.table,
            cols.join(", "),
            p("mac"),
            key.join(" || '/' || ")
        )
    }

    fn key_where(&self) -> String {
        self.key
            .iter()
            .map(|c| format!("{c} = ?"))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

/// The MAC key and what to do when a check fails.
#[derive(Clone)]
pub(crate) struct Sealer {
    key: Arc<ring::hmac::Key>,
    on_tamper: Arc<OnceLock<TamperHook>>,
    /// Rows already reported, so one bad row is one audit event.
    reported: Arc<Mutex<HashSet<(&'static str, String)>>>,
}

/// Called once per tampered row (table, row key).
pub type TamperHook = Box<dyn Fn(&'static str, String) + Send + Sync>;

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    pub fn new(key: [u8; 32]) -> Sealer {
        Sealer {
            key: Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key)),
            on_tamper: Arc::new(OnceLock::new()),
            reported: Arc::default(),
        }
    }

    fn mac(&self, input: &str) -> String {
        hex::encode(ring::hmac::sign(&self.key, input.as_bytes()).as_ref())
    }

    fn matches(&self, input: &str, mac: &str) -> bool {
        hex::decode(mac)
            .map(|tag| ring::hmac::verify(&self.key, input.as_bytes(), &tag).is_ok())
            .unwrap_or(false)
    }

    fn tampered(&self, table: &'static str, row: String) -> Error {
        let first = self
            .reported
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((table, row.clone()));
        if first && let Some(hook) = self.on_tamper.get() {
            hook(table, row.clone());
        }
        tracing::error!(table, row = %row, "metadata row failed its MAC check");
        Error::MetadataTampered { table, row }
    }

    /// Checks a row loaded with [`Sealed::select`].
    pub fn check(&self, spec: &Sealed, row: &SqliteRow) -> Result<()> {
        self.check_named(spec, row, "")
    }

    /// Checks a row loaded with [`Sealed::select_named`].
    pub fn check_named(&self, spec: &Sealed, row: &SqliteRow, name: &str) -> Result<()> {
        let input: String = row.try_get(format!("{name}mac_input").as_str())?;
        let mac: Option<String> = row.try_get(format!("{name}mac").as_str())?;
        let key: String = row.try_get(format!("{name}mac_row").as_str())?;
        match mac {
            Some(mac) if self.matches(&input, &mac) => Ok(()),
            _ => Err(self.tampered(spec.table, key)),
        }
    }

    /// Checks every row of a load.
    pub fn check_all(&self, spec: &Sealed, rows: &[SqliteRow]) -> Result<()> {
        rows.iter().try_for_each(|r| self.check(spec, r))
    }
}

fn bind_key<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    key: &[KeyValue<'q>],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    for k in key {
        q = match k {
            KeyValue::Text(s) => q.bind(*s),
            KeyValue::Int(i) => q.bind(*i),
        };
    }
    q
}

/// Checks one stored row before an update, inside the caller's
/// transaction, so an update never re-seals a row someone forged. A
/// missing row passes (the update then changes nothing).
pub(crate) async fn check_row(
    conn: &mut sqlx::SqliteConnection,
    sealer: &Sealer,
    spec: &Sealed,
    key: &[KeyValue<'_>],
) -> Result<()> {
    let q = format!(
        "SELECT {} FROM {} WHERE {}",
        spec.select(""),
        spec.table,
        spec.key_where()
    );
    match bind_key(sqlx::query(&q), key)
        .fetch_optional(&mut *conn)
        .await?
    {
        Some(row) => sealer.check(spec, &row),
        None => Ok(()),
    }
}

/// Recomputes the MAC of one row, inside the caller's transaction (the
/// write and its MAC commit together).
pub(crate) async fn reseal(
    conn: &mut sqlx::SqliteConnection,
    sealer: &Sealer,
    spec: &Sealed,
    key: &[KeyValue<'_>],
) -> Result<()> {
    let q = format!(
        "SELECT {} FROM {} WHERE {}",
        spec.select(""),
        spec.table,
        spec.key_where()
    );
    let Some(row) = bind_key(sqlx::query(&q), key)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(());
    };
    let input: String = row.try_get("mac_input")?;
    let u = format!(
        "UPDATE {} SET mac = ? WHERE {}",
        spec.table,
        spec.key_where()
    );
    bind_key(sqlx::query(&u).bind(sealer.mac(&input)), key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The marker of each sealing: v1 covered [`ALL`] up to the model
/// approvals (migration 0012), v2 also [`SINCE_V2`] (migration 0015).
const MARKER_V1: &str = "anyu:meta-sealed:v1";
const MARKER_V2: &str = "anyu:meta-sealed:v2";

/// What [`Store::seal_existing_rows`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sealing {
    /// Rows given their first MAC.
    pub rows: u64,
    /// The marker version written (2 now).
    pub marker: u32,
}

impl Store {
    /// The key holder's repair: `UPDATE <table> SET <set> WHERE <filter>`,
    /// sealing the rows it changed, in one transaction. The rows must carry
    /// valid MACs before, so it never launders a forged row. Tests use it to
    /// let time pass (a grant's period, a lifted lock).
    pub async fn update_sealed(&self, table: &str, set: &str, filter: &str) -> Result<u64> {
        let spec = ALL
            .iter()
            .find(|s| s.table == table)
            .ok_or_else(|| Error::InvalidArgument(format!("`{table}` is not a sealed table")))?;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let before = sqlx::query(&format!(
            "SELECT {} FROM {table} WHERE {filter}",
            spec.select("")
        ))
        .fetch_all(&mut *tx)
        .await?;
        self.sealer.check_all(spec, &before)?;
        let rows = sqlx::query(&format!(
            "UPDATE {table} SET {set} WHERE {filter} RETURNING rowid AS r"
        ))
        .fetch_all(&mut *tx)
        .await?;
        for row in &rows {
            let id: i64 = row.try_get("r")?;
            let sealed = sqlx::query(&format!(
                "SELECT {} FROM {table} WHERE rowid = ?",
                spec.select("")
            ))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            let input: String = sealed.try_get("mac_input")?;
            sqlx::query(&format!("UPDATE {table} SET mac = ? WHERE rowid = ?"))
                .bind(self.sealer.mac(&input))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    /// Calls `hook` once for every row whose MAC fails (the domain audits it).
    pub fn on_tamper(&self, hook: TamperHook) {
        let _ = self.sealer.on_tamper.set(hook);
    }

    /// Seals the rows written before MACs existed, once per marker version:
    /// returns how many, or `None` when the store was sealed already. From
    /// a v1 marker only the tables sealed since v2 are sealed (a v1 row
    /// without a MAC stays a forgery). A marker that is neither pending nor
    /// a valid MAC is [`Error::MetadataTampered`].
    pub async fn seal_existing_rows(&self) -> Result<Option<Sealing>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let marker: String = sqlx::query("SELECT state FROM meta_seal WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("state"))
            .transpose()?
            .ok_or_else(|| self.sealer.tampered("meta_seal", "1".into()))?;
        let tables: &[&Sealed] = if marker == "pending" {
            &ALL
        } else if self.sealer.matches(MARKER_V2, &marker) {
            return Ok(None);
        } else if self.sealer.matches(MARKER_V1, &marker) {
            &SINCE_V2
        } else {
            return Err(self.sealer.tampered("meta_seal", "1".into()));
        };
        let mut sealed = 0u64;
        for spec in tables {
            let rows = sqlx::query(&format!(
                "SELECT rowid AS r, {} FROM {} WHERE mac IS NULL",
                spec.select(""),
                spec.table
            ))
            .fetch_all(&mut *tx)
            .await?;
            for row in rows {
                let rowid: i64 = row.try_get("r")?;
                let input: String = row.try_get("mac_input")?;
                sqlx::query(&format!(
                    "UPDATE {} SET mac = ? WHERE rowid = ?",
                    spec.table
                ))
                .bind(self.sealer.mac(&input))
                .bind(rowid)
                .execute(&mut *tx)
                .await?;
                sealed += 1;
            }
        }
        sqlx::query("UPDATE meta_seal SET state = ? WHERE id = 1")
            .bind(self.sealer.mac(MARKER_V2))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(Sealing {
            rows: sealed,
            marker: 2,
        }))
    }
}
