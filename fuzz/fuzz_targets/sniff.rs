#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = lake::sniff::sniff(data);
});
