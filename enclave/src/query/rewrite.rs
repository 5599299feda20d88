//! The aggregation-threshold rewrite (BigQuery `AGGREGATION_THRESHOLD`, AWS
//! Clean Rooms minimum): every aggregation over individual rows also counts
//! the distinct privacy units behind each group, and groups under the
//! threshold are dropped inside the plan, before anything above sees them.
//!
//! ```text
//!  view scan ──▶ internal view: granted columns + __anyu_puN (the privacy unit)
//!     │            carried up through Projection / Filter / Sort / Limit / Join / Union
//!     ▼
//!  Aggregate(keys; aggs) ──▶ Aggregate(keys; aggs, __anyu_rows, __anyu_units…)
//!                            + dominance statistics per magnitude argument (output only), anyu_fingerprint(units)
//!                            + per aggregate its contributors (__anyu_contrib…)
//!                            └▶ Filter(anyu_threshold(units ≥ T …[, sketch]))   (counts dropped groups;
//!                               off the output chain records each kept group's sketch: an inner cell)
//!                               └▶ Projection: CASE WHEN contributors ≥ need THEN agg END
//!                                  on the output chain: hidden columns kept to the result
//!                                  elsewhere: only the original columns
//! ```
//!
//! An aggregate's contributors are the units with a row that passes its
//! FILTER with every valued argument non-null (SUM/AVG: a non-zero total);
//! a cell needs the threshold of them (estimators: `dof_threshold` + 1 too),
//! else it is NULL before anything above reads it (ARCHITECTURE.md, "The
//! SQL path").
//!
//! Counting distinct units is the expensive part, so the rewrite picks the
//! cheapest exact form:
//! - **unique units** (the version's quality report shows one row per unit, and
//!   nothing between the scan and the aggregate repeats rows): units = rows, a
//!   plain `COUNT(*)`;
//! - **repeated units, decomposable aggregates** (`COUNT`, `SUM`, `AVG`, `MIN`,
//!   `MAX`): pre-aggregate per (keys, unit), then combine — units are the rows
//!   of the inner aggregate (what a careful analyst writes by hand);
//! - otherwise `COUNT(DISTINCT unit)`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, BooleanArray, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::functions_aggregate::expr_fn::{count, count_distinct, max, min, sum};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Distinct, Expr, ExprSchemable, Filter, LogicalPlan, Projection,
    ScalarUDF, Volatility, cast, create_udf, lit, when,
};

use super::GrantedTable;
use super::fingerprint::{FingerprintKey, fingerprint_udaf};
use super::policy::PlanFacts;
use super::top_n::top_n_udaf;
use crate::{Error, Result};

/// Name prefixes of the hidden per-group columns on the result.
pub const ROWS_COLUMN: &str = "__anyu_rows";
/// See [`ROWS_COLUMN`].
pub const UNITS_COLUMN: &str = "__anyu_units";
/// See [`ROWS_COLUMN`].
pub const FINGERPRINT_COLUMN: &str = "__anyu_fp";
/// See [`ROWS_COLUMN`]: contributors behind one aggregate.
pub const CONTRIBUTORS_COLUMN: &str = "__anyu_contrib";
/// See [`ROWS_COLUMN`]: whether one aggregate's cell was kept.
pub const KEPT_COLUMN: &str = "__anyu_kept";
/// See [`ROWS_COLUMN`]: the group's identity.
pub const CELL_COLUMN: &str = "__anyu_cell";

/// Aggregates that estimate from a sample: they need degrees of freedom
/// (contributors − 1 ≥ `dof_threshold`), as model outputs do.
pub const DOF_AGGREGATES: &[&str] = &[
    "var",
    "var_pop",
    "stddev",
    "stddev_pop",
    "covar_samp",
    "covar_pop",
    "corr",
    "regr_slope",
    "regr_intercept",
    "regr_r2",
    "regr_avgx",
    "regr_avgy",
    "regr_sxx",
    "regr_syy",
    "regr_sxy",
];

/// What the rewrite adds beyond the threshold.
#[derive(Debug, Clone)]
pub struct RewriteOptions {
    /// Per-person contribution statistics behind magnitude aggregates (the dominance rules).
    pub dominance: bool,
    /// Differencing under this key: each kept group's identity, and its
    /// units' sketch when `sketches`.
    pub fingerprint: Option<FingerprintKey>,
    /// Compute the sketches in the plan. Without them a job records each
    /// cell's units and identity only (one hash per kept group, nothing per
    /// row), and sketches only when a comparison needs them.
    pub sketches: bool,
}

/// A privacy-unit column carried through the plan.
#[derive(Debug, Clone)]
struct Unit {
    col: Column,
    dataset: String,
    /// One row per unit in this relation.
    unique: bool,
}

/// Hidden per-group counts present in a relation's output (output chain only).
#[derive(Debug, Clone)]
struct Hidden {
    rows: Column,
    units: Vec<Column>,
    dominance: Vec<Dom>,
    /// The group's unit sketch.
    fingerprint: Option<Column>,
    /// The group's identity ([`super::fingerprint::cell_ids`]).
    cell: Option<Column>,
    /// Per gated aggregate: whether its cell was kept.
    kept: Vec<Kept>,
}

/// One aggregate's contributor gate, as carried on the output chain.
#[derive(Debug, Clone)]
struct Kept {
    /// The visible output column carrying the aggregate, while it is output unchanged.
    target: Option<Column>,
    /// Boolean: contributors reached what the aggregate needs.
    kept: Column,
    /// Needs degrees of freedom (not only the threshold).
    dof: bool,
}

/// Who contributes to one aggregate, per row: the rows of a unit that pass
/// the aggregate's FILTER with every argument non-null; for additive
/// aggregates the unit's total must also be non-zero.
#[derive(Debug, Clone)]
struct Gate {
    /// Position among the aggregate expressions.
    index: usize,
    /// The row contributes (FILTER passes, valued arguments non-null);
    /// `None`: every row does.
    base: Option<Expr>,
    /// Additive aggregates: the value whose per-unit total must be non-zero.
    additive: Option<Expr>,
    dof: bool,
}

impl Gate {
    /// The row contributes, with a non-zero value if additive; `None`: every
    /// row does (the group's units are the contributors).
    fn row(&self) -> Option<Expr> {
        let non_zero = self.additive.clone().map(|v| v.not_eq(lit(0i64)));
        self.base
            .clone()
            .into_iter()
            .chain(non_zero)
            .reduce(Expr::and)
    }
}

/// Per-person contribution statistics behind one magnitude output column
/// (for the dominance rules): sum of the n largest, the two largest, the
/// largest, the smallest, the total and the number of contributions.
#[derive(Debug, Clone)]
struct Dom {
    /// The visible output column carrying the aggregate, while it is output unchanged.
    target: Option<Column>,
    /// `None` when this query shape hides per-person contributions.
    cols: Option<[Column; 6]>,
}

/// The pre-aggregated plan, its dominance statistics, its units' sketch
/// and, per gate, its contributor column.
type PreAggregated = (LogicalPlan, Vec<Dom>, Option<Column>, Vec<String>);

struct Out {
    plan: LogicalPlan,
    units: Vec<Unit>,
    hidden: Option<Hidden>,
}

/// Inner cells kept beyond this are not recorded; the check then reviews
/// the result as a whole (it cannot compare what it did not see).
pub const MAX_INNER_CELLS: usize = 10_000;

/// One group of an aggregation inside the query (a scalar subquery, CTE,
/// derived table, join or UNION input) that the threshold kept: the sketch
/// of its units, for differencing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InnerCell {
    /// Which inner aggregation (index into [`Rewritten::inner_aggregations`]).
    pub aggregation: usize,
    /// Distinct units behind the group (summed over the datasets read).
    pub units: u64,
    /// The sketch's bytes ([`crate::disclosure::sketch::Sketch::to_bytes`]),
    /// when the plan computes sketches.
    pub sketch: Option<Vec<u8>>,
    /// The group's identity, when its aggregation has a stable one.
    pub id: Option<u128>,
}

