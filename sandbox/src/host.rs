//! [`ModelHost`]: the engine, the epoch ticker, intake and runs.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, OptLevel, PoolConcurrencyLimitError,
    PoolingAllocationConfig, Store, Trap, UpdateDeadline,
};

use crate::bindings::{v0_1, v0_2};
use crate::contract::{self, Contract};
use crate::error::{Result, SandboxError, internal};
use crate::input::{InputReader, InputSource, Kind};
use crate::limits::{HostConfig, JobLimiter, LimitHit, RunLimits};
use crate::wasi::{self, JobLog};

/// What intake learned about a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// SHA-256 of the component's bytes, lower-case hex: the model's identity.
    pub sha256: String,
    /// Size of the component in bytes.
    pub size: usize,
    /// The component's imports (interface names with versions), in order.
    pub imports: Vec<String>,
    /// The component's exports (`run`, plus anything a toolchain adds).
    pub exports: Vec<String>,
    /// Whether the component imports any WASI interface.
    pub uses_wasi: bool,
    /// The contract version it targets.
    pub contract: Contract,
    /// Whether the compiled artifact came from the cache (memory or disk)
    /// rather than from compiling.
    pub cache_hit: bool,
    /// Time spent compiling (zero on a cache hit) or loading the artifact.
    pub load_time: Duration,
}

/// What a successful run returns.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    /// Schema of the result table.
    pub schema: SchemaRef,
    /// The result table: exactly one batch.
    pub batches: Vec<RecordBatch>,
    /// The job log (`log.write` lines, then WASI stdout/stderr as written).
    /// It is model output: it may contain data.
    pub log: String,
    /// Whether the log hit its limit and lost lines.
    pub log_truncated: bool,
    /// Input rows handed to the model.
    pub input_rows: u64,
    /// Highest memory (linear memory + tables) charged to the budget at once.
    pub peak_memory: usize,
    /// Time to instantiate the model in its fresh store.
    pub instantiate_time: Duration,
    /// Time from instantiation to the end of `run`, including input reading.
    pub run_time: Duration,
}

/// Per-job state inside the [`Store`].
pub(crate) struct RunState {
    pub(crate) limiter: JobLimiter,
    pub(crate) input: InputReader,
    pub(crate) input_error: Option<SandboxError>,
    pub(crate) log: JobLog,
    pub(crate) deadline_at: Instant,
    pub(crate) cancel: Option<crate::limits::CancelCheck>,
    pub(crate) wasi: wasmtime_wasi::WasiCtx,
    pub(crate) table: ResourceTable,
}

/// What every contract version's `input` does; each turns the slices into
/// its own tables.
impl RunState {
    pub(crate) fn input_columns(&mut self) -> wasmtime::Result<Vec<(String, Kind)>> {
        crate::input::columns(self.input.schema()).map_err(|e| self.fail_input(e))
    }

    /// The next input slice, unless the job's time is up or it was cancelled.
    pub(crate) fn next_slice(&mut self) -> wasmtime::Result<Option<RecordBatch>> {
        if Instant::now() >= self.deadline_at {
            return Err(LimitHit::Timeout.into());
        }
        if self.cancel.as_ref().is_some_and(|c| c()) {
            return Err(LimitHit::Cancelled.into());
        }
        self.input.next().map_err(|e| self.fail_input(e))
    }

    /// Keeps the error that ends the run for [`classify`]; what the guest
    /// sees is a trap.
    pub(crate) fn fail_input(&mut self, e: SandboxError) -> wasmtime::Error {
        self.input_error = Some(e);
        wasmtime::format_err!("the input failed")
    }
}

/// A component ready to instantiate, typed by its contract version.
enum Pre {
    V0_1(v0_1::ModelPre<RunState>),
    V0_2(v0_2::ModelPre<RunState>),
}

struct Loaded {
    pre: Pre,
    info: ModelInfo,
}

struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Runs researchers' models: one engine, one epoch ticker, an artifact cache.
///
/// `ModelHost` is `Send + Sync`; [`ModelHost::run`] may be called from many
/// threads at once (each run has its own store). Runs block their thread:
/// call them from a blocking thread (`tokio::task::spawn_blocking`).
pub struct ModelHost {
    engine: Engine,
    linker: Linker<RunState>,
    config: HostConfig,
    engine_key: String,
    models: Mutex<HashMap<String, Arc<Loaded>>>,
    _ticker: Ticker,
}

