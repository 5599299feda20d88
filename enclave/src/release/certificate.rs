//! Release certificates: what was released, from what, checked how, approved by
//! whom, signed by the platform key.
//!
//! ## Format `anyu.release-certificate/1`
//!
//! A [`Certificate`] is a JSON document. Its `platform_signature` is an Ed25519
//! signature, by the platform key, over the certificate's canonical bytes
//! ([`Certificate::canonical_bytes`]): the certificate as a JSON value with
//! `platform_signature` removed, written with object keys sorted by their UTF-8
//! bytes at every level (inside `checks` too) and no whitespace:
//!
//! ```text
//! {"application_id":…,"checks":{…},"citation":…,
//!  "datasets":[{"dataset_id":…,"sha256":…,"version":N},…],
//!  "format":"anyu.release-certificate/1","grant_id":…,"job_id":…,"platform_key_id":…,
//!  "query":{"kind":"sql","plan_summary":…,"text":…},"release_id":…,"released_at":…,
//!  "researcher":{"organisation":…,"user_id":…,"username":…},
//!  "result":{"columns":[{"data_type":…,"name":…},…],
//!            "formats":[{"bytes":N,"format":"csv","sha256":…},…],"rows":N},
//!  "reviewers":[{"at":…,"decision":"approve","user_id":…,"username":…},…]}
//! ```
//!
//! Strings escape only `"`, `\` and C0 controls (short forms `\b \t \n \f \r`
//! where JSON has them, else `\u00xx` lowercase); everything else, non-ASCII
//! included, is raw UTF-8. Numbers are written as serde_json prints them
//! (integers plain decimal). Every field is always present; arrays keep their
//! order. The certificate JSON itself may be pretty-printed or reordered freely.
//! The canonical bytes are at most [`MAX_CANONICAL_BYTES`], nested at most 32 levels.
//!
//! A differentially private release adds `"dp":{"budget_left":{…},"columns":[{"aggregate":…,
//! "bounds":…,"column":…,"count_scale":…,"epsilon":…,"mechanism":…,"scale":…,"sensitivity":…},…],
//! "delta":…,"epsilon":…,"max_groups_contributed":N,"max_rows_per_group":N,"privacy_unit":…,
//! "selection":{…}|null}` (between `datasets` and `format`); without it the key is absent.
//!
//! `datasets[].sha256` is the SHA-256 of the encrypted version file; each
//! `result.formats[].sha256` the SHA-256 of one download, so whoever holds a
//! downloaded file and the certificate can check both belong together offline.

use chrono::{DateTime, SecondsFormat, Utc};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use ring::digest;
use serde::{Deserialize, Serialize};

use super::export::{ResultFormat, encode};
use crate::access::agreement::key_id;
use crate::keyring::{Keyring, verify_signature};
use crate::{Error, Result};

/// The `format` value of every certificate this module writes and accepts.
pub const CERTIFICATE_FORMAT: &str = "anyu.release-certificate/1";

/// Upper bound on the canonical bytes, so verification stays cheap.
pub const MAX_CANONICAL_BYTES: usize = 4 * 1024 * 1024;
/// Upper bound on a certificate document given to [`verify`] (pretty JSON is larger).
const MAX_DOCUMENT_BYTES: usize = 4 * MAX_CANONICAL_BYTES;
/// Upper bound on ids, names and the citation, in characters.
const MAX_FIELD_CHARS: usize = 1000;
/// Upper bound on the query text and plan summary, in bytes.
const MAX_QUERY_BYTES: usize = 256 * 1024;

