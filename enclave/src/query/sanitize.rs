//! Engine errors into public errors that never carry a data value.
//!
//! Errors raised before any data is read (SQL syntax, planning) only repeat
//! the researcher's own query text and the grant's schema, so their message
//! is kept (minus internal table names). Errors raised while running can
//! quote values (a failing cast prints the value it could not cast), so they
//! are replaced by a fixed text chosen by the kind of failure.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

use super::policy::refuse;
use crate::Error;

fn strip_internal(msg: &str) -> String {
    msg.replace("__anyu_raw_", "")
}

/// The innermost error, through contexts, diagnostics and shared wrappers.
fn innermost(e: &DataFusionError) -> &DataFusionError {
    match e {
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            innermost(inner)
        }
        DataFusionError::Shared(inner) => innermost(inner),
        DataFusionError::Collection(v) if !v.is_empty() => innermost(&v[0]),
        other => other,
    }
}

/// A planning-time error: the message is safe to show.
pub fn public_error(e: DataFusionError) -> Error {
    match innermost(&e) {
        DataFusionError::SQL(p, _) => refuse("sql_syntax", format!("SQL syntax error: {p}")),
        DataFusionError::Plan(m) => plan_error(m),
        DataFusionError::SchemaError(s, _) => {
            refuse("invalid_query", strip_internal(&s.to_string()))
        }
        DataFusionError::NotImplemented(m) => refuse(
            "unsupported_query",
            format!("not supported: {}", strip_internal(m)),
        ),
        _ => runtime_error(e),
    }
}

fn plan_error(m: &str) -> Error {
    let m = strip_internal(m);
    if let Some(rest) = m.strip_prefix("Invalid function '") {
        let name: String = rest.chars().take_while(|c| *c != '\'').collect();
        return refuse(
            "function_not_allowed",
            format!("function `{name}` is not available in the domain"),
        );
    }
    if m.contains("not found") && m.to_ascii_lowercase().contains("table") {
        return refuse(
            "table_not_granted",
            format!("{m}: only the grant's datasets can be queried"),
        );
    }
    refuse("invalid_query", m)
}

/// A run-time error: a fixed message by kind, never the engine's text.
pub fn runtime_error(e: DataFusionError) -> Error {
    let (code, message) = match innermost(&e) {
        DataFusionError::ResourcesExhausted(_) => (
            "memory_limit",
            "the job needed more memory than its limit allows",
        ),
        DataFusionError::ArrowError(a, _) => match a.as_ref() {
            ArrowError::DivideByZero => ("division_by_zero", "division by zero"),
            ArrowError::CastError(_) | ArrowError::ParseError(_) => (
                "conversion_failed",
                "a value could not be converted to the requested type",
            ),
            ArrowError::ArithmeticOverflow(_) => ("overflow", "an arithmetic result overflowed"),
            ArrowError::MemoryError(_) => (
                "memory_limit",
                "the job needed more memory than its limit allows",
            ),
            _ => ("query_failed", "the query failed while running"),
        },
        DataFusionError::Execution(m) if m.contains("Divide by zero") => {
            ("division_by_zero", "division by zero")
        }
        _ => ("query_failed", "the query failed while running"),
    };
    match crate::storage::engine_error(e) {
        // Tampered files and our own public errors keep their (value-free) text.
        Error::Engine(e) => {
            // Conversion and overflow errors quote the offending value: the
            // log (which leaves the domain more easily than data) gets the
            // code only; unexpected failures keep their detail for operators.
            if code == "query_failed" {
                tracing::warn!(error = %e, code, "query failed");
            } else {
                tracing::warn!(code, "query failed");
            }
            Error::Denied {
                code,
                message: message.into(),
            }
        }
        other => other,
    }
}
