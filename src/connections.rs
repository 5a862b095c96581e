//! Connections: what the server knows of each client connection, and the bounds on them.
//!
//! tiny_http 0.12 gives every accepted connection a thread that reads request heads for as long
//! as the client sends them (`src/lib.rs`, the accept loop; `src/client.rs`): it sets no
//! timeout, and bounds neither the number of connections, nor the size of a head, nor how many
//! requests it parses ahead. Its sockets are still this process's descriptors, so the watch
//! ([`Connections::watch`]) finds them in /proc/self/fd, reads each one's state from the kernel
//! (`TCP_INFO`, `FIONREAD`), and shuts down those past a bound: tiny_http's thread for it then
//! reads end of file and ends.
//!
//! The front knows a connection by its client's address: while a request of it is alive the
//! request holds the socket open, so the address names one socket. What the front knows of
//! each ([`Peer`]) lives here and nowhere else.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{SockFilter, SockRef};
use tiny_http::Request;

use crate::budgets::{
    self, BODY_TIME, Budgets, CONNECTIONS, HEAD_BYTES, HEADS, PARKED, PIPELINED, PIPELINED_REQUESTS,
};
use crate::lifecycle::Lifecycle;
use crate::sync::lock;

/// How often the watch counts descriptors, to hold new connections back in time: often with
/// more than half the budget open, less often below.
const CHECK: Duration = Duration::from_millis(5);
const CALM_CHECK: Duration = Duration::from_millis(20);
/// Time between two looks at every connection while one is changing, and when none is.
const PERIOD: Duration = Duration::from_millis(10);
const CALM_PERIOD: Duration = Duration::from_millis(250);
/// Bytes waiting this long on a connection tiny_http has never read from mean it is queued.
const QUEUED_AFTER: Duration = Duration::from_millis(2);
/// At the connection budget, connections idle this long make room for new ones; a newer one
/// gets the time to send its first request.
const MAKE_ROOM_AFTER: Duration = Duration::from_secs(1);
/// Probes sent in one look at most.
const MAX_PROBES: usize = 64;

/// What the front knows of one connection, by its client's address.
struct Peer {
    /// A request of it is running; those received meanwhile wait here, in order.
    busy: bool,
    waiting: VecDeque<Request>,
    /// Counts requests received and bodies read: what the socket has read since it last changed
    /// is the head of the next request.
    progress: u64,
    /// When the server began to read the running request's body.
    body_since: Option<Instant>,
    /// When its last request was done.
    idle_since: Instant,
    /// Set once the server has closed it: what tiny_http still hands over from it is discarded
    /// while its socket is open.
    closed: bool,
    /// Its socket, as the last look (or the close) found it.
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
            closed: false,
            socket: None,
        }
    }
}

/// The client connections of one listening port.
pub struct Connections {
    port: u16,
    /// Where this server can reach itself (a wildcard listen address, on loopback).
    probe_to: SocketAddr,
    budgets: Budgets,
    lifecycle: Arc<Lifecycle>,
    peers: Mutex<HashMap<SocketAddr, Peer>>,
}

