//! Directory layout of dataset versions and the `key.json` format.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::encryption::decrypt::{FileDecryptionProperties, KeyRetriever};
use parquet::errors::ParquetError;
use serde::{Deserialize, Serialize};

use crate::keyring::{Keyring, SecretKey, WrappedKey};
use crate::{Error, Result};

/// Name of the Parquet file inside a version directory.
pub const DATA_FILE: &str = "data.parquet";
/// Name of the wrapped-key file inside a version directory.
pub const KEY_FILE: &str = "key.json";
/// Marker file of an unencrypted benchmark version (see
/// [`VersionWriter::create_plaintext`](super::VersionWriter::create_plaintext)).
pub const PLAINTEXT_MARKER_FILE: &str = "PLAINTEXT-BENCHMARK-ONLY";
/// Current format version of `key.json`.
pub const VERSION_KEY_FORMAT: u32 = 1;

/// First and last four bytes of a Parquet file with an encrypted footer.
pub(crate) const ENCRYPTED_MAGIC: &[u8; 4] = b"PARE";

/// Prefix of temporary version directories.
pub(crate) const TMP_PREFIX: &str = ".tmp-";

/// Content of `key.json`: the version's data key, wrapped by the master key, the
/// version it belongs to (checked against the directory it is found in), and
/// digests of `data.parquet` authenticated with a MAC keyed by the data key.
///
/// AES-GCM authenticates every page and the footer of the Parquet file, but the
/// parquet reader ignores a few framing bytes (the file's leading magic and
/// module length prefixes) and tolerates some changes in the plaintext
/// `FileCryptoMetaData`. The tail digest closes that gap for the footer region on
/// every open; the whole-file digest is checked by [`verify_version`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionKey {
    /// Format version, currently [`VERSION_KEY_FORMAT`].
    pub format: u32,
    /// Dataset this key belongs to.
    pub dataset_id: String,
    /// Version number this key belongs to.
    pub version: u64,
    /// Parquet encryption algorithm of `data.parquet` (always `AES_GCM_V1`).
    pub algorithm: String,
    /// The data key, sealed with AAD [`version_aad`].
    pub wrapped_key: WrappedKey,
    /// Size of `data.parquet` in bytes.
    pub data_len: u64,
    /// SHA-256 of `data.parquet`, hex.
    pub data_sha256: String,
    /// Length of the footer region (crypto metadata, encrypted footer, length, magic).
    pub tail_len: u64,
    /// SHA-256 of the last `tail_len` bytes of `data.parquet`, hex.
    pub tail_sha256: String,
    /// HMAC-SHA256 over all fields above, keyed by a key derived from the data key, hex.
    pub mac: String,
}

impl VersionKey {
    /// The bytes the MAC covers: every field but `mac`, unambiguously framed.
    fn mac_input(&self) -> Vec<u8> {
        let w = &self.wrapped_key;
        format!(
            "anyu-version-key-mac-v1\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.format,
            self.dataset_id,
            self.version,
            self.algorithm,
            w.v,
            w.key_id,
            w.nonce,
            w.ciphertext,
            self.data_len,
            self.data_sha256,
            self.tail_len,
            self.tail_sha256
        )
        .into_bytes()
    }

    /// Sets `mac` from the data key.
    pub(crate) fn seal(&mut self, dek: &SecretKey) {
        let tag = ring::hmac::sign(&mac_key(dek), &self.mac_input());
        self.mac = hex::encode(tag.as_ref());
    }

    /// Checks `mac` against the data key (constant time).
    fn check_mac(&self, dek: &SecretKey) -> bool {
        match hex::decode(&self.mac) {
            Ok(tag) => ring::hmac::verify(&mac_key(dek), &self.mac_input(), &tag).is_ok(),
            Err(_) => false,
        }
    }
}

/// A MAC key derived from the data key, so the AES key is never used for HMAC.
fn mac_key(dek: &SecretKey) -> ring::hmac::Key {
    let root = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, dek.as_bytes());
    let derived = ring::hmac::sign(&root, b"anyu:version-key-mac");
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref())
}

/// Checks that a dataset id is safe as one path component: 1–128 characters of
/// ASCII letters, digits, `_`, `-` and `.`, not starting with `.`.
pub fn validate_dataset_id(dataset_id: &str) -> Result<()> {
    let ok = !dataset_id.is_empty()
        && dataset_id.len() <= 128
        && !dataset_id.starts_with('.')
        && dataset_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(
            "dataset id must be 1-128 ASCII letters, digits, '_', '-' or '.', not starting with '.'"
                .into(),
        ))
    }
}

