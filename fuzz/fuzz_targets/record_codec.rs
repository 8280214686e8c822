//! Any bytes into every stored-record decoder (entries, group, consumer and pending metadata,
//! idempotency and system records, the stream metadata of both layouts): no panic; what
//! decodes re-encodes and decodes to the same value.
#![no_main]

use cortex_storage::codec::{decode, encode, Kind};
use cortex_storage::{
    ConsumerMeta, GroupMeta, IdempotencyRecord, PendingEntry, Record, StreamMeta, SystemMeta,
};
use libfuzzer_sys::fuzz_target;

fn roundtrip<T>(kind: Kind, data: &[u8])
where
    T: bincode::Encode + bincode::Decode<()> + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = decode::<T>(kind, data) {
        let bytes = encode(kind, &v);
        assert_eq!(decode::<T>(kind, &bytes).as_ref(), Ok(&v));
    }
}

fuzz_target!(|data: &[u8]| {
    roundtrip::<Record>(Kind::Entry, data);
    roundtrip::<GroupMeta>(Kind::GroupMeta, data);
    roundtrip::<ConsumerMeta>(Kind::ConsumerMeta, data);
    roundtrip::<PendingEntry>(Kind::Pending, data);
    roundtrip::<IdempotencyRecord>(Kind::Idempotency, data);
    roundtrip::<SystemMeta>(Kind::System, data);
    roundtrip::<StreamMeta>(Kind::StreamMetaNodes, data);
});
