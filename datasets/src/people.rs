//! Persons: `social_insurance` (one row per insured person) and their
//! `medical_claims`, plus the birth-place and name models shared with
//! `min_living_allowance`.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use chrono::{Datelike, NaiveDate};

use crate::codes::resident_id;
use crate::enterprise::EnterpriseRef;
use crate::fmt::{push_cents, push_date, push_padded, to_cents};
use crate::rng::{Rng, Weighted, mix64};
use crate::tables::{
    CH_EYE, CH_MENTAL, CH_NEOPLASMS, CH_PREGNANCY, CHAPTERS, DISTRICTS, GIVEN_FEMALE, GIVEN_MALE,
    GIVEN_NEUTRAL, H_CANCER, H_EYE, H_KANGNING, H_MATERNAL, HOSPITALS, LOCAL_BIRTH_WEIGHT,
    PROVINCES, SURNAMES_GUANGDONG, SURNAMES_NATIONAL, district_id_code,
};
use crate::{AS_OF, chunk_bounds};

const TAG_PERSONS: u64 = 2;
const TAG_CLAIMS: u64 = 3;

pub const SOCIAL_COLUMNS: &[&str] = &[
    "person_id",
    "name",
    "sex",
    "birth_date",
    "district",
    "employer_credit_code",
    "contribution_base",
    "months_contributed",
];

pub const CLAIM_COLUMNS: &[&str] = &[
    "claim_id",
    "person_id",
    "hospital",
    "visit_type",
    "icd10_chapter",
    "icd10_chapter_name",
    "claim_date",
    "amount",
];

/// Shenzhen's contribution-base floor and cap (CNY per month), in cents.
pub const BASE_FLOOR_CENTS: u64 = 236_000;
pub const BASE_CAP_CENTS: u64 = 3_400_000;
/// Claims are dated from this day to [`AS_OF`].
pub const FIRST_CLAIM_DATE: NaiveDate = NaiveDate::from_ymd_opt(2024, 1, 1).expect("valid");
/// Largest claim amount written, CNY (bounded in the manifest).
const MAX_CLAIM_CENTS: u64 = 300_000_000;
/// At most this many claims per person (the claim id has two digits for it).
const MAX_CLAIMS: u64 = 99;

/// Identity and name of a generated person; the ID is rendered from
/// `(region, birth, seq)` after de-duplication.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub region: u32,
    pub birth: NaiveDate,
    pub seq: u16,
    pub male: bool,
    pub surname: &'static str,
    pub given: [&'static str; 2],
}

impl Identity {
    pub fn id(&self) -> [u8; 18] {
        resident_id(self.region, self.birth, self.seq)
    }

    fn key(&self) -> u64 {
        let days =
            (self.birth - NaiveDate::from_ymd_opt(1800, 1, 1).expect("valid")).num_days() as u64;
        (u64::from(self.region) << 27) | (days << 10) | u64::from(self.seq)
    }

    pub fn push_name(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(self.surname.as_bytes());
        for g in self.given {
            buf.extend_from_slice(g.as_bytes());
        }
    }
}

/// Hasher for already well-distributed `u64` keys (one multiply-xorshift round).
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix64(self.0 ^ u64::from(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = mix64(v);
    }
}

/// Every resident ID issued so far in this run, so that no two rows share one.
pub type IdSet = HashSet<u64, BuildHasherDefault<KeyHasher>>;

/// Makes `p`'s ID unique: real IDs differ in their 3-digit sequence number
/// within one region and birth date, so a clash moves to the next free
/// sequence number of the same parity (same sex), then to the previous day.
/// Deterministic because chunks are de-duplicated in chunk order.
pub fn make_unique(seen: &mut IdSet, p: &mut Identity) {
    loop {
        for _ in 0..500 {
            if seen.insert(p.key()) {
                return;
            }
            p.seq = (p.seq + 2) % 1000;
        }
        p.birth = p.birth.pred_opt().expect("date in range");
    }
}

