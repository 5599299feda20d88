//! The audit log against real SQLite files and a real Ed25519 key: appends,
//! verification, every kind of tampering, concurrency, reopen, crash (kill -9).

use std::path::PathBuf;
use std::sync::Arc;

use enclave::audit::{
    self, AuditFilter, AuditLog, AuditOptions, GENESIS_HASH, NewEvent, Outcome, ProblemKind,
    VerifyReport,
};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Row};

fn pkcs8() -> Vec<u8> {
    Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn key_from(pkcs8: &[u8]) -> Arc<Ed25519KeyPair> {
    Arc::new(Ed25519KeyPair::from_pkcs8(pkcs8).unwrap())
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    key: Arc<Ed25519KeyPair>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit").join("audit.db");
        Fixture {
            _dir: dir,
            path,
            key: key_from(&pkcs8()),
        }
    }

    fn public_key(&self) -> Vec<u8> {
        self.key.public_key().as_ref().to_vec()
    }

    async fn open(&self, checkpoint_every: u64) -> AuditLog {
        AuditLog::open(
            &self.path,
            self.key.clone(),
            AuditOptions {
                checkpoint_every,
                ..AuditOptions::default()
            },
        )
        .await
        .unwrap()
    }

    async fn verify(&self) -> VerifyReport {
        audit::verify(&self.path, &self.public_key()).await.unwrap()
    }

    /// A closed log of `n` events with a checkpoint every 10.
    async fn closed_log(&self, n: u64) {
        let log = self.open(10).await;
        for i in 1..=n {
            log.append(event(i)).await.unwrap();
        }
        log.close().await.unwrap();
        let report = self.verify().await;
        assert!(report.is_ok(), "{report:?}");
    }

    /// A raw connection with the append-only triggers dropped, as an attacker
    /// with write access to the file would have.
    async fn attacker(&self) -> SqliteConnection {
        let mut conn = SqliteConnectOptions::new()
            .filename(&self.path)
            .connect()
            .await
            .unwrap();
        for t in [
            "events_no_update",
            "events_no_delete",
            "checkpoints_no_update",
            "checkpoints_no_delete",
        ] {
            sqlx::query(&format!("DROP TRIGGER {t}"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        conn
    }
}

fn event(i: u64) -> NewEvent {
    let actors = ["alice", "bob", "system"];
    let roles = ["researcher", "steward", "system"];
    let k = (i % 3) as usize;
    NewEvent::new(
        actors[k],
        roles[k],
        if i.is_multiple_of(2) {
            "catalog.read"
        } else {
            "dataset.import"
        },
        format!("dataset:d{}@v1", i % 4),
    )
    .details(json!({ "i": i, "note": "sample" }))
}

async fn row(conn: &mut SqliteConnection, seq: i64) -> (String, Vec<u8>, Vec<u8>) {
    let r =
        sqlx::query("SELECT CAST(canonical AS TEXT), prev_hash, hash FROM events WHERE seq = ?")
            .bind(seq)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    (r.get(0), r.get(1), r.get(2))
}

/// Rewrites events `from..` so that every stored hash and link is consistent
/// again (an attacker who knows the format re-hashes after an edit).
async fn rehash_from(conn: &mut SqliteConnection, from: i64) {
    let mut prev = if from == 1 {
        vec![0u8; 32]
    } else {
        row(conn, from - 1).await.2
    };
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM events WHERE seq >= ? ORDER BY seq")
        .bind(from)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    for s in seqs {
        let (canonical, _, _) = row(conn, s).await;
        let hash =
            hex::decode(audit::event_hash(&hex::encode(&prev), canonical.as_bytes()).unwrap())
                .unwrap();
        sqlx::query("UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?")
            .bind(&prev)
            .bind(&hash)
            .bind(s)
            .execute(&mut *conn)
            .await
            .unwrap();
        prev = hash;
    }
}

fn problem(report: &VerifyReport) -> &audit::Problem {
    report
        .problem
        .as_ref()
        .unwrap_or_else(|| panic!("tampering not detected: {report:?}"))
}

#[tokio::test]
async fn append_and_verify() {
    let f = Fixture::new();
    let log = f.open(10).await;
    assert_eq!(log.head(), (0, GENESIS_HASH.to_string()));
    let mut prev = GENESIS_HASH.to_string();
    for i in 1..=25 {
        let ev = event(i).outcome(if i == 7 {
            Outcome::Denied
        } else {
            Outcome::Success
        });
        let rec = log.append(ev.clone()).await.unwrap();
        assert_eq!(rec.seq, i);
        assert_eq!(rec.prev_hash, prev);
        assert_eq!(rec.actor, ev.actor);
        assert_eq!(rec.outcome, ev.outcome);
        assert!(
            rec.time.ends_with('Z') && rec.time.len() == "2025-01-02T03:04:05.123456Z".len(),
            "{}",
            rec.time
        );
        assert_eq!(uuid::Uuid::parse_str(&rec.id).unwrap().get_version_num(), 7);
        // The hash is reproducible from the published format alone.
        let canonical = audit::canonical_event(rec.seq, &rec.id, &rec.time, &ev).unwrap();
        assert_eq!(audit::event_hash(&prev, &canonical).unwrap(), rec.hash);
        prev = rec.hash.clone();
    }
    assert_eq!(log.head(), (25, prev.clone()));

    // Verification while the log is open (the server keeps running during verify).
    let live = f.verify().await;
    assert!(live.is_ok(), "{live:?}");
    assert_eq!(live.events, 25);

    log.close().await.unwrap();
    let report = f.verify().await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(
        (report.events, report.head_seq, report.head_hash.as_str()),
        (25, 25, prev.as_str())
    );
    // Checkpoints at 10 and 20, and at 25 on close.
    assert_eq!(report.checkpoints, 3);
    assert_eq!(report.unsigned_events, 0);

    // Another key does not verify the same log.
    let other = key_from(&pkcs8());
    let report = audit::verify(&f.path, other.public_key().as_ref())
        .await
        .unwrap();
    assert_eq!(problem(&report).kind, ProblemKind::BadSignature);
    assert!(
        problem(&report).message.contains("different key"),
        "{report:?}"
    );
}

#[test]
fn canonical_form_is_locked() {
    let ev = NewEvent::new(
        "alice",
        "researcher",
        "dataset.import",
        "dataset:social_insurance@v1",
    )
    .outcome(Outcome::Denied)
    .details(json!({
        "rows": 1000,
        "bytes": 1.5e6,
        "columns": ["身份证号", "name"],
        "reason": {"z": null, "a": true, "quote\"tab\t": "\u{1}"}
    }));
    let canonical = audit::canonical_event(
        42,
        "01936d9c-7c52-7def-8000-0123456789ab",
        "2025-01-02T03:04:05.678901Z",
        &ev,
    )
    .unwrap();
    let text = String::from_utf8(canonical.clone()).unwrap();
    let hash = audit::event_hash(GENESIS_HASH, &canonical).unwrap();
    insta::assert_snapshot!(
        "canonical_event_v1",
        format!("{text}\nsha256(genesis || canonical) = {hash}")
    );
}

#[tokio::test]
async fn invalid_events_are_refused_with_field_names() {
    let f = Fixture::new();
    let log = f.open(10).await;
    let cases = [
        NewEvent::new("", "researcher", "dataset.import", "x"),
        NewEvent::new("alice", "superuser", "dataset.import", "x"),
        NewEvent::new("alice", "researcher", "Dataset Import", "x"),
        NewEvent::new("alice", "researcher", "dataset..import", "x"),
        NewEvent::new("alice", "researcher", "dataset.import", "line\nbreak"),
        NewEvent::new("alice", "researcher", "dataset.import", "x")
            .details(json!(["not", "an", "object"])),
        NewEvent::new("alice", "researcher", "dataset.import", "x")
            .details(json!({"big": "x".repeat(70_000)})),
    ];
    let mut messages = Vec::new();
    for ev in cases {
        let err = log.append(ev).await.unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
        messages.push(err.to_string());
    }
    insta::assert_yaml_snapshot!("invalid_event_messages", messages);
    // Nothing was written.
    assert_eq!(log.head().0, 0);
    log.close().await.unwrap();
}

#[tokio::test]
async fn edited_content_is_detected() {
    let f = Fixture::new();
    f.closed_log(30).await;
    let mut db = f.attacker().await;
    let (canonical, _, _) = row(&mut db, 17).await;
    let forged = canonical.replace("\"i\":17", "\"i\":99");
    assert_ne!(forged, canonical);
    sqlx::query("UPDATE events SET canonical = ? WHERE seq = 17")
        .bind(forged.as_bytes())
        .execute(&mut db)
        .await
        .unwrap();
    let report = f.verify().await;
    assert_eq!(report.events, 16);
    insta::assert_yaml_snapshot!("edited", problem(&report));
}

#[tokio::test]
async fn edited_column_is_detected() {
    let f = Fixture::new();
    f.closed_log(30).await;
    let mut db = f.attacker().await;
    sqlx::query("UPDATE events SET actor = 'mallory' WHERE seq = 17")
        .execute(&mut db)
        .await
        .unwrap();
    let report = f.verify().await;
    insta::assert_yaml_snapshot!("edited_column", problem(&report));

    let f = Fixture::new();
    f.closed_log(30).await;
    let mut db = f.attacker().await;
    sqlx::query("UPDATE events SET prev_hash = zeroblob(32) WHERE seq = 17")
        .execute(&mut db)
        .await
        .unwrap();
    let report = f.verify().await;
    assert_eq!(
        (problem(&report).seq, problem(&report).kind),
        (17, ProblemKind::Edited)
    );
}

#[tokio::test]
async fn edited_and_rehashed_chain_is_pinpointed_by_signed_hashes() {
    let f = Fixture::new();
    f.closed_log(30).await;
    let mut db = f.attacker().await;
    let (canonical, _, _) = row(&mut db, 17).await;
    let forged = canonical.replace("\"i\":17", "\"i\":99");
    sqlx::query("UPDATE events SET canonical = ? WHERE seq = 17")
        .bind(forged.as_bytes())
        .execute(&mut db)
        .await
        .unwrap();
    rehash_from(&mut db, 17).await;
    let report = f.verify().await;
    insta::assert_yaml_snapshot!("edited_rehashed", problem(&report));
}

#[tokio::test]
async fn deleted_event_is_detected() {
    let f = Fixture::new();
    f.closed_log(30).await;
    let mut db = f.attacker().await;
    sqlx::query("DELETE FROM events WHERE seq = 17")
        .execute(&mut db)
        .await
        .unwrap();
    let report = f.verify().await;
    insta::assert_yaml_snapshot!("deleted", problem(&report));
}

#[tokio::test]
async fn deleted_and_renumbered_event_is_detected() {
    let f = Fixture::new();
    f.closed_log(30).await;
    let mut db = f.attacker().await;
    sqlx::query("DELETE FROM events WHERE seq = 17")
        .execute(&mut db)
        .await
        .unwrap();
    // Close the gap: move every later event down by one.
    sqlx::query("UPDATE events SET seq = -seq WHERE seq > 17")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("UPDATE events SET seq = -seq - 1 WHERE seq < 0")
        .execute(&mut db)
        .await
        .unwrap();
    let report = f.verify().await;
    insta::assert_yaml_snapshot!("deleted_renumbered", problem(&report));
}

#[tokio::test]
async fn inserted_event_is_detected() {
    let f = Fixture::new();
    f.closed_log(30).await;
    let mut db = f.attacker().await;
    // Make room at 17 and insert a well-formed event that links to 16.
    sqlx::query("UPDATE events SET seq = -seq WHERE seq >= 17")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("UPDATE events SET seq = -seq + 1 WHERE seq < 0")
        .execute(&mut db)
        .await
        .unwrap();
    let (_, _, prev16) = row(&mut db, 16).await;
    let ev = NewEvent::new("mallory", "admin", "dataset.export", "dataset:d1@v1");
    let time = "2025-01-02T03:04:05.678901Z";
    let id = "01936d9c-7c52-7def-8000-0123456789ab";
    let canonical = audit::canonical_event(17, id, time, &ev).unwrap();
    let hash = hex::decode(audit::event_hash(&hex::encode(&prev16), &canonical).unwrap()).unwrap();
    sqlx::query(
        "INSERT INTO events (seq, id, time, actor, role, action, object, outcome, canonical, prev_hash, hash) \
         VALUES (17, ?, ?, 'mallory', 'admin', 'dataset.export', 'dataset:d1@v1', 'success', ?, ?, ?)",
    )
    .bind(id)
    .bind(time)
    .bind(&canonical)
    .bind(&prev16)
    .bind(&hash)
    .execute(&mut db)
    .await
    .unwrap();
    let report = f.verify().await;
    insta::assert_yaml_snapshot!("inserted", problem(&report));
}

#[tokio::test]
async fn event_appended_after_close_is_detected() {
    let f = Fixture::new();
    f.closed_log(30).await;
    let mut db = f.attacker().await;
    let (_, _, prev) = row(&mut db, 30).await;
    let ev = NewEvent::new("mallory", "admin", "dataset.export", "dataset:d1@v1");
    let canonical = audit::canonical_event(
        31,
        "01936d9c-7c52-7def-8000-0123456789ab",
        "2025-01-02T03:04:05.678901Z",
        &ev,
    )
    .unwrap();
    let hash = hex::decode(audit::event_hash(&hex::encode(&prev), &canonical).unwrap()).unwrap();
    sqlx::query(
        "INSERT INTO events (seq, id, time, actor, role, action, object, outcome, canonical, prev_hash, hash) \
         VALUES (31, '01936d9c-7c52-7def-8000-0123456789ab', '2025-01-02T03:04:05.678901Z', 'mallory', 'admin', \
         'dataset.export', 'dataset:d1@v1', 'success', ?, ?, ?)",
    )
    .bind(&canonical)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut db)
    .await
    .unwrap();
    let report = f.verify().await;
    insta::assert_yaml_snapshot!("inserted_after_close", problem(&report));
    // The same with a made-up hash.
    sqlx::query("UPDATE events SET hash = zeroblob(32) WHERE seq = 31")
        .execute(&mut db)
        .await
        .unwrap();
    let report = f.verify().await;
    assert_eq!(
        (problem(&report).seq, problem(&report).kind),
        (31, ProblemKind::Inserted),
        "{report:?}"
    );
    drop(db);
    let err = AuditLog::open(&f.path, f.key.clone(), AuditOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "audit_error");
}

#[tokio::test]
async fn reordered_events_are_detected() {
    let f = Fixture::new();
    f.closed_log(30).await;
    let mut db = f.attacker().await;
    sqlx::query("UPDATE events SET seq = -1 WHERE seq = 17")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("UPDATE events SET seq = 17 WHERE seq = 18")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("UPDATE events SET seq = 18 WHERE seq = -1")
        .execute(&mut db)
        .await
        .unwrap();
    let report = f.verify().await;
    insta::assert_yaml_snapshot!("reordered", problem(&report));

    // Only the content swapped, hashes and columns left in place.
    let f = Fixture::new();
    f.closed_log(30).await;
    let mut db = f.attacker().await;
    let (c17, _, _) = row(&mut db, 17).await;
    let (c18, _, _) = row(&mut db, 18).await;
    for (seq, content) in [(17, &c18), (18, &c17)] {
        sqlx::query("UPDATE events SET canonical = ? WHERE seq = ?")
            .bind(content.as_bytes())
            .bind(seq)
            .execute(&mut db)
            .await
            .unwrap();
    }
    let report = f.verify().await;
    assert_eq!(
        (problem(&report).seq, problem(&report).kind),
        (17, ProblemKind::Reordered),
        "{report:?}"
    );
}

#[tokio::test]
async fn truncation_is_detected() {
    // Newest events and their checkpoint removed; the head witness remembers.
    let f = Fixture::new();
    f.closed_log(30).await;
    let mut db = f.attacker().await;
    sqlx::query("DELETE FROM events WHERE seq > 25")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM checkpoints WHERE seq > 25")
        .execute(&mut db)
        .await
        .unwrap();
    drop(db);
    let report = f.verify().await;
    assert_eq!(report.events, 25);
    insta::assert_yaml_snapshot!("truncated", problem(&report));
    let err = AuditLog::open(&f.path, f.key.clone(), AuditOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "audit_error");

    // Events removed but the checkpoint kept.
    let f = Fixture::new();
    f.closed_log(30).await;
    let mut db = f.attacker().await;
    sqlx::query("DELETE FROM events WHERE seq > 25")
        .execute(&mut db)
        .await
        .unwrap();
    let report = f.verify().await;
    assert_eq!(
        (problem(&report).seq, problem(&report).kind),
        (26, ProblemKind::Truncated)
    );

    // Events, checkpoints and the witness removed.
    let f = Fixture::new();
    f.closed_log(30).await;
    let mut db = f.attacker().await;
    sqlx::query("DELETE FROM events WHERE seq > 20")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("DELETE FROM checkpoints WHERE seq > 20")
        .execute(&mut db)
        .await
        .unwrap();
    std::fs::remove_file(f.path.with_extension("head")).unwrap();
    let report = f.verify().await;
    insta::assert_yaml_snapshot!("truncated_without_witness", problem(&report));
}

#[tokio::test]
async fn forged_checkpoint_signature_is_detected() {
    let f = Fixture::new();
    f.closed_log(30).await;
    let mut db = f.attacker().await;
    sqlx::query("UPDATE checkpoints SET signature = zeroblob(64) WHERE seq = 20")
        .execute(&mut db)
        .await
        .unwrap();
    let report = f.verify().await;
    insta::assert_yaml_snapshot!("forged_checkpoint", problem(&report));

    // A checkpoint moved to cover forged content fails its signature too.
    let f = Fixture::new();
    f.closed_log(30).await;
    let mut db = f.attacker().await;
    sqlx::query("UPDATE checkpoints SET hash = zeroblob(32) WHERE seq = 10")
        .execute(&mut db)
        .await
        .unwrap();
    let report = f.verify().await;
    assert_eq!(
        (problem(&report).seq, problem(&report).kind),
        (10, ProblemKind::BadSignature)
    );

    // A deleted checkpoint in the middle.
    let f = Fixture::new();
    f.closed_log(30).await;
    let mut db = f.attacker().await;
    sqlx::query("DELETE FROM checkpoints WHERE seq = 20")
        .execute(&mut db)
        .await
        .unwrap();
    let report = f.verify().await;
    assert_eq!(
        (problem(&report).seq, problem(&report).kind),
        (20, ProblemKind::BadCheckpoint)
    );
}

#[tokio::test]
async fn forged_head_witness_is_detected() {
    let f = Fixture::new();
    f.closed_log(30).await;
    let witness_path = f.path.with_extension("head");
    let text = std::fs::read_to_string(&witness_path).unwrap();
    let forged = text.replace("\"closed\":true", "\"closed\":false");
    assert_ne!(forged, text);
    std::fs::write(&witness_path, forged).unwrap();
    let report = f.verify().await;
    insta::assert_yaml_snapshot!("forged_witness", problem(&report));
    let err = AuditLog::open(&f.path, f.key.clone(), AuditOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "audit_error");
}

#[tokio::test]
async fn tail_after_last_checkpoint_is_covered_by_the_witness() {
    let f = Fixture::new();
    let log = f.open(10).await;
    for i in 1..=25 {
        log.append(event(i)).await.unwrap();
    }
    // Let the (rate-limited) witness catch up with the head.
    for _ in 0..100 {
        let w = std::fs::read_to_string(f.path.with_extension("head")).unwrap();
        if w.contains("\"seq\":25,") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Re-hash the chain from 22, after the last checkpoint (20), while the log is open.
    let mut db = f.attacker().await;
    let (canonical, _, _) = row(&mut db, 22).await;
    let forged = canonical.replace("\"i\":22", "\"i\":0");
    sqlx::query("UPDATE events SET canonical = ? WHERE seq = 22")
        .bind(forged.as_bytes())
        .execute(&mut db)
        .await
        .unwrap();
    rehash_from(&mut db, 22).await;
    let report = f.verify().await;
    assert_eq!(
        (problem(&report).seq, problem(&report).kind),
        (22, ProblemKind::Edited),
        "{report:?}"
    );
    // The close checkpoint is built from the writer's own hashes, not the file's.
    drop(db);
    log.close().await.unwrap();
    let report = f.verify().await;
    assert_eq!(problem(&report).seq, 22, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_form_one_gap_free_chain() {
    let f = Fixture::new();
    let log = f.open(1000).await;
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..200u64 {
                let rec = log
                    .append(NewEvent::new(
                        format!("user{t}"),
                        "researcher",
                        "catalog.read",
                        format!("dataset:d{i}"),
                    ))
                    .await
                    .unwrap();
                seqs.push(rec.seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        // Each task's own appends are ordered.
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        all.extend(seqs);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=1600).collect::<Vec<u64>>());
    log.close().await.unwrap();
    let report = f.verify().await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.events, report.checkpoints), (1600, 2));
}

#[tokio::test]
async fn close_checkpoints_and_refuses_later_appends() {
    let f = Fixture::new();
    let log = f.open(1000).await;
    let err = log.checkpoint().await.unwrap_err();
    assert_eq!(err.code(), "conflict");
    for i in 1..=5 {
        log.append(event(i)).await.unwrap();
    }
    let cp = log.checkpoint().await.unwrap();
    assert_eq!((cp.seq, cp.hash.clone()), log.head());
    assert_eq!(cp.signature.len(), 128);
    // Nothing new: the same checkpoint.
    assert_eq!(log.checkpoint().await.unwrap(), cp);
    log.append(event(6)).await.unwrap();
    let other = log.clone();
    log.close().await.unwrap();
    other.close().await.unwrap();

    let err = other.append(event(7)).await.unwrap_err();
    assert_eq!(err.code(), "audit_error");
    assert_eq!(err.to_string(), "audit: the audit log is closed");
    assert!(log.checkpoint().await.is_err());
    assert_eq!(log.head().0, 6);

    let mut db = SqliteConnectOptions::new()
        .filename(&f.path)
        .connect()
        .await
        .unwrap();
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM checkpoints ORDER BY seq")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert_eq!(seqs, vec![5, 6]);
    // The append-only triggers refuse edits through SQL.
    let err = sqlx::query("UPDATE events SET actor = 'x' WHERE seq = 1")
        .execute(&mut db)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
    let report = f.verify().await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.checkpoints, 2);
}

#[tokio::test]
async fn reopen_continues_the_chain() {
    let f = Fixture::new();
    let log = f.open(10).await;
    for i in 1..=3 {
        log.append(event(i)).await.unwrap();
    }
    let head = log.head();
    // One writer per file.
    let err = AuditLog::open(&f.path, f.key.clone(), AuditOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "conflict");
    log.close().await.unwrap();

    let log = f.open(10).await;
    assert_eq!(log.head(), head);
    let rec = log.append(event(4)).await.unwrap();
    assert_eq!((rec.seq, rec.prev_hash.as_str()), (4, head.1.as_str()));
    drop(log); // dropping every handle closes the log in the background
    let mut report = f.verify().await;
    for _ in 0..100 {
        if report.checkpoints == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        report = f.verify().await;
    }
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.events, report.checkpoints), (4, 2));
}

