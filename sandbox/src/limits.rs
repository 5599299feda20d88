//! Configuration of the host and the limits of one job, and the
//! [`ResourceLimiter`] that charges a job's memory budget.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wasmtime::ResourceLimiter;

/// Settings of a [`crate::ModelHost`], fixed for its lifetime.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where compiled artifacts are kept, keyed by the component's SHA-256 and
    /// the engine's version and settings. `None`: compile on every intake in a
    /// new host (the in-memory map still serves repeated intakes). The
    /// directory must be writable by the domain only: artifacts are native code.
    pub cache_dir: Option<PathBuf>,
    /// Largest component accepted at intake, in bytes.
    pub max_component_bytes: usize,
    /// Largest size of one linear memory, in bytes (also the pooling
    /// allocator's slot size). A job's memory budget usually binds first.
    pub max_memory_bytes: usize,
    /// Largest number of elements of one table.
    pub max_table_elements: usize,
    /// Jobs that may run at once (component instances in the pool).
    pub max_concurrent_runs: u32,
    /// Core instances one model may create (a componentize-py model has
    /// about fifteen).
    pub max_core_instances_per_model: u32,
    /// Tables one model may create.
    pub max_tables_per_model: u32,
    /// Linear memories one model may create.
    pub max_memories_per_model: u32,
    /// Wasm stack of a job, in bytes. Deeper recursion ends the job with
    /// [`crate::SandboxError::StackOverflow`].
    pub max_wasm_stack: usize,
    /// Period of the epoch ticker; deadlines are rounded up to it.
    pub epoch_tick: Duration,
    /// Allow the WASI 0.2 imports that guest toolchains need to link
    /// (`wasi:cli`, `wasi:io`, `wasi:clocks`, `wasi:random`,
    /// `wasi:filesystem`, `wasi:sockets`), every one denied or deterministic:
    /// no preopens, no environment, no arguments, no network, a fixed clock,
    /// seeded randomness, stdout and stderr into the job log. With `false`
    /// a component may import `anyu:model` only.
    pub wasi: bool,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            cache_dir: None,
            max_component_bytes: 64 << 20,
            max_memory_bytes: 1 << 30,
            max_table_elements: 200_000,
            max_concurrent_runs: 16,
            max_core_instances_per_model: 64,
            max_tables_per_model: 16,
            max_memories_per_model: 4,
            max_wasm_stack: 1 << 20,
            epoch_tick: Duration::from_millis(10),
            wasi: true,
        }
    }
}

/// The memory a job may use, shared with whatever else the job spends memory
/// on. The enclave backs it with the job's DataFusion memory pool.
pub trait MemoryBudget: Send + Sync {
    /// Reserve `bytes` more; `false` refuses (the job then ends with
    /// [`crate::SandboxError::MemoryLimit`]).
    fn try_grow(&self, bytes: usize) -> bool;
    /// Give back `bytes` reserved earlier.
    fn shrink(&self, bytes: usize);
}

/// A [`MemoryBudget`] of a fixed number of bytes.
#[derive(Debug)]
pub struct FixedBudget {
    limit: usize,
    used: AtomicUsize,
}

impl FixedBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        FixedBudget {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }
}

impl MemoryBudget for FixedBudget {
    fn try_grow(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.limit)
            })
            .is_ok()
    }

    fn shrink(&self, bytes: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// The limits of one job.
#[derive(Clone)]
pub struct RunLimits {
    /// Wall-clock time from the start of instantiation to the end of `run`.
    pub deadline: Duration,
    /// Charged for every byte of linear memory and table the guest creates.
    pub memory: Arc<dyn MemoryBudget>,
    /// Largest result table, in cells (rows × columns).
    pub max_output_cells: u64,
    /// Largest result table, in bytes: 8 per number, 1 per boolean, the UTF-8
    /// length plus 4 per string, plus the column names. The host also refuses
    /// to copy more than 6 × this (plus 1 MiB) out of the guest in any one
    /// call, which bounds host memory before the table is counted.
    pub max_output_bytes: u64,
    /// Largest job log (`log.write` lines plus WASI stdout and stderr), in
    /// bytes; the rest is dropped and the log marked truncated.
    pub max_log_bytes: usize,
    /// Rows per input batch handed to the guest; larger batches are sliced.
    pub batch_rows: usize,
    /// Asked every epoch tick while the guest runs, and at every input batch:
    /// `true` stops the run at once with [`SandboxError::Cancelled`](crate::SandboxError::Cancelled).
    pub cancel: Option<CancelCheck>,
}

/// Whether the job a run belongs to has been cancelled.
pub type CancelCheck = Arc<dyn Fn() -> bool + Send + Sync>;

impl std::fmt::Debug for RunLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLimits")
            .field("deadline", &self.deadline)
            .field("max_output_cells", &self.max_output_cells)
            .field("max_output_bytes", &self.max_output_bytes)
            .field("max_log_bytes", &self.max_log_bytes)
            .field("batch_rows", &self.batch_rows)
            .field("cancel", &self.cancel.is_some())
            .finish_non_exhaustive()
    }
}

