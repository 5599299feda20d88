//! Warm query sessions: a grant's session (its DataFusion context with the
//! grant's views over opened version tables) kept between its jobs, so a job
//! does not build it again.
//!
//! A session serves one job at a time: the job takes it at submission and
//! gives it back once its checks are done; another job of the grant
//! meanwhile opens its own, so each job keeps its own memory pool. Idle
//! sessions are kept for a few grants, the least recently used dropped
//! first. A session is reused only when everything it was built from is
//! unchanged: its [`WarmKey`] holds the grant's datasets (version policy,
//! columns, row filters) and usage method, and per dataset the version,
//! its file's hash, the manifest revision and the consent table, all read
//! anew for every job — a new version or manifest opens a new session.
//! Every change of a grant's state (suspension, reinstatement, revocation,
//! expiry) drops the idle sessions of that grant, and a session taken
//! before the change is not given back.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::access::{Grant, GrantedDataset};
use crate::catalog::UsageMethod;
use crate::query::{QuerySession, TableSpec};

/// Idle sessions kept at most (one per grant and key).
const KEPT: usize = 8;

/// What a session was built from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WarmKey {
    grant_id: String,
    datasets: Vec<GrantedDataset>,
    usage_method: UsageMethod,
    /// Per dataset: id, version, file hash, manifest revision, consent table.
    tables: Vec<(String, u64, String, u64, Option<PathBuf>)>,
}

impl WarmKey {
    pub(crate) fn new(grant: &Grant, specs: &[TableSpec]) -> WarmKey {
        WarmKey {
            grant_id: grant.id.clone(),
            datasets: grant.datasets.clone(),
            usage_method: grant.usage_method,
            tables: specs
                .iter()
                .map(|s| {
                    (
                        s.dataset_id.clone(),
                        s.version,
                        s.version_sha256.clone(),
                        s.manifest_revision,
                        s.consent_dir.clone(),
                    )
                })
                .collect(),
        }
    }
}

/// A session taken for a job: given back with the generation it was taken in.
pub(crate) struct Taken {
    pub(crate) key: WarmKey,
    generation: u64,
}

/// Counts of the warm sessions, for tests and measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WarmStats {
    /// Idle sessions kept now.
    pub idle: usize,
    /// Sessions built for SQL jobs.
    pub opened: u64,
    /// SQL jobs that reused an idle session.
    pub reused: u64,
}

#[derive(Default)]
struct Inner {
    /// Most recently given back last.
    idle: VecDeque<(WarmKey, QuerySession)>,
    /// Raised by every grant state change: a session taken before one is not kept.
    generation: u64,
    opened: u64,
    reused: u64,
}

/// The idle sessions.
#[derive(Default)]
pub(crate) struct WarmSessions {
    inner: Mutex<Inner>,
}

impl WarmSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The idle session built from exactly `key`, if one is kept.
    pub(crate) fn take(&self, key: &WarmKey) -> (Option<QuerySession>, Taken) {
        let mut inner = self.lock();
        let session = inner
            .idle
            .iter()
            .position(|(k, _)| k == key)
            .and_then(|i| inner.idle.remove(i))
            .map(|(_, s)| s);
        if session.is_some() {
            inner.reused += 1;
        } else {
            inner.opened += 1;
        }
        let taken = Taken {
            key: key.clone(),
            generation: inner.generation,
        };
        (session, taken)
    }

    /// Keeps `session` for the grant's next job, unless a grant changed
    /// state since it was taken or it still holds memory.
    pub(crate) fn give_back(&self, taken: Taken, session: QuerySession) {
        if session.memory_reserved() > 0 {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != taken.generation {
            return;
        }
        // One idle session per grant: an older one (of an older key) goes.
        inner.idle.retain(|(k, _)| k.grant_id != taken.key.grant_id);
        inner.idle.push_back((taken.key, session));
        while inner.idle.len() > KEPT {
            inner.idle.pop_front();
        }
    }

    /// Drops the idle sessions of `grant_id`; sessions taken before are not
    /// given back.
    pub(crate) fn forget_grant(&self, grant_id: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.idle.retain(|(k, _)| k.grant_id != grant_id);
    }

    /// Drops every idle session (a new version or consent table: their keys
    /// no longer match; this frees their memory at once).
    pub(crate) fn forget_all(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.idle.clear();
    }

    pub(crate) fn stats(&self) -> WarmStats {
        let inner = self.lock();
        WarmStats {
            idle: inner.idle.len(),
            opened: inner.opened,
            reused: inner.reused,
        }
    }
}