/// The inner cells a run recorded, filled while the plan runs.
#[derive(Debug, Default)]
pub struct InnerCells {
    pub cells: Vec<InnerCell>,
    /// More than [`MAX_INNER_CELLS`] were kept: some are missing.
    pub overflow: bool,
}

/// What the rewrite did, for the job and the disclosure checks.
#[derive(Debug, Clone)]
pub struct Rewritten {
    /// The plan to run.
    pub plan: LogicalPlan,
    /// Groups dropped under the threshold (filled while the plan runs).
    pub dropped: Arc<AtomicU64>,
    /// Hidden columns on the result: rows and units per output row, when the
    /// output rows are the groups of one thresholded aggregation.
    pub hidden: Option<HiddenColumns>,
    /// Aggregations that got a threshold.
    pub thresholded: usize,
    /// How each thresholded aggregation counted units (`rows`, `pre_aggregate`, `distinct`).
    pub strategies: Vec<&'static str>,
    /// Privacy-unit columns carried to the output of a row-level plan, as
    /// (column, dataset): a model job counts the persons behind its input.
    pub units: Vec<(String, String)>,
    /// Groups of aggregations off the output chain, with their sketches
    /// (filled while the plan runs; differencing compares them too).
    pub inner: Arc<std::sync::Mutex<InnerCells>>,
    /// Per inner aggregation, its aggregates as planned (for reviewers).
    pub inner_aggregations: Vec<String>,
    /// Every thresholded aggregation's rows are fixed by its plan and the
    /// data (no volatile or time-dependent function, no LIMIT, sampling or
    /// window below it): running the plan again gives the same cells, and
    /// each cell has an identity.
    pub stable: bool,
}

/// Names of the hidden columns on the result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiddenColumns {
    pub rows: String,
    pub units: Vec<String>,
    /// Per magnitude output column: its contribution statistics.
    pub dominance: Vec<DominanceColumns>,
    /// The sketch of each row's privacy units (Binary), for differencing.
    pub fingerprint: Option<String>,
    /// Each row's identity (16 bytes, little-endian), for differencing.
    pub cell: Option<String>,
    /// Per aggregate with a contributor gate: whether its cell was kept.
    pub kept: Vec<KeptColumns>,
}

/// The contributor gate of one aggregate on the result. A cell whose gate
/// failed is already NULL: the plan withheld it right above the aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptColumns {
    /// The visible output column (the aggregate), if output unchanged.
    pub column: Option<String>,
    /// Boolean per row: the cell had enough contributors.
    pub kept: String,
    /// The gate also required degrees of freedom.
    pub dof: bool,
}

/// Hidden columns with per-person contributions behind one output column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DominanceColumns {
    /// The visible output column (a magnitude aggregate), if output unchanged.
    pub column: Option<String>,
    /// `None`: contributions per person could not be computed for this query.
    pub stats: Option<DominanceStats>,
}

/// Column names of [`DominanceColumns`] statistics, per output row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DominanceStats {
    /// Sum of the n largest contributions (n from the policy).
    pub top_n: String,
    /// Sum of the two largest (p-ratio).
    pub top2: String,
    pub max: String,
    pub min: String,
    pub total: String,
    /// Contributions that are not null.
    pub count: String,
}

struct Rewriter<'a> {
    tables: &'a [GrantedTable],
    /// n of the (n, k) dominance rule: the strictest over the datasets.
    nk_n: usize,
    per_unit: &'a HashMap<usize, (usize, String)>,
    next: usize,
    thresholded: usize,
    strategies: Vec<&'static str>,
    /// Compute the dominance statistics (off only for the benchmark's baseline).
    dominance: bool,
    /// Differencing: (key, sketch capacity).
    fingerprint: Option<(FingerprintKey, usize)>,
    /// Sketches in the plan (else identities and counts only).
    sketches: bool,
    /// Some aggregation's rows are not fixed by its plan.
    unstable: bool,
    /// Where inner aggregations' kept groups are recorded.
    inner: Arc<std::sync::Mutex<InnerCells>>,
    inner_aggregations: Vec<String>,
}

fn addr(p: &LogicalPlan) -> usize {
    p as *const LogicalPlan as usize
}

/// Where an inner aggregation's kept groups are recorded, and what with.
struct Tap {
    aggregation: usize,
    sink: Arc<std::sync::Mutex<InnerCells>>,
    /// An argument after the counts is the groups' sketch.
    sketch: bool,
    /// Identities: (key, the aggregation's seed, the group keys' types); the
    /// keys are the last arguments.
    ids: Option<(FingerprintKey, u128, Vec<DataType>)>,
}

/// The threshold predicate: true when every (units, threshold) pair holds;
/// counts the rows (groups) it rejects. With a `tap`, every kept group is
/// recorded as an inner cell of that aggregation (units, and the sketch and
/// identity its further arguments give).
fn threshold_udf(n_pairs: usize, dropped: Arc<AtomicU64>, tap: Option<Tap>) -> ScalarUDF {
    let mut inputs = vec![DataType::Int64; n_pairs * 2];
    if let Some(t) = &tap {
        if t.sketch {
            inputs.push(DataType::Binary);
        }
        if let Some((_, _, types)) = &t.ids {
            inputs.extend(types.iter().cloned());
        }
    }
    let fun = Arc::new(move |args: &[ColumnarValue]| {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let len = arrays.first().map_or(0, |a| a.len());
        let ints: Vec<&Int64Array> = arrays[..n_pairs * 2]
            .iter()
            .map(|a| {
                a.as_any().downcast_ref::<Int64Array>().ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal(
                        "threshold counts are not Int64".into(),
                    )
                })
            })
            .collect::<datafusion::error::Result<_>>()?;
        let mut rejected = 0u64;
        let keep: BooleanArray = (0..len)
            .map(|row| {
                let ok = ints.chunks(2).all(|pair| {
                    let (units, threshold) = (pair[0], pair[1]);
                    !units.is_null(row) && units.value(row) >= threshold.value(row)
                });
                if !ok {
                    rejected += 1;
                }
                Some(ok)
            })
            .collect();
        dropped.fetch_add(rejected, Ordering::Relaxed);
        if let Some(t) = &tap {
            let mut next = n_pairs * 2;
            let sketches = if t.sketch {
                next += 1;
                Some(
                    arrays[next - 1]
                        .as_any()
                        .downcast_ref::<datafusion::arrow::array::BinaryArray>()
                        .ok_or_else(|| {
                            datafusion::error::DataFusionError::Internal(
                                "sketches are not Binary".into(),
                            )
                        })?,
                )
            } else {
                None
            };
            let kept: Vec<usize> = (0..len).filter(|r| keep.value(*r)).collect();
            // Identities of the kept groups only.
            let ids = match &t.ids {
                Some((key, seed, _)) => {
                    let take = datafusion::arrow::array::UInt32Array::from_iter_values(
                        kept.iter().map(|r| *r as u32),
                    );
                    let keys = arrays[next..]
                        .iter()
                        .map(|a| datafusion::arrow::compute::take(a.as_ref(), &take, None))
                        .collect::<std::result::Result<Vec<_>, _>>()?;
                    Some(super::fingerprint::cell_ids(key, *seed, &keys, kept.len())?)
                }
                None => None,
            };
            let mut sink = t.sink.lock().unwrap_or_else(|e| e.into_inner());
            for (k, &row) in kept.iter().enumerate() {
                if sketches.is_some_and(|s| s.is_null(row)) {
                    continue;
                }
                if sink.cells.len() >= MAX_INNER_CELLS {
                    sink.overflow = true;
                    break;
                }
                let units = ints
                    .chunks(2)
                    .map(|pair| pair[0].value(row).max(0) as u64)
                    .sum();
                sink.cells.push(InnerCell {
                    aggregation: t.aggregation,
                    units,
                    sketch: sketches.map(|s| s.value(row).to_vec()),
                    id: ids.as_ref().map(|ids| ids[k]),
                });
            }
        }
        Ok(ColumnarValue::Array(Arc::new(keep)))
    });
    create_udf(
        "anyu_threshold",
        inputs,
        DataType::Boolean,
        // Volatile: never pushed, merged or evaluated twice by the optimizer.
        Volatility::Volatile,
        fun,
    )
}

