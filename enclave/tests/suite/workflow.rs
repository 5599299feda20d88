//! The persisted access workflow against a real data directory, with a clock
//! the tests move: due dates in working days (weekend, holiday, adjusted
//! working day), overdue flags, the grant's validity window and expiry,
//! atomic budget charges under concurrency, and consent tables.

use std::path::Path;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use enclave::access::{
    AdmissionDetails, ApplicationDraft, Budgets, DatasetRequest, NewProject, RowFilter, Usage,
    VersionPolicy,
};
use enclave::catalog::UsageMethod;
use enclave::domain::{Clock, ReviewConditions, ReviewStep};
use enclave::identity::{IdentityPolicy, NewUser, Principal, Role};
use enclave::ingest::ImportOptions;
use enclave::{Actor, Domain, DomainOptions, Error};

const PASSWORD: &str = "correct horse battery";
const PROVIDER: &str = "深圳市社会保险基金管理局";

struct Env {
    dir: tempfile::TempDir,
    domain: Domain,
    now: Arc<Mutex<DateTime<Utc>>>,
    researcher: Principal,
    steward: Principal,
    admin: Principal,
}

/// 10:00 China Standard Time on `d`.
fn cst(d: NaiveDate) -> DateTime<Utc> {
    chrono::FixedOffset::east_opt(8 * 3600)
        .unwrap()
        .from_local_datetime(&d.and_hms_opt(10, 0, 0).unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

/// A valid 身份证号 for person `i`.
fn resident_id(i: u32) -> String {
    let first17 = format!("44030319900101{:03}", i % 1000);
    let c = enclave::ids::resident_id_check_char(&first17).unwrap();
    format!("{first17}{c}")
}

fn write_social_insurance(path: &Path, persons: u32) {
    let mut csv = String::from(
        "person_id,name,sex,birth_date,district,employer_credit_code,contribution_base,months_contributed\n",
    );
    for i in 0..persons {
        csv.push_str(&format!(
            "{},某人{i},男,1990-01-01,福田区,,{}.00,{}\n",
            resident_id(i),
            5000 + i,
            12 + i
        ));
    }
    std::fs::write(path, csv).unwrap();
}

async fn user(
    domain: &Domain,
    username: &str,
    role: Role,
    org: &str,
    agencies: &[&str],
) -> Principal {
    domain
        .create_user(
            &Actor::operator(),
            NewUser {
                username: username.into(),
                password: PASSWORD.into(),
                real_name: "测试".into(),
                organisation_id: crate::support::organisation_id(domain, org, role).await,
                resident_id: crate::support::codes_for(username).1,
                role,
                provider_agencies: agencies.iter().map(|s| s.to_string()).collect(),
                verified: true,
                credit_flags: Vec::new(),
                must_change_password: false,
            },
        )
        .await
        .unwrap();
    let s = domain.login(username, PASSWORD, "test").await.unwrap();
    domain.authenticate(&s.token).await.unwrap()
}

async fn env(start: NaiveDate) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(Mutex::new(cst(start)));
    let clock_now = Arc::clone(&now);
    let options = DomainOptions {
        identity: IdentityPolicy::default().with_insecure_fast_hashing(),
        clock: Clock::from_fn(move || *clock_now.lock().unwrap()),
        ..DomainOptions::default()
    };
    let domain = Domain::init(&dir.path().join("data"), options)
        .await
        .unwrap();
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/manifests/social_insurance.toml");
    let csv = dir.path().join("social_insurance.csv");
    write_social_insurance(&csv, 30);
    domain
        .import_dataset(
            &Actor::operator(),
            &manifest,
            &csv,
            &ImportOptions::default(),
            None,
        )
        .await
        .unwrap();
    let researcher = user(&domain, "r_li", Role::Researcher, "深圳大学", &[]).await;
    let steward = user(&domain, "s_wang", Role::Steward, PROVIDER, &[PROVIDER]).await;
    let admin = user(
        &domain,
        "a_zhang",
        Role::Admin,
        "深圳市政务服务数据管理局",
        &[],
    )
    .await;
    Env {
        dir,
        domain,
        now,
        researcher,
        steward,
        admin,
    }
}

impl Env {
    fn set_today(&self, day: NaiveDate) {
        *self.now.lock().unwrap() = cst(day);
    }

    fn draft(&self, project: &str, start: NaiveDate, days: u64) -> ApplicationDraft {
        ApplicationDraft {
            project_id: project.into(),
            datasets: vec![DatasetRequest {
                dataset_id: "social_insurance".into(),
                columns: vec!["person_id".into(), "contribution_base".into()],
                version_policy: VersionPolicy::Latest,
                row_filter: None,
            }],
            usage_method: UsageMethod::Invisible,
            purpose: "研究缴费基数的分布特征".into(),
            purpose_is_research: true,
            period_start: start,
            period_end: start + chrono::Days::new(days),
            security_measures: "仅在安全域内分析，不做再识别".into(),
            admission: AdmissionDetails {
                brings_own_data: false,
                own_data_description: None,
                development_environment: "SQL".into(),
                cpu_cores: 1,
                memory_gib: 4,
                storage_gib: 1,
                accepts_domain_rules: true,
            },
            agreement_version: 1,
        }
    }

    async fn project(&self) -> String {
        self.domain
            .create_project(
                &self.researcher,
                NewProject {
                    title: "缴费基数研究".into(),
                    scenario_description: "研究各区缴费基数的分布特征与变化。".into(),
                    scenario_category: "academic_research".into(),
                    members: Vec::new(),
                },
            )
            .await
            .unwrap()
            .id
    }

    async fn application(&self, draft: ApplicationDraft) -> String {
        self.domain
            .create_application(&self.researcher, draft)
            .await
            .unwrap()
            .application
            .id
    }

    async fn step(
        &self,
        who: &Principal,
        id: &str,
        step: ReviewStep,
    ) -> enclave::domain::ApplicationView {
        self.domain.review_application(who, id, step).await.unwrap()
    }

    /// Reviews an application through to `approved`, the steward capping budgets.
    async fn approve(&self, id: &str, budgets: Option<Budgets>) {
        self.step(&self.admin, id, ReviewStep::StartCompletenessCheck)
            .await;
        self.step(&self.admin, id, ReviewStep::CompletenessPassed)
            .await;
        self.step(
            &self.steward,
            id,
            ReviewStep::Approve {
                provider: None,
                conditions: ReviewConditions {
                    row_filters: Vec::new(),
                    budgets,
                },
            },
        )
        .await;
        let v = self
            .step(
                &self.admin,
                id,
                ReviewStep::Approve {
                    provider: None,
                    conditions: ReviewConditions::default(),
                },
            )
            .await;
        assert_eq!(v.application.status.as_str(), "approved");
    }

    async fn sign(&self, id: &str) -> enclave::access::Grant {
        let text = self
            .domain
            .agreement_text(&self.researcher, id)
            .await
            .unwrap();
        self.domain
            .sign_agreement(&self.researcher, id, &text.sha256)
            .await
            .unwrap()
            .1
    }
}

#[tokio::test]
async fn due_dates_count_working_days_across_weekends_holidays_and_adjusted_days() {
    // Friday 18 September 2026; Sunday the 20th is an adjusted working day (国庆节调休).
    let e = env(d(2026, 9, 18)).await;
    let project = e.project().await;
    let id = e.application(e.draft(&project, d(2026, 10, 20), 90)).await;
    let v = e
        .domain
        .submit_application(&e.researcher, &id)
        .await
        .unwrap();
    assert_eq!(
        v.application.completeness_due.as_deref(),
        Some("2026-09-22"),
        "Sat 19 off, Sun 20 worked, Mon 21, Tue 22"
    );

    // Completeness passed on Tuesday 29 September: the review spans 中秋-国庆
    // (1-7 October off), the adjusted working Saturday 10 October and a weekend.
    e.set_today(d(2026, 9, 29));
    e.step(&e.admin, &id, ReviewStep::StartCompletenessCheck)
        .await;
    let v = e.step(&e.admin, &id, ReviewStep::CompletenessPassed).await;
    assert_eq!(v.application.review_due.as_deref(), Some("2026-10-19"));
    assert_eq!(v.due_date.as_deref(), Some("2026-10-19"));
    assert!(!v.overdue);

    // A plain weekend: Thursday 12 November → Tuesday 17 November.
    e.set_today(d(2026, 11, 12));
    let project = e.project().await;
    let other = e.application(e.draft(&project, d(2026, 11, 20), 30)).await;
    let v = e
        .domain
        .submit_application(&e.researcher, &other)
        .await
        .unwrap();
    assert_eq!(
        v.application.completeness_due.as_deref(),
        Some("2026-11-17")
    );

    // On the due day it is not overdue; the next day it is, in listings and the overview.
    e.set_today(d(2026, 11, 17));
    assert!(
        !e.domain
            .application_view(&e.researcher, &other)
            .await
            .unwrap()
            .overdue
    );
    e.set_today(d(2026, 11, 18));
    assert!(
        e.domain
            .application_view(&e.researcher, &other)
            .await
            .unwrap()
            .overdue
    );
    let listed = e.domain.applications_for(&e.steward).await.unwrap();
    let row = listed.iter().find(|a| a.id == other).unwrap();
    assert!(row.overdue);
    assert_eq!(row.due_date.as_deref(), Some("2026-11-17"));
    let overview = e
        .domain
        .overview(&enclave::Actor::operator())
        .await
        .unwrap();
    assert_eq!(
        overview.applications_overdue, 2,
        "both: 17 Nov and 19 Oct have passed"
    );
    e.domain.close().await.unwrap();
    drop(e.dir);
}

#[tokio::test]
async fn a_grant_is_usable_only_inside_its_window_and_then_expires() {
    let e = env(d(2026, 3, 2)).await;
    let project = e.project().await;
    let id = e.application(e.draft(&project, d(2026, 3, 10), 9)).await;
    e.domain
        .submit_application(&e.researcher, &id)
        .await
        .unwrap();
    e.approve(&id, None).await;
    let g = e.sign(&id).await;
    // Period 10-19 March inclusive, in China Standard Time.
    assert_eq!(g.valid_from.to_rfc3339(), "2026-03-09T16:00:00+00:00");
    assert_eq!(g.valid_until.to_rfc3339(), "2026-03-19T16:00:00+00:00");

    fn denied<T: std::fmt::Debug>(r: Result<T, Error>) -> &'static str {
        match r {
            Err(Error::Denied { code, .. }) => code,
            other => panic!("expected a denial, got {other:?}"),
        }
    }
    assert_eq!(
        denied(e.domain.usable_grant(&e.researcher, &g.id).await),
        "grant_not_started"
    );
    e.set_today(d(2026, 3, 10));
    e.domain.usable_grant(&e.researcher, &g.id).await.unwrap();
    assert_eq!(
        denied(e.domain.usable_grant(&e.steward, &g.id).await),
        "not_grant_holder"
    );
    // Nothing expires before the end.
    assert!(e.domain.expire_grants().await.unwrap().is_empty());
    e.set_today(d(2026, 3, 19));
    e.domain.usable_grant(&e.researcher, &g.id).await.unwrap();
    e.set_today(d(2026, 3, 20));
    assert_eq!(
        denied(e.domain.usable_grant(&e.researcher, &g.id).await),
        "grant_expired"
    );
    assert_eq!(e.domain.expire_grants().await.unwrap(), vec![g.id.clone()]);
    let after = e.domain.grant(&g.id).await.unwrap();
    assert_eq!(after.state.status().as_str(), "expired");
    assert!(
        e.domain.expire_grants().await.unwrap().is_empty(),
        "expired once"
    );
    // A charge against an expired grant is refused.
    let charge = Usage {
        jobs: 1,
        ..Usage::default()
    };
    assert_eq!(
        denied(
            e.domain
                .charge_grant(&Actor::user(&e.researcher), &g.id, &charge)
                .await
        ),
        "grant_not_active"
    );
    e.domain.close().await.unwrap();
}

