//! [`verify`]: one streaming pass over the log that recomputes every hash and
//! names the first bad event.

use std::path::Path;

use futures::TryStreamExt as _;
use ring::signature::{ED25519, UnparsedPublicKey};
use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{ConnectOptions, Connection, Row};

use super::format::{
    CheckpointMessage, GENESIS, Hash, Header, chain_hash, key_id, sha256, to_hash, write_header,
};
use super::witness::{self, Witness};
use super::{Problem, ProblemKind, VerifyReport};
use crate::{Error, Result};

/// The indexed columns joined by U+001F, which no column can legitimately
/// contain, so the split is unambiguous. One value instead of seven keeps the
/// per-row cost of the driver low.
const EVENTS_SQL: &str = "SELECT seq, canonical, prev_hash, hash, \
     id || char(31) || time || char(31) || actor || char(31) || role || char(31) || action \
     || char(31) || object || char(31) || outcome \
     FROM events WHERE seq > ? AND seq <= ? ORDER BY seq";
const NEXT_SQL: &str = "SELECT seq, canonical, prev_hash, hash, \
     id || char(31) || time || char(31) || actor || char(31) || role || char(31) || action \
     || char(31) || object || char(31) || outcome \
     FROM events WHERE seq > ? ORDER BY seq LIMIT 1";

