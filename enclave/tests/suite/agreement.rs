//! The use agreement (SZ:43, XM:24) and its signed receipts.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use enclave::Error;
use enclave::access::agreement::{
    AgreementTerms, RECEIPT_FORMAT, RECEIPT_FORMAT_V1, ReceiptConditions, SignedReceipt,
    by_version, current, key_id, render, sha256_hex, sign_receipt, verify_receipt,
};
use enclave::keyring::Keyring;
use serde_json::Value;

fn terms() -> AgreementTerms {
    AgreementTerms {
        application_id: "app-0192f3a1".into(),
        applicant_name: "张三".into(),
        organisation: "深圳大学交通研究中心".into(),
        datasets: vec!["traffic.accidents@v3".into(), "weather.daily@latest".into()],
        period_start: NaiveDate::from_ymd_opt(2027, 1, 4).unwrap(),
        period_end: NaiveDate::from_ymd_opt(2027, 6, 30).unwrap(),
        scenario: "城市交通事故成因分析研究".into(),
    }
}

fn signed_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 8, 30, 15).unwrap()
}

struct Keys {
    _dir: tempfile::TempDir,
    ring: Keyring,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let ring = Keyring::init(&dir.path().join("keys")).unwrap();
    Keys { _dir: dir, ring }
}

