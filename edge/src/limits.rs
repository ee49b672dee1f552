//! Rate limits (GCRA, `governor`): per connection and per client IP for every inbound packet,
//! and per IP for connection attempts. A connection that keeps flooding after being limited is
//! disconnected. The client IP is the socket's peer, or `X-Forwarded-For` when the peer is a
//! configured trusted proxy. Addresses are compared in canonical form (an IPv4-mapped IPv6
//! address is its IPv4 address) and IPv6 clients are limited per /64, the block one subscriber
//! usually gets: every address in it is one client to the limits.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;

/// Sustained rate and burst of one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    fn quota(self) -> Quota {
        // Zero rates are refused at start; a burst below the rate is raised to it (and warned
        // about at start, see `Common::warnings`).
        let per_second = NonZeroU32::new(self.per_second.max(1)).expect("non-zero");
        let burst = NonZeroU32::new(self.burst.max(self.per_second).max(1)).expect("non-zero");
        Quota::per_second(per_second).allow_burst(burst)
    }
}

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Packets of one connection (a human clicks at most ~20/s).
    pub per_connection: Rate,
    /// Packets of one client IP, all its connections together (a campus may share one NAT).
    pub per_ip: Rate,
    /// New connections from one client IP.
    pub connects_per_ip: Rate,
    /// A connection with this many limited packets within `FLOOD_WINDOW` is disconnected.
    pub flood_strikes: u32,
    /// Peers whose `X-Forwarded-For` is believed (load balancers), as addresses or ranges.
    pub trusted_proxies: Vec<IpRange>,
}

/// An address range in CIDR notation (`10.0.0.0/8`), or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an address"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}` has a bad prefix length"))?,
            None => max,
        };
        // `::ffff:10.0.0.0/104` is the IPv4 range `10.0.0.0/8`: peers are compared canonical.
        match network {
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix >= 96 => Ok(Self {
                network: canonical(network),
                prefix: prefix - 96,
            }),
            _ => Ok(Self { network, prefix }),
        }
    }
}

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
            let shift = width - prefix;
            if shift >= 128 {
                0
            } else {
                bits >> shift
            }
        }
        match (self.network, canonical(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                masked(u32::from(n) as u128, self.prefix, 32)
                    == masked(u32::from(a) as u128, self.prefix, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                masked(u128::from(n), self.prefix, 128) == masked(u128::from(a), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// The address in the form limits compare: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
/// dual-stack listener reports for an IPv4 peer) is that IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// What counts as one client for the per-IP limits: an IPv4 address, or an IPv6 /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` hop: `ip`, `ip:port`, `[v6]` or `[v6]:port` (proxies write all four).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    let bracketed = hop.strip_prefix('[')?.strip_suffix(']')?;
    bracketed.parse::<IpAddr>().ok().map(canonical)
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            per_connection: Rate {
                per_second: 50,
                burst: 200,
            },
            per_ip: Rate {
                per_second: 2000,
                burst: 4000,
            },
            connects_per_ip: Rate {
                per_second: 500,
                burst: 2000,
            },
            flood_strikes: 200,
            trusted_proxies: Vec::new(),
        }
    }
}

const FLOOD_WINDOW: Duration = Duration::from_secs(10);

/// What to do with one inbound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Over the limit: drop it (and tell the client where the protocol can).
    Limit,
    /// Over the limit for too long: close the connection.
    Disconnect,
}

pub struct Limits {
    config: LimitsConfig,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    connects: DefaultKeyedRateLimiter<IpAddr>,
}

