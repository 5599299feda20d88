//! Account administration beyond creation: enabling, verification and credit
//! flags (XM:24), API tokens for scripts and the CLI, password changes.
//! Each change is one audit event.

use chrono::{DateTime, Utc};

use super::{Actor, By, Domain};
use crate::access::authz::{Action, Object};
use crate::audit::Outcome;
use crate::identity::{ApiTokenInfo, CreditFlag, Principal, User};
use crate::{Error, Result};

impl Domain {
    /// The caller, once allowed to manage their own tokens and password.
    async fn own_credentials<'a>(&self, caller: Option<&'a Principal>) -> Result<&'a Principal> {
        let action = Action::ManageOwnCredentials;
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

    /// Creates an API token for the caller; the token is returned once.
    /// Audited as `token.create` (never the token itself).
    pub async fn create_api_token<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(String, ApiTokenInfo)> {
        let p = self.own_credentials(caller.into()).await?;
        let (token, info) = self
            .identity
            .create_api_token(&p.user_id, name, expires_at, self.now())
            .await?;
        self.record(
            &Actor::user(p),
            "token.create",
            format!("token:{}", info.id),
            Outcome::Success,
            serde_json::json!({ "expires_at": info.expires_at }),
        )
        .await?;
        Ok((token, info))
    }

    /// The caller's API tokens.
    pub async fn api_tokens<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
    ) -> Result<Vec<ApiTokenInfo>> {
        let p = self.own_credentials(caller.into()).await?;
        self.identity.list_api_tokens(&p.user_id).await
    }

    /// Revokes one of the caller's API tokens; audited as `token.revoke`.
    /// Another user's token answers like an unknown one.
    pub async fn revoke_api_token<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        id: &str,
    ) -> Result<ApiTokenInfo> {
        let p = self.own_credentials(caller.into()).await?;
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

    /// Changes the caller's own password; every other session ends. A wrong
    /// current password is audited as denied. Audited as `user.change_password`.
    pub async fn change_password<'a>(
        &self,
        caller: impl Into<Option<&'a Principal>>,
        current: &str,
        new_password: &str,
        session_token: Option<&str>,
    ) -> Result<User> {
        let p = self.own_credentials(caller.into()).await?;
        let result = self
            .identity
            .change_password(&p.user_id, current, new_password, session_token, self.now())
            .await;
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(Error::Unauthenticated(_)) => Outcome::Denied,
            Err(_) => Outcome::Failure,
        };
        let details = match &result {
            Ok(_) => serde_json::json!({}),
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
