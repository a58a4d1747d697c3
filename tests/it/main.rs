//! End-to-end tests: entrepot on a real socket in front of an in-process test registry.
//! One binary, so the linker runs once.

mod support;

mod blobs;
mod manifests;
mod lists;
mod routing;
mod upstream_auth;
mod offline;
mod requests;
