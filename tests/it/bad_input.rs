//! Bad input, front by front, as tables of (input, the error expected): each is answered
//! with a clear error, and the same connection (where the protocol allows) and the next
//! client are served. See `protocol.rs` for RESP framing errors that close the connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cortex::client::{Client, ErrorCode, Message};
use cortex::wire::{self, Frame, HEADER_BYTES};
use serde_json::json;

use crate::support::*;

fn args(v: &[&[u8]]) -> Vec<Vec<u8>> {
    v.iter().map(|a| a.to_vec()).collect()
}

/// Commands whose arguments are wrong: an error naming what is wrong, the connection stays.
#[test]
fn resp_commands_with_bad_arguments() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    r.cmd(&["XADD", "s", "5-1", "f", "v"]);
    r.cmd(&["XGROUP", "CREATE", "s", "g", "0"]);
    let big = vec![b'x'; (1 << 20) + 1];
    let long_name = vec![b'n'; 1025];
    let long_group = vec![b'g'; 257];
    let mut many_fields: Vec<Vec<u8>> = args(&[b"XADD", b"s", b"*"]);
    for i in 0..1025 {
        many_fields.push(format!("f{i}").into_bytes());
        many_fields.push(b"v".to_vec());
    }
    let table: Vec<(Vec<Vec<u8>>, &str)> = vec![
        // Invalid IDs.
        (
            args(&[b"XADD", b"s", b"0-0", b"f", b"v"]),
            "ERR The ID specified in XADD must be greater than 0-0",
        ),
        (
            args(&[b"XADD", b"s", b"1-1", b"f", b"v"]),
            "ERR The ID specified in XADD is equal or smaller than the target stream top item",
        ),
        (
            args(&[b"XADD", b"s", b"abc", b"f", b"v"]),
            "ERR Invalid stream ID specified as stream command argument",
        ),
        (
            args(&[b"XADD", b"s", b"18446744073709551616-0", b"f", b"v"]),
            "ERR Invalid stream ID specified as stream command argument",
        ),
        (
            args(&[b"XRANGE", b"s", b"-1", b"+"]),
            "ERR Invalid stream ID specified as stream command argument",
        ),
        (
            args(&[b"XACK", b"s", b"g", b"1-x"]),
            "ERR Invalid stream ID specified as stream command argument",
        ),
        // Negative and huge numbers.
        (
            args(&[b"XREAD", b"COUNT", b"abc", b"STREAMS", b"s", b"0"]),
            "ERR value is not an integer or out of range",
        ),
        (
            args(&[b"XREAD", b"BLOCK", b"-1", b"STREAMS", b"s", b"0"]),
            "ERR timeout is negative",
        ),
        (
            args(&[b"XRANGE", b"s", b"-", b"+", b"COUNT", b"99999999999999999999"]),
            "ERR value is not an integer or out of range",
        ),
        (
            args(&[b"XTRIM", b"s", b"MAXLEN", b"-5"]),
            "ERR The MAXLEN argument must be >= 0.",
        ),
        // Oversized entries, too many fields, long names.
        (
            vec![b"XADD".to_vec(), b"s".to_vec(), b"*".to_vec(), b"f".to_vec(), big],
            "entry",
        ),
        (many_fields, "fields"),
        (
            vec![b"XADD".to_vec(), long_name, b"*".to_vec(), b"f".to_vec(), b"v".to_vec()],
            "stream name",
        ),
        (
            vec![
                b"XGROUP".to_vec(),
                b"CREATE".to_vec(),
                b"s".to_vec(),
                long_group,
                b"0".to_vec(),
            ],
            "group name",
        ),
        // Odd field counts, unknown options, missing groups.
        (
            args(&[b"XADD", b"s", b"*", b"f"]),
            "ERR wrong number of arguments for 'xadd' command",
        ),
        (args(&[b"XADD", b"s", b"NOPE", b"*", b"f", b"v"]), "ERR"),
        (
            args(&[b"XREADGROUP", b"GROUP", b"nope", b"c", b"STREAMS", b"s", b">"]),
            "NOGROUP",
        ),
        (
            args(&[b"XREAD", b"STREAMS", b"s", b"t", b"0"]),
            "ERR Unbalanced 'xread' list of streams: for each stream key an ID or '$' must be specified.",
        ),
        // Unknown commands (binary junk as the name), wrong arity.
        (args(&[b"\x00\xff\xfe", b"x"]), "ERR unknown command"),
        (
            args(&[b"XLEN"]),
            "ERR wrong number of arguments for 'xlen' command",
        ),
        (args(&[b"CX.DLQ", b"NOPE"]), "ERR unknown subcommand"),
    ];
    for (input, want) in &table {
        let got = r.cmd_bytes(input);
        let shown: Vec<String> = input
            .iter()
            .take(6)
            .map(|a| String::from_utf8_lossy(&a[..a.len().min(24)]).into_owned())
            .collect();
        match &got {
            V::Err(e) => assert!(e.contains(want), "{shown:?}: got {e:?}, want {want:?}"),
            other => panic!("{shown:?}: got {other:?}, want an error with {want:?}"),
        }
        // The same connection goes on.
        assert_eq!(r.cmd(&["PING"]), V::Simple("PONG".into()), "{shown:?}");
    }
    // Binary names are names: stored and found.
    let name: &[u8] = b"\x00\xff\r\n name";
    assert!(!r
        .cmd_bytes(&args(&[b"XADD", name, b"*", b"f", b"v"]))
        .is_err());
    assert_eq!(r.cmd_bytes(&args(&[b"XLEN", name])), V::Int(1));
    assert_eq!(r.cmd(&["XLEN", "s"]), V::Int(1));
}

