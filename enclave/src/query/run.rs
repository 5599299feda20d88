//! Running a planned query: a deadline, cancellation, and progress (rows
//! scanned so far, counted by the guards above the scans).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::{SendableRecordBatchStream, execute_stream};
use futures::StreamExt;

use super::guard::{Guard, Tripped, guard_plan};
use super::sanitize::{public_error, runtime_error};
use super::session::{PlannedQuery, QuerySession};
use crate::{Error, Result};

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

pub(crate) fn stopped(why: Tripped, deadline: Duration) -> Error {
    match why {
        Tripped::Deadline => Error::Denied {
            code: "deadline_exceeded",
            message: format!(
                "the job ran longer than its deadline of {} s",
                deadline.as_secs()
            ),
        },
        Tripped::Cancelled => Error::Denied {
            code: "cancelled",
            message: "the job was cancelled".into(),
        },
    }
}

/// The guarded physical plan of `planned`, started: its schema and stream.
/// Every operator checks `guard` on every batch.
pub async fn stream(
    session: &QuerySession,
    planned: &PlannedQuery,
    guard: &Arc<Guard>,
) -> Result<(SchemaRef, SendableRecordBatchStream)> {
    stream_plan(session, &planned.rewritten.plan, guard).await
}

/// [`stream`] for a plan the domain built itself over a planned query (a
/// check's second look at a model's input), with the same total semantics.
pub async fn stream_plan(
    session: &QuerySession,
    plan: &datafusion::logical_expr::LogicalPlan,
    guard: &Arc<Guard>,
) -> Result<(SchemaRef, SendableRecordBatchStream)> {
    let state = session.context().state();
    // Total semantics on the optimized plan, so no later pass undoes them;
    // the query planner then builds it as is.
    let optimized = state.optimize(plan).map_err(public_error)?;
    let total = super::total::total(optimized).map_err(public_error)?;
    let physical = state
        .query_planner()
        .create_physical_plan(&total, &state)
        .await
        .map_err(public_error)?;
    let physical = guard_plan(physical, guard).map_err(runtime_error)?;
    let schema = physical.schema();
    let stream = execute_stream(Arc::clone(&physical), session.context().task_ctx())
        .map_err(runtime_error)?;
    Ok((schema, stream))
}

/// Runs `planned` in `session` until it finishes, the guard's deadline
/// passes or someone cancels the guard. Every operator checks the guard on
/// every batch (see [`super::guard`]). Errors never carry data values.
pub async fn execute(
    session: &QuerySession,
    planned: &PlannedQuery,
    guard: Arc<Guard>,
) -> Result<Executed> {
    let started = Instant::now();
    let deadline = guard.deadline().saturating_duration_since(started);
    let (schema, mut stream) = stream(session, planned, &guard).await?;
    let mut batches = Vec::new();
    let timeout = tokio::time::sleep(deadline);
    tokio::pin!(timeout);
    loop {
        tokio::select! {
            next = stream.next() => match next {
                Some(Ok(b)) => batches.push(b),
                Some(Err(e)) => {
                    return Err(match guard.tripped() {
                        Some(why) => stopped(why, deadline),
                        None => runtime_error(e),
                    });
                }
                None => break,
            },
            _ = &mut timeout => {
                guard.cancel();
                return Err(stopped(Tripped::Deadline, deadline));
            }
            _ = guard.cancelled() => {
                return Err(stopped(Tripped::Cancelled, deadline));
            }
        }
    }
    Ok(Executed {
        schema,
        batches,
        rows_scanned: guard.rows_scanned.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        dropped_groups: planned.rewritten.dropped.load(Ordering::Relaxed),
    })
}
