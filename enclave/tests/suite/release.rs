//! Released results: the four download formats and signed release certificates.

use std::io::Cursor;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array,
    Int64Array, ListArray, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::{csv, ipc, json};
use enclave::Error;
use enclave::access::agreement::key_id;
use enclave::audit::{NewEvent, canonical_event};
use enclave::keyring::{Keyring, verify_signature};
use enclave::release::{
    CERTIFICATE_FORMAT, Certificate, DatasetEntry, QueryKind, QuerySection, Researcher,
    ResultFormat, ReviewDecision, Reviewer, encode, format_entries, result_files, result_section,
    sha256_hex, sign, verify,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

// ---------------------------------------------------------------- fixtures

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("district", DataType::Utf8, true),
        Field::new("persons", DataType::Int64, true),
        Field::new("mean_wage", DataType::Float64, true),
        Field::new("insured", DataType::Boolean, true),
        Field::new("as_of", DataType::Date32, true),
        Field::new(
            "updated",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            true,
        ),
        Field::new("total", DataType::UInt64, true),
        Field::new("code", DataType::Int32, true),
        Field::new("amount", DataType::Decimal128(12, 2), true),
    ]))
}

/// One batch of `n` rows starting at row `start`: nulls, non-ASCII text, text
/// that needs CSV quoting, negative and fractional floats.
fn rows(start: usize, n: usize) -> RecordBatch {
    let names = ["福田区", "南山区", "say \"hi\", then\nleave", "Bao'an"];
    let r = start..start + n;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter(r.clone().map(|i| {
            (i % 5 != 4).then(|| names[i % names.len()].to_string())
        }))),
        Arc::new(Int64Array::from_iter(r.clone().map(|i| {
            (i % 7 != 3).then_some(i as i64 * 1_000_003 - 40_000_000_000)
        }))),
        Arc::new(Float64Array::from_iter(r.clone().map(|i| {
            (i % 6 != 5).then_some(12.125 - i as f64 * 3.37 + 1e-9 * i as f64)
        }))),
        Arc::new(BooleanArray::from_iter(
            r.clone().map(|i| (i % 4 != 2).then_some(i % 3 == 0)),
        )),
        Arc::new(Date32Array::from_iter(
            r.clone()
                .map(|i| (i % 9 != 8).then_some(20_454 + i as i32 % 400)),
        )),
        Arc::new(TimestampMicrosecondArray::from_iter(r.clone().map(|i| {
            (i % 8 != 1).then_some(1_767_225_600_000_000 + i as i64 * 1_000_123)
        }))),
        Arc::new(UInt64Array::from_iter(
            r.clone()
                .map(|i| (i % 10 != 9).then_some(u64::MAX - i as u64)),
        )),
        Arc::new(Int32Array::from_iter(
            r.clone()
                .map(|i| (i % 11 != 7).then_some(440_300 + i as i32 - 50)),
        )),
        Arc::new(
            Decimal128Array::from_iter(
                r.map(|i| (i % 12 != 6).then_some(i as i128 * 12_345 - 99_999)),
            )
            .with_precision_and_scale(12, 2)
            .unwrap(),
        ),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

/// 10 rows in two batches.
fn result() -> Vec<RecordBatch> {
    vec![rows(0, 6), rows(6, 4)]
}

fn all(batches: &[RecordBatch]) -> RecordBatch {
    concat_batches(&schema(), batches).unwrap()
}

fn assert_same_rows(what: &str, got: &[RecordBatch], want: &[RecordBatch]) {
    let (got, want) = (
        concat_batches(&schema(), got).unwrap(),
        concat_batches(&schema(), want).unwrap(),
    );
    assert_eq!(got.num_rows(), want.num_rows(), "{what}: row count");
    for (i, f) in schema().fields().iter().enumerate() {
        assert_eq!(
            got.column(i).as_ref(),
            want.column(i).as_ref(),
            "{what}: column {}",
            f.name()
        );
    }
}

