//! Engine errors into public errors that never carry a data value.
//!
//! Errors raised before any data is read (SQL syntax, planning) only repeat
//! the researcher's own query text and the grant's schema, so their message
//! is kept (minus internal table names). Errors raised while running can
//! quote values (a failing cast prints the value it could not cast) and
//! their kind depends on the data (a division by zero only when a condition
//! on one person holds), so they all become one code with a fixed text.

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

/// The one public code of a query that failed while running.
pub const QUERY_FAILED: &str = "query_failed";
/// Its fixed message: nothing in it depends on the data.
pub const QUERY_FAILED_MESSAGE: &str = "the query failed while running";

/// Codes a running job may end with besides [`QUERY_FAILED`]: resource limits
/// and the researcher's own cancel, the documented exceptions (ARCHITECTURE.md,
/// "No data-dependent failures").
pub const RESOURCE_CODES: &[&str] = &["memory_limit", "deadline_exceeded", "cancelled"];

/// A run-time error: [`QUERY_FAILED`] with a fixed message whatever the
/// engine said, except memory exhaustion. Which failure it was (a division
/// by zero, a cast, an overflow) would tell a researcher which condition on
/// the data held, so every kind answers alike.
pub fn runtime_error(e: DataFusionError) -> Error {
    let memory = match innermost(&e) {
        DataFusionError::ResourcesExhausted(_) => true,
        DataFusionError::ArrowError(a, _) => matches!(a.as_ref(), ArrowError::MemoryError(_)),
        _ => false,
    };
    match crate::storage::engine_error(e) {
        // Tampered files and our own public errors keep their (value-free) text.
        Error::Engine(e) => {
            if memory {
                tracing::warn!(code = "memory_limit", "query failed");
                return Error::Denied {
                    code: "memory_limit",
                    message: "the job needed more memory than its limit allows".into(),
                };
            }
            // Conversion and overflow errors quote the offending value: the
            // log (which leaves the domain more easily than data) gets the
            // kind only; unexpected failures keep their detail for operators.
            match innermost(&e) {
                DataFusionError::ArrowError(a, _)
                    if matches!(
                        a.as_ref(),
                        ArrowError::DivideByZero
                            | ArrowError::CastError(_)
                            | ArrowError::ParseError(_)
                            | ArrowError::ArithmeticOverflow(_)
                    ) =>
                {
                    tracing::warn!(kind = ?std::mem::discriminant(a.as_ref()), "query failed")
                }
                _ => tracing::warn!(error = %e, code = QUERY_FAILED, "query failed"),
            }
            Error::Denied {
                code: QUERY_FAILED,
                message: QUERY_FAILED_MESSAGE.into(),
            }
        }
        other => other,
    }
}

/// What a job that failed while running reports to its researcher: a
/// refusal of the plan, a resource limit or a cancel as they are, a data
/// file that failed authentication and operators' errors (store, I/O; shown
/// as "internal error") as they are,
/// every other failure as [`QUERY_FAILED`] with its fixed message.
pub fn job_failure(e: Error) -> Error {
    match e {
        Error::Denied { code, .. } if code == QUERY_FAILED => Error::Denied {
            code,
            message: QUERY_FAILED_MESSAGE.into(),
        },
        Error::Denied { code, message } if RESOURCE_CODES.contains(&code) => {
            Error::Denied { code, message }
        }
        e @ (Error::Refused { .. }
        | Error::Crypto(_)
        | Error::Engine(_)
        | Error::Store(_)
        | Error::Io { .. }
        | Error::Internal(_)) => e,
        _ => Error::Denied {
            code: QUERY_FAILED,
            message: QUERY_FAILED_MESSAGE.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrow(e: ArrowError) -> DataFusionError {
        DataFusionError::ArrowError(Box::new(e), None)
    }

    /// Every kind of run-time failure answers the same code and text, none
    /// of which carries the value the engine quoted; memory is the exception.
    #[test]
    fn run_time_failures_answer_one_code() {
        let secret = "4403051980010100";
        for e in [
            arrow(ArrowError::DivideByZero),
            arrow(ArrowError::CastError(format!(
                "Cannot cast string '{secret}'"
            ))),
            arrow(ArrowError::ParseError(format!("Error parsing '{secret}'"))),
            arrow(ArrowError::ArithmeticOverflow(format!("{secret} * 10"))),
            arrow(ArrowError::ComputeError(format!("bad {secret}"))),
            DataFusionError::Execution(format!("Divide by zero {secret}")),
            DataFusionError::Execution(format!("Scalar subquery returned {secret}")),
            DataFusionError::Internal(secret.into()),
            DataFusionError::Context("ctx".into(), Box::new(arrow(ArrowError::DivideByZero))),
        ] {
            let got = runtime_error(e);
            assert_eq!(got.code(), QUERY_FAILED, "{got}");
            assert_eq!(got.to_string(), QUERY_FAILED_MESSAGE);
        }
        for e in [
            DataFusionError::ResourcesExhausted("pool".into()),
            arrow(ArrowError::MemoryError("alloc".into())),
        ] {
            assert_eq!(runtime_error(e).code(), "memory_limit");
        }
    }

    #[test]
    fn job_failures_keep_only_plan_and_resource_codes() {
        let denied = |code: &'static str| Error::Denied {
            code,
            message: format!("{code} with 4403051980010100"),
        };
        for code in RESOURCE_CODES {
            let e = job_failure(denied(code));
            assert_eq!(e.code(), *code);
        }
        for code in ["division_by_zero", "conversion_failed", "overflow"] {
            let e = job_failure(denied(code));
            assert_eq!(e.code(), QUERY_FAILED);
            assert_eq!(e.to_string(), QUERY_FAILED_MESSAGE);
        }
        let e = job_failure(denied(QUERY_FAILED));
        assert_eq!(e.to_string(), QUERY_FAILED_MESSAGE);
        let refused = job_failure(refuse("unsupported_query", "text"));
        assert_eq!(refused.code(), "unsupported_query");
    }
}
