//! Accounts, logins, sessions and API tokens against a real SQLite store:
//! the login throttle's backoff, expiry, revocation, disabled accounts, and
//! that only hashes are stored.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use enclave::Error;
use enclave::catalog::OrganisationType;
use enclave::identity::{
    CreditFlag, Identity, IdentityPolicy, LoginOutcome, LoginSuccess, NewOrganisation, NewUser,
    PasswordChange, RefusalReason, Role, Scope, TokenKind,
};
use enclave::store::Store;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Row};

const PASSWORD: &str = "correct horse battery";

struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    identity: Identity,
    organisation_id: String,
}

/// A keyring for the store's row MACs.
fn test_keyring(dir: &std::path::Path) -> enclave::keyring::Keyring {
    enclave::keyring::Keyring::init(&dir.join("keys")).unwrap()
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta").join("meta.db");
    let store = Store::open(&db, &test_keyring(dir.path())).await.unwrap();
    let identity = Identity::new(
        store,
        IdentityPolicy::default().with_insecure_fast_hashing(),
    )
    .with_person_key([9; 32]);
    let organisation_id = university(&identity).await;
    Fixture {
        _dir: dir,
        db,
        identity,
        organisation_id,
    }
}

/// Registers the accounts' university; returns its id.
async fn university(identity: &Identity) -> String {
    identity
        .create_organisation(
            NewOrganisation {
                name: "某某大学".into(),
                credit_code: Some("91350100M000100Y43".into()),
                organisation_type: OrganisationType::University,
            },
            t0(),
        )
        .await
        .unwrap()
        .id
}

impl Fixture {
    fn new_user(&self, username: &str, role: Role) -> NewUser {
        new_user(&self.organisation_id, username, role)
    }
}

/// A well-formed 身份证号 per username (one person per account).
fn resident_id_of(username: &str) -> String {
    let n: u32 = username.bytes().map(u32::from).sum::<u32>() % 1000;
    let id17 = format!("44030519900101{n:03}");
    format!(
        "{id17}{}",
        enclave::ids::resident_id_check_char(&id17).unwrap()
    )
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn minutes(m: i64) -> TimeDelta {
    TimeDelta::minutes(m)
}

fn new_user(organisation_id: &str, username: &str, role: Role) -> NewUser {
    NewUser {
        username: username.to_string(),
        password: PASSWORD.to_string(),
        real_name: "张三".to_string(),
        organisation_id: organisation_id.to_string(),
        resident_id: resident_id_of(username),
        must_change_password: false,
        role,
        provider_agencies: if role == Role::Steward {
            vec!["市交通运输局".to_string()]
        } else {
            vec![]
        },
        verified: true,
        credit_flags: vec![],
    }
}

async fn raw(db: &PathBuf) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(db)
        .connect()
        .await
        .unwrap()
}

async fn login_ok(
    id: &Identity,
    username: &str,
    password: &str,
    now: DateTime<Utc>,
) -> LoginSuccess {
    match id.login(username, password, "client", now).await.unwrap() {
        LoginOutcome::Success(s) => *s,
        LoginOutcome::Refused(r) => panic!("login refused: {r:?}"),
    }
}

async fn refusal(
    id: &Identity,
    username: &str,
    password: &str,
    now: DateTime<Utc>,
) -> (RefusalReason, Error) {
    match id.login(username, password, "client", now).await.unwrap() {
        LoginOutcome::Success(_) => panic!("login unexpectedly succeeded"),
        LoginOutcome::Refused(r) => (r.reason, r.error()),
    }
}

