//! [`verify`]: one streaming pass over the log that recomputes every hash and
//! names the first bad event.
//!
//! Each checkpoint interval is first checked on a fast path that reads rows in
//! place through the raw SQLite handle; an interval it does not accept is
//! re-verified from its start on the exact path (rows through sqlx), which
//! classifies the problem. The fast path only ever accepts what the exact path
//! accepts, so the report does not depend on which path ran.

use std::ffi::CStr;
use std::path::Path;

use futures::TryStreamExt as _;
use sqlx::sqlite::{LockedSqliteHandle, SqliteConnectOptions, SqliteRow};
use sqlx::{ConnectOptions, Connection, Row};

use super::format::{
    CheckpointMessage, GENESIS, Hash, Header, chain_hash, sha256, to_hash, write_header,
};
use super::keys::KeySchedule;
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
    check_key_len(public_key)?;
    verify_with(path, &KeySchedule::single(public_key), true).await
}

/// [`verify`] under a key schedule ([`super::key_schedule`]): each checkpoint
/// and the witness under the key in force at its seq, so a log whose key was
/// rotated by a chained event verifies from its first key on, and a key
/// nothing introduced is refused and named.
pub async fn verify_keys(path: &Path, keys: &KeySchedule) -> Result<VerifyReport> {
    for (k, _) in keys.keys() {
        check_key_len(k)?;
    }
    verify_with(path, keys, true).await
}

fn check_key_len(public_key: &[u8]) -> Result<()> {
    if public_key.len() != 32 {
        return Err(Error::InvalidArgument(
            "the Ed25519 public key must be 32 bytes".into(),
        ));
    }
    Ok(())
}

/// [`verify`] without the fast path: every row goes through the driver. Same
/// report; kept public for tests that compare both paths.
#[doc(hidden)]
pub async fn verify_sequential(path: &Path, public_key: &[u8]) -> Result<VerifyReport> {
    check_key_len(public_key)?;
    verify_with(path, &KeySchedule::single(public_key), false).await
}

