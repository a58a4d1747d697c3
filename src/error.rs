//! The one error type, and its one mapping to distribution-spec error responses.
//!
//! Every failure a request can meet ends up here; `Error::to_response` is the only place
//! that decides a status code and an error code. 4xx answers use the spec's codes; 5xx
//! answers use distribution's `UNAVAILABLE` / `UNKNOWN`, since the spec defines none.

use http::{header, HeaderValue, Response, StatusCode};

use crate::http::body::Body;
use crate::http::headers;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors are `Clone` because one upstream failure is handed to every coalesced waiter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    #[error("internal error: {0}")]
    Internal(String),
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
            Error::Unsupported(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            Error::DigestMismatch { .. } | Error::UpstreamBad { .. } => StatusCode::BAD_GATEWAY,
            Error::UpstreamUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Error::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
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
            Error::Denied(_) => "DENIED",
            Error::Unsupported(_) | Error::BadRequest(_) => "UNSUPPORTED",
            Error::TooManyRequests { .. } => "TOOMANYREQUESTS",
            Error::RangeNotSatisfiable { .. } => "SIZE_INVALID",
            Error::UpstreamUnavailable { .. } | Error::UpstreamTimeout { .. } => "UNAVAILABLE",
            Error::DigestMismatch { .. } | Error::UpstreamBad { .. } | Error::Internal(_) => "UNKNOWN",
        }
    }

    /// The message a client sees. Internal details stay in the log.
    fn public_message(&self) -> String {
        match self {
            Error::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }

    /// The distribution-spec error response. `HEAD` answers carry the headers only.
    pub fn to_response(&self, head: bool) -> Response<Body> {
        let body = serde_json::json!({
            "errors": [{ "code": self.code(), "message": self.public_message(), "detail": null }]
        })
        .to_string();
        let mut builder = Response::builder()
            .status(self.status())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len())
            .header(headers::API_VERSION, headers::API_VERSION_VALUE);
        match self {
            Error::TooManyRequests {
                retry_after: Some(after),
                ..
            } => {
                if let Ok(v) = HeaderValue::from_str(after) {
                    builder = builder.header(header::RETRY_AFTER, v);
                }
            }
            Error::RangeNotSatisfiable { size } => {
                builder = builder.header(header::CONTENT_RANGE, format!("bytes */{size}"));
            }
            Error::AuthRequired { realm } => {
                let realm = realm.replace('"', "");
                builder = builder.header(header::WWW_AUTHENTICATE, format!("Basic realm=\"{realm}\""));
            }
            Error::UpstreamUnavailable { .. } => {
                builder = builder.header(header::RETRY_AFTER, "30");
            }
            Error::BadRequest(_) => {
                builder = builder.header(header::CONNECTION, "close");
            }
            _ => {}
        }
        let body = if head { Body::empty() } else { Body::full(body) };
        builder.body(body).unwrap_or_else(|_| Response::new(Body::empty()))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn responses_carry_spec_json() {
        let cases = [
            (Error::BlobUnknown, 404, "BLOB_UNKNOWN"),
            (Error::ManifestUnknown("x".into()), 404, "MANIFEST_UNKNOWN"),
            (Error::NotAcceptable("x".into()), 404, "MANIFEST_UNKNOWN"),
            (Error::NameUnknown("x".into()), 404, "NAME_UNKNOWN"),
            (Error::NameInvalid("x".into()), 400, "NAME_INVALID"),
            (Error::DigestInvalid("x".into()), 400, "DIGEST_INVALID"),
            (Error::Unauthorized("x".into()), 401, "UNAUTHORIZED"),
            (Error::AuthRequired { realm: "r".into() }, 401, "UNAUTHORIZED"),
            (Error::Denied("x".into()), 403, "DENIED"),
            (Error::Unsupported("x".into()), 405, "UNSUPPORTED"),
            (Error::BadRequest("x".into()), 400, "UNSUPPORTED"),
            (
                Error::TooManyRequests {
                    upstream: "u".into(),
                    retry_after: Some("7".into()),
                },
                429,
                "TOOMANYREQUESTS",
            ),
            (
                Error::UpstreamUnavailable {
                    upstream: "u".into(),
                    detail: "d".into(),
                },
                503,
                "UNAVAILABLE",
            ),
            (
                Error::UpstreamTimeout {
                    upstream: "u".into(),
                    detail: "d".into(),
                },
                504,
                "UNAVAILABLE",
            ),
            (
                Error::UpstreamBad {
                    upstream: "u".into(),
                    detail: "d".into(),
                },
                502,
                "UNKNOWN",
            ),
            (Error::Internal("secret path".into()), 500, "UNKNOWN"),
        ];
        for (err, status, code) in cases {
            let resp = err.to_response(false);
            assert_eq!(resp.status().as_u16(), status, "{err:?}");
            assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["errors"][0]["code"], code);
            assert!(!body.windows(11).any(|w| w == b"secret path"));
        }
    }

    #[test]
    fn special_headers() {
        let r = Error::TooManyRequests {
            upstream: "u".into(),
            retry_after: Some("7".into()),
        }
        .to_response(true);
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        let r = Error::RangeNotSatisfiable { size: 10 }.to_response(false);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */10");
    }
}