// ---------------------------------------------------------------- decoders

fn decode_csv(bytes: &[u8]) -> Vec<RecordBatch> {
    let text = std::str::from_utf8(bytes).unwrap();
    let header = text.lines().next().unwrap();
    assert_eq!(
        header,
        "district,persons,mean_wage,insured,as_of,updated,total,code,amount"
    );
    csv::ReaderBuilder::new(schema())
        .with_header(true)
        .build(Cursor::new(bytes))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn decode_json(bytes: &[u8]) -> Vec<RecordBatch> {
    let rows: Vec<Value> = serde_json::from_slice(bytes).unwrap();
    assert!(rows.iter().all(Value::is_object));
    // arrow's reader wants one object after another, so drop the array's own
    // brackets and commas (not serde_json: its float parsing is not exact).
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    let mut lines = Vec::with_capacity(bytes.len());
    for &b in bytes {
        let keep = match b {
            _ if in_str => {
                (in_str, esc) = (esc || b != b'"', !esc && b == b'\\');
                true
            }
            b'"' => {
                in_str = true;
                true
            }
            b'[' | b'{' => {
                depth += 1;
                depth > 1
            }
            b']' | b'}' => {
                depth -= 1;
                depth > 0
            }
            b',' => depth > 1,
            _ => true,
        };
        if keep {
            lines.push(b);
        } else if b == b',' {
            lines.push(b'\n');
        }
    }
    json::ReaderBuilder::new(schema())
        .build(Cursor::new(lines))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn decode_parquet(bytes: &[u8]) -> Vec<RecordBatch> {
    let mut file = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut file, bytes).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    assert_eq!(reader.schema().fields(), schema().fields());
    assert_eq!(
        reader.metadata().file_metadata().created_by(),
        Some("anyu"),
        "created_by is pinned"
    );
    reader.build().unwrap().collect::<Result<_, _>>().unwrap()
}

fn decode_ipc(bytes: &[u8]) -> Vec<RecordBatch> {
    let reader = ipc::reader::FileReader::try_new(Cursor::new(bytes.to_vec()), None).unwrap();
    assert_eq!(reader.schema().fields(), schema().fields());
    reader.collect::<Result<_, _>>().unwrap()
}

fn decode(format: ResultFormat, bytes: &[u8]) -> Vec<RecordBatch> {
    match format {
        ResultFormat::Csv => decode_csv(bytes),
        ResultFormat::Json => decode_json(bytes),
        ResultFormat::Parquet => decode_parquet(bytes),
        ResultFormat::ArrowIpc => decode_ipc(bytes),
    }
}

// ---------------------------------------------------------------- export

#[test]
fn every_format_round_trips() {
    let want = result();
    for format in ResultFormat::ALL {
        let bytes = encode(&schema(), &want, format).unwrap();
        let got = decode(format, &bytes);
        assert_same_rows(format.as_str(), &got, &want);
    }
}

#[test]
fn decoded_values_are_the_planted_ones() {
    // Guards the round-trip test against a decoder that drops what it cannot read.
    let batch = all(&decode_csv(
        &encode(&schema(), &result(), ResultFormat::Csv).unwrap(),
    ));
    let district = batch
        .column(0)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(district.value(0), "福田区");
    assert_eq!(district.value(2), "say \"hi\", then\nleave");
    assert!(district.is_null(4));
    let wage = batch
        .column(2)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert_eq!(wage.value(0), 12.125);
    assert!(wage.value(4) < 0.0 && wage.value(4).fract() != 0.0);
    assert!(wage.is_null(5));

    let text =
        String::from_utf8(encode(&schema(), &result(), ResultFormat::Json).unwrap()).unwrap();
    assert!(text.starts_with("[{\"district\":\"福田区\","), "{text}");
    assert!(text.ends_with("}]"));
}

#[test]
fn text_formats_snapshot() {
    let csv = encode(&schema(), &[rows(0, 5)], ResultFormat::Csv).unwrap();
    let json = encode(&schema(), &[rows(0, 5)], ResultFormat::Json).unwrap();
    insta::assert_snapshot!("export_csv", String::from_utf8(csv).unwrap());
    insta::assert_snapshot!("export_json", String::from_utf8(json).unwrap());
}

#[test]
fn encoding_is_deterministic_and_independent_of_batching() {
    let big = 20_000;
    let one = vec![rows(0, big)];
    let many: Vec<RecordBatch> = (0..big)
        .step_by(1234)
        .map(|s| rows(s, 1234.min(big - s)))
        .collect();
    let with_empty = vec![rows(0, 0), rows(0, 7), rows(7, 0), rows(7, big - 7)];
    let mut hashes = Vec::new();
    for format in ResultFormat::ALL {
        let a = encode(&schema(), &one, format).unwrap();
        assert_eq!(
            a,
            encode(&schema(), &one, format).unwrap(),
            "{format} twice"
        );
        assert_eq!(
            a,
            encode(&schema(), &many, format).unwrap(),
            "{format} re-batched"
        );
        assert_eq!(
            a,
            encode(&schema(), &with_empty, format).unwrap(),
            "{format} with empty batches"
        );
        let small = encode(&schema(), &result(), format).unwrap();
        hashes.push(format!(
            "{format:<9} {:>6} bytes  {}",
            small.len(),
            sha256_hex(&small)
        ));
    }
    // Locks the bytes: a changed writer or setting shows up here first.
    insta::assert_snapshot!("export_hashes", hashes.join("\n"));
}

#[test]
fn empty_results_keep_their_columns() {
    for format in ResultFormat::ALL {
        let bytes = encode(&schema(), &[], format).unwrap();
        assert_eq!(bytes, encode(&schema(), &[rows(0, 0)], format).unwrap());
        let got = decode(format, &bytes);
        assert_eq!(
            got.iter().map(RecordBatch::num_rows).sum::<usize>(),
            0,
            "{format}"
        );
    }
    let csv = encode(&schema(), &[], ResultFormat::Csv).unwrap();
    assert_eq!(
        csv,
        b"district,persons,mean_wage,insured,as_of,updated,total,code,amount\n"
    );
    assert_eq!(encode(&schema(), &[], ResultFormat::Json).unwrap(), b"[]");
}

#[test]
fn unsupported_columns_and_foreign_batches_are_refused() {
    let list = Arc::new(Schema::new(vec![Field::new(
        "secret_list",
        DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
        true,
    )]));
    let batch = RecordBatch::try_new(
        list.clone(),
        vec![Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
            vec![Some(vec![Some(424242)])],
        ))],
    )
    .unwrap();
    for format in ResultFormat::ALL {
        match encode(&list, std::slice::from_ref(&batch), format) {
            Err(Error::InvalidArgument(m)) => {
                assert!(m.contains("`secret_list`"), "{m}");
                assert!(!m.contains("424242"), "{m}");
            }
            other => panic!("{format}: expected a refusal, got {other:?}"),
        }
        match encode(&schema(), &[rows(0, 1), batch.clone()], format) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("batch 1"), "{m}"),
            other => panic!("{format}: expected a refusal, got {other:?}"),
        }
    }
}

