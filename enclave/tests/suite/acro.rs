//! Agreement with ACRO 1.0: crosstabs of the real PUMS microdata
//! (`datasets/data/PUMS_pid.csv`, privacy unit `pid`, one row per person) —
//! frequency, SUM and mean tables, two- and three-way — judged by ACRO
//! (`scripts/acro_verdicts.py`, ACRO's default configuration) and by Anyu's
//! real job path; every cell's verdict must be the same, mapped through
//! `enclave::disclosure::acro` (the one place the vocabularies meet).
//!
//! Two configurations of Anyu:
//! - the `pums` manifest as shipped (grade L3): its effective policy equals
//!   ACRO's defaults (frequency threshold 10, n = 2, k = 0.9, p = 0.1, zeros
//!   disclosive); the aggregation threshold (10 persons) drops small groups
//!   before the rules run — an absent cell counts as `fail`;
//! - the same manifest with the aggregation threshold lowered to 1 (grade L1,
//!   whose floor is 0), so that every non-empty cell reaches Anyu's frequency,
//!   zeros and dominance rules: here the *checks* behind each released cell
//!   must also be ACRO's (frequency ↔ MinimumThresholdCheck, dominance ↔
//!   NKCheck, p_ratio ↔ PPercentCheck, zeros ↔ PresenceOfZeroCheck).
//!
//! ACRO judges each table alone; Anyu's differencing rule also compares every
//! table with the ones run before it under the grant (a two-way cell minus
//! its three-way sub-cells gives away a suppressed one). That rule has no
//! ACRO counterpart, so the comparison leaves it out and counts its reviews.
//!
//! The Python side needs `acro` (`pip install acro==1.0.2`; `scripts/test`
//! installs it and sets `ANYU_REQUIRE_ACRO=1`, which turns a missing ACRO into
//! a failure instead of a skip). `ANYU_PYTHON` names another interpreter.

use std::collections::BTreeSet;
use std::process::Command;

use crate::support::{Lab, Ran, repo};
use enclave::catalog::{GradeScale, Manifest};
use enclave::disclosure::Verdict;
use enclave::disclosure::acro::{ABSENT_CELL, acro_check, acro_status, config_differences};
use serde_json::{Value, json};

struct Table {
    name: &'static str,
    index: &'static [&'static str],
    columns: &'static [&'static str],
    /// `count`, `sum` or `mean` (of `income`).
    aggfunc: &'static str,
}

const TABLES: &[Table] = &[
    Table {
        name: "sex x race: count",
        index: &["sex"],
        columns: &["race"],
        aggfunc: "count",
    },
    Table {
        name: "educ x married: count",
        index: &["educ"],
        columns: &["married"],
        aggfunc: "count",
    },
    Table {
        name: "sex, married x race: count",
        index: &["sex", "married"],
        columns: &["race"],
        aggfunc: "count",
    },
    Table {
        name: "race x educ: count",
        index: &["race"],
        columns: &["educ"],
        aggfunc: "count",
    },
    Table {
        name: "sex x race: sum income",
        index: &["sex"],
        columns: &["race"],
        aggfunc: "sum",
    },
    Table {
        name: "sex x race: mean income",
        index: &["sex"],
        columns: &["race"],
        aggfunc: "mean",
    },
    Table {
        name: "educ x married: sum income",
        index: &["educ"],
        columns: &["married"],
        aggfunc: "sum",
    },
    Table {
        name: "educ x married: mean income",
        index: &["educ"],
        columns: &["married"],
        aggfunc: "mean",
    },
    Table {
        name: "sex, married x race: sum income",
        index: &["sex", "married"],
        columns: &["race"],
        aggfunc: "sum",
    },
    Table {
        name: "race x educ: sum income",
        index: &["race"],
        columns: &["educ"],
        aggfunc: "sum",
    },
    Table {
        name: "race x married: mean income",
        index: &["race"],
        columns: &["married"],
        aggfunc: "mean",
    },
];

