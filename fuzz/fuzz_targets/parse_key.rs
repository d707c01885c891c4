#![no_main]
// The body is shared with the regression test that replays fuzz/corpus/parse_key.
mod body {
    include!("../bodies/parse_key.rs");
}
libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
