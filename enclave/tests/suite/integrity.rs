//! Integrity of the authorization state: rows of the metadata store edited
//! without the master key are refused by name and audited; a rejection
//! racing the final approval leaves no sealed files and charges nothing.

use crate::support;

use std::time::Duration;

use crate::support::{Lab, PROVIDER};
use enclave::audit::AuditFilter;
use enclave::domain::ReviewDecision;
use enclave::identity::Role;

/// Runs one statement on the metadata database beside the open domain, as
/// someone with file access (and no key) would.
async fn intrude(lab: &Lab, statement: &str) {
    use sqlx::Connection;
    let db = lab.domain.data_dir().meta_db();
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let n = sqlx::query(statement)
        .execute(&mut conn)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(n, 1, "{statement}");
    conn.close().await.unwrap();
}

/// Waits for the `metadata.tampered` event naming `object`.
async fn tamper_event(lab: &Lab, object: &str) {
    for _ in 0..100 {
        let events = lab
            .domain
            .audit()
            .list(&AuditFilter {
                action: Some("metadata.tampered".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        if events.iter().any(|e| e.object == object) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no metadata.tampered event for {object}");
}

fn expect_tampered(e: enclave::Error, table: &str, row: &str) {
    assert_eq!(e.code(), "metadata_tampered", "{e}");
    let text = e.to_string();
    assert!(text.contains(table) && text.contains(row), "{text}");
}

#[tokio::test]
async fn a_researcher_made_admin_by_sql_is_refused_and_audited() {
    let lab = Lab::new().await;
    let id = lab.researcher.user_id.clone();
    intrude(
        &lab,
        &format!("UPDATE users SET role = 'admin' WHERE id = '{id}'"),
    )
    .await;
    let e = lab.domain.me(&lab.researcher).await.unwrap_err();
    expect_tampered(e, "users", &id);
    // The message names the row, never a value of it.
    let e = lab.domain.me(&lab.researcher).await.unwrap_err();
    assert!(!e.to_string().contains("admin"), "{e}");
    tamper_event(&lab, &format!("users:{id}")).await;
}

#[tokio::test]
async fn a_row_filter_added_by_sql_is_refused() {
    let lab = Lab::new().await;
    let path = lab.dir.path().join("t.csv");
    std::fs::write(&path, "person,grp\n1,1\n2,2\n").unwrap();
    let grant = lab.dataset(&manifest("tamper_rows"), &path).await;
    intrude(
        &lab,
        &format!(
            "UPDATE grants SET grant_json = json_set(grant_json, '$.datasets[0].row_filter', \
             json('{{\"in\":{{\"column\":\"grp\",\"values\":[1]}}}}')) WHERE id = '{grant}'"
        ),
    )
    .await;
    let e = lab
        .domain
        .grant_view(&lab.researcher, &grant)
        .await
        .unwrap_err();
    expect_tampered(e, "grants", &grant);
    tamper_event(&lab, &format!("grants:{grant}")).await;
}

#[tokio::test]
async fn a_vote_inserted_by_sql_is_refused() {
    let lab = Lab::new().await;
    let path = lab.dir.path().join("t.csv");
    std::fs::write(&path, "person,grp\n1,1\n2,2\n").unwrap();
    let grant = lab.dataset(&manifest("tamper_votes"), &path).await;
    let view = lab.domain.grant_view(&lab.admin, &grant).await.unwrap();
    let app = view.grant.application_id.clone();
    let steward = lab.steward.user_id.clone();
    intrude(
        &lab,
        &format!(
            "INSERT INTO application_events (application_id, seq, event, actor_id, actor_username, \
             capacity, provider, from_status, to_status, at) VALUES ('{app}', 99, 'approve', \
             '{steward}', 'steward', 'provider_steward', '{PROVIDER}', 'under_review', \
             'under_review', '2026-01-01T00:00:00Z')"
        ),
    )
    .await;
    let e = lab
        .domain
        .application_view(&lab.admin, &app)
        .await
        .unwrap_err();
    expect_tampered(e, "application_events", &format!("{app}/99"));
    tamper_event(&lab, &format!("application_events:{app}/99")).await;
}

#[tokio::test]
async fn a_job_rewritten_by_sql_is_refused() {
    let lab = Lab::new().await;
    let path = lab.dir.path().join("t.csv");
    std::fs::write(&path, "person,grp\n1,1\n2,2\n").unwrap();
    let grant = lab.dataset(&manifest("tamper_jobs"), &path).await;
    let ran = lab
        .run(
            &grant,
            "SELECT grp, count(*) AS n FROM tamper_jobs GROUP BY grp",
        )
        .await;
    let id = ran.job_id;
    lab.domain.job(&id).await.unwrap();
    // What runs and for whom: the SQL and the requester, rewritten.
    intrude(
        &lab,
        &format!(
            "UPDATE jobs SET query_text = 'SELECT * FROM tamper_jobs', requester_id = '{}' \
             WHERE id = '{id}'",
            lab.admin.user_id
        ),
    )
    .await;
    let e = lab.domain.job(&id).await.unwrap_err();
    expect_tampered(e, "jobs", &id);
    // A reviewer's vote on it goes nowhere either.
    lab.domain
        .review_job(&lab.steward, &id, ReviewDecision::Approve, "")
        .await
        .unwrap_err();
    tamper_event(&lab, &format!("jobs:{id}")).await;
}

#[tokio::test]
async fn a_project_member_added_by_sql_is_refused() {
    let lab = Lab::new().await;
    let other = support::user(&lab.domain, "other", Role::Researcher, "深圳大学", &[]).await;
    let project = lab
        .domain
        .create_project(
            &lab.researcher,
            enclave::access::NewProject {
                title: "成员测试".into(),
                scenario_description: "检验项目成员的完整性。".into(),
                scenario_category: "academic_research".into(),
                members: Vec::new(),
            },
        )
        .await
        .unwrap();
    let id = project.id;
    intrude(
        &lab,
        &format!(
            "UPDATE projects SET members_json = json_array('{}') WHERE id = '{id}'",
            other.user_id
        ),
    )
    .await;
    let e = lab.domain.store().project(&id).await.unwrap_err();
    expect_tampered(e, "projects", &id);
    tamper_event(&lab, &format!("projects:{id}")).await;
}

/// A data directory whose metadata store stopped at migration 0010 (before
/// token scopes, row MACs, organisations and persons): the current code
/// applies 0011-0015 at open, turns the free-text organisations into
/// entities (two spellings of one name, one organisation), seals every row
/// once (one `metadata.sealed`), and the rows then load, verify and are
/// still guarded: a role edited afterwards is refused.
#[tokio::test]
async fn a_store_from_migration_0010_is_adopted_sealed_and_verifying() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("domain");
    let options = || enclave::DomainOptions {
        identity: enclave::identity::IdentityPolicy::default().with_insecure_fast_hashing(),
        ..enclave::DomainOptions::default()
    };
    enclave::Domain::init(&root, options())
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    // The store as the build of migration 0010 left it.
    let db = root.join("meta/anyu.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let mut old = sqlx::migrate::Migrator::new(support::repo("enclave/migrations/meta"))
        .await
        .unwrap();
    old.migrations = std::borrow::Cow::Owned(old.migrations[..10].to_vec());
    assert_eq!(old.migrations.last().unwrap().version, 10);
    old.run(&mut conn).await.unwrap();
    let hash = |t: &str| hex::encode(ring::digest::digest(&ring::digest::SHA256, t.as_bytes()));
    let at = "2026-01-05T00:00:00.000000Z";
    for statement in [
        format!(
            "INSERT INTO users (id, username, real_name, organisation, organisation_type, role, \
             provider_agencies_json, verified, credit_flags_json, password_hash, created_at, \
             updated_at) VALUES \
             ('u1', 'old_r', '旧', '深圳大学', 'university', 'researcher', '[]', 1, '[]', 'x', '{at}', '{at}'), \
             ('u2', 'old_r2', '旧', '深圳\u{200b}大学', 'university', 'researcher', '[]', 1, '[]', 'x', '{at}', '{at}')"
        ),
        format!(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) \
             VALUES ('{}', 'u1', '{at}', '2099-01-01T00:00:00.000000Z')",
            hash("anyu_s_old_session")
        ),
        format!(
            "INSERT INTO api_tokens (id, token_hash, user_id, name, created_at) \
             VALUES ('t1', '{}', 'u2', 'script', '{at}')",
            hash("anyu_t_old_token")
        ),
        format!(
            "INSERT INTO projects (id, owner_id, organisation, title, scenario_description, \
             scenario_category, members_json, created_at, updated_at) VALUES \
             ('p1', 'u1', '深圳大学', '旧项目', '迁移测试。', 'academic_research', '[\"u2\"]', '{at}', '{at}')"
        ),
    ] {
        sqlx::query(&statement).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let f = format!("{}{suffix}", db.display());
            if std::path::Path::new(&f).exists() {
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        }
    }

    let domain = enclave::Domain::open(&root, options()).await.unwrap();
    let session = domain.authenticate("anyu_s_old_session").await.unwrap();
    let token = domain.authenticate("anyu_t_old_token").await.unwrap();
    let (a, b) = (
        domain.me(&session).await.unwrap(),
        domain.me(&token).await.unwrap(),
    );
    assert!(!a.organisation_id.is_empty(), "{a:?}");
    assert_eq!(a.organisation_id, b.organisation_id, "one organisation");
    let project = domain.store().project("p1").await.unwrap().unwrap();
    assert_eq!(project.members, vec!["u2".to_string()]);
    let sealed = domain
        .audit()
        .list(&AuditFilter {
            action: Some("metadata.sealed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        sealed.len(),
        2,
        "init's sealing and the upgrade's: {sealed:?}"
    );
    assert!(
        sealed[1].details["rows"].as_u64().unwrap() >= 5,
        "{sealed:?}"
    );
    domain.close().await.unwrap();

    // The chain verifies; the rows are sealed, not merely tolerated.
    let keyring = enclave::keyring::Keyring::open(&root.join("keys")).unwrap();
    let report = enclave::audit::verify(&root.join("audit/audit.db"), &keyring.public_key())
        .await
        .unwrap();
    assert!(report.is_ok(), "{report:?}");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    for table in ["users", "sessions", "api_tokens", "projects"] {
        let unsealed: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE mac IS NULL"))
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(unsealed, 0, "{table}");
    }
    sqlx::query("UPDATE users SET role = 'admin' WHERE id = 'u1'")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let domain = enclave::Domain::open(&root, options()).await.unwrap();
    let e = domain.authenticate("anyu_s_old_session").await.unwrap_err();
    expect_tampered(e, "users", "u1");
    domain.close().await.unwrap();
}

fn manifest(id: &str) -> String {
    support::crafted_manifest(
        id,
        ("完整性", "integrity"),
        r#"
[[columns]]
name = "grp"
type = "int64"
description = { zh = "组", en = "Group" }
sensitivity = "attribute"

[disclosure]
threshold = 2
frequency_threshold = 2
zeros_are_disclosive = false
max_output_rows = 10000
auto_release = false
row_level_output = false
"#,
    )
}

/// A rejection and the approval that would release race, many times: the
/// result is released (files, release row, budget charged) or rejected
/// (none of these), never a mix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_racing_the_final_approval_leaves_no_files_and_no_charge() {
    let lab = Lab::new().await;
    let admin2 = support::user(&lab.domain, "admin2", Role::Admin, "第二平台", &[]).await;
    let mut csv = String::from("person,grp\n");
    for i in 1..=40 {
        csv.push_str(&format!("{i},{}\n", i % 2));
    }
    let path = lab.dir.path().join("race.csv");
    std::fs::write(&path, csv).unwrap();
    let grant = lab.dataset(&manifest("race"), &path).await;
    let d = &lab.domain;
    let mut released = 0u64;
    let mut rejected = 0;
    for i in 0..12 {
        let sql = format!(
            "SELECT grp, count(*) AS n FROM race WHERE grp < {} GROUP BY grp",
            i + 2
        );
        let ran = lab.run(&grant, &sql).await;
        assert_eq!(ran.status, "pending_review");
        let job = d.job(&ran.job_id).await.unwrap();
        // Everyone but the last approver has voted.
        let (approver, rejecter) = if job.reviewers_required >= 2 {
            d.review_packet(&lab.admin, &job.id).await.unwrap();
            d.review_job(&lab.admin, &job.id, ReviewDecision::Approve, "")
                .await
                .unwrap();
            (&lab.steward, &admin2)
        } else {
            (&lab.steward, &admin2)
        };
        d.review_packet(approver, &job.id).await.unwrap();
        d.review_packet(rejecter, &job.id).await.unwrap();
        let (a, r) = tokio::join!(
            d.review_job(approver, &job.id, ReviewDecision::Approve, ""),
            d.review_job(rejecter, &job.id, ReviewDecision::Reject, "not this one"),
        );
        let job = d.job(&job.id).await.unwrap();
        match job.status.as_str() {
            "released" => {
                released += job.result_rows.unwrap();
                assert!(a.is_ok(), "{a:?}");
            }
            "rejected" => {
                rejected += 1;
                assert!(r.is_ok(), "{r:?}");
            }
            other => panic!("job ended {other}: {a:?} {r:?}"),
        }
    }
    // Every release directory belongs to a committed release, and the
    // budget holds exactly the released rows.
    let releases = d.releases_for(&lab.admin).await.unwrap();
    let root = d.data_dir().release("x");
    let dirs = std::fs::read_dir(root.parent().unwrap())
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(dirs, releases.len(), "sealed files of uncommitted releases");
    let g = d.grant_view(&lab.admin, &grant).await.unwrap().grant;
    assert_eq!(g.usage.released_rows, released);
    eprintln!("released {}, rejected {rejected}", releases.len());
}

/// `verify --deep`: a row written with the key but without its event (here
/// straight through the store, as a crash between the two or a key holder
/// would leave it) is named by kind and id; a clean domain has none.
#[tokio::test]
async fn cross_check_names_rows_without_their_events() {
    let lab = Lab::new().await;
    let audit_db = lab.domain.data_dir().audit_db();
    let store = lab.domain.store();
    lab.domain.audit().checkpoint().await.unwrap();
    let clean = enclave::domain::cross_check(store, &audit_db)
        .await
        .unwrap();
    assert!(clean.is_empty(), "{clean:?}");

    let mut ghost = lab.domain.me(&lab.researcher).await.unwrap();
    ghost.id = "01900000-0000-7000-8000-000000000001".into();
    ghost.username = "ghost_admin".into();
    ghost.role = Role::Admin;
    store
        .insert_user(&ghost, "account:ghost", "$argon2id$x", None)
        .await
        .unwrap();
    let found = enclave::domain::cross_check(store, &audit_db)
        .await
        .unwrap();
    assert_eq!(
        found,
        vec![enclave::domain::Discrepancy {
            kind: "user_without_event",
            id: ghost.id.clone(),
        }]
    );
}
