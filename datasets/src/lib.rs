//! # anyu-datasets — sample catalog manifests and Shenzhen-style sample data
//!
//! [`generate`] writes four CSV files (UTF-8, header line, columns exactly as in
//! the manifests under [`manifests_dir`]) of synthetic but realistic public data:
//!
//! | dataset | open type | rows |
//! |---|---|---|
//! | `enterprise_registry` | unconditional, L1 | `max(rows / 20, 50)` enterprises |
//! | `social_insurance` | conditional, L3 | `rows` insured persons |
//! | `medical_claims` | conditional, L4 | about `2 × rows` claims (Poisson per person, heavy-tailed rates) |
//! | `min_living_allowance` | not open, L4 | `max(rows / 50, 20)` households |
//!
//! Joins hold by construction: every `employer_credit_code` is an operating
//! enterprise of `enterprise_registry`, every claim's `person_id` is a
//! `social_insurance` person, and resident IDs are unique across
//! `social_insurance` and `min_living_allowance`. Every 身份证号 carries a valid
//! ISO 7064 MOD 11-2 check character (about 1 in 11 is `X`) and agrees with the
//! row's sex and birth date; every 统一社会信用代码 carries valid GB 11714 and
//! GB 32100 check characters. Ages, dates and amounts are relative to the
//! fixed reference day [`AS_OF`], never to the clock.
//!
//! ## Models (all tables in `tables.rs`)
//!
//! - **Districts**: the nine districts and 大鹏新区, weighted by the 2020 census
//!   population (宝安, 龙岗 largest; 盐田, 大鹏 smallest); enterprises by a
//!   separate registration share.
//! - **Resident IDs**: about 12% Shenzhen-born (the district's division code;
//!   大鹏 uses 龙岗's 440307, and people born before 龙华/坪山 (2017) or 光明
//!   (2018) existed carry 宝安's or 龙岗's code, since ID numbers never
//!   change), 28% elsewhere in Guangdong, the rest from Hunan, Guangxi, Hubei,
//!   Jiangxi, Henan, Sichuan and smaller sources, each with real county codes.
//!   Sequence numbers are random with the sex's parity; the rare clash moves to
//!   the next free sequence number. Surnames follow the birth province.
//! - **Enterprises**: `91` + region (mostly 440300) + organisation code
//!   (`MA5…` since 2015, 8 digits before) with its GB 11714 check + GB 32100
//!   check; GB/T 4754 sections weighted towards wholesale/retail, leasing and
//!   business services, IT, manufacturing; capital log-normal with a Pareto
//!   tail, mostly round figures, in 万元; establishment 1980–AS_OF growing about
//!   11% a year; older enterprises more often 注销/吊销. Names are
//!   `深圳(市)<2–3 字号 characters><industry word>(股份)有限公司` and may repeat.
//! - **Insured persons**: ages 16–65 peaking at 23–40 (women retire earlier),
//!   55% men; employer drawn from operating enterprises weighted by
//!   √capital × industry staffing, 70% in the person's district; contribution
//!   base log-normal (median 6,000 CNY rising to 9,600 with experience), 20% at the floor, clipped to
//!   2,360–34,000 CNY; months contributed a random share of the months since 16
//!   (at most 600).
//! - **Claims**: Poisson per person with a log-normal personal rate that rises
//!   with age (mean about 2); chapters weighted (respiratory, digestive,
//!   circulatory, musculoskeletal most common; chronic chapters grow with age;
//!   pregnancy only for women 18–45); hospitals mostly in the person's district,
//!   specialists for mental, eye, maternity and cancer claims; dates 2024-01-01
//!   to AS_OF; amounts log-normal (outpatient median 260, inpatient 11,000 CNY)
//!   with rare Pareto-scaled catastrophic cases, capped at 3,000,000 CNY.
//! - **Allowance households**: heads aged 30–90, mostly Shenzhen-born; size
//!   1–6; 1,365 CNY per person per month, 45% receive a partial amount; start
//!   dates 2012–AS_OF, recent ones more common.
//!
//! Memory: the set of issued IDs (about 15 bytes per person) is the largest
//! structure, about 150 MB at 10 million persons.
//!
//! ## Determinism
//!
//! The same `(rows, seed)` gives byte-identical files on every machine, with
//! any number of threads, in every version that keeps [`FORMAT_VERSION`]:
//! rows are generated in chunks of [`CHUNK_ROWS`], each from its own
//! xoshiro256** stream seeded by `(seed, dataset, chunk index)`; the generator
//! and its `ln`/`exp` are implemented here with IEEE-exact arithmetic only;
//! money is integer cents. Chunks run in parallel on `std::thread` and are
//! written in order.
//!
//! ```text
//!  enterprises (parallel chunks) ─▶ enterprise_registry.csv
//!        └─▶ operating employers, weighted by √capital × industry staffing
//!  persons (parallel) ─▶ de-duplicate IDs (in chunk order) ─▶ format + claims (parallel)
//!        ─▶ social_insurance.csv, medical_claims.csv
//!  households (parallel) ─▶ de-duplicate head IDs ─▶ min_living_allowance.csv
//! ```

