//! The HTTP front: handler threads that take requests from tiny_http, judge each one's framing
//! before its body is touched, read bodies within their budget, and send the answer.
//!
//! tiny_http 0.12 (the latest release) has behaviours a pod must not inherit; each guard here
//! answers one of them (tiny_http's `src/request.rs`, `src/client.rs`, `src/util/*.rs`):
//!
//! - An unparsable `Content-Length` is taken as "no body" (`request::new_request`), and the body
//!   is then parsed as the next request on the connection. [`Framing`] judges every request
//!   first; a bad one is answered 400 and its connection closed ([`Front::refuse`]), so nothing
//!   after it is read as a request.
//! - Bodies over 1024 bytes, chunked and `Expect: 100-continue` bodies are read from the socket
//!   by whichever thread reads the body, and nothing bounds how long that takes or how many
//!   are read at once. Bodies are reserved from [`budgets::BODY_BYTES`] by their declared length
//!   before reading (past it: 503), and the connection watch times out a stalled one.
//! - `recv` hands requests to whatever threads call it, one at a time. A handler that blocks (a
//!   slow upload, a client that does not read its answer, a DNS lookup) must not stall the
//!   rest, so the last idle handler starts another before it runs a request, up to the budget.
//! - Dropping a request whose body was not read drains it with `vec![0; remaining]`
//!   (`util/equal_reader.rs`), `remaining` being the declared length. The front reads or
//!   discards every body it accepts; a refused one is dropped only after the connection has
//!   stopped reading (the drain then ends at once) and only if that allocation can succeed;
//!   otherwise the connection is parked ([`Front::park`]).
//! - An accept error ends tiny_http's accept loop for good; `recv` then returns it, and the
//!   process exits non-zero so the kubelet restarts the pod.

