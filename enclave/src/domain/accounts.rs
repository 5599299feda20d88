//! Account administration: organisations, accounts and the persons behind
//! them, one-time codes, privileged changes a second administrator approves,
//! enabling, verification and credit flags (XM:24), API tokens, password
//! changes. Each change is one audit event.
//!
//! A privileged change (creating a steward or an administrator, resetting
//! the password of one) asked by an administrator over a front end becomes a
//! request another administrator decides; the requester never can, nor
//! another account of the same person. The host's operator (the CLI on the
//! platform host, already trusted with the data directory) acts directly and
//! may decide a request: on a fresh install with one administrator it is the
//! second party. Every step is audited with who asked and who decided.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Actor, By, Domain, audit_object};
use crate::access::authz::{Action, Object};
use crate::audit::Outcome;
use crate::identity::{
    ApiTokenInfo, CreditFlag, NewOrganisation, NewUser, Organisation, PasswordChange, PendingUser,
    Principal, Role, Scope, User,
};
use crate::store::AccountRequestRecord;
use crate::{Error, Result};

/// Settings of account administration (`[identity]` in the configuration).
#[derive(Debug, Clone)]
pub struct AccountOptions {
    /// Creating stewards and administrators, and resetting their passwords,
    /// needs a second administrator's approval (on by default).
    pub second_admin: bool,
}

impl Default for AccountOptions {
    fn default() -> Self {
        AccountOptions { second_admin: true }
    }
}

/// What an account change did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AccountOutcome {
    /// Done. The one-time code is for the account's owner, shown this once:
    /// it signs in once into a session that can only set the owner's
    /// password, which also asks for their 身份证号.
    Done {
        user: User,
        one_time_code: String,
        /// RFC 3339 UTC.
        code_expires_at: String,
    },
    /// Waiting for another administrator.
    Requested { request: AccountRequestRecord },
    /// Refused by another administrator.
    Refused { request: AccountRequestRecord },
}

fn privileged(role: Role) -> bool {
    matches!(role, Role::Steward | Role::Admin)
}

