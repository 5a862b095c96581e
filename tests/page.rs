//! The browser page, through the real binary and Debian's headless chromium: a StatefulSet of
//! real instances with the DNS of its headless Service (`support::cluster`, each server under
//! its pod's hostname), the page loaded from one of them, and what chromium rendered read back
//! through the DevTools protocol (`support::browser`).
//!
//! Tests 10 and 11 of the cluster fixture: DNS at 127.0.55.1x, pods at 127.0.7x.N, and the
//! path-prefix proxy at 127.0.71.200.

mod support;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use hello_stateful::json::Json;
use support::browser::Browser;
use support::cluster::{Cluster, Pod, Setup};

/// Each card on the page, as the page's reader sees it: its pod's name, the words of its
/// status, all its text, its data's tail, and its classes (what it is drawn as).
const CARDS: &str = r##"JSON.stringify([...document.querySelectorAll("#pods > li")].map(li => ({
    name: li.querySelector("h3").textContent,
    state: li.querySelector(".st").textContent,
    text: li.innerText,
    tail: li.querySelector("pre") ? li.querySelector("pre").textContent : "",
    classes: li.className,
})))"##;

struct Card {
    name: String,
    state: String,
    text: String,
    tail: String,
    classes: Vec<String>,
}

impl Card {
    fn is(&self, class: &str) -> bool {
        self.classes.iter().any(|c| c == class)
    }
}

fn read_cards(browser: &mut Browser) -> Vec<Card> {
    let text = browser.eval(CARDS);
    let Ok(Json::Array(cards)) = Json::parse(&text) else {
        panic!("not a list of cards: {text}")
    };
    let field = |card: &Json, name| {
        let value = card.get(name).and_then(Json::as_str);
        value
            .unwrap_or_else(|| panic!("{name} in {text}"))
            .to_string()
    };
    cards
        .iter()
        .map(|card| Card {
            name: field(card, "name"),
            state: field(card, "state"),
            text: field(card, "text"),
            tail: field(card, "tail"),
            classes: field(card, "classes")
                .split_whitespace()
                .map(String::from)
                .collect(),
        })
        .collect()
}

/// Reads the cards every 100 ms until `ok` holds for them (at most the browser's patience),
/// and returns them; panics with the last ones otherwise.
fn until(browser: &mut Browser, what: &str, ok: impl Fn(&[Card]) -> bool) -> Vec<Card> {
    let mut last = Vec::new();
    let found = browser.poll(|browser| {
        let cards = read_cards(browser);
        let done = ok(&cards);
        last = cards.iter().map(|c| c.text.clone()).collect();
        done.then_some(cards)
    });
    found.unwrap_or_else(|| panic!("waited for {what}; the cards were {last:#?}"))
}

/// The text of the element with this id.
fn text_of(browser: &mut Browser, id: &str) -> String {
    browser.eval(&format!("document.getElementById({id:?}).textContent"))
}

/// Types `text` into the page's form and submits it with its button, as a user would.
fn store_through_the_form(browser: &mut Browser, text: &str) {
    let text = Json::String(text.into());
    browser.eval(&format!(
        r##"document.getElementById("text").value = {text};
        document.querySelector("#store button").click(); "sent""##
    ));
}

/// Where the build output is (target/, or CARGO_TARGET_DIR): the binary under test is in its
/// profile's folder there (`debug`).
fn build_output() -> PathBuf {
    let binary = Path::new(env!("CARGO_BIN_EXE_hello-stateful"));
    binary.ancestors().nth(2).unwrap().to_path_buf()
}

/// Saves what the page shows, whole, at `width` CSS pixels, and says where.
fn screenshot(browser: &mut Browser, width: u64, name: &str) {
    browser.resize(width, None);
    let path = build_output().join("page").join(name);
    browser.screenshot(&path);
    let png = std::fs::read(&path).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG: {path:?}");
    // IHDR: the image's width in pixels, at one pixel per CSS pixel.
    assert_eq!(png[16..20], (width as u32).to_be_bytes(), "{path:?}");
    // To the process's stderr: the harness captures what tests print.
    let line = format!("page: screenshot at {}\n", path.display());
    io::stderr().write_all(line.as_bytes()).ok();
}

