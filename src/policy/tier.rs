//! Retention of the shared tier: which objects of the bucket go. Pure: the node that sweeps
//! lists the bucket and gathers every node's access report; this picks.
//!
//! An object's last use is the later of its upload and the last time any node served the
//! blob. Objects idle past `max_idle` go; then, while the tier is over `max_bytes`, the
//! least recently used.

use std::collections::HashMap;

/// One object of the tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub size: u64,
    /// Unix milliseconds.
    pub last_used: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierLimits {
    pub max_bytes: Option<u64>,
    /// Milliseconds.
    pub max_idle: Option<u64>,
}

impl TierLimits {
    pub fn any(&self) -> bool {
        self.max_bytes.is_some() || self.max_idle.is_some()
    }
}

/// The indexes of the items to delete, least recently used first.
pub fn evictions(items: &[Item], limits: &TierLimits, now: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].last_used);
    let mut total: u64 = items.iter().map(|i| i.size).sum();
    let mut out = Vec::new();
    for i in order {
        let idle = limits
            .max_idle
            .is_some_and(|max| now.saturating_sub(items[i].last_used) > max);
        let over = limits.max_bytes.is_some_and(|max| total > max);
        if idle || over {
            total -= items[i].size;
            out.push(i);
        }
    }
    out
}

/// Every node's report merged: per digest, the latest use any node saw.
pub fn merge_reports<'a>(reports: impl IntoIterator<Item = &'a HashMap<String, u64>>) -> HashMap<String, u64> {
    let mut out: HashMap<String, u64> = HashMap::new();
    for report in reports {
        for (d, at) in report {
            let e = out.entry(d.clone()).or_insert(0);
            *e = (*e).max(*at);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(size: u64, last_used: u64) -> Item {
        Item { size, last_used }
    }

    #[test]
    fn least_recently_used_go_until_the_tier_fits() {
        let items = [item(50, 30), item(50, 10), item(50, 20), item(50, 40)];
        let limits = TierLimits {
            max_bytes: Some(100),
            max_idle: None,
        };
        assert_eq!(evictions(&items, &limits, 100), vec![1, 2]);
        assert!(evictions(&items, &TierLimits::default(), 100).is_empty());
    }

    #[test]
    fn idle_objects_go_whatever_the_space() {
        let items = [item(1, 0), item(1, 900), item(1, 500)];
        let limits = TierLimits {
            max_bytes: None,
            max_idle: Some(400),
        };
        assert_eq!(evictions(&items, &limits, 1000), vec![0, 2]);
    }

    #[test]
    fn reports_merge_to_the_latest_use() {
        let a = HashMap::from([("sha256:a".to_owned(), 5), ("sha256:b".to_owned(), 9)]);
        let b = HashMap::from([("sha256:a".to_owned(), 7)]);
        let merged = merge_reports([&a, &b]);
        assert_eq!((merged["sha256:a"], merged["sha256:b"]), (7, 9));
    }
}
