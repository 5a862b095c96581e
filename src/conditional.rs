//! Conditional and range requests for `/data` (RFC 9110 sections 8.8.3, 13 and 14): its strong
//! `ETag`, the preconditions `If-Match` and `If-None-Match`, and `Range: bytes=` with
//! `If-Range`. Which answer to give is decided here, from the request's fields, the ETag and
//! the durable length; `routes.rs` builds it.
//!
//! `/data` has no `Last-Modified` (the file's mtime moves with bytes not yet synced), so the
//! date conditionals never apply: `If-Modified-Since` and `If-Unmodified-Since` are ignored, as
//! RFC 9110 (13.1.3, 13.1.4) says for a resource without a modification date, and an
//! `If-Range` date never matches, so the whole file is sent.

use crate::decimal::{DecimalError, parse_decimal};

/// The request header fields the handlers act on: `/data`'s conditionals and ranges, and
/// `Accept`. A field sent more than once is joined with commas, as RFC 9110 (5.3) allows for
/// list fields; a repeated `Range` then reads as several ranges, and a repeated `If-Range`
/// matches nothing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields {
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub accept: Option<String>,
}

impl Fields {
    /// The fields among `headers` (name, value).
    pub fn of<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Fields {
        let mut fields = Fields::default();
        for (name, value) in headers {
            let is = |field: &str| name.eq_ignore_ascii_case(field);
            let slot = if is("Range") {
                &mut fields.range
            } else if is("If-Range") {
                &mut fields.if_range
            } else if is("If-Match") {
                &mut fields.if_match
            } else if is("If-None-Match") {
                &mut fields.if_none_match
            } else if is("Accept") {
                &mut fields.accept
            } else {
                continue;
            };
            match slot {
                Some(joined) => {
                    joined.push_str(", ");
                    joined.push_str(value);
                }
                None => *slot = Some(value.to_string()),
            }
        }
        fields
    }
}

/// The answer `/data` gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200: all of it.
    Whole,
    /// 304: the client's copy is the current one.
    NotModified,
    /// 206: `len` bytes from `start`.
    Part { start: u64, len: u64 },
    /// 416: the range starts at or past the end.
    Unsatisfiable,
    /// 412: `If-Match` names no current representation.
    PreconditionFailed,
}

/// The strong ETag of `len` durable bytes of the file opened as `id`
/// ([`crate::storage::Durable`]). The file only grows and only durable bytes are served, so
/// within one opening the length alone tells two contents apart; the id tells openings apart.
pub fn etag(id: u64, len: u64) -> String {
    format!("\"{id:016x}-{len}\"")
}

/// The answer to a GET or HEAD with `fields`, for data of `len` bytes whose ETag is `etag`, in
/// RFC 9110's order (13.2.2): `If-Match`, `If-None-Match`, then `Range` if `If-Range` allows.
pub fn answer(fields: &Fields, etag: &str, len: u64) -> Answer {
    if let Some(list) = &fields.if_match
        && !matches(list, etag, Comparison::Strong)
    {
        return Answer::PreconditionFailed;
    }
    if let Some(list) = &fields.if_none_match
        && matches(list, etag, Comparison::Weak)
    {
        return Answer::NotModified;
    }
    let Some(range) = &fields.range else {
        return Answer::Whole;
    };
    // If-Range compares strongly (13.1.5): only this very ETag, never a weak one or a date.
    match &fields.if_range {
        Some(validator) if validator.trim() != etag => Answer::Whole,
        _ => byte_range(range, len),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Strong,
    Weak,
}

/// Whether the `If-Match`/`If-None-Match` value `list` (`*`, or entity-tags separated by
/// commas) names `etag`, a strong one. Entity-tags may hold commas, so the list is read tag by
/// tag; a malformed list names nothing.
fn matches(list: &str, etag: &str, comparison: Comparison) -> bool {
    if list.trim() == "*" {
        return true; // the data always exists
    }
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let weak = rest.starts_with("W/");
        if weak {
            rest = &rest[2..];
        }
        let Some(tail) = rest.strip_prefix('"') else {
            return false;
        };
        let Some(end) = tail.find('"') else {
            return false;
        };
        let tag = &rest[..end + 2];
        if tag == etag && (comparison == Comparison::Weak || !weak) {
            return true;
        }
        rest = &rest[end + 2..];
    }
}

/// The part a `Range` value asks for, of data of `len` bytes (RFC 9110 14.1.2): `bytes=N-`,
/// `bytes=N-M` (M past the end means to the end) and `bytes=-N` (the last N bytes). Several
/// ranges at once, another unit or a malformed value get the whole data (14.2 lets a server
/// ignore Range), so a client never gets less than it can read.
fn byte_range(value: &str, len: u64) -> Answer {
    let Some((unit, set)) = value.split_once('=') else {
        return Answer::Whole;
    };
    let set = set.trim_matches([' ', '\t']);
    if !unit.eq_ignore_ascii_case("bytes") || set.contains(',') {
        return Answer::Whole;
    }
    let Some((first, last)) = set.split_once('-') else {
        return Answer::Whole;
    };
    if first.is_empty() {
        return match position(last) {
            None => Answer::Whole,
            Some(0) => Answer::Unsatisfiable,
            // RFC 9110 counts a suffix of empty data as satisfiable, but no Content-Range can
            // name an empty part: the (empty) whole is the answer.
            Some(_) if len == 0 => Answer::Whole,
            Some(suffix) => {
                let n = suffix.min(len);
                Answer::Part {
                    start: len - n,
                    len: n,
                }
            }
        };
    }
    let Some(start) = position(first) else {
        return Answer::Whole;
    };
    let end = match last {
        "" => u64::MAX,
        last => match position(last) {
            Some(end) if end >= start => end,
            _ => return Answer::Whole, // malformed, or ends before it starts: invalid (14.1.1)
        },
    };
    if start >= len {
        return Answer::Unsatisfiable;
    }
    Answer::Part {
        start,
        len: end.min(len - 1) - start + 1,
    }
}

