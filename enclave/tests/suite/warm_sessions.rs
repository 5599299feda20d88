//! A grant's query session is kept warm between its jobs (issue 17) and
//! never outlives what it was built from: a suspension or revocation drops
//! it, and the next job after a new dataset version reads that version.

use enclave::access::VersionPolicy;
use enclave::domain::GrantChange;

use crate::support::{self, Lab};

const SQL: &str = "SELECT grp, count(*) AS n FROM warm GROUP BY grp";

fn manifest() -> String {
    support::crafted_manifest(
        "warm",
        ("会话复用", "warm sessions"),
        r#"
[[columns]]
name = "grp"
type = "int64"
description = { zh = "组", en = "Group" }
sensitivity = "attribute"

[disclosure]
threshold = 5
frequency_threshold = 5
max_output_rows = 10000
auto_release = false
row_level_output = false
"#,
    )
}

fn csv(lab: &Lab, name: &str, persons: u64) -> std::path::PathBuf {
    let mut text = String::from("person,grp\n");
    for i in 1..=persons {
        text.push_str(&format!("{i},{}\n", i % 2));
    }
    let path = lab.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn total(ran: &support::Ran) -> i64 {
    ran.rows.iter().map(|r| r["n"].as_i64().unwrap()).sum()
}

#[tokio::test]
async fn a_suspended_or_revoked_grants_warm_session_is_never_used() {
    let lab = Lab::new().await;
    let grant = lab.dataset(&manifest(), &csv(&lab, "warm.csv", 40)).await;
    let d = &lab.domain;
    let start = d.warm_sessions();
    lab.run(&grant, SQL).await;
    lab.run(&grant, SQL).await;
    let warm = d.warm_sessions();
    assert_eq!(warm.opened - start.opened, 1, "{warm:?}");
    assert_eq!(
        warm.reused - start.reused,
        1,
        "the second job reuses the first's session"
    );
    assert_eq!(warm.idle, 1);

    // Suspended: the session is dropped and the grant runs nothing.
    let suspend = GrantChange::Suspend {
        reason: "核查使用情况".into(),
    };
    d.change_grant(&lab.steward, &grant, suspend).await.unwrap();
    assert_eq!(
        d.warm_sessions().idle,
        0,
        "suspension drops the warm session"
    );
    let e = d
        .submit_job(&lab.researcher, &grant, SQL)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "grant_suspended");

    // Reinstated: the next job builds a new session.
    let reinstate = GrantChange::Reinstate {
        reason: "核查完毕，可以恢复".into(),
    };
    d.change_grant(&lab.steward, &grant, reinstate)
        .await
        .unwrap();
    let before = d.warm_sessions();
    assert_eq!(total(&lab.run(&grant, SQL).await), 40);
    let after = d.warm_sessions();
    assert_eq!(after.opened - before.opened, 1, "{after:?}");
    assert_eq!(after.reused, before.reused, "{after:?}");
    assert_eq!(after.idle, 1);

    // Revoked: dropped again, and nothing runs.
    let revoke = GrantChange::Revoke {
        reason: "违反使用协议条款".into(),
    };
    d.change_grant(&lab.steward, &grant, revoke).await.unwrap();
    assert_eq!(
        d.warm_sessions().idle,
        0,
        "revocation drops the warm session"
    );
    let e = d
        .submit_job(&lab.researcher, &grant, SQL)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "grant_revoked");
    assert_eq!(d.warm_sessions().reused, after.reused);
}

#[tokio::test]
async fn the_next_job_reads_a_new_dataset_version() {
    let lab = Lab::new().await;
    let pinned = lab.dataset(&manifest(), &csv(&lab, "warm.csv", 40)).await;
    let latest = lab.grant_with("warm", VersionPolicy::Latest).await;
    for g in [&latest, &pinned] {
        assert_eq!(total(&lab.run(g, SQL).await), 40);
    }
    assert_eq!(lab.domain.warm_sessions().idle, 2);

    // A second version: 60 persons.
    let manifest_path = lab.dir.path().join("warm.toml");
    lab.domain
        .import_dataset(
            &enclave::Actor::operator(),
            &manifest_path,
            &csv(&lab, "warm-v2.csv", 60),
            &enclave::ingest::ImportOptions::default(),
            None,
        )
        .await
        .unwrap();
    let before = lab.domain.warm_sessions();
    assert_eq!(
        total(&lab.run(&latest, SQL).await),
        60,
        "the grant on the newest version reads the new one at once"
    );
    assert_eq!(
        total(&lab.run(&pinned, SQL).await),
        40,
        "the pinned grant keeps its version"
    );
    let after = lab.domain.warm_sessions();
    assert_eq!(after.opened - before.opened, 2, "{after:?}");
    // And the new version's session is warm for the job after.
    assert_eq!(total(&lab.run(&latest, SQL).await), 60);
    assert_eq!(lab.domain.warm_sessions().reused, after.reused + 1);
}
