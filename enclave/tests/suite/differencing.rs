//! Differencing protection through the real job path: each result's rows are
//! compared with the rows of every earlier result of the same grant or
//! researcher that is released or may be (checked, pending review).
//!
//! The classic pairs — a count with and without one person (an added
//! exclusion), a WHERE bound moved past one person, a group that loses one
//! person to an extra condition — go to review with the pair shown side by
//! side to the reviewer; honest, overlapping analyses (bounds ten persons
//! apart, an exact repeat, another statistic over the same persons) do not.
//!
//! Data: 60 persons, one row each, ages 19..=78 (one person per age),
//! three groups of 20; person 7 (group 1) is the only income of 90,000 or
//! more. Threshold 10: rows whose persons differ by 1..=9 are reviewed.

use crate::support;

use std::time::Duration;

use crate::support::{Lab, Ran};
use enclave::disclosure::Verdict::{Pass, Review};
use enclave::domain::ReviewDecision;

/// A dataset `id` of persons: group `grp`, an attribute `attr`, a sensitive
/// amount `value`, privacy unit `person`; threshold 10.
fn manifest(id: &str, attr: &str, value: &str) -> String {
    support::crafted_manifest(
        id,
        ("差分攻击防护", "differencing protection"),
        &format!(
            r#"
[[columns]]
name = "grp"
type = "int64"
description = {{ zh = "组", en = "Group" }}
sensitivity = "attribute"

[[columns]]
name = "{attr}"
type = "int64"
description = {{ zh = "属性", en = "Attribute" }}
sensitivity = "attribute"

[[columns]]
name = "{value}"
type = "float64"
description = {{ zh = "金额", en = "Amount" }}
sensitivity = "sensitive"

[disclosure]
threshold = 10
frequency_threshold = 10
zeros_are_disclosive = true
max_output_rows = 10000
auto_release = false
row_level_output = false
"#
        ),
    )
}

async fn lab() -> (Lab, String) {
    let lab = Lab::new().await;
    let mut csv = String::from("person,grp,age,income\n");
    for i in 1..=60i64 {
        let income = if i == 7 { 95_000 } else { 30_000 + i * 100 };
        csv.push_str(&format!("{i},{},{},{income}\n", (i - 1) % 3 + 1, 18 + i));
    }
    let path = lab.dir.path().join("people.csv");
    std::fs::write(&path, csv).unwrap();
    let grant = lab
        .dataset(&manifest("people", "age", "income"), &path)
        .await;
    (lab, grant)
}

/// The differencing verdict on every value cell of `row`.
fn differencing(ran: &Ran, row: usize, columns: &[&str]) -> Vec<enclave::disclosure::Verdict> {
    columns
        .iter()
        .map(|c| ran.rule_verdict("differencing", row, c))
        .collect()
}

const WHOLE: &[&str] = &["n", "total"];

fn totals(filter: &str) -> String {
    format!("SELECT count(*) AS n, sum(income) AS total FROM people WHERE {filter}")
}

