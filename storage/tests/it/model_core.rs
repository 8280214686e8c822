//! The storage model: a plain in-memory version of streams, groups, pending lists, retries
//! and the DLQ. [`run`] applies an op sequence to a real store and to the model and compares
//! every reply and the observable state after every op. Shared by the property test
//! (`model.rs`) and the command-sequence fuzz target (`fuzz/fuzz_targets/store_model.rs`,
//! which includes this file by path).

use std::collections::BTreeMap;
use std::ops::Bound::Unbounded;

use cortex_storage::*;

const GUARD: u32 = 3;
const MAX_ATTEMPTS: u32 = 2;
const BACKOFF_MS: u64 = 100;
pub const STREAMS: [&str; 2] = ["s0", "s1"];
pub const GROUPS: [&str; 2] = ["plain", "policy"];
pub const CONSUMERS: [&str; 2] = ["c0", "c1"];

/// One step of a sequence: an op on the store, or the clock, or a reopen.
#[derive(Clone, Debug)]
pub enum MOp {
    Append {
        s: usize,
        lane: usize,
        explicit: Option<(u64, u64)>,
    },
    Delete {
        s: usize,
        pick: usize,
    },
    Trim {
        s: usize,
        maxlen: u64,
    },
    CreateGroup {
        s: usize,
        g: usize,
        at_end: bool,
    },
    Read {
        s: usize,
        g: usize,
        c: usize,
        count: usize,
    },
    History {
        s: usize,
        g: usize,
        c: usize,
    },
    Ack {
        s: usize,
        g: usize,
        pick: usize,
    },
    Nack {
        s: usize,
        g: usize,
        pick: usize,
    },
    Claim {
        s: usize,
        g: usize,
        c: usize,
        pick: usize,
        min_idle: u64,
    },
    Advance {
        ms: u64,
    },
    Tick,
    Reopen,
}

#[derive(Clone, Debug, PartialEq)]
enum MState {
    Delivered,
    Wait(u64),
    Ready,
}

#[derive(Clone, Debug)]
struct MPel {
    consumer: usize,
    delivered: u64,
    deliveries: u64,
    failures: u32,
    state: MState,
}

#[derive(Clone, Debug, Default)]
struct MGroup {
    cursor: [StreamId; 5],
    streak: u32,
    pel: BTreeMap<StreamId, MPel>,
}

#[derive(Clone, Debug, Default)]
struct MStream {
    entries: BTreeMap<StreamId, (Vec<u8>, Lane)>,
    last_id: StreamId,
    groups: BTreeMap<usize, MGroup>,
}

#[derive(Default)]
struct Model {
    streams: BTreeMap<usize, MStream>,
    dlq: Vec<(StreamId, DeadReason)>,
    now: u64,
    counter: u64,
}

/// What both sides answered, reduced to comparable data.
#[derive(Debug, PartialEq)]
enum Out {
    Err,
    Nil,
    Count(u64),
    Id(StreamId),
    Entries(Vec<(StreamId, Option<Vec<u8>>)>),
}

fn reduce(r: Result<Reply>) -> Out {
    match r {
        Err(e) => {
            assert!(!e.is_fatal(), "fatal error: {e}");
            Out::Err
        }
        Ok(Reply::Ok) => Out::Nil,
        Ok(Reply::Nil) => Out::Nil,
        Ok(Reply::Count(n)) => Out::Count(n),
        Ok(Reply::Appended { id, .. }) => Out::Id(id),
        Ok(Reply::GroupRead(mut e)) if e.len() == 1 => Out::Entries(
            e.remove(0)
                .into_iter()
                .map(|(id, r)| (id, r.map(|r| r.fields[0].1.clone())))
                .collect(),
        ),
        Ok(Reply::Entries(e)) => Out::Entries(
            e.into_iter()
                .map(|(id, r)| (id, r.map(|r| r.fields[0].1.clone())))
                .collect(),
        ),
        Ok(other) => panic!("unexpected reply {other:?}"),
    }
}

impl Model {
    fn pick_id(&self, s: usize, pick: usize) -> StreamId {
        // Half the picks hit an existing entry, the others a pending or a missing ID.
        let st = self.streams.get(&s);
        let mut known: Vec<StreamId> = st
            .map(|st| st.entries.keys().copied().collect())
            .unwrap_or_default();
        if let Some(st) = st {
            for g in st.groups.values() {
                known.extend(g.pel.keys().copied());
            }
        }
        known.sort();
        known.dedup();
        known.get(pick).copied().unwrap_or(StreamId::new(7, 7))
    }

