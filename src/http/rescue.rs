//! The rescue: an `Error` becomes its distribution-spec JSON answer here, and only here.

use http::{header, HeaderValue, Response};

use super::body::Body;
use super::headers;
use crate::error::Error;

/// The distribution-spec error response. `HEAD` answers carry the headers only.
pub fn rescue(e: &Error, head: bool) -> Response<Body> {
    let body = serde_json::json!({
        "errors": [{ "code": e.code(), "message": e.public_message(), "detail": null }]
    })
    .to_string();
    let mut builder = Response::builder()
        .status(e.status())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .header(headers::API_VERSION, headers::API_VERSION_VALUE);
    match e {
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
            let resp = rescue(&err, false);
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
        let r = rescue(
            &Error::TooManyRequests {
                upstream: "u".into(),
                retry_after: Some("7".into()),
            },
            true,
        );
        assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        let r = rescue(&Error::RangeNotSatisfiable { size: 10 }, false);
        assert_eq!(r.headers()[header::CONTENT_RANGE], "bytes */10");
    }
}
