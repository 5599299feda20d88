//! Models through the real binary and HTTP: upload, a steward's approval,
//! a model job under a grant, review, release — each example model (C and
//! Python) against native reference computations on the same rows, several
//! runs at once, and hostile uploads that leave nothing behind.

use crate::common;

#[path = "../../sandbox/tests/reference/mod.rs"]
mod reference;

use std::collections::HashMap;
use std::path::Path;

use crate::common::{People, TestServer, add_people, grant_on, prepared_data_dir, wait_job};
use datafusion::arrow::array::{Array, Float64Array};
use datafusion::prelude::{CsvReadOptions, SessionContext};
use serde_json::{Value, json};

const SI_COLUMNS: &[&str] = &[
    "person_id",
    "sex",
    "district",
    "contribution_base",
    "months_contributed",
];

fn prebuilt(name: &str) -> Vec<u8> {
    let path = common::repo_root()
        .join("sandbox/models/prebuilt")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Columns of plain DataFusion over the generated plaintext CSV.
fn reference_columns(csv: &Path, sql: &str) -> Vec<Vec<Option<f64>>> {
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
        let width = batches[0].num_columns();
        let mut cols = vec![Vec::new(); width];
        for b in &batches {
            for (c, col) in cols.iter_mut().enumerate() {
                let a = b
                    .column(c)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .expect("reference SQL casts to DOUBLE");
                col.extend((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i))));
            }
        }
        cols
    })
}

/// A released CSV as columns by header name.
fn csv_columns(text: &str) -> HashMap<String, Vec<String>> {
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let mut cols: HashMap<String, Vec<String>> =
        header.iter().map(|h| (h.clone(), Vec::new())).collect();
    for line in lines {
        for (h, cell) in header.iter().zip(line.split(',')) {
            cols.get_mut(h).unwrap().push(cell.to_string());
        }
    }
    cols
}

fn floats(cols: &HashMap<String, Vec<String>>, name: &str) -> Vec<Option<f64>> {
    cols[name]
        .iter()
        .map(|c| (!c.is_empty()).then(|| c.parse::<f64>().unwrap()))
        .collect()
}

fn ints(cols: &HashMap<String, Vec<String>>, name: &str) -> Vec<i64> {
    cols[name].iter().map(|c| c.parse().unwrap()).collect()
}

fn assert_close(what: &str, got: Option<f64>, want: Option<f64>, rel: f64) {
    match (got, want) {
        (Some(g), Some(w)) => assert!(
            (g - w).abs() <= rel * w.abs().max(1.0),
            "{what}: got {g}, want {w}"
        ),
        (g, w) => assert_eq!(g, w, "{what}"),
    }
}

/// Uploads a component; returns the status and body.
fn upload(server: &TestServer, token: &str, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    // Intake compiles the component: the Python one for tens of seconds on a busy machine.
    let client = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(600))
        .build()
        .unwrap();
    let resp = client
        .post(server.url(&format!("/api/models?name={name}")))
        .bearer_auth(token)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap())
}

fn approve_model(server: &TestServer, p: &People, sha: &str) {
    let view = server.expect(
        200,
        "POST",
        &format!("/api/models/{sha}/approvals"),
        Some(&p.steward),
        Some(&json!({ "dataset_id": "social_insurance", "decision": "approve" })),
    );
    assert_eq!(view["approvals"][0]["decision"], "approve", "{view}");
}

fn submit_model(
    server: &TestServer,
    p: &People,
    grant: &str,
    sha: &str,
    sql: &str,
    params: &str,
) -> String {
    let job = server.expect(
        202,
        "POST",
        "/api/jobs",
        Some(&p.researcher),
        Some(&json!({ "grant_id": grant, "model": sha, "params": params, "sql": sql })),
    );
    job["id"].as_str().unwrap().to_string()
}

