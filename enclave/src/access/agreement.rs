//! The versioned use agreement (开放利用协议, SZ:43, XM:24) and the signed
//! receipt the platform issues when a researcher signs it.
//!
//! ## Receipt formats `anyu.agreement-receipt/1` and `/2`
//!
//! A [`SignedReceipt`] is a JSON document. Its `platform_signature` is an Ed25519
//! signature, by the platform key, over the receipt's canonical bytes
//! ([`SignedReceipt::canonical_bytes`]): one JSON object without whitespace
//! holding every field except `platform_signature`, in this order:
//!
//! ```text
//! {"format":…,"application_id":…,"user_id":…,"username":…,"signed_at":…,
//!  "agreement_version":N,"agreement_sha256":…,
//!  "terms":{"application_id":…,"applicant_name":…,"organisation":…,
//!           "datasets":[…],"period_start":"YYYY-MM-DD","period_end":"YYYY-MM-DD",
//!           "scenario":…},
//!  "conditions":{"grant_id":…,"usage_method":…,"conditions_sha256":…},   (format 2 only)
//!  "platform_key_id":…}
//! ```
//!
//! Format 2 (written since issue #16) adds `conditions`: the grant the
//! signature opened, its usage method, and the SHA-256 of what it allows —
//! columns, row filters, version policies and budgets
//! ([`crate::access::Grant::conditions_sha256`]); `anyu verify-receipt --grant`
//! recomputes it from the grant as the API shows it. Format 1 receipts (no
//! `conditions`) still verify. History: 1 — terms only; 2 — conditions.
//!
//! Strings escape only `"`, `\` and C0 controls (short forms `\b \t \n \f \r`
//! where JSON has them, else `\u00xx` lowercase); everything else, non-ASCII
//! included, is raw UTF-8. Integers are plain decimal. The bytes are built by hand
//! here so they never depend on a serializer's choices; the receipt JSON itself may
//! be pretty-printed or reordered freely.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use ring::digest;
use serde::{Deserialize, Serialize};

use crate::keyring::{Keyring, verify_signature};
use crate::{Error, Result};

/// The `format` of the receipts this module writes (format 2).
pub const RECEIPT_FORMAT: &str = "anyu.agreement-receipt/2";
/// The first format: still verified, no longer written.
pub const RECEIPT_FORMAT_V1: &str = "anyu.agreement-receipt/1";

/// What the grant a receipt opened allows (format 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptConditions {
    /// The grant the signature opened.
    pub grant_id: String,
    /// Usage method (SZ:27), by its snake_case name.
    pub usage_method: String,
    /// [`crate::access::Grant::conditions_sha256`]: columns, row filters,
    /// version policies and budgets.
    pub conditions_sha256: String,
}

/// Upper bound on any single text field of the terms, in characters.
const MAX_FIELD_CHARS: usize = 1000;
/// Upper bound on the number of datasets one agreement covers.
const MAX_DATASETS: usize = 100;

/// One version of the agreement text, with `{{placeholders}}` filled at signing.
#[derive(Debug, PartialEq, Eq)]
pub struct AgreementTemplate {
    /// Version number, recorded in every receipt; never reused for another text.
    pub version: u32,
    /// BCP 47 language tag of the text.
    pub language: &'static str,
    /// The template text (Markdown).
    pub text: &'static str,
}

/// Every agreement version ever issued, oldest first. Published texts never
/// change: a new text gets a new version so old receipts still verify.
static TEMPLATES: &[AgreementTemplate] = &[AgreementTemplate {
    version: 1,
    language: "zh-CN",
    text: include_str!("agreements/v1.zh.md"),
}];

/// The version new applications sign.
pub fn current() -> &'static AgreementTemplate {
    TEMPLATES.last().expect("at least one agreement version")
}

/// The template of version `v`, if this build knows it.
pub fn by_version(v: u32) -> Option<&'static AgreementTemplate> {
    TEMPLATES.iter().find(|t| t.version == v)
}

/// What a particular agreement is about; fills the template's placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgreementTerms {
    /// The approved application this agreement belongs to.
    pub application_id: String,
    /// Real name of the signing researcher (`{{applicant}}`).
    pub applicant_name: String,
    /// The researcher's organisation (`{{organisation}}`).
    pub organisation: String,
    /// Datasets with version policy, e.g. `traffic.accidents@v3` or
    /// `traffic.accidents@latest` (`{{datasets}}`), in the order given.
    pub datasets: Vec<String>,
    /// First day of use (`{{period}}`).
    pub period_start: NaiveDate,
    /// Last day of use, inclusive.
    pub period_end: NaiveDate,
    /// The approved application scenario (`{{scenario}}`).
    pub scenario: String,
}

