/// EXIF from any bytes (JPEG APP1, PNG eXIf, TIFF, WebP): never a panic.
pub fn run(data: &[u8]) {
    let _ = processor::exif::read(data);
}
