//! The audit log through the real binary: `kill -9` loses no acknowledged
//! event, and `anyu audit verify` fails on a tampered chain.

use crate::common;

use crate::common::{TestServer, run, stdout};

fn count_action(data: &std::path::Path, action: &str) -> usize {
    let tail = stdout(&run(data, &["audit", "tail", "-n", "20000"], true));
    tail.lines()
        .filter(|l| l.contains(&format!("\"action\":\"{action}\"")))
        .count()
}

#[test]
fn kill_9_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    common::add_user(&data, "r_read", "researcher", "深圳大学", "university", &[]);
    let server = TestServer::start(&data);
    let token = server.login("r_read");

    // Concurrent readers: every 200 answer means its catalog.read event was
    // committed (a signed-in caller's; anonymous reads are counted instead).
    let acknowledged = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..40 {
                    let resp = server
                        .client()
                        .get(server.url("/api/catalog"))
                        .bearer_auth(&token)
                        .send()
                        .unwrap();
                    if resp.status().is_success() {
                        acknowledged.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let acknowledged = acknowledged.into_inner();
    assert_eq!(acknowledged, 160);
    server.kill9();

    // No final checkpoint was written, yet the chain verifies and holds every read.
    let out = run(&data, &["audit", "verify"], true);
    assert!(stdout(&out).contains("audit chain OK"), "{}", stdout(&out));
    assert!(count_action(&data, "catalog.read") >= acknowledged);
    assert_eq!(
        count_action(&data, "server.stop"),
        0,
        "the killed server cannot have stopped cleanly"
    );

    // The next server continues the same chain.
    let server = TestServer::start(&data);
    server.get_json("/api/catalog", 200);
    server.stop();
    run(&data, &["audit", "verify"], true);
    assert_eq!(count_action(&data, "server.start"), 2);
}

#[test]
fn verify_exits_nonzero_on_an_edited_event() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    let server = TestServer::start(&data);
    for _ in 0..5 {
        server.get_json("/api/catalog", 200);
    }
    server.stop();
    run(&data, &["audit", "verify"], true);

    // Rewrite one event's actor in place, as an intruder with file access would.
    let db = data.join("audit/audit.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        // The append-only trigger refuses a plain UPDATE ...
        let refused = sqlx::query("UPDATE events SET actor = 'someone-else' WHERE seq = 3")
            .execute(&mut conn)
            .await;
        assert!(refused.is_err(), "append-only trigger missing");
        // ... but it is no security boundary: whoever can write the file drops it.
        sqlx::query("DROP TRIGGER events_no_update")
            .execute(&mut conn)
            .await
            .unwrap();
        let changed = sqlx::query("UPDATE events SET actor = 'someone-else' WHERE seq = 3")
            .execute(&mut conn)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(changed, 1);
        conn.close().await.unwrap();
    });
    let out = run(&data, &["audit", "verify"], false);
    let text = stdout(&out);
    assert!(text.contains("BROKEN at event 3"), "{text}");
}

/// The public key `anyu init` printed.
fn init_key(data: &std::path::Path) -> String {
    let out = stdout(&run(data, &["init"], true));
    out.lines()
        .find_map(|l| l.trim().strip_prefix("signing public key"))
        .map(|k| k.trim().to_string())
        .expect("init prints the signing public key")
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// An insider rewrites the whole log and signs it with a key of their own,
/// swapping `signing.pub`: it verifies on its own terms, never against the
/// key published at `anyu init`.
#[test]
fn a_log_rewritten_under_another_key_fails_against_the_pinned_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = init_key(&data);
    let server = TestServer::start(&data);
    let published = server.get_json("/api/platform/keys", 200);
    assert_eq!(published["signing_public_key"], key.as_str());
    server.stop();
    run(&data, &["audit", "verify", "--public-key", &key], true);

    // A forged history: another data directory's log and key, moved in.
    let forged = dir.path().join("forged");
    init_key(&forged);
    std::fs::remove_dir_all(data.join("audit")).unwrap();
    copy_dir(&forged.join("audit"), &data.join("audit"));
    std::fs::copy(
        forged.join("keys/signing.pub"),
        data.join("keys/signing.pub"),
    )
    .unwrap();

    let unpinned = stdout(&run(&data, &["audit", "verify"], true));
    assert!(unpinned.contains("not anchored"), "{unpinned}");
    let pinned = run(&data, &["audit", "verify", "--public-key", &key], false);
    assert!(stdout(&pinned).contains("BROKEN"), "{}", stdout(&pinned));
    // The same through a trusted-keys file.
    let trusted = dir.path().join("trusted.keys");
    std::fs::write(&trusted, format!("# platform key, from anyu init\n{key}\n")).unwrap();
    run(
        &data,
        &[
            "audit",
            "verify",
            "--trusted-keys",
            trusted.to_str().unwrap(),
        ],
        false,
    );
}

