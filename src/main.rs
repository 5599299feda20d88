//! `anyu`: the command line and HTTP server of the Anyu secure data domain.
//!
//! The binary only wires things together: clap parses the command, `config`
//! loads settings, and every action is one call into [`enclave::Domain`].

mod cli;
mod config;
mod console;
mod demo;
mod model_test;
mod server;

use std::process::ExitCode;

/// What a command returns: its exit code, or an error printed by `main`.
pub type CliResult<T = ExitCode> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

use clap::Parser;

fn main() -> ExitCode {
    private_umask();
    let cli = cli::Cli::parse();
    cli::init_tracing(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Everything the binary creates (data directory, databases, sealed files,
/// exports) is for the platform's own account: umask 077 before any thread
/// or file exists.
fn private_umask() {
    #[cfg(unix)]
    // SAFETY: umask only swaps the process's file-creation mask; it is called
    // first in main, before any other thread could create files concurrently.
    unsafe {
        libc::umask(0o077);
    }
}

#[cfg(test)]
mod tests {
    /// The plaintext scan baseline is benchmark code: the product binary is
    /// built without it (only `anyu-bench` enables enclave's feature).
    #[test]
    fn the_product_has_no_plaintext_version_path() {
        assert!(!enclave::storage::plaintext_benchmark_build());
    }
}