fn signed(keys: &Keys) -> (SignedReceipt, String) {
    let text = render(current(), &terms());
    let r = sign_receipt(
        &keys.ring,
        current(),
        &terms(),
        "0192f3a1-user",
        "zhangsan",
        signed_at(),
        &text,
        None,
    )
    .unwrap();
    (r, text)
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
fn versions_are_known() {
    assert_eq!(current().version, 1);
    assert_eq!(current().language, "zh-CN");
    assert_eq!(by_version(1), Some(current()));
    assert_eq!(by_version(0), None);
    assert_eq!(by_version(2), None);
}

#[test]
fn render_is_deterministic_and_fills_every_placeholder() {
    let a = render(current(), &terms());
    let b = render(current(), &terms());
    assert_eq!(a, b);
    assert!(!a.contains("{{"), "unfilled placeholder left");
    assert!(!a.contains("}}"));
    for needle in [
        "app-0192f3a1",
        "张三",
        "深圳大学交通研究中心",
        "- traffic.accidents@v3\n- weather.daily@latest",
        "2027-01-04 至 2027-06-30",
        "城市交通事故成因分析研究",
        "第 1 版",
    ] {
        assert!(a.contains(needle), "rendered text lacks {needle}");
    }
    // Different terms give a different text (and so a different hash).
    let mut other = terms();
    other.period_end = NaiveDate::from_ymd_opt(2027, 7, 1).unwrap();
    assert_ne!(sha256_hex(&render(current(), &other)), sha256_hex(&a));
}

#[test]
fn values_are_not_reinterpreted_as_placeholders() {
    let mut t = terms();
    t.scenario = "研究 {{applicant}} 模式".into();
    let text = render(current(), &t);
    assert!(text.contains("研究 {{applicant}} 模式"));
}

#[test]
fn rendered_text_snapshot() {
    insta::assert_snapshot!("rendered_v1", render(current(), &terms()));
}

#[test]
fn text_contains_the_required_clauses() {
    let text = current().text;
    let clauses = [
        // SZ:43(1), XM:24(2): usage feedback.
        ("feedback", "反馈数据利用情况"),
        ("usage report", "数据利用报告"),
        // SZ:43(2): no use beyond the agreed scope.
        (
            "scope",
            "不得将获取的公共数据用于约定利用范围之外的其他用途",
        ),
        // SZ:43(3): no redistribution or transfer.
        ("no spreading", "不得传播所获取的公共数据"),
        ("no third parties", "向第三方提供"),
        ("no transfer", "转让"),
        // SZ:43(4), XM:24(2): cite the source in papers, patents, works, products.
        ("papers", "发表论文"),
        ("patents", "申请专利"),
        ("software", "申请软件著作权"),
        ("products", "开发应用产品"),
        ("cite", "注明参考引用的公共数据"),
        (
            "citation template",
            "数据来源：〈平台名称〉，〈提供部门〉，〈数据集标识〉（版本〈版本号〉）",
        ),
        ("citation en", "Data source: <platform name>"),
        // SZ:43(5): security duties; the domain rules.
        ("security", "安全职责"),
        ("stays in the domain", "不出域"),
        ("disclosure review", "出域审核"),
        // SZ:43(6), XM:24(2): supervision and inspection.
        ("inspection", "数据利用安全监督检查"),
        ("spot checks", "定期或者不定期抽查"),
        // SZ:43(7), XM:24(4): credit commitment, liability, disputes.
        ("credit", "信用承诺"),
        ("credit lists", "失信被执行人"),
        ("liability", "赔偿责任"),
        ("disputes", "争议解决"),
        // SZ:63, HZ:25: suspension, rectification, termination.
        ("rectify", "整改"),
        ("suspend", "暂时关闭乙方的数据使用权限"),
        ("terminate", "终止向其提供公共数据开放服务"),
        ("beyond scope ends", "超出约定利用范围"),
        // SZ:42: permission only after signing.
        ("grant after signing", "本协议签署后，使用权限方可开通"),
    ];
    let missing: Vec<&str> = clauses
        .iter()
        .filter(|(_, phrase)| !text.contains(phrase))
        .map(|(name, _)| *name)
        .collect();
    assert!(missing.is_empty(), "clauses missing: {missing:?}");
    for placeholder in [
        "{{applicant}}",
        "{{organisation}}",
        "{{datasets}}",
        "{{period}}",
        "{{scenario}}",
    ] {
        assert!(text.contains(placeholder), "template lacks {placeholder}");
    }
}

#[test]
fn sign_then_verify() {
    let keys = keys();
    let (receipt, text) = signed(&keys);
    assert_eq!(receipt.format, RECEIPT_FORMAT_V1);
    assert_eq!(receipt.signed_at, "2026-12-01T08:30:15Z");
    assert_eq!(receipt.agreement_version, 1);
    assert_eq!(receipt.agreement_sha256, sha256_hex(&text));
    assert_eq!(receipt.platform_key_id, key_id(&keys.ring.public_key()));
    assert_eq!(receipt.platform_key_id.len(), 16);
    assert_eq!(receipt.platform_signature.len(), 128);

    let json = receipt.to_json();
    let pk = keys.ring.public_key();
    let with_text = verify_receipt(&json, &pk, Some(&text)).unwrap();
    assert_eq!(with_text.receipt, receipt);
    assert_eq!(with_text.signed_at, signed_at());
    assert!(with_text.text_checked);
    // Without the text, the known template is re-rendered from the signed terms.
    let without = verify_receipt(&json, &pk, None).unwrap();
    assert!(without.text_checked);
    // Compact JSON with keys in another order verifies too: the signature is over
    // the canonical bytes, not the document's spelling.
    let mut v: Value = serde_json::from_str(&json).unwrap();
    v.as_object_mut().unwrap().sort_keys();
    verify_receipt(&serde_json::to_string(&v).unwrap(), &pk, Some(&text)).unwrap();
}

#[test]
fn sub_second_times_are_truncated() {
    let keys = keys();
    let text = render(current(), &terms());
    let at = signed_at() + chrono::Duration::milliseconds(750);
    let r = sign_receipt(&keys.ring, current(), &terms(), "u", "n", at, &text, None).unwrap();
    assert_eq!(r.signed_at, "2026-12-01T08:30:15Z");
    verify_receipt(&r.to_json(), &keys.ring.public_key(), None).unwrap();
}

#[test]
fn signing_refuses_bad_input() {
    let keys = keys();
    let text = render(current(), &terms());
    let sign = |t: &AgreementTerms, user: &str, text: &str| {
        invalid_msg(
            sign_receipt(
                &keys.ring,
                current(),
                t,
                user,
                "zhangsan",
                signed_at(),
                text,
                None,
            )
            .unwrap_err(),
        )
    };
    let mut msgs = Vec::new();
    msgs.push(sign(&terms(), "u", &format!("{text} ")));
    let mut t = terms();
    t.datasets.clear();
    msgs.push(sign(&t, "u", &render(current(), &t)));
    let mut t = terms();
    t.period_end = NaiveDate::from_ymd_opt(2027, 1, 3).unwrap();
    msgs.push(sign(&t, "u", &render(current(), &t)));
    let mut t = terms();
    t.applicant_name = "  ".into();
    msgs.push(sign(&t, "u", &render(current(), &t)));
    let mut t = terms();
    t.scenario = "第一行\n第二行".into();
    msgs.push(sign(&t, "u", &render(current(), &t)));
    let mut t = terms();
    t.datasets[1] = "x".repeat(1001);
    msgs.push(sign(&t, "u", &render(current(), &t)));
    msgs.push(sign(&terms(), "", &text));
    for m in &msgs {
        assert!(
            !m.contains("张三") && !m.contains("第一行"),
            "value leaked: {m}"
        );
    }
    insta::assert_yaml_snapshot!("signing_refusals", msgs);
}

/// Replaces one field (a JSON pointer) of the receipt and returns the JSON.
fn tampered(receipt: &SignedReceipt, pointer: &str, value: Value) -> String {
    let mut v: Value = serde_json::to_value(receipt).unwrap();
    let slot = v.pointer_mut(pointer).unwrap();
    assert_ne!(*slot, value, "tampering with {pointer} changed nothing");
    *slot = value;
    serde_json::to_string(&v).unwrap()
}

#[test]
fn every_signed_field_is_protected() {
    let keys = keys();
    let (receipt, text) = signed(&keys);
    let pk = keys.ring.public_key();
    let cases: Vec<(&str, Value)> = vec![
        ("/application_id", "app-0192f3a2".into()),
        ("/user_id", "0192f3a1-other".into()),
        ("/username", "lisi".into()),
        ("/signed_at", "2026-12-01T08:30:16Z".into()),
        ("/agreement_version", 2.into()),
        ("/agreement_sha256", sha256_hex("another text").into()),
        ("/terms/application_id", "app-0192f3a2".into()),
        ("/terms/applicant_name", "李四".into()),
        ("/terms/organisation", "另一单位".into()),
        ("/terms/datasets/0", "traffic.accidents@v4".into()),
        (
            "/terms/datasets",
            serde_json::json!(["traffic.accidents@v3"]),
        ),
        ("/terms/period_start", "2027-01-05".into()),
        ("/terms/period_end", "2027-12-31".into()),
        ("/terms/scenario", "商业营销".into()),
    ];
    for (pointer, value) in cases {
        let json = tampered(&receipt, pointer, value);
        for text in [Some(text.as_str()), None] {
            let err = verify_receipt(&json, &pk, text).unwrap_err();
            assert_eq!(
                crypto_msg(err),
                "receipt signature does not verify",
                "field {pointer}"
            );
        }
    }

    // The key id and format are checked before the signature, with their own errors.
    let json = tampered(&receipt, "/platform_key_id", "0123456789abcdef".into());
    let msg = crypto_msg(verify_receipt(&json, &pk, None).unwrap_err());
    assert_eq!(
        msg,
        format!(
            "receipt was signed by key 0123456789abcdef, expected {}",
            receipt.platform_key_id
        )
    );
    let json = tampered(&receipt, "/format", "anyu.agreement-receipt/2".into());
    let msg = invalid_msg(verify_receipt(&json, &pk, None).unwrap_err());
    assert_eq!(
        msg,
        "receipt conditions do not match its format (format 2 has them, format 1 not)"
    );
    let json = tampered(&receipt, "/format", "anyu.agreement-receipt/9".into());
    let msg = invalid_msg(verify_receipt(&json, &pk, None).unwrap_err());
    assert_eq!(
        msg,
        "unsupported receipt format; expected anyu.agreement-receipt/2 or anyu.agreement-receipt/1"
    );
}

#[test]
fn a_modified_signature_fails() {
    let keys = keys();
    let (receipt, _) = signed(&keys);
    let pk = keys.ring.public_key();
    let mut sig = hex::decode(&receipt.platform_signature).unwrap();
    sig[10] ^= 0x01;
    let json = tampered(&receipt, "/platform_signature", hex::encode(&sig).into());
    assert_eq!(
        crypto_msg(verify_receipt(&json, &pk, None).unwrap_err()),
        "receipt signature does not verify"
    );
    let json = tampered(&receipt, "/platform_signature", "abcd".into());
    assert_eq!(
        crypto_msg(verify_receipt(&json, &pk, None).unwrap_err()),
        "receipt signature is malformed"
    );
}

#[test]
fn a_different_platform_key_fails() {
    let keys = keys();
    let other = self::keys();
    let (receipt, text) = signed(&keys);
    let other_pk = other.ring.public_key();
    let msg = crypto_msg(verify_receipt(&receipt.to_json(), &other_pk, Some(&text)).unwrap_err());
    assert_eq!(
        msg,
        format!(
            "receipt was signed by key {}, expected {}",
            receipt.platform_key_id,
            key_id(&other_pk)
        )
    );

    // A receipt re-labelled with the other key's id still fails: the signature is
    // the first key's.
    let json = tampered(&receipt, "/platform_key_id", key_id(&other_pk).into());
    assert_eq!(
        crypto_msg(verify_receipt(&json, &other_pk, Some(&text)).unwrap_err()),
        "receipt signature does not verify"
    );
}

#[test]
fn a_modified_agreement_text_fails() {
    let keys = keys();
    let (receipt, text) = signed(&keys);
    let pk = keys.ring.public_key();
    let edited = text.replacen("30 日内", "300 日内", 1);
    assert_ne!(edited, text);
    let msg = crypto_msg(verify_receipt(&receipt.to_json(), &pk, Some(&edited)).unwrap_err());
    let line = text.lines().position(|l| l.contains("30 日内")).unwrap() + 1;
    let lines = text.lines().count();
    assert_eq!(
        msg,
        format!(
            "agreement text does not match the signed hash: the text differs from the signed \
             text from line {line} (the signed text has {lines} lines, this one {lines})"
        )
    );

    // What a saved copy usually gains is said as such.
    for (copy, why) in [
        (
            format!("{text}\n"),
            "the text differs only in whitespace or newlines at its end",
        ),
        (
            text.replace('\n', "\r\n"),
            "the text has Windows line endings (CRLF); the signed text has LF",
        ),
    ] {
        let msg = crypto_msg(verify_receipt(&receipt.to_json(), &pk, Some(&copy)).unwrap_err());
        assert_eq!(
            msg,
            format!("agreement text does not match the signed hash: {why}")
        );
    }
}

#[test]
fn a_signed_hash_that_the_template_does_not_produce_fails() {
    // The platform signs a hash of some other text: the signature verifies, but
    // re-rendering the known template from the signed terms exposes it.
    let keys = keys();
    let (mut receipt, _) = signed(&keys);
    receipt.agreement_sha256 = sha256_hex("某个别的文本");
    receipt.platform_signature = hex::encode(keys.ring.sign(&receipt.canonical_bytes()));
    let pk = keys.ring.public_key();
    let msg = crypto_msg(verify_receipt(&receipt.to_json(), &pk, None).unwrap_err());
    assert_eq!(msg, "agreement text does not match the signed hash");

    // An unknown version cannot be re-rendered: it verifies, but says so.
    receipt.agreement_version = 99;
    receipt.platform_signature = hex::encode(keys.ring.sign(&receipt.canonical_bytes()));
    let v = verify_receipt(&receipt.to_json(), &pk, None).unwrap();
    assert!(!v.text_checked);
}

#[test]
fn malformed_receipts_are_refused_without_echoing_values() {
    let keys = keys();
    let (receipt, _) = signed(&keys);
    let pk = keys.ring.public_key();
    let mut v: Value = serde_json::to_value(&receipt).unwrap();
    v["agreement_version"] = "秘密值".into();
    let msg = invalid_msg(verify_receipt(&v.to_string(), &pk, None).unwrap_err());
    assert!(msg.starts_with("receipt does not match format anyu.agreement-receipt/2"));
    assert!(!msg.contains("秘密值"));

    let mut v: Value = serde_json::to_value(&receipt).unwrap();
    v["extra"] = "x".into();
    invalid_msg(verify_receipt(&v.to_string(), &pk, None).unwrap_err());

    assert!(matches!(
        verify_receipt(&receipt.to_json(), &pk[..31], None),
        Err(Error::InvalidArgument(_))
    ));
}

/// A fixed receipt, so the canonical bytes can be pinned.
fn fixed_receipt() -> SignedReceipt {
    let mut t = terms();
    t.scenario = "含 \"引号\"、反斜杠 \\ 与 tab\t 的场景".into();
    SignedReceipt {
        format: RECEIPT_FORMAT_V1.into(),
        application_id: t.application_id.clone(),
        user_id: "0192f3a1-user".into(),
        username: "zhangsan".into(),
        signed_at: "2026-12-01T08:30:15Z".into(),
        agreement_version: 1,
        agreement_sha256: sha256_hex("text"),
        terms: t,
        conditions: None,
        platform_key_id: "00112233445566ff".into(),
        platform_signature: "ff".repeat(64),
    }
}

#[test]
fn canonical_bytes_v1() {
    let bytes = fixed_receipt().canonical_bytes();
    insta::assert_snapshot!("canonical_receipt_v1", String::from_utf8(bytes).unwrap());
}

#[test]
fn canonical_bytes_are_the_receipt_without_its_signature() {
    let r = fixed_receipt();
    let canonical: Value = serde_json::from_slice(&r.canonical_bytes()).unwrap();
    let mut full = serde_json::to_value(&r).unwrap();
    full.as_object_mut().unwrap().remove("platform_signature");
    assert_eq!(canonical, full);
    // The signature is not covered by itself.
    let mut other = r.clone();
    other.platform_signature = "00".repeat(64);
    assert_eq!(other.canonical_bytes(), r.canonical_bytes());
}

/// A receipt repeating a key is refused before anything else is read: a
/// reader keeping the first `agreement_sha256` would see a forged hash.
#[test]
fn a_receipt_with_a_duplicate_key_is_refused() {
    let keys = keys();
    let (receipt, text) = signed(&keys);
    let pk = keys.ring.public_key();
    let json = receipt.to_json();
    let forged = json.replacen(
        '{',
        &format!("{{\"agreement_sha256\": \"{}\", ", "cd".repeat(32)),
        1,
    );
    assert_ne!(forged, json);
    let msg = invalid_msg(verify_receipt(&forged, &pk, Some(&text)).unwrap_err());
    assert!(msg.starts_with("receipt repeats a key (line "), "{msg}");
    assert!(!msg.contains("cdcd"), "{msg}");
}

/// Format 2: the grant's conditions are signed too.
fn fixed_receipt_v2() -> SignedReceipt {
    SignedReceipt {
        format: RECEIPT_FORMAT.into(),
        conditions: Some(ReceiptConditions {
            grant_id: "0192f3a1-grant".into(),
            usage_method: "invisible".into(),
            conditions_sha256: sha256_hex("conditions"),
        }),
        ..fixed_receipt()
    }
}

#[test]
fn canonical_bytes_v2() {
    let bytes = fixed_receipt_v2().canonical_bytes();
    insta::assert_snapshot!("canonical_receipt_v2", String::from_utf8(bytes).unwrap());
}

#[test]
fn v2_signs_the_conditions_and_v1_still_verifies() {
    let keys = keys();
    let text = render(current(), &terms());
    let conditions = ReceiptConditions {
        grant_id: "g-1".into(),
        usage_method: "invisible".into(),
        conditions_sha256: sha256_hex("columns, filters, budgets"),
    };
    let v2 = sign_receipt(
        &keys.ring,
        current(),
        &terms(),
        "u",
        "n",
        signed_at(),
        &text,
        Some(conditions),
    )
    .unwrap();
    assert_eq!(v2.format, RECEIPT_FORMAT);
    let key = keys.ring.public_key();
    verify_receipt(&v2.to_json(), &key, None).unwrap();
    // Another filter or budget is another hash: the signature no longer holds.
    let mut altered = v2.clone();
    altered.conditions.as_mut().unwrap().conditions_sha256 = sha256_hex("wider");
    assert!(matches!(
        verify_receipt(&altered.to_json(), &key, None),
        Err(Error::Crypto(_))
    ));
    // Dropping the conditions while claiming format 2 is refused.
    let mut stripped = v2.clone();
    stripped.conditions = None;
    assert!(matches!(
        verify_receipt(&stripped.to_json(), &key, None),
        Err(Error::InvalidArgument(_))
    ));
    // A format 1 receipt (no conditions) still verifies.
    let (v1, _) = signed(&keys);
    assert_eq!(v1.format, RECEIPT_FORMAT_V1);
    verify_receipt(&v1.to_json(), &key, None).unwrap();
}
