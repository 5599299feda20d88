//! The persisted byte formats of the audit log (format version 1): the canonical
//! event, the chain hash, and the messages signed by checkpoints and the head
//! witness. Everything that is hashed or signed is produced here, by hand, so
//! that the bytes never depend on a serializer's choices.

use std::io::Write as _;

use ring::digest;
use serde_json::Value;

use super::{NewEvent, Outcome};
use crate::{Error, Result};

/// Version of the persisted event format, written as `"v":1` in every event.
pub const FORMAT_VERSION: u32 = 1;

/// `prev_hash` of the first event: 32 zero bytes, hex-encoded.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A SHA-256 hash.
pub(crate) type Hash = [u8; 32];

pub(crate) const GENESIS: Hash = [0u8; 32];

/// Roles an event may carry (REQUIREMENTS §1 plus `system` and `anonymous`).
pub const ROLES: &[&str] = &[
    "researcher",
    "steward",
    "admin",
    "auditor",
    "system",
    "anonymous",
];

const MAX_ACTOR: usize = 256;
const MAX_ACTION: usize = 128;
const MAX_OBJECT: usize = 1024;
/// Upper bound on the canonical `details` object, so one event stays small.
pub(crate) const MAX_DETAILS: usize = 64 * 1024;
const MAX_DEPTH: usize = 32;

/// `hash = SHA-256(prev || canonical)`.
pub(crate) fn chain_hash(prev: &Hash, canonical: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev);
    ctx.update(canonical);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

pub(crate) fn sha256(bytes: &[u8]) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// Short identifier of a public key: the first 8 bytes of its SHA-256, hex.
pub fn key_id(public_key: &[u8]) -> String {
    hex::encode(&sha256(public_key)[..8])
}

/// Writes `s` as a JSON string. Only `"`, `\` and C0 controls are escaped
/// (short forms where JSON has them, else `\u00xx`); all other characters,
/// including non-ASCII, are written as UTF-8. Part of the persisted format.
pub(crate) fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_u64(out: &mut Vec<u8>, n: u64) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{n}");
}

/// The indexed fields of an event, in canonical order.
pub(crate) struct Header<'a> {
    pub seq: u64,
    pub id: &'a str,
    pub time: &'a str,
    pub actor: &'a str,
    pub role: &'a str,
    pub action: &'a str,
    pub object: &'a str,
    pub outcome: &'a str,
}

/// Writes everything of the canonical event up to and including `"details":`.
/// The verifier rebuilds this from the indexed columns and compares bytes, which
/// checks the columns against the hashed content without parsing JSON.
pub(crate) fn write_header(out: &mut Vec<u8>, h: &Header<'_>) {
    out.extend_from_slice(b"{\"v\":1,\"seq\":");
    write_u64(out, h.seq);
    out.extend_from_slice(b",\"id\":");
    write_json_str(out, h.id);
    out.extend_from_slice(b",\"time\":");
    write_json_str(out, h.time);
    out.extend_from_slice(b",\"actor\":");
    write_json_str(out, h.actor);
    out.extend_from_slice(b",\"role\":");
    write_json_str(out, h.role);
    out.extend_from_slice(b",\"action\":");
    write_json_str(out, h.action);
    out.extend_from_slice(b",\"object\":");
    write_json_str(out, h.object);
    out.extend_from_slice(b",\"outcome\":");
    write_json_str(out, h.outcome);
    out.extend_from_slice(b",\"details\":");
}

/// The complete canonical event: header, canonical details, closing brace.
pub(crate) fn write_canonical(out: &mut Vec<u8>, h: &Header<'_>, details: &[u8]) {
    write_header(out, h);
    out.extend_from_slice(details);
    out.push(b'}');
}

/// Canonical JSON of `details`: no whitespace, object keys sorted by their UTF-8
/// bytes at every level, strings escaped as [`write_json_str`], numbers as
/// serde_json prints them. Must be an object.
pub(crate) fn canonical_details(details: &Value) -> Result<Vec<u8>> {
    if !details.is_object() {
        return Err(Error::InvalidArgument(
            "audit event field `details` must be a JSON object".into(),
        ));
    }
    let mut out = Vec::with_capacity(64);
    write_value(&mut out, details, 0)?;
    if out.len() > MAX_DETAILS {
        return Err(Error::InvalidArgument(format!(
            "audit event field `details` is larger than {MAX_DETAILS} bytes"
        )));
    }
    Ok(out)
}

fn write_value(out: &mut Vec<u8>, v: &Value, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::InvalidArgument(format!(
            "audit event field `details` is nested deeper than {MAX_DEPTH} levels"
        )));
    }
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_json_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, depth + 1)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_str(out, k);
                out.push(b':');
                write_value(out, item, depth + 1)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn no_controls(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// Checks the caller-supplied fields. Messages name the field, never its value.
pub(crate) fn validate(ev: &NewEvent) -> Result<()> {
    let bad = |field: &str, rule: &str| {
        Err(Error::InvalidArgument(format!(
            "audit event field `{field}` {rule}"
        )))
    };
    if ev.actor.is_empty() || ev.actor.len() > MAX_ACTOR || !no_controls(&ev.actor) {
        return bad("actor", "must be 1 to 256 bytes without control characters");
    }
    if !ROLES.contains(&ev.role.as_str()) {
        return bad(
            "role",
            "must be one of researcher, steward, admin, auditor, system, anonymous",
        );
    }
    let action_ok = !ev.action.is_empty()
        && ev.action.len() <= MAX_ACTION
        && ev.action.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        });
    if !action_ok {
        return bad(
            "action",
            "must be dot-separated segments of a-z, 0-9, '_' or '-' (at most 128 bytes), e.g. dataset.import",
        );
    }
    if ev.object.len() > MAX_OBJECT || !no_controls(&ev.object) {
        return bad(
            "object",
            "must be at most 1024 bytes without control characters",
        );
    }
    Ok(())
}

