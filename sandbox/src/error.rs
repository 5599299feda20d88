//! The one error type of the sandbox.
//!
//! Every variant has a stable [`SandboxError::code`]. No message contains a data
//! value: names of imports, columns and trap codes are structure, not data. The
//! one exception is the guest's own error text ([`SandboxError::ModelError`]),
//! which may carry anything the model chose to put there; its `Display` does
//! not echo it, [`SandboxError::guest_message`] hands it out on purpose.

use std::time::Duration;

/// Why a component was refused or a job ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The job ran past its wall-clock deadline (epoch interruption, or a host
    /// call noticed the deadline had passed).
    #[error("the model ran past its deadline of {deadline:?}")]
    Timeout {
        /// The deadline the job had.
        deadline: Duration,
    },
    /// The job was cancelled while the model ran.
    #[error("the model was stopped: its job was cancelled")]
    Cancelled,
    /// A linear memory wanted to grow past the job's memory budget or the
    /// host's per-memory maximum.
    #[error("the model exceeded its memory limit")]
    MemoryLimit,
    /// A table wanted to grow past the host's table-element limit.
    #[error("the model exceeded its table limit")]
    TableLimit,
    /// The guest exhausted its wasm stack (deep or infinite recursion).
    #[error("the model overflowed its stack")]
    StackOverflow,
    /// The result table (or the data the guest handed the host in one call)
    /// is larger than the job allows.
    #[error("the model's output exceeds the limit of {limit} {unit}")]
    OutputTooLarge {
        /// The limit that was exceeded.
        limit: u64,
        /// `cells` or `bytes`.
        unit: &'static str,
    },
    /// Any other trap. `kind` is wasmtime's trap code in snake case
    /// (`unreachable_code_reached`, `memory_out_of_bounds`, …), or `exit` when
    /// the guest called `wasi:cli/exit`, or `abi` when the guest handed the
    /// host an invalid value (bad pointer, invalid UTF-8, …).
    #[error("the model trapped: {kind}")]
    Trap {
        /// The trap code name.
        kind: String,
    },
    /// The model returned `err(message)`. The message is the guest's own and
    /// may contain data: it is not part of `Display`.
    #[error("the model returned an error")]
    ModelError(String),
    /// The result table is not a valid table (unequal column lengths,
    /// duplicate or empty column names).
    #[error("the model's output is not a valid table: {reason}")]
    InvalidOutput {
        /// What is wrong, in terms of structure only.
        reason: String,
    },
    /// The bytes are not a WebAssembly binary, or the component does not
    /// validate or compile.
    #[error("the model is not a valid WebAssembly component")]
    Malformed,
    /// The bytes are a core WebAssembly module, not a component.
    #[error("the model is a core WebAssembly module, not a component")]
    NotAComponent,
    /// The component does not target the `anyu:model` world (missing or
    /// mistyped `run` export, or an allowed import with the wrong type).
    #[error("the component does not target the anyu:model world: {reason}")]
    WrongWorld {
        /// What does not match, in terms of names and types.
        reason: String,
    },
    /// The component imports something the sandbox does not provide.
    #[error("the component imports `{name}`, which the sandbox does not provide")]
    ForbiddenImport {
        /// The import's name (an interface name, not data).
        name: String,
    },
    /// The component is larger than the intake limit.
    #[error("the component is {size} bytes, over the limit of {limit} bytes")]
    ComponentTooLarge {
        /// The component's size.
        size: usize,
        /// The host's limit.
        limit: usize,
    },
    /// No model with this SHA-256 was taken in (neither in memory nor in the
    /// artifact cache).
    #[error("no model with this hash was taken in")]
    UnknownModel,
    /// The input cannot be handed to a model (unsupported column type, a batch
    /// whose schema differs from the declared one, a failing input source).
    #[error("the input cannot be given to the model: {reason}")]
    InvalidInput {
        /// What is wrong, in terms of column names and types only.
        reason: String,
    },
    /// A failure of the host itself (engine, cache I/O). Details go to the log.
    #[error("internal sandbox error")]
    Internal,
}

impl SandboxError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            SandboxError::Timeout { .. } => "timeout",
            SandboxError::Cancelled => "cancelled",
            SandboxError::MemoryLimit => "memory_limit",
            SandboxError::TableLimit => "table_limit",
            SandboxError::StackOverflow => "stack_overflow",
            SandboxError::OutputTooLarge { .. } => "output_too_large",
            SandboxError::Trap { .. } => "trap",
            SandboxError::ModelError(_) => "model_error",
            SandboxError::InvalidOutput { .. } => "invalid_output",
            SandboxError::Malformed => "malformed",
            SandboxError::NotAComponent => "not_a_component",
            SandboxError::WrongWorld { .. } => "wrong_world",
            SandboxError::ForbiddenImport { .. } => "forbidden_import",
            SandboxError::ComponentTooLarge { .. } => "component_too_large",
            SandboxError::UnknownModel => "unknown_model",
            SandboxError::InvalidInput { .. } => "invalid_input",
            SandboxError::Internal => "internal",
        }
    }

    /// The guest's own error message, for [`SandboxError::ModelError`] only.
    /// It may contain data: treat it like model output.
    pub fn guest_message(&self) -> Option<&str> {
        match self {
            SandboxError::ModelError(m) => Some(m),
            _ => None,
        }
    }

    /// Whether the error was caused by the model (as opposed to the host or
    /// the input).
    pub fn is_model_fault(&self) -> bool {
        !matches!(
            self,
            SandboxError::Internal | SandboxError::InvalidInput { .. } | SandboxError::UnknownModel
        )
    }
}

/// `Result` with [`SandboxError`].
pub type Result<T, E = SandboxError> = std::result::Result<T, E>;

/// Logs an internal failure (with its detail, which never holds data values)
/// and returns [`SandboxError::Internal`].
pub(crate) fn internal(context: &str, err: impl std::fmt::Display) -> SandboxError {
    tracing::error!(target: "sandbox", "{context}: {err}");
    SandboxError::Internal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_error_display_does_not_echo_the_guest_message() {
        let e = SandboxError::ModelError("secret 4403061990".into());
        assert!(!e.to_string().contains("secret"));
        assert_eq!(e.guest_message(), Some("secret 4403061990"));
        assert_eq!(e.code(), "model_error");
    }
}
