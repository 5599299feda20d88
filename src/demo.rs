//! `anyu demo`: a working domain from a fresh checkout in one command.
//!
//! Initialises the data directory (or reuses it), generates the Shenzhen-style
//! sample data once, imports every sample dataset that has no version yet, and
//! serves. The sample manifests are compiled into the binary so the demo does
//! not depend on the working directory.

use std::path::Path;
use std::process::ExitCode;

use enclave::ingest::ImportOptions;
use enclave::{Actor, DataDir, Domain};
use tokio::sync::oneshot;

use crate::cli::{CliResult, DemoArgs};
use crate::config::{CONFIG_FILE, Config, DEFAULT_CONFIG_TOML};

/// The sample manifests, by dataset id.
pub const SAMPLE_MANIFESTS: &[(&str, &str)] = &[
    (
        "enterprise_registry",
        include_str!("../datasets/manifests/enterprise_registry.toml"),
    ),
    (
        "social_insurance",
        include_str!("../datasets/manifests/social_insurance.toml"),
    ),
    (
        "medical_claims",
        include_str!("../datasets/manifests/medical_claims.toml"),
    ),
    (
        "min_living_allowance",
        include_str!("../datasets/manifests/min_living_allowance.toml"),
    ),
];

pub async fn run(data_dir: &Path, mut config: Config, args: DemoArgs) -> CliResult {
    let dir = DataDir::new(data_dir);
    let domain = if dir.is_initialised() {
        println!("reusing {}", data_dir.display());
        Domain::open(data_dir, config.domain_options()).await?
    } else {
        println!("initialising {}", data_dir.display());
        let d = Domain::init(data_dir, config.domain_options()).await?;
        let config_path = data_dir.join(CONFIG_FILE);
        if !config_path.exists() {
            std::fs::write(&config_path, DEFAULT_CONFIG_TOML)?;
        }
        d
    };
    if let Err(e) = import_samples(&domain, data_dir, &args).await {
        domain.close().await?;
        return Err(e);
    }
    if args.no_serve {
        domain.close().await?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let (tx, rx) = oneshot::channel();
    let shown_dir = data_dir.display().to_string();
    tokio::spawn(async move {
        if let Ok(addr) = rx.await {
            println!();
            println!("Open:");
            println!("  catalog         http://{addr}/api/catalog");
            println!("  one dataset     http://{addr}/api/catalog/social_insurance");
            println!("  search          http://{addr}/api/catalog?q=医疗&open_type=conditional");
            println!("  API description http://{addr}/api/openapi.json");
            println!("  health          http://{addr}/healthz");
            println!();
            println!("Verify the audit log:  anyu audit verify --data-dir {shown_dir}");
            println!("Stop with Ctrl-C (the audit log writes a signed checkpoint on shutdown).");
        }
    });
    let listen = config.listen;
    crate::server::serve(domain, listen, &config, Some(tx)).await?;
    Ok(ExitCode::SUCCESS)
}

async fn import_samples(domain: &Domain, data_dir: &Path, args: &DemoArgs) -> CliResult<()> {
    let mut missing = Vec::new();
    for (id, _) in SAMPLE_MANIFESTS {
        let has_version = domain
            .store()
            .dataset(id)
            .await?
            .is_some_and(|d| d.latest_version.is_some());
        if !has_version {
            missing.push(*id);
        }
    }
    if missing.is_empty() {
        println!("sample datasets already imported");
        return Ok(());
    }

    let samples = data_dir.join("samples");
    let manifests = samples.join("manifests");
    std::fs::create_dir_all(&manifests)?;
    let needs_generate = missing
        .iter()
        .any(|id| !samples.join(format!("{id}.csv")).exists());
    if needs_generate {
        println!(
            "generating sample data: {} persons, seed {} ...",
            args.rows, args.seed
        );
        let opts = anyu_datasets::GenerateOptions {
            rows: args.rows,
            seed: args.seed,
            out_dir: samples.clone(),
        };
        tokio::task::spawn_blocking(move || anyu_datasets::generate(&opts)).await??;
    }
    for (id, text) in SAMPLE_MANIFESTS {
        if !missing.contains(id) {
            continue;
        }
        let manifest_path = manifests.join(format!("{id}.toml"));
        std::fs::write(&manifest_path, text)?;
        let data_path = samples.join(format!("{id}.csv"));
        let summary = domain
            .import_dataset(
                &Actor::operator(),
                &manifest_path,
                &data_path,
                &ImportOptions::default(),
                None,
            )
            .await?;
        println!(
            "imported {:<22} v{}  {:>8} rows  quality {}",
            summary.dataset_id,
            summary.version,
            summary.rows,
            if summary.quality.passed {
                "passed"
            } else {
                "has findings"
            }
        );
    }
    Ok(())
}
