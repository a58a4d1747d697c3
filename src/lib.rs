//! entrepot: a caching pull-through proxy for OCI registries.
//!
//! # Layout
//! Dependencies point one way, top to bottom:
//! - [`config`]: the TOML file, validated into runtime types;
//! - [`oci`]: digests, names, media types, reading manifests;
//! - [`error`]: the one error type and its distribution-spec responses;
//! - [`store`]: blob files (content-addressed, verified before commit) and the sled index;
//! - [`upstream`]: the closed table of upstream registries, auth, redirects, timeouts;
//! - [`policy`]: what may enter (filter rules) and how long it stays (retention), pure;
//! - [`cache`]: hits, fills, coalescing, tag revalidation, stale-if-error;
//! - [`http`]: routes, headers, ranges, sendfile bodies, access log; [`access`]: who may pull what;
//! - [`server`]: the listener and graceful shutdown; [`app`] wires it all;
//! - [`ops`] and [`report`]: the operator commands (`gc`, `cache stats`, `policy check`).

#![forbid(unsafe_code)]

pub mod access;
pub mod app;
pub mod cache;
pub mod config;
pub mod error;
pub mod http;
pub mod layout;
pub mod metrics;
pub mod oci;
pub mod ops;
pub mod policy;
pub mod report;
pub mod seed;
pub mod server;
pub mod store;
pub mod upstream;

pub use app::App;
pub use config::Config;
pub use error::{Error, Result};
