//! Routing and handlers: one `match` on (method, path), and a plain function per endpoint
//! that returns a [`Reply`]. Nothing here touches a socket, so all of it is unit-testable.

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::cluster::{self, Peer};
use crate::conditional::{self, Answer, Fields};
use crate::dns::{LookupError, Resolver};
use crate::storage::{AppendError, Durable, Storage};

/// Every endpoint, listed in 404 replies and on the index page.
pub const ENDPOINTS: &str = "/store /get /data /cluster / /healthz /readyz";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Store,
    Get,
    Data,
    Cluster,
    Index,
    Healthz,
    Readyz,
    NotFound,
    /// The path exists but not for this method; the value is the `Allow` header.
    WrongMethod(&'static str),
}

/// Maps a request to its endpoint. `path` may carry a query string, which no endpoint uses.
pub fn route(method: &str, path: &str) -> Route {
    const READ: &str = "GET, HEAD";
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let readable = matches!(method, "GET" | "HEAD");
    match (method, path) {
        // The seed stores on any method, so `curl -d` (POST) and a plain `curl` (GET) both do.
        (_, "/store") => Route::Store,
        // The seed's kubectl-proxy example posts to the pod's root path.
        ("POST", "/") => Route::Store,
        (_, "/") if readable => Route::Index,
        (_, "/") => Route::WrongMethod("GET, HEAD, POST"),
        (_, "/get") if readable => Route::Get,
        (_, "/data") if readable => Route::Data,
        (_, "/cluster") if readable => Route::Cluster,
        (_, "/healthz") if readable => Route::Healthz,
        (_, "/readyz") if readable => Route::Readyz,
        (_, "/get" | "/data" | "/cluster" | "/healthz" | "/readyz") => Route::WrongMethod(READ),
        _ => Route::NotFound,
    }
}

/// What to send back. The body is text or a part of a file, streamed.
pub struct Reply {
    pub status: u16,
    pub body: Body,
    /// Header fields for this answer (`Allow`, `ETag`, a `Cache-Control` or `Content-Type`
    /// other than the front's default); the front adds the framing.
    pub headers: Vec<(&'static str, String)>,
}

pub enum Body {
    Text(Vec<u8>),
    /// `len` bytes of `file` from `start`, streamed without loading them into memory.
    File {
        file: Arc<File>,
        start: u64,
        len: u64,
    },
    /// No content, as a 304 has none; `len` is the length a 200 would have sent, which
    /// `Content-Length` states (RFC 9110 8.6).
    Omitted {
        len: u64,
    },
}

impl Reply {
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            body: Body::Text(body.into()),
            headers: Vec::new(),
        }
    }

    /// The same answer with one more header field.
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// A one-line error: what failed and why.
    pub fn error(status: u16, message: impl std::fmt::Display) -> Reply {
        Reply::text(status, format!("{message}\n"))
    }

    pub fn body_text(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Text(text) => Some(text),
            Body::File { .. } | Body::Omitted { .. } => None,
        }
    }
}

/// Runs the endpoint. `fields` are the request's header fields `/data` acts on; `body` is the
/// request body, read by the front for `/store` only.
pub fn handle(app: &App, route: Route, path: &str, fields: &Fields, body: Vec<u8>) -> Reply {
    match route {
        Route::Store => store(&app.storage, &app.greeting, body),
        Route::Get => get(&app.resolver, &app.config.service_name),
        Route::Data => data(&app.storage, fields),
        Route::Cluster => cluster(
            &app.resolver,
            &app.config.service_name,
            &app.hostname,
            app.config.peer_timeout,
        ),
        Route::Index => index(app),
        Route::Healthz => Reply::text(200, "ok\n"),
        Route::Readyz => readyz(&app.storage, app.lifecycle.is_stopping()),
        Route::NotFound => not_found(path),
        Route::WrongMethod(allow) => {
            Reply::error(405, format!("method not allowed; allowed: {allow}"))
                .with_header("Allow", allow)
        }
    }
}

/// Appends the body, or the greeting when it is empty, and answers with the greeting once the
/// record is durable. During a shutdown the storage stays open until the requests received
/// before the signal are done, so those are still stored; later ones get 503 from `close`.
pub fn store(storage: &Storage, greeting: &str, body: Vec<u8>) -> Reply {
    stored(greeting, storage.append(record(greeting, body)))
}

