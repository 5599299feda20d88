//! The dominance rules through the real job path: crafted magnitude cells
//! (SUM, and the sums behind AVG) that fail (n, k) only, p-ratio only, both,
//! neither; negative and missing values routed to review; and a person with
//! many rows dominating a cell, caught because contributions are per privacy
//! unit, not per row.
//!
//! Defaults as ACRO's: n = 2, k = 0.9 — the two largest contributors holding
//! at least 90% of the total fail; p = 0.1 — (total − largest − second) /
//! largest under 0.1 fails. Under these defaults a p-ratio failure implies an
//! (n, k) failure (rest < 0.1·x1 ≤ (x1 + x2)/9), so "p-ratio only" is shown
//! on a dataset whose manifest sets p = 0.2.

use crate::support;

use crate::support::Lab;
use enclave::disclosure::Verdict::{self, Fail, Pass, Review};

/// A manifest for crafted data: group `grp`, privacy unit `person`, `amount`.
fn manifest(id: &str, p_ratio: f64) -> String {
    support::crafted_manifest(
        id,
        ("支配规则", "the dominance rules"),
        &format!(
            r#"
[[columns]]
name = "grp"
type = "int64"
description = {{ zh = "组", en = "Group" }}
sensitivity = "attribute"

[[columns]]
name = "amount"
type = "float64"
description = {{ zh = "金额", en = "Amount" }}
sensitivity = "sensitive"

[disclosure]
threshold = 10
frequency_threshold = 10
nk = {{ n = 2, k = 0.9 }}
p_ratio = {p_ratio}
zeros_are_disclosive = true
max_output_rows = 10000
auto_release = false
row_level_output = false
"#
        ),
    )
}

/// Writes rows `(grp, person, amount)` as CSV (`None` = missing amount).
fn csv(dir: &std::path::Path, name: &str, rows: &[(i64, i64, Option<f64>)]) -> std::path::PathBuf {
    let mut out = String::from("grp,person,amount\n");
    for (g, p, a) in rows {
        let a = a.map(|a| a.to_string()).unwrap_or_default();
        out.push_str(&format!("{g},{p},{a}\n"));
    }
    let path = dir.join(name);
    std::fs::write(&path, out).unwrap();
    path
}

/// Adds one row per amount to group `g`, each for a new person.
fn persons(rows: &mut Vec<(i64, i64, Option<f64>)>, g: i64, amounts: &[Option<f64>]) {
    for a in amounts {
        let next = rows.len() as i64 + 1;
        rows.push((g, next, *a));
    }
}

fn many(n: usize, v: f64) -> Vec<Option<f64>> {
    vec![Some(v); n]
}

/// Every amount planted in the crafted data, as text a reason must not carry.
const PLANTED: &[&str] = &["10000", "500", "1000", "-5", "1160"];

fn no_values_in(ran: &support::Ran) {
    for r in ran.reasons() {
        for v in PLANTED {
            assert!(!r.contains(v), "a reason echoes a value: {r}");
        }
    }
}

