//! Budgets: every resource a client can make the process hold has a bound. Those of memory come
//! from one figure, the memory the pod may use (`MEMORY_LIMIT`), so that the process stays
//! within three quarters of it whatever clients do; those of time are settings of their own.
//! A client past a bound gets an answer that says so, or its connection closed; the log names
//! the bound once per shortage, and `/metrics` shows each limit, its use and its refusals.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::Config;

/// What one client connection may cost at most, measured with `make faults`: tiny_http's thread
/// for it (stack, buffers), one handler thread, and the requests it may have queued.
pub const CONNECTION_COST: u64 = 48 * 1024;
/// Requests one connection may have received and not yet been answered (pipelining).
pub const PIPELINED: usize = 8;
/// Largest request head (request line and header fields).
pub const HEAD_BYTES: u64 = 64 * 1024;
/// Descriptors kept free of connections: data file, DNS and peer sockets, /proc reads.
const SPARE_FILES: u64 = 64;

/// The bounds that depend on the memory limit and the open-file limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Bytes the process aims to stay under: three quarters of the limit.
    pub memory: u64,
    /// Client connections open at once; past it the idlest are closed.
    pub connections: usize,
    /// Bytes of request bodies being received at once, reserved from the declared length.
    pub body_bytes: u64,
    /// Threads running requests: one per connection at most, and one to keep receiving.
    pub handlers: usize,

    /// Connections left to tiny_http for good after a 413 for an absurd declared length (see
    /// `front.rs`); past this many the process exits so the kubelet restarts it.
    pub parked: usize,
    /// A request head must arrive whole within this time once it has begun (`HEAD_TIMEOUT_MS`).
    pub head_timeout: Duration,
    /// A request body must arrive whole within this time once the server has begun to read it
    /// (`BODY_TIMEOUT_MS`); past it: 408.
    pub body_timeout: Duration,
    /// A connection with no request for this long is closed (`IDLE_TIMEOUT_MS`).
    pub idle_timeout: Duration,
    /// One write of an answer may wait this long for a client that does not read
    /// (`SEND_TIMEOUT_MS`); past it the connection is closed.
    pub send_timeout: Duration,
}

impl Budgets {
    /// Half of the target goes to connections, a quarter to bodies; the rest is the process
    /// itself (binary, buffers, the DNS cache) with room to spare. Each connection holds two
    /// descriptors in tiny_http, and tiny_http's accept loop ends for good when it runs out:
    /// the open-file limit caps them too.
    pub fn new(config: &Config, open_files: u64) -> Budgets {
        let memory = config.memory_limit / 4 * 3;
        let by_memory = memory / 2 / CONNECTION_COST;
        // At the worst, the gate closes at an eighth over the budget while the listen backlog
        // (as long as the budget) is full, and tiny_http accepts all of those too: 17/8 of
        // the budget, and one more, must fit in the descriptors left.
        let by_files = (open_files.saturating_sub(SPARE_FILES) / 2).saturating_sub(1) * 8 / 17;
        let connections = by_memory.min(by_files).max(1) as usize;
        Budgets {
            memory,
            connections,
            body_bytes: memory / 4,
            handlers: connections + 1,
            parked: connections / 4,
            head_timeout: config.head_timeout,
            body_timeout: config.body_timeout,
            idle_timeout: config.idle_timeout,
            send_timeout: config.send_timeout,
        }
    }
}

/// The bounds that turn clients away, each logged once per shortage. Those that count
/// something (connections, body bytes, threads, parked connections) also hold their limit and
/// how much is in use: the front counts with them, and `/metrics` reads them.
pub static CONNECTIONS: Budget = Budget::new("connections");
pub static BODY_BYTES: Budget = Budget::new("request body bytes");
pub static HANDLERS: Budget = Budget::new("handler threads");
pub static PARKED: Budget = Budget::new("parked connections");
pub static PIPELINED_REQUESTS: Budget = Budget::new("pipelined requests");
pub static HEADS: Budget = Budget::new("request heads");
pub static BODY_TIME: Budget = Budget::new("request body time");
pub static ALL: [&Budget; 7] = [
    &CONNECTIONS,
    &BODY_BYTES,
    &HANDLERS,
    &PARKED,
    &PIPELINED_REQUESTS,
    &HEADS,
    &BODY_TIME,
];

impl Budgets {
    /// Gives the counting budgets their limits.
    pub fn apply(&self) {
        CONNECTIONS
            .limit
            .store(self.connections as u64, Ordering::Relaxed);
        BODY_BYTES.limit.store(self.body_bytes, Ordering::Relaxed);
        HANDLERS
            .limit
            .store(self.handlers as u64, Ordering::Relaxed);
        PARKED.limit.store(self.parked as u64, Ordering::Relaxed);
    }
}

