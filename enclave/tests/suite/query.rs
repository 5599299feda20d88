//! The query path below HTTP: sessions over encrypted versions, plan policy,
//! the aggregation-threshold rewrite (and its cheap forms), error sanitising.
//! Results are compared with plain DataFusion over the plaintext files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{Array, Float64Array, Int64Array, StringArray};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::{CsvReadOptions, SessionContext};
use enclave::Error;
use enclave::access::RowFilter;
use enclave::catalog::{GradeScale, Manifest};
use enclave::ingest::{self, ImportOptions};
use enclave::keyring::Keyring;
use enclave::query::{Executed, Guard, PlannedQuery, QuerySession, SessionLimits, TableSpec};

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

struct Fixture {
    dir: tempfile::TempDir,
    keyring: Arc<Keyring>,
    specs: Vec<TableSpec>,
    csv: Vec<(String, PathBuf)>,
}

/// 300 persons with 1–6 claims each, deterministic.
fn claims_csv(path: &Path) {
    let mut out = String::from(
        "claim_id,person_id,hospital,visit_type,icd10_chapter,icd10_chapter_name,claim_date,amount\n",
    );
    let hospitals = ["市人民医院", "市第二人民医院", "南山医院"];
    let mut n = 0;
    for p in 0..300u32 {
        let first17 = format!("44030519800101{:03}", p);
        let id = format!(
            "{first17}{}",
            enclave::ids::resident_id_check_char(&first17).unwrap()
        );
        for k in 0..(1 + p % 6) {
            n += 1;
            let chapter = ["IX", "X", "XI"][((p + k) % 3) as usize];
            let name = match chapter {
                "IX" => "循环系统疾病",
                "X" => "呼吸系统疾病",
                _ => "消化系统疾病",
            };
            out.push_str(&format!(
                "C{n:06},{id},{},{},{chapter},{name},2025-0{}-1{},{}.{:02}\n",
                hospitals[(p % 3) as usize],
                if k % 4 == 0 { "住院" } else { "门诊" },
                1 + k % 9,
                k % 9,
                100 + (p * 37 + k * 11) % 900,
                (p + k) % 100
            ));
        }
    }
    std::fs::write(path, out).unwrap();
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let keyring = Arc::new(Keyring::init(&dir.path().join("keys")).unwrap());
    let grades = GradeScale::default();
    let claims = dir.path().join("medical_claims.csv");
    claims_csv(&claims);
    let mut specs = Vec::new();
    let mut csv = Vec::new();
    for (id, data) in [
        ("pums", repo("datasets/data/PUMS_pid.csv")),
        ("medical_claims", claims.clone()),
    ] {
        let manifest =
            Manifest::from_path(&repo(&format!("datasets/manifests/{id}.toml")), &grades).unwrap();
        let out = ingest::import(
            &keyring,
            &dir.path().join("datasets"),
            &manifest,
            &data,
            &ImportOptions::default(),
        )
        .unwrap();
        let unique = out
            .quality
            .privacy_unit
            .as_ref()
            .is_some_and(|p| p.rows_with_duplicate_unit == 0);
        specs.push(TableSpec {
            dataset_id: id.into(),
            version: out.version,
            version_dir: out.file.dir.clone(),
            version_sha256: out.file.sha256.clone(),
            columns: manifest.columns.iter().map(|c| c.name.clone()).collect(),
            policy: manifest.effective_policy(&grades),
            reviewers_required: 2,
            manifest,
            manifest_revision: 1,
            row_filter: RowFilter::default(),
            consent_dir: None,
            units_unique: unique,
        });
        csv.push((id.to_string(), data));
    }
    Fixture {
        dir,
        keyring,
        specs,
        csv,
    }
}

impl Fixture {
    async fn session(&self) -> QuerySession {
        self.session_with(self.specs.clone(), true).await
    }

    async fn session_with(&self, specs: Vec<TableSpec>, aggregate_only: bool) -> QuerySession {
        QuerySession::open(
            Arc::clone(&self.keyring),
            specs,
            aggregate_only,
            &SessionLimits {
                memory_bytes: 256 * 1024 * 1024,
                target_partitions: 2,
                spill_dir: self.dir.path().join("spill"),
                caches: None,
                tables: None,
            },
        )
        .await
        .unwrap()
    }

