//! Workers: an elastic pool of threads that run requests, so a request that blocks (a slow
//! upload, a pipelined response stuck behind it, a lookup) holds only its own thread.
//!
//! A job never waits for a busy worker: when no worker is idle a new one starts, up to a
//! ceiling. Idle workers beyond a small core end after a while, so a burst leaves nothing
//! behind. Jobs of one connection run one at a time, in order ([`Workers::submit_for`]), so a
//! client can hold at most one thread however many requests it pipelines.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

type Job = Box<dyn FnOnce() + Send>;

/// Workers kept even when idle: enough for a steady trickle without spawning.
const CORE: usize = 4;
/// How long a worker beyond the core waits for work before it ends.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Our handlers use little stack (bodies and DNS messages live on the heap).
const STACK_SIZE: usize = 256 * 1024;

pub struct Workers {
    shared: Arc<Shared>,
    /// Jobs waiting behind a running job of the same connection.
    in_order: Arc<Mutex<HashMap<SocketAddr, VecDeque<Job>>>>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes idle workers when a job is queued.
    work: Condvar,
    /// Wakes `wait_idle` when a job finishes.
    finished: Condvar,
    max: usize,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Workers waiting for a job, plus those started but not yet waiting.
    idle: usize,
    /// Workers alive.
    total: usize,
    /// Jobs running.
    busy: usize,
    /// Set when a spawn failed, so the warning is logged once per shortage, not per job.
    short: bool,
}

impl Workers {
    /// A pool of at most `max` threads.
    pub fn new(max: usize) -> Workers {
        Workers {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                work: Condvar::new(),
                finished: Condvar::new(),
                max: max.max(1),
            }),
            in_order: Arc::default(),
        }
    }

    /// Runs `job` after the jobs submitted earlier for the same connection, on the worker that
    /// runs them. tiny_http answers a connection's pipelined requests in order anyway, so
    /// running them side by side would only park threads waiting for their turn to write.
    pub fn submit_for(&self, connection: Option<SocketAddr>, job: impl FnOnce() + Send + 'static) {
        let Some(connection) = connection else {
            return self.submit(job);
        };
        {
            let mut waiting = self.in_order.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(queue) = waiting.get_mut(&connection) {
                queue.push_back(Box::new(job));
                return;
            }
            waiting.insert(connection, VecDeque::new());
        }
        let in_order = self.in_order.clone();
        self.submit(move || {
            let mut job: Job = Box::new(job);
            loop {
                // A panic here would leave the connection's entry behind and stall its later
                // requests; the pool catches it per job, so catch it here per request instead.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                    log::error!(
                        "a request handler panicked; the connection's next request goes on"
                    );
                }
                let mut waiting = in_order.lock().unwrap_or_else(|e| e.into_inner());
                match waiting.get_mut(&connection).and_then(VecDeque::pop_front) {
                    Some(next) => job = next,
                    None => {
                        waiting.remove(&connection);
                        return;
                    }
                }
            }
        });
    }

    /// Runs `job` on a worker, starting one if none is idle.
    pub fn submit(&self, job: impl FnOnce() + Send + 'static) {
        let mut state = self.shared.lock();
        state.jobs.push_back(Box::new(job));
        if state.jobs.len() <= state.idle {
            self.shared.work.notify_one();
            return;
        }
        if state.total >= self.shared.max {
            return; // the job waits for the next free worker
        }
        let shared = self.shared.clone();
        let spawned = thread::Builder::new()
            .name("worker".into())
            .stack_size(STACK_SIZE)
            .spawn(move || shared.run());
        match spawned {
            Ok(_) => {
                state.total += 1;
                state.idle += 1;
                state.short = false;
            }
            Err(e) if !state.short => {
                state.short = true;
                log::warn!("cannot start a worker thread ({e}); requests wait for a free one");
            }
            Err(_) => {}
        }
    }

    /// Waits until no job is queued or running, or until `deadline`. True if idle.
    pub fn wait_idle(&self, deadline: Instant) -> bool {
        let mut state = self.shared.lock();
        while !state.jobs.is_empty() || state.busy > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self
                .shared
                .finished
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Jobs running or queued.
    pub fn pending(&self) -> usize {
        let state = self.shared.lock();
        state.busy + state.jobs.len()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking job never holds this lock, so a poisoned lock still holds sound state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                state.idle -= 1;
                state.busy += 1;
                drop(state);
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                    log::error!("a request handler panicked; the worker goes on");
                }
                state = self.lock();
                state.busy -= 1;
                state.idle += 1;
                self.finished.notify_all();
                continue;
            }
            let timed_out;
            (state, timed_out) = match self.work.wait_timeout(state, IDLE_TIMEOUT) {
                Ok((s, t)) => (s, t.timed_out()),
                Err(e) => {
                    let (s, t) = e.into_inner();
                    (s, t.timed_out())
                }
            };
            if timed_out && state.jobs.is_empty() && state.total > CORE {
                state.idle -= 1;
                state.total -= 1;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_blocked_job_does_not_delay_the_next() {
        let workers = Workers::new(8);
        let (release, blocked) = mpsc::channel::<()>();
        workers.submit(move || {
            // Stands for a stalled upload: blocks until the test lets it go.
            blocked.recv().unwrap();
        });
        let (done, finished) = mpsc::channel();
        workers.submit(move || done.send(()).unwrap());
        finished
            .recv_timeout(Duration::from_secs(5))
            .expect("second job ran while the first was blocked");
        release.send(()).unwrap();
        assert!(workers.wait_idle(Instant::now() + Duration::from_secs(5)));
        assert_eq!(workers.pending(), 0);
    }

    #[test]
    fn jobs_beyond_the_ceiling_wait_their_turn() {
        let workers = Workers::new(2);
        let (tx, rx) = mpsc::channel();
        for i in 0..50 {
            let tx = tx.clone();
            workers.submit(move || tx.send(i).unwrap());
        }
        let mut seen: Vec<i32> = (0..50)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        seen.sort();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        assert!(workers.shared.lock().total <= 2);
    }

    #[test]
    fn a_panicking_job_leaves_the_pool_working() {
        let workers = Workers::new(1);
        workers.submit(|| panic!("handler bug"));
        let (tx, rx) = mpsc::channel();
        workers.submit(move || tx.send(()).unwrap());
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn jobs_of_one_connection_run_one_at_a_time_in_order() {
        let workers = Workers::new(64);
        let connection = Some("127.0.0.1:5000".parse().unwrap());
        let (tx, rx) = mpsc::channel();
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for i in 0..200 {
            let (tx, running) = (tx.clone(), running.clone());
            workers.submit_for(connection, move || {
                let before = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tx.send((i, before)).unwrap();
                running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        let seen: Vec<(i32, usize)> = (0..200)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        assert_eq!(
            seen.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            (0..200).collect::<Vec<_>>()
        );
        assert!(
            seen.iter().all(|(_, before)| *before == 0),
            "two jobs of one connection overlapped"
        );
        assert!(workers.wait_idle(Instant::now() + Duration::from_secs(5)));
        assert!(workers.in_order.lock().unwrap().is_empty());
    }

    #[test]
    fn wait_idle_gives_up_at_the_deadline() {
        let workers = Workers::new(1);
        let (_release, blocked) = mpsc::channel::<()>();
        workers.submit(move || {
            // Never released while the test waits: stands for a stalled upload at shutdown.
            let _ = blocked.recv();
        });
        assert!(!workers.wait_idle(Instant::now() + Duration::from_millis(50)));
    }
}
