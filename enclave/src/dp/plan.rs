//! The DP shape check and rewrite, on the LogicalPlan the policy admitted,
//! and the release of noisy results from the exact partials it computes.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Float64Array, Int64Array, UInt32Array};
use datafusion::arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, take};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Column;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::expr::{AggregateFunction, ScalarFunction};
use datafusion::logical_expr::{
    Aggregate, Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, lit,
};

use super::noise::{self, SelectionParams};
use super::{DpColumn, DpOptions, DpReport, Selection};
use crate::query::GrantedTable;
use crate::query::policy::{PlanFacts, refuse};
use crate::{Error, Result};

fn unsupported(message: impl Into<String>) -> Error {
    refuse("dp_unsupported_query", message)
}

/// What an aggregate output computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    Count,
    Sum,
    Avg,
}

/// One DP aggregate: its partial columns on the exact result and its noise.
#[derive(Debug, Clone)]
pub struct AggPlan {
    pub kind: AggKind,
    /// Integer sum of fixed-point values (SUM, AVG).
    pub sum_col: Option<String>,
    /// Count of rows or non-null values (COUNT, AVG).
    pub count_col: Option<String>,
    /// Fixed-point factor 2^k of the sum.
    pub factor: f64,
    /// Noise scale of the integer sum.
    pub sum_scale: f64,
    /// Noise scale of the count.
    pub count_scale: f64,
    pub bounds: Option<(f64, f64)>,
}

/// Where an output column comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Key(usize),
    Agg(usize),
}

/// A planned DP query: the plan computing exact bounded partials per group,
/// and how to turn them into the noisy release.
#[derive(Debug, Clone)]
pub struct DpPlan {
    pub plan: LogicalPlan,
    pub keys: Vec<String>,
    pub units: String,
    pub aggs: Vec<AggPlan>,
    /// Output columns in order: name and source.
    pub outputs: Vec<(String, Output)>,
    pub selection: Option<SelectionParams>,
    pub report: DpReport,
}

fn unalias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => unalias(&a.expr),
        other => other,
    }
}

fn has_subquery(e: &Expr) -> bool {
    let mut found = false;
    let _ = e.apply(|x| {
        found |= matches!(
            x,
            Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::SetComparison(_)
        );
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    found
}

use datafusion::common::tree_node::TreeNode;

/// The one granted view under row-wise nodes (projections, filters, aliases).
fn source<'t>(plan: &LogicalPlan, tables: &'t [GrantedTable]) -> Result<&'t GrantedTable> {
    if let Some(t) = tables.iter().find(|t| t.view == *plan) {
        return Ok(t);
    }
    match plan {
        LogicalPlan::Projection(_) | LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {
            if plan.expressions().iter().any(has_subquery) {
                return Err(unsupported(
                    "subqueries are not supported in a differentially private query",
                ));
            }
            source(plan.inputs()[0], tables)
        }
        _ => Err(unsupported(
            "a differentially private query reads one dataset through filters and projections: no joins, unions, subqueries, windows, DISTINCT or nested aggregations",
        )),
    }
}

/// The granted column a column of `plan` is, unchanged (through projections,
/// filters and aliases), if any.
fn base_column(plan: &LogicalPlan, c: &Column, tables: &[GrantedTable]) -> Option<String> {
    let i = plan.schema().index_of_column(c).ok()?;
    if tables.iter().any(|t| t.view == *plan) {
        return Some(plan.schema().field(i).name().clone());
    }
    match plan {
        LogicalPlan::Projection(p) => match unalias(&p.expr[i]) {
            Expr::Column(inner) => base_column(&p.input, inner, tables),
            _ => None,
        },
        LogicalPlan::Filter(_) | LogicalPlan::SubqueryAlias(_) => {
            let input = plan.inputs()[0];
            let (q, f) = input.schema().qualified_field(i);
            base_column(input, &Column::new(q.cloned(), f.name()), tables)
        }
        _ => None,
    }
}

struct Parsed {
    kind: AggKind,
    /// COUNT(expr) / SUM / AVG argument.
    arg: Option<Expr>,
    bounds: Option<(f64, f64)>,
}

