//! `anyu demo`: a working domain from a fresh checkout in one command.
//!
//! Initialises the data directory (or reuses it), generates the Shenzhen-style
//! sample data once, imports every sample dataset that has no version yet, and
//! serves. The sample manifests are compiled into the binary so the demo does
//! not depend on the working directory.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use enclave::ingest::ImportOptions;
use enclave::{Actor, DataDir, Domain};
use tokio::sync::oneshot;

use crate::CliResult;
use crate::config::{CONFIG_FILE, Config, DEFAULT_CONFIG_TOML};

/// `anyu demo`: its flags.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long, env = "ANYU_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Persons in the generated social-insurance sample (other datasets scale with it).
    #[arg(long, env = "ANYU_DEMO_ROWS", default_value_t = 20_000)]
    pub rows: u64,
    /// Seed of the sample data generator.
    #[arg(long, env = "ANYU_DEMO_SEED", default_value_t = 20_260_101)]
    pub seed: u64,
    /// Prepare the data directory and exit without serving.
    #[arg(long)]
    pub no_serve: bool,
}

pub async fn run(data_dir: &Path, mut config: Config, args: DemoArgs) -> CliResult {
    let dir = DataDir::new(data_dir);
    let domain = if dir.is_initialised() {
        println!("reusing {}", data_dir.display());
        Domain::open(data_dir, config.domain_options()?).await?
    } else {
        println!("initialising {}", data_dir.display());
        let d = Domain::init(data_dir, config.domain_options()?).await?;
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
    let accounts = match demo_accounts(&domain).await {
        Ok(a) => a,
        Err(e) => {
            domain.close().await?;
            return Err(e);
        }
    };
    let samples = match demo_applications(&domain, &accounts).await {
        Ok(a) => a,
        Err(e) => {
            domain.close().await?;
            return Err(e);
        }
    };
    println!();
    println!("Demo accounts (passwords are new on every `anyu demo` run):");
    println!("  {:<10} {:<22} password", "role", "username");
    for (role, username, password) in &accounts {
        println!("  {role:<10} {username:<22} {password}");
    }
    if args.no_serve {
        domain.close().await?;
        return Ok(ExitCode::SUCCESS);
    }
    // Sessions for the walk-through, so its commands can be pasted as they are.
    let tokens = match demo_tokens(&domain, &accounts).await {
        Ok(t) => t,
        Err(e) => {
            domain.close().await?;
            return Err(e);
        }
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let (tx, rx) = oneshot::channel();
    let shown_dir = data_dir.display().to_string();
    let anyu = anyu_command();
    tokio::spawn(async move {
        if let Ok(addr) = rx.await {
            println!();
            println!("Open:");
            println!("  console         http://{addr}/console  (sign in with an account above)");
            println!("  catalog         http://{addr}/api/catalog");
            println!("  one dataset     http://{addr}/api/catalog/social_insurance");
            println!("  search          http://{addr}/api/catalog?q=医疗&open_type=conditional");
            println!("  API description http://{addr}/api/openapi.json");
            println!("  health          http://{addr}/healthz");
            println!();
            println!(
                "Walk through the demo (README.md, \"Walk through the demo\"): paste these first;"
            );
            println!(
                "T, S, R and U are 8-hour sessions of demo_admin, demo_steward, demo_researcher and"
            );
            println!(
                "demo_auditor (sign in yourself with POST /api/auth/login and a password above)."
            );
            println!("  export BASE=http://{addr}");
            for (var, token) in &tokens {
                println!("  export {var}={token}");
            }
            for s in &samples {
                println!(
                    "  export {}={}   # {}, usage `{}`, {}",
                    s.var, s.id, s.dataset, s.usage, s.status
                );
            }
            let submitted: Vec<String> = samples
                .iter()
                .filter(|s| s.status == "submitted")
                .map(|s| format!("${}", s.var))
                .collect();
            if !submitted.is_empty() {
                println!("Then each submitted application through its review:");
                println!("  for APP in {}; do", submitted.join(" "));
                for (who, step) in [
                    ("T", "completeness/start"),
                    ("T", "completeness/pass"),
                    ("S", "approve"),
                    ("T", "approve"),
                ] {
                    println!(
                        "    curl -s -X POST -H \"authorization: Bearer ${who}\" $BASE/api/applications/$APP/{step} | jq .status"
                    );
                }
                println!("  done");
            }
            println!();
            println!("Verify the audit log:  {anyu} audit verify --data-dir {shown_dir}");
            println!("Stop with Ctrl-C (the audit log writes a signed checkpoint on shutdown).");
        }
    });
    let listen = config.listen;
    crate::server::serve(domain, listen, &config, Some(tx)).await?;
    Ok(ExitCode::SUCCESS)
}

/// One demo account per role.
struct DemoAccount {
    role: &'static str,
    username: &'static str,
    /// Which made-up credit code and 身份证号 (`demo_codes`): fixed per
    /// account, so accounts added later never reuse an earlier one's.
    codes: u64,
    real_name: &'static str,
    organisation: &'static str,
    org_type: &'static str,
    agencies: &'static [&'static str],
}

/// One steward per sample provider, so an application joining two providers'
/// data can be approved by the demo's people (each steward votes once).
const DEMO_ACCOUNTS: &[DemoAccount] = &[
    DemoAccount {
        role: "researcher",
        username: "demo_researcher",
        codes: 0,
        real_name: "李研究",
        organisation: "深圳大学",
        org_type: "university",
        agencies: &[],
    },
    DemoAccount {
        role: "steward",
        username: "demo_steward",
        codes: 1,
        real_name: "王数据",
        organisation: "深圳市社会保险基金管理局",
        org_type: "government",
        agencies: &["深圳市社会保险基金管理局"],
    },
    DemoAccount {
        role: "steward",
        username: "demo_steward_medical",
        codes: 4,
        real_name: "赵医保",
        organisation: "深圳市医疗保障局",
        org_type: "government",
        agencies: &["深圳市医疗保障局"],
    },
    DemoAccount {
        role: "steward",
        username: "demo_steward_market",
        codes: 5,
        real_name: "孙市监",
        organisation: "深圳市市场监督管理局",
        org_type: "government",
        agencies: &["深圳市市场监督管理局"],
    },
    DemoAccount {
        role: "steward",
        username: "demo_steward_civil",
        codes: 6,
        real_name: "周民政",
        organisation: "深圳市民政局",
        org_type: "government",
        agencies: &["深圳市民政局"],
    },
    DemoAccount {
        role: "admin",
        username: "demo_admin",
        codes: 2,
        real_name: "张平台",
        organisation: "深圳市政务服务数据管理局",
        org_type: "government",
        agencies: &[],
    },
    DemoAccount {
        role: "auditor",
        username: "demo_auditor",
        codes: 3,
        real_name: "陈审计",
        organisation: "深圳市审计局",
        org_type: "government",
        agencies: &[],
    },
];

/// A made-up but well-formed credit code and 身份证号 for demo account `i`.
fn demo_codes(i: u64) -> (String, String) {
    use anyu_datasets::codes::{credit_code, org_body, resident_id};
    let code = credit_code(440300, org_body(2026, i, true));
    let birth =
        chrono::NaiveDate::from_ymd_opt(1980, 1, 1).expect("date") + chrono::Days::new(i * 400);
    let id = resident_id(440305, birth, 100 + i as u16);
    (
        String::from_utf8_lossy(&code).into_owned(),
        String::from_utf8_lossy(&id).into_owned(),
    )
}

/// Creates the demo accounts, or gives existing ones a fresh password (only
/// hashes are stored, so a password cannot be shown again). Audited.
async fn demo_accounts(domain: &Domain) -> CliResult<Vec<(String, String, String)>> {
    let actor = Actor::operator();
    let mut out = Vec::new();
    for a in DEMO_ACCOUNTS {
        let password = enclave::identity::generate_password();
        if domain.identity().get_user(a.username).await.is_ok() {
            domain
                .set_password(&actor, a.username, &password, false)
                .await?;
        } else {
            let (credit_code, resident_id) = demo_codes(a.codes);
            let org = crate::cli::organisation_for(
                domain,
                &actor,
                a.organisation,
                serde_json::from_value(serde_json::Value::String(a.org_type.into()))?,
                Some(credit_code),
            )
            .await?;
            let new = enclave::identity::NewUser {
                username: a.username.into(),
                password: password.clone(),
                real_name: a.real_name.into(),
                organisation_id: org.id,
                resident_id,
                role: a.role.parse()?,
                provider_agencies: a.agencies.iter().map(|s| (*s).to_string()).collect(),
                verified: true,
                credit_flags: Vec::new(),
                // The demo prints each password for its one user: the demo.
                must_change_password: false,
            };
            domain.create_user(&actor, new).await?;
        }
        out.push((a.role.to_string(), a.username.to_string(), password));
    }
    Ok(out)
}

/// A sample application of the demo researcher, as the demo prints it.
struct SampleApplication {
    /// The shell variable the walk-through uses for it.
    var: &'static str,
    id: String,
    dataset: String,
    usage: String,
    status: String,
}

/// The usage methods of the two sample applications, in walk-through order:
/// SQL with only aggregates leaving, and a model reading rows inside.
const SAMPLE_USAGES: [(&str, enclave::catalog::UsageMethod); 2] = [
    ("APP1", enclave::catalog::UsageMethod::Invisible),
    ("APP2", enclave::catalog::UsageMethod::ModelResults),
];

/// On a fresh demo directory, a project with two submitted applications of
/// the demo researcher (one per usage method the README walks through), so
/// the reviewers' queues are not empty; on a reused one, the ones there are.
async fn demo_applications(
    domain: &Domain,
    accounts: &[(String, String, String)],
) -> CliResult<Vec<SampleApplication>> {
    let Some((_, username, password)) = accounts.iter().find(|(_, u, _)| u == "demo_researcher")
    else {
        return Ok(Vec::new());
    };
    let session = domain.login(username, password, "host").await?;
    let researcher = domain.authenticate(&session.token).await?;
    if domain.projects_for(&researcher).await?.is_empty() {
        create_sample_applications(domain, &researcher).await?;
    }
    let mut found = domain.applications_for(&researcher).await?;
    found.sort_by(|a, b| a.id.cmp(&b.id));
    domain.logout(&researcher, &session.token).await?;
    let mut out = Vec::new();
    for (var, usage) in SAMPLE_USAGES {
        if let Some(a) = found.iter().find(|a| a.usage_method == usage) {
            out.push(SampleApplication {
                var,
                id: a.id.clone(),
                dataset: a.datasets.join(", "),
                usage: json_name(&usage),
                status: a.status.as_str().to_string(),
            });
        }
    }
    Ok(out)
}

fn json_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

async fn create_sample_applications(
    domain: &Domain,
    researcher: &enclave::identity::Principal,
) -> CliResult<()> {
    let project = domain
        .create_project(
            researcher,
            enclave::access::NewProject {
                title: "深圳各区社保缴费基数差异研究".into(),
                scenario_description:
                    "分析各区参保人员缴费基数的分布及其随年龄的变化，为社保政策评估提供依据。"
                        .into(),
                scenario_category: "public_policy".into(),
                members: Vec::new(),
            },
        )
        .await?;
    let start = domain.today();
    for (_, usage) in SAMPLE_USAGES {
        let (purpose, columns) = match usage {
            enclave::catalog::UsageMethod::ModelResults => (
                "以回归模型估计缴费月数对缴费基数的影响；模型在域内运行，只导出模型结果。",
                &["contribution_base", "months_contributed"][..],
            ),
            _ => (
                "统计各区、各性别缴费基数的分布，评估缴费基数下限调整的影响。",
                &[
                    "person_id",
                    "sex",
                    "district",
                    "contribution_base",
                    "months_contributed",
                ][..],
            ),
        };
        let draft = enclave::access::ApplicationDraft {
            project_id: project.id.clone(),
            datasets: vec![enclave::access::DatasetRequest {
                dataset_id: "social_insurance".into(),
                columns: columns.iter().map(|c| (*c).to_string()).collect(),
                version_policy: enclave::access::VersionPolicy::Pinned,
                row_filter: None,
            }],
            usage_method: usage,
            purpose: purpose.into(),
            purpose_is_research: true,
            period_start: start,
            period_end: start + chrono::Days::new(180),
            security_measures: "仅在安全域内分析；只导出经审核的汇总结果；不尝试再识别。".into(),
            admission: enclave::access::AdmissionDetails {
                brings_own_data: false,
                own_data_description: None,
                development_environment: "SQL；WebAssembly 模型".into(),
                cpu_cores: 2,
                memory_gib: 8,
                storage_gib: 10,
                accepts_domain_rules: true,
            },
            agreement_version: enclave::access::agreement::current().version,
        };
        let app = domain.create_application(researcher, draft).await?;
        let id = app.application.id.clone();
        domain.submit_application(researcher, &id).await?;
        println!(
            "created a sample application {id} (usage `{}`, submitted)",
            json_name(&usage)
        );
    }
    Ok(())
}

/// Login sessions of the walk-through's four people, as shell variables.
async fn demo_tokens(
    domain: &Domain,
    accounts: &[(String, String, String)],
) -> CliResult<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    for (var, username) in [
        ("T", "demo_admin"),
        ("S", "demo_steward"),
        ("R", "demo_researcher"),
        ("U", "demo_auditor"),
    ] {
        if let Some((_, _, password)) = accounts.iter().find(|(_, u, _)| u == username) {
            out.push((var, domain.login(username, password, "host").await?.token));
        }
    }
    Ok(out)
}

