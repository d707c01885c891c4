/// The policy file: an operator's TOML, but parsed into grants, so a
/// mistake must be an error naming the line, never a panic.
pub fn run(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = policies::Policy::parse("fuzz.toml", text);
    }
}
