//! The manifest types: what a `datasets/manifests/*.toml` file holds.
//!
//! Field order here is the order of the canonical serialisation
//! ([`Manifest::to_toml`]); changing it changes the persisted form.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::{Deserialize, Serialize};

use super::error::ManifestError;
use super::grade::GradeScale;

/// The manifest format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// A dataset's catalog manifest: catalog metadata, open conditions, columns and
/// disclosure policy. Build one with [`Manifest::parse`], which validates it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version (not the dataset version); only [`FORMAT_VERSION`] is read.
    pub format_version: u32,
    /// Catalog entry fields (SZ:18, GD:10).
    pub dataset: DatasetInfo,
    /// Conditions on the user, scenario and usage method (SZ:25-27).
    #[serde(default)]
    pub conditions: OpenConditions,
    /// The data items, in table order.
    pub columns: Vec<Column>,
    /// Disclosure-control settings; omitted keys take DESIGN.md's defaults.
    #[serde(default)]
    pub disclosure: DisclosurePolicy,
}

/// Chinese and English renderings of one text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Text {
    /// Chinese text.
    pub zh: String,
    /// English text.
    pub en: String,
}

/// The catalog entry (开放目录) fields of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetInfo {
    /// Stable identifier, `[a-z][a-z0-9_]{1,63}`; also the SQL table name.
    pub id: String,
    /// Dataset name.
    pub title: Text,
    /// Dataset summary.
    pub summary: Text,
    /// Providing agency (开放主体), as it names itself.
    pub provider: String,
    /// English name of the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_en: Option<String>,
    /// How often the provider updates the data.
    pub update_frequency: UpdateFrequency,
    /// Data format.
    pub format: DataFormat,
    /// Open type (SZ:11-14).
    pub open_type: OpenType,
    /// Grade name; must be a level of the platform's [`GradeScale`].
    pub grade: String,
    /// Sharing type (GD:10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing_type: Option<SharingType>,
    /// Coverage, e.g. an administrative area.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Collecting, approving and providing departments (GD:10, HZ:11).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub departments: Option<Departments>,
    /// Column identifying the data subject; required unless unconditional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy_unit: Option<String>,
    /// Free search tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// How often a dataset is updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// Shape of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// Rows and typed columns.
    Table,
}

/// Open type of a dataset (无条件开放 / 有条件开放 / 不予开放).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenType {
    /// 无条件开放: open to anyone.
    Unconditional,
    /// 有条件开放: open under the manifest's conditions, inside the domain.
    Conditional,
    /// 不予开放: invisible to users beyond the catalog metadata policy allows.
    NotOpen,
}

/// Sharing type between agencies (GD:10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharingType {
    /// 无条件共享.
    UnconditionalSharing,
    /// 有条件共享.
    ConditionalSharing,
    /// 不予共享.
    NotShared,
}

/// Departments responsible for the data (GD:10, HZ:11).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
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

/// Open conditions on conditional data (SZ:25-27).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
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

/// Conditions on the user (SZ:25, XM:24). Empty lists impose nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
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

/// Kind of organisation a user belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// Credit conditions (SZ:25): not on the named list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreditRequirement {
    /// Not on the dishonest-debtor list (失信被执行人).
    NotDishonestDebtor,
    /// Not on the abnormal-operation list (经营异常名录).
    NotAbnormalOperation,
    /// Not on the serious-violation list (严重违法失信名单).
    NotSeriousViolation,
}

/// Scenario conditions (SZ:26), as scenario category slugs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioConditions {
    /// Only these scenarios may use the data (empty: any not forbidden).
    #[serde(default)]
    pub allowed: Vec<String>,
    /// These scenarios may not use the data.
    #[serde(default)]
    pub forbidden: Vec<String>,
}

/// Usage methods of SZ:27.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageMethod {
    /// Inside the domain; raw data never leaves it (原始数据不出域).
    InDomain,
    /// Raw data invisible to the user (可用不可见).
    Invisible,
    /// The user's model runs inside; only its results leave.
    ModelResults,
}

/// One data item (column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    /// Column name, a plain SQL identifier `[a-z_][a-z0-9_]*`.
    pub name: String,
    /// Logical type.
    #[serde(rename = "type")]
    pub data_type: ColumnType,
    /// What the column holds.
    pub description: Text,
    /// Disclosure role of the column.
    pub sensitivity: Sensitivity,
    /// Identifier format checked by the quality report (string columns only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<IdFormat>,
    /// Whether nulls are allowed.
    #[serde(default = "default_true")]
    pub nullable: bool,
    /// Value range of a numeric column, used by quality checks and DP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<Bounds>,
    /// Allowed values of a string column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
}

fn default_true() -> bool {
    true
}

/// Logical column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

impl ColumnType {
    /// The Arrow type data of this column is stored as.
    pub fn arrow_type(&self) -> DataType {
        match self {
            ColumnType::String => DataType::Utf8,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }

    /// True for the types that may carry [`Bounds`].
    pub fn is_numeric(&self) -> bool {
        matches!(self, ColumnType::Int64 | ColumnType::Float64)
    }
}

/// Disclosure role of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// Identifier format whose check character the quality report verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdFormat {
    /// 身份证号, ISO 7064 MOD 11-2.
    ResidentId,
    /// 统一社会信用代码, GB 32100.
    CreditCode,
}

