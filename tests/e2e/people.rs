//! Separation of duties by organisation and by person, privileged account
//! changes, one-time codes (issue #16), through the real binary.

use serde_json::{Value, json};

use crate::common::{
    self, People, SI_PROVIDER, Stage, TestServer, add_people, add_user, add_user_as,
    application_at, codes_for, new_project, prepared_data_dir, run, run_job, stdout, vote, vote_ok,
};

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn user<'a>(users: &'a Value, username: &str) -> &'a Value {
    users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == username)
        .unwrap_or_else(|| panic!("no account {username}: {users}"))
}

fn audit_actions(server: &TestServer, token: &str) -> Vec<(String, String, String)> {
    let events = server.expect(
        200,
        "GET",
        "/api/audit/events?limit=1000",
        Some(token),
        None,
    );
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_zero_width_space_does_not_make_another_organisation() {
    let dir = prepared_data_dir(200, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    // The researcher's university, spelt with a zero-width space and a
    // full-width space: the same organisation, whatever credit code is given.
    add_user(
        &data,
        "s_sneaky",
        "steward",
        "深圳\u{200B}大学\u{3000}",
        "university",
        &["--agency", SI_PROVIDER],
    );
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let users = server.expect(200, "GET", "/api/admin/users", Some(&p.admin), None);
    assert_eq!(
        user(&users, "s_sneaky")["organisation_id"],
        user(&users, "r_li")["organisation_id"],
        "{users}"
    );
    assert_eq!(user(&users, "s_sneaky")["organisation"], "深圳大学");

    // Registering it again under the same name is refused.
    let name = "深圳\u{200B}大学";
    let (got, body) = server.call(
        "POST",
        "/api/admin/organisations",
        Some(&p.admin),
        Some(&json!({
            "name": name, "credit_code": codes_for("another").0,
            "organisation_type": "university",
        })),
    );
    assert_eq!((got, code(&body)), (409, "conflict"), "{body}");
    // A bad credit code is refused without echoing it.
    let (got, body) = server.call(
        "POST",
        "/api/admin/organisations",
        Some(&p.admin),
        Some(&json!({
            "name": "深圳新大学", "credit_code": "91440300MA5FAKE00X",
            "organisation_type": "university",
        })),
    );
    assert_eq!(got, 400, "{body}");
    assert!(!body.to_string().contains("MA5FAKE"), "{body}");

    // The steward cannot review their own university's application nor
    // read or vote on its results.
    let sneaky = server.login("s_sneaky");
    let project = new_project(&server, &p.researcher, "academic_research");
    let (app, _) = application_at(&server, &p, &project, Stage::UnderReview);
    let (got, body) = server.call(
        "POST",
        &format!("/api/applications/{app}/approve"),
        Some(&sneaky),
        None,
    );
    assert_eq!(code(&body), "same_organisation", "{got} {body}");
    let (_, grant) = application_at(&server, &p, &project, Stage::Signed);
    let job = run_job(
        &server,
        &p.researcher,
        &grant.unwrap(),
        "SELECT district, count(*) AS n FROM social_insurance GROUP BY district",
    );
    let job = job["id"].as_str().unwrap();
    let (got, body) = server.call(
        "GET",
        &format!("/api/jobs/{job}/review"),
        Some(&sneaky),
        None,
    );
    assert_eq!((got, code(&body)), (403, "same_organisation"), "{body}");
    server.stop();
}

#[test]
fn one_person_with_two_accounts_cannot_cast_both_votes() {
    let dir = prepared_data_dir(200, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    // s_wang's second account, in another organisation, same person.
    add_user_as(
        &data,
        "s_wang_alt",
        "s_wang",
        "steward",
        "深圳市医疗保障局",
        "government",
        &["--agency", SI_PROVIDER],
    );
    // A colleague of s_wang: another person, the same organisation.
    add_user(
        &data,
        "s_colleague",
        "steward",
        SI_PROVIDER,
        "government",
        &["--agency", SI_PROVIDER],
    );
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let alt = server.login("s_wang_alt");
    let colleague = server.login("s_colleague");
    let project = new_project(&server, &p.researcher, "academic_research");
    let (_, grant) = application_at(&server, &p, &project, Stage::Signed);
    let grant = grant.unwrap();
    let sql = "SELECT district, count(*) AS n FROM social_insurance GROUP BY district";

    // L3: two approvals. The second account of the same person is refused.
    let job = run_job(&server, &p.researcher, &grant, sql);
    let job = job["id"].as_str().unwrap().to_string();
    assert_eq!(
        vote_ok(&server, &p.steward, &job, &json!({ "decision": "approve" }))["status"],
        "pending_review"
    );
    let (got, body) = vote(&server, &alt, &job, &json!({ "decision": "approve" }));
    assert_eq!((got, code(&body)), (403, "same_person"), "{body}");
    // Two persons of one organisation are not enough at L3 either.
    let after = vote_ok(&server, &colleague, &job, &json!({ "decision": "approve" }));
    assert_eq!(after["status"], "pending_review", "{after}");
    // A platform administrator completes it.
    let done = vote_ok(&server, &p.admin, &job, &json!({ "decision": "approve" }));
    assert_eq!(done["status"], "released", "{done}");

    // The same person may not approve an application twice either.
    let (app, _) = application_at(&server, &p, &project, Stage::UnderReview);
    server.expect(
        200,
        "POST",
        &format!("/api/applications/{app}/approve"),
        Some(&p.steward),
        None,
    );
    let (got, body) = server.call(
        "POST",
        &format!("/api/applications/{app}/approve"),
        Some(&alt),
        None,
    );
    assert_eq!((got, code(&body)), (403, "duplicate_approver"), "{body}");
    server.stop();
}

#[test]
fn a_reset_gives_the_owner_a_one_time_code_and_ends_every_credential() {
    let dir = prepared_data_dir(50, &[]);
    let data = dir.path().join("data");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let token = server.expect(
        201,
        "POST",
        "/api/me/tokens",
        Some(&p.researcher),
        Some(&json!({ "name": "script", "password": common::PASSWORD, "scopes": ["read"] })),
    )["token"]
        .as_str()
        .unwrap()
        .to_string();

    let reset = server.expect(
        201,
        "POST",
        "/api/admin/users/r_li/reset-password",
        Some(&p.admin),
        None,
    );
    assert!(reset.get("password").is_none(), "{reset}");
    let one_time = reset["one_time_code"].as_str().unwrap().to_string();
    assert!(reset["code_expires_at"].is_string(), "{reset}");
    // The session, the API token and the old password are gone.
    for t in [&p.researcher, &token] {
        let (got, _) = server.call("GET", "/api/me", Some(t), None);
        assert_eq!(got, 401);
    }
    let (got, _) = server.call(
        "POST",
        "/api/auth/login",
        None,
        Some(&json!({ "username": "r_li", "password": common::PASSWORD })),
    );
    assert_eq!(got, 401);

    // The code opens a session that can do nothing but change the password.
    let login = server.expect(
        200,
        "POST",
        "/api/auth/login",
        None,
        Some(&json!({ "username": "r_li", "password": one_time })),
    );
    assert_eq!(login["user"]["must_change_password"], true, "{login}");
    let limited = login["token"].as_str().unwrap().to_string();
    let (got, body) = server.call("GET", "/api/projects", Some(&limited), None);
    assert_eq!(
        (got, code(&body)),
        (403, "password_change_required"),
        "{body}"
    );
    let (got, body) = server.call(
        "POST",
        "/api/me/tokens",
        Some(&limited),
        Some(&json!({ "name": "sneaky", "password": one_time, "scopes": ["read"] })),
    );
    assert_eq!(
        (got, code(&body)),
        (403, "password_change_required"),
        "{body}"
    );
    // Finishing needs the owner's 身份证号, which the platform never shows.
    let new_password = "a passphrase of my own";
    let change = |resident_id: Option<&str>| {
        server.call(
            "POST",
            "/api/me/password",
            Some(&limited),
            Some(&json!({
                "current_password": one_time, "new_password": new_password,
                "resident_id": resident_id,
            })),
        )
    };
    assert_eq!(change(None).0, 401);
    assert_eq!(change(Some(&codes_for("someone else").1)).0, 401);
    assert_eq!(change(Some(&codes_for("r_li").1)).0, 204);
    let (got, _) = server.call("GET", "/api/projects", Some(&limited), None);
    assert_eq!(got, 200, "the session is a normal one now");
    // The code is spent; the new password works.
    let (got, _) = server.call(
        "POST",
        "/api/auth/login",
        None,
        Some(&json!({ "username": "r_li", "password": one_time })),
    );
    assert_eq!(got, 401);
    server.expect(
        200,
        "POST",
        "/api/auth/login",
        None,
        Some(&json!({ "username": "r_li", "password": new_password })),
    );

    // A new account gets a one-time code too, never a password.
    let orgs = server.expect(200, "GET", "/api/admin/organisations", Some(&p.admin), None);
    let szu = orgs
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "深圳大学")
        .unwrap()["id"]
        .clone();
    let created = server.expect(
        201,
        "POST",
        "/api/admin/users",
        Some(&p.admin),
        Some(&json!({
            "username": "r_new", "real_name": "新研究员", "organisation_id": szu,
            "resident_id": codes_for("r_new").1, "role": "researcher",
        })),
    );
    assert_eq!(created["outcome"], "done", "{created}");
    assert_eq!(created["user"]["must_change_password"], true);
    assert!(created.get("password").is_none());
    let audit = audit_actions(&server, &p.auditor);
    assert!(audit.contains(&(
        "user.reset_password".into(),
        "a_zhang".into(),
        "success".into()
    )));
    server.stop();
}

#[test]
fn privileged_account_changes_need_a_second_admin() {
    let dir = prepared_data_dir(50, &[]);
    let data = dir.path().join("data");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let orgs = server.expect(200, "GET", "/api/admin/organisations", Some(&p.admin), None);
    let gov = orgs
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "深圳市政务服务数据管理局")
        .unwrap()["id"]
        .clone();
    let new_admin = json!({
        "username": "a_new", "real_name": "新管理员", "organisation_id": gov,
        "resident_id": codes_for("a_new").1, "role": "admin",
    });
    let asked = server.expect(
        202,
        "POST",
        "/api/admin/users",
        Some(&p.admin),
        Some(&new_admin),
    );
    assert_eq!(asked["outcome"], "requested", "{asked}");
    let request = asked["request"]["id"].as_str().unwrap().to_string();
    let (got, _) = server.call(
        "POST",
        "/api/auth/login",
        None,
        Some(&json!({ "username": "a_new", "password": "x" })),
    );
    assert_eq!(got, 401, "no account before the approval");
    // The requester cannot approve their own request.
    let (got, body) = server.call(
        "POST",
        &format!("/api/admin/account-requests/{request}/approve"),
        Some(&p.admin),
        None,
    );
    assert_eq!((got, code(&body)), (403, "own_request"), "{body}");
    // Another admin can; the one-time code goes to the approver, for the owner.
    let done = server.expect(
        201,
        "POST",
        &format!("/api/admin/account-requests/{request}/approve"),
        Some(&p.second_admin),
        None,
    );
    assert_eq!(done["outcome"], "done", "{done}");
    assert_eq!(done["user"]["role"], "admin");
    assert!(done["one_time_code"].is_string());
    let (got, body) = server.call(
        "POST",
        &format!("/api/admin/account-requests/{request}/approve"),
        Some(&p.second_admin),
        None,
    );
    assert_eq!(got, 409, "decided once: {body}");

    // Resetting a steward's password is a request too.
    let asked = server.expect(
        202,
        "POST",
        "/api/admin/users/s_wang/reset-password",
        Some(&p.admin),
        None,
    );
    let reset_request = asked["request"]["id"].as_str().unwrap().to_string();
    let (got, _) = server.call("GET", "/api/me", Some(&p.steward), None);
    assert_eq!(got, 200, "nothing happens before the approval");
    server.expect(
        200,
        "POST",
        &format!("/api/admin/account-requests/{reset_request}/refuse"),
        Some(&p.second_admin),
        None,
    );
    let (got, _) = server.call("GET", "/api/me", Some(&p.steward), None);
    assert_eq!(got, 200, "a refused reset changes nothing");

    // A researcher's reset needs nobody else.
    server.expect(
        201,
        "POST",
        "/api/admin/users/r_other/reset-password",
        Some(&p.admin),
        None,
    );
    let audit = audit_actions(&server, &p.auditor);
    for (action, actor, outcome) in [
        ("account_request.create", "a_zhang", "success"),
        ("account_request.approve", "a_zhang", "denied"),
        ("account_request.approve", "a_chen", "success"),
        ("account_request.refuse", "a_chen", "success"),
        ("user.create", "a_chen", "success"),
    ] {
        assert!(
            audit.contains(&(action.into(), actor.into(), outcome.into())),
            "{action} by {actor}: {audit:?}"
        );
    }
    // A pending request made by the only admin is decided on the host.
    let asked = server.expect(
        202,
        "POST",
        "/api/admin/users/s_zhao/reset-password",
        Some(&p.admin),
        None,
    );
    let host_request = asked["request"]["id"].as_str().unwrap().to_string();
    server.stop();
    let out = stdout(&run(&data, &["user", "approve", &host_request], true));
    assert!(out.contains("one-time code"), "{out}");
    let listed = stdout(&run(&data, &["user", "requests"], true));
    assert!(listed.contains("decided by cli:"), "{listed}");
}
