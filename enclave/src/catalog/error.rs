//! The manifest error: one message naming the field and, when known, the line.

use std::fmt;

/// A manifest failed to parse or validate. `field` is the path of the offending
/// key (`dataset.id`, `columns[2].bounds`, `disclosure.nk.k`), empty for a TOML
/// syntax error; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// Path of the offending key; empty when the text is not valid TOML.
    pub field: String,
    /// 1-based line in the manifest text, when known.
    pub line: Option<usize>,
    /// What is wrong, without the field path.
    pub message: String,
}

impl ManifestError {
    /// An error on `field` with no line yet.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ManifestError {
            field: field.into(),
            line: None,
            message: message.into(),
        }
    }

    /// The same error located at `line`.
    pub fn at_line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "manifest: {}", self.message)?;
        } else {
            write!(f, "manifest field `{}`: {}", self.field, self.message)?;
        }
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}