impl Domain {
    /// Opens an account whose first password is a one-time code (returned
    /// once, never a password). A steward or an administrator asked for by an
    /// administrator becomes a request another administrator approves.
    /// Audited as `user.create` or `account_request.create`.
    pub async fn open_account<'a>(
        &self,
        by: impl Into<By<'a>>,
        new: NewUser,
    ) -> Result<AccountOutcome> {
        let by = by.into();
        let actor = &self.acting(by, Action::ManageUsers, "users").await?;
        let pending = match self.identity.pending_user(&new).await {
            Ok(p) => p,
            Err(e) => {
                self.record(
                    actor,
                    "user.create",
                    audit_object("username", &new.username),
                    Outcome::Failure,
                    serde_json::json!({ "error_code": e.code() }),
                )
                .await?;
                return Err(e);
            }
        };
        if let By::Caller(Some(p)) = by
            && self.options.accounts.second_admin
            && privileged(pending.role)
        {
            let body = serde_json::to_string(&pending)
                .map_err(|e| Error::Internal(format!("account request: {e}")))?;
            return self
                .request_account_change(p, "create_user", &pending.username, body, pending.role)
                .await;
        }
        self.finish_create(actor, pending).await
    }

    async fn finish_create(&self, actor: &Actor, pending: PendingUser) -> Result<AccountOutcome> {
        let username = pending.username.clone();
        let result = self
            .identity
            .create_user_with_code(pending, self.now())
            .await;
        let (outcome, object, details) = match &result {
            Ok((u, _, expires)) => (
                Outcome::Success,
                format!("user:{}", u.id),
                serde_json::json!({
                    "username": u.username, "role": u.role.as_str(),
                    "organisation_id": u.organisation_id,
                    "one_time_code_expires_at": expires,
                }),
            ),
            Err(e) => (
                Outcome::Failure,
                audit_object("username", &username),
                serde_json::json!({ "error_code": e.code() }),
            ),
        };
        self.record(actor, "user.create", object, outcome, details)
            .await?;
        let (user, one_time_code, code_expires_at) = result?;
        Ok(AccountOutcome::Done {
            user,
            one_time_code,
            code_expires_at,
        })
    }

    async fn request_account_change(
        &self,
        p: &Principal,
        kind: &str,
        username: &str,
        body_json: String,
        role: Role,
    ) -> Result<AccountOutcome> {
        let request = AccountRequestRecord {
            id: uuid::Uuid::now_v7().to_string(),
            kind: kind.into(),
            username: username.into(),
            body_json,
            requested_by: p.user_id.clone(),
            requested_by_name: p.username.clone(),
            status: "pending".into(),
            decided_by: None,
            decided_by_name: None,
            created_at: crate::store::now_rfc3339(),
            decided_at: None,
        };
        self.store.insert_account_request(&request).await?;
        self.record(
            &Actor::user(p),
            "account_request.create",
            format!("account_request:{}", request.id),
            Outcome::Success,
            serde_json::json!({ "kind": kind, "username": username, "role": role.as_str() }),
        )
        .await?;
        Ok(AccountOutcome::Requested { request })
    }

    /// Replaces an account's password by a one-time code for its owner (never
    /// a password for the administrator), ends its sessions and revokes its
    /// API tokens; the next session can only set a new password. For a
    /// steward's or an administrator's account asked by an administrator, a
    /// request another administrator approves. Audited as `user.reset_password`
    /// or `account_request.create`.
    pub async fn reset_password<'a>(
        &self,
        by: impl Into<By<'a>>,
        username: &str,
    ) -> Result<AccountOutcome> {
        let by = by.into();
        let actor = &self.acting(by, Action::ManageUsers, "users").await?;
        let user = self.identity.get_user(username).await?;
        if let By::Caller(Some(p)) = by
            && self.options.accounts.second_admin
            && privileged(user.role)
        {
            return self
                .request_account_change(p, "reset_password", username, "{}".into(), user.role)
                .await;
        }
        self.finish_reset(actor, username).await
    }

    async fn finish_reset(&self, actor: &Actor, username: &str) -> Result<AccountOutcome> {
        let (user, one_time_code, code_expires_at) = self
            .identity
            .issue_one_time_code(username, self.now())
            .await?;
        self.audited_user_change(
            actor,
            "user.reset_password",
            &user,
            serde_json::json!({
                "one_time_code_expires_at": code_expires_at,
                "sessions_and_tokens_revoked": true,
            }),
        )
        .await?;
        Ok(AccountOutcome::Done {
            user,
            one_time_code,
            code_expires_at,
        })
    }

    /// Sets a password the host's operator chose (the demo's accounts, a
    /// first administrator); with `must_change` the next session can only
    /// change it. Ends the account's sessions and revokes its API tokens.
    /// Audited as `user.set_password`.
    pub async fn set_password(
        &self,
        actor: &Actor,
        username: &str,
        password: &str,
        must_change: bool,
    ) -> Result<User> {
        let user = self
            .identity
            .set_password(username, password, must_change, self.now())
            .await?;
        self.audited_user_change(
            actor,
            "user.set_password",
            &user,
            serde_json::json!({ "must_change_password": must_change }),
        )
        .await?;
        Ok(user)
    }

    /// Every account request, newest first (administrators).
    pub async fn account_requests<'a>(
        &self,
        by: impl Into<By<'a>>,
    ) -> Result<Vec<AccountRequestRecord>> {
        self.acting(by.into(), Action::ManageUsers, "account_requests")
            .await?;
        self.store.account_requests().await
    }

    /// Approves or refuses a pending account request. The requester may not
    /// decide it (nor another account of the same person); the host's
    /// operator may. An approval carries the change out and returns the
    /// one-time code to the approver, for the owner. Audited as
    /// `account_request.approve` / `account_request.refuse`.
    pub async fn decide_account_request<'a>(
        &self,
        by: impl Into<By<'a>>,
        id: &str,
        approve: bool,
    ) -> Result<AccountOutcome> {
        let by = by.into();
        let actor = &self
            .acting(by, Action::ManageUsers, "account_requests")
            .await?;
        let request = self
            .store
            .account_request(id)
            .await?
            .ok_or_else(|| Error::NotFound("account request".into()))?;
        let (decider_id, same_person) = match by {
            By::Caller(Some(p)) => {
                let requester = self
                    .identity
                    .get_user_by_id(&request.requested_by)
                    .await
                    .ok();
                (
                    p.user_id.clone(),
                    requester.is_some_and(|r| r.person == p.person),
                )
            }
            _ => (actor.name.clone(), false),
        };
        let action = if approve {
            "account_request.approve"
        } else {
            "account_request.refuse"
        };
        if decider_id == request.requested_by || same_person {
            self.record(
                actor,
                action,
                format!("account_request:{id}"),
                Outcome::Denied,
                serde_json::json!({ "error_code": "own_request" }),
            )
            .await?;
            return Err(Error::Denied {
                code: "own_request",
                message: "a privileged account change is decided by another administrator \
                          than the one who asked for it"
                    .into(),
            });
        }
        let status = if approve { "approved" } else { "refused" };
        let at = crate::store::now_rfc3339();
        if !self
            .store
            .decide_account_request(id, status, &decider_id, &actor.name, &at)
            .await?
        {
            return Err(Error::Conflict(
                "the account request is already decided".into(),
            ));
        }
        self.record(
            actor,
            action,
            format!("account_request:{id}"),
            Outcome::Success,
            serde_json::json!({
                "kind": request.kind, "username": request.username,
                "requested_by": request.requested_by_name,
            }),
        )
        .await?;
        let request = self
            .store
            .account_request(id)
            .await?
            .ok_or_else(|| Error::NotFound("account request".into()))?;
        if !approve {
            return Ok(AccountOutcome::Refused { request });
        }
        match request.kind.as_str() {
            "create_user" => {
                let pending: PendingUser = serde_json::from_str(&request.body_json)
                    .map_err(|_| Error::Internal("stored account request unreadable".into()))?;
                self.finish_create(actor, pending).await
            }
            "reset_password" => self.finish_reset(actor, &request.username).await,
            _ => Err(Error::Internal("unknown account request kind".into())),
        }
    }

    /// The caller, once allowed `action` on their own credentials.
    async fn own_credentials<'a>(
        &self,
        caller: Option<&'a Principal>,
        action: Action,
    ) -> Result<&'a Principal> {
        let p = self.signed_in(caller, action, "me").await?;
        let me = Object::User {
            user_id: &p.user_id,
        };
        self.authorize(Some(p), action, &me, "me").await?;
        Ok(p)
    }

    pub(super) async fn audited_user_change(
        &self,
        actor: &Actor,
        action: &str,
        user: &User,
        details: serde_json::Value,
    ) -> Result<()> {
        self.record(
            actor,
            action,
            format!("user:{}", user.id),
            Outcome::Success,
            details,
        )
        .await?;
        Ok(())
    }

    /// The organisation of that (normalised) name, registered first when
    /// there is none (the host's setup: the demo, `anyu user add`, benchmarks).
    pub async fn organisation_for<'a>(
        &self,
        by: impl Into<By<'a>>,
        new: NewOrganisation,
    ) -> Result<Organisation> {
        if let Some(org) = self.identity.organisation_named(&new.name).await? {
            return Ok(org);
        }
        self.create_organisation(by, new).await
    }

    /// Registers an organisation (name normalised, credit code checked);
    /// audited as `organisation.create`, a refusal with its code.
    pub async fn create_organisation<'a>(
        &self,
        by: impl Into<By<'a>>,
        new: NewOrganisation,
    ) -> Result<Organisation> {
        let actor = &self
            .acting(by.into(), Action::ManageUsers, "organisations")
            .await?;
        let result = self.identity.create_organisation(new, self.now()).await;
        let (outcome, object, details) = match &result {
            Ok(o) => (
                Outcome::Success,
                format!("organisation:{}", o.id),
                serde_json::json!({ "name": o.name, "credit_code": o.credit_code }),
            ),
            Err(e) => (
                Outcome::Failure,
                "organisations".to_string(),
                serde_json::json!({ "error_code": e.code() }),
            ),
        };
        self.record(actor, "organisation.create", object, outcome, details)
            .await?;
        result
    }

    /// Every organisation (administrators).
    pub async fn organisations<'a>(&self, by: impl Into<By<'a>>) -> Result<Vec<Organisation>> {
        self.acting(by.into(), Action::ManageUsers, "organisations")
            .await?;
        self.identity.list_organisations().await
    }

    /// Records the credit code of an organisation migrated without one;
    /// audited as `organisation.credit_code`.
    pub async fn set_organisation_credit_code<'a>(
        &self,
        by: impl Into<By<'a>>,
        id: &str,
        code: &str,
    ) -> Result<Organisation> {
        let actor = &self
            .acting(by.into(), Action::ManageUsers, "organisations")
            .await?;
        let org = self.identity.set_credit_code(id, code).await?;
        self.record(
            actor,
            "organisation.credit_code",
            format!("organisation:{}", org.id),
            Outcome::Success,
            serde_json::json!({ "credit_code": org.credit_code }),
        )
        .await?;
        Ok(org)
    }

    /// Binds an account made before persons were bound to the person with
    /// this 身份证号 (only its keyed hash is kept); audited as `user.bind_person`.
    pub async fn bind_person<'a>(
        &self,
        by: impl Into<By<'a>>,
        username: &str,
        resident_id: &str,
    ) -> Result<User> {
        let actor = &self.acting(by.into(), Action::ManageUsers, "users").await?;
        let user = self
            .identity
            .bind_person(username, resident_id, self.now())
            .await?;
        self.audited_user_change(actor, "user.bind_person", &user, serde_json::json!({}))
            .await?;
        Ok(user)
    }

    /// Re-enables a disabled account; audited as `user.enable`.
    pub async fn enable_user<'a>(&self, by: impl Into<By<'a>>, username: &str) -> Result<User> {
        let actor = &self.acting(by.into(), Action::ManageUsers, "users").await?;
        let user = self.identity.enable_user(username, self.now()).await?;
        self.audited_user_change(actor, "user.enable", &user, serde_json::json!({}))
            .await?;
        Ok(user)
    }

    /// Records real-name verification (SZ:30); audited as `user.verify`.
    pub async fn set_verified<'a>(
        &self,
        by: impl Into<By<'a>>,
        username: &str,
        verified: bool,
    ) -> Result<User> {
        let actor = &self.acting(by.into(), Action::ManageUsers, "users").await?;
        let user = self
            .identity
            .set_verified(username, verified, self.now())
            .await?;
        self.audited_user_change(
            actor,
            "user.verify",
            &user,
            serde_json::json!({ "verified": verified }),
        )
        .await?;
        Ok(user)
    }

    /// Replaces an account's credit flags (XM:24); audited as `user.credit_flags`.
    pub async fn set_credit_flags<'a>(
        &self,
        by: impl Into<By<'a>>,
        username: &str,
        flags: &[CreditFlag],
    ) -> Result<User> {
        let actor = &self.acting(by.into(), Action::ManageUsers, "users").await?;
        let user = self
            .identity
            .set_credit_flags(username, flags, self.now())
            .await?;
        self.audited_user_change(
            actor,
            "user.credit_flags",
            &user,
            serde_json::json!({ "flags": user.credit_flags }),
        )
        .await?;
        Ok(user)
    }

    /// Creates an API token for the caller; the token is returned once. Only
    /// from a login session (authz: a token cannot mint tokens) and with the
    /// password re-entered; a wrong password is audited as denied and counts
    /// as a failed login. Audited as `token.create` (never the token itself).
    pub async fn create_api_token<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        password: &str,
        name: &str,
        scopes: &[Scope],
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(String, ApiTokenInfo)> {
        let p = self
            .own_credentials(caller.into(), Action::CreateApiToken)
            .await?;
        if let Err(e) = self
            .identity
            .confirm_password(&p.user_id, password, self.now())
            .await
        {
            self.record(
                &Actor::user(p),
                "token.create",
                format!("user:{}", p.user_id),
                Outcome::Denied,
                serde_json::json!({ "error_code": e.code() }),
            )
            .await?;
            return Err(e);
        }
        let (token, info) = self
            .identity
            .create_api_token(&p.user_id, name, scopes, expires_at, self.now())
            .await?;
        self.record(
            &Actor::user(p),
            "token.create",
            format!("token:{}", info.id),
            Outcome::Success,
            serde_json::json!({ "expires_at": info.expires_at, "scopes": info.scopes }),
        )
        .await?;
        Ok((token, info))
    }

    /// The caller's API tokens.
    pub async fn api_tokens<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
    ) -> Result<Vec<ApiTokenInfo>> {
        let p = self
            .own_credentials(caller.into(), Action::ManageOwnCredentials)
            .await?;
        self.identity.list_api_tokens(&p.user_id).await
    }

    /// Revokes one of the caller's API tokens; audited as `token.revoke`.
    /// Another user's token answers like an unknown one.
    pub async fn revoke_api_token<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
    ) -> Result<ApiTokenInfo> {
        let p = self
            .own_credentials(caller.into(), Action::ManageOwnCredentials)
            .await?;
        let info = self.identity.get_api_token(id).await?;
        if info.user_id != p.user_id {
            return Err(Error::NotFound("API token".into()));
        }
        let info = self.identity.revoke_api_token(id, self.now()).await?;
        self.record(
            &Actor::user(p),
            "token.revoke",
            format!("token:{}", info.id),
            Outcome::Success,
            serde_json::json!({}),
        )
        .await?;
        Ok(info)
    }

    /// Changes the caller's own password; every other session ends, and with
    /// `revoke_api_tokens` every API token too. Only from a login session. A
    /// wrong current password is audited as denied. Audited as
    /// `user.change_password` with the number of tokens revoked.
    pub async fn change_password<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        change: &PasswordChange<'_>,
        session_token: Option<&str>,
        revoke_api_tokens: bool,
    ) -> Result<User> {
        let p = self
            .own_credentials(caller.into(), Action::ChangePassword)
            .await?;
        let now = self.now();
        let mut result = self
            .identity
            .change_password(&p.user_id, change, session_token, now)
            .await;
        let mut revoked = 0;
        if result.is_ok() && revoke_api_tokens {
            match self.identity.revoke_api_tokens(&p.user_id, now).await {
                Ok(n) => revoked = n,
                Err(e) => result = Err(e),
            }
        }
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(Error::Unauthenticated(_)) => Outcome::Denied,
            Err(_) => Outcome::Failure,
        };
        let details = match &result {
            Ok(_) => serde_json::json!({
                "api_tokens_revoked": revoked, "forced": p.must_change_password,
            }),
            Err(e) => serde_json::json!({ "error_code": e.code() }),
        };
        self.record(
            &Actor::user(p),
            "user.change_password",
            format!("user:{}", p.user_id),
            outcome,
            details,
        )
        .await?;
        result
    }
}
