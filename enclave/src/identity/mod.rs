//! Real-name accounts, roles, passwords, sessions, API tokens and the login
//! throttle (attempt slots and backoff per username and client, a bound on
//! concurrent hashes: [`LoginThrottle`]).
//!
//! Secrets never reach the store: passwords are kept as Argon2id PHC strings,
//! session and API tokens (256 random bits each) as their SHA-256. A token is
//! returned to its owner exactly once.
//!
//! Every method takes the current time as `now`, so callers (and tests) decide
//! the clock. This module writes no audit events; its results carry what the
//! caller needs to record them (user id, role, outcome).

mod model;
mod people;
mod secret;
mod throttle;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use argon2::Params;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

pub use model::{ApiTokenInfo, CreditFlag, Principal, Role, Scope, TokenKind, User};
pub use people::{
    NewOrganisation, Organisation, PERSON_KEY_LABEL, canonical_credit_code, display_name, name_key,
    person_key,
};
pub use secret::{API_PREFIX, SESSION_PREFIX, generate_password};
pub use throttle::{LoginThrottle, ThrottlePolicy, Throttled};

use crate::catalog::OrganisationType;
use crate::store::Store;
use crate::{Error, Result};

/// Error text for an unknown user and a wrong password alike.
pub const INVALID_CREDENTIALS: &str = "invalid username or password";
/// Error text for a token that is unknown, expired or revoked.
pub const INVALID_TOKEN: &str = "invalid or expired token";
/// Error text for a disabled account.
pub const ACCOUNT_DISABLED: &str = "account is disabled";

const MAX_PASSWORD_BYTES: usize = 1024;
const MAX_TEXT_CHARS: usize = 200;
const MAX_TOKEN_NAME_CHARS: usize = 100;

/// Tunable limits of the identity service.
#[derive(Debug, Clone)]
pub struct IdentityPolicy {
    /// Lifetime of a login session.
    pub session_ttl: Duration,
    /// Attempt slots, backoff and the bound on concurrent hashes.
    pub throttle: ThrottlePolicy,
    /// Minimum password length, in characters.
    pub min_password_len: usize,
    /// Argon2id cost for new password hashes (existing hashes keep their own).
    pub password_params: Params,
    /// Lifetime of an API token created without an expiry.
    pub api_token_ttl: Duration,
    /// Longest lifetime an API token may be given.
    pub api_token_max_ttl: Duration,
    /// How long a one-time code (a new account's, a reset's) stays usable.
    pub one_time_code_ttl: Duration,
}

impl Default for IdentityPolicy {
    fn default() -> Self {
        IdentityPolicy {
            session_ttl: Duration::from_secs(8 * 3600),
            throttle: ThrottlePolicy::default(),
            min_password_len: 12,
            password_params: Params::default(),
            api_token_ttl: Duration::from_secs(90 * 86_400),
            api_token_max_ttl: Duration::from_secs(365 * 86_400),
            one_time_code_ttl: Duration::from_secs(72 * 3600),
        }
    }
}

impl IdentityPolicy {
    /// The same policy with the cheapest Argon2id cost. For tests only: unoptimised
    /// builds take seconds per hash at the default cost.
    pub fn with_insecure_fast_hashing(mut self) -> Self {
        self.password_params = Params::new(Params::MIN_M_COST, 1, 1, None)
            .expect("minimum Argon2 parameters are valid");
        self
    }
}

/// What an administrator supplies to create an account.
#[derive(Clone, Deserialize)]
pub struct NewUser {
    /// 3 to 32 characters of `a-z`, `0-9`, `_`, `.`, `-`.
    pub username: String,
    pub password: String,
    pub real_name: String,
    /// The organisation's id ([`Identity::create_organisation`]).
    pub organisation_id: String,
    /// 身份证号 of the person behind the account; checked, and only its keyed
    /// hash is stored.
    pub resident_id: String,
    pub role: Role,
    /// Required (at least one) for stewards; must be empty for other roles.
    #[serde(default)]
    pub provider_agencies: Vec<String>,
    /// Real-name verification already done.
    #[serde(default)]
    pub verified: bool,
    #[serde(default)]
    pub credit_flags: Vec<CreditFlag>,
    /// The first session may only change the password: whoever created the
    /// account knows it.
    #[serde(default = "yes")]
    pub must_change_password: bool,
}