fn parse_agg(
    e: &Expr,
    input: &LogicalPlan,
    t: &GrantedTable,
    tables: &[GrantedTable],
) -> Result<Parsed> {
    let Expr::AggregateFunction(AggregateFunction { func, params }) = unalias(e) else {
        return Err(refuse(
            "dp_unsupported_aggregate",
            "only COUNT, SUM and AVG can be differentially private",
        ));
    };
    let name = func.name();
    let kind = match name {
        "count" => AggKind::Count,
        "sum" => AggKind::Sum,
        "avg" => AggKind::Avg,
        other => {
            return Err(refuse(
                "dp_unsupported_aggregate",
                format!(
                    "`{other}` cannot be differentially private here: only COUNT, SUM and AVG (quantiles, MIN/MAX and the rest are refused)"
                ),
            ));
        }
    };
    if params.distinct
        || params.filter.is_some()
        || !params.order_by.is_empty()
        || params.args.len() > 1
    {
        return Err(refuse(
            "dp_unsupported_aggregate",
            format!("{name} with DISTINCT, FILTER or ORDER BY cannot be differentially private"),
        ));
    }
    let arg = params.args.first().cloned();
    if kind == AggKind::Count {
        // COUNT(*) is planned as COUNT(1).
        let arg = arg.filter(|a| !matches!(unalias(a), Expr::Literal(v, _) if !v.is_null()));
        return Ok(Parsed {
            kind,
            arg,
            bounds: None,
        });
    }
    let arg = arg.ok_or_else(|| {
        refuse(
            "dp_unsupported_aggregate",
            format!("{name} needs an argument"),
        )
    })?;
    let mut inner = unalias(&arg);
    while let Expr::Cast(c) = inner {
        inner = unalias(&c.expr);
    }
    let column = match inner {
        Expr::Column(c) => base_column(input, c, tables),
        _ => None,
    }
    .ok_or_else(|| {
        refuse(
            "dp_bounds_missing",
            format!(
                "the argument of {name} must be a dataset column (its manifest bounds clamp it)"
            ),
        )
    })?;
    let col = t
        .manifest
        .column(&column)
        .filter(|c| c.data_type.is_numeric());
    let b = col.and_then(|c| c.bounds).ok_or_else(|| {
        refuse(
            "dp_bounds_missing",
            format!("column `{column}` has no bounds in the manifest: {name} cannot be differentially private without them"),
        )
    })?;
    if !(b.min.is_finite() && b.max.is_finite() && b.min <= b.max)
        || b.min.abs().max(b.max.abs()) > 2f64.powi(40)
    {
        return Err(refuse(
            "dp_bounds_missing",
            format!("the bounds of `{column}` are not usable (finite, min ≤ max, |bound| ≤ 2^40)"),
        ));
    }
    Ok(Parsed {
        kind,
        arg: Some(arg),
        bounds: Some((b.min, b.max)),
    })
}

/// Fixed-point exponent k: |bound|·2^k ≤ 2^30, 0 ≤ k ≤ 30.
fn exponent(lo: f64, hi: f64) -> i32 {
    let m = lo.abs().max(hi.abs());
    if m == 0.0 {
        return 30;
    }
    ((30.0 - m.log2()).floor() as i32).clamp(0, 30)
}

fn udf(f: Arc<datafusion::logical_expr::ScalarUDF>, args: Vec<Expr>) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(f, args))
}

/// Options inside the accepted ranges for which opendp still finds no
/// scale or threshold: the researcher's options, not a platform fault.
fn no_parameters(e: Error) -> Error {
    match e {
        Error::Internal(m) => {
            tracing::warn!(detail = %m, "no DP parameters fit the options");
            refuse(
                "dp_options_invalid",
                "no noise scale or selection threshold fits these options: raise epsilon or delta, or lower the contribution bounds",
            )
        }
        other => other,
    }
}