#[tokio::test]
async fn create_login_authenticate() {
    let f = fixture().await;
    let user = f
        .identity
        .create_user(f.new_user("steward.one", Role::Steward), t0())
        .await
        .unwrap();
    assert_eq!(user.role, Role::Steward);
    assert_eq!(user.provider_agencies, vec!["市交通运输局"]);
    assert_eq!(
        uuid::Uuid::parse_str(&user.id).unwrap().get_version_num(),
        7
    );
    assert_eq!(f.identity.get_user("steward.one").await.unwrap(), user);

    let s = login_ok(&f.identity, "steward.one", PASSWORD, t0()).await;
    assert!(s.token.starts_with("anyu_s_"));
    // 256 bits in unpadded base64url: 43 characters.
    assert_eq!(s.token.len(), "anyu_s_".len() + 43);
    assert_eq!(s.user.id, user.id);
    assert_eq!(s.expires_at, "2026-03-02T17:00:00.000000Z");
    assert!(
        !format!("{s:?}").contains(&s.token),
        "Debug must not leak the token"
    );

    let p = f
        .identity
        .authenticate(&s.token, t0() + minutes(1))
        .await
        .unwrap();
    assert_eq!(p.user_id, user.id);
    assert_eq!(p.username, "steward.one");
    assert_eq!(p.role, Role::Steward);
    assert_eq!(p.organisation, "某某大学");
    assert_eq!(p.organisation_type, OrganisationType::University);
    assert_eq!(p.provider_agencies, vec!["市交通运输局"]);
    assert_eq!(p.token_kind, TokenKind::Session);

    // Two logins give two different sessions, both valid.
    let s2 = login_ok(&f.identity, "steward.one", PASSWORD, t0()).await;
    assert_ne!(s.token, s2.token);
    f.identity.authenticate(&s2.token, t0()).await.unwrap();

    // A tampered token is refused.
    let mut bad = s.token.clone();
    bad.pop();
    bad.push(if s.token.ends_with('A') { 'B' } else { 'A' });
    let e = f.identity.authenticate(&bad, t0()).await.unwrap_err();
    assert_eq!(e.code(), "unauthenticated");
    assert_eq!(e.to_string(), "invalid or expired token");
    let e = f
        .identity
        .authenticate("Bearer nonsense", t0())
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "invalid or expired token");
}

#[tokio::test]
async fn unknown_user_and_wrong_password_look_the_same() {
    let f = fixture().await;
    let user = f
        .identity
        .create_user(f.new_user("alice", Role::Researcher), t0())
        .await
        .unwrap();
    let (r1, e1) = refusal(&f.identity, "alice", "wrong password!!", t0()).await;
    let (r2, e2) = refusal(&f.identity, "nobody", "wrong password!!", t0()).await;
    assert_eq!(r1, RefusalReason::WrongPassword);
    assert_eq!(r2, RefusalReason::UnknownUser);
    assert_eq!(e1.to_string(), e2.to_string());
    assert_eq!(e1.code(), e2.code());
    assert_eq!(e1.to_string(), "invalid username or password");
    assert!(e1.is_public());

    // The refusal carries the account for the audit log, but only when it exists.
    let LoginOutcome::Refused(r) = f
        .identity
        .login("alice", "nope nope nope", "client", t0())
        .await
        .unwrap()
    else {
        panic!("expected refusal")
    };
    assert_eq!(r.user_id.as_deref(), Some(user.id.as_str()));
    assert_eq!(r.role, Some(Role::Researcher));
    let LoginOutcome::Refused(r) = f
        .identity
        .login("nobody", "nope nope nope", "client", t0())
        .await
        .unwrap()
    else {
        panic!("expected refusal")
    };
    assert_eq!((r.user_id, r.role), (None, None));
}

#[tokio::test]
async fn backoff_after_five_failures_then_cleared_by_a_success() {
    let f = fixture().await;
    f.identity
        .create_user(f.new_user("bob", Role::Researcher), t0())
        .await
        .unwrap();
    for i in 0..5 {
        let (reason, e) = refusal(&f.identity, "bob", "wrong password!!", t0()).await;
        assert_eq!(reason, RefusalReason::WrongPassword, "attempt {i}");
        assert_eq!(e.to_string(), "invalid username or password");
    }
    // Now every attempt waits the backoff (2 s, doubling), right password or not.
    for password in ["wrong password!!", PASSWORD] {
        let (reason, e) = refusal(&f.identity, "bob", password, t0() + minutes(0)).await;
        assert_eq!(reason, RefusalReason::Throttled);
        assert_eq!(e.code(), "too_many_attempts");
        assert_eq!(e.to_string(), "too many attempts; try again later");
    }
    let after = t0() + TimeDelta::seconds(2);
    let (reason, _) = refusal(
        &f.identity,
        "bob",
        PASSWORD,
        after - TimeDelta::microseconds(1),
    )
    .await;
    assert_eq!(reason, RefusalReason::Throttled);
    // The backoff ends exactly at its end, and a success clears the count.
    login_ok(&f.identity, "bob", PASSWORD, after).await;
    for _ in 0..5 {
        let (reason, _) = refusal(&f.identity, "bob", "wrong password!!", after).await;
        assert_eq!(reason, RefusalReason::WrongPassword);
    }
    // A sixth failure doubles the wait.
    let (reason, _) = refusal(
        &f.identity,
        "bob",
        "wrong password!!",
        after + TimeDelta::seconds(2),
    )
    .await;
    assert_eq!(reason, RefusalReason::WrongPassword);
    let (reason, e) = refusal(&f.identity, "bob", PASSWORD, after + TimeDelta::seconds(5)).await;
    assert_eq!(reason, RefusalReason::Throttled);
    assert!(
        matches!(
            e,
            Error::TooManyAttempts {
                retry_after_secs: 1
            }
        ),
        "{e:?}"
    );
    login_ok(&f.identity, "bob", PASSWORD, after + TimeDelta::seconds(6)).await;
}

