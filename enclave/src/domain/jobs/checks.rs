//! Checks and sealing: the echo search, the disclosure rules and the
//! differencing comparison on a finished result, suppression of failing
//! cells, and the candidate sealed with its sketches in one transaction.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::arrow::compute::nullif;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, lit};

use crate::audit::Outcome;
use crate::disclosure::{self, CheckInput, CheckReport, EchoHit, Verdict};
use crate::domain::{Actor, Domain};
use crate::query::{self, CellKind, GrantedTable, PlannedQuery, QuerySession};
use crate::release::{self, ResultFormat};
use crate::storage::blob;
use crate::store::{JobRecord, JobStatus, SealedResult};
use crate::{Error, Result};

use super::job_object;

/// A result's sealed sketches, with the lock that keeps the comparison and
/// the storing of them one step.
pub(in crate::domain) struct Differenced {
    sealed: Vec<u8>,
    key: crate::keyring::WrappedKey,
    pairs_found: u64,
    trackers_found: u64,
    /// The result's cells were sketched (a comparison needed them).
    sketched: bool,
    _lock: tokio::sync::OwnedMutexGuard<super::lazy::EarlierCells>,
}

impl Differenced {
    pub(super) fn new(
        sealed: Vec<u8>,
        key: crate::keyring::WrappedKey,
        findings: &disclosure::differencing::Findings,
        sketched: bool,
        lock: tokio::sync::OwnedMutexGuard<super::lazy::EarlierCells>,
    ) -> Differenced {
        Differenced {
            sealed,
            key,
            pairs_found: findings.pairs_found,
            trackers_found: findings.trackers_found,
            sketched,
            _lock: lock,
        }
    }
}

pub(in crate::domain) fn visible_schema(schema: &SchemaRef) -> (SchemaRef, Vec<usize>) {
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|i| !schema.field(*i).name().starts_with(query::RESERVED_PREFIX))
        .collect();
    (
        Arc::new(schema.project(&keep).expect("indices in range")),
        keep,
    )
}

pub(super) fn i64_column(batches: &[RecordBatch], name: &str) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for b in batches {
        let i = b.schema().index_of(name).ok()?;
        let a = b
            .column(i)
            .as_any()
            .downcast_ref::<datafusion::arrow::array::Int64Array>()?;
        out.extend((0..a.len()).map(|r| a.value(r).max(0) as u64));
    }
    Some(out)
}

/// Per output row, the dominance statistics named by `st`.
pub(super) fn contribution_stats(
    batches: &[RecordBatch],
    st: &query::rewrite::DominanceStats,
) -> Option<Vec<disclosure::ContributionStats>> {
    use datafusion::arrow::array::{Float64Array, Int64Array};
    let mut out = Vec::new();
    for b in batches {
        let f = |name: &str| -> Option<&Float64Array> {
            b.column(b.schema().index_of(name).ok()?)
                .as_any()
                .downcast_ref::<Float64Array>()
        };
        let (top_n, top2, max, min, total) = (
            f(&st.top_n)?,
            f(&st.top2)?,
            f(&st.max)?,
            f(&st.min)?,
            f(&st.total)?,
        );
        let count = b
            .column(b.schema().index_of(&st.count).ok()?)
            .as_any()
            .downcast_ref::<Int64Array>()?;
        let get = |a: &Float64Array, r: usize| (!a.is_null(r)).then(|| a.value(r));
        for r in 0..b.num_rows() {
            out.push(disclosure::ContributionStats {
                top_n: get(top_n, r),
                top2: get(top2, r),
                max: get(max, r),
                min: get(min, r),
                total: get(total, r),
                non_null: count.value(r).max(0) as u64,
            });
        }
    }
    Some(out)
}

