//! The quality report: what an import found in the data that it accepted anyway.
//!
//! The report holds counts and row numbers only, never a value: it is stored in
//! the metadata database and shown in the catalog, where conditional data must not
//! appear.

use std::collections::HashSet;
use std::hash::BuildHasher;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use serde::{Deserialize, Serialize};

use super::source::RowLocator;
use super::spec::{ColumnSpec, IdCheck, TableSpec};
use crate::{Error, Result};

/// Category sets are looked up by `&str`.
pub(crate) type Categories = HashSet<String>;

/// Version of the persisted [`QualityReport`] JSON. Bump it when the shape changes.
pub const QUALITY_REPORT_FORMAT: u32 = 1;

/// Data quality of one imported file (XM:13, SZ:29 质量检测): counts of the problems
/// that were reported but accepted, with the row numbers of the first offenders.
///
/// Row numbers are 1-based record numbers in the file: the header of a CSV file
/// and blank lines of an NDJSON file are not counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QualityReport {
    /// Format of this report ([`QUALITY_REPORT_FORMAT`]).
    pub format: u32,
    /// Rows imported.
    pub rows: u64,
    /// One entry per manifest column, in manifest order.
    pub columns: Vec<ColumnQuality>,
    /// Duplicate analysis of the privacy-unit column, if the manifest names one.
    pub privacy_unit: Option<PrivacyUnitQuality>,
    /// True when no value failed a format, bounds or category check. Missing
    /// values in nullable columns and repeated privacy units do not fail it.
    pub passed: bool,
    /// The findings as sentences; they name columns and rows, never values.
    pub warnings: Vec<String>,
}

/// Problem counts of one column. Each `*_rows` list holds the first rows (at most
/// `ImportOptions::max_error_rows`) that have that problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnQuality {
    /// Column name.
    pub name: String,
    /// Missing values (only possible in nullable columns: a null elsewhere refuses the file).
    pub nulls: u64,
    /// First rows with a missing value.
    pub null_rows: Vec<u64>,
    /// Values failing the column's identifier format (身份证号 / 统一社会信用代码 check).
    pub invalid_format: u64,
    /// First rows with an invalid identifier.
    pub invalid_format_rows: Vec<u64>,
    /// Numeric values outside the manifest's bounds.
    pub out_of_bounds: u64,
    /// First rows with an out-of-bounds value.
    pub out_of_bounds_rows: Vec<u64>,
    /// Values not among the manifest's categories.
    pub not_in_categories: u64,
    /// First rows with a value outside the categories.
    pub not_in_categories_rows: Vec<u64>,
}

/// How rows relate to data subjects, from the privacy-unit column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyUnitQuality {
    /// The privacy-unit column.
    pub column: String,
    /// Distinct units (data subjects) in the file.
    pub distinct_units: u64,
    /// Rows whose unit occurs on more than one row (all of those rows, counting
    /// each unit's first row too).
    pub rows_with_duplicate_unit: u64,
    /// Most rows held by one unit.
    pub max_rows_per_unit: u64,
    /// First rows that repeat a unit already seen on an earlier row.
    pub repeated_rows: Vec<u64>,
}

/// Keeps the first `limit` row numbers of a problem.
fn push_row(rows: &mut Vec<u64>, limit: usize, row: u64) {
    if rows.len() < limit {
        rows.push(row);
    }
}

/// Collects the quality report batch by batch.
pub(crate) struct QualityAccumulator {
    limit: usize,
    rows: u64,
    columns: Vec<ColumnQuality>,
    units: Option<UnitStats>,
}

struct UnitStats {
    column: usize,
    hasher: std::collections::hash_map::RandomState,
    counter: UnitCounter,
    repeated_rows: Vec<u64>,
}

impl QualityAccumulator {
    pub(crate) fn new(spec: &TableSpec, limit: usize) -> Self {
        QualityAccumulator {
            limit,
            rows: 0,
            columns: spec
                .columns
                .iter()
                .map(|c| ColumnQuality {
                    name: c.name.clone(),
                    nulls: 0,
                    null_rows: Vec::new(),
                    invalid_format: 0,
                    invalid_format_rows: Vec::new(),
                    out_of_bounds: 0,
                    out_of_bounds_rows: Vec::new(),
                    not_in_categories: 0,
                    not_in_categories_rows: Vec::new(),
                })
                .collect(),
            units: spec.privacy_unit.map(|column| UnitStats {
                column,
                // Keyed SipHash: the in-memory table is no lookup table of real IDs.
                hasher: std::collections::hash_map::RandomState::new(),
                counter: UnitCounter::new(),
                repeated_rows: Vec::new(),
            }),
        }
    }

