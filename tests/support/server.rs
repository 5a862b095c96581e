//! A running hello-stateful binary for integration tests: its own data directory and port,
//! killed and cleaned up in `Drop`, also when the test fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::TempDir;

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: TempDir,
    pub log: PathBuf,
}

/// Settings for a test server; `env` entries override the defaults.
pub struct Options {
    pub env: Vec<(String, String)>,
    /// Command prefix such as `prlimit --nofile=32:32 --`, for tests of resource limits.
    pub wrapper: Vec<String>,
    /// Run as this user (the test must be root); the data directory is made writable for it.
    pub uid: Option<u32>,
}

impl Options {
    pub fn new() -> Options {
        Options {
            env: Vec::new(),
            wrapper: Vec::new(),
            uid: None,
        }
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Options {
        self.env.push((key.to_string(), value.into()));
        self
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(Options::new())
    }

    pub fn start_with(options: Options) -> Server {
        let dir = TempDir::new("server");
        let log = dir.path().join("server.log");
        // An unused port, re-bound by the server at once; a clash shows up as a start-up error.
        // A test that gives its own LISTEN_ADDR (a loopback address per peer) is served there.
        let addr: SocketAddr = match options.env.iter().rev().find(|(k, _)| k == "LISTEN_ADDR") {
            Some((_, listen)) => listen.parse().expect("LISTEN_ADDR option is ip:port"),
            None => format!("127.0.0.1:{}", free_port()).parse().unwrap(),
        };
        // Another user may not be able to reach the build output (a clone in a folder only its
        // owner may enter, such as root's home): that user gets a copy it can reach.
        let binary = match options.uid {
            Some(_) => super::binary_for_any_user(&dir),
            None => PathBuf::from(env!("CARGO_BIN_EXE_hello-stateful")),
        };
        let mut command = match options.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        // Without a DNS server of the test's own, /get must fail fast: nothing listens here.
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(
            &resolv,
            "nameserver 127.0.0.254\noptions timeout:1 attempts:1\n",
        )
        .unwrap();
        command
            .env_clear()
            .env("LISTEN_ADDR", addr.to_string())
            .env("DATA_FILE", dir.path().join("data/hello"))
            .env("RESOLV_CONF", &resolv)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in &options.env {
            command.env(k, v);
        }
        if let Some(uid) = options.uid {
            use std::os::unix::fs::PermissionsExt;
            use std::os::unix::process::CommandExt;
            let open = std::fs::Permissions::from_mode(0o777);
            std::fs::set_permissions(dir.path(), open.clone()).unwrap();
            std::fs::create_dir_all(dir.path().join("data")).unwrap();
            std::fs::set_permissions(dir.path().join("data"), open).unwrap();
            command.uid(uid).gid(uid);
        }
        let child = command.spawn().expect("start hello-stateful");
        let mut server = Server {
            child,
            addr,
            dir,
            log,
        };
        server.wait_ready();
        server
    }

    /// Polls /healthz until it answers; panics with the server's log if it never does.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("server exited at start with {status}: {}", self.log_text());
            }
            if let Ok(r) = try_request(self.addr, "GET", "/healthz", b"", &[])
                && r.status == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("server never became healthy: {}", self.log_text());
    }

    pub fn data_file(&self) -> PathBuf {
        self.dir.path().join("data/hello")
    }

    pub fn data(&self) -> Vec<u8> {
        std::fs::read(self.data_file()).unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        request(self.addr, method, path, body)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`; None if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Resident memory of the server, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// The most resident memory the server has had since it started, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Descriptors the server has open.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, Iterator::count)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill(); // it may have exited already
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub fn request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Reply {
    try_request(addr, method, path, body, &[]).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// One HTTP/1.1 request on a new connection, with a 10 s bound on every read.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> std::io::Result<Reply> {
    let mut head = String::new();
    if !headers.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
    }) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut stream = send(addr, method, path, &head, body)?;
    read_reply(&mut stream, method == "HEAD")
}

/// `HEAD path` on a new connection, read until the server closes it: the reply, and whatever
/// came after its head (nothing, from a server that answers HEAD as it should).
pub fn head(addr: SocketAddr, path: &str) -> (Reply, Vec<u8>) {
    exchange(addr, "HEAD", path, &[])
}

/// A bodiless request with `headers` on a new connection, read until the server closes it:
/// the reply's head (its body left empty), and every byte that came after the head.
pub fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (Reply, Vec<u8>) {
    let lines: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let exchange = || {
        let mut stream = send(addr, method, path, &lines, b"")?;
        let reply = read_reply(&mut stream, true)?;
        let mut after = Vec::new();
        stream.read_to_end(&mut after)?;
        Ok::<_, std::io::Error>((reply, after))
    };
    exchange().unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// Connects, with a 10 s bound on every read, and sends the request: `headers` are lines
/// ending in CRLF, after `Host` and `Connection: close`.
fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let head =
        format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{headers}\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    Ok(stream)
}

/// Reads one response (Content-Length framed) from the stream.
pub fn read_reply(stream: &mut impl Read, head_only: bool) -> std::io::Result<Reply> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed before a response",
            ));
        }
        raw.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&raw);
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; if head_only { 0 } else { length }];
    stream.read_exact(&mut body)?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}
