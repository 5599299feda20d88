//! `anyu model test`: a researcher's model on dummy data, outside the domain,
//! in the same sandbox with the same limits as a model job — so a model that
//! passes here fails in the domain only because of the real data.
//!
//! ```text
//!  --dummy manifest.toml | dataset id (DATA_DIR) ─▶ dummy rows (manifest only)
//!     ─▶ optional --sql over them (plain DataFusion; the domain adds its policy)
//!     ─▶ ModelHost (intake, compile, run: [models] + [jobs] limits) ─▶ table + log
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use enclave::catalog::{Manifest, dummy};
use enclave::{Actor, DataDir, Domain};

use crate::CliResult;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct ModelTestArgs {
    /// The model: a WebAssembly component of the world `anyu:model@0.2.0`
    /// (or 0.1.0).
    pub model: PathBuf,
    /// Dataset whose dummy data feeds the model: a catalog manifest (TOML
    /// file), or the id of a dataset in DATA_DIR.
    #[arg(long)]
    pub dummy: String,
    /// Dummy rows to generate (1 to 100000).
    #[arg(long, default_value_t = 1000)]
    pub rows: usize,
    /// Seed of the dummy data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The job's input query over the dummy table (named like the dataset).
    /// Default: every column of a type models read (numbers, text, booleans).
    #[arg(long)]
    pub sql: Option<String>,
    /// Handed to the model's `run` as it is.
    #[arg(long, default_value = "")]
    pub params: String,
    /// Compiled-artifact cache (default: a temporary one; compiling a large
    /// component can take many seconds, so keep one between runs).
    #[arg(long, env = "ANYU_MODEL_CACHE")]
    pub cache_dir: Option<PathBuf>,
}

async fn dummy_rows(
    args: &ModelTestArgs,
    data_dir: &Path,
    config: &Config,
) -> CliResult<(String, RecordBatch)> {
    if args.rows == 0 || args.rows > dummy::MAX_DUMMY_ROWS {
        return Err(format!("--rows: 1 to {}", dummy::MAX_DUMMY_ROWS).into());
    }
    let as_file = Path::new(&args.dummy);
    if as_file.is_file() {
        let text = std::fs::read_to_string(as_file)?;
        let manifest = Manifest::parse_with(&text, &config.grades)
            .map_err(|e| format!("{}: {e}", as_file.display()))?;
        let id = manifest.dataset.id.clone();
        return Ok((id, dummy::dummy_batch(&manifest, args.rows, args.seed)));
    }
    if !DataDir::new(data_dir).is_initialised() {
        return Err(format!(
            "--dummy {}: no such manifest file, and {} is not a data directory",
            args.dummy,
            data_dir.display()
        )
        .into());
    }
    let domain = Domain::open(data_dir, config.domain_options()?).await?;
    let batch = domain
        .dummy_data(&Actor::operator(), &args.dummy, args.rows, args.seed)
        .await;
    domain.close().await?;
    Ok((args.dummy.clone(), batch?))
}

/// The input the model reads: `--sql` over the dummy table, or its readable columns.
async fn input(
    id: &str,
    batch: RecordBatch,
    sql: Option<&str>,
) -> CliResult<(Arc<Schema>, Vec<RecordBatch>)> {
    let ctx = SessionContext::new();
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
    ctx.register_table(id, Arc::new(table))?;
    let query = match sql {
        Some(q) => q.to_string(),
        None => {
            let schema = ctx.table(id).await?.schema().as_arrow().clone();
            let cols: Vec<String> = schema
                .fields()
                .iter()
                .filter(|f| sandbox::readable(f.data_type()))
                .map(|f| format!("\"{}\"", f.name()))
                .collect();
            format!("SELECT {} FROM \"{id}\"", cols.join(", "))
        }
    };
    let df = ctx.sql(&query).await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    if let Some(f) = schema
        .fields()
        .iter()
        .find(|f| !sandbox::readable(f.data_type()))
    {
        return Err(format!(
            "input column `{}` is {}: models read f64, i64, text and booleans (CAST it)",
            f.name(),
            f.data_type()
        )
        .into());
    }
    Ok((schema, df.collect().await?))
}

pub async fn run(args: ModelTestArgs, data_dir: &Path, config: &Config) -> CliResult {
    let bytes = std::fs::read(&args.model)
        .map_err(|e| format!("cannot read {}: {e}", args.model.display()))?;
    let size = bytes.len();
    let (id, batch) = dummy_rows(&args, data_dir, config).await?;
    let (schema, batches) = input(&id, batch, args.sql.as_deref()).await?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();

    let options = config.domain_options()?;
    let (models, jobs) = (options.models, options.jobs);
    let temp = tempfile::tempdir()?;
    let cache = args
        .cache_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let params = args.params.clone();
    if params.len() > models.max_params_bytes {
        return Err(format!("--params: at most {} bytes", models.max_params_bytes).into());
    }
    let outcome = tokio::task::spawn_blocking(move || {
        let host = sandbox::ModelHost::new(models.host_config(Some(cache), 1))?;
        let started = Instant::now();
        let info = host.intake(&bytes)?;
        let compiled = started.elapsed();
        let budget = Arc::new(sandbox::FixedBudget::new(jobs.memory_bytes));
        let limits = models.run_limits(jobs.deadline, budget);
        let started = Instant::now();
        let out = host.run(
            &info.sha256,
            Box::new(sandbox::BatchesInput::new(schema, batches)),
            &params,
            limits,
        );
        Ok::<_, sandbox::SandboxError>((info, compiled, started.elapsed(), out))
    })
    .await?;
    let (info, compiled, ran, out) = match outcome {
        Ok(v) => v,
        Err(e) => {
            eprintln!("refused at intake: {e} [{}]", e.code());
            return Ok(ExitCode::FAILURE);
        }
    };
    eprintln!(
        "model {} ({size} bytes, {}), intake {}, {rows} input rows of dummy `{id}`",
        info.sha256,
        info.contract,
        ms(compiled)
    );
    match out {
        Ok(out) => {
            if !out.log.is_empty() {
                eprintln!(
                    "--- log{} ---",
                    if out.log_truncated {
                        " (truncated)"
                    } else {
                        ""
                    }
                );
                eprint!("{}", out.log);
                if !out.log.ends_with('\n') {
                    eprintln!();
                }
                eprintln!("---");
            }
            println!(
                "{}",
                datafusion::arrow::util::pretty::pretty_format_batches(&out.batches)?
            );
            eprintln!(
                "ran in {}, {} input rows read, peak memory {} KiB",
                ms(ran),
                out.input_rows,
                out.peak_memory >> 10
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // Dummy data: showing the model's own message is safe here.
            eprintln!("run failed after {}: {e} [{}]", ms(ran), e.code());
            if let sandbox::SandboxError::ModelError(msg) = &e {
                eprintln!("model error: {msg}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}
