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
    let sample = match demo_application(&domain, &accounts).await {
        Ok(a) => a,
        Err(e) => {
            domain.close().await?;
            return Err(e);
        }
    };
    println!();
    println!("Demo accounts (passwords are new on every `anyu demo` run):");
    println!("  {:<10} {:<16} password", "role", "username");
    for (role, username, password) in &accounts {
        println!("  {role:<10} {username:<16} {password}");
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
            println!("  console         http://{addr}/console  (sign in with an account above)");
            println!("  catalog         http://{addr}/api/catalog");
            println!("  one dataset     http://{addr}/api/catalog/social_insurance");
            println!("  search          http://{addr}/api/catalog?q=医疗&open_type=conditional");
            println!("  API description http://{addr}/api/openapi.json");
            println!("  health          http://{addr}/healthz");
            println!("  sign in         curl -X POST http://{addr}/api/auth/login \\");
            println!("                    -H 'content-type: application/json' \\");
            println!(
                "                    -d '{{\"username\":\"demo_auditor\",\"password\":\"…\"}}'"
            );
            println!(
                "  then            curl -H 'authorization: Bearer <token>' http://{addr}/api/audit/events"
            );
            println!();
            if let Some(id) = &sample {
                println!(
                    "A sample application (social_insurance, submitted by demo_researcher) waits"
                );
                println!(
                    "for review. With T=<token of demo_admin>, S=<token of demo_steward>, R=<of demo_researcher>:"
                );
                let base = format!("http://{addr}/api/applications/{id}");
                println!(
                    "  curl -X POST -H \"authorization: Bearer $T\" {base}/completeness/start"
                );
                println!("  curl -X POST -H \"authorization: Bearer $T\" {base}/completeness/pass");
                println!("  curl -X POST -H \"authorization: Bearer $S\" {base}/approve");
                println!("  curl -X POST -H \"authorization: Bearer $T\" {base}/approve");
                println!(
                    "  curl -H \"authorization: Bearer $R\" {base}/agreement      # then POST …/agreement/sign"
                );
                println!();
            }
            println!("Verify the audit log:  anyu audit verify --data-dir {shown_dir}");
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
    real_name: &'static str,
    organisation: &'static str,
    org_type: &'static str,
    agencies: &'static [&'static str],
}

const DEMO_ACCOUNTS: &[DemoAccount] = &[
    DemoAccount {
        role: "researcher",
        username: "demo_researcher",
        real_name: "李研究",
        organisation: "深圳大学",
        org_type: "university",
        agencies: &[],
    },
    DemoAccount {
        role: "steward",
        username: "demo_steward",
        real_name: "王数据",
        organisation: "深圳市社会保险基金管理局",
        org_type: "government",
        agencies: &["深圳市社会保险基金管理局", "深圳市医疗保障局"],
    },
    DemoAccount {
        role: "admin",
        username: "demo_admin",
        real_name: "张平台",
        organisation: "深圳市政务服务数据管理局",
        org_type: "government",
        agencies: &[],
    },
    DemoAccount {
        role: "auditor",
        username: "demo_auditor",
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
    for (i, a) in DEMO_ACCOUNTS.iter().enumerate() {
        let password = enclave::identity::generate_password();
        if domain.identity().get_user(a.username).await.is_ok() {
            domain
                .set_password(&actor, a.username, &password, false)
                .await?;
        } else {
            let (credit_code, resident_id) = demo_codes(i as u64);
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

/// On a fresh demo directory, a project and a submitted application of the
/// demo researcher, so the reviewers' queues are not empty. Returns its id.
async fn demo_application(
    domain: &Domain,
    accounts: &[(String, String, String)],
) -> CliResult<Option<String>> {
    let Some((_, username, password)) = accounts.iter().find(|(r, _, _)| r == "researcher") else {
        return Ok(None);
    };
    let session = domain.login(username, password, "host").await?;
    let researcher = domain.authenticate(&session.token).await?;
    if !domain.projects_for(&researcher).await?.is_empty() {
        domain.logout(&researcher, &session.token).await?;
        return Ok(None);
    }
    let project = domain
        .create_project(
            &researcher,
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
    let draft = enclave::access::ApplicationDraft {
        project_id: project.id.clone(),
        datasets: vec![enclave::access::DatasetRequest {
            dataset_id: "social_insurance".into(),
            columns: [
                "person_id",
                "sex",
                "district",
                "contribution_base",
                "months_contributed",
            ]
            .map(String::from)
            .to_vec(),
            version_policy: enclave::access::VersionPolicy::Pinned,
            row_filter: None,
        }],
        usage_method: enclave::catalog::UsageMethod::Invisible,
        purpose: "统计各区、各性别缴费基数的分布，评估缴费基数下限调整的影响。".into(),
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
    let app = domain.create_application(&researcher, draft).await?;
    let id = app.application.id.clone();
    domain.submit_application(&researcher, &id).await?;
    domain.logout(&researcher, &session.token).await?;
    println!("created a sample application {id} (submitted)");
    Ok(Some(id))
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
