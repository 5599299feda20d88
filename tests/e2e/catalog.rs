//! The real binary end to end: `init`, `datasets generate`, `dataset import`,
//! `serve`, then the catalog over HTTP.

use crate::common;

use crate::common::{TestServer, prepared_data_dir, run, stderr, stdout};

const SAMPLES: &[&str] = &[
    "enterprise_registry",
    "social_insurance",
    "medical_claims",
    "min_living_allowance",
];

#[test]
fn catalog_over_http() {
    let dir = prepared_data_dir(400, SAMPLES);
    let data = dir.path().join("data");
    let server = TestServer::start(&data);

    // Health and API description.
    let health = server.get_json("/healthz", 200);
    assert_eq!(health["status"], "ok");
    let openapi = server.get_json("/api/openapi.json", 200);
    for path in ["/api/catalog", "/api/catalog/{id}", "/healthz"] {
        assert!(
            openapi["paths"].get(path).is_some(),
            "{path} missing from OpenAPI"
        );
    }

    // Listing: not-open data is hidden by default.
    let list = server.get_json("/api/catalog", 200);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["enterprise_registry", "medical_claims", "social_insurance"]
    );
    for entry in list.as_array().unwrap() {
        let v = &entry["latest_version"];
        assert_eq!(v["version"], 1, "{entry}");
        assert!(v["rows"].as_u64().unwrap() > 0);
    }

    // Search by open type, grade, text (Chinese and English), provider.
    let conditional = server.get_json("/api/catalog?open_type=conditional", 200);
    assert_eq!(conditional.as_array().unwrap().len(), 2);
    let l4 = server.get_json("/api/catalog?grade=L4", 200);
    assert_eq!(l4.as_array().unwrap().len(), 1);
    assert_eq!(l4[0]["id"], "medical_claims");
    let text = server.get_json("/api/catalog?q=%E7%A4%BE%E4%BC%9A%E4%BF%9D%E9%99%A9", 200); // 社会保险
    assert!(
        text.as_array()
            .unwrap()
            .iter()
            .any(|d| d["id"] == "social_insurance")
    );
    let none = server.get_json("/api/catalog?q=no-such-thing-anywhere", 200);
    assert_eq!(none.as_array().unwrap().len(), 0);

    // Detail: metadata, columns, versions and quality summary; never rows.
    let detail = server.get_json("/api/catalog/social_insurance", 200);
    assert_eq!(detail["open_type"], "conditional");
    assert_eq!(detail["grade"], "L3");
    assert!(detail["columns"].as_array().unwrap().len() >= 8);
    assert_eq!(detail["versions"].as_array().unwrap().len(), 1);
    assert_eq!(detail["versions"][0]["quality"]["passed"], true);
    // The rules results are checked against, before any query: the grade's
    // floor applied (L3: at least 10 persons, two blind output reviewers).
    let rules = &detail["rules"];
    assert!(
        rules["disclosure"]["threshold"].as_u64().unwrap() >= 10,
        "{rules}"
    );
    assert!(rules["disclosure"]["nk"]["k"].as_f64().is_some(), "{rules}");
    assert_eq!(rules["disclosure"]["auto_release"], false, "{rules}");
    assert_eq!(rules["output_reviewers"], 2, "{rules}");
    let body = detail.to_string();
    let samples_csv =
        std::fs::read_to_string(dir.path().join("samples/social_insurance.csv")).unwrap();
    let first_person = samples_csv
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    assert!(
        !body.contains(first_person),
        "catalog detail leaks a person id"
    );

    // Errors: one JSON shape, stable codes, a request id on every response.
    let hidden = server.get_json("/api/catalog/min_living_allowance", 404);
    let unknown = server.get_json("/api/catalog/no_such_dataset", 404);
    assert_eq!(hidden["error"]["code"], "not_found");
    assert_eq!(
        hidden["error"]["message"]
            .as_str()
            .unwrap()
            .replace("min_living_allowance", "X"),
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .replace("no_such_dataset", "X"),
        "a hidden dataset must be indistinguishable from an unknown one"
    );
    let bad = server.get_json("/api/catalog?open_type=secret", 400);
    assert_eq!(bad["error"]["code"], "bad_request");
    let bad_param = server.get_json("/api/catalog?colour=red", 400);
    assert_eq!(bad_param["error"]["code"], "bad_request");
    let bad_id = server.get_json("/api/catalog/..%2F..%2Fetc", 400);
    assert_eq!(bad_id["error"]["code"], "bad_request");
    let no_route = server.get_json("/api/nothing-here", 404);
    assert_eq!(no_route["error"]["code"], "not_found");
    let resp = server
        .client()
        .post(server.url("/api/catalog"))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let resp = server.get("/healthz");
    assert!(resp.headers().get("x-request-id").is_some());
    let resp = server
        .client()
        .get(server.url("/healthz"))
        .header("x-request-id", "trace-me-42")
        .send()
        .unwrap();
    assert_ne!(resp.headers()["x-request-id"], "trace-me-42");
    assert_eq!(resp.headers()["x-client-request-id"], "trace-me-42");

    // While the server holds the data directory, read-only commands work and a
    // change is refused with a clear reason instead of corrupting the chain.
    let list = stdout(&run(&data, &["dataset", "list"], true));
    assert!(list.contains("social_insurance"), "{list}");
    let tail = stdout(&run(&data, &["audit", "tail", "-n", "5"], true));
    assert_eq!(tail.lines().count(), 5, "{tail}");
    let manifest = common::repo_root().join("datasets/manifests/social_insurance.toml");
    let csv = dir.path().join("samples/social_insurance.csv");
    let out = run(
        &data,
        &[
            "dataset",
            "import",
            manifest.to_str().unwrap(),
            csv.to_str().unwrap(),
        ],
        false,
    );
    assert!(
        stderr(&out).contains("in use by another anyu process"),
        "{}",
        stderr(&out)
    );

    server.stop();

    // The chain verifies and holds the catalog reads (anonymous ones as a
    // summary), start and stop.
    let out = run(&data, &["audit", "verify"], true);
    assert!(stdout(&out).contains("audit chain OK"), "{}", stdout(&out));
    let tail = stdout(&run(&data, &["audit", "tail", "-n", "1000"], true));
    for action in [
        "platform.init",
        "dataset.import",
        "server.start",
        "anonymous.summary",
        "server.stop",
    ] {
        assert!(
            tail.contains(&format!("\"action\":\"{action}\"")),
            "no {action} event in:\n{tail}"
        );
    }
}

