//! `anyu bench acro`: disclosure checks on crosstabs, Anyu against ACRO 1.0,
//! and what the dominance rules cost against the plain threshold path.
//!
//! - Data: a PUMS-shaped table of `--acro-rows` rows (default 1M), each row a
//!   copy of a row of the real PUMS sample (`datasets/data/PUMS_pid.csv`,
//!   visited in a fixed permuted order) with its own `pid`; a second table
//!   `pums_repeated` has the same rows with each `pid` on 4 rows.
//! - `acro`: the crosstabs of the agreement test (`enclave/tests/acro.rs`):
//!   counts, sums and means of income by sex, race, education, marriage, two-
//!   and three-way. Anyu: the whole job path per table (grant check, session,
//!   policy, rewrite with threshold and dominance statistics, execution over
//!   the encrypted version, every disclosure rule, sealed candidate, audit),
//!   from submission until the job waits for review. ACRO: `acro.crosstab`
//!   per table on a DataFrame already in memory (CSV load not counted), via
//!   `scripts/acro_verdicts.py`, spawned once per round. Rounds interleave
//!   the two; medians per table; ratio = ACRO / Anyu.
//! - `dominance` and `differencing`: every table's rewritten plan executed
//!   three ways (`QuerySession::plan_for_bench`), interleaved: the plain
//!   threshold path; with the dominance statistics; and as a job runs it,
//!   with the units' sketches too. On `pums` (one row per person:
//!   contributions are rows) and on `pums_repeated` (contributions are
//!   per-person sums: pre-aggregation). Dominance ratio = dominance /
//!   threshold (SUM/mean tables); differencing ratio = full / dominance.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::BenchResult;
use crate::query::{median, ms, setup_with, time_enclave};

const PUMS_CSV: &str = include_str!("../../datasets/data/PUMS_pid.csv");
/// (name, row keys, column keys, aggfunc): the agreement test's tables.
pub const TABLES: &[(&str, &[&str], &[&str], &str)] = &[
    ("sex x race: count", &["sex"], &["race"], "count"),
    ("educ x married: count", &["educ"], &["married"], "count"),
    (
        "sex, married x race: count",
        &["sex", "married"],
        &["race"],
        "count",
    ),
    ("race x educ: count", &["race"], &["educ"], "count"),
    ("sex x race: sum income", &["sex"], &["race"], "sum"),
    ("sex x race: mean income", &["sex"], &["race"], "mean"),
    ("educ x married: sum income", &["educ"], &["married"], "sum"),
    (
        "educ x married: mean income",
        &["educ"],
        &["married"],
        "mean",
    ),
    (
        "sex, married x race: sum income",
        &["sex", "married"],
        &["race"],
        "sum",
    ),
    ("race x educ: sum income", &["race"], &["educ"], "sum"),
    (
        "race x married: mean income",
        &["race"],
        &["married"],
        "mean",
    ),
];

fn sql(table: &str, index: &[&str], columns: &[&str], aggfunc: &str) -> String {
    let keys: Vec<&str> = index.iter().chain(columns).copied().collect();
    let keys = keys.join(", ");
    let agg = match aggfunc {
        "count" => "count(*)",
        "sum" => "sum(income)",
        _ => "avg(income)",
    };
    format!("SELECT {keys}, {agg} AS v FROM {table} GROUP BY {keys}")
}

#[derive(Debug, Serialize)]
pub struct TableFigure {
    pub table: String,
    pub anyu_median_ms: f64,
    pub acro_median_ms: f64,
    pub speedup: f64,
}