/// What `/store` appends: the body as sent, or the greeting when it is empty.
pub fn record(greeting: &str, body: Vec<u8>) -> Vec<u8> {
    if body.is_empty() {
        greeting.as_bytes().to_vec()
    } else {
        body
    }
}

/// The answer to `/store` once the append is durable or has failed.
pub fn stored(greeting: &str, result: Result<(), AppendError>) -> Reply {
    match result {
        Ok(()) => Reply::text(200, greeting),
        Err(e @ AppendError::DiskFull) => Reply::error(507, e),
        Err(e @ AppendError::Io(_)) => Reply::error(500, e),
        Err(e @ AppendError::Closed) => Reply::error(503, e),
    }
}

/// The seed's `/get`: the canonical name, then one `target:port` line per SRV record.
pub fn get(resolver: &Arc<Resolver>, service: &str) -> Reply {
    match resolver.lookup_srv(service) {
        Ok(answer) => Reply::text(200, answer.to_get_body()),
        Err(e) => lookup_failed(e),
    }
}

/// `/cluster`: every peer's data as a page of text, or 503 if the lookup fails.
pub fn cluster(
    resolver: &Arc<Resolver>,
    service: &str,
    hostname: &str,
    peer_timeout: Duration,
) -> Reply {
    match cluster::survey(resolver, service, peer_timeout) {
        Ok(peers) => Reply::text(200, cluster_page(hostname, &peers)),
        Err(e) => lookup_failed(e),
    }
}

/// A failed SRV lookup: 503, so a client sees the discovery failed rather than an empty list.
fn lookup_failed(e: LookupError) -> Reply {
    log::warn!("{e}");
    Reply::error(503, e)
}

/// The `/cluster` page: a head naming this pod, then one line per peer with its data (its tail,
/// with the cap said in front, when it was cut) or `error: ` and why.
fn cluster_page(hostname: &str, peers: &[Peer]) -> Vec<u8> {
    let mut page = format!("You've hit {hostname}\nData stored in the cluster:\n").into_bytes();
    for peer in peers {
        page.extend_from_slice(format!("- {}: ", peer.record.target).as_bytes());
        match &peer.data {
            Ok(data) if data.total > data.tail.len() as u64 => {
                let cap = format!("(last {} of {} bytes) ", data.tail.len(), data.total);
                page.extend_from_slice(cap.as_bytes());
                page.extend_from_slice(&data.tail);
            }
            Ok(data) => page.extend_from_slice(&data.tail),
            Err(e) => page.extend_from_slice(format!("error: {e}").as_bytes()),
        }
        page.push(b'\n');
    }
    page
}

/// This replica's data file up to what is durable, streamed: all of it, the part a `Range`
/// asks for, or a 304 when the client's copy is current. Every answer but an error carries
/// the ETag and `Cache-Control: no-cache`: a cache may keep the data, but must ask before each
/// use, since any store changes it.
pub fn data(storage: &Storage, fields: &Fields) -> Reply {
    let Durable { file, len, id } = storage.durable();
    let etag = conditional::etag(id, len);
    let part = |status, start, part_len| Reply {
        status,
        body: Body::File {
            file,
            start,
            len: part_len,
        },
        headers: Vec::new(),
    };
    let reply = match conditional::answer(fields, &etag, len) {
        Answer::Whole => part(200, 0, len),
        Answer::Part { start, len: n } => part(206, start, n).with_header(
            "Content-Range",
            format!("bytes {start}-{}/{len}", start + n - 1),
        ),
        Answer::NotModified => Reply {
            status: 304,
            body: Body::Omitted { len },
            headers: Vec::new(),
        },
        Answer::Unsatisfiable => {
            let range = fields.range.as_deref().unwrap_or_default();
            return Reply::error(
                416,
                format!("range not satisfiable: {range}; the data is {len} bytes"),
            )
            .with_header("Content-Range", format!("bytes */{len}"));
        }
        Answer::PreconditionFailed => {
            return Reply::error(
                412,
                format!("precondition failed: If-Match does not name the data's ETag {etag}"),
            );
        }
    };
    reply
        .with_header("ETag", etag)
        .with_header("Cache-Control", "no-cache")
        .with_header("Accept-Ranges", "bytes")
}

