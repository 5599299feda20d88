//! `anyu`: the command line and HTTP server of the Anyu secure data domain.
//!
//! The binary only wires things together: clap parses the command, `config`
//! loads settings, and every action is one call into [`enclave::Domain`].

mod bench;
mod bench_acro;
mod bench_dp;
mod bench_query;
mod cli;
mod config;
mod demo;
mod model_test;
mod server;

use std::process::ExitCode;

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