/// Framing the server cannot parse: a protocol error, then the connection closes; others
/// are served. (More cases in `protocol::bad_input_gets_errors_and_the_server_stays_up`.)
#[test]
fn resp_framing_errors() {
    let s = Server::start(&[]);
    let table: &[(&[u8], &str)] = &[
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b"*1\r\n$8388609\r\n", "invalid bulk length"),
        (b"*1048577\r\n", "invalid multibulk length"),
        (b"*1\r\n$x\r\n", "invalid bulk length"),
        (b"*2\r\n*1\r\n*1\r\n", "expected '$', got '*'"),
        (b"*1\r\n$4\r\nPING\n\n", "invalid bulk string terminator"),
    ];
    for (bytes, want) in table {
        let mut r = s.raw();
        r.send(bytes);
        assert_eq!(
            r.read(),
            V::Err(format!("ERR Protocol error: {want}")),
            "for {:?}",
            String::from_utf8_lossy(bytes)
        );
        assert!(r.closed());
    }
    // Unterminated frames: the server waits for the rest; a client that leaves halfway
    // costs nothing, and one that completes it is answered.
    for part in [
        &b"*2\r\n$4\r\nEC"[..],
        b"*2\r\n$4\r\nECHO\r\n$3\r\nab",
        b"*3",
    ] {
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.write_all(part).unwrap();
    }
    let mut r = s.raw();
    // As in Redis, a null or empty multibulk is skipped.
    r.send(b"*-5\r\n*0\r\n*1\r\n$4\r\nPING\r\n");
    assert_eq!(r.read(), V::Simple("PONG".into()));
    r.send(b"*2\r\n$4\r\nEC");
    r.send(b"HO\r\n$3\r\nabc\r\n");
    assert_eq!(r.read(), b("abc"));
    assert_eq!(r.cmd(&["PING"]), V::Simple("PONG".into()));
}

fn quic_opts(s: &Server, agent: &str) -> cortex::client::ClientOptions {
    crate::quic::opts(s, agent, "")
}

async fn answer(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, bytes: &[u8]) -> Frame {
    send.write_all(bytes).await.unwrap();
    let _ = send.finish();
    match tokio::time::timeout(
        Duration::from_secs(10),
        cortex::wire::io::read_frame(recv, &wire::Limits::default()),
    )
    .await
    .expect("an answer in time")
    {
        Ok(Some(f)) => f,
        other => panic!("no frame: {other:?}"),
    }
}

