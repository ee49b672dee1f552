//! `scylla://host:9042,host:9042/keyspace?option=value&…`, parsed once, refused with a reason.
//!
//! Options (all optional):
//! - `replication`: `3` (NetworkTopologyStrategy, 3 replicas in every DC; the default) or
//!   `dc1:3,dc2:2` (per DC). Used only when `switchyard migrate` creates the keyspace.
//! - `tablets`: `true`/`false`, adds `tablets = {'enabled': …}` to that CREATE KEYSPACE
//!   (ScyllaDB releases that cannot run lightweight transactions on tablets, 6.x and early
//!   2025.x, need `false`).
//! - `local_dc`: the datacenter to prefer (token-aware within it, no failover out of it).
//! - `page_size`: rows per page of every read (default 1000).
//! - `max_in_flight`: requests this process has outstanding at once (default 1024).
//! - `timeout_ms`: client-side timeout of one request (default 5000).

use std::time::Duration;

use crate::{StoreError, StoreResult};

const DEFAULT_PORT: u16 = 9042;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// `'replication_factor': N`: N replicas in every datacenter.
    Factor(u32),
    /// Replicas per named datacenter.
    PerDc(Vec<(String, u32)>),
}

impl Replication {
    /// The CQL map for `CREATE KEYSPACE … WITH replication = …`.
    pub fn to_cql(&self) -> String {
        let entries = match self {
            Replication::Factor(n) => format!("'replication_factor': {n}"),
            Replication::PerDc(dcs) => dcs
                .iter()
                .map(|(dc, n)| format!("'{dc}': {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        };
        format!("{{'class': 'NetworkTopologyStrategy', {entries}}}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScyllaUrl {
    /// Contact points, `host:port` (brackets kept around IPv6 addresses).
    pub nodes: Vec<String>,
    /// Lower-cased, as CQL folds unquoted names.
    pub keyspace: String,
    pub replication: Replication,
    pub tablets: Option<bool>,
    pub local_dc: Option<String>,
    pub page_size: i32,
    pub max_in_flight: usize,
    pub request_timeout: Duration,
}

impl ScyllaUrl {
    pub fn parse(url: &str) -> StoreResult<Self> {
        let bad = |why: String| StoreError::BadUrl(url.to_owned(), why);
        let rest = url
            .strip_prefix("scylla://")
            .ok_or_else(|| bad("must start with scylla://".into()))?;
        let (hosts, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("missing /keyspace after the hosts".into()))?;
        let (keyspace, query) = path.split_once('?').unwrap_or((path, ""));
        let nodes = hosts
            .split(',')
            .map(node)
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let mut parsed = ScyllaUrl {
            nodes,
            keyspace: keyspace_name(keyspace).map_err(bad)?,
            replication: Replication::Factor(3),
            tablets: None,
            local_dc: None,
            page_size: 1000,
            max_in_flight: 1024,
            request_timeout: Duration::from_secs(5),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad(format!("option `{pair}` needs a value (name=value)")))?;
            parsed.set(key, value).map_err(bad)?;
        }
        Ok(parsed)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        match key {
            "replication" => self.replication = replication(value)?,
            "tablets" => {
                self.tablets = Some(match value {
                    "true" => true,
                    "false" => false,
                    _ => return Err("tablets must be true or false".into()),
                })
            }
            "local_dc" => self.local_dc = Some(dc_name(value)?.to_owned()),
            "page_size" => self.page_size = number(key, value, 1, 100_000)? as i32,
            "max_in_flight" => self.max_in_flight = number(key, value, 1, 1 << 20)? as usize,
            "timeout_ms" => {
                self.request_timeout = Duration::from_millis(number(key, value, 1, 600_000)?)
            }
            _ => {
                return Err(format!(
                    "unknown option `{key}` (known: replication, tablets, local_dc, page_size, \
                     max_in_flight, timeout_ms)"
                ))
            }
        }
        Ok(())
    }
}

fn node(host: &str) -> Result<String, String> {
    if host.is_empty() {
        return Err("empty host in the host list".into());
    }
    // `[v6]:port`, `[v6]`, `name:port`, `name`.
    let (name, port) = if let Some(v6) = host.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{host}`: unclosed [ of an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("`{host}`: expected :port after ]"))?,
            ),
        };
        (format!("[{addr}]"), port)
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name.to_owned(), Some(port)),
            None => (host.to_owned(), None),
        }
    };
    if name.is_empty() || name == "[]" {
        return Err(format!("`{host}`: missing host name"));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{host}`: port must be a number from 1 to 65535"))?,
    };
    Ok(format!("{name}:{port}"))
}

fn keyspace_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(format!(
            "keyspace `{name}` must be a letter followed by letters, digits or _ (at most 48)"
        ))
    }
}

fn replication(value: &str) -> Result<Replication, String> {
    if let Ok(n) = value.parse::<u32>() {
        return match n {
            1..=32 => Ok(Replication::Factor(n)),
            _ => Err("replication factor must be from 1 to 32".into()),
        };
    }
    let mut dcs = Vec::new();
    for entry in value.split(',') {
        let (dc, n) = entry
            .split_once(':')
            .ok_or_else(|| format!("replication `{entry}`: expected dc:factor or a number"))?;
        let n = n
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=32).contains(n))
            .ok_or_else(|| format!("replication `{entry}`: factor must be from 1 to 32"))?;
        dcs.push((dc_name(dc)?.to_owned(), n));
    }
    Ok(Replication::PerDc(dcs))
}