/// Waits for a model job, has both reviewers approve it, downloads the CSV.
fn release(server: &TestServer, p: &People, job: &str) -> HashMap<String, Vec<String>> {
    let j = wait_job(server, &p.researcher, job);
    assert_eq!(
        j["status"], "pending_review",
        "models are always reviewed: {j}"
    );
    assert_eq!(j["kind"], "model", "{j}");
    let packet = server.expect(
        200,
        "GET",
        &format!("/api/jobs/{job}/review"),
        Some(&p.steward),
        None,
    );
    assert!(
        packet["model_log"].is_string(),
        "reviewers see the log: {packet}"
    );
    for token in [&p.steward, &p.admin] {
        common::vote_ok(server, token, job, &json!({ "decision": "approve" }));
    }
    let j = server.expect(
        200,
        "GET",
        &format!("/api/jobs/{job}"),
        Some(&p.researcher),
        None,
    );
    assert_eq!(j["status"], "released", "{j}");
    let release = j["release_id"].as_str().unwrap();
    let cert = server.expect(
        200,
        "GET",
        &format!("/api/releases/{release}/certificate"),
        Some(&p.researcher),
        None,
    );
    let cert_text = cert.to_string();
    assert!(
        cert_text.contains("\"model\""),
        "certificate names the model: {cert}"
    );
    let resp = server
        .client()
        .get(server.url(&format!("/api/releases/{release}/result?format=csv")))
        .bearer_auth(&p.researcher)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    csv_columns(&resp.text().unwrap())
}

struct Setup {
    _dir: tempfile::TempDir,
    csv: std::path::PathBuf,
    server: TestServer,
    p: People,
    grant: String,
}

fn setup(persons: u64) -> Setup {
    let dir = prepared_data_dir(persons, &["social_insurance"]);
    let data = dir.path().join("data");
    let csv = dir.path().join("samples/social_insurance.csv");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let grant = grant_on(
        &server,
        &p,
        &[("social_insurance", SI_COLUMNS)],
        "model_results",
    );
    Setup {
        _dir: dir,
        csv,
        server,
        p,
        grant,
    }
}

// k-means starts from the first distinct rows, so the input has an order;
// equal rows are interchangeable, so ordering by both values is total.
const INPUT_SQL: &str = "SELECT contribution_base, months_contributed FROM social_insurance \
    ORDER BY contribution_base, months_contributed";
const REFERENCE_SQL: &str = "SELECT CAST(contribution_base AS DOUBLE) AS c, \
    CAST(months_contributed AS DOUBLE) AS m FROM social_insurance ORDER BY c, m";

fn check_describe(out: &HashMap<String, Vec<String>>, refs: &[Vec<Option<f64>>]) {
    assert_eq!(out["column"], ["contribution_base", "months_contributed"]);
    let (n, mean, sd) = (ints(out, "n"), floats(out, "mean"), floats(out, "sd"));
    let (min, max) = (floats(out, "min"), floats(out, "max"));
    for (i, col) in refs.iter().enumerate() {
        let (wn, wmean, wsd, wmin, wmax) = reference::describe_ref(&reference::present(col));
        assert_eq!(n[i], wn);
        assert_close("mean", mean[i], wmean, 1e-9);
        assert_close("sd", sd[i], wsd, 1e-9);
        assert_close("min", min[i], wmin, 1e-12);
        assert_close("max", max[i], wmax, 1e-12);
    }
}

fn check_ols(out: &HashMap<String, Vec<String>>, refs: &[Vec<Option<f64>>]) {
    let want = reference::ols_ref(&refs[0], &[refs[1].clone()]);
    assert_eq!(out["term"], ["intercept", "months_contributed"]);
    assert_eq!(ints(out, "n"), vec![want.n; 2]);
    assert_eq!(ints(out, "df_resid"), vec![want.df_resid; 2]);
    let (est, se) = (floats(out, "estimate"), floats(out, "std_error"));
    for j in 0..2 {
        assert_close("estimate", est[j], Some(want.estimate[j]), 1e-8);
        assert_close("std_error", se[j], Some(want.std_error[j]), 1e-8);
    }
}

fn check_kmeans(out: &HashMap<String, Vec<String>>, refs: &[Vec<Option<f64>>]) {
    let rows: Vec<Vec<f64>> = (0..refs[0].len())
        .filter_map(|i| Some(vec![refs[0][i]?, refs[1][i]?]))
        .collect();
    let want = reference::kmeans_ref(&rows, 3, 20);
    assert_eq!(ints(out, "cluster"), [1, 2, 3]);
    assert_eq!(ints(out, "size"), want.size);
    let (a, b) = (
        floats(out, "contribution_base"),
        floats(out, "months_contributed"),
    );
    for c in 0..3 {
        assert_close("centre", a[c], Some(want.centres[c][0]), 1e-9);
        assert_close("centre", b[c], Some(want.centres[c][1]), 1e-9);
    }
}

const DESCRIBE: &str = "model=describe";
const OLS: &str = "model=ols;y=contribution_base;x=months_contributed";
const KMEANS: &str = "model=kmeans;k=3;iters=20;cols=contribution_base,months_contributed";

