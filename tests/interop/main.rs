//! Interop: real clients (skopeo, containerd's ctr) pull through the entrepot binary from a
//! real upstream (CNCF distribution, Debian's `docker-registry`), all on loopback.
//!
//! The tools come from the test command (`scripts/test` installs them). Run alone, these
//! tests skip when a tool is missing, unless `ENTREPOT_INTEROP=require`, which the test
//! command sets, so that CI cannot pass without running them.
//!
//! - `pulls`: each client alone on a fresh entrepot: skopeo, ctr, TLS, two sites on disk;
//! - `mixed`: the traffic of a site: clients with different `Accept` headers taking turns
//!   on one entrepot (skopeo, ctr, podman, oras, the Docker Engine), tags moving upstream,
//!   repositories that do not hold a digest, schema 1;
//! - `metrics`: promtool on a live `/metrics`, the alert rules and their unit tests, the
//!   dashboard's queries against what entrepot exports;
//! - `status`: headless Chromium renders `/-/status` after real pulls;
//! - `signatures`: cosign signatures made with openssl, pushed to the registry in both of
//!   cosign's forms, enforced by `require_signature`, online and offline after import;
//! - `tiered`: an edge entrepot in front of a regional one, the tiers above going away;
//! - `cluster`: three nodes, one upstream fetch per digest, a lost node;
//! - `shared`: the shared blob tier on a three-node Garage cluster, nodes with empty disks.

#[path = "../common/certs.rs"]
mod certs;
mod cluster;
#[path = "../common/html.rs"]
mod html;
#[path = "../common/htpasswd.rs"]
mod htpasswd;
mod metrics;
mod mixed;
mod pulls;
mod shared;
mod signatures;
mod status;
mod support;
mod tiered;
