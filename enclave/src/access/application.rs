//! What a researcher writes: projects and applications (SZ:41, SZ:44, XM:23),
//! and the structural checks every field goes through before any rule sees it.
//!
//! Pure types and checks. Eligibility ([`super::check_eligibility`]) and the
//! workflow ([`super::apply`]) come after these checks; the domain persists.
//! Messages name field paths (`datasets[1].columns[0]`), never values.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::eligibility::EMERGENCY_CATEGORIES;
use crate::catalog::{ColumnType, Manifest, UsageMethod};
use crate::{Error, Result};

/// Scenario categories a project may name, with their Chinese names. The
/// emergency categories of SZ:26 come last.
pub const SCENARIO_CATEGORIES: &[(&str, &str)] = &[
    ("academic_research", "学术研究"),
    ("education", "教育教学"),
    ("public_policy", "公共政策研究"),
    ("public_health", "公共卫生"),
    ("social_services", "社会服务"),
    ("urban_planning", "城市规划"),
    ("transport", "交通出行"),
    ("environment", "生态环境"),
    ("industry_analysis", "产业分析"),
    ("financial_services", "金融服务"),
    ("credit_scoring", "信用评估"),
    ("insurance_underwriting", "保险核保"),
    ("marketing", "市场营销"),
    ("product_development", "产品研发"),
    ("natural_disaster", "自然灾害应急"),
    ("public_health_emergency", "突发公共卫生事件应急"),
    ("public_safety", "社会安全事件应急"),
    ("accident_disaster", "事故灾难应急"),
];

/// True for a category of [`SCENARIO_CATEGORIES`].
pub fn is_scenario_category(slug: &str) -> bool {
    SCENARIO_CATEGORIES.iter().any(|(s, _)| *s == slug)
}

// The emergency slugs of eligibility are all listed above.
const _: () = assert!(EMERGENCY_CATEGORIES.len() == 4);

/// Most datasets one application may request.
pub const MAX_DATASETS: usize = 10;
/// Most columns requested from one dataset.
pub const MAX_COLUMNS: usize = 200;
/// Most conditions in one row filter, and values in one `in` condition.
pub const MAX_FILTER_ITEMS: usize = 1000;
/// Most members of a project besides its owner.
pub const MAX_MEMBERS: usize = 50;

/// What a researcher states to open a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    /// Short title, 2 to 200 characters.
    pub title: String,
    /// The application scenario in words (SZ:41), 10 to 5000 characters.
    pub scenario_description: String,
    /// One of [`SCENARIO_CATEGORIES`], e.g. `academic_research` or an emergency
    /// category of SZ:26 such as `public_health_emergency`.
    pub scenario_category: String,
    /// Usernames of further researchers on the project (same organisation).
    #[serde(default)]
    pub members: Vec<String>,
}

impl NewProject {
    /// Checks lengths and the category; members are checked against accounts by the caller.
    pub fn validate(&self) -> Result<()> {
        text("title", &self.title, 2, 200)?;
        text("scenario_description", &self.scenario_description, 10, 5000)?;
        if !is_scenario_category(&self.scenario_category) {
            let names: Vec<&str> = SCENARIO_CATEGORIES.iter().map(|(s, _)| *s).collect();
            return Err(Error::InvalidArgument(format!(
                "scenario_category must be one of: {}",
                names.join(", ")
            )));
        }
        if self.members.len() > MAX_MEMBERS {
            return Err(Error::InvalidArgument(format!(
                "a project has at most {MAX_MEMBERS} members"
            )));
        }
        Ok(())
    }
}

/// How a grant follows a dataset's versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionPolicy {
    /// Always the newest version (a new import is used at once).
    #[default]
    Latest,
    /// The newest version when the grant is created, for reproducible work.
    Pinned,
}

/// Rows a grant may see: every condition must hold (AND). Built into the
/// grant's view as a DataFusion expression, never as SQL text.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RowFilter {
    /// Conditions on columns, all of which must hold.
    #[serde(default)]
    pub conditions: Vec<RowCondition>,
    /// Only data subjects in the dataset's consent table (GD:41).
    #[serde(default)]
    pub consented_only: bool,
}

