//! `process_*` metrics in the names Prometheus's own clients use, read from /proc on Linux:
//! each connection costs memory and a descriptor, so an operator watches both against limits.

use std::sync::OnceLock;

/// Updates the gauges; called right before each render, so a scrape sees the current values.
pub fn record() {
    let page = page_size();
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm") {
        let mut fields = statm
            .split_whitespace()
            .map(|f| f.parse::<f64>().unwrap_or(0.0));
        let (virt, rss) = (fields.next().unwrap_or(0.0), fields.next().unwrap_or(0.0));
        metrics::gauge!("process_virtual_memory_bytes").set(virt * page);
        metrics::gauge!("process_resident_memory_bytes").set(rss * page);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        metrics::gauge!("process_open_fds").set(fds.count() as f64);
    }
    if let Some(limit) = fd_limit() {
        metrics::gauge!("process_max_fds").set(limit as f64);
    }
    if let Some(start) = START.get() {
        metrics::gauge!("process_start_time_seconds").set(*start);
    }
}

pub fn describe() {
    use metrics::{describe_gauge, Unit};
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory size"
    );
    describe_gauge!(
        "process_virtual_memory_bytes",
        Unit::Bytes,
        "Virtual memory size"
    );
    describe_gauge!("process_open_fds", "Open file descriptors");
    describe_gauge!(
        "process_max_fds",
        "File descriptor limit (soft RLIMIT_NOFILE)"
    );
    describe_gauge!(
        "process_start_time_seconds",
        Unit::Seconds,
        "Start time of the process since the Unix epoch"
    );
    START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    });
    record();
}

/// When `describe` ran: the process start, near enough for a restart marker.
static START: OnceLock<f64> = OnceLock::new();

fn page_size() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as f64
    } else {
        4096.0
    }
}

fn fd_limit() -> Option<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid resource and a pointer to a local rlimit.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur)
}
