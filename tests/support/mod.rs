//! Shared fixtures for the integration tests: the real binary (`server`), a real dnsmasq
//! (`dnsmasq`), a StatefulSet of instances behind it (`cluster`), hand-rolled DNS servers
//! (`fake_dns`), headless chromium (`browser`), and what they all need.
#![allow(dead_code)] // each test file uses a different part of the fixtures

pub mod browser;
pub mod cluster;
pub mod dnsmasq;
pub mod fake_dns;
pub mod server;
mod temp_dir;

pub use temp_dir::TempDir;

/// This machine's hostname: the one every server a test starts greets with.
pub fn hostname() -> String {
    dns_lookup::get_hostname().expect("hostname")
}

/// A copy of the server binary in `dir` that any user can run: the build output may sit in a
/// folder other users cannot enter. `dir` and the copy are made readable by all.
pub fn binary_for_any_user(dir: &TempDir) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let copy = dir.path().join("hello-stateful");
    std::fs::copy(env!("CARGO_BIN_EXE_hello-stateful"), &copy).unwrap();
    for path in [dir.path(), &copy] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    copy
}

pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// The open files this test process may hold, after raising its soft limit to the hard one as
/// the server does for itself (the servers it starts inherit the raised limit). A login shell's
/// soft limit of 1024 is too few for the tests that hold thousands of connections.
pub fn open_file_limit() -> u64 {
    hello_stateful::lifecycle::raise_open_file_limit().unwrap_or(0)
}

/// False, with a loud `SKIPPED:` line, when a test cannot run here; under CI a skip fails.
pub fn runnable(test: &str, ok: bool, why: &str) -> bool {
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: {why}; CI must not skip it"
        );
        // Straight to the process's stderr: eprintln! would be captured by the test harness.
        let line = format!("SKIPPED: {test}: {why}\n");
        std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes()).ok();
    }
    ok
}
