//! hello-stateful: start-up is a straight line (settings, logger, data file, listener), then
//! the receive loop until a signal, then an orderly stop. `main` only picks the exit status.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hello_stateful::app::App;
use hello_stateful::config::{self, Config};
use hello_stateful::dns::Resolver;
use hello_stateful::front;
use hello_stateful::lifecycle::{self, Lifecycle};
use hello_stateful::storage::Storage;
use hello_stateful::watchdog;
use hello_stateful::workers::Workers;

/// Worker threads at most: each stalled client holds one, so this is how many can stall at once
/// before others queue.
const MAX_WORKERS: usize = 4096;
/// The kubelet's default grace period is 30 s, but a StatefulSet rolls one pod at a time, so
/// each second here is a second of the rollout: finish within one.
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(800);

/// Pending connections the kernel keeps for the accept loop. std listens with 128: a burst of
/// new connections (an ingress reconnecting, a load test starting) then overflows it, and the
/// kernel drops SYNs that clients only retry a second later. The kernel caps this at
/// net.core.somaxconn (4096 by default).
const LISTEN_BACKLOG: i32 = 4096;

fn main() -> ExitCode {
    match try_main() {
        Ok(code) => ExitCode::from(code),
        Err(StartError { message, code }) => {
            // The logger may not be up yet (a bad RUST_LOG), so this goes to stderr directly.
            eprintln!("hello-stateful: {message}");
            ExitCode::from(code)
        }
    }
}

struct StartError {
    message: String,
    code: u8,
}

impl StartError {
    fn new(code: u8, message: impl std::fmt::Display) -> StartError {
        StartError {
            message: message.to_string(),
            code,
        }
    }
}

fn try_main() -> Result<u8, StartError> {
    if let Some(arg) = std::env::args().nth(1) {
        return match arg.as_str() {
            "-h" | "--help" => {
                print!("{}", config::help());
                Ok(0)
            }
            "-V" | "--version" => {
                println!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
                Ok(0)
            }
            other => Err(StartError::new(
                2,
                format!("unknown argument {other:?}; see --help"),
            )),
        };
    }
    let config = Config::from_env().map_err(|e| StartError::new(2, e))?;
    env_logger::Builder::new()
        .parse_filters(&config.log_filter)
        .init();

    let lifecycle = Arc::new(Lifecycle::default());
    lifecycle
        .watch_signals()
        .map_err(|e| StartError::new(1, format!("install signal handlers: {e}")))?;
    lifecycle.exit_when_accept_thread_dies();
    match lifecycle::raise_open_file_limit() {
        Ok(limit) => log::debug!("open file limit {limit}"),
        Err(e) => log::warn!("cannot raise the open file limit: {e}"),
    }
    let hostname = dns_lookup::get_hostname()
        .map_err(|e| StartError::new(1, format!("read hostname: {e}")))?;

    let on_fatal = {
        let lifecycle = lifecycle.clone();
        Box::new(move |_: &str| lifecycle.stop(1))
    };
    let storage = Storage::open(&config.data_file, on_fatal).map_err(|e| StartError::new(1, e))?;
    let server = listen(config.listen_addr)
        .and_then(|listener| {
            tiny_http::Server::from_listener(listener, None).map_err(io::Error::other)
        })
        .map_err(|e| StartError::new(1, format!("listen on {}: {e}", config.listen_addr)))?;
    let server = Arc::new(server);
    lifecycle.attach(server.clone());
    let bound = server.server_addr().to_ip().unwrap_or(config.listen_addr);
    let kick = watchdog::start(bound, lifecycle.clone())
        .map_err(|e| StartError::new(1, format!("start the watchdog: {e}")))?;
    log::info!(
        "hello-stateful {} listening on {} as {hostname}; data file {} ({} bytes); /get looks up {} (resolver {}, timeout {} ms)",
        env!("CARGO_PKG_VERSION"),
        config.listen_addr,
        config.data_file.display(),
        storage.durable_len(),
        config.service_name,
        config.resolv_conf.display(),
        config.lookup_timeout.as_millis(),
    );

    let app = Arc::new(App {
        resolver: Arc::new(Resolver::new(
            config.resolv_conf.clone(),
            config.lookup_timeout,
        )),
        greeting: format!("hello from v2:{hostname}"),
        hostname,
        storage,
        lifecycle: lifecycle.clone(),
        config,
    });
    let workers = Workers::new(MAX_WORKERS);
    if let Err(e) = front::serve(&app, &server, &workers, kick) {
        log::error!("tiny_http's accept loop died: {e}; exiting so the pod restarts");
        lifecycle.stop(1);
    }

    // Answer what was accepted (within the budget: a stalled upload must not hold the exit),
    // then write and sync every record still queued.
    let deadline = lifecycle.stopped_at().unwrap_or_else(Instant::now) + SHUTDOWN_BUDGET;
    if !workers.wait_idle(deadline) {
        log::warn!(
            "{} requests still open at shutdown; not waiting for them",
            workers.pending()
        );
    }
    app.storage.close();
    let code = lifecycle.exit_code();
    log::info!(
        "stopped; data file {} bytes; exit status {code}",
        app.storage.durable_len()
    );
    Ok(code as u8)
}

/// Binds like `TcpListener::bind` (with SO_REUSEADDR, as std does on Unix), with a deeper backlog.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}