impl Connections {
    pub fn new(listen: SocketAddr, budgets: Budgets, lifecycle: Arc<Lifecycle>) -> Connections {
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
            lifecycle,
            peers: Mutex::new(HashMap::new()),
        }
    }

    fn peers(&self) -> MutexGuard<'_, HashMap<SocketAddr, Peer>> {
        lock(&self.peers)
    }

    /// Takes a request just received, in the order tiny_http hands them out. Returns it if it
    /// is to run now; otherwise it waits behind the running request of its connection, or is
    /// discarded because the server has closed that connection. tiny_http writes a
    /// connection's answers in order (`util/sequential.rs`), so a later request run beside an
    /// earlier one would only hold its thread until the earlier one is answered.
    pub fn admit(&self, request: Request) -> Option<Request> {
        let Some(&addr) = request.remote_addr() else {
            return Some(request);
        };
        let mut peers = self.peers();
        let peer = peers.entry(addr).or_insert_with(Peer::new);
        if peer.closed {
            if peer.socket.as_ref().is_none_or(Socket::is_open) {
                drop(peers);
                self.discard(request);
                return None;
            }
            // That socket has gone: this is a new connection from the same address.
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
        self.discard(request);
        self.close(Some(addr), None);
        None
    }

    /// Called when the running request of `addr` is done: the next one waiting, if any.
    pub fn next(&self, addr: SocketAddr) -> Option<Request> {
        let mut peers = self.peers();
        let peer = peers.get_mut(&addr)?;
        peer.body_since = None;
        if let Some(request) = peer.waiting.pop_front() {
            return Some(request);
        }
        peer.busy = false;
        peer.idle_since = Instant::now();
        None
    }

    /// Whether a short answer to `addr` can be written without waiting: its socket is known
    /// and less than a quarter of its send buffer is queued (the kernel counts each segment at
    /// about twice its bytes).
    pub fn has_room(&self, addr: SocketAddr) -> bool {
        let Some(socket) = self.peers().get(&addr).and_then(|p| p.socket.clone()) else {
            return false;
        };
        let (fd, mut queued) = (socket.fds[0], 0);
        // SAFETY: borrowed for the calls, which only read; `fd` is checked to be the socket.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let sock = SockRef::from(&borrowed);
        inode(fd) == Some(socket.inode)
            // SAFETY: TIOCOUTQ writes one int.
            && unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) } == 0
            && sock.send_buffer_size().is_ok_and(|size| (queued.max(0) as usize) < size / 4)
    }

    /// Marks the start (`true`) and the end of reading the running request's body.
    pub fn reading_body(&self, addr: Option<SocketAddr>, reading: bool) {
        let Some(addr) = addr else { return };
        if let Some(peer) = self.peers().get_mut(&addr) {
            peer.body_since = reading.then(Instant::now);
            peer.progress += 1;
        }
    }

    /// Stops reading from the connection of `addr`: its socket then reads what the kernel
    /// holds and then end of file instead of waiting, so tiny_http's drain of an unread body
    /// ends at once. Returns the socket, for [`Self::close`].
    pub fn stop_reading(&self, addr: Option<SocketAddr>) -> Option<Socket> {
        let socket = self.find(addr?)?;
        socket.shutdown(Shutdown::Read);
        Some(socket)
    }

    /// Shuts the connection of `addr` down both ways and discards the requests that waited
    /// behind its running one; those tiny_http still hands over from it are discarded too.
    pub fn close(&self, addr: Option<SocketAddr>, socket: Option<Socket>) {
        let Some(addr) = addr else { return };
        let socket = socket.or_else(|| self.find(addr));
        if let Some(socket) = &socket {
            socket.shutdown(Shutdown::Both);
        }
        let waiting = {
            let mut peers = self.peers();
            let peer = peers.entry(addr).or_insert_with(Peer::new);
            (peer.closed, peer.socket) = (true, socket);
            std::mem::take(&mut peer.waiting)
        };
        waiting
            .into_iter()
            .for_each(|request| self.discard(request));
    }

    /// Lets go of a request without answering it (its connection is closed). tiny_http answers
    /// a dropped request with a 500 (`Request`'s `Drop`), which would wait for the answers
    /// before it; its writer alone is dropped instead, which waits for nothing.
    pub fn discard(&self, request: Request) {
        if drainable(&request) {
            drop(request.into_writer());
        } else {
            let what = format!("{} {}", request.method(), request.url());
            self.park(request.remote_addr().copied(), &what, request);
        }
    }

    /// Closes the connection of `addr` and keeps `held` for good: a request whose unread body
    /// tiny_http could never drop, or the stream `Request::upgrade` made of one. tiny_http
    /// drains an unread body into `vec![0; remaining]` (`util/equal_reader.rs`), `remaining`
    /// being the declared length, and a failed allocation aborts the process. Its thread for
    /// that connection then waits for the body reader forever; past the budget of such
    /// connections the process exits, so that the kubelet restarts it with its threads back.
    pub fn park<T>(&self, addr: Option<SocketAddr>, what: &str, held: T) {
        let within = PARKED.take(1);
        let (parked, limit) = (PARKED.used(), PARKED.limit());
        PARKED.hit(format_args!(
            "{what} from {addr:?}: declared body too large to drain; connection parked ({parked} of at most {limit})"
        ));
        self.close(addr, None);
        std::mem::forget(held);
        if !within || parked >= limit {
            log::error!("{parked} connections parked; exiting so the pod restarts");
            self.lifecycle.stop(1);
        }
    }

    /// The socket whose client is `addr`, looked up in /proc/self/fd.
    fn find(&self, addr: SocketAddr) -> Option<Socket> {
        scan(self.port).into_iter().find(|s| s.peer == addr)
    }

    /// Starts the thread that watches the connections until the process stops.
    pub fn watch(self: &Arc<Self>, listener: RawFd) -> io::Result<()> {
        let connections = self.clone();
        thread::Builder::new()
            .name("connections".into())
            .stack_size(128 * 1024)
            .spawn(move || connections.run_watch(listener))?;
        Ok(())
    }

    /// Counts descriptors every [`CHECK`] or [`CALM_CHECK`]: tiny_http accepts connections (a thread and two
    /// descriptors each) as fast as clients make them, so from an eighth over the budget new
    /// ones wait in the kernel (their clients retry the handshake) until looks have closed
    /// enough. Looks at every connection each [`PERIOD`] while one is changing, else each
    /// [`CALM_PERIOD`], and never spends more than a twentieth of the time looking. Stops the
    /// process (status 1) when tiny_http's accept thread has died without a word (a failed
    /// `try_clone` or thread spawn panics it): it then has dropped the listening socket.
    fn run_watch(&self, listener: RawFd) {
        let listening = inode(listener);
        let budget = self.budgets.connections;
        // Descriptors of the process's own (data file, listener, logs) before any connection.
        let own = open_files();
        let (shut_at, open_at) = (own + 2 * (budget + budget / 8), own + 2 * budget);
        let mut seen = HashMap::new();
        let (mut gated, mut eager, mut files, mut files_at_look) = (false, false, own, own);
        let (mut looked, mut cost) = (Instant::now(), Duration::ZERO);
        while !self.lifecycle.is_stopping() {
            thread::sleep(if files > own + budget {
                CHECK
            } else {
                CALM_CHECK
            });
            if inode(listener) != listening {
                log::error!(
                    "tiny_http's accept loop died and closed the listening socket; exiting so the pod restarts"
                );
                self.lifecycle.stop(1);
                return;
            }
            files = open_files();
            if files >= shut_at && !gated || files < open_at && gated {
                // SAFETY: borrowed for one call; `listener` was just checked to be the
                // listening socket.
                let borrowed = unsafe { BorrowedFd::borrow_raw(listener) };
                let listener = SockRef::from(&borrowed);
                let done = if gated {
                    listener.detach_filter()
                } else {
                    listener.attach_filter(&SYN_GATE)
                };
                match done {
                    Ok(()) => gated = !gated,
                    Err(e) => log::warn!("cannot hold back new connections: {e}"),
                }
            }
            if gated {
                CONNECTIONS.hit(format_args!(
                    "{files} descriptors open, budget {budget} connections; new ones wait until there is room"
                ));
            }
            let due = if eager || files != files_at_look {
                PERIOD
            } else {
                CALM_PERIOD
            };
            if looked.elapsed() < due.max(cost * 20) {
                continue;
            }
            looked = Instant::now();
            files_at_look = files;
            let queued;
            (queued, eager) = self.look(&mut seen);
            cost = looked.elapsed();
            // A probe's own connection would wait at the gate.
            for _ in 0..if gated { 0 } else { queued.min(MAX_PROBES) } {
                if !probe(self.probe_to) {
                    break;
                }
            }
            budgets::ALL.iter().for_each(|budget| budget.tick());
        }
    }

    /// One look at every connection: closes those past a bound, and returns how many tiny_http
    /// has queued instead of giving them a thread, and whether one is changing.
    fn look(&self, seen: &mut HashMap<u64, Seen>) -> (usize, bool) {
        let sockets = scan(self.port);
        let now = Instant::now();
        let b = &self.budgets;
        let (mut queued, mut eager, mut open) = (0, false, 0);
        let (mut closing, mut idlest) = (Vec::new(), Vec::new());
        let mut peers = self.peers();
        let addrs: HashSet<SocketAddr> = sockets.iter().map(|s| s.peer).collect();
        let inodes: HashSet<u64> = sockets.iter().map(|s| s.inode).collect();
        // A closed connection's socket may be left out of the scan (it cannot say its peer
        // any more) or be in it though closed since: it is forgotten when it is neither.
        peers.retain(|addr, peer| match (&peer.socket, peer.closed) {
            (Some(socket), true) => inodes.contains(&socket.inode) || socket.is_open(),
            _ => peer.busy || addrs.contains(addr),
        });
        seen.retain(|inode, _| inodes.contains(inode));
        for socket in sockets {
            let peer = peers.get_mut(&socket.peer);
            if peer.as_ref().is_some_and(|p| p.closed) {
                continue; // shut down already, on its way out
            }
            let peer = peer.map(|p| {
                p.socket = Some(socket.clone());
                &*p
            });
            let progress = peer.map_or(0, |p| p.progress);
            let body_since = peer.and_then(|p| p.body_since);
            // All a connection has read before its first request is received is its head.
            let s = seen.entry(socket.inode).or_insert(Seen {
                progress,
                base: if peer.is_some() { socket.consumed } else { 0 },
                head_since: None,
            });
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
            let late = |since: Option<Instant>, bound| since.is_some_and(|t| now - t > bound);
            let verdict = if late(body_since, b.body_timeout) {
                Some((&BODY_TIME, "its request body did not arrive in time"))
            } else if head > HEAD_BYTES {
                Some((&HEADS, "its request head is over 64 KiB"))
            } else if late(s.head_since, b.head_timeout) {
                Some((&HEADS, "its request head did not arrive in time"))
            } else {
                None
            };
            if let Some((shortage, why)) = verdict {
                shortage.hit(format_args!("{}: {why}; closing it", socket.peer));
                closing.push((socket, body_since.is_some()));
                continue;
            }
            if socket.consumed == 0 && socket.unread > 0 && socket.quiet > QUEUED_AFTER {
                queued += 1;
            }
            eager |= head > 0 || body_since.is_some() || socket.unread > 0;
            if peer.is_some_and(|p| p.busy) || head > 0 || socket.unread > 0 {
                open += 1;
                continue;
            }
            let idle = peer.map_or(socket.quiet, |p| socket.quiet.min(now - p.idle_since));
            if idle > b.idle_timeout {
                log::debug!("closing {}: idle for {} s", socket.peer, idle.as_secs());
                closing.push((socket, false));
                continue;
            }
            open += 1;
            if idle > MAKE_ROOM_AFTER {
                idlest.push((idle, socket));
            }
        }
        drop(peers);
        // At the budget, the idlest connections make room for new ones (a sixteenth of the
        // budget), as nginx does when it runs out of connections.
        if open >= b.connections {
            idlest.sort_by_key(|(idle, _)| std::cmp::Reverse(*idle));
            for (_, socket) in idlest
                .into_iter()
                .take(open + b.connections / 16 - b.connections)
            {
                CONNECTIONS.hit(format_args!(
                    "{} connections open; closing the idlest, {}, to make room",
                    open, socket.peer
                ));
                closing.push((socket, false));
            }
        }
        CONNECTIONS.set_used(open as u64);
        for (socket, late_body) in closing {
            if late_body {
                // Its handler then reads the body's end early, answers 408 and closes it.
                socket.shutdown(Shutdown::Read);
            } else {
                self.close(Some(socket.peer), Some(socket));
            }
        }
        (queued, eager)
    }
}

