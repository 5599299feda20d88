//! Sketches on demand: a job runs without the differencing sketches and
//! computes them (its own, and an earlier result's by re-running that job's
//! plan) only when unit counts make a comparison possible. The property
//! test runs random workloads — WHERE bounds, groupings, exclusions of a
//! single person, repeats, inner aggregates, complementary halves — through
//! two domains over the same data, one computing every sketch eagerly, and
//! requires the same findings from both: the lazy path never skips a
//! comparison the eager one makes.

use crate::support;

use crate::support::{Lab, Ran};
use enclave::domain::JobOptions;

/// 93 persons, one row each, ages 19..=111; groups of 10, 31 and 52 (no
/// two sizes, nor one less two others, within nine of each other, so that
/// honest groupings are not candidates by their counts); threshold 10 (the
/// L3 grade's floor).
fn manifest() -> String {
    support::crafted_manifest(
        "people",
        ("按需差分草图", "sketches on demand"),
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
sensitivity = "attribute"

[[columns]]
name = "income"
type = "float64"
description = { zh = "收入", en = "Income" }
sensitivity = "sensitive"

[disclosure]
threshold = 10
frequency_threshold = 10
zeros_are_disclosive = true
max_output_rows = 10000
auto_release = false
row_level_output = false
"#,
    )
}

async fn lab(lazy: bool) -> (Lab, String) {
    let lab = Lab::with_jobs(JobOptions {
        lazy_sketches: lazy,
        // One partition: rows and inner cells come out in one order in both
        // domains, so their indices compare.
        target_partitions: 1,
        ..JobOptions::default()
    })
    .await;
    let mut csv = String::from("person,grp,age,income\n");
    for i in 1..=93i64 {
        let grp = match (i % 9, i % 3) {
            (0, _) => 1,
            (_, 1) => 2,
            _ => 3,
        };
        csv.push_str(&format!(
            "{i},{grp},{},{}\n",
            18 + i,
            30_000 + i * 137 % 5_000
        ));
    }
    let path = lab.dir.path().join("people.csv");
    std::fs::write(&path, csv).unwrap();
    let grant = lab.dataset(&manifest(), &path).await;
    (lab, grant)
}

/// A random workload of `n` queries from `seed`.
fn workload(seed: u64, n: usize) -> Vec<String> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move |bound: u64| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 33) % bound
    };
    let mut out: Vec<String> = Vec::new();
    while out.len() < n {
        let a = 19 + next(30) as i64; // 19..=48
        let q = match next(8) {
            0 => format!(
                "SELECT count(*) AS n, sum(income) AS total FROM people WHERE age >= {a} AND age <= {}",
                a + 20 + next(10) as i64
            ),
            1 => format!(
                "SELECT count(*) AS n, sum(income) AS total FROM people WHERE age >= {a} AND age <> {}",
                a + next(20) as i64
            ),
            2 => format!(
                "SELECT grp, count(*) AS n, sum(income) AS total FROM people WHERE age >= {a} \
                 GROUP BY grp ORDER BY grp"
            ),
            3 => format!(
                "SELECT grp, avg(income) AS m FROM people WHERE age >= {a} GROUP BY grp ORDER BY grp"
            ),
            4 => format!(
                "SELECT (SELECT count(*) FROM people WHERE age >= {a}) - \
                 (SELECT count(*) FROM people WHERE age >= {}) AS d",
                a + 1 + next(6) as i64
            ),
            5 => {
                let d = a + next(10) as i64;
                if next(2) == 0 {
                    format!("SELECT count(*) AS n FROM people WHERE age <= {d}")
                } else {
                    format!("SELECT count(*) AS n FROM people WHERE age > {d}")
                }
            }
            6 => "SELECT count(*) AS n FROM people".to_string(),
            _ if !out.is_empty() => out[next(out.len() as u64) as usize].clone(),
            _ => continue,
        };
        out.push(q);
    }
    out
}

/// What the differencing found on a job, with job ids as workload indices:
/// the rule's verdicts (cells and the whole result) and the pairs and
/// trackers the review packet shows.
async fn findings(lab: &Lab, ran: &Ran, ids: &[String]) -> String {
    let rule: Vec<_> = ran
        .report
        .rules
        .iter()
        .filter(|r| r.rule == "differencing")
        .collect();
    let mut text = serde_json::to_string(&rule).unwrap();
    if ran.status == "pending_review" {
        let packet = lab
            .domain
            .review_packet(&lab.steward, &ran.job_id)
            .await
            .unwrap();
        text.push_str(&normalized(
            serde_json::to_value(&packet.differencing).unwrap(),
        ));
        text.push_str(&normalized(serde_json::to_value(&packet.trackers).unwrap()));
    }
    for (i, id) in ids.iter().enumerate() {
        text = text.replace(id.as_str(), &format!("J{i}"));
    }
    text
}