#[tokio::test]
async fn the_classic_pairs_go_to_review() {
    let (lab, grant) = lab().await;
    // 49 persons (ages 30..=78).
    let base = lab.run(&grant, &totals("age >= 30")).await;
    assert_eq!(differencing(&base, 0, WHOLE), [Pass, Pass]);

    // An added exclusion: the same persons but one (the only one aged 40;
    // the identifier itself cannot be filtered on).
    let excluded = lab.run(&grant, &totals("age >= 30 AND age <> 40")).await;
    assert_eq!(excluded.status, "pending_review");
    assert_eq!(differencing(&excluded, 0, WHOLE), [Review, Review]);

    // A bound moved past one person (the only one aged 30).
    let moved = lab.run(&grant, &totals("age >= 31")).await;
    assert_eq!(differencing(&moved, 0, WHOLE), [Review, Review]);

    // With and without one person inside a group: person 7 drops out of
    // group 1 only; groups 2 and 3 are the same persons as before.
    let groups = "SELECT grp, count(*) AS n, sum(income) AS total FROM people";
    let all = lab.run(&grant, &format!("{groups} GROUP BY grp")).await;
    for g in 1..=3 {
        let row = all.row_of(&[("grp", g)]).unwrap();
        assert_eq!(differencing(&all, row, WHOLE), [Pass, Pass], "group {g}");
    }
    let fewer = lab
        .run(
            &grant,
            &format!("{groups} WHERE income < 90000 GROUP BY grp"),
        )
        .await;
    for (g, want) in [(1, Review), (2, Pass), (3, Pass)] {
        let row = fewer.row_of(&[("grp", g)]).unwrap();
        assert_eq!(differencing(&fewer, row, WHOLE), [want, want], "group {g}");
    }

    // Reasons say neither which result nor by how many persons.
    for ran in [&excluded, &moved, &fewer] {
        for r in ran.reasons() {
            assert!(!r.contains(&base.job_id) && !r.contains(" 1 "), "{r}");
        }
    }

    // The reviewer sees each pair side by side.
    let packet = lab
        .domain
        .review_packet(&lab.steward, &excluded.job_id)
        .await
        .unwrap();
    assert_eq!(packet.differencing.len(), 1);
    let pair = &packet.differencing[0];
    assert_eq!(
        (pair.row, pair.other_job_id.as_str(), pair.other_row),
        (0, base.job_id.as_str(), 0)
    );
    assert_eq!((pair.units_differing, pair.records_differing), (1, 1));
    // The packet says the arithmetic in words; the check report's reasons do not.
    assert!(
        pair.explanation.contains("1 person") && pair.explanation.contains(&base.job_id),
        "{}",
        pair.explanation
    );
    assert_eq!(pair.other_cells["n"], 49);
    assert_eq!(pair.cells["n"], 48);
    assert!(pair.other_query.contains("age >= 30"));
    // The moved bound differs from both earlier results: by one and by two persons.
    let packet = lab
        .domain
        .review_packet(&lab.admin, &moved.job_id)
        .await
        .unwrap();
    let mut found: Vec<(String, u64)> = packet
        .differencing
        .iter()
        .map(|p| (p.other_job_id.clone(), p.units_differing))
        .collect();
    found.sort();
    let mut want = vec![(base.job_id.clone(), 1), (excluded.job_id.clone(), 2)];
    want.sort();
    assert_eq!(found, want);
    // The researcher never sees a packet: authorization refuses before the
    // separation-of-duties rule is asked.
    let e = lab
        .domain
        .review_packet(&lab.researcher, &moved.job_id)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "forbidden");
}

#[tokio::test]
async fn honest_overlapping_analyses_pass() {
    let (lab, grant) = lab().await;
    let runs = [
        totals("age >= 30"),
        // Ten persons apart: not fewer than the threshold.
        totals("age >= 40"),
        // Eleven apart from the second. (At 50 it would be a tracker with the
        // last query: persons aged 50 or more minus groups 2 and 3 aged 49 or
        // more is group 1's nine persons aged 50 or more.)
        totals("age >= 51"),
        // An exact repeat, and another statistic over the same persons: nothing new.
        totals("age >= 30"),
        "SELECT count(*) AS n, avg(income) AS total FROM people WHERE age >= 30".into(),
        "SELECT grp, count(*) AS n, sum(income) AS total FROM people GROUP BY grp".into(),
        // Each group ten persons apart from the one above.
        "SELECT grp, count(*) AS n, sum(income) AS total FROM people WHERE age >= 49 GROUP BY grp"
            .into(),
    ];
    for sql in &runs {
        let ran = lab.run(&grant, sql).await;
        for row in 0..ran.report.rows as usize {
            assert_eq!(differencing(&ran, row, WHOLE), [Pass, Pass], "{sql}");
        }
        assert!(ran.whole_result().iter().all(|(r, _)| *r != "differencing"));
    }
}

