//! The evil-guest suite: hostile components, each with the exact outcome the
//! host must give, the host still usable afterwards and the job's memory
//! budget fully returned.
//!
//! Guests are component-model WAT built by [`component`]: a `$Libc` core
//! module owns the linear memory and a bump `realloc` (the host lowers
//! params and input into it), a `$Main` core module holds the test's code
//! and exports `run`. Most target `anyu:model@0.1.0`, which every host still
//! runs; the 0.2.0 section tests what 0.2.0 changed. Canonical ABI of
//! `run: func(params: string) -> result<table, string>` (core signature
//! `(i32 i32) -> i32`, returning a pointer to the result):
//!
//! ```text
//! result<table,string>  12 bytes, align 4: u8 tag @0 (0 ok, 1 err), payload @4
//! table                 list<column>: ptr @0, len @4
//! column (0.1.0)        20 bytes: name ptr @0, len @4, data tag u8 @8, list ptr @12, len @16
//!                       data tags: 0 f64, 1 i64, 2 str, 3 boolean
//! option<s64>/<f64>     16 bytes, align 8: tag u8 @0, value @8
//! option<string>        12 bytes, align 4: tag u8 @0, ptr @4, len @8
//! option<bool>          2 bytes: tag u8 @0, value u8 @1
//! column (0.2.0)        40 bytes: name ptr @0, len @4, data tag u8 @8, list ptr @12, len @16
//!                       (str: offsets ptr @12, len @16, bytes ptr @20, len @24),
//!                       validity: tag u8 @28, ptr @32, len @36
//!                       lists of f64/s64 8 bytes a value, u32 offsets 4, bool and u8 1
//! ```
//!
//! Every `$Main` gets a prelude: `$column` writes a column record (of its
//! version; 0.2.0 adds `$validity` and `$str_bytes`), `$ok` / `$err` write
//! the result at address 16, `$parse` reads a decimal params string,
//! `$alloc` calls `realloc`. Addresses below 4096 are the guest's own
//! scratch space; `realloc` hands out memory from 4096 up.

mod guest_wat;

use guest_wat::{TYPE_DEFS, TYPE_DEFS_0_2};

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use sandbox::{
    BatchesInput, Contract, FixedBudget, HostConfig, InputSource, ModelHost, ModelOutput,
    RunLimits, SandboxError,
};

// ---------------------------------------------------------------------------
// Building guests

/// Which host interfaces a guest imports (and `$Main` may call), and the
/// contract version it targets.
#[derive(Clone, Copy, Default)]
struct Imports {
    /// `anyu:model@0.2.0` instead of 0.1.0, for every `anyu:model` import.
    v0_2: bool,
    /// `anyu:model/input`: `$schema`, `$next_batch` (retptr).
    input: bool,
    /// `anyu:model/log`: `$log_write (ptr, len)`.
    log: bool,
    /// `wasi:random/random@0.2.0`: `$random_u64`.
    random: bool,
    /// `wasi:filesystem/preopens@0.2.0`: `$get_directories` (retptr).
    preopens: bool,
}

const LIBC: &str = r#"
  (core module $Libc
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 4096))
    (func (export "realloc") (param $old i32) (param $old_size i32) (param $align i32)
        (param $size i32) (result i32)
      (local $p i32) (local $end i32) (local $have i32)
      (local.set $p (i32.and
        (i32.add (global.get $bump) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $p) (local.get $size)))
      (local.set $have (i32.shl (memory.size) (i32.const 16)))
      (if (i32.gt_u (local.get $end) (local.get $have))
        (then
          (if (i32.eq
                (memory.grow (i32.shr_u
                  (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                  (i32.const 16)))
                (i32.const -1))
            (then unreachable))))
      (global.set $bump (local.get $end))
      (if (local.get $old_size)
        (then (memory.copy (local.get $p) (local.get $old) (local.get $old_size))))
      (local.get $p)))
  (core instance $libc (instantiate $Libc))
"#;

/// `$column` of 0.1.0 and 0.2.0 (where it leaves the validity `none`).
const COLUMN: &str = r#"
    (func $column (param $at i32) (param $name i32) (param $name_len i32) (param $kind i32)
        (param $list i32) (param $len i32)
      (i32.store (local.get $at) (local.get $name))
      (i32.store offset=4 (local.get $at) (local.get $name_len))
      (i32.store8 offset=8 (local.get $at) (local.get $kind))
      (i32.store offset=12 (local.get $at) (local.get $list))
      (i32.store offset=16 (local.get $at) (local.get $len)))
"#;

/// 0.2.0 only: a column's validity bitmap, a string column's bytes.
const COLUMN_0_2: &str = r#"
    (func $validity (param $at i32) (param $bits i32) (param $len i32)
      (i32.store8 offset=28 (local.get $at) (i32.const 1))
      (i32.store offset=32 (local.get $at) (local.get $bits))
      (i32.store offset=36 (local.get $at) (local.get $len)))
    (func $str_bytes (param $at i32) (param $bytes i32) (param $len i32)
      (i32.store offset=20 (local.get $at) (local.get $bytes))
      (i32.store offset=24 (local.get $at) (local.get $len)))
"#;

const PRELUDE: &str = r#"
    (func $ok (param $cols i32) (param $n i32) (result i32)
      (i32.store8 (i32.const 16) (i32.const 0))
      (i32.store (i32.const 20) (local.get $cols))
      (i32.store (i32.const 24) (local.get $n))
      (i32.const 16))
    (func $err (param $msg i32) (param $len i32) (result i32)
      (i32.store8 (i32.const 16) (i32.const 1))
      (i32.store (i32.const 20) (local.get $msg))
      (i32.store (i32.const 24) (local.get $len))
      (i32.const 16))
    (func $alloc (param $size i32) (param $align i32) (result i32)
      (call $realloc (i32.const 0) (i32.const 0) (local.get $align) (local.get $size)))
    (func $parse (param $p i32) (param $len i32) (result i32)
      (local $n i32) (local $end i32)
      (local.set $end (i32.add (local.get $p) (local.get $len)))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
          (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 10))
            (i32.sub (i32.load8_u (local.get $p)) (i32.const 48))))
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br $next)))
      (local.get $n))
"#;

