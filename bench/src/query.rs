//! `anyu bench query` and `anyu bench http`: the SQL path against bare DataFusion.
//!
//! - `query`: eight aggregate queries over `social_insurance` through the whole
//!   enclave path (grant check, session, policy, threshold rewrite, execution,
//!   disclosure checks, sealed candidate, audit) versus the same SQL in a bare
//!   DataFusion context over the same encrypted version; interleaved runs, the
//!   median ratio per query, and the median over queries. Then `medical_claims`
//!   (persons repeat) against the best hand-written SQL giving the same
//!   protection: per-person pre-aggregation with a HAVING on persons.
//! - `http`: the fixed overhead of a small query through the HTTP API (submit,
//!   long-poll to completion) over the same query in bare DataFusion.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use enclave::access::{
    AdmissionDetails, ApplicationDraft, DatasetRequest, NewProject, VersionPolicy,
};
use enclave::catalog::{OrganisationType, UsageMethod};
use enclave::domain::ReviewStep;
use enclave::identity::{IdentityPolicy, NewUser, Principal, Role};
use enclave::ingest::ImportOptions;
use enclave::{Actor, Domain, DomainOptions};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::BenchResult;

/// The eight representative queries.
pub const QUERIES: [&str; 8] = [
    "SELECT district, count(*) AS n FROM social_insurance GROUP BY district",
    "SELECT district, sex, avg(contribution_base) AS mean FROM social_insurance GROUP BY district, sex",
    "SELECT sex, sum(contribution_base) AS total, count(*) AS n FROM social_insurance GROUP BY sex",
    "SELECT date_part('year', birth_date) AS y, avg(months_contributed) AS m FROM social_insurance GROUP BY 1",
    "SELECT district, approx_percentile_cont(contribution_base, 0.5) AS p50 FROM social_insurance GROUP BY district",
    "SELECT district, stddev(contribution_base) AS sd, avg(contribution_base) AS mean FROM social_insurance GROUP BY district",
    "SELECT count(*) AS n, avg(contribution_base) AS mean FROM social_insurance WHERE months_contributed > 120",
    "SELECT district, count(DISTINCT employer_credit_code) AS employers FROM social_insurance GROUP BY district",
];

const CLAIMS_QUERY: &str = "SELECT hospital, icd10_chapter, count(*) AS claims, avg(amount) AS mean \
     FROM medical_claims GROUP BY hospital, icd10_chapter";

/// The same protection written by hand: per-person pre-aggregation, then a
/// HAVING on persons (threshold 20 for medical_claims).
const CLAIMS_BY_HAND: &str = "SELECT hospital, icd10_chapter, sum(c) AS claims, sum(s) / sum(n) AS mean, count(*) AS persons \
     FROM (SELECT hospital, icd10_chapter, person_id, count(*) AS c, sum(amount) AS s, count(amount) AS n \
           FROM medical_claims GROUP BY hospital, icd10_chapter, person_id) \
     GROUP BY hospital, icd10_chapter HAVING count(*) >= 20";

/// The naive form, for context: COUNT(DISTINCT) beside the aggregates.
const CLAIMS_NAIVE: &str = "SELECT hospital, icd10_chapter, count(*) AS claims, avg(amount) AS mean \
     FROM medical_claims GROUP BY hospital, icd10_chapter HAVING count(DISTINCT person_id) >= 20";