/// Verifies the audit log at `path` against the platform public key (32 bytes):
/// recomputes every event hash in seq order, checks the indexed columns against
/// the hashed content, checks every checkpoint signature and the head witness,
/// and names the first bad event. Reads one consistent snapshot, streaming, so
/// it can run while the server appends. Never writes.
pub async fn verify(path: &Path, public_key: &[u8]) -> Result<VerifyReport> {
    if public_key.len() != 32 {
        return Err(Error::InvalidArgument(
            "the Ed25519 public key must be 32 bytes".into(),
        ));
    }
    if !path.is_file() {
        return Err(Error::NotFound("audit log database".into()));
    }
    let mut v = Verifier {
        public_key,
        best: None,
    };

    // The witness is read before the database snapshot is taken, so the
    // snapshot is never older than the witness.
    let mut witness_unreadable = None;
    let witness = match witness::read(path) {
        Ok(w) => w,
        Err(msg) => {
            witness_unreadable = Some(msg);
            None
        }
    };
    let witness: Option<Witness> = witness.and_then(|w| match w.check(public_key) {
        Ok(()) => Some(w),
        Err(msg) => {
            v.consider(
                1,
                Problem {
                    seq: w.state.seq,
                    kind: ProblemKind::BadSignature,
                    message: msg,
                },
            );
            None
        }
    });

    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .row_buffer_size(1024)
        .connect()
        .await?;
    let mut tx = conn.begin().await?;

    // Checkpoints: signatures and structure. Only metadata is kept; each
    // interval's hash list is loaded again when its events are verified.
    let mut cps: Vec<CpInfo> = Vec::new();
    let mut valid_checkpoints = 0u64;
    {
        let mut prev_seq = 0u64;
        let mut rows = sqlx::query("SELECT seq, from_seq, hash, time, hashes, key_id, signature FROM checkpoints ORDER BY seq")
            .fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let (info, signed) = v.check_checkpoint(&row, prev_seq)?;
            valid_checkpoints += u64::from(signed);
            prev_seq = info.seq;
            cps.push(info);
        }
    }
    if let Some(w) = &witness {
        let c = w.state.checkpoint_seq;
        if c > 0 && !cps.iter().any(|cp| cp.seq == c) {
            v.consider(
                1,
                Problem {
                    seq: c,
                    kind: ProblemKind::BadCheckpoint,
                    message: format!(
                        "the checkpoint at seq {c}, named by the head witness, is missing"
                    ),
                },
            );
        }
    }
    let w_seg = witness.as_ref().map(|w| Segment {
        from: w.state.checkpoint_seq,
        to: w.state.seq,
        hashes: w.state.tail.clone(),
    });
    let w_anchor = witness.as_ref().map(|w| (w.state.seq, w.state.hash));
    let last_usable_cp = cps.iter().rev().find(|c| c.usable).map_or(0, |c| c.seq);
    let closed_at = witness
        .as_ref()
        .filter(|w| w.state.closed)
        .map(|w| w.state.seq.max(last_usable_cp));

    // Events, one query per checkpoint interval, all in the same read transaction.
    let mut expect: u64 = 1;
    let mut chain: Hash = GENESIS;
    let mut chain2: Option<Hash> = None;
    let mut prev_authenticated = true;
    let mut events = 0u64;
    let mut failure: Option<(RowData, Option<Hash>)> = None;
    let mut stopped_early = false;
    let mut hdr = Vec::with_capacity(512);
    for i in 0..=cps.len() {
        if v.best_seq().is_some_and(|c| expect > c) {
            stopped_early = true;
            break;
        }
        let lo = if i == 0 {
            i64::MIN
        } else {
            cps[i - 1].seq as i64
        };
        let hi = cps.get(i).map_or(i64::MAX, |c| c.seq as i64);
        let cp_seg = match cps.get(i) {
            Some(cp) if cp.usable => {
                let hashes: Vec<u8> =
                    sqlx::query_scalar("SELECT hashes FROM checkpoints WHERE seq = ?")
                        .bind(cp.seq as i64)
                        .fetch_one(&mut *tx)
                        .await?;
                Some(Segment {
                    from: cp.from_seq,
                    to: cp.seq,
                    hashes,
                })
            }
            _ => None,
        };
        let reference = |s: u64| -> Option<Hash> {
            cp_seg
                .as_ref()
                .and_then(|g| g.get(s))
                .or_else(|| w_seg.as_ref().and_then(|g| g.get(s)))
                .or_else(|| w_anchor.filter(|a| a.0 == s).map(|a| a.1))
        };
        let mut rows = sqlx::query(EVENTS_SQL).bind(lo).bind(hi).fetch(&mut *tx);
        while let Some(row) = rows.try_next().await? {
            let seq: i64 = row.try_get(0)?;
            let canonical: Option<&[u8]> = row.try_get(1)?;
            let prev: Option<&[u8]> = row.try_get(2)?;
            let hash: Option<&[u8]> = row.try_get(3)?;
            let cols: Option<&str> = row.try_get(4)?;
            let want = reference(expect);
            let mut computed = None;
            let ok = seq == expect as i64
                && match (canonical, prev, hash, cols) {
                    (Some(canonical), Some(prev), Some(hash), Some(cols)) => {
                        let h = chain_hash(&chain, canonical);
                        computed = Some(h);
                        prev == chain
                            && hash == h
                            && want.is_none_or(|w| w == h)
                            && header_matches(expect, canonical, cols, &mut hdr)
                    }
                    _ => false,
                };
            match computed {
                Some(h) if ok => {
                    chain2 = Some(chain);
                    chain = h;
                    prev_authenticated = want.is_some();
                    events += 1;
                    expect += 1;
                }
                _ => {
                    failure = Some((RowData::from_row(&row)?, want));
                    break;
                }
            }
            if v.best_seq().is_some_and(|c| expect > c) {
                break;
            }
        }
        drop(rows);
        if failure.is_some() {
            break;
        }
    }

    if let Some((row, want)) = failure {
        let next = sqlx::query(NEXT_SQL)
            .bind(row.seq)
            .fetch_optional(&mut *tx)
            .await?;
        let next = next.as_ref().map(RowData::from_row).transpose()?;
        let ctx = Context {
            e: expect,
            p: chain,
            p2: chain2,
            reference: want,
            prev_authenticated,
            closed_at,
        };
        v.consider(0, classify(&ctx, &row, next.as_ref(), &mut hdr));
    } else if !stopped_early {
        let head = expect - 1;
        let w_seq = witness.as_ref().map_or(0, |w| w.state.seq);
        let signed_end = last_usable_cp.max(w_seq);
        if head < signed_end {
            let what = if signed_end == w_seq {
                "the head witness"
            } else {
                "a signed checkpoint"
            };
            v.consider(2, Problem {
                seq: head + 1,
                kind: ProblemKind::Truncated,
                message: format!("the log ends at seq {head} but {what} covers seq {signed_end}: the newest events were removed"),
            });
        }
        if let Some(w) = &witness
            && w.state.closed
            && head > signed_end
        {
            v.consider(
                2,
                Problem {
                    seq: signed_end + 1,
                    kind: ProblemKind::Inserted,
                    message: format!(
                        "events after seq {signed_end} were added after the log was closed"
                    ),
                },
            );
        }
        if let Some(msg) = witness_unreadable {
            v.consider(
                2,
                Problem {
                    seq: head + 1,
                    kind: ProblemKind::BadCheckpoint,
                    message: msg,
                },
            );
        } else if witness.is_none() && v.best.is_none() && (head > 0 || !cps.is_empty()) {
            v.consider(2, Problem {
                seq: head + 1,
                kind: ProblemKind::Truncated,
                message: "the head witness file is missing: removal of the newest events cannot be ruled out".into(),
            });
        }
    }
    drop(tx);
    let _ = conn.close().await;

    let head_seq = expect - 1;
    let signed_end = cps
        .iter()
        .rev()
        .find(|c| c.usable)
        .map_or(0, |c| c.seq)
        .max(witness.as_ref().map_or(0, |w| w.state.seq));
    Ok(VerifyReport {
        events,
        checkpoints: valid_checkpoints,
        head_seq,
        head_hash: hex::encode(chain),
        unsigned_events: head_seq.saturating_sub(signed_end),
        problem: v.best.map(|(_, _, p)| p),
    })
}

