//! # sandbox — the wasmtime host for researchers' models
//!
//! A model is a WebAssembly **component** targeting the world `model` of
//! `anyu:model@0.2.0` (`sandbox/wit/anyu-model.wit`): it imports a read-only
//! reader of its input table and a bounded log, and exports
//! `run(params: string) -> result<table, string>`. It is a deterministic
//! function of its input and params: no filesystem, network, environment,
//! wall clock or entropy reaches it. Components built against
//! `anyu:model@0.1.0` (`sandbox/wit/0.1.0/`) run too: see [`Contract`].
//!
//! ## Architecture
//!
//! ```text
//!  component bytes ─▶ ModelHost::intake
//!       size ≤ max_component_bytes ─▶ header: core module? NotAComponent
//!       SHA-256 (identity) ─▶ in-memory map hit? ─▶ done (cache_hit)
//!       artifact cache  <dir>/<sha256>-<engine key>.cwasm (+ .sha256 digest)
//!          hit: Component::deserialize │ miss: Component::new (cranelift) ─▶ serialize
//!       imports ⊆ anyu:model/{types,input,log}@{0.2.0,0.1.0} (+ WASI 0.2 allowlist)
//!          else ForbiddenImport{name}
//!       contract: the version its anyu:model imports name (two versions: WrongWorld),
//!          without any the newest whose `run` type-checks; linker check else WrongWorld
//!       InstancePre (that version's ModelPre) kept per model
//!
//!  job ─▶ ModelHost::run(sha256, InputSource, params, RunLimits)
//!       input schema checked (Float64/Int64/Utf8/Boolean) else InvalidInput
//!       fresh Store ── RunState { JobLimiter, InputReader, JobLog, WasiCtx }
//!          ResourceLimiter: memory + table growth charged to the MemoryBudget
//!          epoch deadline = ceil(deadline / tick) + 1 ticks; ticker thread
//!          hostcall fuel: ≤ 6 × max_output_bytes copied out of the guest per call
//!       instantiate ─▶ run(params)
//!          guest ─ input.schema / input.next-batch ─▶ arrow batches sliced to
//!                  batch_rows, copied into WIT tables (0.2: value buffers and
//!                  validity bitmaps as blocks; 0.1: value by value)
//!          guest ─ log.write, WASI stdout/stderr ─▶ capped job log
//!       ok(table) ─▶ cells/bytes counted ─▶ structure checked ─▶ one RecordBatch
//!                    (null slots zeroed) ─▶ ModelOutput
//!       err(msg) ─▶ ModelError(msg) (message not in Display)
//!       trap / limit ─▶ Timeout | Cancelled | MemoryLimit | TableLimit | StackOverflow
//!                       | OutputTooLarge | Trap{kind}
//! ```
//!
//! The pooling allocator bounds what all jobs together may hold (instances,
//! memories, tables, per-memory size); the [`MemoryBudget`] bounds one job
//! (the enclave backs it with the job's DataFusion memory pool). What a model
//! returns is not trusted: the enclave runs the same disclosure checks on it
//! as on SQL results (including echo detection: a model that returns its
//! input is allowed here).
//!
//! ## WASI
//!
//! Guest toolchains built on wasi-libc (componentize-py, wasi-sdk) import
//! WASI 0.2 interfaces just to link. With [`HostConfig::wasi`] on (the
//! default) those imports are satisfied, every one denied or deterministic:
//! see the table in the `wasi` module. With it off only `anyu:model` may be
//! imported.
//!
//! ## Errors
//!
//! [`SandboxError`] has a stable [`SandboxError::code`]; no message carries a
//! data value. See `sandbox/models/` for example models (C and Python).

mod contract;
mod error;
mod host;
mod input;
mod limits;
mod output;
mod wasi;

/// Host bindings of the `anyu:model` worlds, generated from the WIT files:
/// one module per supported version.
pub mod bindings {
    /// `anyu:model@0.2.0` (`wit/anyu-model.wit`).
    pub mod v0_2 {
        wasmtime::component::bindgen!({
            path: "wit/anyu-model.wit",
            world: "model",
            imports: { default: trappable },
            additional_derives: [PartialEq],
        });
    }

    /// `anyu:model@0.1.0` (`wit/0.1.0/anyu-model.wit`).
    pub mod v0_1 {
        wasmtime::component::bindgen!({
            path: "wit/0.1.0/anyu-model.wit",
            world: "model",
            imports: { default: trappable },
        });
    }
}

pub use contract::{Contract, MODEL_INTERFACES};
pub use error::{Result, SandboxError};
pub use host::{ModelHost, ModelInfo, ModelOutput};
pub use input::{BatchesInput, InputSource, readable};
pub use limits::{CancelCheck, FixedBudget, HostConfig, MemoryBudget, RunLimits};

/// The WIT text of the current contract ([`Contract::CURRENT`]).
pub const WIT: &str = include_str!("../wit/anyu-model.wit");
