//! [`AuditLog`]: the single background writer that owns the chain head, group
//! commits, checkpoints and the head witness.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::format::{
    self, CheckpointMessage, GENESIS, Hash, Header, chain_hash, key_id, rfc3339_micros, sha256,
    write_canonical,
};
use super::witness::{self, HeadState};
use super::{AuditFilter, AuditOptions, AuditRecord, Checkpoint, NewEvent, Outcome};
use crate::{Error, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/audit");

/// Witness rewrites are coalesced and at most this frequent, so they never
/// compete with group commits for the disk (see the module docs).
const WITNESS_MIN_INTERVAL: Duration = Duration::from_millis(50);
/// Queue between appenders and the writer; full queue = backpressure.
const QUEUE: usize = 8192;
/// Rows per multi-row INSERT; a batch is split greedily into these sizes so
/// that only three statements are ever prepared.
const CHUNKS: [usize; 3] = [64, 8, 1];
const EVENT_COLUMNS: usize = 11;
/// `list` without a limit returns at most this many events.
pub const DEFAULT_LIST_LIMIT: u64 = 1000;
/// Largest `limit` `list` accepts.
pub const MAX_LIST_LIMIT: u64 = 10_000;

fn closed_error() -> Error {
    Error::Audit("the audit log is closed".into())
}

/// The append-only audit log. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    pool: SqlitePool,
}

struct Shared {
    /// Committed head: (seq, hash).
    head: Mutex<(u64, Hash)>,
    closed: AtomicBool,
}

enum Command {
    Append(Box<Pending>, oneshot::Sender<Result<AuditRecord>>),
    Checkpoint(oneshot::Sender<Result<Checkpoint>>),
    Close(oneshot::Sender<Result<()>>),
}

/// An event validated and with canonical details, prepared by the caller's task
/// so the single writer only formats the fixed fields.
struct Pending {
    actor: String,
    role: String,
    action: String,
    object: String,
    outcome: Outcome,
    details: Value,
    details_bytes: Vec<u8>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (seq, _) = *self
            .inner
            .shared
            .head
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        f.debug_struct("AuditLog")
            .field("head_seq", &seq)
            .finish_non_exhaustive()
    }
}

/// Takes the one-writer lock (`flock`) on the directory that holds the
/// log. A separate lock file could be unlinked and recreated, letting a
/// second writer in; a directory with the log in it cannot be removed, and
/// it is not the database file, whose other descriptors would drop SQLite's
/// own POSIX locks when closed. The inode is checked after locking, so a
/// directory swapped in between is never taken for the one locked.
fn lock_single_writer(path: &Path) -> Result<std::fs::File> {
    lock_dir(path)
}

/// The one-writer lock of the log at `path` without opening it: held while
/// the file is open, so a key rotation left half-done is finished by the one
/// process that may write (see `lock_single_writer`).
pub fn lock_dir(path: &Path) -> Result<std::fs::File> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let lock = std::fs::File::open(dir).map_err(Error::io("open", dir))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(Error::Conflict(
                "the audit log is already open in another handle or process".into(),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io("lock", dir)(e)),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let held = lock.metadata().map_err(Error::io("stat", dir))?;
        let now = std::fs::metadata(dir).map_err(Error::io("stat", dir))?;
        if (held.dev(), held.ino()) != (now.dev(), now.ino()) {
            return Err(Error::Conflict(
                "the audit directory was replaced while it was being opened".into(),
            ));
        }
    }
    Ok(lock)
}

fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
}

