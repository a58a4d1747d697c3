//! `/-/status`: one HTML page, read-only and without scripts, that tells a person whether
//! the cache does its job: hit ratio and egress saved, store use against its budgets,
//! upstream health, downloads in progress, the repositories pulled most. It reads the
//! same counters as `/metrics`; it sits behind `[auth]` like the registry API, and shows
//! only the repositories the viewer may pull.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use http::{header, HeaderValue, Response, StatusCode};

use super::body::Body;
use crate::access::Identity;
use crate::app::App;
use crate::cache::{FillProgress, Gauges};
use crate::clock::{age, now_ms};
use crate::upstream::Health;

pub const PATH: &str = "/-/status";

/// Repositories listed under "most pulled".
const TOP_REPOSITORIES: usize = 15;

pub fn page(app: &Arc<App>, who: &Identity, head: bool) -> Response<Body> {
    let html = render(&Snapshot::take(app, who));
    let len = html.len();
    let mut resp = Response::new(if head { Body::empty() } else { Body::full(html) });
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    resp
}

/// What the page shows, read at once.
struct Snapshot {
    /// Lookups by kind: (not downloaded: hit, coalesced, revalidated, stale; all).
    lookups: BTreeMap<String, (u64, u64)>,
    served_from_cache: u64,
    served_from_fills: u64,
    upstreams: Vec<UpstreamRow>,
    gauges: Gauges,
    fills: Vec<FillProgress>,
    top: Vec<(String, u64)>,
    offline: bool,
}

struct UpstreamRow {
    name: String,
    url: String,
    health: Health,
    fetched: u64,
    /// Requests by result (answered, throttled, error, timeout, unreachable).
    requests: BTreeMap<String, u64>,
}

impl Snapshot {
    fn take(app: &Arc<App>, who: &Identity) -> Snapshot {
        let metrics = &app.cache.metrics;
        let mut lookups: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (labels, n) in metrics.lookups.series() {
            if let [kind, result] = &labels[..] {
                let e = lookups.entry(kind.clone()).or_default();
                if result != "miss" {
                    e.0 += n;
                }
                e.1 += n;
            }
        }
        let served = |source: &str| {
            (metrics.served_bytes.series().into_iter())
                .find(|(l, _)| l.first().is_some_and(|s| s == source))
                .map_or(0, |(_, n)| n)
        };
        let fetched: BTreeMap<String, u64> = (metrics.upstream_bytes.series().into_iter())
            .filter_map(|(l, n)| l.into_iter().next().map(|u| (u, n)))
            .collect();
        let mut requests: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (labels, n) in metrics.upstream_requests.series() {
            if let [up, result] = &labels[..] {
                requests.entry(up.clone()).or_default().insert(result.clone(), n);
            }
        }
        let upstreams = (app.upstreams.all().iter())
            .map(|u| UpstreamRow {
                name: u.name().to_owned(),
                url: u.config.url.to_string(),
                health: u.health(),
                fetched: fetched.get(u.name()).copied().unwrap_or(0),
                requests: requests.remove(u.name()).unwrap_or_default(),
            })
            .collect();
        let may_see = |repo: &str| !app.access.restricts_repositories() || app.access.authorize(who, repo).is_ok();
        let top = (app.cache.most_pulled(usize::MAX).into_iter())
            .filter(|(repo, _)| may_see(repo))
            .take(TOP_REPOSITORIES)
            .collect();
        let fills = (app.cache.fills_in_progress().into_iter())
            .filter(|f| may_see(&format!("{}/{}", f.upstream, f.repo)))
            .collect();
        Snapshot {
            lookups,
            served_from_cache: served("cache"),
            served_from_fills: served("fill"),
            upstreams,
            gauges: app.cache.gauges(),
            fills,
            top,
            offline: app.config.offline,
        }
    }
}

const STYLE: &str = "
:root{color-scheme:light dark;--fg:#1d2125;--muted:#5f6b76;--bg:#f6f7f9;--card:#fff;--line:#dde1e5;--ok:#2f8f4e;--bad:#c2410c;--idle:#8a94a0}
@media (prefers-color-scheme:dark){:root{--fg:#e6e9ec;--muted:#9aa5b1;--bg:#14171a;--card:#1d2125;--line:#2e343a}}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header,main,footer{max-width:1100px;margin:0 auto;padding:0 16px}header{padding-top:20px}
h1{font-size:22px;margin:0}h2{font-size:15px;margin:0 0 8px;color:var(--muted);font-weight:600}
.sub{color:var(--muted);margin:2px 0 16px}.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:12px;margin-bottom:16px}
.card,section.panel{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px}
section.panel{margin-bottom:16px;overflow-x:auto}.big{font-size:30px;font-weight:650;margin:0}.note{color:var(--muted);margin:4px 0 0;font-size:13px}
table{border-collapse:collapse;width:100%;font-size:14px}th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);white-space:nowrap}
th{color:var(--muted);font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:var(--ok)}.bad{color:var(--bad)}.idle{color:var(--idle)}.wrap{white-space:normal;word-break:break-word}
meter{width:120px;height:12px;vertical-align:middle}footer{color:var(--muted);font-size:13px;padding-bottom:24px}
";

