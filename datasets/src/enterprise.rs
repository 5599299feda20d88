//! `enterprise_registry`: Shenzhen's enterprise registration records (unconditional).

use chrono::{Datelike, NaiveDate};

use crate::codes::{credit_code, org_body};
use crate::fmt::{push_cents, push_date, to_cents};
use crate::rng::{Rng, Weighted};
use crate::tables::{DISTRICTS, INDUSTRIES, STATUSES, TRADE_NAME_CHARS};
use crate::{AS_OF, chunk_bounds};

/// Stream tag of this dataset (part of the output format).
const TAG: u64 = 1;

pub const COLUMNS: &[&str] = &[
    "credit_code",
    "name",
    "district",
    "industry_section",
    "industry_name",
    "registered_capital",
    "established_date",
    "status",
];

/// "Round" registered capitals (万元) that founders usually pick.
const ROUND_CAPITALS: &[u64] = &[
    1, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000, 2000, 3000, 5000, 10000, 20000, 50000,
    100000,
];

/// Largest registered capital written, 万元 (bounded in the manifest).
const MAX_CAPITAL_WAN: f64 = 5_000_000.0;

/// What the person generator needs to know about an enterprise.
#[derive(Debug, Clone, Copy)]
pub struct EnterpriseRef {
    pub code: [u8; 18],
    pub district: u8,
    /// Relative number of employees; 0 for enterprises no longer operating.
    pub staff_weight: u64,
}

/// Tables built once per run.
pub struct Tables {
    districts: Weighted,
    industries: Weighted,
    /// Establishment year, index 0 = 1980.
    years: Weighted,
}

impl Tables {
    pub fn new() -> Tables {
        let last = AS_OF.year();
        Tables {
            districts: Weighted::new(DISTRICTS.iter().map(|d| d.enterprises)),
            industries: Weighted::new(INDUSTRIES.iter().map(|i| i.weight)),
            // Registrations grew about 11% a year since the SEZ opened in 1980;
            // the current year counts only the months up to AS_OF.
            years: Weighted::new((1980..=last).map(|y| {
                let w = (1000.0 * crate::rng::exp(0.11 * f64::from(y - 1980))) as u64;
                if y == last {
                    w * u64::from(AS_OF.month()) / 12
                } else {
                    w
                }
            })),
        }
    }
}

/// Generates enterprises `chunk`'s rows: CSV bytes and the per-enterprise facts.
pub fn chunk(seed: u64, chunk: u64, total: u64, t: &Tables) -> (Vec<u8>, Vec<EnterpriseRef>) {
    let (start, end) = chunk_bounds(chunk, total);
    let mut rng = Rng::stream(seed, TAG, chunk);
    let mut buf = Vec::with_capacity(((end - start) * 150) as usize);
    let mut refs = Vec::with_capacity((end - start) as usize);
    for index in start..end {
        let district = t.districts.sample(&mut rng);
        let industry = &INDUSTRIES[t.industries.sample(&mut rng)];
        let year = 1980 + t.years.sample(&mut rng) as i32;
        let established = random_day_in_year(&mut rng, year);

        let region = if rng.chance(0.85) {
            440300
        } else {
            DISTRICTS[district].code
        };
        let code = credit_code(region, org_body(seed, index, year >= 2015));

        let capital_cents = capital(&mut rng, industry.section);
        let age = AS_OF.year() - year;
        let status = status(&mut rng, age);
        let active = status <= 1;

        buf.extend_from_slice(&code);
        buf.push(b',');
        push_name(&mut buf, &mut rng, industry, capital_cents);
        buf.push(b',');
        buf.extend_from_slice(DISTRICTS[district].name.as_bytes());
        buf.push(b',');
        buf.extend_from_slice(industry.section.as_bytes());
        buf.push(b',');
        buf.extend_from_slice(industry.name.as_bytes());
        buf.push(b',');
        push_cents(&mut buf, capital_cents);
        buf.push(b',');
        push_date(&mut buf, established);
        buf.push(b',');
        buf.extend_from_slice(STATUSES[status].as_bytes());
        buf.push(b'\n');

        let staff_weight = if active {
            // Bigger firms employ more: weight grows with the square root of capital.
            let root = (capital_cents as f64 / 100.0).sqrt();
            industry.staff_factor * ((root * 10.0) as u64 + 10)
        } else {
            0
        };
        refs.push(EnterpriseRef {
            code,
            district: district as u8,
            staff_weight,
        });
    }
    (buf, refs)
}

