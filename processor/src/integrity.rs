//! Strict structure checks run before decoding. Decoders are forgiving: a
//! truncated JPEG decodes to a grey bottom half. We refuse to process a file
//! as if it were whole, and name what is wrong.

use lake::{records::QuarantineReason, sniff::ImageFormat};

use crate::ProcessError;

pub fn check(format: ImageFormat, bytes: &[u8]) -> Result<(), ProcessError> {
    match format {
        ImageFormat::Jpeg => jpeg(bytes),
        ImageFormat::Png => png(bytes),
        ImageFormat::Gif => gif(bytes),
        ImageFormat::Webp => riff(bytes),
        ImageFormat::Bmp => bmp(bytes),
        // TIFF is a directory of offsets; its decoder checks every one.
        ImageFormat::Tiff => Ok(()),
    }
}

fn truncated(detail: impl Into<String>) -> ProcessError {
    ProcessError::new(QuarantineReason::Truncated, detail)
}

fn corrupt(detail: impl Into<String>) -> ProcessError {
    ProcessError::new(QuarantineReason::Corrupt, detail)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// The last scan (SOS, FFDA) must be followed by the end-of-image marker
/// (FFD9). Inside entropy-coded data an FF is always followed by 00 or a
/// restart marker, so neither marker appears by accident; an embedded EXIF
/// thumbnail's markers come before the main image's scan.
fn jpeg(bytes: &[u8]) -> Result<(), ProcessError> {
    let Some(sos) = rfind(bytes, &[0xFF, 0xDA]) else {
        return Err(truncated(
            "JPEG has no image data (no start-of-scan marker)",
        ));
    };
    if rfind(&bytes[sos..], &[0xFF, 0xD9]).is_none() {
        return Err(truncated(format!(
            "JPEG ends without its end-of-image marker (FFD9): truncated at {} bytes",
            bytes.len()
        )));
    }
    Ok(())
}

/// Walk every chunk: each must fit in the file and match its CRC, and the
/// last must be IEND.
fn png(bytes: &[u8]) -> Result<(), ProcessError> {
    let mut at = 8; // signature
    loop {
        let Some(header) = bytes.get(at..at + 8) else {
            return Err(truncated(format!(
                "PNG ends at {} bytes without an IEND chunk",
                bytes.len()
            )));
        };
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = &header[4..8];
        let name = String::from_utf8_lossy(kind).into_owned();
        let end = at + 8 + len + 4;
        let Some(chunk) = bytes.get(at + 4..end) else {
            return Err(truncated(format!(
                "PNG chunk {name} at offset {at} needs {} bytes, the file ends at {}",
                end - at,
                bytes.len()
            )));
        };
        let (typed_data, crc) = chunk.split_at(chunk.len() - 4);
        let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(typed_data) != stored {
            return Err(corrupt(format!(
                "PNG chunk {name} at offset {at} has a bad CRC"
            )));
        }
        if kind == b"IEND" {
            return Ok(());
        }
        at = end;
    }
}

fn gif(bytes: &[u8]) -> Result<(), ProcessError> {
    if bytes.last() != Some(&0x3B) {
        return Err(truncated("GIF ends without its trailer byte (3B)"));
    }
    Ok(())
}

fn riff(bytes: &[u8]) -> Result<(), ProcessError> {
    let size = bytes
        .get(4..8)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
        .unwrap_or(usize::MAX);
    if bytes.len() < size.saturating_add(8) {
        return Err(truncated(format!(
            "WebP declares {} bytes, the file has {}",
            size.saturating_add(8),
            bytes.len()
        )));
    }
    Ok(())
}

fn bmp(bytes: &[u8]) -> Result<(), ProcessError> {
    let size = bytes
        .get(2..6)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
        .unwrap_or(usize::MAX);
    if size != 0 && bytes.len() < size {
        return Err(truncated(format!(
            "BMP declares {size} bytes, the file has {}",
            bytes.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes() -> Vec<u8> {
        let img = image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn jpeg_bytes() -> Vec<u8> {
        let img = image::RgbImage::from_pixel(16, 16, image::Rgb([200, 20, 30]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn whole_files_pass() {
        check(ImageFormat::Png, &png_bytes()).unwrap();
        check(ImageFormat::Jpeg, &jpeg_bytes()).unwrap();
    }

    #[test]
    fn truncated_jpeg_is_named() {
        let j = jpeg_bytes();
        let e = check(ImageFormat::Jpeg, &j[..j.len() - 10]).unwrap_err();
        assert_eq!(e.reason, QuarantineReason::Truncated);
        assert!(e.detail.contains("FFD9"), "{}", e.detail);
    }

    #[test]
    fn png_without_iend_or_with_bad_crc() {
        let p = png_bytes();
        let e = check(ImageFormat::Png, &p[..p.len() - 12]).unwrap_err();
        assert_eq!(e.reason, QuarantineReason::Truncated);
        assert!(e.detail.contains("IEND"), "{}", e.detail);

        let mut bad = p.clone();
        let idat = bad.windows(4).position(|w| w == b"IDAT").unwrap();
        bad[idat + 5] ^= 0xFF;
        let e = check(ImageFormat::Png, &bad).unwrap_err();
        assert_eq!(e.reason, QuarantineReason::Corrupt);
        assert!(
            e.detail.contains("IDAT") && e.detail.contains("CRC"),
            "{}",
            e.detail
        );
    }

    #[test]
    fn never_panics_on_prefixes() {
        for f in [png_bytes(), jpeg_bytes()] {
            for n in 0..f.len() {
                for fmt in [
                    ImageFormat::Png,
                    ImageFormat::Jpeg,
                    ImageFormat::Gif,
                    ImageFormat::Webp,
                    ImageFormat::Bmp,
                ] {
                    let _ = check(fmt, &f[..n]);
                }
            }
        }
    }
}
