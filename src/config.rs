//! Configuration: every setting comes from an environment variable, validated at start.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::decimal::parse_decimal;
use crate::dns::is_domain_name;

/// The settings, each already checked. Built once in `main` and shared read-only.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub data_file: PathBuf,
    pub service_name: String,
    pub max_body_bytes: usize,
    pub lookup_timeout: Duration,
    pub peer_timeout: Duration,
    pub resolv_conf: PathBuf,
    pub memory_limit: u64,
    pub head_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_timeout: Duration,
    /// The pod's namespace, IP and node, from the downward API; None when unset or empty.
    pub pod_namespace: Option<String>,
    pub pod_ip: Option<std::net::IpAddr>,
    pub node_name: Option<String>,
    pub log_filter: String,
}

/// One line per variable: name, default, expected form. `--help` prints it and the validation
/// messages quote it, so the two never disagree.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    ("LISTEN_ADDR", "0.0.0.0:8000", "address:port to listen on"),
    (
        "DATA_FILE",
        "/etc/stateful/hello",
        "file the /store bodies are appended to",
    ),
    (
        "SERVICE_NAME",
        "hello-stateful-service",
        "headless Service whose SRV records /get lists",
    ),
    (
        "MAX_BODY_BYTES",
        "1048576",
        "largest /store body accepted, 1 to 1073741824",
    ),
    (
        "LOOKUP_TIMEOUT_MS",
        "2000",
        "bound on one whole SRV lookup, 1 to 60000",
    ),
    (
        "PEER_TIMEOUT_MS",
        "1000",
        "bound on fetching one peer's /data, 1 to 60000",
    ),
    (
        "RESOLV_CONF",
        "/etc/resolv.conf",
        "resolver configuration file",
    ),
    (
        "MEMORY_LIMIT",
        "67108864",
        "memory the pod may use in bytes (its limits.memory): every budget comes from it",
    ),
    (
        "HEAD_TIMEOUT_MS",
        "10000",
        "time for a request head to arrive once begun, 1 to 3600000",
    ),
    (
        "BODY_TIMEOUT_MS",
        "30000",
        "time for a request body to arrive once reading began, 1 to 3600000",
    ),
    (
        "IDLE_TIMEOUT_MS",
        "75000",
        "a connection with no request this long is closed, 1 to 3600000",
    ),
    (
        "SEND_TIMEOUT_MS",
        "10000",
        "time one write of an answer may wait for the client, 1 to 3600000",
    ),
    (
        "POD_NAMESPACE",
        "",
        "the pod's namespace (downward API: metadata.namespace), shown by /info",
    ),
    (
        "POD_IP",
        "",
        "the pod's IP address (downward API: status.podIP), shown by /info",
    ),
    (
        "NODE_NAME",
        "",
        "the node the pod runs on (downward API: spec.nodeName), shown by /info",
    ),
    (
        "RUST_LOG",
        "info",
        "log level: error, warn, info, debug, trace or off",
    ),
];

