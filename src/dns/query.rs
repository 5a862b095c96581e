//! One question to one server: UDP first, TCP when the UDP answer is truncated, both under a
//! deadline, with blocking std sockets.
//!
//! The exchange mirrors Go's `Resolver.exchange` (`src/net/dnsclient_unix.go`): a reply whose
//! id, QR bit or question does not match the query is ignored and the wait goes on, because it
//! may be a late answer to an earlier query or a spoofing attempt (golang.org/issue/13281); a
//! truncated UDP answer is asked again over TCP (RFC 7766 section 5); a TCP answer is taken as
//! it is, even with TC set (glibc's behaviour, go.dev/issue/64896).

use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::wire::{self, CLASS_IN, Message, Question, Section, WireError};
use crate::deadline::{DeadlineStream, is_timeout, remaining};

/// Large enough for any UDP datagram: a server may ignore the advertised EDNS0 size.
const UDP_BUFFER: usize = 65_535;

/// Why an exchange with one server produced no usable message.
#[derive(Debug)]
pub enum ExchangeError {
    /// No matching reply before the try's deadline.
    Timeout,
    /// A socket error (connection refused, network unreachable, reset).
    Io {
        server: SocketAddr,
        proto: &'static str,
        error: io::Error,
    },
    /// The matching reply could not be decoded.
    Malformed(WireError),
    /// A TCP reply for a different query: on a stream there is no "keep waiting".
    InvalidResponse,
    /// The question could not be encoded (an invalid name).
    BadQuestion(WireError),
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::Timeout => f.write_str("i/o timeout"),
            ExchangeError::Io {
                server,
                proto,
                error,
            } => write!(f, "{proto} {server}: {error}"),
            ExchangeError::Malformed(e) => write!(f, "cannot unmarshal DNS message: {e}"),
            ExchangeError::InvalidResponse => f.write_str("invalid DNS response"),
            ExchangeError::BadQuestion(e) => write!(f, "cannot marshal DNS message: {e}"),
        }
    }
}

/// A reply that matched the question.
#[derive(Debug)]
pub struct Reply {
    pub message: Message,
    /// The reply came over TCP, after a truncated UDP reply.
    pub over_tcp: bool,
}

/// Asks `server` for (`name`, `qtype`, IN). Each transport gets `try_timeout` (Go gives UDP
/// and the TCP retry a fresh timeout each) but never runs past `deadline`.
pub fn exchange(
    server: SocketAddr,
    name: &str,
    qtype: u16,
    try_timeout: Duration,
    deadline: Instant,
) -> Result<Reply, ExchangeError> {
    let id = random_id();
    let query = wire::encode_query(id, name, qtype, true).map_err(ExchangeError::BadQuestion)?;
    let question = Question {
        name: name.to_string(),
        qtype,
        qclass: CLASS_IN,
    };
    let udp_deadline = deadline.min(Instant::now() + try_timeout);
    let datagram = udp_round_trip(server, id, &question, &query, udp_deadline)?;
    let (header, _) = wire::parse_head(&datagram).map_err(ExchangeError::Malformed)?;
    if !header.truncated() {
        return complete(&datagram).map(|message| Reply {
            message,
            over_tcp: false,
        });
    }
    log::debug!("{name}: truncated UDP answer from {server}, asking again over TCP");
    let tcp_deadline = deadline.min(Instant::now() + try_timeout);
    let stream = tcp_round_trip(server, &query, tcp_deadline)?;
    let (header, reply_question) = wire::parse_head(&stream).map_err(ExchangeError::Malformed)?;
    if !matches(id, &question, header, &reply_question) {
        return Err(ExchangeError::InvalidResponse);
    }
    complete(&stream).map(|message| Reply {
        message,
        over_tcp: true,
    })
}

