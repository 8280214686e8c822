//! The RESP wire format, pure and bounded: bytes in, commands out; replies in, bytes out.
//! No sockets, no clocks. Every length a peer sends is checked against [`Limits`] before it is
//! used; a request cannot nest (an array inside a command is a protocol error), so nesting
//! depth is bounded at one.

use std::fmt::Write as _;

pub use crate::config::RespLimits as Limits;

/// A request that cannot be parsed. The connection answers `-ERR Protocol error: ...` and
/// closes, as Redis does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

/// One parsed command: its arguments as given.
pub type Args = Vec<Vec<u8>>;

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        match memchr(b'\r', &buf[i..]) {
            Some(p) => {
                let at = i + p;
                if at + 1 < buf.len() && buf[at + 1] == b'\n' {
                    return Some(at);
                }
                i = at + 1;
            }
            None => return None,
        }
    }
    None
}

fn memchr(b: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&x| x == b)
}

fn parse_len(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let (neg, d) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if d.is_empty() {
        return None;
    }
    // At most 19 digits (checked above): the sum fits in a u64. One of these per argument
    // and one per command, so no `str::parse`.
    let mut v: u64 = 0;
    for &c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(c - b'0');
    }
    let v = i64::try_from(v).ok()?;
    Some(if neg { -v } else { v })
}

/// Parses one command from the start of `buf`. `Ok(None)`: more bytes needed. On success,
/// returns the arguments and the number of bytes consumed (an empty command, such as an
/// empty line or `*0`, yields no arguments).
pub fn parse_command(buf: &[u8], limits: &Limits) -> Result<Option<(Args, usize)>, ProtocolError> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] != b'*' {
        return parse_inline(buf, limits);
    }
    let Some(end) = find_crlf(buf, 1) else {
        if buf.len() > 64 {
            return Err(ProtocolError("too big mbulk count string".into()));
        }
        return Ok(None);
    };
    let n = parse_len(&buf[1..end])
        .filter(|n| *n <= limits.args_max as i64)
        .ok_or_else(|| ProtocolError("invalid multibulk length".into()))?;
    let mut pos = end + 2;
    if n <= 0 {
        return Ok(Some((Vec::new(), pos)));
    }
    let mut args = Vec::with_capacity((n as usize).min(1024));
    for _ in 0..n {
        if pos >= buf.len() {
            return Ok(None);
        }
        if buf[pos] != b'$' {
            return Err(ProtocolError(format!(
                "expected '$', got '{}'",
                char::from(buf[pos])
            )));
        }
        let Some(end) = find_crlf(buf, pos + 1) else {
            if buf.len() - pos > 64 {
                return Err(ProtocolError("too big bulk count string".into()));
            }
            return Ok(None);
        };
        let len = parse_len(&buf[pos + 1..end])
            .filter(|l| *l >= 0 && *l <= limits.bulk_bytes_max as i64)
            .ok_or_else(|| ProtocolError("invalid bulk length".into()))? as usize;
        let start = end + 2;
        if buf.len() < start + len + 2 {
            return Ok(None);
        }
        if &buf[start + len..start + len + 2] != b"\r\n" {
            return Err(ProtocolError("invalid bulk string terminator".into()));
        }
        args.push(buf[start..start + len].to_vec());
        pos = start + len + 2;
    }
    Ok(Some((args, pos)))
}

fn parse_inline(buf: &[u8], limits: &Limits) -> Result<Option<(Args, usize)>, ProtocolError> {
    let Some(nl) = memchr(b'\n', buf) else {
        if buf.len() > limits.inline_bytes_max {
            return Err(ProtocolError("too big inline request".into()));
        }
        return Ok(None);
    };
    if nl > limits.inline_bytes_max {
        return Err(ProtocolError("too big inline request".into()));
    }
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    let args =
        split_args(line).ok_or_else(|| ProtocolError("unbalanced quotes in request".into()))?;
    if args.len() > limits.args_max {
        return Err(ProtocolError("invalid multibulk length".into()));
    }
    Ok(Some((args, nl + 1)))
}

