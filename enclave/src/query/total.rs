//! Total semantics: a query fails for a reason visible in its text, never
//! because of one row's value.
//!
//! A run-time failure that happens only when a condition on one person holds
//! (`1 / (CASE WHEN <that person> AND income > 5000 THEN 0 ELSE 1 END)`, a
//! cast of a string that parses only for some rows, `substr` with a negative
//! length computed from data) tells the researcher one bit per job. So the
//! plan that actually runs is rewritten, after DataFusion's optimizer (no
//! later pass can add a failing expression back), so that bad input yields
//! NULL:
//!
//! | expression | on bad input |
//! |---|---|
//! | `CAST` (and `arrow_cast`) | `TRY_CAST`: NULL when the value does not convert or overflows |
//! | numeric `/` and `%` | NULL for a zero divisor (every numeric type) and on overflow (`i64::MIN / -1`) |
//! | numeric `+ - *`, unary `-` | wrap around (DataFusion 55's own semantics: no failure) |
//! | every allowlisted scalar function except [`UNWRAPPED`] | NULL for the rows it fails on |
//! | `~`, `~*`, `!~`, `SIMILAR TO`, `regexp_*` | NULL where the pattern does not compile |
//! | `LIKE`, `SIMILAR TO`, `~` with a pattern computed from data | refused at plan time ([`check`]) |
//!
//! A wrapped function is first evaluated on the whole batch as usual; only
//! when that fails is the batch bisected to find the failing rows, so a
//! failure costs about two more evaluations of that one batch (bounded, and
//! below the coarse timing a researcher sees). What can still fail at run
//! time (resource limits; the rare overflow inside an aggregate's state)
//! answers one generic code ([`super::sanitize::runtime_error`]).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, new_null_array};
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::compute::kernels::numeric::{div, rem};
use datafusion::arrow::compute::{cast, concat, nullif};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ReturnFieldArgs, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, TryCast, Volatility,
};

use super::functions;
use super::policy::refuse;
use crate::Result;

/// Allowlisted scalar functions left as they are: they cannot fail on data,
/// and most of them must reach DataFusion's simplifier under their own name
/// (`now()` is replaced by the query's start time, `coalesce` by a CASE).
/// Every other allowlisted function is wrapped.
pub const UNWRAPPED: &[&str] = &[
    "coalesce",
    "nullif",
    "nvl",
    "nvl2",
    "now",
    "current_date",
    "current_time",
    "pi",
    "arrow_typeof",
];