    /// Plain DataFusion over the plaintext CSV files (the reference).
    async fn reference(&self, sql: &str) -> Vec<RecordBatch> {
        let ctx = SessionContext::new();
        for (id, path) in &self.csv {
            ctx.register_csv(id, path.to_str().unwrap(), CsvReadOptions::new())
                .await
                .unwrap();
        }
        ctx.sql(sql).await.unwrap().collect().await.unwrap()
    }
}

async fn run(s: &QuerySession, sql: &str) -> (PlannedQuery, Executed) {
    let planned = s.plan(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let guard = Guard::new(std::time::Instant::now() + Duration::from_secs(60));
    let ex = enclave::query::execute(s, &planned, guard)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    (planned, ex)
}

fn refusal(r: Result<PlannedQuery, Error>) -> (&'static str, String) {
    match r {
        Err(Error::Refused { code, message }) => (code, message),
        Err(other) => panic!("expected a refusal, got error {other:?}"),
        Ok(p) => panic!("expected a refusal, got a plan:\n{}", p.summary()),
    }
}

/// The visible columns of a result (hidden `__anyu_` columns dropped), sorted rows as text.
fn visible(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows = Vec::new();
    for b in batches {
        let keep: Vec<usize> = (0..b.num_columns())
            .filter(|i| !b.schema().field(*i).name().starts_with("__anyu_"))
            .collect();
        let b = b.project(&keep).unwrap();
        for r in 0..b.num_rows() {
            let cells: Vec<String> = (0..b.num_columns())
                .map(|c| {
                    let col = b.column(c);
                    if col.is_null(r) {
                        "NULL".into()
                    } else if let Some(f) = col.as_any().downcast_ref::<Float64Array>() {
                        format!("{:.6}", f.value(r))
                    } else {
                        datafusion::arrow::util::display::array_value_to_string(col, r).unwrap()
                    }
                })
                .collect();
            rows.push(cells.join("|"));
        }
    }
    rows.sort();
    rows
}

fn column_i64(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let i = b.schema().index_of(name).unwrap();
            let a = b
                .column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .clone();
            (0..a.len()).map(move |r| a.value(r)).collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn grouped_statistics_equal_the_reference_minus_small_groups() {
    let f = fixture();
    let s = f.session().await;
    for (sql, reference) in [
        (
            "SELECT sex, count(*) AS n, avg(income) AS mean FROM pums GROUP BY sex",
            "SELECT sex, count(*) AS n, avg(income) AS mean FROM pums GROUP BY sex HAVING count(DISTINCT pid) >= 10",
        ),
        (
            "SELECT educ, count(*) AS n FROM pums GROUP BY educ",
            "SELECT educ, count(*) AS n FROM pums GROUP BY educ HAVING count(DISTINCT pid) >= 10",
        ),
        (
            "SELECT race, married, median(income) AS m, stddev(income) AS sd FROM pums GROUP BY race, married",
            "SELECT race, married, median(income) AS m, stddev(income) AS sd FROM pums GROUP BY race, married HAVING count(DISTINCT pid) >= 10",
        ),
        (
            "SELECT CASE WHEN age < 30 THEN 'young' WHEN age < 60 THEN 'middle' ELSE 'old' END AS band, sum(income) AS total FROM pums WHERE income > 0 GROUP BY 1",
            "SELECT CASE WHEN age < 30 THEN 'young' WHEN age < 60 THEN 'middle' ELSE 'old' END AS band, sum(income) AS total FROM pums WHERE income > 0 GROUP BY 1 HAVING count(DISTINCT pid) >= 10",
        ),
        (
            "SELECT count(*) AS n, avg(age) AS a FROM pums",
            "SELECT count(*) AS n, avg(age) AS a FROM pums",
        ),
    ] {
        let (planned, ex) = run(&s, sql).await;
        assert_eq!(
            planned.rewritten.strategies,
            ["rows"],
            "{sql}: pid is unique, rows suffice"
        );
        assert_eq!(
            visible(&ex.batches),
            visible(&f.reference(reference).await),
            "{sql}"
        );
    }
    // Small groups are dropped, and counted.
    let (_, ex) = run(&s, "SELECT age, count(*) FROM pums GROUP BY age").await;
    let all = f.reference("SELECT age FROM pums GROUP BY age").await;
    let groups: usize = all.iter().map(|b| b.num_rows()).sum();
    assert!(ex.dropped_groups > 0, "some ages have under 10 persons");
    assert_eq!(ex.rows() as u64 + ex.dropped_groups, groups as u64);
    assert!(ex.rows_scanned >= 1000);
}

#[tokio::test]
async fn repeated_units_are_counted_per_person_not_per_row() {
    let f = fixture();
    let s = f.session().await;
    // medical_claims: threshold 20 persons; persons have up to 6 claims.
    let sql = "SELECT hospital, icd10_chapter, count(*) AS claims, sum(amount) AS total, avg(amount) AS mean \
               FROM medical_claims GROUP BY hospital, icd10_chapter";
    let (planned, ex) = run(&s, sql).await;
    assert_eq!(planned.rewritten.strategies, ["pre_aggregate"]);
    let reference = f
        .reference(
            "SELECT hospital, icd10_chapter, count(*) AS claims, sum(amount) AS total, avg(amount) AS mean \
             FROM medical_claims GROUP BY hospital, icd10_chapter HAVING count(DISTINCT person_id) >= 20",
        )
        .await;
    assert_eq!(visible(&ex.batches), visible(&reference));
    // The hidden columns carry rows and distinct persons per group.
    let hidden = planned.rewritten.hidden.clone().unwrap();
    let rows = column_i64(&ex.batches, &hidden.rows);
    let units = column_i64(&ex.batches, &hidden.units[0]);
    let claims = column_i64(&ex.batches, "claims");
    assert_eq!(rows, claims);
    assert!(units.iter().zip(&rows).all(|(u, r)| u <= r && *u >= 20));
    assert!(
        units.iter().zip(&rows).any(|(u, r)| u < r),
        "persons repeat"
    );

    // A group of many rows but few persons is dropped, not released.
    let sql = "SELECT visit_type, count(*) AS n FROM medical_claims WHERE person_id IN (SELECT person_id FROM medical_claims WHERE amount > 990) GROUP BY visit_type";
    let planned = s.plan(sql).await.unwrap();
    let _ = planned;

    // Non-decomposable aggregates fall back to COUNT(DISTINCT).
    let (planned, ex) = run(
        &s,
        "SELECT hospital, median(amount) AS m FROM medical_claims GROUP BY hospital",
    )
    .await;
    assert_eq!(planned.rewritten.strategies, ["distinct"]);
    let reference = f
        .reference(
            "SELECT hospital, median(amount) AS m FROM medical_claims GROUP BY hospital HAVING count(DISTINCT person_id) >= 20",
        )
        .await;
    assert_eq!(visible(&ex.batches), visible(&reference));
}

#[tokio::test]
async fn per_person_subtotals_are_thresholded_at_the_next_level() {
    let f = fixture();
    let s = f.session().await;
    let sql = "SELECT hospital, avg(total) AS mean_total, count(*) AS persons FROM \
               (SELECT hospital, person_id, sum(amount) AS total FROM medical_claims GROUP BY hospital, person_id) t \
               GROUP BY hospital";
    let (planned, ex) = run(&s, sql).await;
    assert_eq!(
        planned.rewritten.thresholded, 1,
        "only the outer aggregation"
    );
    let reference = f
        .reference(
            "SELECT hospital, avg(total) AS mean_total, count(*) AS persons FROM \
             (SELECT hospital, person_id, sum(amount) AS total FROM medical_claims GROUP BY hospital, person_id) t \
             GROUP BY hospital HAVING count(DISTINCT person_id) >= 20",
        )
        .await;
    assert_eq!(visible(&ex.batches), visible(&reference));
}

#[tokio::test]
async fn policy_refuses_with_stable_codes() {
    let f = fixture();
    let s = f.session().await;
    for (sql, code) in [
        ("SELECT pid FROM pums", "identifier_in_output"),
        ("SELECT * FROM pums", "identifier_in_output"),
        ("SELECT age, income FROM pums", "row_level_output"),
        ("SELECT max(pid) FROM pums", "identifier_use"),
        ("SELECT count(*) FROM pums WHERE pid = 7", "identifier_use"),
        (
            "SELECT md5(CAST(pid AS VARCHAR)) FROM pums",
            "function_not_allowed",
        ),
        (
            "SELECT string_agg(CAST(income AS VARCHAR), ',') FROM pums",
            "function_not_allowed",
        ),
        ("SELECT count(*) FROM other_table", "table_not_granted"),
        (
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            "statement_not_allowed",
        ),
        (
            "SET datafusion.execution.batch_size = 1",
            "statement_not_allowed",
        ),
        ("EXPLAIN SELECT count(*) FROM pums", "statement_not_allowed"),
        (
            "SELECT age AS __anyu_rows1, count(*) FROM pums GROUP BY age",
            "reserved_name",
        ),
    ] {
        let (got, message) = refusal(s.plan(sql).await);
        assert_eq!(got, code, "{sql}: {message}");
    }
}

/// A cast that fails for some rows gives NULL there (total semantics): the
/// query runs, and nothing shows the value that did not convert.
#[tokio::test]
async fn failing_casts_give_null_not_errors() {
    let f = fixture();
    let s = f.session().await;
    let planned = s
        .plan("SELECT sum(CAST(hospital AS BIGINT)) AS s, count(*) AS n FROM medical_claims")
        .await
        .unwrap();
    let guard = Guard::new(std::time::Instant::now() + Duration::from_secs(60));
    let done = enclave::query::execute(&s, &planned, guard).await.unwrap();
    let text = pretty_format_batches(&done.batches).unwrap().to_string();
    let b = &done.batches[0];
    assert!(b.column(0).is_null(0), "{text}");
    assert!(!text.contains("医院"), "{text}");
    let _ = StringArray::from(vec!["x"]);
}

/// The rewrite's output for representative queries, locked: a change to how
/// thresholds are placed or units are counted must be deliberate.
#[tokio::test]
async fn rewrites_are_locked() {
    let f = fixture();
    let s = f.session().await;
    let mut out = String::new();
    for sql in [
        "SELECT sex, count(*) AS n, avg(income) AS mean FROM pums GROUP BY sex",
        "SELECT DISTINCT educ FROM pums",
        "SELECT hospital, count(*) AS claims, avg(amount) AS mean FROM medical_claims GROUP BY hospital",
        "SELECT hospital, median(amount) AS m FROM medical_claims GROUP BY hospital",
        "SELECT hospital, avg(total) AS t FROM (SELECT hospital, person_id, sum(amount) AS total FROM medical_claims GROUP BY hospital, person_id) x GROUP BY hospital",
        "SELECT race, count(*) AS n FROM pums GROUP BY race ORDER BY n DESC LIMIT 3",
        "SELECT sex, count(*) AS n FROM pums GROUP BY sex UNION ALL SELECT married, count(*) FROM pums GROUP BY married",
    ] {
        let planned = s.plan(sql).await.unwrap();
        out.push_str(&format!(
            "-- {sql}\n-- strategies: {:?}; hidden: {:?}\n{}\n\n",
            planned.rewritten.strategies,
            planned.rewritten.hidden,
            planned.rewritten.plan.display_indent()
        ));
    }
    insta::assert_snapshot!(out);
}

async fn run_err(
    s: &QuerySession,
    sql: &str,
    deadline: Duration,
    cancel_after: Option<Duration>,
) -> Error {
    let planned = s.plan(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let guard = Guard::new(std::time::Instant::now() + deadline);
    if let Some(after) = cancel_after {
        // From another thread, as an HTTP handler would.
        let g = Arc::clone(&guard);
        std::thread::spawn(move || {
            std::thread::sleep(after);
            g.cancel();
        });
    }
    enclave::query::execute(s, &planned, guard)
        .await
        .expect_err("the query should not finish")
}

/// Three-way self-join on a two-valued key: ~1.25e8 rows to count.
const HEAVY: &str =
    "SELECT count(*) AS n FROM pums a JOIN pums b ON a.sex = b.sex JOIN pums c ON b.sex = c.sex";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_cancellation_and_memory_limit_end_a_job() {
    // Timing-sensitive: not beside the CPU-heavy DP tests.
    let _serial = CPU_HEAVY.lock().await;
    let f = fixture();
    let s = f.session().await;
    let started = std::time::Instant::now();
    let e = run_err(&s, HEAVY, Duration::from_millis(200), None).await;
    assert_eq!(e.code(), "deadline_exceeded", "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stopped promptly"
    );
    let e = run_err(
        &s,
        HEAVY,
        Duration::from_secs(60),
        Some(Duration::from_millis(100)),
    )
    .await;
    assert_eq!(e.code(), "cancelled", "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "stopped promptly: {:?}",
        started.elapsed()
    );

    // A tiny memory pool: an aggregate that cannot spill fails cleanly.
    let mut specs = f.specs.clone();
    specs.truncate(1);
    let small = QuerySession::open(
        Arc::clone(&f.keyring),
        specs,
        true,
        &SessionLimits {
            memory_bytes: 4 * 1024,
            target_partitions: 2,
            spill_dir: f.dir.path().join("spill"),
            caches: None,
            tables: None,
        },
    )
    .await
    .unwrap();
    let e = run_err(
        &small,
        "SELECT age, median(income) AS m, count(*) AS n FROM pums GROUP BY age",
        Duration::from_secs(60),
        None,
    )
    .await;
    assert_eq!(e.code(), "memory_limit", "{e}");
    assert!(!e.to_string().contains("bytes"), "no engine detail: {e}");
}

// ---- differential privacy -------------------------------------------------

/// Serialises the CPU-heavy DP tests with the timing-sensitive deadline test.
static CPU_HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn dp(epsilon: f64, delta: f64) -> enclave::dp::DpOptions {
    enclave::dp::DpOptions {
        epsilon,
        delta,
        ..Default::default()
    }
}

async fn run_dp(
    s: &QuerySession,
    sql: &str,
    o: &enclave::dp::DpOptions,
) -> (PlannedQuery, Executed) {
    let planned = s
        .plan_dp(sql, o)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let guard = Guard::new(std::time::Instant::now() + Duration::from_secs(60));
    let ex = enclave::query::execute(s, &planned, guard)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    (planned, ex)
}

fn f64_column(b: &RecordBatch, name: &str) -> Vec<f64> {
    let a = b.column_by_name(name).unwrap();
    if let Some(f) = a.as_any().downcast_ref::<Float64Array>() {
        return f.values().to_vec();
    }
    let i = a.as_any().downcast_ref::<Int64Array>().unwrap();
    i.values().iter().map(|&v| v as f64).collect()
}

fn sample_sd(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
}

/// 1500 noisy releases of one exact result: the noise on COUNT and SUM has
/// the stated scale (sd = b·√2 within ±15 %), is centred on the exact
/// (clamped) value, and AVG stays inside the bounds.
#[tokio::test]
async fn dp_noise_has_the_stated_scale() {
    let _serial = CPU_HEAVY.lock().await;
    let f = fixture();
    let s = f.session().await;
    let sql = "SELECT count(*) AS n, sum(income) AS total, avg(age) AS mean_age FROM pums";
    let (planned, ex) = run_dp(&s, sql, &dp(1.0, 0.0)).await;
    let plan = planned.dp.as_ref().unwrap();
    let r = &plan.report;
    assert!(r.selection.is_none(), "no GROUP BY: one row, no selection");
    assert_eq!((r.epsilon, r.delta), (1.0, 0.0));
    assert_eq!((r.max_groups_contributed, r.max_rows_per_group), (1, 1));
    // ε split over count, sum, and avg's sum and count.
    let eps: f64 = r.columns.iter().map(|c| c.epsilon).sum();
    assert!(eps <= 1.0 && eps > 0.999, "{eps}");
    let col = |n: &str| r.columns.iter().find(|c| c.column == n).unwrap().clone();
    assert_eq!(col("n").scale, 4.0);
    assert_eq!(col("total").bounds, Some([0.0, 500000.0]));
    assert!(
        (col("total").scale - 2_000_000.0).abs() / 2e6 < 1e-3,
        "{:?}",
        col("total")
    );
    let exact = f
        .reference(
            "SELECT count(*) AS n, sum(least(greatest(income, 0.0), 500000.0)) AS total FROM pums",
        )
        .await;
    let true_n = f64_column(&exact[0], "n")[0];
    let true_total = f64_column(&exact[0], "total")[0];
    let (mut ns, mut totals) = (Vec::new(), Vec::new());
    for _ in 0..1500 {
        let (schema, out) = plan.release(&ex.schema, &ex.batches).unwrap();
        assert_eq!(
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>(),
            ["n", "total", "mean_age"]
        );
        ns.push(f64_column(&out[0], "n")[0] - true_n);
        totals.push(f64_column(&out[0], "total")[0] - true_total);
        let a = f64_column(&out[0], "mean_age")[0];
        assert!((0.0..=100.0).contains(&a));
    }
    for (name, xs) in [("n", &ns), ("total", &totals)] {
        let stated = col(name).scale * 2f64.sqrt();
        let sd = sample_sd(xs);
        assert!(
            (sd - stated).abs() / stated < 0.15,
            "{name}: sd {sd}, stated {stated}"
        );
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        // 5 standard errors.
        assert!(
            mean.abs() < 5.0 * stated / (xs.len() as f64).sqrt(),
            "{name}: bias {mean}"
        );
    }
}

/// A group with a single person is released with probability about δ per
/// run, so over 300 runs × a few hundred single-person groups the test asks
/// for δ = 1e-10 (expected leaks ~1e-5; at δ = 1e-6 it would see one in ~10
/// runs, as it should); large groups are always released.
#[tokio::test]
async fn dp_selection_hides_groups_of_one_person() {
    let _serial = CPU_HEAVY.lock().await;
    let f = fixture();
    let s = f.session().await;
    let keys = |b: &[RecordBatch]| -> Vec<String> { visible(b) };
    let singles = keys(
        &f.reference("SELECT age, educ FROM pums GROUP BY age, educ HAVING count(*) = 1")
            .await,
    );
    assert!(
        singles.len() > 20,
        "PUMS has (age, educ) pairs held by one person"
    );
    let (planned, ex) = run_dp(
        &s,
        "SELECT age, educ, count(*) AS n FROM pums GROUP BY age, educ",
        &dp(1.0, 1e-10),
    )
    .await;
    let plan = planned.dp.as_ref().unwrap();
    let sel = plan.report.selection.clone().unwrap();
    assert!(sel.delta <= 1e-10 && sel.threshold > 10, "{sel:?}");
    let mut single_seen = 0;
    for _ in 0..300 {
        let (_, out) = plan.release(&ex.schema, &ex.batches).unwrap();
        let released = keys(&[out[0].project(&[0, 1]).unwrap()]);
        single_seen += released.iter().filter(|k| singles.contains(k)).count();
        let ages = column_i64(&out, "age");
        assert!(
            ages.windows(2).all(|w| w[0] <= w[1]),
            "released in key order"
        );
    }
    assert_eq!(single_seen, 0);
    // Large groups (about 250 persons each) are always released.
    let (planned, ex) = run_dp(
        &s,
        "SELECT sex, married, count(*) AS n FROM pums GROUP BY sex, married",
        &dp(1.0, 1e-6),
    )
    .await;
    for _ in 0..100 {
        let (_, out) = planned
            .dp
            .as_ref()
            .unwrap()
            .release(&ex.schema, &ex.batches)
            .unwrap();
        assert_eq!(out[0].num_rows(), 4);
    }
}

/// Repeated units: at most `max_rows_per_group` rows per person and group and
/// at most `max_groups_contributed` groups per person reach the partials.
#[tokio::test]
async fn dp_bounds_contributions_per_person() {
    let _serial = CPU_HEAVY.lock().await;
    let f = fixture();
    let s = f.session().await;
    // medical_claims: 300 persons, 1–6 claims, up to 3 chapters; policy G = 3, R = 4.
    let (planned, ex) = run_dp(
        &s,
        "SELECT icd10_chapter, count(*) AS n FROM medical_claims GROUP BY icd10_chapter",
        &dp(1.0, 1e-6),
    )
    .await;
    let r = &planned.dp.as_ref().unwrap().report;
    assert_eq!((r.max_groups_contributed, r.max_rows_per_group), (3, 4));
    assert_eq!(r.columns[0].sensitivity, 12.0);
    let exact = f
        .reference(
            "SELECT icd10_chapter, CAST(sum(least(k, 4)) AS BIGINT) AS rows, count(*) AS units FROM \
             (SELECT icd10_chapter, person_id, count(*) AS k FROM medical_claims GROUP BY 1, 2) GROUP BY 1",
        )
        .await;
    let mut want: Vec<(i64, i64)> = column_i64(&exact, "units")
        .into_iter()
        .zip(column_i64(&exact, "rows"))
        .collect();
    want.sort();
    let mut got: Vec<(i64, i64)> = column_i64(&ex.batches, "__anyu_units")
        .into_iter()
        .zip(column_i64(&ex.batches, "__anyu_c0"))
        .collect();
    got.sort();
    assert_eq!(got, want);
    // One group per person: the units over all groups are the persons.
    let o = enclave::dp::DpOptions {
        max_groups_contributed: Some(1),
        max_rows_per_group: Some(1),
        ..dp(1.0, 1e-6)
    };
    let (_, ex) = run_dp(
        &s,
        "SELECT icd10_chapter, count(*) AS n, avg(amount) AS a FROM medical_claims GROUP BY icd10_chapter",
        &o,
    )
    .await;
    assert_eq!(
        column_i64(&ex.batches, "__anyu_units").iter().sum::<i64>(),
        300
    );
    assert_eq!(
        column_i64(&ex.batches, "__anyu_c0").iter().sum::<i64>(),
        300
    );
    // Options may only lower the dataset's limits.
    let o = enclave::dp::DpOptions {
        max_groups_contributed: Some(4),
        ..dp(1.0, 1e-6)
    };
    let (code, _) = refusal(
        s.plan_dp(
            "SELECT visit_type, count(*) FROM medical_claims GROUP BY visit_type",
            &o,
        )
        .await,
    );
    assert_eq!(code, "dp_options_invalid");
}

#[tokio::test]
async fn dp_refuses_what_it_cannot_do_soundly() {
    let f = fixture();
    let s = f.session().await;
    let o = dp(1.0, 1e-6);
    for (sql, want) in [
        (
            "SELECT sex, sum(age + 1) FROM pums GROUP BY sex",
            "dp_bounds_missing",
        ),
        (
            "SELECT sex, median(income) FROM pums GROUP BY sex",
            "dp_unsupported_aggregate",
        ),
        (
            "SELECT sex, approx_percentile_cont(income, 0.5) FROM pums GROUP BY sex",
            "dp_unsupported_aggregate",
        ),
        (
            "SELECT sex, max(age) FROM pums GROUP BY sex",
            "dp_unsupported_aggregate",
        ),
        (
            "SELECT sex, count(DISTINCT educ) FROM pums GROUP BY sex",
            "dp_unsupported_aggregate",
        ),
        (
            "SELECT sex, count(*) AS n FROM pums GROUP BY sex ORDER BY n",
            "dp_unsupported_query",
        ),
        (
            "SELECT sex, count(*) AS n FROM pums GROUP BY sex HAVING count(*) > 5",
            "dp_unsupported_query",
        ),
        (
            "SELECT sex, count(*) * 2 FROM pums GROUP BY sex",
            "dp_unsupported_query",
        ),
        (
            "SELECT n FROM (SELECT sex, count(*) AS n FROM pums GROUP BY sex)",
            "dp_unsupported_query",
        ),
        (
            "SELECT p.sex, count(*) FROM pums p JOIN pums q ON p.age = q.age GROUP BY p.sex",
            "dp_unsupported_query",
        ),
        (
            "SELECT sex, count(*) FROM pums WHERE age > (SELECT avg(age) FROM pums) GROUP BY sex",
            "dp_unsupported_query",
        ),
        ("SELECT sex FROM pums GROUP BY sex", "dp_unsupported_query"),
    ] {
        let (code, msg) = refusal(s.plan_dp(sql, &o).await);
        assert_eq!(code, want, "{sql}: {msg}");
    }
    // A grouped query needs δ to hide which groups exist.
    let (code, _) = refusal(
        s.plan_dp("SELECT sex, count(*) FROM pums GROUP BY sex", &dp(1.0, 0.0))
            .await,
    );
    assert_eq!(code, "dp_delta_required");
    let (code, _) = refusal(s.plan_dp("SELECT count(*) FROM pums", &dp(0.0, 0.0)).await);
    assert_eq!(code, "dp_options_invalid");
    // Options outside the mechanisms' range are the researcher's error, named
    // as such, never an internal error.
    let grouped = "SELECT sex, count(*), sum(income), avg(income) FROM pums GROUP BY sex";
    for (eps, delta) in [
        (1e-300, 1e-6),
        (f64::MIN_POSITIVE, 1e-6),
        (-1.0, 1e-6),
        (f64::NAN, 1e-6),
        (f64::INFINITY, 1e-6),
        (1e300, 1e-6),
        (1.0, 1e-300),
        (1.0, 5e-324),
        (1.0, -1e-6),
        (1.0, f64::NAN),
        (1.0, f64::INFINITY),
        (1.0, 1.0),
    ] {
        let (code, msg) = refusal(s.plan_dp(grouped, &dp(eps, delta)).await);
        assert_eq!(code, "dp_options_invalid", "ε {eps}, δ {delta}: {msg}");
        assert!(msg.contains("epsilon") || msg.contains("delta"), "{msg}");
    }
    // The extremes of the accepted ranges plan, with the most aggregates
    // sharing ε and repeated units (the largest sensitivities).
    for sql in [
        grouped,
        "SELECT visit_type, count(*), sum(amount), avg(amount), avg(amount) AS a2 FROM medical_claims GROUP BY visit_type",
    ] {
        for o in [
            dp(enclave::dp::MIN_EPSILON, enclave::dp::MIN_DELTA),
            dp(enclave::dp::MAX_EPSILON, 0.999),
        ] {
            s.plan_dp(sql, &o)
                .await
                .unwrap_or_else(|e| panic!("{sql} with {o:?}: {e}"));
        }
    }
    // A column without bounds is refused, never released without noise.
    let mut specs = f.specs.clone();
    for c in &mut specs[0].manifest.columns {
        if c.name == "income" {
            c.bounds = None;
        }
    }
    let s2 = f.session_with(specs, true).await;
    let (code, msg) = refusal(
        s2.plan_dp("SELECT sex, avg(income) FROM pums GROUP BY sex", &o)
            .await,
    );
    assert_eq!(code, "dp_bounds_missing");
    assert!(msg.contains("income"), "{msg}");
}

#[tokio::test]
async fn dp_required_refuses_other_queries() {
    let f = fixture();
    let mut specs = f.specs.clone();
    specs[0].policy.dp.required = true;
    let s = f.session_with(specs, true).await;
    let (code, msg) = refusal(s.plan("SELECT sex, count(*) FROM pums GROUP BY sex").await);
    assert_eq!(code, "dp_required");
    assert!(msg.contains("DIFFERENTIAL_PRIVACY"), "{msg}");
    let (code, _) = refusal(
        s.plan_input("SELECT sex, count(*) AS n FROM pums GROUP BY sex")
            .await,
    );
    assert_eq!(code, "dp_required");
    s.plan_dp(
        "SELECT sex, count(*) FROM pums GROUP BY sex",
        &dp(1.0, 1e-6),
    )
    .await
    .unwrap();
    // Another dataset in the same session stays as it was.
    s.plan("SELECT hospital, count(*) FROM medical_claims GROUP BY hospital")
        .await
        .unwrap();
}
