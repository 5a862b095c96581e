//! Answers that caches and tailing clients can trust, through the real binary: `Cache-Control`
//! on every answer, `/data`'s ETag, 304, ranges (206, 416) of durable bytes only, and REDbot's
//! verdict on `/`, `/data` (with and without `Range`) and `/get`.
//!
//! The tests with DNS own loopback addresses 127.0.59.N (the resolver tests use 127.0.53.N,
//! the /get tests 127.0.54.N, the /cluster tests 127.0.55.N and up from 127.0.60.N), so they
//! run in parallel.

mod support;

use std::net::Ipv4Addr;
use std::process::Command;

use support::dnsmasq::server_with_dns;
use support::runnable;
use support::server::{Options, Reply, Server, exchange, try_request};

fn request(server: &Server, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    try_request(server.addr, method, path, b"", headers)
        .unwrap_or_else(|e| panic!("{method} {path} {headers:?}: {e}"))
}

fn get_data(server: &Server, headers: &[(&str, &str)]) -> Reply {
    request(server, "GET", "/data", headers)
}

fn etag(reply: &Reply) -> String {
    reply.header("ETag").expect("an ETag").to_string()
}

/// What every answer of `/data` that is not an error carries.
fn assert_validated(reply: &Reply, what: &str) {
    assert_eq!(reply.header("Cache-Control"), Some("no-cache"), "{what}");
    assert_eq!(reply.header("Accept-Ranges"), Some("bytes"), "{what}");
    let etag = reply
        .header("ETag")
        .unwrap_or_else(|| panic!("{what}: no ETag"));
    // Strong: no W/ in front; quoted.
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "{what}: {etag}"
    );
}

fn assert_no_store(reply: &Reply, what: &str) {
    assert_eq!(
        reply.header("Cache-Control"),
        Some("no-store"),
        "{what}: {reply:?}"
    );
    assert_eq!(reply.header("ETag"), None, "{what}");
}

#[test]
fn every_answer_but_datas_says_no_store() {
    let server = Server::start_with(Options::new().env("MAX_BODY_BYTES", "10"));
    // Method, path, body, header fields, and the status it gets.
    type Ask<'a> = (&'a str, &'a str, &'a [u8], &'a [(&'a str, &'a str)], u16);
    let asks: &[Ask] = &[
        ("GET", "/", b"", &[], 200),
        ("HEAD", "/", b"", &[], 200),
        ("GET", "/", b"", &[("Accept", "text/html")], 200),
        ("HEAD", "/", b"", &[("Accept", "text/html")], 200),
        ("GET", "/healthz", b"", &[], 200),
        ("GET", "/readyz", b"", &[], 200),
        ("POST", "/store", b"x", &[], 200),
        ("GET", "/store", b"", &[], 200),
        ("POST", "/", b"y", &[], 200),
        // No DNS server here: the lookups fail.
        ("GET", "/get", b"", &[], 503),
        ("GET", "/cluster", b"", &[], 503),
        ("GET", "/nope", b"", &[], 404),
        ("DELETE", "/get", b"", &[], 405),
        ("POST", "/store", b"0123456789x", &[], 413),
        ("POST", "/store", b"", &[("Content-Length", "abc")], 400),
        ("GET", "/data", b"", &[("If-Match", "\"other\"")], 412),
        ("GET", "/data", b"", &[("Range", "bytes=100-")], 416),
    ];
    for &(method, path, body, headers, status) in asks {
        let what = format!("{method} {path} {headers:?}");
        let reply = try_request(server.addr, method, path, body, headers)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(reply.status, status, "{what}: {}", reply.text());
        assert_no_store(&reply, &what);
    }
}

