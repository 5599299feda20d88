//! # catalog — manifests, grades and catalog search
//!
//! Owns the **catalog manifest**: one TOML file per dataset holding the catalog
//! entry fields of REQUIREMENTS §2 (id, zh/en title and summary, provider,
//! update frequency, format, open type, grade, sharing type, scope,
//! departments), its open conditions (user, scenario, usage methods), its
//! columns with their sensitivity, the privacy-unit column, and the
//! disclosure policy (DESIGN.md's table). `datasets/manifests/social_insurance.toml`
//! is the annotated reference of the format.
//!
//! Also owns the [`GradeScale`] (L1..L4 by default, configurable) and how a
//! grade tightens a dataset's policy ([`Manifest::effective_policy`]), and the
//! catalog's search filters and API summary ([`CatalogQuery`], [`CatalogEntry`]).
//!
//! ## Why the format is versioned
//!
//! Manifests outlive the code that wrote them: they sit in providers' repositories
//! and are stored with every dataset version, and policy decisions are made from
//! them. `format_version` is checked before anything else, so a manifest written
//! for another version is refused as such instead of being half-read, and
//! [`Manifest::to_toml`] writes one canonical form whose snapshot test makes any
//! change to the persisted format a deliberate one (with a version bump).
//!
//! ## Errors
//!
//! [`Manifest::parse`] refuses unknown keys and returns the first broken rule as
//! one [`ManifestError`] naming the field path (`columns[2].bounds`) and, when
//! the text shows it, the line.

pub mod dummy;
mod error;
mod grade;
mod manifest;
mod parse;
mod search;
mod validate;

pub use error::ManifestError;
pub use grade::{GradePolicy, GradeScale};
pub use manifest::{
    Bounds, Column, ColumnType, CreditRequirement, DataFormat, DatasetInfo, Departments,
    DisclosurePolicy, DpPolicy, FORMAT_VERSION, IdFormat, Manifest, NkRule, OpenConditions,
    OpenType, OrganisationType, ScenarioConditions, Sensitivity, SharingType, Text,
    UpdateFrequency, UsageMethod, UserConditions,
};
pub use search::{CatalogEntry, CatalogQuery, ColumnInfo};
pub use validate::is_dataset_id;
