//! Catalog manifests: the sample manifests parse, the canonical form is locked,
//! every kind of bad manifest is refused naming its field, grades tighten the
//! policy, and catalog search matches what it should.

use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use enclave::catalog::*;
use proptest::prelude::*;

fn manifest_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/manifests")
        .join(name)
}

fn manifest_text(name: &str) -> String {
    std::fs::read_to_string(manifest_path(name)).expect("sample manifest is readable")
}

fn social_insurance() -> Manifest {
    Manifest::parse(&manifest_text("social_insurance.toml")).expect("social_insurance.toml parses")
}

fn pums() -> Manifest {
    Manifest::parse(&manifest_text("pums.toml")).expect("pums.toml parses")
}

/// 1-based line of the first line containing `needle`.
fn line_containing(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in text"))
        + 1
}

#[test]
fn social_insurance_parses_as_written() {
    let m = social_insurance();
    assert_eq!(m.format_version, 1);
    assert_eq!(m.id(), "social_insurance");
    assert_eq!(m.dataset.open_type, OpenType::Conditional);
    assert_eq!(m.dataset.grade, "L3");
    assert_eq!(m.dataset.update_frequency, UpdateFrequency::Monthly);
    assert_eq!(
        m.dataset.sharing_type,
        Some(SharingType::ConditionalSharing)
    );
    assert_eq!(
        m.dataset
            .departments
            .as_ref()
            .and_then(|d| d.approving.as_deref()),
        Some("深圳市政务服务数据管理局")
    );
    assert_eq!(
        m.conditions.user.organisation_types,
        vec![
            OrganisationType::University,
            OrganisationType::ResearchInstitute,
            OrganisationType::Government
        ]
    );
    assert_eq!(m.conditions.user.credit.len(), 3);
    assert_eq!(
        m.conditions.scenario.forbidden,
        vec!["marketing", "credit_scoring"]
    );
    assert_eq!(
        m.conditions.usage_methods,
        vec![
            UsageMethod::InDomain,
            UsageMethod::Invisible,
            UsageMethod::ModelResults
        ]
    );
    assert_eq!(m.columns.len(), 8);
    let pu = m.privacy_unit_column().expect("privacy unit column");
    assert_eq!(
        (pu.name.as_str(), pu.format, pu.nullable),
        ("person_id", Some(IdFormat::ResidentId), false)
    );
    // nullable defaults to true; integer bounds read as floats.
    let months = m.column("months_contributed").unwrap();
    assert!(months.nullable);
    assert_eq!(
        months.bounds,
        Some(Bounds {
            min: 0.0,
            max: 600.0
        })
    );
    assert_eq!(
        m.column("sex").unwrap().categories.as_deref(),
        Some(&["男".to_owned(), "女".to_owned()][..])
    );
    assert!(m.column("nope").is_none());
    assert_eq!(
        m.disclosure,
        DisclosurePolicy {
            allow_joins_on: vec!["person_id".into(), "employer_credit_code".into()],
            ..DisclosurePolicy::default()
        }
    );
}

#[test]
fn pums_parses_and_matches_the_csv_header() {
    let m = pums();
    assert_eq!(m.id(), "pums");
    assert_eq!(m.dataset.open_type, OpenType::Conditional);
    assert_eq!(m.dataset.grade, "L3");
    assert!(!m.disclosure.auto_release);
    assert_eq!(m.conditions.usage_methods.len(), 3);
    let pid = m.privacy_unit_column().unwrap();
    assert_eq!(
        (pid.name.as_str(), pid.sensitivity, pid.nullable),
        ("pid", Sensitivity::Identifier, false)
    );

    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/data/PUMS_pid.csv");
    if let Ok(text) = std::fs::read_to_string(&csv) {
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let names: Vec<&str> = m.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, header);
    }
}

#[test]
fn from_path_reads_files_and_names_unreadable_ones() {
    let m = Manifest::from_path(&manifest_path("pums.toml"), &GradeScale::default()).unwrap();
    assert_eq!(m, pums());
    let err =
        Manifest::from_path(Path::new("/nonexistent/x.toml"), &GradeScale::default()).unwrap_err();
    assert!(
        err.message.starts_with("cannot read /nonexistent/x.toml"),
        "{err}"
    );
}