#[tokio::test]
async fn concurrent_charges_never_overspend_a_budget() {
    let e = env(d(2026, 3, 2)).await;
    let project = e.project().await;
    let id = e.application(e.draft(&project, d(2026, 3, 2), 30)).await;
    e.domain
        .submit_application(&e.researcher, &id)
        .await
        .unwrap();
    let caps = Budgets {
        jobs: 1000,
        epsilon: 1.0,
        delta: 1e-6,
        cpu_seconds: 100.0,
        released_rows: 1_000_000,
    };
    e.approve(&id, Some(caps)).await;
    let g = e.sign(&id).await;
    assert_eq!(
        g.budgets.epsilon, 1.0,
        "the steward's cap is below the dataset's 10"
    );

    let domain = Arc::new(e.domain);
    let actor = Actor::user(&e.researcher);
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (domain, actor, id) = (Arc::clone(&domain), actor.clone(), g.id.clone());
        tasks.push(tokio::spawn(async move {
            let charge = Usage {
                jobs: 1,
                epsilon: 0.1,
                ..Usage::default()
            };
            domain.charge_grant(&actor, &id, &charge).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(Error::Denied { code, message }) => {
                assert_eq!(code, "budget_exhausted");
                assert!(message.contains("epsilon"), "{message}");
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(ok, 10, "exactly ten charges of 0.1 fit a budget of 1.0");
    let g = domain.grant(&g.id).await.unwrap();
    assert_eq!(g.usage.jobs, 10);
    assert!((g.usage.epsilon - 1.0).abs() < 1e-9, "{}", g.usage.epsilon);
    domain.close().await.unwrap();
}

#[tokio::test]
async fn consent_tables_back_consent_filters() {
    let e = env(d(2026, 3, 2)).await;
    let project = e.project().await;
    let mut draft = e.draft(&project, d(2026, 3, 2), 30);
    draft.datasets[0].row_filter = Some(RowFilter {
        conditions: Vec::new(),
        consented_only: true,
    });
    // No consent table yet: refused, naming the field.
    let err = e
        .domain
        .create_application(&e.researcher, draft.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("consented_only"), "{err}");

    let csv = e.dir.path().join("consents.csv");
    let ids: Vec<String> = (0..7).map(resident_id).collect();
    std::fs::write(&csv, format!("person_id\n{}\n", ids.join("\n"))).unwrap();
    let c = e
        .domain
        .import_consent(
            &Actor::operator(),
            "social_insurance",
            &csv,
            &ImportOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!((c.version, c.subjects), (1, 7));
    assert_eq!(c.dir, "datasets/social_insurance.consent/v1");
    // Stored encrypted: no subject id appears in the files.
    let data = std::fs::read(e.dir.path().join("data").join(&c.dir).join("data.parquet")).unwrap();
    assert!(!String::from_utf8_lossy(&data).contains(&ids[0]));
    // A file without the privacy-unit column is refused.
    let bad = e.dir.path().join("bad.csv");
    std::fs::write(&bad, "name\n张三\n").unwrap();
    assert!(
        e.domain
            .import_consent(
                &Actor::operator(),
                "social_insurance",
                &bad,
                &ImportOptions::default()
            )
            .await
            .is_err()
    );

    let id = e
        .domain
        .create_application(&e.researcher, draft)
        .await
        .unwrap()
        .application
        .id;
    e.domain
        .submit_application(&e.researcher, &id)
        .await
        .unwrap();
    e.approve(&id, None).await;
    let g = e.sign(&id).await;
    assert!(g.datasets[0].row_filter.consented_only);
    let tail = enclave::audit::list(
        &e.dir.path().join("data/audit/audit.db"),
        &enclave::audit::AuditFilter {
            action: Some("consent.".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let outcomes: Vec<_> = tail.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            enclave::audit::Outcome::Success,
            enclave::audit::Outcome::Failure
        ]
    );
    e.domain.close().await.unwrap();
}

/// The stored forms of a grant and an application body are persisted formats:
/// a change to them must be deliberate.
#[test]
fn grant_and_application_formats_are_stable() {
    use enclave::access::{
        ApplicationState, GrantState, GrantedDataset, GrantedVersion, Reviewer, RowCondition,
    };
    let draft = ApplicationDraft {
        project_id: "p-1".into(),
        datasets: vec![DatasetRequest {
            dataset_id: "social_insurance".into(),
            columns: vec!["person_id".into(), "district".into()],
            version_policy: VersionPolicy::Pinned,
            row_filter: Some(RowFilter {
                conditions: vec![
                    RowCondition::In {
                        column: "district".into(),
                        values: vec![serde_json::json!("福田区")],
                    },
                    RowCondition::Range {
                        column: "months_contributed".into(),
                        min: Some(12.0),
                        max: None,
                    },
                ],
                consented_only: true,
            }),
        }],
        usage_method: UsageMethod::ModelResults,
        purpose: "研究".into(),
        purpose_is_research: true,
        period_start: d(2026, 3, 1),
        period_end: d(2026, 8, 31),
        security_measures: "安全措施".into(),
        admission: AdmissionDetails {
            brings_own_data: true,
            own_data_description: Some("自有问卷数据".into()),
            development_environment: "SQL".into(),
            cpu_cores: 2,
            memory_gib: 8,
            storage_gib: 10,
            accepts_domain_rules: true,
        },
        agreement_version: 1,
    };
    let state = ApplicationState::UnderReview {
        approvals: vec![
            Reviewer::steward("u-s", "org-s", PROVIDER),
            Reviewer::admin("u-a", "org-a"),
        ],
    };
    let grant = enclave::access::Grant {
        id: "g-1".into(),
        application_id: "a-1".into(),
        project_id: "p-1".into(),
        holder_id: "u-r".into(),
        holder_username: "r_li".into(),
        organisation: "深圳大学".into(),
        scenario_category: "academic_research".into(),
        usage_method: UsageMethod::Invisible,
        datasets: vec![GrantedDataset {
            dataset_id: "social_insurance".into(),
            provider: PROVIDER.into(),
            version: GrantedVersion::Pinned { version: 3 },
            columns: vec!["district".into()],
            row_filter: RowFilter::default(),
        }],
        period_start: d(2026, 3, 1),
        period_end: d(2026, 8, 31),
        valid_from: cst(d(2026, 3, 1)),
        valid_until: cst(d(2026, 9, 1)),
        state: GrantState::Active,
        budgets: Budgets {
            jobs: 1000,
            epsilon: 10.0,
            delta: 1e-6,
            cpu_seconds: 36000.0,
            released_rows: 1_000_000,
        },
        usage: Usage::default(),
        agreement_sha256: "ab".repeat(32),
        created_at: "2026-02-27T00:00:00.000000Z".into(),
        updated_at: "2026-02-27T00:00:00.000000Z".into(),
        revision: 1,
    };
    insta::assert_snapshot!(
        "application_draft",
        serde_json::to_string_pretty(&draft).unwrap()
    );
    insta::assert_snapshot!(
        "application_state",
        serde_json::to_string_pretty(&state).unwrap()
    );
    insta::assert_snapshot!("grant", serde_json::to_string_pretty(&grant).unwrap());
}