impl RowFilter {
    /// True when the filter keeps every row.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty() && !self.consented_only
    }

    /// Both filters at once: the conditions of each, consent if either asks.
    /// Never wider than either side.
    pub fn and(&self, other: &RowFilter) -> RowFilter {
        let mut conditions = self.conditions.clone();
        for c in &other.conditions {
            if !conditions.contains(c) {
                conditions.push(c.clone());
            }
        }
        RowFilter {
            conditions,
            consented_only: self.consented_only || other.consented_only,
        }
    }

    /// Checks every condition against the dataset's columns. `field` prefixes messages.
    pub fn validate(&self, field: &str, manifest: &Manifest) -> Result<()> {
        if self.conditions.len() > MAX_FILTER_ITEMS {
            return Err(Error::InvalidArgument(format!(
                "{field}.conditions: at most {MAX_FILTER_ITEMS} conditions"
            )));
        }
        if self.consented_only && manifest.privacy_unit_column().is_none() {
            return Err(Error::InvalidArgument(format!(
                "{field}.consented_only: the dataset has no privacy unit to match consents on"
            )));
        }
        for (i, c) in self.conditions.iter().enumerate() {
            c.validate(&format!("{field}.conditions[{i}]"), manifest)?;
        }
        Ok(())
    }
}

/// One condition of a [`RowFilter`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum RowCondition {
    /// The column equals one of the values (string, int64 and bool columns).
    In {
        /// Column name.
        column: String,
        /// Allowed values, typed as the column (strings, integers or booleans).
        values: Vec<serde_json::Value>,
    },
    /// The column lies in an inclusive numeric range (int64 and float64 columns).
    Range {
        /// Column name.
        column: String,
        /// Smallest value kept.
        #[serde(default)]
        min: Option<f64>,
        /// Largest value kept.
        #[serde(default)]
        max: Option<f64>,
    },
    /// The column lies in an inclusive date range (date columns).
    DateRange {
        /// Column name.
        column: String,
        /// First day kept.
        #[serde(default)]
        from: Option<NaiveDate>,
        /// Last day kept.
        #[serde(default)]
        to: Option<NaiveDate>,
    },
}

impl RowCondition {
    /// The column the condition is on.
    pub fn column(&self) -> &str {
        match self {
            RowCondition::In { column, .. }
            | RowCondition::Range { column, .. }
            | RowCondition::DateRange { column, .. } => column,
        }
    }

    fn validate(&self, field: &str, manifest: &Manifest) -> Result<()> {
        let bad = |what: String| Err(Error::InvalidArgument(format!("{field}: {what}")));
        let Some(col) = manifest.column(self.column()) else {
            return bad(format!(
                "column `{}` does not exist in this dataset",
                printable(self.column())
            ));
        };
        match self {
            RowCondition::In { values, .. } => {
                if values.is_empty() || values.len() > MAX_FILTER_ITEMS {
                    return bad(format!("needs 1 to {MAX_FILTER_ITEMS} values"));
                }
                for (i, v) in values.iter().enumerate() {
                    let fits = match col.data_type {
                        ColumnType::String => v.as_str().is_some_and(|s| {
                            col.categories
                                .as_ref()
                                .is_none_or(|cats| cats.iter().any(|c| c == s))
                        }),
                        ColumnType::Int64 => v.as_i64().is_some(),
                        ColumnType::Bool => v.is_boolean(),
                        _ => {
                            return bad(format!(
                                "`in` does not apply to column `{}`; use `range` or `date_range`",
                                col.name
                            ));
                        }
                    };
                    if !fits {
                        return bad(format!(
                            "value {} does not fit column `{}` (type or categories)",
                            i + 1,
                            col.name
                        ));
                    }
                }
            }
            RowCondition::Range { min, max, .. } => {
                if !col.data_type.is_numeric() {
                    return bad(format!(
                        "`range` needs a numeric column, not `{}`",
                        col.name
                    ));
                }
                if min.is_none() && max.is_none() {
                    return bad("a range needs `min`, `max` or both".into());
                }
                if min.is_some_and(|v| !v.is_finite()) || max.is_some_and(|v| !v.is_finite()) {
                    return bad("range bounds must be finite numbers".into());
                }
                if let (Some(a), Some(b)) = (min, max)
                    && a > b
                {
                    return bad("`min` is larger than `max`".into());
                }
            }
            RowCondition::DateRange { from, to, .. } => {
                if col.data_type != ColumnType::Date {
                    return bad(format!(
                        "`date_range` needs a date column, not `{}`",
                        col.name
                    ));
                }
                if from.is_none() && to.is_none() {
                    return bad("a date range needs `from`, `to` or both".into());
                }
                if let (Some(a), Some(b)) = (from, to)
                    && a > b
                {
                    return bad("`from` is after `to`".into());
                }
            }
        }
        Ok(())
    }
}

/// One dataset an application asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetRequest {
    /// Catalog id.
    pub dataset_id: String,
    /// The exact columns needed (minimum authorisation, HZ:25).
    pub columns: Vec<String>,
    /// Follow new versions, or pin the current one.
    #[serde(default)]
    pub version_policy: VersionPolicy,
    /// Only these rows (e.g. one district).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_filter: Option<RowFilter>,
}