#[test]
fn canonical_form_is_locked() {
    insta::assert_snapshot!("social_insurance_canonical", social_insurance().to_toml());
    insta::assert_snapshot!("pums_canonical", pums().to_toml());
}

#[test]
fn canonical_form_round_trips() {
    for m in [social_insurance(), pums()] {
        let text = m.to_toml();
        let again = Manifest::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(again, m);
        assert_eq!(again.to_toml(), text, "canonical form is a fixed point");
    }
}

#[test]
fn arrow_schema_follows_the_manifest() {
    let schema = social_insurance().arrow_schema();
    let fields: Vec<(&str, DataType, bool)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().as_str(), f.data_type().clone(), f.is_nullable()))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("person_id", DataType::Utf8, false),
            ("name", DataType::Utf8, false),
            ("sex", DataType::Utf8, true),
            ("birth_date", DataType::Date32, true),
            ("district", DataType::Utf8, true),
            ("employer_credit_code", DataType::Utf8, true),
            ("contribution_base", DataType::Float64, true),
            ("months_contributed", DataType::Int64, true),
        ]
    );
    assert_eq!(ColumnType::Bool.arrow_type(), DataType::Boolean);
    assert_eq!(
        ColumnType::Timestamp.arrow_type(),
        DataType::Timestamp(TimeUnit::Microsecond, None)
    );
}

#[test]
fn omitted_optional_sections_take_defaults() {
    // An unconditional dataset needs neither conditions, privacy unit nor disclosure block.
    let text = r#"
format_version = 1
[dataset]
id = "open_data"
title = { zh = "开放数据", en = "Open data" }
summary = { zh = "摘要", en = "Summary" }
provider = "某局"
update_frequency = "yearly"
format = "table"
open_type = "unconditional"
grade = "L1"
[[columns]]
name = "x"
type = "int64"
description = { zh = "x", en = "x" }
sensitivity = "attribute"
[disclosure]
nk = { n = 3 }
row_level_output = true
"#;
    let m = Manifest::parse(text).unwrap();
    assert_eq!(m.conditions, OpenConditions::default());
    assert_eq!(m.dataset.privacy_unit, None);
    assert!(m.dataset.tags.is_empty());
    assert_eq!(m.disclosure.nk, NkRule { n: 3, k: 0.9 });
    assert!(m.disclosure.row_level_output);
    assert_eq!(m.disclosure.threshold, 10);
    assert_eq!(m.disclosure.dp, DpPolicy::default());
    assert_eq!(Manifest::parse(&m.to_toml()).unwrap(), m);
}

/// One bad manifest: a text edit of social_insurance.toml and the field it breaks.
struct Bad {
    kind: &'static str,
    from: &'static str,
    to: &'static str,
    field: &'static str,
}

const fn bad(kind: &'static str, from: &'static str, to: &'static str, field: &'static str) -> Bad {
    Bad {
        kind,
        from,
        to,
        field,
    }
}

const SEX_COLUMN: &str = "name = \"sex\"\ntype = \"string\"";
const MONTHS_BOUNDS: &str = "bounds = { min = 0, max = 600 }";

