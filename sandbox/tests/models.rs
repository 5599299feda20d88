//! The example models of `sandbox/models/` (prebuilt C and Python components)
//! against native reference computations of the same statistics.
//!
//! Rebuild the fixtures with `sandbox/models/build.sh`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
mod reference;

use reference::{describe_ref, kmeans_ref, ols_ref, present};
use sandbox::{
    BatchesInput, Contract, FixedBudget, HostConfig, InputSource, ModelHost, ModelOutput,
    RunLimits, SandboxError,
};

fn fixture(name: &str) -> Vec<u8> {
    // At run time: a test binary reused from another checkout keeps its build path.
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or(env!("CARGO_MANIFEST_DIR").into());
    let path = format!("{root}/models/prebuilt/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}; run sandbox/models/build.sh"))
}

fn limits() -> RunLimits {
    let mut l = RunLimits::new(
        Duration::from_secs(600),
        Arc::new(FixedBudget::new(256 << 20)),
    );
    // Smaller than the input batches: the host slices them, models stream.
    l.batch_rows = 700;
    l
}

/// splitmix64: deterministic test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal (sum of uniforms), mean 0, sd 1.
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }
}

/// A wage table: `wage = 800 + 31.5 age + 12.25 hours + noise`, with nulls,
/// a NaN and non-numeric columns the models must pass over.
struct Wages {
    id: Vec<Option<i64>>,
    age: Vec<Option<i64>>,
    hours: Vec<Option<f64>>,
    wage: Vec<Option<f64>>,
    region: Vec<Option<String>>,
    member: Vec<Option<bool>>,
}

fn wages(rows: usize) -> Wages {
    let mut r = Rng(20_240_601);
    let mut w = Wages {
        id: vec![],
        age: vec![],
        hours: vec![],
        wage: vec![],
        region: vec![],
        member: vec![],
    };
    for i in 0..rows {
        let age = 18 + (r.next() % 50) as i64;
        let hours = 20.0 + 30.0 * r.unit();
        let wage = 800.0 + 31.5 * age as f64 + 12.25 * hours + 150.0 * r.normal();
        w.id.push(Some(i as i64));
        w.age.push((i % 97 != 5).then_some(age));
        w.hours.push(match i {
            _ if i % 53 == 7 => None,
            1234 => Some(f64::NAN),
            _ => Some(hours),
        });
        w.wage.push((i % 61 != 3).then_some(wage));
        w.region
            .push((i % 10 != 0).then(|| ["north", "south", "east"][i % 3].to_string()));
        w.member.push(Some(i % 2 == 0));
    }
    w
}

fn wage_input(w: &Wages, batch: usize) -> Box<dyn InputSource> {
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("age", DataType::Int64, true),
        Field::new("region", DataType::Utf8, true),
        Field::new("hours", DataType::Float64, true),
        Field::new("member", DataType::Boolean, true),
        Field::new("wage", DataType::Float64, true),
    ]));
    let mut batches = vec![];
    for start in (0..w.id.len()).step_by(batch) {
        let end = (start + batch).min(w.id.len());
        let cols: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(w.id[start..end].to_vec())),
            Arc::new(Int64Array::from(w.age[start..end].to_vec())),
            Arc::new(StringArray::from(w.region[start..end].to_vec())),
            Arc::new(Float64Array::from(w.hours[start..end].to_vec())),
            Arc::new(BooleanArray::from(w.member[start..end].to_vec())),
            Arc::new(Float64Array::from(w.wage[start..end].to_vec())),
        ];
        batches.push(RecordBatch::try_new(schema.clone(), cols).unwrap());
    }
    Box::new(BatchesInput::new(schema, batches))
}

