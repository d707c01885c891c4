#![no_main]
// The body is shared with the regression test that replays fuzz/corpus/kafka_message.
mod body {
    include!("../bodies/kafka_message.rs");
}
libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