/// A release certificate (format [`CERTIFICATE_FORMAT`]); see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    /// Always [`CERTIFICATE_FORMAT`].
    pub format: String,
    pub release_id: String,
    pub job_id: String,
    pub grant_id: String,
    pub application_id: String,
    pub researcher: Researcher,
    pub query: QuerySection,
    /// Every dataset version the query read, in the order given.
    pub datasets: Vec<DatasetEntry>,
    pub result: ResultSection,
    /// The disclosure-control verdicts (per rule, per cell): a JSON object whose
    /// shape the disclosure module defines; signed as it is.
    pub checks: serde_json::Value,
    /// Output checkers who approved the release; empty for an automatic release.
    pub reviewers: Vec<Reviewer>,
    /// A differentially private result: ε and δ spent, the grant's budget
    /// left, and per column the mechanism and noise scale. Absent otherwise,
    /// so other certificates keep their exact form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<crate::dp::DpReport>,
    /// RFC 3339, UTC, whole seconds, `Z` suffix ([`certificate_time`]).
    pub released_at: String,
    /// The citation the use agreement requires publications to carry.
    pub citation: String,
    /// [`key_id`] of the platform key that signed.
    pub platform_key_id: String,
    /// Ed25519 signature over [`Certificate::canonical_bytes`], lowercase hex.
    pub platform_signature: String,
}

/// The researcher the result was released to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Researcher {
    pub user_id: String,
    pub username: String,
    pub organisation: String,
}

/// What kind of computation produced the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryKind {
    /// A SQL query; `text` is the SQL as submitted.
    Sql,
    /// A WebAssembly model; `text` is its input SQL, `model` names the code.
    Model,
}

/// The computation that produced the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySection {
    pub kind: QueryKind,
    /// The query as submitted.
    pub text: String,
    /// A human-readable summary of the executed plan.
    pub plan_summary: String,
    /// The model that computed the result (model jobs only; absent for SQL,
    /// so SQL certificates keep their exact form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSection>,
}

/// The code a model job ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// Lowercase hex SHA-256 of the WebAssembly component.
    pub sha256: String,
    /// The params string given to its `run`.
    pub params: String,
}

/// One dataset version the query read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    pub dataset_id: String,
    pub version: u64,
    /// Lowercase hex SHA-256 of the encrypted version file.
    pub sha256: String,
}

/// The released result: its shape and one entry per download format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultSection {
    pub rows: u64,
    pub columns: Vec<ColumnEntry>,
    /// Exactly one entry per [`ResultFormat`].
    pub formats: Vec<FormatEntry>,
}

/// A result column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnEntry {
    pub name: String,
    /// The Arrow data type as Arrow displays it, e.g. `Int64`, `Utf8`.
    pub data_type: String,
}

/// One download of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatEntry {
    pub format: ResultFormat,
    /// Length of the file in bytes.
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the file.
    pub sha256: String,
}

/// A release decision recorded in a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReviewDecision {
    Approve,
}

/// An output checker who approved the release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reviewer {
    pub user_id: String,
    pub username: String,
    pub decision: ReviewDecision,
    /// RFC 3339, UTC, whole seconds, `Z` suffix.
    pub at: String,
}

impl Certificate {
    /// The bytes the platform signs: see the module docs. Part of the persisted
    /// format; changing it needs a new [`CERTIFICATE_FORMAT`].
    pub fn canonical_bytes(&self) -> Result<Vec<u8>> {
        let mut value = serde_json::to_value(self)
            .map_err(|_| Error::Internal("a certificate always converts to JSON".into()))?;
        if let Some(map) = value.as_object_mut() {
            map.remove("platform_signature");
        }
        let mut out = Vec::with_capacity(4096);
        write_canonical(&mut out, &value, 0)?;
        if out.len() > MAX_CANONICAL_BYTES {
            return Err(Error::InvalidArgument(format!(
                "certificate is larger than {MAX_CANONICAL_BYTES} bytes"
            )));
        }
        Ok(out)
    }

