//! hello-stateful: start-up is a straight line (settings, logger, data file, listener), then
//! the receive loop until a signal, then an orderly stop. `main` only picks the exit status.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hello_stateful::app::App;
use hello_stateful::budgets::Budgets;
use hello_stateful::clock;
use hello_stateful::config::{self, Config};
use hello_stateful::connections::Connections;
use hello_stateful::dns::Resolver;
use hello_stateful::front::Front;
use hello_stateful::lifecycle::{self, Lifecycle};
use hello_stateful::lineage::Lineage;
use hello_stateful::readiness::Readiness;
use hello_stateful::storage::Storage;

/// The kubelet's default grace period is 30 s, but a StatefulSet rolls one pod at a time, so
/// each second here is a second of the rollout: finish within one.
const SHUTDOWN_BUDGET: Duration = Duration::from_millis(800);

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

    lifecycle::keep_large_blocks_mapped();
    let lifecycle = Arc::new(Lifecycle::default());
    lifecycle
        .watch_signals()
        .map_err(|e| StartError::new(1, format!("install signal handlers: {e}")))?;
    let open_files = lifecycle::raise_open_file_limit().unwrap_or_else(|e| {
        log::warn!("cannot raise the open file limit: {e}");
        1024
    });
    let budgets = Budgets::new(&config, open_files);
    budgets.apply();
    let hostname = dns_lookup::get_hostname()
        .map_err(|e| StartError::new(1, format!("read hostname: {e}")))?;

    let on_fatal = {
        let lifecycle = lifecycle.clone();
        Box::new(move |_: &str| lifecycle.stop(1))
    };
    let storage = Storage::open(&config.data_file, on_fatal).map_err(|e| StartError::new(1, e))?;
    let started = SystemTime::now();
    let started_at = clock::rfc3339(started);
    let lineage = Lineage::record_start(
        &config.data_file,
        storage.durable_len(),
        &hostname,
        &started_at,
    );
    let listener = listen(config.listen_addr, &budgets)
        .map_err(|e| StartError::new(1, format!("listen on {}: {e}", config.listen_addr)))?;
    let (bound, listener_fd) = (
        listener.local_addr().unwrap_or(config.listen_addr),
        listener.as_raw_fd(),
    );
    let server = tiny_http::Server::from_listener(listener, None)
        .map_err(|e| StartError::new(1, format!("serve on {}: {e}", config.listen_addr)))?;
    let server = Arc::new(server);
    lifecycle.attach(server.clone());
    let connections = Arc::new(Connections::new(bound, budgets, lifecycle.clone()));
    connections
        .watch(listener_fd)
        .map_err(|e| StartError::new(1, format!("start the connection watch: {e}")))?;
    log::info!(
        "hello-stateful {} listening on {} as {hostname}; data file {} ({} bytes; volume {}); /get looks up {} (resolver {}, timeout {} ms); budgets for a memory limit of {} bytes: {} connections, {} bytes of request bodies",
        env!("CARGO_PKG_VERSION"),
        config.listen_addr,
        config.data_file.display(),
        storage.durable_len(),
        lineage.summary(),
        config.service_name,
        config.resolv_conf.display(),
        config.lookup_timeout.as_millis(),
        config.memory_limit,
        budgets.connections,
        budgets.body_bytes,
    );

    let app = Arc::new(App {
        resolver: Arc::new(Resolver::new(
            config.resolv_conf.clone(),
            config.lookup_timeout,
        )),
        greeting: format!("hello from v2:{hostname}"),
        hostname,
        started_at,
        started_secs: started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        lineage,
        readiness: Readiness::default(),
        storage,
        lifecycle: lifecycle.clone(),
        config,
    });
    // Answer what was accepted (within the budget: a stalled upload must not hold the exit),
    // then write and sync every record still queued.
    let front = Front::new(app.clone(), server, connections, budgets);
    front.serve(SHUTDOWN_BUDGET);
    app.storage.close();
    let code = lifecycle.exit_code();
    log::info!(
        "stopped; data file {} bytes; exit status {code}",
        app.storage.durable_len()
    );
    Ok(code as u8)
}

/// Binds like `TcpListener::bind` (with SO_REUSEADDR, as std does on Unix), with two bounds:
/// - the backlog of connections the kernel completes for the accept loop is the connection
///   budget (std's 128 is overflowed by an ingress reconnecting or a load test starting, and the
///   kernel drops SYNs that clients retry only a second later; tiny_http accepts whatever waits
///   there, so more would only become threads past the budget);
/// - a send timeout, which every accepted connection inherits: tiny_http sets none, so a client
///   that never reads its answers would hold a thread in `write` for good.
fn listen(addr: SocketAddr, budgets: &Budgets) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_write_timeout(Some(budgets.send_timeout))?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(budgets.connections).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}
