//! Integrity of the authorization state through the real binary: a role
//! written into `meta/anyu.db` without the master key is refused by name and
//! audited; output review follows the data the job read.

use crate::common::{
    People, TestServer, add_people, exec_sqlite, grant_on, prepared_data_dir, run, stdout, submit,
    vote_ok, wait_job,
};

/// An insider with file access makes a researcher an admin by SQL: the
/// server refuses to use the row (500 `metadata_tampered`), never lets the
/// researcher in as an admin, and the chain records which row failed.
#[test]
fn a_researcher_made_admin_by_sql_is_refused_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    add_people(&data);
    exec_sqlite(
        &data.join("meta/anyu.db"),
        "UPDATE users SET role = 'admin' WHERE username = 'r_li'",
    );
    let server = TestServer::start(&data);
    let body = serde_json::json!({ "username": "r_li", "password": crate::common::PASSWORD });
    let (status, answer) = server.call("POST", "/api/auth/login", None, Some(&body));
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["error"]["code"], "metadata_tampered", "{answer}");
    // An admin's listing of accounts meets the same row.
    let admin = server.login("a_zhang");
    let (status, answer) = server.call("GET", "/api/admin/users", Some(&admin), None);
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["error"]["code"], "metadata_tampered");
    server.stop();
    let tail = stdout(&run(&data, &["audit", "tail", "-n", "1000"], true));
    assert!(
        tail.lines()
            .any(|l| l.contains("\"action\":\"metadata.tampered\"") && l.contains("users:")),
        "{tail}"
    );
}

/// A grant on social-insurance and medical data; the job reads the
/// social-insurance data only. The medical provider's steward may neither
/// read its packet nor vote; the social-insurance steward's approval is the
/// one that counts.
#[test]
fn output_review_follows_the_data_the_job_read() {
    const SI: &[&str] = &[
        "person_id",
        "district",
        "contribution_base",
        "months_contributed",
    ];
    const MC: &[&str] = &["claim_id", "person_id", "hospital"];
    let dir = prepared_data_dir(600, &["social_insurance", "medical_claims"]);
    let data = dir.path().join("data");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let grant = grant_on(
        &server,
        &p,
        &[("social_insurance", SI), ("medical_claims", MC)],
        "invisible",
    );
    let sql = "SELECT district, avg(contribution_base) FILTER (WHERE months_contributed > 500) AS a \
               FROM social_insurance GROUP BY district";
    let (status, body) = submit(&server, &p.researcher, &grant, sql);
    assert_eq!(status, 202, "{body}");
    let job = body["id"].as_str().unwrap().to_string();
    let own = wait_job(&server, &p.researcher, &job);
    assert_eq!(own["status"], "pending_review", "{own}");

    let (status, answer) = server.call(
        "GET",
        &format!("/api/jobs/{job}/review"),
        Some(&p.other_steward),
        None,
    );
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"]["code"], "not_a_provider_of_the_data");
    let (status, answer) = server.call(
        "POST",
        &format!("/api/jobs/{job}/review"),
        Some(&p.other_steward),
        Some(&serde_json::json!({ "decision": "approve", "comment": "" })),
    );
    assert_eq!(status, 403, "{answer}");
    // The medical steward's queue does not list it either.
    let queue = server.expect(200, "GET", "/api/reviews", Some(&p.other_steward), None);
    assert!(!queue.to_string().contains(&job), "{queue}");

    let approve = serde_json::json!({ "decision": "approve", "comment": "" });
    let mut answer = vote_ok(&server, &p.admin, &job, &approve);
    if answer["status"] != "released" {
        answer = vote_ok(&server, &p.steward, &job, &approve);
    }
    assert_eq!(answer["status"], "released", "{answer}");
}

/// The one-writer lock is the audit directory itself: with a server
/// running, unlinking and recreating `audit/audit.lock` (the old lock
/// file) lets no second process write.
#[test]
fn a_recreated_lock_file_lets_no_second_writer_in() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    let server = TestServer::start(&data);
    let lock = data.join("audit/audit.lock");
    let _ = std::fs::remove_file(&lock);
    std::fs::write(&lock, b"").unwrap();
    let out = crate::common::anyu(&data)
        .args(["user", "add", "--username", "intruder", "--role", "admin"])
        .args(["--real-name", "测试用户", "--organisation", "某单位"])
        .args(["--org-type", "government"])
        .args(["--credit-code", &crate::common::codes_for("某单位").0])
        .args(["--resident-id", &crate::common::codes_for("intruder").1])
        .env("ANYU_NEW_PASSWORD", crate::common::PASSWORD)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a second writer got in");
    let err = crate::common::stderr(&out);
    assert!(err.contains("in use by another anyu process"), "{err}");
    server.stop();
    // Once the server stopped, the same command works.
    crate::common::add_user(&data, "later", "admin", "某单位", "government", &[]);
}

