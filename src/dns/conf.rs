//! The stub resolver's configuration: `resolv.conf` parsing and Go's search-name order.
//!
//! Parsing follows Go's `net` package (`src/net/dnsconfig_unix.go`), since the seed is a Go
//! program and `/get` must behave like its `net.LookupSRV` inside a pod. Where Go sets no upper
//! bound, glibc's caps from resolv.conf(5) apply (timeout <= 30 s, attempts <= 5), so a typo in a
//! pod spec cannot make one lookup wait for hours.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Go and glibc read at most three `nameserver` lines (glibc's MAXNS).
const MAX_SERVERS: usize = 3;
/// Go clamps `ndots` to 0..=15 (glibc's RES_MAXNDOTS).
const MAX_NDOTS: usize = 15;
/// glibc's RES_MAXRETRANS: the largest accepted `timeout:` in seconds.
const MAX_TIMEOUT_SECS: u64 = 30;
/// glibc's RES_MAXRETRY: the largest accepted `attempts:`.
const MAX_ATTEMPTS: usize = 5;
/// DNS servers listen on port 53; resolv.conf has no syntax for another port.
const DNS_PORT: u16 = 53;

/// A parsed `resolv.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Servers in file order; never empty (Go's default is 127.0.0.1 and ::1).
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
    /// The configuration Go uses when resolv.conf is missing or unreadable.
    pub fn missing_file(hostname: Option<&str>) -> Config {
        let mut conf = Config::base();
        conf.servers = default_servers();
        conf.search = default_search(hostname);
        conf
    }

    fn base() -> Config {
        // Go's and glibc's defaults: ndots 1, timeout 5 s, attempts 2.
        Config {
            servers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }

    /// Parses the text of a resolv.conf. Unknown keywords and malformed values are skipped, as
    /// Go and glibc do: a resolver must keep working with whatever the platform wrote.
    /// `hostname` supplies Go's default search domain when the file has none.
    pub fn parse(text: &str, hostname: Option<&str>) -> Config {
        let mut conf = Config::base();
        for line in text.lines() {
            // Go treats `;` and `#` as comments only at the start of a line, glibc also
            // after a value; cutting at either is what both agree on for real files.
            let line = match line.find(['#', ';']) {
                Some(i) => &line[..i],
                None => line,
            };
            let mut fields = line.split_whitespace();
            let Some(keyword) = fields.next() else {
                continue;
            };
            match keyword {
                "nameserver" => {
                    if let Some(addr) = fields.next().and_then(parse_server)
                        && conf.servers.len() < MAX_SERVERS
                    {
                        conf.servers.push(addr);
                    }
                }
                // `domain` and `search` replace each other; the last one wins (resolv.conf(5)).
                "domain" => {
                    if let Some(d) = fields.next() {
                        conf.search = vec![ensure_rooted(d)];
                    }
                }
                "search" => {
                    conf.search = fields
                        .map(ensure_rooted)
                        // Go drops a lone "." (the root) from the search list.
                        .filter(|s| s != ".")
                        .collect();
                }
                "options" => {
                    for opt in fields {
                        conf.apply_option(opt);
                    }
                }
                _ => {}
            }
        }
        if conf.servers.is_empty() {
            conf.servers = default_servers();
        }
        if conf.search.is_empty() {
            conf.search = default_search(hostname);
        }
        conf
    }

    fn apply_option(&mut self, opt: &str) {
        if let Some(v) = opt.strip_prefix("ndots:") {
            self.ndots = leading_number(v).min(MAX_NDOTS as u64) as usize;
        } else if let Some(v) = opt.strip_prefix("timeout:") {
            let secs = leading_number(v).clamp(1, MAX_TIMEOUT_SECS);
            self.timeout = Duration::from_secs(secs);
        } else if let Some(v) = opt.strip_prefix("attempts:") {
            self.attempts = leading_number(v).clamp(1, MAX_ATTEMPTS as u64) as usize;
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

/// Go's `dtoi` as used for options: the leading decimal digits, saturating; 0 when none.
fn leading_number(s: &str) -> u64 {
    s.bytes().take_while(u8::is_ascii_digit).fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    })
}

/// A `nameserver` value: an IPv4 or IPv6 address, optionally with a numeric zone (`%2`).
/// Names are refused, as in Go: resolving the resolver would need DNS.
fn parse_server(s: &str) -> Option<SocketAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, DNS_PORT));
    }
    let (addr, zone) = s.split_once('%')?;
    let ip: Ipv6Addr = addr.parse().ok()?;
    // Interface names as zones would need if_nametoindex; link-local resolvers are rare
    // enough in pods that only numeric zones are supported.
    let scope: u32 = zone.parse().ok()?;
    Some(SocketAddr::V6(std::net::SocketAddrV6::new(
        ip, DNS_PORT, 0, scope,
    )))
}

