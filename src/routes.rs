//! Routing and handlers: one `match` on (method, path), and a plain function per endpoint
//! that returns a [`Reply`]. Nothing here touches a socket, so all of it is unit-testable.

use std::fs::File;
use std::sync::Arc;

use crate::accept;
use crate::app::{App, ordinal};
use crate::clock;
use crate::cluster::{self, Peer};
use crate::conditional::{self, Answer, Fields};
use crate::dns::{LookupError, Resolver};
use crate::json::Json;
use crate::metrics;
use crate::storage::{AppendError, Durable, Storage};

/// Every endpoint, listed in 404 replies.
pub const ENDPOINTS: &str =
    "/store /get /data /cluster /info /metrics / /healthz /readyz /readyz/disable /readyz/enable";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Store,
    Get,
    Data,
    Cluster,
    Index,
    Healthz,
    Readyz,
    Info,
    /// `POST /readyz/enable` (true) or `/readyz/disable` (false).
    SetReady(bool),
    Metrics,
    NotFound,
    /// The path exists but not for this method; the value is the `Allow` header.
    WrongMethod(&'static str),
}

impl Route {
    /// The route's name in `/metrics` (one of `metrics::ROUTES`).
    pub fn label(self) -> &'static str {
        match self {
            Route::Store => "store",
            Route::Get => "get",
            Route::Data => "data",
            Route::Cluster => "cluster",
            Route::Index => "index",
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Info => "info",
            Route::SetReady(_) => "readyz_switch",
            Route::Metrics => "metrics",
            Route::NotFound => "not_found",
            Route::WrongMethod(_) => "wrong_method",
        }
    }
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
        (_, "/info") if readable => Route::Info,
        (_, "/metrics") if readable => Route::Metrics,
        ("POST", "/readyz/enable") => Route::SetReady(true),
        ("POST", "/readyz/disable") => Route::SetReady(false),
        (_, "/readyz/enable" | "/readyz/disable") => Route::WrongMethod("POST"),
        (_, "/get" | "/data" | "/cluster" | "/healthz" | "/readyz" | "/info" | "/metrics") => {
            Route::WrongMethod(READ)
        }
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

    /// A JSON document, ending in a newline.
    pub fn json(status: u16, text: String) -> Reply {
        Reply::text(status, text + "\n").with_header("Content-Type", "application/json")
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
        Route::Cluster => cluster(app, fields.accept.as_deref()),
        Route::Index => index(app, fields.accept.as_deref()),
        Route::Healthz => Reply::text(200, "ok\n"),
        Route::Readyz => readyz(app),
        Route::Info => Reply::json(200, app.info().pretty()),
        Route::SetReady(ready) => set_ready(app, ready),
        // The text format's own media type, which Prometheus asks for.
        Route::Metrics => Reply::text(200, metrics::render(app))
            .with_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8"),
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

/// `/cluster`: every pod's data, as a page of text or, for a client that asks for
/// `application/json`, as JSON; 503 if the lookup fails.
pub fn cluster(app: &App, accept: Option<&str>) -> Reply {
    let json = accept::choose(accept, &["text/plain", "application/json"]) == 1;
    let service = &app.config.service_name;
    let (peers, error) = match cluster::survey(&app.resolver, service, app.config.peer_timeout) {
        Ok(peers) => (peers, None),
        Err(e) if json => {
            log::warn!("{e}");
            (Vec::new(), Some(e.to_string()))
        }
        Err(e) => return lookup_failed(e).with_header("Vary", "Accept"),
    };
    // Without an answer from the DNS, nothing is known of the other pods, gaps included.
    let mut rows = match error {
        Some(_) => Vec::new(),
        None => rows(&app.hostname, &peers),
    };
    let reply = if json {
        // The view always holds this pod, so that a page built on it shows at least the pod
        // that answered: when the lookup failed, or outside a StatefulSet (no ordinal).
        if !rows.iter().any(|row| row.name() == app.hostname) {
            let name = app.hostname.clone();
            rows.push(Row::Missing {
                name,
                target: None,
                this: true,
            });
        }
        let status = if error.is_some() { 503 } else { 200 };
        Reply::json(status, cluster_json(app, &rows, error).to_string())
    } else {
        Reply::text(200, cluster_page(app, &rows))
    };
    reply.with_header("Vary", "Accept")
}

/// A failed SRV lookup: 503, so a client sees the discovery failed rather than an empty list.
fn lookup_failed(e: LookupError) -> Reply {
    log::warn!("{e}");
    Reply::error(503, e)
}

/// A line of the cluster view: a peer found in the Service, or an ordinal missing from it.
enum Row<'a> {
    Peer(&'a Peer),
    Missing {
        name: String,
        target: Option<String>,
        this: bool,
    },
}

impl Row<'_> {
    fn name(&self) -> &str {
        match self {
            Row::Peer(peer) => first_label(&peer.record.target),
            Row::Missing { name, .. } => name,
        }
    }
}