fn yes() -> bool {
    true
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("resident_id", &"<redacted>")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// A new account as a request for it keeps it: no password, and the person
/// as the keyed hash of the 身份证号, never the number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingUser {
    pub username: String,
    pub real_name: String,
    pub organisation_id: String,
    pub person_key: String,
    pub role: Role,
    pub provider_agencies: Vec<String>,
    pub verified: bool,
    pub credit_flags: Vec<CreditFlag>,
}

/// A password change by the account's owner.
#[derive(Clone, Copy)]
pub struct PasswordChange<'a> {
    /// The current password, or the one-time code.
    pub current: &'a str,
    pub new: &'a str,
    /// 身份证号; required when the change is forced (a new account, a reset).
    pub resident_id: Option<&'a str>,
}

impl fmt::Debug for PasswordChange<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordChange(<redacted>)")
    }
}

/// A successful login. `token` is shown to the user once and stored only hashed.
#[derive(Clone, Serialize)]
pub struct LoginSuccess {
    /// `anyu_s_…` bearer token.
    pub token: String,
    pub user: User,
    /// RFC 3339 UTC.
    pub expires_at: String,
}

impl fmt::Debug for LoginSuccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginSuccess")
            .field("token", &"<redacted>")
            .field("user", &self.user)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why a login was refused; for the audit log, not for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// No such username.
    UnknownUser,
    /// Wrong password.
    WrongPassword,
    /// Too many failures for the username or from the client: no password
    /// was checked (unknown and known usernames alike).
    Throttled,
    /// Too many password checks under way: no password was checked.
    Busy,
    /// Right password, but the account is disabled.
    Disabled,
    /// A one-time code past its expiry.
    CodeExpired,
}

impl RefusalReason {
    /// Stable name for audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::UnknownUser => "unknown_user",
            RefusalReason::WrongPassword => "wrong_password",
            RefusalReason::Throttled => "throttled",
            RefusalReason::Busy => "busy",
            RefusalReason::Disabled => "disabled",
            RefusalReason::CodeExpired => "code_expired",
        }
    }
}

/// A refused login with what the audit log needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRefusal {
    pub reason: RefusalReason,
    /// The account, when the username exists.
    pub user_id: Option<String>,
    pub role: Option<Role>,
    /// Seconds to wait, for `Throttled` and `Busy`.
    pub retry_after_secs: u64,
}

impl LoginRefusal {
    fn anonymous(reason: RefusalReason, retry_after_secs: u64) -> LoginRefusal {
        LoginRefusal {
            reason,
            user_id: None,
            role: None,
            retry_after_secs,
        }
    }

    /// The error to show the caller. Unknown user and wrong password are
    /// indistinguishable, and so is the throttle of either; the remaining
    /// attempts are never revealed.
    pub fn error(&self) -> Error {
        let retry_after_secs = self.retry_after_secs;
        match self.reason {
            RefusalReason::UnknownUser
            | RefusalReason::WrongPassword
            | RefusalReason::CodeExpired => Error::Unauthenticated(INVALID_CREDENTIALS.into()),
            RefusalReason::Throttled => Error::TooManyAttempts { retry_after_secs },
            RefusalReason::Busy => Error::Busy { retry_after_secs },
            RefusalReason::Disabled => Error::Unauthenticated(ACCOUNT_DISABLED.into()),
        }
    }
}

/// The result of a login attempt: audit it, then convert with [`LoginOutcome::into_result`].
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    Success(Box<LoginSuccess>),
    Refused(LoginRefusal),
}

impl LoginOutcome {
    /// The session, or the caller-facing error of a refusal.
    pub fn into_result(self) -> Result<LoginSuccess> {
        match self {
            LoginOutcome::Success(s) => Ok(*s),
            LoginOutcome::Refused(r) => Err(r.error()),
        }
    }
}

fn throttled(t: Throttled) -> LoginRefusal {
    match t {
        Throttled::Backoff { retry_after } => {
            LoginRefusal::anonymous(RefusalReason::Throttled, retry_after.as_secs().max(1))
        }
        Throttled::Busy => LoginRefusal::anonymous(RefusalReason::Busy, 1),
    }
}

/// The identity service over the metadata store. Cheap to clone.
#[derive(Clone)]
pub struct Identity {
    store: Store,
    policy: IdentityPolicy,
    throttle: LoginThrottle,
    /// Hash checked for unknown usernames so they cost as much as wrong passwords.
    dummy_hash: Arc<tokio::sync::OnceCell<String>>,
    /// Key of the persons' hashes ([`PERSON_KEY_LABEL`]); without it no
    /// account can be created.
    person_hmac: Option<Arc<[u8; 32]>>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| Error::Internal("stored timestamp unreadable".into()))
}

