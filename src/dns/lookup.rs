//! One uncached lookup: Go's search-name order, then servers and attempts for each name, all
//! under one deadline (Go's `Resolver.lookup` and `tryOneName`, `src/net/dnsclient_unix.go`).

use std::time::Instant;

use super::conf::{Config, is_domain_name};
use super::error::{ErrorKind, LookupError};
use super::query::{self, ExchangeError};
use super::wire::{Message, RCODE_NOERROR, RCODE_NXDOMAIN, TYPE_SRV};

/// A reply with records of the asked type.
#[derive(Debug)]
pub struct Answered {
    pub message: Message,
    /// Even the TCP answer carried TC: the records are the ones that fit.
    pub truncated: bool,
}

/// Why one name failed.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    kind: ErrorKind,
    reason: String,
}

impl Failure {
    fn new(kind: ErrorKind, reason: impl Into<String>) -> Failure {
        Failure {
            kind,
            reason: reason.into(),
        }
    }
}

/// Looks `name` up for records of `qtype`, trying the names of [`Config::name_list`] in order
/// until one has records. Like Go, the next name is tried after any failure (NXDOMAIN, no
/// records, SERVFAIL, timeouts); once the deadline has passed, the remaining names fail at
/// once.
///
/// When every name fails, the error of the first name is reported, under the name the caller
/// gave. Go reports the last name's error instead; in a pod the last name is the bare name,
/// which the cluster DNS forwards upstream, so its NXDOMAIN or SERVFAIL says nothing about
/// the Service, while the first name (the Service in the pod's own namespace) is the one the
/// caller meant.
pub fn lookup(
    conf: &Config,
    name: &str,
    qtype: u16,
    deadline: Instant,
) -> Result<Answered, LookupError> {
    let names = if is_domain_name(name) {
        conf.name_list(name)
    } else {
        // Go answers an invalid name with "no such host" before sending anything.
        Vec::new()
    };
    let mut first_failure = None;
    for fqdn in &names {
        match try_one_name(conf, fqdn, qtype, deadline) {
            Ok(answered) => return Ok(answered),
            Err(failure) => {
                log::debug!("lookup {fqdn} type {qtype}: {}", failure.reason);
                first_failure.get_or_insert(failure);
            }
        }
    }
    let failure =
        first_failure.unwrap_or_else(|| Failure::new(ErrorKind::NoSuchHost, "no such host"));
    Err(LookupError::new(name, failure.kind, failure.reason))
}

/// One fully qualified name: `attempts` rounds over the servers. NXDOMAIN and "no records"
/// end the name at once (another server would say the same); any other failure moves on to
/// the next server, and the last such failure is the name's error.
fn try_one_name(
    conf: &Config,
    fqdn: &str,
    qtype: u16,
    deadline: Instant,
) -> Result<Answered, Failure> {
    let mut last = Failure::new(ErrorKind::Timeout, "i/o timeout");
    for _ in 0..conf.attempts {
        for &server in &conf.servers {
            if Instant::now() >= deadline {
                return Err(Failure::new(ErrorKind::Timeout, "i/o timeout"));
            }
            let reply = match query::exchange(server, fqdn, qtype, conf.timeout, deadline) {
                Ok(reply) => reply,
                Err(e) => {
                    last = exchange_failure(&e);
                    log::debug!("lookup {fqdn} on {server}: {e}");
                    continue;
                }
            };
            let message = reply.message;
            match check(&message, qtype) {
                Ok(()) => {
                    let truncated = reply.over_tcp && message.header.truncated();
                    if truncated {
                        log::warn!(
                            "lookup {fqdn}: the TCP answer from {server} is truncated (TC set); \
                             using the {} records that fit",
                            message.answers.len()
                        );
                    }
                    return Ok(Answered { message, truncated });
                }
                Err(failure)
                    if matches!(failure.kind, ErrorKind::NoSuchHost | ErrorKind::NoRecords) =>
                {
                    return Err(failure);
                }
                Err(failure) => {
                    log::debug!("lookup {fqdn} on {server}: {}", failure.reason);
                    last = failure;
                }
            }
        }
    }
    Err(last)
}

/// Go's `checkHeader` and `skipToAnswer`: what a decoded, matching reply means.
pub(super) fn check(message: &Message, qtype: u16) -> Result<(), Failure> {
    let rcode = message.rcode();
    if rcode == RCODE_NXDOMAIN {
        return Err(Failure::new(ErrorKind::NoSuchHost, "no such host"));
    }
    if rcode != RCODE_NOERROR {
        // SERVFAIL, REFUSED, FORMERR...: none makes sense for a good query, so this server is
        // broken or unwilling right now; the next one may do better.
        return Err(Failure::new(
            ErrorKind::ServerMisbehaving,
            "server misbehaving",
        ));
    }
    // As in Go, any additional record counts, the OPT record included.
    let has_additional = !message.additionals.is_empty();
    let h = message.header;
    if message.answers.is_empty()
        && !h.authoritative()
        && !h.recursion_available()
        && !has_additional
    {
        // libresolv moves to the next server on a referral from a non-recursive server
        // (golang.org/issue/15434).
        return Err(Failure::new(ErrorKind::ServerMisbehaving, "lame referral"));
    }
    if !message.answers.iter().any(|r| r.rtype == qtype) {
        let what = if qtype == TYPE_SRV { "SRV" } else { "A" };
        return Err(Failure::new(
            ErrorKind::NoRecords,
            format!("no {what} records"),
        ));
    }
    Ok(())
}