#[derive(Debug, Serialize)]
pub struct QueryFigure {
    pub sql: String,
    pub enclave_median_ms: f64,
    pub bare_median_ms: f64,
    pub ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct QueryBench {
    pub queries: Vec<QueryFigure>,
    pub median_ratio: f64,
    pub claims_enclave_ms: f64,
    pub claims_by_hand_ms: f64,
    pub claims_naive_ms: f64,
    pub claims_ratio: f64,
}

#[derive(Debug, Serialize)]
pub struct HttpBench {
    pub http_median_ms: f64,
    pub bare_median_ms: f64,
    pub overhead_ms: f64,
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(crate) struct Setup {
    pub(crate) domain: Arc<Domain>,
    pub(crate) researcher: Principal,
    /// Reads jobs as stored (the requester's view withholds counts).
    pub(crate) admin: Principal,
    researcher_password: String,
    pub(crate) grants: Vec<String>,
}

/// Persons and organisations of the benchmark's accounts, one each.
static NEXT_PERSON: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);

async fn user(
    domain: &Domain,
    name: &str,
    role: Role,
    org: &str,
    agencies: &[&str],
) -> BenchResult<String> {
    let password = enclave::identity::generate_password();
    let kind = if role == Role::Researcher {
        OrganisationType::University
    } else {
        OrganisationType::Government
    };
    let seq = NEXT_PERSON.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let code = anyu_datasets::codes::credit_code(
        440300,
        anyu_datasets::codes::org_body(77, u64::from(seq), true),
    );
    let org_id = domain
        .organisation_for(
            &Actor::operator(),
            enclave::identity::NewOrganisation {
                name: org.to_string(),
                credit_code: Some(String::from_utf8_lossy(&code).into_owned()),
                organisation_type: kind,
            },
        )
        .await?
        .id;
    domain
        .create_user(
            &Actor::operator(),
            NewUser {
                username: name.into(),
                password: password.clone(),
                real_name: "基准".into(),
                organisation_id: org_id,
                resident_id: String::from_utf8_lossy(&anyu_datasets::codes::resident_id(
                    440305,
                    chrono::NaiveDate::from_ymd_opt(1985, 1, 1).expect("date"),
                    seq,
                ))
                .into_owned(),
                role,
                provider_agencies: agencies.iter().map(|s| s.to_string()).collect(),
                verified: true,
                credit_flags: Vec::new(),
                must_change_password: false,
            },
        )
        .await?;
    Ok(password)
}

async fn principal(domain: &Domain, name: &str, password: &str) -> BenchResult<Principal> {
    let s = domain.login(name, password, "host").await?;
    Ok(domain.authenticate(&s.token).await?)
}

/// A data directory with the given sample datasets imported and one grant per
/// dataset for a researcher (approved by the provider's steward and an admin).
pub(crate) async fn setup(work: &Path, samples: &Path, datasets: &[&str]) -> BenchResult<Setup> {
    let mut imports = Vec::new();
    for id in datasets {
        let text = match *id {
            // The DP benchmark runs many ε = 1 queries on one grant.
            "pums" => anyu_datasets::PUMS_MANIFEST
                .replace("epsilon_budget = 10.0", "epsilon_budget = 10000.0")
                .replace("delta_budget = 1e-6", "delta_budget = 0.5"),
            _ => anyu_datasets::SAMPLE_MANIFESTS
                .iter()
                .find(|(m, _)| m == id)
                .map(|(_, t)| t.to_string())
                .ok_or("unknown sample dataset")?,
        };
        imports.push((text, samples.join(format!("{id}.csv"))));
    }
    setup_with(work, &imports).await
}

/// [`setup`] for any (manifest text, data file) pairs.
pub(crate) async fn setup_with(work: &Path, imports: &[(String, PathBuf)]) -> BenchResult<Setup> {
    let root = work.join("domain");
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    let options = DomainOptions {
        identity: IdentityPolicy::default().with_insecure_fast_hashing(),
        // The bare baseline has no memory limit: give jobs as much, so neither spills.
        jobs: enclave::domain::JobOptions {
            memory_bytes: 16 << 30,
            ..Default::default()
        },
        ..DomainOptions::default()
    };
    let mut options = options;
    options.access.default_budgets.epsilon = 10_000.0;
    options.access.default_budgets.delta = 0.5;
    let domain = Domain::init(&root, options).await?;
    let manifests = work.join("manifests");
    std::fs::create_dir_all(&manifests)?;
    let mut datasets = Vec::new();
    for (text, data) in imports {
        let id = text
            .parse::<toml::Table>()?
            .get("dataset")
            .and_then(|d| d.get("id"))
            .and_then(|i| i.as_str())
            .ok_or("manifest without dataset.id")?
            .to_string();
        let m = manifests.join(format!("{id}.toml"));
        std::fs::write(&m, text)?;
        domain
            .import_dataset(
                &Actor::operator(),
                &m,
                data,
                &ImportOptions::default(),
                None,
            )
            .await?;
        datasets.push(id);
    }
    let rp = user(
        &domain,
        "bench_researcher",
        Role::Researcher,
        "深圳大学",
        &[],
    )
    .await?;
    let si = "深圳市社会保险基金管理局";
    let mc = "深圳市医疗保障局";
    let census = "美国人口普查局";
    let sp = user(
        &domain,
        "bench_steward",
        Role::Steward,
        si,
        &[si, mc, census],
    )
    .await?;
    let ap = user(&domain, "bench_admin", Role::Admin, "平台", &[]).await?;
    let researcher = principal(&domain, "bench_researcher", &rp).await?;
    let steward = principal(&domain, "bench_steward", &sp).await?;
    let admin = principal(&domain, "bench_admin", &ap).await?;
    let mut grants = Vec::new();
    for id in &datasets {
        let project = domain
            .create_project(
                &researcher,
                NewProject {
                    title: "基准测试".into(),
                    scenario_description: "测量安全域查询路径相对裸 DataFusion 的开销。".into(),
                    scenario_category: "academic_research".into(),
                    members: Vec::new(),
                },
            )
            .await?;
        let record = domain.store().dataset(id).await?.ok_or("dataset missing")?;
        let draft = ApplicationDraft {
            project_id: project.id.clone(),
            datasets: vec![DatasetRequest {
                dataset_id: id.to_string(),
                columns: record
                    .manifest
                    .columns
                    .iter()
                    .map(|c| c.name.clone())
                    .collect(),
                version_policy: VersionPolicy::Pinned,
                row_filter: None,
            }],
            usage_method: UsageMethod::Invisible,
            purpose: "基准测试：测量查询路径的开销。".into(),
            purpose_is_research: true,
            period_start: domain.today(),
            period_end: domain.today() + chrono::Days::new(30),
            security_measures: "仅在安全域内运行基准查询。".into(),
            admission: AdmissionDetails {
                brings_own_data: false,
                own_data_description: None,
                development_environment: "SQL".into(),
                cpu_cores: 2,
                memory_gib: 8,
                storage_gib: 10,
                accepts_domain_rules: true,
            },
            agreement_version: enclave::access::agreement::current().version,
        };
        let app = domain.create_application(&researcher, draft).await?;
        let aid = app.application.id;
        domain.submit_application(&researcher, &aid).await?;
        domain
            .review_application(&admin, &aid, ReviewStep::StartCompletenessCheck)
            .await?;
        domain
            .review_application(&admin, &aid, ReviewStep::CompletenessPassed)
            .await?;
        for who in [&steward, &admin] {
            domain
                .review_application(
                    who,
                    &aid,
                    ReviewStep::Approve {
                        provider: None,
                        conditions: Default::default(),
                    },
                )
                .await?;
        }
        let text = domain.agreement_text(&researcher, &aid).await?;
        let (_, grant) = domain
            .sign_agreement(&researcher, &aid, &text.sha256)
            .await?;
        grants.push(grant.id);
    }
    Ok(Setup {
        domain: Arc::new(domain),
        researcher,
        admin,
        researcher_password: rp,
        grants,
    })
}

/// A bare DataFusion context over the same encrypted versions the domain holds.
pub(crate) async fn bare(
    domain: &Domain,
    datasets: &[&str],
) -> BenchResult<datafusion::prelude::SessionContext> {
    let ctx = enclave::storage::session_context(Arc::clone(domain.keyring()));
    for id in datasets {
        let v = domain
            .store()
            .versions(id)
            .await?
            .into_iter()
            .max_by_key(|v| v.version)
            .ok_or("no version")?;
        enclave::storage::register_version(&ctx, id, &domain.data_dir().root().join(&v.dir))
            .await?;
    }
    Ok(ctx)
}

pub(crate) async fn time_bare(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
) -> BenchResult<f64> {
    let t = Instant::now();
    let batches = ctx.sql(sql).await?.collect().await?;
    std::hint::black_box(batches);
    Ok(ms(t.elapsed()))
}

pub(crate) async fn time_enclave(s: &Setup, grant: &str, sql: &str) -> BenchResult<f64> {
    let t = Instant::now();
    let job = s.domain.submit_job(&s.researcher, grant, sql).await?;
    let done = s
        .domain
        .wait_job(&s.admin, &job.id, Duration::from_secs(600))
        .await?
        .full()
        .ok_or("the admin sees a job as stored")?;
    let elapsed = ms(t.elapsed());
    if done.job.status.as_str() != "pending_review" {
        return Err(format!(
            "benchmark job ended {}: {:?}",
            done.job.status.as_str(),
            done.job.error_code
        )
        .into());
    }
    Ok(elapsed)
}

/// The query benchmark (the samples must hold social_insurance and medical_claims).
pub async fn query(work: &Path, samples: &Path, repeat: usize) -> BenchResult<QueryBench> {
    println!("query:     preparing a domain (imports of social_insurance and medical_claims) ...");
    let s = setup(work, samples, &["social_insurance", "medical_claims"]).await?;
    let ctx = bare(&s.domain, &["social_insurance", "medical_claims"]).await?;
    let (si, mc) = (s.grants[0].clone(), s.grants[1].clone());
    let repeat = repeat.max(3);
    let mut figures = Vec::new();
    for sql in QUERIES {
        // Warm both sides once.
        time_enclave(&s, &si, sql).await?;
        time_bare(&ctx, sql).await?;
        let (mut e, mut b) = (Vec::new(), Vec::new());
        for _ in 0..repeat {
            e.push(time_enclave(&s, &si, sql).await?);
            b.push(time_bare(&ctx, sql).await?);
        }
        let (em, bm) = (median(&mut e), median(&mut b));
        println!(
            "query:     {:>8.1} ms enclave / {:>8.1} ms bare = {:.3}  {sql}",
            em,
            bm,
            em / bm
        );
        figures.push(QueryFigure {
            sql: sql.to_string(),
            enclave_median_ms: em,
            bare_median_ms: bm,
            ratio: em / bm,
        });
    }
    let mut ratios: Vec<f64> = figures.iter().map(|f| f.ratio).collect();
    let median_ratio = median(&mut ratios);
    println!(
        "query:     median ratio over {} queries: {median_ratio:.3}",
        figures.len()
    );

    if std::env::var_os("ANYU_BENCH_EXPLAIN").is_some() {
        // Diagnostics: the rewritten plan and the by-hand one, with metrics.
        let grant = s.domain.grant(&mc).await?;
        let session = s.domain.query_session(&grant).await?;
        let planned = session.plan(CLAIMS_QUERY).await?;
        let df = session
            .context()
            .execute_logical_plan(planned.rewritten.plan.clone())
            .await?;
        let t = Instant::now();
        let out = df.explain(false, true)?.collect().await?;
        println!(
            "enclave plan ({:?}):\n{}",
            t.elapsed(),
            datafusion::arrow::util::pretty::pretty_format_batches(&out)?
        );
        let t = Instant::now();
        let out = ctx
            .sql(&format!("EXPLAIN ANALYZE {CLAIMS_BY_HAND}"))
            .await?
            .collect()
            .await?;
        println!(
            "by hand ({:?}):\n{}",
            t.elapsed(),
            datafusion::arrow::util::pretty::pretty_format_batches(&out)?
        );
    }
    time_enclave(&s, &mc, CLAIMS_QUERY).await?;
    time_bare(&ctx, CLAIMS_BY_HAND).await?;
    let (mut e, mut h, mut n) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeat {
        e.push(time_enclave(&s, &mc, CLAIMS_QUERY).await?);
        h.push(time_bare(&ctx, CLAIMS_BY_HAND).await?);
        n.push(time_bare(&ctx, CLAIMS_NAIVE).await?);
    }
    let (em, hm, nm) = (median(&mut e), median(&mut h), median(&mut n));
    println!(
        "query:     medical_claims (repeated persons): enclave {em:.1} ms / by-hand pre-aggregation {hm:.1} ms = {:.3} (naive COUNT(DISTINCT) {nm:.1} ms)",
        em / hm
    );
    Ok(QueryBench {
        queries: figures,
        median_ratio,
        claims_enclave_ms: em,
        claims_by_hand_ms: hm,
        claims_naive_ms: nm,
        claims_ratio: em / hm,
    })
}

/// One HTTP/1.1 request on a kept-alive connection; returns status and body.
async fn http(
    conn: &mut tokio::net::TcpStream,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> BenchResult<(u16, serde_json::Value)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nhost: bench\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let status: u16 = head.split_whitespace().nth(1).ok_or("no status")?.parse()?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .ok_or("no content-length")?
        .parse()?;
    while buf.len() < header_end + len {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let json = serde_json::from_slice(&buf[header_end..header_end + len])
        .unwrap_or(serde_json::Value::Null);
    Ok((status, json))
}

/// The HTTP fixed-overhead benchmark on a small sample (1,000 persons).
pub async fn http_overhead(work: &Path, repeat: usize) -> BenchResult<HttpBench> {
    let samples = work.join("samples-small");
    let opts = anyu_datasets::GenerateOptions {
        rows: 1000,
        seed: 3,
        out_dir: samples.clone(),
    };
    tokio::task::spawn_blocking(move || anyu_datasets::generate(&opts)).await??;
    let s = setup(&work.join("small"), &samples, &["social_insurance"]).await?;
    let ctx = bare(&s.domain, &["social_insurance"]).await?;
    let grant = s.grants[0].clone();
    let password = s.researcher_password.clone();
    let root = s.domain.data_dir().root().to_path_buf();
    // The server is the product binary, started as a user would: the domain
    // closes here so `anyu serve` can take the data directory's writer lock.
    s.domain.close().await?;
    drop(s);
    let mut server = AnyuServer::start(&root).await?;
    let addr = server.addr;
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.set_nodelay(true)?;
    let (_, login) = http(
        &mut conn,
        "POST",
        "/api/auth/login",
        None,
        Some(&serde_json::json!({ "username": "bench_researcher", "password": password })),
    )
    .await?;
    let token = login["token"].as_str().ok_or("login failed")?.to_string();
    let sql = "SELECT district, count(*) AS n FROM social_insurance GROUP BY district";
    http_job(&mut conn, &token, &grant, sql).await?;
    time_bare(&ctx, sql).await?;
    let (mut h, mut b) = (Vec::new(), Vec::new());
    for _ in 0..repeat.max(5) {
        h.push(http_job(&mut conn, &token, &grant, sql).await?);
        b.push(time_bare(&ctx, sql).await?);
    }
    server.stop().await;
    let (hm, bm) = (median(&mut h), median(&mut b));
    println!(
        "http:      small query through the HTTP API {hm:.1} ms, bare DataFusion {bm:.1} ms: fixed overhead {:.1} ms",
        hm - bm
    );
    Ok(HttpBench {
        http_median_ms: hm,
        bare_median_ms: bm,
        overhead_ms: hm - bm,
    })
}

/// `anyu serve` on an ephemeral loopback port, from the `anyu` binary beside
/// this one (or `ANYU_BIN`).
struct AnyuServer {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
}

impl AnyuServer {
    async fn start(data_dir: &Path) -> BenchResult<AnyuServer> {
        let bin = match std::env::var_os("ANYU_BIN") {
            Some(p) => PathBuf::from(p),
            None => std::env::current_exe()?.with_file_name("anyu"),
        };
        if !bin.exists() {
            return Err(format!(
                "{} not found: build it beside anyu-bench (scripts/bench does) or set ANYU_BIN",
                bin.display()
            )
            .into());
        }
        let mut child = tokio::process::Command::new(&bin)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("ANYU_LOG", "warn")
            .env_remove("ANYU_CONFIG")
            .env_remove("ANYU_LISTEN")
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.strip_prefix("Anyu listening on http://") {
                    return Ok::<_, std::io::Error>(Some(rest.trim().to_string()));
                }
            }
            Ok(None)
        })
        .await??
        .ok_or("anyu serve exited before listening")?;
        Ok(AnyuServer {
            child,
            addr: addr.parse()?,
        })
    }

    async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// One job through HTTP: submit, then long-poll until it is checked.
async fn http_job(
    conn: &mut tokio::net::TcpStream,
    token: &str,
    grant: &str,
    sql: &str,
) -> BenchResult<f64> {
    let t = Instant::now();
    let (status, job) = http(
        conn,
        "POST",
        "/api/jobs",
        Some(token),
        Some(&serde_json::json!({ "grant_id": grant, "sql": sql })),
    )
    .await?;
    if status != 202 {
        return Err(format!("submit answered {status}: {job}").into());
    }
    let id = job["id"].as_str().ok_or("no id")?.to_string();
    let (_, done) = http(
        conn,
        "GET",
        &format!("/api/jobs/{id}?wait=20"),
        Some(token),
        None,
    )
    .await?;
    if done["status"] != "pending_review" {
        return Err(format!("job ended {}", done["status"]).into());
    }
    Ok(ms(t.elapsed()))
}
