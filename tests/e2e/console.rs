//! The browser console (`/console`) through the real binary: every page ×
//! every role answers as the API's route for that role does, CSRF refusals,
//! security headers, the language switch, escaping, sessions; and a real
//! Chromium driven over WebDriver through the researcher's and reviewers'
//! journey.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::common::{
    self, People, TestServer, add_people, grant_on, prepared_data_dir, run, run_job,
};

/// A cookie-keeping client that does not follow redirects (they carry cookies).
struct Browser<'a> {
    server: &'a TestServer,
    client: reqwest::blocking::Client,
    cookies: BTreeMap<String, String>,
}

impl<'a> Browser<'a> {
    fn new(server: &'a TestServer) -> Self {
        Browser {
            server,
            client: reqwest::blocking::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, resp: &reqwest::blocking::Response) {
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let pair = v.split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            if v.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), val.to_string());
            }
        }
    }

    fn get(&mut self, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let resp = self
            .client
            .get(self.server.url(path))
            .header("cookie", self.cookie_header())
            .send()
            .unwrap();
        self.keep(&resp);
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().unwrap())
    }

    fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, String) {
        let resp = self
            .client
            .post(self.server.url(path))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .unwrap();
        self.keep(&resp);
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().unwrap())
    }

    /// The CSRF token the page's forms carry.
    fn csrf(&mut self, path: &str) -> String {
        let (_, _, html) = self.get(path);
        csrf_of(&html)
    }

    fn sign_in(&mut self, username: &str) {
        let csrf = self.csrf("/console/signin");
        let (status, headers, body) = self.post(
            "/console/signin",
            &[
                ("csrf", &csrf),
                ("username", username),
                ("password", common::PASSWORD),
                ("next", "/console/catalog"),
            ],
        );
        assert_eq!(status, 303, "sign in {username}: {body}");
        assert_eq!(headers["location"], "/console/catalog");
        assert!(self.cookies.contains_key("anyu_session"));
    }
}