impl AgreementTerms {
    /// Checks the terms can be signed: no empty or oversized field, no line
    /// breaks or control characters (they would reshape the rendered text), at
    /// least one dataset, and a period that does not end before it starts.
    pub fn validate(&self) -> Result<()> {
        check_field("application_id", &self.application_id)?;
        check_field("applicant_name", &self.applicant_name)?;
        check_field("organisation", &self.organisation)?;
        check_field("scenario", &self.scenario)?;
        if self.datasets.is_empty() {
            return Err(Error::InvalidArgument(
                "agreement terms list no datasets".into(),
            ));
        }
        if self.datasets.len() > MAX_DATASETS {
            return Err(Error::InvalidArgument(format!(
                "agreement terms list {} datasets, at most {MAX_DATASETS} allowed",
                self.datasets.len()
            )));
        }
        for (i, d) in self.datasets.iter().enumerate() {
            check_field(&format!("datasets[{i}]"), d)?;
        }
        if self.period_end < self.period_start {
            return Err(Error::InvalidArgument(
                "agreement period ends before it starts".into(),
            ));
        }
        Ok(())
    }
}

fn check_field(name: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::InvalidArgument(format!(
            "agreement field {name} is empty"
        )));
    }
    if value.chars().count() > MAX_FIELD_CHARS {
        return Err(Error::InvalidArgument(format!(
            "agreement field {name} is longer than {MAX_FIELD_CHARS} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "agreement field {name} contains a line break or control character"
        )));
    }
    Ok(())
}

/// Fills the template's placeholders from `terms`.
///
/// Deterministic: the same template and terms always give the same text, whose
/// SHA-256 the receipt records. Placeholders are replaced in one pass, so text
/// inside a value is never itself treated as a placeholder; an unknown
/// placeholder is left as written.
pub fn render(t: &AgreementTemplate, terms: &AgreementTerms) -> String {
    let datasets = terms
        .datasets
        .iter()
        .map(|d| format!("- {d}"))
        .collect::<Vec<_>>()
        .join("\n");
    let period = format!(
        "{} 至 {}（含首尾两日）",
        terms.period_start.format("%Y-%m-%d"),
        terms.period_end.format("%Y-%m-%d")
    );
    let version = t.version.to_string();
    let value = |name: &str| -> Option<&str> {
        Some(match name {
            "application_id" => &terms.application_id,
            "applicant" => &terms.applicant_name,
            "organisation" => &terms.organisation,
            "datasets" => &datasets,
            "period" => &period,
            "scenario" => &terms.scenario,
            "version" => &version,
            _ => return None,
        })
    };

    let mut out = String::with_capacity(t.text.len() + 512);
    let mut rest = t.text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after
            .find("}}")
            .and_then(|close| value(&after[..close]).map(|v| (v, close)))
        {
            Some((v, close)) => {
                out.push_str(v);
                rest = &after[close + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Lowercase hex SHA-256 of `text` (the receipt's `agreement_sha256`).
pub fn sha256_hex(text: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, text.as_bytes()))
}

/// Id of a platform public key: the first 16 hex characters of its SHA-256.
pub fn key_id(public_key: &[u8]) -> String {
    let d = digest::digest(&digest::SHA256, public_key);
    hex::encode(&d.as_ref()[..8])
}

/// A signed agreement receipt (format [`RECEIPT_FORMAT`]); see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedReceipt {
    /// Always [`RECEIPT_FORMAT`].
    pub format: String,
    /// The application the agreement belongs to; equals `terms.application_id`.
    pub application_id: String,
    /// Id of the signing user account.
    pub user_id: String,
    /// Username of the signing user account.
    pub username: String,
    /// When the user signed: RFC 3339, UTC, whole seconds, `Z` suffix.
    pub signed_at: String,
    /// Version of the agreement template signed.
    pub agreement_version: u32,
    /// Lowercase hex SHA-256 of the rendered agreement text.
    pub agreement_sha256: String,
    /// The terms the template was rendered with.
    pub terms: AgreementTerms,
    /// The grant's conditions (format 2; absent in format 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<ReceiptConditions>,
    /// [`key_id`] of the platform key that countersigned.
    pub platform_key_id: String,
    /// Ed25519 signature over [`SignedReceipt::canonical_bytes`], lowercase hex.
    pub platform_signature: String,
}

impl SignedReceipt {
    /// The bytes the platform signs: see the module docs. Part of the persisted
    /// format; changing it needs a new [`RECEIPT_FORMAT`].
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let t = &self.terms;
        let mut out = Vec::with_capacity(1024);
        out.push(b'{');
        field_str(&mut out, "format", &self.format, true);
        field_str(&mut out, "application_id", &self.application_id, false);
        field_str(&mut out, "user_id", &self.user_id, false);
        field_str(&mut out, "username", &self.username, false);
        field_str(&mut out, "signed_at", &self.signed_at, false);
        key(&mut out, "agreement_version", false);
        out.extend_from_slice(self.agreement_version.to_string().as_bytes());
        field_str(&mut out, "agreement_sha256", &self.agreement_sha256, false);
        key(&mut out, "terms", false);
        out.push(b'{');
        field_str(&mut out, "application_id", &t.application_id, true);
        field_str(&mut out, "applicant_name", &t.applicant_name, false);
        field_str(&mut out, "organisation", &t.organisation, false);
        key(&mut out, "datasets", false);
        out.push(b'[');
        for (i, d) in t.datasets.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json_str(&mut out, d);
        }
        out.push(b']');
        let start = t.period_start.format("%Y-%m-%d").to_string();
        let end = t.period_end.format("%Y-%m-%d").to_string();
        field_str(&mut out, "period_start", &start, false);
        field_str(&mut out, "period_end", &end, false);
        field_str(&mut out, "scenario", &t.scenario, false);
        out.push(b'}');
        if let Some(c) = &self.conditions {
            key(&mut out, "conditions", false);
            out.push(b'{');
            field_str(&mut out, "grant_id", &c.grant_id, true);
            field_str(&mut out, "usage_method", &c.usage_method, false);
            field_str(&mut out, "conditions_sha256", &c.conditions_sha256, false);
            out.push(b'}');
        }
        field_str(&mut out, "platform_key_id", &self.platform_key_id, false);
        out.push(b'}');
        out
    }

    /// The receipt as pretty-printed JSON, for download.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a receipt always serializes")
    }
}