#[test]
fn format_names() {
    let names: Vec<_> = ResultFormat::ALL
        .iter()
        .map(|f| (f.as_str(), f.extension(), f.mime()))
        .collect();
    assert_eq!(
        names,
        [
            ("csv", "csv", "text/csv; charset=utf-8"),
            ("parquet", "parquet", "application/vnd.apache.parquet"),
            ("arrow_ipc", "arrow", "application/vnd.apache.arrow.file"),
            ("json", "json", "application/json"),
        ]
    );
    assert_eq!(
        ResultFormat::parse("ARROW").unwrap(),
        ResultFormat::ArrowIpc
    );
    let e = ResultFormat::parse("secret.xlsx").unwrap_err().to_string();
    assert!(!e.contains("secret"), "{e}");
}

// ---------------------------------------------------------------- certificates

struct Keys {
    _dir: tempfile::TempDir,
    ring: Keyring,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let ring = Keyring::init(&dir.path().join("keys")).unwrap();
    Keys { _dir: dir, ring }
}

fn checks() -> Value {
    json!({
        "verdict": "pass",
        "rules": [
            {"rule": "min_cell_count", "threshold": 10, "passed": true},
            {"rule": "dominance", "n": 2, "k": 0.85, "passed": true},
            {"rule": "differencing", "passed": true, "note": null}
        ],
        "cells": {"suppressed": 0, "rounded": 3, "ratio": 0.1 + 0.2, "tiny": 5e-324}
    })
}

