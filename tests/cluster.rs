//! `/cluster` through the real binary: several instances on loopback addresses of their own,
//! all on one port that only the SRV records name, and dnsmasq serving the headless Service's
//! SRV records and the pods' A records behind a pod-like resolv.conf (`support::cluster`).
//!
//! Test number T owns DNS address 127.0.55.T and peer addresses 127.0.(60+T).N, so the tests
//! run in parallel.

mod support;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hello_stateful::json::Json;
use support::cluster::{Cluster, Pod};
use support::dnsmasq::{Dnsmasq, POD_SEARCH, pod_target};
use support::hostname;
use support::server::{Options, Server, head};

/// The page's head as the entry server writes it.
fn page_head() -> String {
    format!("You've hit {}\nData stored in the cluster:\n", hostname())
}

fn line(ordinal: usize, shown: &str) -> String {
    format!("- {}: {shown}\n", pod_target(ordinal))
}

/// The page's line for `ordinal`, which must be an error line; returns its reason.
fn error_of(page: &str, ordinal: usize) -> String {
    let prefix = format!("- {}: error: ", pod_target(ordinal));
    let line = page
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no error line for pod {ordinal}:\n{page}"));
    line[prefix.len()..].to_string()
}

#[test]
fn every_pods_data_in_natural_order() {
    // Shuffled SRV records, and ordinal 10 to show natural order (-2 before -10).
    let data = |i: usize| format!("data of pod {i}, stored at its own address").into_bytes();
    let Some(cluster) = Cluster::start(
        "every_pods_data_in_natural_order",
        0,
        &[
            (10, Pod::Up(data(10))),
            (1, Pod::Up(data(1))),
            (2, Pod::Up(data(2))),
            (0, Pod::Up(data(0))),
        ],
    ) else {
        return;
    };
    // The ordinals between 2 and 10 have no record: each gets a line saying so.
    let gaps: String = (3..10)
        .map(|n| line(n, "not in the Service: not ready, or gone"))
        .collect();
    let expected = page_head()
        + &line(0, "data of pod 0, stored at its own address")
        + &line(1, "data of pod 1, stored at its own address")
        + &line(2, "data of pod 2, stored at its own address")
        + &gaps
        + &line(10, "data of pod 10, stored at its own address");
    assert_eq!(cluster.page(), expected);
    // Any pod gives the same page (here they all share this machine's hostname).
    for (_, server) in &cluster.servers {
        assert_eq!(server.request("GET", "/cluster", b"").text(), expected);
    }
    // Every peer was asked at the port its SRV record gave, not at 8000.
    assert_ne!(cluster.port, 8000);
    assert_eq!(cluster.entry().addr.port(), cluster.port);
}

#[test]
fn head_cluster_sends_the_headers_and_no_body() {
    let Some(cluster) = Cluster::start(
        "head_cluster_sends_the_headers_and_no_body",
        1,
        &[
            (0, Pod::Up(b"zero".to_vec())),
            (1, Pod::Up(b"one".to_vec())),
        ],
    ) else {
        return;
    };
    let expected = page_head() + &line(0, "zero") + &line(1, "one");
    let (reply, after) = head(cluster.entry().addr, "/cluster");
    assert_eq!(reply.status, 200);
    assert_eq!(after, b"");
    let length = expected.len().to_string();
    assert_eq!(reply.header("Content-Length"), Some(length.as_str()));
}

#[test]
fn a_pod_that_is_down_or_unresolvable_gets_an_error_line() {
    let Some(cluster) = Cluster::start(
        "a_pod_that_is_down_or_unresolvable_gets_an_error_line",
        2,
        &[
            (0, Pod::Up(b"zero".to_vec())),
            (1, Pod::Down),
            (2, Pod::Up(b"two".to_vec())),
            (3, Pod::Unresolvable),
        ],
    ) else {
        return;
    };
    let page = cluster.page();
    let down = error_of(&page, 1);
    let unresolvable = error_of(&page, 3);
    let expected = page_head()
        + &line(0, "zero")
        + &line(1, &format!("error: {down}"))
        + &line(2, "two")
        + &line(3, &format!("error: {unresolvable}"));
    assert_eq!(page, expected);
    assert_eq!(
        down,
        format!(
            "GET http://127.0.62.2:{}/data: connection refused",
            cluster.port
        )
    );
    assert_eq!(
        unresolvable,
        format!("lookup {}: no such host", pod_target(3))
    );
}