/// Splits an inline command like Redis's `sdssplitargs`: spaces separate, "double quotes"
/// allow escapes (\n, \t, \xHH, ...), 'single quotes' only \'.
pub fn split_args(line: &[u8]) -> Option<Args> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            break;
        }
        let mut cur = Vec::new();
        match line[i] {
            b'"' => {
                i += 1;
                loop {
                    let c = *line.get(i)?;
                    if c == b'"' {
                        i += 1;
                        break;
                    }
                    if c == b'\\' && i + 1 < line.len() {
                        let e = line[i + 1];
                        if e == b'x'
                            && i + 3 < line.len()
                            && line[i + 2].is_ascii_hexdigit()
                            && line[i + 3].is_ascii_hexdigit()
                        {
                            let hex = std::str::from_utf8(&line[i + 2..i + 4]).ok()?;
                            cur.push(u8::from_str_radix(hex, 16).ok()?);
                            i += 4;
                            continue;
                        }
                        cur.push(match e {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 8,
                            b'a' => 7,
                            other => other,
                        });
                        i += 2;
                        continue;
                    }
                    cur.push(c);
                    i += 1;
                }
                if i < line.len() && !line[i].is_ascii_whitespace() {
                    return None;
                }
            }
            b'\'' => {
                i += 1;
                loop {
                    let c = *line.get(i)?;
                    if c == b'\'' {
                        i += 1;
                        break;
                    }
                    if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                        cur.push(b'\'');
                        i += 2;
                        continue;
                    }
                    cur.push(c);
                    i += 1;
                }
                if i < line.len() && !line[i].is_ascii_whitespace() {
                    return None;
                }
            }
            _ => {
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    cur.push(line[i]);
                    i += 1;
                }
            }
        }
        out.push(cur);
    }
    Some(out)
}

/// A reply, independent of the protocol version it is written in.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `+OK`
    Simple(String),
    /// `-ERR ...` (the text includes the error code, e.g. `ERR ...`, `NOGROUP ...`).
    Error(String),
    /// `:1`
    Integer(i64),
    /// `$3\r\nabc`
    Bulk(Vec<u8>),
    /// Null bulk (`$-1` in RESP2, `_` in RESP3).
    Null,
    /// Null array (`*-1` in RESP2, `_` in RESP3).
    NullArray,
    /// `*n`
    Array(Vec<Frame>),
    /// A map (`%n` in RESP3, a flat array in RESP2).
    Map(Vec<(Frame, Frame)>),
    /// A set (`~n` in RESP3, an array in RESP2).
    Set(Vec<Frame>),
    /// A double (`,1.5` in RESP3, a bulk string in RESP2).
    Double(f64),
    /// A verbatim string (`=` in RESP3, a bulk string in RESP2).
    Verbatim(String),
    /// A reply already encoded for the connection's protocol (large replies are built and
    /// encoded off the network thread).
    Encoded(Vec<u8>),
}

impl Frame {
    /// `+OK`.
    pub fn ok() -> Frame {
        Frame::Simple("OK".into())
    }

    /// A bulk string from text.
    pub fn bulk(s: impl AsRef<[u8]>) -> Frame {
        Frame::Bulk(s.as_ref().to_vec())
    }

    /// An error with the `ERR` code.
    pub fn err(msg: impl std::fmt::Display) -> Frame {
        Frame::Error(format!("ERR {msg}"))
    }

