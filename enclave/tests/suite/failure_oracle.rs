//! No data-dependent failures, attacked as a researcher would: each query
//! fails (or would fail) at run time only when a condition on one person's
//! quasi-identifiers and sensitive value holds — a division by zero, a
//! failed cast, an overflow, a function given bad input — and is run twice,
//! with a bound the person passes and one nobody passes. Both runs must end
//! alike (status, error code, error message), so a binary search over the
//! bound learns nothing from how jobs end. Ordinary queries keep their
//! answers, and bad input inside a group gives NULL for that row only.
//!
//! Data: 60 persons, one row each, three groups of 20, ages 19..=78 (one
//! person per age: age singles a person out); person 7 (age 25, group 1) has
//! a contribution base of 9,000, everyone else 3,010..=3,600.

use crate::support;

use std::time::Duration;

use crate::support::Lab;
use enclave::domain::JobView;

fn manifest() -> String {
    support::crafted_manifest(
        "people",
        ("运行时错误防护", "run-time failure oracles"),
        r#"
[[columns]]
name = "grp"
type = "int64"
description = { zh = "组", en = "Group" }
sensitivity = "attribute"

[[columns]]
name = "age"
type = "int64"
description = { zh = "年龄", en = "Age" }
sensitivity = "quasi_identifier"

[[columns]]
name = "base"
type = "int64"
description = { zh = "缴费基数", en = "Contribution base" }
sensitivity = "sensitive"

[[columns]]
name = "label"
type = "string"
description = { zh = "标签", en = "Label" }
sensitivity = "attribute"

[disclosure]
threshold = 10
frequency_threshold = 10
zeros_are_disclosive = false
max_output_rows = 10000
auto_release = false
row_level_output = false
"#,
    )
}

async fn lab() -> (Lab, String) {
    let lab = Lab::new().await;
    let mut csv = String::from("person,grp,age,base,label\n");
    for i in 1..=60i64 {
        let base = if i == 7 { 9_000 } else { 3_000 + i * 10 };
        csv.push_str(&format!("{i},{},{},{base},L{i}\n", (i - 1) % 3 + 1, 18 + i));
    }
    let path = lab.dir.path().join("people.csv");
    std::fs::write(&path, csv).unwrap();
    let grant = lab.dataset(&manifest(), &path).await;
    (lab, grant)
}

/// How a job ended, as its researcher sees it: status, error code, message
/// (a refusal at submission is status `refused`).
#[derive(Debug, PartialEq)]
struct Outcome {
    status: String,
    code: Option<String>,
    message: Option<String>,
}

async fn outcome(lab: &Lab, grant: &str, sql: &str) -> (Outcome, Option<JobView>) {
    let job = match lab.domain.submit_job(&lab.researcher, grant, sql).await {
        Ok(j) => j,
        Err(e) => {
            return (
                Outcome {
                    status: "refused".into(),
                    code: Some(e.code().into()),
                    message: Some(e.to_string()),
                },
                None,
            );
        }
    };
    let done = lab
        .domain
        // As stored (stricter than the requester's own view, which shows less).
        .wait_job(&lab.admin, &job.id, Duration::from_secs(120))
        .await
        .unwrap()
        .full()
        .unwrap();
    (
        Outcome {
            status: done.job.status.as_str().to_string(),
            code: done.job.error_code.clone(),
            message: done.job.error_message.clone(),
        },
        Some(done),
    )
}

/// Holds for person 7 only (age 25, base 9,000) …
const HOLDS: &str = "age = 25 AND base > 5000";
/// … and for nobody: the next step of the attacker's binary search.
const NOBODY: &str = "age = 25 AND base > 9500";

