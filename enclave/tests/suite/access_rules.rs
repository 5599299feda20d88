//! Access rules: eligibility refuses with every reason, the application and grant
//! state machines accept exactly their legal transitions, joint review follows the
//! grade, and separation of duties holds.

use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use enclave::access::*;
use enclave::catalog::{
    GradePolicy, GradeScale, Manifest, OpenType, OrganisationType, UsageMethod,
};

const PROVIDER: &str = "深圳市社会保险基金管理局";

fn social_insurance() -> Manifest {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/manifests/social_insurance.toml");
    Manifest::from_path(&path, &GradeScale::default()).expect("social_insurance.toml parses")
}

fn with_grade(grade: &str) -> Manifest {
    let mut m = social_insurance();
    m.dataset.grade = grade.to_owned();
    m
}

fn applicant() -> Person {
    Person {
        user_id: "u-researcher".into(),
        organisation: "org-university".into(),
        person: String::new(),
    }
}

fn steward() -> Reviewer {
    Reviewer::steward("u-steward", "org-provider", PROVIDER)
}

fn steward2() -> Reviewer {
    Reviewer::steward("u-steward-2", "org-provider", PROVIDER)
}

fn admin() -> Reviewer {
    Reviewer::admin("u-admin", "org-platform")
}

fn facts_for(m: &Manifest) -> ApplicationFacts {
    ApplicationFacts::new(applicant(), &[m], &GradeScale::default())
}

fn facts() -> ApplicationFacts {
    facts_for(&social_insurance())
}

fn submit() -> ApplicationEvent {
    ApplicationEvent::Submit { by: applicant() }
}
fn start_check() -> ApplicationEvent {
    ApplicationEvent::StartCompletenessCheck { by: admin() }
}
fn passed() -> ApplicationEvent {
    ApplicationEvent::CompletenessPassed { by: admin() }
}
fn approve(by: Reviewer) -> ApplicationEvent {
    ApplicationEvent::Approve { by }
}
fn reject() -> ApplicationEvent {
    ApplicationEvent::Reject {
        by: steward(),
        reason: "  scenario does not justify identifier columns  ".into(),
    }
}
fn ret() -> ApplicationEvent {
    ApplicationEvent::Return {
        by: admin(),
        reason: "security measures section is missing".into(),
    }
}
fn sign() -> ApplicationEvent {
    ApplicationEvent::SignAgreement { by: applicant() }
}

fn all_events() -> Vec<ApplicationEvent> {
    vec![
        submit(),
        start_check(),
        passed(),
        approve(steward()),
        reject(),
        ret(),
        sign(),
    ]
}

/// Runs `events` from draft, panicking on any refusal.
fn run(app: &ApplicationFacts, events: &[ApplicationEvent]) -> ApplicationState {
    let mut state = ApplicationState::Draft;
    for e in events {
        state = apply(app, &state, e)
            .unwrap_or_else(|err| panic!("{} refused: {err}", e.name()))
            .to;
    }
    state
}

fn under_review(app: &ApplicationFacts) -> ApplicationState {
    run(app, &[submit(), start_check(), passed()])
}

/// One sample of every application state.
fn sample_states() -> Vec<ApplicationState> {
    vec![
        ApplicationState::Draft,
        ApplicationState::Submitted,
        ApplicationState::CompletenessCheck,
        ApplicationState::UnderReview { approvals: vec![] },
        ApplicationState::Approved {
            approvals: vec![steward(), admin()],
        },
        ApplicationState::Rejected {
            by: steward(),
            reason: "out of scope".into(),
        },
        ApplicationState::Returned {
            by: admin(),
            reason: "materials missing".into(),
        },
        ApplicationState::AgreementSigned {
            approvals: vec![steward(), admin()],
        },
    ]
}

fn err(app: &ApplicationFacts, state: &ApplicationState, e: &ApplicationEvent) -> WorkflowError {
    match apply(app, state, e) {
        Ok(t) => panic!(
            "{} from {} was accepted: {:?}",
            e.name(),
            state.status().as_str(),
            t.to
        ),
        Err(err) => err,
    }
}

