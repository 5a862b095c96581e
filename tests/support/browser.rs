//! Test fixture: Debian's chromium, headless, driven through the DevTools protocol over
//! `--remote-debugging-pipe`: JSON messages ended by a NUL byte, commands written to its file
//! descriptor 3, answers and events read from its descriptor 4. One page target, attached in
//! flat mode, so every command after `start` goes to that page. Chromium and every process it
//! started are killed in `Drop`, and its profile removed, also when the test fails.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use hello_stateful::json::Json;

use super::{TempDir, runnable};

const CHROMIUM: &str = "/usr/bin/chromium";
/// How long one command may take to be answered, and a condition to come true.
const PATIENCE: Duration = Duration::from_secs(30);

pub struct Browser {
    child: Child,
    /// Chromium's descriptor 3.
    commands: ChildStdin,
    /// Messages from its descriptor 4, read by a thread of their own so that every wait for
    /// one has a deadline.
    messages: Receiver<Vec<u8>>,
    next_id: u64,
    /// The page's session, once attached.
    session: Option<String>,
    /// Its profile, home and log.
    dir: TempDir,
}

impl Browser {
    /// Starts chromium with an empty page. None, after a `SKIPPED:` line, when chromium is
    /// not installed (a failure under CI).
    pub fn start(test: &str) -> Option<Browser> {
        let installed = Path::new(CHROMIUM).exists();
        if !runnable(
            test,
            installed,
            "chromium not installed (apt-get install chromium)",
        ) {
            return None;
        }
        let dir = TempDir::new("chromium");
        let log = std::fs::File::create(dir.path().join("chromium.log")).unwrap();
        let mut child = Command::new("sh")
            // std gives a child descriptors 0 to 2 only: the shell moves the two pipes to 3
            // and 4, where --remote-debugging-pipe wants them.
            .args([
                "-c",
                r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#,
                CHROMIUM,
            ])
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-proxy-server",
                "--hide-scrollbars",
                "--lang=en-US",
                "--remote-debugging-pipe",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            // Its crash handler keeps its reports under the home folder: this one.
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            // Its helpers (zygotes, renderers, the GPU and network processes) share its
            // group, so that `Drop` can end them all at once.
            .process_group(0)
            .spawn()
            .expect("start chromium");
        let commands = child.stdin.take().unwrap();
        let mut from = BufReader::new(child.stdout.take().unwrap());
        let (sender, messages) = channel();
        std::thread::spawn(move || {
            loop {
                let mut message = Vec::new();
                match from.read_until(0, &mut message) {
                    Ok(n) if n > 0 && message.ends_with(&[0]) => message.pop(),
                    _ => break, // chromium is gone: the waits say so
                };
                if sender.send(message).is_err() {
                    break;
                }
            }
        });
        let mut browser = Browser {
            child,
            commands,
            messages,
            next_id: 0,
            session: None,
            dir,
        };
        let url = [("url", Json::String("about:blank".into()))];
        let target = browser.call("Target.createTarget", Json::object(url));
        let target = target.get("targetId").cloned().expect("a target id");
        let flat = [("targetId", target), ("flatten", Json::Bool(true))];
        let attached = browser.call("Target.attachToTarget", Json::object(flat));
        let session = attached.get("sessionId").and_then(Json::as_str);
        browser.session = Some(session.expect("a session id").to_string());
        Some(browser)
    }