    /// The certificate as pretty-printed JSON, for download.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a certificate always serializes")
    }

    /// Checks everything [`sign`] guarantees. Messages name the field, never its value.
    pub fn validate(&self) -> Result<()> {
        if self.format != CERTIFICATE_FORMAT {
            return Err(Error::InvalidArgument(format!(
                "unsupported certificate format; expected {CERTIFICATE_FORMAT}"
            )));
        }
        id_field("release_id", &self.release_id)?;
        id_field("job_id", &self.job_id)?;
        id_field("grant_id", &self.grant_id)?;
        id_field("application_id", &self.application_id)?;
        id_field("researcher.user_id", &self.researcher.user_id)?;
        id_field("researcher.username", &self.researcher.username)?;
        line_field(
            "researcher.organisation",
            &self.researcher.organisation,
            false,
        )?;
        text_field("query.text", &self.query.text, true)?;
        text_field("query.plan_summary", &self.query.plan_summary, false)?;

        if self.datasets.is_empty() {
            return invalid("datasets", "lists no dataset");
        }
        for (i, d) in self.datasets.iter().enumerate() {
            id_field(&format!("datasets[{i}].dataset_id"), &d.dataset_id)?;
            sha256_field(&format!("datasets[{i}].sha256"), &d.sha256)?;
            if self.datasets[..i]
                .iter()
                .any(|o| o.dataset_id == d.dataset_id && o.version == d.version)
            {
                return invalid(&format!("datasets[{i}]"), "repeats an earlier entry");
            }
        }

        let r = &self.result;
        if r.columns.is_empty() {
            return invalid("result.columns", "lists no column");
        }
        for (i, c) in r.columns.iter().enumerate() {
            if c.name.chars().count() > MAX_FIELD_CHARS {
                return invalid(
                    &format!("result.columns[{i}].name"),
                    "is longer than 1000 characters",
                );
            }
            line_field(
                &format!("result.columns[{i}].data_type"),
                &c.data_type,
                true,
            )?;
        }
        if r.formats.len() != ResultFormat::ALL.len()
            || ResultFormat::ALL
                .iter()
                .any(|f| r.formats.iter().filter(|e| e.format == *f).count() != 1)
        {
            return invalid(
                "result.formats",
                "must hold exactly one entry per format (csv, parquet, arrow_ipc, json)",
            );
        }
        for (i, f) in r.formats.iter().enumerate() {
            sha256_field(&format!("result.formats[{i}].sha256"), &f.sha256)?;
        }

        if let Some(dp) = &self.dp {
            let mut numbers = vec![dp.epsilon, dp.delta];
            numbers.extend(dp.budget_left.iter().flat_map(|b| [b.epsilon, b.delta]));
            numbers.extend(
                dp.selection
                    .iter()
                    .flat_map(|s| [s.scale, s.epsilon, s.delta]),
            );
            for c in &dp.columns {
                numbers.extend([c.scale, c.sensitivity, c.epsilon]);
                numbers.extend(c.count_scale);
                numbers.extend(c.bounds.iter().flatten());
                line_field("dp.columns[].column", &c.column, false)?;
            }
            if numbers.iter().any(|x| !x.is_finite()) {
                return invalid("dp", "holds a number that is not finite");
            }
            line_field("dp.privacy_unit", &dp.privacy_unit, true)?;
        }
        if !self.checks.is_object() {
            return invalid("checks", "must be a JSON object");
        }
        for (i, rv) in self.reviewers.iter().enumerate() {
            id_field(&format!("reviewers[{i}].user_id"), &rv.user_id)?;
            id_field(&format!("reviewers[{i}].username"), &rv.username)?;
            time_field(&format!("reviewers[{i}].at"), &rv.at)?;
        }
        time_field("released_at", &self.released_at)?;
        line_field("citation", &self.citation, true)?;
        Ok(())
    }
}

/// Nesting limit of the canonical form (the certificate itself uses 4 levels).
const MAX_DEPTH: usize = 32;