#[test]
fn c_models_run_concurrently_and_match_native_references() {
    let s = setup(1500);
    let (server, p) = (&s.server, &s.p);
    let refs = reference_columns(&s.csv, REFERENCE_SQL);

    let mut shas = HashMap::new();
    // ols-0.1: ols.c as built against the superseded anyu:model@0.1.0, as
    // uploaded before 0.2.0 existed; it still runs.
    for (name, file) in [
        ("describe", "describe.c.wasm"),
        ("ols", "ols.c.wasm"),
        ("kmeans", "kmeans.c.wasm"),
        ("ols-0.1", "0.1.0/ols.c.wasm"),
    ] {
        let (status, view) = upload(server, &p.researcher, name, prebuilt(file));
        assert_eq!(status, 201, "{view}");
        let world = match name {
            "ols-0.1" => "anyu:model/model@0.1.0",
            _ => "anyu:model/model@0.2.0",
        };
        assert_eq!(view["info"]["world"], world, "{view}");
        let sha = view["sha256"].as_str().unwrap().to_string();
        // Not yet approved for this dataset: refused before anything runs.
        let (status, body) = server.call(
            "POST",
            "/api/jobs",
            Some(&p.researcher),
            Some(&json!({ "grant_id": s.grant, "model": sha, "params": "", "sql": INPUT_SQL })),
        );
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("model_not_approved")),
            "{body}"
        );
        approve_model(server, p, &sha);
        shas.insert(name, sha);
    }

    // Four at once, then two describes over disjoint halves at once: each
    // result is its own input's, so concurrent runs saw neither each other's
    // rows nor each other's state.
    let jobs = [
        submit_model(server, p, &s.grant, &shas["describe"], INPUT_SQL, DESCRIBE),
        submit_model(server, p, &s.grant, &shas["ols"], INPUT_SQL, OLS),
        submit_model(server, p, &s.grant, &shas["kmeans"], INPUT_SQL, KMEANS),
        submit_model(server, p, &s.grant, &shas["ols-0.1"], INPUT_SQL, OLS),
    ];
    check_describe(&release(server, p, &jobs[0]), &refs);
    let ols = release(server, p, &jobs[1]);
    check_ols(&ols, &refs);
    check_kmeans(&release(server, p, &jobs[2]), &refs);
    assert_eq!(
        release(server, p, &jobs[3]),
        ols,
        "0.1.0 and 0.2.0 ols differ"
    );
    // The two halves after the four: a researcher may have at most four
    // jobs queued or running, and the first four may still be running.
    let halves = ["'男'", "'女'"].map(|sex| {
        submit_model(
            server,
            p,
            &s.grant,
            &shas["describe"],
            &format!(
                "SELECT contribution_base, months_contributed FROM social_insurance \
                 WHERE sex = {sex} ORDER BY contribution_base, months_contributed"
            ),
            DESCRIBE,
        )
    });
    for (job, sex) in halves.iter().zip(["'男'", "'女'"]) {
        let half = reference_columns(
            &s.csv,
            &format!(
                "SELECT CAST(contribution_base AS DOUBLE) AS c, CAST(months_contributed AS DOUBLE) AS m \
                 FROM social_insurance WHERE sex = {sex} ORDER BY c, m"
            ),
        );
        assert!(
            half[0].len() > 100 && half[0].len() < 1400,
            "{}",
            half[0].len()
        );
        check_describe(&release(server, p, job), &half);
    }
    s.server.stop();
}

/// The Python component runs the same three algorithms as the C ones and
/// must give the same numbers through the whole path.
#[test]
fn python_model_matches_native_references() {
    let s = setup(800);
    let (server, p) = (&s.server, &s.p);
    let refs = reference_columns(&s.csv, REFERENCE_SQL);
    let (status, view) = upload(
        server,
        &p.researcher,
        "pystats",
        prebuilt("pystats.py.wasm"),
    );
    assert_eq!(status, 201, "{view}");
    let sha = view["sha256"].as_str().unwrap().to_string();
    approve_model(server, p, &sha);
    let jobs = [DESCRIBE, OLS, KMEANS]
        .map(|params| submit_model(server, p, &s.grant, &sha, INPUT_SQL, params));
    check_describe(&release(server, p, &jobs[0]), &refs);
    check_ols(&release(server, p, &jobs[1]), &refs);
    check_kmeans(&release(server, p, &jobs[2]), &refs);
    s.server.stop();
}