#[test]
fn happy_path_l3_joint_review_to_signed_agreement() {
    let app = facts();
    assert_eq!(
        app.review,
        ReviewRequirement {
            reviewers_required: 2,
            joint_review: true
        }
    );
    let mut state = ApplicationState::Draft;
    let mut trail = Vec::new();
    for e in [submit(), start_check(), passed(), approve(steward())] {
        let t = apply(&app, &state, &e).unwrap();
        assert_eq!(t.event, e.name());
        trail.push((t.from, t.to.status()));
        state = t.to;
    }
    // The steward's approval is recorded; the admin's is still missing.
    let ApplicationState::UnderReview { approvals } = &state else {
        panic!("expected under_review, got {state:?}");
    };
    assert_eq!(approvals, &vec![steward()]);
    let progress = app.progress(approvals);
    assert!(progress.admin_missing);
    assert!(progress.stewards_missing.is_empty());
    assert!(!progress.is_complete());

    for e in [approve(admin()), sign()] {
        let t = apply(&app, &state, &e).unwrap();
        trail.push((t.from, t.to.status()));
        state = t.to;
    }
    use ApplicationStatus as S;
    assert_eq!(
        trail,
        vec![
            (S::Draft, S::Submitted),
            (S::Submitted, S::CompletenessCheck),
            (S::CompletenessCheck, S::UnderReview),
            (S::UnderReview, S::UnderReview),
            (S::UnderReview, S::Approved),
            (S::Approved, S::AgreementSigned),
        ]
    );
    assert_eq!(
        state,
        ApplicationState::AgreementSigned {
            approvals: vec![steward(), admin()]
        }
    );
    assert!(state.status().is_final());
}

#[test]
fn every_illegal_application_transition_is_refused() {
    use ApplicationStatus as S;
    let legal: &[(S, &str)] = &[
        (S::Draft, "submit"),
        (S::Submitted, "start_completeness_check"),
        (S::CompletenessCheck, "completeness_passed"),
        (S::CompletenessCheck, "return"),
        (S::UnderReview, "approve"),
        (S::UnderReview, "reject"),
        (S::UnderReview, "return"),
        (S::Approved, "sign_agreement"),
        (S::Returned, "submit"),
    ];
    let app = facts();
    let states = sample_states();
    assert_eq!(
        states.iter().map(|s| s.status()).collect::<Vec<_>>(),
        S::ALL.to_vec(),
        "every state is sampled"
    );
    let mut accepted = Vec::new();
    for state in &states {
        for event in all_events() {
            match apply(&app, state, &event) {
                Ok(t) => {
                    assert_eq!(t.from, state.status());
                    accepted.push((state.status(), event.name()));
                }
                Err(e) => {
                    assert_eq!(e.code(), "illegal_transition", "{e}");
                    let from = format!("in state `{}`", state.status().as_str());
                    assert!(e.to_string().contains(&from), "{e}");
                }
            }
        }
    }
    assert_eq!(accepted, legal.to_vec());
    // Terminal states accept nothing.
    for s in S::ALL.into_iter().filter(|s| s.is_final()) {
        assert!(!legal.iter().any(|(l, _)| *l == s));
    }
}

#[test]
fn illegal_transition_messages_name_state_event_and_why() {
    let app = facts();
    let e = err(&app, &ApplicationState::Draft, &approve(steward()));
    assert_eq!(
        e.to_string(),
        "cannot approve an application in state `draft`: it has not been submitted"
    );
    assert_eq!(e.code, WorkflowErrorCode::IllegalTransition);
    let mut messages = Vec::new();
    for state in sample_states() {
        for event in all_events() {
            if let Err(e) = apply(&app, &state, &event) {
                messages.push(format!("{}: {e}", e.code()));
            }
        }
    }
    insta::assert_yaml_snapshot!("illegal_application_transitions", messages);
}

#[test]
fn returned_application_is_resubmitted_and_approvals_start_over() {
    let app = facts();
    // Returned at the completeness check.
    let mut state = run(&app, &[submit(), start_check(), ret()]);
    assert_eq!(
        state,
        ApplicationState::Returned {
            by: admin(),
            reason: "security measures section is missing".into()
        }
    );
    state = apply(&app, &state, &submit()).unwrap().to;
    assert_eq!(state, ApplicationState::Submitted);

    // Returned during review after a partial approval: the approval is dropped.
    state = run(
        &app,
        &[
            submit(),
            start_check(),
            passed(),
            approve(steward()),
            ret(),
            submit(),
            start_check(),
            passed(),
        ],
    );
    assert_eq!(state, ApplicationState::UnderReview { approvals: vec![] });
}

#[test]
fn rejection_and_return_need_a_written_reason() {
    let app = facts();
    let review = under_review(&app);
    for bad in ["", "   ", "no", " ok \n "] {
        for event in [
            ApplicationEvent::Reject {
                by: steward(),
                reason: bad.into(),
            },
            ApplicationEvent::Return {
                by: admin(),
                reason: bad.into(),
            },
        ] {
            let e = err(&app, &review, &event);
            assert_eq!(e.code(), "reason_required", "{e}");
        }
    }
    let check = run(&app, &[submit(), start_check()]);
    let e = err(
        &app,
        &check,
        &ApplicationEvent::Return {
            by: admin(),
            reason: "\t".into(),
        },
    );
    assert_eq!(e.code(), "reason_required");

    // A valid reason is stored trimmed; rejection is final.
    let rejected = apply(&app, &review, &reject()).unwrap().to;
    assert_eq!(
        rejected,
        ApplicationState::Rejected {
            by: steward(),
            reason: "scenario does not justify identifier columns".into()
        }
    );
    // Exactly the minimum length passes (counted in characters, not bytes).
    let t = apply(
        &app,
        &review,
        &ApplicationEvent::Reject {
            by: admin(),
            reason: "材料不完整".into(),
        },
    );
    assert!(t.is_ok(), "{t:?}");
}