mod allowance;
pub mod codes;
mod enterprise;
mod fmt;
mod people;
mod rng;
mod tables;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

/// The sample datasets, in generation order.
pub const DATASETS: &[&str] = &[
    "enterprise_registry",
    "social_insurance",
    "medical_claims",
    "min_living_allowance",
];

/// Version of the generated content. Bump it whenever a change alters the
/// bytes produced for some `(rows, seed)`.
pub const FORMAT_VERSION: u32 = 1;

/// The reference day of the sample data: ages are completed years on this
/// day, and no date lies after it.
pub const AS_OF: NaiveDate = NaiveDate::from_ymd_opt(2026, 6, 30).expect("valid date");

/// Rows per independently seeded chunk (part of the output format).
pub const CHUNK_ROWS: u64 = 16_384;

/// Largest accepted `rows`: credit codes and claim ids stay unique below it.
pub const MAX_ROWS: u64 = 500_000_000;
const _: () = assert!(enterprise_count(MAX_ROWS) <= codes::MAX_ENTERPRISES);

/// What to generate and where.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Number of `social_insurance` rows (persons); the other datasets scale with it.
    pub rows: u64,
    /// Seed of every random stream.
    pub seed: u64,
    /// Directory for `<dataset>.csv` (created if missing; existing files are replaced).
    pub out_dir: PathBuf,
}

/// One written file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub dataset: String,
    pub path: PathBuf,
    /// Data rows, without the header.
    pub rows: u64,
    /// File size including the header.
    pub bytes: u64,
}

/// The files [`generate`] wrote, in [`DATASETS`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateReport {
    pub files: Vec<GeneratedFile>,
}

/// Why generation failed. No partial output file is left behind.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid generate options: {0}")]
    InvalidOptions(String),
}

/// Number of `enterprise_registry` rows for `rows` persons.
pub const fn enterprise_count(rows: u64) -> u64 {
    let n = rows / 20;
    if n > 50 { n } else { 50 }
}

/// Number of `min_living_allowance` rows for `rows` persons.
pub fn household_count(rows: u64) -> u64 {
    (rows / 50).max(20)
}

/// Column names of a sample dataset, in file order.
pub fn columns(dataset: &str) -> Option<&'static [&'static str]> {
    match dataset {
        "enterprise_registry" => Some(enterprise::COLUMNS),
        "social_insurance" => Some(people::SOCIAL_COLUMNS),
        "medical_claims" => Some(people::CLAIM_COLUMNS),
        "min_living_allowance" => Some(allowance::COLUMNS),
        _ => None,
    }
}

/// The sample manifests, by dataset id, compiled in so `anyu demo` does not
/// depend on the working directory.
pub const SAMPLE_MANIFESTS: &[(&str, &str)] = &[
    (
        "enterprise_registry",
        include_str!("../manifests/enterprise_registry.toml"),
    ),
    (
        "social_insurance",
        include_str!("../manifests/social_insurance.toml"),
    ),
    (
        "medical_claims",
        include_str!("../manifests/medical_claims.toml"),
    ),
    (
        "min_living_allowance",
        include_str!("../manifests/min_living_allowance.toml"),
    ),
];

/// The PUMS-shaped manifest of the differential-privacy benchmark (not a demo dataset).
pub const PUMS_MANIFEST: &str = include_str!("../manifests/pums.toml");

/// Directory of the sample manifests in the source tree.
pub fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

/// Generates the four sample datasets into `opts.out_dir`, using all cores.
pub fn generate(opts: &GenerateOptions) -> Result<GenerateReport, GenerateError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    generate_with_threads(opts, threads)
}

/// [`generate`] with an explicit number of worker threads; the output does not
/// depend on it (tests check that).
#[doc(hidden)]
pub fn generate_with_threads(
    opts: &GenerateOptions,
    threads: usize,
) -> Result<GenerateReport, GenerateError> {
    if opts.rows > MAX_ROWS {
        return Err(GenerateError::InvalidOptions(format!(
            "rows must be at most {MAX_ROWS}"
        )));
    }
    let threads = threads.max(1);
    std::fs::create_dir_all(&opts.out_dir).map_err(io_err("create directory", &opts.out_dir))?;
    let mut outputs = Outputs::default();
    for dataset in DATASETS {
        outputs.0.push(Output::create(&opts.out_dir, dataset)?);
    }
    let (seed, rows) = (opts.seed, opts.rows);

    // Enterprises first: persons need their codes and sizes.
    let n_ent = enterprise_count(rows);
    let et = enterprise::Tables::new();
    let mut refs = Vec::with_capacity(n_ent as usize);
    for wave in waves(n_ent, threads) {
        for (bytes, r) in par_map(wave, |c| enterprise::chunk(seed, c, n_ent, &et)) {
            outputs.0[0].write(&bytes, r.len() as u64)?;
            refs.extend(r);
        }
    }
    let employers = people::Employers::new(&refs);
    drop(refs);

    let n_households = household_count(rows);
    let pt = people::Tables::new();
    let mut seen =
        people::IdSet::with_capacity_and_hasher((rows + n_households) as usize, Default::default());
    for wave in waves(rows, threads) {
        let mut drawn = par_map(wave.clone(), |c| {
            people::persons(seed, c, rows, &pt, &employers)
        });
        for person in drawn.iter_mut().flatten() {
            people::make_unique(&mut seen, &mut person.identity);
        }
        let work: Vec<_> = wave.zip(drawn).collect();
        for (social, claims, n_social, n_claims) in par_map(work, |(c, persons)| {
            people::format_persons_and_claims(seed, c, rows, &persons, &pt, &employers)
        }) {
            outputs.0[1].write(&social, n_social)?;
            outputs.0[2].write(&claims, n_claims)?;
        }
    }
    drop(employers);

    let at = allowance::Tables::new();
    for wave in waves(n_households, threads) {
        let drawn = par_map(wave.clone(), |c| {
            allowance::households(seed, c, n_households, &at)
        });
        for (c, mut households) in wave.zip(drawn) {
            let bytes = allowance::format(c, n_households, &mut households, &mut seen);
            outputs.0[3].write(&bytes, households.len() as u64)?;
        }
    }

    outputs.finish()
}