fn delta(d: Duration, what: &str) -> Result<TimeDelta> {
    TimeDelta::from_std(d).map_err(|_| Error::InvalidArgument(format!("{what} is too long")))
}

fn unauthenticated(msg: &str) -> Error {
    Error::Unauthenticated(msg.into())
}

/// Checks a username: 3 to 32 characters of `a-z`, `0-9`, `_`, `.`, `-`.
pub fn validate_username(username: &str) -> Result<()> {
    let ok_chars = username
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
    if ok_chars && (3..=32).contains(&username.len()) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(
            "username must be 3 to 32 characters of a-z, 0-9, '_', '.', '-'".into(),
        ))
    }
}

fn validate_text(value: &str, field: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::InvalidArgument(format!("{field} must not be empty")));
    }
    if value.chars().count() > MAX_TEXT_CHARS {
        return Err(Error::InvalidArgument(format!(
            "{field} must be at most {MAX_TEXT_CHARS} characters"
        )));
    }
    Ok(())
}

impl Identity {
    /// A service over `store` with the given limits.
    pub fn new(store: Store, policy: IdentityPolicy) -> Identity {
        Identity {
            store,
            throttle: LoginThrottle::new(policy.throttle.clone()),
            policy,
            dummy_hash: Arc::new(tokio::sync::OnceCell::new()),
            person_hmac: None,
        }
    }

    /// The same service, able to bind accounts to persons with `key`
    /// (`Keyring::derive(PERSON_KEY_LABEL)`).
    pub fn with_person_key(mut self, key: [u8; 32]) -> Identity {
        self.person_hmac = Some(Arc::new(key));
        self
    }

    /// The keyed hash standing for the person with this 身份证号.
    pub fn person_of(&self, resident_id: &str) -> Result<String> {
        let key = self
            .person_hmac
            .as_ref()
            .ok_or_else(|| Error::Internal("no key for persons' hashes".into()))?;
        person_key(key, resident_id)
    }

    /// Registers an organisation. A name that normalises like a registered
    /// one, or a registered credit code, is [`Error::Conflict`].
    pub async fn create_organisation(
        &self,
        new: NewOrganisation,
        now: DateTime<Utc>,
    ) -> Result<Organisation> {
        let name = people::check_name(&new.name)?;
        let credit_code = match (&new.credit_code, new.organisation_type) {
            (Some(c), _) => Some(canonical_credit_code(c)?),
            (None, OrganisationType::Individual) => None,
            (None, _) => {
                return Err(Error::InvalidArgument(
                    "credit_code: an organisation needs its 统一社会信用代码".into(),
                ));
            }
        };
        let org = Organisation {
            id: uuid::Uuid::now_v7().to_string(),
            name,
            credit_code,
            organisation_type: new.organisation_type,
            created_at: ts(now),
        };
        self.store
            .insert_organisation(&org, &name_key(&org.name))
            .await?;
        Ok(org)
    }

    /// Every organisation, by name.
    pub async fn list_organisations(&self) -> Result<Vec<Organisation>> {
        self.store.list_organisations().await
    }

    /// One organisation by id.
    pub async fn organisation(&self, id: &str) -> Result<Organisation> {
        self.store
            .organisation(id)
            .await?
            .ok_or_else(|| Error::NotFound("organisation".into()))
    }

    /// The organisation whose name normalises like `name`, if any.
    pub async fn organisation_named(&self, name: &str) -> Result<Option<Organisation>> {
        self.store.organisation_by_key(&name_key(name)).await
    }

    /// Records the credit code of an organisation that has none (one migrated
    /// from free text); a code, once set, is not replaced.
    pub async fn set_credit_code(&self, id: &str, code: &str) -> Result<Organisation> {
        let code = canonical_credit_code(code)?;
        let org = self.organisation(id).await?;
        if org.credit_code.is_some() {
            return Err(Error::Conflict(
                "the organisation's credit code is already recorded".into(),
            ));
        }
        self.store.set_organisation_credit_code(id, &code).await?;
        self.organisation(id).await
    }