/// The same canonical JSON as the audit log's event details (sorted keys, no
/// whitespace, minimal escaping); the release tests check the two agree.
fn write_canonical(out: &mut Vec<u8>, v: &serde_json::Value, depth: usize) -> Result<()> {
    use serde_json::Value;
    if depth > MAX_DEPTH {
        return Err(Error::InvalidArgument(format!(
            "certificate is nested deeper than {MAX_DEPTH} levels"
        )));
    }
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => json_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(out, item, depth + 1)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_str(out, k);
                out.push(b':');
                write_canonical(out, item, depth + 1)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
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

fn invalid<T>(field: &str, rule: &str) -> Result<T> {
    Err(Error::InvalidArgument(format!(
        "certificate field `{field}` {rule}"
    )))
}

/// A non-empty single line of at most [`MAX_FIELD_CHARS`] characters.
fn id_field(field: &str, value: &str) -> Result<()> {
    line_field(field, value, true)
}

fn line_field(field: &str, value: &str, required: bool) -> Result<()> {
    if required && value.trim().is_empty() {
        return invalid(field, "is empty");
    }
    if value.chars().count() > MAX_FIELD_CHARS {
        return invalid(field, "is longer than 1000 characters");
    }
    if value.chars().any(char::is_control) {
        return invalid(field, "contains a line break or control character");
    }
    Ok(())
}

/// Multi-line text (SQL, plans): tabs and line breaks allowed, other controls not.
fn text_field(field: &str, value: &str, required: bool) -> Result<()> {
    if required && value.trim().is_empty() {
        return invalid(field, "is empty");
    }
    if value.len() > MAX_QUERY_BYTES {
        return invalid(field, "is longer than 256 KiB");
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return invalid(field, "contains a control character");
    }
    Ok(())
}

fn sha256_field(field: &str, value: &str) -> Result<()> {
    if is_lower_hex(value, 64) {
        Ok(())
    } else {
        invalid(field, "is not a lowercase hex SHA-256")
    }
}

fn time_field(field: &str, value: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| certificate_time(*t) == value)
        .map_or_else(
            || invalid(field, "is not an RFC 3339 UTC time in whole seconds (…Z)"),
            Ok,
        )
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Formats a time the one way certificates record it: RFC 3339, UTC, whole
/// seconds (truncated), `Z`.
pub fn certificate_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes))
}

/// The result encoded in every format, in [`ResultFormat::ALL`] order.
pub fn result_files(
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<(ResultFormat, Vec<u8>)>> {
    ResultFormat::ALL
        .iter()
        .map(|&f| Ok((f, encode(schema, batches, f)?)))
        .collect()
}

/// The certificate entries (length and hash) of encoded result files.
pub fn format_entries(files: &[(ResultFormat, Vec<u8>)]) -> Vec<FormatEntry> {
    files
        .iter()
        .map(|(format, bytes)| FormatEntry {
            format: *format,
            bytes: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        })
        .collect()
}

/// The certificate's `result` section for a result and its encoded files.
pub fn result_section(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    files: &[(ResultFormat, Vec<u8>)],
) -> ResultSection {
    ResultSection {
        rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
        columns: schema
            .fields()
            .iter()
            .map(|f| ColumnEntry {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
            })
            .collect(),
        formats: format_entries(files),
    }
}

/// Signs `unsigned` with the platform key after [`Certificate::validate`].
///
/// `platform_key_id` and `platform_signature` are set here (whatever `unsigned`
/// held). Numbers in `checks` are settled to what a JSON parser reads back, and
/// the signed certificate is verified once, so every certificate this returns
/// verifies from its own [`Certificate::to_json`].
pub fn sign(keyring: &Keyring, unsigned: Certificate) -> Result<Certificate> {
    let public_key = keyring.public_key();
    let mut cert = unsigned;
    cert.platform_key_id = key_id(&public_key);
    cert.platform_signature = String::new();
    cert.validate()?;
    let mut cert = settle_numbers(cert)?;
    let bytes = cert.canonical_bytes()?;
    cert.platform_signature = hex::encode(keyring.sign(&bytes));
    verify(&cert.to_json(), &public_key, None).map_err(|e| {
        Error::Internal(format!(
            "a freshly signed certificate does not verify ({})",
            e.code()
        ))
    })?;
    Ok(cert)
}

/// serde_json's float parsing is not exactly round-trip safe: sign what a
/// verifier will parse back, not the in-memory value.
fn settle_numbers(mut cert: Certificate) -> Result<Certificate> {
    for _ in 0..3 {
        let text = serde_json::to_string(&cert)
            .map_err(|_| Error::Internal("a certificate always serializes".into()))?;
        let back: Certificate = serde_json::from_str(&text).map_err(|_| {
            Error::InvalidArgument("certificate does not survive a JSON round trip".into())
        })?;
        if back == cert {
            return Ok(cert);
        }
        cert = back;
    }
    invalid(
        "checks",
        "holds a number that does not survive a JSON round trip",
    )
}

/// A certificate whose signature verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedRelease {
    /// The certificate as parsed.
    pub certificate: Certificate,
    /// `released_at`, parsed.
    pub released_at: DateTime<Utc>,
    /// The format of the result file given to [`verify`], if one was given.
    pub format: Option<ResultFormat>,
}