/// Expressions that fail at run time in plain DataFusion exactly where
/// `{c}` holds, one per failure class.
const ATTACKS: &[(&str, &str)] = &[
    ("division by zero", "1 / (CASE WHEN {c} THEN 0 ELSE 1 END)"),
    ("modulo by zero", "10 % (CASE WHEN {c} THEN 0 ELSE 3 END)"),
    (
        "decimal division by zero",
        "CAST(1.5 AS DECIMAL(10,2)) / (CASE WHEN {c} THEN CAST(0 AS DECIMAL(10,2)) ELSE CAST(2 AS DECIMAL(10,2)) END)",
    ),
    (
        "division overflow",
        "(-9223372036854775807 - 1) / (CASE WHEN {c} THEN -1 ELSE 1 END)",
    ),
    (
        "failed cast of a string",
        "CAST(CASE WHEN {c} THEN 'x' ELSE '1' END AS BIGINT)",
    ),
    (
        "failed cast of a data value",
        "CAST(CASE WHEN {c} THEN label ELSE '1' END AS BIGINT)",
    ),
    (
        "failed arrow_cast",
        "arrow_cast(CASE WHEN {c} THEN 'x' ELSE '1' END, 'Int64')",
    ),
    (
        "cast overflow",
        "CAST(CASE WHEN {c} THEN base * 10000000000000 ELSE 1 END AS INT)",
    ),
    (
        "decimal precision overflow",
        "CAST(CASE WHEN {c} THEN base ELSE 1 END AS DECIMAL(3,0))",
    ),
    (
        "integer overflow",
        "(CASE WHEN {c} THEN 9223372036854775807 ELSE 1 END) + base",
    ),
    (
        "abs overflow",
        "abs(CASE WHEN {c} THEN -9223372036854775807 - 1 ELSE 1 END)",
    ),
    (
        "power overflow",
        "power(CASE WHEN {c} THEN 10 ELSE 1 END, 30)",
    ),
    (
        "factorial overflow",
        "factorial(CASE WHEN {c} THEN 30 ELSE 1 END)",
    ),
    (
        "lcm overflow",
        "lcm(CASE WHEN {c} THEN 9223372036854775807 ELSE 1 END, 2)",
    ),
    (
        "sqrt of a negative",
        "sqrt(CASE WHEN {c} THEN -1 ELSE 1 END)",
    ),
    ("ln of zero", "ln(CASE WHEN {c} THEN 0 ELSE 1 END)"),
    (
        "substr with a negative length",
        "substr(label, 1, CASE WHEN {c} THEN -1 ELSE 1 END)",
    ),
    (
        "split_part at position zero",
        "split_part(label, 'L', CASE WHEN {c} THEN 0 ELSE 1 END)",
    ),
    (
        "to_date parse failure",
        "to_date(CASE WHEN {c} THEN 'not a date' ELSE '2020-01-01' END)",
    ),
    (
        "to_timestamp parse failure",
        "to_timestamp(CASE WHEN {c} THEN 'garbage' ELSE '2020-01-01T00:00:00' END)",
    ),
    (
        "invalid make_date",
        "make_date(2020, CASE WHEN {c} THEN 13 ELSE 1 END, 1)",
    ),
    (
        "invalid regular expression from data",
        "regexp_like(label, CASE WHEN {c} THEN '(' ELSE 'L' END)",
    ),
    (
        "invalid date_trunc granularity",
        "date_trunc(CASE WHEN {c} THEN 'fortnight' ELSE 'year' END, to_timestamp('2020-05-05T00:00:00'))",
    ),
    (
        "LIKE with a pattern from data",
        "label LIKE (CASE WHEN {c} THEN label ELSE 'L%' END)",
    ),
];

fn query(expr: &str, cond: &str) -> String {
    let e = expr.replace("{c}", cond);
    format!("SELECT grp, count(*) AS n, count({e}) AS c FROM people GROUP BY grp")
}

