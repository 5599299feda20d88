//! Password hashing (Argon2id) and bearer tokens (256 random bits, stored as SHA-256).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};

use super::TokenKind;
use crate::{Error, Result};

/// Prefix of session tokens.
pub const SESSION_PREFIX: &str = "anyu_s_";
/// Prefix of API tokens.
pub const API_PREFIX: &str = "anyu_t_";

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| Error::Internal("system random generator failed".into()))?;
    Ok(buf)
}

/// Hashes a password into an Argon2id PHC string with a fresh 16-byte salt.
pub(crate) fn hash_password(params: &Params, password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| Error::Internal(format!("salt encoding failed: {e}")))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("password hashing failed: {e}")))
}

/// Checks a password against a stored PHC string, using the parameters in it.
pub(crate) fn verify_password(phc: &str, password: &str) -> Result<bool> {
    let parsed = PasswordHash::new(phc)
        .map_err(|e| Error::Internal(format!("stored password hash unreadable: {e}")))?;
    match Argon2::default().verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(Error::Internal(format!(
            "password verification failed: {e}"
        ))),
    }
}

/// A generated password for a new account: 96 random bits, hex (24 characters).
pub fn generate_password() -> String {
    hex::encode(crate::keyring::random_bytes::<12>())
}

/// A new bearer token of the given kind: its prefix plus 32 random bytes, base64url.
pub(crate) fn new_token(kind: TokenKind) -> Result<String> {
    let prefix = match kind {
        TokenKind::Session => SESSION_PREFIX,
        TokenKind::Api => API_PREFIX,
    };
    Ok(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
    ))
}

/// A one-time code for a new account or a reset: 80 random bits as four
/// groups of four Crockford base-32 characters (no I, L, O, U to misread).
pub(crate) fn one_time_code() -> Result<String> {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let bytes = random_bytes::<10>()?;
    let mut bits: u128 = 0;
    for b in bytes {
        bits = (bits << 8) | u128::from(b);
    }
    let mut out = String::with_capacity(23);
    for i in 0..16 {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let v = ((bits >> (75 - 5 * i)) & 31) as usize;
        out.push(char::from(ALPHABET[v]));
    }
    Ok(out)
}

/// The kind a token claims by its prefix, if any.
pub(crate) fn token_kind(token: &str) -> Option<TokenKind> {
    if token.starts_with(SESSION_PREFIX) {
        Some(TokenKind::Session)
    } else if token.starts_with(API_PREFIX) {
        Some(TokenKind::Api)
    } else {
        None
    }
}

/// What the store keeps instead of a token: SHA-256 of the whole token, hex.
/// A plain hash suffices because the token has 256 bits of entropy.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, token.as_bytes()))
}
