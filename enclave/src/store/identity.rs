//! Identity tables: users, login sessions, API tokens.
//!
//! Only hashes of secrets reach these tables; see [`crate::identity`].

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::Store;
use super::seal::{API_TOKENS, KeyValue, SESSIONS, Sealed, Sealer, USERS, check_row, reseal};
use crate::identity::{ApiTokenInfo, CreditFlag, Organisation, Scope, User};
use crate::{Error, Result};

/// A user row with its password hash; only the identity service reads it.
#[derive(Clone)]
pub struct UserCredentials {
    pub user: User,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// When the password is a one-time code: its expiry (RFC 3339 UTC).
    pub password_expires_at: Option<String>,
}

impl fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserCredentials")
            .field("user", &self.user)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// A stored login session and its owner.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub user: User,
    pub created_at: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
}

const USER_COLUMNS: &str = "id, username, real_name, organisation, organisation_type, role, \
     provider_agencies_json, verified, credit_flags_json, disabled, created_at, \
     organisation_id, person_key, must_change_password, password_expires_at";

const TOKEN_COLUMNS: &str = "id, user_id, name, created_at, expires_at, revoked_at, scopes";

/// Scopes are stored as their names joined by commas (`read,jobs`).
fn scopes_to_str(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

fn scopes_from_str(s: &str) -> Result<Vec<Scope>> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse()
                .map_err(|_| Error::Internal("stored token scope is unknown".into()))
        })
        .collect()
}

const ORGANISATION_COLUMNS: &str = "id, name, credit_code, organisation_type, created_at";

/// A stored enum name read back (for callers outside the store).
pub(crate) fn enum_from_text<T: DeserializeOwned>(s: &str) -> Result<T> {
    enum_from_str(s.to_string(), "organisation type")
}

fn organisation_from_row(row: &SqliteRow) -> Result<Organisation> {
    Ok(Organisation {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        credit_code: row.try_get("credit_code")?,
        organisation_type: enum_from_str(row.try_get("organisation_type")?, "organisation type")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Stores a unit-variant enum by its serde name.
pub(super) fn enum_to_str<T: Serialize>(value: &T, what: &str) -> Result<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        _ => Err(Error::Internal(format!(
            "{what} does not serialize to a name"
        ))),
    }
}

pub(super) fn enum_from_str<T: DeserializeOwned>(s: String, what: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(s))
        .map_err(|_| Error::Internal(format!("stored {what} is unknown")))
}

pub(super) fn json_to_string<T: Serialize>(value: &T, what: &str) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| Error::Internal(format!("{what} does not serialize: {e}")))
}

pub(super) fn json_from_str<T: DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| Error::Internal(format!("stored {what} unreadable: {e}")))
}

