//! The open-data catalog: listings, dataset details, quality summaries.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Chinese and English renderings of one text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Text {
    /// Chinese text.
    pub zh: String,
    /// English text.
    pub en: String,
}

impl From<enclave::catalog::Text> for Text {
    fn from(v: enclave::catalog::Text) -> Self {
        Self { zh: v.zh, en: v.en }
    }
}

/// How often a dataset is updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UpdateFrequency {
    /// Continuously.
    Realtime,
    /// Every day.
    Daily,
    /// Every week.
    Weekly,
    /// Every month.
    Monthly,
    /// Every quarter.
    Quarterly,
    /// Every year.
    Yearly,
    /// Without a schedule.
    Irregular,
    /// Never; a fixed release.
    Static,
}

impl From<enclave::catalog::UpdateFrequency> for UpdateFrequency {
    fn from(v: enclave::catalog::UpdateFrequency) -> Self {
        match v {
            enclave::catalog::UpdateFrequency::Realtime => Self::Realtime,
            enclave::catalog::UpdateFrequency::Daily => Self::Daily,
            enclave::catalog::UpdateFrequency::Weekly => Self::Weekly,
            enclave::catalog::UpdateFrequency::Monthly => Self::Monthly,
            enclave::catalog::UpdateFrequency::Quarterly => Self::Quarterly,
            enclave::catalog::UpdateFrequency::Yearly => Self::Yearly,
            enclave::catalog::UpdateFrequency::Irregular => Self::Irregular,
            enclave::catalog::UpdateFrequency::Static => Self::Static,
        }
    }
}

/// Shape of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// Rows and typed columns.
    Table,
}

impl From<enclave::catalog::DataFormat> for DataFormat {
    fn from(v: enclave::catalog::DataFormat) -> Self {
        match v {
            enclave::catalog::DataFormat::Table => Self::Table,
        }
    }
}

/// Open type of a dataset (无条件开放 / 有条件开放 / 不予开放).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OpenType {
    /// 无条件开放: open to anyone.
    Unconditional,
    /// 有条件开放: open under the manifest's conditions, inside the domain.
    Conditional,
    /// 不予开放: invisible to users beyond the catalog metadata policy allows.
    NotOpen,
}

impl From<enclave::catalog::OpenType> for OpenType {
    fn from(v: enclave::catalog::OpenType) -> Self {
        match v {
            enclave::catalog::OpenType::Unconditional => Self::Unconditional,
            enclave::catalog::OpenType::Conditional => Self::Conditional,
            enclave::catalog::OpenType::NotOpen => Self::NotOpen,
        }
    }
}

impl From<OpenType> for enclave::catalog::OpenType {
    fn from(v: OpenType) -> Self {
        match v {
            OpenType::Unconditional => Self::Unconditional,
            OpenType::Conditional => Self::Conditional,
            OpenType::NotOpen => Self::NotOpen,
        }
    }
}

/// Sharing type between agencies (GD:10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SharingType {
    /// 无条件共享.
    UnconditionalSharing,
    /// 有条件共享.
    ConditionalSharing,
    /// 不予共享.
    NotShared,
}

impl From<enclave::catalog::SharingType> for SharingType {
    fn from(v: enclave::catalog::SharingType) -> Self {
        match v {
            enclave::catalog::SharingType::UnconditionalSharing => Self::UnconditionalSharing,
            enclave::catalog::SharingType::ConditionalSharing => Self::ConditionalSharing,
            enclave::catalog::SharingType::NotShared => Self::NotShared,
        }
    }
}

/// Departments responsible for the data (GD:10, HZ:11).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Departments {
    /// Department that collects the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collecting: Option<String>,
    /// Department that approves opening it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approving: Option<String>,
    /// Department that provides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providing: Option<String>,
}

impl From<enclave::catalog::Departments> for Departments {
    fn from(v: enclave::catalog::Departments) -> Self {
        Self {
            collecting: v.collecting,
            approving: v.approving,
            providing: v.providing,
        }
    }
}

/// Open conditions on conditional data (SZ:25-27).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenConditions {
    /// Conditions on the applying user.
    #[serde(default)]
    pub user: UserConditions,
    /// Allowed and forbidden scenarios.
    #[serde(default)]
    pub scenario: ScenarioConditions,
    /// Usage methods the provider allows (SZ:27).
    #[serde(default)]
    pub usage_methods: Vec<UsageMethod>,
}

