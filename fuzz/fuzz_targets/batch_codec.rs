//! Any bytes into the writer-batch decoder (what a replicated log will feed it): no panic;
//! what decodes re-encodes and decodes to the same batch.
#![no_main]

use cortex_storage::{decode_batch, encode_batch};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((now, ops)) = decode_batch(data) {
        let bytes = encode_batch(&ops, now);
        assert_eq!(decode_batch(&bytes), Ok((now, ops)));
    }
});