/// Domain admission details (入驻申请, SZ:44).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdmissionDetails {
    /// Whether the researcher brings own data into the domain.
    pub brings_own_data: bool,
    /// What that data is; required when `brings_own_data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub own_data_description: Option<String>,
    /// Tools and languages to be used inside the domain.
    pub development_environment: String,
    /// CPU cores needed.
    pub cpu_cores: u32,
    /// Memory needed, GiB.
    pub memory_gib: u32,
    /// Storage needed, GiB.
    pub storage_gib: u32,
    /// Commitment to the domain's rules (SZ:44); must be true.
    pub accepts_domain_rules: bool,
}

/// The body of an application, as the researcher writes and edits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationDraft {
    /// The project applied under.
    pub project_id: String,
    /// Datasets and the exact columns needed.
    pub datasets: Vec<DatasetRequest>,
    /// One of SZ:27's methods, allowed by every requested dataset.
    pub usage_method: UsageMethod,
    /// Purpose of use, 10 to 5000 characters.
    pub purpose: String,
    /// Research or education purpose (GD:26: required of universities and institutes).
    pub purpose_is_research: bool,
    /// First day of use (China Standard Time).
    pub period_start: NaiveDate,
    /// Last day of use, inclusive.
    pub period_end: NaiveDate,
    /// Security measures the researcher commits to, 10 to 5000 characters.
    pub security_measures: String,
    /// Domain admission details (SZ:44).
    pub admission: AdmissionDetails,
    /// The use-agreement version the researcher accepts; must be the current one.
    pub agreement_version: u32,
}

/// Limits an application must respect, from the platform configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApplicationLimits {
    /// Longest period of use, in days.
    pub max_period_days: i64,
}

impl Default for ApplicationLimits {
    fn default() -> Self {
        ApplicationLimits {
            max_period_days: 3 * 366,
        }
    }
}

impl ApplicationDraft {
    /// Structural checks against the requested datasets' manifests (`manifests[i]`
    /// belongs to `datasets[i]`): sizes, duplicates, filters, period, admission,
    /// agreement version. Column existence and the provider's conditions are
    /// eligibility's, so an applicant sees all of those reasons together.
    pub fn validate(
        &self,
        manifests: &[&Manifest],
        today: NaiveDate,
        limits: ApplicationLimits,
        current_agreement: u32,
    ) -> Result<()> {
        if self.datasets.is_empty() || self.datasets.len() > MAX_DATASETS {
            return Err(Error::InvalidArgument(format!(
                "datasets: request 1 to {MAX_DATASETS} datasets"
            )));
        }
        if manifests.len() != self.datasets.len() {
            return Err(Error::Internal(
                "validate needs one manifest per dataset".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, (d, m)) in self.datasets.iter().zip(manifests).enumerate() {
            let field = format!("datasets[{i}]");
            if !seen.insert(d.dataset_id.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "{field}: dataset `{}` is requested twice",
                    d.dataset_id
                )));
            }
            if d.columns.len() > MAX_COLUMNS {
                return Err(Error::InvalidArgument(format!(
                    "{field}.columns: at most {MAX_COLUMNS} columns"
                )));
            }
            let mut cols = BTreeSet::new();
            for (j, c) in d.columns.iter().enumerate() {
                if !cols.insert(c.as_str()) {
                    return Err(Error::InvalidArgument(format!(
                        "{field}.columns[{j}]: column `{}` is listed twice",
                        printable(c)
                    )));
                }
            }
            if let Some(f) = &d.row_filter {
                f.validate(&format!("{field}.row_filter"), m)?;
            }
        }
        text("purpose", &self.purpose, 10, 5000)?;
        text("security_measures", &self.security_measures, 10, 5000)?;
        self.validate_period(today, limits)?;
        let a = &self.admission;
        text(
            "admission.development_environment",
            &a.development_environment,
            2,
            1000,
        )?;
        if a.brings_own_data {
            match &a.own_data_description {
                Some(d) => text("admission.own_data_description", d, 10, 5000)?,
                None => {
                    return Err(Error::InvalidArgument(
                        "admission.own_data_description: describe the data brought into the domain"
                            .into(),
                    ));
                }
            }
        }
        if a.cpu_cores == 0 || a.cpu_cores > 256 {
            return Err(Error::InvalidArgument(
                "admission.cpu_cores: 1 to 256".into(),
            ));
        }
        if a.memory_gib == 0 || a.memory_gib > 4096 {
            return Err(Error::InvalidArgument(
                "admission.memory_gib: 1 to 4096".into(),
            ));
        }
        if a.storage_gib > 100_000 {
            return Err(Error::InvalidArgument(
                "admission.storage_gib: at most 100000".into(),
            ));
        }
        if !a.accepts_domain_rules {
            return Err(Error::InvalidArgument(
                "admission.accepts_domain_rules: the domain's rules must be accepted (SZ:44)"
                    .into(),
            ));
        }
        if self.agreement_version != current_agreement {
            return Err(Error::InvalidArgument(format!(
                "agreement_version: version {} is not the current use agreement (current: {current_agreement})",
                self.agreement_version
            )));
        }
        Ok(())
    }

    /// The period starts today or later, ends on or after its start, and is not
    /// longer than the platform allows.
    pub fn validate_period(&self, today: NaiveDate, limits: ApplicationLimits) -> Result<()> {
        if self.period_start < today {
            return Err(Error::InvalidArgument(
                "period_start: the period of use cannot start in the past".into(),
            ));
        }
        if self.period_end < self.period_start {
            return Err(Error::InvalidArgument(
                "period_end: the period ends before it starts".into(),
            ));
        }
        let days = (self.period_end - self.period_start).num_days() + 1;
        if days > limits.max_period_days {
            return Err(Error::InvalidArgument(format!(
                "period_end: the period of use is {days} days, at most {} allowed",
                limits.max_period_days
            )));
        }
        Ok(())
    }
}