/// A component targeting `anyu:model` whose core module `$Main` has `body`
/// (which must export `run (param i32 i32) (result i32)`).
fn component_wat(imports: Imports, body: &str) -> String {
    let mut outer = String::new();
    let mut lowers = String::new();
    let mut host = String::new();
    let mut main_imports = String::new();
    let mem = r#"(memory (core memory $libc "memory"))"#;
    let realloc = r#"(realloc (core func $libc "realloc"))"#;
    let (version, defs, columns) = match imports.v0_2 {
        false => ("0.1.0", TYPE_DEFS, COLUMN.to_string()),
        true => ("0.2.0", TYPE_DEFS_0_2, format!("{COLUMN}{COLUMN_0_2}")),
    };
    if imports.input {
        outer += &format!(
            r#"(import "anyu:model/input@{version}" (instance $input
                 (type $ct (enum "f64" "i64" "str" "bool"))
                 (export "column-type" (type $ct-e (eq $ct)))
                 (type $field (record (field "name" string) (field "ty" $ct-e)))
                 (export "field" (type $field-e (eq $field)))
                 {defs}
                 (export "schema" (func (result (list $field-e))))
                 (export "next-batch" (func (result (option $table-e))))))"#
        );
        lowers += &format!(
            r#"(core func $schema (canon lower (func $input "schema") {mem} {realloc}))
               (core func $next-batch (canon lower (func $input "next-batch") {mem} {realloc}))"#
        );
        host += r#"(export "schema" (func $schema)) (export "next-batch" (func $next-batch))"#;
        main_imports += r#"(import "host" "schema" (func $schema (param i32)))
                           (import "host" "next-batch" (func $next_batch (param i32)))"#;
    }
    if imports.log {
        outer += &format!(
            r#"(import "anyu:model/log@{version}" (instance $log
                 (export "write" (func (param "line" string)))))"#
        );
        lowers += &format!(r#"(core func $log-write (canon lower (func $log "write") {mem}))"#);
        host += r#"(export "log-write" (func $log-write))"#;
        main_imports += r#"(import "host" "log-write" (func $log_write (param i32 i32)))"#;
    }
    if imports.random {
        outer += r#"(import "wasi:random/random@0.2.0" (instance $random
                      (export "get-random-u64" (func (result u64)))))"#;
        lowers += r#"(core func $random-u64 (canon lower (func $random "get-random-u64")))"#;
        host += r#"(export "random-u64" (func $random-u64))"#;
        main_imports += r#"(import "host" "random-u64" (func $random_u64 (result i64)))"#;
    }
    if imports.preopens {
        outer += r#"(import "wasi:filesystem/types@0.2.0" (instance $fs
                      (export "descriptor" (type (sub resource)))))
                    (alias export $fs "descriptor" (type $descriptor))
                    (import "wasi:filesystem/preopens@0.2.0" (instance $preopens
                      (alias outer $C $descriptor (type $d))
                      (export "descriptor" (type $d-e (eq $d)))
                      (export "get-directories"
                        (func (result (list (tuple (own $d-e) string)))))))"#;
        lowers += &format!(
            r#"(core func $get-directories
                 (canon lower (func $preopens "get-directories") {mem} {realloc}))"#
        );
        host += r#"(export "get-directories" (func $get-directories))"#;
        main_imports += r#"(import "host" "get-directories" (func $get_directories (param i32)))"#;
    }
    format!(
        r#"(component $C
  (import "anyu:model/types@{version}" (instance $types {defs}))
  (alias export $types "table" (type $table))
  {outer}
  {LIBC}
  {lowers}
  (core instance $host {host})
  (core module $Main
    (import "libc" "memory" (memory 1))
    (import "libc" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    {main_imports}
    {columns}
    {PRELUDE}
    {body})
  (core instance $main (instantiate $Main
    (with "libc" (instance $libc))
    (with "host" (instance $host))))
  (type $run-ty (func (param "params" string) (result (result $table (error string)))))
  (func $run (type $run-ty)
    (canon lift (core func $main "run") {mem} {realloc}))
  (export "run" (func $run)))"#
    )
}

fn component(imports: Imports, body: &str) -> Vec<u8> {
    let text = component_wat(imports, body);
    wat::parse_str(&text).unwrap_or_else(|e| panic!("guest WAT does not parse: {e}\n{text}"))
}

fn guest(body: &str) -> Vec<u8> {
    component(Imports::default(), body)
}

fn guest_0_2(body: &str) -> Vec<u8> {
    component(
        Imports {
            v0_2: true,
            ..Imports::default()
        },
        body,
    )
}

/// Returns one i64 column `ok` = [42].
const GOOD: &str = r#"
    (data (i32.const 64) "ok")
    (func (export "run") (param i32 i32) (result i32)
      (i32.store8 (i32.const 1024) (i32.const 1))
      (i64.store (i32.const 1032) (i64.const 42))
      (call $column (i32.const 512) (i32.const 64) (i32.const 2) (i32.const 1)
        (i32.const 1024) (i32.const 1))
      (call $ok (i32.const 512) (i32.const 1)))
"#;

/// [`GOOD`] for anyu:model@0.2.0: an s64 is a plain 8-byte value.
const GOOD_0_2: &str = r#"
    (data (i32.const 64) "ok")
    (func (export "run") (param i32 i32) (result i32)
      (i64.store (i32.const 1024) (i64.const 42))
      (call $column (i32.const 512) (i32.const 64) (i32.const 2) (i32.const 1)
        (i32.const 1024) (i32.const 1))
      (call $ok (i32.const 512) (i32.const 1)))
"#;

// ---------------------------------------------------------------------------
// Running guests

fn config() -> HostConfig {
    // Fewer pool slots than the default: many hosts live at once in tests.
    HostConfig {
        max_concurrent_runs: 4,
        ..HostConfig::default()
    }
}

fn host() -> ModelHost {
    ModelHost::new(config()).expect("host")
}

const BUDGET: usize = 64 << 20;

fn limits(budget: &Arc<FixedBudget>) -> RunLimits {
    RunLimits::new(Duration::from_secs(10), budget.clone())
}

fn no_input() -> Box<dyn InputSource> {
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
    Box::new(BatchesInput::new(schema, vec![]))
}

/// Takes `bytes` in and runs them once with no input; asserts the budget is
/// whole again afterwards, whatever the outcome.
fn run_with(
    host: &ModelHost,
    bytes: &[u8],
    params: &str,
    tweak: impl FnOnce(&mut RunLimits),
) -> Result<ModelOutput, SandboxError> {
    let info = host.intake(bytes).expect("intake");
    let budget = Arc::new(FixedBudget::new(BUDGET));
    let mut l = limits(&budget);
    tweak(&mut l);
    let out = host.run(&info.sha256, no_input(), params, l);
    assert_eq!(
        budget.used(),
        0,
        "budget not returned after {:?}",
        out.as_ref().err()
    );
    out
}

fn run(host: &ModelHost, bytes: &[u8], params: &str) -> Result<ModelOutput, SandboxError> {
    run_with(host, bytes, params, |_| {})
}

/// A well-behaved guest still runs, and returns its memory.
fn assert_still_usable(host: &ModelHost) {
    let out = run(host, &guest(GOOD), "").expect("good guest after an evil one");
    assert_eq!(i64s(&out.batches[0], "ok"), vec![Some(42)]);
}

fn i64s(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("i64 column")
        .iter()
        .collect()
}

fn expect_err(r: Result<ModelOutput, SandboxError>) -> SandboxError {
    match r {
        Ok(out) => panic!("expected an error, got {:?}", out.batches),
        Err(e) => e,
    }
}

fn intake_err(host: &ModelHost, bytes: &[u8]) -> SandboxError {
    host.intake(bytes).expect_err("intake should refuse")
}

// ---------------------------------------------------------------------------
// Sanity: the builder makes a valid model

#[test]
fn well_behaved_guest_runs() {
    let host = host();
    let out = run(&host, &guest(GOOD), "").unwrap();
    assert_eq!(i64s(&out.batches[0], "ok"), vec![Some(42)]);
    assert!(out.peak_memory >= 65536, "linear memory is charged");
}

// ---------------------------------------------------------------------------
// Resource exhaustion

