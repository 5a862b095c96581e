//! The resolver against a real DNS server (dnsmasq) and a few hand-rolled fake ones.
//!
//! Each test owns one loopback address, 127.0.53.N, so they run in parallel on port 53.

mod support;

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hello_stateful::dns::{ErrorKind, Resolver};
use support::dnsmasq::{Dnsmasq, POD_SEARCH, SERVICE, pod_ip, pod_records, pod_target};
use support::fake_dns::FakeDns;

fn addr(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 53, n)
}

fn resolver(resolv_conf: std::path::PathBuf) -> Resolver {
    Resolver::new(resolv_conf, Duration::from_millis(2000))
}

#[test]
fn short_name_resolves_through_the_pod_search_list() {
    let mut opts = pod_records(&[0, 1, 2], true);
    opts.push("local-ttl=30".into());
    let Some(mut dns) = Dnsmasq::start(
        "short_name_resolves_through_the_pod_search_list",
        addr(1),
        &opts,
    ) else {
        return;
    };
    let r = resolver(dns.write_resolv_conf(POD_SEARCH));
    let answer = r.lookup_srv("hello-stateful-service").expect("lookup");
    assert_eq!(answer.canonical, format!("{SERVICE}."));
    assert!(!answer.truncated);
    let mut expected = format!("{SERVICE}.\n");
    for i in 0..3 {
        expected.push_str(&format!("{}:8000\n", pod_target(i)));
    }
    assert_eq!(answer.to_get_body(), expected);
    assert!(
        answer
            .records
            .iter()
            .all(|s| s.priority == 0 && s.weight == 33)
    );

    // The addresses came in the additional section: served with dnsmasq gone.
    dns.stop();
    let ips = r.lookup_ipv4(&pod_target(1)).expect("from the SRV answer");
    assert_eq!(ips, [pod_ip(1)]);
}

#[test]
fn targets_sort_naturally() {
    let Some(dns) = Dnsmasq::start(
        "targets_sort_naturally",
        addr(2),
        &pod_records(&[10, 2, 1], false),
    ) else {
        return;
    };
    let r = resolver(dns.write_resolv_conf(POD_SEARCH));
    let answer = r.lookup_srv("hello-stateful-service").expect("lookup");
    let targets: Vec<_> = answer.records.iter().map(|s| s.target.clone()).collect();
    assert_eq!(targets, [1, 2, 10].map(pod_target));
}

#[test]
fn unknown_service_is_no_such_host() {
    let Some(dns) = Dnsmasq::start(
        "unknown_service_is_no_such_host",
        addr(3),
        &pod_records(&[0], false),
    ) else {
        return;
    };
    let r = resolver(dns.write_resolv_conf(POD_SEARCH));
    let err = r.lookup_srv("missing-service").expect_err("NXDOMAIN");
    // The bare name "missing-service." is REFUSED by this dnsmasq (no upstream); the error
    // reported is the first search name's.
    assert_eq!(err.to_string(), "lookup missing-service: no such host");
    assert_eq!(err.kind(), ErrorKind::NoSuchHost);
}

#[test]
fn name_without_srv_records_is_reported_as_such() {
    let opts = vec![
        "local=/cluster.local/".to_string(),
        "host-record=web.default.svc.cluster.local,10.1.1.1".to_string(),
    ];
    let Some(dns) = Dnsmasq::start(
        "name_without_srv_records_is_reported_as_such",
        addr(4),
        &opts,
    ) else {
        return;
    };
    let r = resolver(dns.write_resolv_conf(POD_SEARCH));
    let err = r
        .lookup_srv("web.default.svc.cluster.local.")
        .expect_err("no SRV");
    assert_eq!(
        err.to_string(),
        "lookup web.default.svc.cluster.local.: no SRV records"
    );
    assert_eq!(err.kind(), ErrorKind::NoRecords);
    // The same name through an A query, with the search list (4 dots < ndots 5).
    let ips = r
        .lookup_ipv4("web.default.svc.cluster.local")
        .expect("A record");
    assert_eq!(ips, [Ipv4Addr::new(10, 1, 1, 1)]);
}