#[tokio::test]
async fn rejected_results_are_not_compared_but_other_grants_of_the_researcher_are() {
    let (lab, grant) = lab().await;
    let first = lab.run(&grant, &totals("age >= 30")).await;
    lab.domain
        .review_packet(&lab.steward, &first.job_id)
        .await
        .unwrap();
    lab.domain
        .review_job(
            &lab.steward,
            &first.job_id,
            ReviewDecision::Reject,
            "not for release",
        )
        .await
        .unwrap();
    // The rejected result was never seen: one person fewer passes.
    let second = lab.run(&grant, &totals("age >= 31")).await;
    assert_eq!(differencing(&second, 0, WHOLE), [Pass, Pass]);

    // Under another grant of the same researcher, one person fewer again.
    let other_grant = lab.grant("people").await;
    let third = lab.run(&other_grant, &totals("age >= 32")).await;
    assert_eq!(differencing(&third, 0, WHOLE), [Review, Review]);
}

#[tokio::test]
async fn two_jobs_checked_at_once_cannot_both_slip_through() {
    let (lab, grant) = lab().await;
    let mut ids = Vec::new();
    for filter in ["age >= 30", "age >= 30 AND age <> 55"] {
        let job = lab
            .domain
            .submit_job(&lab.researcher, &grant, &totals(filter))
            .await
            .unwrap();
        ids.push(job.id);
    }
    let mut flagged = 0;
    for id in &ids {
        let done = lab
            .domain
            .wait_job(&lab.admin, id, Duration::from_secs(120))
            .await
            .unwrap()
            .full()
            .unwrap();
        let report: enclave::disclosure::CheckReport =
            serde_json::from_value(done.job.checks.unwrap()).unwrap();
        let rule = report
            .rules
            .iter()
            .find(|r| r.rule == "differencing")
            .unwrap();
        flagged += usize::from(rule.verdict == Review);
    }
    assert_eq!(flagged, 1, "exactly the later-checked job is reviewed");
}

#[tokio::test]
async fn a_released_pair_carries_the_verdict_in_its_certificate() {
    let (lab, grant) = lab().await;
    lab.run(&grant, &totals("age >= 30")).await;
    let second = lab.run(&grant, &totals("age >= 31")).await;
    // The review queue lists the job with its verdicts.
    let queue = lab.domain.review_queue(&lab.steward).await.unwrap();
    let queued = queue.iter().find(|j| j.id == second.job_id).unwrap();
    assert!(
        queued
            .checks
            .as_ref()
            .unwrap()
            .to_string()
            .contains("\"differencing\"")
    );
    for who in [&lab.steward, &lab.admin] {
        lab.domain.review_packet(who, &second.job_id).await.unwrap();
        let view = lab
            .domain
            .review_job(who, &second.job_id, ReviewDecision::Approve, "")
            .await
            .unwrap();
        if view.job.status.as_str() == "released" {
            break;
        }
    }
    let job = lab.domain.job(&second.job_id).await.unwrap();
    assert_eq!(job.status.as_str(), "released");
    let release = lab
        .domain
        .releases_for(&lab.researcher)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.job_id == second.job_id)
        .unwrap();
    let cert: serde_json::Value = serde_json::from_str(&release.certificate_json).unwrap();
    let rules = cert["checks"]["rules"].as_array().unwrap();
    let rule = rules.iter().find(|r| r["rule"] == "differencing").unwrap();
    assert_eq!(rule["verdict"], "review");
    assert_eq!(rule["cells"].as_array().unwrap().len(), 2);
}

