//! The functions a query may call. Only these are registered in a job's
//! session, and the plan policy checks every call against them again.
//!
//! Left out on purpose: hashes and reversible encodings (`md5`, `sha256`,
//! `digest`, `encode`, `to_hex`: they launder identifiers into linkable
//! tokens), functions that reveal files (`input_file_name`,
//! `file_row_index`), randomness and versions, nested types (arrays, maps,
//! structs: they smuggle many values through one cell), and aggregates that
//! return individual values or many of them (`array_agg`, `string_agg`,
//! `first_value`, `last_value`, `nth_value`, `any_value`, bitwise ones).

/// Scalar functions allowed in any expression (identifier columns still may
/// not be passed to any of them).
pub const SCALAR: &[&str] = &[
    // math
    "abs",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "cbrt",
    "ceil",
    "cos",
    "cosh",
    "cot",
    "degrees",
    "exp",
    "factorial",
    "floor",
    "gcd",
    "greatest",
    "isnan",
    "iszero",
    "lcm",
    "least",
    "ln",
    "log",
    "log10",
    "log2",
    "nanvl",
    "pi",
    "power",
    "radians",
    "round",
    "signum",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "trunc",
    // conditional
    "coalesce",
    "nullif",
    "nvl",
    "nvl2",
    // strings
    "btrim",
    "character_length",
    "concat",
    "concat_ws",
    "contains",
    "ends_with",
    "initcap",
    "left",
    "lower",
    "lpad",
    "ltrim",
    "octet_length",
    "replace",
    "right",
    "rpad",
    "rtrim",
    "split_part",
    "starts_with",
    "strpos",
    "substr",
    "translate",
    "upper",
    "regexp_count",
    "regexp_like",
    "regexp_replace",
    // dates and times
    "current_date",
    "current_time",
    "date_bin",
    "date_part",
    "date_trunc",
    "from_unixtime",
    "make_date",
    "now",
    "to_char",
    "to_date",
    "to_timestamp",
    "to_timestamp_micros",
    "to_timestamp_millis",
    "to_timestamp_seconds",
    "to_unixtime",
    // types
    "arrow_cast",
    "arrow_typeof",
];

/// Aggregate functions allowed (over non-identifier arguments; the count
/// family also over bare identifier columns).
pub const AGGREGATE: &[&str] = &[
    "approx_distinct",
    "approx_median",
    "approx_percentile_cont",
    "approx_percentile_cont_with_weight",
    "avg",
    "bool_and",
    "bool_or",
    "corr",
    "count",
    "covar_pop",
    "covar_samp",
    "grouping",
    "max",
    "median",
    "min",
    "percentile_cont",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "regr_sxx",
    "regr_sxy",
    "regr_syy",
    "stddev",
    "stddev_pop",
    "sum",
    "var",
    "var_pop",
];

/// Window functions allowed (over aggregated rows only).
pub const WINDOW: &[&str] = &[
    "cume_dist",
    "dense_rank",
    "lag",
    "lead",
    "ntile",
    "percent_rank",
    "rank",
    "row_number",
];

/// Aggregates whose result is a count: they reveal nothing of the values they
/// count, so they may take a bare identifier column (`COUNT(DISTINCT person_id)`).
pub const COUNTING: &[&str] = &["count", "approx_distinct", "regr_count", "grouping"];

/// Aggregates whose result is one contributor's own value.
pub const EXTREME: &[&str] = &["min", "max"];

/// Whether `name` is an allowed scalar function.
pub fn scalar_allowed(name: &str) -> bool {
    SCALAR.contains(&name)
}

/// Whether `name` is an allowed aggregate.
pub fn aggregate_allowed(name: &str) -> bool {
    AGGREGATE.contains(&name)
}

/// Whether `name` is an allowed window function.
pub fn window_allowed(name: &str) -> bool {
    WINDOW.contains(&name)
}
