#![no_main]
// The body is shared with the regression test that replays fuzz/corpus/policy.
mod body {
    include!("../bodies/policy.rs");
}
libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
