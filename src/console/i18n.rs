//! Translation catalogues (`zh-CN` by default, `en`), dates in China
//! Standard Time and numbers per locale. Every visible string of the console
//! is a catalogue key; a unit test checks both catalogues hold every key the
//! templates and the code use, and nothing else.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A console language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    ZhCn,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::ZhCn => "zh-CN",
            Lang::En => "en",
        }
    }

    /// The language a cookie names; anything else is the default.
    pub fn from_code(code: &str) -> Lang {
        if code == "en" { Lang::En } else { Lang::ZhCn }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::ZhCn => Lang::En,
            Lang::En => Lang::ZhCn,
        }
    }
}

const ZH_CN: &str = include_str!("i18n/zh-CN.toml");
const EN: &str = include_str!("i18n/en.toml");

/// Keys built at run time from a value (`status.` + a job status …): each
/// prefix with every value it can take, so the coverage test sees them.
#[cfg(test)]
pub const DYNAMIC_KEYS: &[(&str, &[&str])] = &[
    (
        "status.",
        &[
            "queued",
            "running",
            "checked",
            "pending_review",
            "released",
            "rejected",
            "failed",
            "cancelled",
        ],
    ),
    (
        "status_help.",
        &[
            "queued",
            "running",
            "checked",
            "pending_review",
            "released",
            "rejected",
            "failed",
            "cancelled",
        ],
    ),
    ("review.decision_", &["approve", "reject"]),
    (
        "grant_state.",
        &["active", "suspended", "revoked", "expired"],
    ),
    ("role.", &["researcher", "steward", "admin", "auditor"]),
    ("outcome.", &["success", "denied", "failure"]),
    (
        "sensitivity.",
        &["identifier", "quasi_identifier", "sensitive", "attribute"],
    ),
    ("open_type.", &["unconditional", "conditional", "not_open"]),
    ("verdict.", &["pass", "review", "fail"]),
    // Rule and refusal codes explained in words; any other code is shown
    // with `code.other` and the code itself.
    ("code.", CODES),
    (
        "http.",
        &[
            "400", "401", "403", "404", "409", "422", "429", "500", "503",
        ],
    ),
];

/// The codes the console explains in words.
pub const CODES: &[&str] = &[
    "row_level_output",
    "identifier_in_output",
    "identifier_use",
    "table_not_granted",
    "function_not_allowed",
    "statement_not_allowed",
    "sql_syntax",
    "invalid_query",
    "unsupported_query",
    "aggregate_over_aggregates",
    "dp_required",
    "budget_exhausted",
    "grant_not_active",
    "too_many_jobs",
    "not_grant_holder",
    "rejected_by_reviewer",
    "cancelled",
    "deadline_exceeded",
    "memory_limit",
    "query_failed",
    "self_review",
    "same_organisation",
    "packet_not_read",
    "forbidden",
    "too_many_attempts",
    "password_change_required",
    "unauthenticated",
    "csrf",
    "other",
];

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            toml::Value::Table(t) => flatten(&key, t, out),
            other => panic!("catalogue key {key}: not a string ({other})"),
        }
    }
}

fn parse(source: &str) -> BTreeMap<String, String> {
    let table: toml::Table = source.parse().expect("a catalogue is valid TOML");
    let mut out = BTreeMap::new();
    flatten("", &table, &mut out);
    out
}

pub fn catalogue(lang: Lang) -> &'static BTreeMap<String, String> {
    static ZH: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    static ENG: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    match lang {
        Lang::ZhCn => ZH.get_or_init(|| parse(ZH_CN)),
        Lang::En => ENG.get_or_init(|| parse(EN)),
    }
}

/// The text of `key`; a missing key shows as itself (the test keeps that from
/// shipping).
pub fn tr(lang: Lang, key: &str) -> String {
    catalogue(lang)
        .get(key)
        .cloned()
        .unwrap_or_else(|| key.to_string())
}

/// An RFC 3339 time as China Standard Time (UTC+8), the platform's clock.
pub fn cst(lang: Lang, rfc3339: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
        return rfc3339.to_string();
    };
    let offset = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
    let local = t.with_timezone(&offset);
    match lang {
        Lang::ZhCn => local
            .format("%Y年%m月%d日 %H:%M:%S（北京时间）")
            .to_string(),
        Lang::En => local.format("%Y-%m-%d %H:%M:%S CST").to_string(),
    }
}

/// A number with the locale's digit grouping (both group by thousands with
/// `,` and use `.` for decimals; Chinese writes large counts with 万 in
/// prose, but tables keep digits).
pub fn number(lang: Lang, value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let text = format!("{:.*}", decimals, value.abs());
    let (int, frac) = text.split_once('.').unwrap_or((text.as_str(), ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if value < 0.0 { "-" } else { "" };
    let _ = lang;
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `t("…")` in a template and every `tr(…, "…")`/`key("…")` in
    /// the console's code.
    fn used_keys() -> std::collections::BTreeSet<String> {
        let mut used = std::collections::BTreeSet::new();
        let mut scan = |source: &str, opener: &str| {
            let mut rest = source;
            while let Some(i) = rest.find(opener) {
                rest = &rest[i + opener.len()..];
                // `t("status." ~ s)`: a prefix, its values listed in DYNAMIC_KEYS.
                if let Some(end) = rest.find('"') {
                    let key = &rest[..end];
                    if !key.ends_with('.') && !key.ends_with('_') {
                        used.insert(key.to_string());
                    }
                }
            }
        };
        for (_, source) in super::super::templates::SOURCES {
            scan(source, "t(\"");
        }
        for source in [
            include_str!("mod.rs"),
            include_str!("pages.rs"),
            include_str!("web.rs"),
        ] {
            scan(source, "tr(lang, \"");
            scan(source, "key(\"");
        }
        for (prefix, values) in DYNAMIC_KEYS {
            for v in *values {
                used.insert(format!("{prefix}{v}"));
            }
        }
        used
    }

    #[test]
    fn both_catalogues_hold_every_key_used_and_no_other() {
        let used = used_keys();
        assert!(used.len() > 50, "the scan found too few keys: {used:?}");
        for lang in [Lang::ZhCn, Lang::En] {
            let have: std::collections::BTreeSet<String> =
                catalogue(lang).keys().cloned().collect();
            let missing: Vec<_> = used.difference(&have).collect();
            assert!(missing.is_empty(), "{} lacks {missing:?}", lang.code());
            let unused: Vec<_> = have.difference(&used).collect();
            assert!(unused.is_empty(), "{} has unused {unused:?}", lang.code());
            for (k, v) in catalogue(lang) {
                assert!(!v.trim().is_empty(), "{}: {k} is empty", lang.code());
            }
        }
    }

    #[test]
    fn times_are_shown_in_china_standard_time() {
        let t = "2026-12-07T16:30:05.123456Z";
        assert_eq!(cst(Lang::En, t), "2026-12-08 00:30:05 CST");
        assert_eq!(cst(Lang::ZhCn, t), "2026年12月08日 00:30:05（北京时间）");
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(number(Lang::En, 1_234_567.0, 0), "1,234,567");
        assert_eq!(number(Lang::ZhCn, -1234.5, 2), "-1,234.50");
        assert_eq!(number(Lang::En, 999.0, 0), "999");
    }
}