/// `<datasets_root>/<dataset_id>/v<version>`.
pub fn version_dir(datasets_root: &Path, dataset_id: &str, version: u64) -> Result<PathBuf> {
    validate_dataset_id(dataset_id)?;
    if version == 0 {
        return Err(Error::InvalidArgument("version numbers start at 1".into()));
    }
    Ok(datasets_root.join(dataset_id).join(format!("v{version}")))
}

/// Additional authenticated data binding a data key and a Parquet file to one
/// dataset version: `anyu:<dataset_id>@v<version>`.
pub fn version_aad(dataset_id: &str, version: u64) -> Vec<u8> {
    format!("anyu:{dataset_id}@v{version}").into_bytes()
}

/// Parses a `v<N>` directory name (no leading zeros, N ≥ 1).
pub(crate) fn parse_version_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix('v')?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Splits a version directory path into its dataset id and version number.
pub(crate) fn identify_version_dir(version_dir: &Path) -> Result<(String, u64)> {
    let bad = || {
        Error::InvalidArgument(format!(
            "{} is not a dataset version directory (<datasets>/<dataset_id>/v<N>)",
            version_dir.display()
        ))
    };
    let version = version_dir
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_version_name)
        .ok_or_else(bad)?;
    let dataset_id = version_dir
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .ok_or_else(bad)?;
    validate_dataset_id(dataset_id).map_err(|_| bad())?;
    Ok((dataset_id.to_string(), version))
}

/// The next free version number of a dataset: 1 + the highest existing `v<N>`
/// (1 if the dataset has none). Temporary directories do not count.
pub fn next_version(datasets_root: &Path, dataset_id: &str) -> Result<u64> {
    validate_dataset_id(dataset_id)?;
    let dir = datasets_root.join(dataset_id);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(1),
        Err(e) => return Err(Error::io("list", &dir)(e)),
    };
    let mut max = 0;
    for entry in entries {
        let entry = entry.map_err(Error::io("list", &dir))?;
        if let Some(v) = entry.file_name().to_str().and_then(parse_version_name) {
            max = max.max(v);
        }
    }
    max.checked_add(1)
        .ok_or_else(|| Error::Internal("version numbers exhausted".into()))
}

/// Removes temporary directories left by writers that crashed (a process killed
/// mid-import cannot run its cleanup). Returns how many were removed. Call it only
/// when no import of this dataset is running.
pub fn remove_stale_temp_dirs(datasets_root: &Path, dataset_id: &str) -> Result<usize> {
    validate_dataset_id(dataset_id)?;
    let dir = datasets_root.join(dataset_id);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("list", &dir)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(Error::io("list", &dir))?;
        let is_tmp = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TMP_PREFIX));
        if is_tmp {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(Error::io("remove", &path))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Reads and checks `key.json` of a version directory, unwraps its data key and
/// checks the key file's MAC.
pub(crate) fn load_version_key(
    keyring: &Keyring,
    version_dir: &Path,
) -> Result<(VersionKey, SecretKey)> {
    let (dataset_id, version) = identify_version_dir(version_dir)?;
    let key_path = version_dir.join(KEY_FILE);
    let text = match fs::read(&key_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let hint = if version_dir.join(PLAINTEXT_MARKER_FILE).exists() {
                " (this is an unencrypted benchmark version)"
            } else {
                ""
            };
            return Err(Error::Crypto(format!(
                "key file {} is missing; the version cannot be decrypted{hint}",
                key_path.display()
            )));
        }
        Err(e) => return Err(Error::io("read", &key_path)(e)),
    };
    let key: VersionKey = serde_json::from_slice(&text)
        .map_err(|e| Error::Crypto(format!("key file {} is malformed: {e}", key_path.display())))?;
    if key.format != VERSION_KEY_FORMAT {
        return Err(Error::Crypto(format!(
            "key file {} has unsupported format {}",
            key_path.display(),
            key.format
        )));
    }
    if key.dataset_id != dataset_id || key.version != version {
        return Err(Error::Crypto(format!(
            "key file {} belongs to another dataset version than its directory",
            key_path.display()
        )));
    }
    if key.algorithm != "AES_GCM_V1" {
        return Err(Error::Crypto(format!(
            "key file {} names an unsupported algorithm",
            key_path.display()
        )));
    }
    let dek = keyring.unwrap_data_key(&key.wrapped_key, &version_aad(&dataset_id, version))?;
    if !key.check_mac(&dek) {
        return Err(Error::Crypto(format!(
            "key file {} failed authentication",
            key_path.display()
        )));
    }
    Ok((key, dek))
}

/// Hands the version's data key to the parquet reader, but only for a file whose
/// key metadata names the master key that wrapped it: a tampered or foreign footer
/// is refused before any decryption.
struct VersionKeyRetriever {
    key_id: String,
    dek: SecretKey,
}

