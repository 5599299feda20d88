//! # sandbox — the wasmtime host for researchers' models
//!
//! Not built yet: this crate holds its design until the WebAssembly-models
//! issue lands, so the workspace layout is final from the first commit.
//!
//! ## Architecture (planned)
//!
//! ```text
//!  component (.wasm) ─▶ intake: validate against the `anyu:model` WIT world,
//!                        reject unknown imports, SHA-256 = identity, cache compiled
//!                        artifact by (hash, engine version)
//!  job ─▶ fresh Store per run ─▶ epoch deadline from wall-clock time
//!        ─▶ ResourceLimiter charged to the job's DataFusion memory pool
//!        ─▶ input reader (batches of typed columns) ─▶ run(params) ─▶ table
//!        ─▶ the same disclosure checks and release flow as SQL results
//! ```
//!
//! WASI is denied by default: no filesystem, network, environment, clock or
//! entropy reach a model.