/// An attribute value as the browser reads it.
fn unescape(s: &str) -> String {
    s.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no csrf field in {html}"));
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// A data dir with social_insurance, the workflow's people, a grant of the
/// researcher and a job waiting for review.
struct Fixture {
    _dir: tempfile::TempDir,
    server: TestServer,
    people: People,
    grant: String,
    job: String,
}

const SQL: &str = "SELECT district, count(*) AS n FROM social_insurance GROUP BY district";

fn fixture(rows: u64) -> Fixture {
    let dir = prepared_data_dir(rows, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    let server = TestServer::start(&data);
    let people = People::login(&server);
    let grant = grant_on(
        &server,
        &people,
        &[(
            "social_insurance",
            &["person_id", "district", "contribution_base"],
        )],
        "invisible",
    );
    let job = run_job(&server, &people.researcher, &grant, SQL);
    assert_eq!(job["status"], "pending_review", "{job}");
    let job = job["id"].as_str().unwrap().to_string();
    Fixture {
        _dir: dir,
        server,
        people,
        grant,
        job,
    }
}

#[test]
fn every_console_page_answers_each_role_as_the_api_does() {
    let f = fixture(400);
    let s = &f.server;
    let (g, j) = (f.grant.as_str(), f.job.as_str());
    let pairs = [
        ("/console/catalog".to_string(), "/api/catalog".to_string()),
        (
            "/console/catalog/social_insurance".into(),
            "/api/catalog/social_insurance".into(),
        ),
        ("/console/grants".into(), "/api/grants".into()),
        (format!("/console/grants/{g}"), format!("/api/grants/{g}")),
        (format!("/console/jobs/{j}"), format!("/api/jobs/{j}")),
        ("/console/reviews".into(), "/api/reviews".into()),
        (
            format!("/console/reviews/{j}"),
            format!("/api/jobs/{j}/review"),
        ),
        ("/console/audit".into(), "/api/audit/events".into()),
    ];
    let roles = [
        ("r_li", f.people.researcher.as_str()),
        ("s_wang", f.people.steward.as_str()),
        ("a_zhang", f.people.admin.as_str()),
        ("u_chen", f.people.auditor.as_str()),
        ("r_other", f.people.other_researcher.as_str()),
    ];
    let mut refused = 0;
    for (user, token) in roles {
        let mut b = Browser::new(s);
        b.sign_in(user);
        for (page, api) in &pairs {
            let (api_status, _) = s.call("GET", api, Some(token), None);
            let (status, headers, html) = b.get(page);
            assert_eq!(
                status, api_status,
                "{user} {page}: console {status}, API {api} {api_status}: {html}"
            );
            assert!([200, 403, 404].contains(&status), "{user} {page}: {status}");
            if status == 403 {
                refused += 1;
                assert!(html.contains("<h1>无权访问</h1>"), "{user} {page}: {html}");
            }
            assert_eq!(headers["cache-control"], "no-store", "{page}");
        }
    }
    assert!(refused >= 8, "the matrix refuses something: {refused}");
    // Anonymous: where the API says 401, the console asks to sign in.
    let mut anon = Browser::new(s);
    for (page, api) in &pairs {
        let (api_status, _) = s.call("GET", api, None, None);
        let (status, headers, _) = anon.get(page);
        if api_status == 401 {
            assert_eq!(status, 303, "{page}");
            assert!(
                headers["location"]
                    .to_str()
                    .unwrap()
                    .starts_with("/console/signin?next=/console"),
                "{page}: {headers:?}"
            );
        } else {
            assert_eq!(status, api_status, "{page}");
        }
    }
    // Refusals are the domain's, audited as such.
    let denied = s.expect(
        200,
        "GET",
        "/api/audit/events?actor=u_chen&limit=1000",
        Some(&f.people.auditor),
        None,
    );
    assert!(
        denied
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["outcome"] == "denied"),
        "{denied}"
    );
}

#[test]
fn console_headers_csrf_sessions_language_and_escaping() {
    let f = fixture(400);
    let s = &f.server;
    let mut b = Browser::new(s);

    // Headers of a page and of an asset.
    let (status, headers, html) = b.get("/console/catalog");
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(html.contains("<html lang=\"zh-CN\">"), "{html}");
    assert!(html.contains("开放目录"));
    assert!(
        !html.contains("<script>") && !html.contains("style=\""),
        "no inline script or style"
    );
    let href_at = html.find("<link rel=\"stylesheet\" href=\"").unwrap();
    let rest = &html[href_at + "<link rel=\"stylesheet\" href=\"".len()..];
    let href = &unescape(&rest[..rest.find('"').unwrap()]);
    let integrity_at = rest.find("integrity=\"").unwrap();
    let integrity = &rest[integrity_at + 11..];
    let integrity = unescape(&integrity[..integrity.find('"').unwrap()]);
    let resp = reqwest::blocking::get(s.url(href)).unwrap();
    assert_eq!(
        resp.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let body = resp.bytes().unwrap();
    use base64::Engine;
    let sha = ring::digest::digest(&ring::digest::SHA256, &body);
    assert_eq!(
        integrity,
        format!(
            "sha256-{}",
            base64::engine::general_purpose::STANDARD.encode(sha.as_ref())
        )
    );

    // Sign-in: a form without the pre-session token is refused.
    let (status, _, page) = Browser::new(s).post(
        "/console/signin",
        &[("username", "r_li"), ("password", common::PASSWORD)],
    );
    assert_eq!(status, 403, "{page}");
    // The session cookie: HttpOnly, SameSite=Strict, Path=/; Secure behind TLS.
    let mut r = Browser::new(s);
    let csrf = r.csrf("/console/signin");
    let resp = r
        .client
        .post(s.url("/console/signin"))
        .header("cookie", r.cookie_header())
        .header("x-forwarded-proto", "https")
        .form(&[
            ("csrf", csrf.as_str()),
            ("username", "r_li"),
            ("password", common::PASSWORD),
        ])
        .send()
        .unwrap();
    let set: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = set.iter().find(|c| c.starts_with("anyu_session=")).unwrap();
    for attr in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Secure",
        "Max-Age=",
    ] {
        assert!(session.contains(attr), "{session}");
    }
    r.keep(&resp);
    let mut plain = Browser::new(s);
    plain.sign_in("r_li");
    let token = plain.cookies["anyu_session"].clone();
    // The cookie's token is an API session like any other.
    s.expect(200, "GET", "/api/me", Some(&token), None);

    // CSRF: a job posted without the token, or with another's, is refused
    // and nothing is submitted.
    let jobs_before = s.expect(200, "GET", "/api/jobs", Some(&token), None);
    let path = format!("/console/grants/{}/jobs", f.grant);
    let (status, _, page) = plain.post(&path, &[("sql", SQL)]);
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("防伪令牌"), "{page}");
    let other_csrf = r.csrf("/console/catalog");
    let (status, _, _) = plain.post(&path, &[("sql", SQL), ("csrf", &other_csrf)]);
    assert_eq!(status, 403);
    let jobs_after = s.expect(200, "GET", "/api/jobs", Some(&token), None);
    assert_eq!(
        jobs_before.as_array().unwrap().len(),
        jobs_after.as_array().unwrap().len()
    );
    let (status, _, _) = plain.post("/console/signout", &[]);
    assert_eq!(status, 403);
    s.expect(200, "GET", "/api/me", Some(&token), None);

    // A refused query keeps its text and explains the rule in words.
    let csrf = plain.csrf("/console/catalog");
    let hostile_sql =
        "SELECT district FROM social_insurance WHERE district = '<script>alert(1)</script>'";
    let (status, _, page) = plain.post(&path, &[("sql", hostile_sql), ("csrf", &csrf)]);
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("id=\"submit-error\""), "{page}");
    assert!(
        !page.contains("请求未被执行"),
        "the rule is explained in words: {page}"
    );
    assert!(page.contains("&lt;script&gt;alert(1)"), "{page}");
    assert!(!page.contains("<script>alert(1)"), "{page}");
    // An accepted one with hostile text is escaped on its job page and in review.
    let sql = "SELECT district, count(*) AS n FROM social_insurance \
               WHERE district <> '<img src=x onerror=alert(1)>' GROUP BY district";
    let (status, headers, page) = plain.post(&path, &[("sql", sql), ("csrf", &csrf)]);
    assert_eq!(status, 303, "{page}");
    let job_page = headers["location"].to_str().unwrap().to_string();
    let (_, _, page) = plain.get(&job_page);
    assert!(
        page.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{page}"
    );
    assert!(!page.contains("<img src=x"), "{page}");
    let job_id = job_page.rsplit('/').next().unwrap();
    common::wait_job(s, &token, job_id);
    let mut steward = Browser::new(s);
    steward.sign_in("s_wang");
    let (status, _, page) = steward.get(&format!("/console/reviews/{job_id}"));
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("<img src=x"), "{page}");

    // The language switch, remembered in a cookie.
    let (status, headers, _) = plain.post(
        "/console/lang",
        &[("csrf", &csrf), ("lang", "en"), ("back", "/console/grants")],
    );
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/console/grants");
    let (_, _, page) = plain.get("/console/grants");
    assert!(page.contains("<html lang=\"en\">"), "{page}");
    assert!(
        page.contains("My grants") && !page.contains("我的授权"),
        "{page}"
    );
    let (_, _, page) = plain.get("/console/catalog");
    assert!(page.contains("Open catalog") && page.contains("Social insurance contributions"));
    // An outside address is never where the switch returns to.
    let (_, headers, _) = plain.post(
        "/console/lang",
        &[
            ("csrf", &csrf),
            ("lang", "zh-CN"),
            ("back", "https://evil.example/"),
        ],
    );
    assert_eq!(headers["location"], "/console/catalog");

    // Sign-out ends the session everywhere.
    let (status, _, _) = plain.post("/console/signout", &[("csrf", &csrf)]);
    assert_eq!(status, 303);
    let (status, _) = s.call("GET", "/api/me", Some(&token), None);
    assert_eq!(status, 401);
    let mut stale = Browser::new(s);
    stale.cookies.insert("anyu_session".into(), token.clone());
    let (status, headers, _) = stale.get("/console/grants");
    assert_eq!(status, 303, "an ended session signs in again");
    assert!(
        headers["location"]
            .to_str()
            .unwrap()
            .starts_with("/console/signin")
    );

    // Wrong passwords: the API's answer and the API's lockout.
    let mut w = Browser::new(s);
    let csrf = w.csrf("/console/signin");
    for _ in 0..5 {
        let (status, _, page) = w.post(
            "/console/signin",
            &[
                ("csrf", &csrf),
                ("username", "r_other"),
                ("password", "wrong password!"),
            ],
        );
        assert_eq!(status, 401);
        assert!(page.contains("用户名或密码错误"), "{page}");
    }
    let (status, headers, _) = w.post(
        "/console/signin",
        &[
            ("csrf", &csrf),
            ("username", "r_other"),
            ("password", "wrong password!"),
        ],
    );
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"));
    let (status, _) = s.call(
        "POST",
        "/api/auth/login",
        None,
        Some(&serde_json::json!({ "username": "r_other", "password": common::PASSWORD })),
    );
    assert_eq!(status, 429, "the same lockout as the API");
}