/// A certificate before signing; `files` gives the format entries.
fn unsigned(files: &[(ResultFormat, Vec<u8>)]) -> Certificate {
    let batches = result();
    Certificate {
        format: CERTIFICATE_FORMAT.into(),
        release_id: "rel-0193a1".into(),
        job_id: "job-0193a0".into(),
        grant_id: "grant-0192ff".into(),
        application_id: "app-0192f3a1".into(),
        researcher: Researcher {
            user_id: "0192f3a1-user".into(),
            username: "zhangsan".into(),
            organisation: "深圳大学交通研究中心".into(),
        },
        query: QuerySection {
            kind: QueryKind::Sql,
            text: "SELECT district, count(*) AS persons\nFROM social_insurance\nGROUP BY district"
                .into(),
            plan_summary: "Aggregate: groupBy=[district]\n  TableScan: social_insurance".into(),
            model: None,
        },
        datasets: vec![
            DatasetEntry {
                dataset_id: "social_insurance".into(),
                version: 3,
                sha256: "ab".repeat(32),
            },
            DatasetEntry {
                dataset_id: "traffic.accidents".into(),
                version: 1,
                sha256: "0c".repeat(32),
            },
        ],
        result: result_section(&schema(), &batches, files),
        checks: checks(),
        reviewers: vec![Reviewer {
            user_id: "0192f3b7-user".into(),
            username: "checker_li".into(),
            decision: ReviewDecision::Approve,
            at: "2026-12-01T08:30:15Z".into(),
        }],
        dp: None,
        released_at: "2026-12-01T09:00:00Z".into(),
        citation: "数据来源：深圳市社会保险基金管理局，经安域公共数据安全域（release rel-0193a1）"
            .into(),
        platform_key_id: String::new(),
        platform_signature: String::new(),
    }
}

fn signed(keys: &Keys) -> (Certificate, Vec<(ResultFormat, Vec<u8>)>) {
    let files = result_files(&schema(), &result()).unwrap();
    (sign(&keys.ring, unsigned(&files)).unwrap(), files)
}

fn crypto_msg(e: Error) -> String {
    match e {
        Error::Crypto(m) => m,
        other => panic!("expected a crypto error, got {other:?}"),
    }
}

fn invalid_msg(e: Error) -> String {
    match e {
        Error::InvalidArgument(m) => m,
        other => panic!("expected an invalid-argument error, got {other:?}"),
    }
}

#[test]
fn result_files_and_entries_cover_every_format() {
    let files = result_files(&schema(), &result()).unwrap();
    assert_eq!(
        files.iter().map(|f| f.0).collect::<Vec<_>>(),
        ResultFormat::ALL
    );
    for ((format, bytes), entry) in files.iter().zip(format_entries(&files)) {
        assert_eq!(entry.format, *format);
        assert_eq!(entry.bytes, bytes.len() as u64);
        assert_eq!(entry.sha256, sha256_hex(bytes));
        assert_eq!(*bytes, encode(&schema(), &result(), *format).unwrap());
    }
    let section = result_section(&schema(), &result(), &files);
    assert_eq!(section.rows, 10);
    assert_eq!(section.columns.len(), 9);
    assert_eq!(section.columns[0].name, "district");
    assert_eq!(section.columns[0].data_type, "Utf8");
}