/// An older genuine copy of the log verifies on its own; a signed head kept
/// outside the host (fetched by an auditor, or copied to the witness
/// directory) shows the history was cut back.
#[test]
fn an_older_copy_of_the_log_fails_against_a_kept_head() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = init_key(&data);
    let witness = dir.path().join("witness");
    let config = data.join("anyu.toml");
    let toml = std::fs::read_to_string(&config).unwrap();
    let toml = toml.replacen(
        "[audit]\n",
        &format!("[audit]\nwitness_dir = \"{}\"\n", witness.display()),
        1,
    );
    std::fs::write(&config, toml).unwrap();
    common::add_people(&data);
    let backup = dir.path().join("audit-backup");
    copy_dir(&data.join("audit"), &backup);

    let server = TestServer::start(&data);
    let auditor = server.login("u_chen");
    for _ in 0..5 {
        server.get_json("/api/catalog", 200);
    }
    let head = server.expect(200, "GET", "/api/audit/head", Some(&auditor), None);
    let kept = dir.path().join("kept.head");
    std::fs::write(&kept, serde_json::to_vec(&head).unwrap()).unwrap();
    server.stop();
    let kept_arg = kept.to_str().unwrap();
    run(
        &data,
        &["audit", "verify", "--public-key", &key, "--head", kept_arg],
        true,
    );
    assert!(
        witness.join("audit.head").is_file(),
        "the witness directory holds the head"
    );

    // The operator restores the older copy: on its own it still verifies.
    std::fs::remove_dir_all(data.join("audit")).unwrap();
    copy_dir(&backup, &data.join("audit"));
    let without_witness = dir.path().join("no-witness.toml");
    std::fs::write(&without_witness, "").unwrap();
    let mut plain = common::anyu(&data);
    plain
        .args(["--config", without_witness.to_str().unwrap()])
        .args(["audit", "verify", "--public-key", &key]);
    assert!(
        plain.output().unwrap().status.success(),
        "an older genuine copy verifies alone"
    );
    // Against the auditor's kept head, and the witness directory's, it does not.
    let out = run(
        &data,
        &["audit", "verify", "--public-key", &key, "--head", kept_arg],
        false,
    );
    assert!(stdout(&out).contains("older copy"), "{}", stdout(&out));
    let out = run(&data, &["audit", "verify", "--public-key", &key], false);
    assert!(stdout(&out).contains("witness"), "{}", stdout(&out));
}

/// Deleting `audit/` no longer starts a fresh chain that verifies: the log
/// is created only by `anyu init`.
#[test]
fn a_deleted_audit_log_is_a_hard_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    std::fs::remove_dir_all(data.join("audit")).unwrap();
    let out = run(&data, &["user", "disable", "nobody"], false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("audit log") && err.contains("missing"),
        "{err}"
    );
    assert!(
        !data.join("audit/audit.db").exists(),
        "nothing was recreated"
    );
}

