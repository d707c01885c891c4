//! JPEG shrink-on-load: when the thumbnail is at most half the image's
//! longest side, libjpeg-turbo decodes straight at 1/2, 1/4 or 1/8 scale in
//! the DCT domain (as libvips does), so the full-size pixels are never made
//! and the resize starts from a small image.
//!
//! Only a fast path: where it declines — CMYK, lossless or 12-bit JPEGs, a
//! decoder warning (corrupt data), anything unusual — the general decoder
//! decodes the whole image and decides, exactly as without this path.

use image::RgbImage;
use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat, ScalingFactor};

/// Progressive scans allowed: real files have about ten; thousands are a
/// known way to make a small file cost minutes of CPU.
const MAX_SCANS: u32 = 100;

/// The largest DCT scale whose result keeps the longest side at least
/// `target` pixels; `None` when no shrink applies.
pub fn scale_for(longest: u32, target: u32) -> Option<usize> {
    [8usize, 4, 2]
        .into_iter()
        .find(|&denom| (longest as usize).div_ceil(denom) >= target as usize)
}

/// `bytes` (a JPEG whose header said `width`×`height`) decoded at the
/// smallest scale that keeps its longest side at least `target`, as RGB.
pub fn jpeg(bytes: &[u8], width: u32, height: u32, target: u32) -> Option<RgbImage> {
    let denom = scale_for(width.max(height), target)?;
    let mut decoder = Decompressor::new().ok()?;
    let header = decoder.read_header(bytes).ok()?;
    // What the general decoder saw, or nothing: the two must agree.
    if (header.width, header.height) != (width as usize, height as usize)
        || header.is_lossless
        || matches!(header.colorspace, Colorspace::CMYK | Colorspace::YCCK)
    {
        return None;
    }
    let scale = ScalingFactor::new(1, denom);
    let scaled = header.scaled(scale);
    decoder.set_scaling_factor(scale).ok()?;
    decoder.set_scan_limit(MAX_SCANS).ok()?;
    let mut out = Image {
        pixels: vec![0u8; 3 * scaled.width * scaled.height],
        width: scaled.width,
        pitch: 3 * scaled.width,
        height: scaled.height,
        format: PixelFormat::RGB,
    };
    // A warning (corrupt data, extraneous bytes) is an error here: the
    // general decoder then judges the file.
    decoder.decompress(bytes, out.as_deref_mut()).ok()?;
    RgbImage::from_raw(
        u32::try_from(scaled.width).ok()?,
        u32::try_from(scaled.height).ok()?,
        out.pixels,
    )
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use image::{DynamicImage, ImageFormat, Rgb};

    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            Rgb([
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                ((x + y) % 256) as u8,
            ])
        })
    }

    fn jpeg_of(img: RgbImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img)
            .write_to(&mut out, ImageFormat::Jpeg)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn the_scale_keeps_the_longest_side_at_least_the_target() {
        assert_eq!(scale_for(4000, 256), Some(8));
        assert_eq!(scale_for(2048, 256), Some(8));
        assert_eq!(scale_for(2041, 256), Some(8));
        assert_eq!(scale_for(2040, 256), Some(4));
        assert_eq!(scale_for(1000, 256), Some(2));
        assert_eq!(scale_for(511, 256), Some(2));
        assert_eq!(scale_for(510, 256), None);
        assert_eq!(scale_for(256, 256), None);
    }

    #[test]
    fn a_large_jpeg_is_decoded_small_and_looks_like_the_full_decode() {
        let img = gradient(2400, 1200);
        let bytes = jpeg_of(img.clone());
        let small = jpeg(&bytes, 2400, 1200, 256).expect("shrunk");
        assert_eq!(small.dimensions(), (300, 150), "1/8 scale");
        // Each pixel of the small image is the mean of an 8×8 block of the
        // original: compare against that, allowing JPEG's own error.
        let mut worst = 0i32;
        for (x, y, p) in small.enumerate_pixels().step_by(97) {
            for c in 0..3 {
                let mut sum = 0u32;
                for dy in 0..8 {
                    for dx in 0..8 {
                        sum += u32::from(img.get_pixel(x * 8 + dx, y * 8 + dy)[c]);
                    }
                }
                let mean = (sum / 64) as i32;
                worst = worst.max((i32::from(p[c]) - mean).abs());
            }
        }
        assert!(
            worst <= 24,
            "a scaled pixel is {worst} off its block's mean"
        );
    }

    #[test]
    fn what_it_cannot_do_is_left_to_the_general_decoder() {
        let bytes = jpeg_of(gradient(600, 400));
        // Too small to shrink for this target.
        assert!(jpeg(&bytes, 600, 400, 400).is_none());
        // Dimensions that disagree with the file's header.
        assert!(jpeg(&bytes, 1200, 800, 256).is_none());
        // Not a JPEG, or a JPEG cut short.
        assert!(jpeg(b"not a jpeg at all", 600, 400, 256).is_none());
        assert!(jpeg(&bytes[..bytes.len() / 2], 600, 400, 256).is_none());
    }
}