fn user_from_row(row: &SqliteRow) -> Result<User> {
    let agencies: String = row.try_get("provider_agencies_json")?;
    let flags: String = row.try_get("credit_flags_json")?;
    let id: String = row.try_get("id")?;
    let person_key: Option<String> = row.try_get("person_key")?;
    Ok(User {
        person: person_key
            .clone()
            .unwrap_or_else(|| format!("account:{id}")),
        person_bound: person_key.is_some(),
        must_change_password: row.try_get::<i64, _>("must_change_password")? != 0,
        id,
        username: row.try_get("username")?,
        real_name: row.try_get("real_name")?,
        organisation_id: row
            .try_get::<Option<String>, _>("organisation_id")?
            .unwrap_or_default(),
        organisation: row.try_get("organisation")?,
        organisation_type: enum_from_str(row.try_get("organisation_type")?, "organisation type")?,
        role: enum_from_str(row.try_get("role")?, "role")?,
        provider_agencies: json_from_str(&agencies, "provider agencies")?,
        verified: row.try_get::<i64, _>("verified")? != 0,
        credit_flags: json_from_str(&flags, "credit flags")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

fn token_from_row(row: &SqliteRow) -> Result<ApiTokenInfo> {
    Ok(ApiTokenInfo {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        scopes: scopes_from_str(&row.try_get::<String, _>("scopes")?)?,
    })
}

impl Store {
    fn sealed_user(&self, row: &SqliteRow) -> Result<User> {
        self.sealer.check(&USERS, row)?;
        user_from_row(row)
    }

    /// Inserts a new user. A taken username is a [`Error::Conflict`].
    pub async fn insert_user(
        &self,
        user: &User,
        person_key: &str,
        password_hash: &str,
        password_expires_at: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO users ({USER_COLUMNS}, password_hash, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&user.id)
        .bind(&user.username)
        .bind(&user.real_name)
        .bind(&user.organisation)
        .bind(enum_to_str(&user.organisation_type, "organisation type")?)
        .bind(user.role.as_str())
        .bind(json_to_string(
            &user.provider_agencies,
            "provider agencies",
        )?)
        .bind(i64::from(user.verified))
        .bind(json_to_string(&user.credit_flags, "credit flags")?)
        .bind(i64::from(user.disabled))
        .bind(&user.created_at)
        .bind(&user.organisation_id)
        .bind(person_key)
        .bind(i64::from(user.must_change_password))
        .bind(password_expires_at)
        .bind(password_hash)
        .bind(&user.created_at)
        .execute(&mut *tx)
        .await;
        if let Err(sqlx::Error::Database(e)) = &inserted
            && e.is_unique_violation()
        {
            return Err(Error::Conflict("username is already taken".into()));
        }
        inserted?;
        reseal(&mut tx, &self.sealer, &USERS, &[KeyValue::Text(&user.id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inserts an organisation under its normalised name. A taken name or
    /// credit code is a [`Error::Conflict`] (which one, not whose).
    pub async fn insert_organisation(&self, org: &Organisation, name_key: &str) -> Result<()> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO organisations ({ORGANISATION_COLUMNS}, name_key) VALUES (?, ?, ?, ?, ?, ?)"
        ))
        .bind(&org.id)
        .bind(&org.name)
        .bind(&org.credit_code)
        .bind(enum_to_str(&org.organisation_type, "organisation type")?)
        .bind(&org.created_at)
        .bind(name_key)
        .execute(&self.pool)
        .await;
        if let Err(sqlx::Error::Database(e)) = &inserted
            && e.is_unique_violation()
        {
            return Err(Error::Conflict(if e.message().contains("credit_code") {
                "an organisation with this credit code is already registered".into()
            } else {
                "an organisation with this name (ignoring invisible characters, spaces, width and case) is already registered".into()
            }));
        }
        inserted?;
        Ok(())
    }

    /// Every organisation, by name.
    pub async fn list_organisations(&self) -> Result<Vec<Organisation>> {
        let rows = sqlx::query(&format!(
            "SELECT {ORGANISATION_COLUMNS} FROM organisations ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(organisation_from_row).collect()
    }

    /// An organisation by id.
    pub async fn organisation(&self, id: &str) -> Result<Option<Organisation>> {
        let row = sqlx::query(&format!(
            "SELECT {ORGANISATION_COLUMNS} FROM organisations WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(organisation_from_row).transpose()
    }

    /// An organisation by normalised name.
    pub async fn organisation_by_key(&self, name_key: &str) -> Result<Option<Organisation>> {
        let row = sqlx::query(&format!(
            "SELECT {ORGANISATION_COLUMNS} FROM organisations WHERE name_key = ?"
        ))
        .bind(name_key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(organisation_from_row).transpose()
    }

    /// Records the credit code of an organisation that has none.
    pub async fn set_organisation_credit_code(&self, id: &str, code: &str) -> Result<()> {
        let done = sqlx::query(
            "UPDATE organisations SET credit_code = ? WHERE id = ? AND credit_code IS NULL",
        )
        .bind(code)
        .bind(id)
        .execute(&self.pool)
        .await;
        if let Err(sqlx::Error::Database(e)) = &done
            && e.is_unique_violation()
        {
            return Err(Error::Conflict(
                "an organisation with this credit code is already registered".into(),
            ));
        }
        if done?.rows_affected() != 1 {
            return Err(Error::Conflict(
                "the organisation's credit code is already recorded".into(),
            ));
        }
        Ok(())
    }

    /// Accounts not yet bound to an organisation entity: (id, free text, type).
    pub async fn users_without_organisation(&self) -> Result<Vec<(String, String, String)>> {
        let rows = sqlx::query(
            "SELECT id, organisation, organisation_type FROM users \
             WHERE organisation_id IS NULL ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    r.try_get("organisation")?,
                    r.try_get("organisation_type")?,
                ))
            })
            .collect()
    }

    /// Binds an account to an organisation (its name and type copied beside).
    pub async fn set_user_organisation(
        &self,
        user_id: &str,
        org: &Organisation,
        now: &str,
    ) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        check_row(&mut tx, &self.sealer, &USERS, &[KeyValue::Text(user_id)]).await?;
        sqlx::query(
            "UPDATE users SET organisation_id = ?, organisation = ?, organisation_type = ?, \
             updated_at = ? WHERE id = ?",
        )
        .bind(&org.id)
        .bind(&org.name)
        .bind(enum_to_str(&org.organisation_type, "organisation type")?)
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        reseal(&mut tx, &self.sealer, &USERS, &[KeyValue::Text(user_id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Binds an unbound account to a person.
    pub async fn set_user_person(&self, user_id: &str, person_key: &str, now: &str) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        check_row(&mut tx, &self.sealer, &USERS, &[KeyValue::Text(user_id)]).await?;
        let done = sqlx::query(
            "UPDATE users SET person_key = ?, updated_at = ? WHERE id = ? AND person_key IS NULL",
        )
        .bind(person_key)
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(Error::Conflict(
                "the account is already bound to a person".into(),
            ));
        }
        reseal(&mut tx, &self.sealer, &USERS, &[KeyValue::Text(user_id)]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A user and their password hash, by username.
    pub async fn user_credentials(&self, username: &str) -> Result<Option<UserCredentials>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, password_hash, {} FROM users WHERE username = ?",
            USERS.select("")
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            self.sealer.check(&USERS, &row)?;
            Ok(UserCredentials {
                user: user_from_row(&row)?,
                password_hash: row.try_get("password_hash")?,
                password_expires_at: row.try_get("password_expires_at")?,
            })
        })
        .transpose()
    }

    /// A user by username.
    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, {} FROM users WHERE username = ?",
            USERS.select("")
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.sealed_user(r)).transpose()
    }

    /// A user by id.
    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, {} FROM users WHERE id = ?",
            USERS.select("")
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.sealed_user(r)).transpose()
    }

    /// Every user, ordered by username.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, {} FROM users ORDER BY username",
            USERS.select("")
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.sealed_user(r)).collect()
    }

    /// Replaces a password hash (with whether the next session must change
    /// it, and until when it works) and clears failed logins and any lock.
    /// Returns false when the user does not exist.
    pub async fn set_password_hash(
        &self,
        user_id: &str,
        hash: &str,
        must_change: bool,
        expires_at: Option<&str>,
        now: &str,
    ) -> Result<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        check_row(&mut tx, &self.sealer, &USERS, &[KeyValue::Text(user_id)]).await?;
        let done = sqlx::query(
            "UPDATE users SET password_hash = ?, must_change_password = ?, \
             password_expires_at = ?, failed_logins = 0, locked_until = NULL, \
             updated_at = ? WHERE id = ?",
        )
        .bind(hash)
        .bind(i64::from(must_change))
        .bind(expires_at)
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        reseal(&mut tx, &self.sealer, &USERS, &[KeyValue::Text(user_id)]).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets the disabled flag. Returns false when the user does not exist.
    pub async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        now: &str,
    ) -> Result<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        check_row(&mut tx, &self.sealer, &USERS, &[KeyValue::Text(user_id)]).await?;
        let done = sqlx::query("UPDATE users SET disabled = ?, updated_at = ? WHERE id = ?")
            .bind(i64::from(disabled))
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        reseal(&mut tx, &self.sealer, &USERS, &[KeyValue::Text(user_id)]).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Sets the real-name verification flag. Returns false when the user does not exist.
    pub async fn set_user_verified(
        &self,
        user_id: &str,
        verified: bool,
        now: &str,
    ) -> Result<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        check_row(&mut tx, &self.sealer, &USERS, &[KeyValue::Text(user_id)]).await?;
        let done = sqlx::query("UPDATE users SET verified = ?, updated_at = ? WHERE id = ?")
            .bind(i64::from(verified))
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        reseal(&mut tx, &self.sealer, &USERS, &[KeyValue::Text(user_id)]).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces the credit flags. Returns false when the user does not exist.
    pub async fn set_user_credit_flags(
        &self,
        user_id: &str,
        flags: &[CreditFlag],
        now: &str,
    ) -> Result<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        check_row(&mut tx, &self.sealer, &USERS, &[KeyValue::Text(user_id)]).await?;
        let done =
            sqlx::query("UPDATE users SET credit_flags_json = ?, updated_at = ? WHERE id = ?")
                .bind(json_to_string(&flags, "credit flags")?)
                .bind(now)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        reseal(&mut tx, &self.sealer, &USERS, &[KeyValue::Text(user_id)]).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores a new session under the SHA-256 hex of its token.
    pub async fn insert_session(
        &self,
        token_hash: &str,
        user_id: &str,
        created_at: &str,
        expires_at: &str,
    ) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(created_at)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        reseal(
            &mut tx,
            &self.sealer,
            &SESSIONS,
            &[KeyValue::Text(token_hash)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A session and its user, by token hash.
    pub async fn session(&self, token_hash: &str) -> Result<Option<SessionRecord>> {
        let cols = USER_COLUMNS
            .split(", ")
            .map(|c| format!("u.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let row = sqlx::query(&format!(
            "SELECT {cols}, {}, {}, s.created_at AS s_created_at, s.expires_at AS s_expires_at, \
             s.revoked_at AS s_revoked_at \
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?",
            USERS.select("u"),
            SESSIONS.select_named("s", "s_")
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            // The session row first: a row moved to another user is refused
            // as the session's, not blamed on the user's row.
            self.sealer.check_named(&SESSIONS, &row, "s_")?;
            Ok(SessionRecord {
                user: self.sealed_user(&row)?,
                created_at: row.try_get("s_created_at")?,
                expires_at: row.try_get("s_expires_at")?,
                revoked_at: row.try_get("s_revoked_at")?,
            })
        })
        .transpose()
    }

    /// Revokes one session. Returns false when no such session exists;
    /// revoking a revoked session keeps its first revocation time.
    pub async fn revoke_session(&self, token_hash: &str, now: &str) -> Result<bool> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let key = [KeyValue::Text(token_hash)];
        check_row(&mut tx, &self.sealer, &SESSIONS, &key).await?;
        let done = sqlx::query(
            "UPDATE sessions SET revoked_at = COALESCE(revoked_at, ?) WHERE token_hash = ?",
        )
        .bind(now)
        .bind(token_hash)
        .execute(&mut *tx)
        .await?;
        reseal(&mut tx, &self.sealer, &SESSIONS, &key).await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// Revokes every live session of a user; returns how many were revoked.
    pub async fn revoke_user_sessions(&self, user_id: &str, now: &str) -> Result<u64> {
        self.revoke_user_sessions_except(user_id, None, now).await
    }

    /// Revokes every live API token of a user; returns how many.
    pub async fn revoke_user_api_tokens(&self, user_id: &str, now: &str) -> Result<u64> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM api_tokens WHERE user_id = ? AND revoked_at IS NULL",
        )
        .bind(user_id)
        .fetch_all(&mut *tx)
        .await?;
        let n = revoke_each(&mut tx, &self.sealer, &API_TOKENS, &ids, now).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Revokes every live session of a user but the one with hash `keep`.
    pub async fn revoke_user_sessions_except(
        &self,
        user_id: &str,
        keep: Option<&str>,
        now: &str,
    ) -> Result<u64> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let hashes: Vec<String> = sqlx::query_scalar(
            "SELECT token_hash FROM sessions WHERE user_id = ? AND revoked_at IS NULL \
             AND token_hash IS NOT ?",
        )
        .bind(user_id)
        .bind(keep)
        .fetch_all(&mut *tx)
        .await?;
        let n = revoke_each(&mut tx, &self.sealer, &SESSIONS, &hashes, now).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Stores a new API token under the SHA-256 hex of its secret.
    pub async fn insert_api_token(&self, info: &ApiTokenInfo, token_hash: &str) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(&format!(
            "INSERT INTO api_tokens ({TOKEN_COLUMNS}, token_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&info.id)
        .bind(&info.user_id)
        .bind(&info.name)
        .bind(&info.created_at)
        .bind(&info.expires_at)
        .bind(&info.revoked_at)
        .bind(scopes_to_str(&info.scopes))
        .bind(token_hash)
        .execute(&mut *tx)
        .await?;
        reseal(
            &mut tx,
            &self.sealer,
            &API_TOKENS,
            &[KeyValue::Text(&info.id)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    fn sealed_token(&self, row: &SqliteRow) -> Result<ApiTokenInfo> {
        self.sealer.check(&API_TOKENS, row)?;
        token_from_row(row)
    }

    /// An API token and its user, by token hash.
    pub async fn api_token(&self, token_hash: &str) -> Result<Option<(ApiTokenInfo, User)>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS}, {} FROM api_tokens WHERE token_hash = ?",
            API_TOKENS.select("")
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let info = self.sealed_token(&row)?;
        let user = self
            .user_by_id(&info.user_id)
            .await?
            .ok_or_else(|| Error::Internal("API token without its user".into()))?;
        Ok(Some((info, user)))
    }

    /// An API token's metadata, by id.
    pub async fn api_token_by_id(&self, id: &str) -> Result<Option<ApiTokenInfo>> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS}, {} FROM api_tokens WHERE id = ?",
            API_TOKENS.select("")
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(|r| self.sealed_token(r)).transpose()
    }

    /// Revokes an API token; returns it, or `None` when the id is unknown.
    /// Revoking a revoked token keeps its first revocation time.
    pub async fn revoke_api_token(&self, id: &str, now: &str) -> Result<Option<ApiTokenInfo>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let key = [KeyValue::Text(id)];
        check_row(&mut tx, &self.sealer, &API_TOKENS, &key).await?;
        sqlx::query("UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        reseal(&mut tx, &self.sealer, &API_TOKENS, &key).await?;
        tx.commit().await?;
        self.api_token_by_id(id).await
    }

    /// A user's API tokens, revoked ones included, oldest first.
    pub async fn list_api_tokens(&self, user_id: &str) -> Result<Vec<ApiTokenInfo>> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS}, {} FROM api_tokens WHERE user_id = ? ORDER BY created_at, id",
            API_TOKENS.select("")
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| self.sealed_token(r)).collect()
    }
}