fn render(s: &Snapshot) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"10\"><title>entrepot status</title><style>{STYLE}</style></head><body>\
         <header><h1>entrepot</h1><p class=\"sub\">caching proxy · version {}{}</p></header><main>",
        env!("CARGO_PKG_VERSION"),
        if s.offline {
            " · <strong>offline</strong>: serving the cache only"
        } else {
            ""
        }
    );
    cards(&mut out, s);
    upstreams(&mut out, s);
    lookups(&mut out, s);
    classes(&mut out, s);
    fills(&mut out, s);
    top(&mut out, s);
    out.push_str("</main><footer>Counted since the server started · refreshes every 10 s · the same numbers in Prometheus form at <code>/metrics</code></footer></body></html>\n");
    out
}

fn cards(out: &mut String, s: &Snapshot) {
    let (saved, all) = s.lookups.values().fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
    let fetched: u64 = s.upstreams.iter().map(|u| u.fetched).sum();
    let _ = write!(
        out,
        "<section class=\"cards\">\
         <div class=\"card\" id=\"hit-ratio\"><h2>Cache hit ratio</h2><p class=\"big\">{}</p>\
         <p class=\"note\">{} of {} requests answered without a download of their own</p></div>\
         <div class=\"card\" id=\"egress\"><h2>Egress saved</h2><p class=\"big\">{}</p>\
         <p class=\"note\">sent from the cache; {} fetched from upstreams, {} passed on while downloading</p></div>",
        percent(saved, all),
        thousands(saved),
        thousands(all),
        bytes(s.served_from_cache),
        bytes(fetched),
        bytes(s.served_from_fills),
    );
    let g = &s.gauges;
    let budget = match g.max_bytes {
        Some(max) => format!(
            "of {} ({}) <meter min=\"0\" max=\"{max}\" high=\"{}\" value=\"{}\"></meter>",
            bytes(max),
            percent(g.stored_bytes, max),
            max / 100 * 90,
            g.stored_bytes
        ),
        None => "no max_cache_bytes: bounded by the disk".to_owned(),
    };
    let _ = write!(
        out,
        "<div class=\"card\" id=\"store\"><h2>Store</h2><p class=\"big\">{}</p><p class=\"note\">{budget}</p></div>\
         <div class=\"card\" id=\"in-flight\"><h2>In flight</h2><p class=\"big\">{}</p>\
         <p class=\"note\">downloads from upstreams; {} blob transfers to clients</p></div></section>",
        bytes(g.stored_bytes),
        g.fills,
        g.transfers
    );
}

fn upstreams(out: &mut String, s: &Snapshot) {
    out.push_str(
        "<section class=\"panel\" id=\"upstreams\"><h2>Upstreams</h2><table><tr><th>upstream</th><th>state</th>\
         <th>last answer</th><th>latency</th><th class=\"num\">fetched</th><th>requests</th><th>last failure</th></tr>",
    );
    let now = now_ms();
    for u in &s.upstreams {
        let h = &u.health;
        let state = match h.reachable() {
            Some(true) => "<span class=\"ok\">answering</span>",
            Some(false) => "<span class=\"bad\">failing</span>",
            None => "<span class=\"idle\">not asked yet</span>",
        };
        let ago = |ms: u64| format!("{} ago", age(now.saturating_sub(ms)));
        let requests: Vec<String> = u
            .requests
            .iter()
            .map(|(r, n)| format!("{r} {}", thousands(*n)))
            .collect();
        let _ =
            write!(
            out,
            "<tr><td><strong>{}</strong><br><span class=\"note\">{}</span></td><td>{state}</td><td>{}</td><td>{}</td>\
             <td class=\"num\">{}</td><td>{}</td><td class=\"wrap\">{}</td></tr>",
            escape(&u.name),
            escape(&u.url),
            h.last_answer_ms.map_or("—".into(), ago),
            h.last_latency.map_or("—".into(), |d| format!("{:.0} ms", d.as_secs_f64() * 1000.0)),
            bytes(u.fetched),
            if requests.is_empty() { "—".into() } else { escape(&requests.join(", ")) },
            h.last_failure
                .as_ref()
                .map_or("—".into(), |(at, why)| format!("{}: {}", ago(*at), escape(why))),
        );
    }
    out.push_str("</table></section>");
}