#[test]
fn the_page_shows_every_pod_and_follows_the_statefulset() {
    let test = "the_page_shows_every_pod_and_follows_the_statefulset";
    // Pod 2's data is markup, which the page must show as text.
    let markup = br#"<b>not bold</b> & <img src="x" alt="no image">"#;
    let setup = Setup {
        pod_hostnames: true,
        dns_ttl: 1,
        ..Setup::default()
    };
    let pods = [
        (0, Pod::Up(b"data of pod 0".to_vec())),
        (1, Pod::Up(b"data of pod 1".to_vec())),
        (2, Pod::Up(markup.to_vec())),
    ];
    let Some(mut cluster) = Cluster::start_with(test, 10, &pods, &setup) else {
        return;
    };
    let Some(mut browser) = Browser::start(test) else {
        return;
    };
    browser.resize(1000, Some(800));
    // Pod 2 serves the page: the mark is not simply on the first card.
    browser.navigate(&format!("http://{}/", cluster.addr(2)));
    let cards = until(&mut browser, "three ready cards", |cards| {
        cards.len() == 3 && cards.iter().all(|c| c.state == "Ready")
    });
    let names: Vec<&str> = cards.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["hello-stateful-0", "hello-stateful-1", "hello-stateful-2"]
    );
    let tails: Vec<&[u8]> = cards.iter().map(|c| c.tail.as_bytes()).collect();
    assert_eq!(tails, [&b"data of pod 0"[..], b"data of pod 1", markup]);
    for (i, card) in cards.iter().enumerate() {
        let data = format!("Data: {} bytes", tails[i].len());
        assert!(card.text.contains(&data), "{}", card.text);
        let volume = format!("Volume: created by hello-stateful-{i} at ");
        assert!(card.text.contains(&volume), "{}", card.text);
        assert!(card.is("ok"), "{:?}", card.classes);
        // Only the pod that served the page is marked, in words too.
        assert_eq!(card.is("me"), i == 2, "{:?}", card.classes);
        assert_eq!(card.text.contains("served this page"), i == 2);
    }
    let made = "String(document.querySelectorAll('#pods b, #pods img').length)";
    assert_eq!(browser.eval(made), "0", "the data was drawn as markup");
    assert!(text_of(&mut browser, "at").starts_with("Updated "));
    browser.eval("window.loadedOnce = 'yes'");

    // A store made after the page loaded shows up without a reload.
    let reply = cluster.server(0).request("POST", "/store", b", and more");
    assert_eq!(reply.status, 200);
    until(&mut browser, "pod 0's new data", |cards| {
        cards[0].tail == "data of pod 0, and more" && cards[0].text.contains("Data: 23 bytes")
    });
    // The form stores on the pod that served the page, and shows the answer.
    store_through_the_form(&mut browser, " typed in the page");
    browser.wait_for(
        "the store's answer",
        r#"document.getElementById("answer").textContent.includes("hello from v2:hello-stateful-2") ? "yes" : """#,
    );
    until(&mut browser, "pod 2's new data", |cards| {
        cards[2].tail.ends_with("> typed in the page")
    });
    assert!(cluster.server(2).data().ends_with(b"> typed in the page"));
    assert_eq!(
        browser.eval("window.loadedOnce"),
        "yes",
        "the page reloaded"
    );

    // Refreshes that change nothing redraw nothing and announce nothing.
    browser.eval(
        r#"window.seen = {refreshes: 0, news: 0, cards: 0};
        const watch = (id, what) => new MutationObserver(() => seen[what]++).observe(
            document.getElementById(id), {subtree: true, childList: true, characterData: true, attributes: true});
        watch("at", "refreshes"); watch("news", "news"); watch("pods", "cards"); "watching""#,
    );
    let seen = browser.wait_for(
        "three refreshes",
        "seen.refreshes >= 3 ? JSON.stringify([seen.news, seen.cards]) : ''",
    );
    assert_eq!(seen, "[0,0]", "news and redrawn cards over three refreshes");

    // A phone, and a 640-pixel window at 200 % zoom: nothing wider than the screen.
    for width in [390, 320] {
        browser.resize(width, Some(700));
        let fits = browser.eval(
            "String(document.documentElement.scrollWidth <= document.documentElement.clientWidth)",
        );
        assert_eq!(fits, "true", "the page is wider than {width} pixels");
    }
    browser.resize(1000, Some(800));

    // Pod 1 stops: its peers cannot reach it, then the Service drops it and, once the DNS
    // answers they keep expire, its card is a gap. Each change is announced: every
    // announcement is kept, since a lookup in the moment the DNS server restarts fails and
    // the page may announce that view too before the next.
    browser.eval(
        r#"window.said = [];
        const news = document.getElementById("news");
        new MutationObserver(() => said.push(news.textContent)).observe(news, {subtree: true, childList: true, characterData: true});
        "listening""#,
    );
    cluster.stop(1);
    let cards = until(&mut browser, "pod 1 not answering", |cards| {
        cards[1].state.starts_with("No answer: ")
    });
    assert!(
        cards[1].state.ends_with("connection refused"),
        "{}",
        cards[1].text
    );
    assert!(cards[1].is("bad"));
    cluster.drop_from_service(1);
    let cards = until(
        &mut browser,
        "a gap for pod 1 between ready pods",
        |cards| {
            let states: Vec<&str> = cards.iter().map(|c| c.state.as_str()).collect();
            states == ["Ready", "Not in the Service: not ready, or gone", "Ready"]
        },
    );
    assert!(cards[1].is("gap"), "{:?}", cards[1].classes);
    assert_eq!(cards[1].tail, "");
    let said = browser.eval("JSON.stringify(said)");
    for news in [
        "hello-stateful-1: No answer: ",
        "hello-stateful-1: Not in the Service: not ready, or gone",
    ] {
        assert!(said.contains(news), "{news:?} was not announced: {said}");
    }
    screenshot(&mut browser, 1000, "cluster.png");
    browser.dark(true);
    screenshot(&mut browser, 1000, "cluster-dark.png");
    browser.dark(false);
    screenshot(&mut browser, 390, "cluster-phone.png");

    // The pod that served the page stops: the page says its updates fail, and keeps the last
    // view.
    cluster.stop(2);
    browser.wait_for(
        "a failed update",
        r#"document.getElementById("at").textContent.startsWith("Update failed") ? "yes" : """#,
    );
    let kept = read_cards(&mut browser);
    assert_eq!(kept.len(), 3);
    assert_eq!(kept[2].state, "Ready", "the last view is kept");
    let news = text_of(&mut browser, "news");
    assert!(news.contains("updates failed"), "{news}");

    // No server here hands a volume to another pod (tests/pod.rs makes one that does), so the
    // page is given such a view by hand; the failing updates leave it shown.
    browser.eval(
        r#"show({pods: [{name: "hello-stateful-0", ordinal: 0, in_service: true, this: false,
            error: null, data: {bytes: 1, tail: "a", tail_bytes: 1},
            info: {ready: true, not_ready_because: null, volume: {summary: "2 starts",
                moved_from: {pod: "hello-stateful-1", at: "T1"}}}}]}); "shown""#,
    );
    let moved = read_cards(&mut browser);
    assert_eq!(moved.len(), 1);
    let warning = "Warning: this volume changed hands. It was last used by hello-stateful-1 \
                   (started T1), not by hello-stateful-0.";
    assert!(moved[0].text.contains(warning), "{}", moved[0].text);
    assert_eq!(
        browser.eval("String(document.querySelectorAll('#pods .warn').length)"),
        "1"
    );
}

