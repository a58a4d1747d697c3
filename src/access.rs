//! Client access control: who may pull what.
//!
//! Clients authenticate with Basic (users from an htpasswd file, bcrypt) or a static bearer
//! token; `anonymous = true` lets the unauthenticated in as `anonymous`. `[[auth.grant]]`
//! rules give read access on repository globs (`docker.io/library/*`, the name as the path
//! prefix writes it) to users and groups; with no grant at all, whoever is let in reads
//! everything. Passwords and tokens never reach a log line.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::Digest as _;

use crate::config::AuthConfig;
use crate::error::{Error, Result};
use crate::sync::Locked;

/// How long a verified password is trusted without running bcrypt again (it costs tens of
/// milliseconds on purpose; a client pulling an image sends it with every request).
const VERIFIED_FOR: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User(String),
    /// Another node of the cluster, asking for what this node owns.
    Peer,
}

impl Identity {
    pub fn name(&self) -> &str {
        match self {
            Identity::Anonymous => "anonymous",
            Identity::User(u) => u,
            Identity::Peer => "peer",
        }
    }
}

pub struct Access {
    config: Option<AuthConfig>,
    verified: Mutex<HashMap<(String, [u8; 32]), Instant>>,
}

impl Access {
    pub fn new(config: Option<AuthConfig>) -> Access {
        Access {
            config,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The challenge sent with a 401.
    pub fn realm(&self) -> &str {
        self.config.as_ref().map_or("entrepot", |c| c.realm.as_str())
    }

    /// Who is asking, from the `Authorization` header.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Identity> {
        let Some(config) = &self.config else {
            return Ok(Identity::Anonymous);
        };
        let refused = || Error::AuthRequired {
            realm: config.realm.clone(),
        };
        let Some(header) = authorization.map(str::trim).filter(|h| !h.is_empty()) else {
            return if config.anonymous {
                Ok(Identity::Anonymous)
            } else {
                Err(refused())
            };
        };
        let (scheme, value) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            let value = value.trim();
            return config
                .tokens
                .iter()
                .find(|(_, token)| constant_time_eq(token.as_bytes(), value.as_bytes()))
                .map(|(user, _)| Identity::User(user.clone()))
                .ok_or_else(refused);
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .map_err(|_| refused())?;
            let decoded = String::from_utf8(decoded).map_err(|_| refused())?;
            let (user, password) = decoded.split_once(':').ok_or_else(refused)?;
            return if self.password_ok(config, user, password) {
                Ok(Identity::User(user.to_owned()))
            } else {
                Err(refused())
            };
        }
        Err(refused())
    }

    fn password_ok(&self, config: &AuthConfig, user: &str, password: &str) -> bool {
        let Some(hash) = config.users.get(user) else {
            return false;
        };
        let key = (user.to_owned(), sha2::Sha256::digest(password.as_bytes()).into());
        let mut verified = self.verified.locked();
        if verified.get(&key).is_some_and(|at| at.elapsed() < VERIFIED_FOR) {
            return true;
        }
        drop(verified);
        if !bcrypt::verify(password, hash).unwrap_or(false) {
            return false;
        }
        verified = self.verified.locked();
        if verified.len() > 10_000 {
            verified.clear();
        }
        verified.insert(key, Instant::now());
        true
    }

    /// Whether grants decide per repository (else whoever is let in reads everything).
    pub fn restricts_repositories(&self) -> bool {
        self.config.as_ref().is_some_and(|c| !c.grants.is_empty())
    }

    /// Whether `who` may read `repository` (`<upstream>/<repo>`).
    pub fn authorize(&self, who: &Identity, repository: &str) -> Result<()> {
        let Some(config) = &self.config else { return Ok(()) };
        // A peer asks on behalf of a client this cluster already let in.
        if config.grants.is_empty() || *who == Identity::Peer {
            return Ok(());
        }
        let name = who.name();
        let in_group = |g: &String| {
            config
                .groups
                .get(g)
                .is_some_and(|members| members.iter().any(|m| m == name))
        };
        let granted = config.grants.iter().any(|g| {
            let user_ok = g
                .users
                .iter()
                .any(|u| u == name || (u == "*" && *who != Identity::Anonymous))
                || g.groups.iter().any(in_group);
            user_ok && g.repositories.matches(repository)
        });
        if granted {
            Ok(())
        } else {
            Err(Error::Denied(format!("{name} may not pull {repository}")))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Grant;
    use crate::policy::glob::Globs;

    fn config(anonymous: bool) -> AuthConfig {
        AuthConfig {
            anonymous,
            realm: "entrepot".into(),
            users: HashMap::from([("ci".to_owned(), bcrypt::hash("pw", 4).unwrap())]),
            tokens: vec![("robot".into(), "t0ken".into())],
            groups: HashMap::from([("ops".to_owned(), vec!["robot".to_owned()])]),
            grants: vec![
                Grant {
                    users: vec!["ci".into()],
                    groups: vec![],
                    repositories: Globs::One("docker.io/library/*".into()),
                },
                Grant {
                    users: vec![],
                    groups: vec!["ops".into()],
                    repositories: Globs::One("*".into()),
                },
                Grant {
                    users: vec!["anonymous".into()],
                    groups: vec![],
                    repositories: Globs::One("public/*".into()),
                },
            ],
        }
    }

    fn basic(user: &str, pw: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        )
    }

    #[test]
    fn authenticates_basic_and_bearer() {
        let a = Access::new(Some(config(false)));
        assert_eq!(
            a.authenticate(Some(&basic("ci", "pw"))).unwrap(),
            Identity::User("ci".into())
        );
        assert_eq!(
            a.authenticate(Some(&basic("ci", "pw"))).unwrap(),
            Identity::User("ci".into()),
            "cached"
        );
        assert!(matches!(
            a.authenticate(Some(&basic("ci", "nope"))),
            Err(Error::AuthRequired { .. })
        ));
        assert!(a.authenticate(Some(&basic("ghost", "pw"))).is_err());
        assert_eq!(
            a.authenticate(Some("Bearer t0ken")).unwrap(),
            Identity::User("robot".into())
        );
        assert!(a.authenticate(Some("Bearer t0ke")).is_err());
        assert!(a.authenticate(None).is_err());
        assert!(a.authenticate(Some("Digest x")).is_err());
        assert_eq!(
            Access::new(Some(config(true))).authenticate(None).unwrap(),
            Identity::Anonymous
        );
        assert_eq!(
            Access::new(None).authenticate(Some("anything")).unwrap(),
            Identity::Anonymous
        );
    }

    #[test]
    fn grants_by_user_group_and_glob() {
        let a = Access::new(Some(config(true)));
        let ci = Identity::User("ci".into());
        assert!(a.authorize(&ci, "docker.io/library/alpine").is_ok());
        assert!(matches!(a.authorize(&ci, "ghcr.io/org/app"), Err(Error::Denied(_))));
        assert!(a.authorize(&Identity::User("robot".into()), "ghcr.io/org/app").is_ok());
        assert!(a.authorize(&Identity::Anonymous, "public/x").is_ok());
        assert!(a.authorize(&Identity::Anonymous, "docker.io/library/alpine").is_err());
    }
}
