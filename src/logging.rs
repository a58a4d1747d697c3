//! The log, off the request path: a line is formatted where it happens into a shared
//! buffer, and one writer thread hands the buffer to standard error in batches. A request
//! pays for formatting its line and a short lock, never for a `write(2)`, and never waits
//! on a slow log sink: past `MAX_PENDING` bytes waiting, lines are dropped and counted
//! (`entrepot_log_lines_dropped_total`).
//!
//! Two kinds of lines go through it: tracing's events (warnings, errors, what the filter
//! lets through) and the access log, a line per request, formatted here directly because
//! it is written thousands of times a second. The access line is a tracing event in name
//! only (target `entrepot::access`, level INFO): the `log` filter turns it on and off.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tracing_subscriber::fmt::MakeWriter;

use crate::sync::Locked;

/// Bytes waiting for the writer at most (about 30,000 access lines): a sink that cannot
/// keep up loses lines, the server does not slow down.
const MAX_PENDING: usize = 8 << 20;
/// How long the writer lets lines gather after the first one arrives: a busy server makes
/// ~100 writes a second, whatever its request rate.
const GATHER: Duration = Duration::from_millis(10);

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// tracing's human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

thread_local! {
    /// Where a line is formatted before it is copied into the shared buffer.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The installed log: where lines go and in which format.
static LOG: OnceLock<(Arc<Shared>, Format)> = OnceLock::new();

/// Lines dropped because the writer fell behind, since start.
pub fn dropped_lines() -> u64 {
    LOG.get().map_or(0, |(s, _)| s.dropped.load(Ordering::Relaxed))
}

/// Installs the global subscriber, with `filter` (tracing's EnvFilter syntax; `RUST_LOG`
/// wins) and lines in `format` on standard error. `batched`: through the writer thread (a
/// server); otherwise written at once (a command whose output a person reads as it runs).
/// Keep the guard until exit: dropping it writes what is still waiting.
pub fn init(filter: &str, format: Format, batched: bool) -> Guard {
    use std::io::IsTerminal;
    let (shared, thread) = if batched {
        let shared = Arc::new(Shared::default());
        let writer = shared.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run(&mut io::stderr()))
            .ok();
        (shared, thread)
    } else {
        (Arc::new(Shared::direct()), None)
    };
    let _ = LOG.set((shared.clone(), format));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Lines(shared.clone()));
    match format {
        Format::Text => builder.with_ansi(io::stderr().is_terminal()).init(),
        Format::Json => builder.json().init(),
    }
    Guard { shared, thread }
}

/// Flushes and stops the writer thread when dropped.
pub struct Guard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request, as the access log records it.
pub struct Access<'a> {
    pub peer: SocketAddr,
    pub method: &'a str,
    pub path: &'a str,
    /// The query string, if the request had one (containerd's `?ns=`, `?n=&last=`).
    pub query: Option<&'a str>,
    /// The route's label (`blob`, `manifest`, …).
    pub route: &'a str,
    pub status: u16,
    /// The body's `Content-Length`, when the response has one.
    pub bytes: Option<u64>,
    /// How the cache answered (`hit`, `miss`, …), for cache endpoints.
    pub cache: Option<&'a str>,
    /// Until the response head was ready.
    pub elapsed: Duration,
}

/// Writes the access line of a request, if the log is installed and its filter lets
/// `entrepot::access` at INFO through.
pub fn access(line: &Access<'_>) {
    if !tracing::enabled!(target: "entrepot::access", tracing::Level::INFO) {
        return;
    }
    if let Some((shared, format)) = LOG.get() {
        shared.submit(|out| write_access(out, *format, SystemTime::now(), line));
    }
}