#[test]
fn get_and_cluster_say_no_store_when_they_succeed() {
    let Some((dns, server)) = server_with_dns(
        "get_and_cluster_say_no_store_when_they_succeed",
        Ipv4Addr::new(127, 0, 59, 1),
        Ipv4Addr::new(127, 0, 59, 11),
    ) else {
        return;
    };
    server.request("POST", "/store", b"hello");
    for path in ["/get", "/cluster"] {
        let reply = request(&server, "GET", path, &[]);
        assert_eq!(reply.status, 200, "{path}: {}\n{}", reply.text(), dns.log());
        assert_no_store(&reply, path);
    }
    // The peer (itself) was asked for its data's tail only.
    let page = request(&server, "GET", "/cluster", &[]).text();
    assert!(page.ends_with(": hello\n"), "{page}");
    assert!(
        server.log_text().contains("GET /data 206"),
        "{}",
        server.log_text()
    );
}

#[test]
fn data_has_a_strong_etag_that_moves_with_its_length_and_its_file() {
    let server = Server::start();
    let empty = get_data(&server, &[]);
    assert_eq!(empty.status, 200);
    assert_validated(&empty, "empty data");
    server.request("POST", "/store", b"abc");
    let abc = get_data(&server, &[]);
    assert_validated(&abc, "after a store");
    assert_ne!(etag(&abc), etag(&empty), "a store changes the ETag");
    assert_eq!(
        etag(&get_data(&server, &[])),
        etag(&abc),
        "no store, same ETag"
    );
    let head = request(&server, "HEAD", "/data", &[]);
    assert_eq!(etag(&head), etag(&abc), "HEAD tells the same ETag");
    assert_validated(&head, "HEAD");
    // The file deleted behind the server and created again by its next store: the same length,
    // other bytes, another ETag.
    std::fs::remove_file(server.data_file()).unwrap();
    server.request("POST", "/store", b"xyz");
    assert_eq!(server.data(), b"xyz");
    let xyz = get_data(&server, &[]);
    assert_eq!(xyz.body, b"xyz");
    assert_ne!(etag(&xyz), etag(&abc), "{}", etag(&xyz));
    // Another pod's data of the same length (behind one Service they share a URL).
    let other = Server::start();
    other.request("POST", "/store", b"xyz");
    assert_ne!(etag(&get_data(&other, &[])), etag(&xyz));
}

#[test]
fn if_none_match_gets_a_304_with_no_body() {
    let server = Server::start();
    server.request("POST", "/store", b"0123456789");
    let current = etag(&get_data(&server, &[]));
    let weak = format!("W/{current}");
    let listed = format!("\"old\", {current}");
    for (method, validator) in [
        ("GET", current.as_str()),
        ("GET", weak.as_str()),
        ("GET", listed.as_str()),
        ("GET", "*"),
        ("HEAD", current.as_str()),
    ] {
        let what = format!("{method} with If-None-Match: {validator}");
        let (reply, after) = exchange(
            server.addr,
            method,
            "/data",
            &[("If-None-Match", validator), ("Range", "bytes=-2")],
        );
        assert_eq!(reply.status, 304, "{what}");
        assert_eq!(after, b"", "{what}: nothing after the head");
        assert_validated(&reply, &what);
        assert_eq!(reply.header("ETag"), Some(current.as_str()), "{what}");
        // The length a 200 would have, as RFC 9110 allows; no Content-Type of its own.
        assert_eq!(reply.header("Content-Length"), Some("10"), "{what}");
        assert_eq!(reply.header("Content-Type"), None, "{what}");
    }
    server.request("POST", "/store", b"!");
    let reply = get_data(&server, &[("If-None-Match", current.as_str())]);
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (200, &b"0123456789!"[..])
    );
}

#[test]
fn if_match_naming_another_etag_is_412() {
    let server = Server::start();
    server.request("POST", "/store", b"abc");
    let current = etag(&get_data(&server, &[]));
    let reply = get_data(&server, &[("If-Match", current.as_str())]);
    assert_eq!((reply.status, reply.body.as_slice()), (200, &b"abc"[..]));
    let reply = get_data(&server, &[("If-Match", "\"gone\"")]);
    assert_eq!(reply.status, 412);
    assert_eq!(
        reply.text(),
        format!("precondition failed: If-Match does not name the data's ETag {current}\n")
    );
}