fn first_label(target: &str) -> &str {
    target.split('.').next().unwrap_or(target)
}

/// The peers in ordinal order, and a row for each ordinal below the highest found that has no
/// record (a pod not ready, or gone), and for this pod when it has none (if its hostname has
/// an ordinal: it is a StatefulSet's pod).
fn rows<'a>(hostname: &str, peers: &'a [Peer]) -> Vec<Row<'a>> {
    let ordinal_of = |peer: &Peer| ordinal(first_label(&peer.record.target));
    let this = ordinal(hostname);
    let highest = peers.iter().filter_map(ordinal_of).chain(this).max();
    // A missing pod's target is its peers' with its own name in front.
    let template = peers.iter().find(|p| ordinal_of(p).is_some());
    let set = hostname.rsplit_once('-').map_or(hostname, |(set, _)| set);
    let mut rows: Vec<Row> = peers.iter().map(Row::Peer).collect();
    for n in 0..=highest.unwrap_or(0) {
        if highest.is_none() || peers.iter().any(|p| ordinal_of(p) == Some(n)) {
            continue;
        }
        let set = template.map_or(set, |p| {
            let label = first_label(&p.record.target);
            label.rsplit_once('-').map_or(label, |(set, _)| set)
        });
        let name = format!("{set}-{n}");
        let target = template.map(|p| {
            let rest = p.record.target.split_once('.').map_or("", |(_, rest)| rest);
            format!("{name}.{rest}")
        });
        let this = this == Some(n) && name == hostname;
        rows.push(Row::Missing { name, target, this });
    }
    rows.sort_by_key(|row| ordinal(row.name()).unwrap_or(u64::MAX));
    rows
}

/// Why a pod has no record in the Service, as far as this pod can tell.
fn missing_because(app: &App, this: bool) -> String {
    match (this, app.not_ready_because()) {
        (true, Some(why)) => format!("not in the Service: this pod, {why}"),
        (true, None) => {
            "not in the Service yet: this pod, ready (the DNS answer lags by its TTL)".into()
        }
        (false, _) => "not in the Service: not ready, or gone".into(),
    }
}

