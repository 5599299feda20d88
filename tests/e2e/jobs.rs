//! The SQL path through the real binary: jobs, thresholds, output review
//! (blind, two reviewers from L3), signed releases and their verification,
//! and research queries that equal plain DataFusion on the plaintext data.

use crate::common;

use crate::common::{
    People, TestServer, add_people, grant_on, prepared_data_dir, run, run_job, stdout,
};
use datafusion::prelude::{CsvReadOptions, SessionContext};
use serde_json::{Value, json};

const SI_COLUMNS: &[&str] = &[
    "person_id",
    "sex",
    "birth_date",
    "district",
    "employer_credit_code",
    "contribution_base",
    "months_contributed",
];

/// Plain DataFusion over the generated plaintext CSV, rows as sorted text.
fn reference(csv: &std::path::Path, sql: &str) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = SessionContext::new();
        ctx.register_csv(
            "social_insurance",
            csv.to_str().unwrap(),
            CsvReadOptions::new(),
        )
        .await
        .unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let mut rows = Vec::new();
        for b in &batches {
            for r in 0..b.num_rows() {
                let cells: Vec<String> = (0..b.num_columns())
                    .map(|c| {
                        normalise(
                            &datafusion::arrow::util::display::array_value_to_string(
                                b.column(c),
                                r,
                            )
                            .unwrap(),
                        )
                    })
                    .collect();
                rows.push(cells.join("|"));
            }
        }
        rows.sort();
        rows
    })
}

/// Numbers to 4 decimals so float formatting differences do not matter.
fn normalise(cell: &str) -> String {
    match cell.parse::<f64>() {
        Ok(f) if cell.contains('.') || cell.contains('e') => format!("{f:.4}"),
        _ => cell.to_string(),
    }
}

fn csv_rows(csv: &str) -> Vec<String> {
    let mut rows: Vec<String> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(normalise).collect::<Vec<_>>().join("|"))
        .collect();
    rows.sort();
    rows
}

fn review_all(server: &TestServer, p: &People, job: &str) -> Value {
    common::vote_ok(server, &p.steward, job, &json!({ "decision": "approve" }));
    common::vote_ok(server, &p.admin, job, &json!({ "decision": "approve" }))
}

