//! # The tamper-evident audit log
//!
//! Every action of the domain appends one [`NewEvent`]. Events form a SHA-256
//! hash chain, anchored by Ed25519 signatures (checkpoints and a head witness),
//! so that someone who can write the files but does not hold the platform
//! signing key cannot edit, delete, insert, reorder or truncate events without
//! [`verify`] naming the first bad one.
//!
//! ## Files
//!
//! | file (next to each other) | content |
//! |---|---|
//! | `audit.db` | SQLite, WAL, `synchronous = FULL`: tables `events` and `checkpoints` (migrations in `enclave/migrations/audit/`) |
//! | the directory itself | `flock`ed by the one writer; a second [`AuditLog::open`] gets [`crate::Error::Conflict`] (no lock file that could be unlinked) |
//! | `audit.head` | the head witness: signed JSON, replaced atomically (temp file, fsync, rename) |
//!
//! The database is separate from the metadata store so that group commits of
//! the audit log never wait for metadata writes, and the other way round.
//!
//! ## The chain, checkpoints and the head witness
//!
//! ```text
//!  0x00…00 (genesis)
//!     │
//!     ▼
//!  ┌─────────┐ h₁  ┌─────────┐ h₂        ┌──────────┐ h₁₀₀₀ ┌──────────┐         ┌──────────┐ h₁₀₁₇
//!  │ event 1 │────▶│ event 2 │────▶ … ──▶│event 1000│──────▶│event 1001│── … ───▶│event 1017│──────▶ head
//!  └─────────┘     └─────────┘           └──────────┘       └──────────┘         └──────────┘
//!    hᵢ = SHA-256(hᵢ₋₁ ‖ canonicalᵢ)          │                                        │
//!                                             ▼                                        ▼
//!                                 checkpoints row (same transaction)     audit.head (rewritten after commits)
//!                                 seq 1000, from_seq 0, h₁₀₀₀,           seq 1017, h₁₀₁₇, checkpoint_seq 1000,
//!                                 hashes h₁ ‖ … ‖ h₁₀₀₀, signature       tail h₁₀₀₁ ‖ … ‖ h₁₀₁₇, closed, signature
//! ```
//!
//! * **Event** (format v1): `seq` (1-based, gap-free), `id` (UUID v7), `time`
//!   (RFC 3339 UTC, microseconds), `actor`, `role` (one of [`ROLES`]), `action`
//!   (dotted, e.g. `dataset.import`), `object`, `outcome`, `details` (a JSON object).
//! * **Canonical form**: `{"v":1,"seq":…,"id":…,"time":…,"actor":…,"role":…,"action":…,
//!   "object":…,"outcome":…,"details":{…}}` — this field order, no whitespace,
//!   `details` keys sorted by UTF-8 bytes at every level, strings escaping only
//!   `"`, `\` and control characters. Written by hand in `format.rs`, never by a
//!   serializer, and locked by a snapshot test. The bytes are stored verbatim
//!   (`events.canonical`), so verification hashes exactly what was hashed and
//!   never re-serializes. [`canonical_event`] and [`event_hash`] let anyone
//!   recompute a hash from the published format.
//! * **Hash**: `hashᵢ = SHA-256(hashᵢ₋₁ ‖ canonicalᵢ)`, `hash₀` = 32 zero bytes.
//!   The indexed columns (`time`, `actor`, `action`, `object`, …) are copies for
//!   queries; [`verify`] checks them byte for byte against the canonical content.
//! * **Checkpoint**, every [`AuditOptions::checkpoint_every`] events (at seqs that
//!   are multiples of it), on [`AuditLog::checkpoint`] and on [`AuditLog::close`],
//!   in the same transaction as the batch: a signature over `(seq, from_seq,
//!   hash, SHA-256 of every event hash in (from_seq, seq], time, key id)`. The
//!   per-event hash list is what lets [`verify`] name the first altered event
//!   even when an attacker re-hashed the whole chain after an edit; a plain head
//!   hash would only say "something in this interval".
//! * **Head witness** `audit.head`: the same statement for the newest head and
//!   the events since the last checkpoint, plus `closed` (set by a clean close).
//!   Checkpoints alone cannot reveal that the newest events *and* the newest
//!   checkpoint rows were deleted; the witness lives outside the database and
//!   remembers the head.
//!
//! ## Writing: one writer, group commit
//!
//! ```text
//!  append() ─┐ validate, canonical details          ┌─ writer task (owns head + connection) ─────────────┐
//!  append() ─┼──── mpsc (8192, backpressure) ──────▶│ drain ≤ max_batch → seq, id, time, hash, checkpoints │
//!  append() ─┘         ◀── oneshot after COMMIT ────│ BEGIN; multi-row INSERTs; COMMIT (fsync)            │
//!                                                   └──── watch (coalesced) ──▶ witness task: ≤ 1 per 50 ms │
//!                                                                                temp + fsync + rename      │
//! ```
//!
//! [`AuditLog::append`] returns only after the transaction holding the event
//! committed with `synchronous = FULL` (the WAL is fsynced), so an acknowledged
//! event survives `kill -9` and power loss. Throughput comes from group commit:
//! everything queued while one commit is being fsynced goes into the next
//! transaction (up to `max_batch`), so throughput grows with the number of
//! concurrent appenders until the writer's CPU is the limit — one sequential
//! appender gets one fsync per event. Witness rewrites run beside the writer,
//! never on the commit path, and are rate-limited so they do not compete with
//! commits for the disk.
//!
//! [`AuditLog::open`] refuses a log that its witness contradicts (fewer events
//! than the witness names, a different hash at the witness seq, events added
//! after a `closed` witness, a missing or forged witness on a non-empty log),
//! because continuing would sign new checkpoints over a tampered chain. It
//! then durably replaces the witness by an open one before accepting appends.
//! The full check is [`verify`] (`anyu audit verify`).
//!
//! ## Verifying
//!
//! [`verify`] reads one consistent snapshot (a read transaction; it can run
//! while the server appends), streaming: checkpoint signatures first (metadata
//! only is kept), then the events interval by interval, each checked against
//! the signed hash list of its interval (loaded per interval, never all at
//! once). For every event it checks the seq is the next one, rebuilds the
//! canonical header from the indexed columns and compares bytes (no JSON
//! parsing on this path), recomputes the hash from the previous *computed*
//! hash, compares stored `prev_hash`, stored `hash` and the signed hash. At the
//! first mismatch it looks at the event and the next one to name the kind
//! ([`ProblemKind`]): the seq is exact, the kind a best-effort diagnosis.
//! Rows are read in place through the raw SQLite handle (a fast path, ~3x
//! the driver's per-row throughput); an interval with any problem or anything
//! unusual is re-verified through the driver, which names the problem, so the
//! report is the same either way.
//!
//! ## What this protects against, and what not
//!
//! Protected, for an attacker who can read and write the files but does **not**
//! hold the signing key: editing any event (content, column, hash or link),
//! deleting, inserting or reordering events (also with renumbering and with the
//! whole chain re-hashed), removing the newest events (the witness or a
//! checkpoint remembers them), forging, altering or deleting checkpoints or the
//! witness, appending events after a clean close. The SQL triggers that refuse
//! `UPDATE`/`DELETE` only stop accidents; the protection is the cryptography.
//!
//! Not protected:
//!
//! * **Whoever holds the signing key** (e.g. root on the host, who can read
//!   `keys/signing.pk8`) can rewrite the log and re-sign everything. Only
//!   shipping checkpoints off the host (external anchoring) would catch that;
//!   not done here.
//! * **The unsigned window after a crash.** The witness lags the database by
//!   up to ~50 ms of commits. After `kill -9` or power loss, events committed
//!   after the last witness write are protected by the hash chain alone until
//!   the next open re-signs the head: someone who edits the files before that
//!   open can drop or add events in that window undetected. [`verify`] reports
//!   their number as `unsigned_events`. After a clean close the window is empty.
//! * **Rolling everything back** to an older consistent copy (database *and*
//!   witness, e.g. from a backup) is undetectable locally; so is deleting all
//!   files. Again, external anchoring is the remedy.
//! * The log proves what was recorded, not that it is true: callers are
//!   trusted to describe their actions, and `time` is the host's clock.
//! * A missing witness file (e.g. only `audit.db` was copied) makes [`verify`]
//!   report possible truncation: copy `audit.db` and `audit.head` together.
//! * Key rotation is not handled: [`verify`] takes one public key and reports
//!   checkpoints signed by another key as [`ProblemKind::BadSignature`].

