//! Grants (开通使用权限, SZ:42): what a signed agreement opens, and the only
//! thing the query and model paths consult.
//!
//! A grant fixes scenario, organisation, datasets with their version policy,
//! columns and row filter, usage method and validity window (minimum
//! authorisation, HZ:25), plus budgets and the counters spent against them.
//! [`Grant::check_usable`] is the gate every job passes.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::application::RowFilter;
use super::workflow::{GrantFacts, GrantState, GrantStatus};
use crate::catalog::UsageMethod;
use crate::{Error, Result};

/// Which version of a dataset a grant reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum GrantedVersion {
    /// The newest version at query time.
    Latest,
    /// Exactly this version.
    Pinned {
        /// Version number.
        version: u64,
    },
}

/// One dataset of a grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantedDataset {
    /// Catalog id.
    pub dataset_id: String,
    /// Its provider, whose steward watches the grant.
    pub provider: String,
    /// Version policy.
    pub version: GrantedVersion,
    /// The columns the grant's view exposes.
    pub columns: Vec<String>,
    /// Rows the view keeps; the requested filter AND every reviewer's.
    pub row_filter: RowFilter,
}

/// Limits on what a grant may consume.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    /// Jobs (queries and model runs) in the grant's life.
    pub jobs: u64,
    /// Differential-privacy epsilon.
    pub epsilon: f64,
    /// Differential-privacy delta.
    pub delta: f64,
    /// CPU seconds of all jobs together.
    pub cpu_seconds: f64,
    /// Result rows released.
    pub released_rows: u64,
}

impl Budgets {
    /// The tighter of each limit.
    pub fn min(&self, other: &Budgets) -> Budgets {
        Budgets {
            jobs: self.jobs.min(other.jobs),
            epsilon: self.epsilon.min(other.epsilon),
            delta: self.delta.min(other.delta),
            cpu_seconds: self.cpu_seconds.min(other.cpu_seconds),
            released_rows: self.released_rows.min(other.released_rows),
        }
    }

    /// Every limit is finite and not negative.
    pub fn validate(&self, field: &str) -> Result<()> {
        for (name, v) in [
            ("epsilon", self.epsilon),
            ("delta", self.delta),
            ("cpu_seconds", self.cpu_seconds),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::InvalidArgument(format!(
                    "{field}.{name} must be a finite number, not negative"
                )));
            }
        }
        if self.delta >= 1.0 {
            return Err(Error::InvalidArgument(format!(
                "{field}.delta must be below 1"
            )));
        }
        Ok(())
    }
}

/// What a grant has consumed; also the shape of one charge against it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Jobs run.
    pub jobs: u64,
    /// Epsilon spent.
    pub epsilon: f64,
    /// Delta spent.
    pub delta: f64,
    /// CPU seconds used.
    pub cpu_seconds: f64,
    /// Result rows released.
    pub released_rows: u64,
}

/// The step a grant's holder sees its CPU seconds in. A job's own run time
/// reaches its researcher only in steps (`OwnJob::elapsed_seconds`); the
/// grant's exact counter read before and after a job would give that time to
/// the millisecond, a timing channel on the data. A step of a minute tells
/// no more than the job's own steps do; reviewers and the platform see it exact.
pub const HOLDER_CPU_STEP_SECONDS: f64 = 60.0;

impl Usage {
    /// The usage as the grant's holder sees it: CPU seconds rounded up to
    /// [`HOLDER_CPU_STEP_SECONDS`] (zero stays zero).
    pub fn as_seen_by_holder(self) -> Usage {
        let step = HOLDER_CPU_STEP_SECONDS;
        Usage {
            cpu_seconds: (self.cpu_seconds / step).ceil() * step,
            ..self
        }
    }

    /// The first budget `self + charge` would exceed, if any.
    pub fn exceeds(&self, charge: &Usage, budgets: &Budgets) -> Option<&'static str> {
        // A tiny tolerance: epsilon sums of decimal fractions are not exact.
        const EPS: f64 = 1e-9;
        if self.jobs.saturating_add(charge.jobs) > budgets.jobs {
            Some("jobs")
        } else if self.epsilon + charge.epsilon > budgets.epsilon + EPS {
            Some("epsilon")
        } else if self.delta + charge.delta > budgets.delta + budgets.delta * EPS {
            Some("delta")
        } else if self.cpu_seconds + charge.cpu_seconds > budgets.cpu_seconds + EPS {
            Some("cpu_seconds")
        } else if self.released_rows.saturating_add(charge.released_rows) > budgets.released_rows {
            Some("released_rows")
        } else {
            None
        }
    }

    /// Every amount is finite and not negative.
    pub fn validate(&self) -> Result<()> {
        for v in [self.epsilon, self.delta, self.cpu_seconds] {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::Internal(
                    "a grant charge must be finite and not negative".into(),
                ));
            }
        }
        Ok(())
    }
}

