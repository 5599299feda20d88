//! `anyu verify-receipt` on receipts signed with a data directory's platform key.

use crate::common::{run, stdout};
use enclave::access::agreement::{self, AgreementTerms};
use enclave::keyring::Keyring;

#[test]
fn verify_receipt_accepts_genuine_and_refuses_altered() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);

    let keyring = Keyring::open(&data.join("keys")).unwrap();
    let template = agreement::current();
    let terms = AgreementTerms {
        application_id: "app-0001".into(),
        applicant_name: "李研究".into(),
        organisation: "深圳大学".into(),
        datasets: vec!["social_insurance@v1".into()],
        period_start: chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        period_end: chrono::NaiveDate::from_ymd_opt(2027, 5, 31).unwrap(),
        scenario: "academic_research".into(),
    };
    let text = agreement::render(template, &terms);
    let receipt = agreement::sign_receipt(
        &keyring,
        template,
        &terms,
        "u-1",
        "demo_researcher",
        chrono::Utc::now(),
        &text,
        None,
    )
    .unwrap();
    let path = dir.path().join("receipt.json");
    std::fs::write(&path, receipt.to_json()).unwrap();
    let text_path = dir.path().join("agreement.md");
    std::fs::write(&text_path, &text).unwrap();

    let out = run(
        &data,
        &[
            "verify-receipt",
            path.to_str().unwrap(),
            "--text",
            text_path.to_str().unwrap(),
        ],
        true,
    );
    assert!(stdout(&out).contains("receipt OK"), "{}", stdout(&out));

    // Anyone holding only the public key can verify, without the data directory.
    let public_key = std::fs::read_to_string(data.join("keys/signing.pub")).unwrap();
    let elsewhere = dir.path().join("not-a-data-dir");
    let out = run(
        &elsewhere,
        &[
            "verify-receipt",
            path.to_str().unwrap(),
            "--public-key",
            public_key.trim(),
        ],
        true,
    );
    assert!(stdout(&out).contains("receipt OK"), "{}", stdout(&out));

    // An altered period, or an altered text, fails with exit code 1.
    let altered = receipt.to_json().replace("2027-05-31", "2028-05-31");
    std::fs::write(&path, altered).unwrap();
    let out = run(&data, &["verify-receipt", path.to_str().unwrap()], false);
    assert!(stdout(&out).contains("does not verify"), "{}", stdout(&out));
    std::fs::write(&path, receipt.to_json()).unwrap();
    std::fs::write(&text_path, text.replace("深圳大学", "别的大学")).unwrap();
    let out = run(
        &data,
        &[
            "verify-receipt",
            path.to_str().unwrap(),
            "--text",
            text_path.to_str().unwrap(),
        ],
        false,
    );
    assert!(stdout(&out).contains("does not match"), "{}", stdout(&out));
}

#[test]
fn a_receipt_signed_through_the_api_covers_the_grants_conditions() {
    use crate::common::{
        People, Stage, TestServer, add_people, application_at, new_project, prepared_data_dir,
    };
    let dir = prepared_data_dir(100, &["social_insurance"]);
    let data = dir.path().join("data");
    add_people(&data);
    let server = TestServer::start(&data);
    let p = People::login(&server);
    let project = new_project(&server, &p.researcher, "academic_research");
    let (app, grant) = application_at(&server, &p, &project, Stage::Signed);
    let receipt = server.expect(
        200,
        "GET",
        &format!("/api/applications/{app}/agreement/receipt"),
        Some(&p.researcher),
        None,
    );
    assert_eq!(receipt["format"], "anyu.agreement-receipt/2", "{receipt}");
    assert_eq!(receipt["conditions"]["grant_id"], grant.as_deref().unwrap());
    // The agreement can be fetched again after signing, as signed, with its receipt.
    let signed = server.expect(
        200,
        "GET",
        &format!("/api/applications/{app}/agreement"),
        Some(&p.researcher),
        None,
    );
    assert_eq!(signed["receipt"], receipt, "{signed}");
    assert_eq!(signed["sha256"], receipt["agreement_sha256"]);
    assert_eq!(signed["signed_at"], receipt["signed_at"]);
    let signed_text = signed["text"].as_str().unwrap().to_string();
    let grant = server.expect(
        200,
        "GET",
        &format!("/api/grants/{}", grant.unwrap()),
        Some(&p.researcher),
        None,
    );
    let key = server.expect(200, "GET", "/api/platform/keys", None, None)["signing_public_key"]
        .as_str()
        .unwrap()
        .to_string();
    server.stop();

    let receipt_path = dir.path().join("receipt.json");
    std::fs::write(&receipt_path, receipt.to_string()).unwrap();
    let grant_path = dir.path().join("grant.json");
    std::fs::write(&grant_path, grant.to_string()).unwrap();
    let text_path = dir.path().join("agreement.md");
    std::fs::write(&text_path, &signed_text).unwrap();
    let out = run(
        &dir.path().join("elsewhere"),
        &[
            "verify-receipt",
            receipt_path.to_str().unwrap(),
            "--text",
            text_path.to_str().unwrap(),
            "--public-key",
            &key,
        ],
        true,
    );
    assert!(stdout(&out).contains("text checked"), "{}", stdout(&out));
    let check = |ok: bool| {
        let out = run(
            &dir.path().join("elsewhere"),
            &[
                "verify-receipt",
                receipt_path.to_str().unwrap(),
                "--grant",
                grant_path.to_str().unwrap(),
                "--public-key",
                &key,
            ],
            ok,
        );
        stdout(&out)
    };
    let out = check(true);
    assert!(out.contains("conditions match the grant"), "{out}");
    // A grant with more columns or a larger budget is not the one signed.
    let mut wider = grant.clone();
    wider["budgets"]["released_rows"] = serde_json::json!(999_999_999);
    std::fs::write(&grant_path, wider.to_string()).unwrap();
    let out = check(false);
    assert!(out.contains("receipt INVALID"), "{out}");
}