#[derive(Debug, Serialize)]
pub struct DominanceFigure {
    pub dataset: String,
    pub sql: String,
    pub aggfunc: String,
    pub with_dominance_ms: f64,
    pub threshold_only_ms: f64,
    /// Dominance over the threshold path.
    pub ratio: f64,
    /// Dominance statistics and the units' sketches: a job's plan.
    pub with_differencing_ms: f64,
    /// The sketches over the dominance path.
    pub differencing_ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct AcroBench {
    pub rows: u64,
    pub acro_version: String,
    pub tables: Vec<TableFigure>,
    pub median_speedup: f64,
    pub min_speedup: f64,
    pub dominance: Vec<DominanceFigure>,
    pub dominance_median_ratio: f64,
    pub dominance_max_ratio: f64,
    pub differencing_median_ratio: f64,
    pub differencing_max_ratio: f64,
}

/// Writes the PUMS-shaped table: `rows` rows, each a copy of a PUMS row with
/// its own pid; `per_person` rows share a pid.
fn write_shaped(path: &Path, rows: u64, per_person: u64) -> BenchResult<()> {
    use std::io::Write;
    let mut lines = PUMS_CSV.lines();
    let header = lines.next().ok_or("empty PUMS sample")?;
    if header != "age,sex,educ,race,income,married,pid" {
        return Err("unexpected PUMS header".into());
    }
    // Each sample row without its pid.
    let sample: Vec<&str> = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.rsplit_once(',').map_or(l, |(rest, _)| rest))
        .collect();
    let n = sample.len() as u64;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "{header}")?;
    for i in 0..rows {
        // 7919 is prime and does not divide 1000: every sample row in turn.
        let row = sample[((i * 7919 + 13) % n) as usize];
        writeln!(out, "{row},{}", i / per_person + 1)?;
    }
    out.flush()?;
    Ok(())
}