fn with_len(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_frames_that_are_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "quic_streams_max = 4\n").unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let c = Client::connect(quic_opts(&s, "a")).await.unwrap();
    let good = Message {
        fields: vec![(b"f".to_vec(), b"v".to_vec())],
        lane: 2,
        ..Message::default()
    };
    let publish = wire::encode(&Frame::Publish {
        stream: b"s".to_vec(),
        messages: vec![good.clone()],
    });
    let mut truncated = publish.clone();
    truncated.truncate(publish.len() - 3);
    let mut trailing = publish[HEADER_BYTES..].to_vec();
    trailing.push(0);
    let mut huge_name = 1u32.to_le_bytes().to_vec();
    huge_name.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let welcome = wire::encode(&Frame::Credit { window: 5 });
    let table: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
        (
            "a length over the limit",
            (64u32 << 20).to_le_bytes().to_vec(),
            ErrorCode::TooLarge,
        ),
        (
            "an unknown tag",
            with_len(&[0xee, 0, 0, 0]),
            ErrorCode::BadFrame,
        ),
        (
            "a body shorter than its length",
            truncated,
            ErrorCode::BadFrame,
        ),
        ("trailing bytes", with_len(&trailing), ErrorCode::BadFrame),
        (
            "a name claiming 2^60 bytes",
            with_len(&huge_name),
            ErrorCode::BadFrame,
        ),
        ("half a header", vec![8, 0], ErrorCode::BadFrame),
        (
            "a frame that is not a request",
            welcome,
            ErrorCode::BadFrame,
        ),
        // A value that is too small or out of range is invalid, not too large.
        (
            "an empty stream name",
            wire::encode(&Frame::Publish {
                stream: Vec::new(),
                messages: vec![good.clone()],
            }),
            ErrorCode::InvalidArgument,
        ),
        (
            "a lane that does not exist",
            wire::encode(&Frame::Publish {
                stream: b"s".to_vec(),
                messages: vec![Message {
                    lane: 9,
                    ..good.clone()
                }],
            }),
            ErrorCode::InvalidArgument,
        ),
        (
            "a request without a timeout",
            wire::encode(&Frame::Request {
                agent: "a".into(),
                fields: vec![(b"q".to_vec(), b"?".to_vec())],
                headers: Vec::new(),
                timeout_ms: 0,
                lane: 2,
            }),
            ErrorCode::InvalidArgument,
        ),
        (
            "more messages than a publish may hold",
            wire::encode(&Frame::Publish {
                stream: b"s".to_vec(),
                messages: vec![good.clone(); 1_001],
            }),
            ErrorCode::TooLarge,
        ),
    ];
    for (what, bytes, code) in table {
        let (mut send, mut recv) = c.raw_stream().await.unwrap();
        match answer(&mut send, &mut recv, &bytes).await {
            Frame::Error { code: got, message } => {
                assert_eq!(got, code, "{what}: {message}");
                assert!(!message.is_empty(), "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
        // The same connection goes on.
        c.publish("s", good.clone()).await.unwrap();
    }

    // A Hello with a protocol version the server does not speak.
    let conn = crate::quic::raw_connection(&s).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let hello = wire::encode(&Frame::Hello {
        protocol: 999,
        agent: "a".into(),
        token: String::new(),
        client: "test".into(),
    });
    match answer(&mut send, &mut recv, &hello).await {
        Frame::Error { code, message } => {
            assert_eq!(code, ErrorCode::UnsupportedVersion, "{message}");
            assert!(message.contains("999"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    // Too many streams: the fifth concurrent one waits (QUIC's stream credit), and opens
    // once one of the four is done.
    let c2 = Client::connect(quic_opts(&s, "b")).await.unwrap();
    let mut open = Vec::new();
    for _ in 0..4 {
        let (mut send, recv) = c2.raw_stream().await.unwrap();
        send.write_all(&[8]).await.unwrap(); // a quarter of a header: the server waits
        open.push((send, recv));
    }
    let fifth = c2.raw_stream();
    tokio::pin!(fifth);
    let early = tokio::time::timeout(Duration::from_millis(300), &mut fifth).await;
    assert!(early.is_err(), "a fifth concurrent stream opened");
    let (mut send, mut recv) = open.pop().unwrap();
    let _ = send.finish();
    let _ = cortex::wire::io::read_frame(&mut recv, &wire::Limits::default()).await;
    drop((send, recv));
    let got = tokio::time::timeout(Duration::from_secs(10), &mut fifth).await;
    assert!(matches!(got, Ok(Ok(_))), "the fifth stream never opened");
    // Others are served meanwhile.
    Client::connect(quic_opts(&s, "c"))
        .await
        .unwrap()
        .publish("s", good)
        .await
        .unwrap();
}

/// One raw HTTP request; the status and the body.
fn raw_http(s: &Server, request: &[u8]) -> (u16, String) {
    let mut c = TcpStream::connect(s.http).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = c.write_all(request);
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).into_owned();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

#[test]
fn http_requests_that_are_wrong() {
    let s = Server::start(&[]);
    let json_type = "application/json";
    let big = vec![b'x'; 9 << 20];
    let publish = "/api/v1/streams/s/messages";
    let table: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("malformed JSON", post(publish, json_type, b"{\"fields\": "), 400, "invalid_argument"),
        ("JSON of the wrong shape", post(publish, json_type, b"[1,2,3]"), 400, "invalid_argument"),
        ("a body over 8 MiB", post(publish, json_type, &big), 413, "too_large"),
        (
            "not JSON at all",
            post(publish, "text/plain", b"hello"),
            415,
            "unsupported_media_type",
        ),
        (
            "an invalid ID",
            post(
                "/api/v1/streams/s/groups/g/ack",
                json_type,
                json!({"ids": ["nope"]}).to_string().as_bytes(),
            ),
            400,
            "invalid_argument",
        ),
        (
            "an unknown route",
            b"GET /api/v1/nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            404,
            "",
        ),
        (
            "a bad count",
            b"GET /api/v1/streams/s/messages?count=-1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                .to_vec(),
            400,
            "",
        ),
        (
            "an unknown protocol to wait for",
            b"GET /api/v1/connections?protocol=smtp&at_most=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                .to_vec(),
            400,
            "unknown protocol 'smtp'",
        ),
        ("not HTTP", b"\x16\x03\x01garbage\r\n\r\n".to_vec(), 400, ""),
        (
            "a header line of 1 MiB",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(1 << 20)
            )
            .into_bytes(),
            431,
            "",
        ),
    ];
    for (what, request, want, code) in table {
        let (status, body) = raw_http(&s, &request);
        assert_eq!(status, want, "{what}: {body}");
        if !code.is_empty() {
            assert!(body.contains(code), "{what}: {body}");
        }
        // The next client is served.
        let (status, _) = raw_http(
            &s,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(status, 200, "after {what}");
    }
}
