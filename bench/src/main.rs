//! `anyu-bench`: the performance figures in README, each measured against its
//! baseline in the same run (never a timed assertion in a test). A workspace
//! member of its own so the product binary carries no benchmark code (the
//! plaintext comparison files exist only with enclave's `plaintext-benchmark`
//! feature, which `anyu` never enables).
//!
//! - `generator`: sample data generation, rows/s;
//! - `import`: streaming import of the generated social-insurance CSV, rows/s,
//!   MB/s and the process's peak RSS;
//! - `scan`: SUM over a numeric column through DataFusion, encrypted vs the same
//!   rows in plaintext Parquet, interleaved runs, ratio of medians;
//! - `audit`: durable appends from concurrent writers, then full verification;
//! - `query`, `http`: the SQL path against bare DataFusion (see `query`);
//! - `acro` (only when named): crosstab checks against ACRO 1.0, and the
//!   dominance rules against the plain threshold path (see `acro`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Parser, ValueEnum};
use enclave::audit::{AuditLog, AuditOptions, NewEvent};
use enclave::catalog::{GradeScale, Manifest};
use enclave::ingest::{self, ImportOptions};
use enclave::keyring::Keyring;
use enclave::storage;
use serde::Serialize;

mod acro;
mod dp;
mod query;

/// Errors end the run with their message.
pub type BenchResult<T = ExitCode> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Anyu's benchmarks: each figure beside its baseline, in one run.
#[derive(Debug, Parser)]
#[command(name = "anyu-bench", version)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("anyu-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchKind {
    All,
    Generator,
    Import,
    Scan,
    Audit,
    Query,
    Http,
    /// Crosstab checks against ACRO 1.0 (needs python3 with acro==1.0.2;
    /// not part of `all`).
    Acro,
    /// Differentially private grouped aggregates on PUMS-shaped rows (not in `all`).
    Dp,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Benchmarks to run.
    #[arg(value_enum, default_values_t = [BenchKind::All])]
    pub which: Vec<BenchKind>,
    /// Persons (social_insurance rows) for generator, import and scan.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: u64,
    /// Events appended by the audit benchmark.
    #[arg(long, default_value_t = 200_000)]
    pub events: u64,
    /// Concurrent appenders in the audit benchmark. Durable appends cost one
    /// fsync per group commit, so throughput grows with concurrent writers.
    #[arg(long, default_value_t = 256)]
    pub writers: u64,
    /// Interleaved runs of each side of the scan comparison (the ratio of
    /// ~60 ms scans is noisy: fewer than ~20 runs move it by several percent).
    #[arg(long, default_value_t = 25)]
    pub repeat: usize,
    /// Interleaved runs of each side of every query comparison.
    #[arg(long, default_value_t = 7)]
    pub query_repeat: usize,
    /// Rows of the PUMS-shaped table of the ACRO comparison.
    #[arg(long, default_value_t = 1_000_000)]
    pub acro_rows: u64,
    /// Interleaved rounds of the ACRO comparison (ACRO takes seconds per table).
    #[arg(long, default_value_t = 3)]
    pub acro_repeat: usize,
    /// PUMS-shaped rows (one per person) for the dp benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    pub dp_rows: u64,
    /// Working directory (default: a fresh temporary directory, removed afterwards).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Default, Serialize)]
struct Results {
    rows: u64,
    generator: Option<Figure>,
    import: Option<ImportFigure>,
    scan: Option<ScanFigure>,
    audit: Option<AuditFigure>,
    query: Option<crate::query::QueryBench>,
    http: Option<crate::query::HttpBench>,
    acro: Option<crate::acro::AcroBench>,
    dp: Option<crate::dp::DpBench>,
}

#[derive(Debug, Serialize)]
struct Figure {
    seconds: f64,
    rows_per_s: f64,
    mb_per_s: f64,
}

#[derive(Debug, Serialize)]
struct ImportFigure {
    seconds: f64,
    rows_per_s: f64,
    mb_per_s: f64,
    peak_rss_mib: u64,
}

#[derive(Debug, Serialize)]
struct ScanFigure {
    encrypted_median_ms: f64,
    plaintext_median_ms: f64,
    ratio: f64,
    encrypted_bytes: u64,
    plaintext_bytes: u64,
}

#[derive(Debug, Serialize)]
struct AuditFigure {
    events: u64,
    writers: u64,
    append_events_per_s: f64,
    verify_events_per_s: f64,
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

async fn run(args: BenchArgs) -> BenchResult {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; figures are only meaningful with --release");
    }
    let all = args.which.contains(&BenchKind::All);
    let wants = |k: BenchKind| all || args.which.contains(&k);
    let tmp;
    let work: PathBuf = match &args.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let mut results = Results {
        rows: args.rows,
        ..Results::default()
    };