/// A setting that failed validation: exit status 2, with a message naming the variable.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}={:?}: expected {}",
            self.variable, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let value = |name: &'static str| -> String {
            let (_, default, _) = VARIABLES
                .iter()
                .find(|(n, _, _)| *n == name)
                .expect("every variable read is listed in VARIABLES");
            get(name).unwrap_or_else(|| default.to_string())
        };
        let error = |variable, value: String, expected| ConfigError {
            variable,
            value,
            expected,
        };

        let listen = value("LISTEN_ADDR");
        let listen_addr = listen.parse().map_err(|_| {
            error(
                "LISTEN_ADDR",
                listen.clone(),
                "an address and port such as 0.0.0.0:8000",
            )
        })?;

        let data = value("DATA_FILE");
        if data.is_empty() || data.ends_with('/') {
            return Err(error(
                "DATA_FILE",
                data,
                "a file path such as /etc/stateful/hello",
            ));
        }

        let service_name = value("SERVICE_NAME");
        // The resolver's own rule, so a name taken here is one it will look up; the root alone
        // is a domain name, but no Service's.
        if service_name == "." || !is_domain_name(&service_name) {
            return Err(error(
                "SERVICE_NAME",
                service_name,
                "a DNS name: labels of 1 to 63 letters, digits or '-', at most 253 characters",
            ));
        }

        let bounded = |variable, min, max, expected| {
            let text = value(variable);
            number(&text, min, max).ok_or_else(|| error(variable, text, expected))
        };
        let max_body_bytes = bounded(
            "MAX_BODY_BYTES",
            1,
            1 << 30,
            "a whole number from 1 to 1073741824",
        )?;
        let lookup_ms = bounded(
            "LOOKUP_TIMEOUT_MS",
            1,
            60_000,
            "milliseconds from 1 to 60000",
        )?;
        let peer_ms = bounded("PEER_TIMEOUT_MS", 1, 60_000, "milliseconds from 1 to 60000")?;

        let memory_limit = bounded(
            "MEMORY_LIMIT",
            16 << 20,
            1 << 40,
            "a whole number of bytes from 16777216 to 1099511627776",
        )?;
        let timeout = |variable| {
            bounded(variable, 1, 3_600_000, "milliseconds from 1 to 3600000")
                .map(Duration::from_millis)
        };
        let head_timeout = timeout("HEAD_TIMEOUT_MS")?;
        let body_timeout = timeout("BODY_TIMEOUT_MS")?;
        let idle_timeout = timeout("IDLE_TIMEOUT_MS")?;
        let send_timeout = timeout("SEND_TIMEOUT_MS")?;
        // A body at the limit must fit the budget of body bytes (see budgets.rs).
        if max_body_bytes > memory_limit / 4 * 3 / 4 {
            return Err(error(
                "MAX_BODY_BYTES",
                max_body_bytes.to_string(),
                "at most 3/16 of MEMORY_LIMIT, the budget of request bodies being received",
            ));
        }

        let resolv = value("RESOLV_CONF");
        if resolv.is_empty() {
            return Err(error(
                "RESOLV_CONF",
                resolv,
                "a file path such as /etc/resolv.conf",
            ));
        }

        // Downward-API values: empty means not given (outside Kubernetes).
        let given = |variable| Some(value(variable)).filter(|v| !v.is_empty());
        let pod_namespace = given("POD_NAMESPACE");
        if let Some(ns) = pod_namespace
            .as_ref()
            .filter(|ns| ns.contains('.') || !is_domain_name(ns))
        {
            return Err(error(
                "POD_NAMESPACE",
                ns.clone(),
                "a namespace name: letters, digits and '-', at most 63 characters",
            ));
        }
        let pod_ip =
            match given("POD_IP") {
                Some(ip) => Some(ip.parse().map_err(|_| {
                    error("POD_IP", ip, "an IPv4 or IPv6 address such as 10.244.0.7")
                })?),
                None => None,
            };
        let node_name = given("NODE_NAME");
        if let Some(node) = node_name
            .as_ref()
            .filter(|n| n.ends_with('.') || !is_domain_name(n))
        {
            return Err(error(
                "NODE_NAME",
                node.clone(),
                "a node name: a DNS name of at most 253 characters",
            ));
        }
        let log_filter = value("RUST_LOG");
        if !is_log_filter(&log_filter) {
            return Err(error(
                "RUST_LOG",
                log_filter,
                "a level (error, warn, info, debug, trace, off), optionally per module: info,hello_stateful=debug",
            ));
        }

        Ok(Config {
            listen_addr,
            data_file: PathBuf::from(data),
            service_name,
            // At most 2^30: fits a usize on every target.
            max_body_bytes: max_body_bytes as usize,
            lookup_timeout: Duration::from_millis(lookup_ms),
            peer_timeout: Duration::from_millis(peer_ms),
            resolv_conf: PathBuf::from(resolv),
            memory_limit,
            head_timeout,
            body_timeout,
            idle_timeout,
            send_timeout,
            pod_namespace,
            pod_ip,
            node_name,
            log_filter,
        })
    }
}

/// The `--help` text.
pub fn help() -> String {
    let mut text = format!(
        "{name} {version}: a tiny HTTP service that shows what a Kubernetes StatefulSet gives each replica.\n\n\
         Usage: {name} [--help | --version]\n\n\
         Endpoints: /store (any method; also POST /), /get, /data, /cluster, /info, /metrics, /,\n\
           /healthz, /readyz, POST /readyz/disable, POST /readyz/enable\n\n\
         Environment variables:\n",
        name = env!("CARGO_PKG_NAME"),
        version = env!("CARGO_PKG_VERSION"),
    );
    for (name, default, expected) in VARIABLES {
        text.push_str(&format!("  {name:<18} {expected} (default {default})\n"));
    }
    text
}