impl Table {
    fn keys(&self) -> Vec<&'static str> {
        self.index.iter().chain(self.columns).copied().collect()
    }

    /// The same table in SQL; the cell is column `v`.
    fn sql(&self) -> String {
        let keys = self.keys().join(", ");
        let agg = match self.aggfunc {
            "count" => "count(*)",
            "sum" => "sum(income)",
            "mean" => "avg(income)",
            other => panic!("unknown aggfunc {other}"),
        };
        format!("SELECT {keys}, {agg} AS v FROM pums GROUP BY {keys}")
    }

    fn spec(&self) -> Value {
        json!({
            "name": self.name,
            "index": self.index,
            "columns": self.columns,
            "values": (self.aggfunc != "count").then_some("income"),
            "aggfunc": self.aggfunc,
        })
    }
}

fn python() -> String {
    std::env::var("ANYU_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// ACRO's verdicts on every table, or `None` when ACRO is not installed (and
/// not required).
fn acro_verdicts(dir: &std::path::Path) -> Option<Value> {
    let importable = Command::new(python())
        .args(["-c", "import acro"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !importable {
        let required = std::env::var_os("ANYU_REQUIRE_ACRO").is_some();
        assert!(
            !required,
            "ANYU_REQUIRE_ACRO is set but `{} -c 'import acro'` fails (pip install acro==1.0.2)",
            python()
        );
        eprintln!(
            "SKIPPED: ACRO is not importable (scripts/test installs it: pip install acro==1.0.2)"
        );
        return None;
    }
    let spec = dir.join("spec.json");
    let out = dir.join("acro.json");
    let tables: Vec<Value> = TABLES.iter().map(Table::spec).collect();
    std::fs::write(&spec, serde_json::to_vec(&tables).unwrap()).unwrap();
    let run = Command::new(python())
        .arg(repo("scripts/acro_verdicts.py"))
        .arg("--csv")
        .arg(repo("datasets/data/PUMS_pid.csv"))
        .arg("--spec")
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "acro_verdicts.py failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    Some(serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap())
}

/// The checks that decide verdicts in both tools (ACRO's linked-table and
/// required-zero checks always pass; its manual check marks no cell).
const COMPARED_CHECKS: &[&str] = &[
    "MinimumThresholdCheck",
    "PresenceOfZeroCheck",
    "NKCheck",
    "PPercentCheck",
];

#[derive(Default, Debug)]
struct Tally {
    cells: usize,
    absent: usize,
    released: usize,
    /// ACRO check → released cells it marks.
    checks_on_released: std::collections::BTreeMap<String, usize>,
    /// Released cells the differencing rule sent to review (not compared).
    differencing_reviews: usize,
    /// Cells Anyu withheld for too few contributors where ACRO does not fail.
    stricter: usize,
}

/// Compares Anyu's job on `table` with ACRO's cells; returns the disagreements.
fn compare(
    table: &Table,
    ran: &Ran,
    acro: &Value,
    compare_checks: bool,
    tally: &mut Tally,
) -> Vec<String> {
    let mut out = Vec::new();
    for (rule, v) in ran.whole_result() {
        out.push(format!(
            "{}: whole-result verdict {v:?} from {rule}",
            table.name
        ));
    }
    let cells = acro["cells"].as_array().expect("cells");
    // Anyu's groups must all be cells of ACRO's table.
    assert!(
        ran.rows.len() <= cells.len(),
        "{}: more groups than cells",
        table.name
    );
    for cell in cells {
        tally.cells += 1;
        let keys: Vec<(&str, i64)> = table
            .keys()
            .into_iter()
            .map(|k| (k, cell["keys"][k].as_i64().expect("integer key")))
            .collect();
        let acro_verdict = cell["verdict"].as_str().expect("verdict");
        let acro_checks: BTreeSet<&str> = cell["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .filter_map(Value::as_str)
            .filter(|c| COMPARED_CHECKS.contains(c))
            .collect();
        let at = format!("{}: cell {keys:?}", table.name);
        let Some(row) = ran.row_of(&keys) else {
            tally.absent += 1;
            if acro_status(ABSENT_CELL) != acro_verdict {
                out.push(format!(
                    "{at}: ACRO {acro_verdict} {acro_checks:?}, Anyu dropped the group"
                ));
            }
            continue;
        };
        tally.released += 1;
        for c in &acro_checks {
            *tally.checks_on_released.entry(c.to_string()).or_default() += 1;
        }
        let (rules, differencing): (Vec<(&str, Verdict)>, Vec<_>) = ran
            .rules_on(row, "v")
            .into_iter()
            .partition(|(r, _)| *r != "differencing");
        tally.differencing_reviews += usize::from(!differencing.is_empty());
        let ours = rules.iter().map(|(_, v)| *v).max().unwrap_or(Verdict::Pass);
        // Anyu withholds a SUM/AVG cell with fewer than `threshold` persons of
        // non-zero value (an indicator sum is a count); ACRO counts rows with
        // any value. Stricter than ACRO is acceptable, looser is not.
        let withheld = rules.iter().any(|(r, _)| *r == "contributors");
        if withheld && acro_verdict != "fail" {
            tally.stricter += 1;
            continue;
        }
        if acro_status(ours) != acro_verdict {
            out.push(format!(
                "{at}: ACRO {acro_verdict} {acro_checks:?}, Anyu {} {rules:?}",
                acro_status(ours)
            ));
            continue;
        }
        if compare_checks {
            let our_checks: BTreeSet<&str> = rules
                .iter()
                .filter(|(_, v)| *v != Verdict::Pass)
                .filter_map(|(r, _)| acro_check(r))
                .collect();
            if our_checks != acro_checks {
                out.push(format!(
                    "{at}: same verdict {acro_verdict}, but ACRO checks {acro_checks:?}, Anyu rules {rules:?}"
                ));
            }
        }
    }
    out
}

async fn agree(manifest_text: &str, acro: &Value, compare_checks: bool) -> Tally {
    // Anyu's policy for the test is ACRO's configuration, key by key.
    let manifest = Manifest::parse_with(manifest_text, &GradeScale::default()).unwrap();
    let policy = manifest.effective_policy(&GradeScale::default());
    let differences = config_differences(&policy, &acro["config"]);
    assert!(
        differences.is_empty(),
        "policy differs from ACRO's configuration: {differences:?}"
    );

    let lab = Lab::new().await;
    let grant = lab
        .dataset(manifest_text, &repo("datasets/data/PUMS_pid.csv"))
        .await;
    let mut tally = Tally::default();
    let mut disagreements = Vec::new();
    let acro_tables = acro["tables"].as_array().expect("tables");
    assert_eq!(acro_tables.len(), TABLES.len());
    for (table, theirs) in TABLES.iter().zip(acro_tables) {
        assert_eq!(theirs["name"], table.name);
        let ran = lab.run(&grant, &table.sql()).await;
        disagreements.extend(compare(table, &ran, theirs, compare_checks, &mut tally));
    }
    eprintln!("{tally:?}");
    assert!(
        disagreements.is_empty(),
        "Anyu and ACRO disagree on {} of {} cells:\n{}",
        disagreements.len(),
        tally.cells,
        disagreements.join("\n")
    );
    tally
}

fn pums_manifest() -> String {
    std::fs::read_to_string(repo("datasets/manifests/pums.toml")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verdicts_equal_acro_on_pums_crosstabs() {
    let dir = tempfile::tempdir().unwrap();
    let Some(acro) = acro_verdicts(dir.path()) else {
        return;
    };
    assert_eq!(
        acro["acro_version"].as_str().map(|v| v.starts_with("1.")),
        Some(true)
    );

    // As shipped: small groups dropped by the aggregation threshold.
    let shipped = pums_manifest();
    let tally = agree(&shipped, &acro, false).await;
    assert!(tally.absent > 0 && tally.released > 0, "{tally:?}");

    // Aggregation threshold 1: every non-empty cell meets the rules; checks compared too.
    let low = shipped
        .replace("grade = \"L3\"", "grade = \"L1\"")
        .replace("\nthreshold = 10\n", "\nthreshold = 1\n");
    assert_ne!(low, shipped);
    let tally = agree(&low, &acro, true).await;
    // The comparison exercised every check on released cells.
    for check in COMPARED_CHECKS
        .iter()
        .filter(|c| **c != "PresenceOfZeroCheck")
    {
        assert!(
            tally.checks_on_released.get(*check).copied().unwrap_or(0) > 0,
            "no released cell exercised {check}: {tally:?}"
        );
    }
}