/// Sets `revoked_at` on each row of `spec` (keyed by one text column) that
/// carries a valid MAC, and seals it again; returns how many. A forged row
/// is refused, never re-sealed.
async fn revoke_each(
    conn: &mut sqlx::SqliteConnection,
    sealer: &Sealer,
    spec: &Sealed,
    keys: &[String],
    now: &str,
) -> Result<u64> {
    let q = format!(
        "UPDATE {} SET revoked_at = ? WHERE {} = ?",
        spec.table, spec.key[0]
    );
    for k in keys {
        let key = [KeyValue::Text(k)];
        check_row(&mut *conn, sealer, spec, &key).await?;
        sqlx::query(&q)
            .bind(now)
            .bind(k)
            .execute(&mut *conn)
            .await?;
        reseal(&mut *conn, sealer, spec, &key).await?;
    }
    Ok(keys.len() as u64)
}

/// A privileged account change waiting for (or decided by) a second administrator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct AccountRequestRecord {
    pub id: String,
    /// `create_user` or `reset_password`.
    pub kind: String,
    pub username: String,
    /// The new account (no password; the person as its keyed hash), or `{}`.
    #[serde(skip)]
    pub body_json: String,
    /// Account id of the requester, or `cli:<user>` for the host's operator.
    pub requested_by: String,
    pub requested_by_name: String,
    /// `pending`, `approved` or `refused`.
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_by_name: Option<String>,
    pub created_at: String,
    pub decided_at: Option<String>,
}