/// What the watch remembers of one socket between looks.
struct Seen {
    /// [`Peer::progress`] at the last look.
    progress: u64,
    /// Bytes the socket had read when that progress was first seen.
    base: u64,
    /// When the current request head was first seen to have begun.
    head_since: Option<Instant>,
}

/// True when dropping `request` cannot abort the process: the drain of its unread body (see
/// [`Connections::park`]) can allocate its buffer.
pub fn drainable(request: &Request) -> bool {
    request
        .body_length()
        .is_none_or(|n| Vec::<u8>::new().try_reserve_exact(n).is_ok())
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
}

impl Socket {
    /// True while one of its descriptors still refers to it.
    fn is_open(&self) -> bool {
        self.fds.iter().any(|&fd| inode(fd) == Some(self.inode))
    }

    /// Shuts the connection down in the `how` direction(s) if it is still this socket: on a
    /// duplicate of its descriptor, so the number cannot be reused between check and act.
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
}

/// A filter for the listening socket that drops segments with SYN set and ACK not: requests for
/// new connections. A filter on a TCP socket sees the TCP header first; byte 13 holds the flags.
const SYN_GATE: [SockFilter; 5] = [
    op(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 0, 0, 13), // the flags
    op(libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K, 1, 0, 0x10), // ACK: keep
    op(libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K, 1, 0, 0x02), // SYN without ACK: drop
    op(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX),          // keep all of it
    op(libc::BPF_RET | libc::BPF_K, 0, 0, 0),                 // drop it
];