#[test]
fn signed_certificate_verifies_with_each_result_file() {
    let keys = keys();
    let (cert, files) = signed(&keys);
    let pk = keys.ring.public_key();
    assert_eq!(cert.platform_key_id, key_id(&pk));
    assert!(verify_signature(
        &pk,
        &cert.canonical_bytes().unwrap(),
        &hex::decode(&cert.platform_signature).unwrap()
    ));

    let v = verify(&cert.to_json(), &pk, None).unwrap();
    assert_eq!(v.certificate, cert);
    assert_eq!(v.format, None);
    assert_eq!(v.released_at.to_rfc3339(), "2026-12-01T09:00:00+00:00");
    for (format, bytes) in &files {
        let v = verify(&cert.to_json(), &pk, Some(bytes)).unwrap();
        assert_eq!(v.format, Some(*format));
    }
    // Compact and reordered JSON verify too: only the canonical bytes are signed.
    let compact = serde_json::to_string(&cert).unwrap();
    verify(&compact, &pk, Some(&files[0].1)).unwrap();
}

#[test]
fn every_changed_leaf_fails() {
    let keys = keys();
    let (cert, files) = signed(&keys);
    let pk = keys.ring.public_key();
    let doc: Value = serde_json::from_str(&cert.to_json()).unwrap();

    fn leaves(v: &Value, path: String, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => m
                .iter()
                .for_each(|(k, x)| leaves(x, format!("{path}/{k}"), out)),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, x)| leaves(x, format!("{path}/{i}"), out)),
            _ => out.push(path),
        }
    }
    let mut paths = Vec::new();
    leaves(&doc, String::new(), &mut paths);
    assert!(paths.len() > 50, "only {} leaves", paths.len());

    for path in &paths {
        let mut changed = doc.clone();
        let leaf = changed.pointer_mut(path).unwrap();
        *leaf = match leaf.take() {
            Value::String(s) => Value::String(format!("{s}0")),
            Value::Number(n) if n.is_u64() => json!(n.as_u64().unwrap() ^ 1),
            Value::Number(n) => json!(n.as_f64().unwrap() * 2.0 + 1.0),
            Value::Bool(b) => Value::Bool(!b),
            Value::Null => json!(0),
            other => panic!("{path} is not a leaf: {other}"),
        };
        let text = serde_json::to_string_pretty(&changed).unwrap();
        assert!(
            verify(&text, &pk, None).is_err(),
            "changing {path} still verifies"
        );
        // The same holds when a result file is given.
        assert!(verify(&text, &pk, Some(&files[0].1)).is_err(), "{path}");
    }

    // Removing any field, or adding one anywhere, fails as well.
    for key in doc.as_object().unwrap().keys() {
        let mut changed = doc.clone();
        changed.as_object_mut().unwrap().remove(key);
        assert!(
            verify(&changed.to_string(), &pk, None).is_err(),
            "without {key}"
        );
    }
    for path in ["", "/checks", "/checks/cells", "/researcher", "/result"] {
        let mut changed = doc.clone();
        changed
            .pointer_mut(path)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert("extra".into(), json!(1));
        assert!(
            verify(&changed.to_string(), &pk, None).is_err(),
            "extra in {path:?}"
        );
    }
    let mut changed = doc.clone();
    changed["reviewers"].as_array_mut().unwrap().clear();
    let m = crypto_msg(verify(&changed.to_string(), &pk, None).unwrap_err());
    assert_eq!(m, "certificate signature does not verify");
}

#[test]
fn the_signature_has_one_spelling() {
    let keys = keys();
    let (cert, _) = signed(&keys);
    let mut upper = cert.clone();
    upper.platform_signature = upper.platform_signature.to_uppercase();
    let m = crypto_msg(verify(&upper.to_json(), &keys.ring.public_key(), None).unwrap_err());
    assert_eq!(m, "certificate signature is malformed");
}

