//! DNS messages on the wire (RFC 1035 section 4, EDNS0 from RFC 6891): query encoding and a
//! reply decoder that trusts nothing it reads.
//!
//! The decoder bounds-checks every read, accepts compression pointers only when they point
//! before the name that uses them (so a pointer chain always ends), and enforces RFC 1035's
//! limits (labels of at most 63 bytes, names of at most 255 bytes on the wire). Records that do
//! not parse end their section early instead of failing the whole message, because a TCP
//! answer that carries TC may be cut in the middle of a record and its leading records are
//! still worth having; the caller decides what a cut means.

use std::fmt;
use std::net::Ipv4Addr;

pub const TYPE_A: u16 = 1;
pub const TYPE_SRV: u16 = 33;
pub const TYPE_OPT: u16 = 41;
pub const CLASS_IN: u16 = 1;

pub const RCODE_NOERROR: u16 = 0;
pub const RCODE_NXDOMAIN: u16 = 3;

/// The UDP payload size advertised in the OPT record: 1232 bytes avoids IP fragmentation on
/// any path (DNS Flag Day 2020; Go's `maxDNSPacketSize` uses the same value).
pub const EDNS_UDP_SIZE: u16 = 1232;

const HEADER_LEN: usize = 12;
const FLAG_QR: u16 = 0x8000;
const FLAG_AA: u16 = 0x0400;
const FLAG_TC: u16 = 0x0200;
const FLAG_RD: u16 = 0x0100;
const FLAG_RA: u16 = 0x0080;
const MAX_NAME_WIRE_LEN: usize = 255;
const MAX_LABEL_LEN: usize = 63;
/// A 255-byte name has at most 127 labels, so more jumps than that can only be a loop
/// (backward-only pointers already rule loops out; this is belt and braces).
const MAX_POINTER_JUMPS: usize = 127;

/// Why a message (or a part of it) could not be decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// A read past the end of the message.
    ShortMessage,
    /// Label type 0x40 or 0x80 (RFC 6891 deprecated extended labels).
    BadLabelType,
    /// A compression pointer that does not point before the name using it.
    BadPointer,
    NameTooLong,
    /// An empty or over-long label, or a name that is not valid text, when encoding.
    BadName,
    /// RDATA whose length does not fit its type.
    BadRdata,
    /// A reply whose question count is not one.
    QuestionCount,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireError::ShortMessage => "message ends inside a field",
            WireError::BadLabelType => "unsupported label type",
            WireError::BadPointer => "compression pointer does not point backwards",
            WireError::NameTooLong => "name longer than 255 bytes",
            WireError::BadName => "invalid name",
            WireError::BadRdata => "record data does not match its type",
            WireError::QuestionCount => "question count is not 1",
        })
    }
}

