//! The generated sample files: determinism, validity against the manifests,
//! identity consistency and joins.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyu_datasets::{
    DATASETS, GenerateError, GenerateOptions, GenerateReport, generate, generate_with_threads,
};
use chrono::NaiveDate;
use enclave::ids::{self, Sex};

/// One generated dataset: header and rows split into fields.
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn col(&self, name: &str) -> usize {
        self.header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    }

    fn values<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> + 'a {
        let i = self.col(name);
        self.rows.iter().map(move |r| r[i].as_str())
    }
}

fn read_table(path: &Path) -> Table {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.ends_with('\n'),
        "{} must end with a newline",
        path.display()
    );
    // Fields never need CSV quoting: no quotes, no embedded separators.
    assert!(!text.contains('"') && !text.contains('\r'));
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(
            r.len(),
            header.len(),
            "{} row {} has {} fields",
            path.display(),
            i + 1,
            r.len()
        );
    }
    Table { header, rows }
}

fn run(rows: u64, seed: u64, dir: &Path) -> GenerateReport {
    generate(&GenerateOptions {
        rows,
        seed,
        out_dir: dir.to_path_buf(),
    })
    .unwrap()
}

fn tables(dir: &Path) -> HashMap<&'static str, Table> {
    DATASETS
        .iter()
        .map(|d| (*d, read_table(&dir.join(format!("{d}.csv")))))
        .collect()
}

fn manifest(dataset: &str) -> toml::Table {
    let path = anyu_datasets::manifests_dir().join(format!("{dataset}.toml"));
    std::fs::read_to_string(&path).unwrap().parse().unwrap()
}

#[test]
fn same_seed_gives_identical_bytes_and_other_seeds_differ() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let ra = run(2_000, 42, a.path());
    let rb = run(2_000, 42, b.path());
    run(2_000, 43, c.path());
    assert_eq!(
        ra.files
            .iter()
            .map(|f| (f.rows, f.bytes))
            .collect::<Vec<_>>(),
        rb.files
            .iter()
            .map(|f| (f.rows, f.bytes))
            .collect::<Vec<_>>()
    );
    for d in DATASETS {
        let name = format!("{d}.csv");
        let (x, y, z) = (
            std::fs::read(a.path().join(&name)).unwrap(),
            std::fs::read(b.path().join(&name)).unwrap(),
            std::fs::read(c.path().join(&name)).unwrap(),
        );
        assert!(x == y, "{d}: same seed, different bytes");
        assert!(x != z, "{d}: different seeds, same bytes");
    }
}

#[test]
fn output_does_not_depend_on_thread_count() {
    // Three chunks of persons, so chunks really run on different threads.
    let rows = 2 * anyu_datasets::CHUNK_ROWS + 500;
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ra = generate_with_threads(
        &GenerateOptions {
            rows,
            seed: 9,
            out_dir: a.path().into(),
        },
        1,
    )
    .unwrap();
    let rb = generate_with_threads(
        &GenerateOptions {
            rows,
            seed: 9,
            out_dir: b.path().into(),
        },
        3,
    )
    .unwrap();
    assert_eq!(ra.files.len(), rb.files.len());
    for d in DATASETS {
        let name = format!("{d}.csv");
        let same = std::fs::read(a.path().join(&name)).unwrap()
            == std::fs::read(b.path().join(&name)).unwrap();
        assert!(same, "{d} differs between 1 and 3 threads");
    }
}

#[test]
fn report_matches_files_and_documented_counts() {
    let dir = tempfile::tempdir().unwrap();
    let rows = 3_000;
    let report = run(rows, 1, dir.path());
    let names: Vec<&str> = report.files.iter().map(|f| f.dataset.as_str()).collect();
    assert_eq!(names, DATASETS);
    for f in &report.files {
        assert_eq!(f.path, dir.path().join(format!("{}.csv", f.dataset)));
        assert_eq!(f.bytes, std::fs::metadata(&f.path).unwrap().len());
        assert_eq!(f.rows, read_table(&f.path).rows.len() as u64);
    }
    let count = |d: &str| report.files.iter().find(|f| f.dataset == d).unwrap().rows;
    assert_eq!(
        count("enterprise_registry"),
        anyu_datasets::enterprise_count(rows)
    );
    assert_eq!(count("enterprise_registry"), 150);
    assert_eq!(count("social_insurance"), rows);
    assert_eq!(
        count("min_living_allowance"),
        anyu_datasets::household_count(rows)
    );
    assert_eq!(count("min_living_allowance"), 60);
    let claims_per_person = count("medical_claims") as f64 / rows as f64;
    assert!(
        (1.6..2.4).contains(&claims_per_person),
        "{claims_per_person} claims per person"
    );
    // No temporary files left.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".csv"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn small_and_empty_runs_work() {
    let dir = tempfile::tempdir().unwrap();
    let report = run(0, 5, dir.path());
    let rows: Vec<u64> = report.files.iter().map(|f| f.rows).collect();
    assert_eq!(rows, [50, 0, 0, 20]);
    let t = tables(dir.path());
    assert!(t["social_insurance"].rows.is_empty());
    assert_eq!(
        t["social_insurance"].header,
        anyu_datasets::columns("social_insurance").unwrap()
    );
}