#[tokio::test]
async fn an_unknown_name_is_throttled_like_an_account() {
    let f = fixture().await;
    f.identity
        .create_user(f.new_user("carol", Role::Auditor), t0())
        .await
        .unwrap();
    for name in ["carol", "nobody"] {
        for _ in 0..5 {
            refusal(&f.identity, name, "wrong password!!", t0()).await;
        }
        let (reason, e) = refusal(&f.identity, name, "wrong password!!", t0()).await;
        assert_eq!(reason, RefusalReason::Throttled, "{name}");
        assert!(
            matches!(
                e,
                Error::TooManyAttempts {
                    retry_after_secs: 2
                }
            ),
            "{e:?}"
        );
    }
}

#[tokio::test]
async fn disabled_user_cannot_login_or_authenticate() {
    let f = fixture().await;
    let user = f
        .identity
        .create_user(f.new_user("dave", Role::Admin), t0())
        .await
        .unwrap();
    let s = login_ok(&f.identity, "dave", PASSWORD, t0()).await;
    let (api, _) = f
        .identity
        .create_api_token(&user.id, "cli", &[Scope::Read], None, t0())
        .await
        .unwrap();

    let disabled = f.identity.disable_user("dave", t0()).await.unwrap();
    assert!(disabled.disabled);
    let (reason, e) = refusal(&f.identity, "dave", PASSWORD, t0()).await;
    assert_eq!(reason, RefusalReason::Disabled);
    assert_eq!(e.code(), "unauthenticated");
    assert_eq!(e.to_string(), "account is disabled");
    // A wrong password on a disabled account still says nothing about the account.
    let (reason, e) = refusal(&f.identity, "dave", "wrong password!!", t0()).await;
    assert_eq!(reason, RefusalReason::WrongPassword);
    assert_eq!(e.to_string(), "invalid username or password");

    // Disabling revoked the session; the API token is refused while disabled.
    let e = f.identity.authenticate(&s.token, t0()).await.unwrap_err();
    assert_eq!(e.to_string(), "invalid or expired token");
    let e = f.identity.authenticate(&api, t0()).await.unwrap_err();
    assert_eq!(e.to_string(), "account is disabled");

    let enabled = f.identity.enable_user("dave", t0()).await.unwrap();
    assert!(!enabled.disabled);
    f.identity.authenticate(&api, t0()).await.unwrap();
    login_ok(&f.identity, "dave", PASSWORD, t0()).await;
    assert!(f.identity.authenticate(&s.token, t0()).await.is_err());

    assert_eq!(
        f.identity
            .disable_user("ghost", t0())
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
}

#[tokio::test]
async fn session_expiry_and_revocation() {
    let f = fixture().await;
    let user = f
        .identity
        .create_user(f.new_user("erin", Role::Researcher), t0())
        .await
        .unwrap();
    let s = login_ok(&f.identity, "erin", PASSWORD, t0()).await;
    let ttl = TimeDelta::hours(8);
    f.identity
        .authenticate(&s.token, t0() + ttl - TimeDelta::seconds(1))
        .await
        .unwrap();
    let e = f
        .identity
        .authenticate(&s.token, t0() + ttl)
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "invalid or expired token");

    // Logout revokes only that session; logging out twice is fine.
    let a = login_ok(&f.identity, "erin", PASSWORD, t0()).await;
    let b = login_ok(&f.identity, "erin", PASSWORD, t0()).await;
    f.identity.logout(&a.token, t0()).await.unwrap();
    f.identity.logout(&a.token, t0()).await.unwrap();
    assert!(f.identity.authenticate(&a.token, t0()).await.is_err());
    f.identity.authenticate(&b.token, t0()).await.unwrap();
    assert_eq!(
        f.identity
            .logout("anyu_s_unknown", t0())
            .await
            .unwrap_err()
            .code(),
        "unauthenticated"
    );

    // reset_password revokes every session; the old password stops working.
    let c = login_ok(&f.identity, "erin", PASSWORD, t0()).await;
    f.identity
        .set_password("erin", "a brand new passphrase", false, t0())
        .await
        .unwrap();
    for t in [&b.token, &c.token] {
        assert!(f.identity.authenticate(t, t0()).await.is_err());
    }
    let (reason, _) = refusal(&f.identity, "erin", PASSWORD, t0()).await;
    assert_eq!(reason, RefusalReason::WrongPassword);
    let d = login_ok(&f.identity, "erin", "a brand new passphrase", t0()).await;

    // revoke_sessions counts the live ones only.
    login_ok(&f.identity, "erin", "a brand new passphrase", t0()).await;
    assert_eq!(f.identity.revoke_sessions(&user.id, t0()).await.unwrap(), 2);
    assert_eq!(f.identity.revoke_sessions(&user.id, t0()).await.unwrap(), 0);
    assert!(f.identity.authenticate(&d.token, t0()).await.is_err());
}