use std::fs::File;
use std::io::{self, Cursor, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

use crate::app::App;
use crate::budgets::{self, Budgets, Reservation, Reserve};
use crate::conditional::Fields;
use crate::connections::Connections;
use crate::framing::Framing;
use crate::routes::{self, Body, Reply, Route};
use crate::storage::AppendError;
use crate::sync::lock;

/// Handler threads kept even when idle.
const CORE: usize = 4;
/// How long a handler beyond the core waits for a request before it ends.
const IDLE_HANDLER: Duration = Duration::from_secs(10);
/// Bodies up to this size are read by tiny_http with the request head.
const READ_AHEAD: u64 = 1024;
/// Our handlers use little stack: bodies and DNS messages live on the heap.
const STACK_SIZE: usize = 256 * 1024;

pub struct Front {
    app: Arc<App>,
    server: Arc<Server>,
    connections: Arc<Connections>,
    budgets: Budgets,
    bodies: Arc<Reserve>,
    /// Handler threads alive, and those waiting in `recv`.
    threads: AtomicUsize,
    idle: AtomicUsize,
    parked: AtomicUsize,
    /// Jobs no handler could be started for.
    later: Mutex<Vec<Job>>,
}

/// How a request ended on its handler.
enum Ran {
    Done,
    /// Its answer is left to the storage writer, which goes on with the connection.
    Deferred,
}

/// Work for a handler thread that does not come from `recv`: an answer to write, or a
/// connection to go on with, after a deferred `/store`.
type Job = Box<dyn FnOnce() + Send>;

impl Front {
    pub fn new(
        app: Arc<App>,
        server: Arc<Server>,
        connections: Arc<Connections>,
        budgets: Budgets,
    ) -> Arc<Front> {
        Arc::new(Front {
            app,
            server,
            connections,
            budgets,
            bodies: Arc::new(Reserve::new(budgets.body_bytes, &budgets::BODY_BYTES)),
            threads: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            later: Mutex::new(Vec::new()),
        })
    }

    /// Serves on handler threads started as needed until the lifecycle stops; then waits for
    /// running requests for at most `grace` and answers what is still queued with 503.
    pub fn serve(self: &Arc<Self>, grace: Duration) {
        for _ in 0..CORE {
            self.start_handler(None);
        }
        let deadline = self.app.lifecycle.wait() + grace;
        while self.threads.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        if self.threads.load(Ordering::Acquire) > 0 {
            log::warn!("requests still running at shutdown; not waiting for them");
        }
        while let Ok(Some(request)) = self.server.try_recv() {
            respond(request, Reply::error(503, "server is shutting down"));
        }
    }

    /// Starts a handler thread, which runs `first` before it receives requests. Past the
    /// budget, `first` waits for a handler that finishes its request.
    fn start_handler(self: &Arc<Self>, first: Option<Job>) {
        let slot = Arc::new(Mutex::new(first));
        if self.threads.fetch_add(1, Ordering::AcqRel) < self.budgets.handlers {
            let (front, job) = (self.clone(), slot.clone());
            let started = thread::Builder::new()
                .name("handler".into())
                .stack_size(STACK_SIZE)
                .spawn(move || front.handle_requests(lock(&job).take()));
            match started {
                Ok(_) => return,
                Err(e) => budgets::HANDLERS.hit(format_args!("cannot start a thread: {e}")),
            }
        } else {
            budgets::HANDLERS.hit("every handler thread is busy; requests wait for one");
        }
        self.threads.fetch_sub(1, Ordering::AcqRel);
        if let Some(job) = lock(&slot).take() {
            lock(&self.later).push(job);
        }
    }

    /// One handler: runs `first`, then jobs left for any handler and requests received, with
    /// those their connections send meanwhile.
    fn handle_requests(self: &Arc<Self>, first: Option<Job>) {
        if let Some(job) = first {
            job();
        }
        let lifecycle = &self.app.lifecycle;
        loop {
            let job = lock(&self.later).pop();
            if let Some(job) = job {
                job();
                continue;
            }
            self.idle.fetch_add(1, Ordering::AcqRel);
            let received = self.server.recv_timeout(IDLE_HANDLER);
            let idle = self.idle.fetch_sub(1, Ordering::AcqRel) - 1;
            let request = match received {
                Ok(Some(request)) => request,
                // `unblock` from the lifecycle shows up as a timeout: pass it on to the next
                // handler, which is waiting for it in `recv` too.
                Ok(None) if lifecycle.is_stopping() => {
                    self.server.unblock();
                    break;
                }
                Ok(None) if self.threads.load(Ordering::Acquire) > CORE => break,
                Ok(None) => continue,
                Err(e) => {
                    log::error!("tiny_http's accept loop died: {e}; exiting so the pod restarts");
                    lifecycle.stop(1);
                    break;
                }
            };
            // Queued behind its connection's running request, or dropped: receive the next.
            let Some(request) = self.connections.admit(request) else {
                continue;
            };
            if idle == 0 {
                self.start_handler(None);
            }
            self.run_connection(request);
        }
        self.threads.fetch_sub(1, Ordering::AcqRel);
    }

    /// Runs `request` and then those its connection sent meanwhile, until none waits or one is
    /// deferred (a `/store`, which the storage writer goes on with).
    fn run_connection(self: &Arc<Self>, mut request: Request) {
        let addr = request.remote_addr().copied();
        loop {
            // A panic must not leave the connection marked busy, which would stall its later
            // requests for good.
            let run =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(request)));
            match run {
                Ok(Ran::Deferred) => return,
                Ok(Ran::Done) => {}
                Err(_) => log::error!("a request handler panicked; the next request goes on"),
            }
            match addr.and_then(|addr| self.connections.next(addr)) {
                Some(next) => request = next,
                None => return,
            }
        }
    }

    /// Runs one request whose connection has no other request running.
    fn handle(self: &Arc<Self>, mut request: Request) -> Ran {
        let framing = Framing::of(
            request
                .headers()
                .iter()
                .map(|h| (h.field.as_str().as_str(), h.value.as_str())),
        );
        let max = self.app.config.max_body_bytes as u64;
        let framing = match framing {
            Err(e) => return self.refuse(request, Reply::error(400, e)),
            Ok(Framing::Length(n)) if n > max => {
                let why = format!("request body of {n} bytes is over the limit of {max} bytes");
                return self.refuse(request, Reply::error(413, why));
            }
            Ok(framing) => framing,
        };
        let route = routes::route(request.method().as_str(), request.url());
        let (body, reserved) = match self.read_body(&mut request, framing, route == Route::Store) {
            Ok(read) => read,
            Err(reply) => return self.refuse(request, reply),
        };
        let (addr, path) = (request.remote_addr().copied(), request.url().to_string());
        let fields = Fields::of(
            request
                .headers()
                .iter()
                .map(|h| (h.field.as_str().as_str(), h.value.as_str())),
        );
        if route == Route::Store
            && let Some(addr) = addr
            && self.connections.known(addr)
        {
            // The writer answers once the record is durable: this thread goes back to receiving
            // instead of waiting, and is not woken again for it (see `stored`).
            let (front, record) = (self.clone(), routes::record(&self.app.greeting, body));
            let done = move |result| front.stored(request, addr, result, reserved);
            self.app.storage.append_then(record, Box::new(done));
            return Ran::Deferred;
        }
        let reply = routes::handle(&self.app, route, &path, &fields, body);
        drop(reserved);
        self.answer(request, addr, reply);
        Ran::Done
    }

    /// Sends the answer; a client that does not read its answers must not keep what it
    /// pipelined behind them, so a failed one closes the connection.
    fn answer(&self, request: Request, addr: Option<SocketAddr>, reply: Reply) {
        if !respond(request, reply)
            && let Some(addr) = addr
        {
            self.connections.close(addr, None);
        }
    }

    /// The answer to a deferred `/store`, on the storage writer, which must not block: it
    /// writes the answer itself when the connection's socket has room for it (the client reads
    /// its answers), and otherwise leaves it to a handler, as it does a request that waited
    /// behind this one. The connection is free for its next request first: that one is only
    /// sent once this answer is read, and tiny_http writes a connection's answers in order.
    fn stored(
        self: &Arc<Self>,
        request: Request,
        addr: SocketAddr,
        result: Result<(), AppendError>,
        reserved: Option<Reservation>,
    ) {
        drop(reserved);
        let reply = routes::stored(&self.app.greeting, result);
        let next = self.connections.next(addr);
        let next_is_some = next.is_some();
        let front = self.clone();
        let rest = move || {
            if let Some(next) = next {
                front.run_connection(next);
            }
        };
        if self.connections.has_room(addr) {
            self.answer(request, Some(addr), reply);
            if next_is_some {
                self.start_handler(Some(Box::new(rest)));
            }
        } else {
            let front = self.clone();
            self.start_handler(Some(Box::new(move || {
                front.answer(request, Some(addr), reply);
                rest();
            })));
        }
    }

    /// Reads the whole body (`keep`) or discards it, at most the declared length or, chunked,
    /// the limit, after reserving that many bytes of the budget. The answer on failure closes
    /// the connection: the rest of the body would otherwise be read as requests.
    fn read_body(
        &self,
        request: &mut Request,
        framing: Framing,
        keep: bool,
    ) -> Result<(Vec<u8>, Option<Reservation>), Reply> {
        let max = self.app.config.max_body_bytes as u64;
        let limit = match framing {
            Framing::NoBody => return Ok((Vec::new(), None)),
            Framing::Length(n) => n, // at most `max`: larger ones were refused
            Framing::Chunked => max + 1,
        };
        // tiny_http has already read a body of at most 1024 bytes, unless the client waits for
        // a `100 Continue` (`request::new_request`): taking it costs nothing more.
        let read_ahead = matches!(framing, Framing::Length(n) if n <= READ_AHEAD)
            && !request.headers().iter().any(|h| h.field.equiv("Expect"));
        let reserved = if read_ahead {
            None
        } else {
            self.bodies.take(limit)
        };
        if !read_ahead && reserved.is_none() {
            return Err(Reply::error(
                503,
                format!(
                    "server busy: request bodies being received have used their budget of {} bytes; retry later",
                    self.bodies.max()
                ),
            ));
        }
        let addr = request.remote_addr().copied();
        let started = Instant::now();
        self.connections.reading_body(addr, true);
        let mut body = Vec::new();
        let reader = &mut request.as_reader().take(limit);
        let read = if keep {
            body.reserve_exact(limit.min(64 * 1024) as usize);
            reader.read_to_end(&mut body).map(|n| n as u64)
        } else {
            io::copy(reader, &mut io::sink())
        };
        self.connections.reading_body(addr, false);
        let timeout = self.budgets.body_timeout;
        let timed_out = started.elapsed() >= timeout;
        match read {
            Ok(_) | Err(_) if timed_out => Err(Reply::error(
                408,
                format!(
                    "request body did not arrive within {} ms",
                    timeout.as_millis()
                ),
            )),
            Err(e) => Err(Reply::error(400, format!("bad request: reading body: {e}"))),
            Ok(got) if framing == Framing::Chunked && got > max => Err(Reply::error(
                413,
                format!("request body is over the limit of {max} bytes"),
            )),
            Ok(got) if matches!(framing, Framing::Length(n) if got < n) => Err(Reply::error(
                400,
                format!("bad request: body ended after {got} of {limit} bytes"),
            )),
            Ok(_) => Ok((body, reserved)),
        }
    }

    /// Answers with `reply`, then closes the connection. It first stops reading, so that the
    /// drain of an unread body ends at once; but tiny_http may already hold the bytes after
    /// this request and parse them, and answer what it cannot parse with a 400 of its own. So
    /// the answer goes through the request's writer, which holds any later answer of the
    /// connection back until it is dropped, and the connection stops writing before that.
    fn refuse(&self, request: Request, reply: Reply) -> Ran {
        let addr = request.remote_addr().copied();
        let socket = self.connections.stop_reading(addr);
        let drainable = request
            .body_length()
            .is_none_or(|n| Vec::<u8>::new().try_reserve_exact(n).is_ok());
        if drainable {
            let (version, head) = (
                request.http_version().clone(),
                request.method() == &Method::Head,
            );
            let headers = request.headers().to_vec();
            let mut writer = request.into_writer();
            let written = to_response(reply)
                .raw_print(&mut writer, version, &headers, head, None)
                .and_then(|()| writer.flush());
            if let Err(e) = written {
                log::debug!("answer to a refused request from {addr:?}: {e}");
            }
            if let Some(socket) = &socket {
                socket.shutdown(Shutdown::Write);
            }
        } else {
            self.park(request, reply);
        }
        if let Some(addr) = addr {
            self.connections.close(addr, socket);
        }
        Ran::Done
    }

    /// Answers a request whose declared body tiny_http could never drop: its drain would ask
    /// for more memory than there is, and a failed allocation aborts the process.
    /// `Request::upgrade` writes the answer and hands back the stream with the body reader in
    /// it, which is then never dropped; tiny_http's thread for that connection waits for it for
    /// good. Parked connections are counted, and past their budget the process exits so that
    /// the kubelet restarts it with its threads back.
    fn park(&self, request: Request, reply: Reply) {
        let parked = self.parked.fetch_add(1, Ordering::AcqRel) + 1;
        log::warn!(
            "{} {} from {:?}: declared body too large to drain; connection parked ({parked} of at most {})",
            request.method(),
            request.url(),
            request.remote_addr(),
            self.budgets.parked,
        );
        let text = reply.body_text().map(<[u8]>::to_vec).unwrap_or_default();
        // `upgrade` writes the status line and headers but no body; the text follows.
        let mut stream = request.upgrade("hello-stateful", to_response(reply));
        if let Err(e) = stream.write_all(&text).and_then(|()| stream.flush()) {
            log::debug!("write to a parked connection: {e}");
        }
        std::mem::forget(stream);
        if parked >= self.budgets.parked {
            log::error!("{parked} connections parked; exiting so the pod restarts");
            self.app.lifecycle.stop(1);
        }
    }
}

