//! The one error type, and its one mapping to distribution-spec status and error codes.
//!
//! Every failure a request can meet ends up here; `status` and `code` are the only place
//! that decides a status code and an error code (the response itself is `http::rescue`'s).
//! 4xx answers use the spec's codes; 5xx answers use distribution's `UNAVAILABLE` /
//! `UNKNOWN`, since the spec defines none.

use std::sync::Arc;

use http::StatusCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors are `Clone` because one failure is handed to every coalesced waiter: causes are
/// shared (`Arc`), never flattened into strings.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("blob unknown to registry")]
    BlobUnknown,
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    /// The manifest exists, in a type the client's `Accept` excludes: the answer registries
    /// give (distribution's "OCI manifest found, but accept header does not support OCI
    /// manifests"), about this client only; it says nothing of the tag's existence.
    #[error("manifest unknown: {0}")]
    NotAcceptable(String),
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    #[error("invalid digest: {0}")]
    DigestInvalid(String),
    #[error("authentication required: {0}")]
    Unauthorized(String),
    /// A client of entrepot's own must authenticate: answered with a Basic challenge.
    #[error("authentication required")]
    AuthRequired { realm: String },
    #[error("requested access to the resource is denied: {0}")]
    Denied(String),
    /// A peer request from a node whose `[cluster] peers` differ from this one's.
    #[error("misdirected: {0}")]
    Misdirected(String),
    #[error("the operation is unsupported: {0}")]
    Unsupported(String),
    /// A request no strict HTTP server would take (RFC 9112): answered, then the connection
    /// is closed, since its framing cannot be trusted.
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("too many requests (upstream {upstream})")]
    TooManyRequests {
        upstream: String,
        retry_after: Option<String>,
    },
    #[error("requested range not satisfiable (size {size})")]
    RangeNotSatisfiable { size: u64 },
    #[error("upstream {upstream} sent content that does not match {expected}: {detail}")]
    DigestMismatch {
        upstream: String,
        expected: String,
        detail: String,
    },
    #[error("upstream {upstream} answered badly: {detail}")]
    UpstreamBad { upstream: String, detail: String },
    #[error("upstream {upstream} is unreachable: {detail}")]
    UpstreamUnavailable { upstream: String, detail: String },
    #[error("upstream {upstream} timed out: {detail}")]
    UpstreamTimeout { upstream: String, detail: String },
    /// Something inside entrepot failed, said in words.
    #[error("internal error: {0}")]
    Internal(String),
    /// A disk or socket operation failed; its kind and cause chain are kept.
    #[error("I/O error: {0}")]
    Io(#[source] Arc<std::io::Error>),
    /// The index failed (`store::index` converts its errors to this).
    #[error("index error: {0}")]
    Index(#[source] Arc<dyn std::error::Error + Send + Sync>),
}

impl Error {
    pub fn internal(e: impl std::fmt::Display) -> Error {
        Error::Internal(e.to_string())
    }

    /// The upstream is down, overloaded or rate-limiting: what cached content may cover for.
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            Error::UpstreamUnavailable { .. }
                | Error::UpstreamTimeout { .. }
                | Error::UpstreamBad { .. }
                | Error::TooManyRequests { .. }
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::BlobUnknown | Error::ManifestUnknown(_) | Error::NotAcceptable(_) | Error::NameUnknown(_) => {
                StatusCode::NOT_FOUND
            }
            Error::NameInvalid(_) | Error::DigestInvalid(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) | Error::AuthRequired { .. } => StatusCode::UNAUTHORIZED,
            Error::Denied(_) => StatusCode::FORBIDDEN,
            Error::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            Error::Unsupported(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Error::DigestMismatch { .. } | Error::UpstreamBad { .. } => StatusCode::BAD_GATEWAY,
            Error::UpstreamUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::Internal(_) | Error::Io(_) | Error::Index(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::BlobUnknown => "BLOB_UNKNOWN",
            Error::ManifestUnknown(_) | Error::NotAcceptable(_) => "MANIFEST_UNKNOWN",
            Error::NameUnknown(_) => "NAME_UNKNOWN",
            Error::NameInvalid(_) => "NAME_INVALID",
            Error::DigestInvalid(_) => "DIGEST_INVALID",
            Error::Unauthorized(_) | Error::AuthRequired { .. } => "UNAUTHORIZED",
            Error::Denied(_) | Error::Misdirected(_) => "DENIED",
            Error::Unsupported(_) | Error::BadRequest(_) => "UNSUPPORTED",
            Error::TooManyRequests { .. } => "TOOMANYREQUESTS",
            Error::RangeNotSatisfiable { .. } => "SIZE_INVALID",
            Error::UpstreamUnavailable { .. } | Error::UpstreamTimeout { .. } => "UNAVAILABLE",
            Error::DigestMismatch { .. }
            | Error::UpstreamBad { .. }
            | Error::Internal(_)
            | Error::Io(_)
            | Error::Index(_) => "UNKNOWN",
        }
    }

    /// The message a client sees. Internal details stay in the log.
    pub fn public_message(&self) -> String {
        match self {
            Error::Internal(_) | Error::Io(_) | Error::Index(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_stay_out_of_the_message() {
        let e = Error::Internal("secret path".into());
        assert_eq!((e.status().as_u16(), e.code()), (500, "UNKNOWN"));
        assert!(!e.public_message().contains("secret"));
    }

    #[test]
    fn an_io_failure_keeps_its_kind_and_cause_through_clones() {
        let e: Error = std::io::Error::new(std::io::ErrorKind::StorageFull, "disk full").into();
        let shared = e.clone();
        let source = std::error::Error::source(&shared).expect("the cause");
        let io = source.downcast_ref::<Arc<std::io::Error>>().expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::StorageFull);
        assert_eq!(
            (shared.status().as_u16(), shared.public_message().as_str()),
            (500, "internal error")
        );
    }
}