#[tokio::test]
async fn list_filters() {
    let f = Fixture::new();
    let log = f.open(1000).await;
    for i in 1..=12 {
        log.append(event(i)).await.unwrap();
    }
    let seqs = |v: Vec<audit::AuditRecord>| v.into_iter().map(|r| r.seq).collect::<Vec<_>>();
    let all = log.list(&AuditFilter::default()).await.unwrap();
    assert_eq!(all.len(), 12);
    assert_eq!(all[4].details, json!({ "i": 5, "note": "sample" }));
    assert_eq!(all[4].outcome, Outcome::Success);
    assert_eq!(all[4].prev_hash, all[3].hash);

    let by_actor = AuditFilter {
        actor: Some("bob".into()),
        ..Default::default()
    };
    assert_eq!(seqs(log.list(&by_actor).await.unwrap()), vec![1, 4, 7, 10]);
    let by_prefix = AuditFilter {
        action: Some("dataset.".into()),
        ..Default::default()
    };
    assert_eq!(
        seqs(log.list(&by_prefix).await.unwrap()),
        vec![1, 3, 5, 7, 9, 11]
    );
    let by_full_action = AuditFilter {
        action: Some("catalog.read".into()),
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(seqs(log.list(&by_full_action).await.unwrap()), vec![2, 4]);
    let by_object = AuditFilter {
        object: Some("dataset:d1@v1".into()),
        since_seq: Some(1),
        ..Default::default()
    };
    assert_eq!(seqs(log.list(&by_object).await.unwrap()), vec![5, 9]);
    let combined = AuditFilter {
        actor: Some("system".into()),
        action: Some("catalog".into()),
        since_seq: Some(3),
        ..Default::default()
    };
    assert_eq!(seqs(log.list(&combined).await.unwrap()), vec![8]);
    let none = AuditFilter {
        action: Some("datasetx".into()),
        ..Default::default()
    };
    assert!(log.list(&none).await.unwrap().is_empty());
    // The read-only free function sees the same, even while the writer holds the log.
    assert_eq!(
        audit::list(&f.path, &by_prefix).await.unwrap(),
        log.list(&by_prefix).await.unwrap()
    );
    let too_many = AuditFilter {
        limit: Some(audit::MAX_LIST_LIMIT + 1),
        ..Default::default()
    };
    assert_eq!(
        log.list(&too_many).await.unwrap_err().code(),
        "invalid_argument"
    );
    log.close().await.unwrap();
}

const KILL9_DIR: &str = "ANYU_AUDIT_KILL9_DIR";

/// Child process for `kill9_loses_no_acknowledged_event`: appends from four
/// tasks forever and prints every acknowledged event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process, run by kill9_loses_no_acknowledged_event"]
async fn kill9_child() {
    let Ok(dir) = std::env::var(KILL9_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let key = key_from(&std::fs::read(dir.join("key.pk8")).unwrap());
    let log = AuditLog::open(
        &dir.join("audit.db"),
        key,
        AuditOptions {
            checkpoint_every: 50,
            max_batch: 64,
            witness_dir: None,
        },
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for t in 0..4 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0u64.. {
                let rec = log
                    .append(event(i).details(json!({ "task": t, "i": i })))
                    .await
                    .unwrap();
                println!("ack {} {}", rec.seq, rec.hash);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn kill9_loses_no_acknowledged_event() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let pk8 = pkcs8();
    std::fs::write(dir.path().join("key.pk8"), &pk8).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "audit::kill9_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL9_DIR, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut killed = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("ack ") {
            let (seq, hash) = rest.split_once(' ').unwrap();
            acked.push((seq.parse().unwrap(), hash.to_string()));
        }
        if acked.len() >= 300 && !killed {
            child.kill().unwrap(); // SIGKILL
            killed = true;
        }
    }
    child.wait().unwrap();
    assert!(killed, "the child ended before acknowledging 300 events");

    let path = dir.path().join("audit.db");
    let key = key_from(&pk8);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let report = audit::verify(&path, key.public_key().as_ref())
            .await
            .unwrap();
        assert!(report.is_ok(), "{report:?}");
        let max_acked = acked.iter().map(|a| a.0).max().unwrap();
        assert!(
            report.head_seq >= max_acked,
            "acknowledged events lost: {report:?}"
        );

        // Reopening accepts the crashed log; every acknowledged event is there, unchanged.
        let log = AuditLog::open(&path, key.clone(), AuditOptions::default())
            .await
            .unwrap();
        let mut stored = std::collections::HashMap::new();
        let mut since = 0;
        loop {
            let page = log
                .list(&AuditFilter {
                    since_seq: Some(since),
                    ..Default::default()
                })
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            since = last.seq;
            stored.extend(page.into_iter().map(|r| (r.seq, r.hash)));
        }
        for (seq, hash) in &acked {
            assert_eq!(stored.get(seq), Some(hash), "acknowledged event {seq}");
        }
        let rec = log.append(event(0)).await.unwrap();
        assert_eq!(rec.seq, report.head_seq + 1);
        log.close().await.unwrap();
        let report = audit::verify(&path, key.public_key().as_ref())
            .await
            .unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.unsigned_events, 0);
    });
}

