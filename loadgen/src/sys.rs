//! Process facts: the open-file limit (one descriptor per connection) and resident memory.

/// Raises the soft RLIMIT_NOFILE to the hard limit, and past it to `wanted` where allowed
/// (root); returns the soft limit now in force.
pub fn raise_nofile(wanted: u64) -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid resource and pointers to local rlimits.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        let wanted = wanted as libc::rlim_t;
        if wanted > lim.rlim_max {
            let lifted = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: wanted,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lifted) == 0 {
                lim = lifted;
            }
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is narrower on some targets
    Some(lim.rlim_cur as u64)
}

/// VmRSS of a process in bytes, from `/proc/<pid>/status` (`None` off Linux or if it is gone).
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    parse_vm_rss(&std::fs::read_to_string(path).ok()?)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss() {
        let status = "Name:\tswitchyard\nVmPeak:\t  9000 kB\nVmRSS:\t   1234 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
    }

    #[test]
    fn own_rss_and_nofile() {
        assert!(raise_nofile(0).unwrap_or(0) > 0);
        if cfg!(target_os = "linux") {
            assert!(rss_bytes(None).unwrap() > 0);
        }
    }
}
