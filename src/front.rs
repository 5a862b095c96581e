//! The HTTP front: handler threads that take requests from tiny_http one at a time, judge
//! each one's framing before its body is touched, read bodies within their budget, and send
//! the answer.
//!
//! tiny_http 0.12 (the latest release) has behaviours a pod must not inherit; each guard here
//! answers one (tiny_http's `src/request.rs`, `src/util/*.rs`), and `connections.rs` the rest:
//!
//! - An unparsable `Content-Length` is taken as "no body" (`request::new_request`), and the body
//!   is then parsed as the next request. [`Framing`] judges every request first; a bad one is
//!   answered 400 and its connection closed ([`Front::refuse`]): nothing after it is run.
//! - Bodies over 1024 bytes, chunked and `Expect: 100-continue` bodies are read from the socket
//!   by whichever thread reads the body, with no bound on how long that takes or how many are
//!   read at once. They are reserved from the budget of body bytes by their declared length
//!   before reading (past it: 503), and the connection watch times out one that stalls.
//! - A connection's answers are written in order (`util/sequential.rs`): a thread answering a
//!   request waits until the one before it is answered. So a connection runs one request at a
//!   time ([`Connections::admit`]), in the order tiny_http hands them out: one thread receives
//!   at a time and admits what it received before the next receives.
//! - Any handler may block (a slow upload, a client that does not read, a DNS lookup): the last
//!   idle handler starts another before it runs a request, up to the budget.
//! - An accept error ends tiny_http's accept loop for good; `recv` then returns it, and the
//!   process exits non-zero so the kubelet restarts the pod.

use std::fs::File;
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

use crate::app::App;
use crate::budgets::{BODY_BYTES, Budgets, HANDLERS, Reservation};
use crate::conditional::Fields;
use crate::connections::{Connections, drainable};
use crate::framing::Framing;
use crate::metrics::METRICS;
use crate::routes::{self, Body, Reply, Route};
use crate::sync::lock;