    /// Turns the free-text organisations of accounts made before organisations
    /// were entities into entities: one per normalised name (so spellings that
    /// differ only by invisible characters, width or case become one), without
    /// a credit code until an administrator records it. Returns how many
    /// accounts were bound.
    pub async fn adopt_free_text_organisations(&self, now: DateTime<Utc>) -> Result<u64> {
        let mut bound = 0;
        for (user_id, text, kind) in self.store.users_without_organisation().await? {
            let name = match people::check_name(&text) {
                Ok(n) => n,
                Err(_) => "(unnamed)".to_string(),
            };
            let kind: OrganisationType = crate::store::enum_from_text(&kind)?;
            let org = match self.organisation_named(&name).await? {
                Some(o) => o,
                None => {
                    let org = Organisation {
                        id: uuid::Uuid::now_v7().to_string(),
                        name: name.clone(),
                        credit_code: None,
                        organisation_type: kind,
                        created_at: ts(now),
                    };
                    self.store
                        .insert_organisation(&org, &name_key(&name))
                        .await?;
                    org
                }
            };
            self.store
                .set_user_organisation(&user_id, &org, &ts(now))
                .await?;
            bound += 1;
        }
        Ok(bound)
    }

    /// Binds an account made before persons were bound to the person with
    /// this 身份证号. An account already bound is not rebound.
    pub async fn bind_person(
        &self,
        username: &str,
        resident_id: &str,
        now: DateTime<Utc>,
    ) -> Result<User> {
        let person = self.person_of(resident_id)?;
        let user = self.get_user(username).await?;
        if user.person_bound {
            return Err(Error::Conflict(
                "the account is already bound to a person".into(),
            ));
        }
        self.store
            .set_user_person(&user.id, &person, &ts(now))
            .await?;
        self.get_user(username).await
    }

    /// The limits in force.
    pub fn policy(&self) -> &IdentityPolicy {
        &self.policy
    }

