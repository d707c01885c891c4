/// Lake keys are read back from listings (anything a bucket holds).
pub fn run(data: &[u8]) {
    if let Ok(key) = std::str::from_utf8(data)
        && let Ok(parsed) = lake::layout::parse_key(key)
    {
        // Whatever parses names a real image id, in its own partition.
        assert!(key.contains(&parsed.id.to_string()));
    }
}
