//! The enclave's library-level suites, one test binary (one link of
//! DataFusion instead of one per file): a module per area; `support` is the
//! shared lab (a domain in a temporary directory with accounts, crafted
//! datasets and grants).

mod support;

mod access_rules;
mod acro;
mod agreement;
mod audit;
mod calendar;
mod differencing;
mod dominance;
mod failure_oracle;
mod identity;
mod ingest;
mod integrity;
mod lazy_sketches;
mod manifest;
mod masked_aggregates;
mod privacy_ledger;
mod query;
mod release;
mod storage;
mod warm_sessions;
mod workflow;
