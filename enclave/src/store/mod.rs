//! The metadata store: SQLite through sqlx, with embedded migrations.
//!
//! Callers never write SQL: every query lives in this module, behind the
//! methods of [`Store`]. That method set is the interface a PostgreSQL backend
//! would implement later; nothing outside `store` knows which database runs.
//!
//! SQLite runs in WAL mode with `synchronous = FULL`: a method that returned
//! `Ok` has reached the disk. Transactions begin `IMMEDIATE`: most read a
//! row's MAC before writing it, and a deferred transaction that read first
//! cannot take the write lock once another connection wrote (it would fail
//! with "database is locked" instead of waiting).

mod access;
mod catalog;
mod complaints;
mod identity;
mod jobs;
mod models;
mod seal;

use std::path::Path;
use std::str::FromStr;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub use access::{
    AgreementRecord, ApplicationEventRecord, ApplicationRecord, ChargeRefusal,
    ConsentVersionRecord, GrantEventRecord, MaterialRecord, NewApplicationEvent, NewGrantEvent,
    ProjectRecord, UsageReportRecord,
};
pub use catalog::{DatasetRecord, ImportRecord, ManifestRevision, VersionRecord};
pub use complaints::{ComplaintRecord, NewComplaintRecord};
pub(crate) use identity::enum_from_text;
pub use identity::{AccountRequestRecord, SessionRecord, UserCredentials};
pub use jobs::{
    JobDataset, JobRecord, JobStatus, ReleaseFile, ReleaseRecord, ReviewRecord, SealedResult,
};
pub use models::{ModelApprovalRecord, ModelRecord};
pub(crate) use seal::Sealer;
pub use seal::{Sealing, TamperHook};

use crate::{Error, Result};

/// Handle to the metadata database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
    sealer: Sealer,
}

impl Store {
    /// Opens (creating if missing) the database at `path` and applies pending
    /// migrations. The keyring gives the key of the rows' MACs (`seal.rs`).
    pub async fn open(path: &Path, keyring: &crate::keyring::Keyring) -> Result<Store> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io("create directory", parent))?;
        }
        create_private_file(path)?;
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/meta")
            .run(&pool)
            .await
            .map_err(|e| Error::Internal(format!("metadata migrations failed: {e}")))?;
        Ok(Store {
            pool,
            sealer: Sealer::new(keyring.derive(META_MAC_LABEL)),
        })
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The label of the metadata MAC key under the master key.
const META_MAC_LABEL: &str = "anyu:meta-mac";

/// Current UTC time in the RFC 3339 form used by every stored timestamp.
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Creates `path` empty with mode 0600 if it is missing, so SQLite (whose
/// `-wal` and `-shm` files copy the database's mode) never makes it readable
/// by others, whatever the process umask.
pub(crate) fn create_private_file(path: &std::path::Path) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map(drop).map_err(Error::io("create", path))
}