mod format;
mod keys;
mod verify;
mod witness;
mod writer;

use serde::{Deserialize, Serialize};

pub use format::{
    FORMAT_VERSION, GENESIS_HASH, ROLES, canonical_event, event_hash, key_id as key_fingerprint,
};
pub use keys::{KeySchedule, ROTATE_ACTION, endorsement_message, key_schedule};
pub use verify::{check_kept_head, verify, verify_keys, verify_sequential};
#[doc(hidden)]
pub use witness::resign_witness_for_tests;

/// The signed head record of the log at `db` (rewritten after commits): what
/// an auditor keeps, and what a witness directory holds a copy of.
pub fn head_record_path(db: &std::path::Path) -> std::path::PathBuf {
    witness::witness_path(db)
}

/// The copy of the signed head record in a witness directory.
pub fn witnessed_head_path(witness_dir: &std::path::Path) -> std::path::PathBuf {
    witness_dir.join("audit.head")
}
pub use writer::{AuditLog, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, list, lock_dir};

/// Tuning of [`AuditLog`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditOptions {
    /// A signed checkpoint is written at every multiple of this seq (and on close).
    pub checkpoint_every: u64,
    /// Most events committed in one transaction.
    pub max_batch: usize,
    /// A second place for every signed head record (`audit.head`), one the
    /// operator does not control alone (an auditor's mount): `anyu audit
    /// verify` compares the log with it, so a restored older copy fails.
    #[serde(default)]
    pub witness_dir: Option<std::path::PathBuf>,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            checkpoint_every: 1000,
            max_batch: 1024,
            witness_dir: None,
        }
    }
}