impl AuditLog {
    /// Opens (creating if missing: parent directory, database, witness) the log
    /// at `path`, runs migrations, loads the chain head and checks it against the
    /// head witness. Refuses to open a log whose newest events were removed,
    /// whose witness is missing or forged, or which another handle holds open.
    pub async fn open(
        path: &Path,
        signer: Arc<Ed25519KeyPair>,
        opts: AuditOptions,
    ) -> Result<AuditLog> {
        if opts.checkpoint_every == 0 || opts.max_batch == 0 {
            return Err(Error::InvalidArgument(
                "audit options `checkpoint_every` and `max_batch` must be at least 1".into(),
            ));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(Error::io("create directory", dir))?;
        }
        if let Some(dir) = &opts.witness_dir {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(Error::io("create directory", dir))?;
        }
        crate::store::create_private_file(path)?;
        let lock = lock_single_writer(path)?;

        let mut conn = connect_options(path)
            .create_if_missing(true)
            .connect()
            .await?;
        MIGRATOR
            .run(&mut conn)
            .await
            .map_err(|e| Error::Internal(format!("audit migrations: {e}")))?;
        let state = load_state(&mut conn).await?;

        let public_key = signer.public_key().as_ref().to_vec();
        let key_id = key_id(&public_key);
        check_against_witness(&mut conn, path, &state, &public_key).await?;

        // Replace a `closed` witness by an open one before anything is appended,
        // durably, so a crash cannot leave "closed" next to newer events.
        let head = state.head_state(false);
        write_witness(
            path.to_path_buf(),
            opts.witness_dir.clone(),
            signer.clone(),
            key_id.clone(),
            head.clone(),
            true,
        )
        .await?;

        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .min_connections(0)
            .connect_lazy_with(SqliteConnectOptions::new().filename(path).read_only(true));

        let shared = Arc::new(Shared {
            head: Mutex::new((state.seq, state.hash)),
            closed: AtomicBool::new(false),
        });
        let (witness_tx, witness_rx) = watch::channel(head);
        let witness_task = tokio::spawn(witness_loop(
            path.to_path_buf(),
            opts.witness_dir.clone(),
            signer.clone(),
            key_id.clone(),
            witness_rx,
        ));
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            conn: Some(conn),
            signer,
            key_id,
            opts,
            state,
            ctx: uuid::ContextV7::new(),
            shared: shared.clone(),
            witness_tx: Some(witness_tx),
            witness_task: Some(witness_task),
            lock: Some(lock),
        };
        tokio::spawn(writer.run(rx));
        Ok(AuditLog {
            inner: Arc::new(Inner { tx, shared, pool }),
        })
    }

    /// Appends `ev` and returns it as stored. Returns only after the batch that
    /// holds the event is committed (fsynced): an acknowledged event survives a
    /// crash of the process or the machine.
    pub async fn append(&self, ev: NewEvent) -> Result<AuditRecord> {
        self.enqueue(ev).await?.await
    }

    /// Queues `ev` and returns once it is queued, with a future that resolves
    /// when it is committed. Events are committed in queue order, so an event
    /// appended later is durable only after this one is.
    pub async fn enqueue(
        &self,
        ev: NewEvent,
    ) -> Result<impl std::future::Future<Output = Result<AuditRecord>> + use<>> {
        if self.inner.shared.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        format::validate(&ev)?;
        let details_bytes = format::canonical_details(&ev.details)?;
        let pending = Box::new(Pending {
            actor: ev.actor,
            role: ev.role,
            action: ev.action,
            object: ev.object,
            outcome: ev.outcome,
            details: ev.details,
            details_bytes,
        });
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Append(pending, tx))
            .await
            .map_err(|_| closed_error())?;
        Ok(async move { rx.await.map_err(|_| closed_error())? })
    }

    /// Commits pending appends and signs a checkpoint at the head. When the head
    /// is already checkpointed, returns that checkpoint. Fails on an empty log.
    pub async fn checkpoint(&self) -> Result<Checkpoint> {
        if self.inner.shared.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        let (tx, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Command::Checkpoint(tx))
            .await
            .map_err(|_| closed_error())?;
        rx.await.map_err(|_| closed_error())?
    }

    /// Commits pending appends, writes a final checkpoint and a `closed` head
    /// witness, and stops the writer. Later appends fail with
    /// [`Error::Audit`]; closing twice is a no-op. Dropping every handle without
    /// calling this does the same in the background.
    pub async fn close(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Command::Close(tx)).await.is_err() {
            return Ok(());
        }
        let result = rx.await.unwrap_or(Ok(()));
        self.inner.pool.close().await;
        result
    }

    /// Committed head: (seq, hex hash). `(0, GENESIS_HASH)` for an empty log.
    pub fn head(&self) -> (u64, String) {
        let (seq, hash) = *self
            .inner
            .shared
            .head
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        (seq, hex::encode(hash))
    }

    /// Events matching `filter`, in sequence order. Reads the stored content;
    /// it does not verify the chain (use [`super::verify`]).
    pub async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
        if self.inner.pool.is_closed() {
            return Err(closed_error());
        }
        query_events(&self.inner.pool, filter).await
    }
}