impl From<enclave::catalog::OpenConditions> for OpenConditions {
    fn from(v: enclave::catalog::OpenConditions) -> Self {
        Self {
            user: v.user.into(),
            scenario: v.scenario.into(),
            usage_methods: v.usage_methods.into_iter().map(Into::into).collect(),
        }
    }
}

/// Conditions on the user (SZ:25, XM:24). Empty lists impose nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserConditions {
    /// Organisation types allowed to apply.
    #[serde(default)]
    pub organisation_types: Vec<OrganisationType>,
    /// Credit conditions the organisation must meet.
    #[serde(default)]
    pub credit: Vec<CreditRequirement>,
    /// Required qualifications, free text.
    #[serde(default)]
    pub qualifications: Vec<String>,
}

impl From<enclave::catalog::UserConditions> for UserConditions {
    fn from(v: enclave::catalog::UserConditions) -> Self {
        Self {
            organisation_types: v.organisation_types.into_iter().map(Into::into).collect(),
            credit: v.credit.into_iter().map(Into::into).collect(),
            qualifications: v.qualifications,
        }
    }
}

/// Kind of organisation a user belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrganisationType {
    /// A company.
    Enterprise,
    /// A university (research and education use only, GD:26).
    University,
    /// A research institute.
    ResearchInstitute,
    /// A government body.
    Government,
    /// A natural person.
    Individual,
}

impl From<enclave::catalog::OrganisationType> for OrganisationType {
    fn from(v: enclave::catalog::OrganisationType) -> Self {
        match v {
            enclave::catalog::OrganisationType::Enterprise => Self::Enterprise,
            enclave::catalog::OrganisationType::University => Self::University,
            enclave::catalog::OrganisationType::ResearchInstitute => Self::ResearchInstitute,
            enclave::catalog::OrganisationType::Government => Self::Government,
            enclave::catalog::OrganisationType::Individual => Self::Individual,
        }
    }
}

impl From<OrganisationType> for enclave::catalog::OrganisationType {
    fn from(v: OrganisationType) -> Self {
        match v {
            OrganisationType::Enterprise => Self::Enterprise,
            OrganisationType::University => Self::University,
            OrganisationType::ResearchInstitute => Self::ResearchInstitute,
            OrganisationType::Government => Self::Government,
            OrganisationType::Individual => Self::Individual,
        }
    }
}

/// Credit conditions (SZ:25): not on the named list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::enum_variant_names)] // the names of the lists
pub enum CreditRequirement {
    /// Not on the dishonest-debtor list (失信被执行人).
    NotDishonestDebtor,
    /// Not on the abnormal-operation list (经营异常名录).
    NotAbnormalOperation,
    /// Not on the serious-violation list (严重违法失信名单).
    NotSeriousViolation,
}

impl From<enclave::catalog::CreditRequirement> for CreditRequirement {
    fn from(v: enclave::catalog::CreditRequirement) -> Self {
        match v {
            enclave::catalog::CreditRequirement::NotDishonestDebtor => Self::NotDishonestDebtor,
            enclave::catalog::CreditRequirement::NotAbnormalOperation => Self::NotAbnormalOperation,
            enclave::catalog::CreditRequirement::NotSeriousViolation => Self::NotSeriousViolation,
        }
    }
}

/// Scenario conditions (SZ:26), as scenario category slugs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioConditions {
    /// Only these scenarios may use the data (empty: any not forbidden).
    #[serde(default)]
    pub allowed: Vec<String>,
    /// These scenarios may not use the data.
    #[serde(default)]
    pub forbidden: Vec<String>,
}

impl From<enclave::catalog::ScenarioConditions> for ScenarioConditions {
    fn from(v: enclave::catalog::ScenarioConditions) -> Self {
        Self {
            allowed: v.allowed,
            forbidden: v.forbidden,
        }
    }
}

/// Usage methods of SZ:27.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageMethod {
    /// Inside the domain; raw data never leaves it (原始数据不出域).
    InDomain,
    /// Raw data invisible to the user (可用不可见).
    Invisible,
    /// The user's model runs inside; only its results leave.
    ModelResults,
}

impl From<enclave::catalog::UsageMethod> for UsageMethod {
    fn from(v: enclave::catalog::UsageMethod) -> Self {
        match v {
            enclave::catalog::UsageMethod::InDomain => Self::InDomain,
            enclave::catalog::UsageMethod::Invisible => Self::Invisible,
            enclave::catalog::UsageMethod::ModelResults => Self::ModelResults,
        }
    }
}

