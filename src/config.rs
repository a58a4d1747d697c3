//! The configuration file: its TOML schema, defaults, and validation into the runtime
//! types the rest of the crate uses. Every problem names the key it comes from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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
    data_dir: Option<PathBuf>,
    #[serde(default)]
    offline: bool,
    default_upstream: Option<String>,
    log: Option<String>,
    tag_ttl: Option<String>,
    max_staleness: Option<String>,
    negative_ttl: Option<String>,
    max_manifest_size: Option<String>,
    #[serde(default)]
    upstream: Vec<RawUpstream>,
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
    connect_timeout: Option<String>,
    response_timeout: Option<String>,
    idle_timeout: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub offline: bool,
    /// The upstream for names with neither a `?ns=` nor a known prefix.
    pub default_upstream: Option<String>,
    pub log: String,
    /// How long a resolved tag is served before it is revalidated upstream.
    pub tag_ttl: Duration,
    /// How old a tag may be and still be served when the upstream fails (stale-if-error).
    pub max_staleness: Duration,
    /// How long an upstream "not found" for a tag is remembered.
    pub negative_ttl: Duration,
    pub max_manifest_size: u64,
    pub upstreams: Vec<UpstreamConfig>,
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
    pub connect_timeout: Duration,
    /// Time allowed for the upstream's response headers (first byte).
    pub response_timeout: Duration,
    /// Time allowed between two chunks of a body.
    pub idle_timeout: Duration,
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
    fn validate(self) -> Result<Config, ConfigError> {
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
                if up.names().any(|n| taken.names().any(|t| t == n)) {
                    return Err(bad(
                        format!("upstream[{i}].name"),
                        format!("{:?} is already used by upstream {:?}", up.name, taken.name),
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
        Ok(Config {
            listen,
            data_dir: self.data_dir.unwrap_or_else(|| PathBuf::from("data")),
            offline: self.offline,
            default_upstream,
            log,
            tag_ttl: duration("tag_ttl", self.tag_ttl, "5m")?,
            max_staleness: duration("max_staleness", self.max_staleness, "7d")?,
            negative_ttl: duration("negative_ttl", self.negative_ttl, "30s")?,
            max_manifest_size: size("max_manifest_size", self.max_manifest_size, "4MiB")?,
            upstreams,
        })
    }
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
        aliases.retain(|a| *a != name);
        aliases.sort();
        aliases.dedup();
        let password = password(at, self.password, self.password_env, self.password_file)?;
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
        Ok(UpstreamConfig {
            name,
            aliases,
            url,
            credentials,
            ca_file: self.ca_file,
            library_prefix: self.library_prefix.unwrap_or(docker_hub),
            connect_timeout: duration(&format!("{at}.connect_timeout"), self.connect_timeout, "10s")?,
            response_timeout: duration(&format!("{at}.response_timeout"), self.response_timeout, "60s")?,
            idle_timeout: duration(&format!("{at}.idle_timeout"), self.idle_timeout, "60s")?,
        })
    }
}

impl UpstreamConfig {
    /// The name and every alias this upstream answers to.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.name.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

fn password(
    at: &str,
    inline: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<String>, ConfigError> {
    match (inline, env, file) {
        (None, None, None) => Ok(None),
        (Some(p), None, None) => Ok(Some(p)),
        (None, Some(var), None) => std::env::var(&var).map(Some).map_err(|_| {
            bad(
                format!("{at}.password_env"),
                format!("environment variable {var:?} is not set"),
            )
        }),
        (None, None, Some(path)) => std::fs::read_to_string(&path)
            .map(|p| Some(p.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|e| bad(format!("{at}.password_file"), format!("{}: {e}", path.display()))),
        _ => Err(bad(
            format!("{at}.password"),
            "set only one of password, password_env, password_file",
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
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
listen = "127.0.0.1:5000"
data_dir = "data"
[[upstream]]
name = "docker.io"
url = "https://registry-1.docker.io"
"#;

    #[test]
    fn minimal_config_runs_with_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        assert_eq!(c.default_upstream.as_deref(), Some("docker.io"));
        assert_eq!(c.tag_ttl, Duration::from_secs(300));
        assert_eq!(c.max_manifest_size, 4 << 20);
        let up = &c.upstreams[0];
        assert!(up.library_prefix);
        assert!(up.aliases.contains(&"index.docker.io".to_owned()));
    }

    #[test]
    fn shipped_config_is_valid() {
        let text = include_str!("../config.toml");
        Config::parse(text).unwrap();
    }

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err("listen = \"nope\"\n[[upstream]]\nname=\"a\"\nurl=\"http://a\"").contains("listen"));
        assert!(err("[[upstream]]\nname=\"a\"\nurl=\"ftp://a\"").contains("upstream[0].url"));
        assert!(err("[[upstream]]\nname=\"a\"\nurl=\"http://a\"\ntag_ttl=\"x\"").contains("unknown field"));
        assert!(err("tag_ttl = \"soon\"\n[[upstream]]\nname=\"a\"\nurl=\"http://a\"").contains("tag_ttl"));
        assert!(err("default_upstream=\"b\"\n[[upstream]]\nname=\"a\"\nurl=\"http://a\"").contains("default_upstream"));
        assert!(
            err("[[upstream]]\nname=\"a\"\nurl=\"http://a\"\n[[upstream]]\nname=\"a\"\nurl=\"http://b\"")
                .contains("upstream[1].name")
        );
        assert!(err("[[upstream]]\nname=\"a\"\nurl=\"http://a\"\nusername=\"u\"").contains("upstream[0].username"));
        assert!(err(
            "[[upstream]]\nname=\"a\"\nurl=\"http://a\"\nusername=\"u\"\npassword_env=\"ENTREPOT_SURELY_UNSET\""
        )
        .contains("upstream[0].password_env"));
        assert!(err("").contains("upstream"));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4MiB"), Some(4 << 20));
        assert_eq!(parse_size("200GiB"), Some(200 << 30));
        assert_eq!(parse_size("10"), Some(10));
        assert_eq!(parse_size("ten"), None);
    }
}
