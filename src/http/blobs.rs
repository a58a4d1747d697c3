//! `GET`/`HEAD /v2/<name>/blobs/<digest>`, with single ranges.

use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use super::body::Body;
use super::range::{self, RangeRequest};
use super::sendfile;
use super::set_outcome;
use crate::app::App;
use crate::cache::{follow, BlobSource, Outcome};
use crate::error::{Error, Result};
use crate::oci::digest::CONTENT_DIGEST;
use crate::oci::{media, Digest};
use crate::upstream::Target;

/// `zero_copy`: the connection's queue when it can take `sendfile` bodies.
pub async fn get(
    app: &Arc<App>,
    t: &Target,
    digest: &str,
    req: &HeaderMap,
    head: bool,
    zero_copy: Option<&sendfile::Queue>,
) -> Result<Response<Body>> {
    let d: Digest = digest.parse().map_err(|e| Error::DigestInvalid(format!("{e}")))?;
    if head {
        let (size, outcome) = app.cache.blob_size(t, &d).await?;
        return Ok(respond(StatusCode::OK, &d, size, None, Body::empty(), outcome));
    }
    let (src, outcome, serving) = app.cache.blob(t, &d).await?;
    let size = src.size();
    // Without a length (the upstream sent none) a range cannot be checked yet: the whole
    // blob is sent, which RFC 9110 allows.
    let range_header = req.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, start, len, content_range) = match size.map(|s| (s, range::evaluate(range_header, s))) {
        None => (StatusCode::OK, 0, None, None),
        Some((size, RangeRequest::Whole)) => (StatusCode::OK, 0, Some(size), None),
        Some((size, RangeRequest::Partial(r))) => (
            StatusCode::PARTIAL_CONTENT,
            r.start,
            Some(r.len()),
            Some(r.content_range(size)),
        ),
        Some((size, RangeRequest::Unsatisfiable)) => return Err(Error::RangeNotSatisfiable { size }),
    };
    let body = match src {
        BlobSource::Committed(blob) => match (zero_copy, blob.file()) {
            (Some(queue), Some(file)) => Body::File(sendfile::FileBody::new(
                queue.clone(),
                file,
                start,
                len.unwrap_or(0),
                serving,
            )),
            _ => Body::blob(follow::committed(blob, start, len.unwrap_or(0), serving), None),
        },
        BlobSource::Filling { fill, .. } => Body::blob(
            follow::following(fill, start, len.map(|l| start + l), len, serving, zero_copy.is_some()),
            zero_copy.cloned(),
        ),
    };
    Ok(respond(status, &d, len, content_range, body, outcome))
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