struct Verifier<'a> {
    public_key: &'a [u8],
    /// First problem so far: (seq, priority, problem). Lower priority wins ties:
    /// 0 event, 1 checkpoint or witness, 2 end of log.
    best: Option<(u64, u8, Problem)>,
}

impl Verifier<'_> {
    fn consider(&mut self, priority: u8, p: Problem) {
        let better = self
            .best
            .as_ref()
            .is_none_or(|(s, pr, _)| (p.seq, priority) < (*s, *pr));
        if better {
            self.best = Some((p.seq, priority, p));
        }
    }

    fn best_seq(&self) -> Option<u64> {
        self.best.as_ref().map(|b| b.0)
    }

    /// Checks one checkpoint row; returns its metadata and whether its
    /// signature verified.
    fn check_checkpoint(&mut self, row: &SqliteRow, prev_seq: u64) -> Result<(CpInfo, bool)> {
        let seq_raw: i64 = row.try_get(0)?;
        let from_raw: i64 = row.try_get(1)?;
        let hash: &[u8] = row.try_get(2)?;
        let time: &str = row.try_get(3)?;
        let hashes: &[u8] = row.try_get(4)?;
        let stored_key_id: &str = row.try_get(5)?;
        let signature: &[u8] = row.try_get(6)?;
        let seq = u64::try_from(seq_raw).unwrap_or(0);
        let malformed = |v: &mut Self, seq: u64| {
            v.consider(
                1,
                Problem {
                    seq,
                    kind: ProblemKind::BadCheckpoint,
                    message: format!("the checkpoint at seq {seq} is malformed"),
                },
            );
            Ok((
                CpInfo {
                    seq,
                    from_seq: 0,
                    usable: false,
                },
                false,
            ))
        };
        let (Ok(from), Some(hash)) = (u64::try_from(from_raw), to_hash(hash)) else {
            return malformed(self, seq);
        };
        if seq == 0 || from >= seq {
            return malformed(self, seq);
        }
        let msg = CheckpointMessage {
            seq,
            from_seq: from,
            hash: &hash,
            hashes_digest: &sha256(hashes),
            time,
            key_id: stored_key_id,
        }
        .to_bytes();
        if UnparsedPublicKey::new(&ED25519, self.public_key)
            .verify(&msg, signature)
            .is_err()
        {
            let message = if stored_key_id != key_id(self.public_key) {
                format!("the checkpoint at seq {seq} is signed by a different key")
            } else {
                format!(
                    "the checkpoint at seq {seq} has an invalid signature: it was forged or altered"
                )
            };
            self.consider(
                1,
                Problem {
                    seq,
                    kind: ProblemKind::BadSignature,
                    message,
                },
            );
            return Ok((
                CpInfo {
                    seq,
                    from_seq: from,
                    usable: false,
                },
                false,
            ));
        }
        let consistent =
            hashes.len() as u64 == (seq - from) * 32 && hashes[hashes.len() - 32..] == hash;
        if !consistent {
            self.consider(
                1,
                Problem {
                    seq,
                    kind: ProblemKind::BadCheckpoint,
                    message: format!(
                        "the checkpoint at seq {seq} is signed but internally inconsistent"
                    ),
                },
            );
            return Ok((
                CpInfo {
                    seq,
                    from_seq: from,
                    usable: false,
                },
                true,
            ));
        }
        if from > prev_seq {
            self.consider(
                1,
                Problem {
                    seq: from,
                    kind: ProblemKind::BadCheckpoint,
                    message: format!("the checkpoint at seq {from} is missing"),
                },
            );
        } else if from < prev_seq {
            self.consider(
                1,
                Problem {
                    seq,
                    kind: ProblemKind::BadCheckpoint,
                    message: format!(
                        "the checkpoint at seq {seq} overlaps the previous checkpoint"
                    ),
                },
            );
        }
        Ok((
            CpInfo {
                seq,
                from_seq: from,
                usable: true,
            },
            true,
        ))
    }
}

