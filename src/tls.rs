//! TLS for the listener, through rustls: certificate and key from PEM files, HTTP/2 offered
//! by ALPN beside HTTP/1.1, optional client certificates checked against a CA (mTLS).
//! `reload` reads the files again (on SIGHUP): connections already open keep the
//! configuration they were accepted with; new ones get the new one.

use std::sync::{Arc, RwLock};

use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;
use crate::error::{Error, Result};

pub struct Tls {
    files: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    pub fn load(files: &TlsConfig) -> Result<Tls> {
        Ok(Tls {
            files: files.clone(),
            current: RwLock::new(server_config(files)?),
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Reads the certificate, key and client CA again. On error the old ones stay.
    pub fn reload(&self) -> Result<()> {
        let fresh = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

fn tls_error(what: &str, path: &std::path::Path, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("tls {what} {}: {e}", path.display()))
}

fn server_config(files: &TlsConfig) -> Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| tls_error("cert", &files.cert, e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| tls_error("cert", &files.cert, e))?;
    if certs.is_empty() {
        return Err(tls_error("cert", &files.cert, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| tls_error("key", &files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(Error::internal)?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| tls_error("client_ca", ca, e))? {
                roots
                    .add(cert.map_err(|e| tls_error("client_ca", ca, e))?)
                    .map_err(|e| tls_error("client_ca", ca, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_error("client_ca", ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_error("cert", &files.cert, e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
