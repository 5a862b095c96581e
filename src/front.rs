//! The HTTP front: tiny_http's receive loop, and the guards the project keeps around it.
//!
//! tiny_http 0.12 (the latest release) has behaviours a pod must not inherit; each guard here
//! answers one of them (source: tiny_http 0.12.0 `src/request.rs`, `src/client.rs`,
//! `src/util/equal_reader.rs`, `src/util/sequential.rs`):
//!
//! - Dropping or answering a request whose body was not read drains the rest with
//!   `vec![0; remaining]`, `remaining` being the client's declared `Content-Length`: a length
//!   such as 10^15 aborts the process. Bodies declared larger than [`DRAIN_LIMIT`] are
//!   therefore never dropped: the 413 goes out through `Request::upgrade`, and the stream it
//!   hands back is parked (forgotten), which also parks that connection's thread. Parked
//!   connections are counted and bounded by [`MAX_PARKED`].
//! - An unparsable `Content-Length` is taken as "no body", and the body is then parsed as the
//!   next request on the connection. [`crate::framing`] judges every request's framing first;
//!   a bad one is answered 400 and its connection is poisoned: whatever tiny_http parses from
//!   it afterwards is answered 400 and never handled.
//! - There are no socket timeouts, and bodies over 1024 bytes are read by whichever thread
//!   reads the body. The receive loop therefore only judges headers and hands every request
//!   to [`Workers`], which start a thread when none is free: a stalled client holds one thread
//!   and delays nobody else.
//! - An accept error ends tiny_http's accept loop for good; `recv` then returns it. [`serve`]
//!   returns that error so `main` exits non-zero and the kubelet restarts the pod.
//! - Its connection pool can leave connections that arrive in a burst queued behind idle
//!   ones, and its accept thread can die without a word: [`crate::watchdog`] answers both.

use std::collections::HashMap;
use std::io::{self, Cursor, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tiny_http::{Header, Request, Response, Server, StatusCode};

use crate::app::App;
use crate::framing::{self, Framing};
use crate::routes::{self, Body, Reply, Route};
use crate::watchdog::{Kick, WATCHDOG_AGENT};
use crate::workers::Workers;

/// A declared body up to this size that is refused (413) is drained by tiny_http as usual,
/// which keeps its connection usable; the drain's buffer is allocated but barely touched.
pub const DRAIN_LIMIT: u64 = 16 << 20;
/// Connections parked after a 413 for a body larger than [`DRAIN_LIMIT`]. Each keeps one
/// tiny_http thread and two descriptors for the life of the process; past this many the
/// process stops (status 1) so the kubelet restarts it with its resources back.
pub const MAX_PARKED: usize = 1024;
/// How long a poisoned connection's address is remembered after its last request. What must
/// be refused is what tiny_http parses from the rest of the same bytes, which is queued right
/// behind the bad request. It cannot be longer: when tiny_http closes the connection first (it
/// does on a garbled request line), the client's port is free at once, and a new connection
/// from it within a minute was refused in the fault suite's hostile scenario.
const POISON_TTL: Duration = Duration::from_secs(1);
const MAX_POISONED: usize = 4096;

/// State of the guards, shared by the receive loop and the workers.
#[derive(Default)]
pub struct Guard {
    poisoned: Mutex<HashMap<SocketAddr, Instant>>,
    parked: AtomicUsize,
}

impl Guard {
    fn poison(&self, remote: Option<SocketAddr>) {
        let Some(remote) = remote else { return };
        let mut poisoned = self.poisoned.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if poisoned.len() >= MAX_POISONED {
            poisoned.retain(|_, at| now.duration_since(*at) < POISON_TTL);
        }
        if poisoned.len() >= MAX_POISONED
            && let Some(oldest) = poisoned
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(addr, _)| *addr)
        {
            poisoned.remove(&oldest);
        }
        poisoned.insert(remote, now);
    }

    /// True if an earlier request on this connection was malformed; renews the mark.
    fn is_poisoned(&self, remote: Option<SocketAddr>) -> bool {
        let Some(remote) = remote else { return false };
        let mut poisoned = self.poisoned.lock().unwrap_or_else(|e| e.into_inner());
        match poisoned.get_mut(&remote) {
            Some(at) if at.elapsed() < POISON_TTL => {
                *at = Instant::now();
                true
            }
            _ => false,
        }
    }
}