/// Every manifest parses with the catalog's own parser (validation included).
#[test]
fn manifests_are_valid_catalog_manifests() {
    for d in DATASETS {
        let path = anyu_datasets::manifests_dir().join(format!("{d}.toml"));
        let m =
            enclave::catalog::Manifest::from_path(&path, &enclave::catalog::GradeScale::default())
                .unwrap_or_else(|e| panic!("{d}: {e}"));
        assert_eq!(m.id(), *d);
    }
}

/// Header, types, nullability, categories, bounds and identifier formats, all
/// read from the manifests generically (so the files follow them, whatever
/// the manifest parser does).
#[test]
fn files_follow_their_manifests() {
    let dir = tempfile::tempdir().unwrap();
    run(3_000, 11, dir.path());
    let t = tables(dir.path());
    for d in DATASETS {
        let m = manifest(d);
        let columns = m["columns"].as_array().unwrap();
        let names: Vec<&str> = columns
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(t[d].header, names, "{d}: header differs from the manifest");
        assert_eq!(anyu_datasets::columns(d).unwrap(), names.as_slice());
        for (i, c) in columns.iter().enumerate() {
            let c = c.as_table().unwrap();
            let name = c["name"].as_str().unwrap();
            let ty = c["type"].as_str().unwrap();
            let bounds = c.get("bounds").map(|b| {
                let num = |v: &toml::Value| {
                    v.as_float()
                        .or_else(|| v.as_integer().map(|i| i as f64))
                        .unwrap()
                };
                (num(&b["min"]), num(&b["max"]))
            });
            let cats: Option<HashSet<&str>> = c.get("categories").map(|v| {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap())
                    .collect()
            });
            let format = c.get("format").and_then(|v| v.as_str());
            for (r, row) in t[d].rows.iter().enumerate() {
                let v = row[i].as_str();
                let at = format!("{d} row {} column {name}", r + 1);
                assert!(!v.is_empty(), "{at}: empty");
                let number = match ty {
                    "int64" => Some(
                        v.parse::<i64>()
                            .unwrap_or_else(|_| panic!("{at}: not an int64"))
                            as f64,
                    ),
                    "float64" => {
                        let (_, frac) = v
                            .split_once('.')
                            .unwrap_or_else(|| panic!("{at}: no decimals"));
                        assert_eq!(frac.len(), 2, "{at}: two decimals expected");
                        Some(
                            v.parse::<f64>()
                                .unwrap_or_else(|_| panic!("{at}: not a float64")),
                        )
                    }
                    "date" => {
                        let date = NaiveDate::parse_from_str(v, "%Y-%m-%d")
                            .unwrap_or_else(|_| panic!("{at}: not a date"));
                        assert!(date <= anyu_datasets::AS_OF, "{at}: after AS_OF");
                        None
                    }
                    "string" => None,
                    other => panic!("unexpected type {other}"),
                };
                if let (Some(x), Some((lo, hi))) = (number, bounds) {
                    assert!(x >= lo && x <= hi, "{at}: out of bounds");
                }
                if let Some(cats) = &cats {
                    assert!(cats.contains(v), "{at}: not a listed category");
                }
                match format {
                    Some("resident_id") => {
                        assert!(ids::is_valid_resident_id(v), "{at}: invalid resident id")
                    }
                    Some("credit_code") => {
                        assert!(ids::is_valid_credit_code(v), "{at}: invalid credit code")
                    }
                    None => {}
                    Some(other) => panic!("unexpected format {other}"),
                }
            }
        }
    }
}

