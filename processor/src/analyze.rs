//! The CPU work for one image, run on the rayon pool: check structure and
//! dimensions before decoding, decode under an allocation cap (a large JPEG
//! straight at a fraction of its size, see `shrink`), thumbnail, orient,
//! hash.

use std::io::Cursor;

use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer, images::Image};
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage, metadata::Orientation};
use lake::{
    records::QuarantineReason,
    sniff::{ImageFormat, Sniffed, sniff},
};
use sha2::{Digest, Sha256};

use crate::{ProcessError, exif, integrity, shrink};

#[derive(Debug, Clone, Copy)]
pub struct AnalyzeLimits {
    pub max_pixels: u64,
    pub max_decode_bytes: u64,
    pub thumbnail_px: u32,
}

impl From<&crate::ProcessorConfig> for AnalyzeLimits {
    fn from(cfg: &crate::ProcessorConfig) -> Self {
        Self {
            max_pixels: cfg.max_pixels,
            max_decode_bytes: cfg.max_decode_bytes,
            thumbnail_px: cfg.thumbnail_px,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Analysis {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub sha256: String,
    pub phash: String,
    pub exif: exif::ExifInfo,
    pub thumbnail_jpeg: Vec<u8>,
    /// The oriented thumbnail as binary PPM (P6), for customer scripts.
    pub preview_ppm: Vec<u8>,
}

/// The bytes the pixels will take once decoded, from the header alone
/// (`None`: not an image we can read a header of; decoding will say why).
pub fn decoded_bytes(bytes: &[u8]) -> Option<u64> {
    let Sniffed::Supported(format) = sniff(bytes) else {
        return None;
    };
    ImageReader::with_format(Cursor::new(bytes), to_image_format(format))
        .into_decoder()
        .ok()
        .map(|d| d.total_bytes())
}

/// [`analyze`], with a panic in a decoder reported as the image's problem
/// rather than unwinding into the caller.
pub fn analyze_contained(bytes: &[u8], limits: &AnalyzeLimits) -> Result<Analysis, ProcessError> {
    std::panic::catch_unwind(|| analyze(bytes, limits)).unwrap_or_else(|_| {
        Err(ProcessError::new(
            QuarantineReason::DecodeFailed,
            "the decoder panicked on this input",
        ))
    })
}

pub fn analyze(bytes: &[u8], limits: &AnalyzeLimits) -> Result<Analysis, ProcessError> {
    let format = match sniff(bytes) {
        Sniffed::Supported(f) => f,
        Sniffed::Unsupported(name) => {
            return Err(ProcessError::new(
                QuarantineReason::UnsupportedFormat,
                format!("{name} images are not supported"),
            ));
        }
        Sniffed::Unknown => {
            return Err(ProcessError::new(
                QuarantineReason::UnsupportedFormat,
                "not an image format imgpipe recognises",
            ));
        }
    };
    integrity::check(format, bytes)?;

    let mut decoder_limits = Limits::default();
    decoder_limits.max_alloc = Some(limits.max_decode_bytes);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), to_image_format(format));
    reader.limits(decoder_limits);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    // The header alone says how big the pixels will be: refuse bombs here.
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if width == 0 || height == 0 {
        return Err(ProcessError::new(
            QuarantineReason::Corrupt,
            "image has zero width or height",
        ));
    }
    if pixels > limits.max_pixels {
        return Err(ProcessError::new(
            QuarantineReason::TooLarge,
            format!(
                "{width}x{height} is {pixels} pixels, over the limit of {}",
                limits.max_pixels
            ),
        ));
    }
    if decoder.total_bytes() > limits.max_decode_bytes {
        return Err(ProcessError::new(
            QuarantineReason::TooLarge,
            format!(
                "decoding {width}x{height} needs {} bytes, over the limit of {}",
                decoder.total_bytes(),
                limits.max_decode_bytes
            ),
        ));
    }
    let exif = exif::read(bytes);
    // Prefer what the decoder found (it also reads PNG eXIf / WebP EXIF).
    let orientation = decoder
        .orientation()
        .ok()
        .filter(|o| *o != Orientation::NoTransforms)
        .or_else(|| {
            u8::try_from(exif.orientation)
                .ok()
                .and_then(Orientation::from_exif)
        })
        .unwrap_or(Orientation::NoTransforms);
    let shrunk = match format {
        ImageFormat::Jpeg => shrink::jpeg(bytes, width, height, limits.thumbnail_px),
        _ => None,
    };
    let pixels = match shrunk {
        Some(small) => small,
        None => DynamicImage::from_decoder(decoder)
            .map_err(decode_error)?
            .into_rgb8(),
    };

    let mut thumb = DynamicImage::ImageRgb8(thumbnail(pixels, limits.thumbnail_px)?);
    // Orient the small image, not the big one.
    thumb.apply_orientation(orientation);
    let phash = perceptual_hash(&thumb);
    let preview_ppm = ppm(&thumb.to_rgb8());
    let mut thumbnail_jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut thumbnail_jpeg, 85)
        .encode_image(&thumb)
        .map_err(|e| {
            ProcessError::new(
                QuarantineReason::DecodeFailed,
                format!("thumbnail encode: {e}"),
            )
        })?;

