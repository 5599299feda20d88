//! Aggregates over one person, as an attacker writes them: the group is
//! large, but the aggregate's argument is masked (`CASE WHEN <one person's
//! quasi-identifiers> THEN value END`, a FILTER, an indicator, a weight) so
//! that only one person contributes. Every such cell must be withheld (NULL,
//! named by the `contributors` rule), through every rewrite path: one row per
//! person, pre-aggregation per person, and COUNT(DISTINCT person). Counts
//! written as sums get the count's threshold; estimators need degrees of
//! freedom. Honest queries over large groups are unchanged.

use crate::support;

use crate::support::{Lab, Ran};
use enclave::disclosure::Verdict::{Fail, Pass};

/// The target: singled out by birth date, district and sex, never by an identifier.
const WHO: &str = "birth_date = DATE '1985-03-14' AND district = '南山区' AND sex = 'F'";
/// The target and a partner whose value the attacker knows (two-point estimators).
const WHO2: &str = "(birth_date = DATE '1985-03-14' AND district = '南山区' AND sex = 'F') OR (birth_date = DATE '1979-11-02' AND district = '福田区' AND sex = 'M')";
const SECRET: f64 = 12345.0;

fn manifest(id: &str, value: &str) -> String {
    support::crafted_manifest(
        id,
        ("掩码聚合", "masked aggregates"),
        &format!(
            r#"
[[columns]]
name = "grp"
type = "int64"
description = {{ zh = "组", en = "Group" }}
sensitivity = "attribute"

[[columns]]
name = "birth_date"
type = "date"
description = {{ zh = "出生日期", en = "Birth date" }}
sensitivity = "quasi_identifier"

[[columns]]
name = "district"
type = "string"
description = {{ zh = "区", en = "District" }}
sensitivity = "quasi_identifier"

[[columns]]
name = "sex"
type = "string"
description = {{ zh = "性别", en = "Sex" }}
sensitivity = "quasi_identifier"

[[columns]]
name = "{value}"
type = "float64"
description = {{ zh = "金额", en = "Amount" }}
sensitivity = "sensitive"

[disclosure]
threshold = 10
frequency_threshold = 10
dof_threshold = 10
nk = {{ n = 2, k = 0.9 }}
p_ratio = 0.1
zeros_are_disclosive = false
max_output_rows = 10000
auto_release = false
row_level_output = false
"#
        ),
    )
}

/// One row: (person, grp, birth date, district, sex, value).
type Row = (i64, i64, String, &'static str, &'static str, Option<f64>);

fn write(dir: &std::path::Path, name: &str, value: &str, rows: &[Row]) -> std::path::PathBuf {
    let mut out = format!("person,grp,birth_date,district,sex,{value}\n");
    for (p, g, b, d, s, v) in rows {
        let v = v.map(|v| v.to_string()).unwrap_or_default();
        out.push_str(&format!("{p},{g},{b},{d},{s},{v}\n"));
    }
    let path = dir.join(name);
    std::fs::write(&path, out).unwrap();
    path
}

/// An ordinary person's birth date: never the target's or the partner's (days ≤ 28, years 1950–1969).
fn birth(i: i64) -> String {
    format!("{}-{:02}-{:02}", 1950 + i % 20, 1 + i % 12, 1 + i % 28)
}

/// People, one row each: group 1 — 30 persons, the target and the partner
/// among them, 4 in 南山区; group 2 — 30 persons, 12 in 南山区; group 3 —
/// exactly 10 persons; group 4 — 11.
fn people() -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut next = 0i64;
    let mut add = |rows: &mut Vec<Row>, g: i64, n: usize, nanshan: usize| {
        for k in 0..n {
            next += 1;
            let district = if k < nanshan {
                "南山区"
            } else {
                "罗湖区"
            };
            let sex = if next % 2 == 0 { "M" } else { "F" };
            rows.push((
                next,
                g,
                birth(next),
                district,
                sex,
                Some(5000.0 + 37.0 * next as f64),
            ));
        }
    };
    // Group 1: the target (in 南山区), 3 more in 南山区, the partner, 25 others.
    rows.push((1000, 1, "1985-03-14".into(), "南山区", "F", Some(SECRET)));
    rows.push((1001, 1, "1979-11-02".into(), "福田区", "M", Some(8000.0)));
    add(&mut rows, 1, 28, 3);
    add(&mut rows, 2, 30, 12);
    add(&mut rows, 3, 10, 0);
    add(&mut rows, 4, 11, 0);
    rows
}

