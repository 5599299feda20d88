//! The access workflow through the real binary and HTTP: the happy path with
//! four accounts, illegal transitions, every eligibility rule, separation of
//! duties, materials, sessions, grant expiry, and the audit trail of it all.

use crate::common;

use crate::common::{
    People, SI_PROVIDER, Stage, TestServer, add_people, add_user, application_at, draft,
    new_project, prepared_data_dir, run, stdout, today_cst,
};
use serde_json::{Value, json};

fn cal() -> enclave::calendar::WorkCalendar {
    enclave::calendar::WorkCalendar::china_mainland()
}

fn events(server: &TestServer, auditor: &str, object: &str) -> Vec<Value> {
    let path = format!("/api/audit/events?object={}&limit=1000", urlencode(object));
    server
        .expect(200, "GET", &path, Some(auditor), None)
        .as_array()
        .unwrap()
        .clone()
}

fn actions(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn upload(
    server: &TestServer,
    token: &str,
    app: &str,
    name: &str,
    content_type: &str,
    bytes: &[u8],
) -> (u16, Value) {
    let resp = server
        .client()
        .post(server.url(&format!(
            "/api/applications/{app}/materials?name={}",
            urlencode(name)
        )))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(bytes.to_vec())
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap())
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

#[test]
fn happy_path_with_four_accounts() {
    let dir = prepared_data_dir(300, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let r = p.researcher.as_str();

    // Researcher: project, draft, material.
    let project = new_project(&server, r, "public_policy");
    let app = server.expect(
        201,
        "POST",
        "/api/applications",
        Some(r),
        Some(&draft(&project)),
    );
    let id = app["id"].as_str().unwrap().to_string();
    assert_eq!(app["status"], "draft");
    assert_eq!(app["eligibility"], json!([]), "{app}");
    assert_eq!(app["providers"], json!([SI_PROVIDER]));
    let pdf = b"%PDF-1.7\n% ethics approval of the research plan\n";
    let (status, material) = upload(&server, r, &id, "伦理审查批件.pdf", "application/pdf", pdf);
    assert_eq!(status, 201, "{material}");
    assert_eq!(material["bytes"], pdf.len());

    // Submit: completeness due in 3 working days.
    let submitted = server.expect(
        200,
        "POST",
        &format!("/api/applications/{id}/submit"),
        Some(r),
        None,
    );
    assert_eq!(submitted["status"], "submitted");
    let due3 = cal().add_working_days(today_cst(), 3).to_string();
    assert_eq!(submitted["completeness_due"], due3);
    assert_eq!(submitted["due_date"], due3);
    assert_eq!(submitted["overdue"], false);

    // The steward sees it in the queue, with its due date.
    let queue = server.expect(200, "GET", "/api/applications", Some(&p.steward), None);
    let row = queue
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap();
    assert_eq!(row["due_date"], due3);
    // ... and can read the researcher's material.
    let m = material["id"].as_str().unwrap();
    let got = server
        .client()
        .get(server.url(&format!("/api/applications/{id}/materials/{m}")))
        .bearer_auth(&p.steward)
        .send()
        .unwrap();
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.bytes().unwrap().as_ref(), pdf);

    // Admin: completeness check; the review is due in 10 working days.
    server.expect(
        200,
        "POST",
        &format!("/api/applications/{id}/completeness/start"),
        Some(&p.admin),
        None,
    );
    let review = server.expect(
        200,
        "POST",
        &format!("/api/applications/{id}/completeness/pass"),
        Some(&p.admin),
        None,
    );
    assert_eq!(review["status"], "under_review");
    assert_eq!(
        review["review_due"],
        cal().add_working_days(today_cst(), 10).to_string()
    );
    assert_eq!(review["progress"]["stewards_missing"], json!([SI_PROVIDER]));
    assert_eq!(review["progress"]["admin_missing"], true);
    let overview = server.expect(200, "GET", "/api/admin/overview", Some(&p.admin), None);
    assert_eq!(overview["applications_by_status"]["under_review"], 1);
    assert_eq!(overview["applications_overdue"], 0);

    // Joint review: the steward narrows the grant, then the admin approves.
    let conditions = json!({ "conditions": {
        "row_filters": [{ "dataset_id": "social_insurance", "filter": {
            "conditions": [{ "op": "in", "column": "district", "values": ["福田区", "南山区"] }] } }],
        "budgets": { "jobs": 50, "epsilon": 2.0, "delta": 1e-7, "cpu_seconds": 600.0, "released_rows": 5000 },
    }});
    let half = server.expect(
        200,
        "POST",
        &format!("/api/applications/{id}/approve"),
        Some(&p.steward),
        Some(&conditions),
    );
    assert_eq!(half["status"], "under_review");
    assert_eq!(half["progress"]["stewards_missing"], json!([]));
    assert_eq!(half["progress"]["admin_missing"], true);
    let approved = server.expect(
        200,
        "POST",
        &format!("/api/applications/{id}/approve"),
        Some(&p.admin),
        None,
    );
    assert_eq!(approved["status"], "approved");

    // Agreement: shown, then signed by its hash; a stale hash is refused.
    let text = server.expect(
        200,
        "GET",
        &format!("/api/applications/{id}/agreement"),
        Some(r),
        None,
    );
    assert!(text["text"].as_str().unwrap().contains(&id));
    assert!(
        text["text"]
            .as_str()
            .unwrap()
            .contains("social_insurance@v1")
    );
    let sign_path = format!("/api/applications/{id}/agreement/sign");
    let stale = server.expect(
        409,
        "POST",
        &sign_path,
        Some(r),
        Some(&json!({ "agreement_sha256": "00".repeat(32) })),
    );
    assert_eq!(code(&stale), "conflict");
    let signed = server.expect(
        201,
        "POST",
        &sign_path,
        Some(r),
        Some(&json!({ "agreement_sha256": text["sha256"] })),
    );
    let grant = &signed["grant"];
    let grant_id = grant["id"].as_str().unwrap().to_string();
    assert_eq!(grant["state"]["state"], "active");
    assert_eq!(grant["usage_method"], "invisible");
    assert_eq!(grant["scenario_category"], "public_policy");
    let granted = &grant["datasets"][0];
    assert_eq!(
        granted["version"],
        json!({ "policy": "pinned", "version": 1 })
    );
    assert_eq!(
        granted["columns"],
        json!([
            "person_id",
            "district",
            "contribution_base",
            "months_contributed"
        ])
    );
    assert_eq!(
        granted["row_filter"]["conditions"][0]["values"],
        json!(["福田区", "南山区"])
    );
    assert_eq!(grant["budgets"]["jobs"], 50);
    assert_eq!(grant["budgets"]["epsilon"], 2.0);
    assert_eq!(grant["budgets"]["released_rows"], 5000);
    assert_eq!(grant["period_start"], today_cst().to_string());
    let again = server.expect(
        409,
        "POST",
        &sign_path,
        Some(r),
        Some(&json!({ "agreement_sha256": text["sha256"] })),
    );
    assert_eq!(code(&again), "illegal_transition");

    // The receipt verifies with the platform key; a changed one does not.
    let receipt = server
        .client()
        .get(server.url(&format!("/api/applications/{id}/agreement/receipt")))
        .bearer_auth(r)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let receipt_path = dir.path().join("receipt.json");
    std::fs::write(&receipt_path, &receipt).unwrap();
    let ok = stdout(&run(
        &data,
        &["verify-receipt", receipt_path.to_str().unwrap()],
        true,
    ));
    assert!(ok.contains("receipt OK"), "{ok}");
    let forged = receipt.replace(&today_cst().to_string(), "2020-01-01");
    std::fs::write(&receipt_path, forged).unwrap();
    let bad = stdout(&run(
        &data,
        &["verify-receipt", receipt_path.to_str().unwrap()],
        false,
    ));
    assert!(bad.contains("INVALID"), "{bad}");

    // The grant: visible to its holder, the steward, admin and auditor; usable.
    let view = server.expect(
        200,
        "GET",
        &format!("/api/grants/{grant_id}"),
        Some(r),
        None,
    );
    assert_eq!(view["usable"], true);
    let app_view = server.expect(
        200,
        "GET",
        &format!("/api/applications/{id}"),
        Some(&p.auditor),
        None,
    );
    assert_eq!(app_view["grant_id"], grant_id.as_str());
    assert_eq!(app_view["status"], "agreement_signed");

    // Usage feedback (SZ:43(1)).
    let report = json!({
        "period_start": today_cst().to_string(), "period_end": today_cst().to_string(),
        "summary": "完成福田区、南山区缴费基数的分组统计。",
        "outputs": [{ "kind": "paper", "title": "深圳社保缴费基数的区域差异", "reference": "doi:10.0000/example" }],
    });
    server.expect(
        201,
        "POST",
        &format!("/api/grants/{grant_id}/reports"),
        Some(r),
        Some(&report),
    );
    let reports = server.expect(
        200,
        "GET",
        &format!("/api/grants/{grant_id}/reports"),
        Some(&p.steward),
        None,
    );
    assert_eq!(reports.as_array().unwrap().len(), 1);

    // Misuse handling (SZ:63): suspend, reinstate.
    let suspended = server.expect(
        200,
        "POST",
        &format!("/api/grants/{grant_id}/suspend"),
        Some(&p.steward),
        Some(&json!({ "reason": "发现超范围查询，要求整改" })),
    );
    assert_eq!(suspended["state"]["state"], "suspended");
    assert_eq!(suspended["usable"], false);
    // A suspension ends with a written reason, kept in the history.
    let (got, body) = server.call(
        "POST",
        &format!("/api/grants/{grant_id}/reinstate"),
        Some(&p.admin),
        Some(&json!({ "reason": "好" })),
    );
    assert_eq!(
        (got, body["error"]["code"].as_str()),
        (400, Some("reason_required")),
        "{body}"
    );
    let back = server.expect(
        200,
        "POST",
        &format!("/api/grants/{grant_id}/reinstate"),
        Some(&p.admin),
        Some(&json!({ "reason": "已完成整改，恢复使用" })),
    );
    assert_eq!(back["usable"], true);
    let lifted = back["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(lifted["reason"], "已完成整改，恢复使用", "{lifted}");
    let history: Vec<&str> = back["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["create", "suspend", "reinstate"]);

    // One audit event per state change, in order.
    let app_events = events(&server, &p.auditor, &format!("application:{id}"));
    let successes: Vec<String> = app_events
        .iter()
        .filter(|e| e["outcome"] == "success")
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        successes,
        [
            "application.create",
            "application.material.upload",
            "application.submit",
            "application.material.read",
            "application.start_completeness_check",
            "application.completeness_passed",
            "application.approve",
            "application.approve",
            "agreement.sign",
        ]
    );
    let denied: Vec<String> = app_events
        .iter()
        .filter(|e| e["outcome"] == "denied")
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        denied,
        ["agreement.sign", "agreement.sign"],
        "the stale and the repeated signature"
    );
    let grant_events = events(&server, &p.auditor, &format!("grant:{grant_id}"));
    assert_eq!(
        actions(&grant_events),
        [
            "grant.create",
            "usage_report.file",
            "grant.suspend",
            // The reinstatement without a proper reason, refused (denied) …
            "grant.reinstate",
            // … and the one with it.
            "grant.reinstate"
        ]
    );
    let reinstated = grant_events.last().unwrap();
    assert_eq!(reinstated["outcome"], "success");
    assert_eq!(
        reinstated["details"]["reason"], "已完成整改，恢复使用",
        "{reinstated}"
    );
    // The application's own history has one entry per step too.
    let steps: Vec<&str> = app_view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "create",
            "submit",
            "start_completeness_check",
            "completeness_passed",
            "approve",
            "approve",
            "sign_agreement"
        ]
    );
    server.stop();
    let verify = stdout(&run(&data, &["audit", "verify"], true));
    assert!(verify.contains("audit chain OK"), "{verify}");
}