/// Like [`AuditLog::list`], on a log that is not open in this process (e.g.
/// while the server holds it): a read-only connection, no writer, no lock.
pub async fn list(path: &Path, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
    if !path.is_file() {
        return Err(Error::NotFound("audit log database".into()));
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await?;
    let result = query_events(&mut conn, filter).await;
    let _ = conn.close().await;
    result
}

async fn query_events<'e, E>(exec: E, filter: &AuditFilter) -> Result<Vec<AuditRecord>>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let limit = filter.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if limit > MAX_LIST_LIMIT {
        return Err(Error::InvalidArgument(format!(
            "`limit` must be at most {MAX_LIST_LIMIT}"
        )));
    }
    let since = i64::try_from(filter.since_seq.unwrap_or(0))
        .map_err(|_| Error::InvalidArgument("`since_seq` is out of range".into()))?;
    let mut sql = String::from("SELECT seq, canonical, prev_hash, hash FROM events WHERE seq > ?");
    if filter.actor.is_some() {
        sql.push_str(" AND actor = ?");
    }
    if filter.action.is_some() {
        // Prefix match as a range so the index is used; U+10FFFF sorts after
        // every character that can follow the prefix.
        sql.push_str(" AND action >= ? AND action < ?");
    }
    if filter.object.is_some() {
        sql.push_str(" AND object = ?");
    }
    sql.push_str(" ORDER BY seq LIMIT ?");
    let upper = filter.action.as_ref().map(|a| format!("{a}\u{10FFFF}"));
    let mut q = sqlx::query(&sql).bind(since);
    if let Some(actor) = &filter.actor {
        q = q.bind(actor.as_str());
    }
    if let (Some(action), Some(upper)) = (&filter.action, &upper) {
        q = q.bind(action.as_str()).bind(upper.as_str());
    }
    if let Some(object) = &filter.object {
        q = q.bind(object.as_str());
    }
    let rows = q.bind(limit as i64).fetch_all(exec).await?;
    rows.iter()
        .map(|row| {
            let seq: i64 = row.try_get(0)?;
            let canonical: &[u8] = row.try_get(1)?;
            let prev: &[u8] = row.try_get(2)?;
            let hash: &[u8] = row.try_get(3)?;
            record_from_canonical(seq, canonical, prev, hash)
        })
        .collect()
}

/// Parses a stored event. Used by `list`; fails on content that is not a
/// format v1 event (which `verify` would report as tampering).
fn record_from_canonical(
    seq: i64,
    canonical: &[u8],
    prev: &[u8],
    hash: &[u8],
) -> Result<AuditRecord> {
    #[derive(serde::Deserialize)]
    struct Stored {
        v: u32,
        seq: u64,
        id: String,
        time: String,
        actor: String,
        role: String,
        action: String,
        object: String,
        outcome: Outcome,
        details: Value,
    }
    let unreadable = || Error::Audit(format!("event {seq} is not readable; run audit verify"));
    let s: Stored = serde_json::from_slice(canonical).map_err(|_| unreadable())?;
    if s.v != format::FORMAT_VERSION || i64::try_from(s.seq).ok() != Some(seq) {
        return Err(unreadable());
    }
    Ok(AuditRecord {
        seq: s.seq,
        id: s.id,
        time: s.time,
        actor: s.actor,
        role: s.role,
        action: s.action,
        object: s.object,
        outcome: s.outcome,
        details: s.details,
        prev_hash: hex::encode(prev),
        hash: hex::encode(hash),
    })
}

/// The writer's view of the chain.
#[derive(Debug, Clone)]
struct ChainState {
    seq: u64,
    hash: Hash,
    last_checkpoint: Option<Checkpoint>,
    /// Seq of the newest checkpoint, 0 if none.
    checkpoint_seq: u64,
    /// Hashes of the events (checkpoint_seq, seq].
    tail: Vec<Hash>,
}

impl ChainState {
    fn head_state(&self, closed: bool) -> HeadState {
        HeadState {
            seq: self.seq,
            hash: self.hash,
            checkpoint_seq: self.checkpoint_seq,
            tail: self.tail.concat(),
            closed,
        }
    }
}