/// Canonical bytes of `event` as it would be stored at `seq` with the given
/// `id` and `time`. Validates the event like [`super::AuditLog::append`] does.
/// Exposed so that tools and tests can recompute hashes independently.
pub fn canonical_event(seq: u64, id: &str, time: &str, event: &NewEvent) -> Result<Vec<u8>> {
    validate(event)?;
    let details = canonical_details(&event.details)?;
    let mut out = Vec::with_capacity(256 + details.len());
    write_canonical(
        &mut out,
        &Header {
            seq,
            id,
            time,
            actor: &event.actor,
            role: &event.role,
            action: &event.action,
            object: &event.object,
            outcome: event.outcome.as_str(),
        },
        &details,
    );
    Ok(out)
}

/// Chain hash of an event: hex SHA-256 of the 32 bytes of `prev_hash` (hex)
/// followed by the canonical bytes.
pub fn event_hash(prev_hash: &str, canonical: &[u8]) -> Result<String> {
    let prev = decode_hash(prev_hash)
        .ok_or_else(|| Error::InvalidArgument("`prev_hash` must be 64 hex digits".into()))?;
    Ok(hex::encode(chain_hash(&prev, canonical)))
}

pub(crate) fn decode_hash(s: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

pub(crate) fn to_hash(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
}

/// The message a checkpoint signature covers.
pub(crate) struct CheckpointMessage<'a> {
    pub seq: u64,
    pub from_seq: u64,
    pub hash: &'a Hash,
    /// SHA-256 of the concatenated event hashes of (from_seq, seq].
    pub hashes_digest: &'a Hash,
    pub time: &'a str,
    pub key_id: &'a str,
}

impl CheckpointMessage<'_> {
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"v\":1,\"kind\":\"anyu.audit.checkpoint\",\"seq\":");
        write_u64(&mut out, self.seq);
        out.extend_from_slice(b",\"from_seq\":");
        write_u64(&mut out, self.from_seq);
        out.extend_from_slice(b",\"hash\":");
        write_json_str(&mut out, &hex::encode(self.hash));
        out.extend_from_slice(b",\"hashes_sha256\":");
        write_json_str(&mut out, &hex::encode(self.hashes_digest));
        out.extend_from_slice(b",\"time\":");
        write_json_str(&mut out, self.time);
        out.extend_from_slice(b",\"key_id\":");
        write_json_str(&mut out, self.key_id);
        out.push(b'}');
        out
    }
}

/// The message the head witness signature covers.
pub(crate) struct HeadMessage<'a> {
    pub seq: u64,
    pub hash: &'a Hash,
    pub checkpoint_seq: u64,
    /// SHA-256 of the concatenated event hashes of (checkpoint_seq, seq].
    pub tail_digest: &'a Hash,
    pub closed: bool,
    pub time: &'a str,
    pub key_id: &'a str,
}

impl HeadMessage<'_> {
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"{\"v\":1,\"kind\":\"anyu.audit.head\",\"seq\":");
        write_u64(&mut out, self.seq);
        out.extend_from_slice(b",\"hash\":");
        write_json_str(&mut out, &hex::encode(self.hash));
        out.extend_from_slice(b",\"checkpoint_seq\":");
        write_u64(&mut out, self.checkpoint_seq);
        out.extend_from_slice(b",\"tail_sha256\":");
        write_json_str(&mut out, &hex::encode(self.tail_digest));
        out.extend_from_slice(if self.closed {
            b",\"closed\":true"
        } else {
            b",\"closed\":false"
        });
        out.extend_from_slice(b",\"time\":");
        write_json_str(&mut out, self.time);
        out.extend_from_slice(b",\"key_id\":");
        write_json_str(&mut out, self.key_id);
        out.push(b'}');
        out
    }
}

/// Current time as RFC 3339 UTC with microseconds, e.g. `2025-01-02T03:04:05.678901Z`.
pub(crate) fn rfc3339_micros(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl Outcome {
    /// The persisted spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> String {
        let mut out = Vec::new();
        write_json_str(&mut out, x);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_strings_match_serde_json() {
        for x in [
            "",
            "plain",
            "quo\"te",
            "back\\slash",
            "tab\tnl\ncr\r",
            "\u{1}\u{1f}\u{8}\u{c}",
            "中文 ✓",
            "\u{7f}",
        ] {
            assert_eq!(s(x), serde_json::to_string(x).unwrap(), "{x:?}");
        }
    }

    #[test]
    fn details_are_sorted_recursively() {
        let v = serde_json::json!({"b": 1, "a": {"z": [true, null, 1.5], "y": "x"}, "A": -3});
        let out = canonical_details(&v).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"A":-3,"a":{"y":"x","z":[true,null,1.5]},"b":1}"#
        );
        assert!(canonical_details(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn signed_messages_are_locked() {
        let h = [0xab; 32];
        let d = [0xcd; 32];
        let cp = CheckpointMessage {
            seq: 2000,
            from_seq: 1000,
            hash: &h,
            hashes_digest: &d,
            time: "2025-01-02T03:04:05.678901Z",
            key_id: "0011223344556677",
        };
        let head = HeadMessage {
            seq: 2042,
            hash: &h,
            checkpoint_seq: 2000,
            tail_digest: &d,
            closed: true,
            time: "2025-01-02T03:04:05.678901Z",
            key_id: "0011223344556677",
        };
        insta::assert_snapshot!(
            "signed_messages_v1",
            format!(
                "{}\n{}",
                String::from_utf8(cp.to_bytes()).unwrap(),
                String::from_utf8(head.to_bytes()).unwrap()
            )
        );
    }
}