/// What happened, as the caller describes it; the log adds seq, id and time.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Username, or `system`.
    pub actor: String,
    /// One of [`ROLES`].
    pub role: String,
    /// Dotted action name, e.g. `dataset.import`.
    pub action: String,
    /// What was acted on, e.g. `dataset:social_insurance@v1`; may be empty.
    pub object: String,
    pub outcome: Outcome,
    /// A JSON object with action-specific facts. Never put data values here.
    pub details: serde_json::Value,
}

impl NewEvent {
    /// A successful event with empty details.
    pub fn new(
        actor: impl Into<String>,
        role: impl Into<String>,
        action: impl Into<String>,
        object: impl Into<String>,
    ) -> Self {
        NewEvent {
            actor: actor.into(),
            role: role.into(),
            action: action.into(),
            object: object.into(),
            outcome: Outcome::Success,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    /// Sets the outcome.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Sets the details (must be a JSON object).
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    /// Refused by a rule (authorization, policy).
    Denied,
    /// Attempted and failed.
    Failure,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// 1-based, gap-free position in the chain.
    pub seq: u64,
    /// UUID v7.
    pub id: String,
    /// RFC 3339 UTC with microseconds.
    pub time: String,
    pub actor: String,
    pub role: String,
    pub action: String,
    pub object: String,
    pub outcome: Outcome,
    pub details: serde_json::Value,
    /// Hex SHA-256 of the previous event ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// Hex SHA-256 of `prev_hash` bytes followed by the canonical event.
    pub hash: String,
}

/// Filter for [`AuditLog::list`]; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditFilter {
    /// Exact actor.
    pub actor: Option<String>,
    /// Action prefix, e.g. `dataset.` or `catalog.read`.
    pub action: Option<String>,
    /// Exact object.
    pub object: Option<String>,
    /// Only events with a larger seq.
    pub since_seq: Option<u64>,
    /// At most this many events (default [`DEFAULT_LIST_LIMIT`], max [`MAX_LIST_LIMIT`]).
    pub limit: Option<u64>,
}

/// A signed statement of the chain head at `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    /// Hex chain hash of event `seq`.
    pub hash: String,
    /// RFC 3339 UTC with microseconds.
    pub time: String,
    /// Hex Ed25519 signature over the checkpoint message.
    pub signature: String,
}

/// Result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Events verified (up to the first problem).
    pub events: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// Last verified event (the log head when there is no problem).
    pub head_seq: u64,
    /// Its hex chain hash.
    pub head_hash: String,
    /// Verified events newer than every signature (checkpoint or head witness).
    /// Non-zero only after a crash; such events are protected by the hash chain
    /// alone until the next open re-signs the head.
    pub unsigned_events: u64,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

impl VerifyReport {
    /// True when the whole log verified.
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// The first bad event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Seq of the first bad event (or of the bad checkpoint).
    pub seq: u64,
    pub kind: ProblemKind,
    /// Explanation naming seqs only, never event content.
    pub message: String,
}

/// What verification found; the seq is exact, the kind a best-effort diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// Content, a column or a hash of the event was changed.
    Edited,
    /// The event is missing (a seq gap, or a broken link).
    Deleted,
    /// An event that the writer never wrote was added.
    Inserted,
    /// Events are out of order.
    Reordered,
    /// The newest events were removed.
    Truncated,
    /// A checkpoint or the head witness is missing, malformed or inconsistent.
    BadCheckpoint,
    /// A checkpoint or head witness signature does not verify.
    BadSignature,
}