/// Inclusive value range of a numeric column.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// Smallest allowed value.
    pub min: f64,
    /// Largest allowed value.
    pub max: f64,
}

/// Disclosure-control settings of a dataset (DESIGN.md's table). Every key is
/// optional in a manifest; [`Default`] gives DESIGN.md's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DisclosurePolicy {
    /// Aggregation threshold: minimum distinct privacy units per released group.
    pub threshold: u64,
    /// ACRO `safe_threshold`: minimum rows per cell.
    pub frequency_threshold: u64,
    /// ACRO dominance (n, k) rule.
    pub nk: NkRule,
    /// ACRO `safe_pratio_p`.
    pub p_ratio: f64,
    /// ACRO `zeros_are_disclosive`.
    pub zeros_are_disclosive: bool,
    /// ACRO `safe_dof_threshold`, for model outputs.
    pub dof_threshold: u64,
    /// Largest result a job may release.
    pub max_output_rows: u64,
    /// Results passing every check are released without steward review.
    pub auto_release: bool,
    /// Results may contain individual rows; only ever for unconditional data.
    pub row_level_output: bool,
    /// Columns usable as join keys with other datasets.
    pub allow_joins_on: Vec<String>,
    /// Differential-privacy settings.
    pub dp: DpPolicy,
    /// A steward of the provider approves each model (by hash) before its
    /// first run on this dataset (SZ:44: code entering the domain).
    pub models_need_approval: bool,
}

impl Default for DisclosurePolicy {
    fn default() -> Self {
        DisclosurePolicy {
            threshold: 10,
            frequency_threshold: 10,
            nk: NkRule::default(),
            p_ratio: 0.1,
            zeros_are_disclosive: true,
            dof_threshold: 10,
            max_output_rows: 10_000,
            auto_release: false,
            row_level_output: false,
            allow_joins_on: Vec::new(),
            dp: DpPolicy::default(),
            models_need_approval: true,
        }
    }
}

/// ACRO dominance rule: the largest `n` contributors must hold less than `k` of a cell's total.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NkRule {
    /// Number of largest contributors.
    pub n: u32,
    /// Share of the total they may not reach, in (0, 1].
    pub k: f64,
}

impl Default for NkRule {
    fn default() -> Self {
        NkRule { n: 2, k: 0.9 }
    }
}

/// Differential-privacy settings (BigQuery `WITH DIFFERENTIAL_PRIVACY` options).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DpPolicy {
    /// Queries on this dataset must be differentially private.
    pub required: bool,
    /// Epsilon budget per grant.
    pub epsilon_budget: f64,
    /// Delta budget per grant.
    pub delta_budget: f64,
    /// Groups one privacy unit may contribute to.
    pub max_groups_contributed: u32,
    /// Rows one privacy unit may contribute to one group (more are dropped at random).
    pub max_rows_per_group: u32,
}

impl Default for DpPolicy {
    fn default() -> Self {
        DpPolicy {
            required: false,
            epsilon_budget: 10.0,
            delta_budget: 1e-6,
            max_groups_contributed: 1,
            max_rows_per_group: 1,
        }
    }
}

impl Manifest {
    /// Parses and validates a manifest against the default grade scale (L1..L4).
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Self::parse_with(text, &GradeScale::default())
    }

    /// Parses and validates a manifest against the platform's grade scale.
    pub fn parse_with(text: &str, grades: &GradeScale) -> Result<Manifest, ManifestError> {
        super::parse::parse(text, grades)
    }

    /// Reads, parses and validates a manifest file.
    pub fn from_path(
        path: &std::path::Path,
        grades: &GradeScale,
    ) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ManifestError::new("", format!("cannot read {}: {e}", path.display())))?;
        Self::parse_with(&text, grades)
    }

    /// Checks every rule of the format (the checks [`Manifest::parse_with`] runs),
    /// e.g. after building or editing a manifest in code. Errors carry no line.
    pub fn validate(&self, grades: &GradeScale) -> Result<(), ManifestError> {
        super::validate::validate(self, grades)
    }

    /// The dataset id.
    pub fn id(&self) -> &str {
        &self.dataset.id
    }

    /// The column of that name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The privacy-unit column, if the manifest names one.
    pub fn privacy_unit_column(&self) -> Option<&Column> {
        self.dataset
            .privacy_unit
            .as_deref()
            .and_then(|n| self.column(n))
    }

    /// Arrow schema of the stored table: columns in manifest order, nullability
    /// from the manifest.
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(&c.name, c.data_type.arrow_type(), c.nullable))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// The policy that applies: this manifest's policy tightened by its grade
    /// in `grades` (see [`GradeScale::tighten`]).
    pub fn effective_policy(&self, grades: &GradeScale) -> DisclosurePolicy {
        grades.tighten(&self.dataset.grade, &self.disclosure)
    }

    /// Canonical TOML form: every key explicit, fixed order. Stable across
    /// releases of the same format version; snapshot-tested.
    pub fn to_toml(&self) -> String {
        super::parse::to_toml(self)
    }
}