#[derive(Debug, Clone)]
enum Tamper {
    FlipByte { seq: i64, pos: usize, mask: u8 },
    Column { seq: i64, column: &'static str },
    Delete { seq: i64 },
    SwapWithNext { seq: i64 },
    EditAndRehash { seq: i64 },
    Truncate { seq: i64 },
}

impl Tamper {
    fn seq(&self) -> i64 {
        match *self {
            Tamper::FlipByte { seq, .. }
            | Tamper::Column { seq, .. }
            | Tamper::Delete { seq }
            | Tamper::SwapWithNext { seq }
            | Tamper::EditAndRehash { seq }
            | Tamper::Truncate { seq } => seq,
        }
    }

    async fn apply(&self, db: &mut SqliteConnection) {
        let sql: Vec<String> = match *self {
            Tamper::FlipByte { seq, pos, mask } => {
                let (canonical, _, _) = row(db, seq).await;
                let mut bytes = canonical.into_bytes();
                let i = pos % bytes.len();
                bytes[i] ^= mask;
                sqlx::query("UPDATE events SET canonical = ? WHERE seq = ?")
                    .bind(bytes)
                    .bind(seq)
                    .execute(&mut *db)
                    .await
                    .unwrap();
                vec![]
            }
            Tamper::Column { seq, column } => vec![format!(
                "UPDATE events SET {column} = {column} || 'x' WHERE seq = {seq}"
            )],
            Tamper::Delete { seq } => vec![format!("DELETE FROM events WHERE seq = {seq}")],
            Tamper::SwapWithNext { seq } => vec![
                format!("UPDATE events SET seq = -1 WHERE seq = {seq}"),
                format!("UPDATE events SET seq = {seq} WHERE seq = {}", seq + 1),
                format!("UPDATE events SET seq = {} WHERE seq = -1", seq + 1),
            ],
            Tamper::EditAndRehash { seq } => {
                let (canonical, _, _) = row(db, seq).await;
                let forged = canonical.replace("\"note\":\"sample\"", "\"note\":\"forged\"");
                sqlx::query("UPDATE events SET canonical = ? WHERE seq = ?")
                    .bind(forged.into_bytes())
                    .bind(seq)
                    .execute(&mut *db)
                    .await
                    .unwrap();
                rehash_from(db, seq).await;
                vec![]
            }
            Tamper::Truncate { seq } => vec![
                format!("DELETE FROM events WHERE seq >= {seq}"),
                format!("DELETE FROM checkpoints WHERE seq >= {seq}"),
            ],
        };
        for q in sql {
            sqlx::query(&q).execute(&mut *db).await.unwrap();
        }
    }
}

fn tamper_strategy() -> impl proptest::strategy::Strategy<Value = Tamper> {
    use proptest::prelude::*;
    let seq = 1i64..=29;
    prop_oneof![
        (seq.clone(), any::<usize>(), 1u8..=255).prop_map(|(seq, pos, mask)| Tamper::FlipByte {
            seq,
            pos,
            mask
        }),
        (
            seq.clone(),
            prop::sample::select(vec![
                "id", "time", "actor", "role", "action", "object", "outcome"
            ])
        )
            .prop_map(|(seq, column)| Tamper::Column { seq, column }),
        seq.clone().prop_map(|seq| Tamper::Delete { seq }),
        seq.clone().prop_map(|seq| Tamper::SwapWithNext { seq }),
        seq.clone().prop_map(|seq| Tamper::EditAndRehash { seq }),
        seq.prop_map(|seq| Tamper::Truncate { seq }),
    ]
}

/// Whatever single tampering happens, verification fails and names its seq.
#[test]
fn any_tampering_names_the_first_bad_event() {
    use proptest::test_runner::{Config, TestRunner};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let base = Fixture::new();
    rt.block_on(base.closed_log(30));
    let mut runner = TestRunner::new(Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&tamper_strategy(), |t| {
            rt.block_on(async {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("audit.db");
                std::fs::copy(&base.path, &path).unwrap();
                std::fs::copy(
                    base.path.with_extension("head"),
                    path.with_extension("head"),
                )
                .unwrap();
                let f = Fixture {
                    _dir: dir,
                    path,
                    key: base.key.clone(),
                };
                let mut db = f.attacker().await;
                t.apply(&mut db).await;
                drop(db);
                let report = f.verify().await;
                let p = report
                    .problem
                    .as_ref()
                    .unwrap_or_else(|| panic!("{t:?} not detected"));
                assert_eq!(p.seq as i64, t.seq(), "{t:?}: {p:?}");
                let expected = match t {
                    Tamper::Delete { .. } => Some(ProblemKind::Deleted),
                    Tamper::SwapWithNext { .. } => Some(ProblemKind::Reordered),
                    Tamper::Truncate { .. } => Some(ProblemKind::Truncated),
                    Tamper::Column { .. } | Tamper::EditAndRehash { .. } => {
                        Some(ProblemKind::Edited)
                    }
                    // A flipped byte may hit the seq digits or the JSON syntax.
                    Tamper::FlipByte { .. } => None,
                };
                if let Some(kind) = expected {
                    assert_eq!(p.kind, kind, "{t:?}: {p:?}");
                }
            });
            Ok(())
        })
        .unwrap();
}

/// Runs the fast verifier and the exact sequential one; they must agree.
async fn verify_both(f: &Fixture) -> VerifyReport {
    let fast = f.verify().await;
    let exact = audit::verify_sequential(&f.path, &f.public_key())
        .await
        .unwrap();
    assert_eq!(fast, exact, "fast and sequential verification disagree");
    fast
}

#[tokio::test]
async fn fast_and_sequential_verification_agree_on_a_clean_log() {
    let f = Fixture::new();
    let log = f.open(10).await;
    for i in 1..=95 {
        log.append(event(i)).await.unwrap();
    }
    // Open log: nine checkpoints, the tail covered by the witness only. The
    // witness is rewritten off the commit path (at most every 50 ms): wait
    // until it covers the head, so both verifiers see the same witness.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while f.verify().await.unsigned_events > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "head witness never caught up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let report = verify_both(&f).await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.events, report.head_seq), (95, 95));
    assert_eq!(report.checkpoints, 9);
    log.close().await.unwrap();
    let report = verify_both(&f).await;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.checkpoints, 10);
    assert_eq!(report.unsigned_events, 0);
}

