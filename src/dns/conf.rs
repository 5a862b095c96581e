//! The stub resolver's configuration: what a pod's `resolv.conf` holds, and Go's search-name
//! order.
//!
//! The kubelet writes one to three `nameserver` lines, a `search` list and `options ndots:5`,
//! plus any `timeout:` or `attempts:` the pod's `dnsConfig` asks for; that is what is read, as
//! Go's `net` package reads it (`src/net/dnsconfig_unix.go`), since the seed is a Go program and
//! `/get` must behave like its `net.LookupSRV` inside a pod. Anything else (`domain`, `options
//! rotate`, comments) is skipped like any unknown keyword, as Go and glibc skip those. Where Go
//! sets no upper bound, glibc's caps from resolv.conf(5) apply (timeout <= 30 s, attempts <= 5),
//! so a typo in a pod spec cannot make one lookup wait for hours.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::decimal::{DecimalError, parse_decimal};

/// Go and glibc read at most three `nameserver` lines (glibc's MAXNS).
const MAX_SERVERS: usize = 3;
/// Go clamps `ndots` to 0..=15 (glibc's RES_MAXNDOTS).
const MAX_NDOTS: u64 = 15;
/// glibc's RES_MAXRETRANS: the largest accepted `timeout:` in seconds.
const MAX_TIMEOUT_SECS: u64 = 30;
/// glibc's RES_MAXRETRY: the largest accepted `attempts:`.
const MAX_ATTEMPTS: u64 = 5;
/// DNS servers listen on port 53; resolv.conf has no syntax for another port.
const DNS_PORT: u16 = 53;

/// A parsed `resolv.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Servers in file order; never empty (the local host's, 127.0.0.1 and ::1, when the file
    /// names none, as in Go).
    pub servers: Vec<SocketAddr>,
    /// Search suffixes, each fully qualified (trailing dot).
    pub search: Vec<String>,
    pub ndots: usize,
    /// Wait for one reply from one server before trying the next.
    pub timeout: Duration,
    /// Rounds over all servers.
    pub attempts: usize,
}

impl Config {
    /// Parses the text of a resolv.conf (empty for a missing file). Unknown keywords and
    /// malformed values are skipped, as Go and glibc do: a resolver must keep working with
    /// whatever the platform wrote.
    pub fn parse(text: &str) -> Config {
        // Go's and glibc's defaults: ndots 1, timeout 5 s, attempts 2.
        let mut conf = Config {
            servers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
        };
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("nameserver") => {
                    // Names are refused, as in Go: resolving the resolver would need DNS.
                    if let Some(ip) = fields.next().and_then(|f| f.parse::<IpAddr>().ok())
                        && conf.servers.len() < MAX_SERVERS
                    {
                        conf.servers.push(SocketAddr::new(ip, DNS_PORT));
                    }
                }
                Some("search") => {
                    conf.search = fields
                        .map(|s| s.strip_suffix('.').unwrap_or(s).to_string() + ".")
                        // Go drops a lone "." (the root) from the search list.
                        .filter(|s| s != ".")
                        .collect();
                }
                Some("options") => fields.for_each(|opt| conf.apply_option(opt)),
                _ => {}
            }
        }
        if conf.servers.is_empty() {
            conf.servers = vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DNS_PORT),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), DNS_PORT),
            ];
        }
        conf
    }

    /// `ndots:`, `timeout:` and `attempts:`, clamped like Go and glibc; a value too large for
    /// any clamp is clamped too, one that is not a number is skipped.
    fn apply_option(&mut self, opt: &str) {
        let Some((name, value)) = opt.split_once(':') else {
            return;
        };
        let n = match parse_decimal(value) {
            Ok(n) => n,
            Err(DecimalError::TooLarge) => u64::MAX,
            Err(DecimalError::NotDigits) => return,
        };
        match name {
            "ndots" => self.ndots = n.min(MAX_NDOTS) as usize,
            "timeout" => self.timeout = Duration::from_secs(n.clamp(1, MAX_TIMEOUT_SECS)),
            "attempts" => self.attempts = n.clamp(1, MAX_ATTEMPTS) as usize,
            _ => {}
        }
    }

    /// The fully qualified names to try for `name`, in Go's order (`dnsConfig.nameList`):
    /// a rooted name alone; a name with at least `ndots` dots as-is first, then with each
    /// search suffix; otherwise the suffixed names first and the name as-is last. Names that
    /// would exceed 254 characters are left out. Empty for a name too long to be valid.
    pub fn name_list(&self, name: &str) -> Vec<String> {
        let rooted = name.ends_with('.');
        if name.len() > 254 || (name.len() == 254 && !rooted) {
            return Vec::new();
        }
        if rooted {
            return vec![name.to_string()];
        }
        let has_ndots = name.bytes().filter(|&b| b == b'.').count() >= self.ndots;
        let absolute = format!("{name}.");
        let mut names = Vec::with_capacity(self.search.len() + 1);
        if has_ndots {
            names.push(absolute.clone());
        }
        for suffix in &self.search {
            let fqdn = format!("{absolute}{suffix}");
            if fqdn.len() <= 254 {
                names.push(fqdn);
            }
        }
        if !has_ndots {
            names.push(absolute);
        }
        names
    }
}