    /// Mostly an ID pending in the group; sometimes any other ID.
    fn pick_for_group(&self, s: usize, g: usize, pick: usize) -> StreamId {
        let pending: Vec<StreamId> = self
            .streams
            .get(&s)
            .and_then(|st| st.groups.get(&g))
            .map(|g| g.pel.keys().copied().collect())
            .unwrap_or_default();
        if !pending.is_empty() && pick < 6 {
            pending[pick % pending.len()]
        } else {
            self.pick_id(s, pick)
        }
    }

    fn apply(&mut self, op: &MOp) -> Out {
        let now = self.now;
        match *op {
            MOp::Append { s, lane, explicit } => {
                let last = self.streams.get(&s).map_or(StreamId::MIN, |st| st.last_id);
                let id = match explicit {
                    None => {
                        if now > last.ms {
                            StreamId::new(now, 0)
                        } else {
                            last.next().unwrap()
                        }
                    }
                    Some((ms, seq)) => {
                        let id = StreamId::new(ms, seq);
                        if id.is_zero() || id <= last {
                            return Out::Err;
                        }
                        id
                    }
                };
                self.counter += 1;
                let v = format!("v{}", self.counter).into_bytes();
                let st = self.streams.entry(s).or_default();
                st.entries.insert(id, (v, Lane::ALL[lane]));
                st.last_id = id;
                Out::Id(id)
            }
            MOp::Delete { s, pick } => {
                let id = self.pick_id(s, pick);
                let Some(st) = self.streams.get_mut(&s) else {
                    return Out::Count(0);
                };
                Out::Count(st.entries.remove(&id).is_some() as u64)
            }
            MOp::Trim { s, maxlen } => {
                let Some(st) = self.streams.get_mut(&s) else {
                    return Out::Count(0);
                };
                let mut n = 0;
                while st.entries.len() as u64 > maxlen {
                    st.entries.pop_first();
                    n += 1;
                }
                Out::Count(n)
            }
            MOp::CreateGroup { s, g, at_end } => {
                let st = self.streams.entry(s).or_default();
                if st.groups.contains_key(&g) {
                    return Out::Err;
                }
                let start = if at_end { st.last_id } else { StreamId::MIN };
                st.groups.insert(
                    g,
                    MGroup {
                        cursor: [start; 5],
                        ..MGroup::default()
                    },
                );
                Out::Nil
            }
            MOp::Read { s, g, c, count } => self.read(s, g, c, count),
            MOp::History { s, g, c } => {
                let Some(st) = self.streams.get_mut(&s) else {
                    return Out::Err;
                };
                let Some(grp) = st.groups.get_mut(&g) else {
                    return Out::Err;
                };
                let mut out = Vec::new();
                for (id, p) in grp.pel.iter_mut() {
                    if p.consumer != c {
                        continue;
                    }
                    match st.entries.get(id) {
                        Some((v, _)) => {
                            p.deliveries += 1;
                            p.delivered = now;
                            p.state = MState::Delivered;
                            out.push((*id, Some(v.clone())));
                        }
                        None => out.push((*id, None)),
                    }
                }
                Out::Entries(out)
            }
            MOp::Ack { s, g, pick } => {
                let id = self.pick_for_group(s, g, pick);
                let Some(grp) = self
                    .streams
                    .get_mut(&s)
                    .and_then(|st| st.groups.get_mut(&g))
                else {
                    return Out::Count(0);
                };
                Out::Count(grp.pel.remove(&id).is_some() as u64)
            }
            MOp::Nack { s, g, pick } => {
                let id = self.pick_for_group(s, g, pick);
                let Some(st) = self.streams.get_mut(&s) else {
                    return Out::Err;
                };
                let Some(grp) = st.groups.get_mut(&g) else {
                    return Out::Err;
                };
                if g == 0 {
                    return Out::Err; // plain group: no policy
                }
                let Some(p) = grp.pel.get_mut(&id) else {
                    return Out::Count(0);
                };
                p.failures += 1;
                if p.failures >= MAX_ATTEMPTS {
                    grp.pel.remove(&id);
                    if st.entries.contains_key(&id) {
                        self.dlq.push((id, DeadReason::MaxAttempts));
                    }
                } else {
                    p.state = MState::Wait(now + BACKOFF_MS);
                }
                Out::Count(1)
            }
            MOp::Claim {
                s,
                g,
                c,
                pick,
                min_idle,
            } => {
                let id = self.pick_for_group(s, g, pick);
                let Some(st) = self.streams.get_mut(&s) else {
                    return Out::Err;
                };
                let Some(grp) = st.groups.get_mut(&g) else {
                    return Out::Err;
                };
                let Some((v, _)) = st.entries.get(&id) else {
                    grp.pel.remove(&id);
                    return Out::Entries(vec![]);
                };
                let Some(p) = grp.pel.get_mut(&id) else {
                    return Out::Entries(vec![]);
                };
                if min_idle > 0 && now.saturating_sub(p.delivered) < min_idle {
                    return Out::Entries(vec![]);
                }
                p.consumer = c;
                p.delivered = now;
                p.deliveries += 1;
                p.state = MState::Delivered;
                Out::Entries(vec![(id, Some(v.clone()))])
            }
            MOp::Advance { ms } => {
                self.now += ms;
                Out::Nil
            }
            MOp::Tick => {
                self.make_due_ready();
                Out::Count(0)
            }
            MOp::Reopen => Out::Nil,
        }
    }