#[tokio::test]
async fn tampering_in_a_middle_interval_is_named_by_both_paths() {
    // Each case on its own closed log of 100 events (ten signed intervals).
    let cases: [(&str, &str, u64, ProblemKind); 4] = [
        (
            "column",
            "UPDATE events SET actor = 'mallory' WHERE seq = 55",
            55,
            ProblemKind::Edited,
        ),
        (
            "separator inside a column",
            "UPDATE events SET object = object || char(31) WHERE seq = 56",
            56,
            ProblemKind::Edited,
        ),
        (
            "deleted",
            "DELETE FROM events WHERE seq = 47",
            47,
            ProblemKind::Deleted,
        ),
        (
            "stored hash",
            "UPDATE events SET hash = zeroblob(32) WHERE seq = 63",
            63,
            ProblemKind::Edited,
        ),
    ];
    for (name, sql, seq, kind) in cases {
        let f = Fixture::new();
        f.closed_log(100).await;
        let mut db = f.attacker().await;
        sqlx::query(sql).execute(&mut db).await.unwrap();
        let report = verify_both(&f).await;
        let p = problem(&report);
        assert_eq!((p.seq, p.kind), (seq, kind), "{name}: {p:?}");
        assert_eq!(report.head_seq, seq - 1, "{name}");
    }

    // Edited and the whole chain re-hashed: only the signed hashes tell.
    let f = Fixture::new();
    f.closed_log(100).await;
    let mut db = f.attacker().await;
    let (canonical, _, _) = row(&mut db, 64).await;
    sqlx::query("UPDATE events SET canonical = ? WHERE seq = 64")
        .bind(canonical.replace("\"i\":64", "\"i\":7").as_bytes())
        .execute(&mut db)
        .await
        .unwrap();
    rehash_from(&mut db, 64).await;
    let report = verify_both(&f).await;
    let p = problem(&report);
    assert_eq!((p.seq, p.kind), (64, ProblemKind::Edited), "{p:?}");
}