    fn validate_password(&self, password: &str) -> Result<()> {
        if password.chars().count() < self.policy.min_password_len {
            return Err(Error::InvalidArgument(format!(
                "password must be at least {} characters",
                self.policy.min_password_len
            )));
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(Error::InvalidArgument(format!(
                "password must be at most {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        Ok(())
    }

    /// Argon2 is CPU-bound for tens of milliseconds: keep it off the async workers.
    async fn hash(&self, password: &str) -> Result<String> {
        let params = self.policy.password_params.clone();
        let password = password.to_string();
        tokio::task::spawn_blocking(move || secret::hash_password(&params, &password))
            .await
            .map_err(|e| Error::Internal(format!("password hashing task failed: {e}")))?
    }

    /// Checks a password under a hash permit (see [`LoginThrottle::hash_permit`]).
    async fn verify(&self, phc: &str, password: &str) -> Result<bool> {
        let _permit = self
            .throttle
            .hash_permit()
            .await
            .map_err(Throttled::error)?;
        let phc = phc.to_string();
        let password = password.to_string();
        tokio::task::spawn_blocking(move || secret::verify_password(&phc, &password))
            .await
            .map_err(|e| Error::Internal(format!("password verification task failed: {e}")))?
    }

    /// Checks a new account's fields (all but the password) and turns the
    /// 身份证号 into its keyed hash: what an account request keeps.
    pub async fn pending_user(&self, new: &NewUser) -> Result<PendingUser> {
        validate_username(&new.username)?;
        validate_text(&new.real_name, "real name")?;
        let person_key = self.person_of(&new.resident_id)?;
        let org = self
            .organisation(&new.organisation_id)
            .await
            .map_err(|e| match e {
                Error::NotFound(_) => {
                    Error::InvalidArgument("organisation_id: no such organisation".into())
                }
                other => other,
            })?;
        let mut agencies: Vec<String> = new
            .provider_agencies
            .iter()
            .map(|a| a.trim().to_string())
            .collect();
        if agencies.iter().any(String::is_empty) {
            return Err(Error::InvalidArgument(
                "provider agency names must not be empty".into(),
            ));
        }
        agencies.sort();
        agencies.dedup();
        match (new.role, agencies.is_empty()) {
            (Role::Steward, true) => {
                return Err(Error::InvalidArgument(
                    "a steward must be bound to at least one provider agency".into(),
                ));
            }
            (Role::Researcher | Role::Admin | Role::Auditor, false) => {
                return Err(Error::InvalidArgument(
                    "only stewards are bound to provider agencies".into(),
                ));
            }
            _ => {}
        }
        let mut credit_flags = new.credit_flags.clone();
        credit_flags.sort();
        credit_flags.dedup();
        if self.store.user_by_username(&new.username).await?.is_some() {
            return Err(Error::Conflict("username is already taken".into()));
        }
        Ok(PendingUser {
            username: new.username.clone(),
            real_name: new.real_name.trim().to_string(),
            organisation_id: org.id,
            person_key,
            role: new.role,
            provider_agencies: agencies,
            verified: new.verified,
            credit_flags,
        })
    }

    /// Creates an account with the password in `new`. Invalid fields are
    /// [`Error::InvalidArgument`]; a taken username is [`Error::Conflict`].
    pub async fn create_user(&self, new: NewUser, now: DateTime<Utc>) -> Result<User> {
        self.validate_password(&new.password)?;
        let pending = self.pending_user(&new).await?;
        let hash = self.hash(&new.password).await?;
        self.insert_pending(pending, &hash, new.must_change_password, None, now)
            .await
    }

    /// Creates an account whose first password is a one-time code (shown
    /// once): its first session can only set the owner's own password.
    /// Returns the account, the code and the code's expiry.
    pub async fn create_user_with_code(
        &self,
        pending: PendingUser,
        now: DateTime<Utc>,
    ) -> Result<(User, String, String)> {
        let code = secret::one_time_code()?;
        let hash = self.hash(&code).await?;
        let expires = ts(now + delta(self.policy.one_time_code_ttl, "one-time code lifetime")?);
        let user = self
            .insert_pending(pending, &hash, true, Some(&expires), now)
            .await?;
        Ok((user, code, expires))
    }

    async fn insert_pending(
        &self,
        p: PendingUser,
        hash: &str,
        must_change: bool,
        expires: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<User> {
        let org = self.organisation(&p.organisation_id).await?;
        let user = User {
            id: uuid::Uuid::now_v7().to_string(),
            username: p.username,
            real_name: p.real_name,
            organisation_id: org.id,
            organisation: org.name,
            organisation_type: org.organisation_type,
            role: p.role,
            provider_agencies: p.provider_agencies,
            verified: p.verified,
            person_bound: true,
            must_change_password: must_change,
            credit_flags: p.credit_flags,
            disabled: false,
            created_at: ts(now),
            person: p.person_key,
        };
        self.store
            .insert_user(&user, &user.person, hash, expires)
            .await?;
        Ok(user)
    }

    /// Checks a username and password and, if they match an enabled account,
    /// opens a session. `client` names the caller's network origin for the
    /// per-client throttle. Refusals are `Ok(LoginOutcome::Refused)`, so the
    /// caller can audit them; only store failures are `Err`.
    ///
    /// Every name takes the same steps in the same order, whether it names an
    /// account or not: an attempt slot (throttled before any hash), a hash
    /// permit, one Argon2 check (a dummy hash for an unknown name), the answer.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: &str,
        now: DateTime<Utc>,
    ) -> Result<LoginOutcome> {
        // No account has a malformed name; all of them share one slot, so a
        // slot's key stays short whatever is sent.
        let key = validate_username(username).map_or("<malformed>", |()| username);
        let attempt = match self.throttle.reserve(key, client, now) {
            Ok(a) => a,
            Err(t) => return Ok(LoginOutcome::Refused(throttled(t))),
        };
        let Ok(_permit) = self.throttle.hash_permit().await else {
            attempt.abandoned();
            return Ok(LoginOutcome::Refused(throttled(Throttled::Busy)));
        };
        let creds = self.store.user_credentials(username).await?;
        let phc = match &creds {
            Some(c) => c.password_hash.clone(),
            None => self.dummy_hash().await?,
        };
        let password = password.to_string();
        let right = tokio::task::spawn_blocking(move || secret::verify_password(&phc, &password))
            .await
            .map_err(|e| Error::Internal(format!("password verification task failed: {e}")))??;
        let creds = match creds {
            Some(c) if right => c,
            // `attempt` dropped unsettled: a failure for the name and the client.
            Some(c) => {
                return Ok(LoginOutcome::Refused(LoginRefusal {
                    reason: RefusalReason::WrongPassword,
                    user_id: Some(c.user.id),
                    role: Some(c.user.role),
                    retry_after_secs: 0,
                }));
            }
            None => {
                return Ok(LoginOutcome::Refused(LoginRefusal::anonymous(
                    RefusalReason::UnknownUser,
                    0,
                )));
            }
        };
        attempt.succeeded();
        let code_expires = creds.password_expires_at.clone();
        let user = creds.user;
        if user.disabled {
            return Ok(LoginOutcome::Refused(LoginRefusal {
                reason: RefusalReason::Disabled,
                user_id: Some(user.id.clone()),
                role: Some(user.role),
                retry_after_secs: 0,
            }));
        }
        if let Some(until) = &code_expires
            && parse_ts(until)? <= now
        {
            return Ok(LoginOutcome::Refused(LoginRefusal {
                reason: RefusalReason::CodeExpired,
                user_id: Some(user.id.clone()),
                role: Some(user.role),
                retry_after_secs: 0,
            }));
        }
        let token = secret::new_token(TokenKind::Session)?;
        let expires_at = ts(now + delta(self.policy.session_ttl, "session lifetime")?);
        self.store
            .insert_session(&secret::token_hash(&token), &user.id, &ts(now), &expires_at)
            .await?;
        let user = self.store.user_by_id(&user.id).await?.unwrap_or(user);
        Ok(LoginOutcome::Success(Box::new(LoginSuccess {
            token,
            user,
            expires_at,
        })))
    }

    /// The hash checked for unknown usernames, made once with the current
    /// cost so that checking it costs as much as a real password check.
    async fn dummy_hash(&self) -> Result<String> {
        let params = self.policy.password_params.clone();
        self.dummy_hash
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || {
                    secret::hash_password(&params, "anyu dummy password")
                })
                .await
                .map_err(|e| Error::Internal(format!("password hashing task failed: {e}")))?
            })
            .await
            .cloned()
    }

    /// What the audit log may say about a refused bearer token: its kind and
    /// the first 16 hex digits of its SHA-256 (sessions and API tokens are
    /// stored by that hash, so an auditor can find whose revoked or expired
    /// token is being replayed), never the token.
    pub(crate) fn refused_token_details(token: &str) -> serde_json::Value {
        let kind = match secret::token_kind(token) {
            Some(TokenKind::Session) => "session",
            Some(TokenKind::Api) => "api",
            None => "unknown",
        };
        let hash = secret::token_hash(token);
        serde_json::json!({ "token_kind": kind, "token_sha256_prefix": &hash[..16] })
    }

    /// Resolves a bearer token (`anyu_s_…` session or `anyu_t_…` API token) to
    /// its principal. Unknown, expired and revoked tokens all give
    /// [`Error::Unauthenticated`] with the same text.
    pub async fn authenticate(&self, token: &str, now: DateTime<Utc>) -> Result<Principal> {
        let kind = secret::token_kind(token).ok_or_else(|| unauthenticated(INVALID_TOKEN))?;
        let hash = secret::token_hash(token);
        let (user, expires_at, revoked, scopes) = match kind {
            TokenKind::Session => {
                let s = self
                    .store
                    .session(&hash)
                    .await?
                    .ok_or_else(|| unauthenticated(INVALID_TOKEN))?;
                (s.user, Some(s.expires_at), s.revoked_at.is_some(), vec![])
            }
            TokenKind::Api => {
                let (info, user) = self
                    .store
                    .api_token(&hash)
                    .await?
                    .ok_or_else(|| unauthenticated(INVALID_TOKEN))?;
                (
                    user,
                    info.expires_at,
                    info.revoked_at.is_some(),
                    info.scopes,
                )
            }
        };
        if revoked {
            return Err(unauthenticated(INVALID_TOKEN));
        }
        if let Some(expires_at) = expires_at
            && parse_ts(&expires_at)? <= now
        {
            return Err(unauthenticated(INVALID_TOKEN));
        }
        if user.disabled {
            return Err(unauthenticated(ACCOUNT_DISABLED));
        }
        let scopes = match kind {
            TokenKind::Session => Scope::ALL.to_vec(),
            TokenKind::Api => scopes,
        };
        Ok(Principal::new(user, kind, scopes))
    }

    /// Revokes the session of `token`. Revoking twice is fine; a token that is
    /// not a known session is [`Error::Unauthenticated`].
    pub async fn logout(&self, token: &str, now: DateTime<Utc>) -> Result<()> {
        if secret::token_kind(token) != Some(TokenKind::Session) {
            return Err(unauthenticated(INVALID_TOKEN));
        }
        if self
            .store
            .revoke_session(&secret::token_hash(token), &ts(now))
            .await?
        {
            Ok(())
        } else {
            Err(unauthenticated(INVALID_TOKEN))
        }
    }

    /// Revokes every live session of a user; returns how many.
    pub async fn revoke_sessions(&self, user_id: &str, now: DateTime<Utc>) -> Result<u64> {
        self.store.revoke_user_sessions(user_id, &ts(now)).await
    }

    /// Creates an API token for a user. The token string is returned once and
    /// never again. Without `expires_at` it lives [`IdentityPolicy::api_token_ttl`];
    /// no token outlives [`IdentityPolicy::api_token_max_ttl`]. At least one
    /// scope is required.
    pub async fn create_api_token(
        &self,
        user_id: &str,
        name: &str,
        scopes: &[Scope],
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(String, ApiTokenInfo)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_TOKEN_NAME_CHARS {
            return Err(Error::InvalidArgument(format!(
                "token name must be 1 to {MAX_TOKEN_NAME_CHARS} characters"
            )));
        }
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(Error::InvalidArgument(
                "a token needs at least one scope (read, jobs, review, admin)".into(),
            ));
        }
        let latest = now + delta(self.policy.api_token_max_ttl, "API token lifetime")?;
        let expires_at = match expires_at {
            Some(t) if t <= now => {
                return Err(Error::InvalidArgument(
                    "token expiry must be in the future".into(),
                ));
            }
            Some(t) if t > latest => {
                return Err(Error::InvalidArgument(format!(
                    "token expiry must be within {} days",
                    self.policy.api_token_max_ttl.as_secs() / 86_400
                )));
            }
            Some(t) => t,
            None => now + delta(self.policy.api_token_ttl, "API token lifetime")?,
        };
        if self.store.user_by_id(user_id).await?.is_none() {
            return Err(Error::NotFound("user".into()));
        }
        let token = secret::new_token(TokenKind::Api)?;
        let info = ApiTokenInfo {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user_id.to_string(),
            name: name.to_string(),
            created_at: ts(now),
            expires_at: Some(ts(expires_at)),
            revoked_at: None,
            scopes,
        };
        self.store
            .insert_api_token(&info, &secret::token_hash(&token))
            .await?;
        Ok((token, info))
    }

