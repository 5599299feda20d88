//! # disclosure — output checks on every result
//!
//! ACRO-compatible semantics: each [`DisclosureRule`] looks at the result and
//! returns a machine-readable verdict per cell — `pass`, `fail` or `review` —
//! with the reason. The job path runs every rule of [`default_rules`] and
//! never needs to know which rules exist, so the follow-up rules (dominance,
//! differencing, differential privacy) plug in as more `DisclosureRule`s.
//!
//! ```text
//!  result batches + hidden per-group counts + PlanFacts + policy + echo findings
//!       ─▶ FrequencyRule   cells built from fewer records than `frequency_threshold` (ACRO
//!                          safe_threshold), and counts of rows or persons under it
//!       ─▶ ZerosRule       zero counts, when `zeros_are_disclosive`
//!       ─▶ MaxRowsRule     more rows than `max_output_rows`
//!       ─▶ EchoRule        a cell equal to a value of an identifier / quasi-identifier column read
//!       ─▶ ExtremeRule     MIN/MAX of a sensitive column (one person's value): review
//!       ─▶ FilteredRule    statistics over a FILTER subset of a group: review
//!       ─▶ CheckReport { verdict: worst of all, per rule: failing/review cells }
//! ```
//!
//! Only non-passing cells are listed; every other cell of the result passed
//! every rule (the report says how many cells were checked).

use datafusion::arrow::array::{Array, Int64Array, UInt64Array};
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::catalog::DisclosurePolicy;
use crate::query::{CellKind, PlanFacts};

/// A verdict on a cell, a rule or a result. Ordered: `Pass < Review < Fail`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Review,
    Fail,
}

/// One cell's verdict under one rule. `row`/`column` are `None` for
/// verdicts on the whole result (e.g. too many rows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CellVerdict {
    pub row: Option<u64>,
    pub column: Option<String>,
    pub verdict: Verdict,
    pub reason: String,
}

/// What one rule found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleReport {
    pub rule: String,
    /// Worst verdict of the rule.
    pub verdict: Verdict,
    /// The cells that did not pass.
    pub cells: Vec<CellVerdict>,
}

/// Every rule's findings on one result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckReport {
    /// Worst verdict over all rules.
    pub verdict: Verdict,
    pub rows: u64,
    /// Cells checked (rows × visible columns).
    pub cells_checked: u64,
    /// Groups the aggregation threshold removed before the checks.
    pub suppressed_groups: u64,
    pub rules: Vec<RuleReport>,
}

impl CheckReport {
    /// `(row, column)` of every failing cell (suppressed in the candidate result).
    pub fn failing_cells(&self) -> Vec<(u64, String)> {
        self.rules
            .iter()
            .flat_map(|r| r.cells.iter())
            .filter(|c| c.verdict == Verdict::Fail)
            .filter_map(|c| Some((c.row?, c.column.clone()?)))
            .collect()
    }

    /// Whether any verdict applies to the whole result.
    pub fn fails_as_a_whole(&self) -> bool {
        self.rules
            .iter()
            .flat_map(|r| r.cells.iter())
            .any(|c| c.verdict == Verdict::Fail && c.row.is_none())
    }
}

/// A cell found equal to a value of an identifying column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoHit {
    pub row: u64,
    pub column: String,
    /// `dataset.column` that holds the same value.
    pub source: String,
}

/// What the rules look at.
pub struct CheckInput<'a> {
    /// The result's visible columns.
    pub batches: &'a [RecordBatch],
    /// Records behind each output row, when the query shape lets them be counted.
    pub rows_per_group: Option<Vec<u64>>,
    pub facts: &'a PlanFacts,
    /// The strictest policy over the datasets read.
    pub policy: &'a DisclosurePolicy,
    pub echo: &'a [EchoHit],
    /// Groups the threshold removed.
    pub suppressed_groups: u64,
}

impl CheckInput<'_> {
    fn rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }

    fn column_names(&self) -> Vec<String> {
        self.batches
            .first()
            .map(|b| {
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect()
            })
            .unwrap_or_else(|| self.facts.output.iter().map(|o| o.name.clone()).collect())
    }

    fn kind(&self, column: &str) -> CellKind {
        self.facts
            .output
            .iter()
            .find(|o| o.name == column)
            .map_or(CellKind::RowValue, |o| o.kind)
    }

    /// Value columns: everything but group keys and constants.
    fn value_columns(&self) -> Vec<String> {
        self.column_names()
            .into_iter()
            .filter(|c| !matches!(self.kind(c), CellKind::GroupKey | CellKind::Constant))
            .collect()
    }
}