/// Decodes a matching reply. A record that does not decode in the answer section makes the
/// message unusable unless the server said it was truncated (then the records before the cut
/// are what it could send). A cut in the authority or additional section only loses optional
/// data: dnsmasq 2.90, for one, writes compression pointers beyond 16 KiB once it adds A
/// records for about 200 SRV targets (dig: "bad label type"), and the SRV records before them
/// are still good.
fn complete(bytes: &[u8]) -> Result<Message, ExchangeError> {
    let message = wire::parse(bytes).map_err(ExchangeError::Malformed)?;
    match message.cut {
        Some((Section::Answer, e)) if !message.header.truncated() => {
            Err(ExchangeError::Malformed(e))
        }
        Some((section, e)) => {
            log::debug!(
                "{}: reply decoded up to {section:?} ({e})",
                message.question.name
            );
            Ok(message)
        }
        None => Ok(message),
    }
}

fn matches(id: u16, asked: &Question, header: wire::Header, answered: &Question) -> bool {
    header.is_response() && header.id == id && asked.matches(answered)
}

fn udp_round_trip(
    server: SocketAddr,
    id: u16,
    question: &Question,
    query: &[u8],
    deadline: Instant,
) -> Result<Vec<u8>, ExchangeError> {
    let io_err = |error| ExchangeError::Io {
        server,
        proto: "udp",
        error,
    };
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).map_err(io_err)?;
    // A connected socket only receives datagrams from the server's address and port, and
    // reports an ICMP port-unreachable as ECONNREFUSED instead of a silent timeout.
    socket.connect(server).map_err(io_err)?;
    socket.send(query).map_err(io_err)?;
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        let left = remaining(deadline).map_err(|_| ExchangeError::Timeout)?;
        socket.set_read_timeout(Some(left)).map_err(io_err)?;
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if is_timeout(&e) || e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        let datagram = &buf[..n];
        match wire::parse_head(datagram) {
            Ok((header, answered)) if matches(id, question, header, &answered) => {
                return Ok(datagram.to_vec());
            }
            Ok((header, answered)) => log::debug!(
                "ignoring reply from {server}: id {} (want {id}), question {} type {}",
                header.id,
                answered.name,
                answered.qtype
            ),
            Err(e) => log::debug!("ignoring undecodable reply from {server}: {e}"),
        }
    }
}

fn tcp_round_trip(
    server: SocketAddr,
    query: &[u8],
    deadline: Instant,
) -> Result<Vec<u8>, ExchangeError> {
    let map = |error: io::Error| {
        if is_timeout(&error) {
            ExchangeError::Timeout
        } else {
            ExchangeError::Io {
                server,
                proto: "tcp",
                error,
            }
        }
    };
    let mut stream = DeadlineStream::connect(server, deadline).map_err(map)?;
    // RFC 1035 section 4.2.2: a two-byte length, then the message, in one write so the
    // server does not see a lone length segment.
    let len = u16::try_from(query.len())
        .map_err(|_| ExchangeError::BadQuestion(WireError::NameTooLong))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).map_err(map)?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).map_err(map)?;
    let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut message).map_err(map)?;
    Ok(message)
}