/// Claims, two rows per person: group 1 — the target (12345 and 0) among 15
/// persons; group 3 — 11 persons whose rows cancel (+5, −5) and one of
/// (100, 0): every person has a non-zero row, one has a non-zero total.
fn claims() -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    rows.push((1000, 1, "1985-03-14".into(), "南山区", "F", Some(SECRET)));
    rows.push((1000, 1, "1985-03-14".into(), "南山区", "F", Some(0.0)));
    for p in 1..15 {
        for _ in 0..2 {
            rows.push((p, 1, birth(p), "罗湖区", "M", Some(100.0 + p as f64)));
        }
    }
    for p in 100..111 {
        rows.push((p, 3, birth(p), "罗湖区", "M", Some(5.0)));
        rows.push((p, 3, birth(p), "罗湖区", "M", Some(-5.0)));
    }
    rows.push((200, 3, birth(200), "罗湖区", "M", Some(100.0)));
    rows.push((200, 3, birth(200), "罗湖区", "M", Some(0.0)));
    rows
}

fn number(ran: &Ran, row: usize, column: &str) -> Option<f64> {
    ran.rows[row]
        .get(column)
        .and_then(serde_json::Value::as_f64)
}

/// No cell of the result holds the secret, and no reason echoes it.
fn secret_absent(ran: &Ran, what: &str) {
    for row in &ran.rows {
        for (k, v) in row {
            if let Some(x) = v.as_f64() {
                assert!((x - SECRET).abs() > 0.5, "{what}: {k} carries the secret");
            }
        }
    }
    for r in ran.reasons() {
        assert!(!r.contains("12345"), "{what}: a reason echoes a value: {r}");
    }
}

/// `column` of group `g` is withheld: NULL, failed by the contributors rule.
fn withheld(ran: &Ran, g: i64, column: &str, what: &str) {
    let row = ran
        .row_of(&[("grp", g)])
        .unwrap_or_else(|| panic!("{what}: group {g} missing"));
    assert!(
        ran.rows[row][column].is_null(),
        "{what}: {column} of group {g} released: {:?}",
        ran.rows[row][column]
    );
    assert_eq!(
        ran.rule_verdict("contributors", row, column),
        Fail,
        "{what}: {column} of group {g} not named"
    );
}

/// `column` of group `g` is released as it is (no contributors finding).
fn kept(ran: &Ran, g: i64, column: &str, what: &str) {
    let row = ran
        .row_of(&[("grp", g)])
        .unwrap_or_else(|| panic!("{what}: group {g} missing"));
    assert!(
        !ran.rows[row][column].is_null(),
        "{what}: {column} of group {g} withheld"
    );
    assert_eq!(
        ran.rule_verdict("contributors", row, column),
        Pass,
        "{what}: {column} of group {g}"
    );
}