struct CpInfo {
    seq: u64,
    from_seq: u64,
    /// Signature verified and structure consistent: its hash list is a reference.
    usable: bool,
}

/// Signed event hashes for (from, to].
struct Segment {
    from: u64,
    to: u64,
    hashes: Vec<u8>,
}

impl Segment {
    fn get(&self, seq: u64) -> Option<Hash> {
        if seq <= self.from || seq > self.to {
            return None;
        }
        let i = ((seq - self.from - 1) * 32) as usize;
        self.hashes.get(i..i + 32).and_then(to_hash)
    }
}

/// Rebuilds the canonical header from the joined columns and compares bytes.
fn header_matches(seq: u64, canonical: &[u8], cols: &str, buf: &mut Vec<u8>) -> bool {
    let mut it = cols.split('\u{1f}');
    let (
        Some(id),
        Some(time),
        Some(actor),
        Some(role),
        Some(action),
        Some(object),
        Some(outcome),
        None,
    ) = (
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
        it.next(),
    )
    else {
        return false;
    };
    buf.clear();
    write_header(
        buf,
        &Header {
            seq,
            id,
            time,
            actor,
            role,
            action,
            object,
            outcome,
        },
    );
    canonical.len() > buf.len() && canonical.starts_with(buf) && canonical.last() == Some(&b'}')
}

/// An event row, owned, for the slow path.
struct RowData {
    seq: i64,
    canonical: Option<Vec<u8>>,
    prev: Option<Hash>,
    hash: Option<Hash>,
    cols: Option<String>,
}

impl RowData {
    fn from_row(row: &SqliteRow) -> Result<RowData> {
        Ok(RowData {
            seq: row.try_get(0)?,
            canonical: row.try_get(1)?,
            prev: row.try_get::<Option<&[u8]>, _>(2)?.and_then(to_hash),
            hash: row.try_get::<Option<&[u8]>, _>(3)?.and_then(to_hash),
            cols: row.try_get(4)?,
        })
    }

    /// The `seq` recorded inside the hashed content.
    fn inner_seq(&self) -> Option<u64> {
        let v: serde_json::Value = serde_json::from_slice(self.canonical.as_deref()?).ok()?;
        v.get("seq")?.as_u64()
    }
}

struct Context {
    /// Position being verified (the expected seq).
    e: u64,
    /// Chain hash at e-1 and e-2.
    p: Hash,
    p2: Option<Hash>,
    /// Signed hash for e, if any.
    reference: Option<Hash>,
    /// Whether event e-1 was checked against a signed hash.
    prev_authenticated: bool,
    /// Set when a `closed` head witness says the log ended at this seq.
    closed_at: Option<u64>,
}