/// Three separated clusters in (a, b); row i belongs to cluster i % 3, so
/// the first three rows (the models' starting centres) hit all three.
fn clusters(rows: usize) -> (Box<dyn InputSource>, Vec<Vec<f64>>) {
    let centres = [(0.0, 0.0), (10.0, 1.0), (2.0, 12.0)];
    let mut r = Rng(7);
    let (mut a, mut b, mut tag) = (vec![], vec![], vec![]);
    let mut complete = vec![];
    for i in 0..rows {
        let (ca, cb) = centres[i % 3];
        let x = ca + r.normal();
        let y = cb + 1.5 * r.normal();
        let xa = (i % 41 != 40).then_some(x);
        a.push(xa);
        b.push(Some(y));
        tag.push(Some(format!("t{}", i % 7)));
        if let Some(x) = xa {
            complete.push(vec![x, y]);
        }
    }
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("tag", DataType::Utf8, true),
        Field::new("a", DataType::Float64, true),
        Field::new("b", DataType::Float64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(tag)),
            Arc::new(Float64Array::from(a)),
            Arc::new(Float64Array::from(b)),
        ],
    )
    .unwrap();
    (Box::new(BatchesInput::new(schema, vec![batch])), complete)
}

fn close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol * want.abs().max(1.0)
}

#[track_caller]
fn assert_close(what: &str, got: Option<f64>, want: Option<f64>, tol: f64) {
    match (got, want) {
        (Some(g), Some(w)) => assert!(close(g, w, tol), "{what}: got {g}, want {w}"),
        (g, w) => assert_eq!(g, w, "{what}"),
    }
}

fn f64s(out: &ModelOutput, name: &str) -> Vec<Option<f64>> {
    let b = &out.batches[0];
    let col = b
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    let a = col.as_any().downcast_ref::<Float64Array>().expect(name);
    a.iter().collect()
}

fn i64s(out: &ModelOutput, name: &str) -> Vec<i64> {
    let b = &out.batches[0];
    let col = b
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    let a = col.as_any().downcast_ref::<Int64Array>().expect(name);
    assert_eq!(a.null_count(), 0, "{name} has nulls");
    a.values().to_vec()
}

fn strs(out: &ModelOutput, name: &str) -> Vec<String> {
    let b = &out.batches[0];
    let col = b
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    let a = col.as_any().downcast_ref::<StringArray>().expect(name);
    a.iter().map(|s| s.unwrap().to_string()).collect()
}

fn check_describe(out: &ModelOutput, w: &Wages) {
    let as_f64 = |v: &[Option<i64>]| v.iter().map(|x| x.map(|x| x as f64)).collect::<Vec<_>>();
    let want = [
        ("id", describe_ref(&present(&as_f64(&w.id)))),
        ("age", describe_ref(&present(&as_f64(&w.age)))),
        ("hours", describe_ref(&present(&w.hours))),
        ("wage", describe_ref(&present(&w.wage))),
    ];
    let names: Vec<&str> = want.iter().map(|(n, _)| *n).collect();
    assert_eq!(strs(out, "column"), names);
    let (n, mean, sd) = (i64s(out, "n"), f64s(out, "mean"), f64s(out, "sd"));
    let (min, max) = (f64s(out, "min"), f64s(out, "max"));
    for (i, (name, (wn, wmean, wsd, wmin, wmax))) in want.iter().enumerate() {
        assert_eq!(n[i], *wn, "{name} n");
        assert_close(&format!("{name} mean"), mean[i], *wmean, 1e-12);
        assert_close(&format!("{name} sd"), sd[i], *wsd, 1e-10);
        assert_eq!(min[i], *wmin, "{name} min");
        assert_eq!(max[i], *wmax, "{name} max");
    }
}

fn check_ols(out: &ModelOutput, w: &Wages) {
    let age: Vec<Option<f64>> = w.age.iter().map(|x| x.map(|x| x as f64)).collect();
    let want = ols_ref(&w.wage, &[age, w.hours.clone()]);
    assert_eq!(strs(out, "term"), ["intercept", "age", "hours"]);
    assert_eq!(i64s(out, "n"), vec![want.n; 3]);
    assert_eq!(i64s(out, "df_resid"), vec![want.df_resid; 3]);
    let (est, se) = (f64s(out, "estimate"), f64s(out, "std_error"));
    for j in 0..3 {
        assert_close("estimate", est[j], Some(want.estimate[j]), 1e-9);
        assert_close("std_error", se[j], Some(want.std_error[j]), 1e-9);
    }
    // And the model recovered the relation the data was made with.
    assert!((est[1].unwrap() - 31.5).abs() < 1.0, "{est:?}");
    assert!((est[2].unwrap() - 12.25).abs() < 1.0, "{est:?}");
}