/// Persons with several records: a unit whose records differ counts as
/// differing even when the same persons are behind both rows; the
/// pre-aggregated path (`count`, `sum`) and the distinct path (`stddev`)
/// sketch the same persons identically.
#[tokio::test]
async fn records_per_person_count_and_every_path_agrees() {
    let lab = Lab::new().await;
    // 40 persons with three claims each, on days 2, 5 and 8 — but person
    // 5's first claim is on day 1.
    let mut csv = String::from("person,grp,day,amount\n");
    for p in 1..=40i64 {
        for k in 0..3i64 {
            let day = if p == 5 && k == 0 { 1 } else { 3 * k + 2 };
            csv.push_str(&format!("{p},{},{day},{}\n", p % 2 + 1, 100 + p + k));
        }
    }
    let path = lab.dir.path().join("claims.csv");
    std::fs::write(&path, csv).unwrap();
    let grant = lab
        .dataset(&manifest("claims", "day", "amount"), &path)
        .await;
    let q = |agg: &str, day: i64| {
        format!("SELECT count(*) AS n, {agg}(amount) AS total FROM claims WHERE day >= {day}")
    };
    let all = lab.run(&grant, &q("sum", 1)).await;
    assert_eq!(differencing(&all, 0, WHOLE), [Pass, Pass]);
    // The same 40 persons, one claim fewer for one of them.
    let fewer = lab.run(&grant, &q("sum", 2)).await;
    assert_eq!(differencing(&fewer, 0, WHOLE), [Review, Review]);
    let packet = lab
        .domain
        .review_packet(&lab.steward, &fewer.job_id)
        .await
        .unwrap();
    assert_eq!(
        packet
            .differencing
            .iter()
            .map(|p| (p.units_differing, p.records_differing))
            .collect::<Vec<_>>(),
        [(1, 1)]
    );
    // The distinct path over the same claims: only the pair with the first.
    let spread = lab.run(&grant, &q("stddev", 2)).await;
    let packet = lab
        .domain
        .review_packet(&lab.steward, &spread.job_id)
        .await
        .unwrap();
    let others: Vec<&str> = packet
        .differencing
        .iter()
        .map(|p| p.other_job_id.as_str())
        .collect();
    assert_eq!(others, [all.job_id.as_str()]);
}

/// The differencing verdicts on the result as a whole.
fn whole(ran: &Ran) -> Vec<enclave::disclosure::Verdict> {
    ran.whole_result()
        .into_iter()
        .filter(|(r, _)| *r == "differencing")
        .map(|(_, v)| v)
        .collect()
}

/// Class 3 inside one query, by a fresh researcher with no earlier result:
/// two aggregates whose persons differ by one, combined by arithmetic
/// through scalar subqueries, CTEs, a join of derived tables or a UNION.
/// Each aggregate inside the query is sketched (an inner cell) and the
/// result goes to review as a whole, with the pair in the packet.
#[tokio::test]
async fn differences_inside_one_query_go_to_review() {
    let (lab, grant) = lab().await;
    let attacks = [
        // Everyone minus everyone but the person aged 40.
        "SELECT (SELECT sum(income) FROM people) - (SELECT sum(income) FROM people WHERE age <> 40) AS d",
        "WITH a AS (SELECT sum(income) AS s FROM people), b AS (SELECT sum(income) AS s FROM people WHERE age <> 40) \
         SELECT a.s - b.s AS d FROM a CROSS JOIN b",
        "SELECT a.s - b.s AS d FROM (SELECT sum(income) AS s FROM people) a \
         JOIN (SELECT sum(income) AS s FROM people WHERE age <> 40) b ON true",
        "SELECT count(*) AS n FROM people WHERE income > (SELECT avg(income) FROM people WHERE age <> 40) \
         - (SELECT avg(income) FROM people) + 30000",
    ];
    for sql in attacks {
        let ran = lab.run(&grant, sql).await;
        assert_eq!(ran.status, "pending_review", "{sql}");
        assert_eq!(whole(&ran), [Review], "{sql}: {:?}", ran.report);
        for r in ran.reasons() {
            assert!(!r.contains(" 1 ") && !r.contains("95000"), "{r}");
        }
        let packet = lab
            .domain
            .review_packet(&lab.steward, &ran.job_id)
            .await
            .unwrap();
        let pair = packet
            .differencing
            .iter()
            .find(|p| p.inner && p.other_inner && p.other_job_id == ran.job_id)
            .unwrap_or_else(|| panic!("{sql}: {:?}", packet.differencing));
        assert_eq!(pair.units_differing, 1);
        assert!(
            pair.explanation.contains("1 person") && pair.explanation.contains("sum(")
                || pair.explanation.contains("avg("),
            "{}",
            pair.explanation
        );
    }
}

