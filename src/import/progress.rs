//! Progress on stderr: a bar redrawn in place with rate and ETA on a terminal; otherwise (a
//! log, CI) one plain line every few seconds. Report lines go through here so they never tear
//! the bar.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const BAR_EVERY: Duration = Duration::from_millis(100);
const LINE_EVERY: Duration = Duration::from_secs(5);
const WIDTH: usize = 30;

pub struct Progress {
    total: u64,
    done: u64,
    started: Instant,
    last: Option<Instant>,
    tty: bool,
}

impl Progress {
    pub fn new(total: u64) -> Self {
        Self {
            total,
            done: 0,
            started: Instant::now(),
            last: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn advance(&mut self, rows: u64) {
        self.done += rows;
        let every = if self.tty { BAR_EVERY } else { LINE_EVERY };
        if self.last.is_none_or(|t| t.elapsed() >= every) {
            self.draw();
        }
    }

    /// A report line, printed above the bar.
    pub fn line(&mut self, text: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[K");
        }
        let _ = writeln!(err, "{text}");
        if self.tty && self.last.is_some() {
            drop(err);
            self.draw();
        }
    }

    pub fn finish(&mut self) {
        self.draw();
        if self.tty {
            eprintln!();
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Rows per second so far.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-3)
    }

    fn draw(&mut self) {
        self.last = Some(Instant::now());
        let rate = self.rate();
        let fraction = if self.total == 0 {
            1.0
        } else {
            (self.done as f64 / self.total as f64).min(1.0)
        };
        let eta = if rate > 0.0 {
            format!("{:.0}s", self.total.saturating_sub(self.done) as f64 / rate)
        } else {
            "?".into()
        };
        let counts = format!(
            "{:>3.0}% {}/{} rows, {:.0} rows/s, ETA {eta}",
            fraction * 100.0,
            self.done,
            self.total,
            rate
        );
        if self.tty {
            let filled = (fraction * WIDTH as f64) as usize;
            let bar = format!("{}{}", "=".repeat(filled), " ".repeat(WIDTH - filled));
            eprint!("\r\x1b[K[{bar}] {counts}");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("import: {counts}");
        }
    }
}
