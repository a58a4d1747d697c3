//! `GET`/`HEAD /v2/<name>/manifests/<reference>`: the upstream's exact bytes, with the
//! media type they were served with.

use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use super::body::Body;
use super::set_outcome;
use crate::app::App;
use crate::error::{Error, Result};
use crate::oci::digest::CONTENT_DIGEST;
use crate::oci::media::AcceptClass;
use crate::oci::{name, Digest};
use crate::upstream::Target;

pub async fn get(app: &Arc<App>, t: &Target, reference: &str, req: &HeaderMap, head: bool) -> Result<Response<Body>> {
    let answer = if reference.contains(':') {
        let d: Digest = reference.parse().map_err(|e| Error::DigestInvalid(format!("{e}")))?;
        app.cache.manifest_by_digest(t, &d).await?
    } else if name::is_valid_tag(reference) {
        let class = AcceptClass::from_accept(req.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()));
        app.cache.manifest_by_tag(t, reference, class).await?
    } else {
        return Err(Error::ManifestUnknown(
            "reference is neither a valid tag nor a digest".into(),
        ));
    };
    app.cache.count_pull(t.upstream.name(), &t.repo);
    let m = &answer.manifest;
    let len = m.bytes.len();
    let body = if head {
        Body::empty()
    } else {
        Body::full(m.bytes.clone())
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::OK;
    let named = m.headers();
    let h = resp.headers_mut();
    if let Some(v) = &named.content_type {
        h.insert(header::CONTENT_TYPE, v.clone());
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(CONTENT_DIGEST, named.digest.clone());
    h.insert(header::ETAG, named.etag.clone());
    if let Some(w) = answer.warning.as_deref().and_then(|w| HeaderValue::from_str(w).ok()) {
        h.insert(header::WARNING, w);
    }
    set_outcome(&mut resp, answer.outcome);
    Ok(resp)
}
