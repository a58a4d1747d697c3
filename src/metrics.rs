//! Prometheus metrics in the text exposition format. A handful of families, kept in maps
//! behind short locks; no metrics crate, no global registry (tests each get their own).
//!
//! Counters are named `entrepot_<subsystem>_<what>_total`; gauges read when scraped
//! (transfers in flight, store bytes) come from `cache::Cache::gauges`, rendered beside
//! these by `http::health`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::sync::Locked;

type Labels = Vec<(&'static str, String)>;

/// A counter family: one value per label set.
pub struct Counter {
    name: &'static str,
    help: &'static str,
    values: Mutex<BTreeMap<Labels, u64>>,
}

impl Counter {
    const fn new(name: &'static str, help: &'static str) -> Counter {
        Counter {
            name,
            help,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn add(&self, labels: &[(&'static str, &str)], n: u64) {
        let key: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        *self.values.locked().entry(key).or_insert(0) += n;
    }

    pub fn get(&self, labels: &[(&'static str, &str)]) -> u64 {
        let key: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        self.values.locked().get(&key).copied().unwrap_or(0)
    }

    /// Every series with its labels' values, in label order.
    pub fn series(&self) -> Vec<(Vec<String>, u64)> {
        (self.values.locked().iter())
            .map(|(labels, v)| (labels.iter().map(|(_, l)| l.clone()).collect(), *v))
            .collect()
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} counter", self.name, self.help, self.name);
        for (labels, v) in self.values.locked().iter() {
            let _ = writeln!(out, "{}{} {v}", self.name, render_labels(labels, None));
        }
    }
}

const BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Default, Clone)]
struct Series {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// A histogram family of durations in seconds.
pub struct Histogram {
    name: &'static str,
    help: &'static str,
    series: Mutex<BTreeMap<Labels, Series>>,
}

impl Histogram {
    const fn new(name: &'static str, help: &'static str) -> Histogram {
        Histogram {
            name,
            help,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn observe(&self, labels: &[(&'static str, &str)], d: Duration) {
        let key: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let secs = d.as_secs_f64();
        let mut series = self.series.locked();
        let s = series.entry(key).or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                s.counts[i] += 1;
            }
        }
        s.sum += secs;
        s.count += 1;
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} histogram",
            self.name, self.help, self.name
        );
        for (labels, s) in self.series.locked().iter() {
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "{}_bucket{} {}",
                    self.name,
                    render_labels(labels, Some(&le.to_string())),
                    s.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "{}_bucket{} {}",
                self.name,
                render_labels(labels, Some("+Inf")),
                s.count
            );
            let _ = writeln!(out, "{}_sum{} {}", self.name, render_labels(labels, None), s.sum);
            let _ = writeln!(out, "{}_count{} {}", self.name, render_labels(labels, None), s.count);
        }
    }
}

fn render_labels(labels: &Labels, le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A gauge line, for values computed when scraped.
pub fn gauge(out: &mut String, name: &str, help: &str, values: &[(Vec<(&'static str, String)>, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, v) in values {
        let _ = writeln!(out, "{name}{} {v}", render_labels(labels, None));
    }
}

/// Every family entrepot counts.
pub struct Metrics {
    pub requests: Counter,
    pub lookups: Counter,
    pub served_bytes: Counter,
    pub upstream_bytes: Counter,
    pub upstream_latency: Histogram,
    pub upstream_requests: Counter,
    pub evictions: Counter,
    pub evicted_bytes: Counter,
    pub store_corrupt: Counter,
    pub digest_mismatches: Counter,
    pub policy_decisions: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            requests: Counter::new("entrepot_http_requests_total", "Requests answered, by route, method and status."),
            lookups: Counter::new(
                "entrepot_cache_lookups_total",
                "How requests were served, by kind (manifest, blob, tags, referrers) and result (hit, miss, coalesced, revalidated, stale).",
            ),
            served_bytes: Counter::new(
                "entrepot_served_bytes_total",
                "Blob bytes sent to clients, by source: the cache, or a download in progress from the upstream.",
            ),
            upstream_bytes: Counter::new("entrepot_upstream_bytes_total", "Bytes fetched from each upstream (blobs and manifests)."),
            upstream_requests: Counter::new(
                "entrepot_upstream_requests_total",
                "Requests sent to each upstream, by result: answered (any status but 429 and 5xx), throttled (429), error (5xx), timeout, unreachable.",
            ),
            upstream_latency: Histogram::new(
                "entrepot_upstream_request_duration_seconds",
                "Time to the upstream's response headers, by upstream.",
            ),
            evictions: Counter::new("entrepot_evictions_total", "Manifests and blobs evicted by retention, by class."),
            evicted_bytes: Counter::new("entrepot_evicted_bytes_total", "Bytes evicted by retention, by class."),
            store_corrupt: Counter::new(
                "entrepot_store_corrupt_total",
                "Stored blobs and manifests found not to match their digest (by scrub, or when a manifest is read), quarantined.",
            ),
            digest_mismatches: Counter::new(
                "entrepot_digest_mismatches_total",
                "Upstream content refused for not matching its digest.",
            ),
            policy_decisions: Counter::new(
                "entrepot_policy_decisions_total",
                "Policy decisions, by the rule that made them and the decision (allow, deny).",
            ),
        };
        // Zero from the start, so that an alert on any increase has a series to watch.
        for kind in ["blob", "manifest"] {
            m.store_corrupt.add(&[("kind", kind)], 0);
        }
        m.digest_mismatches.add(&[], 0);
        m
    }
}

impl Metrics {
    /// The counters and histograms; the caller appends the scrape-time gauges.
    pub fn render(&self, out: &mut String) {
        self.requests.render(out);
        self.lookups.render(out);
        self.served_bytes.render(out);
        self.upstream_bytes.render(out);
        self.upstream_requests.render(out);
        self.upstream_latency.render(out);
        self.evictions.render(out);
        self.evicted_bytes.render(out);
        self.store_corrupt.render(out);
        self.digest_mismatches.render(out);
        self.policy_decisions.render(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format() {
        let m = Metrics::default();
        m.requests
            .add(&[("route", "blob"), ("method", "GET"), ("status", "200")], 2);
        m.upstream_latency
            .observe(&[("upstream", "docker.io")], Duration::from_millis(30));
        let mut out = String::new();
        m.render(&mut out);
        assert!(
            out.contains("entrepot_http_requests_total{route=\"blob\",method=\"GET\",status=\"200\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("entrepot_upstream_request_duration_seconds_bucket{upstream=\"docker.io\",le=\"0.05\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("entrepot_upstream_request_duration_seconds_bucket{upstream=\"docker.io\",le=\"0.025\"} 0"),
            "{out}"
        );
        assert!(out.contains("entrepot_upstream_request_duration_seconds_count{upstream=\"docker.io\"} 1"));
        assert_eq!(escape("a\"b\\"), "a\\\"b\\\\");
    }
}