    /// Revokes every live API token of a user; returns how many.
    pub async fn revoke_api_tokens(&self, user_id: &str, now: DateTime<Utc>) -> Result<u64> {
        self.store.revoke_user_api_tokens(user_id, &ts(now)).await
    }

    /// Revokes an API token by id and returns it (its `user_id` is for the audit log).
    pub async fn revoke_api_token(&self, id: &str, now: DateTime<Utc>) -> Result<ApiTokenInfo> {
        self.store
            .revoke_api_token(id, &ts(now))
            .await?
            .ok_or_else(|| Error::NotFound("API token".into()))
    }

    /// An API token's metadata by id (to check its owner before revoking).
    pub async fn get_api_token(&self, id: &str) -> Result<ApiTokenInfo> {
        self.store
            .api_token_by_id(id)
            .await?
            .ok_or_else(|| Error::NotFound("API token".into()))
    }

    /// A user's API tokens, revoked ones included, oldest first.
    pub async fn list_api_tokens(&self, user_id: &str) -> Result<Vec<ApiTokenInfo>> {
        self.store.list_api_tokens(user_id).await
    }

    /// Disables an account and revokes its sessions. Its API tokens stop working
    /// while it stays disabled.
    pub async fn disable_user(&self, username: &str, now: DateTime<Utc>) -> Result<User> {
        let user = self.get_user(username).await?;
        self.store
            .set_user_disabled(&user.id, true, &ts(now))
            .await?;
        self.store.revoke_user_sessions(&user.id, &ts(now)).await?;
        self.get_user(username).await
    }

