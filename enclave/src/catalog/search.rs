//! Catalog search and the summary the API shows for one dataset.

use serde::{Deserialize, Serialize};

use super::manifest::{
    Bounds, ColumnType, DataFormat, Departments, Manifest, OpenConditions, OpenType, Sensitivity,
    SharingType, Text, UpdateFrequency,
};

/// Filters of a catalog search (SZ:21); every present filter must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogQuery {
    /// Case-insensitive substring of the id, titles, summaries, provider names,
    /// tags, column names or column descriptions.
    #[serde(default)]
    pub text: Option<String>,
    /// Case-insensitive substring of the provider's Chinese or English name.
    #[serde(default)]
    pub provider: Option<String>,
    /// Exact open type.
    #[serde(default)]
    pub open_type: Option<OpenType>,
    /// Exact grade name (ASCII case-insensitive).
    #[serde(default)]
    pub grade: Option<String>,
}

fn contains_ci(haystack: &str, needle_lower: &str) -> bool {
    haystack.to_lowercase().contains(needle_lower)
}

impl CatalogQuery {
    /// Whether the manifest matches every filter. Blank strings filter nothing.
    pub fn matches(&self, m: &Manifest) -> bool {
        let d = &m.dataset;
        if let Some(open_type) = self.open_type
            && d.open_type != open_type
        {
            return false;
        }
        if let Some(grade) = nonblank(&self.grade)
            && !d.grade.eq_ignore_ascii_case(grade)
        {
            return false;
        }
        if let Some(provider) = nonblank(&self.provider) {
            let p = provider.to_lowercase();
            let hit = contains_ci(&d.provider, &p)
                || d.provider_en.as_deref().is_some_and(|e| contains_ci(e, &p));
            if !hit {
                return false;
            }
        }
        if let Some(text) = nonblank(&self.text) {
            let t = text.to_lowercase();
            let texts = [&d.title, &d.summary];
            let hit = contains_ci(&d.id, &t)
                || texts
                    .iter()
                    .any(|x| contains_ci(&x.zh, &t) || contains_ci(&x.en, &t))
                || contains_ci(&d.provider, &t)
                || d.provider_en.as_deref().is_some_and(|e| contains_ci(e, &t))
                || d.tags.iter().any(|g| contains_ci(g, &t))
                || m.columns.iter().any(|c| {
                    contains_ci(&c.name, &t)
                        || contains_ci(&c.description.zh, &t)
                        || contains_ci(&c.description.en, &t)
                });
            if !hit {
                return false;
            }
        }
        true
    }
}

fn nonblank(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// What the catalog API shows of a dataset: metadata only, never rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// A column as the catalog shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

impl CatalogEntry {
    /// The full catalog entry of a dataset.
    pub fn from_manifest(m: &Manifest) -> Self {
        let d = &m.dataset;
        CatalogEntry {
            id: d.id.clone(),
            title: d.title.clone(),
            summary: Some(d.summary.clone()),
            provider: d.provider.clone(),
            provider_en: d.provider_en.clone(),
            update_frequency: Some(d.update_frequency),
            format: Some(d.format),
            open_type: d.open_type,
            grade: d.grade.clone(),
            sharing_type: d.sharing_type,
            scope: d.scope.clone(),
            departments: d.departments.clone(),
            tags: d.tags.clone(),
            conditions: Some(m.conditions.clone()),
            columns: m
                .columns
                .iter()
                .map(|c| ColumnInfo {
                    name: c.name.clone(),
                    data_type: c.data_type,
                    description: c.description.clone(),
                    sensitivity: c.sensitivity,
                    nullable: c.nullable,
                    bounds: c.bounds,
                })
                .collect(),
            privacy_unit: d.privacy_unit.clone(),
        }
    }

    /// The name-only entry used to list not-open datasets: id, title, provider,
    /// open type and grade; everything else empty.
    pub fn name_only(m: &Manifest) -> Self {
        let d = &m.dataset;
        CatalogEntry {
            id: d.id.clone(),
            title: d.title.clone(),
            summary: None,
            provider: d.provider.clone(),
            provider_en: d.provider_en.clone(),
            update_frequency: None,
            format: None,
            open_type: d.open_type,
            grade: d.grade.clone(),
            sharing_type: None,
            scope: None,
            departments: None,
            tags: Vec::new(),
            conditions: None,
            columns: Vec::new(),
            privacy_unit: None,
        }
    }
}
