//! Sealed blobs: single files encrypted at rest (application materials, and
//! later released results).
//!
//! Each blob has its own random data key, wrapped by the master key under the
//! caller's AAD (e.g. `anyu:material:<id>`); the wrapped key is stored by the
//! caller (a metadata row), the sealed bytes in a file:
//!
//! ```text
//!  "ANYUBLB1" (8 bytes) ‖ nonce (12 bytes) ‖ AES-256-GCM(plaintext, aad) ‖ tag (16 bytes)
//! ```
//!
//! The AAD binds the content to its record, so a blob file moved under another
//! record fails to open.

use std::io::Write;
use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::keyring::{Keyring, SecretKey, WrappedKey, random_bytes, sync_dir};
use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"ANYUBLB1";

/// What a sealed file belongs to: its AAD names the kind and the record, so
/// a file moved under another record or kind does not open. The strings are
/// part of the on-disk format (locked by a snapshot test).
#[derive(Debug, Clone, Copy)]
pub enum SealedFor<'a> {
    /// An application material, by material id.
    Material(&'a str),
    /// A job's candidate result (Arrow IPC), by job id.
    Result(&'a str),
    /// A model job's log, by job id.
    ModelLog(&'a str),
    /// A job's differencing sketches, by job id.
    Differencing(&'a str),
    /// One released file, by release id and format.
    Release { release: &'a str, format: &'a str },
}

impl SealedFor<'_> {
    pub fn aad(&self) -> Vec<u8> {
        match self {
            SealedFor::Material(id) => format!("anyu:material:{id}"),
            SealedFor::Result(job) => format!("anyu:result:{job}"),
            SealedFor::ModelLog(job) => format!("anyu:log:{job}"),
            SealedFor::Differencing(job) => format!("anyu:differencing:{job}"),
            SealedFor::Release { release, format } => format!("anyu:release:{release}:{format}"),
        }
        .into_bytes()
    }
}

fn aead(key: &SecretKey) -> Result<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, key.as_bytes())
        .map(LessSafeKey::new)
        .map_err(|_| Error::Internal("AES-256-GCM key setup failed".into()))
}

/// Encrypts `plaintext` under a fresh data key; returns the wrapped key and the sealed bytes.
pub fn seal(keyring: &Keyring, aad: &[u8], plaintext: &[u8]) -> Result<(WrappedKey, Vec<u8>)> {
    let dek = SecretKey::generate();
    let wrapped = keyring.wrap_data_key(dek.as_bytes(), aad)?;
    let nonce: [u8; NONCE_LEN] = random_bytes();
    let mut buf = Vec::with_capacity(MAGIC.len() + NONCE_LEN + plaintext.len() + 16);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&nonce);
    let mut body = plaintext.to_vec();
    aead(&dek)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| Error::Crypto("could not seal the blob".into()))?;
    buf.extend_from_slice(&body);
    Ok((wrapped, buf))
}

/// Decrypts bytes made by [`seal`] with the same AAD. Any change fails.
pub fn open(keyring: &Keyring, wrapped: &WrappedKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    let dek = keyring.unwrap_data_key(wrapped, aad)?;
    let header = MAGIC.len() + NONCE_LEN;
    if sealed.len() < header + AES_256_GCM.tag_len() || &sealed[..MAGIC.len()] != MAGIC {
        return Err(Error::Crypto("sealed blob is malformed".into()));
    }
    let nonce: [u8; NONCE_LEN] = sealed[MAGIC.len()..header]
        .try_into()
        .map_err(|_| Error::Crypto("sealed blob is malformed".into()))?;
    let mut body = sealed[header..].to_vec();
    let plain = aead(&dek)?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| Error::Crypto("sealed blob failed authentication".into()))?;
    Ok(plain.to_vec())
}

/// Writes `bytes` to `path` durably and atomically (temporary file, fsync,
/// rename, fsync of the directory), read-only for the owner. Refuses to replace
/// an existing file.
pub fn write_new_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Internal("blob path has no directory".into()))?;
    std::fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    if path.exists() {
        return Err(Error::Conflict(format!(
            "{} already exists",
            path.display()
        )));
    }
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    let result = (|| -> Result<()> {
        let mut f = std::fs::File::create(&tmp).map_err(Error::io("create", &tmp))?;
        f.write_all(bytes).map_err(Error::io("write", &tmp))?;
        f.sync_all().map_err(Error::io("fsync", &tmp))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o400))
                .map_err(Error::io("chmod", &tmp))?;
        }
        std::fs::rename(&tmp, path).map_err(Error::io("rename", path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_file_bindings_are_locked() {
        let all = [
            SealedFor::Material("m1"),
            SealedFor::Result("j1"),
            SealedFor::ModelLog("j1"),
            SealedFor::Differencing("j1"),
            SealedFor::Release {
                release: "r1",
                format: "csv",
            },
        ]
        .map(|s| String::from_utf8(s.aad()).unwrap())
        .join("\n");
        insta::assert_snapshot!(all);
    }

    #[test]
    fn round_trip_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let k = Keyring::init(&dir.path().join("keys")).unwrap();
        let (key, sealed) = seal(&k, b"anyu:material:1", b"%PDF-1.7 hello").unwrap();
        assert_eq!(
            open(&k, &key, b"anyu:material:1", &sealed).unwrap(),
            b"%PDF-1.7 hello"
        );
        assert!(
            !sealed.windows(5).any(|w| w == b"hello"),
            "plaintext visible"
        );
        // Another record's AAD, or any flipped byte, fails.
        assert!(open(&k, &key, b"anyu:material:2", &sealed).is_err());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(
                open(&k, &key, b"anyu:material:1", &bad).is_err(),
                "byte {i}"
            );
        }
        assert!(open(&k, &key, b"anyu:material:1", &sealed[..20]).is_err());
    }

    #[test]
    fn write_new_file_refuses_to_replace() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m").join("a.bin");
        write_new_file(&p, b"one").unwrap();
        assert!(matches!(
            write_new_file(&p, b"two"),
            Err(Error::Conflict(_))
        ));
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
    }
}