/// The identity column of a thresholded aggregation's kept groups: its
/// seed and each group's key values ([`super::fingerprint::cell_ids`]).
fn cell_udf(key: FingerprintKey, seed: u128, types: Vec<DataType>) -> ScalarUDF {
    let fun = Arc::new(move |args: &[ColumnarValue]| {
        let arrays = ColumnarValue::values_to_arrays(args)?;
        let len = arrays.first().map_or(0, |a| a.len());
        let ids = super::fingerprint::cell_ids(&key, seed, &arrays, len)?;
        let out = datafusion::arrow::array::BinaryArray::from_iter_values(
            ids.iter().map(|id| id.to_le_bytes()),
        );
        Ok(ColumnarValue::Array(Arc::new(out)))
    });
    create_udf(
        "anyu_cell",
        types,
        DataType::Binary,
        Volatility::Immutable,
        fun,
    )
}

/// Whether `plan` (an aggregation's input) gives the same rows on every
/// run over the same data: no function whose value is not fixed by its
/// arguments (random, now), no LIMIT or fetch, no window (row numbers over
/// ties), no DISTINCT ON, also inside subqueries.
fn stable_input(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut stable = true;
    let _ = plan.apply_with_subqueries(|node| {
        let fixed = match node {
            LogicalPlan::Limit(_)
            | LogicalPlan::Window(_)
            | LogicalPlan::Distinct(Distinct::On(_)) => false,
            LogicalPlan::Sort(s) => s.fetch.is_none(),
            LogicalPlan::TableScan(t) => t.fetch.is_none(),
            _ => true,
        };
        let mut exprs_fixed = true;
        let _ = node.apply_expressions(|e| {
            e.apply(|x| {
                if let Expr::ScalarFunction(f) = x
                    && f.func.signature().volatility != Volatility::Immutable
                {
                    exprs_fixed = false;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        });
        if fixed && exprs_fixed {
            Ok(TreeNodeRecursion::Continue)
        } else {
            stable = false;
            Ok(TreeNodeRecursion::Stop)
        }
    });
    stable
}

/// Rewrites a checked plan. `facts` come from [`super::policy::check`] on the
/// same plan object (they identify per-unit aggregations by node). A job
/// always runs with every option on; `anyu-bench acro` turns them off to
/// measure what each costs.
pub fn rewrite(
    plan: &LogicalPlan,
    tables: &[GrantedTable],
    facts: &PlanFacts,
    options: &RewriteOptions,
) -> Result<Rewritten> {
    let dropped = Arc::new(AtomicU64::new(0));
    // Differences of up to threshold − 1 units must decode; nothing to
    // protect when the threshold is 1.
    let threshold = tables.iter().map(|t| t.policy.threshold).max().unwrap_or(0);
    let fingerprint = options
        .fingerprint
        .clone()
        .filter(|_| threshold > 1)
        .map(|k| {
            (
                k,
                (threshold - 1).min(crate::disclosure::sketch::MAX_CAPACITY as u64) as usize,
            )
        });
    let mut r = Rewriter {
        tables,
        per_unit: &facts.per_unit,
        nk_n: tables
            .iter()
            .map(|t| t.policy.nk.n as usize)
            .max()
            .unwrap_or(2)
            .clamp(1, super::top_n::MAX_N),
        next: 0,
        thresholded: 0,
        strategies: Vec::new(),
        dominance: options.dominance,
        fingerprint,
        sketches: options.sketches,
        unstable: false,
        inner: Default::default(),
        inner_aggregations: Vec::new(),
    };
    let out = r.node(plan, true, &dropped)?;
    let units = out
        .units
        .iter()
        .map(|u| (u.col.name.clone(), u.dataset.clone()))
        .collect();
    let hidden = out.hidden.map(|h| HiddenColumns {
        rows: h.rows.name,
        units: h.units.into_iter().map(|c| c.name).collect(),
        dominance: h
            .dominance
            .into_iter()
            .map(|d| DominanceColumns {
                column: d.target.map(|c| c.name),
                stats: d
                    .cols
                    .map(|[top_n, top2, max, min, total, count]| DominanceStats {
                        top_n: top_n.name,
                        top2: top2.name,
                        max: max.name,
                        min: min.name,
                        total: total.name,
                        count: count.name,
                    }),
            })
            .collect(),
        fingerprint: h.fingerprint.map(|c| c.name),
        cell: h.cell.map(|c| c.name),
        kept: h
            .kept
            .into_iter()
            .map(|k| KeptColumns {
                column: k.target.map(|c| c.name),
                kept: k.kept.name,
                dof: k.dof,
            })
            .collect(),
    });
    Ok(Rewritten {
        plan: out.plan,
        dropped,
        hidden,
        thresholded: r.thresholded,
        strategies: r.strategies,
        units,
        inner: r.inner,
        inner_aggregations: r.inner_aggregations,
        stable: !r.unstable,
    })
}

impl<'a> Rewriter<'a> {
    fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    fn table_of_view(&self, plan: &LogicalPlan) -> Option<&'a GrantedTable> {
        let tables: &'a [GrantedTable] = self.tables;
        tables.iter().find(|t| t.view == *plan)
    }

    fn threshold_of(&self, dataset: &str) -> i64 {
        self.tables
            .iter()
            .find(|t| t.dataset_id == dataset)
            .map_or(i64::MAX, |t| t.policy.threshold.min(i64::MAX as u64) as i64)
    }

    /// Contributors an aggregate needs from `dataset`'s units: the
    /// threshold, and for estimators one more than the degrees of freedom.
    fn need(&self, g: &Gate, dataset: &str) -> i64 {
        let threshold = self.threshold_of(dataset);
        if !g.dof {
            return threshold;
        }
        let dof = self
            .tables
            .iter()
            .find(|t| t.dataset_id == dataset)
            .map_or(i64::MAX, |t| {
                t.policy
                    .dof_threshold
                    .saturating_add(1)
                    .min(i64::MAX as u64) as i64
            });
        threshold.max(dof)
    }

    fn node(&mut self, plan: &LogicalPlan, chain: bool, dropped: &Arc<AtomicU64>) -> Result<Out> {
        if let Some(t) = self.table_of_view(plan) {
            return self.view(t, plan);
        }
        match plan {
            LogicalPlan::Projection(p) => {
                let inp = self.node(&p.input, chain, dropped)?;
                let mut exprs = p.expr.clone();
                let mut units = Vec::new();
                for u in &inp.units {
                    let name = self.fresh("__anyu_pu");
                    exprs.push(Expr::Column(u.col.clone()).alias(&name));
                    units.push(Unit {
                        col: Column::from_name(name),
                        ..u.clone()
                    });
                }
                let hidden = match &inp.hidden {
                    Some(h) => {
                        let rows = self.fresh(ROWS_COLUMN);
                        exprs.push(Expr::Column(h.rows.clone()).alias(&rows));
                        let mut cols = Vec::new();
                        for c in &h.units {
                            let n = self.fresh(UNITS_COLUMN);
                            exprs.push(Expr::Column(c.clone()).alias(&n));
                            cols.push(Column::from_name(n));
                        }
                        // An aggregate stays traceable while it is output as it is.
                        let trace = |target: &Option<Column>| {
                            target.as_ref().and_then(|t| {
                                p.expr.iter().zip(p.schema.columns()).find_map(|(e, out)| {
                                    // `count(*)` is planned as an alias of an alias.
                                    let mut inner = e;
                                    while let Expr::Alias(a) = inner {
                                        inner = a.expr.as_ref();
                                    }
                                    matches!(inner, Expr::Column(c) if c == t).then_some(out)
                                })
                            })
                        };
                        let mut dominance = Vec::new();
                        for d in &h.dominance {
                            let target = trace(&d.target);
                            let cols = d.cols.as_ref().map(|cs| {
                                cs.clone().map(|c| {
                                    let n = self.fresh("__anyu_dom");
                                    exprs.push(Expr::Column(c).alias(&n));
                                    Column::from_name(n)
                                })
                            });
                            dominance.push(Dom { target, cols });
                        }
                        let fingerprint = h.fingerprint.as_ref().map(|c| {
                            let n = self.fresh(FINGERPRINT_COLUMN);
                            exprs.push(Expr::Column(c.clone()).alias(&n));
                            Column::from_name(n)
                        });
                        let cell = h.cell.as_ref().map(|c| {
                            let n = self.fresh(CELL_COLUMN);
                            exprs.push(Expr::Column(c.clone()).alias(&n));
                            Column::from_name(n)
                        });
                        let mut kept = Vec::new();
                        for k in &h.kept {
                            let n = self.fresh(KEPT_COLUMN);
                            exprs.push(Expr::Column(k.kept.clone()).alias(&n));
                            kept.push(Kept {
                                target: trace(&k.target),
                                kept: Column::from_name(n),
                                dof: k.dof,
                            });
                        }
                        Some(Hidden {
                            rows: Column::from_name(rows),
                            units: cols,
                            dominance,
                            fingerprint,
                            cell,
                            kept,
                        })
                    }
                    None => None,
                };
                let plan =
                    Projection::try_new(exprs, Arc::new(inp.plan)).map(LogicalPlan::Projection)?;
                Ok(Out {
                    plan,
                    units,
                    hidden,
                })
            }
            LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Limit(_)
            | LogicalPlan::Repartition(_)
            | LogicalPlan::Window(_) => {
                let input = plan.inputs()[0];
                let inp = self.node(input, chain, dropped)?;
                let plan = plan.with_new_exprs(plan.expressions(), vec![inp.plan])?;
                Ok(Out {
                    plan,
                    units: inp.units,
                    hidden: inp.hidden,
                })
            }
            LogicalPlan::SubqueryAlias(s) => {
                let inp = self.node(&s.input, chain, dropped)?;
                let plan = plan.with_new_exprs(vec![], vec![inp.plan])?;
                let requalify = |c: &Column| Column::new(Some(s.alias.clone()), c.name.clone());
                Ok(Out {
                    plan,
                    units: inp
                        .units
                        .iter()
                        .map(|u| Unit {
                            col: requalify(&u.col),
                            ..u.clone()
                        })
                        .collect(),
                    hidden: inp.hidden.map(|h| Hidden {
                        rows: requalify(&h.rows),
                        units: h.units.iter().map(requalify).collect(),
                        dominance: h
                            .dominance
                            .iter()
                            .map(|d| Dom {
                                target: d.target.as_ref().map(requalify),
                                cols: d.cols.as_ref().map(|cs| cs.clone().map(|c| requalify(&c))),
                            })
                            .collect(),
                        fingerprint: h.fingerprint.as_ref().map(requalify),
                        cell: h.cell.as_ref().map(requalify),
                        kept: h
                            .kept
                            .iter()
                            .map(|k| Kept {
                                target: k.target.as_ref().map(requalify),
                                kept: requalify(&k.kept),
                                dof: k.dof,
                            })
                            .collect(),
                    }),
                })
            }
            LogicalPlan::Join(j) => {
                let l = self.node(&j.left, false, dropped)?;
                let r = self.node(&j.right, false, dropped)?;
                let plan = plan.with_new_exprs(plan.expressions(), vec![l.plan, r.plan])?;
                use datafusion::common::JoinType as J;
                let units = match j.join_type {
                    J::LeftSemi | J::LeftAnti | J::LeftMark => l.units,
                    J::RightSemi | J::RightAnti | J::RightMark => r.units,
                    _ => l
                        .units
                        .into_iter()
                        .chain(r.units)
                        .map(|u| Unit { unique: false, ..u })
                        .collect(),
                };
                Ok(Out {
                    plan,
                    units,
                    hidden: None,
                })
            }
            LogicalPlan::Union(u) => self.union(plan, u, dropped),
            LogicalPlan::Distinct(Distinct::All(input)) => {
                // DISTINCT is GROUP BY every column; rewrite it as such.
                let group: Vec<Expr> = input
                    .schema()
                    .columns()
                    .into_iter()
                    .map(Expr::Column)
                    .collect();
                let agg = Aggregate::try_new(Arc::clone(input), group, vec![])?;
                let unit_key = self.per_unit.get(&addr(plan)).cloned();
                self.aggregate(&agg, unit_key, chain, dropped)
            }
            LogicalPlan::Aggregate(a) => {
                let unit_key = self.per_unit.get(&addr(plan)).cloned();
                self.aggregate(a, unit_key, chain, dropped)
            }
            LogicalPlan::Subquery(_) | LogicalPlan::Values(_) | LogicalPlan::EmptyRelation(_) => {
                Ok(Out {
                    plan: plan.clone(),
                    units: vec![],
                    hidden: None,
                })
            }
            other => Err(Error::Internal(format!(
                "the rewrite met a plan node the policy should have refused: {}",
                other.display()
            ))),
        }
        .and_then(|out| self.subqueries(out, dropped))
    }

    /// Applies the rewrite inside subquery expressions of a node.
    fn subqueries(&mut self, out: Out, dropped: &Arc<AtomicU64>) -> Result<Out> {
        use datafusion::common::tree_node::Transformed;
        let mut failed = None;
        let plan = out
            .plan
            .map_subqueries(|sub| {
                let inner = match &sub {
                    LogicalPlan::Subquery(s) => Arc::clone(&s.subquery),
                    _ => return Ok(Transformed::no(sub)),
                };
                match self.node(&inner, false, dropped) {
                    Ok(o) => {
                        let LogicalPlan::Subquery(mut s) = sub else {
                            unreachable!("matched above")
                        };
                        // Keep the subquery's output schema: drop carried unit columns.
                        let n = inner.schema().fields().len();
                        let plan = if o.plan.schema().fields().len() != n {
                            let cols: Vec<Expr> = o
                                .plan
                                .schema()
                                .columns()
                                .into_iter()
                                .take(n)
                                .map(Expr::Column)
                                .collect();
                            Projection::try_new(cols, Arc::new(o.plan))
                                .map(LogicalPlan::Projection)?
                        } else {
                            o.plan
                        };
                        s.subquery = Arc::new(plan);
                        Ok(Transformed::yes(LogicalPlan::Subquery(s)))
                    }
                    Err(e) => {
                        failed = Some(e);
                        Ok(Transformed::no(sub))
                    }
                }
            })?
            .data;
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(Out { plan, ..out })
    }

    fn view(&mut self, t: &GrantedTable, plan: &LogicalPlan) -> Result<Out> {
        let Some(unit) = t.manifest.dataset.privacy_unit.as_deref() else {
            return Ok(Out {
                plan: plan.clone(),
                units: vec![],
                hidden: None,
            });
        };
        let LogicalPlan::Projection(p) = plan else {
            return Err(Error::Internal("a grant view is not a projection".into()));
        };
        let name = self.fresh("__anyu_pu");
        let mut exprs = p.expr.clone();
        let raw = Column::new(Some(TableReference::bare(t.raw_name())), unit);
        exprs.push(Expr::Column(raw).alias(&name));
        let plan = Projection::try_new(exprs, Arc::clone(&p.input)).map(LogicalPlan::Projection)?;
        Ok(Out {
            plan,
            units: vec![Unit {
                col: Column::from_name(name),
                dataset: t.dataset_id.clone(),
                unique: t.units_unique,
            }],
            hidden: None,
        })
    }

    fn union(
        &mut self,
        plan: &LogicalPlan,
        u: &datafusion::logical_expr::Union,
        dropped: &Arc<AtomicU64>,
    ) -> Result<Out> {
        let outs: Vec<Out> = u
            .inputs
            .iter()
            .map(|i| self.node(i, false, dropped))
            .collect::<Result<_>>()?;
        let k = outs.iter().map(|o| o.units.len()).max().unwrap_or(0);
        let names: Vec<String> = (0..k).map(|_| self.fresh("__anyu_pu")).collect();
        let n = u.schema.fields().len();
        let mut inputs = Vec::new();
        let mut datasets: Vec<String> = vec![String::new(); k];
        for o in outs {
            let mut exprs: Vec<Expr> = o
                .plan
                .schema()
                .columns()
                .into_iter()
                .take(n)
                .map(Expr::Column)
                .collect();
            for (i, name) in names.iter().enumerate() {
                // Units may differ in type across branches: compare them as text.
                let e = match o.units.get(i) {
                    Some(unit) => {
                        datasets[i].clone_from(&unit.dataset);
                        cast(Expr::Column(unit.col.clone()), DataType::Utf8)
                    }
                    None => lit(ScalarValue::Utf8(None)),
                };
                exprs.push(e.alias(name));
            }
            inputs.push(Arc::new(
                Projection::try_new(exprs, Arc::new(o.plan)).map(LogicalPlan::Projection)?,
            ));
        }
        let plan = match plan {
            LogicalPlan::Union(_) => LogicalPlan::Union(
                datafusion::logical_expr::Union::try_new_with_loose_types(inputs)?,
            ),
            _ => return Err(Error::Internal("union expected".into())),
        };
        let units = names
            .into_iter()
            .zip(datasets)
            .map(|(name, dataset)| Unit {
                col: Column::from_name(name),
                dataset,
                unique: false,
            })
            .collect();
        Ok(Out {
            plan,
            units,
            hidden: None,
        })
    }

    fn aggregate(
        &mut self,
        a: &Aggregate,
        unit_key: Option<(usize, String)>,
        chain: bool,
        dropped: &Arc<AtomicU64>,
    ) -> Result<Out> {
        let before = self.thresholded;
        let inp = self.node(&a.input, false, dropped)?;
        if inp.units.is_empty() && self.thresholded > before {
            // Its groups combine thresholded groups into values no sketch
            // describes (a sum of cells, each passing, that is everyone but
            // one): differencing could not see them.
            return Err(super::policy::refuse(
                "aggregate_over_aggregates",
                "an aggregation over the results of other aggregations is not supported: \
                 aggregate the rows directly (GROUP BY the privacy unit first when a per-person \
                 total is needed)",
            ));
        }
        if let Some((key, dataset)) = unit_key {
            // Grouped by the privacy unit: still one relation per unit; the
            // threshold applies further up.
            let agg = Aggregate::try_new(
                Arc::new(inp.plan),
                a.group_expr.clone(),
                a.aggr_expr.clone(),
            )?;
            let (q, f) = agg.schema.qualified_field(key);
            let col = Column::new(q.cloned(), f.name());
            return Ok(Out {
                plan: LogicalPlan::Aggregate(agg),
                units: vec![Unit {
                    col,
                    dataset,
                    unique: a.group_expr.len() == 1,
                }],
                hidden: None,
            });
        }
        if inp.units.is_empty() {
            // Aggregating aggregates (or constants): nothing to count.
            let agg = Aggregate::try_new(
                Arc::new(inp.plan),
                a.group_expr.clone(),
                a.aggr_expr.clone(),
            )?;
            return Ok(Out {
                plan: LogicalPlan::Aggregate(agg),
                units: vec![],
                hidden: None,
            });
        }
        self.thresholded += 1;
        let original_width = a.schema.fields().len();
        let group_len = a.group_expr.len();
        let rows_name = self.fresh(ROWS_COLUMN);
        let unit_names: Vec<String> = inp.units.iter().map(|_| self.fresh(UNITS_COLUMN)).collect();
        let non_unique: Vec<&Unit> = inp.units.iter().filter(|u| !u.unique).collect();

        let magnitudes = if chain && self.dominance {
            magnitudes(a)?
        } else {
            vec![]
        };
        let gates = gates(a)?;
        // Per gate: (contributor column, contributors needed) pairs, all of which must hold.
        let mut gate_cols: Vec<Vec<(Expr, i64)>> = Vec::new();
        let mut dominance = Vec::new();
        let fingerprint;
        let (plan, strategy) = if non_unique.is_empty() {
            // Units = rows.
            let mut aggr = a.aggr_expr.clone();
            aggr.push(count(lit(1i64)).alias(&rows_name));
            // One set of statistics per value argument, however many aggregates share it.
            let mut seen: Vec<(Expr, [Column; 6])> = Vec::new();
            for (i, arg, _) in &magnitudes {
                // Each row is one unit's whole contribution.
                let cols = arg
                    .as_ref()
                    .map(|arg| self.row_dominance(arg, &mut seen, &mut aggr));
                dominance.push(Dom {
                    target: Some(output_column(a, *i)),
                    cols,
                });
            }
            fingerprint = self.fingerprint_agg(unit_args(&inp.units), None, &mut aggr);
            // Each row is one unit: contributors are contributing rows.
            let mut seen = Vec::new();
            for g in &gates {
                let need = inp
                    .units
                    .iter()
                    .map(|u| self.need(g, &u.dataset))
                    .max()
                    .unwrap_or(0);
                let n = match g.row() {
                    Some(row) => self.contributor_agg(count_rows(row)?, &mut aggr, &mut seen),
                    None => col(&rows_name),
                };
                gate_cols.push(vec![(n, need)]);
            }
            let agg = Aggregate::try_new(Arc::new(inp.plan), a.group_expr.clone(), aggr)?;
            let plan = LogicalPlan::Aggregate(agg);
            // Every unit count is the row count.
            let mut exprs: Vec<Expr> = plan
                .schema()
                .columns()
                .into_iter()
                .map(Expr::Column)
                .collect();
            for n in &unit_names {
                exprs.push(Expr::Column(Column::from_name(&rows_name)).alias(n));
            }
            (
                Projection::try_new(exprs, Arc::new(plan)).map(LogicalPlan::Projection)?,
                "rows",
            )
        } else if inp.units.len() == 1
            && let Some((plan, dom, fp, contributors)) =
                self.pre_aggregate(a, &inp, &rows_name, &unit_names[0], &magnitudes, &gates)?
        {
            dominance = dom;
            fingerprint = fp;
            for (g, n) in gates.iter().zip(contributors) {
                gate_cols.push(vec![(col(&n), self.need(g, &inp.units[0].dataset))]);
            }
            (plan, "pre_aggregate")
        } else {
            let mut aggr = a.aggr_expr.clone();
            // Contributions per unit are not computed on this path: SUM/AVG
            // go to review; the other statistics are judged per row, as ACRO
            // does (a person's rows count as several contributors).
            let mut seen: Vec<(Expr, [Column; 6])> = Vec::new();
            for (i, arg, additive) in &magnitudes {
                let cols = arg
                    .as_ref()
                    .filter(|_| !additive)
                    .map(|arg| self.row_dominance(arg, &mut seen, &mut aggr));
                dominance.push(Dom {
                    target: Some(output_column(a, *i)),
                    cols,
                });
            }
            aggr.push(count(lit(1i64)).alias(&rows_name));
            for (u, n) in inp.units.iter().zip(&unit_names) {
                let e = if u.unique {
                    count(lit(1i64))
                } else {
                    count_distinct(Expr::Column(u.col.clone()))
                };
                aggr.push(e.alias(n));
            }
            fingerprint = self.fingerprint_agg(unit_args(&inp.units), None, &mut aggr);
            // Per unit, the distinct units with a contributing row.
            let mut seen = Vec::new();
            for g in &gates {
                let mut cols = Vec::new();
                for (u, units) in inp.units.iter().zip(&unit_names) {
                    let need = self.need(g, &u.dataset);
                    let Some(row) = g.row() else {
                        cols.push((col(units), need));
                        continue;
                    };
                    let unit = Expr::Column(u.col.clone());
                    if let (Some(v), false) = (&g.additive, u.unique) {
                        // Totals per unit are not computed here. A unit whose
                        // rows all have one sign has a non-zero total; one with
                        // both signs may cancel and is not counted:
                        // |P ∪ N| − |P ∩ N| = 2·|P ∪ N| − |P| − |N|.
                        let base = g.base.clone().unwrap_or_else(|| lit(true));
                        let mut distinct = |pred: Expr| -> Result<Expr> {
                            let e = count_distinct(when(pred, unit.clone()).end()?);
                            Ok(self.contributor_agg(e, &mut aggr, &mut seen))
                        };
                        let any = distinct(row)?;
                        let pos = distinct(base.clone().and(v.clone().gt(lit(0i64))))?;
                        let neg = distinct(base.and(v.clone().lt(lit(0i64))))?;
                        cols.push((lit(2i64) * any - pos - neg, need));
                        continue;
                    }
                    let e = if u.unique {
                        count_rows(row)?
                    } else {
                        count_distinct(when(row, unit).end()?)
                    };
                    cols.push((self.contributor_agg(e, &mut aggr, &mut seen), need));
                }
                gate_cols.push(cols);
            }
            let agg = Aggregate::try_new(Arc::new(inp.plan), a.group_expr.clone(), aggr)?;
            (LogicalPlan::Aggregate(agg), "distinct")
        };
        self.strategies.push(strategy);

        // The threshold filter, directly on the groups.
        let mut args = Vec::new();
        for (u, n) in inp.units.iter().zip(&unit_names) {
            args.push(Expr::Column(Column::from_name(n)));
            args.push(lit(self.threshold_of(&u.dataset)));
        }
        // The cells' identities: the aggregation's seed and each group's keys
        // (every column before the aggregates, a grouping set's id included).
        let seed = self.cell_seed(a);
        let key_cols: Vec<(Column, DataType)> = plan
            .schema()
            .iter()
            .take(original_width - a.aggr_expr.len())
            .map(|(q, f)| (Column::new(q.cloned(), f.name()), f.data_type().clone()))
            .collect();
        // Off the output chain the kept groups are recorded (units, identity,
        // sketch): their values reach the output through arithmetic, joins
        // or subqueries.
        let tap = match (&self.fingerprint, chain) {
            (Some((key, _)), false) => {
                if let Some(fp) = &fingerprint {
                    args.push(Expr::Column(fp.clone()));
                }
                let ids = seed.map(|seed| {
                    args.extend(key_cols.iter().map(|(c, _)| Expr::Column(c.clone())));
                    let types = key_cols.iter().map(|(_, t)| t.clone()).collect();
                    (key.clone(), seed, types)
                });
                let label = a
                    .aggr_expr
                    .iter()
                    .map(|e| e.schema_name().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                self.inner_aggregations.push(if label.is_empty() {
                    "GROUP BY".to_string()
                } else {
                    label
                });
                Some(Tap {
                    aggregation: self.inner_aggregations.len() - 1,
                    sink: Arc::clone(&self.inner),
                    sketch: fingerprint.is_some(),
                    ids,
                })
            }
            _ => None,
        };
        let keep = Arc::new(threshold_udf(inp.units.len(), Arc::clone(dropped), tap));
        let pred = Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
            keep, args,
        ));
        let filtered = LogicalPlan::Filter(Filter::try_new(pred, Arc::new(plan))?);

        // The contributor gates, right above: a cell with too few
        // contributors is NULL before anything (HAVING, ORDER BY, an outer
        // query) can look at it.
        let mut conds: HashMap<usize, Expr> = HashMap::new();
        for (g, cols) in gates.iter().zip(&gate_cols) {
            let cond = cols
                .iter()
                .map(|(n, need)| n.clone().gt_eq(lit(*need)))
                .reduce(Expr::and)
                .unwrap_or_else(|| lit(true));
            conds.insert(g.index, cond);
        }
        if gates.is_empty() && chain && seed.is_none() {
            return Ok(Out {
                plan: filtered,
                units: vec![],
                hidden: Some(Hidden {
                    rows: Column::from_name(rows_name),
                    units: unit_names.into_iter().map(Column::from_name).collect(),
                    dominance,
                    fingerprint,
                    cell: None,
                    kept: vec![],
                }),
            });
        }
        let schema = Arc::clone(filtered.schema());
        let mut exprs = Vec::new();
        for (i, col) in schema.columns().into_iter().enumerate() {
            if i >= original_width && !chain {
                break;
            }
            let cond = (group_len..original_width)
                .contains(&i)
                .then(|| conds.get(&(i - group_len)))
                .flatten();
            exprs.push(match cond {
                Some(cond) => {
                    let (q, f) = schema.qualified_field(i);
                    when(cond.clone(), Expr::Column(col))
                        .end()?
                        .alias_qualified(q.cloned(), f.name())
                }
                None => Expr::Column(col),
            });
        }
        let mut kept = Vec::new();
        if chain {
            for g in &gates {
                let n = self.fresh(KEPT_COLUMN);
                exprs.push(conds[&g.index].clone().alias(&n));
                kept.push(Kept {
                    target: Some(output_column(a, g.index)),
                    kept: Column::from_name(n),
                    dof: g.dof,
                });
            }
        }
        let mut cell = None;
        if let (true, Some(seed), Some((key, _))) = (chain, seed, &self.fingerprint) {
            let e = if key_cols.is_empty() {
                let id = super::fingerprint::cell_ids(key, seed, &[], 1)?[0];
                lit(ScalarValue::Binary(Some(id.to_le_bytes().to_vec())))
            } else {
                let types = key_cols.iter().map(|(_, t)| t.clone()).collect();
                let udf = Arc::new(cell_udf(key.clone(), seed, types));
                let keys = schema
                    .columns()
                    .into_iter()
                    .take(key_cols.len())
                    .map(Expr::Column)
                    .collect();
                Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
                    udf, keys,
                ))
            };
            let n = self.fresh(CELL_COLUMN);
            exprs.push(e.alias(&n));
            cell = Some(Column::from_name(n));
        }
        let plan = Projection::try_new(exprs, Arc::new(filtered)).map(LogicalPlan::Projection)?;
        if chain {
            return Ok(Out {
                plan,
                units: vec![],
                hidden: Some(Hidden {
                    rows: Column::from_name(rows_name),
                    units: unit_names.into_iter().map(Column::from_name).collect(),
                    dominance,
                    fingerprint,
                    cell,
                    kept,
                }),
            });
        }
        Ok(Out {
            plan,
            units: vec![],
            hidden: None,
        })
    }

    /// The identity seed of aggregation `a`: a keyed hash of its input and
    /// grouping as planned (views inlined, so row filters and consent joins
    /// are in it; the dataset versions are added by the job). `None` when
    /// its rows are not fixed by its plan ([`stable_input`]).
    fn cell_seed(&mut self, a: &Aggregate) -> Option<u128> {
        use siphasher::sip128::Hasher128;
        use std::hash::Hash;
        let (key, _) = self.fingerprint.as_ref()?;
        if !stable_input(&a.input) {
            self.unstable = true;
            return None;
        }
        let mut h = key.identity_hasher();
        a.input.hash(&mut h);
        a.group_expr.hash(&mut h);
        Some(h.finish128().as_u128())
    }

    /// Per-unit pre-aggregation for decomposable aggregates: inner
    /// GROUP BY (keys, unit) computing partials, outer GROUP BY keys combining
    /// them; units = inner rows. `None` when an aggregate does not decompose.
    #[allow(clippy::too_many_arguments)]
    fn pre_aggregate(
        &mut self,
        a: &Aggregate,
        inp: &Out,
        rows_name: &str,
        units_name: &str,
        magnitudes: &[Magnitude],
        gates: &[Gate],
    ) -> Result<Option<PreAggregated>> {
        let unit = &inp.units[0];
        let mut partials: Vec<Expr> = Vec::new();
        // Per magnitude column: the per-unit sum, the per-unit minimum row
        // value and the per-unit non-null count (names of inner partials).
        let mut dom_partials: Vec<(usize, String, String, String)> = Vec::new();
        for (i, arg, _) in magnitudes {
            let Some(arg) = arg else {
                return Ok(None);
            };
            // Aggregates over the same value share its partials.
            let shared = magnitudes
                .iter()
                .take(dom_partials.len())
                .position(|(_, other, _)| other.as_ref() == Some(arg));
            if let Some(j) = shared {
                let (_, s, m, k) = dom_partials[j].clone();
                dom_partials.push((*i, s, m, k));
                continue;
            }
            let (s, m, k) = (
                self.fresh("__anyu_p"),
                self.fresh("__anyu_p"),
                self.fresh("__anyu_p"),
            );
            partials.push(sum(cast(arg.clone(), DataType::Float64)).alias(&s));
            partials.push(min(cast(arg.clone(), DataType::Float64)).alias(&m));
            partials.push(count(arg.clone()).alias(&k));
            dom_partials.push((*i, s, m, k));
        }
        let mut combine: Vec<(Vec<String>, &'static str)> = Vec::new();
        for e in &a.aggr_expr {
            let inner = match e {
                Expr::Alias(al) => al.expr.as_ref(),
                other => other,
            };
            let Expr::AggregateFunction(AggregateFunction { func, params }) = inner else {
                return Ok(None);
            };
            if params.distinct || !params.order_by.is_empty() {
                return Ok(None);
            }
            let name = func.name();
            let arg = params.args.first().cloned().unwrap_or_else(|| lit(1i64));
            // `agg(x) FILTER (WHERE f)` is `agg(CASE WHEN f THEN x END)` for these.
            let arg = match &params.filter {
                Some(f) => when(f.as_ref().clone(), arg).end()?,
                None => arg,
            };
            let mut names = Vec::new();
            let simple: Option<fn(Expr) -> Expr> = match name {
                "count" => Some(count),
                "sum" => Some(sum),
                "min" => Some(min),
                "max" => Some(max),
                _ => None,
            };
            let kind = match name {
                "count" | "sum" | "min" | "max" => {
                    let n = self.fresh("__anyu_p");
                    let partial = simple.expect("matched above");
                    partials.push(partial(arg).alias(&n));
                    names.push(n);
                    match name {
                        "count" => "count",
                        "sum" => "sum",
                        "min" => "min",
                        _ => "max",
                    }
                }
                "avg" => {
                    let arg_type = arg.get_type(a.input.schema())?;
                    if !matches!(
                        arg_type,
                        DataType::Float64 | DataType::Int64 | DataType::Int32 | DataType::Float32
                    ) {
                        return Ok(None);
                    }
                    let s = self.fresh("__anyu_p");
                    let c = self.fresh("__anyu_p");
                    partials.push(sum(cast(arg.clone(), DataType::Float64)).alias(&s));
                    partials.push(count(arg).alias(&c));
                    names.push(s);
                    names.push(c);
                    "avg"
                }
                _ => return Ok(None),
            };
            if params.args.len() > 1 {
                return Ok(None);
            }
            combine.push((names, kind));
        }
        let row_count = self.fresh("__anyu_p");
        partials.push(count(lit(1i64)).alias(&row_count));

        let mut inner_groups = a.group_expr.clone();
        inner_groups.push(Expr::Column(unit.col.clone()));
        let inner = Aggregate::try_new(Arc::new(inp.plan.clone()), inner_groups, partials)?;
        let inner_schema = Arc::clone(&inner.schema);
        let inner = LogicalPlan::Aggregate(inner);
        let group_len = a.group_expr.len();
        let outer_groups: Vec<Expr> = (0..group_len)
            .map(|i| {
                let (q, f) = inner_schema.qualified_field(i);
                Expr::Column(Column::new(q.cloned(), f.name()))
            })
            .collect();
        let c = |n: &str| Expr::Column(Column::from_name(n));
        let mut outer_aggr = Vec::new();
        for ((names, kind), field) in combine.iter().zip(a.schema.fields().iter().skip(group_len)) {
            let e = match *kind {
                "count" | "sum" => sum(c(&names[0])),
                "min" => min(c(&names[0])),
                "max" => max(c(&names[0])),
                "avg" => {
                    // sum / count, NULL when nothing was counted (as AVG).
                    let total = sum(c(&names[0]));
                    let n = cast(sum(c(&names[1])), DataType::Float64);
                    let denom = Expr::ScalarFunction(
                        datafusion::logical_expr::expr::ScalarFunction::new_udf(
                            datafusion::functions::core::nullif(),
                            vec![n, lit(0f64)],
                        ),
                    );
                    total / denom
                }
                _ => return Ok(None),
            };
            // The original output name and type, so nothing above changes.
            outer_aggr.push(cast(e, field.data_type().clone()).alias(field.name()));
        }
        outer_aggr.push(sum(c(&row_count)).alias(rows_name));
        outer_aggr.push(count(lit(1i64)).alias(units_name));
        // Each inner row is one unit: contributors are the inner rows whose
        // partial shows a contribution (no new partials needed).
        let mut contributors = Vec::new();
        for g in gates {
            if g.row().is_none() {
                contributors.push(units_name.to_string());
                continue;
            }
            let (names, kind) = &combine[g.index];
            let p = c(&names[0]);
            let contributed = match *kind {
                "count" => p.gt(lit(0i64)),
                "sum" | "avg" => p.not_eq(lit(0i64)),
                _ => p.is_not_null(),
            };
            let n = self.fresh(CONTRIBUTORS_COLUMN);
            outer_aggr.push(count(when(contributed, lit(1i64)).end()?).alias(&n));
            contributors.push(n);
        }
        let mut dominance = Vec::new();
        let mut seen: HashMap<&str, [Column; 6]> = HashMap::new();
        for (i, s, m, k) in &dom_partials {
            let cols = match seen.get(s.as_str()) {
                Some(cols) => cols.clone(),
                None => {
                    let cols = self.dominance_aggs(c(s), c(m), sum(c(k)), &mut outer_aggr);
                    seen.insert(s, cols.clone());
                    cols
                }
            };
            dominance.push(Dom {
                target: Some(output_column(a, *i)),
                cols: Some(cols),
            });
        }
        // Each inner row is one unit's share of the group, with its records.
        let (q, f) = inner_schema.qualified_field(group_len);
        let unit_col = Expr::Column(Column::new(q.cloned(), f.name()));
        let fingerprint = self.fingerprint_agg(
            vec![(unit_col, unit.dataset.clone())],
            Some(c(&row_count)),
            &mut outer_aggr,
        );
        let outer = Aggregate::try_new(Arc::new(inner), outer_groups, outer_aggr)?;
        let plan = LogicalPlan::Aggregate(outer);
        // The outer schema must match the original one (plus the hidden columns).
        for (i, f) in a.schema.fields().iter().enumerate() {
            let got = plan.schema().field(i);
            if got.name() != f.name() || got.data_type() != f.data_type() {
                return Ok(None);
            }
        }
        Ok(Some((plan, dominance, fingerprint, contributors)))
    }

    /// Appends the units' sketch (when enabled) to `aggr`; returns its
    /// column. Off the output chain the threshold filter records it.
    fn fingerprint_agg(
        &mut self,
        units: Vec<(Expr, String)>,
        weight: Option<Expr>,
        aggr: &mut Vec<Expr>,
    ) -> Option<Column> {
        if !self.sketches {
            return None;
        }
        let (key, capacity) = self.fingerprint.clone()?;
        let (mut args, datasets): (Vec<Expr>, Vec<String>) = units.into_iter().unzip();
        let weighted = weight.is_some();
        args.extend(weight);
        let udaf = fingerprint_udaf(&key, datasets, weighted, capacity);
        let name = self.fresh(FINGERPRINT_COLUMN);
        aggr.push(udaf.call(args).alias(&name));
        Some(Column::from_name(name))
    }

    /// The column of contributor count `e`, appended to `aggr` unless an
    /// aggregate with the same arguments already counts it (`seen`).
    fn contributor_agg(
        &mut self,
        e: Expr,
        aggr: &mut Vec<Expr>,
        seen: &mut Vec<(Expr, Expr)>,
    ) -> Expr {
        if let Some((_, c)) = seen.iter().find(|(x, _)| *x == e) {
            return c.clone();
        }
        let n = self.fresh(CONTRIBUTORS_COLUMN);
        aggr.push(e.clone().alias(&n));
        seen.push((e, col(&n)));
        col(&n)
    }

    /// Dominance statistics taking each row of `arg` as one contribution,
    /// appended to `aggr` once per distinct argument (`seen`).
    fn row_dominance(
        &mut self,
        arg: &Expr,
        seen: &mut Vec<(Expr, [Column; 6])>,
        aggr: &mut Vec<Expr>,
    ) -> [Column; 6] {
        if let Some((_, cols)) = seen.iter().find(|(e, _)| e == arg) {
            return cols.clone();
        }
        let x = cast(arg.clone(), DataType::Float64);
        let cols = self.dominance_aggs(x.clone(), x, count(arg.clone()), aggr);
        seen.push((arg.clone(), cols.clone()));
        cols
    }

    /// Appends the dominance statistics over per-unit contributions
    /// `contribution` (Float64), with `row_min` the smallest row value and
    /// `non_null` the rows with a value; returns their columns.
    fn dominance_aggs(
        &mut self,
        contribution: Expr,
        row_min: Expr,
        non_null: Expr,
        aggr: &mut Vec<Expr>,
    ) -> [Column; 6] {
        let top = |n: usize, x: Expr| top_n_udaf(n).call(vec![x]);
        let exprs = [
            top(self.nk_n, contribution.clone()),
            top(2, contribution.clone()),
            max(contribution.clone()),
            min(row_min),
            sum(contribution),
            non_null,
        ];
        exprs.map(|e| {
            let n = self.fresh("__anyu_dom");
            aggr.push(e.alias(&n));
            Column::from_name(n)
        })
    }
}

