//! Policy on the LogicalPlan: what a query may read, compute and return.
//!
//! The check walks the plan bottom-up and follows every output column back to
//! the granted columns it comes from (its *lineage*): which base columns flow
//! into it row by row, which only through an aggregate, and whether it is one
//! base column passed through unchanged. Rules, each refusing with its own code:
//!
//! | code | rule |
//! |---|---|
//! | `statement_not_allowed` | only queries: no DDL, DML, `SET`, `EXPLAIN`, `COPY`, recursive CTEs, `UNNEST`, extensions |
//! | `table_not_granted` | every scan is one of the grant's views (other names do not even exist in the session) |
//! | `function_not_allowed` | every scalar, aggregate and window function is on the allowlist ([`super::functions`]) |
//! | `identifier_use` | an identifier column may only be passed through unchanged, counted (`COUNT(DISTINCT id)`), grouped by as a privacy unit, or used as an equi-join key the dataset allows joins on |
//! | `identifier_in_output` | no output column carries an identifier column's values |
//! | `row_level_output` | without row-level permission every output row is an aggregate over many rows (no window functions over rows, no scalar subquery returning a row value) |
//! | `reserved_name` | names starting `__anyu_` belong to the platform's rewrite |
//! | `unsupported_query` | shapes the policy cannot follow yet (correlated scalar subqueries, grouping sets) |
//! | `aggregate_over_aggregates` | (raised by the rewrite) an aggregation whose input is made of other aggregations' groups: its values combine cells no sketch describes, so differencing could not see them |
//!
//! Grouping by a dataset's privacy unit keeps a relation *per unit* (still row
//! level): a per-person subtotal is a person's data, so the threshold applies
//! at the next aggregation up, never to groups of one person.

use std::collections::BTreeSet;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, JoinType};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Distinct, Expr, LogicalPlan, Operator, WindowFunctionDefinition,
};

use super::GrantedTable;
use super::functions;
use crate::catalog::Sensitivity;
use crate::{Error, Result};

/// Prefix of every column name the platform's rewrite adds.
pub const RESERVED_PREFIX: &str = "__anyu_";

/// A column of a granted dataset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct BaseColumn {
    pub dataset: String,
    pub column: String,
}

impl std::fmt::Display for BaseColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.dataset, self.column)
    }
}

/// How an output column's values came about; the disclosure rules use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CellKind {
    /// Written in the query.
    Constant,
    /// A value of the grouping (a category shared by every row of the group).
    GroupKey,
    /// A count of rows or distinct values.
    Count,
    /// A statistic over many values (sum, mean, variance …).
    Magnitude,
    /// One contributor's own value (`MIN`, `MAX`).
    Extreme,
    /// A value of one row.
    #[default]
    RowValue,
}

/// One output column as the policy understood it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutputColumn {
    pub name: String,
    pub kind: CellKind,
    /// Base columns whose values reach this column, row-wise or aggregated.
    pub sources: BTreeSet<BaseColumn>,
    /// `MIN`/`MAX` over a sensitive column flows into this column.
    pub extreme_of_sensitive: bool,
    /// A count of rows or persons: a value under the threshold is a small cell.
    pub counts_people: bool,
    /// Computed by an aggregate with a FILTER clause: over a subset of the group.
    pub filtered: bool,
}

/// What the policy learned about an accepted plan.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlanFacts {
    /// The output columns, in order.
    pub output: Vec<OutputColumn>,
    /// Datasets the query reads.
    pub datasets: BTreeSet<String>,
    /// Identifier and quasi-identifier columns the query reads (for echo detection).
    pub identifying_columns: BTreeSet<BaseColumn>,
    /// The output is individual rows (allowed only with row-level permission).
    pub row_level: bool,
    /// Aggregations (and DISTINCTs) grouped by a privacy unit, by plan node
    /// address: the group-key index of the unit and its dataset. Valid for
    /// the plan object that was checked; the rewrite reads it.
    #[serde(skip)]
    pub per_unit: std::collections::HashMap<usize, (usize, String)>,
}

/// A policy refusal.
pub(crate) fn refuse(code: &'static str, message: impl Into<String>) -> Error {
    Error::Refused {
        code,
        message: message.into(),
    }
}

