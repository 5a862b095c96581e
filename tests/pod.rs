//! What a pod shows of itself, through the real binary: the readiness switch, the volume's
//! lineage across restarts (under the same and under another hostname, and with a lineage file
//! that is corrupt, unreadable or unwritable), and `/info`.

mod support;

use std::path::{Path, PathBuf};

use hello_stateful::app::ordinal;
use hello_stateful::json::Json;
use support::server::{Options, Server, try_request};
use support::{TempDir, hostname, is_root, runnable};

/// A server on the volume `dir` (its data file `dir/hello`), as hostname `as_host` when given
/// (in a UTS namespace of its own: root only).
fn start_on(dir: &Path, as_host: Option<&str>) -> Server {
    let mut options = Options::new().env("DATA_FILE", dir.join("hello").display().to_string());
    if let Some(name) = as_host {
        // `sh -c SCRIPT NAME BINARY`: the fixture appends the binary.
        let script = "hostname \"$0\" && exec \"$1\"";
        options.wrapper = ["unshare", "--uts", "--", "sh", "-c", script, name]
            .map(String::from)
            .to_vec();
    }
    Server::start_with(options)
}

fn info(server: &Server) -> Json {
    let reply = server.request("GET", "/info", b"");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("Content-Type"), Some("application/json"));
    Json::parse(&reply.text()).unwrap_or_else(|e| panic!("{e}: {}", reply.text()))
}

fn volume_line(server: &Server) -> String {
    let index = server.request("GET", "/", b"").text();
    let line = index.lines().find(|l| l.starts_with("volume: "));
    line.unwrap_or_else(|| panic!("no volume line:\n{index}"))
        .to_string()
}

fn lineage_file(dir: &Path) -> PathBuf {
    dir.join("hello.lineage")
}