impl std::fmt::Debug for ModelHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelHost")
            .field("config", &self.config)
            .field("engine_key", &self.engine_key)
            .finish_non_exhaustive()
    }
}

fn engine_config(c: &HostConfig) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    let runs = c.max_concurrent_runs.max(1);
    pool.total_component_instances(runs)
        .total_core_instances(runs.saturating_mul(c.max_core_instances_per_model))
        .total_memories(runs.saturating_mul(c.max_memories_per_model))
        .total_tables(runs.saturating_mul(c.max_tables_per_model))
        .max_core_instances_per_component(c.max_core_instances_per_model)
        .max_memories_per_component(c.max_memories_per_model)
        .max_tables_per_component(c.max_tables_per_model)
        .max_memories_per_module(1)
        .max_tables_per_module(c.max_tables_per_model.min(8))
        .max_memory_size(c.max_memory_bytes)
        .table_elements(c.max_table_elements)
        .max_core_instance_size(4 << 20)
        .max_component_instance_size(4 << 20);

    let mut cfg = Config::new();
    cfg.wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(c.max_wasm_stack)
        .cranelift_opt_level(OptLevel::Speed)
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        .parallel_compilation(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    cfg
}

/// Names the compiled-artifact format: wasmtime's compatibility hash covers
/// its version (`module_version`), the target and every setting that changes
/// compiled code; the sandbox's own version is added for good measure.
fn engine_key(engine: &Engine) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    env!("CARGO_PKG_VERSION").hash(&mut h);
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{:016x}", h.finish())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn find<E: std::error::Error + Send + Sync + 'static>(err: &wasmtime::Error) -> Option<&E> {
    err.downcast_ref::<E>()
        .or_else(|| err.chain().find_map(|e| e.downcast_ref::<E>()))
}