impl From<UsageMethod> for enclave::catalog::UsageMethod {
    fn from(v: UsageMethod) -> Self {
        match v {
            UsageMethod::InDomain => Self::InDomain,
            UsageMethod::Invisible => Self::Invisible,
            UsageMethod::ModelResults => Self::ModelResults,
        }
    }
}

/// Logical column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// UTF-8 text.
    String,
    /// 64-bit signed integer.
    Int64,
    /// 64-bit float.
    Float64,
    /// Boolean.
    Bool,
    /// Calendar date.
    Date,
    /// Timestamp with microsecond precision, no time zone.
    Timestamp,
}

impl From<enclave::catalog::ColumnType> for ColumnType {
    fn from(v: enclave::catalog::ColumnType) -> Self {
        match v {
            enclave::catalog::ColumnType::String => Self::String,
            enclave::catalog::ColumnType::Int64 => Self::Int64,
            enclave::catalog::ColumnType::Float64 => Self::Float64,
            enclave::catalog::ColumnType::Bool => Self::Bool,
            enclave::catalog::ColumnType::Date => Self::Date,
            enclave::catalog::ColumnType::Timestamp => Self::Timestamp,
        }
    }
}

/// Disclosure role of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    /// Directly identifies a subject (ID number, name).
    Identifier,
    /// Identifies in combination (sex, birth date, district).
    QuasiIdentifier,
    /// Confidential attribute (income, diagnosis).
    Sensitive,
    /// Other attribute.
    Attribute,
}

impl From<enclave::catalog::Sensitivity> for Sensitivity {
    fn from(v: enclave::catalog::Sensitivity) -> Self {
        match v {
            enclave::catalog::Sensitivity::Identifier => Self::Identifier,
            enclave::catalog::Sensitivity::QuasiIdentifier => Self::QuasiIdentifier,
            enclave::catalog::Sensitivity::Sensitive => Self::Sensitive,
            enclave::catalog::Sensitivity::Attribute => Self::Attribute,
        }
    }
}

/// Inclusive value range of a numeric column.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// Smallest allowed value.
    pub min: f64,
    /// Largest allowed value.
    pub max: f64,
}

impl From<enclave::catalog::Bounds> for Bounds {
    fn from(v: enclave::catalog::Bounds) -> Self {
        Self {
            min: v.min,
            max: v.max,
        }
    }
}

/// What the catalog API shows of a dataset: metadata only, never rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CatalogEntry {
    /// Dataset id.
    pub id: String,
    /// Dataset name.
    pub title: Text,
    /// Summary; absent in name-only listings.
    pub summary: Option<Text>,
    /// Providing agency.
    pub provider: String,
    /// Providing agency in English.
    pub provider_en: Option<String>,
    /// Update frequency; absent in name-only listings.
    pub update_frequency: Option<UpdateFrequency>,
    /// Data format; absent in name-only listings.
    pub format: Option<DataFormat>,
    /// Open type.
    pub open_type: OpenType,
    /// Grade name.
    pub grade: String,
    /// Sharing type.
    pub sharing_type: Option<SharingType>,
    /// Coverage.
    pub scope: Option<String>,
    /// Responsible departments.
    pub departments: Option<Departments>,
    /// Search tags.
    pub tags: Vec<String>,
    /// Open conditions; absent in name-only listings.
    pub conditions: Option<OpenConditions>,
    /// Data items; empty in name-only listings.
    pub columns: Vec<ColumnInfo>,
    /// Privacy-unit column name.
    pub privacy_unit: Option<String>,
}

impl From<enclave::catalog::CatalogEntry> for CatalogEntry {
    fn from(v: enclave::catalog::CatalogEntry) -> Self {
        Self {
            id: v.id,
            title: v.title.into(),
            summary: v.summary.map(Into::into),
            provider: v.provider,
            provider_en: v.provider_en,
            update_frequency: v.update_frequency.map(Into::into),
            format: v.format.map(Into::into),
            open_type: v.open_type.into(),
            grade: v.grade,
            sharing_type: v.sharing_type.map(Into::into),
            scope: v.scope,
            departments: v.departments.map(Into::into),
            tags: v.tags,
            conditions: v.conditions.map(Into::into),
            columns: v.columns.into_iter().map(Into::into).collect(),
            privacy_unit: v.privacy_unit,
        }
    }
}

/// A column as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ColumnInfo {
    /// Column name.
    pub name: String,
    /// Logical type.
    #[serde(rename = "type")]
    pub data_type: ColumnType,
    /// Description.
    pub description: Text,
    /// Disclosure role.
    pub sensitivity: Sensitivity,
    /// Whether nulls are allowed.
    pub nullable: bool,
    /// Declared value range of a numeric column.
    pub bounds: Option<Bounds>,
}

