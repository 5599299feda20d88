//! Differentially private queries through the real binary: the SQL clause
//! and the job parameter, DP facts in the job view and the signed
//! certificate, the ε budget charged atomically (racing jobs never overspend).

use crate::common;

use crate::common::{
    People, TestServer, add_people, grant_on, prepared_data_dir, run, run_job, stdout, wait_job,
};
use serde_json::{Value, json};

const SI_COLUMNS: &[&str] = &[
    "person_id",
    "sex",
    "district",
    "contribution_base",
    "months_contributed",
];

fn review_all(server: &TestServer, p: &People, job: &str) -> Value {
    for t in [&p.steward, &p.admin] {
        common::vote_ok(server, t, job, &json!({ "decision": "approve" }));
    }
    server.expect(
        200,
        "GET",
        &format!("/api/jobs/{job}"),
        Some(&p.researcher),
        None,
    )
}

#[test]
fn dp_jobs_report_their_noise_and_never_overspend() {
    let dir = prepared_data_dir(3000, &["social_insurance"]);
    let data = dir.path().join("data");
    // Enough concurrent jobs per researcher for the race below.
    let toml = data.join("anyu.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    assert!(text.contains("# per_user = 4"));
    std::fs::write(&toml, text.replace("# per_user = 4", "per_user = 40")).unwrap();
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

    // The SQL clause: grouped, noisy selection, COUNT and AVG.
    let sql = "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1, delta = 1e-7)\n  district, COUNT(*) AS n, AVG(contribution_base) AS mean_base \
               FROM social_insurance GROUP BY district";
    let own = run_job(&server, r, &grant, sql);
    let id = own["id"].as_str().unwrap().to_string();
    assert_eq!(own["status"], "pending_review", "{own}");
    for field in common::WITHHELD_FROM_REQUESTER {
        assert!(
            own.get(field).is_none(),
            "the requester sees {field}: {own}"
        );
    }
    assert_eq!(own["dp"], common::job_as(&server, &p.steward, &id)["dp"]);
    // The stored record, as the provider's steward reads it.
    let job = common::job_as(&server, &p.steward, &id);
    let dp = &job["dp"];
    assert_eq!(dp["epsilon"], 1.0, "{job}");
    let delta = dp["delta"].as_f64().unwrap();
    assert!(delta > 0.0 && delta <= 1e-7, "{dp}");
    assert_eq!(dp["budget_left"]["epsilon"], 9.0, "{dp}");
    assert_eq!(dp["privacy_unit"], "social_insurance.person_id");
    assert_eq!(dp["selection"]["mechanism"], "laplace_threshold");
    assert!(dp["selection"]["threshold"].as_i64().unwrap() > 10, "{dp}");
    let cols = dp["columns"].as_array().unwrap();
    assert_eq!(cols[0]["column"], "n");
    assert_eq!(
        cols[0]["scale"], 4.0,
        "ε 1 over selection, count, avg sum and count: {dp}"
    );
    assert_eq!(cols[1]["aggregate"], "avg");
    assert_eq!(cols[1]["bounds"], json!([0.0, 100000.0]));
    assert!(cols[1]["count_scale"].as_f64().unwrap() > 0.0);
    // Verdicts: the dp rule per column; rules on exact values not applied.
    let rules = job["checks"]["rules"].as_array().unwrap();
    let rule = |n: &str| rules.iter().find(|x| x["rule"] == n).unwrap().clone();
    assert_eq!(
        rule("dp")["cells"].as_array().unwrap().len(),
        3,
        "{}",
        rule("dp")
    );
    assert!(
        rule("frequency")["cells"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not applied")
    );
    assert_eq!(job["suppressed_groups"], 0);
    assert_eq!(
        job["rows_scanned"], 0,
        "rows scanned are not shown for DP jobs"
    );
    // The review queue shows the same verdicts.
    let queue = server.expect(200, "GET", "/api/reviews", Some(&p.steward), None);
    let queued = queue
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(queued["checks"], job["checks"]);
    assert_eq!(queued["dp"], job["dp"]);

    // Released with the DP facts in the signed certificate.
    let released = review_all(&server, &p, &id);
    assert_eq!(released["status"], "released", "{released}");
    let release_id = released["release_id"].as_str().unwrap();
    let cert = server
        .client()
        .get(server.url(&format!("/api/releases/{release_id}/certificate")))
        .bearer_auth(r)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let cert_json: Value = serde_json::from_str(&cert).unwrap();
    assert_eq!(cert_json["dp"], job["dp"], "{cert}");
    assert!(
        cert_json["checks"]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["rule"] == "dp")
    );
    let csv = server
        .client()
        .get(server.url(&format!("/api/releases/{release_id}/result?format=csv")))
        .bearer_auth(r)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    let text = String::from_utf8(csv.to_vec()).unwrap();
    assert_eq!(text.lines().next().unwrap(), "district,n,mean_base");
    assert!(text.lines().count() > 2, "{text}");
    let (cert_path, file) = (dir.path().join("cert.json"), dir.path().join("r.csv"));
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&file, &csv).unwrap();
    let ok = stdout(&run(
        &data,
        &[
            "verify-release",
            file.to_str().unwrap(),
            cert_path.to_str().unwrap(),
        ],
        true,
    ));
    assert!(ok.contains("release OK"), "{ok}");

    // The job parameter; no GROUP BY: no selection, no δ spent.
    let (status, body) = server.call(
        "POST",
        "/api/jobs",
        Some(r),
        Some(&json!({ "grant_id": grant, "sql": "SELECT count(*) AS n, sum(months_contributed) AS m FROM social_insurance", "dp": { "epsilon": 0.5 } })),
    );
    assert_eq!(status, 202, "{body}");
    let job = wait_job(&server, r, body["id"].as_str().unwrap());
    assert_eq!(job["dp"]["epsilon"], 0.5, "{job}");
    assert_eq!(job["dp"]["delta"], 0.0);
    assert!(job["dp"]["selection"].is_null());
    assert_eq!(job["dp"]["budget_left"]["epsilon"], 8.5);

    // Refusals cost nothing and echo no values.
    for (body, code) in [
        (
            json!({ "grant_id": grant, "sql": sql, "dp": { "epsilon": 1.0 } }),
            "dp_options_invalid",
        ),
        (
            json!({ "grant_id": grant, "sql": "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1, delta = 1e-7) sex, max(contribution_base) FROM social_insurance GROUP BY sex" }),
            "dp_unsupported_aggregate",
        ),
        (
            json!({ "grant_id": grant, "sql": "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1e-300, delta = 1e-7) sex, count(*) FROM social_insurance GROUP BY sex" }),
            "dp_options_invalid",
        ),
        (
            json!({ "grant_id": grant, "sql": "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1, delta = 1e-300) sex, count(*) FROM social_insurance GROUP BY sex" }),
            "dp_options_invalid",
        ),
        (
            json!({ "grant_id": grant, "sql": "SELECT count(*) FROM social_insurance", "dp": { "epsilon": 1e-300 } }),
            "dp_options_invalid",
        ),
        (
            json!({ "grant_id": grant, "sql": "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1) sex, count(*) FROM social_insurance GROUP BY sex" }),
            "dp_delta_required",
        ),
        (
            json!({ "grant_id": grant, "sql": "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1, delta = 1e-7) sex, sum(contribution_base * 2) FROM social_insurance GROUP BY sex" }),
            "dp_bounds_missing",
        ),
    ] {
        let (status, answer) = server.call("POST", "/api/jobs", Some(r), Some(&body));
        assert_eq!(
            (status, answer["error"]["code"].as_str().unwrap()),
            (422, code),
            "{answer}"
        );
    }

    // Racing jobs: 8.5 ε left, 8 jobs of 2 ε at once: exactly 4 fit.
    let sql = "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 2, delta = 1e-8) sex, count(*) AS n FROM social_insurance GROUP BY sex";
    let results: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    server.call(
                        "POST",
                        "/api/jobs",
                        Some(r),
                        Some(&json!({ "grant_id": grant, "sql": sql })),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted = results.iter().filter(|(s, _)| *s == 202).count();
    assert_eq!(accepted, 4, "{results:?}");
    for (s, b) in &results {
        if *s != 202 {
            assert_eq!(
                (*s, b["error"]["code"].as_str().unwrap()),
                (403, "budget_exhausted"),
                "{b}"
            );
        }
    }
    let g = server.expect(200, "GET", &format!("/api/grants/{grant}"), Some(r), None);
    let used = g["usage"]["epsilon"].as_f64().unwrap();
    assert!(
        (used - 9.5).abs() < 1e-9 && used <= g["budgets"]["epsilon"].as_f64().unwrap(),
        "{g}"
    );
    for (s, b) in &results {
        if *s == 202 {
            let j = wait_job(&server, r, b["id"].as_str().unwrap());
            assert_eq!(j["status"], "pending_review", "{j}");
        }
    }
    // Exhausted: 0.5 left.
    let (status, b) = server.call(
        "POST",
        "/api/jobs",
        Some(r),
        Some(&json!({ "grant_id": grant, "sql": "SELECT count(*) FROM social_insurance", "dp": { "epsilon": 0.6 } })),
    );
    assert_eq!(
        (status, b["error"]["code"].as_str().unwrap()),
        (403, "budget_exhausted"),
        "{b}"
    );
    let (status, b) = server.call(
        "POST",
        "/api/jobs",
        Some(r),
        Some(&json!({ "grant_id": grant, "sql": "SELECT count(*) AS n FROM social_insurance", "dp": { "epsilon": 0.5 } })),
    );
    assert_eq!(status, 202, "{b}");
    let j = wait_job(&server, r, b["id"].as_str().unwrap());
    assert_eq!(j["dp"]["budget_left"]["epsilon"], 0.0, "{j}");
    // Every DP submission is in the audit log with what it charged.
    let events = server.expect(
        200,
        "GET",
        "/api/audit/events?action=job.submit&limit=100",
        Some(&p.auditor),
        None,
    );
    let text = events.to_string();
    assert!(text.contains("differentially_private"), "{text}");
}