#[test]
fn server_that_never_answers_fails_within_the_lookup_timeout() {
    let test = "server_that_never_answers_fails_within_the_lookup_timeout";
    let Some(hole) = FakeDns::black_hole(test, addr(5)) else {
        return;
    };
    let conf = hole.write_resolv_conf(POD_SEARCH);
    let timeout = Duration::from_millis(500);
    let r = Resolver::new(conf, timeout);
    let start = Instant::now();
    let err = r
        .lookup_srv("hello-stateful-service")
        .expect_err("no answer");
    let took = start.elapsed();
    assert_eq!(
        err.to_string(),
        "lookup hello-stateful-service: i/o timeout"
    );
    assert_eq!(err.kind(), ErrorKind::Timeout);
    eprintln!("never-answering server: error after {took:?}");
    assert!(took < timeout + Duration::from_secs(1), "took {took:?}");
}

/// Sends a raw SRV query without EDNS0 (512-byte UDP limit) and returns the reply's flags.
fn raw_udp_flags(server: Ipv4Addr, name: &str) -> u16 {
    let mut q = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
    q.extend_from_slice(&encode_name(name));
    q.extend_from_slice(&[0, 33, 0, 1]);
    // EDNS0 OPT advertising 1232 bytes, as the resolver does.
    q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sock.send_to(&q, (server, 53)).expect("send");
    let mut buf = [0u8; 65535];
    let n = sock.recv(&mut buf).expect("reply");
    assert!(n >= 4);
    u16::from_be_bytes([buf[2], buf[3]])
}

#[test]
fn seven_hundred_records_come_complete_over_tcp() {
    let Some(dns) = Dnsmasq::start(
        "seven_hundred_records_come_complete_over_tcp",
        addr(6),
        &pod_records(&(0..700).collect::<Vec<_>>(), false),
    ) else {
        return;
    };
    assert_ne!(
        raw_udp_flags(addr(6), SERVICE) & 0x0200,
        0,
        "UDP answer is truncated"
    );
    let r = resolver(dns.write_resolv_conf(POD_SEARCH));
    let answer = r.lookup_srv("hello-stateful-service").expect("lookup");
    assert!(!answer.truncated);
    assert_eq!(answer.records.len(), 700);
    for (i, srv) in answer.records.iter().enumerate() {
        assert_eq!(srv.target, pod_target(i), "natural order");
    }
}

#[test]
fn more_than_one_message_of_records_is_listed_as_far_as_it_goes() {
    let Some(dns) = Dnsmasq::start(
        "more_than_one_message_of_records_is_listed_as_far_as_it_goes",
        addr(7),
        &pod_records(&(0..760).collect::<Vec<_>>(), false),
    ) else {
        return;
    };
    let r = resolver(dns.write_resolv_conf(POD_SEARCH));
    let answer = r
        .lookup_srv("hello-stateful-service")
        .expect("partial answer is an answer");
    assert!(answer.truncated, "TCP answer had TC");
    let n = answer.records.len();
    eprintln!("{n} of 760 records fit in one TCP message");
    assert!((700..760).contains(&n), "{n} records");
    let mut targets: Vec<_> = answer.records.iter().map(|s| s.target.as_str()).collect();
    targets.dedup();
    assert_eq!(targets.len(), n, "no duplicates");
    assert!(answer.to_get_body().len() < 65_536 * 2);
}

/// `name` in DNS wire form: length-prefixed labels, then the root's zero byte.
fn encode_name(name: &str) -> Vec<u8> {
    let mut wire = Vec::new();
    for label in name.trim_end_matches('.').split('.') {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label.as_bytes());
    }
    wire.push(0);
    wire
}

/// The question name of a query, fully qualified: its labels start right after the header.
fn question_name(query: &[u8]) -> String {
    let mut name = String::new();
    let mut i = 12;
    while query[i] != 0 {
        let len = usize::from(query[i]);
        name.push_str(std::str::from_utf8(&query[i + 1..i + 1 + len]).expect("ascii"));
        name.push('.');
        i += 1 + len;
    }
    name
}