/// A grant as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// UUID v7.
    pub id: String,
    /// The application it came from.
    pub application_id: String,
    /// The project.
    pub project_id: String,
    /// Account id of the researcher who holds it.
    pub holder_id: String,
    /// Username of the holder.
    pub holder_username: String,
    /// The holder's organisation.
    pub organisation: String,
    /// Scenario category of the project.
    pub scenario_category: String,
    /// Usage method (SZ:27).
    pub usage_method: UsageMethod,
    /// Datasets, columns, versions and row filters.
    pub datasets: Vec<GrantedDataset>,
    /// First day (China Standard Time).
    pub period_start: NaiveDate,
    /// Last day, inclusive.
    pub period_end: NaiveDate,
    /// Start of validity, RFC 3339 UTC (period_start 00:00 CST).
    pub valid_from: DateTime<Utc>,
    /// End of validity, exclusive, RFC 3339 UTC (the day after period_end, 00:00 CST).
    pub valid_until: DateTime<Utc>,
    /// Current state.
    pub state: GrantState,
    /// Limits.
    pub budgets: Budgets,
    /// Consumed so far.
    pub usage: Usage,
    /// SHA-256 of the signed agreement text.
    pub agreement_sha256: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub updated_at: String,
    /// Bumped on every change (optimistic concurrency).
    pub revision: i64,
}

impl Grant {
    /// The facts the grant state machine needs.
    pub fn facts(&self) -> GrantFacts {
        let mut providers: Vec<String> = self.datasets.iter().map(|d| d.provider.clone()).collect();
        providers.sort();
        providers.dedup();
        GrantFacts {
            providers,
            valid_until: self.valid_until,
        }
    }

    /// Providers of the granted datasets.
    pub fn providers(&self) -> Vec<String> {
        self.facts().providers
    }

    /// Lowercase hex SHA-256 of what the grant allows: the usage method, per
    /// dataset its version policy, columns and row filter, and the budgets,
    /// as the JSON `{"usage_method":…,"datasets":[{"dataset_id":…,"version":…,
    /// "columns":[…],"row_filter":…}],"budgets":{…}}` in that field order
    /// (serde_json, compact). An agreement receipt of format 2 signs it.
    pub fn conditions_sha256(&self) -> String {
        #[derive(Serialize)]
        struct Granted<'a> {
            dataset_id: &'a str,
            version: &'a GrantedVersion,
            columns: &'a [String],
            row_filter: &'a RowFilter,
        }
        #[derive(Serialize)]
        struct Conditions<'a> {
            usage_method: &'a UsageMethod,
            datasets: Vec<Granted<'a>>,
            budgets: &'a Budgets,
        }
        let c = Conditions {
            usage_method: &self.usage_method,
            datasets: self
                .datasets
                .iter()
                .map(|d| Granted {
                    dataset_id: &d.dataset_id,
                    version: &d.version,
                    columns: &d.columns,
                    row_filter: &d.row_filter,
                })
                .collect(),
            budgets: &self.budgets,
        };
        let bytes = serde_json::to_vec(&c).expect("grant conditions serialize");
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))
    }

    /// The dataset of that id, if granted.
    pub fn dataset(&self, id: &str) -> Option<&GrantedDataset> {
        self.datasets.iter().find(|d| d.dataset_id == id)
    }

    /// Whether a job may run under this grant at `now`: active, inside its
    /// validity window. Refusals are [`Error::Denied`] with a stable code.
    pub fn check_usable(&self, now: DateTime<Utc>) -> Result<()> {
        let denied = |code, message: &str| {
            Err(Error::Denied {
                code,
                message: message.into(),
            })
        };
        match self.state.status() {
            GrantStatus::Active => {}
            GrantStatus::Suspended => {
                return denied(
                    "grant_suspended",
                    "the grant is suspended; contact the data provider (SZ:63)",
                );
            }
            GrantStatus::Revoked => return denied("grant_revoked", "the grant was revoked"),
            GrantStatus::Expired => return denied("grant_expired", "the grant has expired"),
        }
        if now < self.valid_from {
            return denied(
                "grant_not_started",
                "the grant's period of use has not started",
            );
        }
        if now >= self.valid_until {
            return denied("grant_expired", "the grant's period of use has ended");
        }
        Ok(())
    }
}

/// A usage report the grant holder files (SZ:43(1), GD:46).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUsageReport {
    /// First day the report covers.
    pub period_start: NaiveDate,
    /// Last day it covers.
    pub period_end: NaiveDate,
    /// What the data was used for and what came of it, 10 to 10000 characters.
    pub summary: String,
    /// Papers, patents, products or reports that used the data (SZ:43(4)).
    #[serde(default)]
    pub outputs: Vec<ReportOutput>,
}

/// One product of the data's use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportOutput {
    /// Kind of output.
    pub kind: OutputKind,
    /// Title, 1 to 500 characters.
    pub title: String,
    /// DOI, patent number, URL or other reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// Kinds of [`ReportOutput`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// A paper or thesis.
    Paper,
    /// A patent.
    Patent,
    /// A product or service.
    Product,
    /// A policy or research report.
    Report,
    /// Anything else.
    Other,
}

impl NewUsageReport {
    /// Checks lengths and the period.
    pub fn validate(&self) -> Result<()> {
        super::application::text("summary", &self.summary, 10, 10_000)?;
        if self.period_end < self.period_start {
            return Err(Error::InvalidArgument(
                "period_end: the reported period ends before it starts".into(),
            ));
        }
        if self.outputs.len() > 100 {
            return Err(Error::InvalidArgument(
                "outputs: at most 100 outputs per report".into(),
            ));
        }
        for (i, o) in self.outputs.iter().enumerate() {
            super::application::text(&format!("outputs[{i}].title"), &o.title, 1, 500)?;
            if let Some(r) = &o.reference {
                super::application::text(&format!("outputs[{i}].reference"), r, 1, 500)?;
            }
        }
        Ok(())
    }
}
