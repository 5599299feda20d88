//! Eligibility (SZ:25-27, XM:24, GD:26): may this applicant ask for this data in
//! this way? Checked before review; every failing rule is reported, not just the
//! first, so the applicant can fix everything at once.
//!
//! Reasons name fields, columns, categories and types, never personal data.

use serde::{Deserialize, Serialize};

use crate::catalog::{Manifest, OpenType, OrganisationType, UsageMethod};

/// Scenario category slug covering every emergency category below: a manifest
/// listing it allows (or forbids) all of them.
pub const EMERGENCY: &str = "emergency";
/// Emergency scenario: natural disaster (SZ:26).
pub const NATURAL_DISASTER: &str = "natural_disaster";
/// Emergency scenario: public health emergency (SZ:26).
pub const PUBLIC_HEALTH_EMERGENCY: &str = "public_health_emergency";
/// Emergency scenario: public safety incident (SZ:26).
pub const PUBLIC_SAFETY: &str = "public_safety";
/// Emergency scenario: accident or disaster (SZ:26).
pub const ACCIDENT_DISASTER: &str = "accident_disaster";
/// The emergency scenario categories of SZ:26.
pub const EMERGENCY_CATEGORIES: [&str; 4] = [
    NATURAL_DISASTER,
    PUBLIC_HEALTH_EMERGENCY,
    PUBLIC_SAFETY,
    ACCIDENT_DISASTER,
];

/// True for the emergency scenario categories of SZ:26.
pub fn is_emergency(category: &str) -> bool {
    EMERGENCY_CATEGORIES.contains(&category)
}

pub use crate::identity::CreditFlag;

/// What eligibility needs to know about the applicant and their organisation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplicantFacts {
    /// Type of the applicant's organisation.
    pub organisation_type: OrganisationType,
    /// Credit lists the organisation is on.
    pub credit_flags: Vec<CreditFlag>,
    /// Whether the account passed real-name verification (SZ:30).
    pub verified: bool,
}

/// What eligibility needs to know about one dataset request of an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFacts {
    /// Scenario category slug of the project, e.g. `academic_research`.
    pub scenario_category: String,
    /// Requested usage method (SZ:27).
    pub usage_method: UsageMethod,
    /// Exact columns requested.
    pub columns: Vec<String>,
    /// Whether the purpose is research or education (GD:26).
    pub purpose_is_research: bool,
}

/// Which eligibility rule refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// The account is not real-name verified.
    NotVerified,
    /// The dataset is `not_open`.
    DatasetNotOpen,
    /// The organisation type is not among the dataset's allowed types.
    OrganisationTypeNotAllowed,
    /// The organisation is on a credit list the dataset excludes.
    CreditFlag,
    /// The scenario is not among the dataset's allowed scenarios.
    ScenarioNotAllowed,
    /// The scenario is among the dataset's forbidden scenarios.
    ScenarioForbidden,
    /// The usage method is not one the dataset allows.
    UsageMethodNotAllowed,
    /// No column was requested.
    NoColumns,
    /// A requested column does not exist in the dataset.
    UnknownColumn,
    /// A university or research institute asked for a non-research purpose (GD:26).
    ResearchOnly,
}

impl RefusalCode {
    /// Stable snake_case code, part of the public API.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::NotVerified => "not_verified",
            RefusalCode::DatasetNotOpen => "dataset_not_open",
            RefusalCode::OrganisationTypeNotAllowed => "organisation_type_not_allowed",
            RefusalCode::CreditFlag => "credit_flag",
            RefusalCode::ScenarioNotAllowed => "scenario_not_allowed",
            RefusalCode::ScenarioForbidden => "scenario_forbidden",
            RefusalCode::UsageMethodNotAllowed => "usage_method_not_allowed",
            RefusalCode::NoColumns => "no_columns",
            RefusalCode::UnknownColumn => "unknown_column",
            RefusalCode::ResearchOnly => "research_only",
        }
    }
}

/// One failed eligibility rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Which rule.
    pub code: RefusalCode,
    /// Why, for the applicant.
    pub reason: String,
}

impl Refusal {
    fn new(code: RefusalCode, reason: impl Into<String>) -> Self {
        Refusal {
            code,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.reason)
    }
}

fn org_type_name(t: OrganisationType) -> &'static str {
    match t {
        OrganisationType::Enterprise => "enterprise",
        OrganisationType::University => "university",
        OrganisationType::ResearchInstitute => "research_institute",
        OrganisationType::Government => "government",
        OrganisationType::Individual => "individual",
    }
}

fn usage_method_name(m: UsageMethod) -> &'static str {
    match m {
        UsageMethod::InDomain => "in_domain",
        UsageMethod::Invisible => "invisible",
        UsageMethod::ModelResults => "model_results",
    }
}

/// Whether `list` names `category`, directly or, for an emergency category,
/// through the [`EMERGENCY`] umbrella slug.
fn lists(list: &[String], category: &str) -> bool {
    list.iter()
        .any(|s| s == category || (s == EMERGENCY && is_emergency(category)))
}