#[tokio::test]
async fn api_tokens() {
    let f = fixture().await;
    let user = f
        .identity
        .create_user(f.new_user("grace", Role::Researcher), t0())
        .await
        .unwrap();
    let (forever, info) = f
        .identity
        .create_api_token(
            &user.id,
            "  notebook  ",
            &[Scope::Jobs, Scope::Read, Scope::Jobs],
            None,
            t0(),
        )
        .await
        .unwrap();
    assert!(forever.starts_with("anyu_t_"));
    assert_eq!(info.name, "notebook");
    assert_eq!(info.user_id, user.id);
    assert_eq!(info.scopes, [Scope::Read, Scope::Jobs]);
    // Without an expiry a token lives the default 90 days.
    assert_eq!(
        info.expires_at.as_deref(),
        Some("2026-05-31T09:00:00.000000Z")
    );
    let p = f
        .identity
        .authenticate(&forever, t0() + TimeDelta::days(89))
        .await
        .unwrap();
    assert_eq!(p.token_kind, TokenKind::Api);
    assert_eq!(p.user_id, user.id);
    assert_eq!(p.scopes, [Scope::Read, Scope::Jobs]);
    assert!(
        f.identity
            .authenticate(&forever, t0() + TimeDelta::days(90))
            .await
            .is_err()
    );
    // A session carries every scope.
    let s = login_ok(&f.identity, "grace", PASSWORD, t0()).await;
    let p = f.identity.authenticate(&s.token, t0()).await.unwrap();
    assert_eq!(p.scopes, Scope::ALL);

    let (short, short_info) = f
        .identity
        .create_api_token(
            &user.id,
            "ci",
            &[Scope::Read],
            Some(t0() + TimeDelta::days(1)),
            t0(),
        )
        .await
        .unwrap();
    f.identity.authenticate(&short, t0()).await.unwrap();
    assert!(
        f.identity
            .authenticate(&short, t0() + TimeDelta::days(1))
            .await
            .is_err()
    );

    // An API token is not a session: logout refuses it.
    assert!(f.identity.logout(&forever, t0()).await.is_err());

    let listed = f.identity.list_api_tokens(&user.id).await.unwrap();
    assert_eq!(listed, vec![info.clone(), short_info]);

    let revoked = f
        .identity
        .revoke_api_token(&info.id, t0() + minutes(5))
        .await
        .unwrap();
    assert_eq!(
        revoked.revoked_at.as_deref(),
        Some("2026-03-02T09:05:00.000000Z")
    );
    let again = f
        .identity
        .revoke_api_token(&info.id, t0() + minutes(9))
        .await
        .unwrap();
    assert_eq!(
        again.revoked_at, revoked.revoked_at,
        "first revocation time kept"
    );
    let e = f
        .identity
        .authenticate(&forever, t0() + minutes(6))
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "invalid or expired token");
    assert_eq!(f.identity.get_api_token(&info.id).await.unwrap(), revoked);

    assert_eq!(
        f.identity
            .revoke_api_token("no-such-id", t0())
            .await
            .unwrap_err()
            .to_string(),
        "API token not found"
    );
    assert_eq!(
        f.identity
            .create_api_token("no-such-user", "x", &[Scope::Read], None, t0())
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    // Session revocation leaves API tokens alone.
    f.identity.revoke_sessions(&user.id, t0()).await.unwrap();
    f.identity.authenticate(&short, t0()).await.unwrap();
}