fn write_access(out: &mut Vec<u8>, format: Format, now: SystemTime, a: &Access<'_>) {
    match format {
        Format::Text => {
            timestamp(out, now);
            out.extend_from_slice(b"  INFO entrepot::access: served peer=");
            let _ = write!(out, "{}", a.peer);
            for (key, value) in [
                (&b" method="[..], Some(a.method)),
                (b" path=", Some(a.path)),
                (b" query=", a.query),
            ] {
                if let Some(v) = value {
                    out.extend_from_slice(key);
                    out.extend_from_slice(v.as_bytes());
                }
            }
            out.extend_from_slice(b" route=");
            out.extend_from_slice(a.route.as_bytes());
            out.extend_from_slice(b" status=");
            digits(out, u64::from(a.status));
            out.extend_from_slice(b" bytes=");
            match a.bytes {
                Some(b) => digits(out, b),
                None => out.push(b'-'),
            }
            if let Some(c) = a.cache {
                out.extend_from_slice(b" cache=");
                out.extend_from_slice(c.as_bytes());
            }
            out.extend_from_slice(b" duration_ms=");
            millis(out, a.elapsed);
            out.push(b'\n');
        }
        Format::Json => {
            out.extend_from_slice(b"{\"timestamp\":\"");
            timestamp(out, now);
            out.extend_from_slice(
                b"\",\"level\":\"INFO\",\"target\":\"entrepot::access\",\"fields\":{\"message\":\"served\",\"peer\":\"",
            );
            let _ = write!(out, "{}", a.peer);
            out.extend_from_slice(b"\",\"method\":");
            json_str(out, a.method);
            out.extend_from_slice(b",\"path\":");
            json_str(out, a.path);
            if let Some(q) = a.query {
                out.extend_from_slice(b",\"query\":");
                json_str(out, q);
            }
            out.extend_from_slice(b",\"route\":\"");
            out.extend_from_slice(a.route.as_bytes());
            out.extend_from_slice(b"\",\"status\":");
            digits(out, u64::from(a.status));
            out.extend_from_slice(b",\"bytes\":");
            match a.bytes {
                Some(b) => digits(out, b),
                None => out.extend_from_slice(b"null"),
            }
            if let Some(c) = a.cache {
                out.extend_from_slice(b",\"cache\":");
                json_str(out, c);
            }
            out.extend_from_slice(b",\"duration_ms\":");
            millis(out, a.elapsed);
            out.extend_from_slice(b"}}\n");
        }
    }
}

