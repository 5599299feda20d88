//! The front door through the real binary: API tokens (scopes, default
//! expiry, minted only from a session with the password), logins (attempt
//! slots, backoff, one answer for every account), connection limits.

use serde_json::json;

use crate::common::{self, PASSWORD, TestServer, run, stdout};

fn add_user(data: &std::path::Path, username: &str, role: &str) {
    common::add_user(
        data,
        username,
        role,
        "深圳大学",
        "university",
        &["--verified"],
    );
}

fn new_token(server: &TestServer, session: &str, scopes: &[&str]) -> (String, serde_json::Value) {
    let created = server.expect(
        201,
        "POST",
        "/api/me/tokens",
        Some(session),
        Some(&json!({ "name": "script", "password": PASSWORD, "scopes": scopes })),
    );
    (
        created["token"].as_str().unwrap().to_string(),
        created["info"].clone(),
    )
}

const PROJECT: &str = r#"{"title":"范围测试","scenario_category":"academic_research","scenario_description":"检验令牌的使用范围。"}"#;

#[test]
fn api_tokens_have_scopes_expire_by_default_and_cannot_mint_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    add_user(&data, "r_li", "researcher");
    add_user(&data, "a_zhang", "admin");
    let server = TestServer::start(&data);
    let session = server.login("r_li");
    let project: serde_json::Value = serde_json::from_str(PROJECT).unwrap();

    // The password is asked again; a wrong one mints nothing.
    let wrong = server.expect(
        401,
        "POST",
        "/api/me/tokens",
        Some(&session),
        Some(&json!({ "name": "x", "password": "not the password", "scopes": ["read"] })),
    );
    assert_eq!(wrong["error"]["code"], "unauthenticated");
    for bad in [
        json!({ "name": "x", "scopes": ["read"] }),
        json!({ "name": "x", "password": PASSWORD, "scopes": [] }),
        json!({ "name": "x", "password": PASSWORD, "scopes": ["everything"] }),
        json!({ "name": "x", "password": PASSWORD, "scopes": ["read"],
                "expires_at": (chrono::Utc::now() + chrono::TimeDelta::days(400)).to_rfc3339() }),
    ] {
        server.expect(400, "POST", "/api/me/tokens", Some(&session), Some(&bad));
    }

    // Without an expiry a token lives 90 days, and says so.
    let (read, info) = new_token(&server, &session, &["read"]);
    let expires = chrono::DateTime::parse_from_rfc3339(info["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let days = (expires - chrono::Utc::now()).num_hours() as f64 / 24.0;
    assert!((89.9..=90.0).contains(&days), "{info}");
    assert_eq!(info["scopes"], json!(["read"]));

    // A read token reads, and writes nothing.
    server.expect(200, "GET", "/api/me", Some(&read), None);
    server.expect(200, "GET", "/api/projects", Some(&read), None);
    let refused = server.expect(403, "POST", "/api/projects", Some(&read), Some(&project));
    assert_eq!(refused["error"]["code"], "forbidden");
    // A jobs token does the researcher's work.
    let (jobs, _) = new_token(&server, &session, &["jobs"]);
    server.expect(201, "POST", "/api/projects", Some(&jobs), Some(&project));
    server.expect(403, "GET", "/api/projects", Some(&jobs), None);

    // No token mints a token or changes the password, whatever its scopes.
    let (all, _) = new_token(&server, &session, &["read", "jobs", "review", "admin"]);
    for t in [&read, &jobs, &all] {
        server.expect(
            403,
            "POST",
            "/api/me/tokens",
            Some(t),
            Some(&json!({ "name": "minted", "password": PASSWORD, "scopes": ["read"] })),
        );
        server.expect(
            403,
            "POST",
            "/api/me/password",
            Some(t),
            Some(&json!({ "current_password": PASSWORD, "new_password": "another long password" })),
        );
    }
    // A scope never widens the role: an admin scope on a researcher is nothing.
    server.expect(403, "GET", "/api/admin/users", Some(&all), None);

    // An admin's read token lists nothing of accounts; its admin token does.
    let admin = server.login("a_zhang");
    let (admin_read, _) = new_token(&server, &admin, &["read"]);
    let (admin_admin, _) = new_token(&server, &admin, &["admin"]);
    server.expect(403, "GET", "/api/admin/users", Some(&admin_read), None);
    server.expect(200, "GET", "/api/audit/events", Some(&admin_read), None);
    server.expect(200, "GET", "/api/admin/users", Some(&admin_admin), None);

    // Listing shows each token's scopes and expiry, never the secret; a token
    // may list and revoke its owner's tokens.
    let listed = server.expect(200, "GET", "/api/me/tokens", Some(&read), None);
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|t| t["expires_at"].is_string()));
    assert!(!serde_json::to_string(listed).unwrap().contains(&read));
    let jobs_id = listed[1]["id"].as_str().unwrap();
    server.expect(
        200,
        "DELETE",
        &format!("/api/me/tokens/{jobs_id}"),
        Some(&read),
        None,
    );
    server.expect(401, "GET", "/api/me", Some(&jobs), None);

    // A password change keeps the tokens unless asked to revoke them all.
    server.expect(
        204,
        "POST",
        "/api/me/password",
        Some(&session),
        Some(&json!({ "current_password": PASSWORD, "new_password": "a second long password" })),
    );
    server.expect(200, "GET", "/api/me", Some(&read), None);
    server.expect(
        204,
        "POST",
        "/api/me/password",
        Some(&session),
        Some(&json!({ "current_password": "a second long password",
                      "new_password": "a third long password", "revoke_api_tokens": true })),
    );
    for t in [&read, &all] {
        server.expect(401, "GET", "/api/me", Some(t), None);
    }
    server.expect(200, "GET", "/api/me", Some(&session), None);
    server.stop();

    let tail = stdout(&run(&data, &["audit", "tail", "-n", "200"], true));
    assert!(tail.contains("\"scopes\":[\"read\"]"), "{tail}");
    assert!(tail.contains("\"api_tokens_revoked\":2"), "{tail}");
}