/// Builds a reply: header flags, question, and one SRV answer pointing at the question.
fn fake_reply(id: u16, qname: &str, qtype: u16, port: u16) -> Vec<u8> {
    let mut r = id.to_be_bytes().to_vec();
    r.extend_from_slice(&[0x85, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    r.extend_from_slice(&encode_name(qname));
    r.extend_from_slice(&qtype.to_be_bytes());
    r.extend_from_slice(&[0, 1]);
    let tgt = encode_name("web.example.");
    r.extend_from_slice(&[0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 30]);
    r.extend_from_slice(&((6 + tgt.len()) as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 1]);
    r.extend_from_slice(&port.to_be_bytes());
    r.extend_from_slice(&tgt);
    r
}

#[test]
fn replies_with_wrong_id_or_question_are_ignored() {
    let fake = FakeDns::start(
        "replies_with_wrong_id_or_question_are_ignored",
        addr(8),
        |query| {
            let id = u16::from_be_bytes([query[0], query[1]]);
            let name = question_name(query);
            vec![
                fake_reply(id ^ 1, &name, 33, 1),               // wrong id
                fake_reply(id, "other.example.", 33, 2),        // wrong name
                fake_reply(id, &name, 1, 3),                    // wrong type
                fake_reply(id, &name.to_uppercase(), 33, 8000), // right, in other case
            ]
        },
    );
    let Some(fake) = fake else {
        return;
    };
    let r = resolver(fake.write_resolv_conf(""));
    let answer = r.lookup_srv("svc.example.").expect("the right reply");
    assert_eq!(answer.records.len(), 1);
    assert_eq!(answer.records[0].port, 8000);
    assert_eq!(answer.canonical, "SVC.EXAMPLE.", "owner name as received");
}

#[test]
fn answers_are_cached_for_their_ttl_then_looked_up_again() {
    let ttl = Duration::from_secs(3);
    let mut opts = pod_records(&[0, 1], false);
    opts.push(format!("local-ttl={}", ttl.as_secs()));
    let Some(mut dns) = Dnsmasq::start(
        "answers_are_cached_for_their_ttl_then_looked_up_again",
        addr(9),
        &opts,
    ) else {
        return;
    };
    let r = resolver(dns.write_resolv_conf(POD_SEARCH));
    let first = r.lookup_srv("hello-stateful-service").expect("lookup");
    let fetched = Instant::now();
    dns.stop();
    let second = r.lookup_srv("hello-stateful-service");
    if fetched.elapsed() < ttl {
        let second = second.expect("served from the cache within the TTL");
        assert!(Arc::ptr_eq(&first, &second), "the cached answer itself");
    }
    // After the TTL the server is asked again, and it is gone.
    let deadline = Instant::now() + ttl + Duration::from_secs(10);
    loop {
        match r.lookup_srv("hello-stateful-service") {
            Err(e) => {
                assert!(!e.is_not_found(), "a dead server is not NXDOMAIN: {e}");
                break;
            }
            Ok(_) => assert!(Instant::now() < deadline, "still cached long after the TTL"),
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn next_server_answers_when_the_first_is_silent() {
    let Some(dns) = Dnsmasq::start(
        "next_server_answers_when_the_first_is_silent",
        addr(11),
        &pod_records(&[0], false),
    ) else {
        return;
    };
    let test = "next_server_answers_when_the_first_is_silent";
    let Some(_hole) = FakeDns::black_hole(test, addr(10)) else {
        return;
    };
    // The silent server first; one second per try, so the second server is reached well
    // within the lookup's bound.
    let conf = dns.dir().join("resolv.conf");
    std::fs::write(
        &conf,
        format!(
            "nameserver {}\nnameserver {}\n{POD_SEARCH}options timeout:1\n",
            addr(10),
            addr(11)
        ),
    )
    .expect("write resolv.conf");
    let r = Resolver::new(conf, Duration::from_secs(4));
    let answer = r
        .lookup_srv("hello-stateful-service")
        .expect("second server answers");
    assert_eq!(answer.records.len(), 1);
}
