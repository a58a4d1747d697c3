//! Upstream authentication: `WWW-Authenticate` challenges, the registry token flow, and the
//! per-scope token cache. Tokens and passwords never reach a log line (`Debug` is redacted).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;

use crate::config::Credentials;
use crate::sync::Locked;

/// A parsed authentication challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

/// Parses the first challenge we can answer out of `WWW-Authenticate` header values.
pub fn parse_challenge<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    for v in values {
        let v = v.trim();
        let (scheme, rest) = v.split_once(char::is_whitespace).unwrap_or((v, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            let params = parse_params(rest);
            let realm = params.get("realm")?.clone();
            return Some(Challenge::Bearer {
                realm,
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            });
        }
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Challenge::Basic);
        }
    }
    None
}

/// `key=value` and `key="quoted, \"escaped\""` pairs separated by commas. Keys are lowercased.
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            if key.trim().is_empty() {
                return out;
            }
            continue;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
}

pub fn basic_header(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.password);
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
}

/// The body of a token endpoint's answer (docker token spec and OAuth2 both).
#[derive(Deserialize)]
pub struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token and how long it may be used. The spec's default lifetime is 60 s; we stop
    /// using a token a little before it expires so that a request never carries a dead one.
    pub fn into_token(self) -> Option<(String, Duration)> {
        let token = self.token.or(self.access_token).filter(|t| !t.is_empty())?;
        let life = self.expires_in.unwrap_or(60).max(1);
        let margin = (life / 10).clamp(1, 30).min(life / 2);
        Some((token, Duration::from_secs(life - margin)))
    }
}

/// Tokens per scope, and the last bearer challenge seen, so that a new scope can fetch its
/// token without first being refused.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    challenge: Mutex<Option<Challenge>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCache(<redacted>)")
    }
}

impl TokenCache {
    pub fn get(&self, scope: &str) -> Option<String> {
        let mut tokens = self.tokens.locked();
        match tokens.get(scope) {
            Some((t, until)) if *until > Instant::now() => Some(t.clone()),
            Some(_) => {
                tokens.remove(scope);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, scope: &str, token: String, life: Duration) {
        let mut tokens = self.tokens.locked();
        tokens.insert(scope.to_owned(), (token, Instant::now() + life));
    }

    pub fn forget(&self, scope: &str) {
        self.tokens.locked().remove(scope);
    }

    pub fn last_challenge(&self) -> Option<Challenge> {
        self.challenge.locked().clone()
    }

    pub fn set_challenge(&self, c: Challenge) {
        *self.challenge.locked() = Some(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn challenge_parsing_never_panics(s in ".{0,400}") {
            let _ = parse_challenge([s.as_str()]);
        }

        #[test]
        fn bearer_challenges_keep_their_realm(realm in "https://[a-z]{1,10}\\.example/[a-z]{0,10}", scope in "repository:[a-z/]{1,20}:pull(,push)?") {
            let header = format!(r#"Bearer realm="{realm}",service="s",scope="{scope}""#);
            let parsed = parse_challenge([header.as_str()]);
            prop_assert_eq!(parsed, Some(Challenge::Bearer { realm, service: Some("s".into()), scope: Some(scope) }));
        }
    }

    #[test]
    fn parses_docker_hub_challenge() {
        let c = parse_challenge([
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        ]);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            })
        );
    }

    #[test]
    fn parses_quoted_commas_escapes_and_unquoted_values() {
        let c = parse_challenge([
            r#"Basic realm="x", Bearer realm=https://a/t, scope="repository:a:pull,push", service="s \"q\"""#,
        ]);
        assert_eq!(c, Some(Challenge::Basic));
        let c = parse_challenge([r#"bearer realm=https://a/t, scope="repository:a:pull,push", service="s \"q\"""#]);
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://a/t".into(),
                service: Some("s \"q\"".into()),
                scope: Some("repository:a:pull,push".into())
            })
        );
        assert_eq!(parse_challenge(["Bearer service=\"x\""]), None);
        assert_eq!(parse_challenge(["Negotiate abc"]), None);
        assert_eq!(parse_challenge(["Bearer ,,,=,=\""]), None);
    }

    #[test]
    fn token_lifetimes_keep_a_margin() {
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"abc","expires_in":300}"#).unwrap();
        assert_eq!(t.into_token(), Some(("abc".into(), Duration::from_secs(270))));
        let t: TokenResponse = serde_json::from_str(r#"{"token":"abc"}"#).unwrap();
        assert_eq!(t.into_token().unwrap().1, Duration::from_secs(54));
        let t: TokenResponse = serde_json::from_str(r#"{"token":""}"#).unwrap();
        assert!(t.into_token().is_none());
    }

    #[test]
    fn cache_expires() {
        let c = TokenCache::default();
        c.put("s", "t".into(), Duration::from_secs(60));
        assert_eq!(c.get("s").as_deref(), Some("t"));
        c.put("s", "t".into(), Duration::ZERO);
        assert_eq!(c.get("s"), None);
        assert_eq!(format!("{c:?}"), "TokenCache(<redacted>)");
    }
}
