//! Test fixture: a StatefulSet of real instances, each on a loopback address of its own, all on
//! one port that only the SRV records name, and dnsmasq serving the headless Service's SRV
//! records and the pods' A records behind a pod-like resolv.conf. Servers and dnsmasq are
//! killed in `Drop`.
//!
//! Test number T owns DNS address 127.0.55.T and pod addresses 127.0.(60+T).N (the resolver
//! tests use 127.0.53.N, the /get tests 127.0.54.N), so the tests run in parallel: the /cluster
//! tests (tests/cluster.rs) take T from 0 to 9, the page's (tests/page.rs) from 10.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use super::dnsmasq::{Dnsmasq, POD_SEARCH, pod_records_at};
use super::server::{Options, Server};

/// One pod of the test's StatefulSet, as the peer fetching its `/data` finds it.
pub enum Pod {
    /// A running server that stored this data.
    Up(Vec<u8>),
    /// Its address has no listener: connections are refused.
    Down,
    /// The connection is accepted and then nothing is ever sent back.
    Stalled,
    /// In the SRV answer, but its name has no A record.
    Unresolvable,
}

/// How the pods run, beyond what [`Pod`] says of each.
pub struct Setup {
    /// Each server's `PEER_TIMEOUT_MS`.
    pub peer_timeout_ms: u64,
    /// Each server runs as hostname `hello-stateful-<ordinal>`, as in its pod, in a UTS
    /// namespace of its own (root only, as dnsmasq on port 53 is); otherwise all of them have
    /// this machine's hostname.
    pub pod_hostnames: bool,
    /// The TTL of dnsmasq's answers, in seconds: how long the servers keep an answer after
    /// the Service changed. 0, dnsmasq's own default for its records, is never kept.
    pub dns_ttl: u32,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            peer_timeout_ms: 500,
            pod_hostnames: false,
            dns_ttl: 0,
        }
    }
}

/// A cluster of pods `hello-stateful-<ordinal>` and the DNS that lists them.
pub struct Cluster {
    /// Servers by ordinal, for the pods that are up.
    pub servers: Vec<(usize, Server)>,
    /// Listeners of stalled pods: connections complete in their backlog and are never read.
    _stalled: Vec<TcpListener>,
    pub port: u16,
    pub dns: Dnsmasq,
    /// The pods the Service lists, in the order of its SRV records, each with its A record.
    records: Vec<(usize, Option<Ipv4Addr>)>,
    dns_ttl: u32,
}

impl Cluster {
    /// Starts DNS on 127.0.55.`test` and pod `ordinal` on 127.0.(60+`test`).(ordinal+1). The
    /// SRV records are given in the order of `pods`, which need not be sorted. None when
    /// dnsmasq cannot run here (a `SKIPPED:` line says why).
    pub fn start(name: &str, test: u8, pods: &[(usize, Pod)]) -> Option<Cluster> {
        Cluster::start_with(name, test, pods, &Setup::default())
    }

    pub fn start_with(
        name: &str,
        test: u8,
        pods: &[(usize, Pod)],
        setup: &Setup,
    ) -> Option<Cluster> {
        let ip = |ordinal: usize| Ipv4Addr::new(127, 0, 60 + test, ordinal as u8 + 1);
        let ips: Vec<Ipv4Addr> = pods.iter().map(|&(i, _)| ip(i)).collect();
        let port = common_port(&ips);
        let records: Vec<(usize, Option<Ipv4Addr>)> = pods
            .iter()
            .map(|(i, pod)| (*i, (!matches!(pod, Pod::Unresolvable)).then(|| ip(*i))))
            .collect();
        let options = options(&records, port, setup.dns_ttl);
        let dns = Dnsmasq::start(name, Ipv4Addr::new(127, 0, 55, test), &options)?;
        let resolv_conf = dns.write_resolv_conf(POD_SEARCH).display().to_string();
        let mut servers = Vec::new();
        let mut stalled = Vec::new();
        for (i, pod) in pods {
            match pod {
                Pod::Up(data) => {
                    let mut options = Options::new()
                        .env("LISTEN_ADDR", format!("{}:{port}", ip(*i)))
                        .env("RESOLV_CONF", resolv_conf.clone())
                        .env("PEER_TIMEOUT_MS", setup.peer_timeout_ms.to_string());
                    if setup.pod_hostnames {
                        // `sh -c SCRIPT NAME BINARY`: the fixture appends the binary.
                        let script = "hostname \"$0\" && exec \"$1\"";
                        let name = format!("hello-stateful-{i}");
                        options.wrapper = ["unshare", "--uts", "--", "sh", "-c", script, &name]
                            .map(String::from)
                            .to_vec();
                    }
                    let server = Server::start_with(options);
                    let stored = server.request("POST", "/store", data);
                    assert_eq!(stored.status, 200, "{}", stored.text());
                    assert_eq!(&server.data(), data);
                    servers.push((*i, server));
                }
                Pod::Stalled => stalled.push(TcpListener::bind((ip(*i), port)).unwrap()),
                Pod::Down | Pod::Unresolvable => {}
            }
        }
        Some(Cluster {
            servers,
            _stalled: stalled,
            port,
            dns,
            records,
            dns_ttl: setup.dns_ttl,
        })
    }

