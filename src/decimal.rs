//! Strict decimal numbers, for every number this server reads from text: settings, HTTP
//! lengths, resolv.conf options, the synced-length mark.
//!
//! Rust's `str::parse` takes a leading `+`, so "+5" would pass where HTTP's `1*DIGIT` (RFC 9112)
//! and a setting's documented form do not allow it; here only ASCII digits are a number.

use std::fmt;

/// Why a text is not a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalError {
    /// Empty, or anything but ASCII digits (a sign, a space, a unit).
    NotDigits,
    /// Digits only, but more than a `u64` holds.
    TooLarge,
}

impl fmt::Display for DecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecimalError::NotDigits => "not a decimal number",
            DecimalError::TooLarge => "number too large",
        })
    }
}

impl std::error::Error for DecimalError {}

/// `1*DIGIT` exactly: one or more ASCII digits, nothing else, at most `u64::MAX`.
pub fn parse_decimal(text: &str) -> Result<u64, DecimalError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecimalError::NotDigits);
    }
    text.parse().map_err(|_| DecimalError::TooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_digits_are_a_number() {
        assert_eq!(parse_decimal("0"), Ok(0));
        assert_eq!(parse_decimal("0042"), Ok(42));
        assert_eq!(parse_decimal("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "", "+5", "-1", " 5", "5 ", "1.5", "1e3", "0x10", "5MiB", "٣",
        ] {
            assert_eq!(parse_decimal(bad), Err(DecimalError::NotDigits), "{bad:?}");
        }
        assert_eq!(
            parse_decimal("18446744073709551616"),
            Err(DecimalError::TooLarge)
        );
    }
}
