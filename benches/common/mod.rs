//! What every benchmark shares.

use std::path::PathBuf;

/// The corpus photos (`../shared/corpus`), in name order.
pub fn corpus() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x != "csv" && x != "md"))
        .collect();
    files.sort();
    files
}
