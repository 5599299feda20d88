//! Sketches on demand. A job's plan runs without the differencing sketches:
//! each cell (output row, inner cell) carries its unit count and identity
//! only. The counts select the candidates exactly as
//! [`diff::compare`] prunes them; only when a candidate exists is
//! the job's eager plan (sketches on) run, and an earlier result whose
//! cells were never sketched is sketched by re-running its plan over the
//! same dataset versions and grant views (stored with it as a [`Replay`]),
//! then stored, so that it is computed once.
//!
//! ```text
//!  lazy plan ─▶ cells (units, identity) ─▶ [lock] earlier cells ─▶ candidates?
//!     none ─▶ compare (nothing to decode) ─▶ stored without sketches ─▶ [unlock at seal]
//!     some ─▶ [unlock] eager plan ─▶ [lock] earlier cells ─▶ candidates
//!            ─▶ earlier candidates without sketches: replay their jobs, store
//!            ─▶ compare ─▶ stored with sketches ─▶ [unlock at seal]
//! ```

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::access::RowFilter;
use crate::audit::Outcome;
use crate::catalog::{DisclosurePolicy, Manifest};
use crate::disclosure::differencing::{self as diff, Earlier, Findings, ResultPrints, Stored};
use crate::domain::{Actor, Domain};
use crate::query::fingerprint::FingerprintKey;
use crate::query::rewrite::{self, RewriteOptions};
use crate::query::{self, Guard, PlannedQuery, QuerySession, SessionLimits, TableSpec};
use crate::storage::blob;
use crate::store::JobRecord;
use crate::{Error, Result};

use super::checks::{Differenced, result_prints};
use super::job_object;

/// What re-running a job's plan needs: its session's tables as they were
/// (versions, grant views, consent table, policy), sealed with its cells.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(in crate::domain) struct Replay {
    aggregate_only: bool,
    tables: Vec<ReplayTable>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ReplayTable {
    dataset_id: String,
    version: u64,
    /// Relative to the data directory.
    version_dir: String,
    version_sha256: String,
    /// The manifest revision the session was built from.
    #[serde(default)]
    manifest_revision: u64,
    manifest: Manifest,
    policy: DisclosurePolicy,
    reviewers_required: u32,
    columns: Vec<String>,
    row_filter: RowFilter,
    consent_dir: Option<String>,
    units_unique: bool,
}