#[test]
fn either_joint_reviewer_may_reject_alone() {
    let app = facts();
    let partial = apply(&app, &under_review(&app), &approve(steward()))
        .unwrap()
        .to;
    let t = apply(
        &app,
        &partial,
        &ApplicationEvent::Reject {
            by: admin(),
            reason: "purpose is commercial".into(),
        },
    )
    .unwrap();
    assert_eq!(t.to.status(), ApplicationStatus::Rejected);
}

#[test]
fn nobody_reviews_their_own_application() {
    let app = facts();
    // The applicant acting as a steward or admin (e.g. holding several roles).
    let me_steward = Reviewer::steward("u-researcher", "org-provider", PROVIDER);
    let me_admin = Reviewer::admin("u-researcher", "org-platform");
    let review = under_review(&app);
    for by in [me_steward.clone(), me_admin.clone()] {
        let e = err(&app, &review, &approve(by.clone()));
        assert_eq!(e.code(), "self_review", "{e}");
        let e = err(
            &app,
            &review,
            &ApplicationEvent::Reject {
                by: by.clone(),
                reason: "not convincing".into(),
            },
        );
        assert_eq!(e.code(), "self_review");
        let e = err(
            &app,
            &ApplicationState::Submitted,
            &ApplicationEvent::StartCompletenessCheck { by: by.clone() },
        );
        assert_eq!(e.code(), "self_review");
        let e = err(
            &app,
            &ApplicationState::CompletenessCheck,
            &ApplicationEvent::CompletenessPassed { by },
        );
        assert_eq!(e.code(), "self_review");
    }
}

#[test]
fn nobody_from_the_applicants_organisation_reviews_it() {
    let app = facts();
    let colleague_steward = Reviewer::steward("u-colleague", "org-university", PROVIDER);
    let colleague_admin = Reviewer::admin("u-colleague-2", "org-university");
    let review = under_review(&app);
    for by in [colleague_steward, colleague_admin] {
        let e = err(&app, &review, &approve(by.clone()));
        assert_eq!(e.code(), "same_organisation", "{e}");
        let e = err(
            &app,
            &review,
            &ApplicationEvent::Return {
                by,
                reason: "please clarify".into(),
            },
        );
        assert_eq!(e.code(), "same_organisation");
    }
}

#[test]
fn one_person_cannot_give_both_joint_approvals() {
    let app = facts();
    let review = under_review(&app);
    let after_steward = apply(&app, &review, &approve(steward())).unwrap().to;
    // Same account, now acting as platform admin.
    let same_person_as_admin = Reviewer::admin("u-steward", "org-provider");
    let e = err(&app, &after_steward, &approve(same_person_as_admin));
    assert_eq!(e.code(), "duplicate_approver", "{e}");
    // Same account approving twice in the same capacity.
    let e = err(&app, &after_steward, &approve(steward()));
    assert_eq!(e.code(), "duplicate_approver");
    // A different steward cannot stand in for the admin either.
    let e = err(&app, &after_steward, &approve(steward2()));
    assert_eq!(e.code(), "approval_not_needed", "{e}");
    assert!(e.to_string().contains("platform administrator"), "{e}");
}

#[test]
fn two_required_approvals_come_from_two_people_without_joint_review() {
    // A platform whose L3 wants four eyes but no platform co-review.
    let grades = GradeScale {
        levels: vec![GradePolicy {
            name: "L3".into(),
            min_threshold: 10,
            auto_release_allowed: false,
            row_level_output_allowed: false,
            reviewers_required: 2,
            joint_review: false,
            max_nk_k: None,
            min_p_ratio: None,
        }],
    };
    let m = social_insurance();
    let app = ApplicationFacts::new(applicant(), &[&m], &grades);
    assert_eq!(
        app.review,
        ReviewRequirement {
            reviewers_required: 2,
            joint_review: false
        }
    );
    let s1 = apply(&app, &under_review(&app), &approve(steward()))
        .unwrap()
        .to;
    assert_eq!(s1.status(), ApplicationStatus::UnderReview);
    assert_eq!(
        err(&app, &s1, &approve(steward())).code(),
        "duplicate_approver"
    );
    let done = apply(&app, &s1, &approve(steward2())).unwrap().to;
    assert_eq!(
        done,
        ApplicationState::Approved {
            approvals: vec![steward(), steward2()]
        }
    );
}