/// One bound: how much of it is in use against its limit (when it counts something), how many
/// clients it turned away, and a log line when it starts to turn them away and when it stops,
/// not one for each.
pub struct Budget {
    pub name: &'static str,
    /// 0 for a bound that counts nothing (a time, a per-connection size).
    limit: AtomicU64,
    used: AtomicU64,
    active: AtomicBool,
    /// Clients turned away since the process started.
    hits: AtomicU64,
    /// `hits` when the current shortage began, and at the last tick.
    hits_before: AtomicU64,
    hits_at_tick: AtomicU64,
}

impl Budget {
    pub const fn new(name: &'static str) -> Budget {
        Budget {
            name,
            limit: AtomicU64::new(0),
            used: AtomicU64::new(0),
            active: AtomicBool::new(false),
            hits: AtomicU64::new(0),
            hits_before: AtomicU64::new(0),
            hits_at_tick: AtomicU64::new(0),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Sets what is in use, for a count kept elsewhere (the connections a look found).
    pub fn set_used(&self, n: u64) {
        self.used.store(n, Ordering::Relaxed);
    }

    /// Takes `n`, if that stays within the limit. Not logged: the caller says what it refused.
    pub fn take(&self, n: u64) -> bool {
        let limit = self.limit();
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    /// Gives back `n` taken.
    pub fn give(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }

    /// Takes `n` until the reservation is dropped, or None (a shortage, logged) if that would
    /// pass the limit.
    pub fn reserve(&'static self, n: u64) -> Option<Reservation> {
        if self.take(n) {
            return Some(Reservation(self, n));
        }
        let (used, limit) = (self.used(), self.limit());
        self.hit(format_args!("{used} of {limit} in use, {n} more asked for"));
        None
    }

    /// A client was turned away; `why` is logged if this begins a shortage.
    pub fn hit(&self, why: impl fmt::Display) {
        let before = self.hits.fetch_add(1, Ordering::Relaxed);
        if !self.active.swap(true, Ordering::AcqRel) {
            self.hits_before.store(before, Ordering::Relaxed);
            log::warn!(
                "budget {}: {why}; turning clients away until it recovers",
                self.name
            );
        }
    }

    /// Called periodically: a shortage with no client turned away since the last call is over.
    pub fn tick(&self) {
        let hits = self.hits();
        let at_tick = self.hits_at_tick.swap(hits, Ordering::Relaxed);
        if hits == at_tick && self.active.swap(false, Ordering::AcqRel) {
            let during = hits - self.hits_before.load(Ordering::Relaxed);
            log::info!("budget {}: recovered after {during} refusals", self.name);
        }
    }

    /// Clients turned away since the process started.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// Some of a [`Budget`], given back when dropped.
pub struct Reservation(&'static Budget, u64);

impl Drop for Reservation {
    fn drop(&mut self) {
        self.0.give(self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets(memory_limit: &str, open_files: u64) -> Budgets {
        let config =
            Config::from_lookup(|name| (name == "MEMORY_LIMIT").then(|| memory_limit.to_string()))
                .unwrap();
        Budgets::new(&config, open_files)
    }

    #[test]
    fn the_default_limit_gives_the_documented_budgets() {
        let b = budgets("67108864", 1 << 20);
        assert_eq!(b.memory, 48 << 20);
        assert_eq!(b.connections, 512);
        assert_eq!(b.body_bytes, 12 << 20);
        assert_eq!(b.handlers, 513);
        assert_eq!(b.parked, 128);
        assert_eq!(b.idle_timeout, Duration::from_secs(75));
    }

    #[test]
    fn few_open_files_cap_the_connections() {
        assert_eq!(budgets("67108864", 1024).connections, 225);
        assert_eq!(budgets("67108864", 128).connections, 14);
        assert_eq!(budgets("67108864", 10).connections, 1);
    }

    #[test]
    fn a_reservation_is_refused_past_the_limit_and_given_back_on_drop() {
        static TEST: Budget = Budget::new("test");
        TEST.limit.store(100, Ordering::Relaxed);
        let a = TEST.reserve(60).unwrap();
        assert!(TEST.reserve(41).is_none());
        assert_eq!(TEST.hits(), 1);
        let b = TEST.reserve(40).unwrap();
        assert_eq!(TEST.used(), 100);
        drop((a, b));
        assert_eq!(TEST.used(), 0);
        assert!(TEST.reserve(u64::MAX).is_none(), "no overflow");
    }

    #[test]
    fn a_shortage_ends_at_the_first_tick_without_a_hit() {
        static TEST: Budget = Budget::new("test");
        TEST.hit("full");
        TEST.hit("full");
        TEST.tick();
        assert!(
            TEST.active.load(Ordering::Relaxed),
            "hits since the last tick"
        );
        TEST.tick();
        assert!(!TEST.active.load(Ordering::Relaxed));
        assert_eq!(TEST.hits(), 2);
    }
}
