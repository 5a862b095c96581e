//! `/cluster`: every peer's data, fetched from each peer's `/data` in parallel, each within its
//! own timeout, as Kubernetes in Action's `kubia-pet-peers` does. What it finds is plain data
//! ([`Peer`]); `routes.rs` renders it.
//!
//! Peers are the SRV records of the same lookup as `/get`, asked at the port each record gives.
//! Each is asked for the tail of its `/data` (`Range: bytes=-4096`), then for its `/info` (who
//! it is, whether its volume changed hands), so a `/cluster` never fans out further, nor reads
//! more than it shows; a peer that ignores the range (an older version) sends all of it, of
//! which the tail is kept as before, and one without `/info` is shown without. Fetches run on threads of
//! their own, at most [`MAX_FETCHES`] at once across all requests, so a dead or slow peer costs
//! its own timeout and nothing else, and never touches the writing of data. A request never
//! waits for a free fetch past its own time bound: a peer it cannot ask in time gets an error
//! instead of its data.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::deadline::{DeadlineStream, is_timeout};
use crate::decimal::parse_decimal;
use crate::dns::{LookupError, Resolver, Srv};
use crate::json::Json;
use crate::metrics::METRICS;
use crate::sync::{lock, wait_timeout};

/// How much of each peer's data is kept: its last 4 KiB, so a large file cannot bloat the page.
pub const SHOWN_BYTES: usize = 4096;
/// Peer fetches running at once, over all `/cluster` requests.
pub const MAX_FETCHES: usize = 64;
/// Largest response header accepted from a peer.
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Largest `/info` accepted from a peer.
const MAX_INFO_BYTES: u64 = 64 * 1024;

/// One peer as `/cluster` found it: its SRV record, its data or why there is none, and what
/// its `/info` says, when it answered one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub record: Srv,
    /// The peer's data, or one line saying why it could not be had.
    pub data: Result<PeerData, String>,
    pub info: Option<Json>,
}

/// The tail of a peer's data and its full length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerData {
    pub total: u64,
    /// The last [`SHOWN_BYTES`] at most: all of it when `tail.len() == total`.
    pub tail: Vec<u8>,
}

/// Looks `service` up as `/get` does and fetches every peer's `/data`: one [`Peer`] per SRV
/// record, in `/get`'s order, or the lookup's error.
pub fn survey(
    resolver: &Arc<Resolver>,
    service: &str,
    peer_timeout: Duration,
) -> Result<Vec<Peer>, LookupError> {
    let answer = resolver.lookup_srv(service)?;
    let results = fetch_all(resolver, &answer.records, peer_timeout, &FETCHES);
    let records = answer.records.iter().cloned();
    Ok(records
        .zip(results)
        .map(|(record, (data, info))| Peer { record, data, info })
        .collect())
}

/// What one fetch brought back: the data (or why not), and the `/info`.
type Fetched = (Result<PeerData, String>, Option<Json>);

