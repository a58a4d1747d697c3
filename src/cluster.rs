//! Several nodes, one fetch. Each digest (and each tag) has an owner among `[cluster] peers`,
//! picked by rendezvous hashing: every node computes the same owner from the same list, and
//! a node joining or leaving moves only the keys it owned. A node that misses asks the owner,
//! which fetches once (coalescing as it does for its own clients) and streams to it; when
//! the owner does not answer, the node fetches itself: a lost node costs a duplicate fetch,
//! never a failed pull.
//!
//! Peers ask each other through the same registry API, with the cluster's secret as a
//! bearer token and the fingerprint of their peer list in a header. A node whose list
//! differs refuses (421), and the asking node fetches itself: two nodes that disagree on
//! who owns what never pass a request back and forth.

use sha2::{Digest as _, Sha256};

use crate::config::ClusterConfig;

/// The header carrying the fingerprint of the sender's peer list.
pub const HEADER: &str = "entrepot-cluster";

#[derive(Debug)]
pub struct Cluster {
    config: ClusterConfig,
    fingerprint: String,
}

impl Cluster {
    pub fn new(config: ClusterConfig) -> Cluster {
        let fingerprint = hex::encode(&Sha256::digest(config.peers.join("\n").as_bytes())[..8]);
        Cluster { config, fingerprint }
    }

    /// The peer that owns `key`: the one scoring highest for it.
    pub fn owner(&self, key: &str) -> &str {
        let score = |peer: &str| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(peer.as_bytes());
            h.update([0]);
            h.update(key.as_bytes());
            h.finalize().into()
        };
        self.config
            .peers
            .iter()
            .max_by_key(|p| score(p))
            .map(String::as_str)
            .unwrap_or(&self.config.self_url)
    }

    pub fn is_self(&self, peer: &str) -> bool {
        peer == self.config.self_url
    }

    /// This node's URL as a name for files: `http://10.0.0.1:5000` is `http-10.0.0.1-5000`.
    pub fn node_name(&self) -> String {
        self.config
            .self_url
            .replace("://", "-")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    }

    /// The other nodes.
    pub fn others(&self) -> impl Iterator<Item = &str> {
        self.config
            .peers
            .iter()
            .map(String::as_str)
            .filter(|p| !self.is_self(p))
    }

    /// Changes with the peer list: nodes agree on owners only when theirs match.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether an `Authorization` header value is a peer's (constant time).
    pub fn is_peer_token(&self, authorization: &str) -> bool {
        let Some(token) = authorization.strip_prefix("Bearer ") else {
            return false;
        };
        let (a, b) = (token.trim().as_bytes(), self.config.secret.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// The CA bundle `https://` peers are checked against, beside the web roots.
    pub fn ca_file(&self) -> Option<&std::path::Path> {
        self.config.ca_file.as_deref()
    }

    /// The `Authorization` value a peer request carries.
    pub fn authorization(&self) -> String {
        format!("Bearer {}", self.config.secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(peers: &[&str], me: &str) -> Cluster {
        Cluster::new(ClusterConfig {
            self_url: me.into(),
            peers: peers.iter().map(|p| p.to_string()).collect(),
            secret: "0123456789abcdef".into(),
            ca_file: None,
        })
    }

    #[test]
    fn every_node_picks_the_same_owner_and_keys_spread() {
        let peers = ["http://a:5000", "http://b:5000", "http://c:5000"];
        let (a, b) = (cluster(&peers, peers[0]), cluster(&peers, peers[1]));
        let mut per_peer = std::collections::HashMap::new();
        for i in 0..3000 {
            let key = format!("sha256:{i:064x}");
            assert_eq!(a.owner(&key), b.owner(&key));
            *per_peer.entry(a.owner(&key).to_owned()).or_insert(0) += 1;
        }
        // 1000 each on average; rendezvous hashing keeps each within a few percent.
        assert!(per_peer.values().all(|n| (850..1150).contains(n)), "{per_peer:?}");
    }

    #[test]
    fn a_node_leaving_moves_only_its_own_keys() {
        let three = cluster(&["http://a:5000", "http://b:5000", "http://c:5000"], "http://a:5000");
        let two = cluster(&["http://a:5000", "http://b:5000"], "http://a:5000");
        for i in 0..1000 {
            let key = format!("k{i}");
            if three.owner(&key) != "http://c:5000" {
                assert_eq!(three.owner(&key), two.owner(&key));
            }
        }
        assert_ne!(three.fingerprint(), two.fingerprint());
    }

    #[test]
    fn only_the_secret_as_a_bearer_token_is_a_peer() {
        let c = cluster(&["http://a:5000"], "http://a:5000");
        assert!(c.is_peer_token(&c.authorization()));
        assert!(!c.is_peer_token("Bearer 0123456789abcdeX"));
        assert!(!c.is_peer_token("Bearer 0123456789abcde"));
        assert!(!c.is_peer_token("Basic 0123456789abcdef"));
        assert_eq!(c.others().count(), 0);
    }
}
