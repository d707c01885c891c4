#![no_main]
// The body is shared with the regression test that replays fuzz/corpus/sniff.
mod body {
    include!("../bodies/sniff.rs");
}
libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