/// A strict decimal (digits only: no sign, no spaces) within `min..=max`.
fn number(text: &str, min: u64, max: u64) -> Option<u64> {
    parse_decimal(text).ok().filter(|n| (min..=max).contains(n))
}

/// env_logger's directive syntax, restricted to what it would not silently misread:
/// comma-separated `level` or `module=level`. A bare word must be a level, so a typo such as
/// `RUST_LOG=inof` is an error instead of a filter for a module named `inof`.
fn is_log_filter(filter: &str) -> bool {
    const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];
    let is_level = |s: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s));
    let is_module = |s: &str| {
        !s.is_empty()
            && s.split("::")
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    };
    !filter.is_empty()
        && filter
            .split(',')
            .all(|directive| match directive.split_once('=') {
                Some((module, level)) => is_module(module) && is_level(level),
                None => is_level(directive),
            })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_design() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen_addr, "0.0.0.0:8000".parse().unwrap());
        assert_eq!(c.data_file, PathBuf::from("/etc/stateful/hello"));
        assert_eq!(c.service_name, "hello-stateful-service");
        assert_eq!(c.max_body_bytes, 1_048_576);
        assert_eq!(c.lookup_timeout, Duration::from_millis(2000));
        assert_eq!(c.peer_timeout, Duration::from_millis(1000));
        assert_eq!(c.resolv_conf, PathBuf::from("/etc/resolv.conf"));
        assert_eq!(c.memory_limit, 64 << 20);
        assert_eq!(c.log_filter, "info");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value) in [
            ("LISTEN_ADDR", "8000"),
            ("LISTEN_ADDR", "localhost:8000"),
            ("DATA_FILE", ""),
            ("DATA_FILE", "/etc/stateful/"),
            ("SERVICE_NAME", "bad name"),
            ("SERVICE_NAME", "-bad"),
            ("SERVICE_NAME", "."),
            ("SERVICE_NAME", "a..b"),
            ("MAX_BODY_BYTES", "0"),
            ("MAX_BODY_BYTES", "+5"),
            ("MAX_BODY_BYTES", "1MiB"),
            ("MAX_BODY_BYTES", "99999999999999999999999"),
            ("LOOKUP_TIMEOUT_MS", "-1"),
            ("LOOKUP_TIMEOUT_MS", "60001"),
            ("PEER_TIMEOUT_MS", "1.5"),
            ("RESOLV_CONF", ""),
            ("MEMORY_LIMIT", "64Mi"),
            ("MEMORY_LIMIT", "1000"),
            ("MAX_BODY_BYTES", "20000000"),
            ("IDLE_TIMEOUT_MS", "0"),
            ("SEND_TIMEOUT_MS", "5s"),
            ("RUST_LOG", "loud"),
            ("RUST_LOG", "hello_stateful=verbose"),
            ("POD_NAMESPACE", "team.a"),
            ("POD_NAMESPACE", "-x"),
            ("POD_IP", "10.0.0"),
            ("NODE_NAME", "bad node"),
        ] {
            let err = config(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var, "{var}={value:?}");
            assert!(
                err.to_string().starts_with(&format!("invalid {var}=")),
                "{err}"
            );
        }
    }

    #[test]
    fn good_values_are_taken() {
        let c = config(&[
            ("LISTEN_ADDR", "127.0.0.1:0"),
            (
                "SERVICE_NAME",
                "_http._tcp.hello-stateful-service.default.svc.cluster.local.",
            ),
            ("MAX_BODY_BYTES", "10"),
            ("RUST_LOG", "warn,hello_stateful::front=debug"),
            ("POD_NAMESPACE", "team-a"),
            ("POD_IP", "fd00::7"),
            ("NODE_NAME", "ip-10-0-1-7.eu-west-1.compute.internal"),
        ])
        .unwrap();
        assert_eq!(c.max_body_bytes, 10);
        assert_eq!(c.log_filter, "warn,hello_stateful::front=debug");
        assert_eq!(c.pod_namespace.as_deref(), Some("team-a"));
        assert_eq!(c.pod_ip, Some("fd00::7".parse().unwrap()));
        assert_eq!(
            c.node_name.as_deref(),
            Some("ip-10-0-1-7.eu-west-1.compute.internal")
        );
        assert_eq!(config(&[("POD_IP", "")]).unwrap().pod_ip, None);
    }

    #[test]
    fn help_lists_every_variable() {
        let help = help();
        for (name, default, _) in VARIABLES {
            assert!(help.contains(name) && help.contains(default), "{name}");
        }
    }
}