#[test]
fn steward_of_another_provider_is_not_a_reviewer() {
    let app = facts();
    let foreign = Reviewer::steward("u-other", "org-other", "深圳市卫生健康委员会");
    let e = err(&app, &under_review(&app), &approve(foreign.clone()));
    assert_eq!(e.code(), "not_eligible_reviewer", "{e}");
    let e = err(
        &app,
        &ApplicationState::Submitted,
        &ApplicationEvent::StartCompletenessCheck { by: foreign },
    );
    assert_eq!(e.code(), "not_eligible_reviewer");
}

#[test]
fn only_the_applicant_submits_and_signs() {
    let app = facts();
    let other = Person {
        user_id: "u-colleague".into(),
        organisation: "org-university".into(),
        person: String::new(),
    };
    let e = err(
        &app,
        &ApplicationState::Draft,
        &ApplicationEvent::Submit { by: other.clone() },
    );
    assert_eq!(e.code(), "not_applicant");
    let approved = run(
        &app,
        &[
            submit(),
            start_check(),
            passed(),
            approve(steward()),
            approve(admin()),
        ],
    );
    assert_eq!(approved.status(), ApplicationStatus::Approved);
    let steward_person = Person {
        user_id: "u-steward".into(),
        organisation: "org-provider".into(),
        person: String::new(),
    };
    for by in [other, steward_person] {
        let e = err(&app, &approved, &ApplicationEvent::SignAgreement { by });
        assert_eq!(e.code(), "not_applicant", "{e}");
    }
    // Signing before approval is an illegal transition, even by the applicant.
    let e = err(&app, &under_review(&app), &sign());
    assert_eq!(e.code(), "illegal_transition");
    assert!(e.to_string().contains("it has not been approved"), "{e}");
}

#[test]
fn grade_l1_needs_one_steward_and_no_admin() {
    let m = with_grade("L1");
    let app = facts_for(&m);
    assert_eq!(
        app.review,
        ReviewRequirement {
            reviewers_required: 1,
            joint_review: false
        }
    );
    let review = under_review(&app);
    // The admin alone cannot approve provider data without joint review.
    let e = err(&app, &review, &approve(admin()));
    assert_eq!(e.code(), "approval_not_needed", "{e}");
    let t = apply(&app, &review, &approve(steward())).unwrap();
    assert_eq!(
        t.to,
        ApplicationState::Approved {
            approvals: vec![steward()]
        }
    );
}

#[test]
fn grade_l3_needs_steward_and_admin_in_either_order() {
    let app = facts_for(&with_grade("L3"));
    let review = under_review(&app);
    let after_admin = apply(&app, &review, &approve(admin())).unwrap().to;
    assert_eq!(after_admin.status(), ApplicationStatus::UnderReview);
    let second_admin = Reviewer::admin("u-admin-2", "org-platform");
    let e = err(&app, &after_admin, &approve(second_admin));
    assert_eq!(e.code(), "approval_not_needed");
    assert!(e.to_string().contains("provider steward"), "{e}");
    let done = apply(&app, &after_admin, &approve(steward())).unwrap().to;
    assert_eq!(
        done,
        ApplicationState::Approved {
            approvals: vec![admin(), steward()]
        }
    );
}

#[test]
fn several_datasets_take_the_strictest_grade_and_every_providers_steward() {
    let l1 = with_grade("L1");
    let mut other = with_grade("L2");
    other.dataset.id = "hospital_visits".into();
    other.dataset.provider = "深圳市卫生健康委员会".into();
    let app = ApplicationFacts::new(applicant(), &[&l1, &other], &GradeScale::default());
    assert_eq!(
        app.review,
        ReviewRequirement {
            reviewers_required: 1,
            joint_review: true
        }
    );
    let health = Reviewer::steward("u-health", "org-health", "深圳市卫生健康委员会");
    let mut state = under_review(&app);
    for r in [steward(), admin()] {
        state = apply(&app, &state, &approve(r)).unwrap().to;
        assert_eq!(state.status(), ApplicationStatus::UnderReview);
    }
    state = apply(&app, &state, &approve(health)).unwrap().to;
    assert_eq!(state.status(), ApplicationStatus::Approved);

    // An unknown grade counts as the strictest level.
    let unknown = with_grade("L9");
    let req = ReviewRequirement::for_datasets(&GradeScale::default(), &[&unknown]);
    assert_eq!(
        req,
        ReviewRequirement {
            reviewers_required: 2,
            joint_review: true
        }
    );
}