/// Names the first bad event and guesses what happened. The seq is exact for
/// the tampering patterns below; the kind is best-effort.
fn classify(c: &Context, r: &RowData, n: Option<&RowData>, buf: &mut Vec<u8>) -> Problem {
    let e = c.e;
    let at = |seq: u64, kind: ProblemKind, message: String| Problem { seq, kind, message };
    if r.seq < e as i64 {
        return at(
            e,
            ProblemKind::Inserted,
            format!("an event with a repeated or invalid seq is stored before event {e}"),
        );
    }
    if r.seq > e as i64 {
        let last = (r.seq - 1) as u64;
        let message = if last == e {
            format!("event {e} is missing")
        } else {
            format!("events {e} to {last} are missing")
        };
        return at(e, ProblemKind::Deleted, message);
    }
    if let Some(end) = c.closed_at.filter(|&end| e > end) {
        return at(
            e,
            ProblemKind::Inserted,
            format!("events after seq {end} were added after the log was closed"),
        );
    }
    let (Some(canonical), Some(prev), Some(hash), Some(cols)) =
        (&r.canonical, &r.prev, &r.hash, &r.cols)
    else {
        return at(
            e,
            ProblemKind::Edited,
            format!("event {e} has a missing or malformed column"),
        );
    };
    let self_ok = chain_hash(prev, canonical) == *hash;
    let Some(cs) = r.inner_seq() else {
        return at(
            e,
            ProblemKind::Edited,
            format!("the content of event {e} is not a valid event"),
        );
    };
    let next_links_here = n.is_some_and(|n| n.prev == Some(c.p) || n.inner_seq() == Some(e));
    if cs != e {
        if !self_ok && n.and_then(RowData::inner_seq) == Some(e) {
            return at(
                e,
                ProblemKind::Reordered,
                format!("the events stored at seq {e} and {} were swapped", e + 1),
            );
        }
        if !self_ok {
            return at(
                e,
                ProblemKind::Edited,
                format!("the content of event {e} was changed"),
            );
        }
        if cs < e && e >= 2 && c.p2 == Some(*prev) {
            return at(
                e - 1,
                ProblemKind::Inserted,
                format!("event {} was inserted: event {e} links past it", e - 1),
            );
        }
        if cs > e && n.is_none_or(|n| n.inner_seq() == Some(cs + 1)) {
            return at(
                e,
                ProblemKind::Deleted,
                format!("event {e} is missing; later events were renumbered"),
            );
        }
        return at(
            e,
            ProblemKind::Reordered,
            format!("the event stored at seq {e} was recorded as event {cs}"),
        );
    }
    if !header_matches(e, canonical, cols, buf) {
        return at(
            e,
            ProblemKind::Edited,
            format!("a column of event {e} does not match its hashed content"),
        );
    }
    if !self_ok {
        if next_links_here {
            return at(
                e,
                ProblemKind::Inserted,
                format!(
                    "event {e} was inserted: the next event links to event {}",
                    e - 1
                ),
            );
        }
        return at(
            e,
            ProblemKind::Edited,
            format!("event {e} was changed: its hash does not match its content"),
        );
    }
    if *prev != c.p {
        if e >= 2 && c.p2 == Some(*prev) {
            return at(
                e - 1,
                ProblemKind::Inserted,
                format!("event {} was inserted: event {e} links past it", e - 1),
            );
        }
        if e == 1 {
            return at(
                e,
                ProblemKind::Edited,
                "event 1 does not start from the genesis hash".into(),
            );
        }
        if c.prev_authenticated {
            return at(
                e,
                ProblemKind::Deleted,
                format!(
                    "event {e} does not link to event {}: an event between them was removed",
                    e - 1
                ),
            );
        }
        return at(
            e - 1,
            ProblemKind::Edited,
            format!(
                "event {} was changed: event {e} links to different content",
                e - 1
            ),
        );
    }
    if c.reference.is_some() {
        if next_links_here {
            return at(
                e,
                ProblemKind::Inserted,
                format!(
                    "event {e} was inserted: it is not the event signed at this position, which follows it"
                ),
            );
        }
        return at(
            e,
            ProblemKind::Edited,
            format!(
                "event {e} differs from its signed hash: it was changed and the chain re-hashed"
            ),
        );
    }
    at(e, ProblemKind::Edited, format!("event {e} does not verify"))
}
