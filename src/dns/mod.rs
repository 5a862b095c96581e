//! Peer discovery: the SRV lookup behind `/get` (resolv.conf, DNS wire format, cache).
//!
//! [`Resolver`] is the project's own stub resolver, shaped after Go's `net.LookupSRV("", "",
//! name)` as the seed uses it inside a pod (DESIGN.md section 5): resolv.conf's servers, search
//! list and options, Go's name order, UDP with EDNS0 and TCP fallback, replies checked against
//! the query. On top of that: one time bound for a whole lookup, answers cached for their TTL,
//! failures for a second, and concurrent misses for a name sharing one query.

mod answer;
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

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::sync::{lock, wait_timeout};
use conf::Config;
use wire::{TYPE_A, TYPE_SRV};

/// How long a failed lookup is remembered: long enough that a burst of `/get` during a DNS
/// outage costs one query per second, short enough that recovery shows at once.
const FAILURE_TTL: Duration = Duration::from_secs(1);
/// Upper bound on any cached answer, whatever TTL the server sent, so a misconfigured zone
/// cannot pin a stale peer list for days. Kubernetes uses 5 s (30 s under kubeadm).
const MAX_TTL: Duration = Duration::from_secs(3600);
/// Past this many entries, expired ones are swept on insert (names come from configuration
/// and peers, so this is a safety net, not a working-set size).
const SWEEP_AT: usize = 256;

/// A stub resolver for SRV and A lookups with a cache. `Send + Sync`; share it with `Arc`.
pub struct Resolver {
    resolv_conf: PathBuf,
    lookup_timeout: Duration,
    conf: Mutex<LoadedConf>,
    cache: Mutex<Cache>,
}

struct LoadedConf {
    /// (mtime, size, inode) of the file that `conf` came from; `None` when it was missing.
    stamp: Option<(SystemTime, u64, u64)>,
    conf: Option<Arc<Config>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    qtype: u16,
    /// Lowercased: DNS names are case-insensitive, so `Svc` and `svc` share an entry.
    name: String,
}

#[derive(Clone)]
enum Value {
    Srv(Arc<SrvAnswer>),
    V4(Vec<Ipv4Addr>),
}

type Outcome = Result<Value, LookupError>;

enum Slot {
    Ready { outcome: Outcome, expires: Instant },
    Pending(Arc<Flight>),
}

/// One lookup in progress; later callers for the same key wait for its outcome.
#[derive(Default)]
struct Flight {
    outcome: Mutex<Option<Outcome>>,
    done: Condvar,
}

#[derive(Default)]
struct Cache {
    slots: HashMap<Key, Slot>,
    /// A records that came in SRV answers' additional sections, by lowercase FQDN.
    hosts: HashMap<String, (Vec<Ipv4Addr>, Instant)>,
}

