//! A domain for tests that run real jobs: a fresh data directory, datasets
//! imported from a manifest text and a CSV, one grant per dataset (through
//! the whole access workflow), and jobs run by the worker pool, read back as
//! their check report and — through an output reviewer's packet — the
//! candidate result.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use enclave::access::{
    AdmissionDetails, ApplicationDraft, DatasetRequest, NewProject, VersionPolicy,
};
use enclave::catalog::{OrganisationType, UsageMethod};
use enclave::disclosure::{CheckReport, Verdict};
use enclave::domain::ReviewStep;
use enclave::identity::{IdentityPolicy, NewUser, Principal, Role};
use enclave::ingest::ImportOptions;
use enclave::{Actor, Domain, DomainOptions};

pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
}

/// The provider every test manifest names (the steward stewards it).
pub const PROVIDER: &str = "美国人口普查局";

/// A manifest for crafted test data: a conditional L3 dataset of
/// [`PROVIDER`] with privacy unit `person` (an int64 identifier column),
/// about `topic` (zh, en), whose other `[[columns]]` and `[disclosure]`
/// sections are `body`.
pub fn crafted_manifest(id: &str, topic: (&str, &str), body: &str) -> String {
    let (zh, en) = topic;
    format!(
        r#"format_version = 1

[dataset]
id = "{id}"
title = {{ zh = "{zh}测试数据", en = "Test data for {en}" }}
summary = {{ zh = "为检验{zh}而构造的数据。", en = "Data crafted to test {en}." }}
provider = "{PROVIDER}"
provider_en = "US Census Bureau"
update_frequency = "static"
format = "table"
open_type = "conditional"
grade = "L3"
scope = "测试"
privacy_unit = "person"
tags = ["test"]

[conditions.user]
organisation_types = ["university", "research_institute", "government"]
credit = ["not_dishonest_debtor"]
qualifications = []

[conditions.scenario]
allowed = ["academic_research"]
forbidden = []

[conditions]
usage_methods = ["in_domain", "invisible"]

[[columns]]
name = "person"
type = "int64"
description = {{ zh = "个人标识号", en = "Person identifier" }}
sensitivity = "identifier"
nullable = false
{body}"#
    )
}

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub domain: Arc<Domain>,
    pub researcher: Principal,
    pub steward: Principal,
    pub admin: Principal,
}