/// Every answer is `nosniff`; private answers (sign-in, the caller's account,
/// errors under /api/) are `no-store` while the public catalog may be cached;
/// the request id is always the server's, the caller's comes back apart.
#[test]
fn security_headers_on_every_answer_and_the_request_id_is_the_servers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    common::add_user(
        &data,
        "r_hdr",
        "researcher",
        "深圳大学",
        "university",
        &["--verified"],
    );
    let server = TestServer::start(&data);
    let body = serde_json::json!({ "username": "r_hdr", "password": common::PASSWORD });
    let login = server
        .client()
        .post(server.url("/api/auth/login"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(login.status().as_u16(), 200);
    assert_eq!(login.headers()["cache-control"], "no-store");
    assert_eq!(login.headers()["x-content-type-options"], "nosniff");
    let token = login.json::<serde_json::Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let me = server
        .client()
        .get(server.url("/api/me"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(me.status().as_u16(), 200);
    assert_eq!(me.headers()["cache-control"], "no-store");
    for path in ["/api/jobs/j_nothing", "/api/grants"] {
        let resp = server.get(path);
        assert_eq!(resp.status().as_u16(), 401, "{path}");
        assert_eq!(resp.headers()["cache-control"], "no-store", "{path}");
        assert_eq!(
            resp.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
    for path in ["/api/catalog", "/api/openapi.json", "/healthz", "/nowhere"] {
        let resp = server.get(path);
        assert_eq!(
            resp.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
        assert!(resp.headers().get("cache-control").is_none(), "{path}");
    }
    let resp = server
        .client()
        .get(server.url("/api/catalog"))
        .header("x-request-id", "chosen-by-caller")
        .send()
        .unwrap();
    assert_ne!(resp.headers()["x-request-id"], "chosen-by-caller");
    assert_eq!(resp.headers()["x-client-request-id"], "chosen-by-caller");
    server.stop();
}

#[test]
fn not_open_listed_by_name_only_when_configured() {
    let dir = prepared_data_dir(200, &["min_living_allowance", "enterprise_registry"]);
    let data = dir.path().join("data");
    let config = dir.path().join("custom.toml");
    std::fs::write(&config, "[catalog]\nnot_open = \"name_only\"\n").unwrap();
    let server = TestServer::start_with(&data, &["--config", config.to_str().unwrap()]);
    let list = server.get_json("/api/catalog", 200);
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "min_living_allowance")
        .expect("listed by name");
    assert_eq!(entry["open_type"], "not_open");
    assert!(entry["latest_version"].is_null());
    assert!(
        entry["columns"].as_array().is_none_or(|c| c.is_empty()),
        "{entry}"
    );
    let detail = server.get_json("/api/catalog/min_living_allowance", 200);
    assert_eq!(detail["versions"].as_array().unwrap().len(), 0);
    server.stop();
}

#[test]
fn cli_refuses_bad_inputs_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);

    // A second init must not replace the keys.
    let key_before = std::fs::read(data.join("keys/master.key")).unwrap();
    let out = run(&data, &["init"], false);
    assert!(
        stderr(&out).contains("already initialised"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        key_before,
        std::fs::read(data.join("keys/master.key")).unwrap()
    );

    // A CSV missing a column is refused, and no version directory appears.
    let manifest = common::repo_root().join("datasets/manifests/enterprise_registry.toml");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "credit_code,name\n91440300MA5DC0XX4Y,x\n").unwrap();
    let out = run(
        &data,
        &[
            "dataset",
            "import",
            manifest.to_str().unwrap(),
            bad.to_str().unwrap(),
        ],
        false,
    );
    assert!(stderr(&out).contains("invalid data"), "{}", stderr(&out));
    let ds = data.join("datasets/enterprise_registry");
    let leftovers: Vec<_> = std::fs::read_dir(&ds)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    let list = stdout(&run(&data, &["dataset", "list"], true));
    assert!(!list.contains("enterprise_registry"), "{list}");

    // Commands on a directory that was never initialised say so.
    let out = run(&dir.path().join("nowhere"), &["dataset", "list"], false);
    assert!(stderr(&out).contains("anyu init"), "{}", stderr(&out));

    // The failed import is itself audited, and the chain verifies.
    let tail = stdout(&run(&data, &["audit", "tail"], true));
    assert!(tail.contains("\"outcome\":\"failure\""), "{tail}");
    run(&data, &["audit", "verify"], true);
}

/// Every path under `dir` whose mode gives group or others anything.
#[cfg(unix)]
fn open_to_others(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut loose = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            loose.push(format!("{} {mode:04o}", path.display()));
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    loose
}

/// `anyu init` makes a data directory only its owner can enter, and neither
/// the server nor any command starts while the keys or the databases are open
/// to group or others: the refusal names the path and exits non-zero.
#[cfg(unix)]
#[test]
fn the_data_directory_is_private_and_loose_permissions_refuse_to_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    common::add_user(
        &data,
        "a_perm",
        "admin",
        "深圳市政务服务数据管理局",
        "government",
        &[],
    );
    let loose = open_to_others(&data);
    assert!(loose.is_empty(), "readable by others after init: {loose:?}");

    let chmod = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let cases = [
        (data.join("keys"), 0o755, 0o700),
        (data.join("keys/signing.pk8"), 0o640, 0o600),
        (data.join("keys/master.key"), 0o604, 0o600),
        (data.join("meta/anyu.db"), 0o644, 0o600),
        (data.join("audit/audit.db"), 0o604, 0o600),
    ];
    for (path, loose_mode, private_mode) in &cases {
        chmod(path, *loose_mode);
        let out = run(&data, &["dataset", "list"], false);
        let said = stderr(&out);
        assert!(said.contains(&path.display().to_string()), "{said}");
        assert!(said.contains("group or others"), "{said}");

        // The server refuses too, before it listens.
        let mut child = common::anyu(&data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("serve started with {} at {loose_mode:o}", path.display());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        assert!(!status.success(), "{}", path.display());
        let mut said = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut said).unwrap();
        assert!(said.contains(&path.display().to_string()), "{said}");

        chmod(path, *private_mode);
        run(&data, &["dataset", "list"], true);
    }
}