#[derive(Debug, Clone, Default)]
struct Info {
    row: BTreeSet<BaseColumn>,
    agg: BTreeSet<BaseColumn>,
    /// Exactly one base column, unchanged.
    bare: Option<BaseColumn>,
    kind: CellKind,
    extreme_of_sensitive: bool,
    counts_people: bool,
    filtered: bool,
}

#[derive(Debug, Clone)]
struct Rel {
    cols: Vec<Info>,
    row_level: bool,
}

struct Checker<'a> {
    tables: &'a [GrantedTable],
    read: BTreeSet<String>,
    identifying: BTreeSet<BaseColumn>,
    per_unit: std::collections::HashMap<usize, (usize, String)>,
}

/// Checks `plan` (as planned from SQL, before optimisation) against the
/// grant's tables. `aggregate_only`: the output must be aggregated.
pub fn check(
    plan: &LogicalPlan,
    tables: &[GrantedTable],
    aggregate_only: bool,
) -> Result<PlanFacts> {
    let mut c = Checker {
        tables,
        read: BTreeSet::new(),
        identifying: BTreeSet::new(),
        per_unit: Default::default(),
    };
    let rel = c.plan(plan, &[])?;
    for (info, field) in rel.cols.iter().zip(plan.schema().fields()) {
        if field.name().starts_with(RESERVED_PREFIX) {
            return Err(refuse(
                "reserved_name",
                format!("column names starting with `{RESERVED_PREFIX}` are reserved"),
            ));
        }
        if let Some(id) = info.row.iter().find(|b| c.is_identifier(b)) {
            return Err(refuse(
                "identifier_in_output",
                format!("identifier column `{id}` must not reach the output"),
            ));
        }
    }
    // A row's value can also arrive through a scalar subquery or a window over rows.
    let row_value = rel.cols.iter().any(|i| i.kind == CellKind::RowValue);
    if (rel.row_level || row_value) && aggregate_only {
        return Err(refuse(
            "row_level_output",
            "the grant allows only aggregated output: every output row must aggregate many rows (use GROUP BY or aggregate functions)",
        ));
    }
    let output = rel
        .cols
        .iter()
        .zip(plan.schema().fields())
        .map(|(i, f)| OutputColumn {
            name: f.name().clone(),
            kind: i.kind,
            sources: i.row.union(&i.agg).cloned().collect(),
            extreme_of_sensitive: i.extreme_of_sensitive,
            counts_people: i.counts_people,
            filtered: i.filtered,
        })
        .collect();
    Ok(PlanFacts {
        output,
        datasets: c.read,
        identifying_columns: c.identifying,
        row_level: rel.row_level,
        per_unit: c.per_unit,
    })
}

/// An outer query's relation, for correlated subqueries.
#[derive(Clone, Copy)]
struct Scope<'s> {
    schema: &'s DFSchema,
    rel: &'s Rel,
}

fn combine_kinds(kinds: &[CellKind]) -> CellKind {
    let non_const: Vec<CellKind> = kinds
        .iter()
        .copied()
        .filter(|k| *k != CellKind::Constant)
        .collect();
    if non_const.is_empty() {
        CellKind::Constant
    } else if non_const.contains(&CellKind::RowValue) {
        CellKind::RowValue
    } else if non_const.iter().all(|k| *k == CellKind::GroupKey) {
        CellKind::GroupKey
    } else if non_const.contains(&CellKind::Extreme) {
        CellKind::Extreme
    } else {
        CellKind::Magnitude
    }
}

