//! What a lookup returns: the SRV answer (sorted, as `/get` prints it), the addresses from the
//! additional section, and the natural order of target names.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::conf::is_domain_name;
use super::wire::{CLASS_IN, Message, RData, TYPE_A, TYPE_SRV};

/// One SRV record (RFC 2782).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// Fully qualified, with the trailing dot, case as the server sent it.
    pub target: String,
}

/// A successful SRV lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvAnswer {
    /// The name that answered, fully qualified with a trailing dot: like Go's `LookupSRV`, the
    /// owner name of the first SRV record.
    pub canonical: String,
    /// Sorted by priority, then target in natural order (`-2` before `-10`), then port.
    pub records: Vec<Srv>,
    /// The listing is partial: even the TCP answer had TC set.
    pub truncated: bool,
}

impl SrvAnswer {
    /// The `/get` body: the canonical name, then `<target>:<port>` per record, each line ending
    /// in `\n`.
    pub fn to_get_body(&self) -> String {
        let mut body = String::with_capacity(self.canonical.len() + 1 + self.records.len() * 64);
        body.push_str(&self.canonical);
        body.push('\n');
        for srv in &self.records {
            body.push_str(&srv.target);
            body.push(':');
            body.push_str(&srv.port.to_string());
            body.push('\n');
        }
        body
    }
}

/// Compares strings so that runs of ASCII digits compare by numeric value: `web-2` sorts
/// before `web-10`. Other characters compare ignoring ASCII case (DNS names are
/// case-insensitive); exact ties are broken bytewise so the order is total.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < x.len() && j < y.len() {
        if x[i].is_ascii_digit() && y[j].is_ascii_digit() {
            let (si, sj) = (i, j);
            while i < x.len() && x[i].is_ascii_digit() {
                i += 1;
            }
            while j < y.len() && y[j].is_ascii_digit() {
                j += 1;
            }
            let (da, db) = (trim_zeros(&x[si..i]), trim_zeros(&y[sj..j]));
            // Without leading zeros, the longer digit run is the larger number; equal lengths
            // compare digit by digit. No parsing, so any length of run works.
            let ord = da.len().cmp(&db.len()).then_with(|| da.cmp(db));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            let ord = x[i].to_ascii_lowercase().cmp(&y[j].to_ascii_lowercase());
            if ord != Ordering::Equal {
                return ord;
            }
            i += 1;
            j += 1;
        }
    }
    (x.len() - i).cmp(&(y.len() - j)).then_with(|| x.cmp(y))
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let first = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    &digits[first..]
}

/// An SRV answer extracted from a reply, with what the cache needs to know about it.
#[derive(Debug)]
pub struct Extracted {
    pub answer: SrvAnswer,
    /// Seconds the answer may be cached: the smallest TTL of its SRV records.
    pub ttl: u32,
    /// A records of SRV targets from the additional section: lowercase name, addresses, TTL.
    pub hosts: HashMap<String, (Vec<Ipv4Addr>, u32)>,
}

/// Why a reply with SRV records still gives no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtractError {
    /// Go's LookupSRV refuses an answer whose owner name is not a domain name.
    BadOwner,
    /// Every SRV target was invalid.
    BadTargets,
}

/// Builds the answer from a reply known to contain SRV records. Like Go's `LookupSRV`, targets
/// that are not valid domain names are dropped (with a warning) rather than printed.
pub fn extract_srv(message: &Message, truncated: bool) -> Result<Extracted, ExtractError> {
    let mut canonical = None;
    let mut records = Vec::new();
    let mut ttl = u32::MAX;
    for rr in message.answers.iter().filter(|rr| rr.rtype == TYPE_SRV) {
        let RData::Srv {
            priority,
            weight,
            port,
            target,
        } = &rr.data
        else {
            continue;
        };
        canonical.get_or_insert_with(|| rr.name.clone());
        if !is_domain_name(target) {
            log::warn!(
                "{}: dropping SRV record with invalid target {target:?}",
                rr.name
            );
            continue;
        }
        ttl = ttl.min(rr.ttl_secs());
        records.push(Srv {
            priority: *priority,
            weight: *weight,
            port: *port,
            target: target.clone(),
        });
    }
    let canonical = canonical.ok_or(ExtractError::BadTargets)?;
    if !is_domain_name(&canonical) {
        return Err(ExtractError::BadOwner);
    }
    if records.is_empty() {
        return Err(ExtractError::BadTargets);
    }
    records.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| natural_cmp(&a.target, &b.target))
            .then_with(|| a.port.cmp(&b.port))
            .then_with(|| a.weight.cmp(&b.weight))
    });
    let mut hosts: HashMap<String, (Vec<Ipv4Addr>, u32)> = HashMap::new();
    for rr in &message.additionals {
        let RData::A(ip) = rr.data else { continue };
        // Only addresses of the SRV targets are taken: anything else in the additional
        // section was not asked for and is not trusted.
        if rr.rtype != TYPE_A
            || rr.class != CLASS_IN
            || !records
                .iter()
                .any(|s| s.target.eq_ignore_ascii_case(&rr.name))
        {
            continue;
        }
        let entry = hosts
            .entry(rr.name.to_ascii_lowercase())
            .or_insert_with(|| (Vec::new(), u32::MAX));
        entry.0.push(ip);
        entry.1 = entry.1.min(rr.ttl_secs());
    }
    Ok(Extracted {
        answer: SrvAnswer {
            canonical,
            records,
            truncated,
        },
        ttl,
        hosts,
    })
}