/// Bad uploads and bad runs: each a clear error with a stable code, nothing
/// stored, every refusal audited, no data value in any message.
#[test]
fn hostile_uploads_and_failing_models_leave_nothing_behind() {
    let s = setup(300);
    let (server, p) = (&s.server, &s.p);
    let models_dir = s._dir.path().join("data/models");
    let stored = || -> usize {
        std::fs::read_dir(&models_dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
                    .count()
            })
            .unwrap_or(0)
    };
    let core_module = wat::parse_str("(module (func (export \"run\")))").unwrap();
    let mut truncated = prebuilt("describe.c.wasm");
    truncated.truncate(truncated.len() / 2);
    for (bytes, code) in [
        (b"definitely not wasm".to_vec(), "malformed"),
        (truncated, "malformed"),
        (core_module, "not_a_component"),
        (Vec::new(), "malformed"),
    ] {
        let (status, body) = upload(server, &p.researcher, "bad", bytes);
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (422, Some(code)),
            "{body}"
        );
    }
    let (status, body) = upload(server, &p.researcher, "", prebuilt("describe.c.wasm"));
    assert_eq!(status, 400, "{body}");
    let listed = server.expect(200, "GET", "/api/models", Some(&p.researcher), None);
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");
    assert_eq!(stored(), 0);
    let events = server.expect(
        200,
        "GET",
        "/api/audit/events?action=model.upload&limit=100",
        Some(&p.auditor),
        None,
    );
    let denied = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "denied")
        .count();
    assert_eq!(denied, 5, "{events}");

    // A model that refuses its params, and one asked for a missing column:
    // the job fails with the model's code; no result, nothing to review.
    let (status, view) = upload(server, &p.researcher, "ols", prebuilt("ols.c.wasm"));
    assert_eq!(status, 201, "{view}");
    let sha = view["sha256"].as_str().unwrap().to_string();
    assert_eq!(stored(), 1);
    approve_model(server, p, &sha);
    for params in ["model=ols;y=nope", "model=ols;unknown=1"] {
        let job = submit_model(server, p, &s.grant, &sha, INPUT_SQL, params);
        let j = wait_job(server, &p.researcher, &job);
        assert_eq!(j["status"], "failed", "{j}");
        // A model's failure may follow the data: one generic code for the
        // requester, the model's own for its reviewers.
        assert_eq!(j["error_code"], "query_failed", "{j}");
        assert!(j.get("result").is_none());
        let full = common::job_as(server, &p.steward, &job);
        assert_eq!(full["error_code"], "model_error", "{full}");
    }
    // Someone else's model is not yours to run, and a hash that is not a
    // model is not found; neither says which.
    let (status, body) = server.call(
        "POST",
        "/api/jobs",
        Some(&p.other_researcher),
        Some(&json!({ "grant_id": s.grant, "model": sha, "params": "", "sql": INPUT_SQL })),
    );
    assert!(matches!(status, 403 | 404), "{status} {body}");
    for (token, path) in [
        (&p.other_researcher, format!("/api/models/{sha}")),
        (&p.researcher, format!("/api/models/{}", "0".repeat(64))),
        (&p.researcher, "/api/models/..%2F..%2Fkeys".to_string()),
    ] {
        let (status, body) = server.call("GET", &path, Some(token), None);
        assert_eq!(status, 404, "{path}: {body}");
    }

    // Dummy data: bounded sizes; not-open datasets offer none.
    for q in ["rows=0", "rows=100001", "rows=-1", "rows=x", "format=exe"] {
        let (status, body) = server.call(
            "GET",
            &format!("/api/catalog/social_insurance/dummy?{q}"),
            Some(&p.researcher),
            None,
        );
        assert_eq!(status, 400, "{q}: {body}");
    }
    s.server.stop();
}