/// Sets keys in the data directory's anyu.toml: `text` is `[section]` lines
/// followed by keys, each key put right under its section's header.
fn configure(data: &std::path::Path, text: &str) {
    let path = data.join("anyu.toml");
    let mut toml = std::fs::read_to_string(&path).unwrap();
    let mut section = String::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        let header = format!("\n{section}\n");
        let at = toml.find(&header).expect("section in anyu.toml") + header.len();
        toml.insert_str(at, &format!("{line}\n"));
    }
    std::fs::write(&path, toml).unwrap();
}

fn login(server: &TestServer, username: &str, password: &str) -> (u16, Option<String>, String) {
    let resp = server
        .client()
        .post(server.url("/api/auth/login"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, resp.text().unwrap())
}

/// `n` logins sent at once (each thread its own connection), in thread order.
fn burst(
    server: &TestServer,
    attempts: Vec<(String, String)>,
) -> Vec<(u16, Option<String>, String)> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(attempts.len()));
    let url = server.url("/api/auth/login");
    let threads: Vec<_> = attempts
        .into_iter()
        .map(|(user, password)| {
            let barrier = std::sync::Arc::clone(&barrier);
            let url = url.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                barrier.wait();
                let resp = client
                    .post(url)
                    .json(&json!({ "username": user, "password": password }))
                    .send()
                    .unwrap();
                let status = resp.status().as_u16();
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                (status, retry, resp.text().unwrap())
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

const SLOW_BACKOFF: &str =
    "\n[identity]\nbackoff_base_secs = 120\nclient_max_failed_logins = 1000\n";

#[test]
fn concurrent_wrong_passwords_get_no_more_checks_than_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    configure(&data, SLOW_BACKOFF);
    add_user(&data, "victim", "researcher");
    let server = TestServer::start(&data);

    let answers = burst(
        &server,
        (0..12)
            .map(|_| ("victim".to_string(), "wrong password!".to_string()))
            .collect(),
    );
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        7,
        "{statuses:?}"
    );
    for (status, retry, body) in &answers {
        if *status == 429 {
            assert!(retry.is_some(), "429 without Retry-After: {body}");
            assert!(body.contains("too_many_attempts"), "{body}");
        }
    }
    // The limit reached, the right password is not checked either.
    let (status, retry, _) = login(&server, "victim", PASSWORD);
    assert_eq!(status, 429);
    let retry: u64 = retry.unwrap().parse().unwrap();
    assert!((100..=120).contains(&retry), "{retry}");
    server.stop();

    let tail = stdout(&run(&data, &["audit", "tail", "-n", "100"], true));
    assert_eq!(
        tail.matches("\"reason\":\"wrong_password\"").count(),
        5,
        "{tail}"
    );
    assert_eq!(
        tail.matches("\"reason\":\"throttled\"").count(),
        8,
        "{tail}"
    );
}

