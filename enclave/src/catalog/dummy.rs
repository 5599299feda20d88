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

/// A 身份证号 with valid check character, and its holder's birth date and
/// sex (the 17th digit: odd for men), so other columns can agree with it.
fn resident_id(r: &mut Rng) -> (String, NaiveDate, bool) {
    let area = AREAS[r.below(AREAS.len() as u64) as usize];
    let start = NaiveDate::from_ymd_opt(1940, 1, 1).expect("valid date");
    let born = start + chrono::Duration::days(r.below(25_000) as i64);
    let sequence = r.below(1000);
    let first17 = format!(
        "{area}{:04}{:02}{:02}{sequence:03}",
        born.year(),
        born.month(),
        born.day(),
    );
    let check = resident_id_check_char(&first17).expect("17 digits");
    (format!("{first17}{check}"), born, sequence % 2 == 1)
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

/// What a dummy row's columns agree on: the person of its first 身份证号
/// column (a birth-date column gives their birth date, a 男/女 column their
/// sex), and, for a code list and its names (`icd10_chapter` and
/// `icd10_chapter_name`, `industry_section` and `industry_name`), one pick.
struct Rows {
    person: Vec<Option<(NaiveDate, bool)>>,
    picks: std::collections::HashMap<String, Vec<Option<usize>>>,
}

impl Rows {
    /// The column whose picks `c` follows: `<base>_name` follows a column
    /// named `<base>…` with as many categories.
    fn leader<'m>(manifest: &'m Manifest, c: &Column) -> Option<&'m Column> {
        let base = c.name.strip_suffix("_name")?;
        let n = c.categories.as_ref()?.len();
        manifest.columns.iter().find(|l| {
            l.name != c.name
                && l.name.starts_with(base)
                && l.categories.as_ref().is_some_and(|k| k.len() == n)
        })
    }

    fn is_birth_date(c: &Column) -> bool {
        c.data_type == ColumnType::Date && c.name.contains("birth")
    }

    fn is_sex(c: &Column) -> bool {
        c.categories.as_ref().is_some_and(|k| {
            k.len() == 2 && k.iter().any(|v| v == "男") && k.iter().any(|v| v == "女")
        })
    }
}

fn string_value(
    c: &Column,
    r: &mut Rng,
    row: usize,
    rows: &mut Rows,
    manifest: &Manifest,
) -> String {
    if let Some(cats) = c.categories.as_ref().filter(|c| !c.is_empty()) {
        if Rows::is_sex(c)
            && let Some(Some((_, male))) = rows.person.get(row)
        {
            return if *male { "男" } else { "女" }.to_string();
        }
        let key = Rows::leader(manifest, c).map_or(c.name.as_str(), |l| l.name.as_str());
        let picks = rows.picks.entry(key.to_string()).or_default();
        if picks.len() <= row {
            picks.resize(row + 1, None);
        }
        let pick = *picks[row].get_or_insert_with(|| r.below(cats.len() as u64) as usize);
        return cats[pick.min(cats.len() - 1)].clone();
    }
    match c.format {
        Some(IdFormat::ResidentId) => {
            let (id, born, male) = resident_id(r);
            // The first 身份证号 column decides the row's person.
            if rows.person.len() <= row {
                rows.person.resize(row, None);
                rows.person.push(Some((born, male)));
            }
            id
        }
        Some(IdFormat::CreditCode) => credit_code(r),
        None => format!("dummy-{}-{row}", c.name),
    }
}

