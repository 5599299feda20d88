//! Running a planned query: a deadline, cancellation, and progress (rows
//! scanned so far, read from the running plan's metrics).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use futures::StreamExt;

use super::sanitize::{public_error, runtime_error};
use super::session::{PlannedQuery, QuerySession};
use crate::{Error, Result};

/// Progress of a running query, readable while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    pub rows_scanned: AtomicU64,
}

/// A finished query.
#[derive(Debug, Clone)]
pub struct Executed {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows_scanned: u64,
    pub elapsed: Duration,
    /// Groups the threshold dropped.
    pub dropped_groups: u64,
}

impl Executed {
    /// Rows in the result.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// Rows produced by the plan's leaves (the scans) so far.
fn scanned(plan: &Arc<dyn ExecutionPlan>) -> u64 {
    let children = plan.children();
    if children.is_empty() {
        return plan.metrics().and_then(|m| m.output_rows()).unwrap_or(0) as u64;
    }
    children.into_iter().map(scanned).sum()
}

/// Runs `planned` in `session` until it finishes, `deadline` passes or
/// `cancel` turns true. Errors never carry data values.
pub async fn execute(
    session: &QuerySession,
    planned: &PlannedQuery,
    progress: Arc<Progress>,
    mut cancel: tokio::sync::watch::Receiver<bool>,
    deadline: Duration,
) -> Result<Executed> {
    let started = Instant::now();
    let state = session.context().state();
    let physical = state
        .create_physical_plan(&planned.rewritten.plan)
        .await
        .map_err(public_error)?;
    let schema = physical.schema();
    let mut stream = execute_stream(Arc::clone(&physical), session.context().task_ctx())
        .map_err(runtime_error)?;
    let mut batches = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let timeout = tokio::time::sleep(deadline);
    tokio::pin!(timeout);
    loop {
        tokio::select! {
            next = stream.next() => match next {
                Some(Ok(b)) => batches.push(b),
                Some(Err(e)) => return Err(runtime_error(e)),
                None => break,
            },
            _ = tick.tick() => {
                progress.rows_scanned.store(scanned(&physical), Ordering::Relaxed);
            }
            _ = &mut timeout => {
                return Err(Error::Denied {
                    code: "deadline_exceeded",
                    message: format!("the job ran longer than its deadline of {} s", deadline.as_secs()),
                });
            }
            changed = cancel.changed() => {
                if changed.is_err() || *cancel.borrow() {
                    return Err(Error::Denied { code: "cancelled", message: "the job was cancelled".into() });
                }
            }
        }
    }
    let rows_scanned = scanned(&physical);
    progress.rows_scanned.store(rows_scanned, Ordering::Relaxed);
    Ok(Executed {
        schema,
        batches,
        rows_scanned,
        elapsed: started.elapsed(),
        dropped_groups: planned.rewritten.dropped.load(Ordering::Relaxed),
    })
}
