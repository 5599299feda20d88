//! Account administration beyond creation: enabling, verification and credit
//! flags (XM:24), API tokens for scripts and the CLI, password changes.
//! Each change is one audit event.

use chrono::{DateTime, Utc};

use super::{Actor, By, Domain};
use crate::access::authz::{Action, Object};
use crate::audit::Outcome;
use crate::identity::{ApiTokenInfo, CreditFlag, Principal, Scope, User};
use crate::{Error, Result};

impl Domain {
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
        current: &str,
        new_password: &str,
        session_token: Option<&str>,
        revoke_api_tokens: bool,
    ) -> Result<User> {
        let p = self
            .own_credentials(caller.into(), Action::ChangePassword)
            .await?;
        let now = self.now();
        let mut result = self
            .identity
            .change_password(&p.user_id, current, new_password, session_token, now)
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
            Ok(_) => serde_json::json!({ "api_tokens_revoked": revoked }),
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