#[tokio::test]
async fn only_hashes_are_stored() {
    let f = fixture().await;
    let user = f
        .identity
        .create_user(f.new_user("heidi", Role::Researcher), t0())
        .await
        .unwrap();
    f.identity
        .create_user(f.new_user("ivan", Role::Researcher), t0())
        .await
        .unwrap();
    let s = login_ok(&f.identity, "heidi", PASSWORD, t0()).await;
    let (api, _) = f
        .identity
        .create_api_token(&user.id, "cli", &[Scope::Read], None, t0())
        .await
        .unwrap();

    let mut conn = raw(&f.db).await;
    let secret_part = |t: &str| t[7..].to_string();
    for table in ["sessions", "api_tokens", "users"] {
        let rows = sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert!(!rows.is_empty());
        for row in &rows {
            for i in 0..row.len() {
                let v: Option<String> = row.try_get(i).unwrap_or(None);
                let v = v.unwrap_or_default();
                for secret in [&s.token, &api, &secret_part(&s.token), &secret_part(&api)] {
                    assert!(!v.contains(secret.as_str()), "{table} holds a token");
                }
                assert!(!v.contains(PASSWORD), "{table} holds a password");
            }
        }
    }
    let stored: String = sqlx::query_scalar("SELECT token_hash FROM sessions")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let expected = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        s.token.as_bytes(),
    ));
    assert_eq!(stored, expected);

    let hashes: Vec<String> =
        sqlx::query_scalar("SELECT password_hash FROM users ORDER BY username")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(hashes.len(), 2);
    for h in &hashes {
        assert!(
            h.starts_with("$argon2id$v=19$"),
            "not an Argon2id PHC string"
        );
    }
    assert_ne!(
        hashes[0], hashes[1],
        "equal passwords must hash differently (salt)"
    );
}

#[tokio::test]
async fn default_policy_uses_default_argon2_cost() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("meta.db");
    let identity = Identity::new(
        Store::open(&db, &test_keyring(dir.path())).await.unwrap(),
        IdentityPolicy::default(),
    )
    .with_person_key([9; 32]);
    let org = university(&identity).await;
    let p = identity.policy();
    assert_eq!(p.session_ttl, Duration::from_secs(8 * 3600));
    assert_eq!(p.throttle.account_free, 5);
    assert_eq!(p.throttle.backoff_max, Duration::from_secs(15 * 60));
    assert_eq!(p.api_token_ttl, Duration::from_secs(90 * 86_400));
    assert_eq!(p.min_password_len, 12);
    identity
        .create_user(new_user(&org, "judy", Role::Researcher), t0())
        .await
        .unwrap();
    let mut conn = raw(&db).await;
    let h: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
    // The 身份证号 is kept only as a keyed hash: no column holds the number.
    let id = resident_id_of("judy");
    let dump: Vec<String> = sqlx::query_scalar(
        "SELECT coalesce(person_key, '') || '|' || real_name || '|' || organisation FROM users",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(dump.iter().all(|r| !r.contains(&id)), "{dump:?}");
    let key: String = sqlx::query_scalar("SELECT person_key FROM users")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(key.len(), 64);
    drop(conn);
    for file in [db.clone(), db.with_extension("db-wal")] {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(id.len()).any(|w| w == id.as_bytes()),
            "the number never reaches {}",
            file.display()
        );
    }
}

