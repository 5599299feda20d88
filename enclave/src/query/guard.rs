//! A guard between every pair of operators of a job's physical plan: each
//! batch that passes checks the job's deadline and cancellation, and batches
//! leaving the scans are counted (rows scanned).
//!
//! Why not a `select!` around the stream: an operator consuming a fast child
//! (an aggregate over a join's output) can run for seconds inside one poll
//! without returning to the scheduler, so a timer beside it never fires. A
//! check on every batch between operators ends the job within one batch.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, ReplaceChildrenOptions,
};
use futures::StreamExt;

/// Why a guard stopped a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tripped {
    Deadline,
    Cancelled,
}

/// Shared by every guard of one job.
///
/// Thread-safe: whoever holds it may cancel the job from any thread or
/// runtime; the operators see it at their next batch.
#[derive(Debug)]
pub struct Guard {
    deadline: std::sync::Mutex<Instant>,
    cancelled: AtomicBool,
    tripped: std::sync::Mutex<Option<Tripped>>,
    /// Rows the scans have produced so far (the job's progress).
    pub rows_scanned: AtomicU64,
    woken: tokio::sync::Notify,
}

impl Guard {
    pub fn new(deadline: Instant) -> Arc<Guard> {
        Arc::new(Guard {
            deadline: std::sync::Mutex::new(deadline),
            cancelled: AtomicBool::new(false),
            tripped: std::sync::Mutex::new(None),
            rows_scanned: AtomicU64::new(0),
            woken: tokio::sync::Notify::new(),
        })
    }

    /// Asks every operator to stop at its next batch.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
        self.woken.notify_waiters();
    }

    /// Whether [`Guard::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Resolves once the job is cancelled.
    pub async fn cancelled(&self) {
        loop {
            let woken = self.woken.notified();
            if self.is_cancelled() {
                return;
            }
            woken.await;
        }
    }

    /// When the job must end.
    pub fn deadline(&self) -> Instant {
        *self.deadline.lock().expect("guard lock")
    }

    /// Moves the deadline (a queued job's clock starts when it runs).
    pub fn set_deadline(&self, deadline: Instant) {
        *self.deadline.lock().expect("guard lock") = deadline;
    }

    /// Whether (and why) the guard stopped the job.
    pub fn tripped(&self) -> Option<Tripped> {
        *self.tripped.lock().expect("guard lock")
    }

    fn check(&self) -> Result<()> {
        let why = if self.cancelled.load(Ordering::Relaxed) {
            Tripped::Cancelled
        } else if Instant::now() >= self.deadline() {
            Tripped::Deadline
        } else {
            return Ok(());
        };
        self.tripped.lock().expect("guard lock").get_or_insert(why);
        Err(DataFusionError::Execution("anyu: job stopped".into()))
    }
}

#[derive(Debug)]
struct GuardExec {
    input: Arc<dyn ExecutionPlan>,
    guard: Arc<Guard>,
    /// Directly above a scan: its rows count as scanned.
    leaf: bool,
}

impl DisplayAs for GuardExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "GuardExec")
    }
}

impl ExecutionPlan for GuardExec {
    fn name(&self) -> &str {
        "GuardExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(GuardExec {
            input: children.swap_remove(0),
            guard: Arc::clone(&self.guard),
            leaf: self.leaf,
        }))
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(
                datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
            ),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.guard.check()?;
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let guard = Arc::clone(&self.guard);
        let leaf = self.leaf;
        let stream = input.map(move |batch| {
            guard.check()?;
            let batch = batch?;
            if leaf {
                guard
                    .rows_scanned
                    .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            }
            Ok(batch)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// `plan` with a guard above every operator.
pub fn guard_plan(
    plan: Arc<dyn ExecutionPlan>,
    guard: &Arc<Guard>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let children: Vec<Arc<dyn ExecutionPlan>> = plan.children().into_iter().cloned().collect();
    let leaf = children.is_empty();
    let plan = if leaf {
        plan
    } else {
        let guarded = children
            .into_iter()
            .map(|c| guard_plan(c, guard))
            .collect::<Result<Vec<_>>>()?;
        // The children keep their properties: only wrappers were added.
        plan.replace_children(
            guarded,
            ReplaceChildrenOptions::new(datafusion::physical_plan::ChildrenPropertiesMode::Keep),
        )?
    };
    Ok(Arc::new(GuardExec {
        input: plan,
        guard: Arc::clone(guard),
        leaf,
    }))
}
