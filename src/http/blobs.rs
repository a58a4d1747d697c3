//! `GET`/`HEAD /v2/<name>/blobs/<digest>`, with single ranges.

use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use super::body::Body;
use super::headers::CONTENT_DIGEST;
use super::range::{self, RangeRequest};
use super::set_outcome;
use crate::app::App;
use crate::cache::{follow, BlobSource, Outcome, Target};
use crate::error::{Error, Result};
use crate::oci::{media, Digest};

pub async fn get(app: &Arc<App>, t: &Target, digest: &str, req: &HeaderMap, head: bool) -> Result<Response<Body>> {
    let d: Digest = digest.parse().map_err(|e| Error::DigestInvalid(format!("{e}")))?;
    if head {
        let (size, outcome) = app.cache.blob_size(t, &d).await?;
        return Ok(respond(StatusCode::OK, &d, size, None, Body::empty(), outcome));
    }
    let (src, outcome, serving) = app.cache.blob(t, &d).await?;
    let range_header = req.get(header::RANGE).and_then(|v| v.to_str().ok());
    match src {
        BlobSource::Committed { file, size } => match range::evaluate(range_header, size) {
            RangeRequest::Whole => Ok(respond(
                StatusCode::OK,
                &d,
                Some(size),
                None,
                follow::committed(file, 0, size, serving),
                outcome,
            )),
            RangeRequest::Partial(r) => {
                let body = follow::committed(file, r.start, r.len(), serving);
                Ok(respond(
                    StatusCode::PARTIAL_CONTENT,
                    &d,
                    Some(r.len()),
                    Some(r.content_range(size)),
                    body,
                    outcome,
                ))
            }
            RangeRequest::Unsatisfiable => Err(Error::RangeNotSatisfiable { size }),
        },
        BlobSource::Filling {
            fill,
            total: Some(size),
            committed_path,
        } => match range::evaluate(range_header, size) {
            RangeRequest::Whole => {
                let body = follow::following(fill, committed_path, 0, None, Some(size), serving);
                Ok(respond(StatusCode::OK, &d, Some(size), None, body, outcome))
            }
            RangeRequest::Partial(r) => {
                let body = follow::following(fill, committed_path, r.start, Some(r.end + 1), Some(r.len()), serving);
                Ok(respond(
                    StatusCode::PARTIAL_CONTENT,
                    &d,
                    Some(r.len()),
                    Some(r.content_range(size)),
                    body,
                    outcome,
                ))
            }
            RangeRequest::Unsatisfiable => Err(Error::RangeNotSatisfiable { size }),
        },
        // The upstream sent no length: a range cannot be checked yet, so the whole blob is
        // sent, which RFC 9110 allows.
        BlobSource::Filling {
            fill,
            total: None,
            committed_path,
        } => {
            let body = follow::following(fill, committed_path, 0, None, None, serving);
            Ok(respond(StatusCode::OK, &d, None, None, body, outcome))
        }
    }
}

fn respond(
    status: StatusCode,
    d: &Digest,
    len: Option<u64>,
    content_range: Option<String>,
    body: Body,
    outcome: Outcome,
) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media::OCTET_STREAM));
    if let Some(len) = len {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if let Some(cr) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_RANGE, cr);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(&d.to_string()) {
        h.insert(CONTENT_DIGEST, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{d}\"")) {
        h.insert(header::ETAG, v);
    }
    set_outcome(&mut resp, outcome);
    resp
}