/// Verifies a certificate JSON document against the platform `public_key` and,
/// when given, a downloaded result file.
///
/// Checks, in order: the JSON matches the format; `format`; the key id; the
/// Ed25519 signature over the canonical bytes; the rules [`sign`] enforces; then
/// `result`'s length and SHA-256 must match one entry of `result.formats`.
/// Signature, key and hash failures are [`Error::Crypto`]; malformed
/// certificates are [`Error::InvalidArgument`]. Messages never quote the document.
pub fn verify(
    certificate_json: &str,
    public_key: &[u8],
    result: Option<&[u8]>,
) -> Result<VerifiedRelease> {
    if certificate_json.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::InvalidArgument(format!(
            "certificate is larger than {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    // A repeated key would let another reader see a value the signature did not cover.
    if let Err((line, column)) = crate::strict_json::first_duplicate_key(certificate_json) {
        return Err(Error::InvalidArgument(format!(
            "certificate repeats a key (line {line}, column {column}); a signed document must not"
        )));
    }
    // serde's messages can quote values; report only the position.
    let cert: Certificate = serde_json::from_str(certificate_json).map_err(|e| {
        Error::InvalidArgument(format!(
            "certificate does not match format {CERTIFICATE_FORMAT} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if cert.format != CERTIFICATE_FORMAT {
        return Err(Error::InvalidArgument(format!(
            "unsupported certificate format; expected {CERTIFICATE_FORMAT}"
        )));
    }
    if public_key.len() != 32 {
        return Err(Error::InvalidArgument(format!(
            "platform public key has {} bytes, expected 32",
            public_key.len()
        )));
    }
    let expected_key = key_id(public_key);
    if cert.platform_key_id != expected_key {
        return Err(Error::Crypto(format!(
            "certificate was signed by key {}, expected {expected_key}",
            printable_hex(&cert.platform_key_id)
        )));
    }
    // Lowercase only, so the unsigned signature field has exactly one spelling.
    let sig = Some(&cert.platform_signature)
        .filter(|s| is_lower_hex(s, 128))
        .and_then(|s| hex::decode(s).ok())
        .ok_or_else(|| Error::Crypto("certificate signature is malformed".into()))?;
    if !verify_signature(public_key, &cert.canonical_bytes()?, &sig) {
        return Err(Error::Crypto(
            "certificate signature does not verify".into(),
        ));
    }

    // Signed, but still check what the signer should have guaranteed.
    cert.validate()?;
    let released_at = time_field("released_at", &cert.released_at)?;
    let format = match result {
        None => None,
        Some(file) => {
            let (len, hash) = (file.len() as u64, sha256_hex(file));
            let entry = cert
                .result
                .formats
                .iter()
                .find(|e| e.bytes == len && e.sha256 == hash)
                .ok_or_else(|| {
                    Error::Crypto("the result file does not match the certificate".into())
                })?;
            Some(entry.format)
        }
    };
    Ok(VerifiedRelease {
        certificate: cert,
        released_at,
        format,
    })
}

/// A key id read from a certificate is untrusted: show it only if it looks like one.
fn printable_hex(id: &str) -> &str {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        id
    } else {
        "<malformed id>"
    }
}