fn db_hash(bytes: &[u8], what: &str) -> Result<Hash> {
    format::to_hash(bytes).ok_or_else(|| {
        Error::Audit(format!(
            "stored {what} is not a 32-byte hash; run audit verify"
        ))
    })
}

fn db_seq(v: i64) -> Result<u64> {
    u64::try_from(v)
        .map_err(|_| Error::Audit("stored sequence number is negative; run audit verify".into()))
}

async fn load_state(conn: &mut SqliteConnection) -> Result<ChainState> {
    let head = sqlx::query("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let (seq, hash) = match head {
        Some(row) => (
            db_seq(row.try_get(0)?)?,
            db_hash(row.try_get(1)?, "event hash")?,
        ),
        None => (0, GENESIS),
    };
    let cp =
        sqlx::query("SELECT seq, hash, time, signature FROM checkpoints ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let last_checkpoint = match cp {
        Some(row) => Some(Checkpoint {
            seq: db_seq(row.try_get(0)?)?,
            hash: hex::encode(row.try_get::<&[u8], _>(1)?),
            time: row.try_get(2)?,
            signature: hex::encode(row.try_get::<&[u8], _>(3)?),
        }),
        None => None,
    };
    let checkpoint_seq = last_checkpoint.as_ref().map_or(0, |c| c.seq);
    if checkpoint_seq > seq {
        return Err(Error::Audit(format!(
            "the audit log ends at seq {seq} but has a checkpoint at seq {checkpoint_seq}: events were removed; run audit verify"
        )));
    }
    let rows = sqlx::query("SELECT hash FROM events WHERE seq > ? ORDER BY seq")
        .bind(checkpoint_seq as i64)
        .fetch_all(&mut *conn)
        .await?;
    let tail = rows
        .iter()
        .map(|r| db_hash(r.try_get(0)?, "event hash"))
        .collect::<Result<Vec<_>>>()?;
    if tail.len() as u64 != seq - checkpoint_seq {
        return Err(Error::Audit(
            "the audit log has a gap after its newest checkpoint; run audit verify".into(),
        ));
    }
    Ok(ChainState {
        seq,
        hash,
        last_checkpoint,
        checkpoint_seq,
        tail,
    })
}

/// Cheap consistency checks at open; the full check is `verify`.
async fn check_against_witness(
    conn: &mut SqliteConnection,
    path: &Path,
    state: &ChainState,
    public_key: &[u8],
) -> Result<()> {
    let refuse = |why: &str| {
        Err(Error::Audit(format!(
            "refusing to open the audit log: {why}; run audit verify"
        )))
    };
    let w = match witness::read(path) {
        Ok(Some(w)) => w,
        Ok(None) if state.seq == 0 => return Ok(()),
        Ok(None) => return refuse("its head witness file is missing"),
        Err(e) => return refuse(&e),
    };
    if let Err(e) = w.check(public_key)
        && !rotated_from_witness_key(conn, &w, public_key).await?
    {
        return refuse(&e);
    }
    let ws = &w.state;
    if ws.seq > state.seq {
        return refuse(&format!(
            "the log ends at seq {} but its head witness is at seq {}",
            state.seq, ws.seq
        ));
    }
    if ws.closed && state.seq > ws.seq {
        return refuse(&format!(
            "events after seq {} were added after the log was closed",
            ws.seq
        ));
    }
    let at_witness = if ws.seq == state.seq {
        state.hash
    } else if ws.seq == 0 {
        GENESIS
    } else {
        let row = sqlx::query("SELECT hash FROM events WHERE seq = ?")
            .bind(ws.seq as i64)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            Some(row) => db_hash(row.try_get(0)?, "event hash")?,
            None => {
                return refuse(&format!(
                    "event {} named by the head witness is missing",
                    ws.seq
                ));
            }
        }
    };
    if at_witness != ws.hash {
        return refuse(&format!("event {} differs from the head witness", ws.seq));
    }
    Ok(())
}

/// Whether the newest key rotation of the log introduced `public_key`, and
/// the witness is signed by the key it replaced, at or after the rotation:
/// the first open after `keys rotate`, before the witness is re-signed.
async fn rotated_from_witness_key(
    conn: &mut SqliteConnection,
    w: &witness::Witness,
    public_key: &[u8],
) -> Result<bool> {
    let row = sqlx::query(
        "SELECT seq, canonical, prev_hash, hash FROM events WHERE action = ? \
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(super::keys::ROTATE_ACTION)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let rec = record_from_canonical(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
    )?;
    let Some(previous) = rec.details["previous_key"]
        .as_str()
        .and_then(|k| hex::decode(k).ok())
    else {
        return Ok(false);
    };
    Ok(
        super::keys::rotation(&rec, &previous).is_ok_and(|next| next == public_key)
            && w.state.seq >= rec.seq
            && w.check(&previous).is_ok(),
    )
}