/// Checks a required text field's length in characters after trimming.
pub(crate) fn text(field: &str, value: &str, min: usize, max: usize) -> Result<()> {
    let n = value.trim().chars().count();
    if n < min || n > max {
        return Err(Error::InvalidArgument(format!(
            "{field} must be {min} to {max} characters"
        )));
    }
    Ok(())
}

/// A name from the caller is shown only when it looks like an identifier.
fn printable(s: &str) -> &str {
    if !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
    {
        s
    } else {
        "<invalid name>"
    }
}

/// A material the applicant uploads (proofs of conditions, SZ:41, XM:23).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaterialType {
    /// `application/pdf`.
    Pdf,
    /// `image/png`.
    Png,
    /// `image/jpeg`.
    Jpeg,
    /// `text/plain`, UTF-8.
    Text,
}

impl MaterialType {
    /// The type of a declared `Content-Type` (parameters ignored), if accepted.
    pub fn from_content_type(ct: &str) -> Option<MaterialType> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base.to_ascii_lowercase().as_str() {
            "application/pdf" => Some(MaterialType::Pdf),
            "image/png" => Some(MaterialType::Png),
            "image/jpeg" => Some(MaterialType::Jpeg),
            "text/plain" => Some(MaterialType::Text),
            _ => None,
        }
    }

    /// Whether a declared `Content-Type` says nothing about the file: none,
    /// `application/octet-stream`, or what `curl --data-binary` sends by
    /// default (`application/x-www-form-urlencoded`). The content decides then.
    pub fn is_generic(ct: &str) -> bool {
        let base = ct.split(';').next().unwrap_or("").trim();
        base.is_empty()
            || [
                "application/octet-stream",
                "application/x-www-form-urlencoded",
            ]
            .iter()
            .any(|g| base.eq_ignore_ascii_case(g))
    }

    /// The accepted type the content is, checked as [`MaterialType::matches`]
    /// checks a declared one (text last: a PDF is not taken for text).
    pub fn sniff(bytes: &[u8]) -> Option<MaterialType> {
        [
            MaterialType::Pdf,
            MaterialType::Png,
            MaterialType::Jpeg,
            MaterialType::Text,
        ]
        .into_iter()
        .find(|k| k.matches(bytes))
    }

    /// The MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            MaterialType::Pdf => "application/pdf",
            MaterialType::Png => "image/png",
            MaterialType::Jpeg => "image/jpeg",
            MaterialType::Text => "text/plain; charset=utf-8",
        }
    }

    /// Whether `bytes` really are of this type (magic numbers; UTF-8 for text),
    /// so a declared type cannot smuggle another format in.
    pub fn matches(self, bytes: &[u8]) -> bool {
        match self {
            MaterialType::Pdf => bytes.starts_with(b"%PDF-"),
            MaterialType::Png => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            MaterialType::Jpeg => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
            MaterialType::Text => std::str::from_utf8(bytes).is_ok_and(|s| !s.contains('\0')),
        }
    }
}

/// The accepted content types, for error messages.
pub const MATERIAL_TYPES: &str = "application/pdf, image/png, image/jpeg, text/plain";

/// Checks an uploaded material's file name: 1 to 200 characters, no path
/// separators or control characters.
pub fn validate_material_name(name: &str) -> Result<()> {
    let n = name.chars().count();
    if n == 0
        || n > 200
        || name.trim() != name
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control)
        || name.starts_with('.')
    {
        return Err(Error::InvalidArgument(
            "material name must be 1 to 200 characters, without path separators, control characters or a leading dot"
                .into(),
        ));
    }
    Ok(())
}