fn bad_manifests() -> Vec<Bad> {
    vec![
        bad("syntax error", "title = {", "title = {{", ""),
        bad(
            "future format version",
            "format_version = 1",
            "format_version = 2",
            "format_version",
        ),
        bad(
            "format version not an integer",
            "format_version = 1",
            "format_version = \"1\"",
            "format_version",
        ),
        bad(
            "missing format version",
            "format_version = 1",
            "",
            "format_version",
        ),
        bad(
            "unknown key",
            "grade = \"L3\"",
            "grade = \"L3\"\ncolour = \"red\"",
            "dataset.colour",
        ),
        bad(
            "unknown key in a column",
            MONTHS_BOUNDS,
            "bounds = { min = 0, max = 600, step = 1 }",
            "columns[7].bounds.step",
        ),
        bad(
            "unknown enum value",
            "update_frequency = \"monthly\"",
            "update_frequency = \"monthy\"",
            "dataset.update_frequency",
        ),
        bad(
            "unknown open type",
            "open_type = \"conditional\"",
            "open_type = \"restricted\"",
            "dataset.open_type",
        ),
        bad(
            "unknown sensitivity",
            "sensitivity = \"sensitive\"",
            "sensitivity = \"secret\"",
            "columns[6].sensitivity",
        ),
        bad(
            "unknown usage method",
            "\"invisible\", \"model_results\"]",
            "\"invisible\", \"download\"]",
            "conditions.usage_methods[2]",
        ),
        bad(
            "wrong value type",
            "\nthreshold = 10",
            "\nthreshold = \"ten\"",
            "disclosure.threshold",
        ),
        bad(
            "negative count",
            "nk = { n = 2, k = 0.9 }",
            "nk = { n = -2, k = 0.9 }",
            "disclosure.nk.n",
        ),
        bad(
            "missing required key",
            "title = { zh = \"社会保险参保缴费记录\", en = \"Social insurance contributions\" }\n",
            "",
            "dataset.title",
        ),
        bad(
            "missing column description",
            "description = { zh = \"姓名\", en = \"Name\" }\n",
            "",
            "columns[1].description",
        ),
        bad(
            "bad dataset id",
            "id = \"social_insurance\"",
            "id = \"Social-Insurance\"",
            "dataset.id",
        ),
        bad(
            "empty English title",
            "en = \"Social insurance contributions\"",
            "en = \"  \"",
            "dataset.title.en",
        ),
        bad(
            "empty Chinese summary",
            "summary = { zh = \"深圳市职工社会保险参保人员的缴费基数与缴费月数（按人记录）。\"",
            "summary = { zh = \"\"",
            "dataset.summary.zh",
        ),
        bad(
            "unknown grade",
            "grade = \"L3\"",
            "grade = \"L5\"",
            "dataset.grade",
        ),
        bad(
            "duplicate tag",
            "tags = [\"社保\", \"就业\"]",
            "tags = [\"社保\", \"社保\"]",
            "dataset.tags[1]",
        ),
        bad(
            "missing privacy unit",
            "privacy_unit = \"person_id\"",
            "",
            "dataset.privacy_unit",
        ),
        bad(
            "privacy unit not a column",
            "privacy_unit = \"person_id\"",
            "privacy_unit = \"pid\"",
            "dataset.privacy_unit",
        ),
        bad(
            "nullable privacy unit",
            "format = \"resident_id\"              # optional: resident_id | credit_code (checked by the quality report)\nnullable = false",
            "format = \"resident_id\"",
            "dataset.privacy_unit",
        ),
        bad(
            "bad column name",
            "name = \"birth_date\"",
            "name = \"Birth Date\"",
            "columns[3].name",
        ),
        bad(
            "duplicate column",
            "name = \"district\"",
            "name = \"sex\"",
            "columns[4].name",
        ),
        bad(
            "bounds on a string column",
            SEX_COLUMN,
            "name = \"sex\"\ntype = \"string\"\nbounds = { min = 0, max = 1 }",
            "columns[2].bounds",
        ),
        bad(
            "bounds min above max",
            MONTHS_BOUNDS,
            "bounds = { min = 5, max = 1 }",
            "columns[7].bounds",
        ),
        bad(
            "bounds not finite",
            MONTHS_BOUNDS,
            "bounds = { min = 0, max = inf }",
            "columns[7].bounds",
        ),
        bad(
            "format on a numeric column",
            MONTHS_BOUNDS,
            "format = \"resident_id\"",
            "columns[7].format",
        ),
        bad(
            "empty categories",
            "categories = [\"男\", \"女\"]",
            "categories = []",
            "columns[2].categories",
        ),
        bad(
            "duplicate category",
            "categories = [\"男\", \"女\"]",
            "categories = [\"男\", \"男\"]",
            "columns[2].categories[1]",
        ),
        bad(
            "duplicate organisation type",
            "organisation_types = [\"university\", \"research_institute\"",
            "organisation_types = [\"university\", \"university\"",
            "conditions.user.organisation_types[1]",
        ),
        bad(
            "scenario not a slug",
            "\"public_health\"]",
            "\"Public Health\"]",
            "conditions.scenario.allowed[2]",
        ),
        bad(
            "scenario allowed and forbidden",
            "forbidden = [\"marketing\"",
            "forbidden = [\"public_policy\"",
            "conditions.scenario.forbidden[0]",
        ),
        bad(
            "conditional without usage methods",
            "usage_methods = [\"in_domain\", \"invisible\", \"model_results\"]",
            "usage_methods = []",
            "conditions.usage_methods",
        ),
        bad(
            "duplicate usage method",
            "usage_methods = [\"in_domain\", \"invisible\"",
            "usage_methods = [\"in_domain\", \"in_domain\"",
            "conditions.usage_methods[1]",
        ),
        bad(
            "zero threshold",
            "\nthreshold = 10",
            "\nthreshold = 0",
            "disclosure.threshold",
        ),
        bad(
            "nk.n zero",
            "nk = { n = 2, k = 0.9 }",
            "nk = { n = 0, k = 0.9 }",
            "disclosure.nk.n",
        ),
        bad(
            "nk.k above one",
            "nk = { n = 2, k = 0.9 }",
            "nk = { n = 2, k = 1.5 }",
            "disclosure.nk.k",
        ),
        bad(
            "nk.k not a number",
            "nk = { n = 2, k = 0.9 }",
            "nk = { n = 2, k = nan }",
            "disclosure.nk.k",
        ),
        bad(
            "p ratio of one",
            "p_ratio = 0.1",
            "p_ratio = 1.0",
            "disclosure.p_ratio",
        ),
        bad(
            "zero max output rows",
            "max_output_rows = 10000",
            "max_output_rows = 0",
            "disclosure.max_output_rows",
        ),
        bad(
            "auto release above the grade",
            "auto_release = false",
            "auto_release = true",
            "disclosure.auto_release",
        ),
        bad(
            "row-level output of conditional data",
            "row_level_output = false",
            "row_level_output = true",
            "disclosure.row_level_output",
        ),
        bad(
            "join on unknown column",
            "allow_joins_on = [\"person_id\", \"employer_credit_code\"]",
            "allow_joins_on = [\"person_id\", \"employer\"]",
            "disclosure.allow_joins_on[1]",
        ),
        bad(
            "zero epsilon",
            "epsilon_budget = 10.0",
            "epsilon_budget = 0.0",
            "disclosure.dp.epsilon_budget",
        ),
        bad(
            "infinite epsilon",
            "epsilon_budget = 10.0",
            "epsilon_budget = inf",
            "disclosure.dp.epsilon_budget",
        ),
        bad(
            "delta of one",
            "delta_budget = 1e-6",
            "delta_budget = 1.0",
            "disclosure.dp.delta_budget",
        ),
        bad(
            "zero max groups",
            "max_groups_contributed = 1",
            "max_groups_contributed = 0",
            "disclosure.dp.max_groups_contributed",
        ),
    ]
}

