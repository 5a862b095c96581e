//! The endpoints, byte for byte, through the real binary.

mod support;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;

use std::io::Write;
use std::time::Duration;

use support::server::{Options, Server, read_reply, try_request};
use support::{TempDir, hostname, is_root};

#[test]
fn store_appends_exact_bytes_and_answers_the_greeting() {
    let server = Server::start();
    let greeting = format!("hello from v2:{}", hostname());
    let reply = server.request("POST", "/store", b"xxx");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), greeting);
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    // Bytes are stored as sent: no newline, no conversion.
    server.request("PUT", "/store", b"\x00\xffbin\r\n");
    assert_eq!(server.data(), b"xxx\x00\xffbin\r\n");
}

#[test]
fn empty_body_appends_the_greeting_on_any_method() {
    let server = Server::start();
    let greeting = format!("hello from v2:{}", hostname());
    assert_eq!(server.request("GET", "/store", b"").text(), greeting);
    assert_eq!(server.request("POST", "/", b"").text(), greeting); // the seed's kubectl proxy example
    assert_eq!(server.data(), format!("{greeting}{greeting}").as_bytes());
}

#[test]
fn data_streams_the_file_and_head_sends_no_body() {
    let server = Server::start();
    server.request("POST", "/", b"abc");
    let reply = server.request("GET", "/data", b"");
    assert_eq!((reply.status, reply.body.as_slice()), (200, &b"abc"[..]));
    let head = server.request("HEAD", "/data", b"");
    assert_eq!(
        (head.status, head.header("Content-Length")),
        (200, Some("3"))
    );
    assert!(head.body.is_empty());
    // Larger than tiny_http's chunking threshold, still byte for byte.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    server.request("POST", "/store", &big);
    let reply = server.request("GET", "/data", b"");
    assert_eq!(reply.body.len(), 3 + big.len());
    assert_eq!(&reply.body[3..], big.as_slice());
}

#[test]
fn index_health_and_errors() {
    let server = Server::start();
    let index = server.request("GET", "/", b"");
    assert_eq!(index.status, 200);
    assert!(
        index
            .text()
            .starts_with(&format!("hello from v2:{}\n", hostname())),
        "{}",
        index.text()
    );
    assert!(index.text().contains("/cluster"));
    assert_eq!(server.request("GET", "/healthz", b"").text(), "ok\n");
    assert_eq!(server.request("GET", "/readyz", b"").text(), "ready\n");
    let missing = server.request("GET", "/nope", b"");
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.text(),
        "not found: /nope; endpoints: /store /get /data /cluster /info /metrics / /healthz /readyz /readyz/disable /readyz/enable\n"
    );
    let wrong = server.request("DELETE", "/get", b"");
    assert_eq!(
        (wrong.status, wrong.header("Allow")),
        (405, Some("GET, HEAD"))
    );
    let wrong = server.request("PUT", "/", b"");
    assert_eq!(
        (wrong.status, wrong.header("Allow")),
        (405, Some("GET, HEAD, POST"))
    );
}

