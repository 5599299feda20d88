//! What an import checks, taken from the manifest once.

use datafusion::arrow::datatypes::{DataType, SchemaRef};

use super::quality::Categories;
use crate::catalog::{IdFormat, Manifest};
use crate::{Error, Result};

/// Identifier check of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdCheck {
    ResidentId,
    CreditCode,
}

/// One manifest column as the importer needs it.
#[derive(Debug, Clone)]
pub(crate) struct ColumnSpec {
    pub name: String,
    /// The stored Arrow type (from the manifest).
    pub data_type: DataType,
    pub nullable: bool,
    pub format: Option<IdCheck>,
    pub bounds: Option<(f64, f64)>,
    pub categories: Option<Categories>,
}

/// The manifest's table: stored schema, checks, and the privacy-unit column.
#[derive(Debug, Clone)]
pub(crate) struct TableSpec {
    pub schema: SchemaRef,
    pub columns: Vec<ColumnSpec>,
    /// Index of the privacy-unit column in `columns`.
    pub privacy_unit: Option<usize>,
}

impl TableSpec {
    pub(crate) fn from_manifest(manifest: &Manifest) -> Result<TableSpec> {
        let schema = manifest.arrow_schema();
        let columns: Vec<ColumnSpec> = manifest
            .columns
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| ColumnSpec {
                name: c.name.clone(),
                data_type: f.data_type().clone(),
                nullable: c.nullable,
                format: c.format.map(|f| match f {
                    IdFormat::ResidentId => IdCheck::ResidentId,
                    IdFormat::CreditCode => IdCheck::CreditCode,
                }),
                bounds: c.bounds.map(|b| (b.min, b.max)),
                categories: c.categories.as_ref().map(|v| v.iter().cloned().collect()),
            })
            .collect();
        let privacy_unit = match manifest.dataset.privacy_unit.as_deref() {
            None => None,
            Some(name) => Some(columns.iter().position(|c| c.name == name).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "the manifest's privacy unit `{name}` is not one of its columns"
                ))
            })?),
        };
        for c in &columns {
            if c.format.is_some() && !super::quality::is_string(&c.data_type) {
                return Err(Error::InvalidArgument(format!(
                    "column `{}`: an identifier format needs a string column",
                    c.name
                )));
            }
            if c.bounds.is_some() && !matches!(c.data_type, DataType::Int64 | DataType::Float64) {
                return Err(Error::InvalidArgument(format!(
                    "column `{}`: bounds need a numeric column",
                    c.name
                )));
            }
        }
        Ok(TableSpec {
            schema,
            columns,
            privacy_unit,
        })
    }

    /// Index of the manifest column `name`.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}
