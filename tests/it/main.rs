//! End-to-end tests: entrepot on a real socket in front of an in-process test registry.
//! One binary, so the linker runs once.

#[path = "../common/html.rs"]
mod html;
#[path = "../common/htpasswd.rs"]
mod htpasswd;
mod support;

mod access;
mod airgap;
mod blobs;
/// The same blob suite on the in-memory backend (see `blobs::proxy`): loaded twice on purpose.
#[allow(clippy::duplicate_mod)]
#[path = "blobs.rs"]
mod blobs_in_memory;
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
mod status;
mod tls;
mod upstream_auth;
