//! Any bytes into the storage key parsers (what a damaged disk could hand back): no panic,
//! and a key built from the parsed parts parses back to them.
#![no_main]

use cortex_storage::keys;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((ns, name)) = keys::parse_stream(data) {
        assert_eq!(
            keys::parse_stream(&keys::stream(ns, name)),
            Some((ns, name))
        );
    }
    if let Some(id) = keys::trailing_id(data) {
        let prefix = data
            .get(..8)
            .map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap()));
        assert_eq!(keys::trailing_id(&keys::id_key(prefix, id)), Some(id));
    }
    let _ = keys::due_time(data);
    if let Some((seen, sid, key)) = keys::parse_idempotency_expiry(data) {
        let again = keys::idempotency_expiry(seen, sid, key);
        assert_eq!(
            keys::parse_idempotency_expiry(&again),
            Some((seen, sid, key))
        );
    }
    if let Some((kind, id)) = keys::parse_garbage(data) {
        assert_eq!(
            keys::parse_garbage(&keys::garbage(kind, id)),
            Some((kind, id))
        );
    }
});