/// `anyu model test`: a model on dummy data outside the domain, from a
/// manifest file or a dataset of a data directory, with a job's limits.
#[test]
fn model_test_runs_a_model_on_dummy_data_locally() {
    let root = common::repo_root();
    let model = |name: &str| root.join("sandbox/models/prebuilt").join(name);
    let manifest = root.join("datasets/manifests/social_insurance.toml");
    let nowhere = tempfile::tempdir().unwrap();
    let ols = model("ols.c.wasm");
    let args = |m: &std::path::PathBuf, extra: &[&str]| -> Vec<String> {
        let mut a = vec![
            "model".to_string(),
            "test".into(),
            m.display().to_string(),
            "--dummy".into(),
            manifest.display().to_string(),
            "--sql".into(),
            "SELECT contribution_base, months_contributed FROM social_insurance".into(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |a: &[String], ok: bool| {
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        common::run(nowhere.path(), &a, ok)
    };
    let out = run(
        &args(
            &ols,
            &["--params", "y=contribution_base;x=months_contributed"],
        ),
        true,
    );
    let text = common::stdout(&out);
    assert!(
        text.contains("intercept") && text.contains("months_contributed"),
        "{text}"
    );
    assert!(
        common::stderr(&out).contains("anyu:model@0.2.0"),
        "{}",
        common::stderr(&out)
    );
    // The same model built against anyu:model@0.1.0 gives the same table.
    let old = run(
        &args(
            &model("0.1.0/ols.c.wasm"),
            &["--params", "y=contribution_base;x=months_contributed"],
        ),
        true,
    );
    assert_eq!(common::stdout(&old), text);
    assert!(common::stderr(&old).contains("anyu:model@0.1.0"));
    // Same rows for the same seed: the table is reproducible.
    let again = run(
        &args(
            &ols,
            &["--params", "y=contribution_base;x=months_contributed"],
        ),
        true,
    );
    assert_eq!(common::stdout(&again), text);

    let out = run(&args(&ols, &["--params", "y=nope"]), false);
    let err = common::stderr(&out);
    assert!(err.contains("[model_error]"), "{err}");
    let out = run(&args(&manifest, &[]), false);
    assert!(common::stderr(&out).contains("[malformed]"));
    let out = run(&args(&ols, &["--rows", "0"]), false);
    assert!(common::stderr(&out).contains("--rows"));

    // A dataset id resolves in a data directory (not-open ones have no dummy data).
    let dir = prepared_data_dir(50, &["social_insurance"]);
    let data = dir.path().join("data");
    let describe = model("describe.c.wasm");
    let out = common::run(
        &data,
        &[
            "model",
            "test",
            describe.to_str().unwrap(),
            "--dummy",
            "social_insurance",
            "--rows",
            "200",
        ],
        true,
    );
    let text = common::stdout(&out);
    assert!(text.contains("contribution_base"), "{text}");
    assert!(
        common::stderr(&out).contains("200 input rows"),
        "{}",
        common::stderr(&out)
    );
}

/// A model that singles persons out fails its checks, whatever its code
/// says: k-means with a cluster per few persons (100 rows from 300 persons,
/// more than persons ÷ threshold), and describe or k-means over a column only
/// one person fills (every input column needs the threshold of persons).
#[test]
fn models_that_single_out_persons_fail_their_checks() {
    let s = setup(300);
    let (server, p) = (&s.server, &s.p);
    let mut shas = HashMap::new();
    for name in ["kmeans", "describe"] {
        let (status, view) = upload(
            server,
            &p.researcher,
            name,
            prebuilt(&format!("{name}.c.wasm")),
        );
        assert_eq!(status, 201, "{view}");
        let sha = view["sha256"].as_str().unwrap().to_string();
        approve_model(server, p, &sha);
        shas.insert(name, sha);
    }
    let model_rule = |job: &str| {
        let full = common::job_as(server, &p.steward, job);
        let rules = full["checks"]["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let rule = rules.iter().find(|r| r["rule"] == "model_units").cloned();
        (full, rule.unwrap_or_default())
    };

    let every_person = submit_model(
        server,
        p,
        &s.grant,
        &shas["kmeans"],
        INPUT_SQL,
        "model=kmeans;k=100;iters=5;cols=contribution_base,months_contributed",
    );
    let own = wait_job(server, &p.researcher, &every_person);
    assert_ne!(own["status"], "released", "{own}");
    let (full, rule) = model_rule(&every_person);
    assert_eq!(rule["verdict"], "fail", "{full}");
    assert_eq!(full["status"], "rejected", "the whole result fails: {full}");

    // One person's value, masked into its own column by a value only they hold.
    let cols = csv_columns(&std::fs::read_to_string(&s.csv).unwrap());
    let months = &cols["months_contributed"];
    let once = months
        .iter()
        .filter(|v| v.parse::<i64>().is_ok())
        .find(|v| months.iter().filter(|w| w == v).count() == 1)
        .expect("a months value held by one person");
    let masked = format!(
        "SELECT CASE WHEN months_contributed = {once} THEN CAST(contribution_base AS DOUBLE) END AS x, \
         CAST(months_contributed AS DOUBLE) AS m FROM social_insurance"
    );
    let lone = submit_model(
        server,
        p,
        &s.grant,
        &shas["describe"],
        &masked,
        "model=describe",
    );
    let own = wait_job(server, &p.researcher, &lone);
    assert_ne!(own["status"], "released", "{own}");
    let (full, rule) = model_rule(&lone);
    assert_eq!(rule["verdict"], "fail", "{full}");
    let failing_rows: Vec<u64> = rule["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["verdict"] == "fail")
        .filter_map(|c| c["row"].as_u64())
        .collect();
    assert!(
        failing_rows.contains(&0),
        "the row of `x` (n = 1) fails: {rule}"
    );
    assert!(
        !failing_rows.contains(&1),
        "the row of `m` (n = 300) passes: {rule}"
    );
    let thin = |rule: &Value, column: &str| {
        rule["cells"].as_array().unwrap().iter().any(|c| {
            c["row"].is_null()
                && c["verdict"] == "fail"
                && c["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains(&format!("input column `{column}`")))
        })
    };
    assert!(
        thin(&rule, "x"),
        "the masked input column fails the whole result: {rule}"
    );
    assert!(
        !thin(&rule, "m"),
        "a column every person fills passes: {rule}"
    );
    // Describe's minimum and maximum are exact values of a few persons: the
    // cells go to review, naming the input column that holds them.
    let rare: Vec<&Value> = rule["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            c["verdict"] == "review"
                && c["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("persons hold in input column `m`"))
        })
        .collect();
    assert!(!rare.is_empty(), "a rare exact value is flagged: {rule}");
    assert!(rare.iter().all(|c| c["row"] == 1), "only `m`'s row: {rule}");

    // Without a group-size column to give it away: one k-means cluster over
    // the masked column, whose centre only that person's value makes.
    let centre = submit_model(
        server,
        p,
        &s.grant,
        &shas["kmeans"],
        &masked,
        "model=kmeans;k=1;iters=5;cols=x,m",
    );
    let own = wait_job(server, &p.researcher, &centre);
    assert_ne!(own["status"], "released", "{own}");
    let (full, rule) = model_rule(&centre);
    assert!(thin(&rule, "x"), "{full}");
    assert_eq!(full["status"], "rejected", "{full}");
}

/// Every decision is kept: an approval after a rejection does not erase it,
/// and the rejection blocks runs until its author withdraws it; a steward
/// of the uploader's organisation may not decide at all.
#[test]
fn a_rejection_blocks_until_its_author_withdraws_it() {
    let dir = prepared_data_dir(300, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    common::add_user(
        &data,
        "s_uni",
        "steward",
        "深圳大学",
        "government",
        &["--agency", common::SI_PROVIDER],
    );
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let grant = grant_on(
        &server,
        &p,
        &[("social_insurance", SI_COLUMNS)],
        "model_results",
    );
    let (status, body) = upload(
        &server,
        &p.researcher,
        "describe",
        prebuilt("describe.c.wasm"),
    );
    assert_eq!(status, 201, "{body}");
    let sha = body["sha256"].as_str().unwrap().to_string();
    let decide = |token: &str, decision: &str| {
        server.call(
            "POST",
            &format!("/api/models/{sha}/approvals"),
            Some(token),
            Some(
                &json!({ "dataset_id": "social_insurance", "decision": decision,
                          "comment": "需要再看看这个模型" }),
            ),
        )
    };
    // The uploader's organisation (深圳大学) may not decide.
    let uni = server.login("s_uni");
    let (status, body) = decide(&uni, "approve");
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "same_organisation");

    let (status, view) = decide(&p.steward, "reject");
    assert_eq!(status, 200, "{view}");
    let rejection = view["approvals"][0]["id"].as_str().unwrap().to_string();
    let (status, view) = decide(&p.steward, "approve");
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["approvals"].as_array().unwrap().len(), 2, "{view}");
    let run = || {
        server.call(
            "POST",
            "/api/jobs",
            Some(&p.researcher),
            Some(&json!({ "grant_id": grant, "model": sha, "params": "",
                          "sql": "SELECT contribution_base FROM social_insurance" })),
        )
    };
    let (status, body) = run();
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "model_rejected");

    // Only its author withdraws it.
    let withdraw = format!("/api/models/{sha}/approvals/{rejection}/withdraw");
    let (status, body) = server.call("POST", &withdraw, Some(&p.admin), None);
    assert_eq!(status, 403, "{body}");
    server.expect(200, "POST", &withdraw, Some(&p.steward), None);
    let (status, body) = run();
    assert_eq!(status, 202, "{body}");
}
