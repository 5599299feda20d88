//! The platform's keys: the master key that wraps per-version data keys, and the
//! Ed25519 key that signs audit checkpoints (and later certificates and receipts).
//!
//! ## On disk (`keys_dir`, mode 0700)
//!
//! | file | content | mode |
//! |---|---|---|
//! | `master.key` | 32 raw random bytes (AES-256-GCM key-encryption key) | 0600 |
//! | `signing.pk8` | Ed25519 key pair, PKCS#8 v2 DER | 0600 |
//! | `signing.pub` | Ed25519 public key, lowercase hex and a newline | 0644 |
//!
//! [`Keyring::init`] never overwrites an existing key: each file is written to a
//! temporary name, fsynced, then hard-linked into place, which fails atomically if
//! the name exists. [`Keyring::open`] refuses secret key files that group or others
//! can access, and files of the wrong length, so a leaked or truncated key is
//! noticed instead of silently used.
//!
//! ## Data-key wrapping
//!
//! Each dataset version has its own random 256-bit data key (DEK). The DEK is sealed
//! with AES-256-GCM under the master key with a fresh random 96-bit nonce and a
//! caller-chosen AAD that binds the wrapped key to what it protects (storage uses
//! `anyu:<dataset>@v<N>`). The result, [`WrappedKey`], names the master key by its
//! [key id](Keyring::key_id) so that a wrong keyring is reported as such rather
//! than as a generic authentication failure.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// File name of the master key inside the keys directory.
pub const MASTER_KEY_FILE: &str = "master.key";
/// File name of the Ed25519 signing key (PKCS#8) inside the keys directory.
pub const SIGNING_KEY_FILE: &str = "signing.pk8";
/// File name of the hex-encoded Ed25519 public key inside the keys directory.
pub const SIGNING_PUB_FILE: &str = "signing.pub";

/// The next signing key while a rotation is under way (`Keyring::stage_rotation`).
pub const NEXT_SIGNING_KEY_FILE: &str = "signing.next.pk8";
/// Its public key, hex.
pub const NEXT_SIGNING_PUB_FILE: &str = "signing.next.pub";
/// Public keys of signing keys rotated out, `<key id>.pub` (the private
/// halves are deleted: a retired key signs nothing more).
pub const RETIRED_DIR: &str = "retired";

/// Current format version of [`WrappedKey`].
pub const WRAPPED_KEY_VERSION: u32 = 1;

/// Length of the master key and of data keys, in bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// Ed25519 PKCS#8 v2 documents produced by ring are 83 bytes; anything far off
/// is not a key ring wrote.
const MAX_PKCS8_LEN: usize = 256;

/// Domain-separation prefix of the master key id hash.
const KEY_ID_DOMAIN: &[u8] = b"anyu-master-key-id";

/// Fills an array from the operating system's secure random generator.
///
/// Panics only if the OS generator fails, which ring treats as unrecoverable.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    SystemRandom::new()
        .fill(&mut out)
        .expect("the operating system's secure random generator failed");
    out
}

/// Overwrites a buffer with zeros in a way the optimiser does not remove.
pub(crate) fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// A 256-bit secret key that is overwritten with zeros when dropped.
///
/// Not `Clone` and not `Debug`-printable, so copies of key material stay rare and
/// deliberate.
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// Wraps existing key bytes (the caller should wipe its own copy).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> SecretKey {
        SecretKey(bytes)
    }

    /// A fresh random key, e.g. a per-version data key.
    pub fn generate() -> SecretKey {
        SecretKey(random_bytes())
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// A data key sealed under the master key (AES-256-GCM), as stored in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedKey {
    /// Format version, currently [`WRAPPED_KEY_VERSION`].
    pub v: u32,
    /// [Key id](Keyring::key_id) of the master key that sealed the data key.
    pub key_id: String,
    /// 96-bit GCM nonce, hex.
    pub nonce: String,
    /// Sealed data key followed by the 128-bit GCM tag, hex.
    pub ciphertext: String,
}