impl Checker<'_> {
    fn table(&self, dataset: &str) -> Option<&GrantedTable> {
        self.tables.iter().find(|t| t.dataset_id == dataset)
    }

    fn sensitivity(&self, b: &BaseColumn) -> Option<Sensitivity> {
        self.table(&b.dataset)
            .and_then(|t| t.manifest.column(&b.column))
            .map(|c| c.sensitivity)
    }

    fn is_identifier(&self, b: &BaseColumn) -> bool {
        self.sensitivity(b) == Some(Sensitivity::Identifier)
    }

    fn is_unit(&self, b: &BaseColumn) -> bool {
        self.table(&b.dataset)
            .and_then(|t| t.manifest.dataset.privacy_unit.as_deref())
            .is_some_and(|u| u == b.column)
    }

    fn joinable(&self, b: &BaseColumn) -> bool {
        self.table(&b.dataset)
            .is_some_and(|t| t.policy.allow_joins_on.contains(&b.column))
    }

    fn identifier_use(&self, b: &BaseColumn) -> Error {
        refuse(
            "identifier_use",
            format!(
                "identifier column `{b}` may only be counted (COUNT(DISTINCT …)), grouped by as the privacy unit, or used as an allowed join key"
            ),
        )
    }

    /// Refuses if any identifier flows row-wise into `info`.
    fn no_identifier(&self, info: &Info) -> Result<()> {
        match info.row.iter().find(|b| self.is_identifier(b)) {
            Some(b) => Err(self.identifier_use(b)),
            None => Ok(()),
        }
    }

    fn plan(&mut self, plan: &LogicalPlan, outer: &[Scope<'_>]) -> Result<Rel> {
        // A grant's view: a base relation with known columns.
        if let Some(t) = self.tables.iter().find(|t| t.view == *plan) {
            self.read.insert(t.dataset_id.clone());
            let cols = plan
                .schema()
                .fields()
                .iter()
                .map(|f| {
                    let b = BaseColumn {
                        dataset: t.dataset_id.clone(),
                        column: f.name().clone(),
                    };
                    Info {
                        row: [b.clone()].into(),
                        agg: BTreeSet::new(),
                        bare: Some(b),
                        kind: CellKind::RowValue,
                        extreme_of_sensitive: false,
                        counts_people: false,
                        filtered: false,
                    }
                })
                .collect();
            return Ok(Rel {
                cols,
                row_level: true,
            });
        }
        let stmt = |what: &str| {
            Err(refuse(
                "statement_not_allowed",
                format!("{what} is not allowed: only queries run in the domain"),
            ))
        };
        match plan {
            LogicalPlan::TableScan(ts) => Err(refuse(
                "table_not_granted",
                format!("table `{}` is not part of the grant", ts.table_name),
            )),
            LogicalPlan::Projection(p) => {
                let input = self.plan(&p.input, outer)?;
                let scope = Scope {
                    schema: p.input.schema(),
                    rel: &input,
                };
                let cols = p
                    .expr
                    .iter()
                    .map(|e| self.expr(e, scope, outer))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Rel {
                    cols,
                    row_level: input.row_level,
                })
            }
            LogicalPlan::Filter(f) => {
                let input = self.plan(&f.input, outer)?;
                let scope = Scope {
                    schema: f.input.schema(),
                    rel: &input,
                };
                let pred = self.expr(&f.predicate, scope, outer)?;
                self.no_identifier(&pred)?;
                Ok(input)
            }
            LogicalPlan::Aggregate(a) => {
                if matches!(a.group_expr.as_slice(), [Expr::GroupingSet(_)]) {
                    return Err(refuse(
                        "unsupported_query",
                        "GROUPING SETS, ROLLUP and CUBE are not supported yet; run one query per grouping",
                    ));
                }
                let input = self.plan(&a.input, outer)?;
                let scope = Scope {
                    schema: a.input.schema(),
                    rel: &input,
                };
                let mut cols = Vec::new();
                let mut per_unit = false;
                for (i, g) in a.group_expr.iter().enumerate() {
                    let mut info = self.expr(g, scope, outer)?;
                    if let Some(b) = &info.bare
                        && self.is_identifier(b)
                    {
                        // Grouping by the privacy unit keeps the relation per unit.
                        if input.row_level && self.is_unit(b) && !per_unit {
                            per_unit = true;
                            self.per_unit.insert(
                                plan as *const LogicalPlan as usize,
                                (i, b.dataset.clone()),
                            );
                        }
                    } else {
                        self.no_identifier(&info)?;
                    }
                    if info.kind != CellKind::Constant {
                        info.kind = if input.row_level {
                            CellKind::GroupKey
                        } else {
                            combine_kinds(&[info.kind])
                        };
                    }
                    cols.push(info);
                }
                for e in &a.aggr_expr {
                    cols.push(self.expr(e, scope, outer)?);
                }
                Ok(Rel {
                    cols,
                    row_level: input.row_level && per_unit,
                })
            }
            LogicalPlan::Window(w) => {
                let input = self.plan(&w.input, outer)?;
                let scope = Scope {
                    schema: w.input.schema(),
                    rel: &input,
                };
                let mut cols = input.cols.clone();
                for e in &w.window_expr {
                    cols.push(self.expr(e, scope, outer)?);
                }
                // A window over rows yields one value per row: row level.
                Ok(Rel {
                    cols,
                    row_level: input.row_level,
                })
            }
            LogicalPlan::Sort(s) => {
                let input = self.plan(&s.input, outer)?;
                let scope = Scope {
                    schema: s.input.schema(),
                    rel: &input,
                };
                for k in &s.expr {
                    let info = self.expr(&k.expr, scope, outer)?;
                    if let Some(b) = info.row.iter().find(|b| self.is_identifier(b)) {
                        return Err(self.identifier_use(b));
                    }
                }
                Ok(input)
            }
            LogicalPlan::Limit(l) => self.plan(&l.input, outer),
            LogicalPlan::SubqueryAlias(s) => {
                if s.alias.table().starts_with(RESERVED_PREFIX) {
                    return Err(refuse(
                        "reserved_name",
                        format!("names starting with `{RESERVED_PREFIX}` are reserved"),
                    ));
                }
                self.plan(&s.input, outer)
            }
            LogicalPlan::Repartition(r) => self.plan(&r.input, outer),
            LogicalPlan::Distinct(Distinct::All(input)) => {
                let rel = self.plan(input, outer)?;
                // DISTINCT is a GROUP BY over every column.
                let mut per_unit = false;
                let mut cols = Vec::new();
                for (i, mut info) in rel.cols.into_iter().enumerate() {
                    if let Some(b) = &info.bare
                        && self.is_identifier(b)
                    {
                        if rel.row_level && self.is_unit(b) && !per_unit {
                            per_unit = true;
                            self.per_unit.insert(
                                plan as *const LogicalPlan as usize,
                                (i, b.dataset.clone()),
                            );
                        }
                    } else {
                        self.no_identifier(&info)?;
                    }
                    if rel.row_level && info.kind != CellKind::Constant {
                        info.kind = CellKind::GroupKey;
                    }
                    cols.push(info);
                }
                Ok(Rel {
                    cols,
                    row_level: rel.row_level && per_unit,
                })
            }
            LogicalPlan::Distinct(Distinct::On(_)) => Err(refuse(
                "unsupported_query",
                "DISTINCT ON is not supported: it returns individual rows",
            )),
            LogicalPlan::Join(j) => {
                let left = self.plan(&j.left, outer)?;
                let right = self.plan(&j.right, outer)?;
                let ls = Scope {
                    schema: j.left.schema(),
                    rel: &left,
                };
                let rs = Scope {
                    schema: j.right.schema(),
                    rel: &right,
                };
                for (l, r) in &j.on {
                    for (e, scope) in [(l, ls), (r, rs)] {
                        let info = self.expr(e, scope, outer)?;
                        match &info.bare {
                            Some(b) if self.is_identifier(b) => {
                                if !self.joinable(b) {
                                    return Err(refuse(
                                        "identifier_use",
                                        format!("dataset policy does not allow joins on `{b}`"),
                                    ));
                                }
                            }
                            _ => self.no_identifier(&info)?,
                        }
                    }
                }
                let mut both = left.cols.clone();
                both.extend(right.cols.iter().cloned());
                let both_rel = Rel {
                    cols: both.clone(),
                    row_level: left.row_level || right.row_level,
                };
                if let Some(f) = &j.filter {
                    // Semi and anti joins output one side; their filter sees both.
                    let joined = j.left.schema().join(j.right.schema())?;
                    let scope = Scope {
                        schema: &joined,
                        rel: &both_rel,
                    };
                    // `ON a.id = b.id` arrives as a filter: equalities of two bare
                    // columns are join keys; everything else is a predicate.
                    for conjunct in split_conjunction(f) {
                        if let Expr::BinaryExpr(BinaryExpr {
                            left: l,
                            op: Operator::Eq,
                            right: r,
                        }) = conjunct
                        {
                            let li = self.expr(l, scope, outer)?;
                            let ri = self.expr(r, scope, outer)?;
                            if li.bare.is_some() && ri.bare.is_some() {
                                for side in [&li, &ri] {
                                    let b = side.bare.as_ref().expect("checked");
                                    if self.is_identifier(b) && !self.joinable(b) {
                                        return Err(refuse(
                                            "identifier_use",
                                            format!("dataset policy does not allow joins on `{b}`"),
                                        ));
                                    }
                                }
                                continue;
                            }
                        }
                        let info = self.expr(conjunct, scope, outer)?;
                        self.no_identifier(&info)?;
                    }
                }
                let cols = match j.join_type {
                    JoinType::LeftSemi | JoinType::LeftAnti => left.cols.clone(),
                    JoinType::RightSemi | JoinType::RightAnti => right.cols.clone(),
                    JoinType::LeftMark => {
                        let mut c = left.cols.clone();
                        c.push(Info::default_constant());
                        c
                    }
                    JoinType::RightMark => {
                        let mut c = right.cols.clone();
                        c.push(Info::default_constant());
                        c
                    }
                    _ => both,
                };
                let row_level = match j.join_type {
                    JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => left.row_level,
                    JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => {
                        right.row_level
                    }
                    _ => left.row_level || right.row_level,
                };
                Ok(Rel { cols, row_level })
            }
            LogicalPlan::Union(u) => {
                let mut rels = Vec::new();
                for i in &u.inputs {
                    rels.push(self.plan(i, outer)?);
                }
                let n = u.schema.fields().len();
                let mut cols = vec![Info::default_constant(); n];
                let mut row_level = false;
                for r in &rels {
                    row_level |= r.row_level;
                    for (i, c) in r.cols.iter().enumerate().take(n) {
                        let merged = &mut cols[i];
                        merged.row.extend(c.row.iter().cloned());
                        merged.agg.extend(c.agg.iter().cloned());
                        merged.extreme_of_sensitive |= c.extreme_of_sensitive;
                        merged.filtered |= c.filtered;
                        merged.kind = combine_kinds(&[merged.kind, c.kind]);
                    }
                }
                for c in &mut cols {
                    c.bare = None;
                }
                Ok(Rel { cols, row_level })
            }
            LogicalPlan::Values(v) => {
                for row in &v.values {
                    for e in row {
                        if !matches!(e, Expr::Literal(..) | Expr::Cast(_) | Expr::Negative(_)) {
                            return Err(refuse(
                                "unsupported_query",
                                "VALUES may hold only constants",
                            ));
                        }
                    }
                }
                Ok(Rel {
                    cols: vec![Info::default_constant(); v.schema.fields().len()],
                    row_level: false,
                })
            }
            LogicalPlan::EmptyRelation(e) => Ok(Rel {
                cols: vec![Info::default_constant(); e.schema.fields().len()],
                row_level: false,
            }),
            LogicalPlan::Subquery(s) => self.plan(&s.subquery, outer),
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => stmt("EXPLAIN"),
            LogicalPlan::Statement(_) => stmt("this statement"),
            LogicalPlan::Dml(_) | LogicalPlan::Copy(_) => stmt("changing or copying data"),
            LogicalPlan::Ddl(_) => stmt("creating or dropping objects"),
            LogicalPlan::DescribeTable(_) => stmt("DESCRIBE"),
            LogicalPlan::Extension(_) => stmt("a plan extension"),
            LogicalPlan::RecursiveQuery(_) => Err(refuse(
                "unsupported_query",
                "recursive queries are not allowed",
            )),
            LogicalPlan::Unnest(_) => Err(refuse("unsupported_query", "UNNEST is not allowed")),
        }
    }

    /// The lineage of `e` over `scope` (with `outer` scopes for correlated
    /// subqueries), refusing what the rules forbid on the way.
    fn expr(&mut self, e: &Expr, scope: Scope<'_>, outer: &[Scope<'_>]) -> Result<Info> {
        match e {
            Expr::Column(c) => {
                let i = scope.schema.index_of_column(c).map_err(|_| {
                    Error::Internal("a planned column is missing from its input".into())
                })?;
                let info = scope.rel.cols[i].clone();
                for b in info.row.iter().chain(info.agg.iter()) {
                    if matches!(
                        self.sensitivity(b),
                        Some(Sensitivity::Identifier | Sensitivity::QuasiIdentifier)
                    ) {
                        self.identifying.insert(b.clone());
                    }
                }
                Ok(info)
            }
            Expr::OuterReferenceColumn(_, c) => {
                for s in outer.iter().rev() {
                    if let Ok(i) = s.schema.index_of_column(c) {
                        return Ok(s.rel.cols[i].clone());
                    }
                }
                Err(Error::Internal(
                    "an outer reference has no outer column".into(),
                ))
            }
            Expr::Alias(a) => {
                if a.name.starts_with(RESERVED_PREFIX) {
                    return Err(refuse(
                        "reserved_name",
                        format!("names starting with `{RESERVED_PREFIX}` are reserved"),
                    ));
                }
                self.expr(&a.expr, scope, outer)
            }
            Expr::Literal(..) => Ok(Info::default_constant()),
            Expr::ScalarVariable(..) | Expr::Placeholder(_) => Err(refuse(
                "unsupported_query",
                "variables and placeholders are not allowed",
            )),
            Expr::Unnest(_)
            | Expr::HigherOrderFunction(_)
            | Expr::Lambda(_)
            | Expr::LambdaVariable(_) => Err(refuse(
                "unsupported_query",
                "UNNEST and lambdas are not allowed",
            )),
            Expr::GroupingSet(_) => Err(Error::Internal(
                "an unexpanded expression reached the policy".into(),
            )),
            Expr::ScalarFunction(f) => {
                let name = f.func.name();
                if !functions::scalar_allowed(name) {
                    return Err(refuse(
                        "function_not_allowed",
                        format!("function `{name}` is not allowed"),
                    ));
                }
                self.compound(f.args.iter(), scope, outer)
            }
            Expr::AggregateFunction(f) => {
                let name = f.func.name();
                if !functions::aggregate_allowed(name) {
                    return Err(refuse(
                        "function_not_allowed",
                        format!("aggregate function `{name}` is not allowed"),
                    ));
                }
                let p = &f.params;
                if let Some(filter) = &p.filter {
                    let info = self.expr(filter, scope, outer)?;
                    self.no_identifier(&info)?;
                }
                for s in &p.order_by {
                    let info = self.expr(&s.expr, scope, outer)?;
                    self.no_identifier(&info)?;
                }
                let mut args = Vec::new();
                for a in &p.args {
                    args.push(self.expr(a, scope, outer)?);
                }
                if functions::COUNTING.contains(&name) {
                    // Bare columns (identifiers included) may be counted.
                    for a in &args {
                        if a.bare.is_none() {
                            self.no_identifier(a)?;
                        }
                    }
                    let of_unit = args
                        .first()
                        .and_then(|a| a.bare.as_ref())
                        .is_some_and(|b| self.is_unit(b));
                    let counts_people = match name {
                        "count" | "regr_count" => !p.distinct || of_unit,
                        "approx_distinct" => of_unit,
                        _ => false,
                    };
                    return Ok(Info {
                        kind: CellKind::Count,
                        counts_people,
                        filtered: p.filter.is_some(),
                        ..Info::default_constant()
                    });
                }
                let mut out = Info {
                    kind: if functions::EXTREME.contains(&name) {
                        CellKind::Extreme
                    } else {
                        CellKind::Magnitude
                    },
                    filtered: p.filter.is_some(),
                    ..Info::default_constant()
                };
                for a in &args {
                    self.no_identifier(a)?;
                    out.agg.extend(a.row.iter().cloned());
                    out.agg.extend(a.agg.iter().cloned());
                    out.extreme_of_sensitive |= a.extreme_of_sensitive;
                    if functions::EXTREME.contains(&name)
                        && a.row
                            .iter()
                            .any(|b| self.sensitivity(b) == Some(Sensitivity::Sensitive))
                    {
                        out.extreme_of_sensitive = true;
                    }
                }
                if !scope.rel.row_level {
                    // Aggregating aggregates: still an aggregate, of the same kind at most.
                    out.kind = combine_kinds(
                        &args
                            .iter()
                            .map(|a| a.kind)
                            .chain([out.kind])
                            .collect::<Vec<_>>(),
                    );
                }
                Ok(out)
            }
            Expr::WindowFunction(w) => {
                let name = match &w.fun {
                    WindowFunctionDefinition::AggregateUDF(f) => {
                        if !functions::aggregate_allowed(f.name()) {
                            return Err(refuse(
                                "function_not_allowed",
                                format!("aggregate function `{}` is not allowed", f.name()),
                            ));
                        }
                        f.name().to_string()
                    }
                    WindowFunctionDefinition::WindowUDF(f) => {
                        if !functions::window_allowed(f.name()) {
                            return Err(refuse(
                                "function_not_allowed",
                                format!("window function `{}` is not allowed", f.name()),
                            ));
                        }
                        f.name().to_string()
                    }
                };
                let p = &w.params;
                let mut parts = Vec::new();
                for x in p
                    .args
                    .iter()
                    .chain(p.partition_by.iter())
                    .chain(p.order_by.iter().map(|s| &s.expr))
                    .chain(p.filter.iter().map(|f| f.as_ref()))
                {
                    let info = self.expr(x, scope, outer)?;
                    self.no_identifier(&info)?;
                    parts.push(info);
                }
                let mut out = Info::default_constant();
                for a in &parts {
                    out.agg.extend(a.row.iter().cloned());
                    out.agg.extend(a.agg.iter().cloned());
                    out.extreme_of_sensitive |= a.extreme_of_sensitive;
                }
                out.kind = if scope.rel.row_level {
                    CellKind::RowValue
                } else if matches!(name.as_str(), "lag" | "lead") {
                    combine_kinds(&parts.iter().map(|p| p.kind).collect::<Vec<_>>())
                } else {
                    CellKind::Magnitude
                };
                Ok(out)
            }
            Expr::ScalarSubquery(s) => {
                if !s.outer_ref_columns.is_empty() {
                    return Err(refuse(
                        "unsupported_query",
                        "correlated scalar subqueries are not supported; use a join",
                    ));
                }
                let rel = self.plan(&s.subquery, outer)?;
                let mut info = rel.cols.into_iter().next().unwrap_or_default();
                if rel.row_level {
                    // One row's value, whatever the outer query does with it.
                    info.kind = CellKind::RowValue;
                    info.row.extend(std::mem::take(&mut info.agg));
                }
                Ok(info)
            }
            Expr::Exists(x) => {
                self.subquery(&x.subquery, scope, outer)?;
                Ok(Info::default_constant())
            }
            Expr::InSubquery(x) => {
                let left = self.expr(&x.expr, scope, outer)?;
                let rel = self.subquery(&x.subquery, scope, outer)?;
                let right = rel.cols.first().cloned().unwrap_or_default();
                // `id IN (SELECT id …)` is a semi-join on the identifier.
                for side in [&left, &right] {
                    match &side.bare {
                        Some(b) if self.is_identifier(b) => {
                            if !self.joinable(b) {
                                return Err(refuse(
                                    "identifier_use",
                                    format!("dataset policy does not allow joins on `{b}`"),
                                ));
                            }
                        }
                        _ => self.no_identifier(side)?,
                    }
                }
                Ok(Info::default_constant())
            }
            Expr::SetComparison(x) => {
                let left = self.expr(&x.expr, scope, outer)?;
                self.no_identifier(&left)?;
                let rel = self.subquery(&x.subquery, scope, outer)?;
                if let Some(r) = rel.cols.first() {
                    self.no_identifier(r)?;
                }
                Ok(Info::default_constant())
            }
            // Every other expression combines its children.
            other => {
                let mut children = Vec::new();
                other.apply_children(|c| {
                    children.push(c.clone());
                    Ok(TreeNodeRecursion::Continue)
                })?;
                self.compound(children.iter(), scope, outer)
            }
        }
    }

    fn subquery(
        &mut self,
        s: &datafusion::logical_expr::Subquery,
        scope: Scope<'_>,
        outer: &[Scope<'_>],
    ) -> Result<Rel> {
        let mut scopes: Vec<Scope<'_>> = outer.to_vec();
        scopes.push(scope);
        self.plan(&s.subquery, &scopes)
    }

    /// A computed value: refuses identifiers among the inputs; unions the rest.
    fn compound<'e>(
        &mut self,
        args: impl Iterator<Item = &'e Expr>,
        scope: Scope<'_>,
        outer: &[Scope<'_>],
    ) -> Result<Info> {
        let mut out = Info::default_constant();
        let mut kinds = Vec::new();
        for a in args {
            let info = self.expr(a, scope, outer)?;
            self.no_identifier(&info)?;
            out.row.extend(info.row.iter().cloned());
            out.agg.extend(info.agg.iter().cloned());
            out.extreme_of_sensitive |= info.extreme_of_sensitive;
            out.filtered |= info.filtered;
            kinds.push(info.kind);
        }
        out.kind = combine_kinds(&kinds);
        Ok(out)
    }
}

impl Info {
    fn default_constant() -> Info {
        Info {
            kind: CellKind::Constant,
            ..Info::default()
        }
    }
}