#[test]
fn workflow_error_messages_are_locked() {
    let app = facts();
    let review = under_review(&app);
    let after_steward = apply(&app, &review, &approve(steward())).unwrap().to;
    let approved = apply(&app, &after_steward, &approve(admin())).unwrap().to;
    let l1 = facts_for(&with_grade("L1"));
    let cases: Vec<(&str, WorkflowError)> = vec![
        (
            "self_review",
            err(
                &app,
                &review,
                &approve(Reviewer::admin("u-researcher", "org-x")),
            ),
        ),
        (
            "same_organisation",
            err(
                &app,
                &review,
                &approve(Reviewer::admin("u-x", "org-university")),
            ),
        ),
        (
            "duplicate_approver",
            err(
                &app,
                &after_steward,
                &approve(Reviewer::admin("u-steward", "org-provider")),
            ),
        ),
        (
            "not_needed_steward",
            err(&app, &after_steward, &approve(steward2())),
        ),
        (
            "not_needed_l1_admin",
            err(&l1, &under_review(&l1), &approve(admin())),
        ),
        (
            "foreign_steward",
            err(
                &app,
                &review,
                &approve(Reviewer::steward("u-o", "org-o", "其他机构")),
            ),
        ),
        (
            "reason",
            err(
                &app,
                &review,
                &ApplicationEvent::Reject {
                    by: admin(),
                    reason: " no ".into(),
                },
            ),
        ),
        (
            "not_applicant_sign",
            err(
                &app,
                &approved,
                &ApplicationEvent::SignAgreement {
                    by: Person {
                        user_id: "u-x".into(),
                        organisation: "org-university".into(),
                        person: String::new(),
                    },
                },
            ),
        ),
    ];
    let lines: Vec<String> = cases
        .iter()
        .map(|(name, e)| format!("{name} [{}]: {e}", e.code()))
        .collect();
    insta::assert_yaml_snapshot!("workflow_errors", lines);
}

#[test]
fn states_and_events_serialize_in_snake_case() {
    let state = ApplicationState::UnderReview {
        approvals: vec![steward(), admin()],
    };
    let json = serde_json::to_value(&state).unwrap();
    insta::assert_json_snapshot!("under_review_state", json);
    let back: ApplicationState = serde_json::from_value(json).unwrap();
    assert_eq!(back, state);
    let event = serde_json::to_value(ret()).unwrap();
    assert_eq!(event["event"], "return");
    let grant = GrantState::Suspended {
        by: GrantActor::Monitoring,
        reason: "budget exceeded".into(),
    };
    let json = serde_json::to_value(&grant).unwrap();
    assert_eq!(json["state"], "suspended");
    assert_eq!(json["by"]["actor"], "monitoring");
    assert_eq!(serde_json::from_value::<GrantState>(json).unwrap(), grant);
}

// ---------------------------------------------------------------- grants

fn ends() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
}

fn grant() -> GrantFacts {
    GrantFacts {
        providers: vec![PROVIDER.into()],
        valid_until: ends(),
    }
}

fn g_steward() -> GrantActor {
    GrantActor::Steward {
        user_id: "u-steward".into(),
        provider: PROVIDER.into(),
    }
}

fn g_admin() -> GrantActor {
    GrantActor::Admin {
        user_id: "u-admin".into(),
    }
}

fn suspend(by: GrantActor) -> GrantEvent {
    GrantEvent::Suspend {
        by,
        reason: "usage beyond the agreed scope".into(),
    }
}

fn revoke(by: GrantActor) -> GrantEvent {
    GrantEvent::Revoke {
        by,
        reason: "not rectified in time".into(),
    }
}

fn expire() -> GrantEvent {
    GrantEvent::Expire {
        by: GrantActor::System,
        at: ends(),
    }
}

fn grant_err(state: &GrantState, e: &GrantEvent) -> WorkflowError {
    match apply_grant(&grant(), state, e) {
        Ok(t) => panic!("{} accepted: {:?}", e.name(), t.to),
        Err(err) => err,
    }
}

#[test]
fn grant_lifecycle_suspend_reinstate_revoke_and_expire() {
    let g = grant();
    let mut state = GrantState::Active;
    for (e, to) in [
        (suspend(GrantActor::Monitoring), GrantStatus::Suspended),
        (
            GrantEvent::Reinstate {
                by: g_steward(),
                reason: "整改已完成".into(),
            },
            GrantStatus::Active,
        ),
        (suspend(g_admin()), GrantStatus::Suspended),
        (revoke(g_admin()), GrantStatus::Revoked),
    ] {
        let t = apply_grant(&g, &state, &e).unwrap();
        assert_eq!(t.to.status(), to);
        assert_eq!(t.event, e.name());
        state = t.to;
    }
    assert_eq!(
        state,
        GrantState::Revoked {
            by: g_admin(),
            reason: "not rectified in time".into()
        }
    );
    // Expiry from active and from suspended, exactly at the period's end.
    assert_eq!(
        apply_grant(&g, &GrantState::Active, &expire()).unwrap().to,
        GrantState::Expired
    );
    let suspended = apply_grant(&g, &GrantState::Active, &suspend(g_steward()))
        .unwrap()
        .to;
    assert_eq!(
        apply_grant(&g, &suspended, &expire()).unwrap().to,
        GrantState::Expired
    );
}