/// Receives requests until the lifecycle stops the server (Ok) or the accept loop dies (Err).
/// Requests on connections not seen lately [`Kick`] the watchdog.
pub fn serve(app: &Arc<App>, server: &Server, workers: &Workers, mut kick: Kick) -> io::Result<()> {
    let guard = Arc::new(Guard::default());
    loop {
        match server.recv() {
            Ok(request) => {
                if let Some(remote) = request.remote_addr()
                    && !is_probe(&request)
                {
                    kick.request_from(*remote);
                }
                dispatch(app, &guard, workers, request)
            }
            // `unblock` from the lifecycle shows up as an error: only a stop ends the loop well.
            Err(_) if app.lifecycle.is_stopping() => break,
            Err(e) => return Err(e),
        }
    }
    // Requests that arrived after the stop signal get a clear answer, not a cut connection.
    while let Ok(Some(request)) = server.try_recv() {
        workers.submit_for(request.remote_addr().copied(), move || {
            respond(
                request,
                Reply::error(503, "server is shutting down"),
                Instant::now(),
            )
        });
    }
    Ok(())
}

/// Judges the request's framing on the receive loop itself, before the next request of the same
/// connection can be received, then hands it to a worker.
fn dispatch(app: &Arc<App>, guard: &Arc<Guard>, workers: &Workers, request: Request) {
    let received = Instant::now();
    let remote = request.remote_addr().copied();
    let framing = framing::framing(
        request
            .headers()
            .iter()
            .map(|h| (h.field.as_str().as_str(), h.value.as_str())),
    );
    let max = app.config.max_body_bytes as u64;
    let (app, guard) = (app.clone(), guard.clone());
    match framing {
        Err(e) => {
            guard.poison(remote);
            workers.submit_for(remote, move || {
                respond(request, Reply::error(400, e), received)
            });
        }
        Ok(Framing::Length(n)) if n > max => {
            let reply = Reply::error(
                413,
                format!("request body of {n} bytes is over the limit of {max} bytes"),
            );
            if n > DRAIN_LIMIT {
                workers.submit_for(remote, move || park(&app, &guard, request, reply));
            } else {
                workers.submit_for(remote, move || respond(request, reply, received));
            }
        }
        Ok(_) if guard.is_poisoned(remote) => {
            let reply = Reply::error(
                400,
                "bad request: an earlier request on this connection was malformed",
            );
            workers.submit_for(remote, move || respond(request, reply, received));
        }
        Ok(framing) => workers.submit_for(remote, move || {
            handle(&app, &guard, request, framing, received)
        }),
    }
}

/// Runs one well-framed request on a worker.
fn handle(app: &App, guard: &Guard, mut request: Request, framing: Framing, received: Instant) {
    let route = routes::route(request.method().as_str(), request.url());
    let body = if route == Route::Store {
        match read_body(&mut request, framing, app.config.max_body_bytes) {
            Ok(body) => body,
            Err(BodyError { reply, poison }) => {
                if poison {
                    // The rest of this body would be read as requests: none of it may be handled.
                    guard.poison(request.remote_addr().copied());
                }
                return respond(request, reply, received);
            }
        }
    } else {
        Vec::new()
    };
    let path = request.url().to_string();
    respond(request, routes::handle(app, route, &path, body), received)
}

struct BodyError {
    reply: Reply,
    /// True when the connection is left mid-body and must not be trusted further.
    poison: bool,
}

/// Reads the whole body, at most `max` bytes. A body that ends early appends nothing.
fn read_body(request: &mut Request, framing: Framing, max: usize) -> Result<Vec<u8>, BodyError> {
    let limit = match framing {
        Framing::NoBody => return Ok(Vec::new()),
        Framing::Length(n) => n, // at most `max`: larger ones never reach a handler
        Framing::Chunked => max as u64 + 1,
    };
    let mut body = Vec::with_capacity(limit.min(64 * 1024) as usize);
    let read = request.as_reader().take(limit).read_to_end(&mut body);
    match (read, framing) {
        (Err(e), _) => Err(BodyError {
            reply: Reply::error(400, format!("bad request: reading body: {e}")),
            poison: true,
        }),
        (Ok(_), Framing::Chunked) if body.len() > max => Err(BodyError {
            reply: Reply::error(
                413,
                format!("request body is over the limit of {max} bytes"),
            ),
            poison: true,
        }),
        (Ok(got), Framing::Length(n)) if (got as u64) < n => Err(BodyError {
            reply: Reply::error(
                400,
                format!("bad request: body ended after {got} of {n} bytes"),
            ),
            poison: false,
        }),
        (Ok(_), _) => Ok(body),
    }
}