#[test]
fn a_pod_that_never_answers_costs_its_timeout_only() {
    let Some(cluster) = Cluster::start(
        "a_pod_that_never_answers_costs_its_timeout_only",
        3,
        &[
            (0, Pod::Up(b"zero".to_vec())),
            (1, Pod::Stalled),
            (2, Pod::Up(b"two".to_vec())),
        ],
    ) else {
        return;
    };
    let started = Instant::now();
    let page = cluster.page();
    let took = started.elapsed();
    let stalled = error_of(&page, 1);
    assert_eq!(
        page,
        page_head() + &line(0, "zero") + &line(1, &format!("error: {stalled}")) + &line(2, "two")
    );
    assert!(stalled.contains("timed out after 500 ms"), "{stalled}");
    // About PEER_TIMEOUT_MS; the bound is loose because timings belong to benchmarks, but a
    // page that waits for the stalled pod much longer than its timeout must fail.
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn data_over_the_cap_shows_its_tail_and_says_so() {
    // Distinct bytes all along, so a tail taken from the wrong place shows.
    let big: Vec<u8> = (0..10_000u32)
        .map(|i| b'a' + (i % 26) as u8)
        .chain(*b"THE END")
        .collect();
    let exact: Vec<u8> = (0..4096u32).map(|i| b'A' + (i % 26) as u8).collect();
    let Some(cluster) = Cluster::start(
        "data_over_the_cap_shows_its_tail_and_says_so",
        4,
        &[
            (0, Pod::Up(b"small".to_vec())),
            (1, Pod::Up(big.clone())),
            (2, Pod::Up(exact.clone())),
        ],
    ) else {
        return;
    };
    let tail = String::from_utf8(big[big.len() - 4096..].to_vec()).unwrap();
    let expected = page_head()
        + &line(0, "small")
        + &line(1, &format!("(last 4096 of 10007 bytes) {tail}"))
        + &line(2, std::str::from_utf8(&exact).unwrap());
    assert_eq!(cluster.page(), expected);
    // Each peer sent only the tail it was asked for (`Range`), its length in Content-Range.
    for (ordinal, server) in &cluster.servers {
        let log = server.log_text();
        assert!(log.contains("GET /data 206"), "pod {ordinal}:\n{log}");
    }
}

#[test]
fn failed_lookup_is_503_with_one_line() {
    // The zone is served but the Service has no record: NXDOMAIN, as with no ready endpoint.
    let Some(dns) = Dnsmasq::start(
        "failed_lookup_is_503_with_one_line",
        Ipv4Addr::new(127, 0, 55, 5),
        &["local=/cluster.local/".to_string()],
    ) else {
        return;
    };
    let server = Server::start_with(Options::new().env(
        "RESOLV_CONF",
        dns.write_resolv_conf(POD_SEARCH).display().to_string(),
    ));
    let reply = server.request("GET", "/cluster", b"");
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (503, "lookup hello-stateful-service: no such host\n")
    );
}

#[test]
fn the_cluster_view_as_json_for_a_client_that_asks() {
    let Some(cluster) = Cluster::start(
        "the_cluster_view_as_json_for_a_client_that_asks",
        6,
        &[(0, Pod::Up(b"zero\n\x00".to_vec())), (2, Pod::Down)],
    ) else {
        return;
    };
    let accept = [("Accept", "application/json")];
    let reply = support::server::try_request(cluster.entry().addr, "GET", "/cluster", b"", &accept)
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    let view = Json::parse(&reply.text()).unwrap_or_else(|e| panic!("{e}: {}", reply.text()));
    assert_eq!(
        view.get("served_by").and_then(Json::as_str),
        Some(hostname().as_str())
    );
    let Some(Json::Array(pods)) = view.get("pods") else {
        panic!("{}", reply.text())
    };
    let field = |i: usize, name: &str| pods[i].get(name).cloned().unwrap_or(Json::Null);
    let names: Vec<Json> = (0..pods.len()).map(|i| field(i, "name")).collect();
    let mut expected = vec!["hello-stateful-0", "hello-stateful-1", "hello-stateful-2"];
    // The server that answered runs as this machine: not one of the Service's pods, so its own
    // row comes last (the view always holds the pod that answered).
    let host = hostname();
    expected.push(&host);
    assert_eq!(
        names,
        expected
            .iter()
            .map(|n| Json::String(n.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(field(3, "this"), Json::Bool(true));
    assert_eq!(field(3, "in_service"), Json::Bool(false));
    assert_eq!(reply.header("Vary"), Some("Accept"));
    // Pod 0: its data, and its /info as it answered it.
    let data = field(0, "data");
    assert_eq!(data.get("tail").and_then(Json::as_str), Some("zero\n\u{0}"));
    assert_eq!(data.get("bytes").and_then(Json::as_u64), Some(6));
    assert_eq!(field(0, "in_service"), Json::Bool(true));
    let info = field(0, "info");
    assert_eq!(info.get("data_bytes").and_then(Json::as_u64), Some(6));
    assert_eq!(info.get("ready"), Some(&Json::Bool(true)));
    // Pod 1: no record; pod 2: a record, but nobody there.
    assert_eq!(field(1, "in_service"), Json::Bool(false));
    assert_eq!(
        field(1, "error").as_str(),
        Some("not in the Service: not ready, or gone")
    );
    assert_eq!(field(2, "data"), Json::Null);
    assert!(
        field(2, "error")
            .as_str()
            .is_some_and(|e| e.ends_with("connection refused"))
    );
    // curl's `*/*` still gets the page of text.
    let any = [("Accept", "*/*")];
    let text =
        support::server::try_request(cluster.entry().addr, "GET", "/cluster", b"", &any).unwrap();
    assert!(text.text().starts_with("You've hit "), "{}", text.text());
}