fn apply(base: &str, b: &Bad) -> String {
    assert_eq!(
        base.matches(b.from).count(),
        1,
        "{}: `{}` must occur exactly once",
        b.kind,
        b.from
    );
    base.replacen(b.from, b.to, 1)
}

#[test]
fn bad_manifests_are_refused_naming_the_field() {
    let base = manifest_text("social_insurance.toml");
    let mut report = String::new();
    for b in bad_manifests() {
        let err = match Manifest::parse(&apply(&base, &b)) {
            Ok(_) => panic!("{}: accepted", b.kind),
            Err(e) => e,
        };
        assert_eq!(err.field, b.field, "{}: {err}", b.kind);
        // Only a key missing at the top level has no line to point at.
        let expect_line = b.kind != "missing format version";
        assert_eq!(err.line.is_some(), expect_line, "{}: line of {err}", b.kind);
        report.push_str(&format!("{}: {err}\n", b.kind));
    }
    insta::assert_snapshot!("bad_manifest_errors", report);
}

#[test]
fn errors_point_at_the_right_line() {
    let base = manifest_text("social_insurance.toml");
    let cases = [
        ("bounds min above max", MONTHS_BOUNDS),
        ("unknown grade", "grade = "),
        ("nk.k above one", "nk = "),
        ("future format version", "format_version = 1"),
        ("bad column name", "name = \"birth_date\""),
        ("unknown key in a column", MONTHS_BOUNDS),
        ("unknown enum value", "update_frequency"),
        // A missing key is reported at its table's header.
        ("missing privacy unit", "[dataset]"),
        ("syntax error", "title = {"),
    ];
    let all = bad_manifests();
    for (kind, needle) in cases {
        let b = all.iter().find(|b| b.kind == kind).unwrap();
        let err = Manifest::parse(&apply(&base, b)).unwrap_err();
        assert_eq!(
            err.line,
            Some(line_containing(&base, needle)),
            "{kind}: {err}"
        );
    }
    let b = all
        .iter()
        .find(|b| b.kind == "bounds min above max")
        .unwrap();
    let err = Manifest::parse(&apply(&base, b)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "manifest field `columns[7].bounds`: min (5) is greater than max (1) (line {})",
            line_containing(&base, MONTHS_BOUNDS)
        )
    );
}

