//! Test fixture: a real dnsmasq serving given records on a loopback address, port 53, plus a
//! resolv.conf pointing at it; dnsmasq is killed and the files removed in `Drop`.
//!
//! Each test picks its own
//! address in 127.0.0.0/8 (Linux routes the whole block to `lo`), so tests run in parallel.
//! Port 53 is fixed because resolv.conf cannot name another port, so this needs root (or
//! CAP_NET_BIND_SERVICE): without dnsmasq or root, tests print a loud `SKIPPED:` line and
//! return, except under `CI`, where a skip would hide a gap and panics instead.

use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::server::{Options, Server};
use super::{TempDir, is_root, runnable};

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// What Kubernetes writes into a pod's resolv.conf for namespace `default`, after `nameserver`.
pub const POD_SEARCH: &str = "search default.svc.cluster.local svc.cluster.local cluster.local\n\
                              options ndots:5\n";
/// The headless Service's fully qualified name, whose SRV records list the pods.
pub const SERVICE: &str = "hello-stateful-service.default.svc.cluster.local";

/// Pod `i`'s DNS name under the Service.
pub fn pod_name(i: usize) -> String {
    format!("hello-stateful-{i}.{SERVICE}")
}

/// Pod `i`'s name as its SRV record targets it and `/get` and `/cluster` show it: fully
/// qualified, with the final dot.
pub fn pod_target(i: usize) -> String {
    format!("{}.", pod_name(i))
}

/// Pod `i`'s address in the tests whose pods are not servers of their own: 10.244.0.<i+1>.
pub fn pod_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 0, i as u8 + 1)
}

/// dnsmasq options for the headless Service with pods `ordinals` on port 8000, with A records
/// at [`pod_ip`] when `with_a`, as CoreDNS has them.
pub fn pod_records(ordinals: &[usize], with_a: bool) -> Vec<String> {
    pod_records_at(ordinals, 8000, |i| with_a.then(|| pod_ip(i)))
}

/// dnsmasq options for the headless Service: one SRV record per pod in `ordinals` (in that
/// order, which is the order dnsmasq answers in) at `port`, weighted as Kubernetes does
/// (`floor(100/n)`), and an A record for each pod that `address` gives one. The zone is served
/// as its authority, so names outside the records are NXDOMAIN rather than forwarded.
pub fn pod_records_at(
    ordinals: &[usize],
    port: u16,
    address: impl Fn(usize) -> Option<Ipv4Addr>,
) -> Vec<String> {
    let mut options = vec!["local=/cluster.local/".to_string()];
    for &i in ordinals {
        let weight = 100 / ordinals.len();
        options.push(format!(
            "srv-host={SERVICE},{},{port},0,{weight}",
            pod_name(i)
        ));
        if let Some(ip) = address(i) {
            options.push(format!("host-record={},{ip}", pod_name(i)));
        }
    }
    options
}

/// Whether tests that need dnsmasq and port 53 can run. Prints `SKIPPED: <test>: <why>` and
/// returns false when they cannot; panics instead when the `CI` variable is set.
pub fn available(test: &str) -> bool {
    if !Path::new(DNSMASQ).exists() {
        runnable(test, false, "dnsmasq not installed")
    } else {
        runnable(test, is_root(), "not root (dnsmasq must bind port 53)")
    }
}

/// A running dnsmasq.
pub struct Dnsmasq {
    child: Option<Child>,
    addr: Ipv4Addr,
    dir: TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq on `addr`:53 with `options` (dnsmasq long options without the leading
    /// dashes, such as `srv-host=...`, `host-record=...`, `local=/cluster.local/`,
    /// `local-ttl=5`) and waits until it accepts connections. Returns `None` after printing
    /// a skip line when dnsmasq cannot run here (see [`available`]).
    pub fn start(test: &str, addr: Ipv4Addr, options: &[String]) -> Option<Dnsmasq> {
        if !available(test) {
            return None;
        }
        let mut server = Dnsmasq {
            child: None,
            addr,
            dir: TempDir::new("dnsmasq"),
        };
        server.spawn(options);
        Some(server)
    }

    /// Stops dnsmasq and starts it again on the same address with `options` instead, as the
    /// cluster DNS changes its answers when the Service's endpoints change (dnsmasq re-reads
    /// no `srv-host` on SIGHUP). The folder, and so the resolv.conf servers were given, stays.
    pub fn restart(&mut self, options: &[String]) {
        self.stop();
        self.spawn(options);
    }

    fn spawn(&mut self, options: &[String]) {
        let log = fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("dnsmasq.log"))
            .expect("log file");
        let log_err = log.try_clone().expect("log file");
        let mut cmd = Command::new(DNSMASQ);
        cmd.args([
            "--no-resolv",
            "--no-hosts",
            "--keep-in-foreground",
            // No /etc/dnsmasq.conf: only what the test asks for.
            "--conf-file=/dev/null",
            "--bind-interfaces",
            "--port=53",
            // No pid file: parallel instances would fight over /run/dnsmasq.pid.
            "--pid-file=",
            "--log-facility=-",
            "--log-queries",
        ])
        .arg(format!("--listen-address={}", self.addr))
        .args(options.iter().map(|o| format!("--{o}")))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
        self.child = Some(cmd.spawn().expect("spawn dnsmasq"));
        self.wait_ready();
    }

    /// dnsmasq opens its UDP and TCP sockets together before serving, so an accepted TCP
    /// connection means both are ready.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let target = SocketAddr::from((self.addr, 53));
        loop {
            if TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("dnsmasq exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq not ready on {target} after 10 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `resolv.conf` in the fixture's directory: `nameserver <addr>` then `extra`.
    pub fn write_resolv_conf(&self, extra: &str) -> PathBuf {
        write_resolv_conf(self.dir.path(), self.addr, extra)
    }

    /// dnsmasq's log so far (queries are logged), for failure messages.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(self.dir.path().join("dnsmasq.log")) {
            // A partial log is still useful in a failure message.
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Kills dnsmasq now (the drop does the same).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // It may have exited already; either way it is gone after wait().
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes `<dir>/resolv.conf` with `nameserver <server>` and then `extra`.
pub fn write_resolv_conf(dir: &Path, server: Ipv4Addr, extra: &str) -> PathBuf {
    let path = dir.join("resolv.conf");
    fs::write(&path, format!("nameserver {server}\n{extra}")).expect("write resolv.conf");
    path
}

/// A server at `ip` (on a free port) with DNS at `dns_ip` listing it as the StatefulSet's only
/// pod, so `/get` and `/cluster` succeed; None when dnsmasq cannot run here.
pub fn server_with_dns(test: &str, dns_ip: Ipv4Addr, ip: Ipv4Addr) -> Option<(Dnsmasq, Server)> {
    let addr = std::net::TcpListener::bind((ip, 0))
        .and_then(|probe| probe.local_addr())
        .unwrap();
    let records = pod_records_at(&[0], addr.port(), |_| Some(ip));
    let dns = Dnsmasq::start(test, dns_ip, &records)?;
    let resolv_conf = dns.write_resolv_conf(POD_SEARCH);
    let server = Server::start_with(
        Options::new()
            .env("LISTEN_ADDR", addr.to_string())
            .env("RESOLV_CONF", resolv_conf.display().to_string()),
    );
    Some((dns, server))
}