/// Go's `isDomainName`, simplified to the rules that matter here: at most 254 characters
/// (255 with the root dot), labels of 1 to 63 characters drawn from letters, digits, `_` and
/// `-`, no label starting or ending with `-`. Go refuses other names with "no such host"
/// before sending anything.
pub fn is_domain_name(name: &str) -> bool {
    let len = name.len();
    if len == 0 || len > 254 || (len == 254 && !name.ends_with('.')) {
        return false;
    }
    if name == "." {
        return true;
    }
    let body = name.strip_suffix('.').unwrap_or(name);
    body.split('.').all(|label| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= 63
            && bytes
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            && bytes.first() != Some(&b'-')
            && bytes.last() != Some(&b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "search default.svc.cluster.local svc.cluster.local cluster.local\n\
                       nameserver 10.96.0.10\n\
                       options ndots:5\n";

    fn sock(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn pod_resolv_conf_is_parsed() {
        let c = Config::parse(POD);
        assert_eq!(c.servers, vec![sock("10.96.0.10:53")]);
        assert_eq!(
            c.search,
            [
                "default.svc.cluster.local.",
                "svc.cluster.local.",
                "cluster.local."
            ]
        );
        assert_eq!(c.ndots, 5);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.attempts, 2);
    }

    #[test]
    fn empty_file_gets_go_defaults() {
        let c = Config::parse("");
        assert_eq!(c.servers, vec![sock("127.0.0.1:53"), sock("[::1]:53")]);
        assert!(c.search.is_empty());
        assert_eq!((c.ndots, c.attempts), (1, 2));
    }

    #[test]
    fn at_most_three_servers_ipv4_and_ipv6_names_refused() {
        let text = "nameserver 10.0.0.1\nnameserver dns.example\nnameserver fd00::53\n\
                    nameserver 10.0.0.3\nnameserver 10.0.0.4\n";
        let c = Config::parse(text);
        assert_eq!(
            c.servers,
            vec![
                sock("10.0.0.1:53"),
                sock("[fd00::53]:53"),
                sock("10.0.0.3:53")
            ]
        );
    }

    #[test]
    fn what_a_kubelet_never_writes_is_skipped() {
        let text = "# nameserver 10.0.0.9\n; search bad.\ndomain c.example\n\
                    nameserver 10.0.0.1\nnameserver fe80::1%2\nsearch a.example. .\n\
                    options rotate use-vc edns0 ndots:2\n";
        let c = Config::parse(text);
        assert_eq!(c.servers, vec![sock("10.0.0.1:53")]);
        assert_eq!(c.search, ["a.example."]);
        assert_eq!(c.ndots, 2);
    }

    #[test]
    fn options_are_clamped_like_go_and_glibc() {
        let c = Config::parse("options ndots:99 timeout:0 attempts:9 bogus\n");
        assert_eq!(c.ndots, 15);
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert_eq!(c.attempts, 5);
        let c = Config::parse("options ndots:0 timeout:99999999999999999999 attempts:x\n");
        assert_eq!(c.ndots, 0);
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.attempts, 2, "not a number: skipped");
        let c = Config::parse("options ndots:3x timeout:2 attempts:3\n");
        assert_eq!(
            (c.ndots, c.timeout, c.attempts),
            (1, Duration::from_secs(2), 3)
        );
    }

    #[test]
    fn short_name_tries_search_list_first() {
        let c = Config::parse(POD);
        assert_eq!(
            c.name_list("hello-stateful-service"),
            [
                "hello-stateful-service.default.svc.cluster.local.",
                "hello-stateful-service.svc.cluster.local.",
                "hello-stateful-service.cluster.local.",
                "hello-stateful-service.",
            ]
        );
    }

    #[test]
    fn name_with_ndots_dots_is_tried_as_is_first() {
        let c = Config::parse("search a.example\noptions ndots:2\n");
        assert_eq!(c.name_list("x.y.z"), ["x.y.z.", "x.y.z.a.example."]);
        assert_eq!(c.name_list("x.y"), ["x.y.a.example.", "x.y."]);
        assert_eq!(c.name_list("x"), ["x.a.example.", "x."]);
    }

    #[test]
    fn rooted_name_is_tried_alone() {
        let c = Config::parse(POD);
        assert_eq!(c.name_list("svc.example."), ["svc.example."]);
    }

    #[test]
    fn overlong_names_are_dropped() {
        let c = Config::parse("search example.com\n");
        let long = "a".repeat(250);
        assert_eq!(c.name_list(&long), [format!("{long}.")]);
        assert!(c.name_list(&"a".repeat(255)).is_empty());
    }

    #[test]
    fn domain_name_syntax() {
        assert!(is_domain_name("hello-stateful-service"));
        assert!(is_domain_name("_http._tcp.example.com."));
        assert!(is_domain_name("."));
        assert!(!is_domain_name(""));
        assert!(!is_domain_name("a..b"));
        assert!(!is_domain_name("-a.b"));
        assert!(!is_domain_name("a b"));
        assert!(!is_domain_name(&"a".repeat(64)));
        assert!(!is_domain_name("bad\\.label"));
    }
}
