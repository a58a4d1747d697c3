//! Progress of long operator work (export, import) for whoever watches it: a bar with
//! bytes, rate and time left on a terminal (indicatif), a plain line every few seconds when
//! the output is a pipe or a file (CI logs, `docker logs`), or lines in the server's log
//! when a running server does the work.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::sync::Locked;

/// How often a plain line is written.
const EVERY: Duration = Duration::from_secs(5);

/// Where progress goes.
enum Show {
    Bar(ProgressBar),
    /// A line every `every` to a writer (standard error), with when the last one went.
    Lines {
        out: Mutex<(Box<dyn Write + Send>, Instant)>,
        every: Duration,
    },
    /// A line every `EVERY` in the log.
    Log(Mutex<Instant>),
    Nothing,
}

/// Bytes done of a total (when known), shown as they move.
pub struct Meter {
    what: &'static str,
    show: Show,
    done: AtomicU64,
    /// `u64::MAX`: not known.
    total: AtomicU64,
    started: Instant,
}

impl Meter {
    /// For a command: a bar when standard error is a terminal, plain lines otherwise.
    pub fn stderr(what: &'static str) -> Meter {
        let show = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(style(false));
            bar.set_prefix(what);
            bar.enable_steady_tick(Duration::from_millis(200));
            Show::Bar(bar)
        } else {
            return Meter::lines(what, Box::new(std::io::stderr()), EVERY);
        };
        Meter::with(what, show)
    }

    /// Plain lines to `out`, one every `every`.
    fn lines(what: &'static str, out: Box<dyn Write + Send>, every: Duration) -> Meter {
        Meter::with(
            what,
            Show::Lines {
                out: Mutex::new((out, Instant::now())),
                every,
            },
        )
    }

    /// For a server doing the work for a command: lines in its log.
    pub fn log(what: &'static str) -> Meter {
        Meter::with(what, Show::Log(Mutex::new(Instant::now())))
    }

    /// Counts and shows nothing.
    pub fn none() -> Meter {
        Meter::with("", Show::Nothing)
    }

    fn with(what: &'static str, show: Show) -> Meter {
        Meter {
            what,
            show,
            done: AtomicU64::new(0),
            total: AtomicU64::new(u64::MAX),
            started: Instant::now(),
        }
    }

    pub fn set_total(&self, total: Option<u64>) {
        self.total.store(total.unwrap_or(u64::MAX), Ordering::Relaxed);
        if let (Show::Bar(bar), Some(t)) = (&self.show, total) {
            bar.set_length(t);
            bar.set_style(style(true));
        }
    }

    pub fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        match &self.show {
            Show::Bar(bar) => bar.inc(n),
            Show::Lines { out, every } => {
                let mut out = out.locked();
                if out.1.elapsed() >= *every {
                    out.1 = Instant::now();
                    let _ = writeln!(out.0, "{}", self.status(done));
                }
            }
            Show::Log(last) => {
                let mut last = last.locked();
                if last.elapsed() >= EVERY {
                    *last = Instant::now();
                    tracing::info!("{}", self.status(done));
                }
            }
            Show::Nothing => {}
        }
    }

    /// The last word: what was moved, in how long.
    pub fn finish(&self) {
        let done = self.done.load(Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64();
        let summary = format!(
            "{}: {} in {:.1} s ({}/s)",
            self.what,
            HumanBytes(done),
            secs,
            HumanBytes((done as f64 / secs.max(0.001)) as u64)
        );
        match &self.show {
            Show::Bar(bar) => {
                bar.finish_and_clear();
                eprintln!("{summary}");
            }
            Show::Lines { out, .. } => {
                let _ = writeln!(out.locked().0, "{summary}");
            }
            Show::Log(_) => tracing::info!("{summary}"),
            Show::Nothing => {}
        }
    }

    /// "export: 1.20 GiB of 4.00 GiB (30%), 210 MiB/s, 13 s left".
    fn status(&self, done: u64) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        let mut text = format!("{}: {}", self.what, HumanBytes(done));
        let total = self.total.load(Ordering::Relaxed);
        if total != u64::MAX && total > 0 {
            text.push_str(&format!(
                " of {} ({:.0}%)",
                HumanBytes(total),
                done.min(total) as f64 * 100.0 / total as f64
            ));
        }
        text.push_str(&format!(", {}/s", HumanBytes(rate as u64)));
        if total != u64::MAX && rate > 0.0 {
            text.push_str(&format!(", {:.0} s left", total.saturating_sub(done) as f64 / rate));
        }
        text
    }
}

fn style(known_total: bool) -> ProgressStyle {
    let template = if known_total {
        "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta} left"
    } else {
        "{prefix} {spinner} {bytes} {bytes_per_sec}"
    };
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// A reader that counts what passes through it on a meter.
pub struct Counted<R> {
    pub inner: R,
    pub meter: std::sync::Arc<Meter>,
}

impl<R: std::io::Read> std::io::Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_line_says_how_far_how_fast_and_how_long() {
        let m = Meter::none();
        m.set_total(Some(4 << 30));
        let line = m.status(1 << 30);
        assert!(line.starts_with(": 1.00 GiB of 4.00 GiB (25%), "), "{line}");
        assert!(line.ends_with(" s left"), "{line}");
        m.set_total(None);
        assert!(!m.status(10).contains("left"));
    }

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.locked().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn in_a_pipe_progress_is_plain_lines_then_a_summary() {
        let out = Shared::default();
        let m = Meter::lines("import", Box::new(out.clone()), Duration::ZERO);
        m.set_total(Some(3 << 20));
        m.add(1 << 20);
        m.add(2 << 20);
        m.finish();
        let text = String::from_utf8(out.0.locked().clone()).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("import: 1.00 MiB of 3.00 MiB (33%), "), "{text}");
        assert!(
            lines[1].starts_with("import: 3.00 MiB of 3.00 MiB (100%), ") && lines[1].ends_with("0 s left"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("import: 3.00 MiB in ") && !text.contains('\x1b'),
            "{text}"
        );
    }

    #[test]
    fn counted_reads_count() {
        let m = std::sync::Arc::new(Meter::none());
        let mut r = Counted {
            inner: &b"hello world"[..],
            meter: m.clone(),
        };
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert_eq!(m.done.load(Ordering::Relaxed), 11);
    }
}