/// An output check. Implementations must be deterministic and must not put
/// cell values into reasons.
pub trait DisclosureRule: Send + Sync {
    /// Stable rule name, e.g. `frequency`.
    fn name(&self) -> &'static str;
    /// The rule's findings.
    fn check(&self, input: &CheckInput<'_>) -> RuleReport;
}

fn report(rule: &str, cells: Vec<CellVerdict>) -> RuleReport {
    RuleReport {
        rule: rule.to_string(),
        verdict: cells
            .iter()
            .map(|c| c.verdict)
            .max()
            .unwrap_or(Verdict::Pass),
        cells,
    }
}

/// ACRO `safe_threshold`: a cell built from fewer records fails.
pub struct FrequencyRule;

impl DisclosureRule for FrequencyRule {
    fn name(&self) -> &'static str {
        "frequency"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        let t = input.policy.frequency_threshold;
        let mut cells = Vec::new();
        if input.facts.row_level || input.rows() == 0 {
            return report(self.name(), cells);
        }
        let value_cols = input.value_columns();
        match &input.rows_per_group {
            Some(counts) => {
                for (row, n) in counts.iter().enumerate() {
                    if *n < t {
                        for c in &value_cols {
                            cells.push(CellVerdict {
                                row: Some(row as u64),
                                column: Some(c.clone()),
                                verdict: Verdict::Fail,
                                reason: format!("built from {n} records, under the threshold of {t}"),
                            });
                        }
                    }
                }
            }
            None => cells.push(CellVerdict {
                row: None,
                column: None,
                verdict: Verdict::Review,
                reason: "the records behind each row cannot be counted through this query's shape (e.g. a UNION or join of aggregates); every aggregation inside was thresholded".into(),
            }),
        }
        // A count of rows or persons below the threshold is itself a small cell
        // (e.g. `COUNT(*) FILTER (WHERE …)` inside a large group). Zero is the zeros rule's.
        let mut offset = 0u64;
        for b in input.batches {
            for (i, f) in b.schema().fields().iter().enumerate() {
                let people =
                    input.facts.output.iter().any(|o| {
                        o.name == *f.name() && o.kind == CellKind::Count && o.counts_people
                    });
                if !people {
                    continue;
                }
                for row in 0..b.num_rows() {
                    if let Some(v) = count_value(b.column(i).as_ref(), row)
                        && v > 0
                        && v < i128::from(t)
                    {
                        cells.push(CellVerdict {
                            row: Some(offset + row as u64),
                            column: Some(f.name().clone()),
                            verdict: Verdict::Fail,
                            reason: format!("a count under the threshold of {t}"),
                        });
                    }
                }
            }
            offset += b.num_rows() as u64;
        }
        report(self.name(), cells)
    }
}

/// ACRO `zeros_are_disclosive`: a zero count reveals that nobody has the attribute.
pub struct ZerosRule;

fn count_value(col: &dyn Array, row: usize) -> Option<i128> {
    if col.is_null(row) {
        return None;
    }
    if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
        return Some(i128::from(a.value(row)));
    }
    if let Some(a) = col.as_any().downcast_ref::<UInt64Array>() {
        return Some(i128::from(a.value(row)));
    }
    None
}

impl DisclosureRule for ZerosRule {
    fn name(&self) -> &'static str {
        "zeros"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        let mut cells = Vec::new();
        if !input.policy.zeros_are_disclosive {
            return report(self.name(), cells);
        }
        let mut offset = 0u64;
        for b in input.batches {
            for (i, f) in b.schema().fields().iter().enumerate() {
                if input.kind(f.name()) != CellKind::Count {
                    continue;
                }
                for row in 0..b.num_rows() {
                    if count_value(b.column(i).as_ref(), row) == Some(0) {
                        cells.push(CellVerdict {
                            row: Some(offset + row as u64),
                            column: Some(f.name().clone()),
                            verdict: Verdict::Fail,
                            reason: "a zero count is disclosive (zeros_are_disclosive)".into(),
                        });
                    }
                }
            }
            offset += b.num_rows() as u64;
        }
        report(self.name(), cells)
    }
}

/// A result may have at most `max_output_rows` rows.
pub struct MaxRowsRule;