async fn verify_with(path: &Path, keys: &KeySchedule, fast: bool) -> Result<VerifyReport> {
    if !path.is_file() {
        return Err(Error::NotFound("audit log database".into()));
    }
    let mut v = Verifier { keys, best: None };

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
    let witness: Option<Witness> = witness.and_then(|w| match w.check_keys(keys) {
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
        if fast {
            let mut st = ChainState {
                expect,
                chain,
                chain2,
                prev_authenticated,
                events,
            };
            let limit = v.best_seq();
            let mut handle = tx.lock_handle().await?;
            if fast_interval(&mut handle, lo, hi, &reference, limit, &mut st, &mut hdr) {
                ChainState {
                    expect,
                    chain,
                    chain2,
                    prev_authenticated,
                    events,
                } = st;
                continue;
            }
        }
        // The exact path: also the fallback for an interval the fast path
        // did not accept, re-verified from the interval start.
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

/// The chain position between rows; the fast path works on a copy and
/// commits it only when a whole interval verified.
#[derive(Clone, Copy)]
struct ChainState {
    expect: u64,
    chain: Hash,
    chain2: Option<Hash>,
    prev_authenticated: bool,
    events: u64,
}

/// The columns read separately (no SQL concatenation, which costs more than
/// the hashing), for the fast path.
const FAST_SQL: &CStr = c"SELECT seq, canonical, prev_hash, hash, id, time, actor, role, action, \
     object, outcome FROM events WHERE seq > ? AND seq <= ? ORDER BY seq";

/// The fast path for the events in (lo, hi]: the same checks as the exact path,
/// on rows read in place through the raw SQLite handle (the driver's per-row
/// copies and cross-thread hand-off cost more than everything else). Returns
/// true when every row verified and `st` advanced past them; false on any
/// problem or anything unusual (wrong column types, a separator inside a
/// column, a SQLite error, reaching `limit`), in which case `st` is garbage
/// and the caller re-verifies the interval on the exact path, which names
/// the problem.
fn fast_interval(
    handle: &mut LockedSqliteHandle<'_>,
    lo: i64,
    hi: i64,
    reference: &dyn Fn(u64) -> Option<Hash>,
    limit: Option<u64>,
    st: &mut ChainState,
    hdr: &mut Vec<u8>,
) -> bool {
    let Some(mut stmt) = raw::Stmt::prepare(handle, FAST_SQL) else {
        return false;
    };
    if !stmt.bind_i64(1, lo) || !stmt.bind_i64(2, hi) {
        return false;
    }
    loop {
        match stmt.step() {
            Some(true) => {}
            Some(false) => return true,
            None => return false,
        }
        let want = reference(st.expect);
        let mut row_ok = || -> Option<Hash> {
            if stmt.int(0)? != i64::try_from(st.expect).ok()? {
                return None;
            }
            let canonical = stmt.blob(1)?;
            let prev = stmt.blob(2)?;
            let hash = stmt.blob(3)?;
            let mut fields = [""; 7];
            for (i, f) in fields.iter_mut().enumerate() {
                // The exact path splits the joined columns at U+001F.
                *f = stmt.text(4 + i as i32).filter(|t| !t.contains('\u{1f}'))?;
            }
            let h = chain_hash(&st.chain, canonical);
            let ok = prev == st.chain
                && hash == h
                && want.is_none_or(|w| w == h)
                && fields_match(st.expect, canonical, &fields, hdr);
            ok.then_some(h)
        };
        let Some(h) = row_ok() else {
            return false;
        };
        st.chain2 = Some(st.chain);
        st.chain = h;
        st.prev_authenticated = want.is_some();
        st.events += 1;
        st.expect += 1;
        if limit.is_some_and(|c| st.expect > c) {
            return false;
        }
    }
}

/// The few SQLite C calls the fast path needs, on a handle locked out of the
/// driver's worker thread ([`LockedSqliteHandle`] guarantees the worker makes
/// no calls meanwhile). The functions come from the SQLite library that
/// sqlx links (bundled by `libsqlite3-sys`).
mod raw {
    use std::ffi::{CStr, c_char, c_int, c_void};
    use std::marker::PhantomData;

    use sqlx::sqlite::LockedSqliteHandle;

    const SQLITE_OK: c_int = 0;
    const SQLITE_ROW: c_int = 100;
    const SQLITE_DONE: c_int = 101;
    const SQLITE_INTEGER: c_int = 1;
    const SQLITE_TEXT: c_int = 3;
    const SQLITE_BLOB: c_int = 4;

    unsafe extern "C" {
        fn sqlite3_prepare_v2(
            db: *mut c_void,
            sql: *const c_char,
            n: c_int,
            stmt: *mut *mut c_void,
            tail: *mut *const c_char,
        ) -> c_int;
        fn sqlite3_bind_int64(stmt: *mut c_void, i: c_int, v: i64) -> c_int;
        fn sqlite3_step(stmt: *mut c_void) -> c_int;
        fn sqlite3_column_count(stmt: *mut c_void) -> c_int;
        fn sqlite3_column_type(stmt: *mut c_void, i: c_int) -> c_int;
        fn sqlite3_column_int64(stmt: *mut c_void, i: c_int) -> i64;
        fn sqlite3_column_blob(stmt: *mut c_void, i: c_int) -> *const c_void;
        fn sqlite3_column_text(stmt: *mut c_void, i: c_int) -> *const u8;
        fn sqlite3_column_bytes(stmt: *mut c_void, i: c_int) -> c_int;
        fn sqlite3_finalize(stmt: *mut c_void) -> c_int;
    }

    /// A prepared statement; finalized on drop, while the handle is still
    /// locked (the borrow ties it to the lock).
    pub(super) struct Stmt<'a> {
        stmt: *mut c_void,
        columns: c_int,
        _lock: PhantomData<&'a mut ()>,
    }

    impl<'a> Stmt<'a> {
        pub(super) fn prepare(handle: &'a mut LockedSqliteHandle<'_>, sql: &CStr) -> Option<Self> {
            let db = handle.as_raw_handle().as_ptr().cast::<c_void>();
            let mut stmt = std::ptr::null_mut();
            // SAFETY: `db` is a live connection that only this thread uses while
            // the lock is held; `sql` is NUL-terminated (n = -1).
            let rc = unsafe {
                sqlite3_prepare_v2(db, sql.as_ptr(), -1, &mut stmt, std::ptr::null_mut())
            };
            if rc != SQLITE_OK || stmt.is_null() {
                if !stmt.is_null() {
                    // SAFETY: a statement returned by prepare, finalized once.
                    unsafe { sqlite3_finalize(stmt) };
                }
                return None;
            }
            // SAFETY: `stmt` is a valid statement.
            let columns = unsafe { sqlite3_column_count(stmt) };
            Some(Stmt {
                stmt,
                columns,
                _lock: PhantomData,
            })
        }

        pub(super) fn bind_i64(&mut self, i: c_int, v: i64) -> bool {
            // SAFETY: valid statement; SQLite checks the index.
            unsafe { sqlite3_bind_int64(self.stmt, i, v) == SQLITE_OK }
        }

        /// `Some(true)` for a row, `Some(false)` when done, `None` on an error.
        pub(super) fn step(&mut self) -> Option<bool> {
            // SAFETY: valid statement; the `&mut` ends every borrow of the
            // previous row's column values, which this call invalidates.
            match unsafe { sqlite3_step(self.stmt) } {
                SQLITE_ROW => Some(true),
                SQLITE_DONE => Some(false),
                _ => None,
            }
        }

        fn type_of(&self, i: c_int) -> Option<c_int> {
            // SAFETY: valid statement positioned on a row; index checked.
            (0..self.columns)
                .contains(&i)
                .then(|| unsafe { sqlite3_column_type(self.stmt, i) })
        }

        /// The column if it is an INTEGER.
        pub(super) fn int(&self, i: c_int) -> Option<i64> {
            // SAFETY: as `type_of`.
            (self.type_of(i)? == SQLITE_INTEGER)
                .then(|| unsafe { sqlite3_column_int64(self.stmt, i) })
        }

        /// The column if it is a BLOB, borrowed until the next step.
        pub(super) fn blob(&self, i: c_int) -> Option<&[u8]> {
            if self.type_of(i)? != SQLITE_BLOB {
                return None;
            }
            // SAFETY: the value is a BLOB, so no type conversion happens and the
            // pointer stays valid until the next step or finalize, both of which
            // need `&mut self`. The pointer is read before the length, as SQLite
            // documents.
            unsafe {
                let p = sqlite3_column_blob(self.stmt, i).cast::<u8>();
                let n = usize::try_from(sqlite3_column_bytes(self.stmt, i)).ok()?;
                Some(if p.is_null() || n == 0 {
                    &[]
                } else {
                    std::slice::from_raw_parts(p, n)
                })
            }
        }

        /// The column if it is TEXT in valid UTF-8, borrowed until the next step.
        pub(super) fn text(&self, i: c_int) -> Option<&str> {
            if self.type_of(i)? != SQLITE_TEXT {
                return None;
            }
            // SAFETY: as `blob`; the pointer (converted to UTF-8 if the
            // database uses another encoding) is valid until the next step.
            let bytes = unsafe {
                let p = sqlite3_column_text(self.stmt, i);
                let n = usize::try_from(sqlite3_column_bytes(self.stmt, i)).ok()?;
                if p.is_null() || n == 0 {
                    &[]
                } else {
                    std::slice::from_raw_parts(p, n)
                }
            };
            std::str::from_utf8(bytes).ok()
        }
    }

    impl Drop for Stmt<'_> {
        fn drop(&mut self) {
            // SAFETY: valid statement, finalized exactly once, lock still held.
            unsafe { sqlite3_finalize(self.stmt) };
        }
    }
}

struct Verifier<'a> {
    keys: &'a KeySchedule,
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
        if !self.keys.verifies(seq, &msg, signature) {
            let message =
                self.keys
                    .explain(seq, stored_key_id, &format!("the checkpoint at seq {seq}"));
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
    let mut fields = [""; 7];
    for f in &mut fields {
        match it.next() {
            Some(v) => *f = v,
            None => return false,
        }
    }
    it.next().is_none() && fields_match(seq, canonical, &fields, buf)
}

/// Compares the canonical header rebuilt from the seven indexed columns
/// (id, time, actor, role, action, object, outcome) with `canonical`.
fn fields_match(seq: u64, canonical: &[u8], f: &[&str; 7], buf: &mut Vec<u8>) -> bool {
    buf.clear();
    write_header(
        buf,
        &Header {
            seq,
            id: f[0],
            time: f[1],
            actor: f[2],
            role: f[3],
            action: f[4],
            object: f[5],
            outcome: f[6],
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

/// Checks the log at `path` against a signed head kept outside the host (by
/// an auditor, or in a witness directory): the head must be signed by
/// `public_key` and the log must still hold that event with that hash. A log
/// restored from an older copy, or cut short, fails here even when it
/// verifies on its own. `Ok(Err(why))` names what does not match.
pub async fn check_kept_head(
    path: &Path,
    keys: &KeySchedule,
    kept: &[u8],
) -> Result<std::result::Result<(), String>> {
    let head = match witness::parse(kept) {
        Ok(h) => h,
        Err(msg) => return Ok(Err(format!("the kept head: {msg}"))),
    };
    if let Err(msg) = head.check_keys(keys) {
        return Ok(Err(format!("the kept head: {msg}")));
    }
    if !path.is_file() {
        return Err(Error::NotFound("audit log database".into()));
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await?;
    let seq = head.state.seq;
    let stored: Option<Vec<u8>> = sqlx::query_scalar("SELECT hash FROM events WHERE seq = ?")
        .bind(seq as i64)
        .fetch_optional(&mut conn)
        .await?;
    Ok(match stored {
        None => Err(format!(
            "the log has no event {seq}, which a head signed at {} witnessed: events were \
             removed or an older copy of the log was restored",
            head.time
        )),
        Some(h) if h.as_slice() != head.state.hash.as_slice() => Err(format!(
            "event {seq} is not the one a head signed at {} witnessed: the history was rewritten",
            head.time
        )),
        Some(_) => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ring::rand::SystemRandom;
    use ring::signature::Ed25519KeyPair;

    use super::*;
    use crate::audit::{AuditLog, AuditOptions, NewEvent};

    /// Runs the fast path alone over the whole log.
    async fn fast_all(path: &Path) -> (bool, u64) {
        let mut conn = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .connect()
            .await
            .unwrap();
        let mut st = ChainState {
            expect: 1,
            chain: GENESIS,
            chain2: None,
            prev_authenticated: true,
            events: 0,
        };
        let mut handle = conn.lock_handle().await.unwrap();
        let ok = fast_interval(
            &mut handle,
            0,
            i64::MAX,
            &|_| None,
            None,
            &mut st,
            &mut Vec::new(),
        );
        (ok, st.events)
    }

    /// The fast path really accepts a clean log (the tests comparing reports
    /// would also pass if it always fell back) and refuses an edited one.
    #[tokio::test]
    async fn fast_path_accepts_clean_rows_and_refuses_an_edit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let key = Arc::new(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap());
        let log = AuditLog::open(&path, key, AuditOptions::default())
            .await
            .unwrap();
        for i in 0..25 {
            log.append(NewEvent::new(
                "alice",
                "researcher",
                "catalog.read",
                format!("d{i}"),
            ))
            .await
            .unwrap();
        }
        log.close().await.unwrap();
        assert_eq!(fast_all(&path).await, (true, 25));

        let mut db = SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        sqlx::query("DROP TRIGGER events_no_update")
            .execute(&mut db)
            .await
            .unwrap();
        sqlx::query("UPDATE events SET object = 'd99' WHERE seq = 12")
            .execute(&mut db)
            .await
            .unwrap();
        db.close().await.unwrap();
        let (ok, _) = fast_all(&path).await;
        assert!(!ok);
    }
}
