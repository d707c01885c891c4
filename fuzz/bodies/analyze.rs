/// Structure checks, header-first bounds, decode, EXIF, thumbnail: never a
/// panic, and within the limits whatever the header claims. The same
/// limits as production's defaults scaled down, so a bomb shows as an RSS
/// over the run's `-rss_limit_mb`.
pub fn run(data: &[u8]) {
    let limits = processor::analyze::AnalyzeLimits {
        max_pixels: 4_000_000,
        max_decode_bytes: 64 * 1024 * 1024,
        thumbnail_px: 64,
    };
    let _ = processor::analyze::analyze(data, &limits);
}