/// Answers a request whose declared body is too large to ever be dropped: see the module docs.
fn park(app: &App, guard: &Guard, request: Request, reply: Reply) {
    let parked = guard.parked.fetch_add(1, Ordering::Relaxed) + 1;
    log::warn!(
        "{} {} from {:?}: declared body too large; connection parked ({parked} of at most {MAX_PARKED})",
        request.method(),
        request.url(),
        request.remote_addr(),
    );
    let text = reply.body_text().map(<[u8]>::to_vec).unwrap_or_default();
    // `upgrade` writes the status line and headers but no body; the text follows on the stream.
    let mut stream = request.upgrade("hello-stateful", to_response(reply));
    if let Err(e) = stream.write_all(&text).and_then(|()| stream.flush()) {
        log::debug!("write 413 to a parked connection: {e}");
    }
    // Dropping the stream would drop the body reader, which allocates the declared length.
    std::mem::forget(stream);
    if parked >= MAX_PARKED {
        log::error!(
            "{parked} connections parked after oversized bodies; exiting so the pod restarts"
        );
        app.lifecycle.stop(1);
    }
}

/// True for the watchdog's own probes.
fn is_probe(request: &Request) -> bool {
    request
        .headers()
        .iter()
        .any(|h| h.field.equiv("User-Agent") && h.value == WATCHDOG_AGENT)
}

/// Sends the reply, logging the request at debug level (but not the watchdog's probes, which
/// would drown the rest).
fn respond(request: Request, reply: Reply, received: Instant) {
    let (status, method, url, remote) = (
        reply.status,
        request.method().clone(),
        request.url().to_string(),
        request.remote_addr().copied(),
    );
    let probe = is_probe(&request);
    if let Err(e) = request.respond(to_response(reply)) {
        log::debug!("{method} {url} from {remote:?}: sending response: {e}");
    }
    if !probe {
        log::debug!(
            "{method} {url} {status} {:?} from {remote:?}",
            received.elapsed()
        );
    }
}

pub fn to_response(reply: Reply) -> Response<Box<dyn Read + Send>> {
    let mut headers = Vec::with_capacity(2);
    let content_type: &[u8] = match reply.body {
        Body::Text(_) => b"text/plain; charset=utf-8",
        Body::File { .. } => b"application/octet-stream",
    };
    headers.extend(Header::from_bytes(&b"Content-Type"[..], content_type));
    if let Some(allow) = reply.allow {
        headers.extend(Header::from_bytes(&b"Allow"[..], allow.as_bytes()));
    }
    let (reader, len): (Box<dyn Read + Send>, u64) = match reply.body {
        Body::Text(text) => {
            let len = text.len() as u64;
            (Box::new(Cursor::new(text)), len)
        }
        Body::File { file, len } => (Box::new(file.take(len)), len),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poison_marks_an_address_and_fades_after_its_last_request() {
        let guard = Guard::default();
        let (bad, other) = (
            Some("127.0.0.1:4000".parse().unwrap()),
            Some("127.0.0.1:4001".parse().unwrap()),
        );
        guard.poison(bad);
        assert!(guard.is_poisoned(bad));
        assert!(!guard.is_poisoned(other));
        assert!(!guard.is_poisoned(None));
        // As if the last request from it came longer ago than the TTL: a new connection that
        // reuses the port is a different client.
        let long_ago = Instant::now() - POISON_TTL - Duration::from_millis(1);
        guard
            .poisoned
            .lock()
            .unwrap()
            .insert(bad.unwrap(), long_ago);
        assert!(!guard.is_poisoned(bad));
    }
}
