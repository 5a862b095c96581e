//! Lifecycle: signals, the shutdown flag and exit status, and the process limits set at start.
//!
//! As PID 1 in a scratch image the kernel ignores SIGTERM unless the process handles it, and
//! the kubelet would wait the whole grace period and then SIGKILL: so SIGTERM and SIGINT are
//! handled, and start a shutdown that answers and syncs what was accepted, then exits 0.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;
use std::time::Instant;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::sync::{lock, wait};

/// Shared shutdown state. The first `stop` wins and sets the exit status.
pub struct Lifecycle {
    stopping: AtomicBool,
    exit_code: AtomicI32,
    stopped_at: Mutex<Option<Instant>>,
    stopped: Condvar,
    server: OnceLock<Arc<tiny_http::Server>>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            stopping: AtomicBool::new(false),
            exit_code: AtomicI32::new(0),
            stopped_at: Mutex::new(None),
            stopped: Condvar::new(),
            server: OnceLock::new(),
        }
    }
}

impl Lifecycle {
    /// Lets `stop` wake the receive loop of this server.
    pub fn attach(&self, server: Arc<tiny_http::Server>) {
        // Only one server is ever attached; a second call would be a bug caught in tests.
        assert!(
            self.server.set(server).is_ok(),
            "a server is already attached"
        );
    }

    /// Starts a shutdown that ends the process with `code`. Later calls change nothing.
    pub fn stop(&self, code: i32) {
        if self.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        self.exit_code.store(code, Ordering::Release);
        *lock(&self.stopped_at) = Some(Instant::now());
        self.stopped.notify_all();
        if let Some(server) = self.server.get() {
            // Queued behind requests already received, so those are still handled.
            server.unblock();
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub fn exit_code(&self) -> i32 {
        self.exit_code.load(Ordering::Acquire)
    }

    /// When the shutdown began; the shutdown's time budget counts from here.
    pub fn stopped_at(&self) -> Option<Instant> {
        *lock(&self.stopped_at)
    }

    /// Waits until a shutdown begins; returns when it began.
    pub fn wait(&self) -> Instant {
        let mut at = lock(&self.stopped_at);
        loop {
            if let Some(at) = *at {
                return at;
            }
            at = wait(&self.stopped, at);
        }
    }

    /// Turns SIGTERM and SIGINT into `stop(0)`. A second signal ends the process at once.
    pub fn watch_signals(self: &Arc<Self>) -> io::Result<()> {
        let mut signals = Signals::new([SIGTERM, SIGINT])?;
        let lifecycle = self.clone();
        thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    let name = if signal == SIGTERM {
                        "SIGTERM"
                    } else {
                        "SIGINT"
                    };
                    if lifecycle.is_stopping() {
                        log::warn!("{name} again: exiting now");
                        std::process::exit(128 + signal);
                    }
                    log::info!("{name}: finishing accepted requests, then exiting");
                    lifecycle.stop(0);
                }
            })?;
        Ok(())
    }
}

/// Raises the soft limit on open files to the hard limit, as Go does at start since 1.19:
/// tiny_http keeps two descriptors per connection and its accept loop ends for good on EMFILE,
/// so the connection budget is sized to the limit this returns.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

/// glibc's malloc (musl's, which the image ships, needs nothing) serves a large block from a
/// thread's heap once a freed one has raised its threshold, and `calloc` then writes zeros over
/// all of it: the buffer of tiny_http's drain for a refused body would become resident. A fixed
/// threshold keeps large blocks mapped on their own: untouched until used, unmapped when freed.
pub fn keep_large_blocks_mapped() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a tuning parameter of the allocator.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_stop_sets_the_exit_code() {
        let lifecycle = Lifecycle::default();
        assert!(!lifecycle.is_stopping());
        lifecycle.stop(1);
        lifecycle.stop(0);
        assert!(lifecycle.is_stopping());
        assert_eq!(lifecycle.exit_code(), 1);
        assert!(lifecycle.stopped_at().is_some());
    }

    #[test]
    fn open_file_limit_is_at_least_the_soft_default() {
        assert!(raise_open_file_limit().unwrap() >= 256);
    }
}
