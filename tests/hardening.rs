//! The bounds of the HTTP front, each driven past with real sockets against the real binary:
//! the answer a client past it gets, the server's peak memory, and that another client is still
//! served meanwhile. No timing is asserted: a bound that failed leaves a request hanging, which
//! the test client's 10 s read bound turns into a failure.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use support::fake_dns::FakeDns;
use support::server::{Options, Server, read_reply, request};
use support::{is_root, open_file_limit, runnable};

/// The memory the process must stay under with the default `MEMORY_LIMIT` (64 MiB): three
/// quarters of it.
const TARGET_KIB: u64 = 48 * 1024;

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Reads until the server closes the connection (or 10 s pass, which fails the test).
fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // The server may reset a connection it closed with bytes still unread.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("the server did not close the connection: {e}; read {out:?}"),
        }
    }
}

/// A client that stores a few bytes and asks for /healthz over and over on one keep-alive
/// connection (as an ingress does) while a test drives the server past a bound; `stop` checks
/// that each was answered.
struct Steady {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(usize, Duration)>,
}

impl Steady {
    fn start(addr: SocketAddr) -> Steady {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let mut stream = connect(addr);
        let thread = thread::spawn(move || {
            let (mut count, mut slowest) = (0, Duration::ZERO);
            while !stopped.load(Ordering::Relaxed) {
                let started = Instant::now();
                for (request, expected) in [
                    (
                        &b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\nsteady;"[..],
                        200,
                    ),
                    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200),
                ] {
                    stream.write_all(request).unwrap();
                    let reply = read_reply(&mut stream, false).unwrap();
                    assert_eq!(reply.status, expected, "{}", reply.text());
                }
                slowest = slowest.max(started.elapsed());
                count += 1;
                thread::sleep(Duration::from_millis(10));
            }
            (count, slowest)
        });
        Steady { stop, thread }
    }

    fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let (count, slowest) = self
            .thread
            .join()
            .expect("every steady request was answered");
        // Printed, not asserted: timings belong to benchmarks.
        eprintln!("steady client: {count} rounds, slowest {slowest:?}");
        count
    }
}

fn assert_under(server: &Server, target_kib: u64) {
    let peak = server.peak_rss_kib();
    assert!(
        peak < target_kib,
        "peak RSS {peak} KiB, over {target_kib} KiB"
    );
    eprintln!("peak RSS {peak} KiB of {target_kib} KiB");
}

#[test]
fn a_flood_of_idle_connections_is_held_to_the_connection_budget() {
    if !enough_open_files("a_flood_of_idle_connections_is_held_to_the_connection_budget") {
        return;
    }
    let server = Server::start();
    let steady = Steady::start(server.addr);
    // Twice the budget of 512 and more: half of them send a request and keep the connection.
    let mut held = Vec::new();
    let mut waited = 0;
    for i in 0..3000 {
        match TcpStream::connect_timeout(&server.addr, Duration::from_millis(200)) {
            Ok(mut stream) => {
                if i % 2 == 0 {
                    stream
                        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                        .unwrap();
                }
                held.push(stream);
            }
            // Held back in the kernel while the server is at its budget.
            Err(e) if e.kind() == ErrorKind::TimedOut => waited += 1,
            Err(e) => panic!("connection {i}: {e}"),
        }
    }
    assert!(steady.stop() > 0, "the steady client got through the flood");
    // The server closed the idlest of those it took; what stays open is within the budget.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.open_files() > 2 * 576 + 64 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    let files = server.open_files();
    assert!(files <= 2 * 576 + 64, "{files} descriptors open");
    assert_under(&server, TARGET_KIB);
    eprintln!("{} connections made, {waited} held back", held.len());
    assert!(server.log_text().contains("budget connections"));
}