/// Refused bearer tokens (unknown, revoked, or not a token at all) are
/// counted per client in an `anonymous.summary` event naming each token's
/// kind and a prefix of its hash, never the token; a valid one leaves none.
#[test]
fn refused_bearer_tokens_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    common::add_user(
        &data,
        "r_tok",
        "researcher",
        "深圳大学",
        "university",
        &["--verified"],
    );
    let server = TestServer::start(&data);
    let token = server.login("r_tok");
    server.expect(200, "GET", "/api/me", Some(&token), None);
    server.expect(204, "POST", "/api/auth/logout", Some(&token), None);
    let guessed = "anyu_s_0123456789abcdef0123456789abcdef";
    for refused in [token.as_str(), guessed, "not-a-token"] {
        server.expect(401, "GET", "/api/me", Some(refused), None);
    }
    server.stop();

    let tail = stdout(&run(&data, &["audit", "tail", "-n", "20000"], true));
    let summaries: Vec<serde_json::Value> = tail
        .lines()
        .filter(|l| l.contains("\"action\":\"anonymous.summary\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(summaries.len(), 1, "{tail}");
    let s = &summaries[0];
    assert_eq!(s["object"], "client:127.0.0.1", "{s}");
    let details = &s["details"];
    assert_eq!(details["counts"]["auth.invalid_token:session"], 2, "{s}");
    assert_eq!(details["counts"]["auth.invalid_token:unknown"], 1, "{s}");
    assert_eq!(
        details["token_sha256_prefixes"].as_array().unwrap().len(),
        3,
        "{s}"
    );
    assert!(!tail.contains(&token), "the audit log holds a token");
    assert!(!tail.contains(guessed), "the audit log holds a token");
}

/// A `--head` file that is not a signed head record is a clear refusal
/// naming the file, not a crash or an OK.
#[test]
fn a_malformed_kept_head_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = init_key(&data);
    let bad = dir.path().join("head.json");
    std::fs::write(&bad, b"{\"seq\": \"not a head\"").unwrap();
    let out = run(
        &data,
        &[
            "audit",
            "verify",
            "--public-key",
            &key,
            "--head",
            bad.to_str().unwrap(),
        ],
        false,
    );
    let text = stdout(&out);
    assert!(
        text.contains("BROKEN") && text.contains("head.json") && text.contains("kept head"),
        "{text}"
    );
}

/// `verify --deep` on a consistent directory finds nothing; a role written
/// by SQL is named as a discrepancy and fails the command.
#[test]
fn verify_deep_names_a_role_written_by_sql() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = init_key(&data);
    common::add_people(&data);
    let ok = stdout(&run(
        &data,
        &["audit", "verify", "--public-key", &key, "--deep"],
        true,
    ));
    assert!(ok.contains("metadata consistent with the chain"), "{ok}");
    common::exec_sqlite(
        &data.join("meta/anyu.db"),
        "UPDATE users SET role = 'admin' WHERE username = 'r_li'",
    );
    let out = stdout(&run(
        &data,
        &["audit", "verify", "--public-key", &key, "--deep"],
        false,
    ));
    assert!(
        out.contains("metadata DISCREPANCY")
            && out.contains("metadata_tampered")
            && out.contains("users"),
        "{out}"
    );
}

