//! The wire format: the JSON shapes the API answers and the request bodies
//! it parses, with their OpenAPI schemas.
//!
//! Each type is built `From` a domain record or view (request bodies convert
//! the other way) by copying, field by field, what the API shows. A field or
//! store column added to an `enclave` type therefore reaches the wire only
//! when it is added here too, and the OpenAPI snapshot shows it as a diff.
//! Persisted formats (sealed JSON, certificates, receipts, audit event
//! details) keep their own serde derives in `enclave`; they are not wire types.
//!
//! One file per area, as the handlers are split.

// The doc comments are the schemas' descriptions in the OpenAPI document, kept
// as the domain writes them; their links name domain items, not these.
#![allow(rustdoc::broken_intra_doc_links)]

mod accounts;
mod admin;
mod applications;
mod catalog;
mod complaints;
mod grants;
mod jobs;
mod models;

pub use accounts::*;
pub use admin::*;
pub use applications::*;
pub use catalog::*;
pub use complaints::*;
pub use grants::*;
pub use jobs::*;
pub use models::*;

/// A list of domain values on the wire.
pub fn list<T, W: From<T>>(values: Vec<T>) -> Vec<W> {
    values.into_iter().map(W::from).collect()
}
