//! `anyu verify-release` on results released with a data directory's platform key.

use crate::common;

use std::sync::Arc;

use crate::common::{run, stdout};
use datafusion::arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use enclave::keyring::Keyring;
use enclave::release::{
    self, CERTIFICATE_FORMAT, Certificate, DatasetEntry, QueryKind, QuerySection, Researcher,
};

/// A result in every download format and its certificate, signed with `keyring`.
pub(crate) fn signed_release(
    keyring: &Keyring,
) -> (Vec<(release::ResultFormat, Vec<u8>)>, Certificate) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("district", DataType::Utf8, true),
        Field::new("persons", DataType::Int64, false),
        Field::new("mean_wage", DataType::Float64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![
            Some("福田区"),
            None,
            Some("南山区"),
        ])),
        Arc::new(Int64Array::from(vec![120, 45, 98])),
        Arc::new(Float64Array::from(vec![Some(-1.5), Some(8123.25), None])),
    ];
    let batches = [RecordBatch::try_new(schema.clone(), columns).unwrap()];
    let files = release::result_files(&schema, &batches).unwrap();
    let cert = release::sign(
        keyring,
        Certificate {
            format: CERTIFICATE_FORMAT.into(),
            release_id: "rel-e2e".into(),
            job_id: "job-e2e".into(),
            grant_id: "grant-e2e".into(),
            application_id: "app-e2e".into(),
            researcher: Researcher {
                user_id: "u-1".into(),
                username: "demo_researcher".into(),
                organisation: "深圳大学".into(),
            },
            query: QuerySection {
                kind: QueryKind::Sql,
                text: "SELECT district, count(*) FROM social_insurance GROUP BY district".into(),
                plan_summary: "Aggregate".into(),
                model: None,
            },
            datasets: vec![DatasetEntry {
                dataset_id: "social_insurance".into(),
                version: 1,
                sha256: "ab".repeat(32),
            }],
            result: release::result_section(&schema, &batches, &files),
            checks: serde_json::json!({"verdict": "pass"}),
            reviewers: vec![],
            dp: None,
            released_at: release::certificate_time(chrono::Utc::now()),
            citation: "数据来源：深圳市社会保险基金管理局，经安域公共数据安全域（release rel-e2e）"
                .into(),
            platform_key_id: String::new(),
            platform_signature: String::new(),
        },
    )
    .unwrap();
    (files, cert)
}