    /// Re-enables a disabled account.
    pub async fn enable_user(&self, username: &str, now: DateTime<Utc>) -> Result<User> {
        let user = self.get_user(username).await?;
        self.store
            .set_user_disabled(&user.id, false, &ts(now))
            .await?;
        self.get_user(username).await
    }

    /// Sets a password chosen by the host's operator; with `must_change` the
    /// next session can only change it. Clears any lockout, ends the
    /// account's sessions and revokes its API tokens.
    pub async fn set_password(
        &self,
        username: &str,
        new_password: &str,
        must_change: bool,
        now: DateTime<Utc>,
    ) -> Result<User> {
        self.validate_password(new_password)?;
        let user = self.get_user(username).await?;
        let hash = self.hash(new_password).await?;
        self.store
            .set_password_hash(&user.id, &hash, must_change, None, &ts(now))
            .await?;
        self.end_credentials(&user.id, now).await?;
        self.get_user(username).await
    }

    /// Replaces an account's password by a one-time code: it signs in once
    /// into a session that can only set a new password, and expires after
    /// [`IdentityPolicy::one_time_code_ttl`]. Ends the account's sessions and
    /// revokes its API tokens. Returns the code (shown once) and its expiry.
    pub async fn issue_one_time_code(
        &self,
        username: &str,
        now: DateTime<Utc>,
    ) -> Result<(User, String, String)> {
        let user = self.get_user(username).await?;
        let code = secret::one_time_code()?;
        let hash = self.hash(&code).await?;
        let expires = ts(now + delta(self.policy.one_time_code_ttl, "one-time code lifetime")?);
        self.store
            .set_password_hash(&user.id, &hash, true, Some(&expires), &ts(now))
            .await?;
        self.end_credentials(&user.id, now).await?;
        Ok((self.get_user(username).await?, code, expires))
    }

