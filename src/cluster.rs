//! `/cluster`: every peer's data, fetched from each peer's `/data` in parallel, each within its
//! own timeout, as Kubernetes in Action's `kubia-pet-peers` does.
//!
//! Peers are the SRV records of the same lookup as `/get`, asked at the port each record gives.
//! Only `/data` is ever asked, so a `/cluster` never fans out further. Fetches run on threads of
//! their own, at most [`MAX_FETCHES`] at once across all requests, so a dead or slow peer costs
//! its own timeout and nothing else, and never touches the writing of data.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::dns::{Resolver, Srv};
use crate::routes::Reply;

/// How much of each peer's data is shown: its last 4 KiB, so a large file cannot bloat the page.
pub const SHOWN_BYTES: usize = 4096;
/// Peer fetches running at once, over all `/cluster` requests.
pub const MAX_FETCHES: usize = 64;
/// Largest response header accepted from a peer.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The `/cluster` page, or 503 if the lookup fails.
pub fn cluster(
    resolver: &Arc<Resolver>,
    service: &str,
    hostname: &str,
    peer_timeout: Duration,
) -> Reply {
    let answer = match resolver.lookup_srv(service) {
        Ok(answer) => answer,
        Err(e) => {
            log::warn!("{e}");
            return Reply::error(503, e);
        }
    };
    let results = fetch_all(resolver, &answer.records, peer_timeout);
    let mut page = format!("You've hit {hostname}\nData stored in the cluster:\n").into_bytes();
    for (record, result) in answer.records.iter().zip(results) {
        page.extend_from_slice(format!("- {}: ", record.target).as_bytes());
        match result {
            Ok(data) => page.extend_from_slice(&data.shown()),
            Err(e) => page.extend_from_slice(format!("error: {e}").as_bytes()),
        }
        page.push(b'\n');
    }
    Reply::text(200, page)
}

/// The tail of a peer's data and its full length.
#[derive(Debug, PartialEq, Eq)]
pub struct PeerData {
    pub total: u64,
    pub tail: Vec<u8>,
}

impl PeerData {
    /// The data as shown on the page: whole, or its tail with the cap said in front.
    fn shown(&self) -> Vec<u8> {
        if self.total as usize <= self.tail.len() {
            return self.tail.clone();
        }
        let mut out = format!("(last {} of {} bytes) ", self.tail.len(), self.total).into_bytes();
        out.extend_from_slice(&self.tail);
        out
    }
}

/// Fetches every peer at once (within [`MAX_FETCHES`]); each result is in by its deadline.
fn fetch_all(
    resolver: &Arc<Resolver>,
    peers: &[Srv],
    timeout: Duration,
) -> Vec<Result<PeerData, String>> {
    let (tx, rx) = mpsc::channel();
    for (i, peer) in peers.iter().enumerate() {
        let (peer_tx, resolver, target, port) =
            (tx.clone(), resolver.clone(), peer.target.clone(), peer.port);
        FETCHES.acquire();
        // Each peer's clock starts when its fetch can start, so waiting for a slot costs no peer its time.
        let deadline = Instant::now() + timeout;
        let spawned = thread::Builder::new()
            .name("peer".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let result = fetch(&resolver, &target, port, deadline);
                FETCHES.release();
                // The page may have been sent already if this peer was too slow; nobody listens then.
                let _ = peer_tx.send((i, result));
            });
        if let Err(e) = spawned {
            FETCHES.release();
            let _ = tx.send((i, Err(format!("cannot start a fetch: {e}")))); // rx is alive here
        }
    }
    drop(tx);
    let mut results: Vec<Option<Result<PeerData, String>>> = peers.iter().map(|_| None).collect();
    // Every fetch gives up by its own deadline; this bound only guards against a stuck thread.
    let give_up =
        Instant::now() + timeout * (peers.len() as u32 / MAX_FETCHES as u32 + 1) + timeout;
    while let Some(wait) = give_up.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(wait) {
            Ok((i, result)) => results[i] = Some(result),
            Err(_) => break, // all answered (disconnected) or out of time
        }
    }
    let late = format!("timed out after {} ms", timeout.as_millis());
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(late.clone())))
        .collect()
}

/// A counting semaphore: std has none.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