/// Refuses what cannot be made total: a match pattern computed from data (a
/// pattern that does not compile would fail for that row only). Run on the
/// plan as the researcher wrote it, before a job exists.
pub fn check(plan: &LogicalPlan) -> Result<()> {
    let mut found = false;
    plan.apply_with_subqueries(|p| {
        p.apply_expressions(|e| {
            e.apply(|x| {
                let pattern = match x {
                    Expr::Like(l) | Expr::SimilarTo(l) => Some(l.pattern.as_ref()),
                    Expr::BinaryExpr(b) if is_pattern_op(b.op) => Some(b.right.as_ref()),
                    _ => None,
                };
                if pattern.is_some_and(|p| !is_constant(p)) {
                    found = true;
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    if found {
        return Err(refuse(
            "unsupported_query",
            "LIKE, SIMILAR TO and regular-expression patterns must be constants written in the query, not computed from data",
        ));
    }
    Ok(())
}

fn is_pattern_op(op: Operator) -> bool {
    matches!(
        op,
        Operator::RegexMatch
            | Operator::RegexIMatch
            | Operator::RegexNotMatch
            | Operator::RegexNotIMatch
            | Operator::LikeMatch
            | Operator::ILikeMatch
            | Operator::NotLikeMatch
            | Operator::NotILikeMatch
    )
}

/// No column, outer reference or subquery anywhere in `e`.
fn is_constant(e: &Expr) -> bool {
    !e.exists(|x| {
        Ok(matches!(
            x,
            Expr::Column(_)
                | Expr::OuterReferenceColumn(..)
                | Expr::ScalarSubquery(_)
                | Expr::Exists(_)
                | Expr::InSubquery(_)
                | Expr::SetComparison(_)
                | Expr::Placeholder(_)
                | Expr::ScalarVariable(..)
        ))
    })
    .unwrap_or(false)
}

/// The optimized plan with total semantics (see the module docs). Output
/// names are kept; schemas are recomputed (results become nullable).
pub fn total(plan: LogicalPlan) -> DfResult<LogicalPlan> {
    plan.transform_up_with_subqueries(|p| {
        if matches!(p, LogicalPlan::TableScan(_)) {
            // Pushed-down filters only prune here; the Filter above keeps them.
            return Ok(Transformed::no(p));
        }
        let schema = if p.inputs().is_empty() {
            DFSchema::empty()
        } else {
            let mut s = DFSchema::empty();
            for i in p.inputs() {
                s.merge(i.schema());
            }
            s
        };
        let names = NamePreserver::new(&p);
        let p = p
            .map_expressions(|e| {
                let name = names.save(&e);
                let t = e.transform_up(|x| total_expr(x, &schema))?;
                Ok(Transformed::new_transformed(
                    name.restore(t.data),
                    t.transformed,
                ))
            })?
            .data;
        // Children may have become nullable: every node's schema is rebuilt.
        Ok(Transformed::yes(p.recompute_schema()?))
    })
    .map(|t| t.data)
}

fn total_expr(e: Expr, schema: &DFSchema) -> DfResult<Transformed<Expr>> {
    Ok(match e {
        Expr::Cast(c) => Transformed::yes(Expr::TryCast(TryCast::new_from_field(
            c.expr,
            c.field.as_ref().clone().with_nullable(true).into(),
        ))),
        Expr::ScalarFunction(f) if f.func.name() == "arrow_cast" => {
            // `arrow_cast(x, 'Int64')` is a CAST the simplifier would restore.
            match (f.args.first(), f.args.get(1)) {
                (Some(x), Some(Expr::Literal(ScalarValue::Utf8(Some(t)), _))) => {
                    match t.parse::<DataType>() {
                        Ok(dt) => {
                            Transformed::yes(Expr::TryCast(TryCast::new(Box::new(x.clone()), dt)))
                        }
                        Err(_) => Transformed::no(Expr::ScalarFunction(f)),
                    }
                }
                _ => Transformed::no(Expr::ScalarFunction(f)),
            }
        }
        // The platform's own functions (threshold, fingerprints, DP) are trusted.
        Expr::ScalarFunction(f)
            if functions::scalar_allowed(f.func.name()) && !UNWRAPPED.contains(&f.func.name()) =>
        {
            if f.func.inner().as_ref().is::<Total>() {
                return Ok(Transformed::no(Expr::ScalarFunction(f)));
            }
            let udf = ScalarUDF::new_from_impl(Total::wrap(Arc::clone(&f.func)));
            Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::new(udf),
                f.args,
            )))
        }
        // A regular expression that does not compile fails where it is
        // evaluated (a constant one too, inside a CASE); `regexp_like`
        // arrives here already turned into `~` by the simplifier.
        Expr::BinaryExpr(b)
            if matches!(
                b.op,
                Operator::RegexMatch
                    | Operator::RegexIMatch
                    | Operator::RegexNotMatch
                    | Operator::RegexNotIMatch
            ) =>
        {
            let insensitive = matches!(b.op, Operator::RegexIMatch | Operator::RegexNotIMatch);
            let negated = matches!(b.op, Operator::RegexNotMatch | Operator::RegexNotIMatch);
            Transformed::yes(regex_match(*b.left, *b.right, insensitive, negated))
        }
        Expr::SimilarTo(l) if l.escape_char.is_none() => Transformed::yes(regex_match(
            *l.expr,
            *l.pattern,
            l.case_insensitive,
            l.negated,
        )),
        Expr::BinaryExpr(b) if matches!(b.op, Operator::Divide | Operator::Modulo) => {
            let lt = b.left.get_type(schema)?;
            let rt = b.right.get_type(schema)?;
            if !(lt.is_numeric() && rt.is_numeric()) {
                return Ok(Transformed::no(Expr::BinaryExpr(b)));
            }
            let out = Expr::BinaryExpr(b.clone()).get_type(schema)?;
            let udf = ScalarUDF::new_from_impl(Total::divide(b.op, out));
            Transformed::yes(Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::new(udf),
                vec![*b.left, *b.right],
            )))
        }
        other => Transformed::no(other),
    })
}

/// `s ~ pattern` (the physical form of `~`, `~*`, `!~`, `SIMILAR TO`) as the
/// wrapped `regexp_like`: NULL where the pattern does not compile.
fn regex_match(s: Expr, pattern: Expr, insensitive: bool, negated: bool) -> Expr {
    let mut args = vec![s, pattern];
    if insensitive {
        args.push(Expr::Literal(ScalarValue::Utf8(Some("i".into())), None));
    }
    let udf = ScalarUDF::new_from_impl(Total::wrap(datafusion::functions::regex::regexp_like()));
    let m = Expr::ScalarFunction(ScalarFunction::new_udf(Arc::new(udf), args));
    if negated { Expr::Not(Box::new(m)) } else { m }
}

#[derive(Debug, PartialEq, Eq, Hash)]
enum Inner {
    /// An allowlisted function.
    Func(Arc<ScalarUDF>),
    /// `/` or `%` with the type DataFusion planned for it.
    Divide(Operator, DataType),
}

/// A function (or division) that yields NULL for the rows it fails on.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Total {
    name: String,
    signature: Signature,
    inner: Inner,
}

impl Total {
    fn wrap(f: Arc<ScalarUDF>) -> Total {
        Total {
            name: f.name().to_string(),
            signature: f.signature().clone(),
            inner: Inner::Func(f),
        }
    }

    fn divide(op: Operator, out: DataType) -> Total {
        let name = if op == Operator::Divide {
            "total_div"
        } else {
            "total_mod"
        };
        Total {
            name: name.into(),
            signature: Signature::any(2, Volatility::Immutable),
            inner: Inner::Divide(op, out),
        }
    }

    /// One evaluation, as the engine would do it.
    fn eval(&self, args: &ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        match &self.inner {
            Inner::Func(f) => f.invoke_with_args(ScalarFunctionArgs {
                args: args.args.clone(),
                arg_fields: args.arg_fields.clone(),
                number_rows: args.number_rows,
                return_field: Arc::clone(&args.return_field),
                config_options: Arc::clone(&args.config_options),
            }),
            Inner::Divide(op, out) => {
                let scalars = args
                    .args
                    .iter()
                    .all(|a| matches!(a, ColumnarValue::Scalar(_)));
                let arrays = ColumnarValue::values_to_arrays(&args.args)?;
                let (l, r) = (&arrays[0], &arrays[1]);
                let r = without_zeros(r)?;
                let q = if *op == Operator::Divide {
                    div(l, &r)?
                } else {
                    rem(l, &r)?
                };
                let q = if q.data_type() == out {
                    q
                } else {
                    cast(&q, out)?
                };
                Ok(if scalars {
                    ColumnarValue::Scalar(ScalarValue::try_from_array(&q, 0)?)
                } else {
                    ColumnarValue::Array(q)
                })
            }
        }
    }

    /// `args` rows `offset .. offset + len`, NULL where evaluation fails:
    /// the whole range first, halves only when that fails.
    fn eval_total(
        &self,
        args: &ScalarFunctionArgs,
        offset: usize,
        len: usize,
    ) -> DfResult<ArrayRef> {
        let part = ScalarFunctionArgs {
            args: args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Array(x) => ColumnarValue::Array(x.slice(offset, len)),
                    s => s.clone(),
                })
                .collect(),
            arg_fields: args.arg_fields.clone(),
            number_rows: len,
            return_field: Arc::clone(&args.return_field),
            config_options: Arc::clone(&args.config_options),
        };
        match self.eval(&part).and_then(|v| v.into_array(len)) {
            Ok(a) => Ok(a),
            Err(_) if len <= 1 => Ok(new_null_array(args.return_field.data_type(), len)),
            Err(_) => {
                let half = len / 2;
                let left = self.eval_total(args, offset, half)?;
                let right = self.eval_total(args, offset + half, len - half)?;
                Ok(concat(&[left.as_ref(), right.as_ref()])?)
            }
        }
    }
}

