//! End-to-end tests: entrepot on a real socket in front of an in-process test registry.
//! One binary, so the linker runs once.

mod support;

mod access;
mod airgap;
mod blobs;
mod cli;
mod crash;
mod links;
mod lists;
mod manifests;
mod metrics;
mod offline;
mod policy;
mod requests;
mod retention;
mod routing;
mod scrub;
mod tls;
mod upstream_auth;