/// The platform's keys, loaded in memory.
pub struct Keyring {
    master: SecretKey,
    key_id: String,
    signing: Arc<Ed25519KeyPair>,
    public_key: Vec<u8>,
    dir: PathBuf,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_id", &self.key_id)
            .field("public_key", &hex::encode(&self.public_key))
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The key id of a master key: the first 16 hex characters of
/// SHA-256("anyu-master-key-id" || key). Safe to publish; identifies, never reveals.
pub fn master_key_id(key: &[u8; KEY_LEN]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(KEY_ID_DOMAIN);
    ctx.update(key);
    let digest = ctx.finish();
    hex::encode(&digest.as_ref()[..8])
}

impl Keyring {
    /// Creates `keys_dir` (mode 0700) with a new master key and signing key.
    ///
    /// Fails with [`Error::Conflict`] if any key file already exists; existing keys
    /// are never overwritten (losing the master key loses every dataset).
    pub fn init(keys_dir: &Path) -> Result<Keyring> {
        create_private_dir(keys_dir)?;
        for name in [MASTER_KEY_FILE, SIGNING_KEY_FILE, SIGNING_PUB_FILE] {
            let path = keys_dir.join(name);
            if path.symlink_metadata().is_ok() {
                return Err(Error::Conflict(format!(
                    "key file {} already exists; refusing to overwrite keys",
                    path.display()
                )));
            }
        }

        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| Error::Crypto("could not generate the Ed25519 signing key".into()))?;
        let signing = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|e| Error::Crypto(format!("generated signing key rejected: {e}")))?;
        let public_hex = format!("{}\n", hex::encode(signing.public_key().as_ref()));
        let mut master = [0u8; KEY_LEN];
        rng.fill(&mut master)
            .map_err(|_| Error::Crypto("the secure random generator failed".into()))?;

        // Master key last: a keys dir with a master key is a complete one.
        write_new_file(&keys_dir.join(SIGNING_KEY_FILE), pkcs8.as_ref(), 0o600)?;
        write_new_file(
            &keys_dir.join(SIGNING_PUB_FILE),
            public_hex.as_bytes(),
            0o644,
        )?;
        let written = write_new_file(&keys_dir.join(MASTER_KEY_FILE), &master, 0o600);
        wipe(&mut master);
        written?;
        sync_dir(keys_dir)?;