    Ok(Analysis {
        format,
        width,
        height,
        sha256: hex::encode(Sha256::digest(bytes)),
        phash,
        exif,
        thumbnail_jpeg,
        preview_ppm,
    })
}

fn to_image_format(f: ImageFormat) -> image::ImageFormat {
    match f {
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Webp => image::ImageFormat::WebP,
        ImageFormat::Gif => image::ImageFormat::Gif,
        ImageFormat::Tiff => image::ImageFormat::Tiff,
        ImageFormat::Bmp => image::ImageFormat::Bmp,
    }
}

fn decode_error(e: image::ImageError) -> ProcessError {
    use image::{ImageError, error::LimitErrorKind};
    match e {
        ImageError::Limits(l) if matches!(l.kind(), LimitErrorKind::InsufficientMemory) => {
            ProcessError::new(
                QuarantineReason::TooLarge,
                format!("decoding needs more memory than allowed: {l}"),
            )
        }
        ImageError::Limits(l) => ProcessError::new(QuarantineReason::TooLarge, l.to_string()),
        ImageError::Unsupported(u) => {
            ProcessError::new(QuarantineReason::UnsupportedFormat, u.to_string())
        }
        other => ProcessError::new(QuarantineReason::DecodeFailed, format!("decode: {other}")),
    }
}

/// Longest side `max_side`, aspect kept, never enlarged.
fn thumbnail(src: RgbImage, max_side: u32) -> Result<RgbImage, ProcessError> {
    let (w, h) = src.dimensions();
    let scale = f64::from(max_side) / f64::from(w.max(h));
    if scale >= 1.0 {
        return Ok(src);
    }
    let tw = ((f64::from(w) * scale).round() as u32).max(1);
    let th = ((f64::from(h) * scale).round() as u32).max(1);
    let mut dst = Image::new(tw, th, PixelType::U8x3);
    Resizer::new()
        .resize(
            &src,
            &mut dst,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3)),
        )
        .map_err(|e| ProcessError::new(QuarantineReason::DecodeFailed, format!("resize: {e}")))?;
    RgbImage::from_raw(tw, th, dst.into_vec()).ok_or_else(|| {
        ProcessError::new(
            QuarantineReason::DecodeFailed,
            "resize produced a short buffer",
        )
    })
}

fn ppm(rgb: &RgbImage) -> Vec<u8> {
    let mut out = format!("P6\n{} {}\n255\n", rgb.width(), rgb.height()).into_bytes();
    out.extend_from_slice(rgb.as_raw());
    out
}