fn key(out: &mut Vec<u8>, name: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    json_str(out, name);
    out.push(b':');
}

fn field_str(out: &mut Vec<u8>, name: &str, value: &str, first: bool) {
    key(out, name, first);
    json_str(out, value);
}

/// Writes `s` as a JSON string, escaping only `"`, `\` and C0 controls.
fn json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Formats a signing time the one way receipts record it.
fn format_signed_at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Signs a receipt for `terms` rendered into `rendered_text` from `template`:
/// format 2 with the grant's `conditions`, format 1 without.
///
/// `rendered_text` must be exactly `render(template, terms)` (the text the user
/// was shown); anything else is refused, so a receipt never vouches for a text
/// that its own terms do not produce. `signed_at` is truncated to whole seconds.
#[allow(clippy::too_many_arguments)]
pub fn sign_receipt(
    keyring: &Keyring,
    template: &AgreementTemplate,
    terms: &AgreementTerms,
    user_id: &str,
    username: &str,
    signed_at: DateTime<Utc>,
    rendered_text: &str,
    conditions: Option<ReceiptConditions>,
) -> Result<SignedReceipt> {
    terms.validate()?;
    check_field("user_id", user_id)?;
    check_field("username", username)?;
    if render(template, terms) != rendered_text {
        return Err(Error::InvalidArgument(
            "agreement text is not the template rendered with these terms".into(),
        ));
    }
    if let Some(c) = &conditions {
        check_field("grant_id", &c.grant_id)?;
        check_field("usage_method", &c.usage_method)?;
        check_sha256("conditions_sha256", &c.conditions_sha256)?;
    }
    let mut receipt = SignedReceipt {
        format: if conditions.is_some() {
            RECEIPT_FORMAT
        } else {
            RECEIPT_FORMAT_V1
        }
        .to_string(),
        conditions,
        application_id: terms.application_id.clone(),
        user_id: user_id.to_string(),
        username: username.to_string(),
        signed_at: format_signed_at(signed_at),
        agreement_version: template.version,
        agreement_sha256: sha256_hex(rendered_text),
        terms: terms.clone(),
        platform_key_id: key_id(&keyring.public_key()),
        platform_signature: String::new(),
    };
    receipt.platform_signature = hex::encode(keyring.sign(&receipt.canonical_bytes()));
    Ok(receipt)
}

/// A receipt whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    /// The receipt as parsed.
    pub receipt: SignedReceipt,
    /// `signed_at`, parsed.
    pub signed_at: DateTime<Utc>,
    /// True when the agreement text was checked against `agreement_sha256`:
    /// either the text was given, or this build knows the agreement version and
    /// re-rendered it from the terms. False only for an unknown version without text.
    pub text_checked: bool,
}