        Keyring::open(keys_dir)
    }

    /// Loads the keys written by [`Keyring::init`].
    ///
    /// Refuses secret key files with any group or other permission bits, a master
    /// key that is not exactly 32 bytes, an invalid PKCS#8 document, and a
    /// `signing.pub` that does not match the signing key.
    pub fn open(keys_dir: &Path) -> Result<Keyring> {
        let master_path = keys_dir.join(MASTER_KEY_FILE);
        let mut master_bytes = read_secret_file(&master_path, KEY_LEN)?;
        if master_bytes.len() != KEY_LEN {
            let len = master_bytes.len();
            wipe(&mut master_bytes);
            return Err(Error::Crypto(format!(
                "master key file {} has {len} bytes, expected {KEY_LEN}",
                master_path.display()
            )));
        }
        let mut master = [0u8; KEY_LEN];
        master.copy_from_slice(&master_bytes);
        wipe(&mut master_bytes);
        let master = SecretKey::from_bytes(master);
        let key_id = master_key_id(master.as_bytes());

        let signing_path = keys_dir.join(SIGNING_KEY_FILE);
        let mut pkcs8 = read_secret_file(&signing_path, MAX_PKCS8_LEN)?;
        let signing = Ed25519KeyPair::from_pkcs8(&pkcs8);
        wipe(&mut pkcs8);
        let signing = signing.map_err(|e| {
            Error::Crypto(format!(
                "signing key file {} is not a valid Ed25519 PKCS#8 key: {e}",
                signing_path.display()
            ))
        })?;
        let public_key = signing.public_key().as_ref().to_vec();

        let pub_path = keys_dir.join(SIGNING_PUB_FILE);
        let pub_text = fs::read_to_string(&pub_path).map_err(Error::io("read", &pub_path))?;
        let stored_pub = hex::decode(pub_text.trim()).map_err(|_| {
            Error::Crypto(format!("public key file {} is not hex", pub_path.display()))
        })?;
        if stored_pub != public_key {
            return Err(Error::Crypto(format!(
                "public key file {} does not match signing key {}",
                pub_path.display(),
                signing_path.display()
            )));
        }

        Ok(Keyring {
            master,
            key_id,
            signing: Arc::new(signing),
            public_key,
            dir: keys_dir.to_path_buf(),
        })
    }

    /// Starts a signing-key rotation: a new Ed25519 key pair written beside
    /// the current one (`signing.next.pk8`, `signing.next.pub`); returns its
    /// public key. A rotation staged before and never finished is replaced.
    pub fn stage_rotation(keys_dir: &Path) -> Result<Vec<u8>> {
        Self::abandon_rotation(keys_dir)?;
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| Error::Crypto("could not generate the Ed25519 signing key".into()))?;
        let next = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|e| Error::Crypto(format!("generated signing key rejected: {e}")))?;
        let public = next.public_key().as_ref().to_vec();
        write_new_file(&keys_dir.join(NEXT_SIGNING_KEY_FILE), pkcs8.as_ref(), 0o600)?;
        write_new_file(
            &keys_dir.join(NEXT_SIGNING_PUB_FILE),
            format!("{}\n", hex::encode(&public)).as_bytes(),
            0o600,
        )?;
        sync_dir(keys_dir)?;
        Ok(public)
    }

    /// The public key of a staged rotation, if one is staged.
    pub fn staged_rotation(keys_dir: &Path) -> Result<Option<Vec<u8>>> {
        let path = keys_dir.join(NEXT_SIGNING_PUB_FILE);
        if !keys_dir.join(NEXT_SIGNING_KEY_FILE).exists() {
            return Ok(None);
        }
        let text = fs::read_to_string(&path).map_err(Error::io("read", &path))?;
        hex::decode(text.trim())
            .map(Some)
            .map_err(|_| Error::Crypto(format!("public key file {} is not hex", path.display())))
    }

    /// Drops a staged rotation (its event never reached the log).
    pub fn abandon_rotation(keys_dir: &Path) -> Result<()> {
        for name in [NEXT_SIGNING_KEY_FILE, NEXT_SIGNING_PUB_FILE] {
            let path = keys_dir.join(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &path)(e)),
            }
        }
        Ok(())
    }

    /// Finishes a staged rotation once the log holds its event: the current
    /// public key goes to `retired/<key id>.pub`, the next key pair replaces
    /// the current one (the old private key is gone). Each step is a rename,
    /// so a crash part-way is finished by calling this again.
    pub fn finish_rotation(keys_dir: &Path) -> Result<()> {
        let next_key = keys_dir.join(NEXT_SIGNING_KEY_FILE);
        let next_pub = keys_dir.join(NEXT_SIGNING_PUB_FILE);
        let pub_path = keys_dir.join(SIGNING_PUB_FILE);
        if next_key.exists() && pub_path.exists() {
            let current = fs::read_to_string(&pub_path).map_err(Error::io("read", &pub_path))?;
            let staged = fs::read_to_string(&next_pub).unwrap_or_default();
            if current.trim() != staged.trim() {
                let bytes = hex::decode(current.trim()).map_err(|_| {
                    Error::Crypto(format!("public key file {} is not hex", pub_path.display()))
                })?;
                let retired = keys_dir.join(RETIRED_DIR);
                create_private_dir(&retired)?;
                let to = retired.join(format!("{}.pub", crate::audit::key_fingerprint(&bytes)));
                fs::rename(&pub_path, &to).map_err(Error::io("rename", &pub_path))?;
                sync_dir(&retired)?;
            }
        }
        if next_key.exists() {
            let to = keys_dir.join(SIGNING_KEY_FILE);
            fs::rename(&next_key, &to).map_err(Error::io("rename", &next_key))?;
        }
        if next_pub.exists() {
            fs::rename(&next_pub, &pub_path).map_err(Error::io("rename", &next_pub))?;
        }
        sync_dir(keys_dir)
    }

    /// The public keys rotated out, read from `retired/` (any order).
    pub fn retired_public_keys(keys_dir: &Path) -> Result<Vec<Vec<u8>>> {
        let dir = keys_dir.join(RETIRED_DIR);
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut keys = Vec::new();
        for e in entries {
            let path = e.map_err(Error::io("read directory", &dir))?.path();
            if path.extension().is_some_and(|x| x == "pub") {
                let text = fs::read_to_string(&path).map_err(Error::io("read", &path))?;
                if let Ok(k) = hex::decode(text.trim()) {
                    keys.push(k);
                }
            }
        }
        Ok(keys)
    }

    /// Id of the master key (16 hex characters); see [`master_key_id`].
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// A key for one purpose, derived from the master key: HMAC-SHA256(master,
    /// "anyu-derive:" || `label`). Stable for as long as the master key is.
    pub fn derive(&self, label: &str) -> [u8; KEY_LEN] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.master.as_bytes());
        let mut ctx = ring::hmac::Context::with_key(&key);
        ctx.update(b"anyu-derive:");
        ctx.update(label.as_bytes());
        let tag = ctx.sign();
        let mut out = [0u8; KEY_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// The directory the keys were loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Seals a data key under the master key. `aad` must be given again to unwrap.
    pub fn wrap_data_key(&self, dek: &[u8; KEY_LEN], aad: &[u8]) -> Result<WrappedKey> {
        let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
        let mut buf = Vec::with_capacity(KEY_LEN + AES_256_GCM.tag_len());
        buf.extend_from_slice(dek);
        let sealed = self.aead_key().seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(aad),
            &mut buf,
        );
        if sealed.is_err() {
            wipe(&mut buf);
            return Err(Error::Crypto("could not seal the data key".into()));
        }
        Ok(WrappedKey {
            v: WRAPPED_KEY_VERSION,
            key_id: self.key_id.clone(),
            nonce: hex::encode(nonce_bytes),
            ciphertext: hex::encode(&buf),
        })
    }

    /// Opens a data key sealed by [`Keyring::wrap_data_key`] with the same `aad`.
    ///
    /// A key sealed by another master key is reported by both key ids; a tampered
    /// key or a wrong `aad` fails authentication.
    pub fn unwrap_data_key(&self, wrapped: &WrappedKey, aad: &[u8]) -> Result<SecretKey> {
        if wrapped.v != WRAPPED_KEY_VERSION {
            return Err(Error::Crypto(format!(
                "wrapped data key has unsupported format v{}",
                wrapped.v
            )));
        }
        if wrapped.key_id != self.key_id {
            return Err(Error::Crypto(format!(
                "data key was wrapped by master key {}, this keyring holds {}",
                printable_key_id(&wrapped.key_id),
                self.key_id
            )));
        }
        let nonce: [u8; NONCE_LEN] = hex::decode(&wrapped.nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| Error::Crypto("wrapped data key has a malformed nonce".into()))?;
        let mut buf = hex::decode(&wrapped.ciphertext)
            .map_err(|_| Error::Crypto("wrapped data key has a malformed ciphertext".into()))?;
        if buf.len() != KEY_LEN + AES_256_GCM.tag_len() {
            return Err(Error::Crypto(format!(
                "wrapped data key has {} bytes, expected {}",
                buf.len(),
                KEY_LEN + AES_256_GCM.tag_len()
            )));
        }
        let opened = self
            .aead_key()
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .map(|plain| {
                let mut key = [0u8; KEY_LEN];
                key.copy_from_slice(plain);
                SecretKey::from_bytes(key)
            });
        wipe(&mut buf);
        opened.map_err(|_| Error::Crypto("data key failed authentication".into()))
    }

    /// The platform's Ed25519 key pair.
    pub fn signing_key(&self) -> Arc<Ed25519KeyPair> {
        Arc::clone(&self.signing)
    }

    /// The platform's Ed25519 public key (32 bytes).
    pub fn public_key(&self) -> Vec<u8> {
        self.public_key.clone()
    }

    /// Signs `msg` with the platform key (64-byte Ed25519 signature).
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.signing.sign(msg).as_ref().to_vec()
    }

    fn aead_key(&self) -> LessSafeKey {
        // A fixed-length key is always accepted by ring.
        LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, self.master.as_bytes())
                .expect("AES-256 key has the right length"),
        )
    }
}