#[test]
fn every_illegal_grant_transition_is_refused() {
    use GrantStatus as S;
    let states = vec![
        GrantState::Active,
        GrantState::Suspended {
            by: GrantActor::Monitoring,
            reason: "anomaly detected".into(),
        },
        GrantState::Revoked {
            by: g_admin(),
            reason: "misuse confirmed".into(),
        },
        GrantState::Expired,
    ];
    assert_eq!(
        states.iter().map(|s| s.status()).collect::<Vec<_>>(),
        S::ALL.to_vec()
    );
    let events = vec![
        suspend(g_steward()),
        GrantEvent::Reinstate {
            by: g_admin(),
            reason: "整改已完成".into(),
        },
        revoke(g_steward()),
        expire(),
    ];
    let legal: Vec<(S, &str)> = vec![
        (S::Active, "suspend"),
        (S::Active, "revoke"),
        (S::Active, "expire"),
        (S::Suspended, "reinstate"),
        (S::Suspended, "revoke"),
        (S::Suspended, "expire"),
    ];
    let mut accepted = Vec::new();
    let mut messages = Vec::new();
    for s in &states {
        for e in &events {
            match apply_grant(&grant(), s, e) {
                Ok(_) => accepted.push((s.status(), e.name())),
                Err(err) => {
                    assert_eq!(err.code(), "illegal_transition", "{err}");
                    messages.push(err.to_string());
                }
            }
        }
    }
    assert_eq!(accepted, legal);
    insta::assert_yaml_snapshot!("illegal_grant_transitions", messages);
}

#[test]
fn grant_actors_reasons_and_period_are_enforced() {
    let active = GrantState::Active;
    let suspended = GrantState::Suspended {
        by: GrantActor::Monitoring,
        reason: "anomaly detected".into(),
    };
    let foreign = GrantActor::Steward {
        user_id: "u-other".into(),
        provider: "其他机构".into(),
    };
    let cases: Vec<(&str, GrantState, GrantEvent, &str)> = vec![
        (
            "system suspends",
            active.clone(),
            suspend(GrantActor::System),
            "not_authorized",
        ),
        (
            "monitoring reinstates",
            suspended.clone(),
            GrantEvent::Reinstate {
                by: GrantActor::Monitoring,
                reason: "整改已完成".into(),
            },
            "not_authorized",
        ),
        (
            "monitoring revokes",
            active.clone(),
            revoke(GrantActor::Monitoring),
            "not_authorized",
        ),
        (
            "admin expires",
            active.clone(),
            GrantEvent::Expire {
                by: g_admin(),
                at: ends(),
            },
            "not_authorized",
        ),
        (
            "foreign steward suspends",
            active.clone(),
            suspend(foreign.clone()),
            "not_authorized",
        ),
        (
            "foreign steward reinstates",
            suspended.clone(),
            GrantEvent::Reinstate {
                by: foreign,
                reason: "整改已完成".into(),
            },
            "not_authorized",
        ),
        (
            "steward lifts an admin's suspension",
            GrantState::Suspended {
                by: g_admin(),
                reason: "超范围使用，待核查".into(),
            },
            GrantEvent::Reinstate {
                by: g_steward(),
                reason: "整改已完成".into(),
            },
            "not_authorized",
        ),
        (
            "suspend without reason",
            active.clone(),
            GrantEvent::Suspend {
                by: g_steward(),
                reason: "  ".into(),
            },
            "reason_required",
        ),
        (
            "revoke without reason",
            suspended.clone(),
            GrantEvent::Revoke {
                by: g_admin(),
                reason: "bad".into(),
            },
            "reason_required",
        ),
        (
            "expire early",
            active.clone(),
            GrantEvent::Expire {
                by: GrantActor::System,
                at: ends() - chrono::Duration::seconds(1),
            },
            "period_not_ended",
        ),
    ];
    let mut lines = Vec::new();
    for (name, state, event, code) in cases {
        let e = grant_err(&state, &event);
        assert_eq!(e.code(), code, "{name}: {e}");
        lines.push(format!("{name} [{}]: {e}", e.code()));
    }
    insta::assert_yaml_snapshot!("grant_errors", lines);
}

// ---------------------------------------------------------------- eligibility

fn university() -> ApplicantFacts {
    ApplicantFacts {
        organisation_type: OrganisationType::University,
        credit_flags: vec![],
        verified: true,
    }
}

fn request() -> RequestFacts {
    RequestFacts {
        scenario_category: "academic_research".into(),
        usage_method: UsageMethod::ModelResults,
        columns: vec!["sex".into(), "district".into(), "contribution_base".into()],
        purpose_is_research: true,
    }
}

