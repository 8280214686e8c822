//! Raw RESP at the boundary: pipelining, inline commands, RESP3, bad input.

use crate::support::*;

#[test]
fn pipelined_commands_answer_in_order() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    let mut batch = Vec::new();
    for i in 0..200 {
        batch.extend_from_slice(
            format!("*3\r\n$4\r\nECHO\r\n$1\r\nx\r\n$1\r\n{}\r\n", i % 10).as_bytes(),
        );
        batch.extend_from_slice(
            format!("*2\r\n$4\r\nECHO\r\n${}\r\n{}\r\n", i.to_string().len(), i).as_bytes(),
        );
    }
    r.send(&batch);
    for i in 0..200 {
        assert_eq!(
            r.read(),
            V::Err("ERR wrong number of arguments for 'echo' command".into())
        );
        assert_eq!(r.read(), b(&i.to_string()));
    }
    // Inline commands, as telnet users type them.
    r.send(b"PING\r\nECHO \"a b\"\r\n");
    assert_eq!(r.read(), V::Simple("PONG".into()));
    assert_eq!(r.read(), b("a b"));
}

#[test]
fn resp3_after_hello() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    let hello = r.cmd(&["HELLO", "3"]);
    let V::Map(m) = hello else {
        panic!("{hello:?}")
    };
    assert!(m.contains(&(b("proto"), V::Int(3))));
    assert!(m.contains(&(b("server"), b("redis"))));
    r.cmd(&["XADD", "s", "1-1", "f", "v"]);
    assert_eq!(r.cmd(&["XREAD", "STREAMS", "nothing", "0"]), V::Nil);
    let read = r.cmd(&["XREAD", "STREAMS", "s", "0"]);
    let V::Map(m) = read else {
        panic!("RESP3 XREAD is a map: {read:?}")
    };
    assert_eq!(m[0].0, b("s"));
    assert_eq!(
        r.cmd(&["HELLO", "4"]),
        V::Err("NOPROTO unsupported protocol version".into())
    );
    assert!(
        matches!(r.cmd(&["HELLO", "2"]), V::Arr(_)),
        "RESP2 HELLO is a flat array"
    );
    assert_eq!(r.cmd(&["XREAD", "STREAMS", "nothing", "0"]), V::Nil);
}

fn expect_protocol_error(s: &Server, bytes: &[u8], text: &str) {
    let mut r = s.raw();
    r.send(bytes);
    assert_eq!(
        r.read(),
        V::Err(format!("ERR Protocol error: {text}")),
        "for {:?}",
        String::from_utf8_lossy(bytes)
    );
    assert!(r.closed(), "the connection closes after a protocol error");
}

#[test]
fn bad_input_gets_errors_and_the_server_stays_up() {
    let s = Server::start(&[]);
    expect_protocol_error(&s, b"*1\r\n$999999999999\r\n", "invalid bulk length");
    expect_protocol_error(&s, b"*99999999\r\n", "invalid multibulk length");
    expect_protocol_error(&s, b"*-\r\n", "invalid multibulk length");
    expect_protocol_error(
        &s,
        b"*1\r\n*1\r\n*1\r\n*1\r\n$1\r\na\r\n",
        "expected '$', got '*'",
    );
    expect_protocol_error(&s, b"*2\r\n$4\r\nPING\r\n:1\r\n", "expected '$', got ':'");
    expect_protocol_error(&s, b"*1\r\n$4\r\nPINGXX", "invalid bulk string terminator");
    expect_protocol_error(&s, b"ECHO \"unbalanced\r\n", "unbalanced quotes in request");
    let mut long = vec![b'a'; 70 * 1024];
    long.extend_from_slice(b"\r\n");
    expect_protocol_error(&s, &long, "too big inline request");
    // Random garbage from many connections.
    let mut seed: u64 = 42;
    for _ in 0..50 {
        let mut r = s.raw();
        let junk: Vec<u8> = (0..512)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 33) as u8
            })
            .collect();
        r.send(&junk);
        r.send(b"\r\n");
    }
    // Still serving.
    let mut r = s.raw();
    assert_eq!(r.cmd(&["PING"]), V::Simple("PONG".into()));
    assert!(!r.cmd(&["XADD", "s", "*", "f", "v"]).is_err());
}

#[test]
fn unknown_commands_and_arity() {
    let s = Server::start(&[]);
    let mut r = s.raw();
    assert_eq!(
        r.cmd(&["SET", "k", "v"]),
        V::Err("ERR unknown command 'SET', with args beginning with: 'k' 'v' ".into())
    );
    assert_eq!(
        r.cmd(&["XLEN"]),
        V::Err("ERR wrong number of arguments for 'xlen' command".into())
    );
    assert_eq!(
        r.cmd(&["xgroup", "create", "s"]),
        V::Err("ERR wrong number of arguments for 'xgroup|create' command".into())
    );
    assert_eq!(
        r.cmd(&["XGROUP", "NOPE", "a"]),
        V::Err("ERR unknown subcommand 'NOPE'. Try XGROUP HELP.".into())
    );
}