fn python() -> String {
    std::env::var("ANYU_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// One ACRO round over every table: seconds per table, and ACRO's version.
fn acro_round(
    script: &Path,
    csv: &Path,
    spec: &Path,
    out: &Path,
) -> BenchResult<(Vec<f64>, String)> {
    let run = Command::new(python())
        .arg(script)
        .arg("--csv")
        .arg(csv)
        .arg("--spec")
        .arg(spec)
        .arg("--out")
        .arg(out)
        .arg("--time")
        .arg("1")
        .output()?;
    if !run.status.success() {
        return Err(format!(
            "acro_verdicts.py failed (is acro==1.0.2 installed for {}?): {}",
            python(),
            String::from_utf8_lossy(&run.stderr)
        )
        .into());
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(out)?)?;
    let secs = v["tables"]
        .as_array()
        .ok_or("no tables")?
        .iter()
        .map(|t| t["median_seconds"].as_f64().ok_or("no time"))
        .collect::<Result<Vec<f64>, _>>()?;
    Ok((secs, v["acro_version"].as_str().unwrap_or("?").to_string()))
}

pub async fn acro(work: &Path, rows: u64, repeat: usize, script: &Path) -> BenchResult<AcroBench> {
    let repeat = repeat.max(3);
    println!("acro:      writing {rows} PUMS-shaped rows ...");
    let csv = work.join("pums_shaped.csv");
    let repeated_csv = work.join("pums_repeated.csv");
    write_shaped(&csv, rows, 1)?;
    write_shaped(&repeated_csv, rows, 4)?;
    let repeated_manifest =
        anyu_datasets::PUMS_MANIFEST.replace("id = \"pums\"", "id = \"pums_repeated\"");
    println!("acro:      importing into a fresh domain ...");
    let s = setup_with(
        &work.join("acro"),
        &[
            (anyu_datasets::PUMS_MANIFEST.to_string(), csv.clone()),
            (repeated_manifest, repeated_csv),
        ],
    )
    .await?;
    let (grant, repeated_grant) = (s.grants[0].clone(), s.grants[1].clone());

    let spec = work.join("acro_spec.json");
    let specs: Vec<serde_json::Value> = TABLES
        .iter()
        .map(|(name, index, columns, aggfunc)| {
            serde_json::json!({
                "name": name, "index": index, "columns": columns,
                "values": (*aggfunc != "count").then_some("income"),
                "aggfunc": aggfunc,
            })
        })
        .collect();
    std::fs::write(&spec, serde_json::to_vec(&specs)?)?;
    let out = work.join("acro_out.json");

    // Warm both sides once.
    for (_, index, columns, aggfunc) in TABLES {
        time_enclave(&s, &grant, &sql("pums", index, columns, aggfunc)).await?;
    }
    let (_, version) = acro_round(script, &csv, &spec, &out)?;
    let mut anyu: Vec<Vec<f64>> = vec![Vec::new(); TABLES.len()];
    let mut theirs: Vec<Vec<f64>> = vec![Vec::new(); TABLES.len()];
    for round in 0..repeat {
        for (i, (_, index, columns, aggfunc)) in TABLES.iter().enumerate() {
            anyu[i].push(time_enclave(&s, &grant, &sql("pums", index, columns, aggfunc)).await?);
        }
        let (secs, _) = acro_round(script, &csv, &spec, &out)?;
        for (i, t) in secs.into_iter().enumerate() {
            theirs[i].push(t * 1000.0);
        }
        println!("acro:      round {} of {repeat} done", round + 1);
    }
    let mut tables = Vec::new();
    for (i, (name, ..)) in TABLES.iter().enumerate() {
        let (a, b) = (median(&mut anyu[i]), median(&mut theirs[i]));
        println!(
            "acro:      {a:>8.1} ms Anyu / {b:>8.1} ms ACRO {version} = {:>6.1}x  {name}",
            b / a
        );
        tables.push(TableFigure {
            table: name.to_string(),
            anyu_median_ms: a,
            acro_median_ms: b,
            speedup: b / a,
        });
    }
    let mut speedups: Vec<f64> = tables.iter().map(|t| t.speedup).collect();
    let min_speedup = speedups.iter().copied().fold(f64::INFINITY, f64::min);
    let median_speedup = median(&mut speedups);
    println!("acro:      speed-up over ACRO: median {median_speedup:.1}x, least {min_speedup:.1}x");

    // The dominance statistics and the sketches against the plain threshold path.
    let mut dominance = Vec::new();
    for (dataset, g) in [("pums", &grant), ("pums_repeated", &repeated_grant)] {
        let grant = s.domain.grant(g).await?;
        let session = s.domain.query_session(&grant).await?;
        for (_, index, columns, aggfunc) in TABLES {
            let q = sql(dataset, index, columns, aggfunc);
            let full = session.plan(&q).await?;
            let with = session.plan_for_bench(&q, true, false).await?;
            let without = session.plan_for_bench(&q, false, false).await?;
            let run = |p: &enclave::query::PlannedQuery| {
                let p = p.clone();
                let session = &session;
                async move {
                    let t = Instant::now();
                    let guard =
                        enclave::query::Guard::new(Instant::now() + Duration::from_secs(600));
                    let ex = enclave::query::execute(session, &p, guard).await?;
                    std::hint::black_box(ex.batches);
                    BenchResult::Ok(ms(t.elapsed()))
                }
            };
            run(&full).await?;
            run(&with).await?;
            run(&without).await?;
            let (mut f, mut w, mut o) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..repeat * 3 {
                f.push(run(&full).await?);
                w.push(run(&with).await?);
                o.push(run(&without).await?);
            }
            let (fm, wm, om) = (median(&mut f), median(&mut w), median(&mut o));
            println!(
                "checks:    {om:>8.1} ms threshold / {wm:>8.1} ms + dominance ({:.3}) / {fm:>8.1} ms + sketches ({:.3})  {dataset}: {q}",
                wm / om,
                fm / wm
            );
            dominance.push(DominanceFigure {
                dataset: dataset.to_string(),
                sql: q,
                aggfunc: aggfunc.to_string(),
                with_dominance_ms: wm,
                threshold_only_ms: om,
                ratio: wm / om,
                with_differencing_ms: fm,
                differencing_ratio: fm / wm,
            });
        }
    }
    let summary = |ratios: &mut Vec<f64>| {
        let max = ratios.iter().copied().fold(0.0, f64::max);
        (median(ratios), max)
    };
    let (dominance_median_ratio, dominance_max_ratio) = summary(
        &mut dominance
            .iter()
            .filter(|d| d.aggfunc != "count")
            .map(|d| d.ratio)
            .collect(),
    );
    let (differencing_median_ratio, differencing_max_ratio) =
        summary(&mut dominance.iter().map(|d| d.differencing_ratio).collect());
    println!(
        "dominance: median ratio {dominance_median_ratio:.3}, largest {dominance_max_ratio:.3} (SUM/mean tables)"
    );
    println!(
        "differencing: median ratio {differencing_median_ratio:.3}, largest {differencing_max_ratio:.3} (all tables)"
    );
    Ok(AcroBench {
        rows,
        acro_version: version,
        tables,
        median_speedup,
        min_speedup,
        dominance,
        dominance_median_ratio,
        dominance_max_ratio,
        differencing_median_ratio,
        differencing_max_ratio,
    })
}

/// `scripts/acro_verdicts.py` next to the binary's source tree, or `ANYU_ACRO_SCRIPT`.
pub fn script() -> PathBuf {
    std::env::var_os("ANYU_ACRO_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/acro_verdicts.py"))
}
