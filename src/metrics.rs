//! Metrics for Prometheus: what each pod stored, how long `fsync` takes on its volume, how its
//! DNS and peers answer, how much of each budget is in use, in the text exposition format
//! (`GET /metrics`). Every figure is an atomic counter updated where the thing happens, so a
//! scrape reads them and never waits on the writer, the DNS or a peer.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::app::{App, ordinal};
use crate::budgets;

/// The routes requests are counted by (`Route::label`).
pub const ROUTES: [&str; 12] = [
    "store",
    "get",
    "data",
    "cluster",
    "info",
    "index",
    "healthz",
    "readyz",
    "readyz_switch",
    "metrics",
    "not_found",
    "wrong_method",
];
/// Every status code the server answers with; anything else is counted as the last.
const CODES: [u16; 14] = [
    200, 206, 304, 400, 404, 405, 408, 412, 413, 416, 500, 503, 507, 0,
];
/// Request durations' bucket bounds, in microseconds.
const REQUEST_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000,
];
/// `fsync` durations' bucket bounds, in microseconds.
const FSYNC_US: [u64; 11] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000,
];
/// Records per `fsync`.
const RECORDS: [u64; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];
/// Outcomes of an SRV lookup sent to the DNS (`ErrorKind`, and success).
pub const LOOKUP_RESULTS: [&str; 6] = [
    "ok",
    "no_such_host",
    "no_records",
    "timeout",
    "server_misbehaving",
    "network",
];
/// Outcomes of one peer fetch for `/cluster`.
pub const FETCH_RESULTS: [&str; 3] = ["ok", "timeout", "error"];

pub static METRICS: Metrics = Metrics::new();

pub struct Metrics {
    requests: [[AtomicU64; CODES.len()]; ROUTES.len()],
    durations: [Histogram<{ REQUEST_US.len() }>; ROUTES.len()],
    records: AtomicU64,
    bytes: AtomicU64,
    fsync_seconds: Histogram<{ FSYNC_US.len() }>,
    fsync_records: Histogram<{ RECORDS.len() }>,
    lookups: [AtomicU64; LOOKUP_RESULTS.len()],
    cached: AtomicU64,
    fetches: [AtomicU64; FETCH_RESULTS.len()],
}