#[test]
fn illegal_transitions_are_refused() {
    let dir = prepared_data_dir(200, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let r = p.researcher.as_str();
    let project = new_project(&server, r, "academic_research");
    let post = |token: &str, id: &str, step: &str, body: Option<&Value>| {
        server.call(
            "POST",
            &format!("/api/applications/{id}/{step}"),
            Some(token),
            body,
        )
    };
    let reason = json!({ "reason": "不符合要求，请修改" });

    // On a submitted application.
    let (id, _) = application_at(&server, &p, &project, Stage::Submitted);
    for (token, step, body, status, want) in [
        (r, "submit", None, 409, "illegal_transition"),
        (
            p.admin.as_str(),
            "completeness/pass",
            None,
            409,
            "illegal_transition",
        ),
        (p.admin.as_str(), "approve", None, 409, "illegal_transition"),
        (
            p.admin.as_str(),
            "reject",
            Some(&reason),
            409,
            "illegal_transition",
        ),
        (
            p.admin.as_str(),
            "return",
            Some(&reason),
            409,
            "illegal_transition",
        ),
    ] {
        let (got, body) = post(token, &id, step, body);
        assert_eq!(
            (got, code(&body)),
            (status, want),
            "{step} on submitted: {body}"
        );
    }
    // Editing after submission.
    let (got, body) = server.call(
        "PUT",
        &format!("/api/applications/{id}"),
        Some(r),
        Some(&draft(&project)),
    );
    assert_eq!((got, code(&body)), (409, "conflict"), "{body}");
    let (got, _) = upload(
        &server,
        r,
        &id,
        "late.pdf",
        "application/pdf",
        b"%PDF-1.4 late",
    );
    assert_eq!(got, 409);
    // Agreement before approval.
    let (got, body) = server.call(
        "GET",
        &format!("/api/applications/{id}/agreement"),
        Some(r),
        None,
    );
    assert_eq!((got, code(&body)), (409, "conflict"));
    let (got, body) = post(
        r,
        &id,
        "agreement/sign",
        Some(&json!({ "agreement_sha256": "x" })),
    );
    assert_eq!((got, code(&body)), (409, "illegal_transition"), "{body}");

    // Under review: a second completeness check, a reason-less rejection.
    let (id, _) = application_at(&server, &p, &project, Stage::UnderReview);
    let (got, body) = post(&p.admin, &id, "completeness/start", None);
    assert_eq!((got, code(&body)), (409, "illegal_transition"));
    let (got, body) = post(&p.admin, &id, "reject", Some(&json!({ "reason": "不行" })));
    assert_eq!((got, code(&body)), (400, "reason_required"), "{body}");
    // Rejection is final.
    let (got, _) = post(&p.admin, &id, "reject", Some(&reason));
    assert_eq!(got, 200);
    for step in ["completeness/start", "approve"] {
        let (got, body) = post(&p.admin, &id, step, None);
        assert_eq!(
            (got, code(&body)),
            (409, "illegal_transition"),
            "{step} after reject"
        );
    }
    let (got, body) = post(r, &id, "submit", None);
    assert_eq!((got, code(&body)), (409, "illegal_transition"));

    // Returned: the applicant edits and resubmits; reviewers cannot act meanwhile.
    let (id, _) = application_at(&server, &p, &project, Stage::CompletenessCheck);
    let returned = server.expect(
        200,
        "POST",
        &format!("/api/applications/{id}/return"),
        Some(&p.admin),
        Some(&reason),
    );
    assert_eq!(returned["status"], "returned");
    let (got, body) = post(&p.admin, &id, "completeness/start", None);
    assert_eq!((got, code(&body)), (409, "illegal_transition"));
    server.expect(
        200,
        "PUT",
        &format!("/api/applications/{id}"),
        Some(r),
        Some(&draft(&project)),
    );
    let again = server.expect(
        200,
        "POST",
        &format!("/api/applications/{id}/submit"),
        Some(r),
        None,
    );
    assert_eq!(again["status"], "submitted");

    // Grants: reinstate an active one, revoke twice, suspend a revoked one.
    let (_, grant) = application_at(&server, &p, &project, Stage::Signed);
    let g = grant.unwrap();
    let gpost = |step: &str, body: Option<&Value>| {
        server.call(
            "POST",
            &format!("/api/grants/{g}/{step}"),
            Some(&p.admin),
            body,
        )
    };
    let (got, body) = gpost("reinstate", Some(&reason));
    assert_eq!((got, code(&body)), (409, "illegal_transition"));
    let (got, body) = gpost("suspend", Some(&json!({ "reason": "短" })));
    assert_eq!((got, code(&body)), (400, "reason_required"));
    assert_eq!(gpost("revoke", Some(&reason)).0, 200);
    for step in ["revoke", "suspend"] {
        let (got, body) = gpost(step, Some(&reason));
        assert_eq!(
            (got, code(&body)),
            (409, "illegal_transition"),
            "{step}: {body}"
        );
    }
    let view = server.expect(200, "GET", &format!("/api/grants/{g}"), Some(r), None);
    assert_eq!(view["state"]["state"], "revoked");
    assert_eq!(view["usable"], false);

    // Each refusal was audited, and refused steps changed nothing.
    let denied = server.expect(
        200,
        "GET",
        "/api/audit/events?limit=1000",
        Some(&p.auditor),
        None,
    );
    let n = denied
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "denied")
        .count();
    assert!(n >= 17, "{n} denials audited");
    server.stop();
    run(&data, &["audit", "verify"], true);
}

