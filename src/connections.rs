//! Connections: the server's client connections as the kernel sees them, and the bounds on them.
//!
//! tiny_http 0.12 gives every accepted connection a thread of its own and never lets go of one
//! (`src/lib.rs`, the accept loop; `src/client.rs`, `ClientConnection`): no timeouts, no limit
//! on their number or on the size of a request head. Its sockets are still this process's
//! descriptors, so [`Connections::watch`] finds them in /proc/self/fd, reads each one's state
//! from the kernel (`TCP_INFO`, `FIONREAD`) twenty times a second, and shuts down those past a
//! bound; tiny_http's thread for it then reads end of file and ends.
//!
//! A socket is known by its inode, which no other socket has while it is open. While a request
//! is unanswered its connection's socket stays open (the request holds the writing half), so
//! the client address in a request names exactly one socket: what the front knows of each
//! address ([`Peer`]) lives here too, and nowhere else.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Write};
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{SockFilter, SockRef};
use tiny_http::Request;

use crate::budgets::{
    self, BODY_TIME, Budgets, CONNECTIONS, HEAD_BYTES, HEADS, PIPELINED, PIPELINED_REQUESTS,
    Shortage,
};
use crate::lifecycle::Lifecycle;
use crate::sync::{lock, wait_timeout};

/// Time between two looks at every connection while one is changing, and when none is.
const PERIOD: Duration = Duration::from_millis(5);
const CALM_PERIOD: Duration = Duration::from_millis(250);
/// Time between two counts of the process's descriptors near the budget, and below.
const CHECK: Duration = Duration::from_millis(5);
const CALM_CHECK: Duration = Duration::from_millis(20);
/// Bytes waiting this long on a connection nobody has read from mean tiny_http queued it.
const QUEUED_AFTER: Duration = Duration::from_millis(2);
/// How long a probe waits to connect.
const PROBE_WAIT: Duration = Duration::from_millis(100);
/// At the connection budget, connections idle this long are closed to make room for new ones.
const MAKE_ROOM_AFTER: Duration = Duration::from_secs(1);
/// Probes sent in one look at most.
const MAX_PROBES: usize = 64;

/// What the front knows of one client address.
struct Peer {
    /// A request of this connection is running; later ones wait in `waiting`, in order.
    busy: bool,
    waiting: VecDeque<Request>,
    /// Counts requests received and bodies read: a request head is measured from its last change.
    progress: u64,
    /// When the server began to read the body of the running request.
    body_since: Option<Instant>,
    /// When the connection last finished a request (or was first seen).
    idle_since: Instant,
    /// Set once the server has shut the connection down: requests from it still in tiny_http's
    /// queue are dropped unanswered while this socket is open.
    closed: Option<Socket>,
    /// Its socket, as the last look found it.
    socket: Option<Socket>,
}

impl Peer {
    fn new() -> Peer {
        Peer {
            busy: false,
            waiting: VecDeque::new(),
            progress: 0,
            body_since: None,
            idle_since: Instant::now(),
            closed: None,
            socket: None,
        }
    }
}

/// One client connection, read from the kernel.
#[derive(Debug, Clone)]
pub struct Socket {
    inode: u64,
    /// tiny_http holds two descriptors of each connection, one for each direction.
    fds: Vec<RawFd>,
    peer: SocketAddr,
    /// Time since data last arrived, or since the connection was made.
    quiet: Duration,
    /// Bytes the process has read from it.
    consumed: u64,
    /// Bytes waiting in the kernel to be read.
    unread: u64,
    /// Size of its send buffer.
    send_buffer: usize,
}

impl Socket {
    /// Shuts the connection down in the `how` direction(s), if it is still this socket: on our
    /// own duplicate of a descriptor, so the number cannot be reused between check and act.
    pub fn shutdown(&self, how: Shutdown) -> bool {
        self.fds.iter().any(|&fd| {
            // SAFETY: F_DUPFD_CLOEXEC only reads `fd`; a closed number fails with EBADF.
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
            if dup < 0 {
                return false;
            }
            // SAFETY: `dup` is a new descriptor that nothing else owns.
            let dup = unsafe { OwnedFd::from_raw_fd(dup) };
            inode(dup.as_raw_fd()) == Some(self.inode) && SockRef::from(&dup).shutdown(how).is_ok()
        })
    }

