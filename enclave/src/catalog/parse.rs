//! Text ⇄ [`Manifest`]: TOML parsing with field paths and line numbers, and
//! the canonical serialisation.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::ManifestError;
use super::grade::GradeScale;
use super::manifest::{FORMAT_VERSION, Manifest};

/// Parses `text`, checks its format version, deserialises and validates it.
pub(crate) fn parse(text: &str, grades: &GradeScale) -> Result<Manifest, ManifestError> {
    let doc = DeTable::parse(text).map_err(|e| {
        ManifestError::new("", e.message().to_owned())
            .at_line(e.span().map(|s| line_of(text, s.start)))
    })?;
    let located = Located { text, doc: &doc };
    check_version(&located)?;
    let manifest: Manifest = toml::from_str(text).map_err(|e| located.serde_error(&e))?;
    manifest.validate(grades).map_err(|e| {
        let line = located.line_of_path(&e.field);
        e.at_line(line)
    })?;
    Ok(manifest)
}

/// The version is checked before anything else so that a manifest of another
/// format version is refused as such, not for the fields it may have changed.
fn check_version(located: &Located<'_>) -> Result<(), ManifestError> {
    let field = "format_version";
    let Some((key, value)) = located.doc.get_ref().get_key_value(field) else {
        return Err(ManifestError::new(
            field,
            format!("missing; this build reads format version {FORMAT_VERSION}"),
        ));
    };
    let line = Some(line_of(located.text, key.span().start));
    let version = match value.get_ref() {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    };
    match version {
        Some(v) if v == i64::from(FORMAT_VERSION) => Ok(()),
        Some(v) => Err(ManifestError::new(
            field,
            format!(
                "unsupported format version {v}; this build reads format version {FORMAT_VERSION}"
            ),
        )
        .at_line(line)),
        None => Err(ManifestError::new(field, "must be an integer").at_line(line)),
    }
}

/// Canonical TOML form of a manifest: the spec file's layout (one section per
/// table, small structs as inline tables), every key explicit, fields in
/// declaration order. Written by hand because toml's document serialiser
/// expands every nested struct into its own `[section]`.
pub(crate) fn to_toml(m: &Manifest) -> String {
    let mut w = Writer::default();
    w.line("# Anyu catalog manifest, canonical form.");
    w.kv("format_version", &m.format_version);

    let d = &m.dataset;
    w.section("[dataset]");
    w.kv("id", &d.id);
    w.kv("title", &d.title);
    w.kv("summary", &d.summary);
    w.kv("provider", &d.provider);
    w.opt("provider_en", &d.provider_en);
    w.kv("update_frequency", &d.update_frequency);
    w.kv("format", &d.format);
    w.kv("open_type", &d.open_type);
    w.kv("grade", &d.grade);
    w.opt("sharing_type", &d.sharing_type);
    w.opt("scope", &d.scope);
    w.opt("departments", &d.departments);
    w.opt("privacy_unit", &d.privacy_unit);
    w.kv("tags", &d.tags);

    let c = &m.conditions;
    w.section("[conditions]");
    w.kv("usage_methods", &c.usage_methods);
    w.section("[conditions.user]");
    w.kv("organisation_types", &c.user.organisation_types);
    w.kv("credit", &c.user.credit);
    w.kv("qualifications", &c.user.qualifications);
    w.section("[conditions.scenario]");
    w.kv("allowed", &c.scenario.allowed);
    w.kv("forbidden", &c.scenario.forbidden);

    for col in &m.columns {
        w.section("[[columns]]");
        w.kv("name", &col.name);
        w.kv("type", &col.data_type);
        w.kv("description", &col.description);
        w.kv("sensitivity", &col.sensitivity);
        w.opt("format", &col.format);
        w.kv("nullable", &col.nullable);
        w.opt("bounds", &col.bounds);
        w.opt("categories", &col.categories);
    }

    let p = &m.disclosure;
    w.section("[disclosure]");
    w.kv("threshold", &p.threshold);
    w.kv("frequency_threshold", &p.frequency_threshold);
    w.kv("nk", &p.nk);
    w.kv("p_ratio", &p.p_ratio);
    w.kv("zeros_are_disclosive", &p.zeros_are_disclosive);
    w.kv("dof_threshold", &p.dof_threshold);
    w.kv("max_output_rows", &p.max_output_rows);
    w.kv("auto_release", &p.auto_release);
    w.kv("row_level_output", &p.row_level_output);
    w.kv("allow_joins_on", &p.allow_joins_on);
    w.kv("dp", &p.dp);
    w.out
}