/// Counts of observations at or under each bound (not yet cumulative), their number and sum.
struct Histogram<const N: usize> {
    buckets: [AtomicU64; N],
    count: AtomicU64,
    sum: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    const fn new() -> Self {
        Histogram {
            buckets: [const { AtomicU64::new(0) }; N],
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    fn observe(&self, bounds: &[u64; N], value: u64) {
        if let Some(i) = bounds.iter().position(|&b| value <= b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// The `_bucket`, `_sum` and `_count` lines; `scale` turns the units into the metric's.
    fn write(&self, out: &mut String, name: &str, labels: &str, bounds: &[u64; N], scale: f64) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut total = 0;
        for (bound, bucket) in bounds.iter().zip(&self.buckets) {
            total += bucket.load(Ordering::Relaxed);
            let le = *bound as f64 / scale;
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {total}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum.load(Ordering::Relaxed) as f64 / scale;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

impl Metrics {
    const fn new() -> Metrics {
        Metrics {
            requests: [const { [const { AtomicU64::new(0) }; CODES.len()] }; ROUTES.len()],
            durations: [const { Histogram::new() }; ROUTES.len()],
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            fsync_seconds: Histogram::new(),
            fsync_records: Histogram::new(),
            lookups: [const { AtomicU64::new(0) }; LOOKUP_RESULTS.len()],
            cached: AtomicU64::new(0),
            fetches: [const { AtomicU64::new(0) }; FETCH_RESULTS.len()],
        }
    }

    /// A request to `route` answered with `status` after `took`.
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        let Some(r) = ROUTES.iter().position(|&name| name == route) else {
            return;
        };
        let code = CODES
            .iter()
            .position(|&c| c == status)
            .unwrap_or(CODES.len() - 1);
        self.requests[r][code].fetch_add(1, Ordering::Relaxed);
        self.durations[r].observe(&REQUEST_US, took.as_micros() as u64);
    }

    /// An `fsync` that made `records` records of `bytes` bytes durable, in `took`.
    pub fn synced(&self, records: usize, bytes: u64, took: Duration) {
        self.records.fetch_add(records as u64, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.fsync_seconds
            .observe(&FSYNC_US, took.as_micros() as u64);
        self.fsync_records.observe(&RECORDS, records as u64);
    }

    /// An SRV lookup sent to the DNS, with its outcome (an entry of [`LOOKUP_RESULTS`]).
    pub fn lookup(&self, result: &str) {
        count(&self.lookups, &LOOKUP_RESULTS, result);
    }

    /// An SRV lookup answered from the cache.
    pub fn lookup_cached(&self) {
        self.cached.fetch_add(1, Ordering::Relaxed);
    }

    /// A peer fetch for `/cluster`, with its outcome (an entry of [`FETCH_RESULTS`]).
    pub fn fetch(&self, result: &str) {
        count(&self.fetches, &FETCH_RESULTS, result);
    }
}

fn count<const N: usize>(counters: &[AtomicU64; N], names: &[&str; N], name: &str) {
    if let Some(i) = names.iter().position(|&n| n == name) {
        counters[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// One metric family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// `/metrics`: every figure, as Prometheus' text format 0.0.4 has it.
pub fn render(app: &App) -> String {
    let m = &METRICS;
    let mut out = String::with_capacity(16 * 1024);
    let name = "hello_stateful_http_requests_total";
    family(
        &mut out,
        name,
        "counter",
        "Requests answered, by route and status code.",
    );
    for (route, codes) in ROUTES.iter().zip(&m.requests) {
        for (code, n) in CODES.iter().zip(codes) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let code = if *code == 0 {
                    "other".to_string()
                } else {
                    code.to_string()
                };
                let _ = writeln!(out, "{name}{{route=\"{route}\",code=\"{code}\"}} {n}");
            }
        }
    }
    let name = "hello_stateful_http_request_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time from taking a request to writing its answer, by route.",
    );
    for (route, h) in ROUTES.iter().zip(&m.durations) {
        if h.count.load(Ordering::Relaxed) > 0 {
            h.write(
                &mut out,
                name,
                &format!("route=\"{route}\""),
                &REQUEST_US,
                1e6,
            );
        }
    }
    let counters = [
        (
            "hello_stateful_store_records_total",
            "Records appended to the data file and synced.",
            &m.records,
        ),
        (
            "hello_stateful_store_bytes_total",
            "Bytes appended to the data file and synced.",
            &m.bytes,
        ),
        (
            "hello_stateful_srv_cache_answers_total",
            "SRV lookups answered from the cache.",
            &m.cached,
        ),
    ];
    for (name, help, n) in counters {
        family(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {}", n.load(Ordering::Relaxed));
    }
    let name = "hello_stateful_fsync_duration_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time one fsync of the data file took.",
    );
    m.fsync_seconds.write(&mut out, name, "", &FSYNC_US, 1e6);
    let name = "hello_stateful_fsync_records";
    family(
        &mut out,
        name,
        "histogram",
        "Records one fsync made durable (group commit).",
    );
    m.fsync_records.write(&mut out, name, "", &RECORDS, 1.0);
    let labelled = [
        (
            "hello_stateful_srv_lookups_total",
            "SRV lookups sent to the DNS, by result.",
            &LOOKUP_RESULTS[..],
            &m.lookups[..],
        ),
        (
            "hello_stateful_peer_fetches_total",
            "Peer fetches for /cluster, by result.",
            &FETCH_RESULTS[..],
            &m.fetches[..],
        ),
    ];
    for (name, help, results, counters) in labelled {
        family(&mut out, name, "counter", help);
        for (result, n) in results.iter().zip(counters) {
            let _ = writeln!(
                out,
                "{name}{{result=\"{result}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }
    let gauges = [
        (
            "hello_stateful_data_file_bytes",
            "Durable length of the data file.",
            app.storage.durable_len(),
        ),
        (
            "hello_stateful_ready",
            "1 when /readyz answers 200.",
            u64::from(app.not_ready_because().is_none()),
        ),
        (
            "hello_stateful_volume_starts",
            "Servers started on this volume, this one included.",
            app.lineage.starts,
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let budgets = budgets::ALL.iter().map(|b| (b.name.replace(' ', "_"), b));
    let budgets: Vec<_> = budgets.collect();
    let name = "hello_stateful_budget_limit";
    family(
        &mut out,
        name,
        "gauge",
        "Limit of each budget that counts something.",
    );
    for (label, b) in budgets.iter().filter(|(_, b)| b.limit() > 0) {
        let _ = writeln!(out, "{name}{{budget=\"{label}\"}} {}", b.limit());
    }
    let name = "hello_stateful_budget_in_use";
    family(
        &mut out,
        name,
        "gauge",
        "How much of each budget that counts something is in use.",
    );
    for (label, b) in budgets.iter().filter(|(_, b)| b.limit() > 0) {
        let _ = writeln!(out, "{name}{{budget=\"{label}\"}} {}", b.used());
    }
    let name = "hello_stateful_budget_refusals_total";
    family(
        &mut out,
        name,
        "counter",
        "Clients turned away or closed by each budget.",
    );
    for (label, b) in &budgets {
        let _ = writeln!(out, "{name}{{budget=\"{label}\"}} {}", b.hits());
    }
    let name = "process_start_time_seconds";
    family(
        &mut out,
        name,
        "gauge",
        "When the process started, in seconds since the epoch.",
    );
    let _ = writeln!(out, "{name} {}", app.started_secs);
    let name = "hello_stateful_info";
    family(
        &mut out,
        name,
        "gauge",
        "The server's version and the pod it runs as.",
    );
    let ordinal = ordinal(&app.hostname).map_or(String::new(), |n| n.to_string());
    let _ = writeln!(
        out,
        "{name}{{version=\"{}\",hostname=\"{}\",ordinal=\"{ordinal}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        escape(&app.hostname)
    );
    out
}

/// A label value as the text format writes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_is_written_cumulative() {
        let h: Histogram<3> = Histogram::new();
        let bounds = [1_000, 10_000, 100_000];
        for us in [500, 1_000, 5_000, 200_000] {
            h.observe(&bounds, us);
        }
        let mut out = String::new();
        h.write(&mut out, "t_seconds", "route=\"get\"", &bounds, 1e6);
        assert_eq!(
            out,
            "t_seconds_bucket{route=\"get\",le=\"0.001\"} 2\n\
             t_seconds_bucket{route=\"get\",le=\"0.01\"} 3\n\
             t_seconds_bucket{route=\"get\",le=\"0.1\"} 3\n\
             t_seconds_bucket{route=\"get\",le=\"+Inf\"} 4\n\
             t_seconds_sum{route=\"get\"} 0.2065\n\
             t_seconds_count{route=\"get\"} 4\n"
        );
    }

    #[test]
    fn unknown_names_are_not_counted() {
        let m = Metrics::new();
        m.request("nope", 200, Duration::ZERO);
        m.lookup("nope");
        m.request("get", 418, Duration::ZERO);
        assert_eq!(m.requests[1][CODES.len() - 1].load(Ordering::Relaxed), 1);
        assert!(m.lookups.iter().all(|n| n.load(Ordering::Relaxed) == 0));
    }
}