/// A busy researcher: an inner aggregate against an earlier result's row.
#[tokio::test]
async fn an_inner_aggregate_is_compared_with_earlier_results() {
    let (lab, grant) = lab().await;
    let all = lab
        .run(&grant, "SELECT sum(income) AS total FROM people")
        .await;
    assert_eq!(differencing(&all, 0, &["total"]), [Pass]);
    let ran = lab
        .run(
            &grant,
            "SELECT (SELECT sum(income) FROM people WHERE age <> 40) * 1 AS total",
        )
        .await;
    assert_eq!(whole(&ran), [Review]);
    let packet = lab
        .domain
        .review_packet(&lab.steward, &ran.job_id)
        .await
        .unwrap();
    assert_eq!(packet.differencing.len(), 1, "{:?}", packet.differencing);
    let pair = &packet.differencing[0];
    assert_eq!(
        (pair.inner, pair.other_job_id.as_str(), pair.other_inner),
        (true, all.job_id.as_str(), false)
    );
    assert!(
        pair.explanation.contains(&all.job_id),
        "{}",
        pair.explanation
    );
}

/// Honest queries with a subquery: an inner aggregate ten or more persons
/// from every other cell passes.
#[tokio::test]
async fn honest_subqueries_pass() {
    let (lab, grant) = lab().await;
    for sql in [
        "SELECT count(*) AS n, avg(income) AS total FROM people WHERE income >= (SELECT avg(income) FROM people)",
        "WITH g AS (SELECT grp, count(*) AS n FROM people GROUP BY grp) SELECT grp, n FROM g",
    ] {
        let ran = lab.run(&grant, sql).await;
        assert!(whole(&ran).is_empty(), "{sql}: {:?}", ran.report);
        for row in 0..ran.report.rows as usize {
            assert_eq!(differencing(&ran, row, &["n"]), [Pass], "{sql}");
        }
    }
}

/// An aggregation over other aggregations combines cells into values no
/// sketch describes: refused at plan time.
#[tokio::test]
async fn aggregates_over_aggregates_are_refused() {
    let (lab, grant) = lab().await;
    for sql in [
        "SELECT sum(s) AS total FROM (SELECT grp, sum(income) AS s FROM people WHERE age <> 40 GROUP BY grp) x",
        "SELECT max(s) AS m FROM (SELECT (SELECT sum(income) FROM people) AS s) x",
    ] {
        let e = lab
            .domain
            .submit_job(&lab.researcher, &grant, sql)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "aggregate_over_aggregates", "{sql}");
    }
    // Per-person totals first, then the threshold: still fine.
    let ran = lab
        .run(
            &grant,
            "SELECT grp, sum(s) AS total FROM (SELECT grp, person, sum(income) AS s FROM people GROUP BY grp, person) x GROUP BY grp",
        )
        .await;
    assert_eq!(ran.report.rows, 3);
}