/// How to call this binary in the printed lines: `anyu` when installed,
/// `cargo run --` when run from a build directory (a newcomer has no `anyu`
/// on the PATH until `cargo install --path .`).
fn anyu_command() -> String {
    let built = std::env::var_os("CARGO_MANIFEST_DIR").is_some()
        || std::env::current_exe()
            .ok()
            .is_some_and(|p| p.components().any(|c| c.as_os_str() == "target"));
    if built { "cargo run --" } else { "anyu" }.to_string()
}

async fn import_samples(domain: &Domain, data_dir: &Path, args: &DemoArgs) -> CliResult<()> {
    // Earlier versions generated into the data directory and left the
    // plaintext person-level files there.
    let old = data_dir.join("samples");
    if old.is_dir() {
        std::fs::remove_dir_all(&old)?;
        println!("removed the plaintext samples left in {}", old.display());
    }
    let mut missing = Vec::new();
    for (id, _) in anyu_datasets::SAMPLE_MANIFESTS {
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

    // Plaintext person-level files never rest in the data directory: they are
    // generated in a temporary directory elsewhere, removed when this returns.
    let tmp = tempfile::Builder::new()
        .prefix("anyu-demo-samples-")
        .tempdir()?;
    let samples = tmp.path().to_path_buf();
    let manifests = samples.join("manifests");
    std::fs::create_dir_all(&manifests)?;
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
    for (id, text) in anyu_datasets::SAMPLE_MANIFESTS {
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
    tmp.close()?;
    Ok(())
}
