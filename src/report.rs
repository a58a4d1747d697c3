//! Human-readable reports: what a sweep evicts and why, what the cache holds, what policy
//! decided. Shared by the CLI and the operator endpoints.

use std::fmt::Write;

use crate::cache::scrub::{Progress, Scrubbed};
use crate::cache::sweep::{CacheStats, Usage};
use crate::clock::age;
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

/// What `entrepot scrub` found. The last line counts what was corrupt, as `N corrupt`.
pub fn scrub(s: &Scrubbed) -> String {
    let mut out = String::new();
    for c in &s.corrupt {
        let _ = writeln!(
            out,
            "corrupt {} {} (hashes to {}): quarantined as {}",
            c.kind, c.digest, c.found, c.moved_to
        );
    }
    let _ = writeln!(
        out,
        "scrubbed {} manifest(s) and {} blob(s), {} in {:.1} s: {} corrupt",
        s.manifests,
        s.blobs,
        human_bytes(s.bytes),
        s.elapsed.as_secs_f64(),
        s.corrupt.len()
    );
    out
}

/// A scrub's progress line: blobs and bytes done, rate, time left.
pub fn scrub_progress(p: &Progress) -> String {
    let secs = p.elapsed.as_secs_f64().max(0.001);
    let rate = p.bytes as f64 / secs;
    let left = if rate > 0.0 {
        format!("{:.0} s left", p.total_bytes.saturating_sub(p.bytes) as f64 / rate)
    } else {
        "time left unknown".to_owned()
    };
    format!(
        "scrub: {}/{} blob(s), {} of {} at {}/s, {left}",
        p.blobs,
        p.total_blobs,
        human_bytes(p.bytes),
        human_bytes(p.total_bytes),
        human_bytes(rate as u64)
    )
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
            age(e.idle_ms),
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