async fn write_witness(
    path: PathBuf,
    witness_dir: Option<PathBuf>,
    signer: Arc<Ed25519KeyPair>,
    key_id: String,
    state: HeadState,
    sync_dir: bool,
) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        let time = rfc3339_micros(chrono::Utc::now());
        let bytes = witness::encode(&state, &signer, &key_id, &time);
        witness::write(&path, &bytes, sync_dir)?;
        match witness_dir {
            // Same bytes, same atomic replace, in the witness's own place.
            Some(dir) => witness::write(&dir.join("audit.db"), &bytes, sync_dir),
            None => Ok(()),
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("audit witness task: {e}")))?
}

/// Writes the newest published head, coalescing and rate-limiting rewrites.
/// Ends when the writer drops its sender, after writing the last state.
async fn witness_loop(
    path: PathBuf,
    witness_dir: Option<PathBuf>,
    signer: Arc<Ed25519KeyPair>,
    key_id: String,
    mut rx: watch::Receiver<HeadState>,
) -> Result<()> {
    let mut last = Ok(());
    while rx.changed().await.is_ok() {
        let state = rx.borrow_and_update().clone();
        let closed = state.closed;
        last = write_witness(
            path.clone(),
            witness_dir.clone(),
            signer.clone(),
            key_id.clone(),
            state,
            closed,
        )
        .await;
        if let Err(e) = &last {
            tracing::error!(error = %e, "audit head witness not written");
        }
        if !closed {
            tokio::time::sleep(WITNESS_MIN_INTERVAL).await;
        }
    }
    last
}

struct Staged {
    pending: Box<Pending>,
    reply: oneshot::Sender<Result<AuditRecord>>,
    seq: u64,
    id: String,
    time: String,
    canonical: Vec<u8>,
    prev: Hash,
    hash: Hash,
}

struct StagedCheckpoint {
    seq: u64,
    from_seq: u64,
    hash: Hash,
    time: String,
    hashes: Vec<u8>,
    signature: Vec<u8>,
}

enum Control {
    Checkpoint(oneshot::Sender<Result<Checkpoint>>),
    Close(oneshot::Sender<Result<()>>),
}

struct Writer {
    conn: Option<SqliteConnection>,
    signer: Arc<Ed25519KeyPair>,
    key_id: String,
    opts: AuditOptions,
    state: ChainState,
    ctx: uuid::ContextV7,
    shared: Arc<Shared>,
    witness_tx: Option<watch::Sender<HeadState>>,
    witness_task: Option<JoinHandle<Result<()>>>,
    /// Held (flock) for the writer's lifetime; dropping it unlocks.
    lock: Option<std::fs::File>,
}