#[test]
fn every_eligibility_rule_refuses_with_its_reason() {
    let dir = prepared_data_dir(
        200,
        &["social_insurance", "medical_claims", "min_living_allowance"],
    );
    let data = dir.path().join("data");
    add_people(&data);
    add_user(
        &data,
        "r_unverified",
        "researcher",
        "深圳大学",
        "university",
        &[],
    );
    add_user(
        &data,
        "r_company",
        "researcher",
        "某某科技有限公司",
        "enterprise",
        &["--verified"],
    );
    add_user(
        &data,
        "r_flagged",
        "researcher",
        "某某研究院",
        "research_institute",
        &["--verified"],
    );

    // With the default catalog setting a not-open dataset is unknown to applicants.
    {
        let server = TestServer::start(&data);
        let t = server.login("r_li");
        let project = new_project(&server, &t, "academic_research");
        let mut body = draft(&project);
        body["datasets"][0]["dataset_id"] = json!("min_living_allowance");
        let err = server.expect(400, "POST", "/api/applications", Some(&t), Some(&body));
        let unknown = server.expect(
            400,
            "POST",
            "/api/applications",
            Some(&t),
            Some(&{
                let mut b = draft(&project);
                b["datasets"][0]["dataset_id"] = json!("no_such_dataset");
                b
            }),
        );
        assert_eq!(err, unknown, "a hidden dataset answers like an unknown one");
        server.stop();
    }
    let config = data.join("anyu.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("# not_open = \"hidden\"", "not_open = \"name_only\""),
    )
    .unwrap();

    let server = TestServer::start(&data);
    let admin = server.login("a_zhang");
    server.expect(
        200,
        "POST",
        "/api/admin/users/r_flagged/credit-flags",
        Some(&admin),
        Some(&json!({ "flags": ["dishonest_debtor"] })),
    );

    // (who, scenario, change to the draft, expected refusal codes)
    type Change = fn(&mut Value);
    let cases: Vec<(&str, &str, Change, &[&str])> = vec![
        (
            "r_unverified",
            "academic_research",
            |_| {},
            &["not_verified"],
        ),
        (
            "r_company",
            "academic_research",
            |_| {},
            &["organisation_type_not_allowed"],
        ),
        ("r_flagged", "academic_research", |_| {}, &["credit_flag"]),
        ("r_li", "transport", |_| {}, &["scenario_not_allowed"]),
        (
            "r_li",
            "marketing",
            |_| {},
            &["scenario_not_allowed", "scenario_forbidden"],
        ),
        (
            "r_li",
            "academic_research",
            |d| {
                d["datasets"][0]["dataset_id"] = json!("medical_claims");
                d["datasets"][0]["columns"] = json!(["person_id"]);
                d["usage_method"] = json!("in_domain");
            },
            &["usage_method_not_allowed"],
        ),
        (
            "r_li",
            "academic_research",
            |d| d["datasets"][0]["columns"] = json!([]),
            &["no_columns"],
        ),
        (
            "r_li",
            "academic_research",
            |d| d["datasets"][0]["columns"] = json!(["person_id", "salary"]),
            &["unknown_column"],
        ),
        (
            "r_li",
            "academic_research",
            |d| d["purpose_is_research"] = json!(false),
            &["research_only"],
        ),
        (
            "r_li",
            "academic_research",
            |d| {
                d["datasets"][0]["dataset_id"] = json!("min_living_allowance");
                d["datasets"][0]["columns"] = json!(["head_person_id"]);
            },
            &["dataset_not_open"],
        ),
    ];
    for (who, scenario, change, want) in cases {
        let t = server.login(who);
        let project = new_project(&server, &t, scenario);
        let mut body = draft(&project);
        change(&mut body);
        let created = server.expect(201, "POST", "/api/applications", Some(&t), Some(&body));
        let id = created["id"].as_str().unwrap();
        // The draft already says what would refuse it.
        let live: Vec<&str> = created["eligibility"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["code"].as_str().unwrap())
            .collect();
        assert_eq!(live, want, "{who}/{scenario}: live eligibility");
        let err = server.expect(
            422,
            "POST",
            &format!("/api/applications/{id}/submit"),
            Some(&t),
            None,
        );
        assert_eq!(code(&err), "ineligible");
        let refusals = err["error"]["details"].as_array().unwrap();
        let codes: Vec<&str> = refusals
            .iter()
            .map(|r| r["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, want, "{who}/{scenario}: {err}");
        for r in refusals {
            assert!(r["reason"].as_str().unwrap().len() > 10, "{r}");
        }
        // Still a draft: nothing was lost.
        let after = server.expect(
            200,
            "GET",
            &format!("/api/applications/{id}"),
            Some(&t),
            None,
        );
        assert_eq!(after["status"], "draft");
        assert_eq!(after["draft"], created["draft"]);
    }
    server.stop();
    let tail = stdout(&run(&data, &["audit", "tail", "-n", "400"], true));
    assert!(
        tail.contains("\"refusals\":[\"research_only\"]"),
        "refusals are audited by code"
    );
}

#[test]
fn separation_of_duties() {
    let dir = prepared_data_dir(200, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    // A steward of the provider who works at the researcher's university.
    add_user(
        &data,
        "s_insider",
        "steward",
        "深圳大学",
        "university",
        &["--agency", SI_PROVIDER],
    );
    add_user(
        &data,
        "s_second",
        "steward",
        "深圳市社保中心",
        "government",
        &["--agency", SI_PROVIDER],
    );
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let insider = server.login("s_insider");
    let second = server.login("s_second");
    let project = new_project(&server, &p.researcher, "academic_research");
    let post = |token: &str, id: &str, step: &str| {
        server.call(
            "POST",
            &format!("/api/applications/{id}/{step}"),
            Some(token),
            None,
        )
    };

    let (id, _) = application_at(&server, &p, &project, Stage::Submitted);
    // The applicant reviewing their own application: refused by role.
    let (got, body) = post(&p.researcher, &id, "completeness/start");
    assert_eq!((got, code(&body)), (403, "forbidden"));
    // Same organisation as the applicant.
    let (got, body) = post(&insider, &id, "completeness/start");
    assert_eq!((got, code(&body)), (403, "same_organisation"), "{body}");

    let (id, _) = application_at(&server, &p, &project, Stage::UnderReview);
    let (got, body) = post(&insider, &id, "approve");
    assert_eq!((got, code(&body)), (403, "same_organisation"));
    let (got, body) = post(&p.researcher, &id, "approve");
    assert_eq!((got, code(&body)), (403, "forbidden"));
    // A steward of another provider.
    let (got, body) = post(&p.other_steward, &id, "approve");
    assert_eq!((got, code(&body)), (403, "forbidden"));
    // One person cannot give both approvals (L3 needs two people).
    assert_eq!(post(&p.admin, &id, "approve").0, 200);
    let (got, body) = post(&p.admin, &id, "approve");
    assert_eq!((got, code(&body)), (403, "duplicate_approver"), "{body}");
    // A second admin is not the provider: the steward's approval is still missing.
    let (got, body) = post(&p.second_admin, &id, "approve");
    assert_eq!((got, code(&body)), (409, "approval_not_needed"), "{body}");
    let done = server.expect(
        200,
        "POST",
        &format!("/api/applications/{id}/approve"),
        Some(&second),
        None,
    );
    assert_eq!(done["status"], "approved");
    let approvers: Vec<&str> = done["state"]["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["capacity"]["capacity"].as_str().unwrap())
        .collect();
    assert_eq!(approvers, ["platform_admin", "provider_steward"]);
    server.stop();
}

#[test]
fn materials_are_checked_and_sealed() {
    let dir = prepared_data_dir(200, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    let config = data.join("anyu.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace(
            "# max_material_bytes = 10485760",
            "max_material_bytes = 4096",
        ),
    )
    .unwrap();
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let project = new_project(&server, &p.researcher, "academic_research");
    let (id, _) = application_at(&server, &p, &project, Stage::Draft);
    let r = p.researcher.as_str();

    for (name, ct, bytes, status) in [
        (
            "a.pdf",
            "application/pdf",
            b"\x89PNG\r\n\x1a\n....".to_vec(),
            400,
        ), // content is not PDF
        ("a.exe", "application/x-msdownload", b"MZ....".to_vec(), 400),
        ("../a.pdf", "application/pdf", b"%PDF-1.4".to_vec(), 400),
        ("empty.txt", "text/plain", Vec::new(), 400),
        (
            "big.pdf",
            "application/pdf",
            [b"%PDF-1.4".as_slice(), &[b' '; 5000]].concat(),
            413,
        ),
    ] {
        let (got, body) = upload(&server, r, &id, name, ct, &bytes);
        assert_eq!(got, status, "{name}: {body}");
        assert!(body["error"]["code"].is_string());
    }
    let secret = "课题组成员名单：张三 13800000000";
    let (got, m) = upload(&server, r, &id, "名单.txt", "text/plain", secret.as_bytes());
    assert_eq!(got, 201, "{m}");
    let view = server.expect(
        200,
        "GET",
        &format!("/api/applications/{id}"),
        Some(r),
        None,
    );
    assert_eq!(view["materials"].as_array().unwrap().len(), 1);
    assert!(view["materials"][0].get("wrapped_key").is_none());
    // Sealed on disk: the plaintext appears in no file of the data directory.
    let sealed = data
        .join("materials")
        .join(format!("{}.bin", m["id"].as_str().unwrap()));
    let on_disk = std::fs::read(&sealed).unwrap();
    assert!(!String::from_utf8_lossy(&on_disk).contains("13800000000"));
    let got = server
        .client()
        .get(server.url(&format!(
            "/api/applications/{id}/materials/{}",
            m["id"].as_str().unwrap()
        )))
        .bearer_auth(r)
        .send()
        .unwrap();
    assert_eq!(got.text().unwrap(), secret);
    // Another researcher cannot read it; a drafted application is invisible to reviewers.
    let (got, _) = server.call(
        "GET",
        &format!("/api/applications/{id}"),
        Some(&p.other_researcher),
        None,
    );
    assert_eq!(got, 403);
    let (got, _) = server.call(
        "GET",
        &format!("/api/applications/{id}"),
        Some(&p.admin),
        None,
    );
    assert_eq!(got, 403);
    // `curl --data-binary` says form-urlencoded: the content decides the type.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    for generic in [
        "application/x-www-form-urlencoded",
        "application/octet-stream",
    ] {
        let (status, m) = upload(&server, r, &id, "scan.png", generic, png);
        assert_eq!(
            (status, m["content_type"].as_str()),
            (201, Some("image/png")),
            "{m}"
        );
    }
    // A type that is not accepted names the header to send; content that is
    // none of the types says so.
    let (status, m) = upload(&server, r, &id, "a.zip", "application/zip", b"PK\x03\x04");
    assert_eq!(status, 400, "{m}");
    let said = m["error"]["message"].as_str().unwrap();
    assert!(
        said.contains("`Content-Type:`") && said.contains("application/pdf"),
        "{m}"
    );
    let (status, m) = upload(
        &server,
        r,
        &id,
        "b.bin",
        "application/octet-stream",
        b"\0\x01\x02",
    );
    assert_eq!(status, 400, "{m}");
    assert!(
        m["error"]["message"]
            .as_str()
            .unwrap()
            .contains("none of the accepted types"),
        "{m}"
    );
    server.stop();
    let tail = stdout(&run(&data, &["audit", "tail", "-n", "200"], true));
    assert!(
        !tail.contains("13800000000"),
        "material content reached the audit log"
    );
}

fn sql(data: &std::path::Path, statement: &str) {
    common::exec_sqlite(&data.join("meta/anyu.db"), statement);
}

#[test]
fn sessions_expire_and_are_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    add_user(
        &data,
        "r_li",
        "researcher",
        "深圳大学",
        "university",
        &["--verified"],
    );
    add_user(&data, "a_zhang", "admin", "平台", "government", &[]);
    let server = TestServer::start(&data);
    let first = server.login("r_li");
    let second = server.login("r_li");
    let expiring = server.login("r_li");
    server.expect(200, "GET", "/api/me", Some(&first), None);

    // An API token works like a session, until revoked.
    let created = server.expect(
        201,
        "POST",
        "/api/me/tokens",
        Some(&first),
        Some(&json!({ "name": "ci", "password": common::PASSWORD, "scopes": ["read"] })),
    );
    let api = created["token"].as_str().unwrap().to_string();
    assert!(api.starts_with("anyu_t_"));
    server.expect(200, "GET", "/api/me", Some(&api), None);
    let listed = server.expect(200, "GET", "/api/me/tokens", Some(&first), None);
    assert!(
        listed.to_string().find(&api).is_none(),
        "token secrets are never listed"
    );
    server.expect(
        200,
        "DELETE",
        &format!("/api/me/tokens/{}", created["info"]["id"].as_str().unwrap()),
        Some(&first),
        None,
    );
    server.expect(401, "GET", "/api/me", Some(&api), None);

    // Changing the password ends every other session.
    let wrong = server.expect(401, "POST", "/api/me/password", Some(&first),
        Some(&json!({ "current_password": "not the password", "new_password": "a new long password" })));
    assert_eq!(code(&wrong), "unauthenticated");
    server.expect(
        204,
        "POST",
        "/api/me/password",
        Some(&first),
        Some(
            &json!({ "current_password": common::PASSWORD, "new_password": "a new long password" }),
        ),
    );
    server.expect(200, "GET", "/api/me", Some(&first), None);
    server.expect(401, "GET", "/api/me", Some(&second), None);

    // Disabling the account ends the remaining session.
    let admin = server.login("a_zhang");
    server.expect(
        200,
        "POST",
        "/api/admin/users/r_li/disable",
        Some(&admin),
        None,
    );
    server.expect(401, "GET", "/api/me", Some(&first), None);
    server.stop();

    // A session past its expiry is refused (the clock moved past `expires_at`).
    common::update_sealed(&data, "users", "disabled = 0", "username = 'r_li'");
    common::update_sealed(
        &data,
        "sessions",
        "revoked_at = NULL, expires_at = '2020-01-01T00:00:00.000000Z'",
        "1 = 1",
    );
    let server = TestServer::start(&data);
    let err = server.expect(401, "GET", "/api/me", Some(&expiring), None);
    assert_eq!(err["error"]["message"], "invalid or expired token");
    server.stop();
}

#[test]
fn grants_expire_at_the_end_of_their_period() {
    let dir = prepared_data_dir(200, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let project = new_project(&server, &p.researcher, "academic_research");
    let (_, grant) = application_at(&server, &p, &project, Stage::Signed);
    let g = grant.unwrap();
    server.stop();

    // The period ended (as if time passed); the server expires it at start.
    let past = "2020-01-01T00:00:00+00:00";
    common::update_sealed(
        &data,
        "grants",
        &format!(
            "valid_until = '{past}', grant_json = json_set(grant_json, '$.valid_until', '2020-01-01T00:00:00Z')"
        ),
        &format!("id = '{g}'"),
    );
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let mut view = Value::Null;
    for _ in 0..100 {
        view = server.expect(
            200,
            "GET",
            &format!("/api/grants/{g}"),
            Some(&p.researcher),
            None,
        );
        if view["state"]["state"] == "expired" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(view["state"]["state"], "expired", "{view}");
    assert_eq!(view["usable"], false);
    // Final: nobody can reinstate or suspend it.
    let (got, body) = server.call(
        "POST",
        &format!("/api/grants/{g}/reinstate"),
        Some(&p.admin),
        Some(&json!({ "reason": "已完成整改，恢复使用" })),
    );
    assert_eq!((got, code(&body)), (409, "illegal_transition"));
    let overview = server.expect(200, "GET", "/api/admin/overview", Some(&p.admin), None);
    assert_eq!(overview["grants_by_status"]["expired"], 1);
    let ev = events(&server, &p.auditor, &format!("grant:{g}"));
    let expire = ev.iter().find(|e| e["action"] == "grant.expire").unwrap();
    assert_eq!(expire["actor"], "system");
    server.stop();
    run(&data, &["audit", "verify"], true);
}

#[test]
fn overdue_reviews_are_flagged_and_counted() {
    let dir = prepared_data_dir(200, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let project = new_project(&server, &p.researcher, "academic_research");
    let (late_check, _) = application_at(&server, &p, &project, Stage::Submitted);
    let (late_review, _) = application_at(&server, &p, &project, Stage::UnderReview);
    let (on_time, _) = application_at(&server, &p, &project, Stage::UnderReview);
    server.stop();
    sql(
        &data,
        &format!(
            "UPDATE applications SET completeness_due = '2026-01-05' WHERE id = '{late_check}'"
        ),
    );
    sql(
        &data,
        &format!("UPDATE applications SET review_due = '2026-01-05' WHERE id = '{late_review}'"),
    );
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let list = server.expect(200, "GET", "/api/applications", Some(&p.steward), None);
    let overdue = |id: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .unwrap()["overdue"]
            .clone()
    };
    assert_eq!(overdue(&late_check), true);
    assert_eq!(overdue(&late_review), true);
    assert_eq!(overdue(&on_time), false);
    let overview = server.expect(200, "GET", "/api/admin/overview", Some(&p.admin), None);
    assert_eq!(overview["applications_overdue"], 2);
    // Starting the late check does not finish it; passing it starts a new deadline.
    let v = server.expect(
        200,
        "POST",
        &format!("/api/applications/{late_check}/completeness/start"),
        Some(&p.admin),
        None,
    );
    assert_eq!(
        v["overdue"], true,
        "the completeness check itself is still late"
    );
    let v = server.expect(
        200,
        "POST",
        &format!("/api/applications/{late_check}/completeness/pass"),
        Some(&p.admin),
        None,
    );
    assert_eq!(v["overdue"], false);
    assert_eq!(v["due_date"], v["review_due"]);
    server.stop();
}

/// Naming project members cannot probe accounts: an unknown name, a steward,
/// a disabled researcher and another organisation's researcher all get the
/// same answer, which names only the position in the list.
#[test]
fn project_member_errors_reveal_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    add_people(&data);
    add_user(
        &data,
        "r_gone",
        "researcher",
        "深圳大学",
        "university",
        &["--verified"],
    );
    run(&data, &["user", "disable", "r_gone"], true);
    add_user(
        &data,
        "r_peer",
        "researcher",
        "深圳大学",
        "university",
        &["--verified"],
    );
    let server = TestServer::start(&data);
    let token = server.login("r_li");
    let project = |members: &[&str]| {
        json!({
            "title": "深圳各区社保缴费基数差异研究",
            "scenario_description": "分析各区参保人员缴费基数的分布及其随年龄的变化，用于公共政策研究。",
            "scenario_category": "public_policy",
            "members": members,
        })
    };
    let mut messages = Vec::new();
    for name in ["r_nobody", "s_wang", "r_gone", "r_other"] {
        let body = project(&["r_peer", name]);
        let answer = server.expect(400, "POST", "/api/projects", Some(&token), Some(&body));
        let message = answer["error"]["message"].as_str().unwrap().to_string();
        assert!(message.contains("members[1]: "), "{name}: {message}");
        assert!(!message.contains(name), "{message}");
        messages.push(message);
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "answers differ: {messages:?}");
    let made = server.expect(
        201,
        "POST",
        "/api/projects",
        Some(&token),
        Some(&project(&["r_peer"])),
    );
    assert_eq!(made["members"].as_array().map(Vec::len), Some(1), "{made}");
    server.stop();
}
