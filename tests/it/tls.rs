//! TLS on the listener: HTTP/2 by ALPN, client certificates (mTLS), reload of the files.
//! Certificates come from a CA the test makes with `openssl`.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::support::*;

#[path = "../common/certs.rs"]
mod certs;
use certs::{make_ca, make_cert};

fn client(
    dir: &Path,
    ca: &str,
    identity: Option<&str>,
) -> Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Empty<Bytes>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join(format!("{ca}.crt"))).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some(name) => {
            let certs = CertificateDer::pem_file_iter(dir.join(format!("{name}.crt")))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}

async fn try_get(
    c: &Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Empty<Bytes>>,
    url: &str,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    c.request(http::Request::get(url).body(Empty::new()).unwrap())
        .await
        .map_err(|e| format!("{e:?}"))
}

async fn tls_proxy(dir: &Path, reg: &TestRegistry, client_ca: Option<&str>) -> TestProxy {
    let ca_line = client_ca.map_or(String::new(), |ca| {
        format!(
            "client_ca = {:?}\n",
            dir.join(format!("{ca}.crt")).display().to_string()
        )
    });
    let tls = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n{ca_line}",
        dir.join("server.crt").display().to_string(),
        dir.join("server.key").display().to_string()
    );
    TestProxy::start(
        &dir.join("data"),
        "",
        &format!("{}{tls}", upstream("reg.test", &reg.url(), "")),
    )
    .await
}

fn https(proxy: &TestProxy, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", proxy.addr.port())
}

#[tokio::test]
async fn tls_serves_http2_by_alpn_and_reloads_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d, "ca1");
    make_cert(d, "ca1", "server", "serverAuth");
    let reg = TestRegistry::start().await;
    reg.put_image("team/app", "v1", &[1000], 1);
    let proxy = tls_proxy(d, &reg, None).await;

    let resp = try_get(&client(d, "ca1", None), &https(&proxy, "/v2/team/app/manifests/v1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2, "h2 by ALPN");
    let plain = crate::support::client()
        .request(http::Request::get(proxy.url("/v2/")).body(Empty::new()).unwrap())
        .await;
    assert!(plain.is_err(), "plain HTTP is not spoken on a TLS listener");

    // A new certificate from another CA: reloaded, new connections see it.
    make_ca(d, "ca2");
    make_cert(d, "ca2", "server", "serverAuth");
    proxy.app.tls.as_ref().unwrap().reload().unwrap();
    assert!(try_get(&client(d, "ca2", None), &https(&proxy, "/v2/")).await.is_ok());
    assert!(try_get(&client(d, "ca1", None), &https(&proxy, "/v2/")).await.is_err());

    // A broken file is refused and the working certificate stays.
    std::fs::write(d.join("server.crt"), "not a certificate").unwrap();
    assert!(proxy.app.tls.as_ref().unwrap().reload().is_err());
    assert!(try_get(&client(d, "ca2", None), &https(&proxy, "/v2/")).await.is_ok());
}

#[tokio::test]
async fn mtls_refuses_clients_without_a_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certs::server_pki(d);
    make_cert(d, "ca", "client", "clientAuth");
    make_ca(d, "rogue");
    make_cert(d, "rogue", "intruder", "clientAuth");
    let reg = TestRegistry::start().await;
    let proxy = tls_proxy(d, &reg, Some("ca")).await;
    assert!(
        try_get(&client(d, "ca", None), &https(&proxy, "/v2/")).await.is_err(),
        "no client certificate"
    );
    assert!(
        try_get(&client(d, "ca", Some("intruder")), &https(&proxy, "/v2/"))
            .await
            .is_err(),
        "a certificate from another CA"
    );
    let ok = try_get(&client(d, "ca", Some("client")), &https(&proxy, "/v2/"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}
