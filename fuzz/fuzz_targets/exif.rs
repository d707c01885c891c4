#![no_main]
// The body is shared with the regression test that replays fuzz/corpus/exif.
mod body {
    include!("../bodies/exif.rs");
}
libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