/// Ready while the data file takes writes and the server is not shutting down.
pub fn readyz(storage: &Storage, stopping: bool) -> Reply {
    if stopping {
        Reply::error(503, "not ready: shutting down")
    } else if !storage.is_open() {
        Reply::error(503, "not ready: data file is not writable")
    } else {
        Reply::text(200, "ready\n")
    }
}

fn index(app: &App) -> Reply {
    Reply::text(
        200,
        format!(
            "{greeting}\n\
             \n\
             hostname: {host}\n\
             data: {len} bytes in {path}\n\
             \n\
             endpoints:\n  \
             POST /store    append the body (or the greeting) to this replica's data file\n  \
             GET  /get      this StatefulSet's pods, from the headless Service's SRV records\n  \
             GET  /data     this replica's data file\n  \
             GET  /cluster  every pod's data\n  \
             GET  /healthz  liveness\n  \
             GET  /readyz   readiness\n",
            greeting = app.greeting,
            host = app.hostname,
            len = app.storage.durable_len(),
            path = app.storage.path().display(),
        ),
    )
}

fn not_found(path: &str) -> Reply {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    Reply::error(404, format!("not found: {path}; endpoints: {ENDPOINTS}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns;
    use crate::temp_dir::TempDir;
    use std::os::unix::fs::FileExt;
    use std::path::PathBuf;

    /// Reads a reply's body whole, streamed file or text.
    fn read_body(reply: &Reply) -> std::io::Result<Vec<u8>> {
        match &reply.body {
            Body::Text(text) => Ok(text.clone()),
            Body::File { file, start, len } => {
                let mut out = vec![0; *len as usize];
                file.read_exact_at(&mut out, *start)?;
                Ok(out)
            }
            Body::Omitted { .. } => Ok(Vec::new()),
        }
    }

    #[test]
    fn routes_match_the_design() {
        for method in ["GET", "POST", "PUT", "DELETE", "HEAD"] {
            assert_eq!(route(method, "/store"), Route::Store, "{method} /store");
        }
        assert_eq!(route("POST", "/"), Route::Store);
        assert_eq!(route("GET", "/"), Route::Index);
        assert_eq!(route("HEAD", "/"), Route::Index);
        assert_eq!(route("PUT", "/"), Route::WrongMethod("GET, HEAD, POST"));
        assert_eq!(route("GET", "/get"), Route::Get);
        assert_eq!(route("HEAD", "/get?x=1"), Route::Get);
        assert_eq!(route("POST", "/get"), Route::WrongMethod("GET, HEAD"));
        assert_eq!(route("GET", "/data"), Route::Data);
        assert_eq!(route("GET", "/cluster"), Route::Cluster);
        assert_eq!(route("GET", "/healthz"), Route::Healthz);
        assert_eq!(route("GET", "/readyz"), Route::Readyz);
        assert_eq!(route("DELETE", "/readyz"), Route::WrongMethod("GET, HEAD"));
        assert_eq!(route("GET", "/store/"), Route::NotFound);
        assert_eq!(route("GET", "/nope"), Route::NotFound);
        assert_eq!(route("GET", ""), Route::NotFound);
    }

    /// A storage in a folder of its own, removed with the returned `TempDir`.
    fn storage(name: &str) -> (Storage, PathBuf, TempDir) {
        let dir = TempDir::new(name);
        let path = dir.path().join("hello");
        let storage = Storage::open(&path, Box::new(|why| panic!("fatal: {why}"))).unwrap();
        (storage, path, dir)
    }

    #[test]
    fn store_appends_body_and_answers_greeting() {
        let (storage, path, _dir) = storage("store");
        let reply = store(&storage, "hello from v2:pod-0", b"xxx".to_vec());
        assert_eq!(
            (reply.status, reply.body_text()),
            (200, Some(&b"hello from v2:pod-0"[..]))
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"xxx");
    }

    #[test]
    fn empty_body_appends_greeting() {
        let (storage, path, _dir) = storage("empty");
        let reply = store(&storage, "hello from v2:pod-0", Vec::new());
        assert_eq!(reply.status, 200);
        assert_eq!(std::fs::read(&path).unwrap(), b"hello from v2:pod-0");
    }

    #[test]
    fn store_after_close_appends_nothing() {
        let (storage, path, _dir) = storage("closed");
        storage.close();
        let reply = store(&storage, "hello from v2:pod-0", b"late".to_vec());
        assert_eq!(reply.status, 503);
        assert_eq!(
            reply.body_text().unwrap(),
            b"write data file: server is shutting down\n"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    #[test]
    fn data_streams_only_the_durable_part() {
        let (storage, path, _dir) = storage("data");
        storage.append(b"abc".to_vec()).unwrap();
        // Bytes past the durable length (as if a write were under way) are not shown.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, b"zz").unwrap();
        let reply = data(&storage, &Fields::default());
        assert_eq!(reply.status, 200);
        assert_eq!(read_body(&reply).unwrap(), b"abc");
        // Nor in a range that reaches into them: it ends at the durable length.
        let ranged = |value: &str| data(&storage, &Fields::of([("Range", value)]));
        let reply = ranged("bytes=1-");
        assert_eq!(reply.status, 206);
        assert_eq!(read_body(&reply).unwrap(), b"bc");
        assert_eq!(header(&reply, "Content-Range"), Some("bytes 1-2/3"));
        let reply = ranged("bytes=-4");
        assert_eq!(read_body(&reply).unwrap(), b"abc");
        assert_eq!(header(&reply, "Content-Range"), Some("bytes 0-2/3"));
        let reply = ranged("bytes=3-");
        assert_eq!(reply.status, 416);
        assert_eq!(header(&reply, "Content-Range"), Some("bytes */3"));
    }

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        let mut found = reply.headers.iter().filter(|(n, _)| *n == name);
        let value = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "{name} twice");
        value
    }

    #[test]
    fn the_data_etag_changes_with_each_store_and_each_file() {
        let (storage, path, _dir) = storage("etag");
        let etag = |storage: &Storage| {
            let reply = data(storage, &Fields::default());
            header(&reply, "ETag").unwrap().to_string()
        };
        let empty = etag(&storage);
        assert_eq!(etag(&storage), empty, "the same data, the same ETag");
        storage.append(b"abc".to_vec()).unwrap();
        let abc = etag(&storage);
        assert_ne!(abc, empty);
        // The same length in a file created again is another file: another ETag.
        std::fs::remove_file(&path).unwrap();
        storage.append(b"xyz".to_vec()).unwrap();
        assert_eq!(storage.durable_len(), 3);
        assert_ne!(etag(&storage), abc);
        // And so is another server's file of the same length.
        let (other, _, _other_dir) = self::storage("etag-other");
        other.append(b"xyz".to_vec()).unwrap();
        assert_ne!(etag(&other), etag(&storage));
        let reply = data(
            &storage,
            &Fields::of([("If-None-Match", etag(&storage).as_str())]),
        );
        assert_eq!(reply.status, 304);
        assert!(matches!(reply.body, Body::Omitted { len: 3 }));
        assert_eq!(header(&reply, "Cache-Control"), Some("no-cache"));
    }

    #[test]
    fn readiness_follows_shutdown_and_storage() {
        let (storage, _, _dir) = storage("ready");
        assert_eq!(readyz(&storage, false).status, 200);
        assert_eq!(readyz(&storage, true).status, 503);
        storage.close();
        assert_eq!(readyz(&storage, false).status, 503);
    }

    #[test]
    fn cluster_page_shows_each_peer_in_order() {
        let peer = |ordinal: usize, data| Peer {
            record: dns::Srv {
                priority: 0,
                weight: 33,
                port: 8000,
                target: format!("web-{ordinal}.svc."),
            },
            data,
        };
        let cut = cluster::PeerData {
            total: 5003,
            tail: b"aEND".to_vec(),
        };
        let whole = cluster::PeerData {
            total: 3,
            tail: b"abc".to_vec(),
        };
        let page = cluster_page(
            "web-1",
            &[
                peer(0, Ok(whole)),
                peer(1, Ok(cut)),
                peer(2, Err("timed out after 500 ms".into())),
            ],
        );
        assert_eq!(
            String::from_utf8(page).unwrap(),
            "You've hit web-1\nData stored in the cluster:\n\
             - web-0.svc.: abc\n\
             - web-1.svc.: (last 4 of 5003 bytes) aEND\n\
             - web-2.svc.: error: timed out after 500 ms\n"
        );
    }

    #[test]
    fn not_found_names_the_endpoints() {
        let reply = not_found("/nope?x");
        assert_eq!(reply.status, 404);
        assert_eq!(
            reply.body_text().unwrap(),
            format!("not found: /nope; endpoints: {ENDPOINTS}\n").as_bytes()
        );
    }
}
