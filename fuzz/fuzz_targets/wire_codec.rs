//! Any bytes into the QUIC wire decoder (length prefix, bincode body, limits): no panic, the
//! reported length within the input, and a decoded frame re-encoded decodes to itself.
#![no_main]

use cortex::wire::{self, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut rest = data;
    while let Ok(Some((frame, used))) = wire::split(rest, &limits) {
        assert!(used > 0 && used <= rest.len());
        let bytes = wire::encode(&frame);
        let (back, n) = wire::split(&bytes, &limits)
            .expect("re-encoded decodes")
            .expect("complete");
        assert_eq!(back, frame);
        assert_eq!(n, bytes.len());
        rest = &rest[used..];
    }
    // The body decoder alone, without the length prefix.
    let _ = wire::decode(data, &limits);
});