impl DisclosureRule for MaxRowsRule {
    fn name(&self) -> &'static str {
        "max_rows"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        let max = input.policy.max_output_rows;
        let mut cells = Vec::new();
        if input.rows() > max {
            cells.push(CellVerdict {
                row: None,
                column: None,
                verdict: Verdict::Fail,
                reason: format!("the result has more than {max} rows (max_output_rows)"),
            });
        }
        report(self.name(), cells)
    }
}

/// No output value equals a value of an identifier or quasi-identifier
/// column the query read (the job path finds the hits inside the domain).
pub struct EchoRule;

impl DisclosureRule for EchoRule {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        let cells = input
            .echo
            .iter()
            .map(|h| CellVerdict {
                row: Some(h.row),
                column: Some(h.column.clone()),
                verdict: Verdict::Fail,
                reason: format!(
                    "the value equals a value of identifying column `{}`",
                    h.source
                ),
            })
            .collect();
        report(self.name(), cells)
    }
}

/// `MIN`/`MAX` of a sensitive column is one contributor's exact value.
pub struct ExtremeRule;

impl DisclosureRule for ExtremeRule {
    fn name(&self) -> &'static str {
        "extreme_values"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        review_columns(
            self.name(),
            input,
            |o| o.extreme_of_sensitive,
            "the minimum or maximum of a sensitive column is one contributor's own value",
        )
    }
}

/// A statistic computed with a FILTER clause covers a subset of its group,
/// whose contributors are not counted: a person looks at it.
pub struct FilteredRule;

impl DisclosureRule for FilteredRule {
    fn name(&self) -> &'static str {
        "filtered_aggregate"
    }
    fn check(&self, input: &CheckInput<'_>) -> RuleReport {
        review_columns(
            self.name(),
            input,
            |o| o.filtered && matches!(o.kind, CellKind::Magnitude | CellKind::Extreme),
            "computed over a FILTER subset of the group, whose contributors are not counted",
        )
    }
}

/// Every cell of the output columns `pick` selects, for review.
fn review_columns(
    rule: &str,
    input: &CheckInput<'_>,
    pick: impl Fn(&crate::query::OutputColumn) -> bool,
    reason: &str,
) -> RuleReport {
    let cols: Vec<&str> = input
        .facts
        .output
        .iter()
        .filter(|o| pick(o))
        .map(|o| o.name.as_str())
        .collect();
    let mut cells = Vec::new();
    for row in 0..input.rows() {
        for c in &cols {
            cells.push(CellVerdict {
                row: Some(row),
                column: Some((*c).to_string()),
                verdict: Verdict::Review,
                reason: reason.to_string(),
            });
        }
    }
    report(rule, cells)
}

/// The rules every result goes through, in report order.
pub fn default_rules() -> Vec<Box<dyn DisclosureRule>> {
    vec![
        Box::new(FrequencyRule),
        Box::new(ZerosRule),
        Box::new(MaxRowsRule),
        Box::new(EchoRule),
        Box::new(ExtremeRule),
        Box::new(FilteredRule),
    ]
}

/// Runs `rules` over `input`.
pub fn check(rules: &[Box<dyn DisclosureRule>], input: &CheckInput<'_>) -> CheckReport {
    let reports: Vec<RuleReport> = rules.iter().map(|r| r.check(input)).collect();
    let rows = input.rows();
    CheckReport {
        verdict: reports
            .iter()
            .map(|r| r.verdict)
            .max()
            .unwrap_or(Verdict::Pass),
        rows,
        cells_checked: rows * input.column_names().len() as u64,
        suppressed_groups: input.suppressed_groups,
        rules: reports,
    }
}

/// The strictest combination of the policies of the datasets read.
pub fn strictest(policies: &[&DisclosurePolicy]) -> DisclosurePolicy {
    let mut p = policies.first().map(|p| (*p).clone()).unwrap_or_default();
    for q in policies.iter().skip(1) {
        p.threshold = p.threshold.max(q.threshold);
        p.frequency_threshold = p.frequency_threshold.max(q.frequency_threshold);
        p.zeros_are_disclosive |= q.zeros_are_disclosive;
        p.max_output_rows = p.max_output_rows.min(q.max_output_rows);
        p.auto_release &= q.auto_release;
        p.row_level_output &= q.row_level_output;
        p.dof_threshold = p.dof_threshold.max(q.dof_threshold);
    }
    p
}