    let samples = work.join("samples");
    let csv = samples.join("social_insurance.csv");
    if wants(BenchKind::Generator)
        || ((wants(BenchKind::Import) || wants(BenchKind::Scan) || wants(BenchKind::Query))
            && !csv.exists())
    {
        let opts = anyu_datasets::GenerateOptions {
            rows: args.rows,
            seed: 7,
            out_dir: samples.clone(),
        };
        let started = Instant::now();
        let report = tokio::task::spawn_blocking(move || anyu_datasets::generate(&opts)).await??;
        let secs = started.elapsed().as_secs_f64();
        let bytes: u64 = report.files.iter().map(|f| f.bytes).sum();
        let all_rows: u64 = report.files.iter().map(|f| f.rows).sum();
        println!(
            "generator: {} persons ({} rows over {} datasets, {} MB) in {:.1} s = {:.0} rows/s",
            args.rows,
            all_rows,
            report.files.len(),
            bytes / 1_000_000,
            secs,
            all_rows as f64 / secs
        );
        results.generator = Some(Figure {
            seconds: secs,
            rows_per_s: all_rows as f64 / secs,
            mb_per_s: bytes as f64 / 1e6 / secs,
        });
    }

    let keys = work.join("keys");
    let keyring = Arc::new(if keys.join("master.key").exists() {
        Keyring::open(&keys)?
    } else {
        Keyring::init(&keys)?
    });
    let datasets_root = work.join("datasets");
    let mut version_dir: Option<PathBuf> = None;
    if wants(BenchKind::Import) || wants(BenchKind::Scan) {
        let manifest =
            Manifest::parse_with(anyu_datasets::SAMPLE_MANIFESTS[1].1, &GradeScale::default())?;
        let source_bytes = file_size(&csv);
        let kr = Arc::clone(&keyring);
        let root = datasets_root.clone();
        let data = csv.clone();
        let started = Instant::now();
        let outcome = tokio::task::spawn_blocking(move || {
            ingest::import(&kr, &root, &manifest, &data, &ImportOptions::default())
        })
        .await??;
        let secs = started.elapsed().as_secs_f64();
        let rss = ingest::peak_rss_bytes().unwrap_or(0) / (1024 * 1024);
        println!(
            "import:    {} rows, {} MB CSV in {:.1} s = {:.0} rows/s, {:.1} MB/s; peak RSS {} MiB",
            outcome.file.rows,
            source_bytes / 1_000_000,
            secs,
            outcome.file.rows as f64 / secs,
            source_bytes as f64 / 1e6 / secs,
            rss
        );
        results.import = Some(ImportFigure {
            seconds: secs,
            rows_per_s: outcome.file.rows as f64 / secs,
            mb_per_s: source_bytes as f64 / 1e6 / secs,
            peak_rss_mib: rss,
        });
        version_dir = Some(outcome.file.dir.clone());
    }

    if wants(BenchKind::Scan)
        && let Some(enc_dir) = version_dir
    {
        results.scan = Some(scan(&keyring, &enc_dir, &work, args.repeat).await?);
    }

    if wants(BenchKind::Audit) {
        results.audit = Some(audit(&keyring, &work, args.events, args.writers).await?);
    }

    if wants(BenchKind::Query) {
        results.query = Some(crate::query::query(&work, &samples, args.query_repeat).await?);
    }
    if wants(BenchKind::Http) {
        results.http = Some(crate::query::http_overhead(&work, args.query_repeat * 4).await?);
    }
    if args.which.contains(&BenchKind::Acro) {
        results.acro = Some(
            crate::acro::acro(
                &work,
                args.acro_rows,
                args.acro_repeat,
                &crate::acro::script(),
            )
            .await?,
        );
    }