#[test]
fn unknown_and_known_usernames_get_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    configure(&data, SLOW_BACKOFF);
    add_user(&data, "victim", "researcher");
    let server = TestServer::start(&data);

    let mut seen = Vec::new();
    for name in ["victim", "nobody_here"] {
        let mut answers = Vec::new();
        let mut checked = Vec::new();
        for _ in 0..7 {
            let start = std::time::Instant::now();
            let (status, retry, body) = login(&server, name, "wrong password!");
            if status == 401 {
                checked.push(start.elapsed());
            }
            // Retry-After counts down; whether it is there is what must match.
            answers.push((status, retry.is_some(), body));
        }
        checked.sort();
        eprintln!(
            "{name}: median time of a checked attempt {:?}",
            checked[checked.len() / 2]
        );
        seen.push(answers);
    }
    assert_eq!(
        seen[0], seen[1],
        "a known username must answer like an unknown one"
    );
    let statuses: Vec<u16> = seen[0].iter().map(|a| a.0).collect();
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429]);
    server.stop();
}

#[test]
fn password_checks_beyond_the_bound_answer_busy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    configure(
        &data,
        "\n[identity]\npassword_hash_concurrency = 1\npassword_hash_queue = 0\nclient_max_failed_logins = 1000\n",
    );
    let server = TestServer::start(&data);
    let answers = burst(
        &server,
        (0..16)
            .map(|i| (format!("probe_{i}"), "wrong password!".to_string()))
            .collect(),
    );
    let busy: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert!(
        !busy.is_empty(),
        "16 checks at once, none refused: {answers:?}"
    );
    for (status, retry, body) in &answers {
        assert!(matches!(status, 401 | 503), "{status}: {body}");
        if *status == 503 {
            assert_eq!(retry.as_deref(), Some("1"), "{body}");
            assert!(body.contains("\"busy\""), "{body}");
        }
    }
    eprintln!("{} of 16 concurrent checks answered busy", busy.len());
    server.stop();
}

#[test]
fn a_half_sent_request_head_is_cut_after_the_header_timeout() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    configure(&data, "\n[server]\nheader_read_timeout_secs = 1\n");
    let server = TestServer::start(&data);

    let mut conn = std::net::TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: anyu\r\n")
        .unwrap();
    let start = std::time::Instant::now();
    let mut got = Vec::new();
    let read = conn.read_to_end(&mut got);
    let waited = start.elapsed();
    assert!(read.is_ok(), "the connection was held open: {read:?}");
    assert!(waited < std::time::Duration::from_secs(5), "{waited:?}");
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // A whole request on a fresh connection is served as usual.
    server.get_json("/healthz", 200);
    server.stop();
}