impl ModelHost {
    /// An engine with the component model, epoch interruption and a pooling
    /// allocator sized by `config`, and the epoch ticker thread.
    pub fn new(config: HostConfig) -> Result<ModelHost> {
        let engine = Engine::new(&engine_config(&config))
            .map_err(|e| internal("creating the wasmtime engine", e))?;
        let mut linker: Linker<RunState> = Linker::new(&engine);
        v0_2::Model::add_to_linker::<RunState, HasSelf<RunState>>(&mut linker, |s| s)
            .map_err(|e| internal("linking anyu:model@0.2.0", e))?;
        v0_1::Model::add_to_linker::<RunState, HasSelf<RunState>>(&mut linker, |s| s)
            .map_err(|e| internal("linking anyu:model@0.1.0", e))?;
        if config.wasi {
            wasi::link(&mut linker).map_err(|e| internal("linking WASI", e))?;
        }
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| internal("creating the cache dir", e))?;
        }

        let stop = Arc::new(AtomicBool::new(false));
        let tick = config.epoch_tick.max(Duration::from_millis(1));
        let thread = {
            let engine = engine.weak();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sandbox-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        std::thread::park_timeout(tick);
                        match engine.upgrade() {
                            Some(e) => e.increment_epoch(),
                            None => break,
                        }
                    }
                })
                .map_err(|e| internal("starting the epoch ticker", e))?
        };
        Ok(ModelHost {
            engine_key: engine_key(&engine),
            engine,
            linker,
            config,
            models: Mutex::new(HashMap::new()),
            _ticker: Ticker {
                stop,
                thread: Some(thread),
            },
        })
    }

    /// The host's configuration.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Takes in a component: size limit, SHA-256, validation against the
    /// `anyu:model` world (unknown imports refused, `run` checked), compile
    /// (or load from the artifact cache). Taking in the same bytes again is a
    /// cache hit.
    pub fn intake(&self, bytes: &[u8]) -> Result<ModelInfo> {
        if bytes.len() > self.config.max_component_bytes {
            return Err(SandboxError::ComponentTooLarge {
                size: bytes.len(),
                limit: self.config.max_component_bytes,
            });
        }
        check_header(bytes)?;
        let sha = sha256_hex(bytes);
        if let Some(l) = self.lock_models().get(&sha) {
            let mut info = l.info.clone();
            info.cache_hit = true;
            info.load_time = Duration::ZERO;
            return Ok(info);
        }
        let started = Instant::now();
        let (component, cache_hit) = match self.load_artifact(&sha) {
            Some((c, _)) => (c, true),
            None => {
                let c = Component::new(&self.engine, bytes).map_err(|e| {
                    tracing::debug!(target: "sandbox", "component refused: {e:#}");
                    SandboxError::Malformed
                })?;
                (c, false)
            }
        };
        let mut loaded = self.prepare(&component, &sha, bytes.len())?;
        if !cache_hit {
            self.store_artifact(&sha, &component, bytes.len());
        }
        loaded.info.cache_hit = cache_hit;
        loaded.info.load_time = started.elapsed();
        Ok(self.remember(loaded).info.clone())
    }

    /// Runs model `sha256` (taken in before, by this host or into the same
    /// artifact cache) on `input` with `params`, in a fresh store under
    /// `limits`.
    pub fn run(
        &self,
        sha256: &str,
        input: Box<dyn InputSource>,
        params: &str,
        limits: RunLimits,
    ) -> Result<ModelOutput> {
        let loaded = self.loaded(sha256)?;
        let reader = InputReader::new(input, limits.batch_rows)?;
        let log = JobLog::new(limits.max_log_bytes);
        let started = Instant::now();
        let state = RunState {
            limiter: JobLimiter::new(limits.memory.clone(), &self.config),
            input: reader,
            input_error: None,
            wasi: wasi::context(&log),
            log,
            deadline_at: started + limits.deadline,
            cancel: limits.cancel.clone(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(limits.hostcall_fuel());
        // Woken every tick: the deadline is wall-clock time, and a cancelled
        // job stops within a tick rather than at its next input batch.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            if Instant::now() >= state.deadline_at {
                Err(LimitHit::Timeout.into())
            } else if state.cancel.as_ref().is_some_and(|c| c()) {
                Err(LimitHit::Cancelled.into())
            } else {
                Ok(UpdateDeadline::Continue(1))
            }
        });
        if limits.cancelled() {
            return Err(SandboxError::Cancelled);
        }

        let (instantiated, finished, batch) = match &loaded.pre {
            Pre::V0_1(pre) => call(
                &mut store,
                &limits,
                |s| pre.instantiate(s),
                |m, s| m.call_run(s, params),
                contract::v0_1::from_wit,
            ),
            Pre::V0_2(pre) => call(
                &mut store,
                &limits,
                |s| pre.instantiate(s),
                |m, s| m.call_run(s, params),
                contract::v0_2::from_wit,
            ),
        }?;
        let state = store.data();
        let (log, log_truncated) = state.log.take();
        Ok(ModelOutput {
            schema: batch.schema(),
            batches: vec![batch],
            log,
            log_truncated,
            input_rows: state.input.rows,
            peak_memory: state.limiter.peak(),
            instantiate_time: instantiated - started,
            run_time: finished - instantiated,
        })
    }

    /// What intake recorded for a model this host holds.
    pub fn info(&self, sha256: &str) -> Option<ModelInfo> {
        self.lock_models().get(sha256).map(|l| l.info.clone())
    }

    fn lock_models(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Loaded>>> {
        self.models.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn loaded(&self, sha: &str) -> Result<Arc<Loaded>> {
        if let Some(l) = self.lock_models().get(sha) {
            return Ok(l.clone());
        }
        let valid = sha.len() == 64 && sha.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(SandboxError::UnknownModel);
        }
        let started = Instant::now();
        let (component, size) = self.load_artifact(sha).ok_or(SandboxError::UnknownModel)?;
        // Checked at its intake; checked again here.
        let mut loaded = self.prepare(&component, sha, size)?;
        loaded.info.cache_hit = true;
        loaded.info.load_time = started.elapsed();
        Ok(self.remember(loaded))
    }

    fn remember(&self, loaded: Loaded) -> Arc<Loaded> {
        let loaded = Arc::new(loaded);
        self.lock_models()
            .insert(loaded.info.sha256.clone(), loaded.clone());
        loaded
    }

    /// Checks a compiled component against the world and types it by its
    /// contract version.
    fn prepare(&self, component: &Component, sha: &str, size: usize) -> Result<Loaded> {
        let (info, pinned) = self.check(component, sha, size)?;
        let wrong = |e: wasmtime::Error| SandboxError::WrongWorld {
            reason: format!("{e}"),
        };
        let pre = self.linker.instantiate_pre(component).map_err(wrong)?;
        let candidates = match &pinned {
            Some(c) => std::slice::from_ref(c),
            None => Contract::SUPPORTED,
        };
        let mut first_error = None;
        for &contract in candidates {
            let typed = match contract {
                Contract::V0_1 => v0_1::ModelPre::new(pre.clone()).map(Pre::V0_1),
                Contract::V0_2 => v0_2::ModelPre::new(pre.clone()).map(Pre::V0_2),
            };
            match typed {
                Ok(pre) => {
                    let info = ModelInfo { contract, ..info };
                    return Ok(Loaded { pre, info });
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.map_or_else(
            || internal("typing a component", "no contract version to try"),
            wrong,
        ))
    }

    /// Imports only from the allowlist, `anyu:model` ones of one version
    /// (returned); a `run` function export.
    fn check(
        &self,
        component: &Component,
        sha: &str,
        size: usize,
    ) -> Result<(ModelInfo, Option<Contract>)> {
        let ty = component.component_type();
        let mut imports = Vec::new();
        let mut uses_wasi = false;
        let mut pinned: Option<Contract> = None;
        for (name, _) in ty.imports(&self.engine) {
            let model = Contract::of_import(name);
            let wasi = self.config.wasi && wasi::is_allowed_wasi(name);
            if model.is_none() && !wasi {
                return Err(SandboxError::ForbiddenImport {
                    name: name.to_string(),
                });
            }
            if let Some(c) = model {
                if pinned.is_some_and(|p| p != c) {
                    return Err(SandboxError::WrongWorld {
                        reason: format!("imports from both {} and {c}", pinned.unwrap_or(c)),
                    });
                }
                pinned = Some(c);
            }
            uses_wasi |= wasi;
            imports.push(name.to_string());
        }
        let mut exports = Vec::new();
        let mut run = false;
        for (name, item) in ty.exports(&self.engine) {
            if name == "run" {
                if !matches!(item.ty, ComponentItem::ComponentFunc(_)) {
                    return Err(SandboxError::WrongWorld {
                        reason: "export `run` is not a function".into(),
                    });
                }
                run = true;
            }
            exports.push(name.to_string());
        }
        if !run {
            return Err(SandboxError::WrongWorld {
                reason: "no export `run`".into(),
            });
        }
        let info = ModelInfo {
            sha256: sha.to_string(),
            size,
            imports,
            exports,
            uses_wasi,
            contract: pinned.unwrap_or(Contract::CURRENT),
            cache_hit: false,
            load_time: Duration::ZERO,
        };
        Ok((info, pinned))
    }

    fn artifact_paths(&self, sha: &str) -> Option<(PathBuf, PathBuf)> {
        let dir = self.config.cache_dir.as_deref()?;
        let base = format!("{sha}-{}", self.engine_key);
        Some((
            dir.join(format!("{base}.cwasm")),
            dir.join(format!("{base}.sha256")),
        ))
    }

    /// A cached artifact whose digest matches its sidecar file (which also
    /// holds the component's size), and that size.
    fn load_artifact(&self, sha: &str) -> Option<(Component, usize)> {
        let (art, sum) = self.artifact_paths(sha)?;
        let bytes = std::fs::read(&art).ok()?;
        let sidecar = std::fs::read_to_string(&sum).ok()?;
        let (want, size) = sidecar.trim().split_once(' ')?;
        let size: usize = size.parse().ok()?;
        if want != sha256_hex(&bytes) {
            tracing::warn!(target: "sandbox", "artifact {} fails its digest; recompiling", art.display());
            return None;
        }
        // SAFETY: the artifact was produced by `Component::serialize` of an
        // engine with the same key (version + settings), and its digest was
        // just checked against the one written next to it. The cache
        // directory is writable by the domain only (see `HostConfig`).
        match unsafe { Component::deserialize(&self.engine, &bytes) } {
            Ok(c) => Some((c, size)),
            Err(e) => {
                tracing::warn!(target: "sandbox", "artifact {} not loadable: {e}", art.display());
                None
            }
        }
    }

    fn store_artifact(&self, sha: &str, component: &Component, size: usize) {
        let Some((art, sum)) = self.artifact_paths(sha) else {
            return;
        };
        let result = component
            .serialize()
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                write_atomic(&art, &bytes)?;
                write_atomic(&sum, format!("{} {size}\n", sha256_hex(&bytes)).as_bytes())
            });
        if let Err(e) = result {
            tracing::warn!(target: "sandbox", "caching artifact {}: {e}", art.display());
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::result::Result<(), String> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())
}

/// `\0asm`, then version 1 layer 0 (core module) or the component layer.
fn check_header(bytes: &[u8]) -> Result<()> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(SandboxError::Malformed);
    }
    match (bytes[6], bytes[7]) {
        (0, 0) => Err(SandboxError::NotAComponent),
        (1, 0) => Ok(()),
        _ => Err(SandboxError::Malformed),
    }
}