#[test]
fn the_page_finds_its_endpoints_under_a_path_prefix() {
    let test = "the_page_finds_its_endpoints_under_a_path_prefix";
    let setup = Setup {
        pod_hostnames: true,
        ..Setup::default()
    };
    let pods = [
        (0, Pod::Up(b"zero".to_vec())),
        (1, Pod::Up(b"one".to_vec())),
    ];
    let Some(cluster) = Cluster::start_with(test, 11, &pods, &setup) else {
        return;
    };
    let Some(mut browser) = Browser::start(test) else {
        return;
    };
    // The ingress's path, and kubectl proxy's, each with and without the trailing slash.
    let prefixes = [
        "/stateful",
        "/api/v1/namespaces/default/pods/hello-stateful-0/proxy",
    ];
    for prefix in prefixes {
        let proxy = PrefixProxy::start(prefix, cluster.addr(0));
        for slash in ["", "/"] {
            let url = format!("http://{}{prefix}{slash}", proxy.addr);
            browser.navigate(&url);
            until(
                &mut browser,
                &format!("two ready cards at {url}"),
                |cards| cards.len() == 2 && cards.iter().all(|c| c.state == "Ready"),
            );
            let stored = format!(" through {url}");
            store_through_the_form(&mut browser, &stored);
            let answer = browser.wait_for(
                "the store's answer",
                r#"document.getElementById("answer").textContent.includes("hello from") ? document.getElementById("answer").textContent : """#,
            );
            assert_eq!(answer, "Stored. The answer: hello from v2:hello-stateful-0");
            until(&mut browser, "the stored text on pod 0's card", |cards| {
                cards[0].tail.ends_with(&stored)
            });
        }
        let asked = proxy.asked();
        let outside: Vec<&String> = asked.iter().filter(|r| !r.contains(prefix)).collect();
        assert!(outside.is_empty(), "asked outside {prefix}: {outside:?}");
        for path in ["", "/", "/cluster", "/store"] {
            let request = format!(" {prefix}{path} ");
            assert!(
                asked.iter().any(|r| r.contains(&request)),
                "{request}: {asked:?}"
            );
        }
    }
}