async fn lab_with_people() -> (Lab, String) {
    let lab = Lab::new().await;
    let data = write(lab.dir.path(), "people.csv", "contribution_base", &people());
    let grant = lab
        .dataset(&manifest("people", "contribution_base"), &data)
        .await;
    (lab, grant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_to_one_person_is_withheld_one_row_per_person() {
    let (lab, grant) = lab_with_people().await;
    let m = format!("CASE WHEN {WHO} THEN contribution_base END");
    let m2 = format!("CASE WHEN {WHO2} THEN contribution_base END");
    let zero = format!("CASE WHEN {WHO} THEN contribution_base ELSE 0 END");
    let w = format!("CASE WHEN {WHO} THEN 1 ELSE 0 END");
    let attacks: Vec<(&str, String)> = vec![
        ("median", format!("median({m})")),
        ("approx_median", format!("approx_median({m})")),
        (
            "approx_percentile_cont",
            format!("approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY {m})"),
        ),
        (
            "percentile_cont",
            format!("percentile_cont(0.5) WITHIN GROUP (ORDER BY {m})"),
        ),
        (
            "weighted percentile, weight masked",
            format!(
                "approx_percentile_cont_with_weight({w}, 0.5) WITHIN GROUP (ORDER BY contribution_base)"
            ),
        ),
        ("avg", format!("avg({m})")),
        ("sum", format!("sum({m})")),
        ("sum with ELSE 0", format!("sum({zero})")),
        ("avg with ELSE 0", format!("avg({zero})")),
        ("min", format!("min({m})")),
        ("max", format!("max({m})")),
        ("count", format!("count({m})")),
        ("count distinct", format!("count(DISTINCT {m})")),
        ("var of two", format!("var({m2})")),
        ("var_pop of two", format!("var_pop({m2})")),
        ("stddev of two", format!("stddev({m2})")),
        ("stddev_pop of two", format!("stddev_pop({m2})")),
        ("covar_pop of two", format!("covar_pop({m2}, {m2})")),
        ("covar_samp of two", format!("covar_samp({m2}, {m2})")),
        ("corr of two", format!("corr({m2}, contribution_base)")),
        ("regr_avgy", format!("regr_avgy({m}, contribution_base)")),
        ("regr_avgx", format!("regr_avgx(contribution_base, {m})")),
        (
            "regr_sxx of two",
            format!("regr_sxx(contribution_base, {m2})"),
        ),
        (
            "regr_slope of two",
            format!("regr_slope({m2}, contribution_base)"),
        ),
        (
            "avg FILTER",
            format!("avg(contribution_base) FILTER (WHERE {WHO})"),
        ),
        (
            "sum FILTER",
            format!("sum(contribution_base) FILTER (WHERE {WHO})"),
        ),
        (
            "median FILTER",
            format!("median(contribution_base) FILTER (WHERE {WHO})"),
        ),
        (
            "max FILTER",
            format!("max(contribution_base) FILTER (WHERE {WHO})"),
        ),
        (
            "count FILTER (a bit about the person)",
            format!("count(*) FILTER (WHERE {WHO} AND contribution_base > 10000)"),
        ),
    ];
    for (what, agg) in &attacks {
        let sql = format!(
            "SELECT grp, count(*) AS n, {agg} AS v FROM people WHERE grp <= 2 GROUP BY grp"
        );
        let ran = lab.run(&grant, &sql).await;
        withheld(&ran, 1, "v", what);
        secret_absent(&ran, what);
        // The group itself is large: its count is released.
        let g1 = ran.row_of(&[("grp", 1)]).unwrap();
        assert_eq!(number(&ran, g1, "n"), Some(30.0), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withheld_value_reaches_nothing_above_it() {
    let (lab, grant) = lab_with_people().await;
    let m = format!("CASE WHEN {WHO} THEN contribution_base END");
    // HAVING as an oracle: whether group 1 appears must not depend on the value.
    for op in [">", "<"] {
        let ran = lab
            .run(
                &grant,
                &format!(
                    "SELECT grp, count(*) AS n FROM people GROUP BY grp HAVING max({m}) {op} 12000"
                ),
            )
            .await;
        assert_eq!(ran.row_of(&[("grp", 1)]), None, "HAVING {op}");
    }
    // Arithmetic on the value, and the value through a subquery and a join.
    let ran = lab
        .run(
            &grant,
            &format!("SELECT grp, median({m}) * 2 + 1 AS v FROM people GROUP BY grp"),
        )
        .await;
    let g1 = ran.row_of(&[("grp", 1)]).unwrap();
    assert!(ran.rows[g1]["v"].is_null(), "transformed");
    // The cell cannot be named through the arithmetic: the result is reviewed.
    assert!(
        ran.whole_result()
            .contains(&("contributors", enclave::disclosure::Verdict::Review)),
        "{:?}",
        ran.whole_result()
    );
    secret_absent(&ran, "transformed");
    let ran = lab
        .run(
            &grant,
            &format!(
                "SELECT p.grp, count(*) AS n, max(x.v) AS v FROM people p JOIN (SELECT grp, avg({m}) AS v FROM people GROUP BY grp) x ON p.grp = x.grp GROUP BY p.grp"
            ),
        )
        .await;
    let g1 = ran.row_of(&[("grp", 1)]).unwrap();
    assert!(ran.rows[g1]["v"].is_null(), "through a join");
    secret_absent(&ran, "through a join");
    let ran = lab
        .run(
            &grant,
            &format!(
                "SELECT grp, count(*) AS n, (SELECT sum({m}) FROM people) AS v FROM people GROUP BY grp"
            ),
        )
        .await;
    secret_absent(&ran, "scalar subquery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_written_as_sums_get_the_count_threshold() {
    let (lab, grant) = lab_with_people().await;
    let ran = lab
        .run(
            &grant,
            "SELECT grp, count(*) AS n, \
             sum(CASE WHEN district = '南山区' THEN 1 ELSE 0 END) AS k, \
             avg(CASE WHEN district = '南山区' THEN 1.0 ELSE 0.0 END) AS share, \
             count(*) FILTER (WHERE district = '南山区') AS f \
             FROM people WHERE grp <= 2 GROUP BY grp ORDER BY grp",
        )
        .await;
    // The finding as stored in the job's checks (and shown to reviewers).
    let rule = ran
        .report
        .rules
        .iter()
        .find(|r| r.rule == "contributors")
        .expect("the rule runs");
    insta::assert_json_snapshot!("withheld_indicator_cells", rule);
    // Group 1 has 4 persons in 南山区, group 2 has 12.
    for column in ["k", "share", "f"] {
        withheld(&ran, 1, column, "indicator of 4");
        kept(&ran, 2, column, "indicator of 12");
    }
    let g2 = ran.row_of(&[("grp", 2)]).unwrap();
    assert_eq!(number(&ran, g2, "k"), Some(12.0));
    kept(&ran, 1, "n", "the group's own count");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimators_need_degrees_of_freedom() {
    let (lab, grant) = lab_with_people().await;
    // Group 3 has exactly 10 persons (the threshold): its mean passes, its
    // spread does not (9 degrees of freedom); group 4 has 11.
    let ran = lab
        .run(
            &grant,
            "SELECT grp, count(*) AS n, avg(contribution_base) AS mean, \
             stddev(contribution_base) AS sd, var_pop(contribution_base) AS vp, \
             corr(contribution_base, contribution_base * 2) AS r, \
             regr_slope(contribution_base, contribution_base) AS slope \
             FROM people WHERE grp >= 3 GROUP BY grp",
        )
        .await;
    kept(&ran, 3, "mean", "10 persons");
    for column in ["sd", "vp", "r", "slope"] {
        withheld(&ran, 3, column, "10 persons");
        kept(&ran, 4, column, "11 persons");
    }
    let g3 = ran.row_of(&[("grp", 3)]).unwrap();
    let reason = ran
        .reasons()
        .into_iter()
        .find(|r| r.contains("degrees of freedom"))
        .map(str::to_string);
    assert!(reason.is_some(), "the dof reason is given");
    assert_eq!(ran.rule_verdict("contributors", g3, "n"), Pass);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_queries_over_large_groups_are_unchanged() {
    let (lab, grant) = lab_with_people().await;
    let ran = lab
        .run(
            &grant,
            "SELECT grp, count(*) AS n, avg(contribution_base) AS mean, \
             sum(contribution_base) AS total, median(contribution_base) AS med, \
             approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY contribution_base) AS p90, \
             percentile_cont(0.25) WITHIN GROUP (ORDER BY contribution_base) AS q1, \
             stddev(contribution_base) AS sd, count(DISTINCT district) AS districts \
             FROM people WHERE grp <= 2 GROUP BY grp",
        )
        .await;
    assert_eq!(ran.rows.len(), 2);
    for g in [1, 2] {
        for column in ["n", "mean", "total", "med", "p90", "q1", "sd", "districts"] {
            kept(&ran, g, column, "honest");
        }
    }
    // Nor does any other rule flag them (dominance now judges medians,
    // percentiles and spreads too).
    for g in [1, 2] {
        let row = ran.row_of(&[("grp", g)]).unwrap();
        for column in ["mean", "total", "med", "p90", "q1", "sd"] {
            assert_eq!(
                ran.rules_on(row, column),
                vec![],
                "honest: {column} of group {g}"
            );
        }
    }
    let contributors = ran
        .report
        .rules
        .iter()
        .find(|r| r.rule == "contributors")
        .expect("the rule runs");
    assert!(contributors.cells.is_empty(), "{:?}", contributors.cells);
    // The plain averages are the averages.
    let g2 = ran.row_of(&[("grp", 2)]).unwrap();
    let expected: f64 = people()
        .iter()
        .filter(|r| r.1 == 2)
        .filter_map(|r| r.5)
        .sum::<f64>()
        / 30.0;
    assert!((number(&ran, g2, "mean").unwrap() - expected).abs() < 1e-6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_persons_count_once_and_by_their_total() {
    let lab = Lab::new().await;
    let data = write(lab.dir.path(), "claims.csv", "amount", &claims());
    let grant = lab.dataset(&manifest("claims", "amount"), &data).await;
    let m = format!("CASE WHEN {WHO} THEN amount END");
    // Decomposable: pre-aggregated per person; median: COUNT(DISTINCT person).
    for (what, agg) in [
        ("sum", format!("sum({m})")),
        ("avg FILTER", format!("avg(amount) FILTER (WHERE {WHO})")),
        ("count FILTER", format!("count(*) FILTER (WHERE {WHO})")),
        ("max", format!("max({m})")),
        ("median", format!("median({m})")),
        ("stddev", format!("stddev({m})")),
    ] {
        let ran = lab
            .run(
                &grant,
                &format!("SELECT grp, count(*) AS n, {agg} AS v FROM claims GROUP BY grp"),
            )
            .await;
        withheld(&ran, 1, "v", what);
        secret_absent(&ran, what);
    }
    // Group 3: every person has a non-zero row, but only one a non-zero
    // total: the sum is that person's.
    let ran = lab
        .run(
            &grant,
            "SELECT grp, count(*) AS n, sum(amount) AS s, avg(amount) AS a FROM claims GROUP BY grp",
        )
        .await;
    withheld(&ran, 3, "s", "cancelling rows");
    withheld(&ran, 3, "a", "cancelling rows");
    kept(&ran, 1, "s", "15 persons");
    // The same beside a median (COUNT(DISTINCT) path, no per-person totals):
    // a person with rows of both signs is not counted.
    let ran = lab
        .run(
            &grant,
            "SELECT grp, count(*) AS n, sum(amount) AS s, avg(amount) AS a, median(amount) AS m FROM claims GROUP BY grp",
        )
        .await;
    withheld(&ran, 3, "s", "cancelling rows, distinct path");
    withheld(&ran, 3, "a", "cancelling rows, distinct path");
    kept(&ran, 3, "m", "12 persons with values");
    kept(&ran, 1, "s", "15 persons, distinct path");
}

/// Masking with a constant instead of NULL keeps every person a contributor
/// (`CASE WHEN <person> THEN x ELSE 0 END`): the top percentile or the spread
/// is then the person's value. Dominance over per-person contributions
/// judges every magnitude aggregate, not only SUM and AVG: one person holds
/// the whole total, the cell fails and is suppressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_with_zero_is_dominated() {
    let (lab, grant) = lab_with_people().await;
    let z = format!("CASE WHEN {WHO} THEN contribution_base ELSE 0 END");
    for (what, agg) in [
        (
            "approx_percentile_cont",
            format!("approx_percentile_cont(1.0) WITHIN GROUP (ORDER BY {z})"),
        ),
        (
            "percentile_cont",
            format!("percentile_cont(1.0) WITHIN GROUP (ORDER BY {z})"),
        ),
        ("stddev", format!("stddev({z})")),
        ("var_pop", format!("var_pop({z})")),
    ] {
        let ran = lab
            .run(
                &grant,
                &format!(
                    "SELECT grp, count(*) AS n, {agg} AS v FROM people WHERE grp <= 2 GROUP BY grp"
                ),
            )
            .await;
        let g1 = ran.row_of(&[("grp", 1)]).unwrap();
        assert_eq!(ran.rule_verdict("dominance", g1, "v"), Fail, "{what}");
        assert!(ran.rows[g1]["v"].is_null(), "{what}: suppressed");
        secret_absent(&ran, what);
    }
    // Repeated persons (COUNT(DISTINCT) path): judged per row.
    let data = write(lab.dir.path(), "claims.csv", "amount", &claims());
    let grant = lab.dataset(&manifest("claims", "amount"), &data).await;
    let ran = lab
        .run(
            &grant,
            &format!(
                "SELECT grp, count(*) AS n, stddev(CASE WHEN {WHO} THEN amount ELSE 0 END) AS v FROM claims GROUP BY grp"
            ),
        )
        .await;
    let g1 = ran.row_of(&[("grp", 1)]).unwrap();
    assert_eq!(ran.rule_verdict("dominance", g1, "v"), Fail);
    assert!(ran.rows[g1]["v"].is_null());
}