    fn make_due_ready(&mut self) {
        let now = self.now;
        for st in self.streams.values_mut() {
            if let Some(g) = st.groups.get_mut(&1) {
                for p in g.pel.values_mut() {
                    if matches!(p.state, MState::Wait(t) if t <= now) {
                        p.state = MState::Ready;
                    }
                }
            }
        }
    }

    fn read(&mut self, s: usize, g: usize, c: usize, count: usize) -> Out {
        let now = self.now;
        if g == 1
            && self
                .streams
                .get(&s)
                .is_some_and(|st| st.groups.contains_key(&g))
        {
            self.make_due_ready();
        }
        let Some(st) = self.streams.get_mut(&s) else {
            return Out::Err;
        };
        let Some(grp) = st.groups.get_mut(&g) else {
            return Out::Err;
        };
        let mut out = Vec::new();
        // Due retries first.
        let ready: Vec<StreamId> = grp
            .pel
            .iter()
            .filter(|(_, p)| p.state == MState::Ready)
            .map(|(id, _)| *id)
            .take(count)
            .collect();
        for id in ready {
            match st.entries.get(&id) {
                None => {
                    grp.pel.remove(&id);
                }
                Some((v, _)) => {
                    let p = grp.pel.get_mut(&id).unwrap();
                    p.consumer = c;
                    p.deliveries += 1;
                    p.delivered = now;
                    p.state = MState::Delivered;
                    out.push((id, Some(v.clone())));
                }
            }
        }
        // New entries by lane, with the starvation guard.
        while out.len() < count {
            let heads: Vec<Option<StreamId>> = Lane::ALL
                .iter()
                .map(|&l| {
                    st.entries
                        .iter()
                        .find(|(id, (_, lane))| *lane == l && **id > grp.cursor[l.index()])
                        .map(|(id, _)| *id)
                })
                .collect();
            let Some(top) = heads.iter().position(Option::is_some) else {
                break;
            };
            let lower = (top + 1..5)
                .filter_map(|i| heads[i].map(|id| (id, i)))
                .min()
                .map(|x| x.1);
            let pick = match lower {
                Some(l) if grp.streak >= GUARD => {
                    grp.streak = 0;
                    l
                }
                Some(_) => {
                    grp.streak += 1;
                    top
                }
                None => {
                    grp.streak = 0;
                    top
                }
            };
            let id = heads[pick].unwrap();
            grp.cursor[pick] = id;
            let v = st.entries[&id].0.clone();
            grp.pel.insert(
                id,
                MPel {
                    consumer: c,
                    delivered: now,
                    deliveries: 1,
                    failures: 0,
                    state: MState::Delivered,
                },
            );
            out.push((id, Some(v)));
        }
        Out::Entries(out)
    }

