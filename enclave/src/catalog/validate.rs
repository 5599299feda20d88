//! The rules of the manifest format beyond what its types enforce.
//!
//! Checks run in a fixed order (version, dataset, columns, conditions,
//! disclosure) and stop at the first failure, so one manifest always gets the
//! same single message.

use std::collections::HashSet;
use std::hash::Hash;

use super::error::ManifestError;
use super::grade::GradeScale;
use super::manifest::{Column, FORMAT_VERSION, Manifest, OpenType, Text};

type Check = Result<(), ManifestError>;

fn fail(field: impl Into<String>, message: impl Into<String>) -> Check {
    Err(ManifestError::new(field, message))
}

/// Returns the first rule `m` breaks.
pub(crate) fn validate(m: &Manifest, grades: &GradeScale) -> Check {
    if m.format_version != FORMAT_VERSION {
        return fail(
            "format_version",
            format!(
                "unsupported format version {}; this build reads format version {FORMAT_VERSION}",
                m.format_version
            ),
        );
    }
    dataset(m, grades)?;
    columns(m)?;
    privacy_unit(m)?;
    conditions(m)?;
    disclosure(m, grades)
}

/// `[a-z][a-z0-9_]{1,63}`: usable as a table name and a file name.
pub fn is_dataset_id(s: &str) -> bool {
    let b = s.as_bytes();
    (2..=64).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// `[a-z_][a-z0-9_]*`: a SQL identifier that needs no quoting.
fn is_column_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// `[a-z][a-z0-9_]*`: a scenario category slug.
fn is_slug(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

fn non_empty(field: &str, value: &str) -> Check {
    if value.trim().is_empty() {
        return fail(field, "must not be empty");
    }
    Ok(())
}

fn text(field: &str, t: &Text) -> Check {
    non_empty(&format!("{field}.zh"), &t.zh)?;
    non_empty(&format!("{field}.en"), &t.en)
}

/// Index of the first element equal to an earlier one.
fn first_duplicate<T: Eq + Hash>(items: impl IntoIterator<Item = T>) -> Option<usize> {
    let mut seen = HashSet::new();
    items.into_iter().position(|x| !seen.insert(x))
}

/// Every element of a string list non-empty, no element twice.
fn string_list(field: &str, items: &[String], what: &str) -> Check {
    if let Some(i) = items.iter().position(|s| s.trim().is_empty()) {
        return fail(format!("{field}[{i}]"), "must not be empty");
    }
    if let Some(i) = first_duplicate(items) {
        return fail(
            format!("{field}[{i}]"),
            format!("{what} `{}` is listed twice", items[i]),
        );
    }
    Ok(())
}

fn dataset(m: &Manifest, grades: &GradeScale) -> Check {
    let d = &m.dataset;
    if !is_dataset_id(&d.id) {
        return fail(
            "dataset.id",
            "must match [a-z][a-z0-9_]{1,63} (lower-case letter, then 1 to 63 lower-case letters, digits or underscores)",
        );
    }
    text("dataset.title", &d.title)?;
    text("dataset.summary", &d.summary)?;
    non_empty("dataset.provider", &d.provider)?;
    if let Some(en) = &d.provider_en {
        non_empty("dataset.provider_en", en)?;
    }
    if grades.get(&d.grade).is_none() {
        return fail(
            "dataset.grade",
            format!(
                "unknown grade `{}`; the grade scale has {}",
                d.grade,
                grades.names().join(", ")
            ),
        );
    }
    if let Some(scope) = &d.scope {
        non_empty("dataset.scope", scope)?;
    }
    if let Some(deps) = &d.departments {
        let named = [
            ("collecting", &deps.collecting),
            ("approving", &deps.approving),
            ("providing", &deps.providing),
        ];
        for (key, value) in named {
            if let Some(v) = value {
                non_empty(&format!("dataset.departments.{key}"), v)?;
            }
        }
    }
    string_list("dataset.tags", &d.tags, "tag")
}

fn columns(m: &Manifest) -> Check {
    if m.columns.is_empty() {
        return fail("columns", "at least one column is required");
    }
    for (i, c) in m.columns.iter().enumerate() {
        let field = format!("columns[{i}]");
        column(&field, c)?;
        if m.columns[..i].iter().any(|o| o.name == c.name) {
            return fail(
                format!("{field}.name"),
                format!("column `{}` is defined twice", c.name),
            );
        }
    }
    Ok(())
}

fn column(field: &str, c: &Column) -> Check {
    if !is_column_name(&c.name) {
        return fail(
            format!("{field}.name"),
            "must be a plain SQL identifier matching [a-z_][a-z0-9_]*",
        );
    }
    text(&format!("{field}.description"), &c.description)?;
    if let Some(b) = &c.bounds {
        let f = format!("{field}.bounds");
        if !c.data_type.is_numeric() {
            return fail(f, "bounds are only allowed on int64 and float64 columns");
        }
        if !b.min.is_finite() || !b.max.is_finite() {
            return fail(f, "min and max must be finite numbers");
        }
        if b.min > b.max {
            return fail(
                f,
                format!("min ({}) is greater than max ({})", b.min, b.max),
            );
        }
    }
    if c.format.is_some() && c.data_type != super::manifest::ColumnType::String {
        return fail(
            format!("{field}.format"),
            "an identifier format is only allowed on string columns",
        );
    }
    if let Some(cats) = &c.categories {
        let f = format!("{field}.categories");
        if c.data_type != super::manifest::ColumnType::String {
            return fail(f, "categories are only allowed on string columns");
        }
        if cats.is_empty() {
            return fail(f, "must list at least one category when present");
        }
        string_list(&f, cats, "category")?;
    }
    Ok(())
}

fn privacy_unit(m: &Manifest) -> Check {
    let field = "dataset.privacy_unit";
    let Some(name) = &m.dataset.privacy_unit else {
        if m.dataset.open_type == OpenType::Unconditional {
            return Ok(());
        }
        return fail(field, "is required unless open_type is \"unconditional\"");
    };
    let Some(col) = m.column(name) else {
        return fail(field, format!("names `{name}`, which is not a column"));
    };
    // Every row must belong to a subject, or distinct-unit thresholds and DP
    // contribution bounds undercount.
    if col.nullable {
        return fail(
            field,
            format!("column `{name}` is the privacy unit and must be declared nullable = false"),
        );
    }
    Ok(())
}

fn conditions(m: &Manifest) -> Check {
    let c = &m.conditions;
    if let Some(i) = first_duplicate(&c.user.organisation_types) {
        return fail(
            format!("conditions.user.organisation_types[{i}]"),
            "organisation type is listed twice",
        );
    }
    if let Some(i) = first_duplicate(&c.user.credit) {
        return fail(
            format!("conditions.user.credit[{i}]"),
            "credit requirement is listed twice",
        );
    }
    string_list(
        "conditions.user.qualifications",
        &c.user.qualifications,
        "qualification",
    )?;
    for (key, list) in [
        ("allowed", &c.scenario.allowed),
        ("forbidden", &c.scenario.forbidden),
    ] {
        let field = format!("conditions.scenario.{key}");
        if let Some(i) = list.iter().position(|s| !is_slug(s)) {
            return fail(
                format!("{field}[{i}]"),
                "must be a scenario slug matching [a-z][a-z0-9_]*",
            );
        }
        string_list(&field, list, "scenario")?;
    }
    if let Some(i) = c
        .scenario
        .forbidden
        .iter()
        .position(|s| c.scenario.allowed.contains(s))
    {
        return fail(
            format!("conditions.scenario.forbidden[{i}]"),
            format!(
                "scenario `{}` is both allowed and forbidden",
                c.scenario.forbidden[i]
            ),
        );
    }
    if m.dataset.open_type == OpenType::Conditional && c.usage_methods.is_empty() {
        return fail(
            "conditions.usage_methods",
            "conditional data needs at least one usage method",
        );
    }
    if let Some(i) = first_duplicate(&c.usage_methods) {
        return fail(
            format!("conditions.usage_methods[{i}]"),
            "usage method is listed twice",
        );
    }
    Ok(())
}

fn disclosure(m: &Manifest, grades: &GradeScale) -> Check {
    let p = &m.disclosure;
    let open = m.dataset.open_type;
    if open != OpenType::Unconditional && p.threshold < 1 {
        return fail(
            "disclosure.threshold",
            "must be at least 1 for data that is not unconditionally open",
        );
    }
    if p.nk.n < 1 {
        return fail("disclosure.nk.n", "must be at least 1");
    }
    if !(p.nk.k > 0.0 && p.nk.k <= 1.0) {
        return fail(
            "disclosure.nk.k",
            format!("must be in (0, 1], got {}", p.nk.k),
        );
    }
    if !(p.p_ratio >= 0.0 && p.p_ratio < 1.0) {
        return fail(
            "disclosure.p_ratio",
            format!("must be in [0, 1), got {}", p.p_ratio),
        );
    }
    if p.max_output_rows < 1 {
        return fail("disclosure.max_output_rows", "must be at least 1");
    }
    let grade = grades.get(&m.dataset.grade);
    if p.auto_release && grade.is_some_and(|g| !g.auto_release_allowed) {
        return fail(
            "disclosure.auto_release",
            format!("grade {} does not allow automatic release", m.dataset.grade),
        );
    }
    if p.row_level_output {
        if open != OpenType::Unconditional {
            return fail(
                "disclosure.row_level_output",
                "row-level output is only allowed for unconditional data",
            );
        }
        if grade.is_some_and(|g| !g.row_level_output_allowed) {
            return fail(
                "disclosure.row_level_output",
                format!("grade {} does not allow row-level output", m.dataset.grade),
            );
        }
    }
    for (i, name) in p.allow_joins_on.iter().enumerate() {
        if m.column(name).is_none() {
            return fail(
                format!("disclosure.allow_joins_on[{i}]"),
                format!("`{name}` is not a column"),
            );
        }
    }
    if let Some(i) = first_duplicate(&p.allow_joins_on) {
        return fail(
            format!("disclosure.allow_joins_on[{i}]"),
            "column is listed twice",
        );
    }
    let dp = &p.dp;
    if !(dp.epsilon_budget.is_finite() && dp.epsilon_budget > 0.0) {
        return fail(
            "disclosure.dp.epsilon_budget",
            format!(
                "must be a finite number greater than 0, got {}",
                dp.epsilon_budget
            ),
        );
    }
    if !(dp.delta_budget >= 0.0 && dp.delta_budget < 1.0) {
        return fail(
            "disclosure.dp.delta_budget",
            format!("must be in [0, 1), got {}", dp.delta_budget),
        );
    }
    if dp.max_rows_per_group < 1 {
        return fail("disclosure.dp.max_rows_per_group", "must be at least 1");
    }
    if dp.max_groups_contributed < 1 {
        return fail("disclosure.dp.max_groups_contributed", "must be at least 1");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_patterns() {
        assert!(is_dataset_id("ab"));
        assert!(is_dataset_id("social_insurance"));
        assert!(!is_dataset_id("a"));
        assert!(!is_dataset_id("1ab"));
        assert!(!is_dataset_id("Social"));
        assert!(!is_dataset_id(&"a".repeat(65)));
        assert!(is_dataset_id(&"a".repeat(64)));
        assert!(is_column_name("_x1"));
        assert!(!is_column_name("x-y"));
        assert!(!is_column_name("姓名"));
        assert!(!is_slug("_x"));
        assert!(is_slug("public_health"));
    }
}