#[tokio::test]
async fn users_list_flags_and_duplicates() {
    let f = fixture().await;
    for (name, role) in [
        ("zed", Role::Admin),
        ("amy", Role::Steward),
        ("max", Role::Auditor),
    ] {
        f.identity
            .create_user(f.new_user(name, role), t0())
            .await
            .unwrap();
    }
    let names: Vec<String> = f
        .identity
        .list_users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["amy", "max", "zed"]);

    let e = f
        .identity
        .create_user(f.new_user("amy", Role::Researcher), t0())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "conflict");
    assert_eq!(e.to_string(), "conflict: username is already taken");

    let u = f
        .identity
        .set_credit_flags(
            "max",
            &[
                CreditFlag::SeriousViolation,
                CreditFlag::DishonestDebtor,
                CreditFlag::SeriousViolation,
            ],
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(
        u.credit_flags,
        [CreditFlag::DishonestDebtor, CreditFlag::SeriousViolation]
    );
    let u = f.identity.set_verified("max", false, t0()).await.unwrap();
    assert!(!u.verified);
    assert_eq!(f.identity.get_user_by_id(&u.id).await.unwrap(), u);
    assert_eq!(
        f.identity.get_user("nobody").await.unwrap_err().to_string(),
        "user not found"
    );
    assert_eq!("steward".parse::<Role>().unwrap(), Role::Steward);
    assert!("root".parse::<Role>().is_err());

    // The public user type never carries the password hash.
    let json = serde_json::to_string(&u).unwrap();
    assert!(!json.contains("argon2") && !json.contains("password_hash"));
    assert!(
        u.person.len() == 64 && !json.contains(&u.person),
        "the person's hash is never shown: {json}"
    );
    let mut shown = u.clone();
    shown.id = "[uuid]".into();
    shown.organisation_id = "[uuid]".into();
    insta::assert_json_snapshot!("user_json", shown);
}

#[tokio::test]
async fn validation_errors() {
    let f = fixture().await;
    let mut cases: Vec<(&str, NewUser)> = Vec::new();
    let mut short = f.new_user("shorty", Role::Researcher);
    short.password = "elevenchars".into();
    cases.push(("password of 11 characters", short));
    let mut long = f.new_user("longpw", Role::Researcher);
    long.password = "x".repeat(1025);
    cases.push(("password of 1025 bytes", long));
    for bad in [
        "ab",
        "Alice",
        "has space",
        "名字abc",
        &"a".repeat(33),
        "semi;colon",
    ] {
        cases.push(("bad username", f.new_user(bad, Role::Researcher)));
    }
    let mut steward = f.new_user("steward", Role::Steward);
    steward.provider_agencies.clear();
    cases.push(("steward without agency", steward));
    let mut blank = f.new_user("blankagency", Role::Steward);
    blank.provider_agencies = vec!["  ".into()];
    cases.push(("blank agency", blank));
    let mut researcher = f.new_user("researcher", Role::Researcher);
    researcher.provider_agencies = vec!["市交通运输局".into()];
    cases.push(("researcher with agency", researcher));
    let mut nameless = f.new_user("nameless", Role::Researcher);
    nameless.real_name = " ".into();
    cases.push(("blank real name", nameless));
    let mut orgless = f.new_user("orgless", Role::Researcher);
    orgless.organisation_id = "no-such-organisation".into();
    cases.push(("unknown organisation", orgless));
    let mut badid = f.new_user("badid", Role::Researcher);
    badid.resident_id = "440305199001010001".into();
    cases.push(("resident id with a wrong check character", badid));

    let mut out = Vec::new();
    for (what, new) in cases {
        let e = f.identity.create_user(new, t0()).await.unwrap_err();
        out.push(format!("{what}: [{}] {e}", e.code()));
    }
    let e = f
        .identity
        .set_password("nobody", "short", false, t0())
        .await
        .unwrap_err();
    out.push(format!("reset to short password: [{}] {e}", e.code()));
    let user = f
        .identity
        .create_user(f.new_user("ok.user-1_", Role::Researcher), t0())
        .await
        .unwrap();
    for (what, name, scopes, exp) in [
        ("empty token name", " ", &[Scope::Read][..], None),
        (
            "token expiry in the past",
            "ci",
            &[Scope::Read][..],
            Some(t0() - minutes(1)),
        ),
        ("token without a scope", "ci", &[][..], None),
        (
            "token expiry too far",
            "ci",
            &[Scope::Read][..],
            Some(t0() + TimeDelta::days(366)),
        ),
    ] {
        let e = f
            .identity
            .create_api_token(&user.id, name, scopes, exp, t0())
            .await
            .unwrap_err();
        out.push(format!("{what}: [{}] {e}", e.code()));
    }
    assert!(
        f.identity.list_users().await.unwrap().len() == 1,
        "nothing invalid was stored"
    );
    insta::assert_snapshot!("validation_errors", out.join("\n"));
}

