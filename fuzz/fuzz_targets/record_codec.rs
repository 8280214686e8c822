//! Any bytes into the record decoder: no panic; what decodes re-encodes to the same bytes.
#![no_main]

use cortex_storage::codec::{decode, encode, Kind};
use cortex_storage::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = decode::<Record>(Kind::Entry, data) {
        let bytes = encode(Kind::Entry, &r);
        assert_eq!(decode::<Record>(Kind::Entry, &bytes).as_ref(), Ok(&r));
    }
});