/// Birth-place and name models.
pub struct Origins {
    /// Index 0 = Shenzhen-born, `i + 1` = `PROVINCES[i]`.
    origins: Weighted,
    surnames_gd: Weighted,
    surnames_cn: Weighted,
}

impl Origins {
    pub fn new(local_weight: u64) -> Origins {
        Origins {
            origins: Weighted::new(
                std::iter::once(local_weight).chain(PROVINCES.iter().map(|p| p.weight)),
            ),
            surnames_gd: Weighted::new(SURNAMES_GUANGDONG.iter().map(|s| s.1)),
            surnames_cn: Weighted::new(SURNAMES_NATIONAL.iter().map(|s| s.1)),
        }
    }

    /// A person born on `birth` who lives in district `district`: birth-place
    /// region code, random sequence number of the right parity, and a name
    /// whose surname follows the birth province.
    pub fn identity(
        &self,
        rng: &mut Rng,
        district: usize,
        birth: NaiveDate,
        male: bool,
    ) -> Identity {
        let origin = self.origins.sample(rng);
        let (region, guangdong) = if origin == 0 {
            (district_id_code(&DISTRICTS[district], birth.year()), true)
        } else {
            let p = &PROVINCES[origin - 1];
            (
                p.counties[rng.below(p.counties.len() as u64) as usize],
                p.name == "广东",
            )
        };
        let seq = (rng.below(500) * 2) as u16 + u16::from(male);
        let surname = if guangdong && rng.chance(0.85) {
            SURNAMES_GUANGDONG[self.surnames_gd.sample(rng)].0
        } else {
            SURNAMES_NATIONAL[self.surnames_cn.sample(rng)].0
        };
        let pick =
            |rng: &mut Rng, pool: &[&'static str]| pool[rng.below(pool.len() as u64) as usize];
        let own = if male { GIVEN_MALE } else { GIVEN_FEMALE };
        // Single-character given names were common before the 1980s.
        let single = rng.chance(if birth.year() < 1980 { 0.35 } else { 0.15 });
        let first = if rng.chance(0.25) {
            pick(rng, GIVEN_NEUTRAL)
        } else {
            pick(rng, own)
        };
        let given = if single {
            [first, ""]
        } else {
            [first, pick(rng, own)]
        };
        Identity {
            region,
            birth,
            seq,
            male,
            surname,
            given,
        }
    }
}

/// A birth date giving age `age` (completed years) on [`AS_OF`].
pub fn birth_for_age(rng: &mut Rng, age: i32) -> NaiveDate {
    let latest = NaiveDate::from_ymd_opt(AS_OF.year() - age, AS_OF.month(), AS_OF.day())
        .expect("not Feb 29");
    latest - chrono::Days::new(rng.below(365))
}

/// Completed years between `birth` and [`AS_OF`].
pub fn age_on_as_of(birth: NaiveDate) -> i32 {
    AS_OF.years_since(birth).map_or(0, |y| y as i32)
}

/// Employers with their hiring weights, overall and per district.
pub struct Employers {
    pub codes: Vec<[u8; 18]>,
    all: (Weighted, Vec<u32>),
    by_district: Vec<Option<(Weighted, Vec<u32>)>>,
}

impl Employers {
    pub fn new(refs: &[EnterpriseRef]) -> Employers {
        let table = |filter: &dyn Fn(&EnterpriseRef) -> bool| {
            let idx: Vec<u32> = (0..refs.len() as u32)
                .filter(|&i| refs[i as usize].staff_weight > 0 && filter(&refs[i as usize]))
                .collect();
            (!idx.is_empty()).then(|| {
                (
                    Weighted::new(idx.iter().map(|&i| refs[i as usize].staff_weight)),
                    idx,
                )
            })
        };
        let all = table(&|_| true).unwrap_or_else(|| {
            // Degenerate tiny registry with no operating enterprise: hire anywhere.
            (
                Weighted::new(refs.iter().map(|_| 1)),
                (0..refs.len() as u32).collect(),
            )
        });
        let by_district = (0..DISTRICTS.len())
            .map(|d| table(&|r| usize::from(r.district) == d))
            .collect();
        Employers {
            codes: refs.iter().map(|r| r.code).collect(),
            all,
            by_district,
        }
    }