/// Fetches every peer at once (within [`MAX_FETCHES`]); each result is in by its deadline.
fn fetch_all(
    resolver: &Arc<Resolver>,
    peers: &[Srv],
    timeout: Duration,
    fetches: &'static Semaphore,
) -> Vec<Fetched> {
    let mut results: Vec<Option<Fetched>> = peers.iter().map(|_| None).collect();
    // Fetches start in waves of at most MAX_FETCHES, and other requests' fetches hold permits
    // too. A peer that gets no permit by the end of the waves its own request needs is
    // reported instead of waited for, so the page never waits more than `waves + 1`
    // timeouts, however busy the server is.
    let waves = peers.len().div_ceil(MAX_FETCHES).max(1) as u32;
    let start_by = Instant::now() + timeout * waves;
    let mut last_deadline = Instant::now();
    let (tx, rx) = mpsc::channel();
    for (i, peer) in peers.iter().enumerate() {
        let Some(permit) = fetches.acquire_until(start_by) else {
            let why = format!("not asked: {MAX_FETCHES} peer fetches already running");
            results[i] = Some((Err(why), None));
            continue;
        };
        // Each peer's clock starts when its fetch can start, so waiting for a permit costs no
        // peer its time.
        let deadline = Instant::now() + timeout;
        last_deadline = deadline;
        let (peer_tx, resolver, target, port) =
            (tx.clone(), resolver.clone(), peer.target.clone(), peer.port);
        let spawned = thread::Builder::new()
            .name("peer".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let result = fetch(&resolver, &target, port, deadline, timeout);
                METRICS.fetch(match &result.0 {
                    Ok(_) => "ok",
                    Err(e) if e.ends_with(&timed_out(timeout)) => "timeout",
                    Err(_) => "error",
                });
                drop(permit);
                // The page may have been sent already if this peer was too slow; nobody listens then.
                let _ = peer_tx.send((i, result));
            });
        // The permit went with the closure, which is dropped when the thread cannot start.
        if let Err(e) = spawned {
            results[i] = Some((Err(format!("cannot start a fetch: {e}")), None));
        }
    }
    drop(tx);
    // Every connection gives up by its deadline, but the address lookup before it is bounded
    // by LOOKUP_TIMEOUT_MS instead: the page waits for no fetch past the last deadline (plus a
    // moment for its result to arrive), and a peer still out then has timed out.
    let give_up = last_deadline + REPORT_GRACE;
    while let Some(wait) = give_up.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(wait) {
            Ok((i, result)) => results[i] = Some(result),
            Err(_) => break, // all answered (disconnected) or out of time
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| (Err(timed_out(timeout)), None)))
        .collect()
}

/// How long after the last fetch's deadline its result may take to reach the page: the fetch
/// thread notices its deadline from a socket timeout and needs a moment to send the result.
const REPORT_GRACE: Duration = Duration::from_millis(100);

/// A counting semaphore: std has none.
struct Semaphore {
    free: Mutex<usize>,
    freed: Condvar,
}

static FETCHES: Semaphore = Semaphore::new(MAX_FETCHES);

impl Semaphore {
    const fn new(permits: usize) -> Semaphore {
        Semaphore {
            free: Mutex::new(permits),
            freed: Condvar::new(),
        }
    }

    /// Takes a permit, waiting for one until `deadline`; None if none came free by then. The
    /// permit is given back when dropped, so a fetch that panics cannot keep it for good.
    fn acquire_until(&self, deadline: Instant) -> Option<Permit<'_>> {
        let mut free = lock(&self.free);
        while *free == 0 {
            let left = deadline.checked_duration_since(Instant::now())?;
            free = wait_timeout(&self.freed, free, left).0;
        }
        *free -= 1;
        Some(Permit(self))
    }
}

/// One taken permit of a [`Semaphore`].
struct Permit<'a>(&'a Semaphore);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *lock(&self.0.free) += 1;
        self.0.freed.notify_one();
    }
}

fn timed_out(timeout: Duration) -> String {
    format!("timed out after {} ms", timeout.as_millis())
}

/// GET `/data`, then `/info`, from one peer, its address looked up through the pod's
/// resolver, all of it by `deadline` (`timeout` is only for the error text).
fn fetch(
    resolver: &Resolver,
    target: &str,
    port: u16,
    deadline: Instant,
    timeout: Duration,
) -> Fetched {
    let addrs = match resolver.lookup_ipv4(target) {
        Ok(addrs) => addrs,
        Err(e) => return (Err(e.to_string()), None),
    };
    let Some(&ip) = addrs.first() else {
        return (Err(format!("lookup {target}: no IPv4 address")), None);
    };
    let addr = SocketAddr::from((ip, port));
    let host = target.trim_end_matches('.');
    let data = get_data(addr, host, deadline)
        .map_err(|why| format!("GET http://{addr}/data: {}", reason(why, timeout)));
    // A peer that could not give its data will not give its /info either.
    let info = data
        .is_ok()
        .then(|| get_info(addr, host, deadline))
        .flatten();
    (data, info)
}