fn lookups(out: &mut String, s: &Snapshot) {
    if s.lookups.is_empty() {
        return;
    }
    out.push_str(
        "<section class=\"panel\" id=\"lookups\"><h2>Requests by kind</h2><table><tr><th>kind</th>\
         <th class=\"num\">requests</th><th class=\"num\">without a download</th><th class=\"num\">hit ratio</th></tr>",
    );
    for (kind, (saved, all)) in &s.lookups {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(kind),
            thousands(*all),
            thousands(*saved),
            percent(*saved, *all)
        );
    }
    out.push_str("</table></section>");
}

fn classes(out: &mut String, s: &Snapshot) {
    let g = &s.gauges;
    if g.class_bytes.is_empty() && g.class_max_bytes.is_empty() {
        return;
    }
    out.push_str(
        "<section class=\"panel\" id=\"classes\"><h2>Store by retention class</h2><table><tr><th>class</th>\
         <th class=\"num\">stored</th><th class=\"num\">budget</th><th></th></tr>",
    );
    let mut names: Vec<&String> = g.class_bytes.iter().map(|(c, _)| c).collect();
    names.extend(
        g.class_max_bytes
            .iter()
            .map(|(c, _)| c)
            .filter(|c| !g.class_bytes.iter().any(|(x, _)| x == *c)),
    );
    for name in names {
        let stored = g.class_bytes.iter().find(|(c, _)| c == name).map_or(0, |(_, b)| *b);
        let max = g.class_max_bytes.iter().find(|(c, _)| c == name).map(|(_, b)| *b);
        let meter = max.map_or(String::new(), |m| {
            format!(
                "<meter min=\"0\" max=\"{m}\" high=\"{}\" value=\"{stored}\"></meter> {}",
                m / 100 * 90,
                percent(stored, m)
            )
        });
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{meter}</td></tr>",
            escape(name),
            bytes(stored),
            max.map_or("—".into(), bytes)
        );
    }
    out.push_str("</table></section>");
}

fn fills(out: &mut String, s: &Snapshot) {
    out.push_str("<section class=\"panel\" id=\"downloads\"><h2>Downloads in progress</h2>");
    if s.fills.is_empty() {
        out.push_str("<p class=\"note\">none</p></section>");
        return;
    }
    out.push_str("<table><tr><th>blob</th><th>from</th><th class=\"num\">received</th><th>progress</th></tr>");
    for f in &s.fills {
        let progress = f.total.map_or("size unknown".to_owned(), |t| {
            format!(
                "<meter min=\"0\" max=\"{t}\" value=\"{}\"></meter> {} of {}",
                f.written,
                percent(f.written, t),
                bytes(t)
            )
        });
        let hex = f.digest.hex();
        let _ = write!(
            out,
            "<tr><td><code>{}:{}…</code></td><td>{}/{}</td><td class=\"num\">{}</td><td>{progress}</td></tr>",
            f.digest.algorithm().name(),
            &hex[..12.min(hex.len())],
            escape(&f.upstream),
            escape(&f.repo),
            bytes(f.written)
        );
    }
    out.push_str("</table></section>");
}

fn top(out: &mut String, s: &Snapshot) {
    out.push_str("<section class=\"panel\" id=\"repositories\"><h2>Most pulled repositories</h2>");
    if s.top.is_empty() {
        out.push_str("<p class=\"note\">nothing pulled yet</p></section>");
        return;
    }
    out.push_str("<table><tr><th>repository</th><th class=\"num\">manifests served</th></tr>");
    for (repo, n) in &s.top {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            escape(repo),
            thousands(*n)
        );
    }
    out.push_str("</table></section>");
}

/// Text for HTML: repository names are validated, but error messages come from upstreams.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `part` of `whole` as a percentage with one decimal; "—" when there is no whole.
fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "—".to_owned();
    }
    format!("{:.1}%", part as f64 * 100.0 / whole as f64)
}

/// Bytes in binary units, three significant figures.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ if v >= 100.0 => format!("{v:.0} {}", UNITS[unit]),
        _ if v >= 10.0 => format!("{v:.1} {}", UNITS[unit]),
        _ => format!("{v:.2} {}", UNITS[unit]),
    }
}

/// 1234567 as "1,234,567".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(20 << 30), "20.0 GiB");
        assert_eq!(bytes(200 << 30), "200 GiB");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(5, 0), "—");
    }

    #[test]
    fn upstream_text_cannot_become_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }
}