/// The `/cluster` page: a head naming this pod, then one line per pod with its data (its tail,
/// with the cap said in front, when it was cut) or why there is none, and a mark when its
/// volume changed hands.
fn cluster_page(app: &App, rows: &[Row]) -> Vec<u8> {
    let mut page =
        format!("You've hit {}\nData stored in the cluster:\n", app.hostname).into_bytes();
    for row in rows {
        let peer = match row {
            Row::Peer(peer) => peer,
            Row::Missing { name, target, this } => {
                let target = target.as_deref().unwrap_or(name);
                let line = format!("- {target}: {}\n", missing_because(app, *this));
                page.extend_from_slice(line.as_bytes());
                continue;
            }
        };
        page.extend_from_slice(format!("- {}: ", peer.record.target).as_bytes());
        if let Some(from) = moved_from(peer) {
            page.extend_from_slice(
                format!("(volume changed hands: last used by {from}) ").as_bytes(),
            );
        }
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

/// The pod that last used a peer's volume, when its `/info` says it was another.
fn moved_from(peer: &Peer) -> Option<&str> {
    let volume = peer.info.as_ref()?.get("volume")?;
    volume.get("moved_from")?.get("pod")?.as_str()
}

/// The cluster view as JSON: this pod, the Service, and one object per row.
fn cluster_json(app: &App, rows: &[Row], error: Option<String>) -> Json {
    let pods = rows.iter().map(|row| {
        let name = row.name().to_string();
        let is_this = name == app.hostname;
        let (target, port, info, data, why) = match row {
            Row::Peer(peer) => {
                let data = peer.data.as_ref().ok().map(|d| {
                    Json::object([
                        ("bytes", Json::Number(d.total)),
                        (
                            "tail",
                            Json::String(String::from_utf8_lossy(&d.tail).into_owned()),
                        ),
                        ("tail_bytes", Json::Number(d.tail.len() as u64)),
                    ])
                });
                let (record, error) = (&peer.record, peer.data.as_ref().err().cloned());
                let info = peer.info.clone().or_else(|| is_this.then(|| app.info()));
                (
                    Some(record.target.clone()),
                    Json::Number(record.port.into()),
                    info,
                    data,
                    error,
                )
            }
            Row::Missing { target, this, .. } => {
                let info = this.then(|| app.info());
                (
                    target.clone(),
                    Json::Null,
                    info,
                    None,
                    Some(missing_because(app, *this)),
                )
            }
        };
        Json::object([
            ("name", Json::String(name)),
            (
                "ordinal",
                ordinal(row.name()).map_or(Json::Null, Json::Number),
            ),
            ("target", Json::text(target)),
            ("port", port),
            ("in_service", Json::Bool(matches!(row, Row::Peer(_)))),
            ("this", Json::Bool(is_this)),
            ("info", info.unwrap_or(Json::Null)),
            ("data", data.unwrap_or(Json::Null)),
            ("error", Json::text(why)),
        ])
    });
    Json::object([
        ("served_by", Json::String(app.hostname.clone())),
        ("service", Json::String(app.config.service_name.clone())),
        (
            "at",
            Json::String(clock::rfc3339(std::time::SystemTime::now())),
        ),
        ("error", Json::text(error)),
        ("pods", Json::Array(pods.collect())),
    ])
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

/// Ready while the data file takes writes, the server is not shutting down, and readiness was
/// not disabled by hand.
pub fn readyz(app: &App) -> Reply {
    match app.not_ready_because() {
        Some(why) => Reply::error(503, format!("not ready: {why}")),
        None => Reply::text(200, "ready\n"),
    }
}

/// `POST /readyz/enable` and `/readyz/disable`.
fn set_ready(app: &App, ready: bool) -> Reply {
    let text = if ready {
        match app.readiness.enable() {
            Some(since) => format!("readiness enabled (it was disabled at {since})"),
            None => "readiness enabled (it was not disabled)".into(),
        }
    } else {
        let since = app
            .readiness
            .disable(&clock::rfc3339(std::time::SystemTime::now()));
        format!("readiness disabled at {since}: /readyz answers 503 until POST /readyz/enable")
    };
    log::info!("{text}");
    Reply::text(200, text + "\n")
}

/// The browser page: one self-contained document whose script draws the pods from the JSON
/// cluster view. `{{pod}}` stands for the name of the pod that serves it.
const PAGE: &str = include_str!("page.html");

/// `/`: the page for a browser (an `Accept` that prefers `text/html`), the text of old for
/// everyone else. Either way the answer depends on `Accept`, which `Vary` says.
fn index(app: &App, accept: Option<&str>) -> Reply {
    let reply = match accept::choose(accept, &["text/plain", "text/html"]) {
        1 => Reply::text(200, PAGE.replace("{{pod}}", &html_escape(&app.hostname)))
            .with_header("Content-Type", "text/html; charset=utf-8")
            .with_header("Content-Security-Policy", PAGE_POLICY),
        _ => index_text(app),
    };
    reply.with_header("Vary", "Accept")
}

/// What the page may do: its own inline style and script, requests to its own origin (the
/// cluster view and stores), and nothing else, so no stored text can make it load anything.
const PAGE_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
    script-src 'unsafe-inline'; connect-src 'self'; img-src data:; form-action 'self'; \
    base-uri 'none'; frame-ancestors 'none'";

/// `text` as HTML text or attribute value.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn index_text(app: &App) -> Reply {
    let ready = match app.not_ready_because() {
        Some(why) => format!("no: {why}"),
        None => "yes".into(),
    };
    Reply::text(
        200,
        format!(
            "{greeting}\n\
             \n\
             hostname: {host}\n\
             ready: {ready}\n\
             data: {len} bytes in {path}\n\
             volume: {volume}\n\
             \n\
             endpoints:\n  \
             POST /store           append the body (or the greeting) to this replica's data file\n  \
             GET  /get             this StatefulSet's pods, from the headless Service's SRV records\n  \
             GET  /data            this replica's data file\n  \
             GET  /cluster         every pod's data\n  \
             GET  /info            this pod's identity, readiness and volume, as JSON\n  \
             GET  /metrics         Prometheus metrics\n  \
             GET  /healthz         liveness\n  \
             GET  /readyz          readiness\n  \
             POST /readyz/disable  take this pod out of service (until enabled, or restarted)\n  \
             POST /readyz/enable   put it back\n",
            greeting = app.greeting,
            host = app.hostname,
            len = app.storage.durable_len(),
            path = app.storage.path().display(),
            volume = app.lineage.summary(),
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

    /// An App for pod `hostname`, its data in a folder of its own (removed with the TempDir).
    fn app(hostname: &str) -> (App, TempDir) {
        let (storage, path, dir) = storage(hostname);
        let config = crate::config::Config::from_lookup(|name| match name {
            "DATA_FILE" => Some(path.display().to_string()),
            _ => None,
        })
        .unwrap();
        let lineage = crate::lineage::Lineage::record_start(&path, 0, hostname, "T0");
        let app = App {
            resolver: Arc::new(Resolver::new(
                "/nonexistent".into(),
                std::time::Duration::from_secs(1),
            )),
            greeting: format!("hello from v2:{hostname}"),
            hostname: hostname.into(),
            storage,
            lifecycle: Arc::new(crate::lifecycle::Lifecycle::default()),
            readiness: Default::default(),
            started_at: "T0".into(),
            started_secs: 0,
            lineage,
            config,
        };
        (app, dir)
    }

    #[test]
    fn readiness_follows_shutdown_storage_and_the_switch() {
        let (app, _dir) = app("web-0");
        assert_eq!(readyz(&app).status, 200);
        let disabled = handle(
            &app,
            Route::SetReady(false),
            "/readyz/disable",
            &Fields::default(),
            Vec::new(),
        );
        let text = String::from_utf8(disabled.body_text().unwrap().to_vec()).unwrap();
        assert!(
            text.starts_with("readiness disabled at ")
                && text.ends_with(": /readyz answers 503 until POST /readyz/enable\n"),
            "{text}"
        );
        let reply = readyz(&app);
        let why = String::from_utf8(reply.body_text().unwrap().to_vec()).unwrap();
        assert_eq!(reply.status, 503);
        assert!(
            why.starts_with("not ready: readiness disabled by POST /readyz/disable at "),
            "{why}"
        );
        assert_eq!(app.info().get("ready"), Some(&Json::Bool(false)));
        set_ready(&app, true);
        assert_eq!(readyz(&app).status, 200);
        app.lifecycle.stop(0);
        assert_eq!(
            readyz(&app).body_text().unwrap(),
            b"not ready: shutting down\n"
        );
        let (app, _dir) = self::app("web-1");
        app.storage.close();
        assert_eq!(readyz(&app).status, 503);
    }

    fn peer(ordinal: usize, data: Result<cluster::PeerData, String>) -> Peer {
        Peer {
            record: dns::Srv {
                priority: 0,
                weight: 33,
                port: 8000,
                target: format!("web-{ordinal}.svc."),
            },
            data,
            info: None,
        }
    }

    fn page(app: &App, peers: &[Peer]) -> String {
        String::from_utf8(cluster_page(app, &rows(&app.hostname, peers))).unwrap()
    }

    #[test]
    fn cluster_page_shows_each_peer_in_order() {
        let cut = cluster::PeerData {
            total: 5003,
            tail: b"aEND".to_vec(),
        };
        let whole = cluster::PeerData {
            total: 3,
            tail: b"abc".to_vec(),
        };
        let (app, _dir) = app("web-1");
        let page = page(
            &app,
            &[
                peer(0, Ok(whole)),
                peer(1, Ok(cut)),
                peer(2, Err("timed out after 500 ms".into())),
            ],
        );
        assert_eq!(
            page,
            "You've hit web-1\nData stored in the cluster:\n\
             - web-0.svc.: abc\n\
             - web-1.svc.: (last 4 of 5003 bytes) aEND\n\
             - web-2.svc.: error: timed out after 500 ms\n"
        );
    }

    #[test]
    fn cluster_page_shows_the_gaps_and_a_volume_that_changed_hands() {
        let data = |text: &str| {
            Ok(cluster::PeerData {
                total: text.len() as u64,
                tail: text.as_bytes().to_vec(),
            })
        };
        let (app, _dir) = app("web-3");
        app.readiness.disable("T1");
        let mut moved = peer(4, data("d"));
        moved.info =
            Some(Json::parse(r#"{"volume":{"moved_from":{"pod":"web-9","at":"T"}}}"#).unwrap());
        let peers = [peer(10, data("c")), peer(0, data("a")), moved];
        assert_eq!(
            page(&app, &peers),
            "You've hit web-3\nData stored in the cluster:\n\
             - web-0.svc.: a\n\
             - web-1.svc.: not in the Service: not ready, or gone\n\
             - web-2.svc.: not in the Service: not ready, or gone\n\
             - web-3.svc.: not in the Service: this pod, readiness disabled by POST /readyz/disable at T1\n\
             - web-4.svc.: (volume changed hands: last used by web-9) d\n\
             - web-5.svc.: not in the Service: not ready, or gone\n\
             - web-6.svc.: not in the Service: not ready, or gone\n\
             - web-7.svc.: not in the Service: not ready, or gone\n\
             - web-8.svc.: not in the Service: not ready, or gone\n\
             - web-9.svc.: not in the Service: not ready, or gone\n\
             - web-10.svc.: c\n"
        );
        // The highest pods gone: nothing says they were there.
        assert_eq!(
            page(&app, &[peer(0, data("a"))]),
            "You've hit web-3\nData stored in the cluster:\n\
             - web-0.svc.: a\n\
             - web-1.svc.: not in the Service: not ready, or gone\n\
             - web-2.svc.: not in the Service: not ready, or gone\n\
             - web-3.svc.: not in the Service: this pod, readiness disabled by POST /readyz/disable at T1\n"
        );
    }

    #[test]
    fn the_cluster_view_as_json() {
        let (app, _dir) = app("web-1");
        let view = cluster_json(
            &app,
            &rows("web-1", &[peer(1, Err("refused".into()))]),
            None,
        );
        let text = view.to_string();
        let parsed = Json::parse(&text).unwrap();
        assert_eq!(
            parsed.get("served_by").and_then(Json::as_str),
            Some("web-1")
        );
        let Some(Json::Array(pods)) = parsed.get("pods") else {
            panic!("{text}")
        };
        assert_eq!(pods.len(), 2, "{text}");
        assert_eq!(pods[0].get("name").and_then(Json::as_str), Some("web-0"));
        assert_eq!(pods[0].get("in_service"), Some(&Json::Bool(false)));
        assert_eq!(pods[1].get("this"), Some(&Json::Bool(true)));
        assert_eq!(pods[1].get("error").and_then(Json::as_str), Some("refused"));
        // A failed lookup still gives a view, of the pod that answered, with the error.
        let failed = cluster(&app, Some("application/json"));
        assert_eq!(
            (failed.status, header(&failed, "Vary")),
            (503, Some("Accept"))
        );
        let failed =
            Json::parse(std::str::from_utf8(failed.body_text().unwrap()).unwrap()).unwrap();
        assert!(
            failed
                .get("error")
                .and_then(Json::as_str)
                .is_some_and(|e| e.starts_with("lookup "))
        );
        let Some(Json::Array(own)) = failed.get("pods") else {
            panic!()
        };
        assert_eq!(
            (own.len(), own[0].get("this")),
            (1, Some(&Json::Bool(true)))
        );
        // Its own /info, since it could not be fetched.
        assert_eq!(
            pods[1]
                .get("info")
                .and_then(|i| i.get("hostname"))
                .and_then(Json::as_str),
            Some("web-1")
        );
    }

    /// `/` as `handle` answers it for a request with these `Accept` fields.
    fn index_for(app: &App, accept: &[&str]) -> Reply {
        let fields = Fields::of(accept.iter().map(|value| ("Accept", *value)));
        handle(app, Route::Index, "/", &fields, Vec::new())
    }

    #[test]
    fn a_browser_gets_the_page_and_every_other_client_the_text() {
        let (app, _dir) = app("web-0");
        let text = index_text(&app).body_text().unwrap().to_vec();
        // The text as it was before there was a page, byte for byte.
        let expected = format!(
            "hello from v2:web-0\n\nhostname: web-0\nready: yes\ndata: 0 bytes in {}\nvolume: {}\n\n\
             endpoints:\n  \
             POST /store           append the body (or the greeting) to this replica's data file\n  \
             GET  /get             this StatefulSet's pods, from the headless Service's SRV records\n  \
             GET  /data            this replica's data file\n  \
             GET  /cluster         every pod's data\n  \
             GET  /info            this pod's identity, readiness and volume, as JSON\n  \
             GET  /metrics         Prometheus metrics\n  \
             GET  /healthz         liveness\n  \
             GET  /readyz          readiness\n  \
             POST /readyz/disable  take this pod out of service (until enabled, or restarted)\n  \
             POST /readyz/enable   put it back\n",
            app.storage.path().display(),
            app.lineage.summary(),
        );
        assert_eq!(String::from_utf8_lossy(&text), expected);
        // No Accept, curl's `*/*`, text asked for, or HTML liked less than text.
        for accept in [
            &[][..],
            &["*/*"],
            &["text/plain"],
            &["text/*"],
            &["text/html;q=0.5, text/plain"],
            &["application/json"],
        ] {
            let reply = index_for(&app, accept);
            assert_eq!(reply.body_text(), Some(&text[..]), "{accept:?}");
            // The front's default, text/plain, as before.
            assert_eq!(header(&reply, "Content-Type"), None, "{accept:?}");
            assert_eq!(header(&reply, "Vary"), Some("Accept"), "{accept:?}");
        }
        let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,\
                      image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7";
        let firefox = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        for accept in [
            &[chrome][..],
            &[firefox],
            &["text/plain;q=0.9", "text/html"],
        ] {
            let reply = index_for(&app, accept);
            assert_eq!(reply.status, 200);
            assert_eq!(
                header(&reply, "Content-Type"),
                Some("text/html; charset=utf-8"),
                "{accept:?}"
            );
            assert_eq!(header(&reply, "Vary"), Some("Accept"));
            assert!(header(&reply, "Content-Security-Policy").is_some());
            let page = String::from_utf8(reply.body_text().unwrap().to_vec()).unwrap();
            assert!(page.starts_with("<!doctype html>"), "{accept:?}");
            assert!(page.contains(r#"<body data-pod="web-0">"#), "{page}");
            assert!(!page.contains("{{"), "a placeholder left: {page}");
        }
    }

    #[test]
    fn the_page_names_its_pod_as_text() {
        assert_eq!(
            html_escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let (app, _dir) = app("web-<b>");
        let page = index_for(&app, &["text/html"]);
        let page = String::from_utf8(page.body_text().unwrap().to_vec()).unwrap();
        assert!(page.contains("<title>web-&lt;b&gt;: hello-stateful</title>"));
        assert!(!page.contains("<b>"), "{page}");
    }

    #[test]
    fn the_page_loads_nothing_and_links_only_relatively() {
        // kubectl proxy serves the page under /api/v1/.../proxy/ and the ingress under
        // /stateful/: an absolute path would leave the pod, a URL with a host the cluster.
        for outside in ["http", "//", "src=", "url(", "@import", "action="] {
            assert!(
                !PAGE.replace("// ", "").contains(outside),
                "the page names {outside:?}"
            );
        }
        assert_eq!(PAGE.matches("href=").count(), 1);
        assert!(PAGE.contains(r#"<link rel="icon" href="data:,">"#));
        let fetches = PAGE.matches("fetch(").count();
        assert_eq!(fetches, PAGE.matches(r#"fetch(base + ""#).count());
        assert_eq!(fetches, 2, "the cluster view and the store");
    }

    #[test]
    fn every_route_is_counted_under_a_name_metrics_knows() {
        let all = [
            Route::Store,
            Route::Get,
            Route::Data,
            Route::Cluster,
            Route::Index,
            Route::Healthz,
            Route::Readyz,
            Route::Info,
            Route::SetReady(true),
            Route::Metrics,
            Route::NotFound,
            Route::WrongMethod("GET"),
        ];
        for route in all {
            assert!(metrics::ROUTES.contains(&route.label()), "{route:?}");
        }
        assert_eq!(all.len(), metrics::ROUTES.len());
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