#[tokio::test]
async fn one_persons_value_never_decides_how_a_job_ends() {
    let (lab, grant) = lab().await;
    let mut failures = Vec::new();
    for (label, expr) in ATTACKS {
        let (holds, _) = outcome(&lab, &grant, &query(expr, HOLDS)).await;
        let (nobody, _) = outcome(&lab, &grant, &query(expr, NOBODY)).await;
        if holds != nobody {
            failures.push(format!(
                "[{label}] the researcher tells the runs apart:\n    holds:  {holds:?}\n    nobody: {nobody:?}"
            ));
        }
        // Total semantics: the query runs (or is refused for its text alone).
        if holds.status == "failed" {
            failures.push(format!("[{label}] failed at run time: {holds:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failure oracles:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A pattern computed from data is refused before any job exists, whatever
/// the data: the refusal depends on the query text only.
#[tokio::test]
async fn patterns_from_data_are_refused_at_plan_time() {
    let (lab, grant) = lab().await;
    for sql in [
        "SELECT grp, count(*) AS n FROM people WHERE label LIKE label GROUP BY grp",
        "SELECT grp, count(*) AS n FROM people WHERE label ~ label GROUP BY grp",
        "SELECT grp, count(*) AS n FROM people WHERE label SIMILAR TO label GROUP BY grp",
    ] {
        let (o, _) = outcome(&lab, &grant, sql).await;
        assert_eq!(o.status, "refused", "{sql}: {o:?}");
        assert_eq!(o.code.as_deref(), Some("unsupported_query"), "{sql}: {o:?}");
    }
    // A constant pattern is fine.
    let (o, _) = outcome(
        &lab,
        &grant,
        "SELECT grp, count(*) AS n FROM people WHERE label LIKE 'L%' GROUP BY grp",
    )
    .await;
    assert_eq!(o.status, "pending_review", "{o:?}");
}

/// Bad input gives NULL for its own row: the group of person 7 counts 19
/// non-null quotients, the others 20; ordinary arithmetic is unchanged.
#[tokio::test]
async fn bad_input_is_null_and_ordinary_queries_are_unchanged() {
    let (lab, grant) = lab().await;
    let ran = lab
        .run(
            &grant,
            &format!(
                "SELECT grp, count(*) AS n, \
                 count(1 / (CASE WHEN {HOLDS} THEN 0 ELSE 1 END)) AS quotients, \
                 count(CAST(CASE WHEN {HOLDS} THEN 'x' ELSE '1' END AS BIGINT)) AS casts, \
                 sum(base / 10) AS tenths, sum(base % 7) AS sevenths, \
                 sum(CAST(base AS DOUBLE) / 4) AS quarters, \
                 sum(CAST(substr(label, 2) AS BIGINT)) AS numbers \
                 FROM people GROUP BY grp ORDER BY grp"
            ),
        )
        .await;
    assert_eq!(ran.rows.len(), 3, "{:?}", ran.rows);
    for (g, row) in ran.rows.iter().enumerate() {
        let grp = g as i64 + 1;
        let persons: Vec<i64> = (1..=60).filter(|i| (i - 1) % 3 + 1 == grp).collect();
        let base = |i: i64| if i == 7 { 9_000 } else { 3_000 + i * 10 };
        let expect_total = if grp == 1 { 19 } else { 20 };
        assert_eq!(row["n"], 20, "{row:?}");
        assert_eq!(row["quotients"], expect_total, "{row:?}");
        assert_eq!(row["casts"], expect_total, "{row:?}");
        let tenths: i64 = persons.iter().map(|&i| base(i) / 10).sum();
        let sevenths: i64 = persons.iter().map(|&i| base(i) % 7).sum();
        let quarters: f64 = persons.iter().map(|&i| base(i) as f64 / 4.0).sum();
        let numbers: i64 = persons.iter().sum();
        assert_eq!(row["tenths"], tenths, "{row:?}");
        assert_eq!(row["sevenths"], sevenths, "{row:?}");
        assert_eq!(row["quarters"].as_f64(), Some(quarters), "{row:?}");
        assert_eq!(row["numbers"], numbers, "{row:?}");
    }
}
