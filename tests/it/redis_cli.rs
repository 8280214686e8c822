//! The real redis-cli against the RESP port (scripts/test installs redis-tools).

use std::process::Command;

use crate::support::*;

fn cli(s: &Server, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(s.port().to_string())
        .args(args)
        .output()
        .expect("redis-cli must be installed (scripts/test installs redis-tools)");
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn redis_cli_round_trip() {
    let s = Server::start(&["--test-clock"]);
    assert_eq!(cli(&s, &["PING"]), "PONG");
    let id = cli(
        &s,
        &[
            "XADD",
            "cortex:tasks",
            "*",
            "from",
            "harold",
            "to",
            "pink",
            "type",
            "code_task",
        ],
    );
    assert!(id.contains('-'), "{id}");
    assert_eq!(
        cli(&s, &["XGROUP", "CREATE", "cortex:tasks", "coding", "0"]),
        "OK"
    );
    let got = cli(
        &s,
        &[
            "XREADGROUP",
            "GROUP",
            "coding",
            "pink",
            "COUNT",
            "1",
            "STREAMS",
            "cortex:tasks",
            ">",
        ],
    );
    assert!(got.contains("code_task") && got.contains(&id), "{got}");
    assert_eq!(cli(&s, &["XACK", "cortex:tasks", "coding", &id]), "1");
    let urgent = cli(
        &s,
        &[
            "CX.PUBLISH",
            "cortex:tasks",
            "PRIORITY",
            "critical",
            "payload",
            "PRODUCTION_DOWN",
        ],
    );
    cli(&s, &["XADD", "cortex:tasks", "*", "payload", "routine"]);
    let got = cli(
        &s,
        &[
            "XREADGROUP",
            "GROUP",
            "coding",
            "pink",
            "COUNT",
            "1",
            "STREAMS",
            "cortex:tasks",
            ">",
        ],
    );
    assert!(
        got.contains("PRODUCTION_DOWN") && got.contains(&urgent),
        "{got}"
    );
    cli(
        &s,
        &["CX.POLICY", "cortex:tasks", "coding", "MAXATTEMPTS", "1"],
    );
    assert_eq!(
        cli(
            &s,
            &[
                "CX.NACK",
                "cortex:tasks",
                "coding",
                &urgent,
                "ERROR",
                "nope"
            ]
        ),
        "1"
    );
    let dlq = cli(&s, &["XRANGE", "cortex:dlq", "-", "+"]);
    assert!(
        dlq.contains("max_attempts") && dlq.contains("PRODUCTION_DOWN"),
        "{dlq}"
    );
    // redis-cli's own introspection works.
    assert!(cli(&s, &["INFO", "server"]).contains("redis_version"));
    assert!(cli(&s, &["--no-raw", "COMMAND", "COUNT"]).contains("(integer)"));
}