#[test]
fn only_the_first_error_is_reported() {
    let base = manifest_text("social_insurance.toml");
    let text = base
        .replace("grade = \"L3\"", "grade = \"L9\"")
        .replace("p_ratio = 0.1", "p_ratio = 2.0");
    let err = Manifest::parse(&text).unwrap_err();
    assert_eq!(err.field, "dataset.grade");
}

#[test]
fn grades_come_from_the_given_scale() {
    let text = manifest_text("social_insurance.toml");
    let scale = GradeScale {
        levels: vec![
            GradePolicy {
                name: "public".into(),
                min_threshold: 0,
                auto_release_allowed: true,
                row_level_output_allowed: true,
                reviewers_required: 1,
                joint_review: false,
                max_nk_k: None,
                min_p_ratio: None,
            },
            GradePolicy {
                name: "L3".into(),
                min_threshold: 50,
                auto_release_allowed: true,
                row_level_output_allowed: false,
                reviewers_required: 3,
                joint_review: true,
                max_nk_k: None,
                min_p_ratio: None,
            },
        ],
    };
    scale.validate().unwrap();
    // L3 of this scale allows auto-release, so the manifest may ask for it.
    let auto = text.replace("auto_release = false", "auto_release = true");
    let m = Manifest::parse_with(&auto, &scale).unwrap();
    assert!(m.effective_policy(&scale).auto_release);
    assert_eq!(m.effective_policy(&scale).threshold, 50);
    assert_eq!(
        Manifest::parse(&auto).unwrap_err().field,
        "disclosure.auto_release"
    );

    let other = text.replace("grade = \"L3\"", "grade = \"L2\"");
    let err = Manifest::parse_with(&other, &scale).unwrap_err();
    assert_eq!(err.field, "dataset.grade");
    assert_eq!(
        err.message,
        "unknown grade `L2`; the grade scale has public, L3"
    );
}

#[test]
fn grade_scale_loads_from_toml_and_checks_itself() {
    let text = r#"
[[levels]]
name = "open"
min_threshold = 0
auto_release_allowed = true
row_level_output_allowed = true
reviewers_required = 1
joint_review = false
"#;
    let scale: GradeScale = toml::from_str(text).unwrap();
    assert_eq!(scale.names(), vec!["open"]);
    scale.validate().unwrap();

    let mut twice = GradeScale::default();
    twice.levels.push(twice.levels[0].clone());
    assert_eq!(twice.validate().unwrap_err().field, "grades.levels[4].name");
    assert_eq!(
        GradeScale { levels: vec![] }.validate().unwrap_err().field,
        "grades.levels"
    );
    assert!(toml::from_str::<GradeScale>("[[levels]]\nname = \"x\"\nbogus = 1").is_err());
}

