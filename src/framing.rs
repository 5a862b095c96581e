//! Request framing: how long a request's body is, judged from its headers before tiny_http is
//! allowed to read or drain it.
//!
//! tiny_http 0.12 trusts these headers in ways that can be abused (`src/request.rs`): it treats an
//! unparsable `Content-Length` as "no body" and then reads the body as the next request, and it
//! applies chunked decoding for any `Transfer-Encoding`. So the front checks the framing itself,
//! strictly as RFC 9112 section 6 asks, and refuses what tiny_http would get wrong.

use std::fmt;

use crate::decimal::{DecimalError, parse_decimal};

/// How the body of a well-framed request is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    NoBody,
    Length(u64),
    Chunked,
}

/// A request whose body length cannot be known for sure: answered 400, and nothing else on
/// its connection is trusted after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    /// `Content-Length` is not one decimal number, or its copies disagree.
    BadLength(String),
    /// `Content-Length` beyond 2^64-1: tiny_http would see no body at all.
    LengthOverflow,
    /// Both `Content-Length` and `Transfer-Encoding`: the classic request-smuggling shape.
    LengthAndEncoding,
    /// A `Transfer-Encoding` other than `chunked`.
    UnsupportedEncoding(String),
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::BadLength(v) => write!(f, "bad request: invalid Content-Length {v:?}"),
            FramingError::LengthOverflow => {
                f.write_str("bad request: Content-Length is too large to be a number")
            }
            FramingError::LengthAndEncoding => {
                f.write_str("bad request: both Content-Length and Transfer-Encoding are set")
            }
            FramingError::UnsupportedEncoding(v) => {
                write!(
                    f,
                    "bad request: unsupported Transfer-Encoding {v:?}; only chunked is accepted"
                )
            }
        }
    }
}

impl Framing {
    /// Judges the framing from the request's header fields (name, value).
    pub fn of<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Framing, FramingError> {
        let mut length: Option<u64> = None;
        let mut encoding: Option<&str> = None;
        for (name, value) in headers {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                // A list such as "5, 5" is one value repeated (RFC 9112 6.3); anything else is bad.
                for item in value.split(',') {
                    let n = parse_length(item.trim())?;
                    if length.is_some_and(|seen| seen != n) {
                        return Err(FramingError::BadLength(value.to_string()));
                    }
                    length = Some(n);
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                if encoding.is_some() || !value.eq_ignore_ascii_case("chunked") {
                    return Err(FramingError::UnsupportedEncoding(value.to_string()));
                }
                encoding = Some(value);
            }
        }
        match (length, encoding) {
            (Some(_), Some(_)) => Err(FramingError::LengthAndEncoding),
            (None, Some(_)) => Ok(Framing::Chunked),
            (Some(0) | None, None) => Ok(Framing::NoBody),
            (Some(n), None) => Ok(Framing::Length(n)),
        }
    }
}

/// `1*DIGIT` exactly: no sign, no spaces inside (Rust's `parse` would take "+5").
fn parse_length(text: &str) -> Result<u64, FramingError> {
    parse_decimal(text).map_err(|e| match e {
        DecimalError::NotDigits => FramingError::BadLength(text.to_string()),
        DecimalError::TooLarge => FramingError::LengthOverflow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(headers: &[(&str, &str)]) -> Result<Framing, FramingError> {
        Framing::of(headers.iter().copied())
    }

    #[test]
    fn plain_lengths() {
        assert_eq!(judge(&[]), Ok(Framing::NoBody));
        assert_eq!(judge(&[("Content-Length", "0")]), Ok(Framing::NoBody));
        assert_eq!(
            judge(&[("content-length", " 42 ")]),
            Ok(Framing::Length(42))
        );
        assert_eq!(
            judge(&[("Content-Length", "18446744073709551615")]),
            Ok(Framing::Length(u64::MAX))
        );
        assert_eq!(judge(&[("Content-Length", "5, 5")]), Ok(Framing::Length(5)));
        assert_eq!(
            judge(&[("Content-Length", "5"), ("Content-Length", "5")]),
            Ok(Framing::Length(5))
        );
    }

    #[test]
    fn unparsable_lengths_are_refused() {
        for bad in ["abc", "+5", "-1", "5 5", "0x10", "", "5,6", "1e3"] {
            assert!(
                matches!(
                    judge(&[("Content-Length", bad)]),
                    Err(FramingError::BadLength(_))
                ),
                "{bad:?}"
            );
        }
        assert!(judge(&[("Content-Length", "5"), ("Content-Length", "6")]).is_err());
        assert_eq!(
            judge(&[("Content-Length", "18446744073709551616")]),
            Err(FramingError::LengthOverflow)
        );
    }

    #[test]
    fn transfer_encodings() {
        assert_eq!(
            judge(&[("Transfer-Encoding", "Chunked")]),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            judge(&[("Transfer-Encoding", "chunked"), ("Content-Length", "3")]),
            Err(FramingError::LengthAndEncoding)
        );
        for bad in ["gzip", "gzip, chunked", "identity"] {
            assert!(matches!(
                judge(&[("Transfer-Encoding", bad)]),
                Err(FramingError::UnsupportedEncoding(_))
            ));
        }
        assert!(
            judge(&[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked")
            ])
            .is_err()
        );
    }
}