/// Magnitude aggregates the dominance rules judge, over per-person
/// contributions of their value argument (the first; WITHIN GROUP's ordered
/// value comes first). MIN/MAX are one person's value: the extremes rule.
const DOMINANCE_AGGREGATES: &[&str] = &[
    "sum",
    "avg",
    "median",
    "approx_median",
    "approx_percentile_cont",
    "approx_percentile_cont_with_weight",
    "percentile_cont",
];

/// One magnitude output of an aggregate: its position, its value argument
/// when contributions can be summed per unit (a FILTER folded in as `CASE
/// WHEN filter THEN x END`), and whether it is SUM/AVG.
type Magnitude = (usize, Option<Expr>, bool);

/// The magnitude outputs of an aggregate (see [`DOMINANCE_AGGREGATES`]).
fn magnitudes(a: &Aggregate) -> Result<Vec<Magnitude>> {
    let mut out = Vec::new();
    for (i, e) in a.aggr_expr.iter().enumerate() {
        let Some((func, params)) = aggregate_call(e) else {
            continue;
        };
        let name = func.name();
        if !DOMINANCE_AGGREGATES.contains(&name) && !DOF_AGGREGATES.contains(&name) {
            continue;
        }
        let additive = matches!(name, "sum" | "avg");
        let simple = !params.distinct && (!additive || params.args.len() == 1);
        let arg = match (simple, params.args.first(), &params.filter) {
            (true, Some(x), None) => Some(x.clone()),
            (true, Some(x), Some(f)) => Some(when(f.as_ref().clone(), x.clone()).end()?),
            _ => None,
        };
        out.push((i, arg, additive));
    }
    Ok(out)
}