/// 64-bit DCT mean hash (pHash), hex.
fn perceptual_hash(image: &DynamicImage) -> String {
    let hasher = image_hasher::HasherConfig::new()
        .hash_alg(image_hasher::HashAlg::Mean)
        .preproc_dct()
        .hash_size(8, 8)
        .to_hasher();
    hex::encode(hasher.hash_image(image).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: AnalyzeLimits = AnalyzeLimits {
        max_pixels: 100_000_000,
        max_decode_bytes: 1 << 30,
        thumbnail_px: 256,
    };

    fn encode(img: DynamicImage, fmt: image::ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, fmt).unwrap();
        out.into_inner()
    }

    #[test]
    fn thumbnails_keep_aspect_and_longest_side() {
        let img =
            DynamicImage::ImageRgb8(RgbImage::from_pixel(1000, 500, image::Rgb([10, 200, 30])));
        let a = analyze(&encode(img, image::ImageFormat::Png), &LIMITS).unwrap();
        assert_eq!((a.width, a.height, a.format), (1000, 500, ImageFormat::Png));
        let thumb = image::load_from_memory(&a.thumbnail_jpeg).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (256, 128));
        assert_eq!(a.sha256.len(), 64);
        assert_eq!(a.phash.len(), 16);
    }

    /// The shrink-on-load path reports what the file holds, not what it
    /// decoded, and makes the same thumbnail shape.
    #[test]
    fn a_large_jpeg_is_measured_whole_and_thumbnailed_from_its_shrunk_decode() {
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(3000, 1500, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        }));
        let a = analyze(&encode(img, image::ImageFormat::Jpeg), &LIMITS).unwrap();
        assert_eq!(
            (a.width, a.height, a.format),
            (3000, 1500, ImageFormat::Jpeg)
        );
        let thumb = image::load_from_memory(&a.thumbnail_jpeg).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (256, 128));
    }

    #[test]
    fn pixel_limit_is_checked_from_the_header() {
        let img = DynamicImage::ImageLuma8(image::GrayImage::new(2000, 2000));
        let bytes = encode(img, image::ImageFormat::Png);
        let small = AnalyzeLimits {
            max_pixels: 1_000_000,
            ..LIMITS
        };
        let e = analyze(&bytes, &small).unwrap_err();
        assert_eq!(e.reason, QuarantineReason::TooLarge);
        assert!(e.detail.contains("4000000 pixels"), "{}", e.detail);
    }

    /// A PNG whose IHDR announces `side`×`side` pixels of `depth`-bit RGBA,
    /// with almost no data.
    fn png_declaring(side: u32, depth: u8) -> Vec<u8> {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&side.to_be_bytes());
        ihdr.extend_from_slice(&side.to_be_bytes());
        ihdr.extend_from_slice(&[depth, 6, 0, 0, 0]);
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
        let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01";
        png.extend_from_slice(&8u32.to_be_bytes());
        png.extend_from_slice(idat);
        png.extend_from_slice(&crc32fast::hash(idat).to_be_bytes());
        png.extend_from_slice(&0u32.to_be_bytes());
        png.extend_from_slice(b"IEND");
        png.extend_from_slice(&crc32fast::hash(b"IEND").to_be_bytes());
        png
    }

    #[test]
    fn a_header_claiming_a_huge_image_is_refused_without_decoding() {
        // 60000x60000 RGBA: 14 GB.
        let e = analyze(&png_declaring(60000, 8), &LIMITS).unwrap_err();
        assert_eq!(e.reason, QuarantineReason::TooLarge, "{}", e.detail);
    }

    /// What the processor charges its decode budget: the pixels the header
    /// declares, not the few bytes the file has.
    #[test]
    fn the_decoded_size_comes_from_the_header() {
        let png = png_declaring(10000, 16);
        assert!(png.len() < 100);
        assert_eq!(decoded_bytes(&png), Some(10000 * 10000 * 8));
        assert_eq!(decoded_bytes(b"hello"), None);
    }

    #[test]
    fn garbage_and_unsupported_are_quarantine_reasons() {
        assert_eq!(
            analyze(b"hello", &LIMITS).unwrap_err().reason,
            QuarantineReason::UnsupportedFormat
        );
        let avif = b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf";
        let e = analyze(avif, &LIMITS).unwrap_err();
        assert!(e.detail.contains("AVIF"));
    }
}