#[test]
fn verify_release_accepts_genuine_and_refuses_altered() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    let keyring = Keyring::open(&data.join("keys")).unwrap();

    let (files, cert) = signed_release(&keyring);
    let cert_path = dir.path().join("certificate.json");
    std::fs::write(&cert_path, cert.to_json()).unwrap();
    let cert_arg = cert_path.to_str().unwrap();

    // Every download verifies, and the output says which format it is.
    for (format, bytes) in &files {
        let path = dir.path().join(format!("result.{}", format.extension()));
        std::fs::write(&path, bytes).unwrap();
        let out = run(
            &data,
            &["verify-release", path.to_str().unwrap(), cert_arg],
            true,
        );
        let text = stdout(&out);
        assert!(
            text.starts_with(&format!(
                "release OK: release rel-e2e of job job-e2e (grant grant-e2e), 3 rows, format {format}, released {}, key {}",
                cert.released_at, cert.platform_key_id
            )),
            "{text}"
        );
    }

    // Anyone holding only the public key can verify, without the data directory.
    let csv = dir.path().join("result.csv");
    let public_key = std::fs::read_to_string(data.join("keys/signing.pub")).unwrap();
    let elsewhere = dir.path().join("not-a-data-dir");
    let out = run(
        &elsewhere,
        &[
            "verify-release",
            csv.to_str().unwrap(),
            cert_arg,
            "--public-key",
            public_key.trim(),
        ],
        true,
    );
    assert!(stdout(&out).contains("release OK"), "{}", stdout(&out));
    let out = common::anyu(&elsewhere)
        .args(["verify-release", csv.to_str().unwrap(), cert_arg])
        .env("ANYU_PUBLIC_KEY", public_key.trim())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stdout(&out));
    // Or with the platform's key document saved from GET /api/platform/keys.
    let keys_json = dir.path().join("platform-keys.json");
    std::fs::write(
        &keys_json,
        serde_json::json!({
            "algorithm": "ed25519",
            "signing_public_key": public_key.trim(),
            "fingerprint": "as published",
        })
        .to_string(),
    )
    .unwrap();
    let out = run(
        &elsewhere,
        &[
            "verify-release",
            csv.to_str().unwrap(),
            cert_arg,
            "--public-key",
            keys_json.to_str().unwrap(),
        ],
        true,
    );
    assert!(stdout(&out).contains("release OK"), "{}", stdout(&out));
    // Without a key and a data directory, the error says where to get one.
    let out = common::anyu(&elsewhere)
        .args(["verify-release", csv.to_str().unwrap(), cert_arg])
        .env_remove("ANYU_PUBLIC_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--public-key") && err.contains("GET /api/platform/keys"),
        "{err}"
    );

    // A tampered result exits 1 and says INVALID.
    let mut tampered = files[0].1.clone();
    let last = tampered.len() - 2;
    tampered[last] ^= 0x01;
    let bad = dir.path().join("tampered.csv");
    std::fs::write(&bad, &tampered).unwrap();
    let out = run(
        &data,
        &["verify-release", bad.to_str().unwrap(), cert_arg],
        false,
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out).trim(),
        "release INVALID: crypto: the result file does not match the certificate"
    );

    // A tampered certificate exits 1 too.
    let altered = dir.path().join("altered.json");
    std::fs::write(
        &altered,
        cert.to_json().replace("\"rows\": 3", "\"rows\": 4"),
    )
    .unwrap();
    let out = run(
        &data,
        &[
            "verify-release",
            csv.to_str().unwrap(),
            altered.to_str().unwrap(),
        ],
        false,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("release INVALID: crypto: certificate signature does not verify"),
        "{}",
        stdout(&out)
    );

    // Another platform's key exits 1, naming both keys.
    let other_dir = tempfile::tempdir().unwrap();
    let other = Keyring::init(&other_dir.path().join("keys")).unwrap();
    let out = run(
        &data,
        &[
            "verify-release",
            csv.to_str().unwrap(),
            cert_arg,
            "--public-key",
            &hex::encode(other.public_key()),
        ],
        false,
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.starts_with("release INVALID: "), "{text}");
    assert!(
        text.contains(&format!("signed by key {}", cert.platform_key_id)),
        "{text}"
    );
}

/// A certificate that repeats a key is refused even when the signature still
/// verifies over the value serde keeps: a reader keeping the first of the two
/// would see a forged value (here a forged verdict in `checks`, and a forged
/// dataset hash).
#[test]
fn signed_documents_with_duplicate_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(&data, &["init"], true);
    let keyring = Keyring::open(&data.join("keys")).unwrap();
    let (files, cert) = signed_release(&keyring);
    let csv = dir.path().join("result.csv");
    let (_, bytes) = files.iter().find(|(f, _)| f.extension() == "csv").unwrap();
    std::fs::write(&csv, bytes).unwrap();
    let genuine = cert.to_json();
    let forged_checks =
        genuine.replacen("\"checks\": {", "\"checks\": {\"verdict\": \"fail\", ", 1);
    let forged_hash = genuine.replacen(
        "\"sha256\": \"",
        &format!("\"sha256\": \"{}\", \"sha256\": \"", "cd".repeat(32)),
        1,
    );
    for (name, text) in [("checks.json", forged_checks), ("hash.json", forged_hash)] {
        assert_ne!(text, genuine, "{name}: the forgery was not inserted");
        let path = dir.path().join(name);
        std::fs::write(&path, &text).unwrap();
        let out = run(
            &data,
            &[
                "verify-release",
                csv.to_str().unwrap(),
                path.to_str().unwrap(),
            ],
            false,
        );
        assert_eq!(out.status.code(), Some(1), "{name}");
        let said = stdout(&out);
        assert!(said.starts_with("release INVALID: "), "{name}: {said}");
        assert!(
            said.contains("certificate repeats a key (line "),
            "{name}: {said}"
        );
        assert!(!said.contains("cdcd"), "{name}: {said}");
    }
}