/// Per output row, its units' count, identity and (when the plan computed
/// it) sketch; `None` when the plan does neither (no differencing).
pub(super) fn row_prints(
    batches: &[RecordBatch],
    hidden: &query::HiddenColumns,
) -> Option<disclosure::differencing::ResultPrints> {
    use datafusion::arrow::array::BinaryArray;
    if hidden.fingerprint.is_none() && hidden.cell.is_none() {
        return None;
    }
    let mut counts = vec![0u64; batches.iter().map(|b| b.num_rows()).sum()];
    for u in &hidden.units {
        for (c, n) in counts.iter_mut().zip(i64_column(batches, u)?) {
            *c += n;
        }
    }
    let binary = |b: &RecordBatch, name: &Option<String>| -> Option<Option<BinaryArray>> {
        match name {
            None => Some(None),
            Some(n) => {
                let col = b.column(b.schema().index_of(n).ok()?);
                Some(Some(col.as_any().downcast_ref::<BinaryArray>()?.clone()))
            }
        }
    };
    let mut rows = Vec::with_capacity(counts.len());
    for b in batches {
        let sketches = binary(b, &hidden.fingerprint)?;
        let cells = binary(b, &hidden.cell)?;
        for r in 0..b.num_rows() {
            let sketch = sketches.as_ref().map(|a| {
                (!a.is_null(r))
                    .then(|| disclosure::sketch::Sketch::from_bytes(a.value(r)))
                    .flatten()
            });
            let id = cells.as_ref().and_then(|a| {
                (!a.is_null(r))
                    .then(|| {
                        <[u8; 16]>::try_from(a.value(r))
                            .ok()
                            .map(u128::from_le_bytes)
                    })
                    .flatten()
            });
            // A row the plan sketched without units (none) has no cell.
            let print = match sketch {
                Some(None) => None,
                Some(Some(s)) => Some(disclosure::differencing::RowPrint {
                    units: counts[rows.len()],
                    sketch: Some(s),
                    id,
                }),
                None => Some(disclosure::differencing::RowPrint {
                    units: counts[rows.len()],
                    sketch: None,
                    id,
                }),
            };
            rows.push(print);
        }
    }
    Some(disclosure::differencing::ResultPrints {
        rows,
        ..Default::default()
    })
}

/// The result's prints with its inner cells (groups of aggregations inside
/// the query) added; `None` when there is nothing to compare.
pub(super) fn result_prints(
    planned: &PlannedQuery,
    executed: &query::Executed,
) -> Option<disclosure::differencing::ResultPrints> {
    use disclosure::differencing::{ResultPrints, RowPrint};
    let mut prints = planned
        .rewritten
        .hidden
        .as_ref()
        .and_then(|h| row_prints(&executed.batches, h));
    let inner = planned
        .rewritten
        .inner
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if inner.cells.is_empty() && !inner.overflow {
        return prints;
    }
    let p = prints.get_or_insert_with(|| ResultPrints {
        rows: vec![None; executed.rows()],
        ..Default::default()
    });
    p.inner = inner
        .cells
        .iter()
        .filter_map(|c| {
            let sketch = match &c.sketch {
                Some(b) => Some(disclosure::sketch::Sketch::from_bytes(b)?),
                None => None,
            };
            Some((
                c.aggregation as u64,
                RowPrint {
                    units: c.units,
                    sketch,
                    id: c.id,
                },
            ))
        })
        .collect();
    p.inner_overflow = inner.overflow;
    prints
}

pub(super) fn ipc_decode(bytes: &[u8]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let reader =
        datafusion::arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|_| Error::Internal("a sealed result does not decode".into()))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| Error::Internal("a sealed result does not decode".into()))?;
    Ok((schema, batches))
}