    /// Sends a command and returns its result; panics, with chromium's log, on an error or
    /// when no answer comes within [`PATIENCE`]. Events, and messages the crate's JSON does
    /// not read (events carry fractions and negative numbers), are passed over.
    pub fn call(&mut self, method: &str, params: Json) -> Json {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = vec![
            ("id", Json::Number(id)),
            ("method", Json::String(method.into())),
            ("params", params),
        ];
        if let Some(session) = &self.session {
            command.push(("sessionId", Json::String(session.clone())));
        }
        let mut text = Json::object(command).to_string().into_bytes();
        text.push(0);
        if let Err(e) = self.commands.write_all(&text) {
            panic!("{method}: writing to chromium: {e}\n{}", self.log());
        }
        // Chromium writes the id first; a message it starts with is this answer.
        let ours = format!("{{\"id\":{id},");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = match self.messages.recv_timeout(left) {
                Ok(message) => String::from_utf8_lossy(&message).into_owned(),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{method}: no answer within {PATIENCE:?}\n{}", self.log())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{method}: chromium has gone\n{}", self.log())
                }
            };
            if !message.starts_with(&ours) {
                continue;
            }
            let answer = Json::parse(&message)
                .unwrap_or_else(|e| panic!("{method}: {e}: {message}\n{}", self.log()));
            match answer.get("result") {
                Some(result) if answer.get("error").is_none() => return result.clone(),
                _ => panic!("{method}: {message}"),
            }
        }
    }

    /// Loads `url` in the page, without waiting for it.
    pub fn navigate(&mut self, url: &str) {
        let answer = self.call(
            "Page.navigate",
            Json::object([("url", Json::String(url.into()))]),
        );
        if let Some(error) = answer.get("errorText") {
            panic!("navigate to {url}: {error}");
        }
    }

    /// The value of a JavaScript expression that yields a string (use JSON.stringify for
    /// anything else); panics with the exception when it throws.
    pub fn eval(&mut self, expression: &str) -> String {
        let params = Json::object([
            ("expression", Json::String(expression.into())),
            ("returnByValue", Json::Bool(true)),
            ("awaitPromise", Json::Bool(true)),
        ]);
        let answer = self.call("Runtime.evaluate", params);
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        match answer.get("result").and_then(|r| r.get("value")) {
            Some(Json::String(value)) => value.clone(),
            other => panic!("{expression}: not a string: {other:?}"),
        }
    }

    /// Calls `check` every 100 ms until it gives a value, and returns that; None when it gave
    /// none for [`PATIENCE`].
    pub fn poll<T>(&mut self, mut check: impl FnMut(&mut Browser) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(value) = check(self) {
                return Some(value);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Evaluates `expression` until it yields a non-empty string, and returns that; panics
    /// after [`PATIENCE`] with what was awaited and the page's text.
    pub fn wait_for(&mut self, what: &str, expression: &str) -> String {
        let found = self.poll(|browser| Some(browser.eval(expression)).filter(|v| !v.is_empty()));
        found.unwrap_or_else(|| {
            let page = self.eval("document.body ? document.body.innerText : ''");
            panic!("waited {PATIENCE:?} for {what}; the page shows:\n{page}")
        })
    }

    /// Sets the viewport's width (CSS pixels), and its height: `height`, or the whole page's.
    pub fn resize(&mut self, width: u64, height: Option<u64>) {
        self.viewport(width, height.unwrap_or(600));
        if height.is_none() {
            let whole = self.eval("String(document.documentElement.scrollHeight)");
            self.viewport(width, whole.parse().unwrap());
        }
    }

    fn viewport(&mut self, width: u64, height: u64) {
        let params = Json::object([
            ("width", Json::Number(width)),
            ("height", Json::Number(height)),
            ("deviceScaleFactor", Json::Number(1)),
            ("mobile", Json::Bool(false)),
        ]);
        self.call("Emulation.setDeviceMetricsOverride", params);
    }

    /// Emulates `prefers-color-scheme: dark` (or the default, light).
    pub fn dark(&mut self, dark: bool) {
        let scheme = if dark { "dark" } else { "light" };
        let feature = Json::object([
            ("name", Json::String("prefers-color-scheme".into())),
            ("value", Json::String(scheme.into())),
        ]);
        let features = Json::object([("features", Json::Array(vec![feature]))]);
        self.call("Emulation.setEmulatedMedia", features);
    }

    /// Writes what the viewport shows to `path`, as PNG.
    pub fn screenshot(&mut self, path: &Path) {
        let png = [("format", Json::String("png".into()))];
        let shot = self.call("Page.captureScreenshot", Json::object(png));
        let data = shot.get("data").and_then(Json::as_str).expect("image data");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, base64_decode(data)).unwrap();
    }

    /// Chromium's own log (stderr), for failure messages.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("chromium.log"));
        let log = log.unwrap_or_default();
        // The end says why it stopped; the start is the same on every run.
        let start = log.len().saturating_sub(4000);
        let start = (start..log.len())
            .find(|&i| log.is_char_boundary(i))
            .unwrap_or(0);
        format!("chromium's log (its end):\n{}", &log[start..])
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Asked to close, chromium ends its helpers itself and reaps them.
        let close = b"{\"id\":0,\"method\":\"Browser.close\"}\0";
        if self.commands.write_all(close).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Whatever is left of it, closed or not.
        let group = format!("-{}", self.child.id());
        // The group may be gone already; the wait below reaps the browser either way.
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
        // The crash handlers chromium starts leave its group (a session of their own), but
        // name its home folder in their command line: ended by their process id.
        let home = format!("{}/", self.dir.path().display());
        for pid in processes_naming(&home) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// Processes (other than this one) whose command line contains `text`.
fn processes_naming(text: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let this = std::process::id();
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != this)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|line| String::from_utf8_lossy(&line).contains(text))
        })
        .collect()
}

/// Standard base64 (RFC 4648, with padding), as DevTools sends a screenshot.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {:?}", c as char),
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for quad in text.trim_end_matches('=').as_bytes().chunks(4) {
        let bits = quad.iter().enumerate().fold(0u32, |acc, (i, &c)| {
            acc | u32::from(value(c)) << (18 - 6 * i)
        });
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..quad.len()]);
    }
    out
}
