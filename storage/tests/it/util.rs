use cortex_storage::*;

pub fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, StoreConfig::default()).expect("open store")
}

pub fn key(name: &str) -> StreamKey {
    StreamKey::new(0, name.as_bytes().to_vec())
}

pub fn fields(v: &str) -> Fields {
    vec![(b"f".to_vec(), v.as_bytes().to_vec())]
}

pub fn add(s: &Store, stream: &str, v: &str, now: u64) -> StreamId {
    add_lane(s, stream, v, Lane::Normal, now)
}

pub fn add_lane(s: &Store, stream: &str, v: &str, lane: Lane, now: u64) -> StreamId {
    let meta = Meta {
        lane,
        ..Meta::default()
    };
    match s.apply_one(append(stream, IdSpec::Auto, fields(v), meta), now) {
        Ok(Reply::Appended { id, .. }) => id,
        other => panic!("append: {other:?}"),
    }
}

pub fn append(stream: &str, id: IdSpec, fields: Fields, meta: Meta) -> Op {
    Op::Append {
        stream: key(stream),
        id,
        fields,
        meta,
        idempotency_key: None,
        no_mkstream: false,
        trim: None,
    }
}

pub fn create_group(s: &Store, stream: &str, group: &str, start: GroupStart, now: u64) {
    let r = s.apply_one(
        Op::CreateGroup {
            stream: key(stream),
            group: group.into(),
            start,
            mkstream: true,
            entries_read: None,
            policy: None,
        },
        now,
    );
    assert_eq!(r.expect("create group"), Reply::Ok);
}

pub fn read(
    s: &Store,
    stream: &str,
    group: &str,
    consumer: &str,
    count: usize,
    now: u64,
) -> Vec<(StreamId, Option<Record>)> {
    match s.apply_one(
        Op::ReadGroup {
            streams: vec![(key(stream), ReadFrom::New)],
            group: group.into(),
            consumer: consumer.into(),
            count: Some(count),
            noack: false,
            retry: false,
        },
        now,
    ) {
        Ok(Reply::GroupRead(mut e)) => e.remove(0),
        other => panic!("read group: {other:?}"),
    }
}

pub fn ids(entries: &[(StreamId, Option<Record>)]) -> Vec<StreamId> {
    entries.iter().map(|e| e.0).collect()
}

pub fn values(entries: &[(StreamId, Option<Record>)]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            e.1.as_ref()
                .map(|r| String::from_utf8_lossy(&r.fields[0].1).into_owned())
                .unwrap_or_default()
        })
        .collect()
}

pub fn count(r: Result<Reply>) -> u64 {
    match r {
        Ok(Reply::Count(n)) => n,
        other => panic!("expected a count: {other:?}"),
    }
}

pub fn all(s: &Store, stream: &str) -> Vec<Entry> {
    use std::ops::Bound::Unbounded;
    s.range(&key(stream), Unbounded, Unbounded, None, false)
        .expect("range")
}
