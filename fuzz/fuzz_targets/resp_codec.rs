//! Any bytes into the RESP request parser: no panic, every reported length consumed within
//! the input, and a parsed command re-encoded as a multibulk parses back to itself.
#![no_main]

use cortex::resp::codec::{parse_command, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        bulk_bytes_max: 1 << 16,
        args_max: 1 << 10,
        inline_bytes_max: 1 << 12,
        buffer_bytes_max: 1 << 20,
    };
    let mut rest = data;
    while let Ok(Some((args, used))) = parse_command(rest, &limits) {
        assert!(used > 0 && used <= rest.len());
        let mut again = format!("*{}\r\n", args.len()).into_bytes();
        for a in &args {
            again.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            again.extend_from_slice(a);
            again.extend_from_slice(b"\r\n");
        }
        if !args.is_empty() {
            let (back, n) = parse_command(&again, &limits)
                .expect("re-encoded parses")
                .expect("complete");
            assert_eq!(back, args);
            assert_eq!(n, again.len());
        }
        rest = &rest[used..];
    }
});