#[test]
fn ids_agree_with_sex_and_birth_date() {
    let dir = tempfile::tempdir().unwrap();
    run(3_000, 3, dir.path());
    let t = tables(dir.path());
    let si = &t["social_insurance"];
    let (id, sex, birth) = (si.col("person_id"), si.col("sex"), si.col("birth_date"));
    let mut x_checks = 0;
    for row in &si.rows {
        let expected = match ids::resident_id_sex(&row[id]).unwrap() {
            Sex::Male => "男",
            Sex::Female => "女",
        };
        assert_eq!(row[sex], expected);
        let b = ids::resident_id_birth_date(&row[id]).unwrap();
        assert_eq!(row[birth], b.format("%Y-%m-%d").to_string());
        let age = anyu_datasets::AS_OF.years_since(b).unwrap();
        assert!((16..=66).contains(&age), "age {age}");
        x_checks += usize::from(row[id].ends_with('X'));
    }
    // The check character is X for about 1 in 11 IDs.
    let share = x_checks as f64 / si.rows.len() as f64;
    assert!((0.06..0.125).contains(&share), "X share {share}");
    for head in t["min_living_allowance"].values("head_person_id") {
        let age = anyu_datasets::AS_OF
            .years_since(ids::resident_id_birth_date(head).unwrap())
            .unwrap();
        assert!((29..=91).contains(&age), "head age {age}");
    }
}

#[test]
fn keys_are_unique_and_joins_hold() {
    let dir = tempfile::tempdir().unwrap();
    run(4_000, 5, dir.path());
    let t = tables(dir.path());
    let unique = |d: &str, c: &str| {
        let all: Vec<&str> = t[d].values(c).collect();
        let set: HashSet<&str> = all.iter().copied().collect();
        assert_eq!(set.len(), all.len(), "{d}.{c} has duplicates");
        set
    };
    let enterprises = unique("enterprise_registry", "credit_code");
    let persons = unique("social_insurance", "person_id");
    unique("medical_claims", "claim_id");
    unique("min_living_allowance", "household_id");
    let heads = unique("min_living_allowance", "head_person_id");
    assert!(
        persons.is_disjoint(&heads),
        "a household head reuses an insured person's ID"
    );

    let er = &t["enterprise_registry"];
    let operating: HashSet<&str> = er
        .rows
        .iter()
        .filter(|r| matches!(r[er.col("status")].as_str(), "存续" | "在业"))
        .map(|r| r[er.col("credit_code")].as_str())
        .collect();
    let mut employers = HashSet::new();
    for code in t["social_insurance"].values("employer_credit_code") {
        assert!(enterprises.contains(code), "employer not in the registry");
        assert!(operating.contains(code), "employer is not operating");
        employers.insert(code);
    }
    assert!(
        employers.len() > 50,
        "only {} distinct employers",
        employers.len()
    );

    let mut claims_per_person: HashMap<&str, usize> = HashMap::new();
    for p in t["medical_claims"].values("person_id") {
        assert!(persons.contains(p), "claim of an unknown person");
        *claims_per_person.entry(p).or_default() += 1;
    }
    // Heavy-tailed claim counts: many people without claims, some with many.
    assert!(claims_per_person.len() < persons.len());
    assert!(claims_per_person.values().any(|&n| n >= 15));
    // A person's claims are consecutive and in date order.
    let mc = &t["medical_claims"];
    let (pid, date) = (mc.col("person_id"), mc.col("claim_date"));
    for w in mc.rows.windows(2) {
        if w[0][pid] == w[1][pid] {
            assert!(w[0][date] <= w[1][date]);
        }
    }
    let blocks = mc
        .rows
        .windows(2)
        .filter(|w| w[0][pid] != w[1][pid])
        .count()
        + 1;
    assert_eq!(
        blocks,
        claims_per_person.len(),
        "claims of one person are not consecutive"
    );
}