    /// True for error frames.
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_))
    }

    /// The number of bytes [`Frame::encode`] writes, so a large reply's buffer is sized once
    /// instead of growing (each growth a copy of all so far, and fresh pages to fault in).
    pub fn encoded_len(&self, proto: u8) -> usize {
        let bulk = |n: usize| header_len(n as i64) + n + 2;
        match self {
            Frame::Encoded(bytes) => bytes.len(),
            Frame::Simple(s) | Frame::Error(s) => s.len() + 3,
            Frame::Integer(n) => header_len(*n),
            Frame::Bulk(b) => bulk(b.len()),
            Frame::Null | Frame::NullArray if proto >= 3 => 3,
            Frame::Null | Frame::NullArray => 5,
            Frame::Array(items) | Frame::Set(items) => {
                header_len(items.len() as i64)
                    + items.iter().map(|i| i.encoded_len(proto)).sum::<usize>()
            }
            Frame::Map(pairs) => {
                let n = if proto >= 3 {
                    pairs.len()
                } else {
                    2 * pairs.len()
                };
                header_len(n as i64)
                    + pairs
                        .iter()
                        .map(|(k, v)| k.encoded_len(proto) + v.encoded_len(proto))
                        .sum::<usize>()
            }
            Frame::Double(_) => {
                let mut out = Vec::new();
                self.encode(proto, &mut out);
                out.len()
            }
            Frame::Verbatim(s) if proto >= 3 => header_len(s.len() as i64 + 4) + s.len() + 6,
            Frame::Verbatim(s) => bulk(s.len()),
        }
    }

    /// Writes the frame in RESP2 (`proto` 2) or RESP3 (`proto` 3).
    pub fn encode(&self, proto: u8, out: &mut Vec<u8>) {
        match self {
            Frame::Encoded(bytes) => out.extend_from_slice(bytes),
            Frame::Simple(s) => {
                out.push(b'+');
                out.extend_from_slice(s.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Frame::Error(s) => {
                out.push(b'-');
                // An error line cannot hold a newline.
                out.extend(
                    s.bytes()
                        .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
                );
                out.extend_from_slice(b"\r\n");
            }
            Frame::Integer(n) => header(out, b':', *n),
            Frame::Bulk(b) => put_bulk(out, b),
            Frame::Null if proto >= 3 => out.extend_from_slice(b"_\r\n"),
            Frame::Null => out.extend_from_slice(b"$-1\r\n"),
            Frame::NullArray => put_null_array(out, proto),
            Frame::Array(items) => {
                put_array(out, items.len());
                for i in items {
                    i.encode(proto, out);
                }
            }
            Frame::Set(items) => {
                header(
                    out,
                    if proto >= 3 { b'~' } else { b'*' },
                    items.len() as i64,
                );
                for i in items {
                    i.encode(proto, out);
                }
            }
            Frame::Map(pairs) => {
                if proto >= 3 {
                    header(out, b'%', pairs.len() as i64);
                } else {
                    header(out, b'*', 2 * pairs.len() as i64);
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Frame::Double(d) => {
                let mut s = String::new();
                if d.is_infinite() {
                    s.push_str(if *d > 0.0 { "inf" } else { "-inf" });
                } else {
                    let _ = write!(s, "{d}");
                }
                if proto >= 3 {
                    out.push(b',');
                    out.extend_from_slice(s.as_bytes());
                    out.extend_from_slice(b"\r\n");
                } else {
                    Frame::Bulk(s.into_bytes()).encode(proto, out);
                }
            }
            Frame::Verbatim(s) => {
                if proto >= 3 {
                    header(out, b'=', s.len() as i64 + 4);
                    out.extend_from_slice(b"txt:");
                    out.extend_from_slice(s.as_bytes());
                    out.extend_from_slice(b"\r\n");
                } else {
                    Frame::Bulk(s.as_bytes().to_vec()).encode(proto, out);
                }
            }
        }
    }
}

/// Appends an array's header (`*n`): the same in RESP2 and RESP3. With [`put_bulk`] and
/// [`put_null_array`], a reply of many small parts (entries) is written straight into bytes,
/// without a [`Frame`] per part to build and drop.
pub fn put_array(out: &mut Vec<u8>, n: usize) {
    header(out, b'*', n as i64);
}

/// Appends a bulk string (`$n` and the bytes).
pub fn put_bulk(out: &mut Vec<u8>, b: &[u8]) {
    // `$`, up to 20 digits and CRLF, made on the stack and added with the bytes in one
    // reservation.
    let mut head = [0u8; 23];
    head[21..].copy_from_slice(b"\r\n");
    let at = cortex_storage::decimal_before(&mut head, 21, b.len() as u64) - 1;
    head[at] = b'$';
    out.reserve(head.len() - at + b.len() + 2);
    out.extend_from_slice(&head[at..]);
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// Appends a null array: `*-1` in RESP2, `_` in RESP3.
pub fn put_null_array(out: &mut Vec<u8>, proto: u8) {
    out.extend_from_slice(if proto >= 3 { b"_\r\n" } else { b"*-1\r\n" });
}

fn header(out: &mut Vec<u8>, tag: u8, n: i64) {
    out.push(tag);
    out.extend_from_slice(digits(n, &mut [0; 20]));
    out.extend_from_slice(b"\r\n");
}

/// Bytes of a `header` line.
fn header_len(n: i64) -> usize {
    digits(n, &mut [0; 20]).len() + 3
}

/// `n` in decimal, written into the end of `buf` (20 bytes hold `i64::MIN`).
fn digits(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = cortex_storage::decimal_before(buf, 20, n.unsigned_abs());
    if n < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Result<Option<(Args, usize)>, ProtocolError> {
        parse_command(b, &Limits::default())
    }

    #[test]
    fn lengths_parse_as_str_parse_does_up_to_19_characters() {
        let cases = [
            "",
            "-",
            "0",
            "-0",
            "7",
            "-1",
            "+1",
            " 1",
            "1 ",
            "12a",
            "00012",
            "1-2",
            "9223372036854775807",
            "-922337203685477580",
            "9223372036854775808",
            "9999999999999999999",
            "18446744073709551615",
            "-9223372036854775807",
        ];
        for c in cases {
            let oracle = if c.is_empty() || c.len() > 19 || c.starts_with('+') {
                None
            } else {
                c.parse::<i64>().ok()
            };
            assert_eq!(parse_len(c.as_bytes()), oracle, "{c:?}");
        }
    }

    #[test]
    fn multibulk_and_incomplete() {
        let msg = b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n";
        assert_eq!(
            parse(msg),
            Ok(Some((vec![b"PING".to_vec(), b"hi".to_vec()], msg.len())))
        );
        for cut in 0..msg.len() {
            assert_eq!(parse(&msg[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(parse(b"*0\r\n"), Ok(Some((vec![], 4))));
    }

    #[test]
    fn inline_commands() {
        assert_eq!(parse(b"PING\r\n"), Ok(Some((vec![b"PING".to_vec()], 6))));
        let (a, _) = parse(b"set \"a b\" 'c\\'d' \"\\x41\\n\"\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            a,
            vec![
                b"set".to_vec(),
                b"a b".to_vec(),
                b"c'd".to_vec(),
                b"A\n".to_vec()
            ]
        );
        assert!(parse(b"echo \"unbalanced\r\n").is_err());
        assert_eq!(parse(b"\r\n"), Ok(Some((vec![], 2))));
    }

    #[test]
    fn bounds_are_enforced() {
        let l = Limits {
            bulk_bytes_max: 10,
            args_max: 3,
            inline_bytes_max: 16,
            buffer_bytes_max: 100,
        };
        let p = |b: &[u8]| parse_command(b, &l);
        assert_eq!(
            p(b"*4\r\n"),
            Err(ProtocolError("invalid multibulk length".into()))
        );
        assert_eq!(
            p(b"*1\r\n$11\r\n"),
            Err(ProtocolError("invalid bulk length".into()))
        );
        assert_eq!(
            p(b"*1\r\n$-5\r\n"),
            Err(ProtocolError("invalid bulk length".into()))
        );
        assert_eq!(
            p(b"*1\r\n*1\r\n"),
            Err(ProtocolError("expected '$', got '*'".into()))
        );
        assert_eq!(
            p(b"*x\r\n"),
            Err(ProtocolError("invalid multibulk length".into()))
        );
        assert_eq!(
            p(b"*99999999999999999999999\r\n"),
            Err(ProtocolError("invalid multibulk length".into()))
        );
        assert_eq!(
            p(&[b'a'; 17]),
            Err(ProtocolError("too big inline request".into()))
        );
        assert_eq!(
            p(b"*1\r\n$3\r\nabcXY"),
            Err(ProtocolError("invalid bulk string terminator".into()))
        );
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic_and_reencode(data in proptest::collection::vec(proptest::num::u8::ANY, 0..1024)) {
            let limits = Limits { bulk_bytes_max: 256, args_max: 64, inline_bytes_max: 256, buffer_bytes_max: 4096 };
            let mut rest = &data[..];
            while let Ok(Some((args, used))) = parse_command(rest, &limits) {
                proptest::prop_assert!(used > 0 && used <= rest.len());
                if !args.is_empty() {
                    let mut again = format!("*{}\r\n", args.len()).into_bytes();
                    for a in &args {
                        again.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                        again.extend_from_slice(a);
                        again.extend_from_slice(b"\r\n");
                    }
                    proptest::prop_assert_eq!(parse_command(&again, &limits), Ok(Some((args, again.len()))));
                }
                rest = &rest[used..];
            }
        }
    }

    #[test]
    fn encoded_len_is_what_encode_writes() {
        let frames = [
            Frame::ok(),
            Frame::Error("ERR x".into()),
            Frame::Integer(0),
            Frame::Integer(i64::MIN),
            Frame::Integer(1234567),
            Frame::bulk(""),
            Frame::bulk(vec![b'x'; 1000]),
            Frame::Null,
            Frame::NullArray,
            Frame::Double(1.5),
            Frame::Double(f64::NEG_INFINITY),
            Frame::Verbatim("text".into()),
            Frame::Encoded(b"+OK\r\n".to_vec()),
            Frame::Set(vec![Frame::Integer(-1), Frame::bulk("a")]),
            Frame::Map(vec![(
                Frame::bulk("k"),
                Frame::Array(vec![Frame::Null; 12]),
            )]),
            Frame::Array(vec![Frame::Array(vec![]); 10]),
        ];
        for proto in [2, 3] {
            for f in &frames {
                let mut out = Vec::new();
                f.encode(proto, &mut out);
                assert_eq!(f.encoded_len(proto), out.len(), "{f:?} in RESP{proto}");
            }
        }
    }

    #[test]
    fn encode_both_protocols() {
        let f = Frame::Map(vec![(Frame::bulk("a"), Frame::Integer(1))]);
        let mut two = Vec::new();
        f.encode(2, &mut two);
        assert_eq!(two, b"*2\r\n$1\r\na\r\n:1\r\n");
        let mut three = Vec::new();
        f.encode(3, &mut three);
        assert_eq!(three, b"%1\r\n$1\r\na\r\n:1\r\n");
        let mut n = Vec::new();
        Frame::NullArray.encode(2, &mut n);
        Frame::Null.encode(3, &mut n);
        Frame::Error("ERR a\nb".into()).encode(2, &mut n);
        assert_eq!(n, b"*-1\r\n_\r\n-ERR a b\r\n");
    }
}