impl Domain {
    /// Finds cells equal to a value of an identifying column the query read,
    /// searching inside the domain (through the grant's views).
    pub(in crate::domain) async fn echo_hits(
        &self,
        session: &QuerySession,
        planned: &PlannedQuery,
        batches: &[RecordBatch],
    ) -> Result<Vec<EchoHit>> {
        const MAX_VALUES: usize = 1000;
        let mut hits = Vec::new();
        let Some(first) = batches.first() else {
            return Ok(hits);
        };
        let schema = first.schema();
        for (ci, field) in schema.fields().iter().enumerate() {
            let kind = planned
                .facts
                .output
                .iter()
                .find(|o| o.name == *field.name())
                .map_or(CellKind::RowValue, |o| o.kind);
            // Counts and statistics over thresholded groups are not values of anyone.
            if !matches!(kind, CellKind::Extreme | CellKind::RowValue) {
                continue;
            }
            for b in &planned.facts.identifying_columns {
                let Some(t) = session.tables().iter().find(|t| t.dataset_id == b.dataset) else {
                    continue;
                };
                if t.policy.row_level_output {
                    continue;
                }
                let Some(col) = t.manifest.column(&b.column) else {
                    continue;
                };
                let col_type = col.data_type.arrow_type();
                let is_text = |t: &DataType| {
                    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
                };
                let comparable = col_type == *field.data_type()
                    || (is_text(&col_type) && is_text(field.data_type()))
                    || (col_type == DataType::Int64 && *field.data_type() == DataType::Float64);
                if !comparable {
                    continue;
                }
                // Distinct candidate values of this output column, as literals of the column's type.
                let mut values: Vec<(ScalarValue, Vec<u64>)> = Vec::new();
                let mut offset = 0u64;
                for batch in batches {
                    let a = batch.column(ci);
                    for r in 0..batch.num_rows() {
                        if a.is_null(r) {
                            continue;
                        }
                        let Ok(mut v) = ScalarValue::try_from_array(a, r) else {
                            continue;
                        };
                        if col_type == DataType::Int64 && *field.data_type() == DataType::Float64 {
                            match v {
                                ScalarValue::Float64(Some(f))
                                    if f.fract() == 0.0 && f.abs() < 9e15 =>
                                {
                                    v = ScalarValue::Int64(Some(f as i64));
                                }
                                _ => continue,
                            }
                        }
                        let row = offset + r as u64;
                        if let Some(i) = values.iter().position(|(x, _)| *x == v) {
                            values[i].1.push(row);
                        } else if values.len() < MAX_VALUES {
                            values.push((v, vec![row]));
                        }
                    }
                    offset += batch.num_rows() as u64;
                }
                if values.is_empty() {
                    continue;
                }
                let found = self.values_present(session, t, &b.column, &values).await?;
                for (v, rows) in &values {
                    if found.contains(v) {
                        for row in rows {
                            hits.push(EchoHit {
                                row: *row,
                                column: field.name().clone(),
                                source: b.to_string(),
                            });
                        }
                    }
                }
            }
        }
        Ok(hits)
    }

    /// Which of `values` occur in `column` of the grant's view of `t`.
    pub(super) async fn values_present(
        &self,
        session: &QuerySession,
        t: &GrantedTable,
        column: &str,
        values: &[(ScalarValue, Vec<u64>)],
    ) -> Result<Vec<ScalarValue>> {
        let col = Expr::Column(Column::new(
            Some(TableReference::bare(t.raw_name())),
            column,
        ));
        let list: Vec<Expr> = values.iter().map(|(v, _)| lit(v.clone())).collect();
        let plan = LogicalPlanBuilder::from(t.view.clone())
            .filter(col.clone().in_list(list, false))
            .and_then(|b| b.project(vec![col]))
            .and_then(|b| b.distinct())
            .and_then(|b| b.build())
            .map_err(query::sanitize::public_error)?;
        let batches = session
            .context()
            .execute_logical_plan(plan)
            .await
            .map_err(query::sanitize::runtime_error)?
            .collect()
            .await
            .map_err(query::sanitize::runtime_error)?;
        let mut found = Vec::new();
        for b in &batches {
            for r in 0..b.num_rows() {
                if let Ok(v) = ScalarValue::try_from_array(b.column(0), r) {
                    found.push(v);
                }
            }
        }
        Ok(found)
    }