impl RunLimits {
    /// Limits with the given deadline and memory budget, and defaults for the
    /// rest: 10 M cells, 64 MiB of output, 64 KiB of log, batches of 8192 rows.
    pub fn new(deadline: Duration, memory: Arc<dyn MemoryBudget>) -> Self {
        RunLimits {
            deadline,
            memory,
            max_output_cells: 10_000_000,
            max_output_bytes: 64 << 20,
            max_log_bytes: 64 << 10,
            batch_rows: 8192,
            cancel: None,
        }
    }

    /// The same limits, stopping when `cancel` says so.
    pub fn with_cancel(mut self, cancel: CancelCheck) -> Self {
        self.cancel = Some(cancel);
        self
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c())
    }

    /// wasmtime charges lifted lists by the host size of their elements: a
    /// null string counts 4 bytes against `max_output_bytes` but costs 24
    /// (`Option<String>`), so 6 × lets every table within the limit through.
    pub(crate) fn hostcall_fuel(&self) -> usize {
        usize::try_from(self.max_output_bytes)
            .unwrap_or(usize::MAX)
            .saturating_mul(6)
            .saturating_add(1 << 20)
    }
}

/// Which limit a guest hit; carried inside the wasmtime error that ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitHit {
    Memory,
    Table,
    Timeout,
    Cancelled,
}

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LimitHit::Memory => "memory limit",
            LimitHit::Table => "table limit",
            LimitHit::Timeout => "deadline",
            LimitHit::Cancelled => "cancelled",
        })
    }
}

impl std::error::Error for LimitHit {}

/// Charges a job's [`MemoryBudget`] for memory and table growth; gives
/// everything back when the store is dropped.
pub(crate) struct JobLimiter {
    budget: Arc<dyn MemoryBudget>,
    charged: usize,
    peak: usize,
    max_memory_bytes: usize,
    max_table_elements: usize,
    instances: usize,
    tables: usize,
    memories: usize,
}

impl JobLimiter {
    pub(crate) fn new(budget: Arc<dyn MemoryBudget>, config: &HostConfig) -> Self {
        JobLimiter {
            budget,
            charged: 0,
            peak: 0,
            max_memory_bytes: config.max_memory_bytes,
            max_table_elements: config.max_table_elements,
            instances: config.max_core_instances_per_model as usize,
            tables: config.max_tables_per_model as usize,
            memories: config.max_memories_per_model as usize,
        }
    }

    /// Highest number of bytes charged at once.
    pub(crate) fn peak(&self) -> usize {
        self.peak
    }

    fn charge(&mut self, bytes: usize) -> bool {
        if bytes == 0 {
            return true;
        }
        if !self.budget.try_grow(bytes) {
            return false;
        }
        self.charged += bytes;
        self.peak = self.peak.max(self.charged);
        true
    }
}

impl Drop for JobLimiter {
    fn drop(&mut self) {
        if self.charged > 0 {
            self.budget.shrink(self.charged);
        }
    }
}

const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

impl ResourceLimiter for JobLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes || maximum.is_some_and(|m| desired > m) {
            return Err(LimitHit::Memory.into());
        }
        if !self.charge(desired.saturating_sub(current)) {
            return Err(LimitHit::Memory.into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_table_elements || maximum.is_some_and(|m| desired > m) {
            return Err(LimitHit::Table.into());
        }
        let bytes = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        if !self.charge(bytes) {
            return Err(LimitHit::Memory.into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_budget_refuses_past_its_limit_and_takes_back() {
        let b = FixedBudget::new(100);
        assert!(b.try_grow(60));
        assert!(!b.try_grow(41));
        assert!(b.try_grow(40));
        b.shrink(100);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn limiter_gives_everything_back_on_drop() {
        let budget = Arc::new(FixedBudget::new(1 << 20));
        {
            let mut l = JobLimiter::new(budget.clone(), &HostConfig::default());
            assert!(l.memory_growing(0, 65536, None).unwrap());
            assert!(l.table_growing(0, 10, None).unwrap());
            assert_eq!(budget.used(), 65536 + 10 * TABLE_ELEMENT_BYTES);
            let err = l.memory_growing(65536, 2 << 20, None).unwrap_err();
            assert_eq!(err.downcast_ref::<LimitHit>(), Some(&LimitHit::Memory));
        }
        assert_eq!(budget.used(), 0);
    }
}