/// GET the tail of `/data` from `addr`, all of it by `deadline`; `host` goes in the `Host`
/// header.
fn get_data(addr: SocketAddr, host: &str, deadline: Instant) -> Result<PeerData, io::Error> {
    let mut stream = DeadlineStream::connect(addr, deadline)?;
    // HTTP/1.0 so the peer answers with a Content-Length (tiny_http only chunks for 1.1) and closes.
    let port = addr.port();
    let request = format!(
        "GET /data HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: hello-stateful\r\n\
         Range: bytes=-{SHOWN_BYTES}\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    read_response(&mut stream)
}

/// GET `/info` from `addr` by `deadline`: a JSON object, or None when the peer has none (an
/// older version), fails or answers something else.
fn get_info(addr: SocketAddr, host: &str, deadline: Instant) -> Option<Json> {
    let mut stream = DeadlineStream::connect(addr, deadline).ok()?;
    let port = addr.port();
    let request =
        format!("GET /info HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: hello-stateful\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let (head, mut body) = read_head(&mut stream).ok()?;
    let length = head
        .field("content-length")
        .and_then(|v| parse_decimal(v).ok())?;
    if head.status() != "200" || length > MAX_INFO_BYTES {
        return None;
    }
    (&mut stream)
        .take(length - body.len().min(length as usize) as u64)
        .read_to_end(&mut body)
        .ok()?;
    body.truncate(length as usize);
    let info = Json::parse(std::str::from_utf8(&body).ok()?).ok()?;
    matches!(info, Json::Object(_)).then_some(info)
}

/// One line saying why a fetch failed: io errors without their `(os error N)` tail, and every
/// kind of timeout worded the same.
fn reason(e: io::Error, timeout: Duration) -> String {
    if is_timeout(&e) {
        return timed_out(timeout);
    }
    let text = e.to_string();
    let text = match text.find(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// A response's status line and header fields.
struct Head {
    status_line: String,
    fields: Vec<(String, String)>,
}

impl Head {
    /// The status code, as text.
    fn status(&self) -> &str {
        self.status_line.split(' ').nth(1).unwrap_or_default()
    }

    fn field(&self, wanted: &str) -> Option<&str> {
        let mut fields = self.fields.iter();
        let found = fields.find(|(name, _)| name.eq_ignore_ascii_case(wanted));
        found.map(|(_, value)| value.as_str())
    }
}

/// Reads a response's head, and returns it with the bytes of the body read along with it.
fn read_head(reader: &mut impl Read) -> io::Result<(Head, Vec<u8>)> {
    let mut head = Vec::new();
    let mut buf = [0u8; 8192];
    let (header_end, rest) = loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Err(invalid("connection closed before a response".into()));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = head.split_off(end + 4);
            break (end, rest);
        }
        if head.len() > MAX_HEADER_BYTES {
            return Err(invalid("response header too large".into()));
        }
    };
    let text = String::from_utf8_lossy(&head[..header_end]);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default().trim().to_string();
    let fields = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    Ok((
        Head {
            status_line,
            fields,
        },
        rest,
    ))
}

/// Parses a peer's response: status 200 with all of the data, or 206 with a part that ends
/// where the data does (its `Content-Range` gives the data's length); then the body, keeping
/// only its last [`SHOWN_BYTES`].
fn read_response(reader: &mut impl Read) -> Result<PeerData, io::Error> {
    let (head, mut rest) = read_head(reader)?;
    let mut buf = [0u8; 8192];
    let status_line = &head.status_line;
    let field = |wanted: &str| head.field(wanted);
    // Where the body starts in the data, and the data's length when the body is a part of it.
    let (first, total) = match head.status() {
        "200" => (0, None),
        "206" => {
            let range = field("content-range").unwrap_or_default();
            let (first, last, total) = content_range(range)
                .ok_or_else(|| invalid(format!("206 with Content-Range {range:?}")))?;
            if last + 1 != total {
                return Err(invalid(format!(
                    "asked for the end of the data, got {range}"
                )));
            }
            (first, Some(total))
        }
        _ => return Err(invalid(format!("answered {status_line}"))),
    };
    let length: Option<u64> = field("content-length").and_then(|v| parse_decimal(v).ok());
    let mut data = PeerData {
        total: first,
        tail: Vec::new(),
    };
    let mut received = 0u64;
    loop {
        // Bytes past the stated length are not the file's: keep none of them.
        let wanted = length.map_or(rest.len(), |len| {
            rest.len()
                .min(usize::try_from(len - received).unwrap_or(usize::MAX))
        });
        keep_tail(&mut data, &rest[..wanted]);
        received += wanted as u64;
        if length.is_some_and(|len| received >= len) {
            break;
        }
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        rest = buf[..n].to_vec();
    }
    match (length, total) {
        (Some(len), _) if received < len => Err(invalid(format!(
            "data ended after {received} of {len} bytes"
        ))),
        (_, Some(total)) if data.total != total => Err(invalid(format!(
            "data ended after {} of {total} bytes",
            data.total
        ))),
        _ => Ok(data),
    }
}

/// `bytes FIRST-LAST/TOTAL` of a 206's Content-Range: the three numbers, the part in order.
fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    let (first, rest) = value.strip_prefix("bytes ")?.split_once('-')?;
    let (last, total) = rest.split_once('/')?;
    let [first, last, total] = [first, last, total].map(|n| parse_decimal(n).ok());
    let (first, last, total) = (first?, last?, total?);
    (first <= last && last < total).then_some((first, last, total))
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
    fn only_the_tail_of_large_data_is_kept() {
        let mut data = PeerData {
            total: 0,
            tail: Vec::new(),
        };
        keep_tail(&mut data, &vec![b'a'; 5000]);
        keep_tail(&mut data, b"END");
        assert_eq!(data.total, 5003);
        assert_eq!(data.tail.len(), SHOWN_BYTES);
        assert!(data.tail.ends_with(b"aEND"));
    }

    fn parse(response: &[u8]) -> Result<PeerData, String> {
        read_response(&mut &response[..]).map_err(|e| e.to_string())
    }

    #[test]
    fn body_is_read_up_to_its_stated_length() {
        let data = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabcEXTRA").unwrap();
        assert_eq!((data.total, &data.tail[..]), (3, &b"abc"[..]));
        // Without a length, the body is whatever comes before the peer closes.
        let data = parse(b"HTTP/1.0 200 OK\r\n\r\nabcd").unwrap();
        assert_eq!((data.total, &data.tail[..]), (4, &b"abcd"[..]));
    }

    #[test]
    fn a_part_is_the_tail_of_data_as_long_as_its_content_range_says() {
        let data = parse(
            b"HTTP/1.0 206 Partial Content\r\nContent-Range: bytes 9996-9999/10000\r\n\
              Content-Length: 4\r\n\r\nwxyz",
        )
        .unwrap();
        assert_eq!((data.total, &data.tail[..]), (10000, &b"wxyz"[..]));
        // A part that is all of the data, and one without a Content-Length.
        let data = parse(b"HTTP/1.0 206 Partial Content\r\nContent-Range: bytes 0-2/3\r\n\r\nabc")
            .unwrap();
        assert_eq!((data.total, &data.tail[..]), (3, &b"abc"[..]));
    }

    #[test]
    fn a_part_that_is_not_the_tail_asked_for_is_an_error() {
        let partial = |range: &str, body: &str| {
            let head = format!("HTTP/1.0 206 Partial Content\r\nContent-Range: {range}\r\n\r\n");
            parse(format!("{head}{body}").as_bytes())
        };
        assert_eq!(
            partial("bytes 0-2/10", "abc"),
            Err("asked for the end of the data, got bytes 0-2/10".into())
        );
        assert_eq!(
            partial("bytes 7-9/10", "ab"),
            Err("data ended after 9 of 10 bytes".into())
        );
        for range in [
            "bytes */10",
            "bytes 3-2/10",
            "bytes 0-9/*",
            "items 0-9/10",
            "",
        ] {
            assert_eq!(
                partial(range, "x"),
                Err(format!("206 with Content-Range {range:?}")),
                "{range}"
            );
        }
    }

    /// Serves one connection on a listener of its own with `answer`, and hands back the
    /// request it read.
    fn one_answer(answer: Vec<u8>) -> (SocketAddr, thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let served = thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            while !request.ends_with(b"\r\n\r\n") {
                let mut byte = [0];
                stream.read_exact(&mut byte).unwrap();
                request.push(byte[0]);
            }
            stream.write_all(&answer).unwrap();
            String::from_utf8(request).unwrap()
        });
        (addr, served)
    }

    #[test]
    fn only_the_tail_is_asked_for_and_a_peer_that_sends_all_still_shows_it() {
        // A peer of a version before ranges answers 200 with all of its data.
        let data: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut answer =
            format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", data.len()).into_bytes();
        answer.extend_from_slice(&data);
        let (addr, served) = one_answer(answer);
        let deadline = Instant::now() + Duration::from_secs(10);
        let got = get_data(addr, "peer", deadline).unwrap();
        assert_eq!(got.total, 5000);
        assert_eq!(got.tail, data[5000 - SHOWN_BYTES..]);
        let request = served.join().unwrap();
        assert!(request.contains("\r\nRange: bytes=-4096\r\n"), "{request}");
    }

    #[test]
    fn bad_responses_are_one_line_reasons() {
        assert_eq!(
            parse(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"),
            Err("answered HTTP/1.0 503 Service Unavailable".into())
        );
        assert_eq!(
            parse(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nab"),
            Err("data ended after 2 of 5 bytes".into())
        );
        assert_eq!(
            parse(b"HTTP/1.0 200 OK\r\n"),
            Err("connection closed before a response".into())
        );
        assert_eq!(
            parse(&[b'x'; MAX_HEADER_BYTES + 8192]),
            Err("response header too large".into())
        );
    }

    #[test]
    fn reasons_read_like_the_rest_of_the_page() {
        let timeout = Duration::from_millis(500);
        let refused = io::Error::from_raw_os_error(111);
        assert_eq!(reason(refused, timeout), "connection refused");
        let slow = io::Error::from(io::ErrorKind::WouldBlock);
        assert_eq!(reason(slow, timeout), "timed out after 500 ms");
    }

    #[test]
    fn a_peer_that_never_answers_times_out_by_the_deadline() {
        // Never accepted: the kernel completes the handshake into the backlog, and nothing is
        // ever sent back, which is what a hung peer looks like from here.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let err = get_data(addr, "peer", Instant::now() + Duration::from_millis(100)).unwrap_err();
        assert!(is_timeout(&err), "{err}");
    }

    #[test]
    fn permits_are_waited_for_until_the_deadline_only() {
        let permits = Semaphore::new(1);
        let taken = permits.acquire_until(Instant::now());
        assert!(taken.is_some());
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(permits.acquire_until(deadline).is_none());
        assert!(Instant::now() >= deadline);
        drop(taken);
        assert!(permits.acquire_until(Instant::now()).is_some());
    }

    #[test]
    fn a_peer_that_gets_no_permit_is_reported_not_waited_for() {
        static ONE: Semaphore = Semaphore::new(1);
        let _taken = ONE.acquire_until(Instant::now()).unwrap();
        // Never consulted: the peer is never fetched.
        let resolver = Arc::new(Resolver::new("/nonexistent".into(), Duration::from_secs(1)));
        let peer = Srv {
            priority: 0,
            weight: 100,
            port: 8000,
            target: "hello-stateful-0.svc.".into(),
        };
        let results = fetch_all(&resolver, &[peer], Duration::from_millis(50), &ONE);
        let why = format!("not asked: {MAX_FETCHES} peer fetches already running");
        assert_eq!(results, [(Err(why), None)]);
    }
}