/// The IPv4 addresses in a reply's answer section, and their smallest TTL. Like Go, any
/// owner name is accepted: a recursive server puts the CNAME chain first and the addresses
/// belong to its end.
pub fn extract_ipv4(message: &Message) -> (Vec<Ipv4Addr>, u32) {
    let mut ttl = u32::MAX;
    let mut addrs = Vec::new();
    for rr in &message.answers {
        if let RData::A(ip) = rr.data {
            addrs.push(ip);
            ttl = ttl.min(rr.ttl_secs());
        }
    }
    (addrs, ttl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::wire::parse;
    use crate::dns::wire::tests::{Builder, srv_rdata};

    #[test]
    fn natural_order_compares_digit_runs_numerically() {
        let mut names = vec![
            "web-10.", "web-2.", "web-1.", "Web-3.", "web-02.", "web-.", "web-100.",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            [
                "web-.", "web-1.", "web-02.", "web-2.", "Web-3.", "web-10.", "web-100."
            ]
        );
        assert_eq!(natural_cmp("a2b", "a2b"), Ordering::Equal);
        assert_eq!(natural_cmp("a", "a1"), Ordering::Less);
        assert_eq!(
            natural_cmp("x99999999999999999999999", "x100000000000000000000000"),
            Ordering::Less
        );
        assert_ne!(natural_cmp("A", "a"), Ordering::Equal);
    }

    #[test]
    fn get_body_is_canonical_then_target_port_lines() {
        let answer = SrvAnswer {
            canonical: "hello-stateful-service.default.svc.cluster.local.".into(),
            records: vec![
                Srv {
                    priority: 0,
                    weight: 50,
                    port: 8000,
                    target: "a.example.".into(),
                },
                Srv {
                    priority: 0,
                    weight: 50,
                    port: 8001,
                    target: "b.example.".into(),
                },
            ],
            truncated: false,
        };
        assert_eq!(
            answer.to_get_body(),
            "hello-stateful-service.default.svc.cluster.local.\na.example.:8000\nb.example.:8001\n"
        );
    }

    #[test]
    fn srv_answer_is_sorted_with_min_ttl_and_target_addresses() {
        let mut b = Builder::reply(1, 0x8580, "svc.example.", TYPE_SRV, [4, 0, 3]);
        b.rr_ptr_owner(TYPE_SRV, 30, &srv_rdata(0, 33, 8000, "web-10.svc.example."));
        b.rr_ptr_owner(TYPE_SRV, 5, &srv_rdata(0, 33, 8000, "web-2.svc.example."));
        b.rr_ptr_owner(TYPE_SRV, 30, &srv_rdata(1, 33, 8000, "web-1.svc.example."));
        b.rr_ptr_owner(
            TYPE_SRV,
            30,
            &srv_rdata(0, 33, 8000, "bad\\name.svc.example."),
        );
        b.rr("WEB-2.svc.example.", TYPE_A, 7, &[10, 0, 0, 2]);
        b.rr("web-2.svc.example.", TYPE_A, 9, &[10, 0, 0, 22]);
        b.rr("elsewhere.example.", TYPE_A, 9, &[10, 9, 9, 9]);
        let m = parse(&b.buf).expect("parses");
        let e = extract_srv(&m, false).expect("answer");
        let targets: Vec<_> = e.answer.records.iter().map(|s| s.target.as_str()).collect();
        // The label "bad\name" became "bad\092name" and is not a domain name: dropped.
        assert_eq!(
            targets,
            [
                "web-2.svc.example.",
                "web-10.svc.example.",
                "web-1.svc.example."
            ]
        );
        assert_eq!(e.answer.canonical, "svc.example.");
        assert_eq!(e.ttl, 5);
        assert_eq!(
            e.hosts.get("web-2.svc.example."),
            Some(&(
                vec![Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 22)],
                7
            ))
        );
        assert_eq!(e.hosts.len(), 1);
    }

    #[test]
    fn a_records_are_collected_with_min_ttl() {
        let mut b = Builder::reply(1, 0x8580, "web.example.", TYPE_A, [2, 0, 0]);
        b.rr_ptr_owner(TYPE_A, 8, &[10, 0, 0, 1]);
        b.rr_ptr_owner(TYPE_A, 0x8000_0000, &[10, 0, 0, 2]);
        let m = parse(&b.buf).expect("parses");
        assert_eq!(
            extract_ipv4(&m),
            (
                vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)],
                0
            )
        );
    }
}