/// A byte position or count: digits only; one too large for a `u64` is past any end.
fn position(digits: &str) -> Option<u64> {
    match parse_decimal(digits) {
        Ok(n) => Some(n),
        Err(DecimalError::TooLarge) => Some(u64::MAX),
        Err(DecimalError::NotDigits) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &str = "\"00000000000000ff-10\"";

    fn with(field: &str, value: &str) -> Fields {
        Fields::of([(field, value)])
    }

    fn range(value: &str) -> Answer {
        answer(&with("Range", value), TAG, 10)
    }

    fn part(start: u64, len: u64) -> Answer {
        Answer::Part { start, len }
    }

    #[test]
    fn the_etag_names_the_opening_and_the_length() {
        assert_eq!(etag(255, 10), TAG);
        assert_ne!(etag(255, 10), etag(256, 10));
        assert_ne!(etag(255, 10), etag(255, 11));
    }

    #[test]
    fn the_three_range_forms_select_their_bytes() {
        assert_eq!(range("bytes=2-"), part(2, 8));
        assert_eq!(range("bytes=9-"), part(9, 1));
        assert_eq!(range("bytes=-3"), part(7, 3));
        assert_eq!(range("bytes=-100"), part(0, 10));
        assert_eq!(range("bytes=1-2"), part(1, 2));
        assert_eq!(range("bytes=3-3"), part(3, 1));
        assert_eq!(range("bytes=4-100"), part(4, 6));
        assert_eq!(range("bytes=0-99999999999999999999999"), part(0, 10));
        assert_eq!(range("BYTES=0-0"), part(0, 1));
        assert_eq!(range("bytes= 5- "), part(5, 5));
    }

    #[test]
    fn a_range_at_or_past_the_end_is_unsatisfiable() {
        assert_eq!(range("bytes=10-"), Answer::Unsatisfiable);
        assert_eq!(range("bytes=10-20"), Answer::Unsatisfiable);
        assert_eq!(
            range("bytes=99999999999999999999999-"),
            Answer::Unsatisfiable
        );
        assert_eq!(range("bytes=-0"), Answer::Unsatisfiable);
        let empty = |value| answer(&with("Range", value), TAG, 0);
        assert_eq!(empty("bytes=0-"), Answer::Unsatisfiable);
        assert_eq!(empty("bytes=-5"), Answer::Whole);
    }

    #[test]
    fn other_ranges_get_the_whole_data() {
        for value in [
            "bytes=0-1,4-5",
            "bytes=-1, -2",
            "bytes=5-2",
            "bytes=x-",
            "bytes=+1-",
            "bytes=-",
            "bytes=5",
            "bytes",
            "items=0-1",
            "bytes = 0-1",
        ] {
            assert_eq!(range(value), Answer::Whole, "{value}");
        }
        // Two Range fields join into two ranges.
        let twice = Fields::of([("Range", "bytes=0-"), ("range", "bytes=-1")]);
        assert_eq!(answer(&twice, TAG, 10), Answer::Whole);
    }

    #[test]
    fn if_none_match_compares_weakly_and_wins_over_range() {
        for list in [
            TAG,
            "W/\"00000000000000ff-10\"",
            "\"a\", \"b,c\" ,\"00000000000000ff-10\"",
            "*",
        ] {
            assert_eq!(
                answer(&with("If-None-Match", list), TAG, 10),
                Answer::NotModified,
                "{list}"
            );
        }
        for list in [
            "\"00000000000000ff-9\"",
            "\"a\"",
            "00000000000000ff-10",
            "\"unclosed",
        ] {
            assert_eq!(
                answer(&with("If-None-Match", list), TAG, 10),
                Answer::Whole,
                "{list}"
            );
        }
        let both = Fields::of([("If-None-Match", TAG), ("Range", "bytes=-1")]);
        assert_eq!(answer(&both, TAG, 10), Answer::NotModified);
    }

    #[test]
    fn if_match_compares_strongly() {
        let fields = |list| with("If-Match", list);
        assert_eq!(answer(&fields(TAG), TAG, 10), Answer::Whole);
        assert_eq!(answer(&fields("*"), TAG, 10), Answer::Whole);
        for list in ["W/\"00000000000000ff-10\"", "\"00000000000000ff-9\"", ""] {
            assert_eq!(
                answer(&fields(list), TAG, 10),
                Answer::PreconditionFailed,
                "{list}"
            );
        }
    }

    #[test]
    fn if_range_lets_the_range_through_only_for_this_etag() {
        let fields = |if_range| Fields::of([("Range", "bytes=-2"), ("If-Range", if_range)]);
        assert_eq!(answer(&fields(TAG), TAG, 10), part(8, 2));
        for stale in [
            "\"00000000000000ff-9\"",
            "W/\"00000000000000ff-10\"",
            "Tue, 01 Dec 2026 20:56:22 GMT",
        ] {
            assert_eq!(answer(&fields(stale), TAG, 10), Answer::Whole, "{stale}");
        }
        // Without a Range, If-Range changes nothing.
        assert_eq!(answer(&with("If-Range", "\"x\""), TAG, 10), Answer::Whole);
    }
}