/// Checks the shape of a DP query and builds its plan. `logical` is the
/// plan the policy admitted (`facts` from it).
pub fn plan_dp(
    logical: &LogicalPlan,
    facts: &PlanFacts,
    tables: &[GrantedTable],
    opts: &DpOptions,
) -> Result<DpPlan> {
    opts.validate()?;
    let (proj, a): (Option<&Vec<Expr>>, &Aggregate) = match logical {
        LogicalPlan::Projection(p) => match p.input.as_ref() {
            LogicalPlan::Aggregate(a) => (Some(&p.expr), a),
            _ => {
                return Err(unsupported(
                    "a differentially private query is SELECT keys, COUNT/SUM/AVG … FROM one dataset [WHERE …] [GROUP BY keys]: no HAVING, ORDER BY, LIMIT or DISTINCT (sort the released result yourself)",
                ));
            }
        },
        LogicalPlan::Aggregate(a) => (None, a),
        _ => {
            return Err(unsupported(
                "a differentially private query is SELECT keys, COUNT/SUM/AVG … FROM one dataset [WHERE …] [GROUP BY keys]: no HAVING, ORDER BY, LIMIT or DISTINCT (sort the released result yourself)",
            ));
        }
    };
    if !facts.per_unit.is_empty() {
        return Err(unsupported(
            "grouping by the privacy unit makes every group one person",
        ));
    }
    let t = source(&a.input, tables)?;
    let unit_name = t.manifest.dataset.privacy_unit.clone().ok_or_else(|| {
        refuse(
            "dp_no_privacy_unit",
            format!("dataset `{}` names no privacy unit", t.dataset_id),
        )
    })?;
    let parsed = a
        .aggr_expr
        .iter()
        .map(|e| parse_agg(e, &a.input, t, tables))
        .collect::<Result<Vec<_>>>()?;
    if parsed.is_empty() {
        return Err(unsupported(
            "a differentially private query needs COUNT, SUM or AVG",
        ));
    }
    let n_keys = a.group_expr.len();
    let grouped = n_keys > 0;

    // Contribution bounds: the policy's, lowered by the options.
    let policy = &t.policy.dp;
    let lower = |asked: Option<u32>, max: u32, what: &str| -> Result<u32> {
        match asked {
            Some(v) if v > max => Err(refuse(
                "dp_options_invalid",
                format!("{what} may only lower the dataset's limit of {max}"),
            )),
            Some(v) => Ok(v.max(1)),
            None => Ok(max.max(1)),
        }
    };
    let mut groups = lower(
        opts.max_groups_contributed,
        policy.max_groups_contributed,
        "max_groups_contributed",
    )?;
    let mut rows = lower(
        opts.max_rows_per_group,
        policy.max_rows_per_group,
        "max_rows_per_group",
    )?;
    if t.units_unique {
        (groups, rows) = (1, 1);
    }
    if !grouped {
        groups = 1;
    }

    // ε split evenly; all of δ to the selection.
    let parts = usize::from(grouped)
        + parsed
            .iter()
            .map(|p| if p.kind == AggKind::Avg { 2 } else { 1 })
            .sum::<usize>();
    let share = opts.epsilon / parts as f64;
    let selection = if grouped {
        Some(noise::selection_params(groups, share, opts.delta).map_err(no_parameters)?)
    } else {
        None
    };
    let gr = i64::from(groups) * i64::from(rows);

    // The plan: keys, unit and per-row values; bounding; exact partials.
    let (carried, units) = crate::query::rewrite::carry_units(&a.input, tables)?;
    let unit_col = units
        .first()
        .map(|u| u.0.clone())
        .ok_or_else(|| Error::Internal("the privacy unit was not carried".into()))?;
    let col = |n: &str| Expr::Column(Column::from_name(n));
    let keys: Vec<String> = (0..n_keys).map(|i| format!("__anyu_g{i}")).collect();
    let mut exprs: Vec<Expr> = a
        .group_expr
        .iter()
        .zip(&keys)
        .map(|(g, k)| g.clone().unalias().alias(k))
        .collect();
    exprs.push(Expr::Column(unit_col).alias("__anyu_unit"));
    let mut aggs = Vec::new();
    let mut columns = Vec::new();
    let mut spent = selection.map_or(0.0, |s| s.epsilon);
    for (j, p) in parsed.iter().enumerate() {
        let v = format!("__anyu_v{j}");
        let mut plan = AggPlan {
            kind: p.kind,
            sum_col: None,
            count_col: None,
            factor: 1.0,
            sum_scale: 0.0,
            count_scale: 0.0,
            bounds: p.bounds,
        };
        if p.kind != AggKind::Count || p.arg.is_some() {
            let value = match (p.kind, &p.arg, p.bounds) {
                (AggKind::Count, Some(arg), _) => arg.clone(),
                (_, Some(arg), Some((lo, hi))) => {
                    let k = exponent(lo, hi);
                    plan.factor = 2f64.powi(k);
                    udf(
                        super::fixed::FixedPoint::udf(lo, hi, plan.factor),
                        vec![arg.clone()],
                    )
                }
                _ => return Err(Error::Internal("a DP aggregate lost its argument".into())),
            };
            exprs.push(value.alias(&v));
        }
        let mut epsilon = 0.0;
        if matches!(p.kind, AggKind::Count | AggKind::Avg) {
            plan.count_col = Some(format!("__anyu_c{j}"));
            let (s, e) = noise::laplace_scale(gr, share).map_err(no_parameters)?;
            plan.count_scale = s;
            epsilon += e;
        }
        let mut sensitivity = gr as f64;
        if matches!(p.kind, AggKind::Sum | AggKind::Avg) {
            let (lo, hi) = p.bounds.unwrap_or((0.0, 0.0));
            let m = ((lo * plan.factor).round().abs()).max((hi * plan.factor).round().abs()) as i64;
            plan.sum_col = Some(format!("__anyu_s{j}"));
            let (s, e) = noise::laplace_scale((gr * m).max(1), share).map_err(no_parameters)?;
            plan.sum_scale = s;
            epsilon += e;
            sensitivity = (gr * m) as f64 / plan.factor;
        }
        spent += epsilon;
        let out_name = a.schema.field(n_keys + j).name().clone();
        columns.push(DpColumn {
            column: out_name,
            aggregate: match p.kind {
                AggKind::Count => "count",
                AggKind::Sum => "sum",
                AggKind::Avg => "avg",
            }
            .into(),
            mechanism: "discrete_laplace".into(),
            bounds: p.bounds.map(|(lo, hi)| [lo, hi]),
            scale: match p.kind {
                AggKind::Count => plan.count_scale,
                _ => plan.sum_scale / plan.factor,
            },
            count_scale: (p.kind == AggKind::Avg).then_some(plan.count_scale),
            sensitivity,
            epsilon,
        });
        aggs.push(plan);
    }
    if spent > opts.epsilon * (1.0 + 1e-12) {
        return Err(Error::Internal(
            "the ε shares exceed the ε asked for".into(),
        ));
    }

    let unique = t.units_unique;
    if !unique {
        exprs.push(udf(datafusion::functions::math::random(), vec![]).alias("__anyu_r"));
    }
    let mut b = LogicalPlanBuilder::from(carried).project(exprs)?;
    let key_cols: Vec<Expr> = keys.iter().map(|k| col(k)).collect();
    // Partials of one aggregation level: `inner` = the values are rows (true)
    // or per-unit partials to add up (false).
    let partials = |rows_level: bool| -> Vec<Expr> {
        let mut out = Vec::new();
        for (j, p) in aggs.iter().enumerate() {
            let v = col(&format!("__anyu_v{j}"));
            if let Some(c) = &p.count_col {
                out.push(if !rows_level {
                    sum(col(c)).alias(c)
                } else if parsed[j].arg.is_some() {
                    count(v.clone()).alias(c)
                } else {
                    count(lit(1i64)).alias(c)
                });
            }
            if let Some(s) = &p.sum_col {
                out.push(if rows_level { sum(v) } else { sum(col(s)) }.alias(s));
            }
        }
        out
    };
    if unique {
        let mut aggr = vec![count(lit(1i64)).alias("__anyu_units")];
        aggr.extend(partials(true));
        b = b.aggregate(key_cols.clone(), aggr)?;
    } else {
        // At most `rows` rows per (unit, group), chosen at random.
        let mut part: Vec<Expr> = vec![col("__anyu_unit")];
        part.extend(key_cols.clone());
        let rn = row_number()
            .partition_by(part.clone())
            .order_by(vec![col("__anyu_r").sort(true, false)])
            .build()?
            .alias("__anyu_rn");
        b = b
            .window(vec![rn])?
            .filter(col("__anyu_rn").lt_eq(lit(u64::from(rows))))?
            .aggregate(part, partials(true))?;
        if grouped {
            // At most `groups` groups per unit, chosen at random.
            let mut cols: Vec<Expr> = b.schema().columns().into_iter().map(Expr::Column).collect();
            cols.push(udf(datafusion::functions::math::random(), vec![]).alias("__anyu_r2"));
            let rn = row_number()
                .partition_by(vec![col("__anyu_unit")])
                .order_by(vec![col("__anyu_r2").sort(true, false)])
                .build()?
                .alias("__anyu_rn2");
            b = b
                .project(cols)?
                .window(vec![rn])?
                .filter(col("__anyu_rn2").lt_eq(lit(u64::from(groups))))?;
        }
        let mut aggr = vec![count(lit(1i64)).alias("__anyu_units")];
        aggr.extend(partials(false));
        b = b.aggregate(key_cols, aggr)?;
    }
    let plan = b.build()?;

    // Output columns in the query's order.
    let outputs = match proj {
        None => (0..a.schema.fields().len())
            .map(|i| Ok((a.schema.field(i).name().clone(), i)))
            .collect::<Result<Vec<_>>>()?,
        Some(exprs) => exprs
            .iter()
            .zip(logical.schema().fields())
            .map(|(e, f)| match unalias(e) {
                Expr::Column(c) => a
                    .schema
                    .index_of_column(c)
                    .map(|i| (f.name().clone(), i))
                    .map_err(|_| Error::Internal("an output column is not the aggregate's".into())),
                _ => Err(unsupported(
                    "compute on differentially private results after release: the SELECT list may only name group keys and COUNT/SUM/AVG",
                )),
            })
            .collect::<Result<Vec<_>>>()?,
    }
    .into_iter()
    .map(|(name, i)| {
        (
            name,
            if i < n_keys {
                Output::Key(i)
            } else {
                Output::Agg(i - n_keys)
            },
        )
    })
    .collect::<Vec<_>>();
    // Report columns by their output names.
    let mut named = Vec::new();
    for (name, o) in &outputs {
        if let Output::Agg(j) = o {
            let mut c = columns[*j].clone();
            c.column = name.clone();
            named.push(c);
        }
    }
    let report = DpReport {
        epsilon: opts.epsilon,
        delta: selection.map_or(0.0, |s| s.delta),
        budget_left: None,
        privacy_unit: format!("{}.{}", t.dataset_id, unit_name),
        max_groups_contributed: groups,
        max_rows_per_group: rows,
        selection: selection.map(|s| Selection {
            mechanism: "laplace_threshold".into(),
            counts: "privacy units per group".into(),
            scale: s.scale,
            threshold: s.threshold,
            epsilon: s.epsilon,
            delta: s.delta,
        }),
        columns: named,
        researcher_cap: Some(crate::dp::ResearcherCap {
            dataset_id: t.dataset_id.clone(),
            epsilon: t.policy.dp.epsilon_budget,
            delta: t.policy.dp.delta_budget,
        }),
    };
    Ok(DpPlan {
        plan,
        keys,
        units: "__anyu_units".into(),
        aggs,
        outputs,
        selection,
        report,
    })
}