/// `anyu keys rotate` replaces the signing key by a chained event the old key
/// signs: an auditor who pinned the key from `anyu init` still verifies the
/// whole log (checkpoints before the rotation under the old key, after it
/// under the new one); `/api/platform/keys` shows the new key and the old one
/// with the rotation's seq; a certificate signed before the rotation still
/// verifies.
#[test]
fn a_rotated_signing_key_is_followed_from_the_pinned_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let old = init_key(&data);
    common::add_people(&data);
    let keyring = enclave::keyring::Keyring::open(&data.join("keys")).unwrap();
    let (files, cert) = crate::release_cli::signed_release(&keyring);
    drop(keyring);
    let cert_path = dir.path().join("certificate.json");
    std::fs::write(&cert_path, cert.to_json()).unwrap();
    let result = dir.path().join("result.csv");
    std::fs::write(&result, &files[0].1).unwrap();

    let out = stdout(&run(&data, &["keys", "rotate"], true));
    let new = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("signing public key"))
        .map(|k| k.trim().to_string())
        .expect("rotate prints the new key");
    assert_ne!(new, old);
    assert!(!data.join("keys/signing.next.pk8").exists());
    let retired = std::fs::read_dir(data.join("keys/retired"))
        .unwrap()
        .count();
    assert_eq!(retired, 1);

    // The server signs with the new key from now on.
    let server = TestServer::start(&data);
    let keys = server.get_json("/api/platform/keys", 200);
    assert_eq!(keys["signing_public_key"], new.as_str(), "{keys}");
    assert_eq!(keys["predecessors"][0]["signing_public_key"], old.as_str());
    let rotated_at = keys["predecessors"][0]["rotated_at_seq"].as_u64().unwrap();
    assert_eq!(keys["introduced_at_seq"], rotated_at);
    let admin = server.login("a_zhang");
    for _ in 0..3 {
        server.expect(200, "GET", "/api/admin/users", Some(&admin), None);
    }
    server.stop();

    // Pinned to the old key, the new key or both: OK, across the rotation.
    for pin in [&old, &new] {
        let out = stdout(&run(
            &data,
            &["audit", "verify", "--public-key", pin.as_str()],
            true,
        ));
        assert!(out.contains("audit chain OK"), "{out}");
        assert!(out.contains("rotated 1 time"), "{out}");
    }
    let tail = stdout(&run(&data, &["audit", "tail", "-n", "1000"], true));
    let event = tail
        .lines()
        .find(|l| l.contains("\"action\":\"platform.key_rotate\""))
        .expect("the rotation is an event");
    assert!(
        event.contains(&format!("\"previous_key\":\"{old}\"")),
        "{event}"
    );
    assert!(
        event.contains(&format!("\"next_key\":\"{new}\"")),
        "{event}"
    );
    assert!(event.contains(&format!("\"seq\":{rotated_at}")), "{event}");

    // A certificate signed before the rotation verifies with the directory's
    // keys (the retired one included) and with the old key pinned.
    let (r, c) = (result.to_str().unwrap(), cert_path.to_str().unwrap());
    let out = stdout(&run(&data, &["verify-release", r, c], true));
    assert!(out.contains("release OK"), "{out}");
    run(&data, &["verify-release", r, c, "--public-key", &old], true);
}

/// A key pair swapped into `keys/` without a rotation event (the log then
/// re-signed by it as far as it goes): against the pinned key the log is
/// refused, and the answer names the key no event introduced.
#[test]
fn a_signing_key_swapped_in_without_a_rotation_event_is_refused_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key = init_key(&data);
    common::add_people(&data);
    // Another directory's fresh key pair moved in: the server signs with it.
    let other = dir.path().join("other");
    let fresh = init_key(&other);
    for name in ["signing.pk8", "signing.pub"] {
        std::fs::copy(other.join("keys").join(name), data.join("keys").join(name)).unwrap();
    }
    // The witness was signed with the old key; re-sign it as the swapped
    // key's holder would, so the server opens.
    resign_witness(&data, &other);
    let server = TestServer::start(&data);
    let admin = server.login("a_zhang");
    server.expect(200, "GET", "/api/admin/users", Some(&admin), None);
    server.stop();

    let out = run(&data, &["audit", "verify", "--public-key", &key], false);
    let text = stdout(&out);
    assert!(text.contains("BROKEN"), "{text}");
    let fingerprint = enclave::audit::key_fingerprint(&hex::decode(&fresh).unwrap());
    assert!(
        text.contains(&fingerprint) && text.contains("platform.key_rotate"),
        "{text}"
    );
    // Pinning the swapped key does not help: the chain never introduced it.
    let out = run(&data, &["audit", "verify", "--public-key", &fresh], false);
    assert!(stdout(&out).contains("BROKEN"), "{}", stdout(&out));
}

/// Rewrites `data`'s head witness with the signing key of `keys_from`.
fn resign_witness(data: &std::path::Path, keys_from: &std::path::Path) {
    let keyring = enclave::keyring::Keyring::open(&keys_from.join("keys")).unwrap();
    enclave::audit::resign_witness_for_tests(&data.join("audit/audit.db"), &keyring.signing_key())
        .unwrap();
}
