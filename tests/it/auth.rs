//! Tokens: NOAUTH until AUTH; non-loopback binds refused without tokens.

use std::process::Command;

use crate::support::*;

#[test]
fn tokens_require_auth() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("cortex.toml");
    std::fs::write(
        &cfg,
        "[tokens]\nharold = \"h-secret\"\npink = \"p-secret\"\n\
         [agents.harold]\npublish = [\"*\"]\nconsume = [\"*\"]\n\
         [agents.pink]\nconsume = [\"*\"]\n",
    )
    .unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let mut r = s.raw();
    assert_eq!(r.cmd(&["PING"]), V::Simple("PONG".into()));
    assert_eq!(
        r.cmd(&["XADD", "s", "*", "f", "v"]),
        V::Err("NOAUTH Authentication required.".into())
    );
    assert_eq!(
        r.cmd(&["AUTH", "wrong"]),
        V::Err("WRONGPASS invalid username-password pair or user is disabled.".into())
    );
    assert_eq!(
        r.cmd(&["AUTH", "pink", "h-secret"]),
        V::Err("WRONGPASS invalid username-password pair or user is disabled.".into())
    );
    assert_eq!(
        r.cmd(&["AUTH", "harold", "h-secret"]),
        V::Simple("OK".into())
    );
    assert!(!r.cmd(&["XADD", "s", "*", "f", "v"]).is_err());
    let mut r2 = s.raw();
    assert!(matches!(
        r2.cmd(&["HELLO", "3", "AUTH", "default", "p-secret"]),
        V::Map(_)
    ));
    assert_eq!(r2.cmd(&["XLEN", "s"]), V::Int(1));
    let mut r3 = s.raw();
    assert_eq!(r3.cmd(&["AUTH", "p-secret"]), V::Simple("OK".into()));
}

#[test]
fn public_bind_without_tokens_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cortex"))
        .args(["serve", "--resp", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address and no auth tokens are configured"),
        "{err}"
    );
}