fn check_kmeans(out: &ModelOutput, rows: &[Vec<f64>]) {
    let want = kmeans_ref(rows, 3, 50);
    assert_eq!(i64s(out, "cluster"), [1, 2, 3]);
    assert_eq!(i64s(out, "size"), want.size);
    let (a, b) = (f64s(out, "a"), f64s(out, "b"));
    for c in 0..3 {
        assert_close("centre a", a[c], Some(want.centres[c][0]), 1e-12);
        assert_close("centre b", b[c], Some(want.centres[c][1]), 1e-12);
    }
    // Each generating cluster found: sizes within a few rows of a third.
    for s in &want.size {
        assert!((*s - rows.len() as i64 / 3).abs() < 30, "{:?}", want.size);
    }
}

/// A host that refuses WASI: every example imports `anyu:model` only.
fn host_without_wasi() -> ModelHost {
    ModelHost::new(HostConfig {
        wasi: false,
        ..HostConfig::default()
    })
    .unwrap()
}

fn intake(host: &ModelHost, name: &str) -> String {
    let info = host.intake(&fixture(name)).unwrap();
    assert!(!info.uses_wasi, "{name}: {:?}", info.imports);
    // The examples follow the current contract; kept old ones sit in a
    // folder named by their version.
    let want = match name.split_once('/') {
        Some(("0.1.0", _)) => Contract::V0_1,
        _ => Contract::CURRENT,
    };
    assert_eq!(info.contract, want, "{name}");
    let version = format!("@{}", info.contract.version());
    assert!(
        info.imports.iter().all(|i| i.ends_with(&version)),
        "{name}: {:?}",
        info.imports
    );
    info.sha256
}

#[test]
fn c_describe_matches_two_pass_statistics() {
    let host = host_without_wasi();
    let sha = intake(&host, "describe.c.wasm");
    let w = wages(5000);
    let out = host.run(&sha, wage_input(&w, 1500), "", limits()).unwrap();
    check_describe(&out, &w);
    assert_eq!(out.input_rows, 5000);
}

#[test]
fn c_ols_matches_normal_equations_with_direct_residuals() {
    let host = host_without_wasi();
    let sha = intake(&host, "ols.c.wasm");
    let w = wages(5000);
    let params = "y=wage; x=age,hours";
    let out = host
        .run(&sha, wage_input(&w, 1500), params, limits())
        .unwrap();
    check_ols(&out, &w);
    assert!(out.log.starts_with("ols: n="), "{}", out.log);
}

#[test]
fn c_kmeans_matches_lloyd_reference() {
    let host = host_without_wasi();
    let sha = intake(&host, "kmeans.c.wasm");
    let (input, rows) = clusters(3000);
    let out = host
        .run(&sha, input, "k=3;iters=50;cols=a,b", limits())
        .unwrap();
    check_kmeans(&out, &rows);
    assert!(out.log.contains("converged"), "{}", out.log);
}

#[test]
fn c_ols_built_against_0_1_still_runs_and_agrees_bit_for_bit() {
    // prebuilt/0.1.0/ols.c.wasm: the same ols.c, built before anyu:model@0.2.0.
    let host = host_without_wasi();
    let old = intake(&host, "0.1.0/ols.c.wasm");
    let new = intake(&host, "ols.c.wasm");
    let w = wages(5000);
    let params = "y=wage; x=age,hours";
    let run = |sha: &str| {
        host.run(sha, wage_input(&w, 1500), params, limits())
            .unwrap()
    };
    let (o, n) = (run(&old), run(&new));
    check_ols(&o, &w);
    assert_eq!(o.batches, n.batches, "0.1.0 and 0.2.0 ols differ");
    assert_eq!(o.log, n.log);
}

#[test]
fn c_models_refuse_bad_params_with_a_model_error() {
    let host = host_without_wasi();
    let cases = [
        ("describe.c.wasm", "cols=nope"),
        ("describe.c.wasm", "cols=region"),
        ("describe.c.wasm", "colz=age"),
        ("ols.c.wasm", "y=wage"),
        ("ols.c.wasm", "y=wage;x=age,age"),
        ("ols.c.wasm", "y=wage;x=wage"),
        ("ols.c.wasm", "model=kmeans;y=wage;x=age"),
        ("kmeans.c.wasm", "k=0"),
        ("kmeans.c.wasm", "k=3;iters=ten"),
    ];
    for (name, params) in cases {
        let sha = intake(&host, name);
        let w = wages(50);
        match host.run(&sha, wage_input(&w, 50), params, limits()) {
            Err(SandboxError::ModelError(msg)) => assert!(!msg.is_empty()),
            other => panic!("{name} {params}: {other:?}"),
        }
    }
}

