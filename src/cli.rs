//! Command-line interface. Each subcommand is a thin call into `enclave`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use enclave::audit;
use enclave::ingest::{ImportOptions, InputFormat};
use enclave::store::Store;
use enclave::{Actor, DataDir, Domain};

use crate::config::{CONFIG_FILE, Config, DEFAULT_CONFIG_TOML};

pub use crate::CliResult;

/// Anyu (安域): a secure data domain for conditionally open public data.
#[derive(Debug, Parser)]
#[command(name = "anyu", version, propagate_version = true)]
pub struct Cli {
    /// Data directory: keys, metadata database, audit log, encrypted datasets.
    #[arg(
        long,
        global = true,
        env = "ANYU_DATA_DIR",
        default_value = "./anyu-data"
    )]
    pub data_dir: PathBuf,

    /// Platform configuration file (TOML); defaults to DATA_DIR/anyu.toml when present.
    #[arg(long, global = true, env = "ANYU_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log output format.
    #[arg(long, global = true, env = "ANYU_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a data directory: master key (0600), platform signing key, databases.
    Init,
    /// Run the HTTP server.
    Serve(ServeArgs),
    /// Initialise (or reuse) a data directory, import generated sample data, and serve.
    Demo(crate::demo::DemoArgs),
    /// Sample data generators.
    #[command(subcommand)]
    Datasets(DatasetsCommand),
    /// Catalog datasets: import, list, show.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The platform signing key.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Real-name accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Check a signed agreement receipt against the platform's public key.
    VerifyReceipt {
        /// The receipt (JSON) the researcher downloaded.
        receipt: PathBuf,
        /// The agreement text as signed, to check its hash too (optional: the
        /// text is re-rendered from the signed terms when its version is known).
        #[arg(long)]
        text: Option<PathBuf>,
        /// The grant (JSON, as GET /api/grants/{id} shows it), to check that a
        /// format 2 receipt signed exactly its columns, filters and budgets.
        #[arg(long)]
        grant: Option<PathBuf>,
        /// The platform's Ed25519 public key: hex, or a file with the hex or the
        /// JSON of GET /api/platform/keys; default: DATA_DIR/keys/signing.pub.
        #[arg(long, env = "ANYU_PUBLIC_KEY")]
        public_key: Option<String>,
    },
    /// Check a downloaded result file against its signed release certificate.
    VerifyRelease {
        /// The result file (CSV, Parquet, Arrow IPC or JSON) as downloaded.
        result: PathBuf,
        /// The release certificate (JSON) downloaded with it.
        certificate: PathBuf,
        /// The platform's Ed25519 public key: hex, or a file with the hex or the
        /// JSON of GET /api/platform/keys; default: DATA_DIR/keys/signing.pub.
        #[arg(long, env = "ANYU_PUBLIC_KEY")]
        public_key: Option<String>,
    },
    /// Researchers' WebAssembly models, outside the domain.
    #[command(subcommand)]
    Model(ModelCommand),
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Run a model on a dataset's dummy data with the limits of a model job.
    Test(crate::model_test::ModelTestArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (overrides the configuration file).
    #[arg(long, env = "ANYU_LISTEN")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum DatasetsCommand {
    /// Write deterministic Shenzhen-style sample CSV files.
    Generate {
        /// Persons in social_insurance; other datasets scale with it.
        #[arg(long, default_value_t = 10_000)]
        rows: u64,
        /// Generator seed: the same seed gives byte-identical files.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Import a data file as the next immutable, encrypted version of a dataset.
    Import {
        /// Catalog manifest (TOML).
        manifest: PathBuf,
        /// Data file: .csv, .parquet, .arrow/.ipc, .ndjson/.jsonl.
        data: PathBuf,
        /// Input format, when the extension does not tell.
        #[arg(long)]
        format: Option<String>,
        /// Legal basis, required when the manifest changes the open type (SZ:15).
        #[arg(long)]
        legal_basis: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import the consent table of a dataset (GD:41): a file with one column named
    /// like the dataset's privacy unit, one row per consenting data subject. Each
    /// import replaces the table with a new encrypted version.
    Consent {
        /// Dataset id.
        dataset: String,
        /// Data file: .csv, .parquet, .arrow/.ipc, .ndjson/.jsonl.
        data: PathBuf,
        /// Input format, when the extension does not tell.
        #[arg(long)]
        format: Option<String>,
    },
    /// List datasets with their newest version.
    List,
    /// Show a dataset's manifest revisions, versions and quality reports.
    Show { id: String },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account as the host's operator. The password comes from
    /// ANYU_NEW_PASSWORD, or --password-stdin, or is generated and printed
    /// once; the first session must change it unless --no-password-change.
    /// The organisation is found by its normalised name, or registered with
    /// --credit-code.
    Add {
        #[arg(long)]
        username: String,
        /// researcher, steward, admin or auditor.
        #[arg(long)]
        role: String,
        /// Real name (实名).
        #[arg(long)]
        real_name: String,
        #[arg(long)]
        organisation: String,
        /// enterprise, university, research_institute, government or individual.
        #[arg(long)]
        org_type: String,
        /// 统一社会信用代码 of the organisation, to register it when it is new.
        #[arg(long)]
        credit_code: Option<String>,
        /// 身份证号 of the person behind the account (only a keyed hash is kept).
        #[arg(long, env = "ANYU_RESIDENT_ID")]
        resident_id: String,
        /// The password is final: no forced change at the first login (the
        /// operator's own accounts, the demo, tests).
        #[arg(long)]
        no_password_change: bool,
        /// Provider agency a steward acts for (repeat for several).
        #[arg(long = "agency")]
        agencies: Vec<String>,
        /// Real-name verification has been done.
        #[arg(long)]
        verified: bool,
        /// Credit list the organisation is on (XM:24): dishonest_debtor,
        /// abnormal_operation or serious_violation (repeat for several).
        #[arg(long = "credit-flag")]
        credit_flags: Vec<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Disable an account and end its sessions.
    Disable { username: String },
    /// Replace a password by a one-time code for the owner (printed once;
    /// hand it over in person), or by --password-stdin's with a forced
    /// change. Ends the account's sessions and revokes its API tokens.
    ResetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Bind an account made before persons were bound to its person.
    BindPerson {
        username: String,
        #[arg(long, env = "ANYU_RESIDENT_ID")]
        resident_id: String,
    },
    /// List accounts.
    List,
    /// Privileged account changes waiting for a second administrator.
    Requests,
    /// Approve an administrator's account request as the host's operator
    /// (the second party on an install with one administrator).
    Approve { request_id: String },
    /// Refuse an administrator's account request.
    Refuse { request_id: String },
    /// Register an organisation (name normalised, credit code checked).
    AddOrganisation {
        #[arg(long)]
        name: String,
        #[arg(long)]
        org_type: String,
        #[arg(long)]
        credit_code: Option<String>,
    },
    /// List organisations.
    Organisations,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Replace the platform signing key (the server must be stopped). The
    /// rotation is a chained audit event signed by the current key that
    /// names the next; auditors who pinned the current key keep verifying.
    /// The old private key is deleted; its public key stays in keys/retired/.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain and signed checkpoints; exits 1 on a broken chain.
    ///
    /// Anchor it outside the data directory: pin the platform key printed at
    /// `anyu init` (or served at GET /api/platform/keys), and give the signed
    /// heads an auditor kept (GET /api/audit/head) — the configured witness
    /// directory's head is checked too.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The platform's Ed25519 public key (hex), as published at init.
        #[arg(long, env = "ANYU_PUBLIC_KEY")]
        public_key: Option<String>,
        /// A file of trusted platform keys (hex, one per line, `#` comments):
        /// the log verifies under one of them.
        #[arg(long)]
        trusted_keys: Option<PathBuf>,
        /// A signed head kept outside the host; the log must still hold it.
        #[arg(long = "head")]
        heads: Vec<PathBuf>,
        /// Also cross-check the metadata against the chain: every release,
        /// account role, grant and approval must have its event.
        #[arg(long)]
        deep: bool,
    },
    /// Print the newest events.
    Tail {
        #[arg(long, short = 'n', default_value_t = 20)]
        n: u64,
    },
}

pub fn init_tracing(cli: &Cli) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    // Our own crates at info, everything else at warn; ANYU_LOG overrides (EnvFilter syntax).
    let filter = EnvFilter::try_from_env("ANYU_LOG")
        .unwrap_or_else(|_| EnvFilter::new("warn,anyu=info,enclave=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub async fn run(cli: Cli) -> CliResult {
    let config = Config::load(cli.config.as_deref(), &cli.data_dir)?;
    match cli.command {
        Command::Init => init(&cli.data_dir, &config).await,
        Command::Serve(args) => {
            let domain = open(&cli.data_dir, &config).await?;
            let listen = args.listen.unwrap_or(config.listen);
            crate::server::serve(domain, listen, &config, None).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => crate::demo::run(&cli.data_dir, config, args).await,
        Command::Model(ModelCommand::Test(args)) => {
            crate::model_test::run(args, &cli.data_dir, &config).await
        }
        Command::Datasets(DatasetsCommand::Generate { rows, seed, out }) => {
            let report = tokio::task::spawn_blocking(move || {
                anyu_datasets::generate(&anyu_datasets::GenerateOptions {
                    rows,
                    seed,
                    out_dir: out,
                })
            })
            .await??;
            for f in &report.files {
                println!(
                    "{:<24} {:>12} rows {:>14} bytes  {}",
                    f.dataset,
                    f.rows,
                    f.bytes,
                    f.path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dataset(cmd) => dataset(&cli.data_dir, &config, cmd).await,
        Command::Audit(AuditCommand::Verify {
            json,
            public_key,
            trusted_keys,
            heads,
            deep,
        }) => {
            let anchors = Anchors {
                public_key,
                trusted_keys,
                heads,
                witness_dir: config.audit.witness_dir.clone(),
            };
            audit_verify(&cli.data_dir, json, anchors, deep).await
        }
        Command::Audit(AuditCommand::Tail { n }) => audit_tail(&cli.data_dir, n).await,
        Command::Keys(KeysCommand::Rotate) => keys_rotate(&cli.data_dir, &config).await,
        Command::User(cmd) => user(&cli.data_dir, &config, cmd).await,
        Command::VerifyReceipt {
            receipt,
            text,
            grant,
            public_key,
        } => verify_receipt(
            &cli.data_dir,
            &receipt,
            text.as_deref(),
            grant.as_deref(),
            public_key.as_deref(),
        ),
        Command::VerifyRelease {
            result,
            certificate,
            public_key,
        } => verify_release(&cli.data_dir, &result, &certificate, public_key.as_deref()),
    }
}

pub async fn open(data_dir: &Path, config: &Config) -> CliResult<Domain> {
    Ok(Domain::open(data_dir, config.domain_options()?).await?)
}

async fn init(data_dir: &Path, config: &Config) -> CliResult {
    let domain = Domain::init(data_dir, config.domain_options()?).await?;
    let config_path = data_dir.join(CONFIG_FILE);
    if !config_path.exists() {
        std::fs::write(&config_path, DEFAULT_CONFIG_TOML)?;
    }
    println!("initialised {}", data_dir.display());
    println!("  master key id        {}", domain.keyring().key_id());
    println!(
        "  signing public key   {}",
        hex::encode(domain.keyring().public_key())
    );
    println!("  configuration        {}", config_path.display());
    domain.close().await?;
    Ok(ExitCode::SUCCESS)
}

async fn keys_rotate(data_dir: &Path, config: &Config) -> CliResult {
    let domain = open(data_dir, config).await?;
    let rotated = domain.rotate_signing_key().await;
    // The close signs the last checkpoint, over the rotation, with the old key.
    let closed = domain.close().await;
    let rotated = rotated?;
    closed?;
    enclave::keyring::Keyring::finish_rotation(&domain.data_dir().keys())?;
    println!("signing key rotated at audit event {}", rotated.seq);
    println!("  previous public key  {}", rotated.previous_public_key);
    println!("  signing public key   {}", rotated.next_public_key);
    println!("  fingerprint          {}", rotated.next_fingerprint);
    println!(
        "  publish the new key; `anyu audit verify --public-key <previous>` follows the rotation"
    );
    Ok(ExitCode::SUCCESS)
}

async fn dataset(data_dir: &Path, config: &Config, cmd: DatasetCommand) -> CliResult {
    match cmd {
        DatasetCommand::Import {
            manifest,
            data,
            format,
            legal_basis,
            json,
        } => {
            let domain = open(data_dir, config).await?;
            let result = dataset_import(&domain, &manifest, &data, format, legal_basis, json).await;
            domain.close().await?;
            result
        }
        DatasetCommand::Consent {
            dataset,
            data,
            format,
        } => {
            let domain = open(data_dir, config).await?;
            let options = ImportOptions {
                format: format.as_deref().map(InputFormat::parse).transpose()?,
                ..ImportOptions::default()
            };
            let result = domain
                .import_consent(&Actor::operator(), &dataset, &data, &options)
                .await;
            domain.close().await?;
            let c = result?;
            println!(
                "imported consent table of {} v{}: {} data subjects",
                c.dataset_id, c.version, c.subjects
            );
            Ok(ExitCode::SUCCESS)
        }
        // Reads of the metadata store need no audit writer, so they work while a
        // server runs. They are the operator's local view, not the public API.
        DatasetCommand::List => {
            let store = open_store(data_dir).await?;
            let result = dataset_list(&store).await;
            store.close().await;
            result
        }
        DatasetCommand::Show { id } => {
            let store = open_store(data_dir).await?;
            let result = dataset_show(&store, &id).await;
            store.close().await;
            result
        }
    }
}

async fn dataset_import(
    domain: &Domain,
    manifest: &Path,
    data: &Path,
    format: Option<String>,
    legal_basis: Option<String>,
    json: bool,
) -> CliResult {
    let options = ImportOptions {
        format: format.as_deref().map(InputFormat::parse).transpose()?,
        ..ImportOptions::default()
    };
    let started = std::time::Instant::now();
    let summary = domain
        .import_dataset(
            &Actor::operator(),
            manifest,
            data,
            &options,
            legal_basis.as_deref(),
        )
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "imported {} v{} (manifest revision {}): {} rows, {} bytes encrypted, {:.1}s, peak RSS {} MiB",
            summary.dataset_id,
            summary.version,
            summary.manifest_revision,
            summary.rows,
            summary.bytes,
            started.elapsed().as_secs_f64(),
            enclave::ingest::peak_rss_bytes().unwrap_or(0) / (1024 * 1024),
        );
        print_quality(&summary.quality);
    }
    Ok(ExitCode::SUCCESS)
}

async fn dataset_list(store: &Store) -> CliResult {
    for d in store.list_datasets().await? {
        let m = &d.manifest;
        let (v, rows) = d
            .latest_version
            .as_ref()
            .map(|v| (format!("v{}", v.version), v.rows.to_string()))
            .unwrap_or(("-".into(), "-".into()));
        println!(
            "{:<24} {:<14} {:<3} {:>4} {:>10} rows  {}",
            m.id(),
            serde_json::to_value(m.dataset.open_type)?
                .as_str()
                .unwrap_or("?"),
            m.dataset.grade,
            v,
            rows,
            m.dataset.title.zh
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn dataset_show(store: &Store, id: &str) -> CliResult {
    let Some(d) = store.dataset(id).await? else {
        return Err(format!("dataset `{id}` not found").into());
    };
    let out = serde_json::json!({
        "manifest": d.manifest,
        "manifest_revisions": store.manifest_revisions(id).await?,
        "versions": store.versions(id).await?,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// The keys a receipt or certificate is checked against: `--public-key` as
/// hex, or a file holding the hex or the JSON `GET /api/platform/keys`
/// answers (its current key and the keys rotated out before it); without it
/// the data directory's current and retired keys. A researcher verifies on
/// their own machine, with no data directory, so the error says where to
/// get the key. A document signed before a rotation still verifies.
fn platform_public_keys(data_dir: &Path, explicit: Option<&str>) -> CliResult<Vec<Vec<u8>>> {
    let decode = |k: &str| -> CliResult<Vec<u8>> {
        Ok(hex::decode(k.trim()).map_err(|_| "the public key must be hex")?)
    };
    match explicit {
        Some(k) if Path::new(k).is_file() => {
            let text = std::fs::read_to_string(k)?;
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(doc) if doc.is_object() => {
                    let current = doc["signing_public_key"]
                        .as_str()
                        .ok_or("the key file is JSON without `signing_public_key`")?;
                    let mut all = vec![decode(current)?];
                    for old in doc["predecessors"].as_array().into_iter().flatten() {
                        if let Some(k) = old["signing_public_key"].as_str() {
                            all.push(decode(k)?);
                        }
                    }
                    Ok(all)
                }
                _ => Ok(vec![decode(&text)?]),
            }
        }
        Some(k) => Ok(vec![decode(k)?]),
        None if DataDir::new(data_dir).is_initialised() => {
            let keys = initialised(data_dir)?.keys();
            let current = std::fs::read_to_string(keys.join("signing.pub"))?;
            let mut all = vec![decode(&current)?];
            all.extend(enclave::keyring::Keyring::retired_public_keys(&keys)?);
            Ok(all)
        }
        None => Err(format!(
            "no platform public key: {} is not a data directory, so give the key with \
             --public-key HEX|FILE (or ANYU_PUBLIC_KEY): the platform publishes it at \
             GET /api/platform/keys (save that answer as a file), and `anyu init` printed it",
            data_dir.display()
        )
        .into()),
    }
}

fn verify_receipt(
    data_dir: &Path,
    receipt: &Path,
    text: Option<&Path>,
    grant: Option<&Path>,
    public_key: Option<&str>,
) -> CliResult {
    use enclave::access::agreement;
    let keys = platform_public_keys(data_dir, public_key)?;
    let json = std::fs::read_to_string(receipt)?;
    let text = text.map(std::fs::read_to_string).transpose()?;
    let grant: Option<enclave::access::Grant> = match grant {
        Some(path) => Some(
            serde_json::from_str(&std::fs::read_to_string(path)?)
                .map_err(|_| "the grant file is not a grant as GET /api/grants/{id} shows it")?,
        ),
        None => None,
    };
    let mut verified = agreement::verify_receipt(&json, &keys[0], text.as_deref());
    for key in &keys[1..] {
        if verified.is_ok() {
            break;
        }
        if let Ok(v) = agreement::verify_receipt(&json, key, text.as_deref()) {
            verified = Ok(v);
        }
    }
    match verified {
        Ok(v) => {
            let conditions = match (&v.receipt.conditions, &grant) {
                (None, _) => "none signed (format 1)".to_string(),
                (Some(c), None) => format!(
                    "signed ({}), not compared (no --grant)",
                    c.conditions_sha256
                ),
                (Some(c), Some(g)) => {
                    if c.grant_id != g.id || c.conditions_sha256 != g.conditions_sha256() {
                        println!(
                            "receipt INVALID: the grant's columns, filters, usage method or budgets \
                             are not the ones the receipt signed"
                        );
                        return Ok(ExitCode::FAILURE);
                    }
                    "match the grant".to_string()
                }
            };
            println!(
                "receipt OK: application {} signed by {} at {}, agreement v{} ({}), text {}, \
                 format {}, conditions {}",
                v.receipt.application_id,
                v.receipt.username,
                v.receipt.signed_at,
                v.receipt.agreement_version,
                v.receipt.agreement_sha256,
                if v.text_checked {
                    "checked"
                } else {
                    "not checked (unknown version, no --text)"
                },
                v.receipt.format,
                conditions
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("receipt INVALID: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn verify_release(
    data_dir: &Path,
    result: &Path,
    certificate: &Path,
    public_key: Option<&str>,
) -> CliResult {
    use enclave::release;
    let keys = platform_public_keys(data_dir, public_key)?;
    let file = std::fs::read(result)?;
    let json = std::fs::read(certificate)?;
    let verified = String::from_utf8(json)
        .map_err(|_| enclave::Error::InvalidArgument("the certificate is not UTF-8 text".into()))
        .and_then(|json| {
            // The current key's answer names the problem when none verifies.
            let first = release::verify(&json, &keys[0], Some(&file));
            if first.is_ok() {
                return first;
            }
            keys[1..]
                .iter()
                .find_map(|k| release::verify(&json, k, Some(&file)).ok())
                .map_or(first, Ok)
        });
    match verified {
        Ok(v) => {
            let c = &v.certificate;
            println!(
                "release OK: release {} of job {} (grant {}), {} rows, format {}, released {}, key {}",
                c.release_id,
                c.job_id,
                c.grant_id,
                c.result.rows,
                v.format.map_or("?", |f| f.as_str()),
                c.released_at,
                c.platform_key_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("release INVALID: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A random password for a new or reset account: 96 bits, hex.
fn password_from(stdin: bool) -> CliResult<(String, bool)> {
    if stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        return Ok((line.trim_end_matches(['\r', '\n']).to_string(), false));
    }
    if let Ok(p) = std::env::var("ANYU_NEW_PASSWORD") {
        return Ok((p, false));
    }
    Ok((enclave::identity::generate_password(), true))
}

/// The metadata store alone (no audit writer), for read-only commands.
async fn open_store(data_dir: &Path) -> CliResult<Store> {
    let dir = initialised(data_dir)?;
    let keyring = enclave::keyring::Keyring::open(&dir.keys())?;
    Ok(Store::open(&dir.meta_db(), &keyring).await?)
}

/// The organisation named `name` (by its normalised name), registered with
/// `credit_code` when it is new.
pub(crate) async fn organisation_for(
    domain: &Domain,
    actor: &Actor,
    name: &str,
    organisation_type: enclave::catalog::OrganisationType,
    credit_code: Option<String>,
) -> CliResult<enclave::identity::Organisation> {
    Ok(domain
        .organisation_for(
            actor,
            enclave::identity::NewOrganisation {
                name: name.to_string(),
                credit_code,
                organisation_type,
            },
        )
        .await?)
}

fn print_outcome(o: &enclave::domain::AccountOutcome) {
    use enclave::domain::AccountOutcome as O;
    match o {
        O::Done {
            user,
            one_time_code,
            code_expires_at,
        } => {
            println!(
                "{}: one-time code {one_time_code} (until {code_expires_at}); hand it to its owner \
                 in person: it signs in once, and setting their password asks for their 身份证号",
                user.username
            );
        }
        O::Requested { request } => println!(
            "request {} waits for another administrator (anyu user approve {})",
            request.id, request.id
        ),
        O::Refused { request } => println!("request {} refused", request.id),
    }
}

fn parse_enum<T: serde::de::DeserializeOwned>(what: &str, value: &str) -> CliResult<T> {
    serde_json::from_value(serde_json::Value::String(value.to_string()))
        .map_err(|_| format!("unknown {what} `{value}`").into())
}

async fn user(data_dir: &Path, config: &Config, cmd: UserCommand) -> CliResult {
    if let UserCommand::List = cmd {
        // Read-only: works beside a running server.
        let store = open_store(data_dir).await?;
        let users =
            enclave::identity::Identity::new(store.clone(), config.domain_options()?.identity)
                .list_users()
                .await;
        store.close().await;
        for u in users? {
            println!(
                "{:<20} {:<10} {:<9} {:<8} {}  {}",
                u.username,
                u.role.as_str(),
                if u.disabled { "disabled" } else { "active" },
                if u.verified { "verified" } else { "-" },
                u.real_name,
                u.organisation
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let domain = open(data_dir, config).await?;
    let result = user_change(&domain, cmd).await;
    domain.close().await?;
    result
}

async fn user_change(domain: &Domain, cmd: UserCommand) -> CliResult {
    let actor = Actor::operator();
    match cmd {
        UserCommand::Add {
            username,
            role,
            real_name,
            organisation,
            org_type,
            credit_code,
            resident_id,
            no_password_change,
            agencies,
            verified,
            credit_flags,
            password_stdin,
        } => {
            let (password, generated) = password_from(password_stdin)?;
            let org = organisation_for(
                domain,
                &actor,
                &organisation,
                parse_enum("organisation type", &org_type)?,
                credit_code,
            )
            .await?;
            let new = enclave::identity::NewUser {
                username,
                password: password.clone(),
                real_name,
                organisation_id: org.id,
                resident_id,
                role: role.parse()?,
                provider_agencies: agencies,
                verified,
                credit_flags: credit_flags
                    .iter()
                    .map(|f| parse_enum("credit flag", f))
                    .collect::<CliResult<Vec<_>>>()?,
                must_change_password: !no_password_change,
            };
            let user = domain.create_user(&actor, new).await?;
            println!("created {} ({})", user.username, user.role.as_str());
            if generated {
                println!("password: {password}");
            }
        }
        UserCommand::Disable { username } => {
            domain.disable_user(&actor, &username).await?;
            println!("disabled {username}; its sessions are ended");
        }
        UserCommand::ResetPassword {
            username,
            password_stdin: true,
        } => {
            let (password, _) = password_from(true)?;
            domain
                .set_password(&actor, &username, &password, true)
                .await?;
            println!(
                "password of {username} set; the next login must change it; \
                 its sessions and API tokens are ended"
            );
        }
        UserCommand::ResetPassword { username, .. } => {
            print_outcome(&domain.reset_password(&actor, &username).await?);
        }
        UserCommand::BindPerson {
            username,
            resident_id,
        } => {
            domain.bind_person(&actor, &username, &resident_id).await?;
            println!("{username} is bound to its person");
        }
        UserCommand::Requests => {
            for r in domain.account_requests(&actor).await? {
                println!(
                    "{}  {:<9} {:<15} {:<20} asked by {}{}",
                    r.id,
                    r.status,
                    r.kind,
                    r.username,
                    r.requested_by_name,
                    r.decided_by_name
                        .map(|d| format!(", decided by {d}"))
                        .unwrap_or_default()
                );
            }
        }
        UserCommand::Approve { request_id } => {
            print_outcome(
                &domain
                    .decide_account_request(&actor, &request_id, true)
                    .await?,
            );
        }
        UserCommand::Refuse { request_id } => {
            print_outcome(
                &domain
                    .decide_account_request(&actor, &request_id, false)
                    .await?,
            );
        }
        UserCommand::AddOrganisation {
            name,
            org_type,
            credit_code,
        } => {
            let org = domain
                .create_organisation(
                    &actor,
                    enclave::identity::NewOrganisation {
                        name,
                        credit_code,
                        organisation_type: parse_enum("organisation type", &org_type)?,
                    },
                )
                .await?;
            println!("registered {} ({})", org.name, org.id);
        }
        UserCommand::Organisations => {
            for o in domain.organisations(&actor).await? {
                println!(
                    "{}  {:<20} {}",
                    o.id,
                    o.credit_code.as_deref().unwrap_or("(no credit code)"),
                    o.name
                );
            }
        }
        UserCommand::List => return Err("listing accounts needs no audit writer".into()),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_quality(q: &enclave::ingest::QualityReport) {
    println!(
        "quality: {} ({} rows)",
        if q.passed { "passed" } else { "problems found" },
        q.rows
    );
    for c in &q.columns {
        if c.nulls + c.invalid_format + c.out_of_bounds + c.not_in_categories > 0 {
            println!(
                "  {:<24} nulls {:>8}  invalid format {:>6}  out of bounds {:>6}  unknown category {:>6}",
                c.name, c.nulls, c.invalid_format, c.out_of_bounds, c.not_in_categories
            );
        }
    }
    if let Some(p) = &q.privacy_unit {
        println!(
            "  privacy unit {}: {} distinct, {} rows share a unit, at most {} rows per unit",
            p.column, p.distinct_units, p.rows_with_duplicate_unit, p.max_rows_per_unit
        );
    }
    for w in &q.warnings {
        println!("  warning: {w}");
    }
}

/// Prints the newest `n` events as JSON lines, oldest first. Reads the log
/// read-only, so it works while a server holds it.
async fn audit_tail(data_dir: &Path, n: u64) -> CliResult {
    const PAGE: u64 = 5_000;
    let path = initialised(data_dir)?.audit_db();
    let mut newest = std::collections::VecDeque::new();
    let mut since = 0;
    loop {
        let filter = audit::AuditFilter {
            since_seq: Some(since),
            limit: Some(PAGE),
            ..Default::default()
        };
        let page = audit::list(&path, &filter).await?;
        let Some(last) = page.last() else { break };
        since = last.seq;
        for ev in page {
            newest.push_back(ev);
            if newest.len() as u64 > n {
                newest.pop_front();
            }
        }
    }
    for ev in &newest {
        println!("{}", serde_json::to_string(ev)?);
    }
    Ok(ExitCode::SUCCESS)
}

fn initialised(data_dir: &Path) -> CliResult<DataDir> {
    let dir = DataDir::new(data_dir);
    if !dir.is_initialised() {
        return Err(format!(
            "{} is not an initialised data directory (run `anyu init`)",
            data_dir.display()
        )
        .into());
    }
    dir.check_private()?;
    Ok(dir)
}

/// What `audit verify` trusts from outside the data directory.
struct Anchors {
    public_key: Option<String>,
    trusted_keys: Option<PathBuf>,
    heads: Vec<PathBuf>,
    witness_dir: Option<PathBuf>,
}

impl Anchors {
    /// The keys the log may be signed with; `None` when nothing is pinned.
    fn keys(&self) -> CliResult<Option<Vec<Vec<u8>>>> {
        let mut keys = Vec::new();
        if let Some(k) = &self.public_key {
            keys.push(hex::decode(k.trim()).map_err(|_| "--public-key must be hex")?);
        }
        if let Some(path) = &self.trusted_keys {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                keys.push(
                    hex::decode(line)
                        .map_err(|_| format!("{}: a key is not hex", path.display()))?,
                );
            }
            if keys.is_empty() {
                return Err(format!("{}: no key in the file", path.display()).into());
            }
        }
        Ok((!keys.is_empty()).then_some(keys))
    }
}

async fn audit_verify(data_dir: &Path, json: bool, anchors: Anchors, deep: bool) -> CliResult {
    let dir = initialised(data_dir)?;
    let in_dir = hex::decode(std::fs::read_to_string(dir.keys().join("signing.pub"))?.trim())?;
    let pinned = anchors.keys()?;
    let mut kept_problem = None;
    // The keys come from the chain: the one `platform.init` introduced and
    // each one a rotation event endorsed. A pinned key must be one of them;
    // the directory's own key is trusted only when nothing is pinned, and
    // then the answer says so.
    let schedule = match audit::key_schedule(&dir.audit_db()).await? {
        Ok(s) => s,
        Err(why) => {
            kept_problem = Some(why);
            let first = pinned.as_ref().map_or(&in_dir, |p| &p[0]);
            audit::KeySchedule::single(first)
        }
    };
    let report = audit::verify_keys(&dir.audit_db(), &schedule).await?;
    if report.is_ok()
        && kept_problem.is_none()
        && let Some(pinned) = &pinned
        && !pinned.iter().any(|k| schedule.contains(k))
    {
        // A log re-signed under another key fails here even when that key
        // is the one in the directory.
        kept_problem = Some(format!(
            "the checkpoints are signed by keys the chain introduced ({}), none of them pinned: \
             the platform key was swapped without a {} event",
            schedule
                .keys()
                .iter()
                .map(|(k, _)| audit::key_fingerprint(k))
                .collect::<Vec<_>>()
                .join(", "),
            audit::ROTATE_ACTION
        ));
    }
    // Heads kept outside the host: each must still be in the log.
    let mut heads = anchors.heads.clone();
    if let Some(w) = &anchors.witness_dir {
        heads.push(audit::witnessed_head_path(w));
    }
    for path in heads.iter().filter(|_| kept_problem.is_none()) {
        let kept = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Err(why) = audit::check_kept_head(&dir.audit_db(), &schedule, &kept).await? {
            kept_problem = Some(format!("against a kept head: {}: {why}", path.display()));
            break;
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if let Some(p) = &report.problem {
        println!(
            "audit chain BROKEN at event {}: {:?}: {}",
            p.seq, p.kind, p.message
        );
    } else if let Some(why) = &kept_problem {
        println!("audit chain BROKEN: {why}");
    } else {
        println!(
            "audit chain OK: {} events, {} signed checkpoints, head {} {}",
            report.events, report.checkpoints, report.head_seq, report.head_hash
        );
        if schedule.keys().len() > 1 {
            println!(
                "  signing key rotated {} time(s); current key {} since event {}",
                schedule.keys().len() - 1,
                audit::key_fingerprint(schedule.current()),
                schedule.keys()[schedule.keys().len() - 1].1
            );
        }
        if pinned.is_none() {
            println!(
                "  not anchored: the key came from {} itself; pin it with --public-key \
                 (printed at `anyu init`, served at /api/platform/keys)",
                dir.keys().join("signing.pub").display()
            );
        } else if schedule.current() != in_dir.as_slice() {
            println!(
                "  note: {} holds a key the chain did not introduce last",
                dir.keys().join("signing.pub").display()
            );
        } else if !pinned.iter().flatten().any(|k| *k == in_dir) {
            println!(
                "  note: {} holds a key that is not pinned",
                dir.keys().join("signing.pub").display()
            );
        }
        if !heads.is_empty() {
            println!("  {} kept head(s) found in the log", heads.len());
        }
    }
    if json && let Some(why) = &kept_problem {
        eprintln!("audit chain BROKEN: {why}");
    }
    let mut discrepancies = 0;
    if deep {
        // A MAC failure while loading rows is itself a finding, named by row.
        let store = open_store(data_dir).await?;
        let found = enclave::domain::cross_check(&store, &dir.audit_db()).await;
        store.close().await;
        match found {
            Ok(found) => {
                for d in &found {
                    println!("metadata DISCREPANCY: {} {}", d.kind, d.id);
                }
                if found.is_empty() {
                    println!("  metadata consistent with the chain");
                }
                discrepancies = found.len();
            }
            Err(e) if e.code() == "metadata_tampered" => {
                println!("metadata DISCREPANCY: {e}");
                discrepancies = 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(
        if report.is_ok() && kept_problem.is_none() && discrepancies == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}
