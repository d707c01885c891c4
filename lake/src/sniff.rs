//! Image type from magic bytes. The client's Content-Type is never trusted.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
    Tiff,
    Bmp,
}

impl ImageFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Gif => "gif",
            Self::Tiff => "tiff",
            Self::Bmp => "bmp",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
            Self::Tiff => "image/tiff",
            Self::Bmp => "image/bmp",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Supported(ImageFormat),
    /// An image format we recognise but do not process (yet).
    Unsupported(&'static str),
    Unknown,
}

/// Bytes needed to tell every format apart.
pub const SNIFF_LEN: usize = 32;

pub fn sniff(bytes: &[u8]) -> Sniffed {
    use ImageFormat::*;
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Sniffed::Supported(Jpeg);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Sniffed::Supported(Png);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Sniffed::Supported(Gif);
    }
    if starts(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        return Sniffed::Supported(Webp);
    }
    if starts(b"II*\0") || starts(b"MM\0*") {
        return Sniffed::Supported(Tiff);
    }
    // "BM" plus a plausible DIB header size, so text starting "BM" is not a bitmap.
    if starts(b"BM") && bytes.len() >= 18 {
        let dib = u32::from_le_bytes([bytes[14], bytes[15], bytes[16], bytes[17]]);
        if matches!(dib, 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124) {
            return Sniffed::Supported(Bmp);
        }
    }
    if let Some(name) = iso_bmff_image(bytes) {
        return Sniffed::Unsupported(name);
    }
    if starts(&[0xFF, 0x0A]) || starts(b"\0\0\0\x0CJXL \r\n\x87\n") {
        return Sniffed::Unsupported("JPEG XL");
    }
    if starts(b"8BPS") {
        return Sniffed::Unsupported("Photoshop PSD");
    }
    Sniffed::Unknown
}

/// AVIF / HEIC: an ISO-BMFF `ftyp` box whose brands say which.
fn iso_bmff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.get(4..8) != Some(b"ftyp") {
        return None;
    }
    let size = usize::try_from(u32::from_be_bytes(bytes.get(0..4)?.try_into().ok()?)).ok()?;
    let end = size.clamp(16, bytes.len().max(16)).min(bytes.len());
    let major = bytes.get(8..12)?;
    // Major brand, then compatible brands (skipping the minor version).
    let brands =
        std::iter::once(major).chain(bytes.get(16..end).unwrap_or_default().chunks_exact(4));
    let mut heif = false;
    for brand in brands {
        match brand {
            b"avif" | b"avis" => return Some("AVIF"),
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"heim" | b"heis" | b"hevm" | b"hevs" => {
                return Some("HEIC");
            }
            b"mif1" | b"msf1" => heif = true,
            _ => {}
        }
    }
    heif.then_some("HEIF")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn recognises_supported_magic() {
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Sniffed::Supported(ImageFormat::Jpeg)
        );
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n...."),
            Sniffed::Supported(ImageFormat::Png)
        );
        assert_eq!(
            sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Sniffed::Supported(ImageFormat::Webp)
        );
        assert_eq!(sniff(b"GIF89a"), Sniffed::Supported(ImageFormat::Gif));
        assert_eq!(
            sniff(b"MM\0*\0\0\0\x08"),
            Sniffed::Supported(ImageFormat::Tiff)
        );
    }

    #[test]
    fn names_avif_and_heic() {
        assert_eq!(
            sniff(b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf"),
            Sniffed::Unsupported("AVIF")
        );
        assert_eq!(
            sniff(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic"),
            Sniffed::Unsupported("HEIC")
        );
        assert_eq!(
            sniff(b"\0\0\0\x18ftypmif1\0\0\0\0mif1avif"),
            Sniffed::Unsupported("AVIF")
        );
    }

    #[test]
    fn text_is_not_an_image() {
        assert_eq!(sniff(b"BMW is a car brand, not a bitmap"), Sniffed::Unknown);
        assert_eq!(sniff(b"hello"), Sniffed::Unknown);
        assert_eq!(sniff(b""), Sniffed::Unknown);
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = sniff(&bytes);
        }
    }
}