#[test]
fn queries_are_checked_reviewed_blind_and_released_with_a_certificate() {
    let dir = prepared_data_dir(2000, &["social_insurance"]);
    let data = dir.path().join("data");
    let csv = dir.path().join("samples/social_insurance.csv");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let grant = grant_on(
        &server,
        &p,
        &[("social_insurance", SI_COLUMNS)],
        "invisible",
    );
    let r = p.researcher.as_str();

    let sql = "SELECT district, sex, count(*) AS n, avg(contribution_base) AS mean_base \
               FROM social_insurance GROUP BY district, sex ORDER BY district, sex";
    let own = run_job(&server, r, &grant, sql);
    let id = own["id"].as_str().unwrap().to_string();
    // L3: never auto-released. The researcher sees the state and the plan:
    // no value, and no count, hash or verdict the data decided.
    assert_eq!(own["status"], "pending_review", "{own}");
    assert!(own.get("result").is_none());
    for field in common::WITHHELD_FROM_REQUESTER {
        assert!(
            own.get(field).is_none(),
            "the requester sees {field}: {own}"
        );
    }
    assert!(own["result_rows"].is_null(), "{own}");
    let secs = own["elapsed_seconds"].as_f64().unwrap();
    assert!([1.0, 10.0, 60.0].contains(&secs), "coarse time: {own}");
    // Its reviewers see the stored record.
    let job = common::job_as(&server, &p.steward, &id);
    assert!(job["rows_scanned"].as_u64().unwrap() >= 2000, "{job}");
    assert_eq!(job["checks"]["verdict"], "pass", "{job}");
    let (status, _) = server.call("GET", &format!("/api/jobs/{id}/review"), Some(r), None);
    assert_eq!(status, 403, "the requester cannot open the review");

    // Blind double review.
    let queue = server.expect(200, "GET", "/api/reviews", Some(&p.steward), None);
    assert!(
        queue
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == id.as_str())
    );
    let packet = server.expect(
        200,
        "GET",
        &format!("/api/jobs/{id}/review"),
        Some(&p.steward),
        None,
    );
    assert!(packet["votes"].is_null(), "no votes shown before voting");
    assert_eq!(packet["approvals_required"], 2);
    assert!(!packet["result"].as_array().unwrap().is_empty());
    assert!(
        packet["job"]["plan_summary"]
            .as_str()
            .unwrap()
            .contains("Aggregate")
    );
    let after = common::vote_ok(&server, &p.steward, &id, &json!({ "decision": "approve" }));
    assert_eq!(after["status"], "pending_review");
    let admin_view = server.expect(
        200,
        "GET",
        &format!("/api/jobs/{id}/review"),
        Some(&p.admin),
        None,
    );
    assert!(
        admin_view["votes"].is_null(),
        "the second reviewer does not see the first vote"
    );
    let again = server.call(
        "POST",
        &format!("/api/jobs/{id}/review"),
        Some(&p.steward),
        Some(&json!({ "decision": "approve" })),
    );
    assert_eq!(again.0, 409, "one vote per reviewer");
    let released = common::vote_ok(
        &server,
        &p.admin,
        &id,
        &json!({ "decision": "approve", "comment": "检查通过" }),
    );
    assert_eq!(released["status"], "released", "{released}");
    let release_id = released["release_id"].as_str().unwrap().to_string();
    let packet = server.expect(
        200,
        "GET",
        &format!("/api/jobs/{id}/review"),
        Some(&p.steward),
        None,
    );
    assert_eq!(
        packet["votes"].as_array().unwrap().len(),
        2,
        "votes visible once over"
    );

    // Download: equals plain DataFusion minus groups under 10 persons.
    let file = server
        .client()
        .get(server.url(&format!("/api/releases/{release_id}/result?format=csv")))
        .bearer_auth(r)
        .send()
        .unwrap();
    assert_eq!(file.status().as_u16(), 200);
    assert_eq!(
        file.headers()["x-anyu-certificate"],
        format!("/api/releases/{release_id}/certificate").as_str()
    );
    let body = file.text().unwrap();
    let expected = reference(
        &csv,
        "SELECT district, sex, count(*) AS n, avg(contribution_base) AS mean_base FROM social_insurance \
         GROUP BY district, sex HAVING count(DISTINCT person_id) >= 10",
    );
    assert!(expected.len() >= 10, "{expected:?}");
    assert_eq!(csv_rows(&body), expected);
    assert!(!body.contains("440"), "no identifier in the release");

    // The certificate verifies with each format; a changed file does not.
    let cert = server
        .client()
        .get(server.url(&format!("/api/releases/{release_id}/certificate")))
        .bearer_auth(r)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let cert_json: Value = serde_json::from_str(&cert).unwrap();
    assert_eq!(cert_json["query"]["text"], sql);
    assert_eq!(cert_json["datasets"][0]["dataset_id"], "social_insurance");
    assert_eq!(cert_json["reviewers"].as_array().unwrap().len(), 2);
    assert!(
        cert_json["citation"]
            .as_str()
            .unwrap()
            .contains("深圳市社会保险基金管理局")
    );
    assert_eq!(cert_json["checks"]["verdict"], "pass");
    let cert_path = dir.path().join("cert.json");
    std::fs::write(&cert_path, &cert).unwrap();
    for format in ["csv", "parquet", "arrow", "json"] {
        let bytes = server
            .client()
            .get(server.url(&format!(
                "/api/releases/{release_id}/result?format={format}"
            )))
            .bearer_auth(r)
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        let path = dir.path().join(format!("result.{format}"));
        std::fs::write(&path, &bytes).unwrap();
        let ok = stdout(&run(
            &data,
            &[
                "verify-release",
                path.to_str().unwrap(),
                cert_path.to_str().unwrap(),
            ],
            true,
        ));
        assert!(ok.contains("release OK"), "{format}: {ok}");
    }
    let tampered = dir.path().join("tampered.csv");
    std::fs::write(&tampered, body.replacen('1', "2", 1)).unwrap();
    run(
        &data,
        &[
            "verify-release",
            tampered.to_str().unwrap(),
            cert_path.to_str().unwrap(),
        ],
        false,
    );
    let forged = dir.path().join("forged.json");
    std::fs::write(&forged, cert.replace("\"rows\": ", "\"rows\": 1")).unwrap();
    run(
        &data,
        &[
            "verify-release",
            dir.path().join("result.csv").to_str().unwrap(),
            forged.to_str().unwrap(),
        ],
        false,
    );

    // Budgets are visible on the grant.
    let g = server.expect(200, "GET", &format!("/api/grants/{grant}"), Some(r), None);
    assert_eq!(g["usage"]["jobs"], 1);
    assert!(g["usage"]["released_rows"].as_u64().unwrap() > 0);

    // A rejection needs a reason and ends the job.
    let job = run_job(
        &server,
        r,
        &grant,
        "SELECT sex, count(*) AS n FROM social_insurance GROUP BY sex",
    );
    let id = job["id"].as_str().unwrap();
    let (status, body) = server.call(
        "POST",
        &format!("/api/jobs/{id}/review"),
        Some(&p.steward),
        Some(&json!({ "decision": "reject" })),
    );
    assert_eq!(status, 400, "{body}");
    // A reason outside the list, an approval with a note, an overlong note: refused.
    for bad in [
        json!({ "decision": "reject", "comment": "分组过细，请合并", "reason": "because" }),
        json!({ "decision": "approve", "note_to_researcher": "好" }),
        json!({ "decision": "reject", "comment": "分组过细，请合并", "note_to_researcher": "长".repeat(501) }),
    ] {
        let (status, body) = common::vote(&server, &p.steward, id, &bad);
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let rejected = common::vote_ok(
        &server,
        &p.steward,
        id,
        &json!({
            "decision": "reject",
            "comment": "男性组 n 值与上一结果相差过小",
            "reason": "disclosure_risk",
            "note_to_researcher": "请把性别与区合并后再提交",
        }),
    );
    assert_eq!(rejected["status"], "rejected");
    // The researcher reads why, in words, and the note addressed to them;
    // not the reviewers' comment, and not who refused.
    let seen = common::job_as(&server, r, id);
    assert_eq!(seen["error_code"], "rejected_by_reviewer", "{seen}");
    assert_eq!(
        seen["error_message"],
        "an output reviewer refused the release: the result could single out persons \
         (small, dominated or identifying cells); the reviewer's note: 请把性别与区合并后再提交",
        "{seen}"
    );
    let text = seen.to_string();
    assert!(
        !text.contains("上一结果") && !text.contains("steward"),
        "{text}"
    );

    // Every step is in the audit log, which verifies.
    let events = server.expect(
        200,
        "GET",
        "/api/audit/events?action=job.&limit=1000",
        Some(&p.auditor),
        None,
    );
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "job.submit",
        "job.start",
        "job.check",
        "job.review",
        "job.release",
        "job.reject",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let check = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "job.check")
        .unwrap();
    assert_eq!(check["details"]["next"], "pending_review", "{check}");
    let downloads = server.expect(
        200,
        "GET",
        "/api/audit/events?action=release.download&limit=100",
        Some(&p.auditor),
        None,
    );
    assert_eq!(downloads.as_array().unwrap().len(), 5);
    server.stop();
    run(&data, &["audit", "verify"], true);
}

