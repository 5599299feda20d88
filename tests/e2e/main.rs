//! End-to-end tests: the real `anyu` binary, spawned per test in a temporary
//! data directory, over HTTP on loopback and through its CLI. One test binary
//! (one link of DataFusion and wasmtime instead of one per file); `common`
//! is the harness.

mod common;

mod access;
mod attacks;
mod audit;
mod catalog;
mod console;
mod demo;
mod dp;
mod front_door;
mod integrity;
mod jobs;
mod models;
mod people;
mod readme;
mod receipt;
mod release_cli;
mod workflow;
