#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(key) = std::str::from_utf8(data) {
        if let Ok(parsed) = lake::layout::parse_key(key) {
            // Whatever parses names a real image id.
            let _ = parsed.id.received_at();
        }
    }
});