/// Sends the reply and logs the request at debug level. False if the client did not take it.
fn respond(request: Request, reply: Reply) -> bool {
    let logged = log::log_enabled!(log::Level::Debug).then(|| {
        let (method, url) = (request.method().clone(), request.url().to_string());
        (
            method,
            url,
            request.remote_addr().copied(),
            reply.status,
            Instant::now(),
        )
    });
    let sent = request.respond(to_response(reply));
    if let Some((method, url, addr, status, started)) = logged {
        if let Err(e) = &sent {
            log::debug!("{method} {url} from {addr:?}: sending the answer: {e}");
        }
        log::debug!(
            "{method} {url} {status} {:?} from {addr:?}",
            started.elapsed()
        );
    }
    sent.is_ok()
}

pub fn to_response(reply: Reply) -> Response<Box<dyn Read + Send>> {
    let mut headers = Vec::with_capacity(reply.headers.len() + 3);
    let has = |field: &str| {
        reply
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(field))
    };
    let content_type: Option<&[u8]> = match reply.body {
        _ if has("Content-Type") => None,
        Body::Text(_) => Some(b"text/plain; charset=utf-8"),
        Body::File { .. } => Some(b"application/octet-stream"),
        // A 304 describes no content of its own (RFC 9110 15.4.5).
        Body::Omitted { .. } => None,
    };
    headers.extend(content_type.and_then(|v| Header::from_bytes(&b"Content-Type"[..], v).ok()));
    // Every answer but /data's tells of this moment (a peer list, a size, a probe, a store
    // done or refused): no cache may keep it, or it would answer for the pod after the pod
    // has changed. Without this, caches may keep a 200, 404 or 405 for as long as they guess.
    if !has("Cache-Control") {
        headers.extend(Header::from_bytes(&b"Cache-Control"[..], &b"no-store"[..]));
    }
    for (name, value) in &reply.headers {
        headers.extend(Header::from_bytes(name.as_bytes(), value.as_bytes()));
    }
    // Every 503 is a moment's shortage (a budget, a lookup, a shutdown): say when to retry.
    if reply.status == 503 {
        headers.extend(Header::from_bytes(&b"Retry-After"[..], &b"1"[..]));
    }
    let (reader, len): (Box<dyn Read + Send>, u64) = match reply.body {
        Body::Text(text) => {
            let len = text.len() as u64;
            (Box::new(Cursor::new(text)), len)
        }
        Body::File { file, start, len } => (
            Box::new(FilePart {
                file,
                at: start,
                end: start + len,
            }),
            len,
        ),
        // tiny_http sends no body with a 304, and says this length.
        Body::Omitted { len } => (Box::new(io::empty()), len),
    };
    // Every body's length is known, so say it: tiny_http would otherwise chunk bodies over
    // 32 KiB, and peers fetching /data over HTTP/1.0 need the length.
    Response::new(
        StatusCode(reply.status),
        headers,
        reader,
        Some(len as usize),
        None,
    )
    .with_chunked_threshold(usize::MAX)
}

/// Bytes `at..end` of a file, read at their offsets: the storage writer and every other answer
/// share the file's descriptor, and so its position.
struct FilePart {
    file: Arc<File>,
    at: u64,
    end: u64,
}

impl Read for FilePart {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.at).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}