#[test]
fn a_changed_result_file_fails() {
    let keys = keys();
    let (cert, files) = signed(&keys);
    let pk = keys.ring.public_key();
    for (format, bytes) in &files {
        for at in [0, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            let m = crypto_msg(verify(&cert.to_json(), &pk, Some(&bad)).unwrap_err());
            assert_eq!(
                m, "the result file does not match the certificate",
                "{format}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(b'\n');
        assert!(
            verify(&cert.to_json(), &pk, Some(&longer)).is_err(),
            "{format}"
        );
        assert!(verify(&cert.to_json(), &pk, Some(&bytes[..bytes.len() - 1])).is_err());
    }
    // The result of another query does not match either.
    let other = encode(&schema(), &[rows(0, 9)], ResultFormat::Csv).unwrap();
    assert!(verify(&cert.to_json(), &pk, Some(&other)).is_err());
}

#[test]
fn another_platform_key_is_named() {
    let (ours, theirs) = (keys(), keys());
    let (cert, _) = signed(&theirs);
    let pk = ours.ring.public_key();
    let m = crypto_msg(verify(&cert.to_json(), &pk, None).unwrap_err());
    assert_eq!(
        m,
        format!(
            "certificate was signed by key {}, expected {}",
            key_id(&theirs.ring.public_key()),
            key_id(&pk)
        )
    );
    // Relabelling the key id does not help: the signature is then checked and fails.
    let mut relabelled = cert.clone();
    relabelled.platform_key_id = key_id(&pk);
    let m = crypto_msg(verify(&relabelled.to_json(), &pk, None).unwrap_err());
    assert_eq!(m, "certificate signature does not verify");
    // A malformed key id in the document is not echoed.
    let mut odd = cert;
    odd.platform_key_id = "SECRET-福田".into();
    let m = crypto_msg(verify(&odd.to_json(), &pk, None).unwrap_err());
    assert!(m.contains("<malformed id>") && !m.contains("SECRET"), "{m}");
    let (genuine, _) = signed(&ours);
    let m = invalid_msg(verify(&genuine.to_json(), &pk[..31], None).unwrap_err());
    assert_eq!(m, "platform public key has 31 bytes, expected 32");
}

#[test]
fn malformed_documents_are_refused_without_echo() {
    let keys = keys();
    let (cert, _) = signed(&keys);
    let pk = keys.ring.public_key();
    let doc = cert.to_json();
    let cases = [
        "SECRET-福田".to_string(),
        "{\"format\": \"SECRET-福田\"".to_string(),
        doc.replacen("\"rows\": 10", "\"rows\": \"SECRET-福田\"", 1),
        doc.replacen("\"format\": \"csv\"", "\"format\": \"SECRET-福田\"", 1),
        doc.replacen("\"release_id\"", "\"SECRET-福田\"", 1),
        doc.replacen(
            "\"decision\": \"approve\"",
            "\"decision\": \"SECRET-福田\"",
            1,
        ),
        doc.replacen("\"kind\": \"sql\"", "\"kind\": \"SECRET-福田\"", 1),
        "[]".to_string(),
    ];
    let mut messages = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        assert_ne!(c, &doc, "case {i} did not change the document");
        let m = invalid_msg(verify(c, &pk, None).unwrap_err());
        assert!(!m.contains("SECRET") && !m.contains("福田"), "{m}");
        assert!(m.contains("line "), "{m}");
        messages.push(m);
    }
    let mut wrong_format: Value = serde_json::from_str(&doc).unwrap();
    wrong_format["format"] = json!("anyu.release-certificate/2");
    let m = invalid_msg(verify(&wrong_format.to_string(), &pk, None).unwrap_err());
    assert_eq!(
        m,
        "unsupported certificate format; expected anyu.release-certificate/1"
    );
    messages.push(m);
    insta::assert_snapshot!("malformed_messages", messages.join("\n"));
}

#[test]
fn signing_refuses_incomplete_certificates() {
    let keys = keys();
    let files = result_files(&schema(), &result()).unwrap();
    type Edit = fn(&mut Certificate);
    let cases: Vec<(&str, Edit)> = vec![
        ("format", |c| c.format = "anyu.release-certificate/0".into()),
        ("release_id", |c| c.release_id = " ".into()),
        ("job_id", |c| c.job_id = String::new()),
        ("grant_id", |c| c.grant_id = "g\n1".into()),
        ("application_id", |c| c.application_id = String::new()),
        ("user_id", |c| c.researcher.user_id = String::new()),
        ("username", |c| c.researcher.username = "x".repeat(1001)),
        ("query text", |c| c.query.text = "\n".into()),
        ("query control", |c| c.query.text = "SELECT 1\u{0}".into()),
        ("no datasets", |c| c.datasets.clear()),
        ("dataset twice", |c| {
            let d = c.datasets[0].clone();
            c.datasets.push(d);
        }),
        ("uppercase sha", |c| c.datasets[1].sha256 = "AB".repeat(32)),
        ("short sha", |c| {
            c.result.formats[2].sha256 = "ab".repeat(31)
        }),
        ("no columns", |c| c.result.columns.clear()),
        ("format missing", |c| {
            c.result.formats.pop();
        }),
        ("format twice", |c| {
            c.result.formats[3].format = ResultFormat::Csv
        }),
        ("format extra", |c| {
            let f = c.result.formats[0].clone();
            c.result.formats.push(f);
        }),
        ("checks array", |c| c.checks = json!(["pass"])),
        ("checks null", |c| c.checks = Value::Null),
        ("reviewer name", |c| c.reviewers[0].username = String::new()),
        ("reviewer time", |c| {
            c.reviewers[0].at = "2026-12-01 08:30:15".into()
        }),
        ("fractional time", |c| {
            c.released_at = "2026-12-01T09:00:00.5Z".into()
        }),
        ("offset time", |c| {
            c.released_at = "2026-12-01T17:00:00+08:00".into()
        }),
        ("citation", |c| c.citation = String::new()),
        ("too deep", |c| {
            let mut v = json!(1);
            for _ in 0..40 {
                v = json!({ "a": v });
            }
            c.checks = v;
        }),
    ];
    let mut out = Vec::new();
    for (name, edit) in cases {
        let mut c = unsigned(&files);
        edit(&mut c);
        let m = invalid_msg(sign(&keys.ring, c).unwrap_err());
        out.push(format!("{name:<16} {m}"));
    }
    insta::assert_snapshot!("signing_refusals", out.join("\n"));

    // Automatic releases have no reviewers; organisation may be unknown.
    let mut c = unsigned(&files);
    c.reviewers.clear();
    c.researcher.organisation = String::new();
    let cert = sign(&keys.ring, c).unwrap();
    verify(&cert.to_json(), &keys.ring.public_key(), None).unwrap();
}

#[test]
fn awkward_numbers_and_text_in_checks_still_verify() {
    let keys = keys();
    let files = result_files(&schema(), &result()).unwrap();
    let mut c = unsigned(&files);
    c.checks = json!({
        "floats": [0.1, 1.0 / 3.0, -2.5e-300, 1.7976931348623157e308, 123_456_789.0 + 0.123_456_789, -0.0],
        "ints": [u64::MAX, i64::MIN, 0],
        "text": "tab\t nl\n quote\" back\\ \u{1} 福田区 \u{7f} \u{2028}",
        "": {"z": 1, "Z": 2, "é": 3, "e": 4}
    });
    let cert = sign(&keys.ring, c).unwrap();
    let v = verify(&cert.to_json(), &keys.ring.public_key(), Some(&files[3].1)).unwrap();
    assert_eq!(v.format, Some(ResultFormat::Json));
}

// ---------------------------------------------------------------- locked format

/// A fixed certificate, as signed by a key with id `0011223344556677`.
fn fixed() -> Certificate {
    let files = [
        (ResultFormat::Csv, b"district,persons\n".to_vec()),
        (ResultFormat::Parquet, b"PAR1".to_vec()),
        (ResultFormat::ArrowIpc, b"ARROW1".to_vec()),
        (ResultFormat::Json, b"[]".to_vec()),
    ];
    let mut c = unsigned(&files);
    c.result.rows = 10;
    c.checks = json!({"verdict": "pass", "rules": [{"rule": "min_cell_count", "threshold": 10}], "note": "控\"制\n"});
    c.platform_key_id = "0011223344556677".into();
    c
}

#[test]
fn canonical_bytes_snapshot() {
    let bytes = fixed().canonical_bytes().unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(!text.contains("platform_signature"));
    insta::assert_snapshot!("canonical_certificate_v1", text);
}

#[test]
fn certificate_json_snapshot() {
    let mut c = fixed();
    c.platform_signature = "<sig>".into();
    insta::assert_snapshot!("certificate_json_v1", c.to_json());
}

#[test]
fn canonical_bytes_match_the_audit_canonical_form() {
    // Two writers of one canonical JSON form: they must agree byte for byte.
    let c = fixed();
    let mut value = serde_json::to_value(&c).unwrap();
    value.as_object_mut().unwrap().remove("platform_signature");
    let mut ev = NewEvent::new("system", "system", "release.check", "");
    ev.details = value;
    let event = canonical_event(1, "id", "2026-12-01T09:00:00.000000Z", &ev).unwrap();
    let details = &event[event
        .windows(11)
        .position(|w| w == b"\"details\":{")
        .unwrap()
        + 10..event.len() - 1];
    assert_eq!(
        std::str::from_utf8(details).unwrap(),
        std::str::from_utf8(&c.canonical_bytes().unwrap()).unwrap()
    );
}

/// A differentially private release adds `dp` (additive: the certificates
/// above keep their bytes); it is signed with the rest and verifies.
#[test]
fn dp_section_is_signed_and_locked() {
    use enclave::dp::{BudgetLeft, DpColumn, DpReport, Selection};
    let mut c = fixed();
    c.dp = Some(DpReport {
        epsilon: 1.0,
        delta: 9.5e-8,
        budget_left: Some(BudgetLeft {
            epsilon: 9.0,
            delta: 9.05e-7,
        }),
        privacy_unit: "social_insurance.person_id".into(),
        max_groups_contributed: 1,
        max_rows_per_group: 1,
        selection: Some(Selection {
            mechanism: "laplace_threshold".into(),
            counts: "privacy units per group".into(),
            scale: 4.0,
            threshold: 64,
            epsilon: 0.25,
            delta: 9.5e-8,
        }),
        columns: vec![DpColumn {
            column: "persons".into(),
            aggregate: "count".into(),
            mechanism: "discrete_laplace".into(),
            bounds: None,
            scale: 4.0,
            count_scale: None,
            sensitivity: 1.0,
            epsilon: 0.25,
        }],
        researcher_cap: None,
    });
    let text = String::from_utf8(c.canonical_bytes().unwrap()).unwrap();
    insta::assert_snapshot!("canonical_certificate_dp_v1", text);
    let keys = keys();
    let files = result_files(&schema(), &result()).unwrap();
    let mut u = unsigned(&files);
    u.dp = c.dp.clone();
    let signed = sign(&keys.ring, u).unwrap();
    let v = verify(&signed.to_json(), &keys.ring.public_key(), None).unwrap();
    assert_eq!(v.certificate.dp, c.dp);
    // Changing a noise scale breaks the signature.
    let forged = signed.to_json().replace("\"scale\": 4.0", "\"scale\": 0.4");
    assert_ne!(forged, signed.to_json());
    assert!(verify(&forged, &keys.ring.public_key(), None).is_err());
}