#[test]
fn effective_policy_is_tightened_by_grade() {
    let mut m = social_insurance();
    m.disclosure.threshold = 5;
    m.disclosure.frequency_threshold = 3;
    m.disclosure.auto_release = true;
    m.disclosure.row_level_output = true;
    let scale = GradeScale::default();
    let at = |grade: &str| {
        let mut m = m.clone();
        m.dataset.grade = grade.into();
        let p = m.effective_policy(&scale);
        (
            p.threshold,
            p.frequency_threshold,
            p.auto_release,
            p.row_level_output,
        )
    };
    assert_eq!(at("L1"), (5, 3, true, true));
    assert_eq!(at("L2"), (10, 10, true, false));
    assert_eq!(at("L3"), (10, 10, false, false));
    assert_eq!(at("L4"), (20, 20, false, false));
    // A grade the scale does not know gets the strictest treatment.
    assert_eq!(at("L9"), (20, 20, false, false));

    // Tightening never loosens, and leaves the other settings alone.
    m.disclosure.threshold = 50;
    m.disclosure.nk = NkRule { n: 3, k: 0.5 };
    m.dataset.grade = "L4".into();
    let p = m.effective_policy(&scale);
    assert_eq!(p.threshold, 50);
    assert_eq!(p.nk, NkRule { n: 3, k: 0.5 });
    assert_eq!(p.dp, m.disclosure.dp);
}

#[test]
fn default_policy_is_designs_table() {
    let p = DisclosurePolicy::default();
    assert_eq!(
        (p.threshold, p.frequency_threshold, p.dof_threshold),
        (10, 10, 10)
    );
    assert_eq!(p.nk, NkRule { n: 2, k: 0.9 });
    assert_eq!(p.p_ratio, 0.1);
    assert!(p.zeros_are_disclosive && !p.auto_release && !p.row_level_output);
    assert_eq!(p.max_output_rows, 10_000);
    assert_eq!(
        p.dp,
        DpPolicy {
            required: false,
            epsilon_budget: 10.0,
            delta_budget: 1e-6,
            max_groups_contributed: 1,
            max_rows_per_group: 1
        }
    );
    let names: Vec<_> = GradeScale::default()
        .levels
        .into_iter()
        .map(|g| (g.name, g.min_threshold, g.reviewers_required))
        .collect();
    assert_eq!(
        names,
        vec![
            ("L1".into(), 0, 1),
            ("L2".into(), 10, 1),
            ("L3".into(), 10, 2),
            ("L4".into(), 20, 2)
        ]
    );
}

#[test]
fn catalog_query_matching() {
    let si = social_insurance();
    let pums = pums();
    let q = |text: Option<&str>,
             provider: Option<&str>,
             open_type: Option<OpenType>,
             grade: Option<&str>| CatalogQuery {
        text: text.map(Into::into),
        provider: provider.map(Into::into),
        open_type,
        grade: grade.map(Into::into),
    };
    let hits = |query: &CatalogQuery| -> Vec<&str> {
        [&si, &pums]
            .into_iter()
            .filter(|m| query.matches(m))
            .map(|m| m.id())
            .collect()
    };
    assert_eq!(
        hits(&CatalogQuery::default()),
        vec!["social_insurance", "pums"]
    );
    assert_eq!(
        hits(&q(Some("   "), None, None, None)),
        vec!["social_insurance", "pums"]
    );
    assert_eq!(
        hits(&q(Some("SOCIAL insurance"), None, None, None)),
        vec!["social_insurance"]
    );
    assert_eq!(
        hits(&q(Some("缴费"), None, None, None)),
        vec!["social_insurance"]
    );
    assert_eq!(
        hits(&q(Some("社保"), None, None, None)),
        vec!["social_insurance"]
    );
    assert_eq!(
        hits(&q(Some("resident identity"), None, None, None)),
        vec!["social_insurance"]
    );
    assert_eq!(
        hits(&q(Some("months_contributed"), None, None, None)),
        vec!["social_insurance"]
    );
    assert_eq!(hits(&q(Some("microdata"), None, None, None)), vec!["pums"]);
    assert_eq!(
        hits(&q(Some("census bureau"), None, None, None)),
        vec!["pums"]
    );
    assert_eq!(hits(&q(Some("income"), None, None, None)), vec!["pums"]);
    assert_eq!(
        hits(&q(Some("no such thing"), None, None, None)),
        Vec::<&str>::new()
    );
    assert_eq!(
        hits(&q(None, Some("fund ADMINISTRATION"), None, None)),
        vec!["social_insurance"]
    );
    assert_eq!(
        hits(&q(None, Some("社会保险基金"), None, None)),
        vec!["social_insurance"]
    );
    assert_eq!(hits(&q(None, Some("人口普查"), None, None)), vec!["pums"]);
    assert_eq!(
        hits(&q(None, None, Some(OpenType::Conditional), Some("l3"))),
        vec!["social_insurance", "pums"]
    );
    assert_eq!(
        hits(&q(None, None, Some(OpenType::NotOpen), None)),
        Vec::<&str>::new()
    );
    assert_eq!(hits(&q(None, None, None, Some("L4"))), Vec::<&str>::new());
    // Every filter must match.
    assert_eq!(
        hits(&q(Some("income"), Some("社会保险"), None, None)),
        Vec::<&str>::new()
    );
    assert_eq!(
        hits(&q(
            Some("pid"),
            Some("census"),
            Some(OpenType::Conditional),
            Some("L3")
        )),
        vec!["pums"]
    );
}