fn default_servers() -> Vec<SocketAddr> {
    vec![
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DNS_PORT),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), DNS_PORT),
    ]
}

/// Go's `dnsDefaultSearch`: the domain part of the hostname, if it has one.
fn default_search(hostname: Option<&str>) -> Vec<String> {
    match hostname.and_then(|h| h.split_once('.')) {
        Some((_, domain)) if !domain.is_empty() => vec![ensure_rooted(domain)],
        _ => Vec::new(),
    }
}

fn ensure_rooted(s: &str) -> String {
    if s.ends_with('.') {
        s.to_string()
    } else {
        format!("{s}.")
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
        let c = Config::parse(POD, Some("hello-stateful-0"));
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
        let c = Config::parse("", None);
        assert_eq!(c.servers, vec![sock("127.0.0.1:53"), sock("[::1]:53")]);
        assert!(c.search.is_empty());
        assert_eq!((c.ndots, c.attempts), (1, 2));
        assert_eq!(Config::missing_file(None), c);
    }

    #[test]
    fn at_most_three_servers_ipv4_and_ipv6_names_refused() {
        let text = "nameserver 10.0.0.1\nnameserver dns.example\nnameserver fd00::53\n\
                    nameserver fe80::1%2\nnameserver 10.0.0.4\n";
        let c = Config::parse(text, None);
        let scoped = std::net::SocketAddrV6::new("fe80::1".parse().expect("ipv6"), 53, 0, 2);
        assert_eq!(
            c.servers,
            vec![
                sock("10.0.0.1:53"),
                sock("[fd00::53]:53"),
                SocketAddr::V6(scoped)
            ]
        );
    }

    #[test]
    fn comments_are_ignored() {
        let text = "# nameserver 10.0.0.9\n; search bad.\nnameserver 10.0.0.1 # trailing\n\
                    search a.example ; b.example\n";
        let c = Config::parse(text, None);
        assert_eq!(c.servers, vec![sock("10.0.0.1:53")]);
        assert_eq!(c.search, ["a.example."]);
    }

    #[test]
    fn domain_and_search_replace_each_other() {
        let c = Config::parse("search a.example b.example\ndomain c.example\n", None);
        assert_eq!(c.search, ["c.example."]);
        let c = Config::parse("domain c.example\nsearch a.example. .\n", None);
        assert_eq!(c.search, ["a.example."]);
    }

    #[test]
    fn hostname_domain_is_the_default_search() {
        let c = Config::parse("nameserver 10.0.0.1\n", Some("web-0.corp.example"));
        assert_eq!(c.search, ["corp.example."]);
        assert!(Config::parse("", Some("web-0.")).search.is_empty());
    }

    #[test]
    fn options_are_clamped_like_go_and_glibc() {
        let c = Config::parse(
            "options ndots:99 timeout:0 attempts:9 rotate use-vc bogus\n",
            None,
        );
        assert_eq!(c.ndots, 15);
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert_eq!(c.attempts, 5);
        let c = Config::parse(
            "options ndots:0 timeout:99999999999999999999 attempts:x\n",
            None,
        );
        assert_eq!(c.ndots, 0);
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.attempts, 1);
        let c = Config::parse("options ndots:3x timeout:2 attempts:3\n", None);
        assert_eq!(
            (c.ndots, c.timeout, c.attempts),
            (3, Duration::from_secs(2), 3)
        );
    }

    #[test]
    fn short_name_tries_search_list_first() {
        let c = Config::parse(POD, None);
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
        let c = Config::parse("search a.example\noptions ndots:2\n", None);
        assert_eq!(c.name_list("x.y.z"), ["x.y.z.", "x.y.z.a.example."]);
        assert_eq!(c.name_list("x.y"), ["x.y.a.example.", "x.y."]);
        assert_eq!(c.name_list("x"), ["x.a.example.", "x."]);
    }

    #[test]
    fn rooted_name_is_tried_alone() {
        let c = Config::parse(POD, None);
        assert_eq!(c.name_list("svc.example."), ["svc.example."]);
    }

    #[test]
    fn overlong_names_are_dropped() {
        let c = Config::parse("search example.com\n", None);
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