    if args.which.contains(&BenchKind::Dp) {
        results.dp = Some(crate::dp::dp(&work, args.dp_rows, args.query_repeat).await?);
    }

    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn scan(
    keyring: &Arc<Keyring>,
    enc_dir: &Path,
    work: &Path,
    repeat: usize,
) -> BenchResult<ScanFigure> {
    // The baseline: the same rows, same writer settings, without encryption.
    let plain_root = work.join("plain");
    if plain_root.exists() {
        std::fs::remove_dir_all(&plain_root)?;
    }
    let kr = Arc::clone(keyring);
    let enc = enc_dir.to_path_buf();
    let plain_dir = tokio::task::spawn_blocking(move || -> enclave::Result<PathBuf> {
        let mut batches = storage::read_version_batches(&kr, &enc)?.peekable();
        let schema = match batches.peek() {
            Some(Ok(b)) => b.schema(),
            _ => return Err(enclave::Error::Internal("empty version".into())),
        };
        let mut w = storage::VersionWriter::create_plaintext(&plain_root, "bench", 1, schema)?;
        for b in batches {
            w.write(&b?)?;
        }
        Ok(w.finish()?.dir)
    })
    .await??;

    let ctx = storage::session_context(Arc::clone(keyring));
    storage::register_version(&ctx, "enc", enc_dir).await?;
    storage::register_plaintext_version_for_benchmark(&ctx, "plain", &plain_dir).await?;
    let query = |table: &'static str| {
        let ctx = ctx.clone();
        async move {
            let started = Instant::now();
            let df = ctx
                .sql(&format!(
                    "SELECT SUM(contribution_base) AS total FROM {table}"
                ))
                .await?;
            let batches = df.collect().await?;
            let elapsed = started.elapsed();
            let total = batches
                .first()
                .and_then(|b| {
                    b.column(0)
                        .as_any()
                        .downcast_ref::<datafusion::arrow::array::Float64Array>()
                        .map(|a| a.value(0))
                })
                .unwrap_or(f64::NAN);
            Ok::<_, datafusion::error::DataFusionError>((elapsed, total))
        }
    };
    // Warm both (page cache, metadata), and check the two sides agree (up to
    // the order in which partial float sums are combined).
    let (_, a) = query("enc").await?;
    let (_, b) = query("plain").await?;
    if (a - b).abs() > 1e-9 * a.abs().max(1.0) {
        return Err("encrypted and plaintext scans disagree".into());
    }
    let mut enc_times: Vec<Duration> = Vec::new();
    let mut plain_times: Vec<Duration> = Vec::new();
    for _ in 0..repeat.max(1) {
        enc_times.push(query("enc").await?.0);
        plain_times.push(query("plain").await?.0);
    }
    let quantile = |v: &mut Vec<Duration>, q: f64| {
        v.sort();
        v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0
    };
    let e = quantile(&mut enc_times, 0.5);
    let p = quantile(&mut plain_times, 0.5);
    let (e25, e75) = (
        quantile(&mut enc_times, 0.25),
        quantile(&mut enc_times, 0.75),
    );
    let (p25, p75) = (
        quantile(&mut plain_times, 0.25),
        quantile(&mut plain_times, 0.75),
    );
    let enc_bytes = file_size(&enc_dir.join("data.parquet"));
    let plain_bytes = file_size(&plain_dir.join("data.parquet"));
    println!(
        "scan:      SUM over 1 column, median of {} interleaved runs: encrypted {e:.1} ms \
         (IQR {e25:.1}-{e75:.1}), plaintext {p:.1} ms (IQR {p25:.1}-{p75:.1}), ratio {:.3}",
        enc_times.len(),
        e / p
    );
    Ok(ScanFigure {
        encrypted_median_ms: e,
        plaintext_median_ms: p,
        ratio: e / p,
        encrypted_bytes: enc_bytes,
        plaintext_bytes: plain_bytes,
    })
}

async fn audit(
    keyring: &Arc<Keyring>,
    work: &Path,
    events: u64,
    writers: u64,
) -> BenchResult<AuditFigure> {
    let path = work.join("audit-bench").join("audit.db");
    if path.exists() {
        std::fs::remove_dir_all(path.parent().expect("has parent"))?;
    }
    let log = AuditLog::open(&path, keyring.signing_key(), AuditOptions::default()).await?;
    let writers = writers.max(1);
    let per_writer = events / writers;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                log.append(
                    NewEvent::new(
                        format!("bench{w}"),
                        "researcher",
                        "catalog.read",
                        format!("dataset:d{}", i % 7),
                    )
                    .details(serde_json::json!({ "i": i })),
                )
                .await?;
            }
            Ok::<_, enclave::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let appended = per_writer * writers;
    let append_secs = started.elapsed().as_secs_f64();
    log.close().await?;

    let started = Instant::now();
    let report = enclave::audit::verify(&path, &keyring.public_key()).await?;
    let verify_secs = started.elapsed().as_secs_f64();
    if !report.is_ok() {
        return Err("audit benchmark chain does not verify".into());
    }
    let figure = AuditFigure {
        events: appended,
        writers,
        append_events_per_s: appended as f64 / append_secs,
        verify_events_per_s: report.events as f64 / verify_secs,
    };
    println!(
        "audit:     {} durable appends from {} writers = {:.0} events/s; verify {} events = {:.0} events/s",
        appended, writers, figure.append_events_per_s, report.events, figure.verify_events_per_s
    );
    Ok(figure)
}