#[test]
fn a_hostile_dataset_title_is_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    let samples = dir.path().join("samples");
    run(
        &data,
        &[
            "datasets",
            "generate",
            "--rows",
            "50",
            "--seed",
            "5",
            "--out",
            samples.to_str().unwrap(),
        ],
        true,
    );
    let manifest = std::fs::read_to_string(
        common::repo_root().join("datasets/manifests/social_insurance.toml"),
    )
    .unwrap()
    .replace("社会保险参保缴费记录", "<script>alert('t')</script>参保");
    let path = dir.path().join("hostile.toml");
    std::fs::write(&path, manifest).unwrap();
    run(
        &data,
        &[
            "dataset",
            "import",
            path.to_str().unwrap(),
            samples.join("social_insurance.csv").to_str().unwrap(),
        ],
        true,
    );
    let server = TestServer::start(&data);
    let mut b = Browser::new(&server);
    for page in ["/console/catalog", "/console/catalog/social_insurance"] {
        let (status, _, html) = b.get(page);
        assert_eq!(status, 200);
        assert!(html.contains("&lt;script&gt;alert("), "{page}: {html}");
        assert!(!html.contains("<script>alert"), "{page}");
    }
}

// ---------------------------------------------------------------------------
// A real browser over W3C WebDriver (Debian's chromium and chromium-driver).