fn insert_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<[String; 3]> = OnceLock::new();
    let all = SQL.get_or_init(|| {
        CHUNKS.map(|n| {
            let one = format!("({})", ["?"; EVENT_COLUMNS].join(","));
            format!(
                "INSERT INTO events (seq, id, time, actor, role, action, object, outcome, canonical, prev_hash, hash) VALUES {}",
                vec![one; n].join(",")
            )
        })
    });
    let i = CHUNKS
        .iter()
        .position(|&n| n == rows)
        .expect("chunk sizes come from CHUNKS");
    &all[i]
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut appends = Vec::with_capacity(self.opts.max_batch.min(4096));
        loop {
            let Some(first) = rx.recv().await else {
                // Every handle was dropped: close as if asked to.
                let _ = self.shutdown().await;
                return;
            };
            // The first sender's wakeup runs the writer right away (tokio's LIFO
            // slot); yielding once lets the other appenders woken by the last
            // commit enqueue, so batches stay large instead of alternating
            // between one event and everything else.
            tokio::task::yield_now().await;
            let mut control = None;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Append(p, reply) => appends.push((p, reply)),
                    Command::Checkpoint(reply) => control = Some(Control::Checkpoint(reply)),
                    Command::Close(reply) => control = Some(Control::Close(reply)),
                }
                if control.is_none() && appends.len() < self.opts.max_batch {
                    next = rx.try_recv().ok();
                }
            }
            if !appends.is_empty() {
                self.commit_appends(&mut appends).await;
            }
            match control {
                None => {}
                Some(Control::Checkpoint(reply)) => {
                    let _ = reply.send(self.explicit_checkpoint().await);
                }
                Some(Control::Close(reply)) => {
                    let result = self.shutdown().await;
                    // Refuse what is still queued before acknowledging the close.
                    drop(rx);
                    let _ = reply.send(result);
                    return;
                }
            }
        }
    }

    /// Assigns seq, id, time and hashes, and signs the checkpoints that fall
    /// inside the batch (every `checkpoint_every` events).
    fn stage(
        &mut self,
        appends: &mut Vec<(Box<Pending>, oneshot::Sender<Result<AuditRecord>>)>,
    ) -> (Vec<Staged>, Vec<StagedCheckpoint>) {
        let mut staged = Vec::with_capacity(appends.len());
        let mut checkpoints = Vec::new();
        for (pending, reply) in appends.drain(..) {
            let now = chrono::Utc::now();
            let time = rfc3339_micros(now);
            let ts = uuid::Timestamp::from_unix(
                &self.ctx,
                now.timestamp().max(0) as u64,
                now.timestamp_subsec_nanos(),
            );
            let id = Uuid::new_v7(ts).hyphenated().to_string();
            let seq = self.state.seq + 1;
            let mut canonical = Vec::with_capacity(240 + pending.details_bytes.len());
            write_canonical(
                &mut canonical,
                &Header {
                    seq,
                    id: &id,
                    time: &time,
                    actor: &pending.actor,
                    role: &pending.role,
                    action: &pending.action,
                    object: &pending.object,
                    outcome: pending.outcome.as_str(),
                },
                &pending.details_bytes,
            );
            let prev = self.state.hash;
            let hash = chain_hash(&prev, &canonical);
            self.state.seq = seq;
            self.state.hash = hash;
            self.state.tail.push(hash);
            staged.push(Staged {
                pending,
                reply,
                seq,
                id,
                time,
                canonical,
                prev,
                hash,
            });
            if seq.is_multiple_of(self.opts.checkpoint_every) {
                checkpoints.push(self.stage_checkpoint());
            }
        }
        (staged, checkpoints)
    }

    /// Signs a checkpoint at the current head and starts a new interval.
    fn stage_checkpoint(&mut self) -> StagedCheckpoint {
        let time = rfc3339_micros(chrono::Utc::now());
        let hashes = self.state.tail.concat();
        let msg = CheckpointMessage {
            seq: self.state.seq,
            from_seq: self.state.checkpoint_seq,
            hash: &self.state.hash,
            hashes_digest: &sha256(&hashes),
            time: &time,
            key_id: &self.key_id,
        }
        .to_bytes();
        let signature = self.signer.sign(&msg).as_ref().to_vec();
        let cp = StagedCheckpoint {
            seq: self.state.seq,
            from_seq: self.state.checkpoint_seq,
            hash: self.state.hash,
            time,
            hashes,
            signature,
        };
        self.state.last_checkpoint = Some(Checkpoint {
            seq: cp.seq,
            hash: hex::encode(cp.hash),
            time: cp.time.clone(),
            signature: hex::encode(&cp.signature),
        });
        self.state.checkpoint_seq = cp.seq;
        self.state.tail.clear();
        cp
    }

    async fn write(
        &mut self,
        events: &[Staged],
        checkpoints: &[StagedCheckpoint],
    ) -> sqlx::Result<()> {
        let conn = self.conn.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        let mut tx = conn.begin().await?;
        let mut rest = events;
        while !rest.is_empty() {
            let n = *CHUNKS.iter().find(|&&n| n <= rest.len()).unwrap_or(&1);
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut q = sqlx::query(insert_sql(n));
            for e in chunk {
                q = q
                    .bind(e.seq as i64)
                    .bind(e.id.as_str())
                    .bind(e.time.as_str())
                    .bind(e.pending.actor.as_str())
                    .bind(e.pending.role.as_str())
                    .bind(e.pending.action.as_str())
                    .bind(e.pending.object.as_str())
                    .bind(e.pending.outcome.as_str())
                    .bind(e.canonical.as_slice())
                    .bind(&e.prev[..])
                    .bind(&e.hash[..]);
            }
            q.execute(&mut *tx).await?;
        }
        for cp in checkpoints {
            sqlx::query(
                "INSERT INTO checkpoints (seq, from_seq, hash, time, hashes, key_id, signature) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(cp.seq as i64)
            .bind(cp.from_seq as i64)
            .bind(&cp.hash[..])
            .bind(cp.time.as_str())
            .bind(cp.hashes.as_slice())
            .bind(self.key_id.as_str())
            .bind(cp.signature.as_slice())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// After a failed transaction the in-memory head may be ahead of the file:
    /// reload it from what is committed.
    async fn recover(&mut self, error: &sqlx::Error) -> Error {
        tracing::error!(%error, "audit batch not committed");
        if let Some(conn) = self.conn.as_mut() {
            match load_state(conn).await {
                Ok(state) => self.state = state,
                Err(e) => {
                    tracing::error!(error = %e, "audit head cannot be reloaded; closing the audit log");
                    self.shared.closed.store(true, Ordering::Release);
                }
            }
        }
        Error::Internal(format!("audit log write failed: {error}"))
    }

    fn publish(&mut self, closed: bool) {
        *self.shared.head.lock().unwrap_or_else(|e| e.into_inner()) =
            (self.state.seq, self.state.hash);
        if let Some(tx) = &self.witness_tx {
            let _ = tx.send(self.state.head_state(closed));
        }
    }

    async fn commit_appends(
        &mut self,
        appends: &mut Vec<(Box<Pending>, oneshot::Sender<Result<AuditRecord>>)>,
    ) {
        if self.shared.closed.load(Ordering::Acquire) {
            appends.clear();
            return;
        }
        let (staged, checkpoints) = self.stage(appends);
        match self.write(&staged, &checkpoints).await {
            Ok(()) => {
                self.publish(false);
                for s in staged {
                    let Staged {
                        pending,
                        reply,
                        seq,
                        id,
                        time,
                        prev,
                        hash,
                        ..
                    } = s;
                    let p = *pending;
                    let _ = reply.send(Ok(AuditRecord {
                        seq,
                        id,
                        time,
                        actor: p.actor,
                        role: p.role,
                        action: p.action,
                        object: p.object,
                        outcome: p.outcome,
                        details: p.details,
                        prev_hash: hex::encode(prev),
                        hash: hex::encode(hash),
                    }));
                }
            }
            Err(e) => {
                let err = self.recover(&e).await;
                for s in staged {
                    let _ = s.reply.send(Err(Error::Internal(err.to_string())));
                }
            }
        }
    }

    /// Checkpoint at the head unless it already is one. `Ok(None)` for an empty log.
    async fn checkpoint_head(&mut self) -> Result<Option<Checkpoint>> {
        if self.state.seq == self.state.checkpoint_seq {
            return Ok(self.state.last_checkpoint.clone());
        }
        let cp = self.stage_checkpoint();
        match self.write(&[], std::slice::from_ref(&cp)).await {
            Ok(()) => {
                self.publish(false);
                Ok(self.state.last_checkpoint.clone())
            }
            Err(e) => Err(self.recover(&e).await),
        }
    }

    async fn explicit_checkpoint(&mut self) -> Result<Checkpoint> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(closed_error());
        }
        self.checkpoint_head()
            .await?
            .ok_or_else(|| Error::Conflict("the audit log has no events to checkpoint".into()))
    }

    /// Final checkpoint, `closed` witness, then release the database and lock.
    async fn shutdown(&mut self) -> Result<()> {
        if self.conn.is_none() {
            return Ok(());
        }
        let checkpointed = self.checkpoint_head().await.map(|_| ());
        self.shared.closed.store(true, Ordering::Release);
        self.publish(checkpointed.is_ok());
        // Dropping the sender lets the witness task write the last state and end.
        self.witness_tx = None;
        let witnessed = match self.witness_task.take() {
            Some(task) => task
                .await
                .map_err(|e| Error::Internal(format!("audit witness task: {e}")))
                .and_then(|r| r),
            None => Ok(()),
        };
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
        self.lock = None;
        checkpointed.and(witnessed)
    }
}
