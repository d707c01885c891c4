//! The fuzz targets' seed corpora and kept crashes, replayed by `cargo
//! test`: each file in `fuzz/corpus/<target>/` goes through the very body
//! the fuzzer runs (`fuzz/bodies/<target>.rs`), so a crash once found and
//! copied there stays fixed. `scripts/fuzz.sh` runs the fuzzers themselves.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

macro_rules! replays {
    ($target:ident) => {
        mod $target {
            include!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fuzz/bodies/",
                stringify!($target),
                ".rs"
            ));
        }
        #[test]
        fn $target() {
            replay(stringify!($target), $target::run);
        }
    };
}

fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("fuzz target {target} fails on {}", file.display());
        }
    }
}

replays!(sniff);
replays!(parse_key);
replays!(analyze);
replays!(exif);
replays!(policy);
replays!(kafka_message);
replays!(multipart);