    /// Most people work in the district where they are insured.
    fn sample(&self, rng: &mut Rng, district: usize) -> u32 {
        let (w, idx) = match &self.by_district[district] {
            Some(t) if rng.chance(0.7) => t,
            _ => &self.all,
        };
        idx[w.sample(rng)]
    }
}

/// Tables of the person models, built once per run.
pub struct Tables {
    pub origins: Origins,
    districts: Weighted,
    ages_male: Weighted,
    ages_female: Weighted,
    hospitals_city: Weighted,
    hospitals_local: Vec<(Weighted, Vec<usize>)>,
}

/// Relative share of insured workers by age, 16..=65: Shenzhen's workforce is young.
fn age_weight(age: i32, male: bool) -> u64 {
    let w = match age {
        16..=17 => 3,
        18..=19 => 15,
        20..=22 => 35,
        23..=29 => 60,
        30..=35 => 65,
        36..=40 => 55,
        41..=45 => 40,
        46..=50 => 30,
        51..=55 => 18,
        56..=60 => 8,
        _ => 3,
    };
    // Women retire at 50 or 55, men at 60 (before the 2025 reform).
    match (male, age) {
        (false, 51..=55) => w / 2,
        (false, 56..) => w / 8,
        (true, 61..) => w / 2,
        _ => w,
    }
}

impl Tables {
    pub fn new() -> Tables {
        Tables {
            origins: Origins::new(LOCAL_BIRTH_WEIGHT),
            districts: Weighted::new(DISTRICTS.iter().map(|d| d.population)),
            ages_male: Weighted::new((16..=65).map(|a| age_weight(a, true))),
            ages_female: Weighted::new((16..=65).map(|a| age_weight(a, false))),
            hospitals_city: Weighted::new(HOSPITALS.iter().map(|h| h.weight)),
            hospitals_local: (0..DISTRICTS.len())
                .map(|d| {
                    let idx: Vec<usize> = (0..HOSPITALS.len())
                        .filter(|&h| HOSPITALS[h].district == d)
                        .collect();
                    (Weighted::new(idx.iter().map(|&h| HOSPITALS[h].weight)), idx)
                })
                .collect(),
        }
    }
}

/// A generated insured person before its ID is made unique.
#[derive(Debug, Clone)]
pub struct Person {
    pub identity: Identity,
    district: u8,
    employer: u32,
    base_cents: u64,
    months: u64,
}

/// Draws persons of `chunk` (not yet de-duplicated).
pub fn persons(
    seed: u64,
    chunk: u64,
    total: u64,
    t: &Tables,
    employers: &Employers,
) -> Vec<Person> {
    let (start, end) = chunk_bounds(chunk, total);
    let mut rng = Rng::stream(seed, TAG_PERSONS, chunk);
    (start..end)
        .map(|_| {
            let male = rng.chance(0.55);
            let ages = if male { &t.ages_male } else { &t.ages_female };
            let age = 16 + ages.sample(&mut rng) as i32;
            let birth = birth_for_age(&mut rng, age);
            let district = t.districts.sample(&mut rng);
            let identity = t.origins.identity(&mut rng, district, birth, male);
            let employer = employers.sample(&mut rng, district);
            // A fifth declare the floor; the rest are log-normal, clipped to floor and cap.
            let base_cents = if rng.chance(0.2) {
                BASE_FLOOR_CENTS
            } else {
                let experience = 1.0 + 0.03 * f64::from((age - 20).clamp(0, 20));
                to_cents(rng.log_normal(6_000.0 * experience, 0.6))
                    .clamp(BASE_FLOOR_CENTS, BASE_CAP_CENTS)
            };
            // Months since 16, of which a share was insured (many came to Shenzhen later).
            let possible = (u64::from((age - 16) as u32) * 12).min(600);
            let share = crate::rng::exp(0.7 * crate::rng::ln(rng.f64_open0()));
            let months = ((possible as f64) * share) as u64;
            Person {
                identity,
                district: district as u8,
                employer,
                base_cents,
                months,
            }
        })
        .collect()
}

/// Formats de-duplicated persons of `chunk` and generates their claims.
/// Returns (social_insurance bytes, medical_claims bytes, persons, claims).
pub fn format_persons_and_claims(
    seed: u64,
    chunk: u64,
    total: u64,
    persons: &[Person],
    t: &Tables,
    employers: &Employers,
) -> (Vec<u8>, Vec<u8>, u64, u64) {
    let (start, _) = chunk_bounds(chunk, total);
    let mut rng = Rng::stream(seed, TAG_CLAIMS, chunk);
    let mut social = Vec::with_capacity(persons.len() * 110);
    let mut claims = Vec::with_capacity(persons.len() * 2 * 150);
    let mut n_claims = 0;
    let mut drafts: Vec<Claim> = Vec::new();
    for (i, p) in persons.iter().enumerate() {
        let id = p.identity.id();
        social.extend_from_slice(&id);
        social.push(b',');
        p.identity.push_name(&mut social);
        social.push(b',');
        social.extend_from_slice(if p.identity.male { "男" } else { "女" }.as_bytes());
        social.push(b',');
        push_date(&mut social, p.identity.birth);
        social.push(b',');
        social.extend_from_slice(DISTRICTS[usize::from(p.district)].name.as_bytes());
        social.push(b',');
        social.extend_from_slice(&employers.codes[p.employer as usize]);
        social.push(b',');
        push_cents(&mut social, p.base_cents);
        social.push(b',');
        crate::fmt::push_u64(&mut social, p.months);
        social.push(b'\n');

        draft_claims(&mut rng, p, t, &mut drafts);
        for (k, c) in drafts.iter().enumerate() {
            claims.extend_from_slice(b"YB");
            push_padded(&mut claims, start + i as u64, 10);
            push_padded(&mut claims, k as u64 + 1, 2);
            claims.push(b',');
            claims.extend_from_slice(&id);
            claims.push(b',');
            claims.extend_from_slice(HOSPITALS[c.hospital].name.as_bytes());
            claims.push(b',');
            claims.extend_from_slice(if c.inpatient { "住院" } else { "门诊" }.as_bytes());
            claims.push(b',');
            claims.extend_from_slice(CHAPTERS[c.chapter].roman.as_bytes());
            claims.push(b',');
            claims.extend_from_slice(CHAPTERS[c.chapter].name.as_bytes());
            claims.push(b',');
            push_date(&mut claims, c.date);
            claims.push(b',');
            push_cents(&mut claims, c.amount_cents);
            claims.push(b'\n');
        }
        n_claims += drafts.len() as u64;
    }
    (social, claims, persons.len() as u64, n_claims)
}

struct Claim {
    date: NaiveDate,
    chapter: usize,
    hospital: usize,
    inpatient: bool,
    amount_cents: u64,
}

/// Claims of one person, in date order. Counts are Poisson with a
/// log-normally distributed personal rate, so most people have a few claims
/// and some have many; rates rise with age and are higher for women.
fn draft_claims(rng: &mut Rng, p: &Person, t: &Tables, out: &mut Vec<Claim>) {
    out.clear();
    let age = age_on_as_of(p.identity.birth);
    let age_factor = 0.55 + 0.03 * f64::from((age - 16).max(0));
    let sex_factor = if p.identity.male { 0.9 } else { 1.1 };
    // exp(0.9 z - 0.405) has mean 1; the constant puts the mean near 2 per person.
    let rate = 1.8 * age_factor * sex_factor * crate::rng::exp(0.9 * rng.normal() - 0.405);
    let n = rng.poisson(rate.min(60.0)).min(MAX_CLAIMS);
    if n == 0 {
        return;
    }
    // Chapter weights for this person: chronic chapters grow with age;
    // pregnancy only for women of child-bearing age.
    let mut cumulative = [0u64; 22];
    let mut total = 0;
    for (i, ch) in CHAPTERS.iter().enumerate() {
        let mut w = ch.weight * 10;
        if ch.ageing {
            w = w * (age.max(16) - 10) as u64 / 25;
        }
        if i == CH_PREGNANCY {
            w = if !p.identity.male && (18..=45).contains(&age) {
                w * 3
            } else {
                0
            };
        }
        total += w;
        cumulative[i] = total;
    }
    let span = (crate::AS_OF - FIRST_CLAIM_DATE).num_days() as u64 + 1;
    let district = usize::from(p.district);
    for _ in 0..n {
        let r = rng.below(total);
        let chapter = cumulative.partition_point(|&c| c <= r);
        let date = FIRST_CLAIM_DATE + chrono::Days::new(rng.below(span));
        let hospital = match chapter {
            CH_MENTAL if rng.chance(0.6) => H_KANGNING,
            CH_EYE if rng.chance(0.4) => H_EYE,
            CH_PREGNANCY if rng.chance(0.4) => H_MATERNAL,
            CH_NEOPLASMS if rng.chance(0.25) => H_CANCER,
            _ if rng.chance(0.6) => {
                let (w, idx) = &t.hospitals_local[district];
                idx[w.sample(rng)]
            }
            _ => t.hospitals_city.sample(rng),
        };
        let ch = &CHAPTERS[chapter];
        let inpatient = rng.below(1000) < ch.inpatient_permille;
        let median = if inpatient { 11_000.0 } else { 260.0 };
        let mut amount = rng.log_normal(median, if inpatient { 0.75 } else { 0.8 });
        amount *= ch.cost_percent as f64 / 100.0;
        if rng.chance(0.003) {
            // Rare catastrophic cases (ICU, transplants, cancer drugs).
            amount *= rng.pareto(3.0, 1.2);
        }
        let amount_cents = to_cents(amount).clamp(500, MAX_CLAIM_CENTS);
        out.push(Claim {
            date,
            chapter,
            hospital,
            inpatient,
            amount_cents,
        });
    }
    out.sort_by_key(|c| c.date);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_hospital_indices() {
        assert_eq!(HOSPITALS[H_KANGNING].name, "深圳市康宁医院");
        assert_eq!(HOSPITALS[H_EYE].name, "深圳市眼科医院");
        assert_eq!(HOSPITALS[H_MATERNAL].name, "深圳市妇幼保健院");
        assert_eq!(HOSPITALS[H_CANCER].name, "中国医学科学院肿瘤医院深圳医院");
        assert_eq!(CHAPTERS[CH_PREGNANCY].roman, "XV");
        assert_eq!(CHAPTERS[CH_NEOPLASMS].roman, "II");
        assert_eq!(CHAPTERS[CH_MENTAL].roman, "V");
        assert_eq!(CHAPTERS[CH_EYE].roman, "VII");
        assert_eq!(CHAPTERS.len(), 22);
    }

    #[test]
    fn clashing_ids_get_the_next_sequence_number_of_the_same_sex() {
        let t = Tables::new();
        let mut rng = Rng::stream(1, 1, 1);
        let birth = NaiveDate::from_ymd_opt(1990, 5, 17).unwrap();
        let mut seen = IdSet::default();
        let mut a = t.origins.identity(&mut rng, 0, birth, true);
        let mut b = a;
        make_unique(&mut seen, &mut a);
        make_unique(&mut seen, &mut b);
        assert_ne!(a.id(), b.id());
        assert_eq!(b.seq % 2, 1);
        assert_eq!(b.seq, (a.seq + 2) % 1000);
    }
}
