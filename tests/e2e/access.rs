//! Accounts and authorization through the real binary: every route × every
//! role (and anonymous) against the expected matrix.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use crate::common::{
    People, Stage, TestServer, add_people, application_at, new_project, prepared_data_dir, run,
    stdout,
};
use serde_json::{Value, json};

const PASSWORD: &str = common::PASSWORD;

fn add_user(data: &std::path::Path, username: &str, role: &str, extra: &[&str]) {
    common::add_user(data, username, role, "测试单位", "university", extra);
}

fn token(server: &TestServer, username: &str) -> String {
    server.login(username)
}

/// The callers of the matrix, in column order.
const CALLERS: [&str; 7] = [
    "anonymous",
    "researcher (owner)",
    "other researcher",
    "steward (provider)",
    "other steward",
    "admin",
    "auditor",
];

/// What a request sends.
#[derive(Clone)]
enum Body {
    None,
    Json(Value),
    Pdf,
    Wasm,
}

/// A real model component (the C descriptive-statistics example).
const MODEL: &[u8] = include_bytes!("../../sandbox/models/prebuilt/describe.c.wasm");

/// A concrete request: path and body.
type Request = (String, Body);

/// Objects in given states, made through the API. A request whose expected
/// status is a success gets a fresh object (it may change state); refused
/// requests share one (a refusal must change nothing).
struct Fixtures<'a> {
    server: &'a TestServer,
    people: &'a People,
    project: String,
    shared: BTreeMap<String, Request>,
    counter: usize,
    grant: Option<String>,
}

