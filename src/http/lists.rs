//! `GET /v2/<name>/tags/list` (sorted, paginated with `n`/`last` and `Link`) and
//! `GET /v2/<name>/referrers/<digest>` (with the `artifactType` filter).

use std::sync::Arc;

use http::{header, HeaderValue, Response, StatusCode};

use super::body::Body;
use super::headers::OCI_FILTERS_APPLIED;
use super::{json_response, query_param, set_outcome};
use crate::access::Identity;
use crate::app::App;
use crate::error::{Error, Result};
use crate::oci::{media, Digest};
use crate::upstream::Target;

pub async fn tags(
    app: &Arc<App>,
    t: &Target,
    client_name: &str,
    query: Option<&str>,
    head: bool,
) -> Result<Response<Body>> {
    let answer = app.cache.tags(t).await?;
    let n = query_param(query, "n").and_then(|n| n.parse::<usize>().ok());
    let last = query_param(query, "last");
    let (page, more) = paginate(&answer.items, last.as_deref(), n);
    let body = serde_json::json!({ "name": client_name, "tags": page }).to_string();
    let mut resp = json_response(StatusCode::OK, body, head);
    if let (true, Some(n), Some(last_shown)) = (more, n, page.last()) {
        let mut next = format!("/v2/{client_name}/tags/list?n={n}&last={last_shown}");
        if let Some(ns) = query_param(query, "ns") {
            next.push_str(&format!("&ns={ns}"));
        }
        if let Ok(v) = HeaderValue::from_str(&format!("<{next}>; rel=\"next\"")) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    if let Some(w) = answer.warning.as_deref().and_then(|w| HeaderValue::from_str(w).ok()) {
        resp.headers_mut().insert(header::WARNING, w);
    }
    set_outcome(&mut resp, answer.outcome);
    Ok(resp)
}

/// `GET /v2/_catalog`: the repositories this cache holds, as `<upstream>/<repository>` (the
/// path-prefix form, which routes back here). Always answered from the cache: it is what
/// an air-gapped site can offer, and most upstreams do not serve a catalog anyway.
pub async fn catalog(app: &Arc<App>, who: &Identity, query: Option<&str>, head: bool) -> Result<Response<Body>> {
    let mut repositories = app.cache.catalog().await?.as_ref().clone();
    repositories.retain(|r| app.access.authorize(who, r).is_ok());
    let n = query_param(query, "n").and_then(|n| n.parse::<usize>().ok());
    let last = query_param(query, "last");
    let (page, more) = paginate(&repositories, last.as_deref(), n);
    let body = serde_json::json!({ "repositories": page }).to_string();
    let mut resp = json_response(StatusCode::OK, body, head);
    if let (true, Some(n), Some(last_shown)) = (more, n, page.last()) {
        if let Ok(v) = HeaderValue::from_str(&format!("</v2/_catalog?n={n}&last={last_shown}>; rel=\"next\"")) {
            resp.headers_mut().insert(header::LINK, v);
        }
    }
    Ok(resp)
}

/// The tags after `last`, at most `n` of them, and whether more follow.
fn paginate<'a>(sorted: &'a [String], last: Option<&str>, n: Option<usize>) -> (&'a [String], bool) {
    let start = last.map_or(0, |l| sorted.partition_point(|t| t.as_str() <= l));
    let rest = &sorted[start..];
    match n {
        Some(n) if n < rest.len() => (&rest[..n], true),
        _ => (rest, false),
    }
}

pub async fn referrers(
    app: &Arc<App>,
    t: &Target,
    digest: &str,
    query: Option<&str>,
    head: bool,
) -> Result<Response<Body>> {
    let d: Digest = digest.parse().map_err(|e| Error::DigestInvalid(format!("{e}")))?;
    let answer = app.cache.referrers(t, &d).await?;
    let filter = query_param(query, "artifactType");
    let mut list = answer.items;
    if let Some(f) = &filter {
        list.retain(|r| r.artifact_type.as_deref() == Some(f.as_str()));
    }
    let body = serde_json::json!({ "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": list }).to_string();
    let mut resp = json_response(StatusCode::OK, body, head);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media::OCI_INDEX));
    if filter.is_some() {
        resp.headers_mut()
            .insert(OCI_FILTERS_APPLIED, HeaderValue::from_static("artifactType"));
    }
    if let Some(w) = answer.warning.as_deref().and_then(|w| HeaderValue::from_str(w).ok()) {
        resp.headers_mut().insert(header::WARNING, w);
    }
    set_outcome(&mut resp, answer.outcome);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::paginate;

    #[test]
    fn pages_follow_lexical_order() {
        let tags: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(paginate(&tags, None, None), (&tags[..], false));
        assert_eq!(paginate(&tags, None, Some(2)), (&tags[..2], true));
        assert_eq!(paginate(&tags, Some("b"), Some(2)), (&tags[2..], false));
        assert_eq!(paginate(&tags, Some("bb"), Some(1)), (&tags[2..3], true));
        assert_eq!(paginate(&tags, Some("z"), Some(1)), (&tags[4..], false));
        assert_eq!(paginate(&tags, None, Some(0)), (&tags[..0], true));
    }
}
