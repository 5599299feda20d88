//! Which key signs which part of the log: the key `platform.init` names, then
//! each key a `platform.key_rotate` event introduces.
//!
//! A rotation is an event of the chain whose details carry the previous key,
//! the next key and an *endorsement*: the previous key's signature over
//! both. The checkpoint at the rotation (and the witness) may carry either
//! key; checkpoints after it carry the next key. A key found on a checkpoint
//! without such an event — a key pair swapped into `keys/` — is refused and
//! named by [`super::verify_keys`].

use std::path::Path;

use ring::signature::{ED25519, UnparsedPublicKey};

use super::format::key_id;
use super::{AuditFilter, AuditRecord};
use crate::Result;

/// The action of a rotation event.
pub const ROTATE_ACTION: &str = "platform.key_rotate";

/// What the previous key signs to introduce the next one.
pub fn endorsement_message(previous: &[u8], next: &[u8]) -> Vec<u8> {
    format!(
        "anyu:key-rotation:v1\n{}\n{}",
        hex::encode(previous),
        hex::encode(next)
    )
    .into_bytes()
}

/// The keys of a log in order, each with the seq from which it signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySchedule {
    /// (public key, seq of the event that introduced it; 0 for the first).
    keys: Vec<(Vec<u8>, u64)>,
}

impl KeySchedule {
    /// One key for the whole log (no rotation).
    pub fn single(public_key: &[u8]) -> KeySchedule {
        KeySchedule {
            keys: vec![(public_key.to_vec(), 0)],
        }
    }

    /// Every key, oldest first, with the seq of its rotation event (0: init).
    pub fn keys(&self) -> &[(Vec<u8>, u64)] {
        &self.keys
    }

    /// The newest key.
    pub fn current(&self) -> &[u8] {
        &self.keys[self.keys.len() - 1].0
    }

    /// Whether `key` is one of the schedule's.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.keys.iter().any(|(k, _)| k == key)
    }

    /// The keys that may sign a statement about seq `seq`: the one in force,
    /// and at a rotation's own seq both the old and the new.
    pub(crate) fn at(&self, seq: u64) -> Vec<&[u8]> {
        let n = self.keys.len();
        (0..n)
            .filter(|&i| {
                let from = self.keys[i].1;
                let until = self.keys.get(i + 1).map_or(u64::MAX, |k| k.1);
                from <= seq && seq <= until
            })
            .map(|i| self.keys[i].0.as_slice())
            .collect()
    }

    /// Whether `sig` over `msg` verifies under a key in force at `seq`.
    pub(crate) fn verifies(&self, seq: u64, msg: &[u8], sig: &[u8]) -> bool {
        self.at(seq)
            .into_iter()
            .any(|k| UnparsedPublicKey::new(&ED25519, k).verify(msg, sig).is_ok())
    }

    /// Whether `stored_key_id` names a key in force at `seq`.
    pub(crate) fn names(&self, seq: u64, stored_key_id: &str) -> bool {
        self.at(seq).iter().any(|k| key_id(k) == stored_key_id)
    }

    /// Why a statement at `seq` that names `stored_key_id` did not verify.
    pub(crate) fn explain(&self, seq: u64, stored_key_id: &str, what: &str) -> String {
        if self.names(seq, stored_key_id) {
            format!("{what} has an invalid signature: it was forged or altered")
        } else if self.keys.iter().any(|(k, _)| key_id(k) == stored_key_id) {
            format!("{what} is signed by a different key than the one in force at seq {seq}")
        } else {
            let named = if stored_key_id.len() == 16
                && stored_key_id.bytes().all(|b| b.is_ascii_hexdigit())
            {
                stored_key_id
            } else {
                "?"
            };
            format!(
                "{what} is signed by a different key ({named}), which no {ROTATE_ACTION} \
                 event of the chain introduced"
            )
        }
    }
}

/// Reads the key schedule of the log at `path`: the key of event 1
/// (`platform.init`), then each rotation whose previous key is the one in
/// force and whose endorsement that key signed. `Ok(Err(why))` when the log
/// does not say (a log from before keys were introduced by events) or a
/// rotation does not hold. The events themselves are authenticated by
/// [`super::verify_keys`] under the schedule.
pub async fn key_schedule(path: &Path) -> Result<std::result::Result<KeySchedule, String>> {
    let first = super::list(
        path,
        &AuditFilter {
            limit: Some(1),
            ..Default::default()
        },
    )
    .await?;
    let Some(init) = first
        .first()
        .filter(|e| e.action == "platform.init" && e.seq == 1)
        .and_then(|e| e.details["signing_public_key"].as_str())
        .and_then(|k| hex::decode(k).ok())
    else {
        return Ok(Err(
            "the chain never introduced a key (event 1, platform.init, names the platform key)"
                .into(),
        ));
    };
    let mut schedule = KeySchedule::single(&init);
    let mut since = 0;
    loop {
        let page = super::list(
            path,
            &AuditFilter {
                action: Some(ROTATE_ACTION.into()),
                since_seq: Some(since),
                limit: Some(super::MAX_LIST_LIMIT),
                ..Default::default()
            },
        )
        .await?;
        let Some(last) = page.last().map(|e| e.seq) else {
            break;
        };
        for e in page.iter().filter(|e| e.action == ROTATE_ACTION) {
            match rotation(e, schedule.current()) {
                Ok(next) => schedule.keys.push((next, e.seq)),
                Err(why) => return Ok(Err(format!("the key rotation at seq {}: {why}", e.seq))),
            }
        }
        since = last;
    }
    Ok(Ok(schedule))
}

/// The next key a rotation event introduces, when `current` endorsed it.
pub(crate) fn rotation(
    e: &AuditRecord,
    current: &[u8],
) -> std::result::Result<Vec<u8>, &'static str> {
    let field = |name: &str| {
        e.details[name]
            .as_str()
            .and_then(|s| hex::decode(s).ok())
            .ok_or("it is malformed")
    };
    let previous = field("previous_key")?;
    let next = field("next_key")?;
    let endorsement = field("endorsement")?;
    if previous != current {
        return Err("it names a previous key that was not the one in force");
    }
    if next.len() != 32 {
        return Err("it is malformed");
    }
    UnparsedPublicKey::new(&ED25519, current)
        .verify(&endorsement_message(&previous, &next), &endorsement)
        .map_err(|_| "its endorsement is not signed by the key in force")?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_keys_sign_at_the_rotation_and_only_the_new_one_after() {
        let s = KeySchedule {
            keys: vec![(vec![1; 32], 0), (vec![2; 32], 10)],
        };
        assert_eq!(s.at(9), vec![&[1u8; 32][..]]);
        assert_eq!(s.at(10).len(), 2);
        assert_eq!(s.at(11), vec![&[2u8; 32][..]]);
    }
}