    /// Checks one conformed batch (columns in manifest order, manifest types).
    /// Fails on a null in a non-nullable column or an empty privacy unit.
    pub(crate) fn observe(
        &mut self,
        spec: &TableSpec,
        columns: &[ArrayRef],
        at: &RowLocator,
    ) -> Result<()> {
        let limit = self.limit;
        for (index, ((col, array), q)) in spec
            .columns
            .iter()
            .zip(columns)
            .zip(&mut self.columns)
            .enumerate()
        {
            let is_unit = spec.privacy_unit == Some(index);
            if array.null_count() > 0 {
                let first = (0..array.len()).find(|&i| array.is_null(i)).unwrap_or(0);
                if is_unit {
                    return Err(Error::InvalidData(format!(
                        "column `{}`, {}: the privacy unit is missing; every row must name its data subject",
                        col.name,
                        at.describe(first)
                    )));
                }
                if !col.nullable {
                    return Err(Error::InvalidData(format!(
                        "column `{}`, {}: missing value in a column that does not allow nulls",
                        col.name,
                        at.describe(first)
                    )));
                }
                q.nulls += array.null_count() as u64;
                if q.null_rows.len() < limit {
                    for i in (first..array.len()).filter(|&i| array.is_null(i)) {
                        if q.null_rows.len() >= limit {
                            break;
                        }
                        q.null_rows.push(at.row(i));
                    }
                }
            }
            check_values(col, array, q, at, limit)?;
        }
        if let Some(units) = &mut self.units {
            units.observe(spec, &columns[units.column], at, limit)?;
        }
        self.rows += columns.first().map_or(0, |c| c.len() as u64);
        Ok(())
    }

    /// The finished report.
    pub(crate) fn finish(self, spec: &TableSpec) -> QualityReport {
        let privacy_unit = self.units.map(|u| {
            let (distinct, dup_rows, max) = u.counter.summary();
            PrivacyUnitQuality {
                column: spec.columns[u.column].name.clone(),
                distinct_units: distinct,
                rows_with_duplicate_unit: dup_rows,
                max_rows_per_unit: max,
                repeated_rows: u.repeated_rows,
            }
        });
        let passed = self
            .columns
            .iter()
            .all(|c| c.invalid_format + c.out_of_bounds + c.not_in_categories == 0);
        let warnings = warnings(spec, &self.columns, privacy_unit.as_ref());
        QualityReport {
            format: QUALITY_REPORT_FORMAT,
            rows: self.rows,
            columns: self.columns,
            privacy_unit,
            passed,
            warnings,
        }
    }
}

/// Format, bounds and category checks of one column.
fn check_values(
    col: &ColumnSpec,
    array: &ArrayRef,
    q: &mut ColumnQuality,
    at: &RowLocator,
    limit: usize,
) -> Result<()> {
    if let Some(check) = col.format {
        let valid: fn(&str) -> bool = match check {
            IdCheck::ResidentId => crate::ids::is_valid_resident_id,
            IdCheck::CreditCode => crate::ids::is_valid_credit_code,
        };
        for_each_str(array, |i, s| {
            if !valid(s) {
                q.invalid_format += 1;
                push_row(&mut q.invalid_format_rows, limit, at.row(i));
            }
        })?;
    }
    if let Some((min, max)) = col.bounds {
        let mut check = |i: usize, v: f64| {
            if !(min..=max).contains(&v) {
                q.out_of_bounds += 1;
                push_row(&mut q.out_of_bounds_rows, limit, at.row(i));
            }
        };
        match array.data_type() {
            DataType::Int64 => {
                let a = array.as_primitive::<Int64Type>();
                for i in 0..a.len() {
                    if a.is_valid(i) {
                        check(i, a.value(i) as f64);
                    }
                }
            }
            DataType::Float64 => {
                let a = array.as_primitive::<Float64Type>();
                for i in 0..a.len() {
                    if a.is_valid(i) {
                        check(i, a.value(i));
                    }
                }
            }
            other => {
                return Err(Error::Internal(format!(
                    "bounds on column `{}` of type {other}",
                    col.name
                )));
            }
        }
    }
    if let Some(categories) = &col.categories {
        let mut check = |i: usize, s: &str| {
            if !categories.contains(s) {
                q.not_in_categories += 1;
                push_row(&mut q.not_in_categories_rows, limit, at.row(i));
            }
        };
        if is_string(array.data_type()) {
            for_each_str(array, &mut check)?;
        } else {
            // Categories of a non-string column compare with the value's text form.
            let text = cast_with_options(array, &DataType::Utf8, &CastOptions::default()).map_err(
                |_| {
                    Error::Internal(format!(
                        "column `{}`: categories on a non-text column",
                        col.name
                    ))
                },
            )?;
            for_each_str(&text, &mut check)?;
        }
    }
    Ok(())
}

