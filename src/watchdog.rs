//! Watchdog: the server asks itself for `/healthz` through its own listener. That does two jobs
//! tiny_http 0.12 leaves undone:
//!
//! - Its connection pool (`src/util/task_pool.rs`) queues a new connection instead of starting
//!   a thread whenever some thread is waiting, even when more connections arrive at once than
//!   threads wait. The extra connections then sit in the queue until another connection closes,
//!   which for idle keep-alive connections may be never (measured: 3 of 60 connections opened
//!   at once were never answered). A connection arriving while no thread waits gets a thread of
//!   its own, which takes the next queued connection once it is done. So when a probe is not
//!   answered promptly, the watchdog sends short extra probes, each of which frees one queued
//!   connection, until the first probe (queued behind all the others) is answered.
//! - If the accept loop has died, nothing will ever be answered again, so the watchdog stops the
//!   process with status 1 and the kubelet restarts it. When the accept thread ends (an error
//!   from `accept`, or a panic such as the `unwrap` on cloning a stream that fails with EMFILE)
//!   it drops the listening socket, so our own connection is refused: that is certain, and acted
//!   on at once. Otherwise after [`DEAD_AFTER`] with no probe answered.
//!
//! Connections are queued only when several arrive together, and some of them are then served:
//! so the receive loop [`Kick`]s the watchdog when a request comes from a connection it has not
//! seen lately, and the watchdog probes at once instead of waiting out its [`PERIOD`]. Measured
//! with `make bench`'s burst (32 connections opened at once on a fresh server): the slowest first
//! answer came ~100 ms after the burst (up to 340 ms) with probes five times a second, and
//! 7 to 16 ms (up to 32 ms) with the kick; an idle server's CPU fell from 7.5 to 3 to 4 ms a second.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread;
use std::time::{Duration, Instant};

use crate::lifecycle::Lifecycle;

/// The probes' User-Agent, so the request log and [`Kick`] can leave them out.
pub const WATCHDOG_AGENT: &str = "hello-stateful-watchdog";
/// Time between probes while nothing new happens.
const PERIOD: Duration = Duration::from_millis(500);
/// The least time between two rounds of probes, however often the watchdog is kicked: a client
/// opening a connection per request kicks it for every request.
const MIN_GAP: Duration = Duration::from_millis(50);
/// The wait after a kick before probing.
const SETTLE: Duration = Duration::from_millis(5);
/// A probe not answered in this time is taken to be queued.
const PROMPT: Duration = Duration::from_millis(100);
/// With no probe answered for this long the accept loop is taken to be dead. Generous, so an
/// overloaded server is not restarted for being slow.
pub const DEAD_AFTER: Duration = Duration::from_secs(15);
/// Pause after each extra probe before looking for the first probe's answer.
const NUDGE_PAUSE: Duration = Duration::from_millis(1);
/// Extra probes for one queued probe at most, so a dead accept loop does not fill the listen backlog.
const MAX_NUDGES: usize = 64;
/// Client addresses remembered by [`Kick`].
const RECENT: usize = 256;

/// Wakes the watchdog when a request arrives on a connection not seen lately. Owned by the
/// receive loop; remembers recent client addresses in a small direct-mapped table, so a
/// collision between two busy connections costs only an early round of probes.
pub struct Kick {
    wake: SyncSender<()>,
    recent: Vec<Option<SocketAddr>>,
}

impl Kick {
    /// Notes a request from `remote` (not one of the watchdog's own probes).
    pub fn request_from(&mut self, remote: SocketAddr) {
        let slot = &mut self.recent[slot(remote)];
        if *slot != Some(remote) {
            *slot = Some(remote);
            // A full channel already holds a wake-up; a closed one means the watchdog is gone.
            let _ = self.wake.try_send(());
        }
    }
}

fn slot(remote: SocketAddr) -> usize {
    let ip = match remote.ip() {
        IpAddr::V4(ip) => u32::from(ip) as usize,
        IpAddr::V6(ip) => u128::from(ip) as usize,
    };
    (ip ^ (ip >> 16) ^ usize::from(remote.port())) % RECENT
}

/// Starts the watchdog thread for a server listening on `listen`; returns its [`Kick`].
pub fn start(listen: SocketAddr, lifecycle: Arc<Lifecycle>) -> io::Result<Kick> {
    let target = reachable(listen);
    let (wake, woken) = mpsc::sync_channel(1);
    thread::Builder::new()
        .name("watchdog".into())
        .stack_size(64 * 1024)
        .spawn(move || watch(target, &lifecycle, &woken))?;
    Ok(Kick {
        wake,
        recent: vec![None; RECENT],
    })
}

fn watch(target: SocketAddr, lifecycle: &Lifecycle, woken: &Receiver<()>) {
    let mut last_answer = Instant::now();
    while !lifecycle.is_stopping() {
        match check(target) {
            Ok(true) => last_answer = Instant::now(),
            Ok(false) => {}
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                log::error!(
                    "{target} refuses connections: tiny_http's accept loop died and closed \
                     the listening socket; exiting so the pod restarts"
                );
                lifecycle.stop(1);
                return;
            }
            Err(e) => log::warn!("watchdog cannot reach {target}: {e}"),
        }
        if last_answer.elapsed() > DEAD_AFTER && !lifecycle.is_stopping() {
            log::error!(
                "no answer from this server on {target} for {} s; exiting so the pod restarts",
                DEAD_AFTER.as_secs()
            );
            lifecycle.stop(1);
            return;
        }
        thread::sleep(MIN_GAP);
        match woken.recv_timeout(PERIOD - MIN_GAP) {
            // Let the rest of the connections arriving together be accepted first.
            Ok(()) => thread::sleep(SETTLE),
            Err(RecvTimeoutError::Timeout) => {}
            // The receive loop has ended: keep the pace.
            Err(RecvTimeoutError::Disconnected) => thread::sleep(PERIOD - MIN_GAP),
        }
    }
}