impl From<enclave::catalog::ColumnInfo> for ColumnInfo {
    fn from(v: enclave::catalog::ColumnInfo) -> Self {
        Self {
            name: v.name,
            data_type: v.data_type.into(),
            description: v.description.into(),
            sensitivity: v.sensitivity.into(),
            nullable: v.nullable,
            bounds: v.bounds.map(Into::into),
        }
    }
}

/// Public summary of a version's quality: counts only, no row numbers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct QualitySummary {
    pub rows: u64,
    pub passed: bool,
    pub columns_with_nulls: u64,
    pub invalid_format: u64,
    pub out_of_bounds: u64,
    pub not_in_categories: u64,
    pub warnings: Vec<String>,
}

impl From<enclave::domain::QualitySummary> for QualitySummary {
    fn from(v: enclave::domain::QualitySummary) -> Self {
        Self {
            rows: v.rows,
            passed: v.passed,
            columns_with_nulls: v.columns_with_nulls,
            invalid_format: v.invalid_format,
            out_of_bounds: v.out_of_bounds,
            not_in_categories: v.not_in_categories,
            warnings: v.warnings,
        }
    }
}

/// A version as the public catalog shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VersionSummary {
    pub version: u64,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub created_at: String,
    pub quality: QualitySummary,
}

impl From<enclave::domain::VersionSummary> for VersionSummary {
    fn from(v: enclave::domain::VersionSummary) -> Self {
        Self {
            version: v.version,
            rows: v.rows,
            bytes: v.bytes,
            sha256: v.sha256,
            created_at: v.created_at,
            quality: v.quality.into(),
        }
    }
}

/// One row of the catalog listing.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CatalogListing {
    #[serde(flatten)]
    pub entry: CatalogEntry,
    pub latest_version: Option<VersionSummary>,
}

impl From<enclave::domain::CatalogListing> for CatalogListing {
    fn from(v: enclave::domain::CatalogListing) -> Self {
        Self {
            entry: v.entry.into(),
            latest_version: v.latest_version.map(Into::into),
        }
    }
}

/// The catalog detail of one dataset: metadata, versions, quality — never rows.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CatalogDetail {
    #[serde(flatten)]
    pub entry: CatalogEntry,
    pub manifest_revision: u64,
    pub updated_at: String,
    pub versions: Vec<VersionSummary>,
    /// The disclosure rules results on this dataset are checked against, as
    /// in force (the manifest's policy tightened by its grade), so nobody
    /// learns the threshold from suppressed groups. Absent for not-open data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules: Option<RulesInForce>,
}

/// What a researcher should know before querying a dataset.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RulesInForce {
    /// Thresholds (`threshold`, `frequency_threshold`), dominance (`nk`),
    /// `p_ratio`, zeros, `dof_threshold`, `max_output_rows`, auto-release,
    /// row-level output, `allow_joins_on`, `dp`, `models_need_approval`:
    /// the manifest's `[disclosure]` fields as in force.
    #[schema(value_type = Object)]
    pub disclosure: enclave::catalog::DisclosurePolicy,
    /// Output reviewers per result (from L3 two, blind).
    pub output_reviewers: u32,
    /// Whether every conditional application is reviewed jointly with the platform.
    pub joint_review: bool,
}

impl From<enclave::domain::CatalogDetail> for CatalogDetail {
    fn from(v: enclave::domain::CatalogDetail) -> Self {
        Self {
            entry: v.entry.into(),
            manifest_revision: v.manifest_revision,
            updated_at: v.updated_at,
            versions: v.versions.into_iter().map(Into::into).collect(),
            rules: v.rules.map(|r| RulesInForce {
                disclosure: r.disclosure,
                output_reviewers: r.output_reviewers,
                joint_review: r.joint_review,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    #[test]
    fn api_schemas_use_the_serialised_names() {
        let open_type = serde_json::to_string(&OpenType::schema()).unwrap();
        for v in ["unconditional", "conditional", "not_open"] {
            assert!(open_type.contains(&format!("\"{v}\"")), "{open_type}");
        }
        let entry = serde_json::to_string(&CatalogEntry::schema()).unwrap();
        assert!(
            entry.contains("\"privacy_unit\"") && entry.contains("#/components/schemas/ColumnInfo"),
            "{entry}"
        );
        let column = serde_json::to_string(&ColumnInfo::schema()).unwrap();
        assert!(
            column.contains("\"type\"") && !column.contains("data_type"),
            "{column}"
        );
    }
}