/// Three results that combine to one person: everyone, born on or before a
/// date, born after the next one (the person in between is in neither).
/// No pair of them is close; A − B − C is one person.
#[tokio::test]
async fn three_term_trackers_across_results_go_to_review() {
    let (lab, grant) = lab().await;
    let everyone = lab.run(&grant, &totals("age >= 19")).await;
    let younger = lab.run(&grant, &totals("age <= 40")).await;
    assert_eq!(differencing(&younger, 0, WHOLE), [Pass, Pass]);
    let older = lab.run(&grant, &totals("age > 41")).await;
    assert_eq!(differencing(&older, 0, WHOLE), [Review, Review]);
    let packet = lab
        .domain
        .review_packet(&lab.steward, &older.job_id)
        .await
        .unwrap();
    assert!(packet.differencing.is_empty(), "{:?}", packet.differencing);
    assert_eq!(packet.trackers.len(), 1);
    let t = &packet.trackers[0];
    assert_eq!(t.units_differing, 1);
    let jobs: Vec<&str> = t
        .terms
        .iter()
        .map(|c| c["job_id"].as_str().unwrap())
        .collect();
    assert_eq!(jobs[0], everyone.job_id);
    assert!(jobs.contains(&younger.job_id.as_str()) && jobs.contains(&older.job_id.as_str()));
    assert!(
        t.explanation.contains("minus") && t.explanation.contains("1 person"),
        "{}",
        t.explanation
    );
    // The three cells, side by side.
    assert_eq!(t.terms[0]["cells"]["n"], 60);
}

/// The same tracker inside one result, by a fresh researcher: a UNION of
/// three aggregates (each an inner cell).
#[tokio::test]
async fn three_term_trackers_inside_one_result_go_to_review() {
    let (lab, grant) = lab().await;
    let ran = lab
        .run(
            &grant,
            "SELECT 'all' AS band, count(*) AS n, sum(income) AS total FROM people \
             UNION ALL SELECT 'young', count(*), sum(income) FROM people WHERE age <= 40 \
             UNION ALL SELECT 'old', count(*), sum(income) FROM people WHERE age > 41",
        )
        .await;
    assert_eq!(whole(&ran), [Review]);
    let packet = lab
        .domain
        .review_packet(&lab.steward, &ran.job_id)
        .await
        .unwrap();
    assert_eq!(packet.trackers.len(), 1, "{:?}", packet.trackers);
    assert!(
        packet.trackers[0]
            .terms
            .iter()
            .all(|c| c["job_id"] == ran.job_id.as_str() && c["inner"] == true)
    );
}

/// A binary search over one person's income (the plan the same, the bound
/// moving): from the fifth set of constants every job is flagged as a
/// campaign, and from the tenth a suspension request is in the audit log.
#[tokio::test]
async fn a_binary_search_is_an_oracle_campaign() {
    let (lab, grant) = lab().await;
    // An honest neighbour: another shape, never counted with the search.
    lab.run(&grant, &totals("age >= 30")).await;
    let (mut lo, mut hi) = (30_000i64, 200_000i64);
    let mut flagged = Vec::new();
    for step in 0..10 {
        let mid = (lo + hi) / 2;
        let sql = format!(
            "SELECT count(*) AS n, avg(income) AS total FROM people WHERE income > {mid} OR grp = 2"
        );
        let ran = lab.run(&grant, &sql).await;
        let campaign = ran
            .whole_result()
            .into_iter()
            .any(|(r, v)| r == "campaign" && v == Review);
        flagged.push(campaign);
        if step < 4 {
            assert!(!campaign, "step {step}");
        }
        // The searcher reads n (21 or 20) and halves the bound.
        let n = ran.rows.first().and_then(|r| r["n"].as_i64()).unwrap_or(0);
        if n > 20 {
            lo = mid
        } else {
            hi = mid
        }
        if step == 9 {
            let packet = lab
                .domain
                .review_packet(&lab.steward, &ran.job_id)
                .await
                .unwrap();
            let c = packet.campaign.expect("the campaign in the packet");
            assert_eq!((c.jobs.len(), c.variants), (10, 10));
        }
    }
    assert_eq!(
        flagged,
        [
            false, false, false, false, true, true, true, true, true, true
        ]
    );
    let events = lab
        .domain
        .audit_events(
            &lab.admin,
            &enclave::audit::AuditFilter {
                action: Some("grant.suspension_requested".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].details["variants"], 10);
    assert_eq!(events[0].object, format!("grant:{grant}"));
    // Nothing was suspended.
    let g = lab.domain.grant(&grant).await.unwrap();
    assert!(g.check_usable(lab.domain.now()).is_ok());
}
