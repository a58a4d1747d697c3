//! Human-readable reports: what a sweep evicts and why, what the cache holds, what policy
//! decided. Shared by the CLI and the operator endpoints.

use std::fmt::Write;

use crate::cache::sweep::{CacheStats, Usage};
use crate::policy::retention::{Kind, Plan};

fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn human_age(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
}

pub fn plan(plan: &Plan, dry_run: bool) -> String {
    let mut out = String::new();
    let verb = if dry_run { "would evict" } else { "evicted" };
    let freed: u64 = plan.evictions.iter().map(|e| e.size).sum();
    let _ = writeln!(
        out,
        "{verb} {} item(s), {} of {} (after: {})",
        plan.evictions.len(),
        human_bytes(freed),
        human_bytes(plan.bytes_before),
        human_bytes(plan.bytes_after)
    );
    for e in &plan.evictions {
        let kind = match e.kind {
            Kind::Manifest => "manifest",
            Kind::Blob => "blob",
        };
        let _ = writeln!(
            out,
            "  {kind:8} {}  {:>10}  class={}  idle={}  reason: {}",
            e.digest,
            human_bytes(e.size),
            e.class,
            human_age(e.idle_ms),
            e.reason
        );
    }
    out
}

pub fn usage(stats: &CacheStats, decisions: &[(String, (u64, u64))]) -> String {
    let mut out = String::new();
    let row = |out: &mut String, name: &str, u: &Usage| {
        let _ = writeln!(
            out,
            "  {name:24} {:>8} {:>12} {:>10}",
            u.count,
            human_bytes(u.bytes),
            u.hits
        );
    };
    let _ = writeln!(
        out,
        "by retention class:\n  {:24} {:>8} {:>12} {:>10}",
        "class", "count", "bytes", "hits"
    );
    for (name, u) in &stats.by_class {
        row(&mut out, name, u);
    }
    let _ = writeln!(
        out,
        "by upstream:\n  {:24} {:>8} {:>12} {:>10}",
        "upstream", "count", "bytes", "hits"
    );
    for (name, u) in &stats.by_upstream {
        row(&mut out, name, u);
    }
    row(&mut out, "total", &stats.total);
    if !decisions.is_empty() {
        let _ = writeln!(
            out,
            "policy decisions since start:\n  {:24} {:>8} {:>8}",
            "rule", "allowed", "denied"
        );
        for (rule, (allowed, denied)) in decisions {
            let _ = writeln!(out, "  {rule:24} {allowed:>8} {denied:>8}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