#[test]
fn c_ols_refuses_collinear_columns() {
    let host = host_without_wasi();
    let sha = intake(&host, "ols.c.wasm");
    let w = wages(300);
    // A constant x has no variance: the design is singular.
    let schema: SchemaRef = Arc::new(Schema::new(vec![
        Field::new("y", DataType::Float64, true),
        Field::new("c", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Float64Array::from(w.wage.clone())),
            Arc::new(Int64Array::from(vec![Some(4); 300])),
        ],
    )
    .unwrap();
    let input = Box::new(BatchesInput::new(schema, vec![batch]));
    let err = host.run(&sha, input, "y=y;x=c", limits()).unwrap_err();
    assert!(matches!(err, SandboxError::ModelError(_)), "{err:?}");
}

/// Batches made on demand: the host never holds the whole input either.
struct Generated {
    schema: SchemaRef,
    left: usize,
    next: i64,
}

impl InputSource for Generated {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn next_batch(&mut self) -> sandbox::Result<Option<RecordBatch>> {
        if self.left == 0 {
            return Ok(None);
        }
        let n = self.left.min(4096);
        self.left -= n;
        let v: Vec<i64> = (self.next..self.next + n as i64).collect();
        self.next += n as i64;
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(Int64Array::from(v.clone())),
                Arc::new(Float64Array::from_iter_values(
                    v.iter().map(|&x| x as f64 * 0.5),
                )),
            ],
        )
        .unwrap();
        Ok(Some(batch))
    }
}

#[test]
fn c_describe_streams_in_constant_memory() {
    let host = host_without_wasi();
    let sha = intake(&host, "describe.c.wasm");
    let rows = 400_000;
    let input = Generated {
        schema: Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, false),
            Field::new("h", DataType::Float64, false),
        ])),
        left: rows,
        next: 0,
    };
    let out = host.run(&sha, Box::new(input), "", limits()).unwrap();
    assert_eq!(i64s(&out, "n"), [rows as i64, rows as i64]);
    assert_close("mean", f64s(&out, "mean")[0], Some(199_999.5), 1e-12);
    // 400k rows of two columns are 6.4 MB as WIT lists; one batch is 11 KB.
    assert!(out.peak_memory < 1 << 20, "peak {}", out.peak_memory);
}

#[test]
fn python_models_match_native_reference() {
    // Compiling the 18 MB component takes ~18 s (cranelift is optimised even in
    // debug builds, see Cargo.toml); kept between runs, only the first compiles.
    let host = ModelHost::new(HostConfig {
        wasi: false,
        cache_dir: Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sandbox-models")),
        ..HostConfig::default()
    })
    .unwrap();
    let started = Instant::now();
    let sha = intake(&host, "pystats.py.wasm");
    eprintln!("pystats: intake {:?}", started.elapsed());

    let report = |out: &ModelOutput| {
        eprintln!(
            "pystats: run {:?}, peak memory {} KiB",
            out.run_time,
            out.peak_memory >> 10
        )
    };
    let w = wages(3000);
    let out = host
        .run(&sha, wage_input(&w, 1000), "model=describe", limits())
        .unwrap();
    check_describe(&out, &w);
    report(&out);
    let out = host
        .run(
            &sha,
            wage_input(&w, 1000),
            "model=ols;y=wage;x=age,hours",
            limits(),
        )
        .unwrap();
    check_ols(&out, &w);
    report(&out);
    let (input, rows) = clusters(3000);
    let out = host
        .run(&sha, input, "model=kmeans;k=3;iters=50;cols=a,b", limits())
        .unwrap();
    check_kmeans(&out, &rows);
    report(&out);
    let err = host
        .run(&sha, wage_input(&w, 1000), "model=nope", limits())
        .unwrap_err();
    assert!(matches!(err, SandboxError::ModelError(_)), "{err:?}");
    eprintln!("pystats: total {:?}", started.elapsed());
}