impl std::error::Error for WireError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_QR != 0
    }
    pub fn authoritative(&self) -> bool {
        self.flags & FLAG_AA != 0
    }
    pub fn truncated(&self) -> bool {
        self.flags & FLAG_TC != 0
    }
    pub fn recursion_available(&self) -> bool {
        self.flags & FLAG_RA != 0
    }
    /// The 4-bit RCODE of the header (see [`Message::rcode`] for the extended one).
    pub fn rcode(&self) -> u16 {
        self.flags & 0x000f
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Presentation form with a trailing dot, case as received.
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

impl Question {
    /// Whether a reply's question is the one asked: type and class equal, name equal ignoring
    /// ASCII case (RFC 4343; servers may echo 0x20-randomised case back).
    pub fn matches(&self, other: &Question) -> bool {
        self.qtype == other.qtype
            && self.qclass == other.qclass
            && self.name.eq_ignore_ascii_case(&other.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    /// Any other type: not needed here, skipped by length.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub name: String,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub data: RData,
}

impl Record {
    /// TTL in seconds; RFC 2181 section 8 says a TTL with the top bit set is to be read as 0.
    pub fn ttl_secs(&self) -> u32 {
        if self.ttl & 0x8000_0000 != 0 {
            0
        } else {
            self.ttl
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Answer,
    Authority,
    Additional,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub question: Question,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// Where decoding stopped early, if it did; the records before that point are kept.
    pub cut: Option<(Section, WireError)>,
}

impl Message {
    /// The RCODE including the upper 8 bits carried in the OPT record (RFC 6891 section 6.1.3).
    pub fn rcode(&self) -> u16 {
        let upper = self
            .additionals
            .iter()
            .find(|r| r.rtype == TYPE_OPT)
            .map_or(0, |opt| (opt.ttl >> 24) as u16);
        upper << 4 | self.header.rcode()
    }
}

/// Encodes a recursive query for `name` (presentation form; trailing dot optional) with an
/// EDNS0 OPT record advertising [`EDNS_UDP_SIZE`] when `edns` is set.
pub fn encode_query(id: u16, name: &str, qtype: u16, edns: bool) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(HEADER_LEN + name.len() + 2 + 4 + 11);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&FLAG_RD.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    out.extend_from_slice(&0u16.to_be_bytes()); // ANCOUNT
    out.extend_from_slice(&0u16.to_be_bytes()); // NSCOUNT
    out.extend_from_slice(&u16::from(edns).to_be_bytes()); // ARCOUNT
    encode_name(name, &mut out)?;
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    if edns {
        // RFC 6891 section 6.1.2: root owner, type OPT, CLASS = UDP payload size,
        // TTL = extended RCODE 0, version 0, flags 0 (no DNSSEC OK), no options.
        out.push(0);
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&EDNS_UDP_SIZE.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
    }
    Ok(out)
}

fn encode_name(name: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    let body = name.strip_suffix('.').unwrap_or(name);
    let mut wire_len = 1;
    if !body.is_empty() {
        for label in body.split('.') {
            if label.is_empty() || label.len() > MAX_LABEL_LEN {
                return Err(WireError::BadName);
            }
            wire_len += 1 + label.len();
            if wire_len > MAX_NAME_WIRE_LEN {
                return Err(WireError::NameTooLong);
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    Ok(())
}

/// A bounds-checked cursor over the message bytes.
struct Reader<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::ShortMessage)?;
        let out = self.msg.get(self.pos..end).ok_or(WireError::ShortMessage)?;
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn name(&mut self) -> Result<String, WireError> {
        let (name, end) = read_name(self.msg, self.pos)?;
        self.pos = end;
        Ok(name)
    }
}

/// Reads the name at `start`; returns it in presentation form (trailing dot, case kept) and
/// the offset just after it in the original byte stream (after the first pointer, if any).
fn read_name(msg: &[u8], start: usize) -> Result<(String, usize), WireError> {
    let mut text = String::new();
    let mut pos = start;
    // Pointers must point before the start of the run of labels they end: every jump then
    // moves strictly backwards, so decoding terminates.
    let mut run_start = start;
    let mut end = None;
    let mut wire_len = 1;
    let mut jumps = 0;
    loop {
        let len = *msg.get(pos).ok_or(WireError::ShortMessage)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                let end = end.unwrap_or(pos + 1);
                if text.is_empty() {
                    text.push('.');
                }
                return Ok((text, end));
            }
            0x00 => {
                let len = usize::from(len);
                let label = msg
                    .get(pos + 1..pos + 1 + len)
                    .ok_or(WireError::ShortMessage)?;
                wire_len += 1 + len;
                if wire_len > MAX_NAME_WIRE_LEN {
                    return Err(WireError::NameTooLong);
                }
                push_label(&mut text, label);
                pos += 1 + len;
            }
            0xc0 => {
                let low = *msg.get(pos + 1).ok_or(WireError::ShortMessage)?;
                let target = usize::from(len & 0x3f) << 8 | usize::from(low);
                if target >= run_start {
                    return Err(WireError::BadPointer);
                }
                jumps += 1;
                if jumps > MAX_POINTER_JUMPS {
                    return Err(WireError::BadPointer);
                }
                end.get_or_insert(pos + 2);
                run_start = target;
                pos = target;
            }
            _ => return Err(WireError::BadLabelType),
        }
    }
}

/// Appends a label in presentation form. Bytes other than letters, digits, `-` and `_` are
/// written as `\DDD` (RFC 1035 section 5.1), so a hostile label can neither smuggle a dot nor
/// put control characters or non-ASCII bytes into a response body or a log line; such names
/// then fail the domain-name check and are dropped by the caller.
fn push_label(text: &mut String, label: &[u8]) {
    for &b in label {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            text.push(char::from(b));
        } else {
            text.push_str(&format!("\\{b:03}"));
        }
    }
    text.push('.');
}

/// Decodes the header and the (single) question; the rest is left unread. Enough to tell
/// whether a datagram is the reply to our query.
pub fn parse_head(msg: &[u8]) -> Result<(Header, Question), WireError> {
    let mut r = Reader { msg, pos: 0 };
    head(&mut r)
}

fn head(r: &mut Reader<'_>) -> Result<(Header, Question), WireError> {
    let header = Header {
        id: r.u16()?,
        flags: r.u16()?,
        qdcount: r.u16()?,
        ancount: r.u16()?,
        nscount: r.u16()?,
        arcount: r.u16()?,
    };
    if header.qdcount != 1 {
        return Err(WireError::QuestionCount);
    }
    let question = Question {
        name: r.name()?,
        qtype: r.u16()?,
        qclass: r.u16()?,
    };
    Ok((header, question))
}

/// Decodes a whole message. Fails only when the header or question cannot be read; a record
/// that cannot be read ends decoding and is reported in [`Message::cut`].
pub fn parse(msg: &[u8]) -> Result<Message, WireError> {
    let mut r = Reader { msg, pos: 0 };
    let (header, question) = head(&mut r)?;
    let mut message = Message {
        header,
        question,
        answers: Vec::new(),
        authorities: Vec::new(),
        additionals: Vec::new(),
        cut: None,
    };
    let sections = [
        (Section::Answer, header.ancount),
        (Section::Authority, header.nscount),
        (Section::Additional, header.arcount),
    ];
    for (section, count) in sections {
        for _ in 0..count {
            match record(&mut r) {
                Ok(rec) => match section {
                    Section::Answer => message.answers.push(rec),
                    Section::Authority => message.authorities.push(rec),
                    Section::Additional => message.additionals.push(rec),
                },
                Err(e) => {
                    message.cut = Some((section, e));
                    return Ok(message);
                }
            }
        }
    }
    Ok(message)
}

fn record(r: &mut Reader<'_>) -> Result<Record, WireError> {
    let name = r.name()?;
    let rtype = r.u16()?;
    let class = r.u16()?;
    let ttl = r.u32()?;
    let rdlen = usize::from(r.u16()?);
    let rdata_start = r.pos;
    let rdata = r.bytes(rdlen)?;
    let data = match rtype {
        TYPE_A if class == CLASS_IN => {
            let octets: [u8; 4] = rdata.try_into().map_err(|_| WireError::BadRdata)?;
            RData::A(Ipv4Addr::from(octets))
        }
        TYPE_SRV => {
            // RFC 2782: priority, weight, port, then the target name (which RFC 2782 says is
            // not compressed, but decoders must cope when a server compresses it anyway).
            let mut sub = Reader {
                msg: r.msg,
                pos: rdata_start,
            };
            if rdlen < 7 {
                return Err(WireError::BadRdata);
            }
            let priority = sub.u16()?;
            let weight = sub.u16()?;
            let port = sub.u16()?;
            let target = sub.name()?;
            if sub.pos != rdata_start + rdlen {
                return Err(WireError::BadRdata);
            }
            RData::Srv {
                priority,
                weight,
                port,
                target,
            }
        }
        _ => RData::Other,
    };
    Ok(Record {
        name,
        rtype,
        class,
        ttl,
        data,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds reply messages by hand for tests (and the fuzzer's seeds).
    pub(crate) struct Builder {
        pub buf: Vec<u8>,
    }

    impl Builder {
        pub fn reply(id: u16, flags: u16, qname: &str, qtype: u16, counts: [u16; 3]) -> Builder {
            let mut buf = Vec::new();
            for v in [id, flags, 1, counts[0], counts[1], counts[2]] {
                buf.extend_from_slice(&v.to_be_bytes());
            }
            encode_name(qname, &mut buf).expect("test name");
            buf.extend_from_slice(&qtype.to_be_bytes());
            buf.extend_from_slice(&CLASS_IN.to_be_bytes());
            Builder { buf }
        }

        /// A record whose owner is a pointer to the question name (offset 12).
        pub fn rr_ptr_owner(&mut self, rtype: u16, ttl: u32, rdata: &[u8]) -> &mut Builder {
            self.buf.extend_from_slice(&[0xc0, 12]);
            self.rr_tail(rtype, CLASS_IN, ttl, rdata)
        }

        pub fn rr(&mut self, owner: &str, rtype: u16, ttl: u32, rdata: &[u8]) -> &mut Builder {
            encode_name(owner, &mut self.buf).expect("test name");
            self.rr_tail(rtype, CLASS_IN, ttl, rdata)
        }

        pub fn rr_tail(&mut self, rtype: u16, class: u16, ttl: u32, rdata: &[u8]) -> &mut Builder {
            self.buf.extend_from_slice(&rtype.to_be_bytes());
            self.buf.extend_from_slice(&class.to_be_bytes());
            self.buf.extend_from_slice(&ttl.to_be_bytes());
            self.buf
                .extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            self.buf.extend_from_slice(rdata);
            self
        }

        pub fn opt(&mut self, ext_rcode: u8) -> &mut Builder {
            self.buf.push(0);
            self.rr_tail(TYPE_OPT, 1232, u32::from(ext_rcode) << 24, &[])
        }
    }

    pub(crate) fn srv_rdata(priority: u16, weight: u16, port: u16, target: &str) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [priority, weight, port] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        encode_name(target, &mut v).expect("test name");
        v
    }

    #[test]
    fn query_has_rd_question_and_edns0_opt() {
        let q = encode_query(
            0xbeef,
            "hello-stateful-service.default.svc.cluster.local.",
            TYPE_SRV,
            true,
        )
        .expect("encodes");
        // Header: id, flags RD only, 1 question, 0 answers, 0 authority, 1 additional.
        assert_eq!(&q[..12], &[0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]);
        let mut name = vec![22];
        name.extend_from_slice(b"hello-stateful-service");
        for l in ["default", "svc", "cluster", "local"] {
            name.push(l.len() as u8);
            name.extend_from_slice(l.as_bytes());
        }
        name.push(0);
        assert_eq!(&q[12..12 + name.len()], &name[..]);
        let rest = &q[12 + name.len()..];
        // QTYPE SRV, QCLASS IN, then OPT: root, type 41, size 1232, ttl 0, rdlen 0.
        assert_eq!(rest, &[0, 33, 0, 1, 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);

        let (h, question) = parse_head(&q).expect("own query parses");
        assert_eq!(h.id, 0xbeef);
        assert!(!h.is_response());
        assert_eq!(
            question.name,
            "hello-stateful-service.default.svc.cluster.local."
        );
        let plain = encode_query(1, "a.", TYPE_A, false).expect("encodes");
        assert_eq!(&plain[10..12], &[0, 0]);
    }

    #[test]
    fn bad_names_are_not_encoded() {
        assert_eq!(
            encode_query(1, "a..b", TYPE_A, true),
            Err(WireError::BadName)
        );
        let long_label = "a".repeat(64);
        assert_eq!(
            encode_query(1, &long_label, TYPE_A, true),
            Err(WireError::BadName)
        );
        let long = vec!["abcdefghi"; 26].join(".");
        assert_eq!(
            encode_query(1, &long, TYPE_A, true),
            Err(WireError::NameTooLong)
        );
        assert!(encode_query(1, ".", TYPE_A, true).is_ok());
    }

    #[test]
    fn srv_reply_with_compression_and_opt_decodes() {
        let mut b = Builder::reply(7, 0x8580, "svc.example.", TYPE_SRV, [2, 0, 2]);
        b.rr_ptr_owner(TYPE_SRV, 30, &srv_rdata(0, 50, 8000, "web-2.svc.example."));
        // Second SRV target compressed: "web-10" then a pointer to "svc.example." at 12.
        let mut rd = srv_rdata(0, 50, 8001, ".");
        rd.pop();
        rd.push(6);
        rd.extend_from_slice(b"web-10");
        rd.extend_from_slice(&[0xc0, 12]);
        b.rr_ptr_owner(TYPE_SRV, 5, &rd);
        b.rr("web-2.svc.example.", TYPE_A, 30, &[10, 0, 0, 2]);
        b.opt(0);
        let m = parse(&b.buf).expect("parses");
        assert_eq!(m.cut, None);
        assert_eq!(m.rcode(), RCODE_NOERROR);
        assert!(m.header.is_response() && m.header.authoritative());
        assert!(m.header.recursion_available() && !m.header.truncated());
        assert_eq!(m.answers.len(), 2);
        assert_eq!(m.answers[0].name, "svc.example.");
        assert_eq!(
            m.answers[1].data,
            RData::Srv {
                priority: 0,
                weight: 50,
                port: 8001,
                target: "web-10.svc.example.".into()
            }
        );
        assert_eq!(m.answers[1].ttl_secs(), 5);
        assert_eq!(m.additionals[0].data, RData::A(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!(m.additionals[1].rtype, TYPE_OPT);
    }

    #[test]
    fn extended_rcode_comes_from_opt() {
        let mut b = Builder::reply(7, 0x8180, "a.", TYPE_SRV, [0, 0, 1]);
        b.opt(1); // upper bits 1, header rcode 0: BADVERS (16)
        assert_eq!(parse(&b.buf).expect("parses").rcode(), 16);
    }

    #[test]
    fn forward_and_self_pointers_are_refused() {
        // Question name is a pointer to itself.
        let mut msg = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse(&msg), Err(WireError::BadPointer));
        // A pointer forward to a later name.
        let mut msg = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&[0xc0, 20, 0, 1, 0, 1, 1, b'a', 0]);
        assert_eq!(parse(&msg), Err(WireError::BadPointer));
        // Two names pointing at each other: "x" -> pointer to 20, at 20 "y" -> pointer to 12.
        let mut msg = vec![0, 1, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        msg.extend_from_slice(&[1, b'x', 0xc0, 20, 0, 1, 0, 1]);
        msg.extend_from_slice(&[1, b'y', 0xc0, 12]);
        assert_eq!(parse(&msg), Err(WireError::BadPointer));
    }

    #[test]
    fn labels_and_names_are_bounded() {
        let mut msg = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&[0x40, 0, 0, 1, 0, 1]);
        assert_eq!(parse(&msg), Err(WireError::BadLabelType));
        let mut msg = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            msg.push(63);
            msg.extend_from_slice(&[b'a'; 63]);
        }
        msg.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(parse(&msg), Err(WireError::NameTooLong));
        let mut msg = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&[5, b'a']);
        assert_eq!(parse(&msg), Err(WireError::ShortMessage));
    }

    #[test]
    fn odd_bytes_in_labels_are_escaped_not_trusted() {
        let mut msg = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&[3, b'a', b'.', b'\n', 0, 0, 1, 0, 1]);
        let (_, q) = parse_head(&msg).expect("parses");
        assert_eq!(q.name, "a\\046\\010.");
    }

    #[test]
    fn question_count_other_than_one_is_refused() {
        let msg = [0, 1, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(parse_head(&msg), Err(WireError::QuestionCount));
        assert_eq!(parse_head(&msg[..5]), Err(WireError::ShortMessage));
    }

    #[test]
    fn cut_record_keeps_the_ones_before() {
        let mut b = Builder::reply(7, 0x8380, "svc.example.", TYPE_SRV, [3, 0, 0]);
        b.rr_ptr_owner(TYPE_SRV, 30, &srv_rdata(0, 50, 8000, "web-0.svc.example."));
        b.rr_ptr_owner(TYPE_SRV, 30, &srv_rdata(0, 50, 8000, "web-1.svc.example."));
        b.rr_ptr_owner(TYPE_SRV, 30, &srv_rdata(0, 50, 8000, "web-2.svc.example."));
        let cut_at = b.buf.len() - 9;
        let m = parse(&b.buf[..cut_at]).expect("head parses");
        assert!(m.header.truncated());
        assert_eq!(m.answers.len(), 2);
        assert_eq!(m.cut, Some((Section::Answer, WireError::ShortMessage)));
    }

    #[test]
    fn srv_rdata_length_must_match_its_target() {
        let mut rd = srv_rdata(0, 1, 2, "a.example.");
        rd.push(0); // one stray byte inside RDATA
        let mut b = Builder::reply(7, 0x8180, "svc.example.", TYPE_SRV, [1, 0, 0]);
        b.rr_ptr_owner(TYPE_SRV, 30, &rd);
        let m = parse(&b.buf).expect("head parses");
        assert_eq!(m.cut, Some((Section::Answer, WireError::BadRdata)));
        let mut b = Builder::reply(7, 0x8180, "a.", TYPE_A, [1, 0, 0]);
        b.rr_ptr_owner(TYPE_A, 30, &[1, 2, 3]);
        assert_eq!(
            parse(&b.buf).expect("head").cut,
            Some((Section::Answer, WireError::BadRdata))
        );
    }

    #[test]
    fn question_match_ignores_case_only() {
        let q = Question {
            name: "Svc.Example.".into(),
            qtype: TYPE_SRV,
            qclass: CLASS_IN,
        };
        let same = Question {
            name: "svc.example.".into(),
            qtype: TYPE_SRV,
            qclass: CLASS_IN,
        };
        assert!(q.matches(&same));
        assert!(!q.matches(&Question {
            qtype: TYPE_A,
            ..same.clone()
        }));
        assert!(!q.matches(&Question {
            qclass: 3,
            ..same.clone()
        }));
        assert!(!q.matches(&Question {
            name: "svc.example.org.".into(),
            ..same
        }));
    }

    #[test]
    fn root_name_decodes_as_dot() {
        let mut b = Builder::reply(7, 0x8180, ".", TYPE_A, [0, 0, 0]);
        b.buf.truncate(b.buf.len());
        let (_, q) = parse_head(&b.buf).expect("parses");
        assert_eq!(q.name, ".");
    }
}