#[test]
fn connections_beyond_the_per_client_limit_are_refused() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    configure(&data, "\n[server]\nmax_connections_per_client = 4\n");
    let server = TestServer::start(&data);

    let get = |conn: &mut std::net::TcpStream| {
        conn.set_read_timeout(Some(std::time::Duration::from_secs(15)))
            .unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: anyu\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let _ = conn.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    };
    let mut held: Vec<_> = (0..4)
        .map(|_| std::net::TcpStream::connect(server.addr).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut fifth = std::net::TcpStream::connect(server.addr).unwrap();
    let answer = get(&mut fifth);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");

    // A place freed is a place taken.
    let mut first = held.remove(0);
    assert!(get(&mut first).starts_with("HTTP/1.1 200"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let mut again = std::net::TcpStream::connect(server.addr).unwrap();
    assert!(get(&mut again).starts_with("HTTP/1.1 200"));
    drop(held);
    server.stop();
}

/// Sends a request head announcing `length` body bytes and no body; returns
/// the answer's status line and how long it took.
fn head_only(
    server: &TestServer,
    method: &str,
    path: &str,
    length: usize,
) -> (String, std::time::Duration) {
    use std::io::{BufRead, Write};
    let mut conn = std::net::TcpStream::connect(server.addr).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let start = std::time::Instant::now();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: anyu\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .unwrap();
    let mut line = String::new();
    let _ = std::io::BufReader::new(conn).read_line(&mut line);
    (line.trim_end().to_string(), start.elapsed())
}

#[test]
fn an_anonymous_body_is_never_read_and_logins_are_small() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    let server = TestServer::start(&data);

    // Every route that takes a body answers an anonymous caller at once, with
    // the body still unsent (below the router's limit, so only reading it
    // could delay the answer) — all but the two public ones.
    let doc = server.get_json("/api/openapi.json", 200);
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["post", "put", "delete"] {
            if item.get(method).is_none() || path == "/api/auth/login" || path == "/api/complaints"
            {
                continue;
            }
            let concrete = path.replace('{', "x").replace('}', "");
            let (status, took) = head_only(&server, &method.to_uppercase(), &concrete, 500_000);
            assert_eq!(status, "HTTP/1.1 401 Unauthorized", "{method} {path}");
            assert!(
                took < std::time::Duration::from_secs(3),
                "{method} {path}: {took:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked}");

    // A login body is read from anyone, so it is small.
    let big = format!(r#"{{"username":"{}","password":"x"}}"#, "a".repeat(100_000));
    let resp = server
        .client()
        .post(server.url("/api/auth/login"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    server.stop();
}

#[test]
fn a_client_past_its_rate_gets_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    configure(&data, "\n[server]\nrate_per_second = 0.5\nrate_burst = 5\n");
    let server = TestServer::start(&data);
    let mut statuses = Vec::new();
    let mut retry = None;
    for _ in 0..8 {
        let resp = server.get("/api/catalog");
        statuses.push(resp.status().as_u16());
        if resp.status().as_u16() == 429 {
            retry = resp.headers().get("retry-after").cloned();
            let body: serde_json::Value = resp.json().unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
        }
    }
    assert_eq!(statuses[..5], [200; 5], "{statuses:?}");
    assert_eq!(statuses[5..], [429; 3], "{statuses:?}");
    let retry: u64 = retry.unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    server.stop();
}

#[test]
fn anonymous_reads_and_denials_are_counted_not_logged_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    // Any real file system is fuller than 1 %: the alarm must fire.
    configure(&data, "\n[server]\ndisk_alarm_percent = 1\n");
    let server = TestServer::start(&data);
    let project: serde_json::Value = serde_json::from_str(PROJECT).unwrap();
    for _ in 0..100 {
        server.get_json("/api/catalog", 200);
    }
    for _ in 0..20 {
        server.expect(401, "POST", "/api/projects", None, Some(&project));
    }
    for _ in 0..10 {
        server.expect(401, "GET", "/api/me", Some("not-a-token"), None);
    }
    server.stop();

    let tail = stdout(&run(&data, &["audit", "tail", "-n", "1000"], true));
    let events: Vec<serde_json::Value> = tail
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for one_by_one in ["catalog.read", "authz.denied", "auth.invalid_token"] {
        assert!(
            !events.iter().any(|e| e["action"] == one_by_one),
            "{one_by_one} recorded one by one:\n{tail}"
        );
    }
    // One summary a minute and one at the stop, counting every request.
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    for e in events.iter().filter(|e| e["action"] == "anonymous.summary") {
        for (k, v) in e["details"]["counts"].as_object().unwrap() {
            *counts.entry(k.clone()).or_default() += v.as_u64().unwrap();
        }
    }
    assert_eq!(counts["catalog.read"], 100, "{counts:?}");
    assert_eq!(counts["authz.denied:create_project"], 20, "{counts:?}");
    assert_eq!(counts["auth.invalid_token:unknown"], 10, "{counts:?}");
    // 130 requests, a handful of events.
    assert!(events.len() < 20, "{} events:\n{tail}", events.len());
    assert!(
        events.iter().any(|e| e["action"] == "disk.usage_high"),
        "no disk alarm:\n{tail}"
    );
}

/// Runs `openssl` with `args` in `dir`; panics unless it succeeds.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        common::stderr(&out)
    );
}

/// A self-signed certificate for 127.0.0.1 and its key, in `dir`.
fn self_signed(dir: &std::path::Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            "/CN=anyu-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
    );
}