/// An unpredictable 16-bit query id. std's `RandomState` draws its keys from the OS random
/// source, which is all that is needed here without a random-number crate; the counter keeps
/// ids distinct within one process even if two hashers were seeded alike.
fn random_id() -> u16 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish() as u16
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::dns::wire::tests::{Builder, srv_rdata};
    use crate::dns::wire::{RData, TYPE_A, TYPE_SRV};
    use std::thread;

    const NAME: &str = "svc.example.";

    /// A fake server on a fresh loopback port that answers each query with what `respond`
    /// builds from its id and question, possibly several datagrams.
    pub(in crate::dns) fn fake_udp(
        respond: impl Fn(u16, &Question) -> Vec<Vec<u8>> + Send + 'static,
    ) -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = sock.local_addr().expect("addr");
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = sock.recv_from(&mut buf) {
                let Ok((h, q)) = wire::parse_head(&buf[..n]) else {
                    continue;
                };
                for reply in respond(h.id, &q) {
                    // The test client may have given up already; nothing to do about it.
                    let _ = sock.send_to(&reply, peer);
                }
            }
        });
        addr
    }

    fn good_reply(id: u16, qname: &str) -> Vec<u8> {
        let mut b = Builder::reply(id, 0x8580, qname, TYPE_SRV, [1, 0, 0]);
        b.rr_ptr_owner(TYPE_SRV, 30, &srv_rdata(0, 100, 8000, "web-0.svc.example."));
        b.buf
    }

    #[test]
    fn mismatched_replies_are_ignored_until_the_right_one() {
        let server = fake_udp(|id, q| {
            let qname = &q.name;
            let wrong_id = good_reply(id.wrapping_add(1), qname);
            let wrong_name = good_reply(id, "other.example.");
            let mut wrong_type = Builder::reply(id, 0x8580, qname, TYPE_A, [0, 0, 0]).buf;
            wrong_type.truncate(wrong_type.len());
            let mut not_a_response = good_reply(id, qname);
            not_a_response[2] &= 0x7f;
            let garbage = vec![0xff; 7];
            vec![
                wrong_id,
                wrong_name,
                wrong_type,
                not_a_response,
                garbage,
                good_reply(id, qname),
            ]
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let reply = exchange(
            server,
            "SVC.example.",
            TYPE_SRV,
            Duration::from_secs(5),
            deadline,
        )
        .expect("the matching reply is found");
        assert!(!reply.over_tcp);
        assert!(matches!(
            &reply.message.answers[0].data,
            RData::Srv { port: 8000, .. }
        ));
    }

    #[test]
    fn only_mismatched_replies_time_out_within_the_deadline() {
        let server = fake_udp(|id, q| vec![good_reply(id ^ 0x5555, &q.name)]);
        let start = Instant::now();
        let deadline = start + Duration::from_millis(300);
        let err = exchange(server, NAME, TYPE_SRV, Duration::from_secs(5), deadline)
            .expect_err("no matching reply");
        assert!(matches!(err, ExchangeError::Timeout), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "bounded by the deadline"
        );
    }

    #[test]
    fn malformed_answer_section_is_an_error_without_tc() {
        let server = fake_udp(|id, q| {
            let mut r = good_reply(id, &q.name);
            r.truncate(r.len() - 3);
            vec![r]
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = exchange(server, NAME, TYPE_SRV, Duration::from_secs(5), deadline)
            .expect_err("cut answer");
        assert!(matches!(err, ExchangeError::Malformed(_)), "{err}");
    }

    #[test]
    fn refused_port_is_reported_quickly() {
        // Bind and drop a socket to get a loopback port that is very likely closed.
        let addr = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("port");
        let deadline = Instant::now() + Duration::from_secs(5);
        let err = exchange(addr, NAME, TYPE_SRV, Duration::from_secs(5), deadline)
            .expect_err("nobody listens");
        assert!(
            matches!(err, ExchangeError::Io { .. } | ExchangeError::Timeout),
            "{err}"
        );
    }

    #[test]
    fn truncated_udp_answer_retries_over_tcp() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let udp = UdpSocket::bind(addr).expect("same port for udp");
        thread::spawn(move || {
            let mut buf = [0u8; 512];
            if let Ok((n, peer)) = udp.recv_from(&mut buf)
                && let Ok((h, q)) = wire::parse_head(&buf[..n])
            {
                let tc = Builder::reply(h.id, 0x8780, &q.name, TYPE_SRV, [0, 0, 0]).buf;
                // The client may be gone; the test then fails on its own assertions.
                let _ = udp.send_to(&tc, peer);
            }
        });
        thread::spawn(move || {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut len = [0u8; 2];
            if s.read_exact(&mut len).is_err() {
                return;
            }
            let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if s.read_exact(&mut q).is_err() {
                return;
            }
            let Ok((h, qq)) = wire::parse_head(&q) else {
                return;
            };
            let reply = good_reply(h.id, &qq.name);
            let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&reply);
            // As above: a vanished client shows up in the test's assertions.
            let _ = s.write_all(&framed);
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let reply =
            exchange(addr, NAME, TYPE_SRV, Duration::from_secs(5), deadline).expect("tcp answer");
        assert!(reply.over_tcp);
        assert_eq!(reply.message.answers.len(), 1);
    }

    #[test]
    fn ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| random_id()).collect();
        assert!(ids.len() > 32, "{} distinct ids of 64", ids.len());
    }
}