#[test]
fn the_index_is_a_page_for_browsers_and_text_for_every_other_client() {
    let server = Server::start();
    let ask = |method, accept: &[(&str, &str)]| {
        try_request(server.addr, method, "/", b"", accept).unwrap()
    };
    let text = ask("GET", &[]);
    assert_eq!(
        text.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    for accept in ["*/*", "text/plain", "text/*"] {
        let reply = ask("GET", &[("Accept", accept)]);
        assert_eq!(reply.body, text.body, "{accept}");
        assert_eq!(reply.header("Vary"), Some("Accept"));
    }
    let accept = [("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")];
    let page = ask("GET", &accept);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("Vary"), Some("Accept"));
    assert!(
        page.text().starts_with("<!doctype html>"),
        "{}",
        page.text()
    );
    let named = format!(r#"<body data-pod="{}">"#, hostname());
    assert!(page.text().contains(&named), "{}", page.text());
    // HEAD says the page's length, and sends none of it.
    let head = ask("HEAD", &accept);
    let length = page.body.len().to_string();
    assert_eq!(head.header("Content-Length"), Some(length.as_str()));
    assert_eq!(head.header("Content-Type"), page.header("Content-Type"));
}

#[test]
fn failed_lookup_is_503_with_one_line() {
    let server = Server::start();
    for path in ["/get", "/cluster"] {
        let reply = server.request("GET", path, b"");
        assert_eq!(reply.status, 503, "{path}");
        let text = reply.text();
        assert!(text.starts_with("lookup hello-stateful-service"), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}

#[test]
fn body_over_the_limit_is_413_and_appends_nothing() {
    let server = Server::start_with(Options::new().env("MAX_BODY_BYTES", "10"));
    assert_eq!(server.request("POST", "/store", b"0123456789").status, 200);
    let reply = server.request("POST", "/store", b"0123456789x");
    assert_eq!(reply.status, 413);
    assert_eq!(
        reply.text(),
        "request body of 11 bytes is over the limit of 10 bytes\n"
    );
    let chunked = try_request(
        server.addr,
        "POST",
        "/store",
        b"b\r\n0123456789x\r\n0\r\n\r\n",
        &[("Transfer-Encoding", "chunked")],
    )
    .unwrap();
    assert_eq!(chunked.status, 413);
    assert_eq!(server.data(), b"0123456789");
}

#[test]
fn chunked_bodies_are_stored() {
    let server = Server::start();
    let reply = try_request(
        server.addr,
        "POST",
        "/store",
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        &[("Transfer-Encoding", "chunked")],
    )
    .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(server.data(), b"abcde");
}

#[test]
fn concurrent_bodies_are_each_stored_once_and_whole() {
    let server = Arc::new(Server::start());
    let bodies: Vec<Vec<u8>> = (0..64u32)
        .map(|i| {
            let mut body = format!("<record {i:02}>").into_bytes();
            body.resize(100 * 1024 - 12, b'a' + (i % 26) as u8);
            body.extend_from_slice(format!("</record {i:02}>").as_bytes()[..12].as_ref());
            body
        })
        .collect();
    let threads: Vec<_> = bodies
        .iter()
        .cloned()
        .map(|body| {
            let server = server.clone();
            std::thread::spawn(move || {
                assert_eq!(server.request("POST", "/store", &body).status, 200)
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let data = server.data();
    assert_eq!(data.len(), 64 * 100 * 1024);
    let mut seen = HashSet::new();
    for record in data.chunks(100 * 1024) {
        let i = bodies
            .iter()
            .position(|b| b == record)
            .expect("every 100 KiB slice is one whole body");
        assert!(seen.insert(i), "body {i} stored twice");
    }
}

#[test]
fn pipelined_stores_are_answered_and_stored_in_order() {
    let server = Server::start();
    let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let store = |i: usize| {
        format!("POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{i};").into_bytes()
    };
    let greeting = format!("hello from v2:{}", hostname());
    for round in 0..2 {
        // On a connection the server has only just seen, each request waits for its sync on a
        // handler; on one it has looked at, the storage writer answers, and the requests that
        // waited behind go on on a handler.
        stream
            .write_all(&(0..5).flat_map(store).collect::<Vec<u8>>())
            .unwrap();
        for i in 0..5 {
            let reply = read_reply(&mut stream, false).unwrap_or_else(|e| {
                panic!("round {round}, answer {i}: {e}; {}", server.log_text())
            });
            assert_eq!(reply.text(), greeting);
        }
        if round == 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(server.data(), b"0;1;2;3;4;0;1;2;3;4;");
}

#[test]
fn pipelined_requests_on_many_connections_are_answered_in_order() {
    // tiny_http hands out a connection's requests in order, but two threads that each take one
    // could start them the other way round; the later one's answer then waits for the
    // earlier one's, which waits behind it: the connection hangs.
    let server = Server::start();
    let mut streams: Vec<std::net::TcpStream> = (0..40)
        .map(|_| std::net::TcpStream::connect(server.addr).unwrap())
        .collect();
    for round in 0..5 {
        for stream in &mut streams {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let burst = [
                &b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"[..],
                b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n",
            ]
            .repeat(4)
            .concat();
            stream.write_all(&burst).unwrap();
        }
        for (i, stream) in streams.iter_mut().enumerate() {
            for n in 0..8 {
                let reply = read_reply(stream, false)
                    .unwrap_or_else(|e| panic!("round {round}, connection {i}, answer {n}: {e}"));
                let expected = if n % 2 == 0 { "ok\n" } else { "ready\n" };
                assert_eq!(reply.text(), expected, "round {round}, connection {i}");
            }
        }
    }
}

#[test]
fn help_version_and_bad_settings() {
    let binary = env!("CARGO_BIN_EXE_hello-stateful");
    let help = Command::new(binary).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    for var in [
        "LISTEN_ADDR",
        "DATA_FILE",
        "SERVICE_NAME",
        "MAX_BODY_BYTES",
        "LOOKUP_TIMEOUT_MS",
        "PEER_TIMEOUT_MS",
        "RESOLV_CONF",
        "RUST_LOG",
    ] {
        assert!(help.contains(var), "--help lists {var}");
    }
    let version = Command::new(binary).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8(version.stdout).unwrap(),
        format!("hello-stateful {}\n", env!("CARGO_PKG_VERSION"))
    );

    let bad = Command::new(binary)
        .env("MAX_BODY_BYTES", "lots")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8(bad.stderr).unwrap();
    assert!(
        stderr.contains("MAX_BODY_BYTES") && stderr.contains("expected"),
        "{stderr}"
    );
    assert_eq!(
        Command::new(binary)
            .arg("--bogus")
            .output()
            .unwrap()
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn unwritable_volume_is_a_start_up_error_that_says_how_to_fix_it() {
    // Root ignores permission bits, so the server runs as "nobody" against a root-owned directory.
    if is_root() {
        let dir = TempDir::new("readonly");
        let volume = dir.path().join("volume");
        std::fs::create_dir(&volume).unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let out = Command::new(support::binary_for_any_user(&dir))
            .env("DATA_FILE", volume.join("hello"))
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .uid(65534)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            stderr.contains("cannot open data file") && stderr.contains("fsGroup"),
            "{stderr}"
        );
    } else {
        let dir = TempDir::new("readonly");
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o555),
        )
        .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_hello-stateful"))
            .env("DATA_FILE", dir.path().join("hello"))
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8(out.stderr).unwrap().contains("fsGroup"));
    }
}

use std::os::unix::process::CommandExt;
