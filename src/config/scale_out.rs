//! `[cluster]` and `[storage]`: the nodes that share fetches, and the bucket they share
//! (docs/scale-out.md).

use std::path::PathBuf;

use serde::Deserialize;

use super::{bad, duration, secret, size, ConfigError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    #[serde(rename = "type")]
    kind: Option<String>,
    endpoint: Option<String>,
    bucket: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    access_key_id_env: Option<String>,
    access_key_id_file: Option<PathBuf>,
    secret_access_key: Option<String>,
    secret_access_key_env: Option<String>,
    secret_access_key_file: Option<PathBuf>,
    /// `https://<bucket>.<endpoint>/` instead of `<endpoint>/<bucket>/`.
    #[serde(default)]
    virtual_host_style: bool,
    pub(super) local_max_bytes: Option<String>,
    max_bytes: Option<String>,
    max_idle: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    #[serde(rename = "self")]
    self_url: Option<String>,
    #[serde(default)]
    peers: Vec<String>,
    secret: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
}

/// `[storage] type = "s3"`: the blob tier the nodes share, behind each one's local disk.
#[derive(Clone)]
pub struct StorageConfig {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub virtual_host_style: bool,
    /// The tier's own retention, carried out by one node of the cluster.
    pub limits: crate::policy::tier::TierLimits,
}

impl std::fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageConfig")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl RawStorage {
    pub(super) fn validate(self) -> Result<StorageConfig, ConfigError> {
        match self.kind.as_deref() {
            Some("s3") => {}
            other => return Err(bad("storage.type", format!("{other:?}: the one type is \"s3\""))),
        }
        let endpoint = self.endpoint.ok_or_else(|| bad("storage.endpoint", "missing"))?;
        let url: http::Uri = endpoint
            .parse()
            .map_err(|e| bad("storage.endpoint", format!("{endpoint:?}: {e}")))?;
        if !matches!(url.scheme_str(), Some("http") | Some("https")) || url.host().is_none() {
            return Err(bad(
                "storage.endpoint",
                format!("{endpoint:?} must be an http(s):// URL"),
            ));
        }
        let bucket = self.bucket.ok_or_else(|| bad("storage.bucket", "missing"))?;
        let key_id = secret(
            "storage",
            "access_key_id",
            self.access_key_id,
            self.access_key_id_env,
            self.access_key_id_file,
        )?
        .ok_or_else(|| bad("storage.access_key_id", "missing: set access_key_id, _env or _file"))?;
        let key_secret = secret(
            "storage",
            "secret_access_key",
            self.secret_access_key,
            self.secret_access_key_env,
            self.secret_access_key_file,
        )?
        .ok_or_else(|| {
            bad(
                "storage.secret_access_key",
                "missing: set secret_access_key, _env or _file",
            )
        })?;
        Ok(StorageConfig {
            endpoint,
            bucket,
            region: self.region.unwrap_or_else(|| "us-east-1".to_owned()),
            access_key_id: key_id,
            secret_access_key: key_secret,
            virtual_host_style: self.virtual_host_style,
            limits: crate::policy::tier::TierLimits {
                max_bytes: self
                    .max_bytes
                    .map(|m| size("storage.max_bytes", Some(m), "0"))
                    .transpose()?,
                max_idle: self
                    .max_idle
                    .map(|m| duration("storage.max_idle", Some(m), "0s").map(|d| d.as_millis() as u64))
                    .transpose()?,
            },
        })
    }
}

/// `[cluster]`: this node and its peers, as they reach each other, and the secret they
/// authenticate with.
#[derive(Clone)]
pub struct ClusterConfig {
    /// This node, as written in `peers`.
    pub self_url: String,
    /// Every node, this one included, each an `http(s)://host:port` root.
    pub peers: Vec<String>,
    pub secret: String,
    /// A PEM bundle trusted for `https://` peers, beside the built-in web roots.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("self_url", &self.self_url)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl RawCluster {
    pub(super) fn validate(self) -> Result<ClusterConfig, ConfigError> {
        let root = |at: String, text: &str| -> Result<String, ConfigError> {
            let url: http::Uri = text.parse().map_err(|e| bad(&at, format!("{text:?}: {e}")))?;
            let ok_scheme = matches!(url.scheme_str(), Some("http") | Some("https"));
            let no_path = url.path() == "/" || url.path().is_empty();
            if !ok_scheme || url.host().is_none() || !no_path || url.query().is_some() {
                return Err(bad(at, format!("{text:?} must be an http(s)://host:port root")));
            }
            Ok(text.trim_end_matches('/').to_ascii_lowercase())
        };
        let self_url = root(
            "cluster.self".into(),
            self.self_url.as_deref().ok_or_else(|| bad("cluster.self", "missing"))?,
        )?;
        let mut peers = Vec::new();
        for (i, p) in self.peers.iter().enumerate() {
            peers.push(root(format!("cluster.peers[{i}]"), p)?);
        }
        peers.sort();
        peers.dedup();
        if !peers.contains(&self_url) {
            return Err(bad("cluster.peers", format!("must list this node ({self_url}) too")));
        }
        let secret = secret("cluster", "secret", self.secret, self.secret_env, self.secret_file)?
            .ok_or_else(|| bad("cluster.secret", "missing: set one of secret, secret_env, secret_file"))?;
        if secret.len() < 16 {
            return Err(bad("cluster.secret", "use at least 16 characters"));
        }
        if let Some(ca) = self.ca_file.as_ref().filter(|ca| !ca.is_file()) {
            return Err(bad(
                "cluster.ca_file",
                format!("{} is not a readable file", ca.display()),
            ));
        }
        Ok(ClusterConfig {
            self_url,
            peers,
            secret,
            ca_file: self.ca_file,
        })
    }
}