fn request_from_row(r: &SqliteRow) -> Result<AccountRequestRecord> {
    Ok(AccountRequestRecord {
        id: r.try_get("id")?,
        kind: r.try_get("kind")?,
        username: r.try_get("username")?,
        body_json: r.try_get("body_json")?,
        requested_by: r.try_get("requested_by")?,
        requested_by_name: r.try_get("requested_by_name")?,
        status: r.try_get("status")?,
        decided_by: r.try_get("decided_by")?,
        decided_by_name: r.try_get("decided_by_name")?,
        created_at: r.try_get("created_at")?,
        decided_at: r.try_get("decided_at")?,
    })
}

impl Store {
    /// Stores a pending account request.
    pub async fn insert_account_request(&self, r: &AccountRequestRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO account_requests (id, kind, username, body_json, requested_by, \
             requested_by_name, status, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
        )
        .bind(&r.id)
        .bind(&r.kind)
        .bind(&r.username)
        .bind(&r.body_json)
        .bind(&r.requested_by)
        .bind(&r.requested_by_name)
        .bind(&r.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every account request, newest first.
    pub async fn account_requests(&self) -> Result<Vec<AccountRequestRecord>> {
        let rows = sqlx::query("SELECT * FROM account_requests ORDER BY created_at DESC, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(request_from_row).collect()
    }

    /// One account request.
    pub async fn account_request(&self, id: &str) -> Result<Option<AccountRequestRecord>> {
        let row = sqlx::query("SELECT * FROM account_requests WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(request_from_row).transpose()
    }

    /// Decides a pending request in one conditional update; false when it
    /// was no longer pending (decided concurrently).
    pub async fn decide_account_request(
        &self,
        id: &str,
        status: &str,
        by: &str,
        by_name: &str,
        at: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE account_requests SET status = ?, decided_by = ?, decided_by_name = ?, \
             decided_at = ? WHERE id = ? AND status = 'pending'",
        )
        .bind(status)
        .bind(by)
        .bind(by_name)
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