#[test]
fn readiness_is_switched_off_and_on_by_post() {
    let server = Server::start();
    assert_eq!(server.request("GET", "/readyz", b"").text(), "ready\n");
    let off = server.request("POST", "/readyz/disable", b"");
    assert_eq!(off.status, 200);
    let text = off.text();
    let at = text
        .strip_prefix("readiness disabled at ")
        .and_then(|rest| rest.strip_suffix(": /readyz answers 503 until POST /readyz/enable\n"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        at.len() == 20 && at.ends_with('Z'),
        "an RFC 3339 time: {at}"
    );
    let why = format!("readiness disabled by POST /readyz/disable at {at}");
    let readyz = server.request("GET", "/readyz", b"");
    assert_eq!(
        (readyz.status, readyz.text()),
        (503, format!("not ready: {why}\n"))
    );
    assert_eq!(server.request("GET", "/healthz", b"").status, 200);
    let index = server.request("GET", "/", b"").text();
    assert!(index.contains(&format!("\nready: no: {why}\n")), "{index}");
    let shown = info(&server);
    assert_eq!(shown.get("ready"), Some(&Json::Bool(false)));
    assert_eq!(
        shown.get("not_ready_because").and_then(Json::as_str),
        Some(why.as_str())
    );
    // A second disable keeps the first time; other methods are refused.
    assert!(
        server
            .request("POST", "/readyz/disable", b"")
            .text()
            .contains(at)
    );
    for (method, path) in [
        ("GET", "/readyz/disable"),
        ("PUT", "/readyz/enable"),
        ("DELETE", "/readyz/disable"),
    ] {
        let wrong = server.request(method, path, b"");
        assert_eq!(
            (wrong.status, wrong.header("Allow")),
            (405, Some("POST")),
            "{method} {path}"
        );
    }
    let on = server.request("POST", "/readyz/enable", b"");
    assert_eq!(
        on.text(),
        format!("readiness enabled (it was disabled at {at})\n")
    );
    assert_eq!(server.request("GET", "/readyz", b"").text(), "ready\n");
    assert_eq!(info(&server).get("not_ready_because"), Some(&Json::Null));
    assert!(server.log_text().contains("readiness disabled at"));
}

#[test]
fn readiness_disabled_does_not_outlive_the_process() {
    let volume = TempDir::new("pod-restart-ready");
    let server = start_on(volume.path(), None);
    server.request("POST", "/readyz/disable", b"");
    drop(server);
    let server = start_on(volume.path(), None);
    assert_eq!(server.request("GET", "/readyz", b"").text(), "ready\n");
}

#[test]
fn the_volume_remembers_who_created_it_and_counts_starts() {
    let volume = TempDir::new("pod-lineage");
    let host = hostname();
    let first = start_on(volume.path(), None);
    let line = volume_line(&first);
    let created = line
        .strip_prefix(&format!("volume: created by {host} at "))
        .and_then(|rest| rest.split_once(';'))
        .map(|(at, _)| at.to_string())
        .unwrap_or_else(|| panic!("{line}"));
    first.request("POST", "/store", b"kept");
    drop(first);
    let mut last = String::new();
    for _ in 0..2 {
        let server = start_on(volume.path(), None);
        last = volume_line(&server);
        let info = info(&server);
        assert_eq!(
            info.get("volume").and_then(|v| v.get("moved_from")),
            Some(&Json::Null)
        );
    }
    assert!(
        last.starts_with(&format!(
            "volume: created by {host} at {created}; 3 starts, the last by {host} at "
        )),
        "{last}"
    );
    assert!(!last.contains("CHANGED HANDS"), "{last}");
    // The data file is the stores' bytes alone; the lineage is a JSON file beside it.
    assert_eq!(std::fs::read(volume.path().join("hello")).unwrap(), b"kept");
    let lineage =
        Json::parse(&std::fs::read_to_string(lineage_file(volume.path())).unwrap()).unwrap();
    assert_eq!(lineage.get("starts").and_then(Json::as_u64), Some(3));
}

#[test]
fn a_volume_that_turns_up_under_another_pod_name_is_flagged() {
    let test = "a_volume_that_turns_up_under_another_pod_name_is_flagged";
    if !runnable(
        test,
        is_root(),
        "needs root for a hostname of its own (unshare --uts)",
    ) {
        return;
    }
    let volume = TempDir::new("pod-moved");
    drop(start_on(volume.path(), Some("web-3")));
    let moved = start_on(volume.path(), Some("web-7"));
    assert_eq!(
        moved.request("POST", "/store", b"").text(),
        "hello from v2:web-7"
    );
    let line = volume_line(&moved);
    assert!(line.contains("; 2 starts, the last by web-7 at "), "{line}");
    assert!(
        line.contains("; CHANGED HANDS: last used by web-3 (started "),
        "{line}"
    );
    assert!(
        moved
            .log_text()
            .contains("this volume was last used by pod web-3"),
        "{}",
        moved.log_text()
    );
    let info = info(&moved);
    assert_eq!(info.get("ordinal").and_then(Json::as_u64), Some(7));
    let from = info
        .get("volume")
        .and_then(|v| v.get("moved_from"))
        .and_then(|m| m.get("pod"));
    assert_eq!(from.and_then(Json::as_str), Some("web-3"));
}

#[test]
fn a_bad_lineage_file_is_warned_about_and_the_data_kept() {
    let volume = TempDir::new("pod-bad-lineage");
    drop(start_on(volume.path(), None));
    std::fs::write(volume.path().join("hello"), b"old data").unwrap();
    // Corrupt: a fresh lineage, which cannot know who created a volume that has data.
    std::fs::write(lineage_file(volume.path()), b"{\"starts\": \"many\"").unwrap();
    let server = start_on(volume.path(), None);
    assert!(
        volume_line(&server)
            .starts_with("volume: created before its lineage was recorded; 1 start")
    );
    assert!(
        server.log_text().contains("is not a lineage"),
        "{}",
        server.log_text()
    );
    drop(server);
    // Unwritable: its temporary file cannot be made; the old lineage stays as it was.
    std::fs::create_dir(volume.path().join("hello.lineage.tmp")).unwrap();
    let before = std::fs::read(lineage_file(volume.path())).unwrap();
    let server = start_on(volume.path(), None);
    assert!(volume_line(&server).contains("; 2 starts,"));
    assert!(
        server.log_text().contains("cannot record this start"),
        "{}",
        server.log_text()
    );
    assert_eq!(std::fs::read(lineage_file(volume.path())).unwrap(), before);
    drop(server);
    // Unreadable (a folder where the file should be): neither read nor replaced.
    std::fs::remove_file(lineage_file(volume.path())).unwrap();
    std::fs::create_dir(lineage_file(volume.path())).unwrap();
    let server = start_on(volume.path(), None);
    assert!(
        server.log_text().contains("cannot read lineage file"),
        "{}",
        server.log_text()
    );
    assert_eq!(server.request("POST", "/store", b"!").status, 200);
    assert_eq!(
        std::fs::read(volume.path().join("hello")).unwrap(),
        b"old data!"
    );
}

#[test]
fn info_is_one_json_object_with_the_pods_identity() {
    let server = Server::start_with(
        Options::new()
            .env("POD_NAMESPACE", "team-a")
            .env("POD_IP", "10.244.0.7")
            .env("NODE_NAME", "kind-worker"),
    );
    server.request("POST", "/store", b"12345");
    let info = info(&server);
    let text = |name: &str| info.get(name).and_then(Json::as_str).map(str::to_string);
    let host = hostname();
    assert_eq!(text("hostname"), Some(host.clone()));
    assert_eq!(info.get("ordinal").and_then(Json::as_u64), ordinal(&host));
    assert_eq!(text("namespace").as_deref(), Some("team-a"));
    assert_eq!(text("pod_ip").as_deref(), Some("10.244.0.7"));
    assert_eq!(text("node").as_deref(), Some("kind-worker"));
    assert_eq!(text("version").as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert!(text("started_at").is_some_and(|t| t.len() == 20 && t.ends_with('Z')));
    assert_eq!(info.get("ready"), Some(&Json::Bool(true)));
    assert_eq!(info.get("data_bytes").and_then(Json::as_u64), Some(5));
    let volume = info.get("volume").unwrap();
    assert_eq!(volume.get("starts").and_then(Json::as_u64), Some(1));
    assert_eq!(
        volume
            .get("created")
            .and_then(|c| c.get("pod"))
            .and_then(Json::as_str),
        Some(host.as_str())
    );
    // Without the downward API (outside Kubernetes) those three are null.
    let plain = Server::start();
    let info = self::info(&plain);
    for name in ["namespace", "pod_ip", "node"] {
        assert_eq!(info.get(name), Some(&Json::Null), "{name}");
    }
    let head = try_request(plain.addr, "HEAD", "/info", b"", &[]).unwrap();
    assert_eq!((head.status, head.body.len()), (200, 0));
}
