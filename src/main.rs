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
