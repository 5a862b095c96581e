//! Peer discovery: the SRV lookup behind `/get` and `/cluster` (resolv.conf, DNS wire format,
//! cache).
//!
//! [`Resolver`] is the project's own stub resolver, shaped after Go's `net.LookupSRV("", "",
//! name)` as the seed (a Go program) uses it inside a pod: resolv.conf's servers, search list
//! and options, Go's name order, UDP with EDNS0 and TCP when the answer is truncated, so every
//! endpoint a DNS message can carry is listed, and replies checked against the query, so a
//! malformed or spoofed one is ignored, never trusted. On top of that: one time bound for a
//! whole lookup (`LOOKUP_TIMEOUT_MS`), answers cached for their TTL so `/get` under load does
//! not hammer the cluster DNS, failures for a second, and concurrent misses for a name sharing
//! one query. Lookups run on the requests' own threads, never on the writer's, so a dead DNS
//! server cannot slow `/store`.

mod answer;
mod cache;
mod conf;
mod error;
mod lookup;
mod query;
mod wire;

#[cfg(test)]
mod fuzz;

pub use answer::{Srv, SrvAnswer, natural_cmp};
pub use conf::is_domain_name;
pub use error::{ErrorKind, LookupError};

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::METRICS;
use cache::{Cache, Outcome};
use conf::Config;
use wire::{TYPE_A, TYPE_SRV};

/// How long a failed lookup is remembered: long enough that a burst of `/get` during a DNS
/// outage costs one query per second, short enough that recovery shows at once.
const FAILURE_TTL: Duration = Duration::from_secs(1);
/// Upper bound on any cached answer, whatever TTL the server sent, so a misconfigured zone
/// cannot pin a stale peer list for days. Kubernetes uses 5 s (30 s under kubeadm).
const MAX_TTL: Duration = Duration::from_secs(3600);

/// A stub resolver for SRV and A lookups with a cache. `Send + Sync`; share it with `Arc`.
pub struct Resolver {
    conf: Config,
    lookup_timeout: Duration,
    srv: Cache<Arc<SrvAnswer>>,
    ipv4: Cache<Vec<Ipv4Addr>>,
}

impl Resolver {
    /// Reads `resolv_conf` once: the kubelet writes a pod's before the container starts, and
    /// it does not change while the pod runs. A missing or unreadable file means the local
    /// host's resolver, as in Go. `lookup_timeout` bounds one whole lookup (all names,
    /// servers, attempts and the TCP fallback).
    pub fn new(resolv_conf: PathBuf, lookup_timeout: Duration) -> Resolver {
        let text = std::fs::read_to_string(&resolv_conf).unwrap_or_else(|e| {
            log::warn!(
                "cannot read {}: {e}; names are looked up on this host's port 53",
                resolv_conf.display()
            );
            String::new()
        });
        // A caller waiting for another's lookup of the same name waits for that lookup's
        // bound; the extra second only covers scheduling, never a second query.
        let wait_bound = lookup_timeout + Duration::from_secs(1);
        Resolver {
            conf: Config::parse(&text),
            lookup_timeout,
            srv: Cache::new(wait_bound),
            ipv4: Cache::new(wait_bound),
        }
    }

    /// SRV records of `name`, as Go's `net.LookupSRV("", "", name)` finds them; cached for the
    /// smallest TTL of the records, failures for a second; concurrent misses share one query.
    pub fn lookup_srv(&self, name: &str) -> Result<Arc<SrvAnswer>, LookupError> {
        let mut sent = false;
        let outcome = self.srv.get_or_run(name, || {
            sent = true;
            self.resolve_srv(name)
        });
        match (&outcome, sent) {
            (_, false) => METRICS.lookup_cached(),
            (Ok(_), true) => METRICS.lookup("ok"),
            (Err(e), true) => METRICS.lookup(match e.kind() {
                ErrorKind::NoSuchHost => "no_such_host",
                ErrorKind::NoRecords => "no_records",
                ErrorKind::Timeout => "timeout",
                ErrorKind::ServerMisbehaving => "server_misbehaving",
                ErrorKind::Network => "network",
            }),
        }
        outcome
    }

    /// IPv4 addresses of `name`: those an SRV answer's additional section gave for its targets
    /// while their TTL lasts, else an A query through the same configuration, cached the same
    /// way.
    pub fn lookup_ipv4(&self, name: &str) -> Result<Vec<Ipv4Addr>, LookupError> {
        self.ipv4.get_or_run(name, || self.resolve_ipv4(name))
    }

    fn resolve_srv(&self, name: &str) -> (Outcome<Arc<SrvAnswer>>, Duration) {
        let deadline = Instant::now() + self.lookup_timeout;
        let answered = match lookup::lookup(&self.conf, name, TYPE_SRV, deadline) {
            Ok(answered) => answered,
            Err(e) => return (Err(e), FAILURE_TTL),
        };
        match answer::extract_srv(&answered.message, answered.truncated) {
            Ok(extracted) => {
                // Fully qualified, as SRV targets are: `/cluster` then asks no A query.
                for (host, (addrs, ttl)) in extracted.hosts {
                    self.ipv4.insert(&host, addrs, ttl_duration(ttl));
                }
                let ttl = ttl_duration(extracted.ttl);
                (Ok(Arc::new(extracted.answer)), ttl)
            }
            Err(e) => {
                let reason = match e {
                    answer::ExtractError::BadOwner => "SRV header name is invalid",
                    answer::ExtractError::BadTargets => {
                        "DNS response contained records which contain invalid names"
                    }
                };
                let err = LookupError::new(name, ErrorKind::ServerMisbehaving, reason);
                (Err(err), FAILURE_TTL)
            }
        }
    }

    fn resolve_ipv4(&self, name: &str) -> (Outcome<Vec<Ipv4Addr>>, Duration) {
        let deadline = Instant::now() + self.lookup_timeout;
        match lookup::lookup(&self.conf, name, TYPE_A, deadline) {
            Ok(answered) => {
                let (addrs, ttl) = answer::extract_ipv4(&answered.message);
                (Ok(addrs), ttl_duration(ttl))
            }
            Err(e) => (Err(e), FAILURE_TTL),
        }
    }
}

fn ttl_duration(ttl: u32) -> Duration {
    Duration::from_secs(u64::from(ttl)).min(MAX_TTL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::temp_dir::TempDir;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn resolver_is_send_and_sync() {
        assert_send_sync::<Resolver>();
        assert_send_sync::<LookupError>();
    }

    #[test]
    fn resolv_conf_is_read_at_start_and_a_missing_one_means_this_host() {
        let dir = TempDir::new("resolv-conf");
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 10.1.2.3\noptions ndots:5\n").expect("write");
        let resolver = Resolver::new(path.clone(), Duration::from_secs(2));
        assert_eq!(
            resolver.conf.servers,
            ["10.1.2.3:53".parse().expect("addr")]
        );
        assert_eq!(resolver.conf.ndots, 5);
        std::fs::remove_file(&path).expect("remove");
        let resolver = Resolver::new(path, Duration::from_secs(2));
        assert_eq!(resolver.conf, Config::parse(""));
    }
}