/// Accumulates canonical TOML text.
#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn line(&mut self, s: &str) {
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn section(&mut self, header: &str) {
        self.out.push('\n');
        self.line(header);
    }

    fn kv<T: serde::Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        let mut rendered = String::new();
        value
            .serialize(toml::ser::ValueSerializer::new(&mut rendered))
            .expect("manifest values always serialise to TOML");
        self.out.push_str(key);
        self.out.push_str(" = ");
        self.out.push_str(&rendered);
        self.out.push('\n');
    }

    fn opt<T: serde::Serialize>(&mut self, key: &str, value: &Option<T>) {
        if let Some(v) = value {
            self.kv(key, v);
        }
    }
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// One step of a field path.
#[derive(Debug, PartialEq)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits `columns[2].bounds.min` into steps; unparsable parts end the path.
fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Step::Key(key));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(close) = stripped.find(']') else {
                return out;
            };
            let Ok(i) = stripped[..close].parse() else {
                return out;
            };
            out.push(Step::Index(i));
            rest = &stripped[close + 1..];
        }
    }
    out
}

/// The manifest text with its span tree, to turn field paths into lines and
/// serde error spans into field paths.
struct Located<'a> {
    text: &'a str,
    doc: &'a Spanned<DeTable<'a>>,
}

impl Located<'_> {
    /// Line of the deepest existing key on `path`: the key itself when present,
    /// else its nearest ancestor (e.g. the `[dataset]` header for a missing key).
    fn line_of_path(&self, path: &str) -> Option<usize> {
        let mut table = self.doc.get_ref();
        let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
        let mut best: Option<Range<usize>> = None;
        for step in steps(path) {
            let value = match (step, array) {
                (Step::Key(k), None) => {
                    let Some((key, value)) = table.get_key_value(k) else {
                        break;
                    };
                    best = Some(key.span());
                    value
                }
                (Step::Index(i), Some(items)) => {
                    let Some(value) = items.get(i) else { break };
                    best = Some(value.span());
                    value
                }
                _ => break,
            };
            array = None;
            match value.get_ref() {
                DeValue::Table(t) => table = t,
                DeValue::Array(a) => array = Some(a.as_ref()),
                _ => {}
            }
        }
        best.map(|s| line_of(self.text, s.start))
    }

    /// Path of the deepest key or array element whose span holds `offset`.
    fn path_at(&self, offset: usize) -> String {
        let mut path = Vec::new();
        search_table(self.doc.get_ref(), offset, &mut path);
        path.concat()
    }

    /// A serde error (unknown key, bad value, missing key) as a field error.
    fn serde_error(&self, e: &toml::de::Error) -> ManifestError {
        let message = e.message().trim().to_owned();
        let Some(span) = e.span() else {
            return ManifestError::new(missing_field(&message, ""), message);
        };
        let path = self.path_at(span.start);
        let field = missing_field(&message, &path);
        let line = Some(line_of(self.text, span.start));
        ManifestError::new(field, message).at_line(line)
    }
}

/// Pushes onto `path` the steps to the deepest entry of `table` whose key or
/// value span holds `offset`; false when none does.
fn search_table(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (k, v) in table.iter() {
        let step = if path.is_empty() {
            k.get_ref().to_string()
        } else {
            format!(".{}", k.get_ref())
        };
        path.push(step);
        if search_value(v, offset, path) || k.span().contains(&offset) || v.span().contains(&offset)
        {
            return true;
        }
        path.pop();
    }
    false
}

/// Like [`search_table`], for any value: descends into tables and arrays.
fn search_value(value: &Spanned<DeValue<'_>>, offset: usize, path: &mut Vec<String>) -> bool {
    match value.get_ref() {
        DeValue::Table(t) => search_table(t, offset, path),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                path.push(format!("[{i}]"));
                if search_value(item, offset, path) || item.span().contains(&offset) {
                    return true;
                }
                path.pop();
            }
            false
        }
        _ => false,
    }
}

/// For "missing field `x`", the path of the missing key; else `path` unchanged.
fn missing_field(message: &str, path: &str) -> String {
    let name = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    match name {
        Some(name) if path.is_empty() => name.to_owned(),
        Some(name) => format!("{path}.{name}"),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_split_into_steps() {
        assert_eq!(
            steps("columns[2].bounds.min"),
            vec![
                Step::Key("columns"),
                Step::Index(2),
                Step::Key("bounds"),
                Step::Key("min")
            ]
        );
        assert_eq!(
            steps("dataset.id"),
            vec![Step::Key("dataset"), Step::Key("id")]
        );
        assert_eq!(steps(""), vec![]);
    }

    #[test]
    fn lines_are_one_based() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