#[test]
fn research_queries_equal_the_reference() {
    let dir = prepared_data_dir(3000, &["social_insurance"]);
    let data = dir.path().join("data");
    let csv = dir.path().join("samples/social_insurance.csv");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let grant = grant_on(
        &server,
        &p,
        &[("social_insurance", SI_COLUMNS)],
        "invisible",
    );
    let r = p.researcher.as_str();
    for (sql, reference_sql) in [
        (
            "SELECT district, count(DISTINCT person_id) AS persons FROM social_insurance GROUP BY district",
            "SELECT district, count(DISTINCT person_id) AS persons FROM social_insurance GROUP BY district HAVING count(DISTINCT person_id) >= 10",
        ),
        (
            "SELECT sex, approx_percentile_cont(contribution_base, 0.5) AS p50, stddev(contribution_base) AS sd FROM social_insurance GROUP BY sex",
            "SELECT sex, approx_percentile_cont(contribution_base, 0.5) AS p50, stddev(contribution_base) AS sd FROM social_insurance GROUP BY sex HAVING count(DISTINCT person_id) >= 10",
        ),
        (
            "SELECT date_part('year', birth_date) >= 1990 AS young, avg(months_contributed) AS m FROM social_insurance GROUP BY 1",
            "SELECT date_part('year', birth_date) >= 1990 AS young, avg(months_contributed) AS m FROM social_insurance GROUP BY 1 HAVING count(DISTINCT person_id) >= 10",
        ),
        (
            "WITH b AS (SELECT district, contribution_base FROM social_insurance WHERE contribution_base > 5000) \
             SELECT district, count(*) AS n FROM b GROUP BY district",
            "WITH b AS (SELECT district, person_id, contribution_base FROM social_insurance WHERE contribution_base > 5000) \
             SELECT district, count(*) AS n FROM b GROUP BY district HAVING count(DISTINCT person_id) >= 10",
        ),
    ] {
        let job = run_job(&server, r, &grant, sql);
        assert_eq!(job["status"], "pending_review", "{sql}: {job}");
        let id = job["id"].as_str().unwrap();
        let released = review_all(&server, &p, id);
        let release = released["release_id"].as_str().unwrap();
        let body = server
            .client()
            .get(server.url(&format!("/api/releases/{release}/result?format=csv")))
            .bearer_auth(r)
            .send()
            .unwrap()
            .text()
            .unwrap();
        let expected = reference(&csv, reference_sql);
        assert!(!expected.is_empty(), "{sql}");
        assert_eq!(csv_rows(&body), expected, "{sql}");
    }
    server.stop();
}