/// An unknown username must cost an Argon2 verification too, or response times
/// would reveal which usernames exist. Minimums over several runs ignore load spikes;
/// without the dummy verification the ratio is below 1%.
#[tokio::test]
async fn unknown_user_costs_a_password_check() {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::new(
        Store::open(&dir.path().join("meta.db"), &test_keyring(dir.path()))
            .await
            .unwrap(),
        IdentityPolicy::default(),
    )
    .with_person_key([9; 32]);
    let org = university(&identity).await;
    identity
        .create_user(new_user(&org, "kate", Role::Researcher), t0())
        .await
        .unwrap();
    // The first unknown-user login creates the dummy hash; time the later ones.
    refusal(&identity, "nobody", "wrong password!!", t0()).await;
    let mut known = Duration::MAX;
    let mut unknown = Duration::MAX;
    for _ in 0..3 {
        let start = std::time::Instant::now();
        refusal(&identity, "kate", "wrong password!!", t0()).await;
        known = known.min(start.elapsed());
        let start = std::time::Instant::now();
        refusal(&identity, "nobody", "wrong password!!", t0()).await;
        unknown = unknown.min(start.elapsed());
    }
    assert!(
        unknown * 4 >= known,
        "unknown user took {unknown:?}, wrong password {known:?}"
    );
}

#[tokio::test]
async fn a_one_time_code_expires_and_forces_a_change_with_the_resident_id() {
    let f = fixture().await;
    f.identity
        .create_user(f.new_user("olga", Role::Researcher), t0())
        .await
        .unwrap();
    let (user, code, expires) = f.identity.issue_one_time_code("olga", t0()).await.unwrap();
    assert!(user.must_change_password);
    assert_eq!(expires, "2026-03-05T09:00:00.000000Z");
    // The old password no longer works; the code does, until it expires.
    let (reason, _) = refusal(&f.identity, "olga", PASSWORD, t0()).await;
    assert_eq!(reason, RefusalReason::WrongPassword);
    let s = login_ok(&f.identity, "olga", &code, t0() + minutes(1)).await;
    assert!(s.user.must_change_password);
    let (reason, e) = refusal(&f.identity, "olga", &code, t0() + minutes(72 * 60)).await;
    assert_eq!(reason, RefusalReason::CodeExpired);
    assert_eq!(e.to_string(), "invalid username or password");
    // The change needs the owner's 身份证号 and a password of their own.
    let own = resident_id_of("olga");
    let change = |resident_id: Option<&str>, new: &str| {
        let c = PasswordChange {
            current: &code,
            new,
            resident_id,
        };
        let id = user.id.clone();
        let identity = f.identity.clone();
        let (current, new, rid) = (
            c.current.to_string(),
            c.new.to_string(),
            c.resident_id.map(str::to_string),
        );
        async move {
            let c = PasswordChange {
                current: &current,
                new: &new,
                resident_id: rid.as_deref(),
            };
            identity.change_password(&id, &c, None, t0()).await
        }
    };
    let wrong = change(None, "my own long passphrase").await.unwrap_err();
    assert_eq!(wrong.code(), "unauthenticated");
    let same = change(Some(&own), &code).await.unwrap_err();
    assert_eq!(same.code(), "invalid_argument");
    let done = change(Some(&own), "my own long passphrase").await.unwrap();
    assert!(!done.must_change_password);
    login_ok(&f.identity, "olga", "my own long passphrase", t0()).await;
    let (reason, _) = refusal(&f.identity, "olga", &code, t0()).await;
    assert_eq!(reason, RefusalReason::WrongPassword, "the code is spent");
}
