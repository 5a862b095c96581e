//! Content negotiation (RFC 9110 section 12.5.1): which of the forms an endpoint offers the
//! client's `Accept` field prefers. The first form offered is the default: it wins every tie,
//! so `curl` (`*/*`) and clients sending no `Accept` keep the plain text of old.

/// The index in `offered` of the media type `accept` prefers: the highest quality, the most
/// specific match deciding each type's quality, the earliest offered on a tie.
pub fn choose(accept: Option<&str>, offered: &[&str]) -> usize {
    let Some(accept) = accept else { return 0 };
    let mut best = (0, quality(accept, offered[0]));
    for (i, ty) in offered.iter().enumerate().skip(1) {
        let q = quality(accept, ty);
        if q > best.1 {
            best = (i, q);
        }
    }
    best.0
}

/// The quality, in thousandths, that `accept` gives `ty`: that of its most specific matching
/// range (`type/sub`, then `type/*`, then `*/*`), or 0 when none matches.
fn quality(accept: &str, ty: &str) -> u32 {
    let (main, _) = ty.split_once('/').unwrap_or((ty, ""));
    let mut best = (0, 0); // (specificity, quality)
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let name = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
        let specificity = if name == ty {
            3
        } else if name.strip_suffix("/*") == Some(main) {
            2
        } else if name == "*/*" {
            1
        } else {
            continue;
        };
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(parse_q)
            .unwrap_or(1000);
        if specificity > best.0 {
            best = (specificity, q);
        }
    }
    best.1
}

/// `0`, `1`, `0.5`, `0.125`, `1.000`: a qvalue (RFC 9110 12.4.2) in thousandths.
fn parse_q(text: &str) -> Option<u32> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if !matches!(whole, "0" | "1")
        || fraction.len() > 3
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u32>().ok()?;
    let q = if whole == "1" {
        1000 + thousandths
    } else {
        thousandths
    };
    (q <= 1000).then_some(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &[&str] = &["text/plain", "text/html"];

    #[test]
    fn browsers_get_html_and_everyone_else_text() {
        let firefox = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        let chrome =
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
        assert_eq!(choose(Some(firefox), PAGE), 1);
        assert_eq!(choose(Some(chrome), PAGE), 1);
        assert_eq!(choose(None, PAGE), 0, "no Accept");
        assert_eq!(choose(Some("*/*"), PAGE), 0, "curl");
        assert_eq!(choose(Some("text/plain"), PAGE), 0);
        assert_eq!(choose(Some("text/*"), PAGE), 0, "a tie");
        assert_eq!(choose(Some("text/plain;q=0.5, text/html"), PAGE), 1);
        assert_eq!(choose(Some("text/html;q=0, */*"), PAGE), 0, "html refused");
        assert_eq!(
            choose(Some("application/json"), PAGE),
            0,
            "neither: the default"
        );
    }

    #[test]
    fn json_only_when_asked_for() {
        let view = &["text/plain", "application/json"];
        assert_eq!(choose(Some("application/json"), view), 1);
        assert_eq!(choose(Some("application/json, text/plain;q=0.5"), view), 1);
        assert_eq!(choose(Some("*/*"), view), 0);
        assert_eq!(
            choose(Some("Application/JSON;q=0.9, text/plain;q=0.8"), view),
            1
        );
        assert_eq!(choose(Some("application/json;q=0.1, */*"), view), 0);
    }

    #[test]
    fn qvalues() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.125"), Some(125));
        assert_eq!(parse_q("1.000"), Some(1000));
        for bad in ["1.5", "2", "0.1234", "", ".5", "0.x"] {
            assert_eq!(parse_q(bad), None, "{bad:?}");
        }
    }
}
