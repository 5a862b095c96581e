//! The resolver's cache: each outcome kept for its TTL, and single flight, so callers that miss
//! on a name while a lookup of it is under way wait for that lookup instead of sending their
//! own. One cache per record type; names are keyed lowercased, since DNS names are
//! case-insensitive and `Svc` and `svc` must share an entry.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::error::{ErrorKind, LookupError};
use crate::sync::{lock, wait_timeout};

/// Past this many entries, expired ones are swept on insert (names come from configuration
/// and peers, so this is a safety net, not a working-set size).
const SWEEP_AT: usize = 256;

pub type Outcome<V> = Result<V, LookupError>;

pub struct Cache<V> {
    entries: Mutex<HashMap<String, Entry<V>>>,
    /// How long a caller waits for another caller's lookup of the same name.
    wait_bound: Duration,
}

enum Entry<V> {
    Ready {
        outcome: Outcome<V>,
        expires: Instant,
    },
    /// A lookup under way; callers for the same name wait for its outcome.
    Pending(Arc<Flight<V>>),
}

struct Flight<V> {
    outcome: Mutex<Option<Outcome<V>>>,
    done: Condvar,
}

impl<V: Clone> Cache<V> {
    /// `wait_bound` should be the lookup's own time bound plus a moment for scheduling: a
    /// waiter never sends a second query.
    pub fn new(wait_bound: Duration) -> Cache<V> {
        Cache {
            entries: Mutex::new(HashMap::new()),
            wait_bound,
        }
    }

    /// The unexpired outcome for `name`, or the outcome of `run`, which also says how long it
    /// may be kept. Concurrent misses for one name share one `run`.
    pub fn get_or_run(
        &self,
        name: &str,
        run: impl FnOnce() -> (Outcome<V>, Duration),
    ) -> Outcome<V> {
        let key = name.to_ascii_lowercase();
        let flight = {
            let mut entries = lock(&self.entries);
            match entries.get(&key) {
                Some(Entry::Ready { outcome, expires }) if *expires > Instant::now() => {
                    return outcome.clone();
                }
                Some(Entry::Pending(flight)) => {
                    let flight = flight.clone();
                    drop(entries);
                    return self.wait(&flight, &key);
                }
                _ => {
                    let flight = Arc::new(Flight {
                        outcome: Mutex::new(None),
                        done: Condvar::new(),
                    });
                    entries.insert(key.clone(), Entry::Pending(flight.clone()));
                    flight
                }
            }
        };
        let mut leader = Leader {
            cache: self,
            key,
            flight,
            finished: false,
        };
        let (outcome, ttl) = run();
        leader.finish(outcome.clone(), ttl);
        outcome
    }

    /// Keeps `value` for `name` for `ttl`, as if a lookup had found it.
    pub fn insert(&self, name: &str, value: V, ttl: Duration) {
        self.set(name.to_ascii_lowercase(), Ok(value), ttl);
    }

    fn set(&self, key: String, outcome: Outcome<V>, ttl: Duration) {
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        let expires = now + ttl;
        entries.insert(key, Entry::Ready { outcome, expires });
        if entries.len() > SWEEP_AT {
            entries.retain(
                |_, entry| !matches!(entry, Entry::Ready { expires, .. } if *expires <= now),
            );
        }
    }

    fn wait(&self, flight: &Flight<V>, name: &str) -> Outcome<V> {
        let until = Instant::now() + self.wait_bound;
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
}

/// Completes a flight: stores the outcome and wakes the waiters. If the lookup panicked,
/// `Drop` removes the pending entry and hands the waiters an error instead of leaving them to
/// time out.
struct Leader<'a, V: Clone> {
    cache: &'a Cache<V>,
    key: String,
    flight: Arc<Flight<V>>,
    finished: bool,
}

impl<V: Clone> Leader<'_, V> {
    fn finish(&mut self, outcome: Outcome<V>, ttl: Duration) {
        self.finished = true;
        self.cache.set(self.key.clone(), outcome.clone(), ttl);
        self.hand_over(outcome);
    }

    fn hand_over(&self, outcome: Outcome<V>) {
        *lock(&self.flight.outcome) = Some(outcome);
        self.flight.done.notify_all();
    }
}

impl<V: Clone> Drop for Leader<'_, V> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        lock(&self.cache.entries).remove(&self.key);
        let reason = "lookup aborted";
        let err = LookupError::new(&self.key, ErrorKind::ServerMisbehaving, reason);
        self.hand_over(Err(err));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;

    fn cache() -> Cache<u32> {
        Cache::new(Duration::from_secs(3))
    }

    #[test]
    fn concurrent_misses_share_one_lookup() {
        let cache = Arc::new(cache());
        let runs = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, runs, barrier) = (cache.clone(), runs.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    cache.get_or_run("Svc.", || {
                        runs.fetch_add(1, Ordering::SeqCst);
                        // Hold the flight open until every thread has had the chance to join.
                        let until = Instant::now() + Duration::from_millis(200);
                        while Instant::now() < until {
                            thread::yield_now();
                        }
                        (Ok(7), Duration::from_secs(60))
                    })
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().expect("thread"), Ok(7));
        }
        // Threads that arrive after the flight completed hit the cache: one run either way.
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let again = cache.get_or_run("svc.", || panic!("other case, same entry"));
        assert_eq!(again, Ok(7));
    }

    #[test]
    fn failures_expire_and_answers_are_reused() {
        let cache = cache();
        let err = LookupError::new("x.", ErrorKind::Timeout, "i/o timeout");
        let first = cache.get_or_run("x.", || (Err(err.clone()), Duration::ZERO));
        assert_eq!(first, Err(err));
        let second = cache.get_or_run("x.", || (Ok(1), Duration::from_secs(60)));
        assert_eq!(second, Ok(1), "an expired failure is looked up again");
        let third = cache.get_or_run("x.", || panic!("cached answers are not looked up"));
        assert_eq!(third, Ok(1));
    }

    #[test]
    fn inserted_values_are_served_until_they_expire() {
        let cache = cache();
        cache.insert("Web-0.svc.", 4, Duration::from_secs(60));
        assert_eq!(cache.get_or_run("web-0.svc.", || panic!("inserted")), Ok(4));
        cache.insert("web-1.svc.", 5, Duration::ZERO);
        assert_eq!(
            cache.get_or_run("web-1.svc.", || (Ok(6), Duration::ZERO)),
            Ok(6)
        );
    }

    #[test]
    fn a_panicking_lookup_releases_its_waiters() {
        let cache = cache();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            cache.get_or_run("boom.", || panic!("lookup bug"))
        }));
        assert!(result.is_err());
        let again = cache.get_or_run("boom.", || (Ok(2), Duration::from_secs(1)));
        assert_eq!(again, Ok(2), "the entry was cleared, not left pending");
    }
}