#[test]
fn uploads_past_the_body_budget_get_503_with_retry_after() {
    // A 16 MiB limit gives a body budget of 3 MiB: three uploads of 1 MiB at once.
    let server = Server::start_with(Options::new().env("MEMORY_LIMIT", "16777216"));
    let steady = Steady::start(server.addr);
    let mut uploads: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut stream = connect(server.addr);
            stream
                .write_all(b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
                .unwrap();
            stream.write_all(&[b'u'; 500_000]).unwrap();
            stream
        })
        .collect();
    // Three are being read; three were refused at once and their connections closed.
    let mut refused = 0;
    for stream in &mut uploads {
        stream
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let mut first = [0u8; 1];
        if stream.read_exact(&mut first).is_ok() {
            let mut text = String::from_utf8_lossy(&first).into_owned();
            text.push_str(&String::from_utf8_lossy(&read_to_close(stream)));
            assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
            assert!(text.contains("Retry-After: 1"), "{text}");
            assert!(
                text.ends_with("budget of 3145728 bytes; retry later\n"),
                "{text}"
            );
            refused += 1;
        }
    }
    assert_eq!(refused, 3);
    steady.stop();
    assert_under(&server, 12 * 1024 + 8 * 1024);
    // The stalled ones are not stored; the steady client's records are.
    assert!(!server.data().contains(&b'u'));
    assert_eq!(server.log_text().matches("turning clients away").count(), 1);
}