pub(crate) fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Calls `f(row_index, value)` for every non-null value of a string array.
pub(crate) fn for_each_str(array: &ArrayRef, mut f: impl FnMut(usize, &str)) -> Result<()> {
    match array.data_type() {
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            for i in 0..a.len() {
                if a.is_valid(i) {
                    f(i, a.value(i));
                }
            }
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            for i in 0..a.len() {
                if a.is_valid(i) {
                    f(i, a.value(i));
                }
            }
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            for i in 0..a.len() {
                if a.is_valid(i) {
                    f(i, a.value(i));
                }
            }
        }
        other => {
            return Err(Error::Internal(format!(
                "expected a string array, got {other}"
            )));
        }
    }
    Ok(())
}

impl UnitStats {
    fn observe(
        &mut self,
        spec: &TableSpec,
        array: &ArrayRef,
        at: &RowLocator,
        limit: usize,
    ) -> Result<()> {
        let name = &spec.columns[self.column].name;
        let mut record = |counter: &mut UnitCounter, i: usize, h: u64| {
            if counter.insert(h) > 1 {
                push_row(&mut self.repeated_rows, limit, at.row(i));
            }
        };
        match array.data_type() {
            DataType::Int64 => {
                let a = array.as_primitive::<Int64Type>();
                for i in 0..a.len() {
                    record(&mut self.counter, i, self.hasher.hash_one(a.value(i)));
                }
            }
            t => {
                let text;
                let array = if is_string(t) {
                    array
                } else {
                    text = cast_with_options(array, &DataType::Utf8, &CastOptions::default())
                        .map_err(|_| {
                            Error::Internal(format!("privacy unit `{name}` has no text form"))
                        })?;
                    &text
                };
                let mut empty = None;
                for_each_str(array, |i, s| {
                    if s.trim().is_empty() {
                        empty.get_or_insert(i);
                    }
                    record(&mut self.counter, i, self.hasher.hash_one(s));
                })?;
                if let Some(i) = empty {
                    return Err(Error::InvalidData(format!(
                        "column `{name}`, {}: the privacy unit is empty; every row must name its data subject",
                        at.describe(i)
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Counts rows per privacy unit, keyed by a 64-bit keyed hash of the unit's value.
///
/// Open addressing with linear probing over two parallel arrays (12 bytes a slot,
/// at most 3/4 full): 10M distinct units take 16M slots, about 200 MB, plus the
/// half-size table while growing. Two distinct units collide with probability
/// about n²/2⁶⁵ for n units (≈ 3·10⁻⁶ for 10M), and a collision only merges two
/// units' counts in this report.
pub(crate) struct UnitCounter {
    keys: Vec<u64>,
    counts: Vec<u32>,
    len: usize,
}

impl UnitCounter {
    const INITIAL_SLOTS: usize = 1 << 10;

    pub(crate) fn new() -> Self {
        UnitCounter {
            keys: vec![0; Self::INITIAL_SLOTS],
            counts: vec![0; Self::INITIAL_SLOTS],
            len: 0,
        }
    }

    /// Counts one more row of the unit with hash `h`; returns its new row count.
    pub(crate) fn insert(&mut self, h: u64) -> u32 {
        // 0 marks an empty slot; folding 0 into 1 adds a negligible collision.
        let h = h.max(1);
        let mask = self.keys.len() - 1;
        let mut i = (h as usize) & mask;
        loop {
            match self.keys[i] {
                0 => {
                    self.keys[i] = h;
                    self.counts[i] = 1;
                    self.len += 1;
                    if self.len * 4 > self.keys.len() * 3 {
                        self.grow();
                    }
                    return 1;
                }
                k if k == h => {
                    self.counts[i] = self.counts[i].saturating_add(1);
                    return self.counts[i];
                }
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn grow(&mut self) {
        let slots = self.keys.len() * 2;
        let keys = std::mem::replace(&mut self.keys, vec![0; slots]);
        let counts = std::mem::replace(&mut self.counts, vec![0; slots]);
        let mask = slots - 1;
        for (k, c) in keys.into_iter().zip(counts).filter(|(k, _)| *k != 0) {
            let mut i = (k as usize) & mask;
            while self.keys[i] != 0 {
                i = (i + 1) & mask;
            }
            self.keys[i] = k;
            self.counts[i] = c;
        }
    }

    /// (distinct units, rows of units with more than one row, most rows of one unit).
    pub(crate) fn summary(&self) -> (u64, u64, u64) {
        let mut dup_rows = 0u64;
        let mut max = 0u32;
        for &c in &self.counts {
            if c > 1 {
                dup_rows += u64::from(c);
            }
            max = max.max(c);
        }
        (self.len as u64, dup_rows, u64::from(max))
    }
}

/// The report's findings as sentences (counts, column names, rows; no values).
fn warnings(
    spec: &TableSpec,
    columns: &[ColumnQuality],
    unit: Option<&PrivacyUnitQuality>,
) -> Vec<String> {
    let mut out = Vec::new();
    let first = |rows: &[u64]| {
        rows.first()
            .map(|r| format!(" (first at row {r})"))
            .unwrap_or_default()
    };
    for (c, q) in spec.columns.iter().zip(columns) {
        if q.nulls > 0 {
            out.push(format!(
                "column `{}` has {} missing {}{}",
                q.name,
                q.nulls,
                plural(q.nulls, "value", "values"),
                first(&q.null_rows)
            ));
        }
        if q.invalid_format > 0 {
            let check = match c.format {
                Some(IdCheck::ResidentId) => "the resident ID number (身份证号) check",
                Some(IdCheck::CreditCode) => {
                    "the unified social credit code (统一社会信用代码) check"
                }
                None => "the identifier check",
            };
            out.push(format!(
                "column `{}` has {} {} failing {check}{}",
                q.name,
                q.invalid_format,
                plural(q.invalid_format, "value", "values"),
                first(&q.invalid_format_rows)
            ));
        }
        if q.out_of_bounds > 0 {
            let (min, max) = c.bounds.unwrap_or((f64::NAN, f64::NAN));
            out.push(format!(
                "column `{}` has {} {} outside the bounds [{min}, {max}]{}",
                q.name,
                q.out_of_bounds,
                plural(q.out_of_bounds, "value", "values"),
                first(&q.out_of_bounds_rows)
            ));
        }
        if q.not_in_categories > 0 {
            out.push(format!(
                "column `{}` has {} {} outside its categories{}",
                q.name,
                q.not_in_categories,
                plural(q.not_in_categories, "value", "values"),
                first(&q.not_in_categories_rows)
            ));
        }
    }
    if let Some(u) = unit
        && u.rows_with_duplicate_unit > 0
    {
        out.push(format!(
            "privacy unit `{}`: {} rows share their unit with another row, at most {} rows per unit{}",
            u.column,
            u.rows_with_duplicate_unit,
            u.max_rows_per_unit,
            u.repeated_rows
                .first()
                .map(|r| format!(" (first repeat at row {r})"))
                .unwrap_or_default()
        ));
    }
    out
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::UnitCounter;

    #[test]
    fn unit_counter_counts_rows_per_unit_across_growth() {
        let mut c = UnitCounter::new();
        // 5000 units (forces several doublings); unit k appears (k % 3) + 1 times.
        for round in 0..3u64 {
            for k in 0..5000u64 {
                if k % 3 >= round {
                    let h = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    c.insert(h);
                }
            }
        }
        let (distinct, dup_rows, max) = c.summary();
        assert_eq!(distinct, 5000);
        let expected_dup: u64 = (0..5000u64).map(|k| k % 3 + 1).filter(|&n| n > 1).sum();
        assert_eq!(dup_rows, expected_dup);
        assert_eq!(max, 3);
    }

    #[test]
    fn unit_counter_treats_hash_zero_as_a_key() {
        let mut c = UnitCounter::new();
        assert_eq!(c.insert(0), 1);
        assert_eq!(c.insert(0), 2);
        assert_eq!(c.summary(), (1, 2, 2));
    }
}