    fn to_op(&self, op: &MOp) -> Option<Vec<Op>> {
        let key = |s: usize| StreamKey::new(0, STREAMS[s].as_bytes().to_vec());
        let group = |g: usize| GROUPS[g].as_bytes().to_vec();
        let consumer = |c: usize| CONSUMERS[c].as_bytes().to_vec();
        Some(match *op {
            MOp::Append { s, lane, explicit } => vec![Op::Append {
                stream: key(s),
                id: explicit.map_or(IdSpec::Auto, |(ms, seq)| {
                    IdSpec::Explicit(StreamId::new(ms, seq))
                }),
                fields: vec![(b"f".to_vec(), format!("v{}", self.counter + 1).into_bytes())],
                meta: Meta {
                    lane: Lane::ALL[lane],
                    ..Meta::default()
                },
                idempotency_key: None,
                no_mkstream: false,
                trim: None,
            }],
            MOp::Delete { s, pick } => vec![Op::Delete {
                stream: key(s),
                ids: vec![self.pick_id(s, pick)],
            }],
            MOp::Trim { s, maxlen } => vec![Op::Trim {
                stream: key(s),
                trim: Trim::new(TrimStrategy::MaxLen(maxlen), false, None),
            }],
            MOp::CreateGroup { s, g, at_end } => {
                let mut v = vec![Op::CreateGroup {
                    stream: key(s),
                    group: group(g),
                    start: if at_end {
                        GroupStart::Last
                    } else {
                        GroupStart::Id(StreamId::MIN)
                    },
                    mkstream: true,
                    entries_read: None,
                    policy: None,
                }];
                let exists = self
                    .streams
                    .get(&s)
                    .is_some_and(|st| st.groups.contains_key(&g));
                if g == 1 && !exists {
                    v.push(Op::SetPolicy {
                        stream: key(s),
                        group: group(g),
                        policy: Some(DeliveryPolicy {
                            ack_wait_ms: None,
                            max_attempts: MAX_ATTEMPTS,
                            backoff_ms: vec![BACKOFF_MS],
                            ..DeliveryPolicy::default()
                        }),
                    });
                }
                v
            }
            MOp::Read { s, g, c, count } => vec![Op::ReadGroup {
                streams: vec![(key(s), ReadFrom::New)],
                group: group(g),
                consumer: consumer(c),
                count: Some(count),
                noack: false,
                retry: false,
            }],
            MOp::History { s, g, c } => vec![Op::ReadGroup {
                streams: vec![(key(s), ReadFrom::History(StreamId::MIN))],
                group: group(g),
                consumer: consumer(c),
                count: None,
                noack: false,
                retry: false,
            }],
            MOp::Ack { s, g, pick } => vec![Op::Ack {
                stream: key(s),
                group: group(g),
                ids: vec![self.pick_for_group(s, g, pick)],
            }],
            MOp::Nack { s, g, pick } => vec![Op::Nack {
                stream: key(s),
                group: group(g),
                ids: vec![self.pick_for_group(s, g, pick)],
                error: Some(b"e".to_vec()),
                reject: false,
            }],
            MOp::Claim {
                s,
                g,
                c,
                pick,
                min_idle,
            } => vec![Op::Claim {
                stream: key(s),
                group: group(g),
                consumer: consumer(c),
                min_idle_ms: min_idle,
                ids: vec![self.pick_for_group(s, g, pick)],
                delivery_time_ms: None,
                retry_count: None,
                force: false,
                justid: false,
                last_id: None,
            }],
            MOp::Tick => vec![Op::Tick],
            MOp::Advance { .. } | MOp::Reopen => return None,
        })
    }
}

fn config(pending_index_bytes: u64) -> StoreConfig {
    StoreConfig {
        durability: Durability::Buffered,
        starvation_guard: GUARD,
        pending_index_bytes,
        ..StoreConfig::default()
    }
}

