//! The configuration file: its TOML schema, defaults, and validation into the runtime
//! types the rest of the crate uses. Every problem names the key it comes from.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::policy::cosign::{Keyring, PublicKey};
use crate::policy::filter::{Action, RequireSignature, Rule};
use crate::policy::glob::Globs;
use crate::policy::retention::{Class, Limits};

mod scale_out;
pub use scale_out::{ClusterConfig, StorageConfig};
use scale_out::{RawCluster, RawStorage};

/// Host names under which Docker Hub is known; any of them routes to a Docker Hub upstream.
pub const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

#[derive(Debug, thiserror::Error)]
#[error("config: {key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn bad(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    metrics_listen: Option<String>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    offline: bool,
    default_upstream: Option<String>,
    log: Option<String>,
    #[serde(default)]
    log_format: crate::logging::Format,
    tag_ttl: Option<String>,
    max_staleness: Option<String>,
    negative_ttl: Option<String>,
    max_manifest_size: Option<String>,
    #[serde(default)]
    upstream: Vec<RawUpstream>,
    default_policy: Option<Action>,
    #[serde(default)]
    blobs_require_manifest: bool,
    // Tables read one by one, so that an error can name the rule it is in.
    #[serde(default)]
    policy: Vec<toml::Value>,
    #[serde(default)]
    retention: Vec<toml::Value>,
    auth: Option<RawAuth>,
    tls: Option<RawTls>,
    cluster: Option<RawCluster>,
    storage: Option<RawStorage>,
    header_read_timeout: Option<String>,
    shutdown_grace: Option<String>,
    max_connections: Option<usize>,
    sendfile: Option<bool>,
    max_cache_bytes: Option<String>,
    high_watermark: Option<u8>,
    low_watermark: Option<u8>,
    sweep_interval: Option<String>,
    scrub_interval: Option<String>,
    scrub_rate: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    anonymous: Option<bool>,
    htpasswd: Option<PathBuf>,
    realm: Option<String>,
    #[serde(default)]
    token: Vec<RawToken>,
    #[serde(default)]
    groups: HashMap<String, Vec<String>>,
    #[serde(default)]
    grant: Vec<RawGrant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    user: String,
    token: Option<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    repositories: Globs,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    name: Option<String>,
    media_type: Option<Globs>,
    artifact_type: Option<Globs>,
    upstream: Option<Globs>,
    repository: Option<Globs>,
    max_idle: Option<String>,
    max_age: Option<String>,
    max_bytes: Option<String>,
    #[serde(default)]
    pin: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    name: Option<String>,
    url: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    username: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    library_prefix: Option<bool>,
    repository_prefix: Option<String>,
    connect_timeout: Option<String>,
    response_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_concurrent_fetches: Option<usize>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None`: on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub offline: bool,
    /// The upstream for names with neither a `?ns=` nor a known prefix.
    pub default_upstream: Option<String>,
    pub log: String,
    /// Lines as tracing's text, or JSON objects.
    pub log_format: crate::logging::Format,
    /// How long a resolved tag is served before it is revalidated upstream.
    pub tag_ttl: Duration,
    /// How old a tag may be and still be served when the upstream fails (stale-if-error).
    pub max_staleness: Duration,
    /// How long an upstream "not found" for a tag is remembered.
    pub negative_ttl: Duration,
    pub max_manifest_size: u64,
    pub upstreams: Vec<UpstreamConfig>,
    pub policy: PolicyConfig,
    pub retention: RetentionConfig,
    /// Client access control; `None`: everyone reads everything.
    pub auth: Option<AuthConfig>,
    /// TLS on `listen`; `None`: plain HTTP (and h2c).
    pub tls: Option<TlsConfig>,
    /// The nodes sharing the fetches (`[cluster]`); `None`: one node.
    pub cluster: Option<ClusterConfig>,
    /// The shared blob tier (`[storage]`); `None`: local disk only.
    pub storage: Option<StorageConfig>,
    /// How long a client may take to send its request headers (slowloris).
    pub header_read_timeout: Duration,
    /// How long a SIGTERM waits for transfers in progress before closing them.
    pub shutdown_grace: Duration,
    /// Client connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// Cached blobs go to plain-HTTP/1 clients with sendfile(2).
    pub sendfile: bool,
    /// How often a server scrubs the store by itself; `None`: never (`entrepot scrub`).
    pub scrub_interval: Option<Duration>,
    /// Bytes a second a scrub reads at most, so that serving keeps the disk.
    pub scrub_rate: u64,
}

/// PEM files for the listener's TLS.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates are required and checked against this CA (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// Who may pull what (`[auth]`).
#[derive(Clone)]
pub struct AuthConfig {
    pub anonymous: bool,
    pub realm: String,
    /// User → bcrypt hash, from the htpasswd file.
    pub users: HashMap<String, String>,
    /// (user, token) for static bearer tokens.
    pub tokens: Vec<(String, String)>,
    pub groups: HashMap<String, Vec<String>>,
    pub grants: Vec<Grant>,
}

// Hand-written so that hashes and tokens never reach a log line.
impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("anonymous", &self.anonymous)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("tokens", &self.tokens.iter().map(|(u, _)| u).collect::<Vec<_>>())
            .field("grants", &self.grants)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Grant {
    /// User names; `*` is any authenticated user, `anonymous` the unauthenticated.
    pub users: Vec<String>,
    pub groups: Vec<String>,
    /// `<upstream>/<repository>` globs.
    pub repositories: Globs,
}

/// What may enter the cache.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub default: Action,
    pub rules: Vec<Rule>,
    /// Strict mode: a blob is served or fetched only when an allowed manifest of the
    /// repository references it.
    pub blobs_require_manifest: bool,
}

/// How long content stays.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    pub classes: Vec<Class>,
    pub limits: Limits,
    /// How often the sweeper runs (it also runs when a fill crosses the high watermark).
    pub sweep_interval: Duration,
}

#[derive(Clone)]
pub struct UpstreamConfig {
    pub name: String,
    /// Other host names that route here (`?ns=` values and path prefixes).
    pub aliases: Vec<String>,
    pub url: http::Uri,
    pub credentials: Option<Credentials>,
    pub ca_file: Option<PathBuf>,
    /// Docker Hub's rule: a one-component name `x` means `library/x`.
    pub library_prefix: bool,
    /// Prepended to every repository name sent to this upstream (`docker.io/`, when the
    /// upstream is another entrepot or a Harbor proxy project serving several registries).
    pub repository_prefix: Option<String>,
    pub connect_timeout: Duration,
    /// Time allowed for the upstream's response headers (first byte).
    pub response_timeout: Duration,
    /// Time allowed between two chunks of a body.
    pub idle_timeout: Duration,
    /// Blob downloads from this upstream at once; more wait their turn.
    pub max_concurrent_fetches: usize,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

// Hand-written so that a password never reaches a log line.
impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("username", &self.credentials.as_ref().map(|c| &c.username))
            .finish_non_exhaustive()
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| bad(path.display().to_string(), e.to_string()))?;
        Config::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().to_owned();
            let key = match e.span() {
                Some(span) => format!("line {}", text[..span.start].lines().count().max(1)),
                None => "file".to_owned(),
            };
            bad(key, message)
        })?;
        raw.validate()
    }

    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.name == name)
    }
}

impl RawConfig {
    fn validate(mut self) -> Result<Config, ConfigError> {
        // With a shared tier, this node's disk is its local tier, and its budget may be
        // given with the storage it sits in front of.
        let storage = self.storage.take();
        let local_max_bytes = match (
            self.max_cache_bytes.take(),
            storage.as_ref().and_then(|s| s.local_max_bytes.clone()),
        ) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "storage.local_max_bytes",
                    "max_cache_bytes is set too: keep one of them",
                ))
            }
            (a, b) => a.or(b),
        };
        let listen_text = self.listen.unwrap_or_else(|| "127.0.0.1:5000".to_owned());
        let listen = listen_text
            .parse()
            .map_err(|_| bad("listen", format!("{listen_text:?} is not an address:port")))?;
        let log = self.log.unwrap_or_else(|| "info".to_owned());
        tracing_subscriber::EnvFilter::try_new(&log).map_err(|e| bad("log", e.to_string()))?;
        let mut upstreams = Vec::new();
        for (i, u) in self.upstream.into_iter().enumerate() {
            let up = u.validate(&format!("upstream[{i}]"))?;
            for taken in &upstreams {
                let taken: &UpstreamConfig = taken;
                if let Some(shared) = up.names().find(|n| taken.names().any(|t| t == *n)) {
                    return Err(bad(
                        format!("upstream[{i}]"),
                        format!(
                            "upstreams {:?} and {:?} both answer to {shared:?} (a name, an alias or the host of a url): requests could not tell them apart",
                            taken.name, up.name
                        ),
                    ));
                }
            }
            upstreams.push(up);
        }
        if upstreams.is_empty() {
            return Err(bad("upstream", "at least one [[upstream]] is required"));
        }
        let default_upstream = match self.default_upstream {
            Some(name) => {
                let name = name.to_ascii_lowercase();
                let found = upstreams.iter().find(|u| u.names().any(|n| n == name));
                Some(
                    found
                        .ok_or_else(|| bad("default_upstream", format!("{name:?} names no [[upstream]]")))?
                        .name
                        .clone(),
                )
            }
            None if upstreams.len() == 1 => Some(upstreams[0].name.clone()),
            None => None,
        };
        let metrics_listen = match self.metrics_listen {
            Some(m) => Some(
                m.parse()
                    .map_err(|_| bad("metrics_listen", format!("{m:?} is not an address:port")))?,
            ),
            None => None,
        };
        Ok(Config {
            listen,
            metrics_listen,
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("data")),
            offline: self.offline,
            default_upstream,
            log,
            log_format: self.log_format,
            tag_ttl: duration("tag_ttl", self.tag_ttl, "1s")?,
            max_staleness: duration("max_staleness", self.max_staleness, "7d")?,
            negative_ttl: duration("negative_ttl", self.negative_ttl, "30s")?,
            max_manifest_size: size("max_manifest_size", self.max_manifest_size, "4MiB")?,
            upstreams,
            policy: PolicyConfig {
                default: self.default_policy.unwrap_or(Action::Allow),
                rules: self
                    .policy
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| rule(i, v))
                    .collect::<Result<_, _>>()?,
                blobs_require_manifest: self.blobs_require_manifest,
            },
            auth: self.auth.map(RawAuth::validate).transpose()?,
            tls: self.tls.map(RawTls::validate).transpose()?,
            cluster: self.cluster.map(RawCluster::validate).transpose()?,
            storage: storage.map(RawStorage::validate).transpose()?,
            header_read_timeout: duration("header_read_timeout", self.header_read_timeout, "30s")?,
            shutdown_grace: duration("shutdown_grace", self.shutdown_grace, "30s")?,
            max_connections: match self.max_connections {
                Some(0) => return Err(bad("max_connections", "must be at least 1")),
                Some(n) => n,
                None => 10_000,
            },
            sendfile: self.sendfile.unwrap_or(true),
            scrub_interval: match self.scrub_interval.as_deref() {
                None | Some("off") => None,
                Some(_) => Some(duration("scrub_interval", self.scrub_interval, "")?),
            },
            scrub_rate: size("scrub_rate", self.scrub_rate, "64MiB")?,
            retention: RetentionConfig {
                classes: self
                    .retention
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| retention_class(i, v))
                    .collect::<Result<_, _>>()?,
                limits: limits(local_max_bytes, self.high_watermark, self.low_watermark)?,
                sweep_interval: duration("sweep_interval", self.sweep_interval, "10m")?,
            },
        })
    }
}

impl RawTls {
    fn validate(self) -> Result<TlsConfig, ConfigError> {
        for (key, path) in [
            ("tls.cert", Some(&self.cert)),
            ("tls.key", Some(&self.key)),
            ("tls.client_ca", self.client_ca.as_ref()),
        ] {
            if let Some(p) = path {
                std::fs::File::open(p).map_err(|e| bad(key, format!("{}: {e}", p.display())))?;
            }
        }
        Ok(TlsConfig {
            cert: self.cert,
            key: self.key,
            client_ca: self.client_ca,
        })
    }
}

impl RawAuth {
    fn validate(self) -> Result<AuthConfig, ConfigError> {
        let mut users = HashMap::new();
        if let Some(path) = &self.htpasswd {
            let text =
                std::fs::read_to_string(path).map_err(|e| bad("auth.htpasswd", format!("{}: {e}", path.display())))?;
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
            {
                let (user, hash) = line
                    .trim()
                    .split_once(':')
                    .ok_or_else(|| bad("auth.htpasswd", format!("line {}: not user:hash", n + 1)))?;
                if !["$2a$", "$2b$", "$2x$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
                    return Err(bad(
                        "auth.htpasswd",
                        format!("line {} ({user}): only bcrypt hashes are accepted (htpasswd -B)", n + 1),
                    ));
                }
                users.insert(user.to_owned(), hash.to_owned());
            }
        }
        let mut tokens = Vec::new();
        for (i, t) in self.token.into_iter().enumerate() {
            let at = format!("auth.token[{i}]");
            let token = secret(&at, "token", t.token, t.token_env, t.token_file)?
                .ok_or_else(|| bad(&at, "needs one of token, token_env, token_file"))?;
            if token.len() < 16 {
                return Err(bad(format!("{at}.token"), "a token must be at least 16 characters"));
            }
            tokens.push((t.user, token));
        }
        for (i, g) in self.grant.iter().enumerate() {
            if g.users.is_empty() && g.groups.is_empty() {
                return Err(bad(
                    format!("auth.grant[{i}]"),
                    "grants to nobody: give users or groups",
                ));
            }
            if let Some(missing) = g.groups.iter().find(|name| !self.groups.contains_key(*name)) {
                return Err(bad(
                    format!("auth.grant[{i}].groups"),
                    format!("group {missing:?} is not defined in [auth.groups]"),
                ));
            }
            check_globs(
                &format!("auth.grant[{i}]"),
                &[("repositories", &Some(g.repositories.clone()))],
            )?;
        }
        Ok(AuthConfig {
            anonymous: self.anonymous.unwrap_or(false),
            realm: self.realm.unwrap_or_else(|| "entrepot".into()),
            users,
            tokens,
            groups: self.groups,
            grants: self
                .grant
                .into_iter()
                .map(|g| Grant {
                    users: g.users,
                    groups: g.groups,
                    repositories: g.repositories,
                })
                .collect(),
        })
    }
}

fn check_globs(at: &str, fields: &[(&str, &Option<Globs>)]) -> Result<(), ConfigError> {
    for (name, globs) in fields {
        if let Some(g) = globs {
            if g.is_empty() || g.patterns().iter().any(String::is_empty) {
                return Err(bad(
                    format!("{at}.{name}"),
                    "an empty pattern matches nothing; remove the field or give a glob",
                ));
            }
        }
    }
    Ok(())
}

fn rule(i: usize, value: toml::Value) -> Result<Rule, ConfigError> {
    let at = format!("policy[{i}]");
    let mut r: Rule = value
        .try_into()
        .map_err(|e: toml::de::Error| bad(&at, e.message().to_owned()))?;
    if r.name.is_empty() {
        r.name = at.clone();
    }
    let at = if r.name == at { at } else { format!("{at} ({})", r.name) };
    check_globs(
        &at,
        &[
            ("upstream", &r.upstream),
            ("repository", &r.repository),
            ("tag", &r.tag),
            ("media_type", &r.media_type),
            ("artifact_type", &r.artifact_type),
            ("layer_media_type", &r.layer_media_type),
            ("platform", &r.platform),
            ("require_referrer", &r.require_referrer),
        ],
    )?;
    if r.action == Action::Deny && r.require_referrer.is_some() {
        return Err(bad(
            format!("{at}.require_referrer"),
            "only an allow rule can require a referrer",
        ));
    }
    if let Some(required) = &mut r.require_signature {
        let at = format!("{at}.require_signature");
        if r.action == Action::Deny {
            return Err(bad(at, "only an allow rule can require a signature"));
        }
        required.keyring = keyring(&at, required)?;
    }
    Ok(r)
}

/// The keys a rule trusts, read now: a key that cannot be read stops the start, and a key
/// removed from the config no longer verifies anything after it.
fn keyring(at: &str, required: &RequireSignature) -> Result<Keyring, ConfigError> {
    if required.cosign_keys.is_empty() {
        return Err(bad(format!("{at}.cosign_keys"), "name at least one public key file"));
    }
    let mut keys = Vec::new();
    for path in &required.cosign_keys {
        let name = path.display().to_string();
        let pem = std::fs::read(path).map_err(|e| bad(format!("{at}.cosign_keys"), format!("{name}: {e}")))?;
        keys.push(
            PublicKey::from_pem(&name, &pem).map_err(|e| bad(format!("{at}.cosign_keys"), format!("{name}: {e}")))?,
        );
    }
    // Whether children need their own signatures changes what a verdict means.
    Ok(Keyring::new(keys, if required.each_child { "each_child" } else { "" }))
}

fn retention_class(i: usize, value: toml::Value) -> Result<Class, ConfigError> {
    let at = format!("retention[{i}]");
    let raw: RawRetention = value
        .try_into()
        .map_err(|e: toml::de::Error| bad(&at, e.message().to_owned()))?;
    let name = raw.name.clone().unwrap_or_else(|| at.clone());
    let at = if raw.name.is_some() {
        format!("{at} ({name})")
    } else {
        at
    };
    check_globs(
        &at,
        &[
            ("media_type", &raw.media_type),
            ("artifact_type", &raw.artifact_type),
            ("upstream", &raw.upstream),
            ("repository", &raw.repository),
        ],
    )?;
    let opt_duration =
        |key: &str, v: Option<String>| v.map(|v| duration(&format!("{at}.{key}"), Some(v), "0s")).transpose();
    let max_idle = opt_duration("max_idle", raw.max_idle)?;
    let max_age = opt_duration("max_age", raw.max_age)?;
    let max_bytes = raw
        .max_bytes
        .map(|v| size(&format!("{at}.max_bytes"), Some(v), "0"))
        .transpose()?;
    if raw.pin && (max_idle.is_some() || max_age.is_some() || max_bytes.is_some()) {
        return Err(bad(
            format!("{at}.pin"),
            "pinned content never goes: max_idle, max_age and max_bytes cannot apply",
        ));
    }
    Ok(Class {
        name,
        media_type: raw.media_type,
        artifact_type: raw.artifact_type,
        upstream: raw.upstream,
        repository: raw.repository,
        max_idle,
        max_age,
        max_bytes,
        pin: raw.pin,
    })
}

fn limits(max: Option<String>, high: Option<u8>, low: Option<u8>) -> Result<Limits, ConfigError> {
    let defaults = Limits::default();
    let limits = Limits {
        max_cache_bytes: max.map(|m| size("max_cache_bytes", Some(m), "0")).transpose()?,
        high_watermark: high.unwrap_or(defaults.high_watermark),
        low_watermark: low.unwrap_or(defaults.low_watermark),
    };
    if limits.high_watermark == 0 || limits.high_watermark > 100 {
        return Err(bad("high_watermark", "a percentage from 1 to 100"));
    }
    if limits.low_watermark >= limits.high_watermark {
        return Err(bad("low_watermark", "must be below high_watermark"));
    }
    Ok(limits)
}

impl RawUpstream {
    fn validate(self, at: &str) -> Result<UpstreamConfig, ConfigError> {
        let name = self
            .name
            .ok_or_else(|| bad(format!("{at}.name"), "missing"))?
            .to_ascii_lowercase();
        if !is_host_like(&name) {
            return Err(bad(
                format!("{at}.name"),
                format!("{name:?} must look like a registry host (letters, digits, '.', '-', ':')"),
            ));
        }
        let url_text = self.url.ok_or_else(|| bad(format!("{at}.url"), "missing"))?;
        let url: http::Uri = url_text
            .parse()
            .map_err(|e| bad(format!("{at}.url"), format!("{url_text:?}: {e}")))?;
        match url.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(bad(
                    format!("{at}.url"),
                    format!("{url_text:?} must start with https:// or http://"),
                ))
            }
        }
        let host = url
            .host()
            .ok_or_else(|| bad(format!("{at}.url"), format!("{url_text:?} has no host")))?
            .to_ascii_lowercase();
        if url.path() != "/" && !url.path().is_empty() {
            return Err(bad(format!("{at}.url"), "must be the registry root, without a path"));
        }
        let docker_hub = DOCKER_HUB_ALIASES.contains(&name.as_str()) || DOCKER_HUB_ALIASES.contains(&host.as_str());
        let mut aliases: Vec<String> = self.aliases.iter().map(|a| a.to_ascii_lowercase()).collect();
        for (i, a) in aliases.iter().enumerate() {
            if !is_host_like(a) {
                return Err(bad(
                    format!("{at}.aliases[{i}]"),
                    format!("{a:?} must look like a registry host"),
                ));
            }
        }
        if docker_hub {
            aliases.extend(DOCKER_HUB_ALIASES.iter().map(|a| a.to_string()));
        }
        // containerd's `?ns=` and image references name the registry by its host.
        aliases.extend(url_hosts(&url));
        aliases.retain(|a| *a != name);
        aliases.sort();
        aliases.dedup();
        let password = secret(at, "password", self.password, self.password_env, self.password_file)?;
        let credentials = match (self.username, password) {
            (Some(username), Some(password)) => Some(Credentials { username, password }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(bad(
                    format!("{at}.username"),
                    "needs one of password, password_env, password_file",
                ))
            }
            (None, Some(_)) => return Err(bad(format!("{at}.username"), "missing, but a password is set")),
        };
        if let Some(ca) = &self.ca_file {
            if !ca.is_file() {
                return Err(bad(
                    format!("{at}.ca_file"),
                    format!("{} is not a readable file", ca.display()),
                ));
            }
        }
        let repository_prefix = match self.repository_prefix {
            Some(p) if crate::oci::name::is_valid_name(&p) => Some(p),
            Some(p) => {
                return Err(bad(
                    format!("{at}.repository_prefix"),
                    format!("{p:?} is not a repository name prefix (path components: a-z0-9 ._-)"),
                ))
            }
            None => None,
        };
        Ok(UpstreamConfig {
            name,
            aliases,
            url,
            credentials,
            ca_file: self.ca_file,
            library_prefix: self.library_prefix.unwrap_or(docker_hub),
            repository_prefix,
            connect_timeout: duration(&format!("{at}.connect_timeout"), self.connect_timeout, "10s")?,
            response_timeout: duration(&format!("{at}.response_timeout"), self.response_timeout, "15s")?,
            idle_timeout: duration(&format!("{at}.idle_timeout"), self.idle_timeout, "10s")?,
            max_concurrent_fetches: match self.max_concurrent_fetches {
                Some(0) => return Err(bad(format!("{at}.max_concurrent_fetches"), "must be at least 1")),
                Some(n) => n,
                None => 32,
            },
        })
    }
}

/// The names a URL's host goes by: `host[:port]` as written, and the bare host when the
/// port is the scheme's default.
fn url_hosts(url: &http::Uri) -> Vec<String> {
    let Some(authority) = url.authority() else {
        return Vec::new();
    };
    let mut hosts = vec![authority.as_str().to_ascii_lowercase()];
    let default_port = match url.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    if authority.port_u16() == Some(default_port) {
        hosts.push(authority.host().to_ascii_lowercase());
    }
    hosts
}

impl UpstreamConfig {
    /// The name and every alias this upstream answers to.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

/// A secret given inline, by environment variable or by file: `<field>`, `<field>_env`,
/// `<field>_file`, at most one of them.
fn secret(
    at: &str,
    field: &str,
    inline: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<String>, ConfigError> {
    match (inline, env, file) {
        (None, None, None) => Ok(None),
        (Some(p), None, None) => Ok(Some(p)),
        (None, Some(var), None) => std::env::var(&var).map(Some).map_err(|_| {
            bad(
                format!("{at}.{field}_env"),
                format!("environment variable {var:?} is not set"),
            )
        }),
        (None, None, Some(path)) => std::fs::read_to_string(&path)
            .map(|p| Some(p.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|e| bad(format!("{at}.{field}_file"), format!("{}: {e}", path.display()))),
        _ => Err(bad(
            format!("{at}.{field}"),
            format!("set only one of {field}, {field}_env, {field}_file"),
        )),
    }
}

fn is_host_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'))
}

fn duration(key: &str, value: Option<String>, default: &str) -> Result<Duration, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_owned());
    humantime::parse_duration(&text).map_err(|e| {
        bad(
            key,
            format!("{text:?} is not a duration like \"30s\", \"5m\", \"7d\": {e}"),
        )
    })
}

/// Parses "4MiB", "200GiB", "512kB", "1024" into bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        "tb" => 1_000_000_000_000,
        "tib" | "t" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn size(key: &str, value: Option<String>, default: &str) -> Result<u64, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_owned());
    parse_size(&text).ok_or_else(|| bad(key, format!("{text:?} is not a size like \"4MiB\" or \"200GiB\"")))
}

#[cfg(test)]
mod tests;