fn column(c: &Column, n: usize, r: &mut Rng, rows: &mut Rows, manifest: &Manifest) -> ArrayRef {
    // One null in twenty where nulls are allowed, so code paths for them get exercised.
    let null = |r: &mut Rng| c.nullable && r.below(20) == 0;
    let (lo, hi) = c.bounds.map_or((0.0, 1000.0), |b| (b.min, b.max));
    match c.data_type {
        ColumnType::String => {
            let mut b = StringBuilder::new();
            for row in 0..n {
                if null(r) {
                    b.append_null();
                } else {
                    b.append_value(string_value(c, r, row, rows, manifest));
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Int64 => {
            let (lo, hi) = (lo.ceil() as i64, hi.floor() as i64);
            let span = (hi.saturating_sub(lo)).max(0) as u64 + 1;
            let mut b = Int64Builder::new();
            for _ in 0..n {
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
            for _ in 0..n {
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
            for _ in 0..n {
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
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
            for row in 0..n {
                if null(r) {
                    b.append_null();
                } else if Rows::is_birth_date(c)
                    && let Some(Some((born, _))) = rows.person.get(row)
                {
                    b.append_value((*born - epoch).num_days() as i32);
                } else {
                    b.append_value(10_957 + r.below(9_497) as i32);
                }
            }
            Arc::new(b.finish())
        }
        ColumnType::Timestamp => {
            let mut b = TimestampMicrosecondBuilder::new();
            for _ in 0..n {
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
    let mut facts = Rows {
        person: Vec::new(),
        picks: Default::default(),
    };
    // The 身份证号 columns first, so dates and sexes can follow them.
    let mut order: Vec<usize> = (0..manifest.columns.len()).collect();
    order.sort_by_key(|&i| manifest.columns[i].format != Some(IdFormat::ResidentId));
    let mut arrays: Vec<Option<ArrayRef>> = vec![None; manifest.columns.len()];
    for i in order {
        let c = &manifest.columns[i];
        arrays[i] = Some(column(c, rows, &mut r, &mut facts, manifest));
    }
    let arrays: Vec<ArrayRef> = arrays.into_iter().flatten().collect();
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
            assert!(is_valid_resident_id(&resident_id(&mut r).0));
            assert!(is_valid_credit_code(&credit_code(&mut r)));
        }
    }

    /// Dummy rows rehearse real queries: a birth date and a sex agree with the
    /// row's 身份证号, a code agrees with its name, a district is a district.
    #[test]
    fn dummy_rows_agree_with_themselves() {
        use datafusion::arrow::array::{Array, AsArray};
        use datafusion::arrow::datatypes::Date32Type;
        let text = |id: &str| {
            std::fs::read_to_string(format!(
                "{}/../datasets/manifests/{id}.toml",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        };
        let si = Manifest::parse(&text("social_insurance")).unwrap();
        let b = dummy_batch(&si, 500, 7);
        let col = |name: &str| b.column(b.schema().index_of(name).unwrap()).clone();
        let (ids, sexes, births, districts) = (
            col("person_id"),
            col("sex"),
            col("birth_date"),
            col("district"),
        );
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let mut seen = std::collections::HashSet::new();
        for row in 0..b.num_rows() {
            let id = ids.as_string::<i32>().value(row);
            if !sexes.is_null(row) {
                let male = (id.as_bytes()[16] - b'0') % 2 == 1;
                assert_eq!(
                    sexes.as_string::<i32>().value(row),
                    if male { "男" } else { "女" }
                );
            }
            if !births.is_null(row) {
                let days = births.as_primitive::<Date32Type>().value(row);
                let born = epoch + chrono::Duration::days(i64::from(days));
                assert_eq!(&id[6..14], born.format("%Y%m%d").to_string());
            }
            if !districts.is_null(row) {
                seen.insert(districts.as_string::<i32>().value(row).to_string());
            }
        }
        // A handful of groups, not one per row.
        assert!(seen.len() <= 10 && seen.contains("南山区"), "{seen:?}");

        let mc = Manifest::parse(&text("medical_claims")).unwrap();
        let b = dummy_batch(&mc, 500, 7);
        let col = |name: &str| b.column(b.schema().index_of(name).unwrap()).clone();
        let (codes, names) = (col("icd10_chapter"), col("icd10_chapter_name"));
        let cats = |name: &str| {
            mc.columns
                .iter()
                .find(|c| c.name == name)
                .unwrap()
                .categories
                .clone()
                .unwrap()
        };
        let (code_list, name_list) = (cats("icd10_chapter"), cats("icd10_chapter_name"));
        for row in 0..b.num_rows() {
            if codes.is_null(row) || names.is_null(row) {
                continue;
            }
            let code = codes.as_string::<i32>().value(row);
            let i = code_list.iter().position(|c| c == code).unwrap();
            assert_eq!(names.as_string::<i32>().value(row), name_list[i]);
        }
    }
}