fn relative(root: &Path, p: &Path) -> String {
    p.strip_prefix(root)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

impl Replay {
    pub(in crate::domain) fn new(root: &Path, specs: &[TableSpec], aggregate_only: bool) -> Replay {
        Replay {
            aggregate_only,
            tables: specs
                .iter()
                .map(|s| ReplayTable {
                    dataset_id: s.dataset_id.clone(),
                    version: s.version,
                    version_dir: relative(root, &s.version_dir),
                    version_sha256: s.version_sha256.clone(),
                    manifest_revision: s.manifest_revision,
                    manifest: s.manifest.clone(),
                    policy: s.policy.clone(),
                    reviewers_required: s.reviewers_required,
                    columns: s.columns.clone(),
                    row_filter: s.row_filter.clone(),
                    consent_dir: s.consent_dir.as_deref().map(|d| relative(root, d)),
                    units_unique: s.units_unique,
                })
                .collect(),
        }
    }

    fn specs(&self, root: &Path) -> Vec<TableSpec> {
        self.tables
            .iter()
            .map(|t| TableSpec {
                dataset_id: t.dataset_id.clone(),
                version: t.version,
                version_dir: root.join(&t.version_dir),
                version_sha256: t.version_sha256.clone(),
                manifest_revision: t.manifest_revision,
                manifest: t.manifest.clone(),
                policy: t.policy.clone(),
                reviewers_required: t.reviewers_required,
                columns: t.columns.clone(),
                row_filter: t.row_filter.clone(),
                consent_dir: t.consent_dir.as_ref().map(|d| root.join(d)),
                units_unique: t.units_unique,
            })
            .collect()
    }

    /// What fixes the rows the views give beyond the plan itself: the
    /// versions (by their files' hashes), the consent table, the granted
    /// columns and row filters. Cells' identities include it.
    fn seed(&self, key: &FingerprintKey) -> u128 {
        use siphasher::sip128::Hasher128;
        use std::hash::Hasher;
        let views: Vec<_> = self
            .tables
            .iter()
            .map(|t| {
                (
                    &t.dataset_id,
                    t.version,
                    &t.version_sha256,
                    &t.columns,
                    serde_json::to_string(&t.row_filter).unwrap_or_default(),
                    &t.consent_dir,
                    t.units_unique,
                )
            })
            .collect();
        let text = serde_json::to_vec(&(self.aggregate_only, views)).unwrap_or_default();
        let mut h = key.identity_hasher();
        h.write(b"views\xff");
        h.write(&text);
        h.finish128().as_u128()
    }
}

/// A cell identity from the plan, with the session's views folded in.
fn fold(key: &FingerprintKey, seed: u128, id: u128) -> u128 {
    use siphasher::sip128::Hasher128;
    use std::hash::Hasher;
    let mut h = key.identity_hasher();
    h.write(b"cell\xff");
    h.write(&seed.to_le_bytes());
    h.write(&id.to_le_bytes());
    h.finish128().as_u128()
}

/// The result's cells with their identities complete.
fn prints_of(
    planned: &PlannedQuery,
    executed: &query::Executed,
    key: &FingerprintKey,
    seed: u128,
) -> Option<ResultPrints> {
    let mut prints = result_prints(planned, executed)?;
    for p in prints
        .rows
        .iter_mut()
        .flatten()
        .chain(prints.inner.iter_mut().map(|(_, p)| p))
    {
        p.id = p.id.map(|id| fold(key, seed, id));
    }
    Some(prints)
}

/// `planned` without the sketches in the plan, when that gives the same
/// cells: `None` when its rows are not fixed by the plan (volatile
/// functions, LIMIT below an aggregation), or the rewrite came out
/// otherwise; such a job runs its eager plan.
pub(super) fn lazy_plan(
    session: &QuerySession,
    planned: &PlannedQuery,
    key: &FingerprintKey,
) -> Option<PlannedQuery> {
    if planned.dp.is_some() || planned.rewritten.thresholded == 0 || !planned.rewritten.stable {
        return None;
    }
    let options = RewriteOptions {
        dominance: true,
        fingerprint: Some(key.clone()),
        sketches: false,
    };
    let mut rewritten =
        rewrite::rewrite(&planned.logical, session.tables(), &planned.facts, &options).ok()?;
    if rewritten.thresholded != planned.rewritten.thresholded
        || rewritten.strategies != planned.rewritten.strategies
        || !rewritten.stable
    {
        return None;
    }
    let limit = usize::try_from(session.max_output_rows().saturating_add(1)).unwrap_or(usize::MAX);
    rewritten.plan = datafusion::logical_expr::LogicalPlanBuilder::from(rewritten.plan)
        .limit(0, Some(limit))
        .and_then(|b| b.build())
        .ok()?;
    Some(PlannedQuery {
        logical: planned.logical.clone(),
        facts: planned.facts.clone(),
        rewritten,
        dp: None,
    })
}

/// Earlier results' cells kept in memory by job, so a check does not
/// unseal every earlier result (filled on a miss, from the store; a record
/// changes only when its cells are sketched, which updates it here too).
/// Bounded by [`MAX_KEPT_CELLS`]: past it, whole results are let go.
#[derive(Debug, Default)]
pub(crate) struct EarlierCells {
    by_job: HashMap<String, Arc<Earlier>>,
    cells: usize,
}

/// Cells kept in memory (about 300 bytes each when sketched at threshold 10).
pub const MAX_KEPT_CELLS: usize = 500_000;

fn cell_count(e: &Earlier) -> usize {
    e.prints.rows.len() + e.prints.inner.len()
}

impl EarlierCells {
    fn keep(&mut self, e: Arc<Earlier>) {
        let n = cell_count(&e);
        if n > MAX_KEPT_CELLS {
            return;
        }
        while self.cells + n > MAX_KEPT_CELLS {
            let Some(k) = self.by_job.keys().next().cloned() else {
                break;
            };
            if let Some(old) = self.by_job.remove(&k) {
                self.cells -= cell_count(&old);
            }
        }
        if let Some(old) = self.by_job.insert(e.job_id.clone(), e) {
            self.cells -= cell_count(&old);
        }
        self.cells += n;
    }
}

/// Earlier results' cells and how many did not open.
type EarlierResults = (Vec<Arc<Earlier>>, usize);

/// The outcome of the differencing step: the plan whose result is checked
/// (the eager one when it had to run), its result, and the comparison.
pub(super) type Differenced3 = (
    QuerySession,
    PlannedQuery,
    query::Executed,
    Option<(Findings, Differenced)>,
);

impl Domain {
    /// Compares the result of `ran` with every earlier result of the grant
    /// or the researcher, computing sketches only where a comparison needs
    /// them (see the module's documentation). `eager` is the job's plan with
    /// sketches when `ran` was run without.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn difference_lazily(
        &self,
        job: &JobRecord,
        session: QuerySession,
        ran: PlannedQuery,
        executed: query::Executed,
        eager: Option<PlannedQuery>,
        guard: &Arc<Guard>,
        replay: &Replay,
    ) -> Result<Differenced3> {
        let key = FingerprintKey::from_keyring(&self.keyring);
        let seed = replay.seed(&key);
        let policies: Vec<&DisclosurePolicy> = session
            .tables()
            .iter()
            .filter(|t| ran.facts.datasets.contains(&t.dataset_id))
            .map(|t| &t.policy)
            .collect();
        let threshold = crate::disclosure::strictest(&policies).threshold;
        let Some(prints) = prints_of(&ran, &executed, &key, seed) else {
            return Ok((session, ran, executed, None));
        };
        let mut lock = Arc::clone(&self.jobs.differencing).lock_owned().await;
        let (earlier, unreadable) = self.earlier_results(job, &mut lock).await?;
        let needed = diff::candidates(&job.id, &prints, &earlier, threshold);
        let (session, ran, executed, prints, mut lock, (earlier, unreadable), needed) =
            match (needed.is_empty(), eager) {
                (false, Some(eager)) => {
                    // Never hold the lock while a plan runs.
                    drop(lock);
                    let (session, eager, executed) = self
                        .execute_on_query_runtime(session, eager, Arc::clone(guard))
                        .await?;
                    let executed = executed.map_err(query::job_failure)?;
                    let prints = prints_of(&eager, &executed, &key, seed)
                        .ok_or_else(|| Error::Internal("the eager plan gave no sketches".into()))?;
                    let mut lock = Arc::clone(&self.jobs.differencing).lock_owned().await;
                    let loaded = self.earlier_results(job, &mut lock).await?;
                    let needed = diff::candidates(&job.id, &prints, &loaded.0, threshold);
                    (session, eager, executed, prints, lock, loaded, needed)
                }
                _ => (
                    session,
                    ran,
                    executed,
                    prints,
                    lock,
                    (earlier, unreadable),
                    needed,
                ),
            };
        let (mut earlier, mut unreadable) = (earlier, unreadable);
        // Earlier candidates never sketched: sketched now, once.
        let stale: BTreeSet<usize> = needed
            .iter()
            .filter(|n| n.result < earlier.len())
            .filter(|n| {
                let p = &earlier[n.result].prints;
                let cell = if n.inner {
                    p.inner.get(n.index as usize).map(|(_, c)| c)
                } else {
                    p.rows.get(n.index as usize).and_then(Option::as_ref)
                };
                cell.is_some_and(|c| c.sketch.is_none())
            })
            .map(|n| n.result)
            .collect();
        for r in stale {
            match self.sketch_earlier(&earlier[r], &key, guard).await {
                Ok(sketched) => {
                    let sketched = Arc::new(sketched);
                    lock.keep(Arc::clone(&sketched));
                    earlier[r] = sketched;
                }
                Err(e) => {
                    tracing::error!(job = %earlier[r].job_id, error = %e,
                        "an earlier result could not be sketched again");
                    unreadable += 1;
                }
            }
        }
        let mut findings =
            diff::compare(&job.id, &prints, &earlier, threshold, diff::DEFAULT_BUDGET);
        // What cannot be compared is not passed as compared.
        findings.complete &= unreadable == 0;
        let mut stored = Stored::new(&prints, Some(findings.clone()));
        stored.inner_aggregations = ran.rewritten.inner_aggregations.clone();
        stored.replay = serde_json::to_value(replay).ok();
        let json = serde_json::to_vec(&stored)
            .map_err(|e| Error::Internal(format!("encoding sketches: {e}")))?;
        let (sealed_key, sealed) = blob::seal(
            &self.keyring,
            &blob::SealedFor::Differencing(&job.id).aad(),
            &json,
        )?;
        let sketched = prints
            .rows
            .iter()
            .flatten()
            .chain(prints.inner.iter().map(|(_, p)| p))
            .any(|p| p.sketch.is_some());
        let differenced = Differenced::new(sealed, sealed_key, &findings, sketched, lock);
        Ok((session, ran, executed, Some((findings, differenced))))
    }

    /// Every earlier result of the grant or the researcher whose sketches
    /// open (from memory, else unsealed and kept), and how many do not.
    async fn earlier_results(
        &self,
        job: &JobRecord,
        kept: &mut EarlierCells,
    ) -> Result<EarlierResults> {
        let mut earlier = Vec::new();
        let mut unreadable = 0;
        for id in self
            .store
            .earlier_fingerprint_ids(&job.grant_id, &job.requester_id, &job.id)
            .await?
        {
            if let Some(e) = kept.by_job.get(&id) {
                earlier.push(Arc::clone(e));
                continue;
            }
            match self.stored_cells(&id).await {
                Some((_, prints)) => {
                    let e = Arc::new(Earlier { job_id: id, prints });
                    kept.keep(Arc::clone(&e));
                    earlier.push(e);
                }
                None => {
                    tracing::error!(job = %id, "a result's sealed sketches do not open");
                    unreadable += 1;
                }
            }
        }
        Ok((earlier, unreadable))
    }

    /// A result's stored record and cells, when they open.
    async fn stored_cells(&self, id: &str) -> Option<(Stored, ResultPrints)> {
        let (sealed, key) = self.store.job_fingerprints(id).await.ok()??;
        let b = blob::open(
            &self.keyring,
            &key,
            &blob::SealedFor::Differencing(id).aad(),
            &sealed,
        )
        .ok()?;
        let stored = serde_json::from_slice::<Stored>(&b).ok()?;
        Some((stored.clone(), stored.prints()?))
    }

    /// Sketches an earlier result's cells by re-running its plan over the
    /// same versions and views, matching cells by identity and unit count
    /// (a cell that does not come out the same is an error: the result is
    /// then not passed as compared), and stores them; audited.
    async fn sketch_earlier(
        &self,
        earlier: &Earlier,
        key: &FingerprintKey,
        guard: &Arc<Guard>,
    ) -> Result<Earlier> {
        let id = earlier.job_id.clone();
        let (mut record, _) = self
            .stored_cells(&id)
            .await
            .ok_or_else(|| Error::Internal("a result's sealed sketches do not open".into()))?;
        let mut earlier = earlier.clone();
        let replay: Replay = record
            .replay
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
            .ok_or_else(|| Error::Internal("an earlier result cannot be replayed".into()))?;
        let job = self.job(&id).await?;
        let o = self.job_options();
        let session = QuerySession::open(
            Arc::clone(&self.keyring),
            replay.specs(self.dir.root()),
            replay.aggregate_only,
            &SessionLimits {
                memory_bytes: o.memory_bytes,
                target_partitions: o.target_partitions,
                spill_dir: self.dir.spill(),
                caches: self.jobs.caches.clone(),
                tables: Some(Arc::clone(&self.jobs.tables)),
            },
        )
        .await?;
        let planned = session.plan(&job.query_text).await?;
        // Its own deadline; the job being checked can still cancel it.
        let replay_guard = Guard::new(Instant::now() + o.deadline);
        let watch = Arc::clone(guard);
        let stop = Arc::clone(&replay_guard);
        let cancel = tokio::spawn(async move {
            watch.cancelled().await;
            stop.cancel();
        });
        let ran = self
            .execute_on_query_runtime(session, planned, replay_guard)
            .await;
        cancel.abort();
        let (_, planned, executed) = ran?;
        let executed = executed?;
        let fresh = prints_of(&planned, &executed, key, replay.seed(key))
            .ok_or_else(|| Error::Internal("a replayed result has no cells".into()))?;
        let mut by_id: HashMap<u128, &diff::RowPrint> = HashMap::new();
        for p in fresh
            .rows
            .iter()
            .flatten()
            .chain(fresh.inner.iter().map(|(_, p)| p))
        {
            if let Some(i) = p.id {
                by_id.insert(i, p);
            }
        }
        let mut sketched = 0u64;
        let prints = &mut earlier.prints;
        for cell in prints
            .rows
            .iter_mut()
            .flatten()
            .chain(prints.inner.iter_mut().map(|(_, p)| p))
        {
            if cell.sketch.is_some() {
                continue;
            }
            let again = cell
                .id
                .and_then(|i| by_id.get(&i))
                .filter(|p| p.units == cell.units)
                .and_then(|p| p.sketch.clone())
                .ok_or_else(|| {
                    Error::Internal("a replayed result's cells differ from the stored ones".into())
                })?;
            cell.sketch = Some(again);
            sketched += 1;
        }
        record.set_sketches(prints);
        let json = serde_json::to_vec(&record)
            .map_err(|e| Error::Internal(format!("encoding sketches: {e}")))?;
        let (sealed_key, sealed) = blob::seal(
            &self.keyring,
            &blob::SealedFor::Differencing(&id).aad(),
            &json,
        )?;
        self.store
            .update_fingerprints(&id, &sealed, &sealed_key)
            .await?;
        self.record(
            &Actor::system(),
            "job.sketch",
            job_object(&id),
            Outcome::Success,
            serde_json::json!({ "cells_sketched": sketched }),
        )
        .await?;
        Ok(earlier)
    }
}