    /// The server of the first pod that is up: the one the tests ask.
    pub fn entry(&self) -> &Server {
        &self.servers[0].1
    }

    /// The server of pod `ordinal`, which must be up.
    pub fn server(&self, ordinal: usize) -> &Server {
        let found = self.servers.iter().find(|(i, _)| *i == ordinal);
        &found.unwrap_or_else(|| panic!("pod {ordinal} is not up")).1
    }

    /// Pod `ordinal`'s address: where its server listens, or would.
    pub fn addr(&self, ordinal: usize) -> SocketAddr {
        let ip = self.dns.addr().octets();
        SocketAddr::from(([127, 0, 60 + ip[3], ordinal as u8 + 1], self.port))
    }

    /// Kills pod `ordinal`'s server: its address then refuses connections.
    pub fn stop(&mut self, ordinal: usize) {
        let at = self.servers.iter().position(|(i, _)| *i == ordinal);
        self.servers
            .remove(at.unwrap_or_else(|| panic!("pod {ordinal} is not up")));
    }

    /// Takes pod `ordinal`'s records out of the DNS, as the headless Service does with a pod
    /// that is not ready or gone. Servers see it once the answers they keep expire.
    pub fn drop_from_service(&mut self, ordinal: usize) {
        self.records.retain(|(i, _)| *i != ordinal);
        let options = options(&self.records, self.port, self.dns_ttl);
        self.dns.restart(&options);
    }

    /// `GET /cluster` on the entry server; panics with the DNS log when it is not a 200.
    pub fn page(&self) -> String {
        let reply = self.entry().request("GET", "/cluster", b"");
        assert_eq!(
            reply.status,
            200,
            "{}\ndnsmasq:\n{}",
            reply.text(),
            self.dns.log()
        );
        reply.text()
    }
}

/// dnsmasq's options for `records` at `port`, its answers valid for `ttl` seconds.
fn options(records: &[(usize, Option<Ipv4Addr>)], port: u16, ttl: u32) -> Vec<String> {
    let ordinals: Vec<usize> = records.iter().map(|&(i, _)| i).collect();
    let address = |i| records.iter().find(|(j, _)| *j == i).and_then(|&(_, a)| a);
    let mut options = pod_records_at(&ordinals, port, address);
    options.push(format!("local-ttl={ttl}"));
    options
}

/// A port free on every one of `ips` at once, so all pods share it as StatefulSet pods do.
/// Found by binding them all; a port taken on one of them is skipped.
fn common_port(ips: &[Ipv4Addr]) -> u16 {
    for _ in 0..50 {
        let first = TcpListener::bind((ips[0], 0)).unwrap();
        let port = first.local_addr().unwrap().port();
        let rest: Result<Vec<TcpListener>, _> = ips[1..]
            .iter()
            .map(|&ip| TcpListener::bind((ip, port)))
            .collect();
        // 8000 is the default: a port that only the SRV records give must be another one.
        if rest.is_ok() && port != 8000 {
            return port;
        }
    }
    panic!("no port free on all of {ips:?}");
}