fn chromedriver() -> Option<std::path::PathBuf> {
    ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

struct Driver {
    child: std::process::Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
}

/// The web element reference of a find answer (its one key is the W3C
/// element identifier).
fn element_id(v: &serde_json::Value) -> Option<&str> {
    v["value"]
        .as_object()
        .filter(|o| o.len() == 1 && !o.contains_key("error"))
        .and_then(|o| o.values().next())
        .and_then(|x| x.as_str())
}

impl Driver {
    fn start(binary: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while http.get(format!("{base}/status")).send().is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = serde_json::json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/lib/chromium/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,800"],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        }}});
        let resp: serde_json::Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("new session: {resp}"))
            .to_string();
        Driver {
            child,
            base,
            session,
            http,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self
                .http
                .post(url)
                .json(&body.unwrap_or(serde_json::json!({}))),
        };
        let v: serde_json::Value = req.send().unwrap().json().unwrap();
        if v["value"].get("error").is_some() {
            panic!("webdriver {method} {path}: {v}");
        }
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(serde_json::json!({ "url": url })));
    }

    fn find(&self, css: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let url = format!("{}/session/{}/element", self.base, self.session);
            let v: serde_json::Value = self
                .http
                .post(url)
                .json(&serde_json::json!({ "using": "css selector", "value": css }))
                .send()
                .unwrap()
                .json()
                .unwrap();
            if let Some(id) = element_id(&v) {
                return id.to_string();
            }
            if std::time::Instant::now() > deadline {
                let url = format!("{}/session/{}/source", self.base, self.session);
                let page: serde_json::Value = self.http.get(url).send().unwrap().json().unwrap();
                panic!("no {css} on the page: {page}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn click(&self, css: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/click"), None);
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.cmd("POST", &format!("/element/{id}/clear"), None);
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(serde_json::json!({ "text": text })),
        );
    }

    fn attribute(&self, css: &str, name: &str) -> String {
        let id = self.find(css);
        self.cmd("GET", &format!("/element/{id}/attribute/{name}"), None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    fn wait_status(&self, status: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            // htmx replaces the state section while the job moves on.
            let url = format!("{}/session/{}/element", self.base, self.session);
            let v: serde_json::Value = self
                .http
                .post(url)
                .json(&serde_json::json!({ "using": "css selector", "value": "#job-status" }))
                .send()
                .unwrap()
                .json()
                .unwrap();
            if let Some(id) = element_id(&v) {
                let got = format!(
                    "{}/session/{}/element/{id}/attribute/data-status",
                    self.base, self.session
                );
                let got: serde_json::Value = self.http.get(got).send().unwrap().json().unwrap();
                if got["value"] == status {
                    return;
                }
            }
            assert!(std::time::Instant::now() < deadline, "job never {status}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None).as_str().unwrap().to_string()
    }

    fn screenshot(&self, to: &Path) {
        use base64::Engine;
        let png = self.cmd("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(to, bytes).unwrap();
    }

    /// The browser's console since the last call: every entry must be clean.
    fn assert_clean_log(&self, page: &str) {
        let log = self.cmd(
            "POST",
            "/se/log",
            Some(serde_json::json!({ "type": "browser" })),
        );
        for entry in log.as_array().unwrap() {
            let level = entry["level"].as_str().unwrap_or("");
            let message = entry["message"].as_str().unwrap_or("");
            assert!(
                level != "SEVERE" && !message.contains("Content Security Policy"),
                "{page}: browser log: {entry}"
            );
        }
    }

    fn sign_in(&self, server: &TestServer, username: &str) {
        self.go(&server.url("/console/signin"));
        self.type_into("#username", username);
        self.type_into("#password", common::PASSWORD);
        self.click("#signin-submit");
        self.find("#signout");
    }

    fn sign_out(&self) {
        self.click("#signout");
        self.find("a[href='/console/signin']");
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_browser_runs_a_query_has_it_reviewed_and_sees_the_release() {
    let Some(driver) = chromedriver() else {
        assert!(
            std::env::var_os("ANYU_REQUIRE_BROWSER").is_none(),
            "chromium-driver is required (scripts/test installs it)"
        );
        eprintln!("skipped: no chromedriver (apt-get install chromium chromium-driver)");
        return;
    };
    let f = fixture(400);
    let s = &f.server;
    let shots = tempfile::tempdir().unwrap();
    let keep = std::env::var_os("ANYU_CONSOLE_SHOTS").map(std::path::PathBuf::from);
    let d = Driver::start(&driver);

    // The public catalog, then the researcher's workbench.
    d.go(&s.url("/console/catalog"));
    d.find("table");
    d.screenshot(&shots.path().join("catalog.png"));
    d.assert_clean_log("catalog");
    d.sign_in(s, "r_li");
    d.go(&s.url("/console/grants"));
    d.click(&format!("a[href='/console/grants/{}']", f.grant));
    d.type_into("#sql", "SELECT district, avg(contribution_base) AS mean_base, count(*) AS n\nFROM social_insurance\nGROUP BY district\nORDER BY district");
    d.screenshot(&shots.path().join("workbench.png"));
    d.click("#submit-query");
    d.wait_status("pending_review");
    d.screenshot(&shots.path().join("job-pending.png"));
    d.assert_clean_log("workbench and job");
    let job = d.url().rsplit('/').next().unwrap().to_string();
    d.sign_out();

    // Two reviewers (L3): the steward and the admin, each on the review page.
    for reviewer in ["s_wang", "a_zhang"] {
        d.sign_in(s, reviewer);
        d.go(&s.url("/console/reviews"));
        d.click(&format!("a[href='/console/reviews/{job}']"));
        d.find("#candidate td");
        if reviewer == "s_wang" {
            d.screenshot(&shots.path().join("review.png"));
        }
        d.click("#decision-approve");
        d.click("#vote-submit");
        d.find("#my-vote");
        d.assert_clean_log("review");
        d.sign_out();
    }

    // The researcher sees the released table.
    d.sign_in(s, "r_li");
    d.go(&s.url(&format!("/console/jobs/{job}")));
    d.wait_status("released");
    d.find("#result-table td");
    assert!(
        d.attribute("a[href$='format=csv']", "href")
            .ends_with("format=csv"),
        "download link"
    );
    d.screenshot(&shots.path().join("released.png"));
    d.assert_clean_log("released");
    // A narrow window keeps the page usable.
    d.cmd(
        "POST",
        "/window/rect",
        Some(serde_json::json!({ "width": 800, "height": 1000 })),
    );
    d.go(&s.url(&format!("/console/grants/{}", f.grant)));
    d.find("#sql");
    d.assert_clean_log("narrow workbench");
    if let Some(dir) = keep {
        std::fs::create_dir_all(&dir).unwrap();
        for shot in [
            "catalog.png",
            "workbench.png",
            "job-pending.png",
            "review.png",
            "released.png",
        ] {
            std::fs::copy(shots.path().join(shot), dir.join(shot)).unwrap();
        }
    }
    let released = common::job_as(s, &f.people.researcher, &job);
    assert_eq!(released["status"], "released", "{released}");
}