/// `Range: <range>` gets a 206 of `body`, which `content_range` places, with the validators.
fn assert_part(server: &Server, range: &str, body: &str, content_range: &str) {
    let reply = get_data(server, &[("Range", range)]);
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (206, body),
        "{range}"
    );
    assert_eq!(
        reply.header("Content-Range"),
        Some(content_range),
        "{range}"
    );
    assert_validated(&reply, range);
}

#[test]
fn ranges_get_206_with_content_range() {
    let server = Server::start();
    server.request("POST", "/store", b"0123456789");
    for (range, body, content_range) in [
        ("bytes=4-", "456789", "bytes 4-9/10"),
        ("bytes=-3", "789", "bytes 7-9/10"),
        ("bytes=2-5", "2345", "bytes 2-5/10"),
        ("bytes=8-100", "89", "bytes 8-9/10"),
        ("bytes=-100", "0123456789", "bytes 0-9/10"),
    ] {
        assert_part(&server, range, body, content_range);
    }
    let (head, after) = exchange(server.addr, "HEAD", "/data", &[("Range", "bytes=-3")]);
    assert_eq!(head.status, 206);
    assert_eq!(head.header("Content-Range"), Some("bytes 7-9/10"));
    assert_eq!(head.header("Content-Length"), Some("3"));
    assert_eq!(after, b"");
}

#[test]
fn a_range_past_the_end_is_416() {
    let server = Server::start();
    server.request("POST", "/store", b"0123456789");
    for range in ["bytes=10-", "bytes=10-12", "bytes=-0"] {
        let reply = get_data(&server, &[("Range", range)]);
        assert_eq!(reply.status, 416, "{range}");
        assert_eq!(reply.header("Content-Range"), Some("bytes */10"), "{range}");
        assert_eq!(
            reply.text(),
            format!("range not satisfiable: {range}; the data is 10 bytes\n")
        );
    }
}

#[test]
fn other_ranges_and_stale_if_ranges_get_all_of_the_data() {
    let server = Server::start();
    server.request("POST", "/store", b"01234");
    let old = etag(&get_data(&server, &[]));
    server.request("POST", "/store", b"56789");
    let current = etag(&get_data(&server, &[]));
    let whole = |headers: &[(&str, &str)]| {
        let reply = get_data(&server, headers);
        assert_eq!(
            (reply.status, reply.text().as_str()),
            (200, "0123456789"),
            "{headers:?}"
        );
        assert_validated(&reply, &format!("{headers:?}"));
    };
    whole(&[("Range", "bytes=0-1,5-6")]);
    whole(&[("Range", "bytes=5-2")]);
    whole(&[("Range", "lines=1-")]);
    whole(&[("Range", "bytes=-2"), ("If-Range", old.as_str())]);
    whole(&[
        ("Range", "bytes=-2"),
        ("If-Range", "Tue, 01 Dec 2026 20:56:22 GMT"),
    ]);
    let reply = get_data(
        &server,
        &[("Range", "bytes=-2"), ("If-Range", current.as_str())],
    );
    assert_eq!((reply.status, reply.text().as_str()), (206, "89"));
}

#[test]
fn ranges_never_reach_bytes_not_yet_synced() {
    let server = Server::start();
    server.request("POST", "/store", b"durable");
    // Bytes past the durable length, as a write under way leaves them: appended behind the
    // server's back, never synced by it.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(server.data_file())
        .unwrap();
    std::io::Write::write_all(&mut file, b"PENDING").unwrap();
    assert_eq!(server.data(), b"durablePENDING");
    let reply = get_data(&server, &[]);
    assert_eq!(reply.text(), "durable");
    for (range, body, content_range) in [
        ("bytes=-3", "ble", "bytes 4-6/7"),
        ("bytes=-10", "durable", "bytes 0-6/7"),
        ("bytes=3-", "able", "bytes 3-6/7"),
        ("bytes=5-12", "le", "bytes 5-6/7"),
    ] {
        assert_part(&server, range, body, content_range);
    }
    let reply = get_data(&server, &[("Range", "bytes=7-")]);
    assert_eq!(reply.status, 416);
    assert_eq!(reply.header("Content-Range"), Some("bytes */7"));
}