fn exchange_failure(e: &ExchangeError) -> Failure {
    let kind = match e {
        ExchangeError::Timeout => ErrorKind::Timeout,
        ExchangeError::Io { .. } => ErrorKind::Network,
        ExchangeError::Malformed(_) | ExchangeError::InvalidResponse => {
            ErrorKind::ServerMisbehaving
        }
        ExchangeError::BadQuestion(_) => ErrorKind::NoSuchHost,
    };
    Failure::new(kind, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::query::tests::fake_udp;
    use crate::dns::wire::tests::{Builder, srv_rdata};
    use crate::dns::wire::{self, TYPE_A};
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A fake server answering per question name: NXDOMAIN for names in `nx`, SERVFAIL for
    /// names in `fail`, the SRV record for `ok`, REFUSED otherwise. Records the names asked.
    fn fake(
        nx: &'static [&str],
        fail: &'static [&str],
        ok: &'static str,
    ) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        let addr = fake_udp(move |id, q| {
            log.lock().expect("log").push(q.name.clone());
            let reply = if nx.contains(&q.name.as_str()) {
                Builder::reply(id, 0x8583, &q.name, q.qtype, [0, 0, 0]).buf
            } else if fail.contains(&q.name.as_str()) {
                Builder::reply(id, 0x8182, &q.name, q.qtype, [0, 0, 0]).buf
            } else if q.name == ok {
                let mut b = Builder::reply(id, 0x8580, &q.name, q.qtype, [1, 0, 0]);
                b.rr_ptr_owner(TYPE_SRV, 5, &srv_rdata(0, 100, 8000, "web-0.svc.example."));
                b.buf
            } else {
                Builder::reply(id, 0x8185, &q.name, q.qtype, [0, 0, 0]).buf
            };
            vec![reply]
        });
        (addr, asked)
    }

    fn conf(server: SocketAddr, search: &[&str], ndots: usize) -> Config {
        let mut c = Config::parse("");
        c.servers = vec![server];
        c.search = search.iter().map(|s| format!("{s}.")).collect();
        c.ndots = ndots;
        c.timeout = Duration::from_secs(2);
        c
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn next_name_after_nxdomain_and_servfail() {
        let (addr, asked) = fake(&["web.a.example."], &["web.b.example."], "web.c.example.");
        let c = conf(addr, &["a.example", "b.example", "c.example"], 5);
        let answered = lookup(&c, "web", TYPE_SRV, soon()).expect("third name answers");
        assert_eq!(answered.message.answers[0].name, "web.c.example.");
        assert!(!answered.truncated);
        let asked = asked.lock().expect("log").clone();
        // SERVFAIL is retried (attempts 2), NXDOMAIN is not.
        assert_eq!(
            asked,
            [
                "web.a.example.",
                "web.b.example.",
                "web.b.example.",
                "web.c.example."
            ]
        );
    }

    #[test]
    fn first_names_error_is_reported_under_the_given_name() {
        let (addr, _) = fake(&["web.a.example."], &[], "none.");
        let c = conf(addr, &["a.example"], 5);
        // "web.a.example." is NXDOMAIN, then "web." is REFUSED (server misbehaving).
        let err = lookup(&c, "web", TYPE_SRV, soon()).expect_err("fails");
        assert_eq!(err.to_string(), "lookup web: no such host");
        assert_eq!(err.kind(), ErrorKind::NoSuchHost);
    }

    #[test]
    fn no_records_is_its_own_error() {
        let (addr, _) = fake(&[], &[], "web.");
        let c = conf(addr, &[], 1);
        let err = lookup(&c, "web.", TYPE_A, soon()).expect_err("no A records");
        assert_eq!(err.to_string(), "lookup web.: no A records");
        assert!(err.is_not_found());
    }

    #[test]
    fn invalid_names_are_no_such_host_without_a_query() {
        let (addr, asked) = fake(&[], &[], "x.");
        let c = conf(addr, &[], 1);
        let err = lookup(&c, "bad name", TYPE_SRV, soon()).expect_err("invalid");
        assert_eq!(err.to_string(), "lookup bad name: no such host");
        assert!(asked.lock().expect("log").is_empty());
    }

    #[test]
    fn passed_deadline_fails_every_name_at_once() {
        let (addr, asked) = fake(&[], &[], "x.");
        let c = conf(addr, &["a.example"], 5);
        let err = lookup(&c, "web", TYPE_SRV, Instant::now()).expect_err("no time");
        assert_eq!(err.to_string(), "lookup web: i/o timeout");
        assert!(asked.lock().expect("log").is_empty());
    }

    #[test]
    fn lame_referral_and_extended_rcode_are_server_errors() {
        let mut b = Builder::reply(1, 0x8000, "a.", TYPE_SRV, [0, 0, 0]);
        let m = wire::parse(&b.buf).expect("parses");
        assert_eq!(
            check(&m, TYPE_SRV).expect_err("lame").reason,
            "lame referral"
        );
        b = Builder::reply(1, 0x8180, "a.", TYPE_SRV, [0, 0, 1]);
        b.opt(1);
        let m = wire::parse(&b.buf).expect("parses");
        assert_eq!(
            check(&m, TYPE_SRV).expect_err("badvers").kind,
            ErrorKind::ServerMisbehaving
        );
    }
}