impl Fixtures<'_> {
    fn app(&self, stage: Stage) -> (String, Option<String>) {
        application_at(self.server, self.people, &self.project, stage)
    }

    /// The shared grant of the job rows.
    fn grant(&mut self) -> String {
        if let Some(g) = &self.grant {
            return g.clone();
        }
        let (_, g) = self.app(Stage::Signed);
        self.grant = g.clone();
        g.unwrap()
    }

    /// A fresh job waiting for review.
    fn pending_job(&mut self) -> String {
        let g = self.grant();
        let job = common::run_job(
            self.server,
            &self.people.researcher,
            &g,
            "SELECT district, count(*) AS n FROM social_insurance GROUP BY district",
        );
        assert_eq!(job["status"], "pending_review", "{job}");
        job["id"].as_str().unwrap().to_string()
    }

    /// The owner's uploaded model's SHA-256.
    fn model(&mut self) -> String {
        let resp = self
            .server
            .client()
            .post(self.server.url("/api/models?name=describe"))
            .bearer_auth(&self.people.researcher)
            .body(MODEL.to_vec())
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        resp.json::<Value>().unwrap()["sha256"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A fresh released job's release id.
    fn release(&mut self) -> String {
        let j = self.pending_job();
        let s = self.server;
        for t in [&self.people.steward, &self.people.admin] {
            common::vote_ok(s, t, &j, &json!({ "decision": "approve" }));
        }
        let v = s.expect(
            200,
            "GET",
            &format!("/api/jobs/{j}"),
            Some(&self.people.researcher),
            None,
        );
        v["release_id"].as_str().unwrap().to_string()
    }

    /// An organisation's id by name (as the admin sees the list).
    fn organisation_id(&self, name: &str) -> String {
        let orgs = self.server.expect(
            200,
            "GET",
            "/api/admin/organisations",
            Some(&self.people.admin),
            None,
        );
        orgs.as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("no organisation {name}: {orgs}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// A fresh request of the second admin to create a steward.
    fn account_request(&mut self, n: usize) -> String {
        let username = format!("new_steward_{n}");
        let body = json!({
            "username": username, "real_name": "新管理员",
            "organisation_id": self.organisation_id("深圳市政务服务数据管理局"),
            "resident_id": common::codes_for(&username).1,
            "role": "steward", "provider_agencies": [common::SI_PROVIDER],
        });
        let r = self.server.expect(
            202,
            "POST",
            "/api/admin/users",
            Some(&self.people.second_admin),
            Some(&body),
        );
        r["request"]["id"].as_str().unwrap().to_string()
    }

    fn token_of(&self, caller: usize) -> Option<&str> {
        let p = self.people;
        [
            None,
            Some(p.researcher.as_str()),
            Some(p.other_researcher.as_str()),
            Some(p.steward.as_str()),
            Some(p.other_steward.as_str()),
            Some(p.admin.as_str()),
            Some(p.auditor.as_str()),
        ][caller]
    }

    /// The request for `route` (its OpenAPI path) as `caller`.
    fn request(&mut self, method: &str, route: &str, caller: usize, fresh: bool) -> Request {
        let key = format!("{method} {route}");
        if !fresh && let Some(r) = self.shared.get(&key) {
            return r.clone();
        }
        self.counter += 1;
        let n = self.counter;
        let s = self.server;
        let reason = json!({ "reason": "材料不完整，请补充。" });
        let r: Request = match (method, route) {
            ("POST", "/api/auth/login") => (
                route.into(),
                Body::Json(json!({ "username": "probe", "password": PASSWORD })),
            ),
            ("POST", "/api/complaints") => (
                route.into(),
                Body::Json(
                    json!({ "subject": "数据更新不及时", "body": "企业登记数据两周未更新。" }),
                ),
            ),
            ("POST", "/api/admin/complaints/{id}/answer") => {
                let c = s.expect(
                    201,
                    "POST",
                    "/api/complaints",
                    None,
                    Some(&json!({ "subject": "数据有误", "body": "某条记录有误。" })),
                );
                (
                    format!("/api/admin/complaints/{}/answer", c["id"].as_str().unwrap()),
                    Body::Json(json!({ "answer": "已核实并更正。" })),
                )
            }
            ("GET", "/api/catalog/{id}") => ("/api/catalog/social_insurance".into(), Body::None),
            ("GET", "/api/catalog/{id}/dummy") => (
                "/api/catalog/social_insurance/dummy?rows=20".into(),
                Body::None,
            ),
            ("POST", "/api/models") => ("/api/models?name=describe".into(), Body::Wasm),
            ("GET", "/api/models/{sha256}") => {
                let m = self.model();
                (format!("/api/models/{m}"), Body::None)
            }
            ("POST", "/api/models/{sha256}/approvals") => {
                let m = self.model();
                (
                    format!("/api/models/{m}/approvals"),
                    Body::Json(json!({ "dataset_id": "social_insurance", "decision": "approve" })),
                )
            }
            ("POST", "/api/models/{sha256}/approvals/{id}/withdraw") => {
                let m = self.model();
                let view = self.server.expect(
                    200,
                    "POST",
                    &format!("/api/models/{m}/approvals"),
                    Some(&self.people.steward),
                    Some(&json!({ "dataset_id": "social_insurance", "decision": "approve" })),
                );
                let id = view["approvals"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|a| a["withdrawn_at"].is_null())
                    .unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                (
                    format!("/api/models/{m}/approvals/{id}/withdraw"),
                    Body::None,
                )
            }
            ("POST", "/api/admin/users") => (
                route.into(),
                Body::Json(json!({
                    "username": format!("new_user_{n}"), "real_name": "新用户",
                    "organisation_id": self.organisation_id("深圳大学"),
                    "resident_id": common::codes_for(&format!("new_user_{n}")).1,
                    "role": "researcher",
                })),
            ),
            ("POST", r) if r.starts_with("/api/admin/users/{username}/") => {
                let tail = r.rsplit('/').next().unwrap();
                let body = match tail {
                    "verification" => Body::Json(json!({ "verified": true })),
                    "credit-flags" => Body::Json(json!({ "flags": [] })),
                    "person" => Body::Json(json!({ "resident_id": common::codes_for("x").1 })),
                    _ => Body::None,
                };
                (format!("/api/admin/users/t_target/{tail}"), body)
            }
            ("POST", "/api/admin/organisations") => {
                let name = format!("矩阵测试单位{n}");
                (
                    route.into(),
                    Body::Json(json!({
                        "name": name, "credit_code": common::codes_for(&name).0,
                        "organisation_type": "enterprise",
                    })),
                )
            }
            ("POST", "/api/admin/organisations/{id}/credit-code") => (
                format!(
                    "/api/admin/organisations/{}/credit-code",
                    self.organisation_id("深圳大学")
                ),
                Body::Json(json!({ "credit_code": common::codes_for("x").0 })),
            ),
            ("POST", r) if r.starts_with("/api/admin/account-requests/{id}/") => {
                let tail = r.rsplit('/').next().unwrap();
                let id = self.account_request(n);
                (
                    format!("/api/admin/account-requests/{id}/{tail}"),
                    Body::None,
                )
            }
            ("POST", "/api/me/tokens") => (
                route.into(),
                Body::Json(
                    json!({ "name": format!("script {n}"), "password": PASSWORD, "scopes": ["read"] }),
                ),
            ),
            ("DELETE", "/api/me/tokens/{id}") => {
                // The caller's own token; anonymous gets someone's.
                let owner = self.token_of(caller).unwrap_or(&self.people.researcher);
                let t = s.expect(
                    201,
                    "POST",
                    "/api/me/tokens",
                    Some(owner),
                    Some(
                        &json!({ "name": format!("to revoke {n}"), "password": PASSWORD, "scopes": ["read"] }),
                    ),
                );
                (
                    format!("/api/me/tokens/{}", t["info"]["id"].as_str().unwrap()),
                    Body::None,
                )
            }
            ("POST", "/api/me/password") => (
                route.into(),
                Body::Json(json!({ "current_password": PASSWORD, "new_password": PASSWORD })),
            ),
            ("POST", "/api/projects") => (
                route.into(),
                Body::Json(json!({
                    "title": "矩阵测试项目", "scenario_category": "academic_research",
                    "scenario_description": "用于检验每个角色对每个接口的访问权限。",
                })),
            ),
            ("GET", "/api/projects/{id}") => {
                (format!("/api/projects/{}", self.project), Body::None)
            }
            ("POST", "/api/applications") => {
                (route.into(), Body::Json(common::draft(&self.project)))
            }
            ("GET", "/api/applications/{id}") => {
                let (id, _) = self.app(Stage::Submitted);
                (format!("/api/applications/{id}"), Body::None)
            }
            ("PUT", "/api/applications/{id}") => {
                let (id, _) = self.app(Stage::Draft);
                (
                    format!("/api/applications/{id}"),
                    Body::Json(common::draft(&self.project)),
                )
            }
            ("POST", "/api/applications/{id}/submit") => {
                let (id, _) = self.app(Stage::Draft);
                (format!("/api/applications/{id}/submit"), Body::None)
            }
            ("POST", "/api/applications/{id}/completeness/start") => {
                let (id, _) = self.app(Stage::Submitted);
                (
                    format!("/api/applications/{id}/completeness/start"),
                    Body::None,
                )
            }
            ("POST", "/api/applications/{id}/completeness/pass") => {
                let (id, _) = self.app(Stage::CompletenessCheck);
                (
                    format!("/api/applications/{id}/completeness/pass"),
                    Body::None,
                )
            }
            ("POST", "/api/applications/{id}/approve") => {
                let (id, _) = self.app(Stage::UnderReview);
                (format!("/api/applications/{id}/approve"), Body::None)
            }
            ("POST", "/api/applications/{id}/reject") => {
                let (id, _) = self.app(Stage::UnderReview);
                (format!("/api/applications/{id}/reject"), Body::Json(reason))
            }
            ("POST", "/api/applications/{id}/return") => {
                let (id, _) = self.app(Stage::UnderReview);
                (format!("/api/applications/{id}/return"), Body::Json(reason))
            }
            ("POST", "/api/applications/{id}/materials") => {
                let (id, _) = self.app(Stage::Draft);
                (
                    format!("/api/applications/{id}/materials?name=proof.pdf"),
                    Body::Pdf,
                )
            }
            ("GET", "/api/applications/{id}/materials/{material_id}") => {
                let (id, _) = self.app(Stage::Draft);
                let m = upload_pdf(s, &self.people.researcher, &id);
                s.expect(
                    200,
                    "POST",
                    &format!("/api/applications/{id}/submit"),
                    Some(&self.people.researcher),
                    None,
                );
                (format!("/api/applications/{id}/materials/{m}"), Body::None)
            }
            ("GET", "/api/applications/{id}/agreement") => {
                let (id, _) = self.app(Stage::Approved);
                (format!("/api/applications/{id}/agreement"), Body::None)
            }
            ("POST", "/api/applications/{id}/agreement/sign") => {
                let (id, _) = self.app(Stage::Approved);
                let text = s.expect(
                    200,
                    "GET",
                    &format!("/api/applications/{id}/agreement"),
                    Some(&self.people.researcher),
                    None,
                );
                (
                    format!("/api/applications/{id}/agreement/sign"),
                    Body::Json(json!({ "agreement_sha256": text["sha256"] })),
                )
            }
            ("GET", "/api/applications/{id}/agreement/receipt") => {
                let (id, _) = self.app(Stage::Signed);
                (
                    format!("/api/applications/{id}/agreement/receipt"),
                    Body::None,
                )
            }
            ("GET", r) if r.starts_with("/api/grants/{id}") => {
                let (_, g) = self.app(Stage::Signed);
                (r.replace("{id}", &g.unwrap()), Body::None)
            }
            ("POST", "/api/grants/{id}/reinstate") => {
                let (_, g) = self.app(Stage::Signed);
                let g = g.unwrap();
                s.expect(
                    200,
                    "POST",
                    &format!("/api/grants/{g}/suspend"),
                    Some(&self.people.admin),
                    Some(&json!({ "reason": "核查使用情况" })),
                );
                (
                    format!("/api/grants/{g}/reinstate"),
                    Body::Json(json!({ "reason": "已核查，使用合规" })),
                )
            }
            ("POST", "/api/grants/{id}/reports") => {
                let (_, g) = self.app(Stage::Signed);
                (
                    format!("/api/grants/{}/reports", g.unwrap()),
                    Body::Json(json!({
                        "period_start": common::today_cst().to_string(),
                        "period_end": common::today_cst().to_string(),
                        "summary": "完成了各区缴费基数的描述统计。",
                        "outputs": [{ "kind": "report", "title": "社保缴费基数分析报告" }],
                    })),
                )
            }
            ("POST", "/api/jobs") => {
                let g = self.grant();
                (
                    route.into(),
                    Body::Json(
                        json!({ "grant_id": g, "sql": "SELECT district, count(*) AS n FROM social_insurance GROUP BY district" }),
                    ),
                )
            }
            ("GET", "/api/jobs/{id}") | ("GET", "/api/jobs/{id}/review") => {
                let j = self.pending_job();
                (route.replace("{id}", &j), Body::None)
            }
            ("POST", "/api/jobs/{id}/cancel") => {
                let j = self.pending_job();
                (route.replace("{id}", &j), Body::None)
            }
            ("POST", "/api/jobs/{id}/review") => {
                let j = self.pending_job();
                // A vote counts only from a reviewer who read the packet.
                if let Some(t) = self.token_of(caller).map(str::to_string) {
                    s.call("GET", &format!("/api/jobs/{j}/review"), Some(&t), None);
                }
                (
                    route.replace("{id}", &j),
                    Body::Json(json!({ "decision": "approve" })),
                )
            }
            ("GET", r) if r.starts_with("/api/releases/{id}") => {
                let rel = self.release();
                (r.replace("{id}", &rel), Body::None)
            }
            ("POST", r) if r.starts_with("/api/grants/{id}/") => {
                let (_, g) = self.app(Stage::Signed);
                (
                    r.replace("{id}", &g.unwrap()),
                    Body::Json(json!({ "reason": "违反协议约定的使用范围" })),
                )
            }
            (_, r) => (r.to_string(), Body::None),
        };
        if !fresh {
            self.shared.insert(key, r.clone());
        }
        r
    }
}

/// Uploads a small PDF as the researcher; returns the material id.
fn upload_pdf(server: &TestServer, token: &str, application: &str) -> String {
    let resp = server
        .client()
        .post(server.url(&format!(
            "/api/applications/{application}/materials?name=proof.pdf"
        )))
        .bearer_auth(token)
        .header("content-type", "application/pdf")
        .body(b"%PDF-1.4 proof of ethics approval".to_vec())
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    resp.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn route_role_matrix() {
    let dir = prepared_data_dir(200, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    add_user(&data, "probe", "researcher", &[]);
    add_user(&data, "t_target", "researcher", &[]);
    let listed = stdout(&run(&data, &["user", "list"], true));
    assert_eq!(listed.lines().count(), 9, "{listed}");

    let server = TestServer::start(&data);
    let people = People::login(&server);
    let project = new_project(&server, &people.researcher, "academic_research");

    const ALL: [u16; 7] = [200, 200, 200, 200, 200, 200, 200];
    const SIGNED_IN: [u16; 7] = [401, 200, 200, 200, 200, 200, 200];
    const ADMIN: [u16; 7] = [401, 403, 403, 403, 403, 200, 403];
    const OWNER: [u16; 7] = [401, 200, 403, 403, 403, 403, 403];
    const OWNER_CREATED: [u16; 7] = [401, 201, 403, 403, 403, 403, 403];
    const REVIEWERS: [u16; 7] = [401, 403, 403, 200, 403, 200, 403];
    // The applicant, the provider's steward, admins and auditors.
    const READERS: [u16; 7] = [401, 200, 403, 200, 403, 200, 200];
    // (method, OpenAPI path, expected status per caller in CALLERS order)
    let matrix: Vec<(&str, &str, [u16; 7])> = vec![
        ("GET", "/healthz", ALL),
        ("GET", "/api/openapi.json", ALL),
        ("GET", "/api/catalog", ALL),
        ("GET", "/api/catalog/{id}", ALL),
        ("GET", "/api/catalog/{id}/dummy", ALL),
        ("GET", "/api/models", SIGNED_IN),
        // Another researcher's model is unknown to them (until they upload the
        // same bytes, next row); code is readable by every other role.
        (
            "GET",
            "/api/models/{sha256}",
            [401, 200, 404, 200, 200, 200, 200],
        ),
        ("POST", "/api/models", [401, 201, 201, 403, 403, 403, 403]),
        (
            "POST",
            "/api/models/{sha256}/approvals",
            [401, 403, 403, 200, 403, 403, 403],
        ),
        // Only the decision's author withdraws it.
        (
            "POST",
            "/api/models/{sha256}/approvals/{id}/withdraw",
            [401, 403, 403, 200, 403, 403, 403],
        ),
        ("POST", "/api/auth/login", ALL),
        ("GET", "/api/me", SIGNED_IN),
        ("GET", "/api/admin/users", ADMIN),
        (
            "POST",
            "/api/admin/users",
            [401, 403, 403, 403, 403, 201, 403],
        ),
        ("POST", "/api/admin/users/{username}/disable", ADMIN),
        ("POST", "/api/admin/users/{username}/enable", ADMIN),
        ("POST", "/api/admin/users/{username}/verification", ADMIN),
        ("POST", "/api/admin/users/{username}/credit-flags", ADMIN),
        (
            "POST",
            "/api/admin/users/{username}/reset-password",
            [401, 403, 403, 403, 403, 201, 403],
        ),
        // Bound at creation already: the admin reaches the rule (409).
        (
            "POST",
            "/api/admin/users/{username}/person",
            [401, 403, 403, 403, 403, 409, 403],
        ),
        ("GET", "/api/admin/organisations", ADMIN),
        (
            "POST",
            "/api/admin/organisations",
            [401, 403, 403, 403, 403, 201, 403],
        ),
        // Every organisation has its code: the admin reaches the rule (409).
        (
            "POST",
            "/api/admin/organisations/{id}/credit-code",
            [401, 403, 403, 403, 403, 409, 403],
        ),
        ("GET", "/api/admin/account-requests", ADMIN),
        (
            "POST",
            "/api/admin/account-requests/{id}/approve",
            [401, 403, 403, 403, 403, 201, 403],
        ),
        ("POST", "/api/admin/account-requests/{id}/refuse", ADMIN),
        ("GET", "/api/admin/overview", ADMIN),
        (
            "GET",
            "/api/audit/events",
            [401, 403, 403, 403, 403, 200, 200],
        ),
        (
            "GET",
            "/api/audit/head",
            [401, 403, 403, 403, 403, 200, 200],
        ),
        ("GET", "/api/platform/keys", ALL),
        ("POST", "/api/complaints", [201; 7]),
        ("GET", "/api/admin/complaints", ADMIN),
        ("POST", "/api/admin/complaints/{id}/answer", ADMIN),
        ("GET", "/api/me/tokens", SIGNED_IN),
        (
            "POST",
            "/api/me/tokens",
            [401, 201, 201, 201, 201, 201, 201],
        ),
        ("DELETE", "/api/me/tokens/{id}", SIGNED_IN),
        (
            "POST",
            "/api/me/password",
            [401, 204, 204, 204, 204, 204, 204],
        ),
        ("POST", "/api/projects", [401, 201, 201, 403, 403, 403, 403]),
        ("GET", "/api/projects", SIGNED_IN),
        (
            "GET",
            "/api/projects/{id}",
            [401, 200, 403, 403, 403, 200, 200],
        ),
        ("POST", "/api/applications", OWNER_CREATED),
        ("GET", "/api/applications", SIGNED_IN),
        ("GET", "/api/applications/{id}", READERS),
        ("PUT", "/api/applications/{id}", OWNER),
        ("POST", "/api/applications/{id}/submit", OWNER),
        (
            "POST",
            "/api/applications/{id}/completeness/start",
            REVIEWERS,
        ),
        (
            "POST",
            "/api/applications/{id}/completeness/pass",
            REVIEWERS,
        ),
        ("POST", "/api/applications/{id}/approve", REVIEWERS),
        ("POST", "/api/applications/{id}/reject", REVIEWERS),
        ("POST", "/api/applications/{id}/return", REVIEWERS),
        ("POST", "/api/applications/{id}/materials", OWNER_CREATED),
        (
            "GET",
            "/api/applications/{id}/materials/{material_id}",
            READERS,
        ),
        ("GET", "/api/applications/{id}/agreement", OWNER),
        (
            "POST",
            "/api/applications/{id}/agreement/sign",
            OWNER_CREATED,
        ),
        ("GET", "/api/applications/{id}/agreement/receipt", READERS),
        ("GET", "/api/grants", SIGNED_IN),
        ("GET", "/api/grants/{id}", READERS),
        ("POST", "/api/grants/{id}/suspend", REVIEWERS),
        // An admin's suspension is lifted by an admin only (the fixture's suspender).
        (
            "POST",
            "/api/grants/{id}/reinstate",
            [401, 403, 403, 403, 403, 200, 403],
        ),
        ("POST", "/api/grants/{id}/revoke", REVIEWERS),
        ("GET", "/api/grants/{id}/reports", READERS),
        ("POST", "/api/grants/{id}/reports", OWNER_CREATED),
        ("POST", "/api/jobs", [401, 202, 403, 403, 403, 403, 403]),
        ("GET", "/api/jobs", SIGNED_IN),
        ("GET", "/api/jobs/{id}", READERS),
        (
            "POST",
            "/api/jobs/{id}/cancel",
            [401, 200, 403, 403, 403, 200, 403],
        ),
        ("GET", "/api/jobs/{id}/review", REVIEWERS),
        ("POST", "/api/jobs/{id}/review", REVIEWERS),
        ("GET", "/api/reviews", SIGNED_IN),
        ("GET", "/api/releases", SIGNED_IN),
        ("GET", "/api/releases/{id}", READERS),
        ("GET", "/api/releases/{id}/certificate", READERS),
        (
            "GET",
            "/api/releases/{id}/result",
            [401, 200, 403, 200, 403, 200, 403],
        ),
        // Last: it ends the callers' sessions.
        (
            "POST",
            "/api/auth/logout",
            [401, 204, 204, 204, 204, 204, 204],
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
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = documented.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "routes without an authorization expectation: {missing:?}"
    );
    // The API description does not describe itself.
    let stale: Vec<_> = covered
        .difference(&documented)
        .filter(|(_, p)| p != "/api/openapi.json")
        .collect();
    assert!(
        stale.is_empty(),
        "matrix rows for undocumented routes: {stale:?}"
    );

    let mut fixtures = Fixtures {
        server: &server,
        people: &people,
        project,
        shared: BTreeMap::new(),
        counter: 0,
        grant: None,
    };
    let mut failures = Vec::new();
    for (method, route, expected) in &matrix {
        for (caller, want) in expected.iter().enumerate() {
            let fresh = *want < 300;
            let (path, body) = fixtures.request(method, route, caller, fresh);
            let mut req = server.client().request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                server.url(&path),
            );
            req = match body {
                Body::None => req,
                Body::Json(v) => req.json(&v),
                Body::Pdf => req
                    .header("content-type", "application/pdf")
                    .body(b"%PDF-1.4 matrix".to_vec()),
                Body::Wasm => req
                    .header("content-type", "application/wasm")
                    .body(MODEL.to_vec()),
            };
            if let Some(t) = fixtures.token_of(caller) {
                req = req.bearer_auth(t);
            }
            let resp = req.send().unwrap();
            let got = resp.status().as_u16();
            let text = resp.text().unwrap();
            if got != *want {
                failures.push(format!(
                    "{method} {route} as {}: {got}, expected {want}: {text}",
                    CALLERS[caller]
                ));
            }
            if got >= 400 {
                let body: Value = serde_json::from_str(&text).unwrap();
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
    let (status, _) = server.call("GET", "/api/me", Some(&people.researcher), None);
    assert_eq!(status, 401);
    let (status, _) = server.call("GET", "/api/catalog", Some("anyu_s_forged"), None);
    assert_eq!(status, 401);
    server.stop();

    // Denials and logins are in the chain, which still verifies.
    let tail = stdout(&run(&data, &["audit", "tail", "-n", "5000"], true));
    for needle in [
        "\"action\":\"authz.denied\"",
        "\"action\":\"auth.login\"",
        "\"action\":\"auth.logout\"",
        "\"action\":\"user.create\"",
        "\"action\":\"grant.create\"",
    ] {
        assert!(tail.contains(needle), "no {needle} in the audit log");
    }
    assert!(!tail.contains(PASSWORD), "a password reached the audit log");
    run(&data, &["audit", "verify"], true);
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