const fn op(code: u32, jump_true: u8, jump_false: u8, k: u32) -> SockFilter {
    SockFilter::new(code as u16, jump_true, jump_false, k)
}

/// tiny_http's pool (`util/task_pool.rs`, `TaskPool::spawn`) queues a new connection whenever
/// it counts a thread waiting, even one already woken for an earlier connection; in a burst the
/// extra ones wait until some other connection closes, which may be never. A connection made
/// and closed at once starts a thread (none is counted waiting then) that ends at once and
/// takes one of the queued connections. False if it could not connect.
fn probe(to: SocketAddr) -> bool {
    TcpStream::connect_timeout(&to, Duration::from_millis(100)).is_ok()
}

/// The process's descriptors.
fn fds() -> impl Iterator<Item = RawFd> {
    std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
}

/// How many descriptors the process has open.
fn open_files() -> usize {
    fds().count()
}

/// The client connections of `port`: every socket descriptor of this process whose local port
/// is `port` and that has a peer (the listening socket has none).
fn scan(port: u16) -> Vec<Socket> {
    let mut sockets: HashMap<u64, Option<Socket>> = HashMap::new();
    for fd in fds() {
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
    // SAFETY: zeroed, then filled by the kernel: every field is a plain integer.
    let info = (rc == 0).then(|| unsafe { info.assume_init() })?;
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
    use std::io::{Read, Write};
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
        let config = crate::config::Config::from_lookup(|_| None).unwrap();
        let budgets = Budgets::new(&config, 1 << 20);
        let connections = Connections::new(addr, budgets, Arc::new(Lifecycle::default()));
        assert!(!connections.has_room(peer), "no look has found it yet");
        connections.peers().insert(peer, Peer::new());
        connections.look(&mut HashMap::new());
        assert!(connections.has_room(peer));
        // The client reads nothing while the server writes until its buffers are full.
        served.set_nonblocking(true).unwrap();
        while served.write(&[0u8; 65536]).is_ok() {}
        assert!(!connections.has_room(peer));
        drop(client);
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