/// A wildcard listen address is probed on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// A round of probes. A probe that arrives while no pool thread waits gets a new thread, which
/// after answering takes the oldest queued connection, if any, and keeps it. So probes go out
/// one after another for as long as each leaves the process with one more thread than before
/// (the previous probe's thread found a queued connection to serve), at most [`MAX_NUDGES`]. A
/// probe that is not answered promptly is itself queued, behind all the others: then extra
/// probes go out until it is answered. True if any probe was answered: the accept loop lives.
fn check(target: SocketAddr) -> io::Result<bool> {
    let mut alive = false;
    let mut threads = thread_count();
    for round in 0..MAX_NUDGES {
        alive |= probe_until_answered(target)?;
        let now = thread_count();
        // The first probe may add an idle thread; from the second on, growth means work found.
        if round > 0 && !matches!((threads, now), (Some(before), Some(after)) if after > before) {
            if round > 1 {
                log::debug!(
                    "{} probes started threads for queued connections",
                    round - 1
                );
            }
            break;
        }
        threads = now;
    }
    Ok(alive)
}

/// One probe; if it is queued, extra probes until it is answered. True if anything answered.
fn probe_until_answered(target: SocketAddr) -> io::Result<bool> {
    let mut first = probe(target)?;
    if answered(&mut first, PROMPT) {
        return Ok(true);
    }
    let mut nudges = Vec::new();
    while nudges.len() < MAX_NUDGES {
        nudges.push(probe(target)?);
        // Time for the nudge's new thread to answer it and take a queued connection.
        thread::sleep(NUDGE_PAUSE);
        if answered_now(&mut first) {
            log::debug!(
                "started {} tiny_http threads for queued connections",
                nudges.len()
            );
            return Ok(true);
        }
    }
    // The first probe is still queued: the accept loop lives if a nudge was answered. One wait
    // for them all, not one per nudge (64 of them would take 6.4 s when none is answered).
    thread::sleep(PROMPT);
    Ok(nudges.iter_mut().any(answered_now))
}

/// Threads of this process, from /proc (present in every container); None if unreadable.
fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Connects and asks for `/healthz`. HTTP/1.0, so the server closes the connection after
/// answering and its thread is free at once.
fn probe(target: SocketAddr) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&target, Duration::from_secs(1))?;
    stream.write_all(
        format!("GET /healthz HTTP/1.0\r\nUser-Agent: {WATCHDOG_AGENT}\r\n\r\n").as_bytes(),
    )?;
    Ok(stream)
}

/// True once the server has started to answer on `stream`, waiting at most `wait`.
fn answered(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    stream.set_read_timeout(Some(wait)).is_ok() && matches!(stream.read(&mut byte), Ok(1))
}

/// True if the server has started to answer on `stream`, without waiting. (A short read
/// timeout would not do: the kernel rounds it up to whole timer ticks, several milliseconds.)
fn answered_now(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    stream.set_nonblocking(true).is_ok() && matches!(stream.read(&mut byte), Ok(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_listening_socket_stops_the_process_at_once() {
        // The port of a listener that is gone, as after tiny_http's accept thread has panicked.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let lifecycle = Arc::new(Lifecycle::default());
        start(closed, lifecycle.clone()).unwrap();
        let started = Instant::now();
        while !lifecycle.is_stopping() && started.elapsed() < DEAD_AFTER / 2 {
            thread::sleep(Duration::from_millis(10));
        }
        assert!(
            lifecycle.is_stopping(),
            "the watchdog did not stop the process"
        );
        assert_eq!(lifecycle.exit_code(), 1);
    }

    #[test]
    fn requests_on_connections_not_seen_lately_kick_the_watchdog() {
        let (wake, woken) = mpsc::sync_channel(1);
        let mut kick = Kick {
            wake,
            recent: vec![None; RECENT],
        };
        let first: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        kick.request_from(first);
        assert!(woken.try_recv().is_ok(), "a new connection kicks");
        kick.request_from(first);
        assert!(
            woken.try_recv().is_err(),
            "the same connection again does not"
        );
        kick.request_from("10.0.0.1:40001".parse().unwrap());
        kick.request_from("[fd00::1]:40000".parse().unwrap());
        assert!(woken.try_recv().is_ok());
        assert!(
            woken.try_recv().is_err(),
            "kicks while the watchdog is busy make one wake-up"
        );
        drop(woken);
        kick.request_from("10.0.0.3:40000".parse().unwrap()); // a watchdog that is gone is no error
    }

    #[test]
    fn wildcard_addresses_are_probed_on_loopback() {
        assert_eq!(
            reachable("0.0.0.0:8000".parse().unwrap()),
            "127.0.0.1:8000".parse().unwrap()
        );
        assert_eq!(
            reachable("[::]:8000".parse().unwrap()),
            "[::1]:8000".parse().unwrap()
        );
        assert_eq!(
            reachable("10.1.2.3:80".parse().unwrap()),
            "10.1.2.3:80".parse().unwrap()
        );
    }
}