/// Row range `[start, end)` of chunk `chunk` out of `total` rows.
pub(crate) fn chunk_bounds(chunk: u64, total: u64) -> (u64, u64) {
    let start = chunk * CHUNK_ROWS;
    (start, (start + CHUNK_ROWS).min(total))
}

/// Chunk indices of `total` rows, grouped into waves of `threads` chunks.
fn waves(total: u64, threads: usize) -> impl Iterator<Item = std::ops::Range<u64>> {
    let chunks = total.div_ceil(CHUNK_ROWS);
    let step = threads as u64;
    (0..chunks.div_ceil(step)).map(move |w| w * step..((w + 1) * step).min(chunks))
}

/// Applies `f` to every input on its own scoped thread (the first on the
/// calling thread) and returns the results in input order.
fn par_map<I, T, F>(inputs: impl IntoIterator<Item = I>, f: F) -> Vec<T>
where
    I: Send,
    T: Send,
    F: Fn(I) -> T + Sync,
{
    let mut inputs = inputs.into_iter();
    let Some(first) = inputs.next() else {
        return Vec::new();
    };
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = inputs.map(|i| s.spawn(move || f(i))).collect();
        let mut out = Vec::with_capacity(handles.len() + 1);
        out.push(f(first));
        for h in handles {
            out.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        out
    })
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> GenerateError + use<> {
    let path = path.to_path_buf();
    move |source| GenerateError::Io { op, path, source }
}

/// A dataset file being written under a temporary name.
struct Output {
    dataset: &'static str,
    tmp: PathBuf,
    path: PathBuf,
    writer: Option<BufWriter<File>>,
    rows: u64,
    bytes: u64,
}

impl Output {
    fn create(dir: &Path, dataset: &'static str) -> Result<Output, GenerateError> {
        let path = dir.join(format!("{dataset}.csv"));
        let tmp = dir.join(format!(".{dataset}.csv.partial"));
        let file = File::create(&tmp).map_err(io_err("create", &tmp))?;
        let mut out = Output {
            dataset,
            tmp,
            path,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
            rows: 0,
            bytes: 0,
        };
        let header = columns(dataset).expect("known dataset").join(",") + "\n";
        out.write(header.as_bytes(), 0)?;
        Ok(out)
    }

    fn write(&mut self, data: &[u8], rows: u64) -> Result<(), GenerateError> {
        let w = self.writer.as_mut().expect("open until finished");
        w.write_all(data).map_err(io_err("write", &self.tmp))?;
        self.rows += rows;
        self.bytes += data.len() as u64;
        Ok(())
    }
}

/// All outputs; on drop before [`Outputs::finish`], the temporary files are removed.
#[derive(Default)]
struct Outputs(Vec<Output>);

impl Outputs {
    /// Flushes every file, then renames all of them into place.
    fn finish(mut self) -> Result<GenerateReport, GenerateError> {
        for o in &mut self.0 {
            let w = o.writer.take().expect("open until finished");
            let file = w.into_inner().map_err(|e| {
                let source = std::io::Error::new(e.error().kind(), e.error().to_string());
                GenerateError::Io {
                    op: "write",
                    path: o.tmp.clone(),
                    source,
                }
            })?;
            drop(file);
        }
        let mut files = Vec::with_capacity(self.0.len());
        for o in &self.0 {
            std::fs::rename(&o.tmp, &o.path).map_err(io_err("rename", &o.tmp))?;
            files.push(GeneratedFile {
                dataset: o.dataset.to_string(),
                path: o.path.clone(),
                rows: o.rows,
                bytes: o.bytes,
            });
        }
        self.0.clear();
        Ok(GenerateReport { files })
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        for o in &mut self.0 {
            drop(o.writer.take());
            let _ = std::fs::remove_file(&o.tmp);
        }
    }
}