/// What an ingress or kubectl proxy does to the path, in miniature: requests for `prefix`
/// and below go to `upstream` with the prefix taken off (`/stateful` and `/stateful/` to `/`,
/// `/stateful/cluster` to `/cluster`); any other path gets a 404. One request a connection.
struct PrefixProxy {
    addr: SocketAddr,
    /// Every request line it received.
    asked: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    accepting: Option<JoinHandle<()>>,
}

impl PrefixProxy {
    fn start(prefix: &'static str, upstream: SocketAddr) -> PrefixProxy {
        let listener = TcpListener::bind("127.0.71.200:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let accepting = thread::spawn({
            let (asked, stop) = (asked.clone(), stop.clone());
            move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let asked = asked.clone();
                    thread::spawn(move || {
                        // A browser that gave up on a request is no failure of the proxy's.
                        let _ = forward(client, prefix, upstream, &asked);
                    });
                }
            }
        });
        PrefixProxy {
            addr,
            asked,
            stop,
            accepting: Some(accepting),
        }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

impl Drop for PrefixProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accepting thread, which then sees the stop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accepting) = self.accepting.take() {
            let _ = accepting.join();
        }
    }
}

/// Reads up to and including the blank line that ends a message's head.
fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn forward(
    mut client: TcpStream,
    prefix: &str,
    upstream: SocketAddr,
    asked: &Mutex<Vec<String>>,
) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let head = read_head(&mut client)?;
    let (line, fields) = head.split_once("\r\n").unwrap_or((&head, ""));
    asked.lock().unwrap().push(line.to_string());
    let mut words = line.split(' ');
    let (method, target, version) = (words.next(), words.next(), words.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return Ok(());
    };
    let path = match target.strip_prefix(prefix) {
        Some(rest) if rest.is_empty() || rest.starts_with('?') => format!("/{rest}"),
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ => {
            let not_found =
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            return client.write_all(not_found.as_bytes());
        }
    };
    let fields: Vec<&str> = fields
        .split("\r\n")
        .filter(|f| !f.is_empty() && !f.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    let length: u64 = fields
        .iter()
        .find_map(|f| {
            let (name, value) = f.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut server = TcpStream::connect(upstream)?;
    server.set_read_timeout(Some(Duration::from_secs(10)))?;
    let fields: String = fields.iter().map(|f| format!("{f}\r\n")).collect();
    let head = format!("{method} {path} {version}\r\n{fields}Connection: close\r\n\r\n");
    server.write_all(head.as_bytes())?;
    io::copy(&mut (&client).take(length), &mut server)?;
    // The server does not say it closes, so the proxy does: the browser's next request
    // comes on a connection of its own.
    let answer = read_head(&mut server)?;
    let answer = answer.strip_suffix("\r\n").unwrap_or(&answer);
    client.write_all(format!("{answer}Connection: close\r\n\r\n").as_bytes())?;
    io::copy(&mut server, &mut client)?;
    Ok(())
}