/// Instantiates, runs and converts the result, whatever the contract
/// version; returns when instantiation and the run ended, and the table.
fn call<M, T>(
    store: &mut Store<RunState>,
    limits: &RunLimits,
    instantiate: impl FnOnce(&mut Store<RunState>) -> wasmtime::Result<M>,
    run: impl FnOnce(&M, &mut Store<RunState>) -> wasmtime::Result<std::result::Result<T, String>>,
    from_wit: impl FnOnce(T, u64, u64) -> Result<RecordBatch>,
) -> Result<(Instant, Instant, RecordBatch)> {
    let model = instantiate(store).map_err(|e| classify(e, store.data_mut(), limits))?;
    let instantiated = Instant::now();
    let result = run(&model, store).map_err(|e| classify(e, store.data_mut(), limits))?;
    let finished = Instant::now();
    let table = result.map_err(SandboxError::ModelError)?;
    let batch = from_wit(table, limits.max_output_cells, limits.max_output_bytes)?;
    Ok((instantiated, finished, batch))
}

/// Turns the error that ended a guest into the exact [`SandboxError`].
fn classify(err: wasmtime::Error, state: &mut RunState, limits: &RunLimits) -> SandboxError {
    if let Some(e) = state.input_error.take() {
        return e;
    }
    if let Some(hit) = find::<LimitHit>(&err) {
        return match hit {
            LimitHit::Memory => SandboxError::MemoryLimit,
            LimitHit::Table => SandboxError::TableLimit,
            LimitHit::Timeout => SandboxError::Timeout {
                deadline: limits.deadline,
            },
            LimitHit::Cancelled => SandboxError::Cancelled,
        };
    }
    if let Some(trap) = find::<Trap>(&err) {
        return match trap {
            Trap::Interrupt => SandboxError::Timeout {
                deadline: limits.deadline,
            },
            Trap::StackOverflow => SandboxError::StackOverflow,
            other => SandboxError::Trap {
                kind: snake(&format!("{other:?}")),
            },
        };
    }
    if find::<wasmtime_wasi::I32Exit>(&err).is_some() {
        return SandboxError::Trap {
            kind: "exit".into(),
        };
    }
    if find::<PoolConcurrencyLimitError>(&err).is_some() {
        return internal("instantiating a model", "all instance slots are busy");
    }
    let text = format!("{err:#}");
    if text.contains("fuel allocated for hostcalls has been exhausted") {
        return SandboxError::OutputTooLarge {
            limit: limits.max_output_bytes,
            unit: "bytes",
        };
    }
    tracing::info!(target: "sandbox", "model ended by a non-trap error: {text}");
    SandboxError::Trap { kind: "abi".into() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trap_names_are_snake_case() {
        assert_eq!(snake("UnreachableCodeReached"), "unreachable_code_reached");
        assert_eq!(snake("MemoryOutOfBounds"), "memory_out_of_bounds");
    }

    #[test]
    fn header_tells_modules_from_components() {
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(SandboxError::NotAComponent)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(matches!(
            check_header(b"\0asm"),
            Err(SandboxError::Malformed)
        ));
        assert!(matches!(
            check_header(b"hello wo"),
            Err(SandboxError::Malformed)
        ));
    }
}
