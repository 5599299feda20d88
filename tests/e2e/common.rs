//! End-to-end harness: runs the real `anyu` binary in a temporary data
//! directory and talks to it over HTTP on a loopback port.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The workspace root (manifests, fixtures).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A command for the `anyu` binary under test, bound to `data_dir`.
pub fn anyu(data_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_anyu"));
    cmd.arg("--data-dir").arg(data_dir);
    cmd.env_remove("ANYU_LISTEN")
        .env_remove("ANYU_CONFIG")
        .env("ANYU_LOG", "warn");
    cmd
}

/// Runs `anyu` to completion and returns its output, panicking with both
/// streams when the exit status differs from `expect_success`.
pub fn run(data_dir: &Path, args: &[&str], expect_success: bool) -> Output {
    let out = anyu(data_dir).args(args).output().expect("spawn anyu");
    if out.status.success() != expect_success {
        panic!(
            "anyu {args:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Initialises a data dir, generates `rows` sample persons and imports the
/// given sample datasets.
pub fn prepared_data_dir(rows: u64, datasets: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    let samples = dir.path().join("samples");
    run(
        &data,
        &[
            "datasets",
            "generate",
            "--rows",
            &rows.to_string(),
            "--seed",
            "5",
            "--out",
            samples.to_str().unwrap(),
        ],
        true,
    );
    for id in datasets {
        let manifest = repo_root()
            .join("datasets/manifests")
            .join(format!("{id}.toml"));
        let csv = samples.join(format!("{id}.csv"));
        run(
            &data,
            &[
                "dataset",
                "import",
                manifest.to_str().unwrap(),
                csv.to_str().unwrap(),
            ],
            true,
        );
    }
    dir
}

/// A running `anyu serve`.
pub struct TestServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    client: reqwest::blocking::Client,
}

impl TestServer {
    /// Starts `anyu serve` on an ephemeral loopback port and waits until it listens.
    pub fn start(data_dir: &Path) -> TestServer {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, extra_args: &[&str]) -> TestServer {
        let mut child = anyu(data_dir)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn anyu serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line
                    .strip_prefix("Anyu listening on http://")
                    .or_else(|| line.strip_prefix("Anyu listening on https://"))
                {
                    let _ = tx.send(rest.trim().to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a.parse().expect("address"),
            Err(_) => {
                let _ = child.kill();
                panic!("anyu serve did not report its address within 60 s");
            }
        };
        TestServer {
            child: Some(child),
            addr,
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        self.client.get(self.url(path)).send().expect("GET")
    }

    /// GET expecting `status`, returning the JSON body.
    pub fn get_json(&self, path: &str, status: u16) -> serde_json::Value {
        let resp = self.get(path);
        let got = resp.status().as_u16();
        let body = resp.text().expect("body");
        assert_eq!(got, status, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }

    /// Graceful stop: SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(status.success());
        let exit = wait_timeout(&mut child, Duration::from_secs(30));
        assert!(exit.success(), "anyu serve exited {exit:?} after SIGTERM");
    }

    /// Hard stop: SIGKILL, no chance to flush anything.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Password of every account the tests create.
pub const PASSWORD: &str = "correct horse battery";

/// A well-formed 统一社会信用代码 and 身份证号 made from `seed`: the same seed
/// (an organisation's name, a username), the same organisation or person.
pub fn codes_for(seed: &str) -> (String, String) {
    let h = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let body = format!("91440300{:09}", h % 1_000_000_000);
    let code = format!(
        "{body}{}",
        enclave::ids::credit_code_check_char(&body).unwrap()
    );
    let birth = chrono::NaiveDate::from_ymd_opt(1960, 1, 1).unwrap()
        + chrono::Days::new((h >> 32) % 15_000);
    let id17 = format!("440305{}{:03}", birth.format("%Y%m%d"), (h >> 16) % 1000);
    let id = format!(
        "{id17}{}",
        enclave::ids::resident_id_check_char(&id17).unwrap()
    );
    (code, id)
}

/// Creates an account through the CLI as the host's operator (the server
/// must not be running), with a final password ([`PASSWORD`]) and a person
/// of its own; the organisation is registered on first use.
pub fn add_user(
    data_dir: &Path,
    username: &str,
    role: &str,
    organisation: &str,
    org_type: &str,
    extra: &[&str],
) {
    add_user_as(
        data_dir,
        username,
        username,
        role,
        organisation,
        org_type,
        extra,
    );
}

/// Like [`add_user`], for the person `person` (two accounts of one person
/// share it).
pub fn add_user_as(
    data_dir: &Path,
    username: &str,
    person: &str,
    role: &str,
    organisation: &str,
    org_type: &str,
    extra: &[&str],
) {
    let out = anyu(data_dir)
        .args(["user", "add", "--username", username, "--role", role])
        .args(["--real-name", "测试用户", "--organisation", organisation])
        .args(["--org-type", org_type])
        .args(["--credit-code", &codes_for(organisation).0])
        .args(["--resident-id", &codes_for(person).1])
        .arg("--no-password-change")
        .args(extra)
        .env("ANYU_NEW_PASSWORD", PASSWORD)
        .output()
        .expect("spawn anyu user add");
    assert!(
        out.status.success(),
        "user add {username}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Today in China Standard Time, where the platform's dates run.
pub fn today_cst() -> chrono::NaiveDate {
    let cst = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    chrono::Utc::now().with_timezone(&cst).date_naive()
}

impl TestServer {
    /// One request; returns the status and the JSON body (`null` when empty).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().expect("body");
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| serde_json::Value::String(text.clone()))
        };
        (status, json)
    }

    /// Like [`TestServer::call`], asserting the status.
    pub fn expect(
        &self,
        status: u16,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> serde_json::Value {
        let (got, json) = self.call(method, path, token, body);
        assert_eq!(got, status, "{method} {path}: {json}");
        json
    }

    /// Signs in with [`PASSWORD`] and returns the session token.
    pub fn login(&self, username: &str) -> String {
        let body = serde_json::json!({ "username": username, "password": PASSWORD });
        let json = self.expect(200, "POST", "/api/auth/login", None, Some(&body));
        json["token"].as_str().expect("token").to_string()
    }
}

/// The social-insurance provider, whose steward reviews in the fixtures.
pub const SI_PROVIDER: &str = "深圳市社会保险基金管理局";

/// The accounts of a workflow test, created before the server starts.
pub struct People {
    pub researcher: String,
    pub other_researcher: String,
    pub steward: String,
    pub other_steward: String,
    pub admin: String,
    pub second_admin: String,
    pub auditor: String,
}

/// Creates the workflow accounts: a university researcher (and one from another
/// university), the social-insurance steward, a steward of another provider,
/// two admins of different organisations, and an auditor.
pub fn add_people(data: &Path) {
    add_user(
        data,
        "r_li",
        "researcher",
        "深圳大学",
        "university",
        &["--verified"],
    );
    add_user(
        data,
        "r_other",
        "researcher",
        "南方科技大学",
        "university",
        &["--verified"],
    );
    add_user(
        data,
        "s_wang",
        "steward",
        SI_PROVIDER,
        "government",
        &["--agency", SI_PROVIDER],
    );
    add_user(
        data,
        "s_zhao",
        "steward",
        "深圳市医疗保障局",
        "government",
        &["--agency", "深圳市医疗保障局"],
    );
    add_user(
        data,
        "a_zhang",
        "admin",
        "深圳市政务服务数据管理局",
        "government",
        &[],
    );
    add_user(
        data,
        "a_chen",
        "admin",
        "深圳市数据交易所",
        "enterprise",
        &[],
    );
    add_user(data, "u_chen", "auditor", "深圳市审计局", "government", &[]);
}

impl People {
    /// Signs every workflow account in.
    pub fn login(server: &TestServer) -> People {
        People {
            researcher: server.login("r_li"),
            other_researcher: server.login("r_other"),
            steward: server.login("s_wang"),
            other_steward: server.login("s_zhao"),
            admin: server.login("a_zhang"),
            second_admin: server.login("a_chen"),
            auditor: server.login("u_chen"),
        }
    }
}

/// A project of the researcher behind `token`.
pub fn new_project(server: &TestServer, token: &str, category: &str) -> String {
    let body = serde_json::json!({
        "title": "深圳各区社保缴费基数差异研究",
        "scenario_description": "分析各区参保人员缴费基数的分布及其随年龄的变化，用于公共政策研究。",
        "scenario_category": category,
    });
    server.expect(201, "POST", "/api/projects", Some(token), Some(&body))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A valid application body for social_insurance under `project`.
pub fn draft(project: &str) -> serde_json::Value {
    let start = today_cst();
    serde_json::json!({
        "project_id": project,
        "datasets": [{
            "dataset_id": "social_insurance",
            "columns": ["person_id", "district", "contribution_base", "months_contributed"],
            "version_policy": "pinned",
        }],
        "usage_method": "invisible",
        "purpose": "统计各区缴费基数的分布，评估社保政策调整的影响。",
        "purpose_is_research": true,
        "period_start": start.to_string(),
        "period_end": (start + chrono::Days::new(180)).to_string(),
        "security_measures": "仅在安全域内分析，结果经审核后导出，不做再识别。",
        "admission": {
            "brings_own_data": false,
            "development_environment": "SQL 与 WebAssembly 模型",
            "cpu_cores": 2,
            "memory_gib": 8,
            "storage_gib": 10,
            "accepts_domain_rules": true,
        },
        "agreement_version": 1,
    })
}

/// How far to take an application.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Draft,
    Submitted,
    CompletenessCheck,
    UnderReview,
    Approved,
    Signed,
}

/// An application of `people.researcher` on social_insurance, taken to `stage`
/// (admin checks completeness; the steward and the admin approve). Returns the
/// application id and, once signed, the grant id.
pub fn application_at(
    server: &TestServer,
    people: &People,
    project: &str,
    stage: Stage,
) -> (String, Option<String>) {
    let r = people.researcher.as_str();
    let app = server.expect(
        201,
        "POST",
        "/api/applications",
        Some(r),
        Some(&draft(project)),
    );
    let id = app["id"].as_str().unwrap().to_string();
    let step = |token: &str, path: &str| {
        server.expect(
            200,
            "POST",
            &format!("/api/applications/{id}/{path}"),
            Some(token),
            None,
        )
    };
    if stage >= Stage::Submitted {
        step(r, "submit");
    }
    if stage >= Stage::CompletenessCheck {
        step(&people.admin, "completeness/start");
    }
    if stage >= Stage::UnderReview {
        step(&people.admin, "completeness/pass");
    }
    if stage >= Stage::Approved {
        step(&people.steward, "approve");
        let done = step(&people.admin, "approve");
        assert_eq!(done["status"], "approved", "{done}");
    }
    let mut grant = None;
    if stage >= Stage::Signed {
        let text = server.expect(
            200,
            "GET",
            &format!("/api/applications/{id}/agreement"),
            Some(r),
            None,
        );
        let body = serde_json::json!({ "agreement_sha256": text["sha256"] });
        let signed = server.expect(
            201,
            "POST",
            &format!("/api/applications/{id}/agreement/sign"),
            Some(r),
            Some(&body),
        );
        grant = Some(signed["grant"]["id"].as_str().unwrap().to_string());
    }
    (id, grant)
}

/// A grant for the researcher on `datasets` (id, columns), through the whole
/// workflow: every provider's steward (SI: `steward`, medical: `other_steward`)
/// and the admin approve. Returns the grant id.
pub fn grant_on(
    server: &TestServer,
    people: &People,
    datasets: &[(&str, &[&str])],
    usage_method: &str,
) -> String {
    let r = people.researcher.as_str();
    let project = new_project(server, r, "academic_research");
    let mut body = draft(&project);
    body["usage_method"] = serde_json::json!(usage_method);
    body["datasets"] = serde_json::Value::Array(
        datasets
            .iter()
            .map(|(id, cols)| serde_json::json!({ "dataset_id": id, "columns": cols, "version_policy": "pinned" }))
            .collect(),
    );
    let app = server.expect(201, "POST", "/api/applications", Some(r), Some(&body));
    let id = app["id"].as_str().unwrap().to_string();
    let step = |token: &str, path: &str| {
        server.expect(
            200,
            "POST",
            &format!("/api/applications/{id}/{path}"),
            Some(token),
            None,
        )
    };
    step(r, "submit");
    step(&people.admin, "completeness/start");
    step(&people.admin, "completeness/pass");
    if datasets.iter().any(|(d, _)| *d != "medical_claims") {
        step(&people.steward, "approve");
    }
    if datasets.iter().any(|(d, _)| *d == "medical_claims") {
        step(&people.other_steward, "approve");
    }
    let done = step(&people.admin, "approve");
    assert_eq!(done["status"], "approved", "{done}");
    let text = server.expect(
        200,
        "GET",
        &format!("/api/applications/{id}/agreement"),
        Some(r),
        None,
    );
    let signed = server.expect(
        201,
        "POST",
        &format!("/api/applications/{id}/agreement/sign"),
        Some(r),
        Some(&serde_json::json!({ "agreement_sha256": text["sha256"] })),
    );
    signed["grant"]["id"].as_str().unwrap().to_string()
}

/// Submits `sql` under `grant`; returns the status code and body.
pub fn submit(
    server: &TestServer,
    token: &str,
    grant: &str,
    sql: &str,
) -> (u16, serde_json::Value) {
    server.call(
        "POST",
        "/api/jobs",
        Some(token),
        Some(&serde_json::json!({ "grant_id": grant, "sql": sql })),
    )
}

/// Polls a job until it leaves queued/running/checked.
pub fn wait_job(server: &TestServer, token: &str, job: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let j = server.expect(200, "GET", &format!("/api/jobs/{job}"), Some(token), None);
        let s = j["status"].as_str().unwrap_or("");
        if !matches!(s, "queued" | "running" | "checked") {
            return j;
        }
        assert!(std::time::Instant::now() < deadline, "job {job} still {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A job as `token` sees it (its requester: the plan's facts only; its
/// reviewers: the stored record with checks and counts).
pub fn job_as(server: &TestServer, token: &str, job: &str) -> serde_json::Value {
    server.expect(200, "GET", &format!("/api/jobs/{job}"), Some(token), None)
}

/// What the data decided of a job, which its requester must not see before release.
pub const WITHHELD_FROM_REQUESTER: [&str; 6] = [
    "checks",
    "suppressed_groups",
    "rows_scanned",
    "result_sha256",
    "cpu_seconds",
    "facts",
];

/// Reads the review packet as `token` (a vote counts only after it), then
/// votes; returns the answer to the vote.
pub fn vote(
    server: &TestServer,
    token: &str,
    job: &str,
    vote: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let (status, packet) =
        server.call("GET", &format!("/api/jobs/{job}/review"), Some(token), None);
    assert_eq!(status, 200, "review packet of {job}: {packet}");
    server.call(
        "POST",
        &format!("/api/jobs/{job}/review"),
        Some(token),
        Some(vote),
    )
}

/// [`vote`], which must be accepted; returns the job as the answer shows it.
pub fn vote_ok(
    server: &TestServer,
    token: &str,
    job: &str,
    body: &serde_json::Value,
) -> serde_json::Value {
    let (status, answer) = vote(server, token, job, body);
    assert_eq!(status, 200, "vote on {job}: {answer}");
    answer
}

/// Submits `sql` and waits for the job; panics unless accepted.
pub fn run_job(server: &TestServer, token: &str, grant: &str, sql: &str) -> serde_json::Value {
    let (status, body) = submit(server, token, grant, sql);
    assert_eq!(status, 202, "{sql}: {body}");
    wait_job(server, token, body["id"].as_str().unwrap())
}

/// Runs one SQL statement on a SQLite file directly, as an intruder or a
/// passing clock would (the server must not be running).
pub fn exec_sqlite(db: &Path, statement: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("open sqlite");
        sqlx::query(statement)
            .execute(&mut conn)
            .await
            .expect("statement");
        conn.close().await.expect("close");
    });
}

/// `UPDATE <table> SET <set> WHERE <filter>` on a sealed table of the
/// metadata store, as the master key's holder would (the rows' MACs are
/// rewritten): how a test lets time pass. The server must not be running.
pub fn update_sealed(data_dir: &Path, table: &str, set: &str, filter: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = enclave::domain::DataDir::new(data_dir);
        let keyring = enclave::keyring::Keyring::open(&dir.keys()).expect("keys");
        let store = enclave::store::Store::open(&dir.meta_db(), &keyring)
            .await
            .expect("store");
        let n = store
            .update_sealed(table, set, filter)
            .await
            .expect("update");
        assert!(n > 0, "no row of {table} where {filter}");
        store.close().await;
    });
}