/// Checks an Ed25519 signature made by [`Keyring::sign`].
pub fn verify_signature(public_key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(msg, sig)
        .is_ok()
}

/// A key id read from a file is untrusted text: show it only if it looks like one.
fn printable_key_id(id: &str) -> &str {
    if id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        id
    } else {
        "<malformed id>"
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !dir.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(Error::io("create directory", dir))?;
        }
        // Tighten a pre-existing directory too (e.g. created by an installer).
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(Error::io("set permissions of", dir))?;
    }
    #[cfg(not(unix))]
    fs::create_dir_all(dir).map_err(Error::io("create directory", dir))?;
    Ok(())
}

/// Writes `bytes` to `path` atomically, failing if `path` exists.
fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4()));
    let result = (|| {
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = opts.open(&tmp).map_err(Error::io("create", &tmp))?;
        f.write_all(bytes).map_err(Error::io("write", &tmp))?;
        f.sync_all().map_err(Error::io("fsync", &tmp))?;
        // hard_link fails with AlreadyExists instead of replacing: no overwrite race.
        fs::hard_link(&tmp, path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Conflict(format!(
                    "key file {} already exists; refusing to overwrite keys",
                    path.display()
                ))
            } else {
                Error::io("link", path)(e)
            }
        })
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Reads a secret file of at most `max_len` bytes, refusing loose permissions.
fn read_secret_file(path: &Path, max_len: usize) -> Result<Vec<u8>> {
    let mut f = File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound(format!(
                "key file {} (run `anyu init` to create keys)",
                path.display()
            ))
        } else {
            Error::io("open", path)(e)
        }
    })?;
    let meta = f.metadata().map_err(Error::io("stat", path))?;
    if !meta.is_file() {
        return Err(Error::Crypto(format!(
            "key file {} is not a regular file",
            path.display()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::Crypto(format!(
                "key file {} has mode {mode:04o}, which lets group or others read it; \
                 run `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
    }
    let mut buf = Vec::with_capacity(max_len + 1);
    // Read one byte more than allowed so an oversized file is detected, not truncated.
    (&mut f)
        .take(max_len as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(Error::io("read", path))?;
    if buf.len() > max_len {
        wipe(&mut buf);
        return Err(Error::Crypto(format!(
            "key file {} is larger than {max_len} bytes",
            path.display()
        )));
    }
    Ok(buf)
}

/// Makes a directory's entries durable (new files, renames).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("fsync directory", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> (tempfile::TempDir, Keyring) {
        let dir = tempfile::tempdir().unwrap();
        let k = Keyring::init(&dir.path().join("keys")).unwrap();
        (dir, k)
    }

    #[test]
    fn wrap_unwrap_round_trip() {
        let (_d, k) = keyring();
        let dek: [u8; 32] = random_bytes();
        let w = k.wrap_data_key(&dek, b"anyu:ds@v1").unwrap();
        assert_eq!(w.key_id, k.key_id());
        assert_eq!(w.nonce.len(), 24);
        assert_eq!(w.ciphertext.len(), 2 * (32 + 16));
        assert!(!w.ciphertext.contains(&hex::encode(dek)));
        let back = k.unwrap_data_key(&w, b"anyu:ds@v1").unwrap();
        assert_eq!(back.as_bytes(), &dek);
        // Fresh nonce every time.
        let w2 = k.wrap_data_key(&dek, b"anyu:ds@v1").unwrap();
        assert_ne!(w.nonce, w2.nonce);
        assert_ne!(w.ciphertext, w2.ciphertext);
    }

    #[test]
    fn wrong_aad_fails_authentication() {
        let (_d, k) = keyring();
        let w = k.wrap_data_key(&random_bytes(), b"anyu:ds@v1").unwrap();
        let err = k.unwrap_data_key(&w, b"anyu:ds@v2").unwrap_err();
        assert_eq!(err.to_string(), "crypto: data key failed authentication");
        assert_eq!(err.code(), "crypto_error");
    }

    #[test]
    fn tampered_ciphertext_and_nonce_fail_authentication() {
        let (_d, k) = keyring();
        let w = k.wrap_data_key(&random_bytes(), b"aad").unwrap();
        for field in 0..2 {
            let mut t = w.clone();
            let s = if field == 0 {
                &mut t.ciphertext
            } else {
                &mut t.nonce
            };
            let mut bytes = hex::decode(&*s).unwrap();
            bytes[3] ^= 0x01;
            *s = hex::encode(bytes);
            let err = k.unwrap_data_key(&t, b"aad").unwrap_err();
            assert_eq!(err.to_string(), "crypto: data key failed authentication");
        }
        // Truncated or non-hex ciphertext is malformed, not a panic.
        let mut t = w.clone();
        t.ciphertext.truncate(10);
        assert!(matches!(
            k.unwrap_data_key(&t, b"aad"),
            Err(Error::Crypto(_))
        ));
        let mut t = w.clone();
        t.ciphertext.replace_range(0..2, "zz");
        assert!(matches!(
            k.unwrap_data_key(&t, b"aad"),
            Err(Error::Crypto(_))
        ));
        let mut t = w;
        t.v = 2;
        assert!(matches!(
            k.unwrap_data_key(&t, b"aad"),
            Err(Error::Crypto(_))
        ));
    }

    #[test]
    fn other_master_key_is_named() {
        let (_d1, k1) = keyring();
        let (_d2, k2) = keyring();
        assert_ne!(k1.key_id(), k2.key_id());
        let w = k1.wrap_data_key(&random_bytes(), b"aad").unwrap();
        let err = k2.unwrap_data_key(&w, b"aad").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "crypto: data key was wrapped by master key {}, this keyring holds {}",
                k1.key_id(),
                k2.key_id()
            )
        );
        // Same id but forged: authentication, not a silent success.
        let mut forged = w;
        forged.key_id = k2.key_id().to_string();
        let err = k2.unwrap_data_key(&forged, b"aad").unwrap_err();
        assert_eq!(err.to_string(), "crypto: data key failed authentication");
    }

    #[test]
    fn key_id_is_stable_and_domain_separated() {
        let key = [7u8; 32];
        let id = master_key_id(&key);
        assert_eq!(id.len(), 16);
        assert_eq!(id, master_key_id(&key));
        let plain = ring::digest::digest(&ring::digest::SHA256, &key);
        assert_ne!(id, hex::encode(&plain.as_ref()[..8]));
    }

    #[test]
    fn sign_and_verify() {
        let (_d, k) = keyring();
        let sig = k.sign(b"checkpoint 42");
        assert_eq!(sig.len(), 64);
        assert!(verify_signature(&k.public_key(), b"checkpoint 42", &sig));
        assert!(!verify_signature(&k.public_key(), b"checkpoint 43", &sig));
        let mut bad = sig.clone();
        bad[0] ^= 1;
        assert!(!verify_signature(&k.public_key(), b"checkpoint 42", &bad));
        assert!(!verify_signature(b"short", b"checkpoint 42", &sig));
    }

    #[test]
    fn reopen_gives_same_keys() {
        let (d, k) = keyring();
        let again = Keyring::open(&d.path().join("keys")).unwrap();
        assert_eq!(again.key_id(), k.key_id());
        assert_eq!(again.public_key(), k.public_key());
        let w = k.wrap_data_key(&[1; 32], b"x").unwrap();
        assert_eq!(
            again.unwrap_data_key(&w, b"x").unwrap().as_bytes(),
            &[1; 32]
        );
        assert!(!format!("{k:?}").contains(&hex::encode(k.master.as_bytes())));
    }
}