/// A number in decimal, without the formatting machinery (a line has several).
fn digits(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

/// A duration in milliseconds with three decimals ("1.500").
fn millis(out: &mut Vec<u8>, d: Duration) {
    let micros = d.as_micros().min(u128::from(u64::MAX)) as u64;
    digits(out, micros / 1000);
    out.push(b'.');
    let frac = micros % 1000;
    out.extend_from_slice(&[
        b'0' + (frac / 100) as u8,
        b'0' + (frac / 10 % 10) as u8,
        b'0' + (frac % 10) as u8,
    ]);
}

/// A JSON string literal; a path is the client's text and may hold anything.
fn json_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// RFC 3339 in UTC with microseconds, as tracing's own lines have it.
fn timestamp(out: &mut Vec<u8>, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    let fields = [
        (y.clamp(0, 9999) as u64, 4, b'-'),
        (u64::from(m), 2, b'-'),
        (u64::from(d), 2, b'T'),
        (s / 3600, 2, b':'),
        (s / 60 % 60, 2, b':'),
        (s % 60, 2, b'.'),
        (u64::from(since.subsec_micros()), 6, b'Z'),
    ];
    for (value, width, then) in fields {
        padded(out, value, width);
        out.push(then);
    }
}

/// `n` in exactly `width` decimal digits (zero-padded; `n` fits).
fn padded(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for at in (start..start + width).rev() {
        out[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The buffer lines wait in, and the writer thread's wake-up.
#[derive(Default)]
struct Shared {
    pending: Mutex<Vec<u8>>,
    wake: Condvar,
    dropped: AtomicU64,
    closing: AtomicBool,
    /// No writer thread: each line goes to standard error as it is submitted.
    direct: bool,
}

impl Shared {
    fn direct() -> Shared {
        Shared {
            direct: true,
            ..Shared::default()
        }
    }

    /// Appends what `line` writes, unless that would pass `MAX_PENDING`.
    fn submit(&self, line: impl FnOnce(&mut Vec<u8>)) {
        if self.direct {
            let mut out = Vec::with_capacity(256);
            line(&mut out);
            let _ = io::stderr().write_all(&out);
            return;
        }
        // Formatted outside the lock, into this thread's scratch buffer: the lock is held
        // for a copy only.
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            line(scratch);
            let mut pending = self.pending.locked();
            if pending.len() + scratch.len() > MAX_PENDING {
                drop(pending);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let was_empty = pending.is_empty();
            pending.extend_from_slice(scratch);
            drop(pending);
            if was_empty {
                self.wake.notify_one();
            }
        });
    }

    /// The writer thread: waits for a first line, lets more gather, writes them all.
    fn run(&self, sink: &mut dyn Write) {
        let mut out = Vec::new();
        loop {
            let mut pending = self.pending.locked();
            while pending.is_empty() && !self.closing.load(Ordering::Acquire) {
                pending = self.wake.wait(pending).unwrap_or_else(PoisonError::into_inner);
            }
            if pending.is_empty() {
                return; // closing, and everything is written
            }
            drop(pending);
            if !self.closing.load(Ordering::Acquire) {
                std::thread::sleep(GATHER);
            }
            std::mem::swap(&mut *self.pending.locked(), &mut out);
            // A log that cannot be written has nowhere to say so.
            let _ = sink.write_all(&out).and_then(|()| sink.flush());
            out.clear();
            out.shrink_to(1 << 20);
        }
    }
}

/// tracing's writer: each formatted event, whole, into the buffer.
struct Lines(Arc<Shared>);

impl<'a> MakeWriter<'a> for Lines {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter(&self.0)
    }
}

struct LineWriter<'a>(&'a Shared);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.submit(|out| out.extend_from_slice(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(format: Format, path: &str, query: Option<&str>) -> String {
        let a = Access {
            peer: "127.0.0.1:4000".parse().unwrap(),
            method: "GET",
            path,
            query,
            route: "blob",
            status: 200,
            bytes: Some(42),
            cache: Some("hit"),
            elapsed: Duration::from_micros(1500),
        };
        let mut out = Vec::new();
        let at = UNIX_EPOCH + Duration::from_micros(1_796_062_829_347_805);
        write_access(&mut out, format, at, &a);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_lines_read_like_tracing_lines() {
        assert_eq!(
            line(Format::Text, "/v2/a/blobs/sha256:ab", Some("ns=x")),
            "2026-11-30T18:20:29.347805Z  INFO entrepot::access: served peer=127.0.0.1:4000 method=GET \
             path=/v2/a/blobs/sha256:ab query=ns=x route=blob status=200 bytes=42 cache=hit duration_ms=1.500\n"
        );
    }

    #[test]
    fn json_lines_parse_whatever_the_path_holds() {
        let text = line(Format::Json, "/v2/\"odd\\\u{1}/x", None);
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["timestamp"], "2026-11-30T18:20:29.347805Z");
        assert_eq!(v["target"], "entrepot::access");
        assert_eq!(v["fields"]["path"], "/v2/\"odd\\\u{1}/x");
        assert!(v["fields"].get("query").is_none());
        assert_eq!(v["fields"]["status"], 200);
        assert_eq!(v["fields"]["bytes"], 42);
        assert_eq!(v["fields"]["cache"], "hit");
        assert_eq!(v["fields"]["duration_ms"], 1.5);
    }

    #[test]
    fn numbers_are_written_as_fmt_would() {
        let mut out = Vec::new();
        for n in [0, 7, 10, 65_535, u64::MAX] {
            out.clear();
            digits(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for (d, text) in [
            (0, "0.000"),
            (999, "0.999"),
            (1_000, "1.000"),
            (12_345_678, "12345.678"),
        ] {
            out.clear();
            millis(&mut out, Duration::from_micros(d));
            assert_eq!(String::from_utf8_lossy(&out), text);
        }
    }

    #[test]
    fn dates_follow_the_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(20_787), (2026, 11, 30));
    }

    #[test]
    fn the_writer_gets_every_line_in_order_and_a_full_buffer_drops_lines() {
        let shared = Shared::default();
        for i in 0..1000 {
            shared.submit(|out| writeln!(out, "line {i}").unwrap());
        }
        shared.closing.store(true, Ordering::Release);
        let mut sink = Vec::new();
        shared.run(&mut sink);
        let text = String::from_utf8(sink).unwrap();
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(text, expected);

        let big = vec![b'x'; MAX_PENDING / 2 + 1];
        shared.submit(|out| out.extend_from_slice(&big));
        shared.submit(|out| out.extend_from_slice(&big));
        assert_eq!(
            shared.dropped.load(Ordering::Relaxed),
            1,
            "the second line would pass the cap"
        );
        assert_eq!(
            shared.pending.locked().len(),
            big.len(),
            "a dropped line leaves nothing behind"
        );
    }
}
