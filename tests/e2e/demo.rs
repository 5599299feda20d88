//! `anyu demo`: a fresh directory gets samples, one account per role and a
//! submitted sample application; a second run reuses everything.

use crate::common::{TestServer, run, stdout};

#[test]
fn demo_prepares_accounts_and_a_sample_application() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = stdout(&run(&data, &["demo", "--no-serve", "--rows", "300"], true));
    for role in ["researcher", "steward", "admin", "auditor"] {
        assert!(first.contains(&format!("demo_{role}")), "{first}");
    }
    // One steward per provider: an application joining two providers' data
    // needs a vote from each, and one person votes once.
    for steward in [
        "demo_steward_medical",
        "demo_steward_market",
        "demo_steward_civil",
    ] {
        assert!(first.contains(steward), "{first}");
    }
    // One sample application per usage method the README walks through.
    assert!(
        first.contains("created a sample application")
            && first.contains("(usage `invisible`, submitted)")
            && first.contains("(usage `model_results`, submitted)"),
        "{first}"
    );
    // No plaintext person-level file stays in the data directory.
    let plaintext: Vec<_> = walk(&data)
        .into_iter()
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "csv" || (e == "toml" && !p.ends_with("anyu.toml")))
        })
        .collect();
    assert!(plaintext.is_empty(), "{plaintext:?}");
    let second = stdout(&run(&data, &["demo", "--no-serve", "--rows", "300"], true));
    assert!(
        second.contains("sample datasets already imported"),
        "{second}"
    );
    assert!(!second.contains("created a sample application"), "{second}");

    // The printed passwords sign in; the steward's queue holds the sample.
    let password = |role: &str| {
        second
            .lines()
            .find(|l| l.trim_start().starts_with(role))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap()
            .to_string()
    };
    let server = TestServer::start(&data);
    let body = serde_json::json!({ "username": "demo_steward", "password": password("steward") });
    let token = server.expect(200, "POST", "/api/auth/login", None, Some(&body))["token"]
        .as_str()
        .unwrap()
        .to_string();
    let queue = server.expect(200, "GET", "/api/applications", Some(&token), None);
    let queue = queue.as_array().unwrap();
    assert_eq!(queue.len(), 2);
    assert!(
        queue.iter().all(|a| a["status"] == "submitted"),
        "{queue:?}"
    );
    let body = serde_json::json!({ "username": "demo_admin", "password": password("admin") });
    let admin = server.expect(200, "POST", "/api/auth/login", None, Some(&body))["token"]
        .as_str()
        .unwrap()
        .to_string();
    let users = server.expect(200, "GET", "/api/admin/users", Some(&admin), None);
    let agencies = |name: &str| {
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == name)
            .map(|u| u["provider_agencies"].clone())
            .unwrap()
    };
    assert_eq!(
        agencies("demo_steward"),
        serde_json::json!(["深圳市社会保险基金管理局"])
    );
    assert_eq!(
        agencies("demo_steward_medical"),
        serde_json::json!(["深圳市医疗保障局"])
    );
    server.stop();
    run(&data, &["audit", "verify"], true);
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