/// Asserts exactly one refusal, with `code`, and returns its reason.
fn only_refusal(a: &ApplicantFacts, r: &RequestFacts, m: &Manifest, code: RefusalCode) -> String {
    let refusals = check_eligibility(a, r, m).expect_err("refused");
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert_eq!(refusals[0].code, code);
    refusals[0].reason.clone()
}

#[test]
fn eligible_request_passes() {
    let m = social_insurance();
    assert_eq!(check_eligibility(&university(), &request(), &m), Ok(()));
    let gov = ApplicantFacts {
        organisation_type: OrganisationType::Government,
        ..university()
    };
    // GD:26 binds universities and institutes only.
    let policy = RequestFacts {
        scenario_category: "public_policy".into(),
        purpose_is_research: false,
        ..request()
    };
    assert_eq!(check_eligibility(&gov, &policy, &m), Ok(()));
}

#[test]
fn unverified_account_is_refused() {
    let a = ApplicantFacts {
        verified: false,
        ..university()
    };
    let reason = only_refusal(
        &a,
        &request(),
        &social_insurance(),
        RefusalCode::NotVerified,
    );
    assert!(reason.contains("real-name"), "{reason}");
}

#[test]
fn not_open_dataset_is_refused() {
    let mut m = social_insurance();
    m.dataset.open_type = OpenType::NotOpen;
    let reason = only_refusal(&university(), &request(), &m, RefusalCode::DatasetNotOpen);
    assert!(reason.contains("not_open"), "{reason}");
}

#[test]
fn organisation_type_not_allowed_is_refused() {
    let a = ApplicantFacts {
        organisation_type: OrganisationType::Enterprise,
        ..university()
    };
    let reason = only_refusal(
        &a,
        &request(),
        &social_insurance(),
        RefusalCode::OrganisationTypeNotAllowed,
    );
    assert!(reason.contains("`enterprise`"), "{reason}");
    assert!(
        reason.contains("university, research_institute, government"),
        "{reason}"
    );
}

#[test]
fn each_credit_flag_is_refused() {
    let m = social_insurance();
    for flag in [
        CreditFlag::DishonestDebtor,
        CreditFlag::AbnormalOperation,
        CreditFlag::SeriousViolation,
    ] {
        let a = ApplicantFacts {
            credit_flags: vec![flag],
            ..university()
        };
        let reason = only_refusal(&a, &request(), &m, RefusalCode::CreditFlag);
        assert!(reason.contains(flag.as_str()), "{reason}");
    }
    // A flag the manifest's conditions do not name is the provider's choice.
    let mut lenient = social_insurance();
    lenient.conditions.user.credit = vec![enclave::catalog::CreditRequirement::NotDishonestDebtor];
    let a = ApplicantFacts {
        credit_flags: vec![CreditFlag::AbnormalOperation],
        ..university()
    };
    assert_eq!(check_eligibility(&a, &request(), &lenient), Ok(()));
}

#[test]
fn scenario_not_allowed_is_refused() {
    let r = RequestFacts {
        scenario_category: "urban_planning".into(),
        ..request()
    };
    let reason = only_refusal(
        &university(),
        &r,
        &social_insurance(),
        RefusalCode::ScenarioNotAllowed,
    );
    assert!(reason.contains("`urban_planning`"), "{reason}");
}

#[test]
fn forbidden_scenario_is_refused() {
    let mut m = social_insurance();
    m.conditions.scenario.allowed.clear();
    let r = RequestFacts {
        scenario_category: "credit_scoring".into(),
        ..request()
    };
    let reason = only_refusal(&university(), &r, &m, RefusalCode::ScenarioForbidden);
    assert!(reason.contains("`credit_scoring`"), "{reason}");
    // With the allowed list in place, both rules refuse.
    let codes: Vec<_> = check_eligibility(&university(), &r, &social_insurance())
        .unwrap_err()
        .into_iter()
        .map(|r| r.code)
        .collect();
    assert_eq!(
        codes,
        vec![
            RefusalCode::ScenarioNotAllowed,
            RefusalCode::ScenarioForbidden
        ]
    );
}