    /// True while one of its descriptors still refers to it.
    fn is_open(&self) -> bool {
        self.fds.iter().any(|&fd| inode(fd) == Some(self.inode))
    }
}

/// What a look at the connections found wrong with one, with the bound it passed.
struct Verdict {
    socket: Socket,
    shortage: &'static Shortage,
    why: &'static str,
    /// Only reading stops for a body that is late: the front then answers 408 and closes.
    late_body: bool,
}

/// The client connections of one listening port.
pub struct Connections {
    port: u16,
    /// Where this server can reach itself (a wildcard listen address, on loopback).
    probe_to: SocketAddr,
    budgets: Budgets,
    peers: Mutex<HashMap<SocketAddr, Peer>>,
    /// New connections are being held back in the kernel.
    gated: AtomicBool,
    /// Set, and `nudge` notified, when the gate sees the number of descriptors change.
    nudged: Mutex<bool>,
    nudge: Condvar,
}

impl Connections {
    pub fn new(listen: SocketAddr, budgets: Budgets) -> Connections {
        let mut probe_to = listen;
        if listen.ip().is_unspecified() {
            probe_to.set_ip(match listen {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        Connections {
            port: listen.port(),
            probe_to,
            budgets,
            peers: Mutex::new(HashMap::new()),
            gated: AtomicBool::new(false),
            nudged: Mutex::new(false),
            nudge: Condvar::new(),
        }
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<SocketAddr, Peer>> {
        lock(&self.peers)
    }

    /// Takes a request just received. Returns it if it is to run now; otherwise it waits behind
    /// the running request of its connection, or is dropped unanswered because the server has
    /// closed that connection. tiny_http answers a connection's requests in order anyway, so
    /// running two side by side would only park a thread until its turn to write.
    pub fn admit(&self, request: Request) -> Option<Request> {
        let Some(&addr) = request.remote_addr() else {
            return Some(request);
        };
        let mut peers = self.peers();
        let peer = peers.entry(addr).or_insert_with(Peer::new);
        if let Some(closed) = &peer.closed {
            if closed.is_open() {
                drop(peers);
                // Its socket is shut both ways: dropping it sends nothing.
                drop(request);
                return None;
            }
            // That socket has gone, so this is a new connection from the same address.
            *peer = Peer::new();
        }
        peer.progress += 1;
        if !peer.busy {
            peer.busy = true;
            return Some(request);
        }
        if peer.waiting.len() < PIPELINED {
            peer.waiting.push_back(request);
            return None;
        }
        drop(peers);
        PIPELINED_REQUESTS.hit(format_args!(
            "{addr} sent more than {PIPELINED} requests without reading the answers; closing it"
        ));
        self.close(addr, None);
        drop(request);
        None
    }

    /// Notes `addr` as a client, as a request from it would.
    #[cfg(test)]
    fn admit_peer(&self, addr: SocketAddr) {
        self.peers().entry(addr).or_insert_with(Peer::new);
    }

    /// Called when the running request of `addr` is done: the next one waiting, if any.
    pub fn next(&self, addr: SocketAddr) -> Option<Request> {
        let mut peers = self.peers();
        let peer = peers.get_mut(&addr)?;
        peer.body_since = None;
        if peer.closed.is_none()
            && let Some(request) = peer.waiting.pop_front()
        {
            return Some(request);
        }
        peer.busy = false;
        peer.idle_since = Instant::now();
        None
    }

    /// True once a look has found the socket of `addr` (see [`Self::has_room`]).
    pub fn known(&self, addr: SocketAddr) -> bool {
        self.peers().get(&addr).is_some_and(|p| p.socket.is_some())
    }

    /// Whether the socket of `addr` has room for a short answer, so that writing one does not
    /// block: its send queue holds less than a quarter of its buffer (the kernel counts each
    /// segment at about twice its bytes).
    pub fn has_room(&self, addr: SocketAddr) -> bool {
        let Some(socket) = self.peers().get(&addr).and_then(|p| p.socket.clone()) else {
            return false;
        };
        let fd = socket.fds[0];
        let mut queued: libc::c_int = 0;
        // SAFETY: TIOCOUTQ writes one int; `fd` is checked to still be this socket.
        inode(fd) == Some(socket.inode)
            && unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) } == 0
            && (queued.max(0) as usize) < socket.send_buffer / 4
    }

    /// Marks the start (`true`) and end of reading the running request's body.
    pub fn reading_body(&self, addr: Option<SocketAddr>, reading: bool) {
        let Some(addr) = addr else { return };
        if let Some(peer) = self.peers().get_mut(&addr) {
            peer.body_since = reading.then(Instant::now);
            peer.progress += 1;
        }
    }

    /// Stops reading from the connection of `addr` (so tiny_http reads nothing more from it as a
    /// request) while its answer can still be written. Returns its socket for [`Self::close`].
    pub fn stop_reading(&self, addr: Option<SocketAddr>) -> Option<Socket> {
        let socket = self.find(addr?)?;
        socket.shutdown(Shutdown::Read);
        Some(socket)
    }

    /// Shuts the connection of `addr` down both ways, then drops the requests that waited
    /// behind the running one: only now, because dropping a tiny_http request answers it (500)
    /// on a connection that is still open.
    pub fn close(&self, addr: SocketAddr, socket: Option<Socket>) {
        let socket = socket.or_else(|| self.find(addr));
        if let Some(socket) = &socket {
            socket.shutdown(Shutdown::Both);
        }
        let waiting = {
            let mut peers = self.peers();
            let peer = peers.entry(addr).or_insert_with(Peer::new);
            peer.closed = socket;
            std::mem::take(&mut peer.waiting)
        };
        drop(waiting);
    }

    /// The socket whose client is `addr`, looked up in /proc/self/fd.
    fn find(&self, addr: SocketAddr) -> Option<Socket> {
        scan(self.port).into_iter().find(|s| s.peer == addr)
    }

    /// Starts the two threads that watch the connections until the process stops.
    pub fn watch(self: &Arc<Self>, lifecycle: &Arc<Lifecycle>, listener: RawFd) -> io::Result<()> {
        let (connections, lifecycle_) = (self.clone(), lifecycle.clone());
        thread::Builder::new()
            .name("gate".into())
            .stack_size(64 * 1024)
            .spawn(move || connections.gate(&lifecycle_, listener))?;
        let (connections, lifecycle) = (self.clone(), lifecycle.clone());
        thread::Builder::new()
            .name("connections".into())
            .stack_size(128 * 1024)
            .spawn(move || connections.look_each_period(&lifecycle))?;
        Ok(())
    }

    /// Counts descriptors each [`CHECK`]: tiny_http accepts connections (two descriptors and a
    /// thread each) as fast as clients make them, faster than they can be looked at, so from an
    /// eighth over the budget new connections wait in the kernel (their clients retry the
    /// handshake, after a second at first) until the looks have closed enough of them. Also
    /// stops the process (status 1) when tiny_http's accept loop has died: its thread then has
    /// dropped the listening socket, so `listener` is no longer that socket.
    fn gate(&self, lifecycle: &Lifecycle, listener: RawFd) {
        let listening = inode(listener);
        let budget = self.budgets.connections;
        // Descriptors of the process's own (data file, listener, logs) before any connection.
        let own = open_files();
        let (shut_at, open_at) = (own + 2 * (budget + budget / 8), own + 2 * budget);
        let (mut shut, mut last) = (false, own);
        while !lifecycle.is_stopping() {
            // Near the budget every few milliseconds; with few connections less often.
            thread::sleep(if last > own + budget {
                CHECK
            } else {
                CALM_CHECK
            });
            if inode(listener) != listening {
                log::error!(
                    "tiny_http's accept loop died and closed the listening socket; exiting so the pod restarts"
                );
                lifecycle.stop(1);
                return;
            }
            let files = open_files();
            if files != last {
                // New connections may be queued by tiny_http's pool: look at them now.
                last = files;
                *lock(&self.nudged) = true;
                self.nudge.notify_one();
            }
            if files >= shut_at && !shut || files < open_at && shut {
                // SAFETY: borrowed for one call; `listener` was checked to be the listening
                // socket just above.
                let borrowed = unsafe { BorrowedFd::borrow_raw(listener) };
                let listener = SockRef::from(&borrowed);
                let done = if shut {
                    listener.detach_filter()
                } else {
                    listener.attach_filter(&SYN_GATE)
                };
                match done {
                    Ok(()) => shut = !shut,
                    Err(e) => log::warn!("cannot hold back new connections: {e}"),
                }
                self.gated.store(shut, Ordering::Release);
            }
            if shut {
                CONNECTIONS.hit(format_args!(
                    "{files} descriptors open, budget {budget} connections; new ones wait until there is room"
                ));
            }
        }
    }

    /// Looks at every connection and closes those past a bound: each [`PERIOD`] while one is
    /// changing (new, queued, sending a head or a body, being closed), otherwise each
    /// [`CALM_PERIOD`] or when the gate sees the number of descriptors change.
    fn look_each_period(&self, lifecycle: &Lifecycle) {
        let mut seen = HashMap::new();
        while !lifecycle.is_stopping() {
            let started = Instant::now();
            let look = self.look(&mut seen);
            let cost = started.elapsed();
            let eager = look.eager || !look.verdicts.is_empty();
            for v in look.verdicts {
                v.shortage
                    .hit(format_args!("{}: {}; closing it", v.socket.peer, v.why));
                if v.late_body {
                    v.socket.shutdown(Shutdown::Read);
                } else {
                    self.close(v.socket.peer, Some(v.socket));
                }
            }
            // A probe's own connection would wait at the gate.
            let probes = if self.gated.load(Ordering::Acquire) {
                0
            } else {
                look.queued.min(MAX_PROBES)
            };
            for _ in 0..probes {
                if !probe(self.probe_to) {
                    break;
                }
            }
            for shortage in budgets::ALL {
                shortage.tick();
            }
            // A look costs a few system calls per connection: with many connections, look less
            // often, so that looking never takes more than a twentieth of the time.
            let pause = if eager { PERIOD } else { CALM_PERIOD };
            let mut nudged = lock(&self.nudged);
            if !*nudged {
                nudged = wait_timeout(&self.nudge, nudged, pause).0;
            }
            *nudged = false;
            drop(nudged);
            thread::sleep(PERIOD.max(cost * 20).saturating_sub(started.elapsed()));
        }
    }

    /// One look at every connection: those past a bound, and how many tiny_http has queued.
    fn look(&self, seen: &mut HashMap<u64, Seen>) -> Look {
        let sockets = scan(self.port);
        let now = Instant::now();
        let mut verdicts = Vec::new();
        let (mut queued, mut eager) = (0, false);
        let mut open = 0usize;
        let mut idlest = Vec::new();
        let mut peers = self.peers();
        let addrs: HashSet<SocketAddr> = sockets.iter().map(|s| s.peer).collect();
        let inodes: HashSet<u64> = sockets.iter().map(|s| s.inode).collect();
        peers.retain(|addr, peer| {
            peer.busy
                || match &peer.closed {
                    Some(closed) => inodes.contains(&closed.inode),
                    None => addrs.contains(addr),
                }
        });
        seen.retain(|inode, _| inodes.contains(inode));
        for socket in sockets {
            if let Some(peer) = peers.get_mut(&socket.peer) {
                peer.socket = Some(socket.clone());
            }
            let peer = peers.get(&socket.peer);
            if peer.is_some_and(|p| p.closed.is_some()) {
                continue; // shut down already, on its way out
            }
            open += 1;
            let (busy, progress, body_since, idle_since) = peer
                .map_or((false, 0, None, now - socket.quiet), |p| {
                    (p.busy, p.progress, p.body_since, p.idle_since)
                });
            let s = seen.entry(socket.inode).or_insert(Seen {
                progress,
                base: socket.consumed,
                head_since: None,
            });
            // What tiny_http has read since the last request arrived or the last body was read
            // is the head of the next request, still being parsed.
            if s.progress != progress || body_since.is_some() {
                *s = Seen {
                    progress,
                    base: socket.consumed,
                    head_since: None,
                };
            }
            let head = socket.consumed.saturating_sub(s.base);
            if head > 0 {
                s.head_since.get_or_insert(now);
            }
            let b = &self.budgets;
            let late_body = body_since.is_some_and(|t| now - t > b.body_timeout);
            let why = if late_body {
                Some((&BODY_TIME, "its request body did not arrive in time"))
            } else if head > HEAD_BYTES {
                Some((&HEADS, "its request head is over 64 KiB"))
            } else if s.head_since.is_some_and(|t| now - t > b.head_timeout) {
                Some((&HEADS, "its request head did not arrive in time"))
            } else {
                None
            };
            if let Some((shortage, why)) = why {
                verdicts.push(Verdict {
                    socket,
                    shortage,
                    why,
                    late_body,
                });
                continue;
            }
            if socket.consumed == 0 && socket.unread > 0 && socket.quiet > QUEUED_AFTER {
                queued += 1;
            }
            // Bytes on their way in, or a connection made a moment ago: look again soon.
            eager |= head > 0
                || body_since.is_some()
                || socket.unread > 0
                || socket.quiet < MAKE_ROOM_AFTER;
            if !busy && head == 0 && socket.unread == 0 {
                let idle = socket.quiet.min(now - idle_since);
                if idle > self.budgets.idle_timeout {
                    log::debug!("closing {}: idle for {} s", socket.peer, idle.as_secs());
                    socket.shutdown(Shutdown::Both);
                    open -= 1;
                    continue;
                }
                // One that has just connected gets the time to send its request.
                if idle > MAKE_ROOM_AFTER {
                    idlest.push((idle, socket));
                }
            }
        }
        drop(peers);
        // At the budget, the idlest connections make room for new ones (a sixteenth of the
        // budget), as nginx does when it runs out of connections; until then the gate holds new
        // ones back.
        let budget = self.budgets.connections;
        open -= verdicts.len();
        let excess = (open + budget / 16).saturating_sub(budget);
        if open >= budget {
            idlest.sort_by_key(|(idle, _)| std::cmp::Reverse(*idle));
            for (_, socket) in idlest.into_iter().take(excess) {
                verdicts.push(Verdict {
                    socket,
                    shortage: &CONNECTIONS,
                    why: "the idlest connection, closed to make room for new ones",
                    late_body: false,
                });
            }
        }
        Look {
            verdicts,
            queued,
            eager,
        }
    }
}

/// What one look found.
struct Look {
    /// Connections past a bound, to be closed.
    verdicts: Vec<Verdict>,
    /// Connections tiny_http has queued instead of giving them a thread.
    queued: usize,
    /// A connection is changing: look again soon.
    eager: bool,
}

/// A filter for the listening socket that drops segments with SYN set and ACK not: requests for
/// new connections. A filter on a TCP socket sees the TCP header first; byte 13 holds the flags.
const SYN_GATE: [SockFilter; 5] = [
    SockFilter::new(
        (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16,
        0,
        0,
        13,
    ),
    SockFilter::new(
        (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16,
        1,
        0,
        0x10,
    ),
    SockFilter::new(
        (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16,
        1,
        0,
        0x02,
    ),
    SockFilter::new((libc::BPF_RET | libc::BPF_K) as u16, 0, 0, u32::MAX),
    SockFilter::new((libc::BPF_RET | libc::BPF_K) as u16, 0, 0, 0),
];

/// What the watch remembers of one socket between looks.
struct Seen {
    /// [`Peer::progress`] at the last look.
    progress: u64,
    /// Bytes read from it when that progress was first seen.
    base: u64,
    /// When the current request head was first seen to have begun.
    head_since: Option<Instant>,
}

/// Descriptors the process has open.
fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Asks this server for `/healthz` on a connection of its own, without waiting for the answer:
/// what matters is that tiny_http accepts it. False if it could not connect.
fn probe(to: SocketAddr) -> bool {
    TcpStream::connect_timeout(&to, PROBE_WAIT)
        .and_then(|mut stream| stream.write_all(b"GET /healthz HTTP/1.0\r\n\r\n"))
        .is_ok()
}

/// The client connections of `port`: every socket descriptor of this process whose local port
/// is `port` and that has a peer (the listening socket has none).
fn scan(port: u16) -> Vec<Socket> {
    let mut sockets: HashMap<u64, Option<Socket>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    for entry in dir.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Some(inode) = inode(fd) else { continue };
        match sockets.get_mut(&inode) {
            Some(Some(known)) => known.fds.push(fd),
            Some(None) => {} // a socket that is not a connection of `port`
            None => {
                sockets.insert(inode, socket(fd, inode, port));
            }
        }
    }
    sockets.into_values().flatten().collect()
}

/// The socket of descriptor `fd`, if it is a connection to `port`.
fn socket(fd: RawFd, inode: u64, port: u16) -> Option<Socket> {
    // SAFETY: the descriptor is only borrowed for these calls. If it was closed and its number
    // reused meanwhile, the answers describe another socket, which `Socket::shutdown` rechecks.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let sock = SockRef::from(&borrowed);
    if sock.local_addr().ok()?.as_socket()?.port() != port {
        return None;
    }
    let peer = sock.peer_addr().ok()?.as_socket()?;
    let send_buffer = sock.send_buffer_size().ok()?;
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`, which is zeroed beforehand.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: zeroed, then filled by the kernel: every field is a plain integer.
    let info = unsafe { info.assume_init() };
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread) } != 0 {
        return None;
    }
    let unread = unread.max(0) as u64;
    Some(Socket {
        inode,
        fds: vec![fd],
        peer,
        quiet: Duration::from_millis(info.tcpi_last_data_recv.into()),
        consumed: info.tcpi_bytes_received.saturating_sub(unread),
        unread,
        send_buffer,
    })
}

/// The inode of `fd` if it is a socket.
fn inode(fd: RawFd) -> Option<u64> {
    let mut stat = MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: fstat writes one `struct stat`; a closed descriptor fails with EBADF.
    if unsafe { libc::fstat(fd, stat.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: filled by fstat.
    let stat = unsafe { stat.assume_init() };
    (stat.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some(stat.st_ino)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn a_scan_finds_each_connection_once_with_what_it_has_read() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (served, _) = listener.accept().unwrap();
        // As tiny_http does: a second descriptor of the same socket.
        let twin = served.try_clone().unwrap();
        client.write_all(b"12345").unwrap();
        let mut read = [0u8; 2];
        (&served).read_exact(&mut read).unwrap();
        thread::sleep(Duration::from_millis(20));
        let found = scan(port);
        assert_eq!(
            found.len(),
            1,
            "the listener and the client side are not connections"
        );
        let socket = &found[0];
        assert_eq!(socket.peer, client.local_addr().unwrap());
        assert_eq!(socket.fds.len(), 2);
        assert_eq!((socket.consumed, socket.unread), (2, 3));
        drop(twin);
    }

    #[test]
    fn shutdown_acts_only_on_the_socket_that_was_seen() {
        use std::os::fd::IntoRawFd;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _first = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let number = listener.accept().unwrap().0.into_raw_fd();
        let seen = scan(port).pop().unwrap();
        assert_eq!(seen.fds, [number]);
        // That connection ends and its descriptor number goes to another connection.
        let mut second = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (other, _) = listener.accept().unwrap();
        // SAFETY: `number` is ours (from `into_raw_fd`); dup2 closes what it referred to.
        assert_eq!(unsafe { libc::dup2(other.as_raw_fd(), number) }, number);
        // SAFETY: as above; dropping it closes the duplicate.
        let reused = unsafe { OwnedFd::from_raw_fd(number) };
        assert!(!seen.is_open());
        assert!(!seen.shutdown(Shutdown::Both), "another socket now");
        second.write_all(b"still open").unwrap();
        let mut buf = [0u8; 10];
        (&other).read_exact(&mut buf).unwrap();
        drop(reused);
        let now = scan(port).pop().unwrap();
        assert!(now.is_open() && now.shutdown(Shutdown::Both));
        assert_eq!((&other).read(&mut buf).unwrap(), 0, "shut down");
    }

    #[test]
    fn a_socket_whose_client_does_not_read_has_no_room_for_an_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).unwrap();
        let (mut served, peer) = listener.accept().unwrap();
        let connections = Connections::new(addr, Budgets::new(&test_config(), 1 << 20));
        assert!(!connections.has_room(peer), "no look has found it yet");
        connections.admit_peer(peer);
        connections.look(&mut HashMap::new());
        assert!(connections.known(peer) && connections.has_room(peer));
        // The client reads nothing while the server writes until its buffers are full.
        served.set_nonblocking(true).unwrap();
        while served.write(&[0u8; 65536]).is_ok() {}
        assert!(!connections.has_room(peer));
        drop(client);
    }

    fn test_config() -> crate::config::Config {
        crate::config::Config::from_lookup(|_| None).unwrap()
    }

    #[test]
    fn the_syn_gate_holds_new_connections_back_and_lets_existing_ones_talk() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut before = TcpStream::connect(addr).unwrap();
        let (served, _) = listener.accept().unwrap();
        let sock = SockRef::from(&listener);
        sock.attach_filter(&SYN_GATE).unwrap();
        let held = TcpStream::connect_timeout(&addr, Duration::from_millis(300));
        assert!(held.is_err(), "a new connection got through the gate");
        before.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        (&served).read_exact(&mut buf).unwrap();
        sock.detach_filter().unwrap();
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    }
}
