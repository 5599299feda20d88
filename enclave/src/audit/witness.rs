//! The head witness: a small signed file next to the database, rewritten after
//! committed batches, stating the newest chain head and the hashes of the events
//! since the last checkpoint. Without it, deleting the newest events (after the
//! last checkpoint) would leave a chain that verifies.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::signature::Ed25519KeyPair;
use serde::{Deserialize, Serialize};

use super::format::{Hash, HeadMessage, sha256};
use super::keys::KeySchedule;
use crate::{Error, Result};

/// Path of the witness for the database at `db`: same name, extension `head`.
pub(crate) fn witness_path(db: &Path) -> PathBuf {
    db.with_extension("head")
}

/// What the writer publishes after each commit.
#[derive(Debug, Clone)]
pub(crate) struct HeadState {
    pub seq: u64,
    pub hash: Hash,
    pub checkpoint_seq: u64,
    /// Concatenated hashes of the events (checkpoint_seq, seq].
    pub tail: Vec<u8>,
    pub closed: bool,
}

/// The file, format v1 (one JSON object and a newline).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WitnessFile {
    v: u32,
    seq: u64,
    hash: String,
    checkpoint_seq: u64,
    closed: bool,
    time: String,
    key_id: String,
    /// Base64 (standard, padded) of the concatenated 32-byte tail hashes.
    tail: String,
    signature: String,
}

/// A witness read back from disk, not yet checked.
#[derive(Debug, Clone)]
pub(crate) struct Witness {
    pub state: HeadState,
    pub time: String,
    pub key_id: String,
    pub signature: Vec<u8>,
}

impl Witness {
    fn message(&self) -> Vec<u8> {
        HeadMessage {
            seq: self.state.seq,
            hash: &self.state.hash,
            checkpoint_seq: self.state.checkpoint_seq,
            tail_digest: &sha256(&self.state.tail),
            closed: self.state.closed,
            time: &self.time,
            key_id: &self.key_id,
        }
        .to_bytes()
    }

    /// Signature valid under `public_key`, and the tail is consistent with the
    /// head it claims.
    pub(crate) fn check(&self, public_key: &[u8]) -> std::result::Result<(), String> {
        self.check_keys(&KeySchedule::single(public_key))
    }

    /// [`Self::check`] under the key in force at the head's seq.
    pub(crate) fn check_keys(&self, keys: &KeySchedule) -> std::result::Result<(), String> {
        let seq = self.state.seq;
        if !keys.verifies(seq, &self.message(), &self.signature) {
            return Err(if keys.names(seq, &self.key_id) {
                "the head witness signature does not verify: the file was forged or altered".into()
            } else {
                keys.explain(seq, &self.key_id, "the head witness")
            });
        }
        let s = &self.state;
        let n = s.seq.checked_sub(s.checkpoint_seq);
        let consistent = s.tail.len().is_multiple_of(32)
            && n == Some((s.tail.len() / 32) as u64)
            && (s.tail.is_empty() || s.tail[s.tail.len() - 32..] == s.hash);
        if !consistent {
            return Err("the head witness is signed but internally inconsistent".into());
        }
        Ok(())
    }
}

/// Serializes and signs `state`.
pub(crate) fn encode(
    state: &HeadState,
    signer: &Ed25519KeyPair,
    key_id: &str,
    time: &str,
) -> Vec<u8> {
    let msg = HeadMessage {
        seq: state.seq,
        hash: &state.hash,
        checkpoint_seq: state.checkpoint_seq,
        tail_digest: &sha256(&state.tail),
        closed: state.closed,
        time,
        key_id,
    }
    .to_bytes();
    let file = WitnessFile {
        v: 1,
        seq: state.seq,
        hash: hex::encode(state.hash),
        checkpoint_seq: state.checkpoint_seq,
        closed: state.closed,
        time: time.to_owned(),
        key_id: key_id.to_owned(),
        tail: base64::engine::general_purpose::STANDARD.encode(&state.tail),
        signature: hex::encode(signer.sign(&msg).as_ref()),
    };
    let mut out = serde_json::to_vec(&file).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Reads the witness. `Ok(None)` when the file does not exist; `Err(message)`
/// when it exists but cannot be parsed.
pub(crate) fn read(db: &Path) -> std::result::Result<Option<Witness>, String> {
    let path = witness_path(db);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => return Err("the head witness file cannot be read".into()),
    };
    parse(&bytes).map(Some)
}

/// A signed head record (the witness file's format), as kept by an auditor
/// or a witness directory.
pub(crate) fn parse(bytes: &[u8]) -> std::result::Result<Witness, String> {
    let unreadable = || "the head witness file is not a valid witness (format v1)".to_string();
    let f: WitnessFile = serde_json::from_slice(bytes).map_err(|_| unreadable())?;
    if f.v != 1 {
        return Err("the head witness file has an unsupported format version".into());
    }
    let hash = super::format::decode_hash(&f.hash).ok_or_else(unreadable)?;
    let tail = base64::engine::general_purpose::STANDARD
        .decode(&f.tail)
        .map_err(|_| unreadable())?;
    let signature = hex::decode(&f.signature).map_err(|_| unreadable())?;
    Ok(Witness {
        state: HeadState {
            seq: f.seq,
            hash,
            checkpoint_seq: f.checkpoint_seq,
            tail,
            closed: f.closed,
        },
        time: f.time,
        key_id: f.key_id,
        signature,
    })
}

/// Replaces the witness atomically: temp file, fsync, rename. `sync_dir` also
/// fsyncs the directory so the rename itself is durable; needed only when an
/// older witness coming back after a power loss would cause a false alarm
/// (at open, where a `closed` witness is replaced by an open one).
pub(crate) fn write(db: &Path, bytes: &[u8], sync_dir: bool) -> Result<()> {
    let path = witness_path(db);
    let tmp = db.with_extension("head.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(Error::io("create", &tmp))?;
    f.write_all(bytes).map_err(Error::io("write", &tmp))?;
    f.sync_data().map_err(Error::io("fsync", &tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(Error::io("rename", &path))?;
    if sync_dir && let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io("fsync", dir))?;
    }
    Ok(())
}

/// Re-signs the head witness of the log at `db` with `signer`, as the holder
/// of a key swapped into `keys/` would so the log opens under it. Tamper
/// tests only.
#[doc(hidden)]
pub fn resign_witness_for_tests(db: &Path, signer: &Ed25519KeyPair) -> Result<()> {
    use ring::signature::KeyPair;
    let w = read(db)
        .map_err(Error::Audit)?
        .ok_or_else(|| Error::NotFound("head witness".into()))?;
    let key_id = super::format::key_id(signer.public_key().as_ref());
    let bytes = encode(&w.state, signer, &key_id, &w.time);
    write(db, &bytes, true)
}
