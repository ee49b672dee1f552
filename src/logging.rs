//! Logs on stderr: text (colours only on a terminal, so files and pipes get plain lines) or
//! JSON, one flat object per line with `message` at the top level and the process's `role`
//! and `version`, so a log pipeline can tell processes apart without parsing text.

use std::io::{IsTerminal, Write};

use crate::config::LogFormat;

pub fn init(format: LogFormat, role: &'static str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // The NATS client logs every reconnect attempt at info; the bus says it once, throttled.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(move || Stamped {
                prefix: format!(
                    "{{\"role\":\"{role}\",\"version\":\"{}\",",
                    env!("CARGO_PKG_VERSION")
                ),
            })
            .init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
}

/// Writes each JSON event to stderr with the process's fields first. The formatter hands over
/// one whole line per write, which starts with `{`.
struct Stamped {
    prefix: String,
}

impl Write for Stamped {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut err = std::io::stderr().lock();
        match line.strip_prefix(b"{") {
            Some(rest) => {
                let mut out = Vec::with_capacity(self.prefix.len() + rest.len());
                out.extend_from_slice(self.prefix.as_bytes());
                out.extend_from_slice(rest);
                err.write_all(&out)?;
            }
            None => err.write_all(line)?,
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
