//! Redis 8.6's idempotent production: XADD IDMP kept per stream, by its duration and its
//! per-producer maxsize (XCFGSET), with XINFO STREAM's counters.

use cortex_storage::idmp::idmp_key;
use cortex_storage::*;

use crate::util::*;

/// A clock well past one idempotency window, so expiry times are never clipped at zero.
const T0: u64 = 100_000_000;

fn xadd(s: &Store, pid: &str, iid: &str, now: u64) -> (StreamId, bool) {
    let op = Op::Append {
        stream: key("s"),
        id: IdSpec::Auto,
        fields: fields(iid),
        meta: Meta::default(),
        idempotency_key: Some(idmp_key(pid.as_bytes(), iid.as_bytes())),
        no_mkstream: false,
        trim: None,
    };
    match s.apply_one(op, now) {
        Ok(Reply::Appended { id, duplicate }) => (id, duplicate),
        other => panic!("XADD IDMP: {other:?}"),
    }
}

fn cfgset(s: &Store, duration_s: Option<u64>, maxsize: Option<u64>, now: u64) -> Result<Reply> {
    s.apply_one(
        Op::ConfigureIdmp {
            stream: key("s"),
            duration_s,
            maxsize,
        },
        now,
    )
}

fn info(s: &Store) -> IdmpInfo {
    s.stream_info(&key("s"))
        .unwrap()
        .expect("stream")
        .idmp
        .expect("the stream uses IDMP")
}

/// (pids-tracked, iids-tracked, iids-added, iids-duplicates).
fn counters(s: &Store) -> (u64, u64, u64, u64) {
    let i = info(s);
    (
        i.pids_tracked,
        i.iids_tracked,
        i.iids_added,
        i.iids_duplicates,
    )
}

#[test]
fn ids_are_kept_per_producer_up_to_maxsize_and_for_the_streams_duration() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    add(&s, "s", "plain", T0);
    assert_eq!(s.stream_info(&key("s")).unwrap().unwrap().idmp, None);
    xadd(&s, "p0", "first", T0);
    let window = s.config().idempotency_window_ms;
    assert_eq!(
        info(&s),
        IdmpInfo {
            duration_s: window / 1000,
            maxsize: 100,
            pids_tracked: 1,
            iids_tracked: 1,
            iids_added: 1,
            iids_duplicates: 0,
        }
    );
    assert_eq!(cfgset(&s, Some(10), Some(2), T0).unwrap(), Reply::Ok);
    assert_eq!((info(&s).duration_s, info(&s).maxsize), (10, 2));

    let (a, dup) = xadd(&s, "p1", "a", T0);
    assert!(!dup);
    let (b, _) = xadd(&s, "p1", "b", T0);
    assert_eq!(xadd(&s, "p1", "a", T0 + 1), (a, true));
    // A third ID evicts the producer's oldest, a.
    xadd(&s, "p1", "c", T0 + 2);
    assert_eq!(counters(&s), (1, 2, 4, 1));
    assert_eq!(xadd(&s, "p1", "b", T0 + 3), (b, true));
    let (a2, dup) = xadd(&s, "p1", "a", T0 + 4);
    assert!(!dup && a2 != a, "an evicted ID adds a new entry");
    // Producers are apart: p2's "b" is its own.
    assert!(!xadd(&s, "p2", "b", T0 + 5).1);
    assert_eq!(counters(&s), (2, 3, 6, 2));

    // Past the duration a repeat is new, before the sweep and after it.
    assert!(!xadd(&s, "p2", "b", T0 + 5 + 10_000).1);
    assert_eq!(counters(&s), (2, 3, 7, 2), "the expired ID was replaced");
    // The next deadline comes no later than the earliest expiry (p1's c, kept at T0 + 2;
    // the sweep's floor may lie below it, as a's evicted key did).
    let next = s.due(T0 + 20).next_deadline_ms.expect("a deadline");
    assert!((T0 + 10_000..=T0 + 2 + 10_000).contains(&next), "{next}");
    s.apply_one(Op::Tick, T0 + 4 + 10_000).unwrap();
    assert_eq!(
        counters(&s),
        (1, 1, 7, 2),
        "p1's IDs expired, p2's new one is kept"
    );
    s.apply_one(Op::Tick, T0 + 5 + 20_000).unwrap();
    assert_eq!(counters(&s), (0, 0, 7, 2));
    // What is left: p0's key of the generation before XCFGSET, at the store's window.
    assert_eq!(s.due(T0 + 5 + 20_000).next_deadline_ms, Some(T0 + window));
    s.apply_one(Op::Tick, T0 + window).unwrap();
    assert_eq!(s.due(T0 + window).next_deadline_ms, None);
    assert_eq!(counters(&s), (0, 0, 7, 2));
}

#[test]
fn a_changed_setting_forgets_every_producers_ids_and_the_same_one_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let (x, _) = xadd(&s, "p1", "x", T0);
    xadd(&s, "p2", "y", T0);
    assert_eq!(counters(&s), (2, 2, 2, 0));
    let window_s = s.config().idempotency_window_ms / 1000;
    // The values it has already (the defaults): nothing is forgotten.
    cfgset(&s, Some(window_s), Some(100), T0).unwrap();
    assert_eq!(counters(&s), (2, 2, 2, 0));
    assert_eq!(xadd(&s, "p1", "x", T0 + 1), (x, true));
    // A new duration (longer than the store's window): every producer starts over; the
    // lifetime counters stay.
    cfgset(&s, Some(3600), None, T0 + 2).unwrap();
    assert_eq!(counters(&s), (0, 0, 2, 1));
    assert!(!xadd(&s, "p1", "x", T0 + 3).1);
    assert_eq!(counters(&s), (1, 1, 3, 1));
    // The forgotten generation leaves with its expiry, without touching the new counts.
    s.apply_one(Op::Tick, T0 + s.config().idempotency_window_ms)
        .unwrap();
    assert_eq!(counters(&s), (1, 1, 3, 1));
    // Kept across a reopen, and the offline check reads every record.
    drop(s);
    let s = open(dir.path());
    assert_eq!(info(&s).duration_s, 3600);
    assert_eq!(counters(&s), (1, 1, 3, 1));
    assert!(xadd(&s, "p1", "x", T0 + 4).1);
    s.close().unwrap();
    let r = verify(dir.path(), &StoreConfig::default()).unwrap();
    assert!(r.damage.is_empty(), "{:?}", r.damage);
}

#[test]
fn settings_are_checked_and_the_reserved_key_space_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    assert!(matches!(
        cfgset(&s, Some(5), None, T0),
        Err(Error::NoSuchStream { .. })
    ));
    add(&s, "s", "v", T0);
    for (d, m) in [
        (Some(0), None),
        (Some(86_401), None),
        (None, Some(0)),
        (None, Some(10_001)),
        (None, None),
    ] {
        assert!(
            matches!(cfgset(&s, d, m, T0), Err(Error::InvalidArgument(_))),
            "{d:?} {m:?}"
        );
    }
    assert_eq!(
        cfgset(&s, Some(86_400), Some(10_000), T0).unwrap(),
        Reply::Ok
    );
    let op = |k: &[u8]| Op::Append {
        stream: key("s"),
        id: IdSpec::Auto,
        fields: fields("v"),
        meta: Meta::default(),
        idempotency_key: Some(k.to_vec()),
        no_mkstream: false,
        trim: None,
    };
    assert!(matches!(
        s.apply_one(op(b"\0IDMS"), T0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        s.apply_one(op(b"ordinary"), T0),
        Ok(Reply::Appended {
            duplicate: false,
            ..
        })
    ));
}