/// The aggregate function call behind an aggregate expression.
fn aggregate_call(
    e: &Expr,
) -> Option<(
    &Arc<datafusion::logical_expr::AggregateUDF>,
    &datafusion::logical_expr::expr::AggregateFunctionParams,
)> {
    let inner = match e {
        Expr::Alias(al) => al.expr.as_ref(),
        other => other,
    };
    match inner {
        Expr::AggregateFunction(AggregateFunction { func, params }) => Some((func, params)),
        _ => None,
    }
}

/// The contributor gate of every aggregate that needs one. Arguments without
/// columns (`count(*)`, a percentile's fraction) contribute nothing of a
/// person; an aggregate with only those and no FILTER is backed by the
/// whole group, which the threshold already covers.
fn gates(a: &Aggregate) -> Result<Vec<Gate>> {
    let mut out = Vec::new();
    for (index, e) in a.aggr_expr.iter().enumerate() {
        let Some((func, params)) = aggregate_call(e) else {
            // The policy admits only aggregate calls here.
            return Err(Error::Internal(
                "an aggregate is not a function call".into(),
            ));
        };
        let name = func.name();
        if name == "grouping" {
            continue;
        }
        let valued = |x: &&Expr| !x.column_refs().is_empty();
        // WITHIN GROUP puts the ordered value first among the arguments;
        // other ORDER BY keys only narrow the rows counted.
        let values: Vec<&Expr> = params
            .args
            .iter()
            .chain(params.order_by.iter().map(|s| &s.expr))
            .filter(valued)
            .collect();
        // Additive: a unit whose values add up to zero adds nothing.
        let additive = match name {
            "sum" | "avg" => params.args.first(),
            "approx_percentile_cont_with_weight" => params.args.get(1),
            _ => None,
        }
        .filter(valued);
        // A value that cannot be NULL (a non-nullable column) is every row's.
        let schema = a.input.schema();
        let mut nullable = Vec::new();
        for v in &values {
            if v.nullable(schema.as_ref())? {
                nullable.push(*v);
            }
        }
        let dof = DOF_AGGREGATES.contains(&name);
        if nullable.is_empty() && additive.is_none() && params.filter.is_none() && !dof {
            continue;
        }
        let values = nullable;
        let mut base: Vec<Expr> = values.iter().map(|v| (*v).clone().is_not_null()).collect();
        if let Some(f) = &params.filter {
            base.push(f.as_ref().clone());
        }
        out.push(Gate {
            index,
            base: base.into_iter().reduce(Expr::and),
            additive: additive.cloned(),
            dof,
        });
    }
    Ok(out)
}