/// Checks one dataset request against the dataset's manifest. Returns every
/// refusal, in a fixed rule order, or `Ok` when all rules pass.
///
/// Rules, each refusing with its own [`RefusalCode`]:
/// account real-name verified; dataset not `not_open`; organisation type in the
/// allowed list (empty list: any); no credit flag the manifest's credit
/// requirements exclude (a flag the manifest does not name is not a refusal:
/// the manifest is the provider's statement of conditions); scenario in the
/// allowed list (empty list: any) and not in the forbidden list; usage method
/// allowed (empty list, possible only for non-conditional data: any); at least
/// one column, each one existing; universities and research institutes only for
/// research or education (GD:26).
///
/// Emergency categories ([`EMERGENCY_CATEGORIES`]) follow the same lists, with
/// one addition: a list naming [`EMERGENCY`] names all four. So a dataset whose
/// allowed list is non-empty is open to an emergency scenario only if it lists
/// that category or `emergency`; a dataset with no allowed list is open to
/// emergency scenarios unless it forbids them.
pub fn check_eligibility(
    applicant: &ApplicantFacts,
    request: &RequestFacts,
    manifest: &Manifest,
) -> Result<(), Vec<Refusal>> {
    let mut refusals = Vec::new();
    let conditions = &manifest.conditions;

    if !applicant.verified {
        refusals.push(Refusal::new(
            RefusalCode::NotVerified,
            "the account has not passed real-name verification",
        ));
    }
    if manifest.dataset.open_type == OpenType::NotOpen {
        refusals.push(Refusal::new(
            RefusalCode::DatasetNotOpen,
            "the dataset is not open (open_type `not_open`) and cannot be applied for",
        ));
    }

    let allowed_types = &conditions.user.organisation_types;
    if !allowed_types.is_empty() && !allowed_types.contains(&applicant.organisation_type) {
        let names: Vec<_> = allowed_types.iter().map(|t| org_type_name(*t)).collect();
        refusals.push(Refusal::new(
            RefusalCode::OrganisationTypeNotAllowed,
            format!(
                "organisation type `{}` may not apply for this dataset; allowed: {}",
                org_type_name(applicant.organisation_type),
                names.join(", ")
            ),
        ));
    }

    // One refusal per flag, in a stable order, whatever order the caller used.
    let mut flags = applicant.credit_flags.clone();
    flags.sort_by_key(|f| f.as_str());
    flags.dedup();
    for flag in flags {
        if conditions.user.credit.contains(&flag.violates()) {
            refusals.push(Refusal::new(
                RefusalCode::CreditFlag,
                format!(
                    "the organisation is on the `{}` credit list, which this dataset excludes",
                    flag.as_str()
                ),
            ));
        }
    }

    let scenario = &conditions.scenario;
    let category = request.scenario_category.as_str();
    if !scenario.allowed.is_empty() && !lists(&scenario.allowed, category) {
        refusals.push(Refusal::new(
            RefusalCode::ScenarioNotAllowed,
            format!(
                "scenario `{category}` is not among the dataset's allowed scenarios: {}",
                scenario.allowed.join(", ")
            ),
        ));
    }
    if lists(&scenario.forbidden, category) {
        refusals.push(Refusal::new(
            RefusalCode::ScenarioForbidden,
            format!("scenario `{category}` is forbidden for this dataset"),
        ));
    }

    let methods = &conditions.usage_methods;
    if !methods.is_empty() && !methods.contains(&request.usage_method) {
        let names: Vec<_> = methods.iter().map(|m| usage_method_name(*m)).collect();
        refusals.push(Refusal::new(
            RefusalCode::UsageMethodNotAllowed,
            format!(
                "usage method `{}` is not allowed for this dataset; allowed: {}",
                usage_method_name(request.usage_method),
                names.join(", ")
            ),
        ));
    }

    if request.columns.is_empty() {
        refusals.push(Refusal::new(
            RefusalCode::NoColumns,
            "no column requested: name the exact columns needed",
        ));
    }
    for column in &request.columns {
        if manifest.column(column).is_none() {
            // Column names are schema, not data; safe to name.
            refusals.push(Refusal::new(
                RefusalCode::UnknownColumn,
                format!("column `{column}` does not exist in this dataset"),
            ));
        }
    }

    let research_body = matches!(
        applicant.organisation_type,
        OrganisationType::University | OrganisationType::ResearchInstitute
    );
    if research_body && !request.purpose_is_research {
        refusals.push(Refusal::new(
            RefusalCode::ResearchOnly,
            format!(
                "a {} may use the data only for research or education (GD:26)",
                match applicant.organisation_type {
                    OrganisationType::University => "university",
                    _ => "research institute",
                }
            ),
        ));
    }

    if refusals.is_empty() {
        Ok(())
    } else {
        Err(refusals)
    }
}