#[test]
fn emergency_scenarios_follow_the_lists_and_the_umbrella_slug() {
    assert_eq!(EMERGENCY_CATEGORIES.len(), 4);
    assert!(EMERGENCY_CATEGORIES.iter().all(|c| is_emergency(c)));
    assert!(!is_emergency(EMERGENCY) && !is_emergency("academic_research"));
    let gov = ApplicantFacts {
        organisation_type: OrganisationType::Government,
        ..university()
    };
    let req = |c: &str| RequestFacts {
        scenario_category: c.into(),
        ..request()
    };
    // social_insurance lists neither: every emergency category is refused.
    for c in EMERGENCY_CATEGORIES {
        only_refusal(
            &gov,
            &req(c),
            &social_insurance(),
            RefusalCode::ScenarioNotAllowed,
        );
    }
    // Listing `emergency` allows all four, and nothing else.
    let mut m = social_insurance();
    m.conditions.scenario.allowed = vec![EMERGENCY.into()];
    for c in EMERGENCY_CATEGORIES {
        assert_eq!(check_eligibility(&gov, &req(c), &m), Ok(()), "{c}");
    }
    only_refusal(
        &gov,
        &req("academic_research"),
        &m,
        RefusalCode::ScenarioNotAllowed,
    );
    // Listing one category allows that one only.
    m.conditions.scenario.allowed = vec![PUBLIC_HEALTH_EMERGENCY.into()];
    assert_eq!(
        check_eligibility(&gov, &req(PUBLIC_HEALTH_EMERGENCY), &m),
        Ok(())
    );
    only_refusal(
        &gov,
        &req(NATURAL_DISASTER),
        &m,
        RefusalCode::ScenarioNotAllowed,
    );
    // No allowed list: open to emergencies unless `emergency` is forbidden.
    m.conditions.scenario.allowed.clear();
    assert_eq!(check_eligibility(&gov, &req(PUBLIC_SAFETY), &m), Ok(()));
    m.conditions.scenario.forbidden.push(EMERGENCY.into());
    only_refusal(
        &gov,
        &req(ACCIDENT_DISASTER),
        &m,
        RefusalCode::ScenarioForbidden,
    );
}

#[test]
fn usage_method_not_allowed_is_refused() {
    let mut m = social_insurance();
    m.conditions.usage_methods = vec![UsageMethod::InDomain];
    let reason = only_refusal(
        &university(),
        &request(),
        &m,
        RefusalCode::UsageMethodNotAllowed,
    );
    assert!(reason.contains("`model_results`"), "{reason}");
}

#[test]
fn unknown_and_missing_columns_are_refused() {
    let r = RequestFacts {
        columns: vec!["sex".into(), "salary".into(), "religion".into()],
        ..request()
    };
    let refusals = check_eligibility(&university(), &r, &social_insurance()).unwrap_err();
    assert_eq!(refusals.len(), 2);
    assert!(
        refusals
            .iter()
            .all(|r| r.code == RefusalCode::UnknownColumn)
    );
    assert!(refusals[0].reason.contains("`salary`"));
    assert!(refusals[1].reason.contains("`religion`"));
    let none = RequestFacts {
        columns: vec![],
        ..request()
    };
    only_refusal(
        &university(),
        &none,
        &social_insurance(),
        RefusalCode::NoColumns,
    );
}

#[test]
fn research_bodies_may_use_data_only_for_research() {
    let r = RequestFacts {
        purpose_is_research: false,
        ..request()
    };
    for t in [
        OrganisationType::University,
        OrganisationType::ResearchInstitute,
    ] {
        let a = ApplicantFacts {
            organisation_type: t,
            ..university()
        };
        let reason = only_refusal(&a, &r, &social_insurance(), RefusalCode::ResearchOnly);
        assert!(reason.contains("GD:26"), "{reason}");
    }
}

#[test]
fn every_refusal_is_reported_at_once() {
    let mut m = social_insurance();
    m.dataset.open_type = OpenType::NotOpen;
    m.conditions.usage_methods = vec![UsageMethod::InDomain];
    let a = ApplicantFacts {
        organisation_type: OrganisationType::Enterprise,
        credit_flags: vec![
            CreditFlag::SeriousViolation,
            CreditFlag::DishonestDebtor,
            CreditFlag::DishonestDebtor,
        ],
        verified: false,
    };
    let r = RequestFacts {
        scenario_category: "marketing".into(),
        usage_method: UsageMethod::Invisible,
        columns: vec!["district".into(), "phone".into()],
        purpose_is_research: false,
    };
    let refusals = check_eligibility(&a, &r, &m).unwrap_err();
    let codes: Vec<&str> = refusals.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(
        codes,
        vec![
            "not_verified",
            "dataset_not_open",
            "organisation_type_not_allowed",
            "credit_flag",
            "credit_flag",
            "scenario_not_allowed",
            "scenario_forbidden",
            "usage_method_not_allowed",
            "unknown_column",
        ]
    );
    let lines: Vec<String> = refusals.iter().map(|r| r.to_string()).collect();
    insta::assert_yaml_snapshot!("all_refusals", lines);

    // A research institute with every other problem too gets research_only.
    let inst = ApplicantFacts {
        organisation_type: OrganisationType::ResearchInstitute,
        ..a
    };
    let refusals = check_eligibility(&inst, &r, &m).unwrap_err();
    assert_eq!(refusals.last().unwrap().code, RefusalCode::ResearchOnly);
    let json = serde_json::to_value(&refusals[0]).unwrap();
    assert_eq!(json["code"], "not_verified");
}