    /// Runs the disclosure rules, seals the candidate (failing cells
    /// suppressed) and decides: release, review or reject.
    pub(super) async fn check_result(
        &self,
        session: &QuerySession,
        planned: &PlannedQuery,
        executed: &query::Executed,
        job: &mut JobRecord,
        differencing: Option<(disclosure::differencing::Findings, Differenced)>,
    ) -> Result<()> {
        if let Some(dp) = &planned.dp {
            return self
                .check_dp_result(session, planned, dp, executed, job)
                .await;
        }
        let (schema, keep) = visible_schema(&executed.schema);
        let visible: Vec<RecordBatch> = executed
            .batches
            .iter()
            .map(|b| {
                b.project(&keep)
                    .map_err(|e| Error::Internal(format!("projecting the result: {e}")))
            })
            .collect::<Result<_>>()?;
        let rows_per_group = planned
            .rewritten
            .hidden
            .as_ref()
            .and_then(|h| i64_column(&executed.batches, &h.rows));
        let policies: Vec<&crate::catalog::DisclosurePolicy> = session
            .tables()
            .iter()
            .filter(|t| planned.facts.datasets.contains(&t.dataset_id))
            .map(|t| &t.policy)
            .collect();
        let policy = disclosure::strictest(&policies);
        let echo = self.echo_hits(session, planned, &visible).await?;
        let contributions: Vec<disclosure::Contributions> = planned
            .rewritten
            .hidden
            .as_ref()
            .map(|h| {
                h.dominance
                    .iter()
                    .map(|d| disclosure::Contributions {
                        column: d.column.clone(),
                        cells: d
                            .stats
                            .as_ref()
                            .and_then(|st| contribution_stats(&executed.batches, st)),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (findings, differenced) = differencing.unzip();
        let campaign = self.campaign(&job.id).await?;
        let report = disclosure::check(
            &disclosure::default_rules(),
            &CheckInput {
                batches: &visible,
                rows_per_group,
                facts: &planned.facts,
                policy: &policy,
                echo: &echo,
                suppressed_groups: executed.dropped_groups,
                contributions: &contributions,
                model: None,
                dp: None,
                differencing: findings.as_ref(),
                withheld: &disclosure::withheld(
                    planned.rewritten.hidden.as_ref(),
                    &executed.batches,
                ),
                campaign: campaign.as_ref(),
            },
        );
        let auto = policy.auto_release;
        self.seal_checked(
            job,
            &schema,
            &visible,
            report,
            executed.dropped_groups,
            auto,
            None,
            differenced,
        )
        .await
    }

    /// The jobs of `job_id`'s grant with the same plan up to its constants.
    pub(in crate::domain) async fn campaign(
        &self,
        job_id: &str,
    ) -> Result<Option<disclosure::Campaign>> {
        Ok(self
            .store
            .shape_campaign(job_id)
            .await?
            .map(|(variants, jobs)| disclosure::Campaign {
                jobs: jobs.len() as u64,
                variants,
                flag_at: self.job_options().campaign_flag_at,
            }))
    }

    /// A submitted job's plan shape and variant ([`query::shape`]), stored
    /// with the job.
    pub(super) fn plan_shape(
        &self,
        session: &QuerySession,
        planned: &PlannedQuery,
    ) -> (String, String) {
        let optimized = session
            .context()
            .state()
            .optimize(&planned.logical)
            .unwrap_or_else(|_| planned.logical.clone());
        let key = self.keyring.derive("plan-shapes");
        query::shape::shape_keys(&optimized, &key)
    }

    /// When a stored job's grant holds `campaign_suspend_at` variants of its
    /// plan shape or more, asks for the grant's suspension in the audit log
    /// (stewards and admins decide; nothing is suspended automatically).
    pub(super) async fn note_campaign(&self, job: &JobRecord) -> Result<()> {
        let limit = self.job_options().campaign_suspend_at;
        if let Some((variants, jobs)) = self.store.shape_campaign(&job.id).await?
            && variants >= limit
        {
            self.record(
                &Actor::system(),
                "grant.suspension_requested",
                crate::domain::audit_object("grant", &job.grant_id),
                Outcome::Success,
                serde_json::json!({
                    "reason": "oracle_campaign",
                    "job_id": job.id,
                    "jobs_of_shape": jobs.len(),
                    "variants": variants,
                    "limit": limit,
                }),
            )
            .await?;
        }
        Ok(())
    }

    /// A differentially private result: the noisy release is made from the
    /// exact partials (which never leave this function), then checked by the
    /// rules that apply to noisy output, sealed and released or reviewed.
    pub(super) async fn check_dp_result(
        &self,
        session: &QuerySession,
        planned: &PlannedQuery,
        dp: &crate::dp::plan::DpPlan,
        executed: &query::Executed,
        job: &mut JobRecord,
    ) -> Result<()> {
        let (schema, noisy) = dp.release(&executed.schema, &executed.batches)?;
        let policies: Vec<&crate::catalog::DisclosurePolicy> = session
            .tables()
            .iter()
            .filter(|t| planned.facts.datasets.contains(&t.dataset_id))
            .map(|t| &t.policy)
            .collect();
        let policy = disclosure::strictest(&policies);
        let report_dp = job.dp.clone().unwrap_or_else(|| dp.report.clone());
        let report = disclosure::check(
            &disclosure::default_rules(),
            &CheckInput {
                batches: &noisy,
                rows_per_group: None,
                facts: &planned.facts,
                policy: &policy,
                echo: &[],
                // How many groups selection dropped is not private: never reported.
                suppressed_groups: 0,
                contributions: &[],
                model: None,
                dp: Some(&report_dp),
                differencing: None,
                withheld: &[],
                campaign: None,
            },
        );
        self.seal_checked(
            job,
            &schema,
            &noisy,
            report,
            0,
            policy.auto_release,
            None,
            None,
        )
        .await
    }

    /// Suppresses failing cells, seals the candidate (and a model's log) into
    /// the job's transaction beside `job.check` (with the rows' sketches, whose
    /// lock is let go once they are stored), and releases at once when
    /// everything passed and `auto_release` allows it.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::domain) async fn seal_checked(
        &self,
        job: &mut JobRecord,
        schema: &SchemaRef,
        visible: &[RecordBatch],
        report: CheckReport,
        suppressed_groups: u64,
        auto_release: bool,
        log: Option<&str>,
        differenced: Option<Differenced>,
    ) -> Result<()> {
        let (schema, candidate) = suppress(schema, visible, &report)?;
        let ipc = release::encode(&schema, &candidate, ResultFormat::ArrowIpc)?;
        let aad = blob::SealedFor::Result(&job.id).aad();
        let (key, sealed) = blob::seal(&self.keyring, &aad, &ipc)?;
        job.result_rows = Some(report.rows);
        job.suppressed_groups = Some(suppressed_groups);
        job.result_sha256 = Some(release::sha256_hex(&ipc));
        job.checks = serde_json::to_value(&report).ok();
        // Checked, and where it goes next: one write, with the sealed candidate
        // and the CPU time, beside its event.
        let release_now =
            !report.fails_as_a_whole() && report.verdict == Verdict::Pass && auto_release;
        job.status = if report.fails_as_a_whole() {
            job.error_code = Some("disclosure_check_failed".into());
            job.error_message = Some(
                "the result as a whole fails the disclosure checks and cannot be released".into(),
            );
            job.finished_at = Some(crate::store::now_rfc3339());
            JobStatus::Rejected
        } else if release_now {
            JobStatus::Checked
        } else {
            JobStatus::PendingReview
        };
        let sealed_log = match log {
            Some(text) => {
                let aad = blob::SealedFor::ModelLog(&job.id).aad();
                Some(blob::seal(&self.keyring, &aad, text.as_bytes())?)
            }
            None => None,
        };
        // The whole job is charged, not only its query: the checks and sealing
        // above can cost more than the query itself.
        let run_seconds = job.cpu_seconds;
        job.cpu_seconds = run_seconds.max(self.time_since_start(&job.id).unwrap_or(0.0));
        let system = Actor::system();
        let (saved, recorded) = tokio::join!(
            self.store.finish_job(
                job,
                Some(SealedResult {
                    sealed: &sealed,
                    key: &key,
                    log: sealed_log.as_ref().map(|(k, b)| (b.as_slice(), k)),
                    fingerprints: differenced.as_ref().map(|d| (d.sealed.as_slice(), &d.key)),
                }),
                job.cpu_seconds
            ),
            self.record(
                &system,
                "job.check",
                job_object(&job.id),
                Outcome::Success,
                serde_json::json!({
                    "verdict": report.verdict,
                    "rows": report.rows,
                    "suppressed_groups": suppressed_groups,
                    "rows_scanned": job.rows_scanned,
                    "cpu_seconds": job.cpu_seconds,
                    "run_seconds": run_seconds,
                    "next": job.status,
                    "approvals_required": job.reviewers_required,
                    "differencing_pairs": differenced.as_ref().map(|d| d.pairs_found),
                    "differencing_trackers": differenced.as_ref().map(|d| d.trackers_found),
                    "differencing_sketched": differenced.as_ref().map(|d| d.sketched),
                }),
            )
        );
        drop(differenced);
        job.revision = saved?;
        recorded?;
        self.jobs.changed.notify_waiters();
        if release_now {
            self.release_job(job, Vec::new()).await?;
        }
        Ok(())
    }

    pub(super) async fn candidate(&self, job: &JobRecord) -> Result<(SchemaRef, Vec<RecordBatch>)> {
        let (sealed, key) = self
            .store
            .job_result(&job.id)
            .await?
            .ok_or_else(|| Error::Conflict("the job has no result".into()))?;
        let aad = blob::SealedFor::Result(&job.id).aad();
        let ipc = blob::open(&self.keyring, &key, &aad, &sealed)?;
        if Some(release::sha256_hex(&ipc)) != job.result_sha256 {
            return Err(Error::Crypto(
                "the sealed result does not match its hash".into(),
            ));
        }
        ipc_decode(&ipc)
    }
}

/// The result with every failing cell set to null.
pub(super) fn suppress(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    report: &CheckReport,
) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let failing = report.failing_cells();
    if failing.is_empty() {
        return Ok((Arc::clone(schema), batches.to_vec()));
    }
    // Suppressed columns become nullable.
    let fields: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    let nullable = Arc::new(Schema::new(fields));
    let mut out = Vec::new();
    let mut offset = 0u64;
    for b in batches {
        let n = b.num_rows() as u64;
        let mut cols: Vec<ArrayRef> = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            let mask: BooleanArray = (0..n)
                .map(|r| {
                    Some(
                        failing
                            .iter()
                            .any(|(row, c)| *row == offset + r && c == f.name()),
                    )
                })
                .collect();
            let col = b.column(i);
            cols.push(if mask.true_count() > 0 {
                nullif(col.as_ref(), &mask)
                    .map_err(|e| Error::Internal(format!("suppressing cells: {e}")))?
            } else {
                Arc::clone(col)
            });
        }
        out.push(
            RecordBatch::try_new(Arc::clone(&nullable), cols)
                .map_err(|e| Error::Internal(format!("suppressing cells: {e}")))?,
        );
        offset += n;
    }
    Ok((nullable, out))
}
