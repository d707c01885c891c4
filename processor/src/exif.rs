//! EXIF fields for the metadata row (kamadak-exif reads JPEG, PNG, WebP,
//! TIFF and HEIF containers). Missing or malformed EXIF is not an error.

use exif::{Field, In, Reader, Tag, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExifInfo {
    pub make: Option<String>,
    pub model: Option<String>,
    /// DateTimeOriginal as `YYYY-MM-DD HH:MM:SS` (camera local time).
    pub taken_at: Option<String>,
    /// 1..=8; 1 when absent or out of range.
    pub orientation: u16,
    pub gps: Option<(f64, f64)>,
}

pub fn read(bytes: &[u8]) -> ExifInfo {
    let Ok(exif) = Reader::new().read_from_container(&mut std::io::Cursor::new(bytes)) else {
        return ExifInfo {
            orientation: 1,
            ..ExifInfo::default()
        };
    };
    let field = |tag| exif.get_field(tag, In::PRIMARY);
    let orientation = field(Tag::Orientation)
        .and_then(|f| f.value.get_uint(0))
        .and_then(|v| u16::try_from(v).ok())
        .filter(|v| (1..=8).contains(v))
        .unwrap_or(1);
    let taken_at = field(Tag::DateTimeOriginal)
        .or_else(|| field(Tag::DateTime))
        .and_then(|f| match &f.value {
            Value::Ascii(v) => v
                .first()
                .and_then(|raw| exif::DateTime::from_ascii(raw).ok()),
            _ => None,
        })
        .map(|d| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                d.year, d.month, d.day, d.hour, d.minute, d.second
            )
        });
    let gps = match (
        coordinate(field(Tag::GPSLatitude), field(Tag::GPSLatitudeRef), b'S'),
        coordinate(field(Tag::GPSLongitude), field(Tag::GPSLongitudeRef), b'W'),
    ) {
        (Some(lat), Some(lon))
            if (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon) =>
        {
            Some((lat, lon))
        }
        _ => None,
    };
    ExifInfo {
        make: field(Tag::Make).and_then(ascii),
        model: field(Tag::Model).and_then(ascii),
        taken_at,
        orientation,
        gps,
    }
}

fn ascii(f: &Field) -> Option<String> {
    let Value::Ascii(parts) = &f.value else {
        return None;
    };
    let text = String::from_utf8_lossy(parts.first()?);
    let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!text.is_empty()).then(|| text.chars().take(256).collect())
}

/// Degrees/minutes/seconds rationals plus an N/S or E/W reference.
fn coordinate(value: Option<&Field>, reference: Option<&Field>, negative: u8) -> Option<f64> {
    let Value::Rational(dms) = &value?.value else {
        return None;
    };
    let part = |i: usize| dms.get(i).filter(|r| r.denom != 0).map(|r| r.to_f64());
    let degrees = part(0)? + part(1).unwrap_or(0.0) / 60.0 + part(2).unwrap_or(0.0) / 3600.0;
    let sign = match reference.map(|f| &f.value) {
        Some(Value::Ascii(r)) if r.first().and_then(|s| s.first()) == Some(&negative) => -1.0,
        _ => 1.0,
    };
    degrees.is_finite().then_some(sign * degrees)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_exif_means_defaults() {
        let info = read(b"not an image at all");
        assert_eq!(info.orientation, 1);
        assert_eq!(info.gps, None);
    }
}
