//! `/get` through the real binary, inside a pod-like resolver set-up: a resolv.conf with the
//! pod's search list and `ndots:5`, and dnsmasq serving the headless Service's SRV records.
//!
//! Each test owns one loopback address, 127.0.54.N (the resolver tests use 127.0.53.N), so they
//! run in parallel on port 53.

mod support;

use std::net::Ipv4Addr;

use support::dnsmasq::{Dnsmasq, POD_SEARCH, SERVICE, pod_records, pod_target};
use support::server::{Options, Server, head};

fn addr(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 54, n)
}

/// The server, with the pod's resolv.conf pointing at `dns`.
fn server_for(dns: &Dnsmasq) -> Server {
    Server::start_with(Options::new().env(
        "RESOLV_CONF",
        dns.write_resolv_conf(POD_SEARCH).display().to_string(),
    ))
}

/// The `/get` body for pods `0..n` in order.
fn get_body(n: usize) -> String {
    let mut body = format!("{SERVICE}.\n");
    for i in 0..n {
        body.push_str(&format!("{}:8000\n", pod_target(i)));
    }
    body
}

#[test]
fn twelve_pods_are_listed_in_natural_order() {
    // Shuffled on purpose: the order on the page must not depend on the server's.
    let order = [7, 10, 2, 0, 11, 5, 1, 9, 3, 8, 4, 6];
    let Some(dns) = Dnsmasq::start(
        "twelve_pods_are_listed_in_natural_order",
        addr(1),
        &pod_records(&order, true),
    ) else {
        return;
    };
    let server = server_for(&dns);
    let reply = server.request("GET", "/get", b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text(), get_body(12), "dnsmasq log:\n{}", dns.log());
    assert!(
        reply.text().find("-2.").unwrap() < reply.text().find("-10.").unwrap(),
        "-2 before -10"
    );
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
}

#[test]
fn the_seeds_three_pods_come_back_sorted() {
    // The seed's documented output lists them 2, 1, 0 (Go's random order); ours is sorted.
    let Some(dns) = Dnsmasq::start(
        "the_seeds_three_pods_come_back_sorted",
        addr(2),
        &pod_records(&[2, 1, 0], true),
    ) else {
        return;
    };
    let server = server_for(&dns);
    let reply = server.request("GET", "/get", b"");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.text(),
        "hello-stateful-service.default.svc.cluster.local.\n\
         hello-stateful-0.hello-stateful-service.default.svc.cluster.local.:8000\n\
         hello-stateful-1.hello-stateful-service.default.svc.cluster.local.:8000\n\
         hello-stateful-2.hello-stateful-service.default.svc.cluster.local.:8000\n"
    );
}

#[test]
fn head_get_sends_the_headers_and_no_body() {
    let Some(dns) = Dnsmasq::start(
        "head_get_sends_the_headers_and_no_body",
        addr(3),
        &pod_records(&[0, 1, 2], true),
    ) else {
        return;
    };
    let server = server_for(&dns);
    let (reply, after) = head(server.addr, "/get");
    assert_eq!(reply.status, 200);
    // Everything the server sent is the head: the connection closed right after it.
    assert_eq!(after, b"");
    // The length announced is the GET body's.
    let length = get_body(3).len().to_string();
    assert_eq!(reply.header("Content-Length"), Some(length.as_str()));
}

#[test]
fn no_endpoints_is_503_no_such_host() {
    // Kubernetes answers NXDOMAIN for a headless Service with no ready endpoint: here the
    // zone is served, but holds no record of the Service at all.
    let Some(dns) = Dnsmasq::start(
        "no_endpoints_is_503_no_such_host",
        addr(4),
        &["local=/cluster.local/".to_string()],
    ) else {
        return;
    };
    let server = server_for(&dns);
    let reply = server.request("GET", "/get", b"");
    assert_eq!(
        (reply.status, reply.text().as_str()),
        (503, "lookup hello-stateful-service: no such host\n")
    );
}

#[test]
fn seven_hundred_pods_come_back_whole_over_tcp() {
    // Without A records: with an A record for each of about 200 targets or more, dnsmasq
    // writes compression pointers beyond 16 KiB and its answers no longer decode.
    let indexes: Vec<usize> = (0..700).rev().collect();
    let Some(dns) = Dnsmasq::start(
        "seven_hundred_pods_come_back_whole_over_tcp",
        addr(5),
        &pod_records(&indexes, false),
    ) else {
        return;
    };
    let server = server_for(&dns);
    let reply = server.request("GET", "/get", b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.text().lines().count(), 701);
    // About 60 KiB of records cannot come in one 1232-byte UDP answer: all of them means TCP.
    assert_eq!(reply.text(), get_body(700));
}