fn check_state(store: &Store, model: &Model) {
    for (i, name) in STREAMS.iter().enumerate() {
        let key = StreamKey::new(0, name.as_bytes().to_vec());
        let m = model.streams.get(&i);
        assert_eq!(store.exists(&key), m.is_some(), "{name} exists");
        let Some(m) = m else { continue };
        let got: Vec<StreamId> = store
            .range(&key, Unbounded, Unbounded, None, false)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        let want: Vec<StreamId> = m.entries.keys().copied().collect();
        assert_eq!(got, want, "{name} entries");
        assert_eq!(store.len(&key), want.len() as u64);
        assert_eq!(store.last_id(&key), Some(m.last_id));
        let info = store.stream_info(&key).unwrap().unwrap();
        let mut lanes = [0u64; 5];
        for (_, l) in m.entries.values() {
            lanes[l.index()] += 1;
        }
        assert_eq!(info.lane_len, lanes, "{name} lanes");
        for (gi, g) in &m.groups {
            let gname = GROUPS[*gi].as_bytes();
            let sum = store.pending_summary(&key, gname).unwrap();
            assert_eq!(
                sum.count,
                g.pel.len() as u64,
                "{name}/{} pending",
                GROUPS[*gi]
            );
            let mut per: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
            for p in g.pel.values() {
                *per.entry(CONSUMERS[p.consumer].as_bytes().to_vec())
                    .or_default() += 1;
            }
            assert_eq!(sum.consumers, per.into_iter().collect::<Vec<_>>());
            let q = PendingQuery {
                start: StreamId::MIN,
                end: StreamId::MAX,
                count: 1000,
                consumer: None,
                min_idle_ms: None,
            };
            let detail = store.pending_range(&key, gname, &q, model.now).unwrap();
            let got: Vec<_> = detail
                .iter()
                .map(|p| (p.id, p.deliveries, p.failures, p.idle_ms))
                .collect();
            let want: Vec<_> = g
                .pel
                .iter()
                .map(|(id, p)| (*id, p.deliveries, p.failures, model.now - p.delivered))
                .collect();
            assert_eq!(got, want, "{name}/{} pending detail", GROUPS[*gi]);
            // Each consumer's own list, whole and its first entry.
            for (ci, cname) in CONSUMERS.iter().enumerate() {
                let want: Vec<StreamId> = g
                    .pel
                    .iter()
                    .filter(|(_, p)| p.consumer == ci)
                    .map(|(id, _)| *id)
                    .collect();
                for count in [1000, 1] {
                    let q = PendingQuery {
                        count,
                        consumer: Some(cname.as_bytes().to_vec()),
                        ..q.clone()
                    };
                    let got: Vec<StreamId> = store
                        .pending_range(&key, gname, &q, model.now)
                        .unwrap()
                        .iter()
                        .map(|p| p.id)
                        .collect();
                    let want = &want[..want.len().min(count)];
                    assert_eq!(got, want, "{name}/{}/{cname} pending", GROUPS[*gi]);
                }
            }
        }
        assert_eq!(store.groups_info(&key).unwrap().len(), m.groups.len());
    }
    // The pending lists in memory agree with the stored ones.
    let damage = store.scrub().unwrap().damage;
    assert!(damage.is_empty(), "scrub: {damage:?}");
    let dl = store
        .dlq_list(
            &StreamKey::new(0, b"cortex:dlq".to_vec()),
            &DlqFilter::default(),
            10_000,
        )
        .unwrap();
    let got: Vec<_> = dl.iter().map(|(_, d)| (d.origin_id, d.reason)).collect();
    assert_eq!(got, model.dlq);
}

/// Runs `generated` (after creating both kinds of group on stream 0) against a fresh store
/// and the model; panics at the first difference. `pending_index_bytes` bounds the pending
/// lists in memory (a small bound sends the larger groups to disk and back).
pub fn run(generated: &[MOp], pending_index_bytes: u64) {
    // Every case starts with both kinds of group on one stream; the other stream gets
    // its groups (or not) from the generated ops.
    let mut ops = vec![
        MOp::CreateGroup {
            s: 0,
            g: 0,
            at_end: false,
        },
        MOp::CreateGroup {
            s: 0,
            g: 1,
            at_end: false,
        },
    ];
    ops.extend(generated.iter().cloned());
    let dir = tempfile::tempdir().unwrap();
    let mut store = Some(Store::open(dir.path(), config(pending_index_bytes)).unwrap());
    let mut model = Model {
        now: 1000,
        ..Model::default()
    };
    for op in &ops {
        let batch = model.to_op(op);
        let want = model.apply(op);
        match (batch, op) {
            (_, MOp::Reopen) => {
                drop(store.take());
                store = Some(Store::open(dir.path(), config(pending_index_bytes)).unwrap());
            }
            (Some(batch), _) => {
                let out = store.as_ref().unwrap().apply(batch, model.now).unwrap();
                let first = out.replies.into_iter().next().unwrap();
                let got = match op {
                    MOp::Tick => Out::Count(0),
                    _ => reduce(first),
                };
                assert_eq!(got, want, "op {:?}", op);
            }
            (None, _) => {}
        }
        check_state(store.as_ref().unwrap(), &model);
    }
}
