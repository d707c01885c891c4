#![no_main]
// Structure checks, header-first bounds, decode, EXIF: must never panic,
// and must stay within the limits whatever the header claims.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let limits = processor::analyze::AnalyzeLimits {
        max_pixels: 4_000_000,
        max_decode_bytes: 64 * 1024 * 1024,
        thumbnail_px: 64,
    };
    let _ = processor::analyze::analyze(data, &limits);
});
