//! Header names of the distribution-spec and of entrepot itself (`Docker-Content-Digest`,
//! which the cache reads from upstreams too, is `oci::digest::CONTENT_DIGEST`).

use http::HeaderName;

pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
pub const API_VERSION_VALUE: &str = "registry/2.0";
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");
/// How a request was served: `hit`, `miss`, `coalesced`, `revalidated` or `stale`.
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("x-entrepot-cache");