#[test]
fn a_body_that_stalls_gets_408_after_the_body_timeout() {
    let server = Server::start_with(Options::new().env("BODY_TIMEOUT_MS", "300"));
    let steady = Steady::start(server.addr);
    let mut stalled = connect(server.addr);
    stalled
        .write_all(b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\nabc")
        .unwrap();
    let out = String::from_utf8_lossy(&read_to_close(&mut stalled)).into_owned();
    assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
    assert!(
        out.ends_with("request body did not arrive within 300 ms\n"),
        "{out}"
    );
    steady.stop();
    assert!(!server.data().windows(3).any(|w| w == b"abc"));
}

#[test]
fn a_head_over_64_kib_closes_the_connection() {
    let server = Server::start();
    let steady = Steady::start(server.addr);
    let mut big = connect(server.addr);
    big.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    big.write_all(b"GET / HTTP/1.1\r\nX-Big: ").unwrap();
    // 64 MiB of one header line, unless the server stops taking it first.
    let chunk = vec![b'x'; 1 << 16];
    let mut sent = 0;
    while sent < 64 << 20 && big.write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    assert!(sent < 64 << 20, "the whole head was taken");
    steady.stop();
    assert_under(&server, TARGET_KIB);
    assert!(server.log_text().contains("request head is over 64 KiB"));
}

#[test]
fn a_head_that_trickles_is_closed_after_the_head_timeout() {
    let server = Server::start_with(Options::new().env("HEAD_TIMEOUT_MS", "300"));
    let mut slow = connect(server.addr);
    slow.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(10) {
        if slow.write_all(b"X-Slow: 1\r\n").is_err() {
            closed = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(closed, "a trickling head was never cut off");
    assert_eq!(server.request("GET", "/healthz", b"").status, 200);
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let server = Server::start_with(Options::new().env("IDLE_TIMEOUT_MS", "300"));
    let mut idle = connect(server.addr);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_reply(&mut idle, false).unwrap().status, 200);
    // Nothing more is sent: the server closes it.
    assert_eq!(read_to_close(&mut idle), b"");
}

#[test]
fn a_client_pipelining_without_reading_is_closed_past_the_pipeline_bound() {
    let server = Server::start();
    let steady = Steady::start(server.addr);
    let mut greedy = connect(server.addr);
    let one = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let burst: Vec<u8> = one.repeat(60_000);
    greedy
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // All of it is taken or the connection is closed, depending on how far the server read.
    let _ = greedy.write_all(&burst);
    let answers = read_to_close(&mut greedy);
    let count = answers.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
    assert!(
        count < 60_000,
        "all {count} pipelined requests were answered"
    );
    steady.stop();
    assert_under(&server, TARGET_KIB);
    assert!(server.log_text().contains("budget pipelined requests"));
}

#[test]
fn a_client_that_never_reads_its_answers_is_closed_after_the_send_timeout() {
    let server = Server::start_with(Options::new().env("SEND_TIMEOUT_MS", "300"));
    for _ in 0..4 {
        assert_eq!(
            server.request("POST", "/store", &[b'd'; 1 << 20]).status,
            200
        );
    }
    // Eight answers of 4 MiB each that are never read fill every buffer on the way.
    let mut reader = connect(server.addr);
    reader
        .write_all(&b"GET /data HTTP/1.1\r\nHost: x\r\n\r\n".repeat(8))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log_text().contains("sending the answer") && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    // Closed after the timeout: what reaches the client is far less than eight answers.
    let got = read_to_close(&mut reader);
    assert!(got.len() < 8 * (4 << 20), "{} bytes", got.len());
    assert_eq!(server.request("GET", "/healthz", b"").status, 200);
}

#[test]
fn a_framing_error_is_answered_once_and_closes_the_connection() {
    let server = Server::start();
    for bad in ["abc", "+5", "5, 6", "18446744073709551616"] {
        let mut stream = connect(server.addr);
        let raw = format!(
            "POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: {bad}\r\n\r\n\
             POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nEVIL!"
        );
        stream.write_all(raw.as_bytes()).unwrap();
        let out = String::from_utf8_lossy(&read_to_close(&mut stream)).into_owned();
        assert!(out.starts_with("HTTP/1.1 400 "), "{bad}: {out}");
        assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{bad}: {out}");
    }
    let mut stream = connect(server.addr);
    stream
        .write_all(
            b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
              0\r\n\r\nPOST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nEVIL!",
        )
        .unwrap();
    let out = String::from_utf8_lossy(&read_to_close(&mut stream)).into_owned();
    assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    assert_eq!(server.data(), b"", "nothing may be appended");
    assert_eq!(server.request("POST", "/store", b"fine").status, 200);
}

#[test]
fn huge_declared_lengths_get_413_and_close_the_connection() {
    let server = Server::start();
    for length in [
        "18446744073709551615",
        "1000000000000000",
        "20000000",
        "2000000",
    ] {
        for _ in 0..10 {
            let mut stream = connect(server.addr);
            let head =
                format!("POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\nabc");
            stream.write_all(head.as_bytes()).unwrap();
            let out = String::from_utf8_lossy(&read_to_close(&mut stream)).into_owned();
            assert!(out.starts_with("HTTP/1.1 413 "), "{length}: {out}");
            assert!(out.ends_with("over the limit of 1048576 bytes\n"), "{out}");
        }
    }
    assert_eq!(server.request("POST", "/store", b"ok").status, 200);
    assert_eq!(server.data(), b"ok");
    assert_under(&server, TARGET_KIB);
}

#[test]
fn parked_connections_past_their_budget_restart_the_process() {
    // A length no drain can allocate parks its connection; a 16 MiB limit allows 32 of them.
    let mut server = Server::start_with(Options::new().env("MEMORY_LIMIT", "16777216"));
    let mut parked = Vec::new();
    for _ in 0..32 {
        let mut stream = connect(server.addr);
        stream
            .write_all(
                b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000\r\n\r\n",
            )
            .unwrap();
        let mut head = [0u8; 16];
        stream.read_exact(&mut head).unwrap();
        assert_eq!(&head[..13], b"HTTP/1.1 413 ");
        parked.push(stream);
    }
    let status = server.wait_exit(Duration::from_secs(10));
    let log = server.log_text();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{log}");
    assert!(log.contains("32 connections parked; exiting"), "{log}");
}

#[test]
fn stalled_and_trickling_uploads_delay_nobody() {
    let server = Server::start();
    // Headers promise 100 000 bytes; the body never comes.
    let mut stalled = connect(server.addr);
    stalled
        .write_all(b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc")
        .unwrap();
    // A chunked body that trickles in one byte at a time.
    let mut trickle = connect(server.addr);
    trickle
        .write_all(b"POST /store HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab")
        .unwrap();
    // Expect: 100-continue with a body that is never sent after the 100.
    let mut expecting = connect(server.addr);
    expecting.write_all(b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n").unwrap();
    for i in 0..20 {
        if i < 3 {
            trickle.write_all(&b"cde"[i..i + 1]).unwrap();
        }
        let body = format!("steady {i};");
        assert_eq!(
            server.request("POST", "/store", body.as_bytes()).status,
            200
        );
        assert_eq!(server.request("GET", "/healthz", b"").status, 200);
        assert_eq!(server.request("GET", "/get", b"").status, 503); // no DNS here: a fast 503
    }
    let data = String::from_utf8(server.data()).unwrap();
    assert_eq!(
        data,
        (0..20).map(|i| format!("steady {i};")).collect::<String>()
    );
    // The trickled body completes and is stored whole after everything else.
    trickle.write_all(b"\r\n0\r\n\r\n").unwrap();
    assert_eq!(read_reply(&mut trickle, false).unwrap().status, 200);
    assert!(server.data().ends_with(b"abcde"));
}

#[test]
fn a_dns_server_that_never_answers_does_not_slow_store() {
    let test = "a_dns_server_that_never_answers_does_not_slow_store";
    let Some(hole) = FakeDns::black_hole(test, Ipv4Addr::new(127, 0, 53, 253)) else {
        return;
    };
    let resolv = hole.write_resolv_conf("");
    let server = Server::start_with(
        Options::new()
            .env("RESOLV_CONF", resolv.to_str().unwrap())
            .env("LOOKUP_TIMEOUT_MS", "3000"),
    );
    let addr = server.addr;
    let lookups: Vec<_> = (0..8)
        .map(|_| thread::spawn(move || (Instant::now(), request(addr, "GET", "/get", b""))))
        .collect();
    for i in 0..50 {
        assert_eq!(
            server
                .request("POST", "/store", format!("{i},").as_bytes())
                .status,
            200
        );
    }
    // All 50 stores were acknowledged while the lookups were still waiting on the black hole.
    for lookup in lookups {
        let (started, reply) = lookup.join().unwrap();
        assert_eq!(reply.status, 503, "{}", reply.text());
        assert!(
            reply.text().contains("lookup hello-stateful-service"),
            "{}",
            reply.text()
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "lookup was not bounded"
        );
    }
    assert_eq!(
        server.data().len(),
        (0..50).map(|i: i32| format!("{i},").len()).sum::<usize>()
    );
}

#[test]
fn a_low_open_file_limit_holds_connections_back_instead_of_ending_the_accept_loop() {
    // With 128 descriptors the budget is 14 connections. tiny_http's accept loop ends for good
    // when it runs out of descriptors; held back in the kernel, the clients are all served.
    if !runnable(
        "a_low_open_file_limit_holds_connections_back_instead_of_ending_the_accept_loop",
        has_prlimit(),
        "needs prlimit",
    ) {
        return;
    }
    let mut options = Options::new();
    options.wrapper = vec!["prlimit".into(), "--nofile=128:128".into(), "--".into()];
    let mut server = Server::start_with(options);
    let addr = server.addr;
    let clients: Vec<_> = (0..200)
        .map(|_| {
            thread::spawn(move || {
                // Held back, a client's handshake is retried by its kernel after 1, 3, 7 and
                // 15 s: give it that long.
                let reply = TcpStream::connect_timeout(&addr, Duration::from_secs(20)).and_then(
                    |mut stream| {
                        stream.set_read_timeout(Some(Duration::from_secs(20)))?;
                        stream.write_all(b"GET /healthz HTTP/1.0\r\n\r\n")?;
                        read_reply(&mut stream, false)
                    },
                );
                reply.map(|r| r.status).map_err(|e| e.to_string())
            })
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), Ok(200));
    }
    assert!(
        server.wait_exit(Duration::ZERO).is_none(),
        "{}",
        server.log_text()
    );
}

#[test]
fn the_process_exits_non_zero_when_the_accept_thread_cannot_start_threads() {
    // tiny_http's accept thread panics when it cannot start a connection thread, and then no
    // connection is ever accepted again. RLIMIT_NPROC applies only to non-root users and counts
    // every thread of the user, so the server runs as a user of its own (not "nobody", which
    // dnsmasq uses in parallel tests) with room for its own few threads and not many more.
    let test = "the_process_exits_non_zero_when_the_accept_thread_cannot_start_threads";
    if !runnable(test, is_root() && has_prlimit(), "needs root and prlimit") {
        return;
    }
    let mut options = Options::new();
    options.uid = Some(47474);
    options.wrapper = vec!["prlimit".into(), "--nproc=24:24".into(), "--".into()];
    let mut server = Server::start_with(options);
    let _held: Vec<TcpStream> = (0..60)
        .filter_map(|_| {
            let mut stream = TcpStream::connect(server.addr).ok()?;
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .ok()?;
            Some(stream)
        })
        .collect();
    let status = server.wait_exit(Duration::from_secs(10));
    let log = server.log_text();
    let status = status.unwrap_or_else(|| panic!("server must exit, not hang; log:\n{log}"));
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("accept loop died"), "{log}");
}

/// Raises this process's open-file limit for the tests that hold thousands of connections
/// (some at once, in parallel), and the servers they start (two descriptors per connection).
fn enough_open_files(test: &str) -> bool {
    const NEEDED: u64 = 8192;
    let limit = open_file_limit();
    runnable(
        test,
        limit >= NEEDED,
        &format!("needs {NEEDED} open files, and the hard limit is {limit}: raise `ulimit -Hn`"),
    )
}

fn has_prlimit() -> bool {
    std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok()
}

#[test]
fn connections_opened_in_a_burst_are_all_served() {
    // tiny_http 0.12's connection pool queues a new connection whenever a thread is waiting, even
    // when more connections arrive than threads wait; the extra ones sit in the queue until some
    // other connection closes. Measured: 3 of 60 connections opened at once never answered. The
    // connection watch sees their bytes waiting and probes, which starts a thread for each.
    let server = Server::start();
    for round in 0..3 {
        let mut burst: Vec<TcpStream> = (0..100)
            .map(|_| TcpStream::connect(server.addr).unwrap())
            .collect();
        for stream in &mut burst {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
        }
        assert_every_connection_answers(&mut burst, &format!("round {round}: "));
    }
}

#[test]
fn a_burst_as_large_as_the_connection_budget_is_queued_and_served() {
    // With the server stopped, the kernel alone completes handshakes into the listen backlog.
    // std's backlog of 128 would drop the SYNs past it (clients retry a second later, beyond
    // the 500 ms allowed here); the server's is its connection budget, 512. On SIGCONT,
    // tiny_http accepts them all in one burst.
    if !enough_open_files("a_burst_as_large_as_the_connection_budget_is_queued_and_served") {
        return;
    }
    let server = Server::start();
    server.signal("STOP");
    let connected: Vec<std::io::Result<TcpStream>> = (0..500)
        .map(|_| {
            let mut stream = TcpStream::connect_timeout(&server.addr, Duration::from_millis(500))?;
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")?;
            Ok(stream)
        })
        .collect();
    server.signal("CONT");
    let mut streams = Vec::new();
    for (i, stream) in connected.into_iter().enumerate() {
        streams.push(stream.unwrap_or_else(|e| panic!("connection {i} was not queued: {e}")));
    }
    assert_every_connection_answers(&mut streams, "");
}

/// Expects a 200 on every connection within 10 s.
fn assert_every_connection_answers(streams: &mut [TcpStream], context: &str) {
    for (i, stream) in streams.iter_mut().enumerate() {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reply =
            read_reply(stream, false).unwrap_or_else(|e| panic!("{context}connection {i}: {e}"));
        assert_eq!(reply.status, 200, "{context}connection {i}");
    }
}