/// Pairs or trackers in an order of their own: inner cells are recorded
/// in the order the query's subqueries happen to finish, so their indices
/// (and the explanations naming them) are left out.
fn normalized(list: serde_json::Value) -> String {
    fn strip(v: &mut serde_json::Value) {
        if let Some(o) = v.as_object_mut() {
            o.remove("explanation");
            if o.get("inner") == Some(&serde_json::Value::Bool(true)) {
                o.remove("row");
            }
            if o.get("other_inner") == Some(&serde_json::Value::Bool(true)) {
                o.remove("other_row");
            }
            if let Some(terms) = o.get_mut("terms").and_then(|t| t.as_array_mut()) {
                terms.iter_mut().for_each(strip);
            }
        }
    }
    let mut items: Vec<String> = list
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut v| {
            strip(&mut v);
            v.to_string()
        })
        .collect();
    items.sort();
    items.join("\n")
}

#[tokio::test]
async fn lazy_and_eager_sketching_find_the_same() {
    let mut compared = 0;
    let mut flagged = 0;
    for seed in 1..=3u64 {
        let queries = workload(seed, 18);
        let (eager, eager_grant) = lab(false).await;
        let (lazy, lazy_grant) = lab(true).await;
        let (mut eager_ids, mut lazy_ids) = (Vec::new(), Vec::new());
        for (i, sql) in queries.iter().enumerate() {
            let e = eager.run(&eager_grant, sql).await;
            let l = lazy.run(&lazy_grant, sql).await;
            eager_ids.push(e.job_id.clone());
            lazy_ids.push(l.job_id.clone());
            let (fe, fl) = (
                findings(&eager, &e, &eager_ids).await,
                findings(&lazy, &l, &lazy_ids).await,
            );
            assert_eq!(fe, fl, "seed {seed}, query {i}: {sql}");
            assert_eq!(e.status, l.status, "seed {seed}, query {i}: {sql}");
            compared += 1;
            flagged += usize::from(fe.contains("\"review\""));
        }
    }
    assert_eq!(compared, 54);
    // The workloads hold attacks: the comparison is not vacuous.
    assert!(flagged >= 5, "only {flagged} results flagged");
}

/// The `differencing_sketched` flag of `job`'s check event.
async fn sketched(lab: &Lab, job: &str) -> bool {
    let events = lab
        .domain
        .audit_events(
            &lab.admin,
            &enclave::audit::AuditFilter {
                action: Some("job.check".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let e = events
        .iter()
        .find(|e| e.object == format!("job:{job}"))
        .expect("the job's check event");
    e.details["differencing_sketched"] == true
}

#[tokio::test]
async fn repeats_and_other_aggregates_of_the_same_groups_cost_no_sketch() {
    let (lab, grant) = lab(true).await;
    let groups = "FROM people GROUP BY grp ORDER BY grp";
    let first = lab
        .run(&grant, &format!("SELECT grp, count(*) AS n {groups}"))
        .await;
    let again = lab
        .run(&grant, &format!("SELECT grp, count(*) AS n {groups}"))
        .await;
    let other = lab
        .run(&grant, &format!("SELECT grp, avg(income) AS m {groups}"))
        .await;
    for r in [&first, &again, &other] {
        assert!(!sketched(&lab, &r.job_id).await, "{}", r.job_id);
    }
    // One person fewer in each group: the counts make it a candidate, the
    // sketches are computed (this job's, and the first job's by re-running
    // it), and the pair is found.
    let fewer = lab
        .run(
            &grant,
            "SELECT grp, count(*) AS n FROM people WHERE age <> 22 GROUP BY grp ORDER BY grp",
        )
        .await;
    assert!(sketched(&lab, &fewer.job_id).await);
    assert_eq!(fewer.status, "pending_review");
    let packet = lab
        .domain
        .review_packet(&lab.steward, &fewer.job_id)
        .await
        .unwrap();
    assert!(
        packet
            .differencing
            .iter()
            .any(|p| p.other_job_id == first.job_id && p.units_differing == 1),
        "{:?}",
        packet.differencing
    );
    let replays = lab
        .domain
        .audit_events(
            &lab.admin,
            &enclave::audit::AuditFilter {
                action: Some("job.sketch".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // Each earlier result is sketched once, however many cells it has.
    assert!(!replays.is_empty());
    let mut objects: Vec<&str> = replays.iter().map(|e| e.object.as_str()).collect();
    objects.sort_unstable();
    let n = objects.len();
    objects.dedup();
    assert_eq!(objects.len(), n, "{objects:?}");
}
