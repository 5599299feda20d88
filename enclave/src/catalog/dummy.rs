//! Dummy data (as OpenSAFELY does): a schema-conformant synthetic sample of a
//! dataset, generated from its manifest alone — types, nullability, bounds,
//! categories and identifier formats (with valid check characters) — without
//! reading a single real row. Researchers download it to develop queries and
//! models outside the domain; `anyu model test --dummy` runs a model on it.
//!
//! The values carry no information about the real data: every column is drawn
//! independently and uniformly, so no relation, distribution or rare value of
//! the real rows can leak through it. Deterministic per (manifest, rows, seed).

use std::sync::Arc;

use chrono::{Datelike, NaiveDate};
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{Field, Schema};

use super::{Column, ColumnType, IdFormat, Manifest};
use crate::ids::{credit_code_check_char, organization_code_check_char, resident_id_check_char};

/// Largest dummy sample one call generates.
pub const MAX_DUMMY_ROWS: usize = 100_000;

/// splitmix64: tiny and deterministic. Dummy data needs no secrecy.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Shenzhen district codes: dummy identifiers look local but are random.
const AREAS: &[&str] = &[
    "440303", "440304", "440305", "440306", "440307", "440308", "440309", "440310", "440311",
];

fn resident_id(r: &mut Rng) -> String {
    let area = AREAS[r.below(AREAS.len() as u64) as usize];
    let start = NaiveDate::from_ymd_opt(1940, 1, 1).expect("valid date");
    let born = start + chrono::Duration::days(r.below(25_000) as i64);
    let first17 = format!(
        "{area}{:04}{:02}{:02}{:03}",
        born.year(),
        born.month(),
        born.day(),
        r.below(1000)
    );
    let check = resident_id_check_char(&first17).expect("17 digits");
    format!("{first17}{check}")
}

fn credit_code(r: &mut Rng) -> String {
    let body: String = (0..8)
        .map(|_| char::from(b'0' + r.below(10) as u8))
        .collect();
    let org_check = organization_code_check_char(&body).expect("8 digits");
    let first17 = format!("91440300{body}{org_check}");
    let check = credit_code_check_char(&first17).expect("code alphabet");
    format!("{first17}{check}")
}

fn string_value(c: &Column, r: &mut Rng, row: usize) -> String {
    if let Some(cats) = c.categories.as_ref().filter(|c| !c.is_empty()) {
        return cats[r.below(cats.len() as u64) as usize].clone();
    }
    match c.format {
        Some(IdFormat::ResidentId) => resident_id(r),
        Some(IdFormat::CreditCode) => credit_code(r),
        None => format!("dummy-{}-{row}", c.name),
    }
}

fn column(c: &Column, rows: usize, r: &mut Rng) -> ArrayRef {
    // One null in twenty where nulls are allowed, so code paths for them get exercised.
    let null = |r: &mut Rng| c.nullable && r.below(20) == 0;
    let (lo, hi) = c.bounds.map_or((0.0, 1000.0), |b| (b.min, b.max));
    match c.data_type {
        ColumnType::String => {
            let mut b = StringBuilder::new();
            for row in 0..rows {
                if null(r) {
                    b.append_null();
                } else {
                    b.append_value(string_value(c, r, row));
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Int64 => {
            let (lo, hi) = (lo.ceil() as i64, hi.floor() as i64);
            let span = (hi.saturating_sub(lo)).max(0) as u64 + 1;
            let mut b = Int64Builder::new();
            for _ in 0..rows {
                if null(r) {
                    b.append_null();
                } else {
                    b.append_value(lo.saturating_add(r.below(span) as i64));
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Float64 => {
            let mut b = Float64Builder::new();
            for _ in 0..rows {
                if null(r) {
                    b.append_null();
                } else {
                    // Two decimals, like money; never above the bound.
                    let v = ((lo + r.unit() * (hi - lo)) * 100.0).floor() / 100.0;
                    b.append_value(v.clamp(lo, hi));
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Bool => {
            let mut b = BooleanBuilder::new();
            for _ in 0..rows {
                if null(r) {
                    b.append_null();
                } else {
                    b.append_value(r.below(2) == 1);
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Date => {
            // 2000-01-01 .. 2025-12-31, as days since the epoch.
            let mut b = Date32Builder::new();
            for _ in 0..rows {
                if null(r) {
                    b.append_null();
                } else {
                    b.append_value(10_957 + r.below(9_497) as i32);
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Timestamp => {
            let mut b = TimestampMicrosecondBuilder::new();
            for _ in 0..rows {
                if null(r) {
                    b.append_null();
                } else {
                    let secs = 946_684_800 + r.below(820_540_800) as i64;
                    b.append_value(secs * 1_000_000);
                }
            }
            Arc::new(b.finish())
        }
    }
}

/// `rows` synthetic rows (at most [`MAX_DUMMY_ROWS`]) shaped like the
/// dataset of `manifest`, from the manifest only.
pub fn dummy_batch(manifest: &Manifest, rows: usize, seed: u64) -> RecordBatch {
    let rows = rows.min(MAX_DUMMY_ROWS);
    // Seeded by the dataset id too, so two datasets never share samples.
    let mut seed = seed;
    for b in manifest.dataset.id.bytes() {
        seed = seed.rotate_left(5) ^ u64::from(b);
    }
    let mut r = Rng(seed);
    let fields: Vec<Field> = manifest
        .columns
        .iter()
        .map(|c| Field::new(&c.name, c.data_type.arrow_type(), c.nullable))
        .collect();
    let arrays: Vec<ArrayRef> = manifest
        .columns
        .iter()
        .map(|c| column(c, rows, &mut r))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .expect("dummy columns match the manifest's schema")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{is_valid_credit_code, is_valid_resident_id};

    #[test]
    fn generated_identifiers_have_valid_check_characters() {
        let mut r = Rng(7);
        for _ in 0..1000 {
            assert!(is_valid_resident_id(&resident_id(&mut r)));
            assert!(is_valid_credit_code(&credit_code(&mut r)));
        }
    }
}