/// Three-way self-join on a two-valued key: billions of rows to count.
const HEAVY: &str = "SELECT count(*) AS n FROM social_insurance a JOIN social_insurance b ON a.sex = b.sex \
                     JOIN social_insurance c ON b.sex = c.sex";

#[test]
fn running_jobs_are_cancelled_or_stopped_at_their_deadline() {
    let dir = prepared_data_dir(2000, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    let config = data.join("anyu.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("# deadline_secs = 600", "deadline_secs = 3"),
    )
    .unwrap();
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let grant = grant_on(
        &server,
        &p,
        &[("social_insurance", SI_COLUMNS)],
        "invisible",
    );
    let r = p.researcher.as_str();

    // Cancelled while running; the server answers meanwhile (queries run on their own runtime).
    let (status, job) = common::submit(&server, r, &grant, HEAVY);
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let j = common::job_as(&server, &p.admin, &id);
        if j["status"] == "running" && j["rows_scanned"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ran: {j}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let t = std::time::Instant::now();
    server.expect(200, "GET", "/healthz", None, None);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(1),
        "server stalled by a query"
    );
    server.expect(
        200,
        "POST",
        &format!("/api/jobs/{id}/cancel"),
        Some(r),
        None,
    );
    let done = common::wait_job(&server, r, &id);
    assert_eq!(done["status"], "cancelled", "{done}");
    // It keeps what it cost: its run time (in steps, for its researcher)
    // and, on the record, the CPU seconds the grant was charged.
    assert!(done["elapsed_seconds"].as_f64().unwrap() >= 1.0, "{done}");
    let full = common::job_as(&server, &p.admin, &id);
    assert!(full["cpu_seconds"].as_f64().unwrap() > 0.0, "{full}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(3),
        "cancellation took {:?}",
        t.elapsed()
    );

    // Stopped at the configured deadline, with a value-free reason.
    let done = run_job(&server, r, &grant, HEAVY);
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error_code"], "deadline_exceeded");
    let g = server.expect(200, "GET", &format!("/api/grants/{grant}"), Some(r), None);
    assert!(
        g["usage"]["cpu_seconds"].as_f64().unwrap() >= 2.5,
        "run time is charged: {g}"
    );
    server.stop();
}

/// An honest researcher's day: twenty ordinary questions about contributions,
/// each overlapping the others as real analyses do. None may be flagged for
/// review by a rule (small groups are dropped silently, which is not a flag):
/// a reviewer who sees warnings on every honest result stops reading them.
#[test]
fn an_honest_researchers_day_raises_no_flag() {
    let dir = prepared_data_dir(3000, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let grant = grant_on(
        &server,
        &p,
        &[("social_insurance", SI_COLUMNS)],
        "invisible",
    );
    let day = [
        "SELECT district, count(*) AS n FROM social_insurance GROUP BY district",
        "SELECT sex, count(*) AS n FROM social_insurance GROUP BY sex",
        "SELECT district, sex, count(*) AS n FROM social_insurance GROUP BY district, sex",
        "SELECT district, avg(contribution_base) AS mean_base FROM social_insurance GROUP BY district",
        "SELECT sex, avg(contribution_base) AS mean_base, avg(months_contributed) AS mean_months FROM social_insurance GROUP BY sex",
        "SELECT district, sex, avg(contribution_base) AS mean_base FROM social_insurance GROUP BY district, sex",
        "SELECT date_part('year', birth_date) AS born, count(*) AS n FROM social_insurance GROUP BY born",
        "SELECT date_part('year', birth_date) AS born, avg(months_contributed) AS m FROM social_insurance GROUP BY born",
        "SELECT district, approx_percentile_cont(contribution_base, 0.5) AS p50 FROM social_insurance GROUP BY district",
        "SELECT sex, median(contribution_base) AS p50, stddev(contribution_base) AS sd FROM social_insurance GROUP BY sex",
        "SELECT district, stddev(contribution_base) AS sd, avg(contribution_base) AS mean FROM social_insurance GROUP BY district",
        "SELECT count(*) AS n, avg(contribution_base) AS mean FROM social_insurance WHERE months_contributed > 120",
        "SELECT count(*) AS n, avg(contribution_base) AS mean FROM social_insurance WHERE months_contributed <= 120",
        "SELECT district, count(DISTINCT employer_credit_code) AS employers FROM social_insurance GROUP BY district",
        "SELECT CASE WHEN months_contributed >= 180 THEN 'long' ELSE 'short' END AS tenure, count(*) AS n FROM social_insurance GROUP BY tenure",
        "SELECT sex, CASE WHEN contribution_base >= 10000 THEN 'high' ELSE 'other' END AS band, count(*) AS n FROM social_insurance GROUP BY sex, band",
        "SELECT district, min(months_contributed) AS shortest, max(months_contributed) AS longest FROM social_insurance GROUP BY district",
        "SELECT corr(contribution_base, months_contributed) AS r FROM social_insurance",
        "SELECT district, regr_slope(contribution_base, months_contributed) AS slope FROM social_insurance GROUP BY district",
        "SELECT count(*) AS n, sum(contribution_base) AS total FROM social_insurance",
    ];
    let mut flags = Vec::new();
    for sql in day {
        let own = run_job(&server, &p.researcher, &grant, sql);
        let id = own["id"].as_str().unwrap();
        let job = common::job_as(&server, &p.steward, id);
        assert_eq!(job["status"], "pending_review", "{sql}: {job}");
        for rule in job["checks"]["rules"].as_array().unwrap() {
            if rule["verdict"] != "pass" {
                let reasons: Vec<&str> = rule["cells"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|c| c["verdict"] != "pass")
                    .filter_map(|c| c["reason"].as_str())
                    .take(1)
                    .collect();
                flags.push(format!("{sql}\n  {}: {reasons:?}", rule["rule"]));
            }
        }
    }
    assert!(
        flags.is_empty(),
        "honest queries flagged:\n{}",
        flags.join("\n")
    );

    // Each job is charged all it cost the domain, from taking its worker to
    // its sealed candidate (checks and sketches included), not only its query.
    let events = server.expect(
        200,
        "GET",
        "/api/audit/events?action=job.check&limit=1000",
        Some(&p.auditor),
        None,
    );
    let mut charged = 0.0;
    for check in events.as_array().unwrap() {
        let cpu = check["details"]["cpu_seconds"].as_f64().unwrap();
        let run = check["details"]["run_seconds"].as_f64().unwrap();
        assert!(cpu > run, "charged {cpu} s for a {run} s query: {check}");
        charged += cpu;
    }
    let grant_as = |who: &str| {
        let g = server.expect(200, "GET", &format!("/api/grants/{grant}"), Some(who), None);
        g["usage"]["cpu_seconds"].as_f64().unwrap()
    };
    let used = grant_as(&p.steward);
    assert!(
        (used - charged).abs() < 1e-6,
        "grant charged {used}, jobs {charged}"
    );
    // Its holder reads the counter in whole minutes: the exact figure read
    // before and after a job would time that job to the millisecond.
    let seen = grant_as(&p.researcher);
    assert_eq!(seen, (charged / 60.0).ceil() * 60.0, "charged {charged}");
    assert!(seen > 0.0 && seen % 60.0 == 0.0, "{seen}");
    let listed = server.expect(200, "GET", "/api/grants", Some(&p.researcher), None);
    let listed = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["id"] == grant.as_str())
        .unwrap();
    assert_eq!(listed["usage"]["cpu_seconds"].as_f64(), Some(seen));
}