/// One finished job as the tests look at it.
pub struct Ran {
    pub job_id: String,
    pub status: String,
    pub report: CheckReport,
    /// The candidate result (failing cells suppressed), one JSON object per row.
    pub rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl Ran {
    /// Worst verdict on cell (`row`, `column`) over every rule, whole-result
    /// verdicts included.
    pub fn verdict(&self, row: usize, column: &str) -> Verdict {
        self.report
            .rules
            .iter()
            .flat_map(|r| r.cells.iter())
            .filter(|c| {
                c.row.is_none()
                    || (c.row == Some(row as u64) && c.column.as_deref() == Some(column))
            })
            .map(|c| c.verdict)
            .max()
            .unwrap_or(Verdict::Pass)
    }

    /// Verdict of rule `rule` on cell (`row`, `column`) (`Pass` when unlisted).
    pub fn rule_verdict(&self, rule: &str, row: usize, column: &str) -> Verdict {
        self.report
            .rules
            .iter()
            .filter(|r| r.rule == rule)
            .flat_map(|r| r.cells.iter())
            .filter(|c| c.row == Some(row as u64) && c.column.as_deref() == Some(column))
            .map(|c| c.verdict)
            .max()
            .unwrap_or(Verdict::Pass)
    }

    /// The rules that did not pass cell (`row`, `column`), with their verdicts.
    pub fn rules_on(&self, row: usize, column: &str) -> Vec<(&str, Verdict)> {
        self.report
            .rules
            .iter()
            .flat_map(|r| r.cells.iter().map(move |c| (r.rule.as_str(), c)))
            .filter(|(_, c)| c.row == Some(row as u64) && c.column.as_deref() == Some(column))
            .map(|(r, c)| (r, c.verdict))
            .collect()
    }

    /// Verdicts on the result as a whole.
    pub fn whole_result(&self) -> Vec<(&str, Verdict)> {
        self.report
            .rules
            .iter()
            .flat_map(|r| r.cells.iter().map(move |c| (r.rule.as_str(), c)))
            .filter(|(_, c)| c.row.is_none())
            .map(|(r, c)| (r, c.verdict))
            .collect()
    }

    /// Every reason of every finding (for checks that no value leaks).
    pub fn reasons(&self) -> Vec<&str> {
        self.report
            .rules
            .iter()
            .flat_map(|r| r.cells.iter())
            .map(|c| c.reason.as_str())
            .collect()
    }

    /// The row whose `key` columns hold these integer values.
    pub fn row_of(&self, keys: &[(&str, i64)]) -> Option<usize> {
        self.rows.iter().position(|r| {
            keys.iter()
                .all(|(k, v)| r.get(*k).and_then(serde_json::Value::as_i64) == Some(*v))
        })
    }
}

/// A well-formed 统一社会信用代码 and 身份证号 made from `seed` (a name): the
/// same seed, the same organisation or person.
pub fn codes_for(seed: &str) -> (String, String) {
    let h = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let body = format!("91440300{:09}", h % 1_000_000_000);
    let code = format!(
        "{body}{}",
        enclave::ids::credit_code_check_char(&body).unwrap()
    );
    let birth = chrono::NaiveDate::from_ymd_opt(1960, 1, 1).unwrap()
        + chrono::Days::new((h >> 32) % 15_000);
    let id17 = format!("440305{}{:03}", birth.format("%Y%m%d"), (h >> 16) % 1000);
    let id = format!(
        "{id17}{}",
        enclave::ids::resident_id_check_char(&id17).unwrap()
    );
    (code, id)
}

/// The organisation named `org`, registered on first use.
pub async fn organisation_id(domain: &Domain, org: &str, role: Role) -> String {
    domain
        .organisation_for(
            &Actor::operator(),
            enclave::identity::NewOrganisation {
                name: org.into(),
                credit_code: Some(codes_for(org).0),
                organisation_type: if role == Role::Researcher {
                    OrganisationType::University
                } else {
                    OrganisationType::Government
                },
            },
        )
        .await
        .unwrap()
        .id
}

pub async fn user(
    domain: &Domain,
    name: &str,
    role: Role,
    org: &str,
    agencies: &[&str],
) -> Principal {
    let password = format!("{name}-Pa55word-for-tests");
    domain
        .create_user(
            &Actor::operator(),
            NewUser {
                username: name.into(),
                password: password.clone(),
                real_name: "测试".into(),
                organisation_id: organisation_id(domain, org, role).await,
                resident_id: codes_for(name).1,
                role,
                provider_agencies: agencies.iter().map(|s| s.to_string()).collect(),
                verified: true,
                credit_flags: Vec::new(),
                must_change_password: false,
            },
        )
        .await
        .unwrap();
    let s = domain.login(name, &password, "test").await.unwrap();
    domain.authenticate(&s.token).await.unwrap()
}

impl Lab {
    pub async fn new() -> Lab {
        Lab::with_jobs(enclave::domain::JobOptions::default()).await
    }

    /// A lab whose jobs run with `jobs`.
    pub async fn with_jobs(jobs: enclave::domain::JobOptions) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let options = DomainOptions {
            identity: IdentityPolicy::default().with_insecure_fast_hashing(),
            jobs,
            ..DomainOptions::default()
        };
        let domain = Arc::new(
            Domain::init(&dir.path().join("domain"), options)
                .await
                .unwrap(),
        );
        let researcher = user(&domain, "researcher", Role::Researcher, "深圳大学", &[]).await;
        let steward = user(&domain, "steward", Role::Steward, PROVIDER, &[PROVIDER]).await;
        let admin = user(&domain, "admin", Role::Admin, "平台", &[]).await;
        Lab {
            dir,
            domain,
            researcher,
            steward,
            admin,
        }
    }