impl Limits {
    pub fn new(config: LimitsConfig) -> Arc<Self> {
        let limits = Arc::new(Self {
            per_ip: RateLimiter::keyed(config.per_ip.quota()),
            connects: RateLimiter::keyed(config.connects_per_ip.quota()),
            config,
        });
        // Forget idle IPs so the keyed state stays proportional to active clients.
        let weak = Arc::downgrade(&limits);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                let Some(limits) = weak.upgrade() else { return };
                limits.per_ip.retain_recent();
                limits.connects.retain_recent();
            }
        });
        limits
    }

    /// May `ip` open another connection now?
    pub fn allow_connect(&self, ip: IpAddr) -> bool {
        let allowed = self.connects.check_key(&client_key(ip)).is_ok();
        if !allowed {
            metrics::counter!("switchyard_rejects_total", "api" => "connect", "reason" => "rate")
                .increment(1);
        }
        allowed
    }

    /// The limiter of one new connection from `ip`.
    pub fn connection(self: &Arc<Self>, ip: IpAddr) -> ConnectionLimiter {
        ConnectionLimiter {
            own: RateLimiter::direct(self.config.per_connection.quota()),
            ip,
            key: client_key(ip),
            limits: self.clone(),
            strikes: AtomicU32::new(0),
            window_start: Mutex::new(Instant::now()),
        }
    }

    /// Is `ip` one of the configured trusted proxies?
    pub fn trusted(&self, ip: IpAddr) -> bool {
        self.config.trusted_proxies.iter().any(|r| r.contains(ip))
    }

    /// The client's address: the peer, or — when the peer is a trusted proxy — the rightmost
    /// `X-Forwarded-For` hop that is not itself a trusted proxy (hops further left were written
    /// by the client and can be forged). A hop that does not parse stops the walk: the client is
    /// then known only as "behind" the last trusted hop, which stands in for it.
    pub fn client_ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
        let peer_ip = canonical(peer.map(|p| p.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0])));
        if !self.trusted(peer_ip) {
            return peer_ip;
        }
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let mut nearest_trusted = peer_ip;
        for hop in hops.into_iter().rev() {
            match parse_hop(hop) {
                Some(ip) if self.trusted(ip) => nearest_trusted = ip,
                Some(ip) => return ip,
                None => break,
            }
        }
        nearest_trusted
    }
}

pub struct ConnectionLimiter {
    own: DefaultDirectRateLimiter,
    ip: IpAddr,
    /// The per-IP limits' key (`ip`, or its /64).
    key: IpAddr,
    limits: Arc<Limits>,
    strikes: AtomicU32,
    window_start: Mutex<Instant>,
}

impl ConnectionLimiter {
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Checks one inbound packet against the connection's and the IP's limits.
    pub fn check(&self, api: &'static str) -> Verdict {
        if self.own.check().is_ok() && self.limits.per_ip.check_key(&self.key).is_ok() {
            return Verdict::Allow;
        }
        metrics::counter!("switchyard_rejects_total", "api" => api, "reason" => "rate")
            .increment(1);
        {
            let mut start = self.window_start.lock();
            if start.elapsed() > FLOOD_WINDOW {
                *start = Instant::now();
                self.strikes.store(0, Ordering::Relaxed);
            }
        }
        if self.strikes.fetch_add(1, Ordering::Relaxed) + 1 >= self.limits.config.flood_strikes {
            metrics::counter!("switchyard_flood_disconnects_total", "api" => api).increment(1);
            Verdict::Disconnect
        } else {
            Verdict::Limit
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_connection: u32, per_ip: u32, strikes: u32) -> Arc<Limits> {
        Limits::new(LimitsConfig {
            per_connection: Rate {
                per_second: per_connection,
                burst: per_connection,
            },
            per_ip: Rate {
                per_second: per_ip,
                burst: per_ip,
            },
            connects_per_ip: Rate {
                per_second: 2,
                burst: 2,
            },
            flood_strikes: strikes,
            trusted_proxies: vec!["10.0.0.0/24".parse().unwrap()],
        })
    }

    #[tokio::test]
    async fn a_flooding_connection_is_limited_then_dropped_while_others_pass() {
        let l = limits(5, 1000, 3);
        let flood = l.connection("1.1.1.1".parse().unwrap());
        let polite = l.connection("1.1.1.1".parse().unwrap());
        let verdicts: Vec<Verdict> = (0..8).map(|_| flood.check("test")).collect();
        assert_eq!(&verdicts[..5], &[Verdict::Allow; 5]);
        assert_eq!(&verdicts[5..7], &[Verdict::Limit; 2]);
        assert_eq!(verdicts[7], Verdict::Disconnect);
        assert_eq!(polite.check("test"), Verdict::Allow, "same IP, own budget");
    }

    #[tokio::test]
    async fn the_ip_budget_is_shared_by_its_connections() {
        let l = limits(100, 3, 100);
        let a = l.connection("2.2.2.2".parse().unwrap());
        let b = l.connection("2.2.2.2".parse().unwrap());
        let other = l.connection("3.3.3.3".parse().unwrap());
        assert_eq!(a.check("t"), Verdict::Allow);
        assert_eq!(b.check("t"), Verdict::Allow);
        assert_eq!(a.check("t"), Verdict::Allow);
        assert_eq!(b.check("t"), Verdict::Limit);
        assert_eq!(other.check("t"), Verdict::Allow);
        assert!(l.allow_connect("2.2.2.2".parse().unwrap()));
        assert!(l.allow_connect("2.2.2.2".parse().unwrap()));
        assert!(!l.allow_connect("2.2.2.2".parse().unwrap()));
    }

    #[tokio::test]
    async fn forwarded_for_only_from_trusted_proxies() {
        let l = limits(1, 1, 1);
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "9.9.9.9, 10.0.0.1".parse().unwrap());
        let proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "8.8.8.8:5000".parse().unwrap();
        assert_eq!(
            l.client_ip(Some(proxy), &h),
            "9.9.9.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            l.client_ip(Some(stranger), &h),
            "8.8.8.8".parse::<IpAddr>().unwrap()
        );
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", value.parse().unwrap());
        h
    }

