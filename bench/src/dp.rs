//! `anyu bench dp`: a differentially private grouped COUNT/SUM/AVG over
//! PUMS-shaped rows (one row per person) through the whole job path — plan,
//! policy, DP rewrite, execution, opendp noise and selection, checks, sealed
//! candidate, audit — timed from submission to the candidate waiting for
//! review. `scripts/bench_dp.sh` runs SmartNoise SQL on the same CSV and ε.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::BenchResult;

/// The query (the SmartNoise side runs the same one without the clause).
pub const DP_SQL: &str = "SELECT WITH DIFFERENTIAL_PRIVACY OPTIONS (epsilon = 1.0, delta = 0.000001) \
     married, educ, COUNT(*) AS n, SUM(income) AS income_sum, AVG(age) AS age_mean \
     FROM pums GROUP BY married, educ";

/// Context only: the same aggregates, exact, in bare DataFusion over the same file.
const BARE_SQL: &str = "SELECT married, educ, COUNT(*) AS n, SUM(income) AS income_sum, AVG(age) AS age_mean \
     FROM pums GROUP BY married, educ";

/// The reference PUMS rows (1,000 persons, real microdata).
const PUMS: &str = include_str!("../../datasets/data/PUMS_pid.csv");

#[derive(Debug, Serialize)]
pub struct DpBench {
    pub rows: u64,
    pub sql: String,
    pub runs_ms: Vec<f64>,
    pub median_ms: f64,
    pub released_groups: u64,
    /// The exact query in bare DataFusion (no grant, policy, noise, checks or audit).
    pub bare_median_ms: f64,
}

/// `rows` PUMS-shaped rows with distinct pids: row i repeats reference row
/// (i·7919 mod 1000) with pid i+1 (deterministic).
pub fn write_pums_csv(path: &Path, rows: u64) -> BenchResult<()> {
    let body: Vec<&str> = PUMS.lines().skip(1).collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "age,sex,educ,race,income,married,pid")?;
    for i in 0..rows {
        let line = body[((i * 7919) % body.len() as u64) as usize];
        let without_pid = &line[..line.rfind(',').ok_or("bad PUMS line")?];
        writeln!(w, "{without_pid},{}", i + 1)?;
    }
    w.flush()?;
    Ok(())
}

pub async fn dp(work: &Path, rows: u64, repeat: usize) -> BenchResult<DpBench> {
    let samples = work.join("samples");
    let csv = samples.join("pums.csv");
    let fresh = std::fs::read_to_string(samples.join("pums.rows")).ok() != Some(rows.to_string());
    if fresh || !csv.exists() {
        write_pums_csv(&csv, rows)?;
        std::fs::write(samples.join("pums.rows"), rows.to_string())?;
    }
    println!("dp:        preparing a domain (import of {rows} PUMS-shaped rows) ...");
    let s = crate::query::setup(work, &samples, &["pums"]).await?;
    let grant = s.grants[0].clone();
    let ctx = crate::query::bare(&s.domain, &["pums"]).await?;
    let repeat = repeat.max(3);
    let mut bare = Vec::new();
    let mut runs = Vec::new();
    let mut released = 0;
    for i in 0..=repeat {
        let t = Instant::now();
        let job = s
            .domain
            .submit_query(&s.researcher, &grant, DP_SQL, None)
            .await?;
        let done = s
            .domain
            .wait_job(&s.admin, &job.id, Duration::from_secs(600))
            .await?
            .full()
            .ok_or("the admin sees a job as stored")?;
        let elapsed = t.elapsed().as_secs_f64() * 1000.0;
        if done.job.status.as_str() != "pending_review" {
            return Err(format!(
                "benchmark job ended {}: {:?}",
                done.job.status.as_str(),
                done.job.error_code
            )
            .into());
        }
        released = done.job.result_rows.unwrap_or(0);
        let b = crate::query::time_bare(&ctx, BARE_SQL).await?;
        // The first run warms the caches.
        if i > 0 {
            runs.push(elapsed);
            bare.push(b);
        }
    }
    bare.sort_by(f64::total_cmp);
    let bare_median_ms = bare[bare.len() / 2];
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    let median_ms = sorted[sorted.len() / 2];
    println!(
        "dp:        {rows} rows, grouped COUNT/SUM/AVG with ε = 1, δ = 1e-6: median {median_ms:.1} ms over {} runs ({released} groups released); exact query in bare DataFusion {bare_median_ms:.1} ms",
        runs.len()
    );
    Ok(DpBench {
        rows,
        sql: DP_SQL.into(),
        runs_ms: runs,
        median_ms,
        released_groups: released,
        bare_median_ms,
    })
}