    /// Imports `csv` under the manifest `text`; returns a grant on it.
    pub async fn dataset(&self, text: &str, csv: &Path) -> String {
        let manifest: toml::Table = text.parse().unwrap();
        let id = manifest["dataset"]["id"].as_str().unwrap().to_string();
        let path = self.dir.path().join(format!("{id}.toml"));
        std::fs::write(&path, text).unwrap();
        self.domain
            .import_dataset(
                &Actor::operator(),
                &path,
                csv,
                &ImportOptions::default(),
                None,
            )
            .await
            .unwrap();
        self.grant(&id).await
    }

    /// A new grant on dataset `id` for the researcher (a new project each
    /// time), pinned to its newest version.
    pub async fn grant(&self, id: &str) -> String {
        self.grant_with(id, VersionPolicy::Pinned).await
    }

    /// [`Self::grant`] following the dataset's versions as `versions` says.
    pub async fn grant_with(&self, id: &str, versions: VersionPolicy) -> String {
        let d = &self.domain;
        let project = d
            .create_project(
                &self.researcher,
                NewProject {
                    title: "披露控制测试".into(),
                    scenario_description: "检验输出披露控制规则。".into(),
                    scenario_category: "academic_research".into(),
                    members: Vec::new(),
                },
            )
            .await
            .unwrap();
        let record = d.store().dataset(id).await.unwrap().unwrap();
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
                version_policy: versions,
                row_filter: None,
            }],
            usage_method: UsageMethod::Invisible,
            purpose: "测试：检验输出披露控制规则。".into(),
            purpose_is_research: true,
            period_start: d.today(),
            period_end: d.today() + chrono::Days::new(30),
            security_measures: "仅在安全域内运行测试查询。".into(),
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
        let app = d.create_application(&self.researcher, draft).await.unwrap();
        let aid = app.application.id;
        d.submit_application(&self.researcher, &aid).await.unwrap();
        d.review_application(&self.admin, &aid, ReviewStep::StartCompletenessCheck)
            .await
            .unwrap();
        d.review_application(&self.admin, &aid, ReviewStep::CompletenessPassed)
            .await
            .unwrap();
        for who in [&self.steward, &self.admin] {
            let step = ReviewStep::Approve {
                provider: None,
                conditions: Default::default(),
            };
            if let Err(e) = d.review_application(who, &aid, step).await {
                // Low grades need the provider's steward only.
                assert!(
                    matches!(e.code(), "approval_not_needed" | "illegal_transition"),
                    "{e}"
                );
            }
        }
        let text = d.agreement_text(&self.researcher, &aid).await.unwrap();
        let (_, grant) = d
            .sign_agreement(&self.researcher, &aid, &text.sha256)
            .await
            .unwrap();
        grant.id
    }

    /// Runs `sql` as a job on `grant` to its end; reads its checks and candidate.
    pub async fn run(&self, grant: &str, sql: &str) -> Ran {
        let job = self
            .domain
            .submit_job(&self.researcher, grant, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        // As stored: the requester's own view withholds the checks.
        let done = self
            .domain
            .wait_job(&self.admin, &job.id, Duration::from_secs(120))
            .await
            .unwrap()
            .full()
            .expect("an admin sees the stored job");
        let status = done.job.status.as_str().to_string();
        assert!(
            matches!(status.as_str(), "pending_review" | "checked" | "released"),
            "{sql}: job ended {status}: {:?} {:?}",
            done.job.error_code,
            done.job.error_message
        );
        let report: CheckReport =
            serde_json::from_value(done.job.checks.clone().expect("checks")).unwrap();
        let rows = if status == "pending_review" {
            let packet = self
                .domain
                .review_packet(&self.steward, &job.id)
                .await
                .unwrap();
            packet
                .result
                .into_iter()
                .map(|v| match v {
                    serde_json::Value::Object(m) => m,
                    other => panic!("a result row is not an object: {other}"),
                })
                .collect()
        } else {
            Vec::new()
        };
        Ran {
            job_id: job.id.clone(),
            status,
            report,
            rows,
        }
    }
}
