//! The lookup error: one line, Go's wording, naming the name that was asked for.

use std::fmt;

/// What kind of failure a [`LookupError`] is, for callers that map it to a status or a retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// NXDOMAIN, or a name that is not a valid domain name.
    NoSuchHost,
    /// The name exists but has no records of the asked type (NOERROR, empty answer).
    NoRecords,
    /// No answer within the lookup's time bound.
    Timeout,
    /// SERVFAIL, REFUSED, a lame referral, a reply that does not decode.
    ServerMisbehaving,
    /// A socket error such as connection refused.
    Network,
}

/// A failed lookup. `Display` is one line such as
/// `lookup hello-stateful-service: no such host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupError {
    name: String,
    kind: ErrorKind,
    reason: String,
}

impl LookupError {
    pub(crate) fn new(name: &str, kind: ErrorKind, reason: impl Into<String>) -> LookupError {
        LookupError {
            name: name.to_string(),
            kind,
            reason: reason.into(),
        }
    }

    /// The name as the caller gave it (not a search-list expansion), as Go reports it.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The name does not exist or has no such records: the DNS answered, and said no.
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, ErrorKind::NoSuchHost | ErrorKind::NoRecords)
    }
}

impl fmt::Display for LookupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lookup {}: {}", self.name, self.reason)
    }
}

impl std::error::Error for LookupError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_go_like_line() {
        let e = LookupError::new(
            "hello-stateful-service",
            ErrorKind::NoSuchHost,
            "no such host",
        );
        assert_eq!(e.to_string(), "lookup hello-stateful-service: no such host");
        assert!(e.is_not_found());
        assert_eq!(e.kind(), ErrorKind::NoSuchHost);
        assert_eq!(e.name(), "hello-stateful-service");
    }
}
