//! Accounts and authorization through the real binary: every route × every
//! role (and anonymous) against the expected matrix, and login lockout.

mod common;

use std::collections::BTreeSet;

use common::{TestServer, prepared_data_dir, run, stdout};

const PASSWORD: &str = "correct horse battery";

fn add_user(data: &std::path::Path, username: &str, role: &str, extra: &[&str]) {
    let mut cmd = common::anyu(data);
    cmd.args(["user", "add", "--username", username, "--role", role])
        .args([
            "--real-name",
            "测试用户",
            "--organisation",
            "测试单位",
            "--org-type",
            "university",
        ])
        .args(extra)
        .env("ANYU_NEW_PASSWORD", PASSWORD);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn login(server: &TestServer, username: &str, password: &str) -> reqwest::blocking::Response {
    server
        .client()
        .post(server.url("/api/auth/login"))
        .json(&serde_json::json!({ "username": username, "password": password }))
        .send()
        .unwrap()
}

fn token(server: &TestServer, username: &str) -> String {
    let resp = login(server, username, PASSWORD);
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = resp.json().unwrap();
    body["token"].as_str().unwrap().to_string()
}

#[test]
fn route_role_matrix() {
    let dir = prepared_data_dir(200, &["social_insurance"]);
    let data = dir.path().join("data");
    add_user(&data, "r_one", "researcher", &["--verified"]);
    add_user(
        &data,
        "s_one",
        "steward",
        &["--agency", "深圳市社会保险基金管理局"],
    );
    add_user(&data, "a_one", "admin", &[]);
    add_user(&data, "u_one", "auditor", &[]);
    add_user(&data, "probe", "researcher", &[]);
    let listed = stdout(&run(&data, &["user", "list"], true));
    assert_eq!(listed.lines().count(), 5, "{listed}");

    let server = TestServer::start(&data);
    let callers: Vec<(&str, Option<String>)> = vec![
        ("anonymous", None),
        ("researcher", Some(token(&server, "r_one"))),
        ("steward", Some(token(&server, "s_one"))),
        ("admin", Some(token(&server, "a_one"))),
        ("auditor", Some(token(&server, "u_one"))),
    ];
    let login_body = serde_json::json!({ "username": "probe", "password": PASSWORD });
    let complaint_body =
        serde_json::json!({ "subject": "数据更新不及时", "body": "企业登记数据两周未更新。" });
    let answer_body = serde_json::json!({ "answer": "已督促提供部门更新。" });
    let filed = server
        .client()
        .post(server.url("/api/complaints"))
        .json(&complaint_body)
        .send()
        .unwrap();
    assert_eq!(filed.status().as_u16(), 201);
    let complaint_id = filed.json::<serde_json::Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let answer_path = format!("/api/admin/complaints/{complaint_id}/answer");
    // (method, OpenAPI path, concrete path, expected status per caller in the order above)
    let matrix: Vec<(&str, &str, &str, [u16; 5])> = vec![
        ("GET", "/healthz", "/healthz", [200, 200, 200, 200, 200]),
        (
            "GET",
            "/api/openapi.json",
            "/api/openapi.json",
            [200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/catalog",
            "/api/catalog",
            [200, 200, 200, 200, 200],
        ),
        (
            "GET",
            "/api/catalog/{id}",
            "/api/catalog/social_insurance",
            [200, 200, 200, 200, 200],
        ),
        (
            "POST",
            "/api/auth/login",
            "/api/auth/login",
            [200, 200, 200, 200, 200],
        ),
        ("GET", "/api/me", "/api/me", [401, 200, 200, 200, 200]),
        (
            "GET",
            "/api/admin/users",
            "/api/admin/users",
            [401, 403, 403, 200, 403],
        ),
        (
            "GET",
            "/api/admin/overview",
            "/api/admin/overview",
            [401, 403, 403, 200, 403],
        ),
        (
            "GET",
            "/api/audit/events",
            "/api/audit/events",
            [401, 403, 403, 200, 200],
        ),
        (
            "POST",
            "/api/complaints",
            "/api/complaints",
            [201, 201, 201, 201, 201],
        ),
        (
            "GET",
            "/api/admin/complaints",
            "/api/admin/complaints",
            [401, 403, 403, 200, 403],
        ),
        (
            "POST",
            "/api/admin/complaints/{id}/answer",
            &answer_path,
            [401, 403, 403, 200, 403],
        ),
        // Last: it ends the callers' sessions.
        (
            "POST",
            "/api/auth/logout",
            "/api/auth/logout",
            [401, 204, 204, 204, 204],
        ),
    ];

    // A route in the API description but missing here fails the test.
    let openapi = server.get_json("/api/openapi.json", 200);
    let documented: BTreeSet<(String, String)> = openapi["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let covered: BTreeSet<(String, String)> = matrix
        .iter()
        .map(|(m, p, _, _)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = documented.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "routes without an authorization expectation: {missing:?}"
    );

    let mut failures = Vec::new();
    for (method, _, path, expected) in &matrix {
        for ((who, tok), want) in callers.iter().zip(expected) {
            let mut req = match *method {
                "GET" => server.client().get(server.url(path)),
                _ => server.client().post(server.url(path)),
            };
            if *path == "/api/auth/login" {
                req = req.json(&login_body);
            } else if *path == "/api/complaints" {
                req = req.json(&complaint_body);
            } else if *path == answer_path {
                req = req.json(&answer_body);
            }
            if let Some(t) = tok {
                req = req.bearer_auth(t);
            }
            let resp = req.send().unwrap();
            let got = resp.status().as_u16();
            if got != *want {
                failures.push(format!("{method} {path} as {who}: {got}, expected {want}"));
            }
            if got >= 400 {
                let body: serde_json::Value = resp.json().unwrap();
                assert!(body["error"]["code"].is_string(), "{method} {path}: {body}");
            }
        }
    }
    assert!(
        failures.is_empty(),
        "authorization matrix:\n{}",
        failures.join("\n")
    );

    // A logged-out session no longer works; a forged token is a 401, never anonymous.
    let (_, researcher) = &callers[1];
    let resp = server
        .client()
        .get(server.url("/api/me"))
        .bearer_auth(researcher.as_ref().unwrap())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = server
        .client()
        .get(server.url("/api/catalog"))
        .bearer_auth("anyu_s_forged")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    server.stop();

    // Denials and logins are in the chain, which still verifies.
    let tail = stdout(&run(&data, &["audit", "tail", "-n", "500"], true));
    for needle in [
        "\"action\":\"authz.denied\"",
        "\"action\":\"auth.login\"",
        "\"action\":\"auth.logout\"",
        "\"action\":\"user.create\"",
    ] {
        assert!(tail.contains(needle), "no {needle} in the audit log");
    }
    assert!(!tail.contains(PASSWORD), "a password reached the audit log");
    run(&data, &["audit", "verify"], true);
}

#[test]
fn lockout_after_repeated_failures() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    add_user(&data, "victim", "researcher", &[]);
    let server = TestServer::start(&data);

    let unknown = login(&server, "nobody_here", "whatever-password");
    assert_eq!(unknown.status().as_u16(), 401);
    let unknown_body = unknown.text().unwrap();
    for _ in 0..4 {
        let resp = login(&server, "victim", "wrong-password!");
        assert_eq!(resp.status().as_u16(), 401);
        assert_eq!(
            resp.text().unwrap(),
            unknown_body,
            "wrong password must look like an unknown user"
        );
    }
    // The fifth failure locks; then even the right password is refused.
    assert_eq!(
        login(&server, "victim", "wrong-password!")
            .status()
            .as_u16(),
        429
    );
    let resp = login(&server, "victim", PASSWORD);
    assert_eq!(resp.status().as_u16(), 429);
    let body: serde_json::Value = resp.json().unwrap();
    assert_eq!(body["error"]["code"], "account_locked");
    server.stop();

    let tail = stdout(&run(&data, &["audit", "tail", "-n", "50"], true));
    assert!(tail.contains("\"reason\":\"locked_now\""), "{tail}");
    assert!(tail.contains("\"reason\":\"unknown_user\""), "{tail}");
}

#[test]
fn complaints_are_due_in_ten_working_days_and_answered_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    add_user(&data, "boss", "admin", &[]);
    let server = TestServer::start(&data);

    let secret_text = "我的电话是 13800000000，数据里有我的错误信息";
    let resp = server
        .client()
        .post(server.url("/api/complaints"))
        .json(&serde_json::json!({ "dataset_id": "enterprise_registry", "subject": "信息有误", "body": secret_text }))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let filed: serde_json::Value = resp.json().unwrap();
    let cst = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let today = chrono::Utc::now().with_timezone(&cst).date_naive();
    let due = enclave::calendar::WorkCalendar::china_mainland().add_working_days(today, 10);
    assert_eq!(filed["due_date"], due.format("%Y-%m-%d").to_string());
    assert_eq!(filed["overdue"], false);
    assert_eq!(filed["submitted_by"], "anonymous");

    // Bad input: each refused with a clear 400, nothing stored.
    for bad in [
        serde_json::json!({ "subject": "", "body": "x" }),
        serde_json::json!({ "subject": "x", "body": "y".repeat(5001) }),
        serde_json::json!({ "subject": "x", "body": "y", "dataset_id": "../etc" }),
        serde_json::json!({ "subject": "x", "body": "y", "extra": 1 }),
    ] {
        let resp = server
            .client()
            .post(server.url("/api/complaints"))
            .json(&bad)
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{bad}");
    }

    let admin = token(&server, "boss");
    let list: serde_json::Value = server
        .client()
        .get(server.url("/api/admin/complaints"))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let id = filed["id"].as_str().unwrap();
    let answer = |text: &str| {
        server
            .client()
            .post(server.url(&format!("/api/admin/complaints/{id}/answer")))
            .bearer_auth(&admin)
            .json(&serde_json::json!({ "answer": text }))
            .send()
            .unwrap()
    };
    let first = answer("已核实并更正。");
    assert_eq!(first.status().as_u16(), 200);
    let answered: serde_json::Value = first.json().unwrap();
    assert_eq!(answered["status"], "answered");
    assert_eq!(answered["answered_late"], false);
    assert_eq!(answer("再次答复").status().as_u16(), 409);
    let overview: serde_json::Value = server
        .client()
        .get(server.url("/api/admin/overview"))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(overview["complaints_open"], 0);
    assert_eq!(overview["complaints_overdue"], 0);
    assert_eq!(overview["active_accounts_by_role"]["admin"], 1);
    assert!(overview["audit_head_seq"].as_u64().unwrap() > 3);
    let missing = server
        .client()
        .post(server.url("/api/admin/complaints/no-such-id/answer"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({ "answer": "x" }))
        .send()
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    server.stop();

    // A complaint past its due date is flagged and counted as overdue.
    let db = data.join("meta/anyu.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        sqlx::query(
            "INSERT INTO complaints (id, subject, body, submitted_by, submitted_at, due_date, status) \
             VALUES ('old-one', 's', 'b', 'anonymous', '2026-01-01T00:00:00Z', '2026-01-05', 'open')",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    });
    let server = TestServer::start(&data);
    let admin = token(&server, "boss");
    let list: serde_json::Value = server
        .client()
        .get(server.url("/api/admin/complaints"))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let old = list
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "old-one")
        .unwrap();
    assert_eq!(old["overdue"], true);
    assert_eq!(list[0]["id"], "old-one", "open complaints come first");
    let overview: serde_json::Value = server
        .client()
        .get(server.url("/api/admin/overview"))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(overview["complaints_overdue"], 1);
    server.stop();

    let tail = stdout(&run(&data, &["audit", "tail", "-n", "100"], true));
    assert!(tail.contains("\"action\":\"complaint.file\""), "{tail}");
    assert!(tail.contains("\"action\":\"complaint.answer\""), "{tail}");
    assert!(
        !tail.contains("13800000000"),
        "complaint text must not be copied into the audit log"
    );
    run(&data, &["audit", "verify"], true);
}