#[test]
fn curl_r_shows_the_last_bytes() {
    let test = "curl_r_shows_the_last_bytes";
    let found = Command::new("curl").arg("--version").output().is_ok();
    if !runnable(test, found, "curl not installed") {
        return;
    }
    let server = Server::start();
    let data: Vec<u8> = (0..1000u32).map(|i| b'a' + (i % 26) as u8).collect();
    server.request("POST", "/store", &data);
    let url = format!("http://{}/data", server.addr);
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "-r", "-100", &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, data[900..]);
}

/// Whether `python3` on PATH has REDbot: `make test` puts the virtual environment of
/// tests/requirements.txt first on PATH.
fn redbot_available(test: &str) -> bool {
    let imported = Command::new("python3")
        .args(["-c", "import redbot.resource, httplint, thor"])
        .output()
        .is_ok_and(|out| out.status.success());
    runnable(
        test,
        imported,
        "REDbot not installed (`make test` runs the cargo tests with target/venv, made from \
         tests/requirements.txt, first on PATH)",
    )
}

/// Runs REDbot on `url` with `headers` (tests/redbot/check.py); fails on a note of level
/// "bad", on heuristic freshness, or when a note named in `expect` is missing.
fn redbot(url: &str, headers: &[&str], expect: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/redbot/check.py");
    let mut command = Command::new("python3");
    command.arg(script).arg(url);
    for header in headers {
        command.args(["--header", header]);
    }
    for note in expect {
        command.args(["--expect", note]);
    }
    let out = command.output().expect("run python3");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "REDbot on {url} {headers:?}:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn redbot_finds_nothing_wrong_with_the_index_and_data() {
    if !redbot_available("redbot_finds_nothing_wrong_with_the_index_and_data") {
        return;
    }
    let server = Server::start();
    let base = format!("http://{}", server.addr);
    let (index, data) = (format!("{base}/"), format!("{base}/data"));
    // Before any store, and after some: an empty file has no bytes for REDbot to range over.
    redbot(&index, &[], &["STORE_NO_STORE"]);
    // The page a browser gets. Its policy allows its own inline script, which REDbot warns of
    // (CSP_UNSAFE_INLINE): the page is one self-contained file, and puts no data in as markup.
    let browser = ["Accept: text/html,application/xhtml+xml,*/*;q=0.8"];
    redbot(
        &index,
        &browser,
        &["STORE_NO_STORE", "CONTENT_SECURITY_POLICY"],
    );
    redbot(&data, &[], &["FRESHNESS_NO_CACHE", "INM_304"]);
    for i in 0..20 {
        server.request(
            "POST",
            "/store",
            format!("record {i} of twenty\n").as_bytes(),
        );
    }
    redbot(&index, &[], &["STORE_NO_STORE"]);
    redbot(
        &data,
        &[],
        &["FRESHNESS_NO_CACHE", "INM_304", "RANGE_CORRECT"],
    );
    for range in ["Range: bytes=-100", "Range: bytes=100-"] {
        redbot(&data, &[range], &["FRESHNESS_NO_CACHE", "INM_304"]);
    }
    redbot(&format!("{base}/healthz"), &[], &["STORE_NO_STORE"]);
}

#[test]
fn redbot_finds_nothing_wrong_with_get() {
    let test = "redbot_finds_nothing_wrong_with_get";
    if !redbot_available(test) {
        return;
    }
    let Some((_dns, server)) = server_with_dns(
        test,
        Ipv4Addr::new(127, 0, 59, 2),
        Ipv4Addr::new(127, 0, 59, 12),
    ) else {
        return;
    };
    let get = format!("http://{}/get", server.addr);
    assert_eq!(request(&server, "GET", "/get", &[]).status, 200);
    redbot(&get, &[], &["STORE_NO_STORE"]);
}
