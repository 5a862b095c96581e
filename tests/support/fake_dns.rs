//! Test fixture: a hand-rolled DNS server for what dnsmasq will not do, such as never answering
//! or answering with the wrong id. It listens on port 53 of a loopback address of the test's
//! own (resolv.conf cannot name another port), so it needs root: without, the test prints a
//! `SKIPPED:` line and returns, except under `CI`, as with dnsmasq. Stopped in `Drop`.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::dnsmasq::write_resolv_conf;
use super::{TempDir, runnable};

pub struct FakeDns {
    addr: Ipv4Addr,
    dir: TempDir,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDns {
    /// Answers each UDP query on `addr`:53 with the datagrams `respond` builds from it; none
    /// is silence. Returns `None` after a skip line when port 53 cannot be bound here.
    pub fn start(
        test: &str,
        addr: Ipv4Addr,
        mut respond: impl FnMut(&[u8]) -> Vec<Vec<u8>> + Send + 'static,
    ) -> Option<FakeDns> {
        let sock = UdpSocket::bind((addr, 53));
        let why = match &sock {
            Ok(_) => String::new(),
            Err(e) => format!("cannot bind {addr}:53 ({e}): needs root"),
        };
        if !runnable(test, sock.is_ok(), &why) {
            return None;
        }
        let sock = sock.unwrap();
        // Woken now and then to see whether the test is over.
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stopped.load(Ordering::Relaxed) {
                let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                for reply in respond(&buf[..n]) {
                    // The client may have given up on this query; its test reports that.
                    let _ = sock.send_to(&reply, peer);
                }
            }
        });
        Some(FakeDns {
            addr,
            dir: TempDir::new("fake-dns"),
            stop,
            thread: Some(thread),
        })
    }

    /// A server that reads every query and never answers: what a hung DNS server looks like.
    pub fn black_hole(test: &str, addr: Ipv4Addr) -> Option<FakeDns> {
        FakeDns::start(test, addr, |_| Vec::new())
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// Writes `resolv.conf` in the fixture's directory: `nameserver <addr>` then `extra`.
    pub fn write_resolv_conf(&self, extra: &str) -> PathBuf {
        write_resolv_conf(self.dir.path(), self.addr, extra)
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // A panic in `respond` has failed the test's own lookups already.
            let _ = thread.join();
        }
    }
}
