//! JSON, as small as this server needs it: `/info` and the cluster view are written with it,
//! the volume's lineage file and peers' `/info` are read with it (RFC 8259). Numbers are whole
//! and non-negative (sizes, counts, ordinals): a fraction or an exponent is refused.

use std::fmt::{self, Write};

/// Nesting deeper than this is refused: a peer's answer must not exhaust the stack.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(u64),
    String(String),
    Array(Vec<Json>),
    /// Members in the order written.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// An object from `(name, value)` pairs.
    pub fn object<'a>(members: impl IntoIterator<Item = (&'a str, Json)>) -> Json {
        Json::Object(
            members
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    /// A string, or null for `None`.
    pub fn text(value: Option<impl Into<String>>) -> Json {
        value.map_or(Json::Null, |s| Json::String(s.into()))
    }

    /// The member `name` of an object.
    pub fn get(&self, name: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The value with each member and item on a line of its own, indented two spaces a
    /// level, for people reading it (`curl .../info`).
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write_pretty(&mut out, 0);
        out
    }

    fn write_pretty(&self, out: &mut String, level: usize) {
        let (open, close, items): (char, char, Vec<(Option<&str>, &Json)>) = match self {
            Json::Array(items) if !items.is_empty() => {
                ('[', ']', items.iter().map(|v| (None, v)).collect())
            }
            Json::Object(members) if !members.is_empty() => (
                '{',
                '}',
                members.iter().map(|(k, v)| (Some(k.as_str()), v)).collect(),
            ),
            _ => return out.push_str(&self.to_string()),
        };
        out.push(open);
        for (i, (name, value)) in items.iter().enumerate() {
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            out.push_str(&"  ".repeat(level + 1));
            if let Some(name) = name {
                out.push_str(&Json::String(name.to_string()).to_string());
                out.push_str(": ");
            }
            value.write_pretty(out, level + 1);
        }
        out.push('\n');
        out.push_str(&"  ".repeat(level));
        out.push(close);
    }

    /// Parses one JSON value, with nothing but white space around it.
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            bytes: text.as_bytes(),
            at: 0,
        };
        let value = p.value(0)?;
        p.space();
        match p.at == p.bytes.len() {
            true => Ok(value),
            false => Err(p.error("text after the value")),
        }
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::Number(n) => write!(f, "{n}"),
            Json::String(s) => write_string(f, s),
            Json::Array(items) => {
                f.write_char('[')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(']')
            }
            Json::Object(members) => {
                f.write_char('{')?;
                for (i, (name, value)) in members.iter().enumerate() {
                    if i > 0 {
                        f.write_char(',')?;
                    }
                    write_string(f, name)?;
                    write!(f, ":{value}")?;
                }
                f.write_char('}')
            }
        }
    }
}

fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            // Also `<`, so that no string can close the script element of a page it is put in.
            c if (c as u32) < 0x20 || c == '<' => write!(f, "\\u{:04x}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        format!("{what} at byte {}", self.at)
    }

    fn space(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| b" \t\r\n".contains(b))
        {
            self.at += 1;
        }
    }

    fn eat(&mut self, literal: &str) -> bool {
        let found = self.bytes[self.at..].starts_with(literal.as_bytes());
        if found {
            self.at += literal.len();
        }
        found
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        self.space();
        let value = match self.bytes.get(self.at) {
            Some(b'{') => {
                self.at += 1;
                let mut members = Vec::new();
                if !self.close(b'}') {
                    loop {
                        self.space();
                        let name = self.string()?;
                        self.space();
                        if !self.eat(":") {
                            return Err(self.error("expected ':'"));
                        }
                        members.push((name, self.value(depth + 1)?));
                        if self.close(b'}') {
                            break;
                        }
                        self.comma()?;
                    }
                }
                Json::Object(members)
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                if !self.close(b']') {
                    loop {
                        items.push(self.value(depth + 1)?);
                        if self.close(b']') {
                            break;
                        }
                        self.comma()?;
                    }
                }
                Json::Array(items)
            }
            Some(b'"') => Json::String(self.string()?),
            Some(b'0'..=b'9') => {
                let start = self.at;
                while self.bytes.get(self.at).is_some_and(u8::is_ascii_digit) {
                    self.at += 1;
                }
                let digits = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("");
                if digits.len() > 1 && digits.starts_with('0') {
                    return Err(self.error("leading zero"));
                }
                Json::Number(digits.parse().map_err(|_| self.error("number too large"))?)
            }
            _ if self.eat("null") => Json::Null,
            _ if self.eat("true") => Json::Bool(true),
            _ if self.eat("false") => Json::Bool(false),
            _ => return Err(self.error("expected a value")),
        };
        Ok(value)
    }

    /// True (and past it) if the next non-space byte is `end`.
    fn close(&mut self, end: u8) -> bool {
        self.space();
        let closed = self.bytes.get(self.at) == Some(&end);
        self.at += usize::from(closed);
        closed
    }

    fn comma(&mut self) -> Result<(), String> {
        self.space();
        match self.eat(",") {
            true => Ok(()),
            false => Err(self.error("expected ',' or the end")),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if !self.eat("\"") {
            return Err(self.error("expected a string"));
        }
        let mut out = String::new();
        loop {
            let rest = &self.bytes[self.at..];
            // Up to the next quote, escape or control byte, as it is.
            let plain = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .ok_or_else(|| self.error("unterminated string"))?;
            out.push_str(std::str::from_utf8(&rest[..plain]).map_err(|_| self.error("not UTF-8"))?);
            self.at += plain;
            match self.bytes[self.at] {
                b'"' => {
                    self.at += 1;
                    return Ok(out);
                }
                b'\\' => {
                    let escape = *self.bytes.get(self.at + 1).unwrap_or(&0);
                    self.at += 2;
                    let c = match escape {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.error("bad escape")),
                    };
                    out.push(c);
                }
                _ => return Err(self.error("control character in a string")),
            }
        }
    }

    /// The character of a `\uXXXX` escape (just past the `u`), with a following low surrogate
    /// when it is a high one.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let high = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&high) && self.eat("\\u") {
            let low = self.hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(self.error("bad surrogate pair"));
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code).ok_or_else(|| self.error("bad \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.bytes.get(self.at..self.at + 4).unwrap_or_default();
        let text = std::str::from_utf8(digits).unwrap_or("");
        let value = (text.len() == 4 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(text, 16).ok())
            .flatten()
            .ok_or_else(|| self.error("bad \\u escape"))?;
        self.at += 4;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_and_read_back() {
        let value = Json::object([
            ("name", Json::String("pod-0 \"x\"\n<\u{1}é😀".into())),
            ("n", Json::Number(u64::MAX)),
            ("list", Json::Array(vec![Json::Null, Json::Bool(true)])),
            ("empty", Json::object([])),
        ]);
        let text = value.to_string();
        assert_eq!(
            text,
            r#"{"name":"pod-0 \"x\"\n\u003c\u0001é😀","n":18446744073709551615,"list":[null,true],"empty":{}}"#
        );
        assert_eq!(Json::parse(&text), Ok(value.clone()));
        let pretty = value.pretty();
        assert!(pretty.starts_with("{\n  \"name\": \"pod-0"), "{pretty}");
        assert!(
            pretty.ends_with("\n  \"list\": [\n    null,\n    true\n  ],\n  \"empty\": {}\n}"),
            "{pretty}"
        );
        assert_eq!(Json::parse(&pretty), Ok(value));
    }

    #[test]
    fn reads_what_others_write() {
        let v =
            Json::parse(" { \"a\" : [ 1 , {\"b\":false} ] , \"s\":\"\\u00e9\\ud83d\\ude00\\/\" } ")
                .unwrap();
        assert_eq!(v.get("s").and_then(Json::as_str), Some("é😀/"));
        assert_eq!(
            v.get("a"),
            Some(&Json::Array(vec![
                Json::Number(1),
                Json::object([("b", Json::Bool(false))])
            ]))
        );
    }

    #[test]
    fn refuses_what_is_not_json() {
        for bad in [
            "",
            "{",
            "{\"a\"}",
            "[1,]",
            "[1 2]",
            "01",
            "1.5",
            "-1",
            "\"\\x\"",
            "\"a",
            "nul",
            "{} x",
            "\"\u{1}\"",
            "\"\\ud800\\u0041\"",
            "18446744073709551616",
        ] {
            assert!(Json::parse(bad).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(Json::parse(&deep).is_err(), "too deep");
        assert!(Json::parse(&("[".repeat(30) + &"]".repeat(30))).is_ok());
    }
}