/// Datacenter names go into CQL string literals: a conservative alphabet keeps them inert.
fn dc_name(dc: &str) -> Result<&str, String> {
    if !dc.is_empty()
        && dc
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        Ok(dc)
    } else {
        Err(format!(
            "datacenter `{dc}` must be letters, digits, `_`, `-` or `.`"
        ))
    }
}

fn number(key: &str, value: &str, min: u64, max: u64) -> Result<u64, String> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("{key} must be a number from {min} to {max}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(url: &str) -> String {
        match ScyllaUrl::parse(url) {
            Err(StoreError::BadUrl(u, why)) => {
                assert_eq!(u, url);
                why
            }
            other => panic!("expected BadUrl for {url}, got {other:?}"),
        }
    }

    #[test]
    fn parses_hosts_keyspace_and_defaults() {
        let u =
            ScyllaUrl::parse("scylla://s1:9042,s2,10.0.0.3:19042,[::1]:9043,[fe80::1]/Switchyard")
                .unwrap();
        assert_eq!(
            u.nodes,
            vec![
                "s1:9042",
                "s2:9042",
                "10.0.0.3:19042",
                "[::1]:9043",
                "[fe80::1]:9042"
            ]
        );
        assert_eq!(u.keyspace, "switchyard", "folded like an unquoted CQL name");
        assert_eq!(u.replication, Replication::Factor(3));
        assert_eq!(u.tablets, None);
        assert_eq!(u.page_size, 1000);
        assert_eq!(u.max_in_flight, 1024);
        assert_eq!(u.request_timeout, Duration::from_secs(5));
    }

    #[test]
    fn parses_options() {
        let u = ScyllaUrl::parse(
            "scylla://h/ks?replication=dc1:3,dc-2.b:2&tablets=false&local_dc=dc1&page_size=7\
             &max_in_flight=64&timeout_ms=250",
        )
        .unwrap();
        assert_eq!(
            u.replication,
            Replication::PerDc(vec![("dc1".into(), 3), ("dc-2.b".into(), 2)])
        );
        assert_eq!(u.tablets, Some(false));
        assert_eq!(u.local_dc.as_deref(), Some("dc1"));
        assert_eq!(u.page_size, 7);
        assert_eq!(u.max_in_flight, 64);
        assert_eq!(u.request_timeout, Duration::from_millis(250));
        let u = ScyllaUrl::parse("scylla://h/ks?replication=1").unwrap();
        assert_eq!(u.replication, Replication::Factor(1));
    }

    #[test]
    fn replication_renders_as_network_topology() {
        assert_eq!(
            Replication::Factor(3).to_cql(),
            "{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}"
        );
        assert_eq!(
            Replication::PerDc(vec![("dc1".into(), 3), ("dc2".into(), 2)]).to_cql(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
    }

    #[test]
    fn refuses_with_a_reason() {
        assert!(reason("scylla://h1,h2").contains("missing /keyspace"));
        assert!(reason("scylla://h1/").contains("keyspace ``"));
        assert!(reason("scylla://h1/1abc").contains("must be a letter"));
        assert!(reason("scylla://h1/ks-x").contains("must be a letter"));
        assert!(reason(&format!("scylla://h/{}", "k".repeat(49))).contains("at most 48"));
        assert!(reason("scylla:///ks").contains("empty host"));
        assert!(reason("scylla://a,,b/ks").contains("empty host"));
        assert!(reason("scylla://h:0/ks").contains("port must be"));
        assert!(reason("scylla://h:x/ks").contains("port must be"));
        assert!(reason("scylla://h:70000/ks").contains("port must be"));
        assert!(reason("scylla://:9042/ks").contains("missing host name"));
        assert!(reason("scylla://[::1/ks").contains("unclosed"));
        assert!(reason("scylla://[::1]x/ks").contains(":port after ]"));
        assert!(reason("scylla://h/ks?replication=0").contains("from 1 to 32"));
        assert!(reason("scylla://h/ks?replication=dc1").contains("dc:factor"));
        assert!(reason("scylla://h/ks?replication=dc1:x").contains("from 1 to 32"));
        assert!(reason("scylla://h/ks?replication=d'c:3").contains("datacenter"));
        assert!(reason("scylla://h/ks?tablets=no").contains("true or false"));
        assert!(reason("scylla://h/ks?page_size=0").contains("page_size must be"));
        assert!(reason("scylla://h/ks?pagesize=10").contains("unknown option `pagesize`"));
        assert!(reason("scylla://h/ks?page_size").contains("needs a value"));
    }
}