/// Verifies a receipt JSON document against the platform `public_key`.
///
/// Checks, in order: the JSON matches the format; `format`; the key id; the
/// Ed25519 signature over the canonical bytes; the internal consistency of the
/// signed fields; then the agreement text: `rendered_text` if given, otherwise
/// the known template re-rendered from the signed terms, must hash to
/// `agreement_sha256`. Signature, key and text failures are [`Error::Crypto`];
/// malformed receipts are [`Error::InvalidArgument`].
pub fn verify_receipt(
    receipt_json: &str,
    public_key: &[u8],
    rendered_text: Option<&str>,
) -> Result<VerifiedReceipt> {
    // A repeated key would let another reader see a value the signature did not cover.
    if let Err((line, column)) = crate::strict_json::first_duplicate_key(receipt_json) {
        return Err(Error::InvalidArgument(format!(
            "receipt repeats a key (line {line}, column {column}); a signed document must not"
        )));
    }
    // serde's messages can quote values; report only the position.
    let receipt: SignedReceipt = serde_json::from_str(receipt_json).map_err(|e| {
        Error::InvalidArgument(format!(
            "receipt does not match format {RECEIPT_FORMAT} or {RECEIPT_FORMAT_V1} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    match (receipt.format.as_str(), &receipt.conditions) {
        (RECEIPT_FORMAT_V1, None) => {}
        (RECEIPT_FORMAT, Some(c)) => {
            check_sha256("conditions.conditions_sha256", &c.conditions_sha256)?
        }
        (RECEIPT_FORMAT_V1 | RECEIPT_FORMAT, _) => {
            return Err(Error::InvalidArgument(
                "receipt conditions do not match its format (format 2 has them, format 1 not)"
                    .into(),
            ));
        }
        _ => {
            return Err(Error::InvalidArgument(format!(
                "unsupported receipt format; expected {RECEIPT_FORMAT} or {RECEIPT_FORMAT_V1}"
            )));
        }
    }
    if public_key.len() != 32 {
        return Err(Error::InvalidArgument(format!(
            "platform public key has {} bytes, expected 32",
            public_key.len()
        )));
    }
    let expected_key = key_id(public_key);
    if receipt.platform_key_id != expected_key {
        return Err(Error::Crypto(format!(
            "receipt was signed by key {}, expected {expected_key}",
            printable_hex(&receipt.platform_key_id)
        )));
    }
    let sig = hex::decode(&receipt.platform_signature)
        .ok()
        .filter(|s| s.len() == 64)
        .ok_or_else(|| Error::Crypto("receipt signature is malformed".into()))?;
    if !verify_signature(public_key, &receipt.canonical_bytes(), &sig) {
        return Err(Error::Crypto("receipt signature does not verify".into()));
    }

    // Signed, but still check what the signer should have guaranteed.
    let signed_at = DateTime::parse_from_rfc3339(&receipt.signed_at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| format_signed_at(*t) == receipt.signed_at)
        .ok_or_else(|| {
            Error::InvalidArgument("receipt signed_at is not an RFC 3339 UTC time".into())
        })?;
    if receipt.application_id != receipt.terms.application_id {
        return Err(Error::InvalidArgument(
            "receipt application_id differs from the one in its terms".into(),
        ));
    }
    check_sha256("agreement_sha256", &receipt.agreement_sha256)?;

    let text_hash = match rendered_text {
        Some(text) => Some(sha256_hex(text)),
        None => {
            by_version(receipt.agreement_version).map(|t| sha256_hex(&render(t, &receipt.terms)))
        }
    };
    if let Some(h) = &text_hash
        && *h != receipt.agreement_sha256
    {
        let why = match (rendered_text, by_version(receipt.agreement_version)) {
            (Some(given), Some(t)) => {
                format!(": {}", text_difference(given, &render(t, &receipt.terms)))
            }
            _ => String::new(),
        };
        return Err(Error::Crypto(format!(
            "agreement text does not match the signed hash{why}"
        )));
    }
    Ok(VerifiedReceipt {
        text_checked: text_hash.is_some(),
        receipt,
        signed_at,
    })
}

/// Where a given agreement text departs from the signed one, in words a
/// researcher can act on (a saved file often gains a newline or CRLFs).
/// Names a line number, never the lines' content.
fn text_difference(given: &str, signed: &str) -> String {
    if given.replace("\r\n", "\n") == signed {
        return "the text has Windows line endings (CRLF); the signed text has LF".into();
    }
    if given.trim_end() == signed.trim_end() {
        return "the text differs only in whitespace or newlines at its end".into();
    }
    if given.trim() == signed.trim() {
        return "the text differs only in whitespace at its start or end".into();
    }
    let first = given
        .lines()
        .zip(signed.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| given.lines().count().min(signed.lines().count()));
    format!(
        "the text differs from the signed text from line {} (the signed text has {} lines, this one {})",
        first + 1,
        signed.lines().count(),
        given.lines().count()
    )
}

fn check_sha256(name: &str, value: &str) -> Result<()> {
    if value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "receipt {name} is not a lowercase hex SHA-256"
        )))
    }
}

/// A key id read from a receipt is untrusted: show it only if it looks like one.
fn printable_hex(id: &str) -> &str {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        id
    } else {
        "<malformed id>"
    }
}