#[test]
fn catalog_query_reads_from_a_query_string_shape() {
    let q: CatalogQuery = serde_json::from_str(r#"{"text":"x","open_type":"not_open"}"#).unwrap();
    assert_eq!(q.open_type, Some(OpenType::NotOpen));
    assert_eq!(q.provider, None);
}

#[test]
fn catalog_entries() {
    let m = pums();
    let full = CatalogEntry::from_manifest(&m);
    insta::assert_json_snapshot!("pums_catalog_entry", full);
    assert_eq!(full.columns.len(), 7);

    let short = CatalogEntry::name_only(&m);
    assert_eq!(
        (short.id.as_str(), short.grade.as_str(), short.open_type),
        ("pums", "L3", OpenType::Conditional)
    );
    assert_eq!(short.title, m.dataset.title);
    assert!(
        short.summary.is_none() && short.conditions.is_none() && short.update_frequency.is_none()
    );
    assert!(short.columns.is_empty() && short.tags.is_empty() && short.privacy_unit.is_none());
}

#[test]
fn error_display_forms() {
    let e = ManifestError::new("columns[2].bounds", "min (5) is greater than max (1)")
        .at_line(Some(57));
    assert_eq!(
        e.to_string(),
        "manifest field `columns[2].bounds`: min (5) is greater than max (1) (line 57)"
    );
    assert_eq!(
        ManifestError::new("dataset.id", "bad").to_string(),
        "manifest field `dataset.id`: bad"
    );
    let wrapped: enclave::Error = e.into();
    assert_eq!(wrapped.code(), "invalid_manifest");
}

fn text_strategy() -> impl Strategy<Value = String> {
    // Printable text including quotes, backslashes, `#`, `=` and CJK; never blank.
    "[a-z\"'\\\\#=\\[\\]{}\u{4e00}-\u{4e20} ]{0,20}".prop_map(|s| format!("t{s}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// to_toml() round-trips through parse for varied edits of the samples.
    #[test]
    fn canonical_form_round_trips_for_varied_manifests(
        pick_pums in any::<bool>(),
        title in text_strategy(),
        desc in text_strategy(),
        a in -1.0e12f64..1.0e12,
        b in -1.0e12f64..1.0e12,
        threshold in 1u64..1_000_000,
        k in 0.001f64..=1.0,
        p_ratio in 0.0f64..0.999,
        epsilon in 0.0001f64..1.0e6,
        delta in 0.0f64..0.5,
        tags in proptest::collection::btree_set("[a-z]{1,8}", 0..4),
        nullable in any::<bool>(),
    ) {
        let mut m = if pick_pums { pums() } else { social_insurance() };
        m.dataset.title.en = title.clone();
        m.dataset.summary.zh = title;
        m.dataset.tags = tags.into_iter().collect();
        let last = m.columns.len() - 1;
        m.columns[last].description.zh = desc;
        // Bounds sit on a column that is not the privacy unit.
        let numeric = m.columns.iter().position(|c| c.bounds.is_some()).unwrap();
        m.columns[numeric].bounds = Some(Bounds { min: a.min(b), max: a.max(b) });
        m.columns[numeric].nullable = nullable;
        m.disclosure.threshold = threshold;
        m.disclosure.nk.k = k;
        m.disclosure.p_ratio = p_ratio;
        m.disclosure.dp.epsilon_budget = epsilon;
        m.disclosure.dp.delta_budget = delta;
        m.validate(&GradeScale::default()).unwrap();
        let text = m.to_toml();
        let again = Manifest::parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(again, m);
    }
}
