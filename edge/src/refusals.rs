//! Refused connections and sessions: every refusal is counted in
//! `switchyard_rejects_total{api, reason}`, but logged at most once per interval and reason, so
//! a flood leaves one clear line (with how many were refused since the last) instead of one per
//! connection.

use std::net::IpAddr;

/// The throttle shared by every crate (`switchyard_schema::log_throttle`).
pub use switchyard_schema::log_throttle::{due, LOG_INTERVAL};

/// Counts one refusal of `client` and logs it if no line for the same reason was written within
/// `LOG_INTERVAL`. `what` says what was refused and why, for the log line.
pub fn refused(api: &'static str, reason: &'static str, client: IpAddr, what: &str) {
    metrics::counter!("switchyard_rejects_total", "api" => api, "reason" => reason).increment(1);
    log(api, reason, client, what);
}

/// The log line of `refused`, for refusals counted elsewhere.
pub fn log(api: &'static str, reason: &'static str, client: IpAddr, what: &str) {
    if let Some(since_last) = due(api, reason) {
        tracing::warn!(
            api,
            reason,
            %client,
            more_since_last_line = since_last,
            "refused: {what} (logged at most every {} s per reason; counted in \
             switchyard_rejects_total)",
            LOG_INTERVAL.as_secs()
        );
    }
}