/// Rows where `row` holds: `count(x)` for a bare non-null test.
fn count_rows(row: Expr) -> Result<Expr> {
    Ok(match row {
        Expr::IsNotNull(x) => count(*x),
        row => count(when(row, lit(1i64)).end()?),
    })
}

/// An unqualified column by name.
fn col(name: &str) -> Expr {
    Expr::Column(Column::from_name(name))
}

/// Carried unit columns as fingerprint arguments, with their datasets.
fn unit_args(units: &[Unit]) -> Vec<(Expr, String)> {
    units
        .iter()
        .map(|u| (Expr::Column(u.col.clone()), u.dataset.clone()))
        .collect()
}

/// The output column of aggregate expression `i`.
fn output_column(a: &Aggregate, i: usize) -> Column {
    let (q, f) = a.schema.qualified_field(a.group_expr.len() + i);
    Column::new(q.cloned(), f.name())
}

/// A carried privacy-unit column: (column, dataset, one row per unit).
pub(crate) type CarriedUnit = (Column, String, bool);

/// `plan` (row level, no aggregation inside) with the privacy-unit column of
/// each dataset it reads carried to its output.
pub(crate) fn carry_units(
    plan: &LogicalPlan,
    tables: &[GrantedTable],
) -> Result<(LogicalPlan, Vec<CarriedUnit>)> {
    let per_unit = HashMap::new();
    let mut r = Rewriter {
        tables,
        nk_n: 2,
        // Row-level input: no aggregate here to take statistics of.
        dominance: false,
        fingerprint: None,
        sketches: false,
        unstable: false,
        per_unit: &per_unit,
        next: 0,
        thresholded: 0,
        strategies: Vec::new(),
        inner: Default::default(),
        inner_aggregations: Vec::new(),
    };
    let out = r.node(plan, false, &Arc::new(AtomicU64::new(0)))?;
    if r.thresholded > 0 {
        return Err(Error::Internal(
            "an aggregation below a DP aggregation".into(),
        ));
    }
    Ok((
        out.plan,
        out.units
            .into_iter()
            .map(|u| (u.col, u.dataset, u.unique))
            .collect(),
    ))
}