/// Handler threads kept even when idle.
const CORE: usize = 4;
/// How long the receiving handler waits for a request before handlers beyond the core end.
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
    /// Held by the handler that receives; true once no request came for [`IDLE_HANDLER`].
    receiving: Mutex<bool>,
    /// Handler threads waiting to receive; those alive are [`HANDLERS`]' use.
    idle: AtomicUsize,
}

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
            receiving: Mutex::new(false),
            idle: AtomicUsize::new(0),
        })
    }

    /// Serves on handler threads started as needed until the lifecycle stops; then waits for
    /// running requests for at most `grace` and answers what is still queued with 503.
    pub fn serve(self: &Arc<Self>, grace: Duration) {
        for _ in 0..CORE {
            self.start_handler(None);
        }
        let deadline = self.app.lifecycle.wait() + grace;
        while HANDLERS.used() > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        if HANDLERS.used() > 0 {
            log::warn!("requests still running at shutdown; not waiting for them");
        }
        while let Ok(Some(request)) = self.server.try_recv() {
            respond(request, Reply::error(503, "server is shutting down"));
        }
    }

    /// Starts a handler thread, which runs `first` (and its connection's later requests)
    /// before it receives. Past the budget, `first`'s connection is closed.
    fn start_handler(self: &Arc<Self>, first: Option<Request>) {
        let first = Arc::new(Mutex::new(first));
        let started = if HANDLERS.take(1) {
            let (front, first) = (self.clone(), first.clone());
            let spawned = thread::Builder::new()
                .name("handler".into())
                .stack_size(STACK_SIZE)
                .spawn(move || front.handle_requests(lock(&first).take()));
            spawned.map_err(|e| {
                HANDLERS.give(1);
                e.to_string()
            })
        } else {
            Err("every handler thread is busy".into())
        };
        if let Err(why) = started {
            HANDLERS.hit(format_args!("cannot start a handler: {why}"));
            if let Some(request) = lock(&first).take() {
                let addr = request.remote_addr().copied();
                self.connections.discard(request);
                self.connections.close(addr, None);
            }
        }
    }

    /// One handler: runs `first`, then receives a request at a time and runs it, with those its
    /// connection sends meanwhile.
    fn handle_requests(self: &Arc<Self>, first: Option<Request>) {
        let mut next = first;
        while let Some(mut request) = next.take().or_else(|| self.receive()) {
            let addr = request.remote_addr().copied();
            loop {
                // A panic must not leave the connection marked busy, which would stall its
                // later requests for good.
                let run =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(request)));
                if run.is_err() {
                    log::error!("a request handler panicked; the next request goes on");
                }
                match addr.filter(|_| run.unwrap_or(true)) {
                    Some(addr) => match self.connections.next(addr) {
                        Some(next) => request = next,
                        None => break,
                    },
                    None => break,
                }
            }
        }
        HANDLERS.give(1);
    }

    /// Waits for its turn to receive, then for a request to run now. None: this handler ends.
    fn receive(self: &Arc<Self>) -> Option<Request> {
        self.idle.fetch_add(1, Ordering::AcqRel);
        let mut idle_for_long = lock(&self.receiving);
        let lifecycle = &self.app.lifecycle;
        let request = loop {
            let surplus = HANDLERS.used() > CORE as u64;
            if lifecycle.is_stopping() || *idle_for_long && surplus {
                break None;
            }
            match self.server.recv_timeout(IDLE_HANDLER) {
                Ok(Some(request)) => {
                    *idle_for_long = false;
                    if let Some(request) = self.connections.admit(request) {
                        break Some(request);
                    }
                }
                // Also how `unblock` from the lifecycle shows: the loop then ends.
                Ok(None) => *idle_for_long = true,
                Err(e) => {
                    log::error!("tiny_http's accept loop died: {e}; exiting so the pod restarts");
                    lifecycle.stop(1);
                }
            }
        };
        drop(idle_for_long);
        if self.idle.fetch_sub(1, Ordering::AcqRel) == 1 && request.is_some() {
            self.start_handler(None);
        }
        request
    }

    /// Runs one request whose connection has no other request running. False when the
    /// connection was handed over (to the storage writer).
    fn handle(self: &Arc<Self>, mut request: Request) -> bool {
        fn fields(request: &Request) -> impl Iterator<Item = (&str, &str)> {
            let headers = request.headers().iter();
            headers.map(|h| (h.field.as_str().as_str(), h.value.as_str()))
        }
        let (route, started) = (
            routes::route(request.method().as_str(), request.url()),
            Instant::now(),
        );
        let max = self.app.config.max_body_bytes as u64;
        let framing = match Framing::of(fields(&request)) {
            Err(e) => return self.refuse(request, Reply::error(400, e), route, started),
            Ok(Framing::Length(n)) if n > max => {
                let why = format!("request body of {n} bytes is over the limit of {max} bytes");
                return self.refuse(request, Reply::error(413, why), route, started);
            }
            Ok(framing) => framing,
        };
        let (body, reserved) = match self.read_body(&mut request, framing, route == Route::Store) {
            Ok(read) => read,
            Err(reply) => return self.refuse(request, reply, route, started),
        };
        let addr = request.remote_addr().copied();
        if route == Route::Store
            && let Some(addr) = addr
            && self.connections.has_room(addr)
        {
            // The storage writer answers once the record is durable, which saves waking this
            // thread for it: writing a short answer to a socket with room does not block.
            let (front, record) = (self.clone(), routes::record(&self.app.greeting, body));
            let done = move |result| {
                drop(reserved);
                // The connection is free for its next request before the answer goes: the
                // client may send it as soon as it reads the answer, and tiny_http writes a
                // connection's answers in order anyway. One its client sent meanwhile
                // (pipelined) goes to a handler of its own.
                let next = front.connections.next(addr);
                let reply = routes::stored(&front.app.greeting, result);
                front.answer(request, reply, route, started);
                if next.is_some() {
                    front.start_handler(next);
                }
            };
            self.app.storage.append_then(record, Box::new(done));
            return false;
        }
        let fields = Fields::of(fields(&request));
        let reply = routes::handle(&self.app, route, request.url(), &fields, body);
        drop(reserved);
        self.answer(request, reply, route, started);
        true
    }

    /// Sends the answer, and counts it. A client that does not take it must not keep what it
    /// sent after it.
    fn answer(&self, request: Request, reply: Reply, route: Route, started: Instant) {
        let (addr, status) = (request.remote_addr().copied(), reply.status);
        if !respond(request, reply) {
            self.connections.close(addr, None);
        }
        METRICS.request(route.label(), status, started.elapsed());
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
        let reserved = match read_ahead {
            true => None,
            false => Some(BODY_BYTES.reserve(limit).ok_or_else(|| {
                let budget = BODY_BYTES.limit();
                Reply::error(503, format!("server busy: request bodies being received have used their budget of {budget} bytes; retry later"))
            })?),
        };
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
        match read {
            Ok(_) | Err(_) if started.elapsed() >= timeout => Err(Reply::error(
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

    /// Answers with `reply`, then closes the connection, so that nothing after this request
    /// is read from it. Reading stops first, so that the drain of an unread body ends at once.
    /// tiny_http may answer what it cannot parse after this request with an error of its own,
    /// which waits for this answer's writer: the connection stops writing before that goes.
    fn refuse(&self, request: Request, reply: Reply, route: Route, started: Instant) -> bool {
        METRICS.request(route.label(), reply.status, started.elapsed());
        let addr = request.remote_addr().copied();
        let (version, headers) = (request.http_version().clone(), request.headers().to_vec());
        let no_body = request.method() == &Method::Head;
        if !drainable(&request) {
            // `upgrade` writes the status line and header fields and keeps the body reader.
            let text = reply.body_text().map(<[u8]>::to_vec).unwrap_or_default();
            let what = format!("{} {}", request.method(), request.url());
            let mut stream = request.upgrade("hello-stateful", to_response(reply));
            if let Err(e) = stream.write_all(&text).and_then(|()| stream.flush()) {
                log::debug!("answer to {what} from {addr:?}: {e}");
            }
            self.connections.park(addr, &what, stream);
            return true;
        }
        let socket = self.connections.stop_reading(addr);
        // Dropping the request drains what is left of its body: the connection is reading a
        // body, not the head of a next request, while that goes on.
        self.connections.reading_body(addr, true);
        let mut writer = request.into_writer();
        let written = to_response(reply)
            .raw_print(&mut writer, version, &headers, no_body, None)
            .and_then(|()| writer.flush());
        if let Err(e) = written {
            log::debug!("answer to a refused request from {addr:?}: {e}");
        }
        self.connections.close(addr, socket);
        drop(writer);
        true
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
