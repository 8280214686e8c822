//! Command sequences against the storage state machine: the fuzzer's bytes become a sequence
//! of ops (appends, deletes, trims, groups, reads, acks, nacks, claims, clock moves, ticks,
//! reopens) run against a real store and against the in-memory model of the property test;
//! every reply and the observable state must agree after every op.
#![no_main]

#[path = "../../storage/tests/it/model_core.rs"]
#[allow(dead_code)]
mod model_core;

use libfuzzer_sys::fuzz_target;
use model_core::MOp;

/// Three bytes per op: which op, and two arguments.
fn ops(data: &[u8]) -> Vec<MOp> {
    data.chunks_exact(3)
        .take(64)
        .map(|c| {
            let (a, b) = (c[1] as usize, c[2] as usize);
            let s = a & 1;
            let g = (a >> 1) & 1;
            let cn = (a >> 2) & 1;
            match c[0] % 13 {
                0..=2 => MOp::Append {
                    s,
                    lane: b % 5,
                    explicit: (a & 0x80 != 0).then_some(((b as u64) * 2, (a as u64 >> 3) % 3)),
                },
                3 => MOp::Delete { s, pick: b % 8 },
                4 => MOp::Trim {
                    s,
                    maxlen: (b % 6) as u64,
                },
                5 => MOp::CreateGroup {
                    s,
                    g,
                    at_end: b & 1 == 1,
                },
                6 | 7 => MOp::Read {
                    s,
                    g,
                    c: cn,
                    count: 1 + b % 4,
                },
                8 => MOp::History { s, g, c: cn },
                9 => MOp::Ack { s, g, pick: b % 8 },
                10 => MOp::Nack { s, g, pick: b % 8 },
                11 => match b % 3 {
                    0 => MOp::Claim {
                        s,
                        g,
                        c: cn,
                        pick: b % 8,
                        min_idle: ((a >> 3) % 8) as u64 * 25,
                    },
                    1 => MOp::Tick,
                    _ => MOp::Reopen,
                },
                _ => MOp::Advance {
                    ms: (b % 7) as u64 * 25,
                },
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks a pending index of a few entries (groups move to disk and
    // back) or the default bound.
    let bound = if data.first().is_some_and(|b| b & 1 == 1) {
        600
    } else {
        256 << 20
    };
    model_core::run(&ops(data), bound);
});