#[test]
fn distributions_look_like_shenzhen() {
    let dir = tempfile::tempdir().unwrap();
    run(5_000, 2, dir.path());
    let t = tables(dir.path());
    let count = |d: &str, c: &str| {
        let mut m: HashMap<String, usize> = HashMap::new();
        for v in t[d].values(c) {
            *m.entry(v.to_owned()).or_default() += 1;
        }
        m
    };
    let districts = count("social_insurance", "district");
    let mut ranked: Vec<_> = districts.iter().collect();
    ranked.sort_by_key(|(_, n)| std::cmp::Reverse(**n));
    let top: HashSet<&str> = ranked[..2].iter().map(|(d, _)| d.as_str()).collect();
    assert_eq!(top, HashSet::from(["宝安区", "龙岗区"]));
    let bottom: HashSet<&str> = ranked[ranked.len() - 2..]
        .iter()
        .map(|(d, _)| d.as_str())
        .collect();
    assert_eq!(bottom, HashSet::from(["盐田区", "大鹏新区"]));

    // Many insured people were born outside Guangdong.
    let si = &t["social_insurance"];
    let guangdong = si
        .values("person_id")
        .filter(|id| id.starts_with("44"))
        .count() as f64
        / si.rows.len() as f64;
    assert!(
        (0.3..0.5).contains(&guangdong),
        "Guangdong-born share {guangdong}"
    );

    // Contribution bases pile up at the floor, never exceed the cap.
    let bases: Vec<f64> = si
        .values("contribution_base")
        .map(|v| v.parse().unwrap())
        .collect();
    let at_floor = bases.iter().filter(|&&b| b == 2360.0).count() as f64 / bases.len() as f64;
    assert!((0.15..0.35).contains(&at_floor), "floor share {at_floor}");
    assert!(bases.iter().all(|&b| (2360.0..=34000.0).contains(&b)));
    // Months contributed fit the person's working life since 16.
    let (bcol, mcol) = (si.col("birth_date"), si.col("months_contributed"));
    for r in &si.rows {
        let birth = NaiveDate::parse_from_str(&r[bcol], "%Y-%m-%d").unwrap();
        let age = anyu_datasets::AS_OF.years_since(birth).unwrap();
        let months: u32 = r[mcol].parse().unwrap();
        assert!(
            months <= age.saturating_sub(16) * 12,
            "months beyond working life"
        );
    }

    // Claim amounts are heavy-tailed: the mean far above the median.
    let mut amounts: Vec<f64> = t["medical_claims"]
        .values("amount")
        .map(|v| v.parse().unwrap())
        .collect();
    amounts.sort_by(f64::total_cmp);
    let median = amounts[amounts.len() / 2];
    let mean = amounts.iter().sum::<f64>() / amounts.len() as f64;
    assert!(mean > 3.0 * median, "mean {mean} median {median}");
    let chapters = count("medical_claims", "icd10_chapter");
    assert!(chapters["X"] > chapters["II"] && chapters["X"] > chapters["XVI"] * 20);

    // Registered capital is heavy-tailed too; wholesale/retail is the largest section.
    let sections = count("enterprise_registry", "industry_section");
    assert_eq!(sections.iter().max_by_key(|(_, n)| **n).unwrap().0, "F");
    let statuses = count("enterprise_registry", "status");
    assert!(statuses["存续"] > statuses["注销"] && statuses["注销"] > statuses["迁出"]);

    // Allowances are the standard times the household size, or a part of it.
    let mla = &t["min_living_allowance"];
    for r in &mla.rows {
        let size: u64 = r[mla.col("household_size")].parse().unwrap();
        let amount: f64 = r[mla.col("monthly_allowance")].parse().unwrap();
        assert!((1..=6).contains(&size));
        assert!(amount > 0.0 && amount <= 1365.0 * size as f64 + 1e-9);
    }
}

#[test]
fn failure_leaves_no_partial_files() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where a temporary output file must go makes creating it fail.
    std::fs::create_dir(dir.path().join(".medical_claims.csv.partial")).unwrap();
    let err = generate(&GenerateOptions {
        rows: 100,
        seed: 1,
        out_dir: dir.path().into(),
    })
    .unwrap_err();
    match &err {
        GenerateError::Io { op, path, .. } => {
            assert_eq!(*op, "create");
            assert!(path.ends_with(".medical_claims.csv.partial"));
        }
        other => panic!("unexpected error {other}"),
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        [std::ffi::OsString::from(".medical_claims.csv.partial")]
    );
}

#[test]
fn too_many_rows_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("never-created");
    let err = generate(&GenerateOptions {
        rows: anyu_datasets::MAX_ROWS + 1,
        seed: 1,
        out_dir: out_dir.clone(),
    })
    .unwrap_err();
    assert!(matches!(err, GenerateError::InvalidOptions(_)), "{err}");
    assert_eq!(
        err.to_string(),
        "invalid generate options: rows must be at most 500000000"
    );
    assert!(!out_dir.exists());
}