#[test]
fn infinite_loop_times_out() {
    let host = host();
    let bytes = guest(
        r#"(func (export "run") (param i32 i32) (result i32)
             (loop $forever (br $forever))
             unreachable)"#,
    );
    let deadline = Duration::from_millis(200);
    let started = Instant::now();
    let err = expect_err(run_with(&host, &bytes, "", |l| l.deadline = deadline));
    let elapsed = started.elapsed();
    assert!(
        matches!(err, SandboxError::Timeout { deadline: d } if d == deadline),
        "{err:?}"
    );
    assert_eq!(err.code(), "timeout");
    // Deadline plus one epoch tick, plus slack for a loaded machine.
    assert!(elapsed >= deadline, "stopped early: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    eprintln!("infinite loop stopped after {elapsed:?} (deadline {deadline:?})");
    assert_still_usable(&host);
}

#[test]
fn cancelling_the_job_stops_a_spinning_guest_within_ticks() {
    let host = host();
    let bytes = guest(
        r#"(func (export "run") (param i32 i32) (result i32)
             (loop $forever (br $forever))
             unreachable)"#,
    );
    let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let setter = Arc::clone(&flag);
    let cancel_at = Duration::from_millis(150);
    std::thread::spawn(move || {
        std::thread::sleep(cancel_at);
        setter.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let started = Instant::now();
    let check = Arc::clone(&flag);
    let err = expect_err(run_with(&host, &bytes, "", move |l| {
        l.deadline = Duration::from_secs(60);
        l.cancel = Some(Arc::new(move || {
            check.load(std::sync::atomic::Ordering::SeqCst)
        }));
    }));
    let elapsed = started.elapsed();
    assert!(matches!(err, SandboxError::Cancelled), "{err:?}");
    assert_eq!(err.code(), "cancelled");
    assert!(elapsed >= cancel_at, "stopped early: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    // Cancelled before it starts: nothing is instantiated.
    let err = expect_err(run_with(&host, &bytes, "", |l| {
        l.cancel = Some(Arc::new(|| true));
    }));
    assert!(matches!(err, SandboxError::Cancelled), "{err:?}");
    assert_still_usable(&host);
}

#[test]
fn infinite_loop_in_a_start_function_times_out_during_instantiation() {
    let host = host();
    let bytes = guest(
        r#"(func $spin (loop $forever (br $forever)))
           (start $spin)
           (func (export "run") (param i32 i32) (result i32) unreachable)"#,
    );
    let deadline = Duration::from_millis(200);
    let started = Instant::now();
    let err = expect_err(run_with(&host, &bytes, "", |l| l.deadline = deadline));
    assert!(matches!(err, SandboxError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_still_usable(&host);
}

#[test]
fn log_flood_is_capped_and_the_run_succeeds() {
    let host = host();
    let bytes = component(
        Imports {
            log: true,
            ..Imports::default()
        },
        r#"(data (i32.const 64) "ok")
           (func (export "run") (param i32 i32) (result i32)
             (local $i i32)
             (loop $more
               (call $log_write (i32.const 128) (i32.const 100))
               (local.set $i (i32.add (local.get $i) (i32.const 1)))
               (br_if $more (i32.lt_u (local.get $i) (i32.const 10000))))
             (call $column (i32.const 512) (i32.const 64) (i32.const 2) (i32.const 1)
               (i32.const 1024) (i32.const 0))
             (call $ok (i32.const 512) (i32.const 1)))"#,
    );
    let out = run_with(&host, &bytes, "", |l| l.max_log_bytes = 1024).expect("log flood");
    assert!(out.log_truncated);
    // Whole lines only: ten lines of 100 zero bytes and a newline.
    assert_eq!(out.log.len(), 10 * 101);
    assert_still_usable(&host);
}

#[test]
fn memory_bomb_in_small_steps_hits_the_budget() {
    let host = host();
    // 1 MiB at a time until the 64 MiB budget refuses; a -1 from
    // memory.grow would show up as an unreachable trap instead.
    let bytes = guest(
        r#"(func (export "run") (param i32 i32) (result i32)
             (loop $more
               (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
             unreachable)"#,
    );
    let err = expect_err(run(&host, &bytes, ""));
    assert!(matches!(err, SandboxError::MemoryLimit), "{err:?}");
    assert_eq!(err.code(), "memory_limit");
    assert_still_usable(&host);
}

#[test]
fn memory_bomb_in_one_huge_grow_hits_the_per_memory_maximum() {
    let host = host();
    // 2 GiB in one go: over max_memory_bytes (1 GiB) before the budget is
    // even asked.
    let bytes = guest(
        r#"(func (export "run") (param i32 i32) (result i32)
             (drop (memory.grow (i32.const 32768)))
             unreachable)"#,
    );
    let err = expect_err(run(&host, &bytes, ""));
    assert!(matches!(err, SandboxError::MemoryLimit), "{err:?}");
    assert_still_usable(&host);
}

const TABLE_BOMB: &str = r#"
    (table $t 1 funcref)
    (func (export "run") (param i32 i32) (result i32)
      (loop $more
        (br_if $more (i32.ne (table.grow $t (ref.null func) (i32.const 10000))
                             (i32.const -1))))
      unreachable)
"#;

#[test]
fn table_bomb_hits_the_table_limit() {
    let host = host();
    // 200 000 elements (the host's table limit) cost 1.6 MB of the 64 MiB
    // budget, so the element limit binds first.
    let err = expect_err(run(&host, &guest(TABLE_BOMB), ""));
    assert!(matches!(err, SandboxError::TableLimit), "{err:?}");
    assert_eq!(err.code(), "table_limit");
    assert_still_usable(&host);
}

#[test]
fn table_bomb_under_a_tight_budget_hits_the_memory_limit() {
    let host = host();
    let info = host.intake(&guest(TABLE_BOMB)).unwrap();
    // Table elements are charged to the same budget as linear memory: with
    // 1 MiB (64 KiB of it the guest's memory) the budget runs out near
    // 120 000 elements, before the 200 000-element limit.
    let budget = Arc::new(FixedBudget::new(1 << 20));
    let err = host
        .run(&info.sha256, no_input(), "", limits(&budget))
        .expect_err("table bomb");
    assert!(matches!(err, SandboxError::MemoryLimit), "{err:?}");
    assert_eq!(budget.used(), 0);
    assert_still_usable(&host);
}

#[test]
fn infinite_recursion_overflows_the_stack() {
    let host = host();
    let bytes = guest(
        r#"(func $down (param i32) (result i32)
             (i32.add (call $down (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
           (func (export "run") (param i32 i32) (result i32)
             (call $down (i32.const 0)))"#,
    );
    let err = expect_err(run(&host, &bytes, ""));
    assert!(matches!(err, SandboxError::StackOverflow), "{err:?}");
    assert_eq!(err.code(), "stack_overflow");
    assert_still_usable(&host);
}

// ---------------------------------------------------------------------------
// Output size and shape

/// One column `n` of `params` (decimal) null i64s.
const I64_ROWS: &str = r#"
    (data (i32.const 64) "n")
    (func (export "run") (param $p i32) (param $len i32) (result i32)
      (local $rows i32)
      (local.set $rows (call $parse (local.get $p) (local.get $len)))
      (call $column (i32.const 512) (i32.const 64) (i32.const 1) (i32.const 1)
        (call $alloc (i32.mul (local.get $rows) (i32.const 16)) (i32.const 8))
        (local.get $rows))
      (call $ok (i32.const 512) (i32.const 1)))
"#;

/// One column `s` of `params` (decimal) null strings.
const NULL_STRINGS: &str = r#"
    (data (i32.const 64) "s")
    (func (export "run") (param $p i32) (param $len i32) (result i32)
      (local $rows i32)
      (local.set $rows (call $parse (local.get $p) (local.get $len)))
      (call $column (i32.const 512) (i32.const 64) (i32.const 1) (i32.const 2)
        (call $alloc (i32.mul (local.get $rows) (i32.const 12)) (i32.const 4))
        (local.get $rows))
      (call $ok (i32.const 512) (i32.const 1)))
"#;

#[test]
fn output_over_the_cell_limit_is_refused_in_cells() {
    let host = host();
    let bytes = guest(I64_ROWS);
    let cells = |l: &mut RunLimits| l.max_output_cells = 1000;
    let out = run_with(&host, &bytes, "1000", cells).expect("at the limit");
    assert_eq!(out.batches[0].num_rows(), 1000);
    let err = expect_err(run_with(&host, &bytes, "1001", cells));
    assert!(
        matches!(
            err,
            SandboxError::OutputTooLarge {
                limit: 1000,
                unit: "cells"
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "output_too_large");
    assert_still_usable(&host);
}

#[test]
fn output_over_the_byte_limit_is_refused_in_bytes() {
    let host = host();
    let bytes = guest(I64_ROWS);
    // 8 bytes per number plus 1 for the name `n`.
    let max = |l: &mut RunLimits| l.max_output_bytes = 8 * 125 + 1;
    run_with(&host, &bytes, "125", max).expect("at the limit");
    let err = expect_err(run_with(&host, &bytes, "126", max));
    assert!(
        matches!(
            err,
            SandboxError::OutputTooLarge {
                limit: 1001,
                unit: "bytes"
            }
        ),
        "{err:?}"
    );
    assert_still_usable(&host);
}

#[test]
fn output_too_large_to_copy_out_is_stopped_while_copying() {
    let host = host();
    // 100 000 numbers are 1.6 MB to lift, far over the hostcall fuel that a
    // 1000-byte limit buys: wasmtime stops copying, the host reports bytes.
    let err = expect_err(run_with(&host, &guest(I64_ROWS), "100000", |l| {
        l.max_output_bytes = 1000
    }));
    assert!(
        matches!(
            err,
            SandboxError::OutputTooLarge {
                limit: 1000,
                unit: "bytes"
            }
        ),
        "{err:?}"
    );
    assert_still_usable(&host);
}

#[test]
fn null_strings_at_the_byte_limit_are_accepted() {
    let host = host();
    // A null string counts 4 bytes but costs wasmtime 24 bytes of hostcall
    // fuel to lift (size of Option<String>): with fuel of 4 × the limit this
    // table, within the limit, was refused.
    let rows: u64 = 1 << 20;
    let max = |l: &mut RunLimits| l.max_output_bytes = 4 * rows + 1;
    let out = run_with(&host, &guest(NULL_STRINGS), &rows.to_string(), max)
        .expect("exactly at the byte limit");
    assert_eq!(out.batches[0].num_rows() as u64, rows);
    let err = expect_err(run_with(
        &host,
        &guest(NULL_STRINGS),
        &(rows + 1).to_string(),
        max,
    ));
    assert!(
        matches!(err, SandboxError::OutputTooLarge { unit: "bytes", .. }),
        "{err:?}"
    );
}

#[test]
fn bogus_list_length_is_an_abi_trap() {
    let host = host();
    // 2^28 numbers at 16 bytes each: 4 GiB, past the end of memory.
    let bytes = guest(
        r#"(data (i32.const 64) "n")
           (func (export "run") (param i32 i32) (result i32)
             (call $column (i32.const 512) (i32.const 64) (i32.const 1) (i32.const 1)
               (i32.const 0) (i32.const 0x10000000))
             (call $ok (i32.const 512) (i32.const 1)))"#,
    );
    let err = expect_err(run(&host, &bytes, ""));
    assert!(
        matches!(&err, SandboxError::Trap { kind } if kind == "abi"),
        "{err:?}"
    );
    assert_eq!(err.code(), "trap");
    assert_still_usable(&host);
}

#[test]
fn bogus_column_list_pointer_is_an_abi_trap() {
    let host = host();
    let bytes = guest(
        r#"(func (export "run") (param i32 i32) (result i32)
             (call $ok (i32.const 0xfffffff0) (i32.const 1)))"#,
    );
    let err = expect_err(run(&host, &bytes, ""));
    assert!(
        matches!(&err, SandboxError::Trap { kind } if kind == "abi"),
        "{err:?}"
    );
    assert_still_usable(&host);
}

#[test]
fn invalid_utf8_and_bad_tags_are_abi_traps() {
    let host = host();
    let bad_name = guest(
        r#"(data (i32.const 64) "\ff\fe")
           (func (export "run") (param i32 i32) (result i32)
             (call $column (i32.const 512) (i32.const 64) (i32.const 2) (i32.const 1)
               (i32.const 1024) (i32.const 0))
             (call $ok (i32.const 512) (i32.const 1)))"#,
    );
    let bad_result_tag = guest(
        r#"(func (export "run") (param i32 i32) (result i32)
             (i32.store8 (i32.const 16) (i32.const 7))
             (i32.const 16))"#,
    );
    let bad_column_tag = guest(
        r#"(data (i32.const 64) "c")
           (func (export "run") (param i32 i32) (result i32)
             (call $column (i32.const 512) (i32.const 64) (i32.const 1) (i32.const 9)
               (i32.const 1024) (i32.const 0))
             (call $ok (i32.const 512) (i32.const 1)))"#,
    );
    for bytes in [bad_name, bad_result_tag, bad_column_tag] {
        let err = expect_err(run(&host, &bytes, ""));
        assert!(
            matches!(&err, SandboxError::Trap { kind } if kind == "abi"),
            "{err:?}"
        );
    }
    assert_still_usable(&host);
}

#[test]
fn uneven_columns_are_invalid_output() {
    let host = host();
    let bytes = guest(
        r#"(data (i32.const 64) "ab")
           (func (export "run") (param i32 i32) (result i32)
             (call $column (i32.const 512) (i32.const 64) (i32.const 1) (i32.const 1)
               (i32.const 1024) (i32.const 2))
             (call $column (i32.const 532) (i32.const 65) (i32.const 1) (i32.const 1)
               (i32.const 1024) (i32.const 1))
             (call $ok (i32.const 512) (i32.const 2)))"#,
    );
    let err = expect_err(run(&host, &bytes, ""));
    assert!(matches!(err, SandboxError::InvalidOutput { .. }), "{err:?}");
    assert_still_usable(&host);
}

// ---------------------------------------------------------------------------
// Echo: allowed here, caught by the enclave

#[test]
fn echoing_the_input_runs_here_the_enclave_catches_it() {
    // The sandbox does not judge what a model returns: a model that hands
    // back its input rows (identifiers included) succeeds here. Echo
    // detection is the enclave's disclosure check on the result.
    // In both versions the input's table type is the result's: the guest
    // returns the batch it was handed, as it lies in its memory.
    let host = host();
    for v0_2 in [false, true] {
        let bytes = component(
            Imports {
                v0_2,
                input: true,
                log: true,
                ..Imports::default()
            },
            r#"(func (export "run") (param $p i32) (param $len i32) (result i32)
                 (call $log_write (local.get $p) (local.get $len))
                 (call $next_batch (i32.const 256))
                 (if (i32.eqz (i32.load8_u (i32.const 256)))
                   (then (return (call $err (i32.const 0) (i32.const 0)))))
                 (call $ok (i32.load (i32.const 260)) (i32.load (i32.const 264))))"#,
        );
        echo(&host, &bytes);
    }
    assert_still_usable(&host);
}

fn echo(host: &ModelHost, bytes: &[u8]) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id_number", DataType::Utf8, true),
        Field::new("age", DataType::Int64, true),
        Field::new("income", DataType::Float64, true),
        Field::new("insured", DataType::Boolean, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![
                Some("440306199001011234"),
                None,
                Some("张三"),
            ])),
            Arc::new(Int64Array::from(vec![Some(34), Some(-1), None])),
            Arc::new(Float64Array::from(vec![None, Some(1.5), Some(-0.0)])),
            Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
        ],
    )
    .unwrap();
    let info = host.intake(bytes).unwrap();
    let budget = Arc::new(FixedBudget::new(BUDGET));
    let input = BatchesInput::new(schema, vec![batch.clone()]);
    let out = host
        .run(&info.sha256, Box::new(input), "k=3", limits(&budget))
        .expect("an echo runs");
    assert_eq!(budget.used(), 0);
    assert_eq!(out.batches, vec![batch], "{}", info.contract);
    assert_eq!(out.input_rows, 3);
    assert_eq!(out.log, "k=3\n");
}

// ---------------------------------------------------------------------------
// Intake refusals

#[test]
fn forbidden_imports_are_refused_by_name() {
    let host = host();
    let cases = [
        (
            r#"(component (import "wasi:http/outgoing-handler@0.2.0" (instance)))"#,
            "wasi:http/outgoing-handler@0.2.0",
        ),
        (
            r#"(component (import "anyu:model/secret@0.1.0" (instance)))"#,
            "anyu:model/secret@0.1.0",
        ),
        // A version of anyu:model this host does not list is not its world.
        (
            r#"(component (import "anyu:model/input@0.3.0" (instance)))"#,
            "anyu:model/input@0.3.0",
        ),
        (
            r#"(component (import "anyu:model/types@1.0.0" (instance)))"#,
            "anyu:model/types@1.0.0",
        ),
        (
            r#"(component (import "anyu:model/log@0.2.1" (instance)))"#,
            "anyu:model/log@0.2.1",
        ),
        (
            r#"(component (import "wasi:io/streams@0.3.0" (instance)))"#,
            "wasi:io/streams@0.3.0",
        ),
        (r#"(component (import "steal-data" (func)))"#, "steal-data"),
    ];
    for (text, name) in cases {
        let err = intake_err(&host, &wat::parse_str(text).unwrap());
        assert!(
            matches!(&err, SandboxError::ForbiddenImport { name: n } if n == name),
            "{name}: {err:?}"
        );
        assert_eq!(err.code(), "forbidden_import");
    }
    // Forbidden even alongside a valid `run`.
    let mut text = component_wat(Imports::default(), GOOD);
    text = text.replacen(
        "(alias export $types",
        r#"(import "wasi:http/outgoing-handler@0.2.0" (instance))
           (alias export $types"#,
        1,
    );
    let err = intake_err(&host, &wat::parse_str(&text).unwrap());
    assert!(
        matches!(&err, SandboxError::ForbiddenImport { name } if name == "wasi:http/outgoing-handler@0.2.0"),
        "{err:?}"
    );
    assert_still_usable(&host);
}

#[test]
fn wasi_imports_are_forbidden_when_wasi_is_off() {
    let host = ModelHost::new(HostConfig {
        wasi: false,
        ..config()
    })
    .unwrap();
    let bytes = component(
        Imports {
            random: true,
            ..Imports::default()
        },
        GOOD,
    );
    let err = intake_err(&host, &bytes);
    assert!(
        matches!(&err, SandboxError::ForbiddenImport { name } if name == "wasi:random/random@0.2.0"),
        "{err:?}"
    );
    assert_still_usable(&host);
}

#[test]
fn malformed_bytes_are_refused() {
    let host = host();
    let good = guest(GOOD);
    // Deterministic junk (xorshift).
    let mut x: u32 = 0x1234_5678;
    let junk: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let mut header_then_junk = good[..8].to_vec();
    header_then_junk.extend_from_slice(&junk);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("random bytes", junk),
        ("magic only", b"\0asm".to_vec()),
        ("component header, junk body", header_then_junk),
        ("truncated component", good[..good.len() / 2].to_vec()),
        ("last byte cut", good[..good.len() - 1].to_vec()),
        ("unknown layer", b"\0asm\x0d\0\x02\0".to_vec()),
    ];
    for (what, bytes) in cases {
        let err = intake_err(&host, &bytes);
        assert!(matches!(err, SandboxError::Malformed), "{what}: {err:?}");
        assert_eq!(err.code(), "malformed");
    }
    assert_still_usable(&host);
}

#[test]
fn core_module_is_not_a_component() {
    let host = host();
    let module = wat::parse_str(
        r#"(module (func (export "run") (param i32 i32) (result i32) (i32.const 0)))"#,
    )
    .unwrap();
    let err = intake_err(&host, &module);
    assert!(matches!(err, SandboxError::NotAComponent), "{err:?}");
    assert_eq!(err.code(), "not_a_component");
}

#[test]
fn components_outside_the_world_are_wrong_world() {
    let host = host();
    let no_run = wat::parse_str("(component)").unwrap();
    let run_is_an_instance =
        wat::parse_str(r#"(component (instance $i) (export "run" (instance $i)))"#).unwrap();
    let run_of_wrong_type = wat::parse_str(
        r#"(component
             (core module $m (func (export "run") (result i32) (i32.const 0)))
             (core instance $i (instantiate $m))
             (func (export "run") (result u32) (canon lift (core func $i "run"))))"#,
    )
    .unwrap();
    // `run` takes the right shape of table but its column record has a
    // field misnamed: structural names are part of the type.
    let misnamed_field = component_wat(Imports::default(), GOOD).replacen(
        r#"(field "data" $cd-e)"#,
        r#"(field "values" $cd-e)"#,
        1,
    );
    let misnamed_field = wat::parse_str(&misnamed_field).unwrap();
    // An allowed interface imported with the wrong signature.
    let log = Imports {
        log: true,
        ..Imports::default()
    };
    let mistyped_log = component_wat(log, GOOD)
        .replacen(r#"(param "line" string)"#, r#"(param "line" u32)"#, 1)
        .replacen("$log_write (param i32 i32)", "$log_write (param i32)", 1);
    let mistyped_log = wat::parse_str(&mistyped_log).unwrap();
    for (what, bytes, reason) in [
        ("no run", no_run, "no export `run`"),
        (
            "run is an instance",
            run_is_an_instance,
            "is not a function",
        ),
        (
            "run of the wrong type",
            run_of_wrong_type,
            "export func `run`",
        ),
        ("misnamed record field", misnamed_field, "export func `run`"),
        ("mistyped log import", mistyped_log, "anyu:model/log@0.1.0"),
    ] {
        let err = intake_err(&host, &bytes);
        assert!(
            matches!(&err, SandboxError::WrongWorld { reason: r } if r.contains(reason)),
            "{what}: {err:?}"
        );
        assert_eq!(err.code(), "wrong_world");
    }
    assert_still_usable(&host);
}

#[test]
fn oversized_component_is_refused_before_parsing() {
    let host = ModelHost::new(HostConfig {
        max_component_bytes: 512,
        ..config()
    })
    .unwrap();
    let good = guest(GOOD);
    assert!(good.len() > 512);
    let err = intake_err(&host, &good);
    assert!(
        matches!(err, SandboxError::ComponentTooLarge { size, limit: 512 } if size == good.len()),
        "{err:?}"
    );
    assert_eq!(err.code(), "component_too_large");
    // Junk over the limit is refused for its size, not parsed.
    let err = intake_err(&host, &vec![0xAB; 513]);
    assert!(
        matches!(err, SandboxError::ComponentTooLarge { .. }),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------
// Traps and the guest's own errors

#[test]
fn unreachable_is_a_trap_of_that_kind() {
    let host = host();
    let bytes = guest(r#"(func (export "run") (param i32 i32) (result i32) unreachable)"#);
    let err = expect_err(run(&host, &bytes, ""));
    assert!(
        matches!(&err, SandboxError::Trap { kind } if kind == "unreachable_code_reached"),
        "{err:?}"
    );
    assert_eq!(err.code(), "trap");
    assert_still_usable(&host);
}

#[test]
fn out_of_bounds_load_is_a_trap_of_that_kind() {
    let host = host();
    let bytes = guest(
        r#"(func (export "run") (param i32 i32) (result i32)
             (i32.load (i32.const 0x7ffffff0)))"#,
    );
    let err = expect_err(run(&host, &bytes, ""));
    assert!(
        matches!(&err, SandboxError::Trap { kind } if kind == "memory_out_of_bounds"),
        "{err:?}"
    );
    assert_still_usable(&host);
}

#[test]
fn guest_error_is_a_model_error_that_does_not_display_its_message() {
    let host = host();
    let message = "patient 440306199001011234 has 张三's diagnosis";
    let body = format!(
        r#"(data (i32.const 64) "{message}")
           (func (export "run") (param i32 i32) (result i32)
             (call $err (i32.const 64) (i32.const {len})))"#,
        len = message.len()
    );
    let err = expect_err(run(&host, &guest(&body), ""));
    assert!(
        matches!(&err, SandboxError::ModelError(m) if m == message),
        "{err:?}"
    );
    assert_eq!(err.code(), "model_error");
    assert_eq!(err.guest_message(), Some(message));
    let shown = err.to_string();
    assert!(!shown.contains("440306199001011234"), "{shown}");
    assert!(!shown.contains("张三"), "{shown}");
    assert_still_usable(&host);
}

// ---------------------------------------------------------------------------
// WASI: denied or deterministic

#[test]
fn wasi_random_is_the_same_in_every_run() {
    let host = host();
    let bytes = component(
        Imports {
            random: true,
            ..Imports::default()
        },
        r#"(data (i32.const 64) "r")
           (func (export "run") (param i32 i32) (result i32)
             (i32.store8 (i32.const 1024) (i32.const 1))
             (i64.store (i32.const 1032) (call $random_u64))
             (i32.store8 (i32.const 1040) (i32.const 1))
             (i64.store (i32.const 1048) (call $random_u64))
             (call $column (i32.const 512) (i32.const 64) (i32.const 1) (i32.const 1)
               (i32.const 1024) (i32.const 2))
             (call $ok (i32.const 512) (i32.const 1)))"#,
    );
    let first = i64s(&run(&host, &bytes, "").unwrap().batches[0], "r");
    let second = i64s(&run(&host, &bytes, "").unwrap().batches[0], "r");
    assert_eq!(first, second, "randomness differs between runs");
    // A sequence, not a constant.
    assert_ne!(first[0], first[1]);
    assert_still_usable(&host);
}

#[test]
fn wasi_filesystem_has_no_preopened_directories() {
    let host = host();
    let bytes = component(
        Imports {
            preopens: true,
            ..Imports::default()
        },
        r#"(data (i32.const 64) "dirs")
           (func (export "run") (param i32 i32) (result i32)
             (i32.store (i32.const 260) (i32.const -1))
             (call $get_directories (i32.const 256))
             (i32.store8 (i32.const 1024) (i32.const 1))
             (i64.store (i32.const 1032) (i64.extend_i32_u (i32.load (i32.const 260))))
             (call $column (i32.const 512) (i32.const 64) (i32.const 4) (i32.const 1)
               (i32.const 1024) (i32.const 1))
             (call $ok (i32.const 512) (i32.const 1)))"#,
    );
    let out = run(&host, &bytes, "").unwrap();
    assert_eq!(i64s(&out.batches[0], "dirs"), vec![Some(0)]);
    assert_still_usable(&host);
}

// ---------------------------------------------------------------------------
// Isolation between runs

/// Reads what a previous run could have left (a marker at 32, a marker in
/// the first grown page, a global), writes its own params byte, spins while
/// checking nobody else changes it, and reports all of it.
const MARKER: &str = r#"
    (global $g (mut i32) (i32.const 0))
    (data (i32.const 64) "before_mem")
    (data (i32.const 80) "before_grown")
    (data (i32.const 96) "before_global")
    (data (i32.const 112) "after")
    (func (export "run") (param $p i32) (param $len i32) (result i32)
      (local $mine i32) (local $i i32) (local $page i32)
      (local.set $mine (i32.load8_u (local.get $p)))
      (i32.store8 (i32.const 1024) (i32.const 1))
      (i64.store (i32.const 1032) (i64.extend_i32_u (i32.load (i32.const 32))))
      (local.set $page (i32.shl (memory.grow (i32.const 1)) (i32.const 16)))
      (i32.store8 (i32.const 1040) (i32.const 1))
      (i64.store (i32.const 1048) (i64.extend_i32_u (i32.load (local.get $page))))
      (i32.store8 (i32.const 1056) (i32.const 1))
      (i64.store (i32.const 1064) (i64.extend_i32_u (global.get $g)))
      (i32.store (i32.const 32) (local.get $mine))
      (i32.store (local.get $page) (local.get $mine))
      (global.set $g (local.get $mine))
      (loop $spin
        (if (i32.ne (i32.load (i32.const 32)) (local.get $mine)) (then unreachable))
        (if (i32.ne (global.get $g) (local.get $mine)) (then unreachable))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $spin (i32.lt_u (local.get $i) (i32.const 1000000))))
      (i32.store8 (i32.const 1072) (i32.const 1))
      (i64.store (i32.const 1080) (i64.extend_i32_u (i32.add
        (i32.add (i32.load (i32.const 32)) (i32.load (local.get $page)))
        (global.get $g))))
      (call $column (i32.const 512) (i32.const 64) (i32.const 10) (i32.const 1)
        (i32.const 1024) (i32.const 1))
      (call $column (i32.const 532) (i32.const 80) (i32.const 12) (i32.const 1)
        (i32.const 1040) (i32.const 1))
      (call $column (i32.const 552) (i32.const 96) (i32.const 13) (i32.const 1)
        (i32.const 1056) (i32.const 1))
      (call $column (i32.const 572) (i32.const 112) (i32.const 5) (i32.const 1)
        (i32.const 1072) (i32.const 1))
      (call $ok (i32.const 512) (i32.const 4)))
"#;

/// Asserts a MARKER run saw fresh state and only its own marker.
fn assert_fresh(out: &ModelOutput, params: &str) {
    let b = &out.batches[0];
    let mine = i64::from(params.as_bytes()[0]);
    assert_eq!(
        i64s(b, "before_mem"),
        vec![Some(0)],
        "{params}: leftover memory"
    );
    assert_eq!(
        i64s(b, "before_grown"),
        vec![Some(0)],
        "{params}: leftover page"
    );
    assert_eq!(
        i64s(b, "before_global"),
        vec![Some(0)],
        "{params}: leftover global"
    );
    assert_eq!(
        i64s(b, "after"),
        vec![Some(3 * mine)],
        "{params}: foreign marker"
    );
}

#[test]
fn a_second_run_sees_fresh_memory_and_globals() {
    let host = host();
    let bytes = guest(MARKER);
    for params in ["A", "B", "A"] {
        assert_fresh(&run(&host, &bytes, params).unwrap(), params);
    }
}

#[test]
fn concurrent_runs_cannot_observe_each_other() {
    let host = host();
    let info = host.intake(&guest(MARKER)).unwrap();
    std::thread::scope(|s| {
        for params in ["A", "B"] {
            let (host, sha) = (&host, &info.sha256);
            s.spawn(move || {
                for _ in 0..25 {
                    let budget = Arc::new(FixedBudget::new(BUDGET));
                    let out = host
                        .run(sha, no_input(), params, limits(&budget))
                        .unwrap_or_else(|e| panic!("{params}: {e:?}"));
                    assert_eq!(budget.used(), 0);
                    assert_fresh(&out, params);
                }
            });
        }
    });
    assert_still_usable(&host);
}

// ---------------------------------------------------------------------------
// Unknown models

#[test]
fn unknown_model_hash_is_unknown_model() {
    let dir = tempfile::tempdir().unwrap();
    let host = ModelHost::new(HostConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..config()
    })
    .unwrap();
    let known = host.intake(&guest(GOOD)).unwrap().sha256;
    let budget = Arc::new(FixedBudget::new(BUDGET));
    for sha in [
        "0".repeat(64),
        known.to_uppercase(),
        known[..63].to_string(),
        String::new(),
        // Never a path into (or out of) the cache directory.
        "../../../etc/passwd".to_string(),
        format!("{known}-x"),
    ] {
        let err = host
            .run(&sha, no_input(), "", limits(&budget))
            .expect_err("unknown model");
        assert!(matches!(err, SandboxError::UnknownModel), "{sha}: {err:?}");
        assert_eq!(err.code(), "unknown_model");
    }
    assert_eq!(budget.used(), 0);
    assert_still_usable(&host);
}

// ---------------------------------------------------------------------------
// Contract versions: which one a component gets, and 0.2.0's own columns

fn contract_of(host: &ModelHost, bytes: &[u8]) -> Contract {
    host.intake(bytes).expect("intake").contract
}

/// A component with no `anyu:model` import: its `run` names types it
/// exports itself (`own_types`, the definitions of one version).
fn without_imports(own_types: &str, body: &str) -> Vec<u8> {
    let text = component_wat(Imports::default(), body).replacen(
        &format!(
            r#"(import "anyu:model/types@0.1.0" (instance $types {TYPE_DEFS}))
  (alias export $types "table" (type $table))"#
        ),
        own_types,
        1,
    );
    assert!(!text.contains("anyu:model/"), "{text}");
    wat::parse_str(&text).unwrap_or_else(|e| panic!("guest WAT does not parse: {e}\n{text}"))
}

#[test]
fn the_contract_is_the_version_imported_else_the_run_that_fits() {
    let host = host();
    assert_eq!(contract_of(&host, &guest(GOOD)), Contract::V0_1);
    assert_eq!(contract_of(&host, &guest_0_2(GOOD_0_2)), Contract::V0_2);
    let out = run(&host, &guest_0_2(GOOD_0_2), "").unwrap();
    assert_eq!(i64s(&out.batches[0], "ok"), vec![Some(42)]);

    let own_0_1 = r#"
      (type $cd (variant
        (case "f64" (list (option f64)))
        (case "i64" (list (option s64)))
        (case "str" (list (option string)))
        (case "boolean" (list (option bool)))))
      (export $cd-e "column-data" (type $cd))
      (type $col (record (field "name" string) (field "data" $cd-e)))
      (export $col-e "column" (type $col))
      (type $t (record (field "columns" (list $col-e))))
      (export $table "table" (type $t))"#;
    let own_0_2 = r#"
      (type $strs (record (field "offsets" (list u32)) (field "bytes" (list u8))))
      (export $strs-e "strings" (type $strs))
      (type $cd (variant
        (case "f64" (list f64))
        (case "i64" (list s64))
        (case "str" $strs-e)
        (case "boolean" (list bool))))
      (export $cd-e "column-data" (type $cd))
      (type $col (record (field "name" string) (field "data" $cd-e)
        (field "validity" (option (list u8)))))
      (export $col-e "column" (type $col))
      (type $t (record (field "columns" (list $col-e))))
      (export $table "table" (type $t))"#;
    for (own, good, contract) in [
        (own_0_1, GOOD, Contract::V0_1),
        (own_0_2, GOOD_0_2, Contract::V0_2),
    ] {
        let bytes = without_imports(own, good);
        let info = host.intake(&bytes).unwrap();
        assert_eq!(info.contract, contract);
        assert!(info.imports.is_empty(), "{:?}", info.imports);
        let out = run(&host, &bytes, "").unwrap();
        assert_eq!(i64s(&out.batches[0], "ok"), vec![Some(42)], "{contract}");
    }
    assert_still_usable(&host);
}

#[test]
fn versions_do_not_mix() {
    let host = host();
    // Types of 0.2.0, the log of 0.1.0.
    let mixed = component_wat(
        Imports {
            v0_2: true,
            log: true,
            ..Imports::default()
        },
        GOOD_0_2,
    )
    .replacen("anyu:model/log@0.2.0", "anyu:model/log@0.1.0", 1);
    // Imports of 0.1.0, a `run` returning 0.2.0's table.
    let run_of_the_other_version = component_wat(Imports::default(), GOOD).replacen(
        &format!(r#"(instance $types {TYPE_DEFS})"#),
        &format!(r#"(instance $types {TYPE_DEFS_0_2})"#),
        1,
    );
    for (what, text, reason) in [
        (
            "mixed imports",
            mixed,
            "imports from both anyu:model@0.2.0 and anyu:model@0.1.0",
        ),
        ("run of the other version", run_of_the_other_version, ""),
    ] {
        let err = intake_err(&host, &wat::parse_str(&text).unwrap());
        assert!(
            matches!(&err, SandboxError::WrongWorld { reason: r } if r.contains(reason)),
            "{what}: {err:?}"
        );
    }
    assert_still_usable(&host);
}

#[test]
fn v0_2_nothing_hides_behind_a_null_or_past_the_last_row() {
    let host = host();
    // n = [1, <secret behind a null>, 3], its bitmap's unused bits all set;
    // s = ["a", <"secret" behind a null>, "c"].
    let bytes = guest_0_2(
        r#"(data (i32.const 64) "ns")
           (data (i32.const 1100) "asecretc")
           (func (export "run") (param i32 i32) (result i32)
             (i64.store (i32.const 1024) (i64.const 1))
             (i64.store (i32.const 1032) (i64.const 4403061990))
             (i64.store (i32.const 1040) (i64.const 3))
             (i32.store8 (i32.const 1090) (i32.const 0xfd))
             (i32.store (i32.const 1200) (i32.const 0))
             (i32.store (i32.const 1204) (i32.const 1))
             (i32.store (i32.const 1208) (i32.const 7))
             (i32.store (i32.const 1212) (i32.const 8))
             (call $column (i32.const 512) (i32.const 64) (i32.const 1) (i32.const 1)
               (i32.const 1024) (i32.const 3))
             (call $validity (i32.const 512) (i32.const 1090) (i32.const 1))
             (call $column (i32.const 552) (i32.const 65) (i32.const 1) (i32.const 2)
               (i32.const 1200) (i32.const 4))
             (call $str_bytes (i32.const 552) (i32.const 1100) (i32.const 8))
             (call $validity (i32.const 552) (i32.const 1090) (i32.const 1))
             (call $ok (i32.const 512) (i32.const 2)))"#,
    );
    let out = run(&host, &bytes, "").unwrap();
    let b = &out.batches[0];
    assert_eq!(i64s(b, "n"), vec![Some(1), None, Some(3)]);
    let n = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!(n.values().to_vec(), vec![1, 0, 3]);
    assert_eq!(n.nulls().unwrap().buffer().as_slice(), [0b101]);
    let s = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!(
        s.iter().collect::<Vec<_>>(),
        vec![Some("a"), None, Some("c")]
    );
    assert_eq!(s.value_data(), b"ac");
    assert_still_usable(&host);
}

#[test]
fn v0_2_malformed_columns_are_invalid_output() {
    let host = host();
    // One column `v` of `len` values at 1024 (kind 1 = i64, 2 = str), with
    // `extra` run before $ok.
    let column = |kind: u32, len: u32, extra: &str| {
        guest_0_2(&format!(
            r#"(data (i32.const 64) "v")
               (data (i32.const 1100) "ab\ff")
               (func (export "run") (param i32 i32) (result i32)
                 (call $column (i32.const 512) (i32.const 64) (i32.const 1)
                   (i32.const {kind}) (i32.const 1024) (i32.const {len}))
                 {extra}
                 (call $ok (i32.const 512) (i32.const 1)))"#
        ))
    };
    let offsets = |o: [u32; 3], bytes: u32| {
        format!(
            r#"(i32.store (i32.const 1024) (i32.const {}))
               (i32.store (i32.const 1028) (i32.const {}))
               (i32.store (i32.const 1032) (i32.const {}))
               (call $str_bytes (i32.const 512) (i32.const 1100) (i32.const {bytes}))"#,
            o[0], o[1], o[2]
        )
    };
    let cases = [
        // Nine rows need a bitmap of two bytes.
        (
            "short bitmap",
            column(
                1,
                9,
                "(call $validity (i32.const 512) (i32.const 2048) (i32.const 1))",
            ),
            "validity bitmap of 1 bytes for 9 rows",
        ),
        (
            "long bitmap",
            column(
                1,
                8,
                "(call $validity (i32.const 512) (i32.const 2048) (i32.const 2))",
            ),
            "validity bitmap of 2 bytes for 8 rows",
        ),
        (
            "offsets past the bytes",
            column(2, 3, &offsets([0, 1, 3], 2)),
            "offsets",
        ),
        (
            "offsets going back",
            column(2, 3, &offsets([0, 2, 1], 1)),
            "offsets",
        ),
        (
            "offsets not from 0",
            column(2, 3, &offsets([1, 1, 2], 2)),
            "offsets",
        ),
        (
            "invalid UTF-8",
            column(2, 3, &offsets([0, 2, 3], 3)),
            "UTF-8",
        ),
    ];
    for (what, bytes, reason) in cases {
        let err = expect_err(run(&host, &bytes, ""));
        assert!(
            matches!(&err, SandboxError::InvalidOutput { reason: r } if r.contains(reason)),
            "{what}: {err:?}"
        );
    }
    assert_still_usable(&host);
}

#[test]
fn v0_2_output_limits_and_bogus_lengths() {
    let host = host();
    // One column `n` of `params` (decimal) i64s, plain 8-byte values.
    let rows = guest_0_2(
        r#"(data (i32.const 64) "n")
           (func (export "run") (param $p i32) (param $len i32) (result i32)
             (local $rows i32)
             (local.set $rows (call $parse (local.get $p) (local.get $len)))
             (call $column (i32.const 512) (i32.const 64) (i32.const 1) (i32.const 1)
               (call $alloc (i32.mul (local.get $rows) (i32.const 8)) (i32.const 8))
               (local.get $rows))
             (call $ok (i32.const 512) (i32.const 1)))"#,
    );
    // Counted as in 0.1.0: 8 bytes per number plus the name.
    let max = |l: &mut RunLimits| l.max_output_bytes = 8 * 125 + 1;
    run_with(&host, &rows, "125", max).expect("at the limit");
    let err = expect_err(run_with(&host, &rows, "126", max));
    assert!(
        matches!(err, SandboxError::OutputTooLarge { unit: "bytes", .. }),
        "{err:?}"
    );
    let cells = |l: &mut RunLimits| l.max_output_cells = 1000;
    let err = expect_err(run_with(&host, &rows, "1001", cells));
    assert!(
        matches!(err, SandboxError::OutputTooLarge { unit: "cells", .. }),
        "{err:?}"
    );
    // Stopped while copying out: far over the fuel a 1000-byte limit buys.
    let err = expect_err(run_with(&host, &rows, "1000000", |l| {
        l.max_output_bytes = 1000
    }));
    assert!(
        matches!(err, SandboxError::OutputTooLarge { unit: "bytes", .. }),
        "{err:?}"
    );
    // 2^28 numbers (2 GiB) or a bitmap past the end of memory: ABI traps.
    let past_the_end = [
        r#"(call $column (i32.const 512) (i32.const 64) (i32.const 1) (i32.const 0)
             (i32.const 0) (i32.const 0x10000000))"#,
        r#"(call $column (i32.const 512) (i32.const 64) (i32.const 1) (i32.const 0)
             (i32.const 1024) (i32.const 8))
           (call $validity (i32.const 512) (i32.const 0xfffffff0) (i32.const 1))"#,
    ];
    for column in past_the_end {
        let bytes = guest_0_2(&format!(
            r#"(data (i32.const 64) "n")
               (func (export "run") (param i32 i32) (result i32)
                 {column}
                 (call $ok (i32.const 512) (i32.const 1)))"#
        ));
        let err = expect_err(run(&host, &bytes, ""));
        assert!(
            matches!(&err, SandboxError::Trap { kind } if kind == "abi"),
            "{err:?}"
        );
    }
    assert_still_usable(&host);
}
