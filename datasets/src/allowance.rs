//! `min_living_allowance`: households receiving Shenzhen's minimum living
//! allowance (最低生活保障, not open).

use chrono::{Datelike, NaiveDate};

use crate::enterprise::random_day_in_year;
use crate::fmt::{push_cents, push_date, push_padded, push_u64};
use crate::people::{IdSet, Identity, Origins, birth_for_age, make_unique};
use crate::rng::{Rng, Weighted};
use crate::tables::DISTRICTS;
use crate::{AS_OF, chunk_bounds};

const TAG: u64 = 4;

pub const COLUMNS: &[&str] = &[
    "household_id",
    "head_person_id",
    "district",
    "household_size",
    "monthly_allowance",
    "start_date",
];

/// Shenzhen's minimum living standard, CNY per person per month, in cents.
pub const STANDARD_CENTS: u64 = 136_500;
/// First year of allowance start dates.
const FIRST_YEAR: i32 = 2012;

/// Tables built once per run.
pub struct Tables {
    /// Recipients must hold Shenzhen hukou, so more heads were born here.
    origins: Origins,
    districts: Weighted,
    /// Head age 30..=90: older heads are more common.
    ages: Weighted,
    sizes: Weighted,
    years: Weighted,
}

impl Tables {
    pub fn new() -> Tables {
        Tables {
            origins: Origins::new(1200),
            districts: Weighted::new(DISTRICTS.iter().map(|d| d.population)),
            ages: Weighted::new((30..=90).map(|a: u64| match a {
                30..=44 => 10,
                45..=59 => 18,
                60..=74 => 22,
                _ => 12,
            })),
            sizes: Weighted::new([35, 25, 20, 12, 5, 3]),
            // Households leave the programme over time, so recent starts dominate.
            years: Weighted::new((FIRST_YEAR..=AS_OF.year()).map(|y| {
                let w = (100.0 * crate::rng::exp(0.12 * f64::from(y - FIRST_YEAR))) as u64;
                if y == AS_OF.year() {
                    w * u64::from(AS_OF.month()) / 12
                } else {
                    w
                }
            })),
        }
    }
}

/// A household before its head's ID is made unique.
pub struct Household {
    head: Identity,
    district: u8,
    size: u64,
    allowance_cents: u64,
    start: NaiveDate,
}

/// Draws the households of `chunk`.
pub fn households(seed: u64, chunk: u64, total: u64, t: &Tables) -> Vec<Household> {
    let (start, end) = chunk_bounds(chunk, total);
    let mut rng = Rng::stream(seed, TAG, chunk);
    (start..end)
        .map(|_| {
            let district = t.districts.sample(&mut rng);
            let age = 30 + t.ages.sample(&mut rng) as i32;
            let male = rng.chance(0.5);
            let birth = birth_for_age(&mut rng, age);
            let head = t.origins.identity(&mut rng, district, birth, male);
            let size = 1 + t.sizes.sample(&mut rng) as u64;
            let full = STANDARD_CENTS * size;
            // Partial (差额) allowance tops household income up to the standard.
            let allowance_cents = if rng.chance(0.45) {
                (full as f64 * (0.15 + 0.8 * rng.f64())).round() as u64
            } else {
                full
            };
            let year = FIRST_YEAR + t.years.sample(&mut rng) as i32;
            let start = random_day_in_year(&mut rng, year);
            Household {
                head,
                district: district as u8,
                size,
                allowance_cents,
                start,
            }
        })
        .collect()
}

/// Makes head IDs unique against `seen` (in order) and formats the rows.
pub fn format(chunk: u64, total: u64, households: &mut [Household], seen: &mut IdSet) -> Vec<u8> {
    let (start, _) = chunk_bounds(chunk, total);
    let mut buf = Vec::with_capacity(households.len() * 80);
    for (i, h) in households.iter_mut().enumerate() {
        make_unique(seen, &mut h.head);
        let district = &DISTRICTS[usize::from(h.district)];
        // Household number: the district's division code and a running number.
        push_u64(&mut buf, u64::from(district.code));
        push_padded(&mut buf, start + i as u64 + 1, 8);
        buf.push(b',');
        buf.extend_from_slice(&h.head.id());
        buf.push(b',');
        buf.extend_from_slice(district.name.as_bytes());
        buf.push(b',');
        push_u64(&mut buf, h.size);
        buf.push(b',');
        push_cents(&mut buf, h.allowance_cents);
        buf.push(b',');
        push_date(&mut buf, h.start);
        buf.push(b'\n');
    }
    buf
}
