//! The audit log through the real binary: `kill -9` loses no acknowledged
//! event, and `anyu audit verify` fails on a tampered chain.

mod common;

use common::{TestServer, run, stdout};

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
    let server = TestServer::start(&data);

    // Concurrent readers: every 200 answer means its catalog.read event was committed.
    let acknowledged = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..40 {
                    let resp = server.get("/api/catalog");
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

/// A refused bearer token (unknown, revoked, or not a token at all) leaves an
/// `auth.invalid_token` event naming the token's kind and a prefix of its hash,
/// never the token; a valid one leaves none.
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

    assert_eq!(count_action(&data, "auth.invalid_token"), 3);
    let tail = stdout(&run(&data, &["audit", "tail", "-n", "20000"], true));
    let events: Vec<&str> = tail
        .lines()
        .filter(|l| l.contains("\"action\":\"auth.invalid_token\""))
        .collect();
    for (event, kind) in events.iter().zip(["session", "session", "unknown"]) {
        assert!(
            event.contains(&format!("\"token_kind\":\"{kind}\"")),
            "{event}"
        );
        assert!(event.contains("token_sha256_prefix"), "{event}");
        assert!(event.contains("\"outcome\":\"denied\""), "{event}");
    }
    assert!(!tail.contains(&token), "the audit log holds a token");
    assert!(!tail.contains(guessed), "the audit log holds a token");
}