/// `r` with its zeros replaced by NULL.
fn without_zeros(r: &ArrayRef) -> DfResult<ArrayRef> {
    let zero = ScalarValue::new_zero(r.data_type())?.to_scalar()?;
    let zeros = eq(r, &zero)?;
    Ok(nullif(r, &zeros)?)
}

impl ScalarUDFImpl for Total {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match &self.inner {
            Inner::Func(f) => f.return_type(arg_types),
            Inner::Divide(_, out) => Ok(out.clone()),
        }
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let field = match &self.inner {
            Inner::Func(f) => f.return_field_from_args(args)?,
            Inner::Divide(_, out) => Arc::new(datafusion::arrow::datatypes::Field::new(
                self.name(),
                out.clone(),
                true,
            )),
        };
        Ok(Arc::new(field.as_ref().clone().with_nullable(true)))
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        match &self.inner {
            Inner::Func(f) => f.coerce_types(arg_types),
            Inner::Divide(..) => Ok(arg_types.to_vec()),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        match self.eval(&args) {
            Ok(v) => Ok(v),
            Err(_) => {
                let scalars_only = args
                    .args
                    .iter()
                    .all(|a| matches!(a, ColumnarValue::Scalar(_)));
                if scalars_only {
                    return Ok(ColumnarValue::Scalar(ScalarValue::try_from(
                        args.return_field.data_type(),
                    )?));
                }
                Ok(ColumnarValue::Array(self.eval_total(
                    &args,
                    0,
                    args.number_rows,
                )?))
            }
        }
    }
}