/// An insider widens a read-only API token (every scope, a later expiry) and
/// moves a researcher's session to an admin by SQL: neither credential works
/// any more (500 `metadata_tampered`, never the widened rights), and the
/// chain names each row.
#[test]
fn an_edited_token_or_session_is_refused_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    add_people(&data);
    let server = TestServer::start(&data);
    let session = server.login("r_li");
    let created = server.expect(
        201,
        "POST",
        "/api/me/tokens",
        Some(&session),
        Some(&serde_json::json!({
            "name": "script", "password": crate::common::PASSWORD, "scopes": ["read"]
        })),
    );
    let token = created["token"].as_str().unwrap().to_string();
    let token_id = created["info"]["id"].as_str().unwrap().to_string();
    let project = serde_json::json!({
        "title": "范围测试", "scenario_category": "academic_research",
        "scenario_description": "检验令牌的使用范围。"
    });
    server.expect(403, "POST", "/api/projects", Some(&token), Some(&project));
    let db = data.join("meta/anyu.db");
    exec_sqlite(
        &db,
        &format!(
            "UPDATE api_tokens SET scopes = 'read,jobs,review,admin', \
             expires_at = '2099-01-01T00:00:00.000000Z' WHERE id = '{token_id}'"
        ),
    );
    let (status, answer) = server.call("POST", "/api/projects", Some(&token), Some(&project));
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["error"]["code"], "metadata_tampered", "{answer}");

    // The researcher's own session, moved to the admin.
    let other = server.login("r_other");
    exec_sqlite(
        &db,
        "UPDATE sessions SET user_id = (SELECT id FROM users WHERE username = 'a_zhang') \
         WHERE user_id = (SELECT id FROM users WHERE username = 'r_other')",
    );
    let (status, answer) = server.call("GET", "/api/admin/users", Some(&other), None);
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["error"]["code"], "metadata_tampered", "{answer}");
    // Untouched credentials still work.
    server.expect(200, "GET", "/api/me", Some(&session), None);
    server.stop();
    let tail = stdout(&run(&data, &["audit", "tail", "-n", "1000"], true));
    for object in [format!("api_tokens:{token_id}"), "sessions:".to_string()] {
        assert!(
            tail.lines()
                .any(|l| l.contains("\"action\":\"metadata.tampered\"")
                    && l.contains(&format!("\"object\":\"{object}"))),
            "{object}: {tail}"
        );
    }
}

/// An insider adds a researcher of another university to a project's
/// members, and rewrites a queued job's SQL and requester, by SQL: the
/// project and the job are refused by name, so neither the new member nor
/// the rewritten query gets anywhere.
#[test]
fn an_edited_project_or_job_is_refused() {
    let dir = prepared_data_dir(200, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let project = crate::common::new_project(&server, &p.researcher, "academic_research");
    let grant = grant_on(
        &server,
        &p,
        &[(
            "social_insurance",
            &["person_id", "district", "contribution_base"],
        )],
        "invisible",
    );
    let job = crate::common::run_job(
        &server,
        &p.researcher,
        &grant,
        "SELECT district, count(*) AS n FROM social_insurance GROUP BY district",
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let db = data.join("meta/anyu.db");
    exec_sqlite(
        &db,
        &format!(
            "UPDATE projects SET members_json = json_array((SELECT id FROM users \
             WHERE username = 'r_other')) WHERE id = '{project}'"
        ),
    );
    let (status, answer) = server.call(
        "GET",
        &format!("/api/projects/{project}"),
        Some(&p.other_researcher),
        None,
    );
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["error"]["code"], "metadata_tampered", "{answer}");

    exec_sqlite(
        &db,
        &format!(
            "UPDATE jobs SET query_text = 'SELECT * FROM social_insurance', \
             requester_id = (SELECT id FROM users WHERE username = 'r_other') WHERE id = '{job}'"
        ),
    );
    for token in [&p.researcher, &p.other_researcher, &p.admin] {
        let (status, answer) = server.call("GET", &format!("/api/jobs/{job}"), Some(token), None);
        assert_eq!(status, 500, "{answer}");
        assert_eq!(answer["error"]["code"], "metadata_tampered", "{answer}");
    }
    server.stop();
    let tail = stdout(&run(&data, &["audit", "tail", "-n", "1000"], true));
    for object in [format!("projects:{project}"), format!("jobs:{job}")] {
        assert!(
            tail.lines()
                .any(|l| l.contains("\"action\":\"metadata.tampered\"")
                    && l.contains(&format!("\"object\":\"{object}\""))),
            "{object}: {tail}"
        );
    }
}