fn i64_values(b: &RecordBatch, name: &str) -> Result<Vec<i64>> {
    let a = b
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
        .ok_or_else(|| Error::Internal(format!("DP partial `{name}` missing")))?;
    // An empty global aggregate sums to NULL: nothing contributed.
    Ok((0..a.len())
        .map(|i| if a.is_null(i) { 0 } else { a.value(i) })
        .collect())
}

impl DpPlan {
    /// The noisy release from the exact partials: selected groups (sorted by
    /// key), noisy aggregates. Only this leaves the job.
    pub fn release(
        &self,
        schema: &SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let b = concat_batches(schema, batches)
            .map_err(|e| Error::Internal(format!("collecting DP partials: {e}")))?;
        let n = b.num_rows();
        let arrow =
            |e: datafusion::arrow::error::ArrowError| Error::Internal(format!("DP release: {e}"));
        let mut kept: Vec<u32> = match &self.selection {
            Some(p) => {
                let units = i64_values(&b, &self.units)?;
                let counts: HashMap<u64, i64> = units
                    .iter()
                    .enumerate()
                    .map(|(i, u)| (i as u64, *u))
                    .collect();
                noise::select(counts, p)?
                    .into_iter()
                    .map(|i| i as u32)
                    .collect()
            }
            None => (0..n as u32).collect(),
        };
        // Released rows in key order, never in the engine's (data-dependent) order.
        if !self.keys.is_empty() && !kept.is_empty() {
            let idx = UInt32Array::from(kept.clone());
            let sort: Vec<SortColumn> = self
                .keys
                .iter()
                .map(|k| {
                    let c = b
                        .column_by_name(k)
                        .ok_or_else(|| Error::Internal("DP key missing".into()))?;
                    Ok(SortColumn {
                        values: take(c.as_ref(), &idx, None).map_err(arrow)?,
                        options: None,
                    })
                })
                .collect::<Result<_>>()?;
            let order = lexsort_to_indices(&sort, None).map_err(arrow)?;
            kept = order.values().iter().map(|&o| kept[o as usize]).collect();
        }
        let idx = UInt32Array::from(kept.clone());
        let pick = |v: &[i64]| -> Vec<i64> { kept.iter().map(|&i| v[i as usize]).collect() };
        let mut values: Vec<ArrayRef> = Vec::new();
        for p in &self.aggs {
            let noisy_count = match &p.count_col {
                Some(c) => Some(noise::laplace(&pick(&i64_values(&b, c)?), p.count_scale)?),
                None => None,
            };
            let noisy_sum = match &p.sum_col {
                Some(s) => Some(noise::laplace(&pick(&i64_values(&b, s)?), p.sum_scale)?),
                None => None,
            };
            values.push(match (p.kind, noisy_count, noisy_sum) {
                (AggKind::Count, Some(c), _) => Arc::new(Int64Array::from(c)),
                (AggKind::Sum, _, Some(s)) => Arc::new(Float64Array::from(
                    s.iter().map(|&x| x as f64 / p.factor).collect::<Vec<_>>(),
                )),
                (AggKind::Avg, Some(c), Some(s)) => {
                    let (lo, hi) = p.bounds.unwrap_or((f64::MIN, f64::MAX));
                    Arc::new(Float64Array::from(
                        s.iter()
                            .zip(&c)
                            .map(|(&s, &c)| (s as f64 / p.factor / c.max(1) as f64).clamp(lo, hi))
                            .collect::<Vec<_>>(),
                    ))
                }
                _ => return Err(Error::Internal("a DP aggregate lost its partials".into())),
            });
        }
        let mut fields = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        for (name, o) in &self.outputs {
            let a = match o {
                Output::Key(i) => {
                    let c = b
                        .column_by_name(&self.keys[*i])
                        .ok_or_else(|| Error::Internal("DP key missing".into()))?;
                    take(c.as_ref(), &idx, None).map_err(arrow)?
                }
                Output::Agg(j) => Arc::clone(&values[*j]),
            };
            fields.push(Field::new(name, a.data_type().clone(), true));
            cols.push(a);
        }
        let schema = Arc::new(Schema::new(fields));
        let out = RecordBatch::try_new(Arc::clone(&schema), cols).map_err(arrow)?;
        Ok((schema, vec![out]))
    }
}