fn with_tls(data: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) {
    let config = data.join("anyu.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str(&format!(
        "\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    std::fs::write(&config, toml).unwrap();
}

/// `curl` against the server; (exit success, stdout with the headers).
fn curl(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-D", "-", "--max-time", "10"])
        .args(args)
        .output()
        .expect("the curl command");
    (out.status.success(), stdout(&out))
}

/// With `[server.tls]` the server speaks TLS itself: a client that trusts
/// the certificate gets the API over https with HSTS; plain HTTP to the same
/// port gets no answer; a plain server sends no HSTS; a certificate that
/// cannot be read or does not match its key stops the start, named.
#[test]
fn tls_serves_https_with_hsts_and_refuses_a_bad_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    let plain = TestServer::start(&data);
    let answer = plain.get("/api/platform/keys");
    assert!(answer.headers().get("strict-transport-security").is_none());
    plain.stop();

    self_signed(dir.path(), "tls");
    self_signed(dir.path(), "other");
    let (cert, key) = (dir.path().join("tls.pem"), dir.path().join("tls.key"));
    with_tls(&data, &cert, &key);
    let server = TestServer::start(&data);
    let https = format!("https://{}/api/platform/keys", server.addr);
    let (ok, text) = curl(&["--cacert", cert.to_str().unwrap(), &https]);
    assert!(ok, "{text}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{text}"
    );
    assert!(text.contains("signing_public_key"), "{text}");
    // Not trusted without the certificate; plain HTTP gets no HTTP answer.
    let (ok, _) = curl(&[&https]);
    assert!(!ok, "an unknown certificate was accepted");
    let (ok, text) = curl(&[&format!("http://{}/api/platform/keys", server.addr)]);
    assert!(!ok && !text.contains("HTTP/1.1"), "{text}");
    server.stop();

    // The other certificate's key: mismatched. A missing file: unreadable.
    for (cert, key, says) in [
        (cert.clone(), dir.path().join("other.key"), "do not match"),
        (dir.path().join("missing.pem"), key.clone(), "missing.pem"),
    ] {
        let config = data.join("anyu.toml");
        let toml = std::fs::read_to_string(&config).unwrap();
        let base = toml.split("\n[server.tls]").next().unwrap().to_string();
        std::fs::write(&config, base).unwrap();
        with_tls(&data, &cert, &key);
        let out = common::anyu(&data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        assert!(!out.status.success(), "started with a bad certificate");
        let err = common::stderr(&out);
        assert!(err.contains(says), "{err}");
    }
}