static FETCHES: Slots = Slots {
    free: Mutex::new(MAX_FETCHES),
    freed: Condvar::new(),
};

impl Slots {
    fn acquire(&self) {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
    }

    fn release(&self) {
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.freed.notify_one();
    }
}

/// GET `/data` from one peer, all of it within `deadline`.
pub fn fetch(
    resolver: &Resolver,
    target: &str,
    port: u16,
    deadline: Instant,
) -> Result<PeerData, String> {
    let timed_out = || "timed out".to_string();
    let addrs = resolver.lookup_ipv4(target).map_err(|e| e.to_string())?;
    let ip = *addrs
        .first()
        .ok_or_else(|| format!("lookup {target}: no IPv4 address"))?;
    let addr = SocketAddr::from((ip, port));
    let remaining = |deadline: Instant| {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    };
    let mut stream = TcpStream::connect_timeout(&addr, remaining(deadline).ok_or_else(timed_out)?)
        .map_err(|e| describe(addr, e))?;
    // HTTP/1.0 so the peer answers with a Content-Length (tiny_http only chunks for 1.1) and closes.
    let host = target.trim_end_matches('.');
    let request =
        format!("GET /data HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: hello-stateful\r\n\r\n");
    stream
        .set_write_timeout(remaining(deadline))
        .map_err(|e| describe(addr, e))?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| describe(addr, e))?;
    let mut reader = DeadlineReader {
        stream,
        deadline,
        addr,
    };
    read_response(&mut reader)
}

/// Reads a socket, never past the deadline.
struct DeadlineReader {
    stream: TcpStream,
    deadline: Instant,
    addr: SocketAddr,
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self
            .deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero());
        let left = left.ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?;
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

fn describe(addr: SocketAddr, e: io::Error) -> String {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => format!("{addr}: timed out"),
        _ => format!("{addr}: {e}"),
    }
}

/// Parses a peer's response: status 200, then the body, keeping only its last [`SHOWN_BYTES`].
fn read_response(reader: &mut DeadlineReader) -> Result<PeerData, String> {
    let addr = reader.addr;
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    let (header_end, mut rest) = loop {
        let n = reader.read(&mut buf).map_err(|e| describe(addr, e))?;
        if n == 0 {
            return Err(format!("{addr}: connection closed before a response"));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = head.split_off(end + 4);
            break (end, rest);
        }
        if head.len() > MAX_HEADER_BYTES {
            return Err(format!("{addr}: response header too large"));
        }
    };
    let head = String::from_utf8_lossy(&head[..header_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).unwrap_or_default();
    if status != "200" {
        return Err(format!("{addr}: answered {}", status_line.trim()));
    }
    let length: Option<u64> = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok());
    let mut data = PeerData {
        total: 0,
        tail: Vec::new(),
    };
    loop {
        keep_tail(&mut data, &rest);
        if length.is_some_and(|len| data.total >= len) {
            break;
        }
        let n = reader.read(&mut buf).map_err(|e| describe(addr, e))?;
        if n == 0 {
            break;
        }
        rest = buf[..n].to_vec();
    }
    match length {
        Some(len) if data.total < len => Err(format!(
            "{addr}: data ended after {} of {len} bytes",
            data.total
        )),
        _ => Ok(data),
    }
}

fn keep_tail(data: &mut PeerData, chunk: &[u8]) {
    data.total += chunk.len() as u64;
    data.tail.extend_from_slice(chunk);
    if data.tail.len() > SHOWN_BYTES {
        data.tail.drain(..data.tail.len() - SHOWN_BYTES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_data_is_shown_whole() {
        let data = PeerData {
            total: 3,
            tail: b"abc".to_vec(),
        };
        assert_eq!(data.shown(), b"abc");
    }

    #[test]
    fn large_data_shows_its_tail_and_the_cap() {
        let mut data = PeerData {
            total: 0,
            tail: Vec::new(),
        };
        keep_tail(&mut data, &vec![b'a'; 5000]);
        keep_tail(&mut data, b"END");
        assert_eq!(data.total, 5003);
        assert_eq!(data.tail.len(), SHOWN_BYTES);
        assert!(data.tail.ends_with(b"aEND"));
        assert!(data.shown().starts_with(b"(last 4096 of 5003 bytes) aaa"));
    }
}
