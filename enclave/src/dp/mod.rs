//! # dp — differentially private aggregates
//!
//! A researcher asks with `SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon
//! = …, delta = …) …` (BigQuery's form) or a job's `dp` parameter; a dataset
//! whose policy says `disclosure.dp.required` accepts nothing else.
//!
//! ```text
//!  SQL ─▶ clause::split (tokens) ─▶ plan + policy::check as any query
//!      ─▶ plan::plan_dp: shape (one dataset, COUNT/SUM/AVG, GROUP BY), bounds
//!         from the manifest, contribution bounding per privacy unit:
//!           rows per (unit, group) ≤ R and groups per unit ≤ G, each chosen by
//!           row_number() over a random order (not by any value);
//!           SUM/AVG arguments clamped and rounded to a fixed-point integer
//!         ─▶ exact partials per group: units, counts, integer sums
//!      ─▶ budget charged with the job (one UPDATE, before anything runs)
//!      ─▶ noise::release: group selection (opendp Laplace threshold on units
//!         per group, τ from δ through opendp's own privacy map), then discrete
//!         Laplace noise (opendp) on every released aggregate
//! ```
//!
//! ε is split evenly over the selection and the measurements (AVG = noisy
//! sum / noisy count takes two); all of δ goes to the selection.

pub mod clause;
mod fixed;
pub mod noise;
pub mod plan;

use serde::{Deserialize, Serialize};

/// What a researcher asks for.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpOptions {
    /// Privacy loss ε of this query (all of it is charged).
    pub epsilon: f64,
    /// δ available to group selection (only what is spent is charged).
    #[serde(default)]
    pub delta: f64,
    /// Lowers the policy's groups per privacy unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_groups_contributed: Option<u32>,
    /// Lowers the policy's rows per privacy unit and group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows_per_group: Option<u32>,
}

/// Smallest ε a query may ask for: below it the noise scales leave the range
/// the integer mechanisms (and any useful answer) work in.
pub const MIN_EPSILON: f64 = 1e-3;
/// Largest ε a query may ask for.
pub const MAX_EPSILON: f64 = 100.0;
/// Smallest non-zero δ: far below 1/n for any population, and the selection
/// threshold it needs still fits the integer mechanism.
pub const MIN_DELTA: f64 = 1e-15;

impl DpOptions {
    /// ε and δ in the ranges the mechanisms support, each refusal naming the
    /// option and its range (`dp_options_invalid`).
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: String| crate::query::policy::refuse("dp_options_invalid", m);
        // NaN fails every comparison, so it lands here too.
        if !(self.epsilon >= MIN_EPSILON && self.epsilon <= MAX_EPSILON) {
            return Err(bad(format!(
                "epsilon must be a number in [{MIN_EPSILON}, {MAX_EPSILON}]"
            )));
        }
        if !(self.delta == 0.0 || (self.delta >= MIN_DELTA && self.delta < 1.0)) {
            return Err(bad(format!(
                "delta must be 0 or a number in [{MIN_DELTA:e}, 1)"
            )));
        }
        Ok(())
    }
}

/// The privacy facts of one DP result: enough to compute confidence intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpReport {
    /// ε spent (charged to the grant).
    pub epsilon: f64,
    /// δ spent (charged to the grant).
    pub delta: f64,
    /// The budget left after this charge: the grant's, or the researcher's
    /// on the dataset across all their grants where that is less.
    pub budget_left: Option<BudgetLeft>,
    /// `dataset.column` of the privacy unit.
    pub privacy_unit: String,
    /// Groups one unit may contribute to (after bounding).
    pub max_groups_contributed: u32,
    /// Rows one unit may contribute to one group (after bounding).
    pub max_rows_per_group: u32,
    /// How groups were chosen; absent without GROUP BY (one row, always released).
    pub selection: Option<Selection>,
    /// Per aggregate output column.
    pub columns: Vec<DpColumn>,
    /// The budget this charge also counts against: the dataset's, shared by
    /// all of the researcher's grants on it. Not stored (the ledger is).
    #[serde(skip)]
    pub researcher_cap: Option<ResearcherCap>,
}

/// A dataset's ε and δ for one researcher across all their grants.
#[derive(Debug, Clone, PartialEq)]
pub struct ResearcherCap {
    pub dataset_id: String,
    pub epsilon: f64,
    pub delta: f64,
}

/// ε and δ the grant has left.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetLeft {
    pub epsilon: f64,
    pub delta: f64,
}

/// Noisy group selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// `laplace_threshold` (opendp `make_laplace_threshold`).
    pub mechanism: String,
    /// What is counted per group: distinct privacy units after bounding.
    pub counts: String,
    /// Scale of the discrete Laplace noise on each group's unit count.
    pub scale: f64,
    /// A group is released when its noisy unit count is at least this.
    pub threshold: i64,
    pub epsilon: f64,
    pub delta: f64,
}

/// One noisy output column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpColumn {
    pub column: String,
    /// `count`, `sum` or `avg`.
    pub aggregate: String,
    /// `discrete_laplace` (opendp `make_laplace` on integers).
    pub mechanism: String,
    /// Clamping bounds of the argument (SUM, AVG).
    pub bounds: Option<[f64; 2]>,
    /// Noise scale b in the column's units (standard deviation = b·√2); for
    /// AVG the scale of its noisy sum.
    pub scale: f64,
    /// AVG only: scale of its noisy count (the denominator).
    pub count_scale: Option<f64>,
    /// L1 sensitivity over all groups, in the column's units (AVG: of the sum).
    pub sensitivity: f64,
    /// ε spent on this column.
    pub epsilon: f64,
}

impl DpReport {
    /// Fills the budget left from the grant's budgets and its usage after the
    /// charge, capped by what the researcher has left on the dataset: the
    /// figure a researcher plans the next query with must be the binding one.
    pub fn set_budget_left(
        &mut self,
        budgets: &crate::access::Budgets,
        used: &crate::access::Usage,
        researcher_left: Option<BudgetLeft>,
    ) {
        let mut left = BudgetLeft {
            epsilon: (budgets.epsilon - used.epsilon).max(0.0),
            delta: (budgets.delta - used.delta).max(0.0),
        };
        if let Some(r) = researcher_left {
            left.epsilon = left.epsilon.min(r.epsilon);
            left.delta = left.delta.min(r.delta);
        }
        self.budget_left = Some(left);
    }
}