    /// Ends every session and revokes every API token of an account.
    async fn end_credentials(&self, user_id: &str, now: DateTime<Utc>) -> Result<()> {
        self.store.revoke_user_sessions(user_id, &ts(now)).await?;
        self.store.revoke_user_api_tokens(user_id, &ts(now)).await?;
        Ok(())
    }

    /// Changes a user's own password after checking the current one; ends every
    /// other session (the caller's `keep_session` token stays valid). A wrong
    /// current password is [`Error::Unauthenticated`] and counts as a failed login.
    pub async fn change_password(
        &self,
        user_id: &str,
        change: &PasswordChange<'_>,
        keep_session: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<User> {
        let (current, new_password) = (change.current, change.new);
        self.validate_password(new_password)?;
        let user = self.get_user_by_id(user_id).await?;
        if user.must_change_password && current == new_password {
            return Err(Error::InvalidArgument(
                "the new password must differ from the one-time code".into(),
            ));
        }
        // A forced change (a new account, a reset) also asks for the 身份证号,
        // which the platform never shows: whoever handed the one-time code over
        // cannot finish it alone.
        let person_ok = if user.must_change_password && user.person_bound {
            match change.resident_id.map(|id| self.person_of(id)) {
                Some(Ok(p)) => p == user.person,
                _ => false,
            }
        } else {
            true
        };
        if !person_ok {
            // Dropped unsettled: a failed attempt, throttled like a wrong code.
            let _failed = self
                .throttle
                .reserve(&user.username, &format!("user:{user_id}"), now)
                .map_err(Throttled::error)?;
            return Err(unauthenticated(
                "the one-time code or the 身份证号 is wrong",
            ));
        }
        self.confirm_password(user_id, current, now).await?;
        let hash = self.hash(new_password).await?;
        self.store
            .set_password_hash(&user.id, &hash, false, None, &ts(now))
            .await?;
        let keep = keep_session
            .filter(|t| secret::token_kind(t) == Some(TokenKind::Session))
            .map(secret::token_hash);
        self.store
            .revoke_user_sessions_except(&user.id, keep.as_deref(), &ts(now))
            .await?;
        self.get_user_by_id(user_id).await
    }

    /// Checks a signed-in user's password again before a sensitive step (a new
    /// API token, a password change). A wrong one is
    /// [`Error::Unauthenticated`] and counts as a failed login.
    pub async fn confirm_password(
        &self,
        user_id: &str,
        password: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let user = self.get_user_by_id(user_id).await?;
        let attempt = self
            .throttle
            .reserve(&user.username, &format!("user:{user_id}"), now)
            .map_err(Throttled::error)?;
        let creds = self
            .store
            .user_credentials(&user.username)
            .await?
            .ok_or_else(|| Error::NotFound("user".into()))?;
        if self.verify(&creds.password_hash, password).await? {
            attempt.succeeded();
            return Ok(());
        }
        Err(unauthenticated("the current password is wrong"))
    }

    /// Records the outcome of real-name verification.
    pub async fn set_verified(
        &self,
        username: &str,
        verified: bool,
        now: DateTime<Utc>,
    ) -> Result<User> {
        let user = self.get_user(username).await?;
        self.store
            .set_user_verified(&user.id, verified, &ts(now))
            .await?;
        self.get_user(username).await
    }

    /// Replaces the credit flags (XM:24) of an account.
    pub async fn set_credit_flags(
        &self,
        username: &str,
        flags: &[CreditFlag],
        now: DateTime<Utc>,
    ) -> Result<User> {
        let mut flags = flags.to_vec();
        flags.sort();
        flags.dedup();
        let user = self.get_user(username).await?;
        self.store
            .set_user_credit_flags(&user.id, &flags, &ts(now))
            .await?;
        self.get_user(username).await
    }

    /// Every account, ordered by username.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        self.store.list_users().await
    }

    /// One account by username.
    pub async fn get_user(&self, username: &str) -> Result<User> {
        self.store
            .user_by_username(username)
            .await?
            .ok_or_else(|| Error::NotFound("user".into()))
    }

    /// One account by id.
    pub async fn get_user_by_id(&self, id: &str) -> Result<User> {
        self.store
            .user_by_id(id)
            .await?
            .ok_or_else(|| Error::NotFound("user".into()))
    }
}