impl KeyRetriever for VersionKeyRetriever {
    fn retrieve_key(&self, key_metadata: &[u8]) -> parquet::errors::Result<Vec<u8>> {
        if key_metadata != self.key_id.as_bytes() {
            return Err(ParquetError::General(
                "data file key metadata does not name this keyring's master key".into(),
            ));
        }
        Ok(self.dek.as_bytes().to_vec())
    }
}

/// Checks the bytes the parquet reader does not authenticate itself: the leading
/// magic, and the footer region against the digest in `key.json`. Costs one small
/// read per file open.
fn check_framing(data_path: &Path, key: &VersionKey) -> Result<()> {
    let corrupt = |what: &str| {
        Error::Crypto(format!(
            "data file {} failed authentication: {what}",
            data_path.display()
        ))
    };
    let mut f = fs::File::open(data_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound(format!("data file {}", data_path.display()))
        } else {
            Error::io("open", data_path)(e)
        }
    })?;
    let len = f.metadata().map_err(Error::io("stat", data_path))?.len();
    if len != key.data_len || key.tail_len > len || key.tail_len < 12 {
        return Err(corrupt(
            "its size differs from the one recorded in key.json",
        ));
    }
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic)
        .map_err(Error::io("read", data_path))?;
    if &magic != ENCRYPTED_MAGIC {
        return Err(corrupt(
            "it does not start with the encrypted Parquet magic",
        ));
    }
    f.seek(SeekFrom::Start(len - key.tail_len))
        .map_err(Error::io("seek", data_path))?;
    let mut tail = vec![0u8; key.tail_len as usize];
    f.read_exact(&mut tail)
        .map_err(Error::io("read", data_path))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &tail);
    if hex::encode(digest.as_ref()) != key.tail_sha256 {
        return Err(corrupt("its footer region was modified"));
    }
    Ok(())
}

/// Length of the footer region of a Parquet file given its last 8 bytes.
pub(crate) fn tail_len(last8: &[u8; 8]) -> u64 {
    u64::from(u32::from_le_bytes([last8[0], last8[1], last8[2], last8[3]])) + 8
}

/// Checks a whole version: key file, MAC, and the SHA-256 of every byte of
/// `data.parquet`. Reads the full file, so use it for audits and after copies,
/// not on the query path (which authenticates what it reads as it reads it).
pub fn verify_version(keyring: &Keyring, version_dir: &Path) -> Result<()> {
    let (key, _dek) = load_version_key(keyring, version_dir)?;
    let data_path = version_dir.join(DATA_FILE);
    check_framing(&data_path, &key)?;
    let mut f = fs::File::open(&data_path).map_err(Error::io("open", &data_path))?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(Error::io("read", &data_path))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    if hex::encode(ctx.finish().as_ref()) != key.data_sha256 {
        return Err(Error::Crypto(format!(
            "data file {} failed authentication: its content was modified",
            data_path.display()
        )));
    }
    Ok(())
}

/// Parquet decryption properties of one version: its unwrapped data key and AAD
/// prefix. Used by both read paths; also checks the framing bytes the parquet
/// reader does not authenticate (see [`VersionKey`]).
pub fn decryption_properties(
    keyring: &Keyring,
    version_dir: &Path,
) -> Result<Arc<FileDecryptionProperties>> {
    let (dataset_id, version) = identify_version_dir(version_dir)?;
    let (key, dek) = load_version_key(keyring, version_dir)?;
    check_framing(&version_dir.join(DATA_FILE), &key)?;
    let retriever = VersionKeyRetriever {
        key_id: keyring.key_id().to_string(),
        dek,
    };
    FileDecryptionProperties::with_key_retriever(Arc::new(retriever))
        .with_aad_prefix(version_aad(&dataset_id, version))
        .build()
        .map_err(|e| Error::Internal(format!("building decryption properties: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names() {
        assert_eq!(parse_version_name("v1"), Some(1));
        assert_eq!(parse_version_name("v42"), Some(42));
        for bad in ["v0", "v01", "v", "1", "v1a", "V1", "v-1", ".tmp-v1"] {
            assert_eq!(parse_version_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn dataset_ids() {
        for ok in ["social_insurance", "a", "PUMS-pid.2024"] {
            validate_dataset_id(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "社保",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(validate_dataset_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifies_version_dirs() {
        let (id, v) = identify_version_dir(Path::new("/data/datasets/ds_1/v12")).unwrap();
        assert_eq!((id.as_str(), v), ("ds_1", 12));
        assert!(identify_version_dir(Path::new("/data/datasets/ds_1/.tmp-x")).is_err());
        assert!(identify_version_dir(Path::new("v1")).is_err());
    }
}