impl Resolver {
    /// `resolv_conf` is read lazily and re-read on a cache miss when its mtime, size or inode
    /// changed; `lookup_timeout` bounds one whole lookup (all names, servers, attempts and the
    /// TCP fallback).
    pub fn new(resolv_conf: PathBuf, lookup_timeout: Duration) -> Resolver {
        Resolver {
            resolv_conf,
            lookup_timeout,
            conf: Mutex::new(LoadedConf {
                stamp: None,
                conf: None,
            }),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// SRV records of `name`, as Go's `net.LookupSRV("", "", name)` finds them; cached for the
    /// smallest TTL of the records, failures for a second; concurrent misses share one query.
    pub fn lookup_srv(&self, name: &str) -> Result<Arc<SrvAnswer>, LookupError> {
        let key = Key {
            qtype: TYPE_SRV,
            name: name.to_ascii_lowercase(),
        };
        match self.cached(key, || self.resolve_srv(name))? {
            Value::Srv(answer) => Ok(answer),
            Value::V4(_) => unreachable_kind(name),
        }
    }

    /// IPv4 addresses of `name`: from a cached SRV answer's additional section when it had
    /// them (for fully qualified names, as SRV targets are), else an A query through the same
    /// configuration, cached the same way.
    pub fn lookup_ipv4(&self, name: &str) -> Result<Vec<Ipv4Addr>, LookupError> {
        if name.ends_with('.') {
            let wanted = name.to_ascii_lowercase();
            let cache = lock(&self.cache);
            if let Some((addrs, expires)) = cache.hosts.get(&wanted)
                && *expires > Instant::now()
            {
                return Ok(addrs.clone());
            }
        }
        let key = Key {
            qtype: TYPE_A,
            name: name.to_ascii_lowercase(),
        };
        match self.cached(key, || self.resolve_ipv4(name))? {
            Value::V4(addrs) => Ok(addrs),
            Value::Srv(_) => unreachable_kind(name),
        }
    }

    /// The cache and single flight around one kind of lookup. `run` returns the outcome and
    /// how long it may be cached.
    fn cached(&self, key: Key, run: impl FnOnce() -> (Outcome, Duration)) -> Outcome {
        let flight = {
            let mut cache = lock(&self.cache);
            match cache.slots.get(&key) {
                Some(Slot::Ready { outcome, expires }) if *expires > Instant::now() => {
                    return outcome.clone();
                }
                Some(Slot::Pending(flight)) => {
                    let flight = flight.clone();
                    drop(cache);
                    return self.wait(&flight, &key.name);
                }
                _ => {
                    let flight = Arc::new(Flight::default());
                    cache
                        .slots
                        .insert(key.clone(), Slot::Pending(flight.clone()));
                    flight
                }
            }
        };
        let mut leader = Leader {
            resolver: self,
            key,
            flight,
            finished: false,
        };
        let (outcome, ttl) = run();
        leader.finish(outcome.clone(), ttl);
        outcome
    }

    /// Waits for another caller's lookup of the same key. That lookup is bounded by
    /// `lookup_timeout`; the extra second only covers scheduling, never a second query.
    fn wait(&self, flight: &Flight, name: &str) -> Outcome {
        let until = Instant::now() + self.lookup_timeout + Duration::from_secs(1);
        let mut outcome = lock(&flight.outcome);
        loop {
            if let Some(done) = outcome.as_ref() {
                return done.clone();
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LookupError::new(name, ErrorKind::Timeout, "i/o timeout"));
            }
            outcome = wait_timeout(&flight.done, outcome, left).0;
        }
    }

    fn resolve_srv(&self, name: &str) -> (Outcome, Duration) {
        let conf = self.config();
        let deadline = Instant::now() + self.lookup_timeout;
        let answered = match lookup::lookup(&conf, name, TYPE_SRV, deadline) {
            Ok(answered) => answered,
            Err(e) => return (Err(e), FAILURE_TTL),
        };
        match answer::extract_srv(&answered.message, answered.truncated) {
            Ok(extracted) => {
                let now = Instant::now();
                let mut cache = lock(&self.cache);
                for (host, (addrs, ttl)) in extracted.hosts {
                    cache.hosts.insert(host, (addrs, now + ttl_duration(ttl)));
                }
                sweep(&mut cache, now);
                let ttl = ttl_duration(extracted.ttl);
                (Ok(Value::Srv(Arc::new(extracted.answer))), ttl)
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

    fn resolve_ipv4(&self, name: &str) -> (Outcome, Duration) {
        let conf = self.config();
        let deadline = Instant::now() + self.lookup_timeout;
        match lookup::lookup(&conf, name, TYPE_A, deadline) {
            Ok(answered) => {
                let (addrs, ttl) = answer::extract_ipv4(&answered.message);
                (Ok(Value::V4(addrs)), ttl_duration(ttl))
            }
            Err(e) => (Err(e), FAILURE_TTL),
        }
    }

    /// The current configuration, re-read when the file changed. A stat per cache miss is
    /// cheap next to a DNS query, and picks up a rewritten resolv.conf at once (Go checks at
    /// most every 5 s).
    fn config(&self) -> Arc<Config> {
        let stamp = std::fs::metadata(&self.resolv_conf).ok().map(|m| {
            let mtime = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            (mtime, m.len(), m.ino())
        });
        let mut loaded = lock(&self.conf);
        if let Some(conf) = &loaded.conf
            && loaded.stamp == stamp
        {
            return conf.clone();
        }
        let conf = match std::fs::read_to_string(&self.resolv_conf) {
            Ok(text) => Config::parse(&text),
            Err(e) => {
                log::debug!(
                    "{}: {e}; using the default resolver configuration",
                    self.resolv_conf.display()
                );
                Config::parse("")
            }
        };
        let conf = Arc::new(conf);
        *loaded = LoadedConf {
            stamp,
            conf: Some(conf.clone()),
        };
        conf
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The cache's contents are not useful in a Debug line; where the config comes from is.
        f.debug_struct("Resolver")
            .field("resolv_conf", &self.resolv_conf)
            .field("lookup_timeout", &self.lookup_timeout)
            .finish_non_exhaustive()
    }
}

/// Completes a flight: stores the outcome in the cache and wakes the waiters. If the lookup
/// panicked, `Drop` removes the pending slot and hands the waiters an error instead of
/// leaving them to time out.
struct Leader<'a> {
    resolver: &'a Resolver,
    key: Key,
    flight: Arc<Flight>,
    finished: bool,
}

impl Leader<'_> {
    fn finish(&mut self, outcome: Outcome, ttl: Duration) {
        self.finished = true;
        let now = Instant::now();
        {
            let mut cache = lock(&self.resolver.cache);
            cache.slots.insert(
                self.key.clone(),
                Slot::Ready {
                    outcome: outcome.clone(),
                    expires: now + ttl,
                },
            );
            sweep(&mut cache, now);
        }
        *lock(&self.flight.outcome) = Some(outcome);
        self.flight.done.notify_all();
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        lock(&self.resolver.cache).slots.remove(&self.key);
        let err = LookupError::new(
            &self.key.name,
            ErrorKind::ServerMisbehaving,
            "lookup aborted",
        );
        *lock(&self.flight.outcome) = Some(Err(err));
        self.flight.done.notify_all();
    }
}

fn sweep(cache: &mut Cache, now: Instant) {
    if cache.slots.len() > SWEEP_AT {
        cache
            .slots
            .retain(|_, slot| !matches!(slot, Slot::Ready { expires, .. } if *expires <= now));
    }
    if cache.hosts.len() > SWEEP_AT {
        cache.hosts.retain(|_, (_, expires)| *expires > now);
    }
}

fn ttl_duration(ttl: u32) -> Duration {
    Duration::from_secs(u64::from(ttl)).min(MAX_TTL)
}

/// Keys carry their query type, so a slot of the other kind cannot occur; answering with an
/// error keeps that invariant from ever becoming a panic.
fn unreachable_kind<T>(name: &str) -> Result<T, LookupError> {
    Err(LookupError::new(
        name,
        ErrorKind::ServerMisbehaving,
        "internal cache mix-up",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn resolver_is_send_and_sync() {
        assert_send_sync::<Resolver>();
        assert_send_sync::<LookupError>();
    }

    #[test]
    fn concurrent_misses_share_one_lookup() {
        let resolver = Arc::new(Resolver::new("/nonexistent".into(), Duration::from_secs(2)));
        let runs = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(8));
        let key = Key {
            qtype: TYPE_SRV,
            name: "svc.".into(),
        };
        let answer = Arc::new(SrvAnswer {
            canonical: "svc.".into(),
            records: vec![],
            truncated: false,
        });
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (resolver, runs, barrier, key, answer) = (
                    resolver.clone(),
                    runs.clone(),
                    barrier.clone(),
                    key.clone(),
                    answer.clone(),
                );
                thread::spawn(move || {
                    barrier.wait();
                    resolver.cached(key, || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        // Hold the flight open until every thread has had the chance to join.
                        let until = Instant::now() + Duration::from_millis(200);
                        while Instant::now() < until {
                            thread::yield_now();
                        }
                        (Ok(Value::Srv(answer)), Duration::from_secs(60))
                    })
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().expect("thread").is_ok());
        }
        // Threads that arrive after the flight completed hit the cache: one run either way.
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn failures_expire_and_answers_are_reused() {
        let resolver = Resolver::new("/nonexistent".into(), Duration::from_secs(2));
        let key = Key {
            qtype: TYPE_A,
            name: "x.".into(),
        };
        let err = LookupError::new("x.", ErrorKind::Timeout, "i/o timeout");
        let first = resolver.cached(key.clone(), || (Err(err.clone()), Duration::ZERO));
        assert_eq!(first.err(), Some(err));
        let second = resolver.cached(key.clone(), || {
            (
                Ok(Value::V4(vec![Ipv4Addr::LOCALHOST])),
                Duration::from_secs(60),
            )
        });
        assert!(second.is_ok(), "an expired failure is looked up again");
        let third = resolver.cached(key, || panic!("cached answers are not looked up"));
        assert!(third.is_ok());
    }

    #[test]
    fn a_panicking_lookup_releases_its_waiters() {
        let resolver = Resolver::new("/nonexistent".into(), Duration::from_secs(2));
        let key = Key {
            qtype: TYPE_A,
            name: "boom.".into(),
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            resolver.cached(key.clone(), || panic!("lookup bug"))
        }));
        assert!(result.is_err());
        let again = resolver.cached(key, || (Ok(Value::V4(vec![])), Duration::from_secs(1)));
        assert!(again.is_ok(), "the slot was cleared, not left pending");
    }

    #[test]
    fn missing_resolv_conf_uses_go_defaults_and_reload_follows_the_file() {
        let dir = std::env::temp_dir().join(format!("hs-dns-conf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("resolv.conf");
        // Leftovers of an earlier run would defeat the "missing" case.
        let _ = std::fs::remove_file(&path);
        let resolver = Resolver::new(path.clone(), Duration::from_secs(2));
        assert_eq!(resolver.config().servers.len(), 2);
        std::fs::write(&path, "nameserver 10.1.2.3\noptions ndots:5\n").expect("write");
        let conf = resolver.config();
        assert_eq!(conf.servers, vec!["10.1.2.3:53".parse().expect("addr")]);
        assert_eq!(conf.ndots, 5);
        std::fs::write(&path, "nameserver 10.1.2.4\nnameserver 10.1.2.5\n").expect("write");
        assert_eq!(
            resolver.config().servers.len(),
            2,
            "size changed, so it is re-read"
        );
        // Best effort: the temp dir is the OS's to clean if this fails.
        let _ = std::fs::remove_dir_all(&dir);
    }
}