    #[tokio::test]
    async fn hops_with_ports_are_the_client_not_a_reason_to_believe_the_forged_one() {
        let l = limits(1, 1, 1);
        let proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        for (header, client) in [
            ("6.6.6.6, 9.9.9.9:41234", "9.9.9.9"),
            ("6.6.6.6, [2001:db8::7]:41234", "2001:db8::7"),
            ("6.6.6.6, [2001:db8::7]", "2001:db8::7"),
            ("6.6.6.6, 9.9.9.9:41234, 10.0.0.2:80", "9.9.9.9"),
            ("6.6.6.6, ::ffff:9.9.9.9", "9.9.9.9"),
        ] {
            assert_eq!(
                l.client_ip(Some(proxy), &forwarded(header)),
                ip(client),
                "{header}"
            );
        }
        // An unreadable hop written by the proxy: the client is "behind the nearest trusted hop",
        // never the forgeable hop left of it.
        let h = forwarded("6.6.6.6, unknown, 10.0.0.2");
        assert_eq!(l.client_ip(Some(proxy), &h), ip("10.0.0.2"));
    }

    #[tokio::test]
    async fn ipv4_mapped_peers_match_ipv4_ranges_and_the_other_way_round() {
        let l = limits(1, 1, 1);
        let mapped_proxy: SocketAddr = "[::ffff:10.0.0.1]:5000".parse().unwrap();
        let h = forwarded("9.9.9.9");
        assert_eq!(l.client_ip(Some(mapped_proxy), &h), ip("9.9.9.9"));
        let stranger: SocketAddr = "[::ffff:8.8.8.8]:5000".parse().unwrap();
        assert_eq!(
            l.client_ip(Some(stranger), &h),
            ip("8.8.8.8"),
            "canonical peer"
        );

        let range: IpRange = "::ffff:10.1.0.0/112".parse().unwrap();
        assert_eq!(range, "10.1.0.0/16".parse().unwrap());
        assert!(range.contains(ip("10.1.2.3")));
        assert!(range.contains(ip("::ffff:10.1.2.3")));
        assert!(!range.contains(ip("10.2.0.1")));
    }

    #[tokio::test]
    async fn an_ipv6_slash_64_is_one_client() {
        assert_eq!(client_key(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(client_key(ip("::ffff:1.2.3.4")), ip("1.2.3.4"));
        let l = limits(100, 100, 100);
        assert!(l.allow_connect(ip("2001:db8:1:2::1")));
        assert!(l.allow_connect(ip("2001:db8:1:2:ffff::9")));
        assert!(
            !l.allow_connect(ip("2001:db8:1:2::3")),
            "same /64, shared budget"
        );
        assert!(
            l.allow_connect(ip("2001:db8:1:3::1")),
            "the next /64 is someone else"
        );
    }
}