/// A uniformly random day of `year`, not after [`AS_OF`].
pub fn random_day_in_year(rng: &mut Rng, year: i32) -> NaiveDate {
    let first = NaiveDate::from_ymd_opt(year, 1, 1).expect("valid year");
    let last = if year == AS_OF.year() {
        AS_OF
    } else {
        NaiveDate::from_ymd_opt(year, 12, 31).expect("valid year")
    };
    let span = (last - first).num_days() as u64;
    first + chrono::Days::new(rng.below(span + 1))
}

/// Registered capital in cents of 万元: log-normal body, Pareto tail, round numbers.
fn capital(rng: &mut Rng, section: &str) -> u64 {
    let scale = match section {
        "C" | "D" | "E" | "K" => 3.0,
        "J" => 8.0,
        "B" => 5.0,
        _ => 1.0,
    };
    let mut wan = if rng.chance(0.03) {
        rng.pareto(2_000.0, 1.1)
    } else {
        rng.log_normal(100.0 * scale, 1.3)
    };
    wan = wan.clamp(1.0, MAX_CAPITAL_WAN);
    if rng.chance(0.7) {
        // Founders pick round figures: snap to the nearest one below.
        let i = ROUND_CAPITALS.partition_point(|&r| (r as f64) <= wan);
        return ROUND_CAPITALS[i.saturating_sub(1)] * 100;
    }
    to_cents(wan)
}

/// Status index into [`STATUSES`]; older enterprises are more often closed.
fn status(rng: &mut Rng, age: i32) -> usize {
    let age = f64::from(age.max(0));
    let cancelled = (0.03 + 0.015 * age).min(0.5);
    let revoked = if age >= 2.0 {
        (0.004 * age).min(0.15)
    } else {
        0.0
    };
    let moved = 0.015;
    let u = rng.f64();
    if u < cancelled {
        2
    } else if u < cancelled + revoked {
        3
    } else if u < cancelled + revoked + moved {
        4
    } else if rng.chance(0.15) {
        1
    } else {
        0
    }
}

/// `深圳市<字号><行业词>有限公司`, occasionally without 市 or as a 股份有限公司.
fn push_name(
    buf: &mut Vec<u8>,
    rng: &mut Rng,
    industry: &crate::tables::Industry,
    capital_cents: u64,
) {
    buf.extend_from_slice(
        if rng.chance(0.85) {
            "深圳市"
        } else {
            "深圳"
        }
        .as_bytes(),
    );
    let chars = if rng.chance(0.8) { 2 } else { 3 };
    let mut prev = usize::MAX;
    for _ in 0..chars {
        let mut c = rng.below(TRADE_NAME_CHARS.len() as u64) as usize;
        if c == prev {
            c = (c + 1) % TRADE_NAME_CHARS.len();
        }
        prev = c;
        buf.extend_from_slice(TRADE_NAME_CHARS[c].as_bytes());
    }
    let word = industry.name_words[rng.below(industry.name_words.len() as u64) as usize];
    buf.extend_from_slice(word.as_bytes());
    let joint_stock = capital_cents >= 500_000 && rng.chance(0.2);
    buf.extend_from_slice(
        if joint_stock {
            "股份有限公司"
        } else {
            "有限公司"
        }
        .as_bytes(),
    );
}