/// (group, expected (n, k) verdict, expected p-ratio verdict).
type Case = (i64, &'static str, Verdict, Verdict);

async fn check_matrix(lab: &Lab, grant: &str, cases: &[Case], dropped: u64) {
    // SUM and AVG over the same amounts carry the same contributions.
    let ran = lab
        .run(
            grant,
            "SELECT grp, count(*) AS n, sum(amount) AS total, avg(amount) AS mean FROM amounts GROUP BY grp",
        )
        .await;
    assert_eq!(ran.status, "pending_review");
    assert_eq!(
        ran.report.suppressed_groups, dropped,
        "small groups dropped"
    );
    assert_eq!(ran.rows.len(), cases.len());
    for (g, what, nk, p) in cases {
        let row = ran
            .row_of(&[("grp", *g)])
            .unwrap_or_else(|| panic!("group {what} missing"));
        for column in ["total", "mean"] {
            assert_eq!(
                ran.rule_verdict("dominance", row, column),
                *nk,
                "{what}: (n, k) on {column}"
            );
            assert_eq!(
                ran.rule_verdict("p_ratio", row, column),
                *p,
                "{what}: p-ratio on {column}"
            );
            let worst = (*nk).max(*p);
            assert_eq!(ran.verdict(row, column), worst, "{what}: {column}");
            // Failing cells are suppressed in the candidate; the others are kept.
            assert_eq!(
                ran.rows[row][column].is_null(),
                worst == Fail,
                "{what}: {column} suppressed iff it fails"
            );
        }
        // Counts are not magnitudes: the dominance rules leave them alone.
        assert_eq!(ran.rule_verdict("dominance", row, "n"), Pass, "{what}: n");
        assert_eq!(ran.rule_verdict("p_ratio", row, "n"), Pass, "{what}: n");
    }
    no_values_in(&ran);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dominance_matrix_over_one_row_per_person() {
    let lab = Lab::new().await;
    let mut rows = Vec::new();
    // 1 neither: 12 equal contributions.
    persons(&mut rows, 1, &many(12, 100.0));
    // 2 (n, k) only: two of 500 and ten of 10 — top two hold 1000/1100 ≥ 0.9;
    //   the rest, 100, is 0.2 of the largest ≥ 0.1.
    persons(&mut rows, 2, &[Some(500.0), Some(500.0)]);
    persons(&mut rows, 2, &many(10, 10.0));
    // 3 both: one contributor of 10000 beside eleven of 1.
    persons(&mut rows, 3, &[Some(10000.0)]);
    persons(&mut rows, 3, &many(11, 1.0));
    // 4 a negative value: dominance undefined, review under both rules.
    persons(&mut rows, 4, &many(11, 100.0));
    persons(&mut rows, 4, &[Some(-5.0)]);
    // 5 a missing value: left out of the sum, review.
    persons(&mut rows, 5, &many(11, 100.0));
    persons(&mut rows, 5, &[None]);
    // 6 all zero: (n, k) is 0/0 (not dominated); p-ratio with a largest of 0
    //   is the remainder itself, 0 < p: fails, as ACRO.
    persons(&mut rows, 6, &many(12, 0.0));
    // 7 under the aggregation threshold: dropped before any rule sees it.
    persons(&mut rows, 7, &many(5, 100.0));
    let data = csv(lab.dir.path(), "matrix.csv", &rows);
    let grant = lab.dataset(&manifest("amounts", 0.1), &data).await;
    check_matrix(
        &lab,
        &grant,
        &[
            (1, "neither", Pass, Pass),
            (2, "(n, k) only", Fail, Pass),
            (3, "both", Fail, Fail),
            (4, "negative", Review, Review),
            (5, "missing", Review, Pass),
            (6, "all zero", Pass, Fail),
        ],
        1,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p_ratio_only_under_a_stricter_p() {
    let lab = Lab::new().await;
    let mut rows = Vec::new();
    // p = 0.2. 1 neither: 12 equal contributions.
    persons(&mut rows, 1, &many(12, 100.0));
    // 2 p-ratio only: 1000, then 16 of 10 — top two hold 1010/1160 < 0.9;
    //   the rest, 150, is 0.15 of the largest < 0.2.
    persons(&mut rows, 2, &[Some(1000.0)]);
    persons(&mut rows, 2, &many(16, 10.0));
    // 3 both.
    persons(&mut rows, 3, &[Some(10000.0)]);
    persons(&mut rows, 3, &many(11, 1.0));
    let data = csv(lab.dir.path(), "p.csv", &rows);
    let grant = lab.dataset(&manifest("amounts", 0.2), &data).await;
    check_matrix(
        &lab,
        &grant,
        &[
            (1, "neither", Pass, Pass),
            (2, "p-ratio only", Pass, Fail),
            (3, "both", Fail, Fail),
        ],
        0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_with_many_rows_dominates_through_their_sum() {
    let lab = Lab::new().await;
    let mut rows: Vec<(i64, i64, Option<f64>)> = Vec::new();
    // Group 1: person 1 has 30 rows of 100 (3000 in all), person 2 one row of
    // 100, ten more persons one row of 10 each. Per row nothing dominates (the
    // two largest rows are 200 of 3200; the rest is 30 times the largest row);
    // per person, persons 1 and 2 hold 3100/3200 and the rest is 100/3000.
    for _ in 0..30 {
        rows.push((1, 1, Some(100.0)));
    }
    rows.push((1, 2, Some(100.0)));
    for p in 3..13 {
        rows.push((1, p, Some(10.0)));
    }
    // Group 2: twelve persons with three equal rows each — no dominance.
    for p in 100..112 {
        for _ in 0..3 {
            rows.push((2, p, Some(50.0)));
        }
    }
    // Group 3: one person with many rows is still one person: dropped.
    for _ in 0..40 {
        rows.push((3, 200, Some(1.0)));
    }
    // Per row, group 1 passes both rules (what a per-row check would say).
    let g1: Vec<f64> = rows
        .iter()
        .filter(|r| r.0 == 1)
        .filter_map(|r| r.2)
        .collect();
    let mut sorted = g1.clone();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let total: f64 = g1.iter().sum();
    assert!((sorted[0] + sorted[1]) / total < 0.9);
    assert!((total - sorted[0] - sorted[1]) / sorted[0] >= 0.1);

    let data = csv(lab.dir.path(), "repeat.csv", &rows);
    let grant = lab.dataset(&manifest("amounts", 0.1), &data).await;
    let ran = lab
        .run(
            &grant,
            "SELECT grp, count(*) AS claims, sum(amount) AS total, avg(amount) AS mean FROM amounts GROUP BY grp",
        )
        .await;
    assert_eq!(ran.report.suppressed_groups, 1, "one person is not a group");
    let g1 = ran.row_of(&[("grp", 1)]).unwrap();
    let g2 = ran.row_of(&[("grp", 2)]).unwrap();
    assert_eq!(ran.rows[g1]["claims"], 41, "rows are counted as rows");
    for column in ["total", "mean"] {
        assert_eq!(ran.rule_verdict("dominance", g1, column), Fail, "{column}");
        assert_eq!(ran.rule_verdict("p_ratio", g1, column), Fail, "{column}");
        assert!(ran.rows[g1][column].is_null(), "suppressed: {column}");
        assert_eq!(ran.verdict(g2, column), Pass, "{column}");
        assert!(!ran.rows[g2][column].is_null());
    }
    no_values_in(&ran);

    // The same through a per-person subtotal written by hand: the outer SUM's
    // contributions are the subtotals, one per person.
    let ran = lab
        .run(
            &grant,
            "SELECT grp, sum(s) AS total FROM (SELECT grp, person, sum(amount) AS s FROM amounts GROUP BY grp, person) x GROUP BY grp",
        )
        .await;
    let g1 = ran.row_of(&[("grp", 1)]).unwrap();
    assert_eq!(ran.rule_verdict("dominance", g1, "total"), Fail);
    assert_eq!(ran.rule_verdict("p_ratio", g1, "total"), Fail);
}
