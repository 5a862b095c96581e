//! `/metrics` through the real binary: checked by Prometheus' own parser (`promtool check
//! metrics`, Debian's `prometheus` package), and its counters seen to move after a `/store`, a
//! `/get` and a `/cluster`.

mod support;

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use support::dnsmasq::server_with_dns;
use support::server::Server;
use support::{hostname, runnable};

/// The value of the sample `series` (its name and labels, as written), if there is one.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

fn scrape(server: &Server) -> String {
    let reply = server.request("GET", "/metrics", b"");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    reply.text()
}

/// `promtool check metrics`: the exposition parses, and follows Prometheus' naming rules.
fn promtool_accepts(test: &str, text: &str) -> bool {
    let Ok(mut child) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        return !runnable(test, false, "needs promtool (apt-get install prometheus)");
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
    true
}

#[test]
fn metrics_parse_and_move_with_stores_lookups_and_peer_fetches() {
    let test = "metrics_parse_and_move_with_stores_lookups_and_peer_fetches";
    let Some((_dns, server)) = server_with_dns(
        test,
        Ipv4Addr::new(127, 0, 58, 1),
        Ipv4Addr::new(127, 0, 58, 11),
    ) else {
        return;
    };
    let before = scrape(&server);
    if !promtool_accepts(test, &before) {
        return;
    }
    assert_eq!(
        sample(&before, "hello_stateful_store_records_total"),
        Some(0.0)
    );
    assert_eq!(
        sample(&before, r#"hello_stateful_srv_lookups_total{result="ok"}"#),
        Some(0.0)
    );
    let info = format!(
        r#"hello_stateful_info{{version="{}",hostname="{}",ordinal=""#,
        env!("CARGO_PKG_VERSION"),
        hostname()
    );
    assert!(before.contains(&info), "{before}");
    assert_eq!(server.request("POST", "/store", b"hello").status, 200);
    assert_eq!(server.request("GET", "/get", b"").status, 200);
    assert_eq!(server.request("GET", "/get", b"").status, 200);
    assert_eq!(server.request("GET", "/cluster", b"").status, 200);
    let after = scrape(&server);
    assert!(promtool_accepts(test, &after));
    let value =
        |series: &str| sample(&after, series).unwrap_or_else(|| panic!("no {series}:\n{after}"));
    assert_eq!(value("hello_stateful_store_records_total"), 1.0);
    assert_eq!(value("hello_stateful_store_bytes_total"), 5.0);
    assert_eq!(value("hello_stateful_data_file_bytes"), 5.0);
    assert_eq!(value("hello_stateful_fsync_records_count"), 1.0);
    assert_eq!(value("hello_stateful_fsync_duration_seconds_count"), 1.0);
    assert_eq!(
        value(r#"hello_stateful_http_requests_total{route="store",code="200"}"#),
        1.0
    );
    assert_eq!(
        value(r#"hello_stateful_http_requests_total{route="get",code="200"}"#),
        2.0
    );
    assert_eq!(
        value(r#"hello_stateful_http_requests_total{route="cluster",code="200"}"#),
        1.0
    );
    assert_eq!(
        value(r#"hello_stateful_http_request_duration_seconds_count{route="get"}"#),
        2.0
    );
    // Each /get and the /cluster looked the Service up once: from the DNS (the test's dnsmasq
    // gives its records no TTL, so each may go there) or from the cache.
    let sent = value(r#"hello_stateful_srv_lookups_total{result="ok"}"#);
    assert!(sent >= 1.0);
    assert_eq!(sent + value("hello_stateful_srv_cache_answers_total"), 3.0);
    // /cluster asked the one peer, itself, for its data (and its /info).
    assert_eq!(
        value(r#"hello_stateful_peer_fetches_total{result="ok"}"#),
        1.0
    );
    assert_eq!(
        value(r#"hello_stateful_http_requests_total{route="data",code="206"}"#),
        1.0
    );
    assert_eq!(
        value(r#"hello_stateful_http_requests_total{route="info",code="200"}"#),
        1.0
    );
    assert_eq!(
        value(r#"hello_stateful_budget_limit{budget="connections"}"#),
        512.0
    );
    assert_eq!(
        value(r#"hello_stateful_budget_limit{budget="request_body_bytes"}"#),
        12582912.0
    );
    assert!(value(r#"hello_stateful_budget_in_use{budget="handler_threads"}"#) >= 1.0);
    assert_eq!(
        value(r#"hello_stateful_budget_refusals_total{budget="request_heads"}"#),
        0.0
    );
    assert_eq!(value("hello_stateful_ready"), 1.0);
    assert_eq!(value("hello_stateful_volume_starts"), 1.0);
    assert!(value("process_start_time_seconds") > 1.7e9);
}

#[test]
fn a_failed_lookup_and_a_refused_request_are_counted_by_their_result() {
    let server = Server::start();
    assert_eq!(server.request("GET", "/get", b"").status, 503);
    assert_eq!(server.request("DELETE", "/metrics", b"").status, 405);
    let text = scrape(&server);
    // The test server's resolver points at an address where nothing listens.
    let failed: f64 = ["timeout", "network"]
        .iter()
        .filter_map(|r| {
            sample(
                &text,
                &format!(r#"hello_stateful_srv_lookups_total{{result="{r}"}}"#),
            )
        })
        .sum();
    assert_eq!(failed, 1.0, "{text}");
    assert_eq!(
        sample(
            &text,
            r#"hello_stateful_http_requests_total{route="wrong_method",code="405"}"#
        ),
        Some(1.0)
    );
}
