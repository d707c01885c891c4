//! What a message on the image topic means. Pure: bytes in, a decision out,
//! so it is unit- and property-tested without a broker.
//!
//! Three forms are accepted:
//! 1. the value is the image; header `content-type` optional, header
//!    `image-id` or the message key is the dedup key;
//! 2. the value is a JSON envelope
//!    `{"key": …, "content_type": …, "data_base64": …}`;
//! 3. claim-check: the value is `{"s3_uri": "s3://bucket/key"}`, for images
//!    larger than the broker's message limit.
//!
//! Without any key, topic/partition/offset is the dedup key, so a
//! redelivery of the same message never makes a second image.

use base64::Engine;
use bytes::Bytes;
use lake::sniff::{ImageFormat, Sniffed, sniff};
use serde::Deserialize;

/// The parts of a Kafka message we look at.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, &'a [u8])],
    pub payload: Option<&'a [u8]>,
}

impl Message<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// A message that is an image, or points at one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Image {
        data: Bytes,
        format: ImageFormat,
        dedup_key: String,
    },
    ClaimCheck {
        bucket: String,
        key: String,
        dedup_key: String,
    },
}

/// What a message may cost in memory while it is handled, decided before
/// it is parsed: raw bytes cost their size; anything JSON-shaped may be an
/// envelope (its value plus the decoded image) or a claim-check (which
/// fetches up to `max_image_bytes`), so it is charged the larger of both.
/// (Telling them apart needs the full parse, which an attacker controls.)
pub fn budget_bytes(payload: &[u8], max_image_bytes: u64) -> u64 {
    let len = payload.len() as u64;
    if payload.trim_ascii_start().first() == Some(&b'{') {
        (len + len * 3 / 4).max(max_image_bytes)
    } else {
        len
    }
}

/// Why a message goes to the dead-letter topic. The code is stable: it is
/// the `imgpipe-reason` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    NotAnImage,
    UnsupportedFormat,
    TooBig,
    BrokenEnvelope,
    ClaimCheckUnreachable,
    /// The claim-check points outside `kafka.claim_check_allow`.
    ClaimCheckRefused,
    /// The message's timestamp is older than the retention period: its
    /// image may no longer be kept.
    Expired,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAnImage => "not_an_image",
            Self::UnsupportedFormat => "unsupported_format",
            Self::TooBig => "too_big",
            Self::BrokenEnvelope => "broken_envelope",
            Self::ClaimCheckUnreachable => "claim_check_unreachable",
            Self::ClaimCheckRefused => "claim_check_refused",
            Self::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct Rejected {
    pub reason: DeadLetterReason,
    pub detail: String,
}

impl Rejected {
    pub fn new(reason: DeadLetterReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// The JSON forms. `content_type` may be sent but is not read: the bytes
/// decide the type.
#[derive(Debug, Deserialize)]
struct Envelope {
    key: Option<String>,
    data_base64: Option<String>,
    s3_uri: Option<String>,
}

/// Decide what `msg` is. `max_bytes` bounds the image, decoded.
pub fn parse(msg: &Message<'_>, max_bytes: u64) -> Result<Inbound, Rejected> {
    let payload = msg.payload.unwrap_or_default();
    if payload.is_empty() {
        return Err(Rejected::new(
            DeadLetterReason::NotAnImage,
            "the message has no value",
        ));
    }
    // No image format starts with '{' (all have magic bytes), so a leading
    // '{' means an envelope.
    if payload.trim_ascii_start().first() == Some(&b'{') {
        return parse_envelope(msg, payload, max_bytes);
    }
    if payload.len() as u64 > max_bytes {
        return Err(too_big(payload.len() as u64, max_bytes));
    }
    let format = image_format(payload)?;
    Ok(Inbound::Image {
        data: Bytes::copy_from_slice(payload),
        format,
        dedup_key: dedup_key(msg, None),
    })
}

fn parse_envelope(msg: &Message<'_>, payload: &[u8], max_bytes: u64) -> Result<Inbound, Rejected> {
    // Base64 is 4/3 of the bytes: refuse oversized envelopes before decoding.
    if payload.len() as u64 > max_bytes.saturating_mul(4) / 3 + 64 * 1024 {
        return Err(too_big(payload.len() as u64 * 3 / 4, max_bytes));
    }
    let envelope: Envelope = serde_json::from_slice(payload).map_err(|e| {
        Rejected::new(
            DeadLetterReason::BrokenEnvelope,
            format!("the value starts with '{{' but is not a JSON envelope: {e}"),
        )
    })?;
    let key = envelope.key.as_deref().filter(|k| !k.is_empty());
    match (envelope.data_base64, envelope.s3_uri) {
        (Some(data), None) => {
            let data = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| {
                    Rejected::new(
                        DeadLetterReason::BrokenEnvelope,
                        format!("data_base64 is not base64: {e}"),
                    )
                })?;
            if data.len() as u64 > max_bytes {
                return Err(too_big(data.len() as u64, max_bytes));
            }
            let format = image_format(&data)?;
            Ok(Inbound::Image {
                data: Bytes::from(data),
                format,
                dedup_key: dedup_key(msg, key),
            })
        }
        (None, Some(uri)) => {
            let (bucket, object) = parse_s3_uri(&uri).ok_or_else(|| {
                Rejected::new(
                    DeadLetterReason::BrokenEnvelope,
                    format!("s3_uri {uri:?} is not s3://bucket/key"),
                )
            })?;
            Ok(Inbound::ClaimCheck {
                bucket: bucket.to_owned(),
                key: object.to_owned(),
                dedup_key: dedup_key(msg, key),
            })
        }
        (Some(_), Some(_)) => Err(Rejected::new(
            DeadLetterReason::BrokenEnvelope,
            "the envelope has both data_base64 and s3_uri",
        )),
        (None, None) => Err(Rejected::new(
            DeadLetterReason::BrokenEnvelope,
            "the envelope has neither data_base64 nor s3_uri",
        )),
    }
}

/// `s3://bucket/key` → (bucket, key); both non-empty.
pub fn parse_s3_uri(uri: &str) -> Option<(&str, &str)> {
    let (bucket, key) = uri.strip_prefix("s3://")?.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some((bucket, key))
}

/// Only formats the processor takes; the claim in headers is not trusted.
pub fn image_format(data: &[u8]) -> Result<ImageFormat, Rejected> {
    match sniff(data) {
        Sniffed::Supported(format) => Ok(format),
        Sniffed::Unsupported(name) => Err(Rejected::new(
            DeadLetterReason::UnsupportedFormat,
            format!("{name} images are not supported; send JPEG, PNG, WebP, GIF, TIFF or BMP"),
        )),
        Sniffed::Unknown => Err(Rejected::new(
            DeadLetterReason::NotAnImage,
            "the bytes are not an image format imgpipe accepts",
        )),
    }
}

pub fn too_big(bytes: u64, max_bytes: u64) -> Rejected {
    Rejected::new(
        DeadLetterReason::TooBig,
        format!("the image has {bytes} bytes; the limit is {max_bytes}"),
    )
}

/// The `image-id` header, else the envelope's key, else the message key,
/// else the message's position. Namespaced by topic: keys are the
/// producer's, and two topics may reuse them.
fn dedup_key(msg: &Message<'_>, envelope_key: Option<&str>) -> String {
    let key = msg
        .header("image-id")
        .filter(|k| !k.is_empty())
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .or_else(|| envelope_key.map(str::to_owned))
        .or_else(|| {
            msg.key
                .filter(|k| !k.is_empty())
                .map(|k| String::from_utf8_lossy(k).into_owned())
        });
    match key {
        Some(k) => format!("kafka:{}:key:{k}", msg.topic),
        None => format!(
            "kafka:{}:offset:{}/{}",
            msg.topic, msg.partition, msg.offset
        ),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const PNG: &[u8] = &[
        0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, b'I', b'H', b'D', b'R',
    ];

    fn msg<'a>(
        key: Option<&'a [u8]>,
        headers: &'a [(&'a str, &'a [u8])],
        payload: &'a [u8],
    ) -> Message<'a> {
        Message {
            topic: "images",
            partition: 2,
            offset: 41,
            key,
            headers,
            payload: Some(payload),
        }
    }

    fn reason(r: Result<Inbound, Rejected>) -> DeadLetterReason {
        r.unwrap_err().reason
    }

    #[test]
    fn raw_image_with_key_header_or_position() {
        let Inbound::Image {
            dedup_key, format, ..
        } = parse(&msg(Some(b"k1"), &[], PNG), 1000).unwrap()
        else {
            panic!("not an image")
        };
        assert_eq!(format, ImageFormat::Png);
        assert_eq!(dedup_key, "kafka:images:key:k1");

        let headers: &[(&str, &[u8])] = &[("Image-Id", b"h1"), ("content-type", b"image/png")];
        let Ok(Inbound::Image { dedup_key, .. }) = parse(&msg(Some(b"k1"), headers, PNG), 1000)
        else {
            panic!()
        };
        assert_eq!(dedup_key, "kafka:images:key:h1");

        let Ok(Inbound::Image { dedup_key, .. }) = parse(&msg(None, &[], PNG), 1000) else {
            panic!()
        };
        assert_eq!(dedup_key, "kafka:images:offset:2/41");
    }

    #[test]
    fn json_shaped_messages_are_charged_the_largest_image() {
        let max = 50 << 20;
        assert_eq!(budget_bytes(b"\x89PNG....", max), 8);
        for claim in [
            &br#"{"s3_uri": "s3://b/k"}"#[..],
            br#"   {"s3_uri": "s3://b/k"}"#,
            br#"{"key": "data_base64", "s3_uri": "s3://b/k"}"#,
        ] {
            assert_eq!(budget_bytes(claim, max), max);
        }
        let padded = format!(r#"{{"s3_uri": "s3://b/k"{}}}"#, " ".repeat(100_000));
        assert_eq!(budget_bytes(padded.as_bytes(), max), max);
    }

    #[test]
    fn envelope_and_claim_check() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(PNG);
        let body = format!(r#"{{"key":"e1","content_type":"image/png","data_base64":"{b64}"}}"#);
        let Ok(Inbound::Image {
            data, dedup_key, ..
        }) = parse(&msg(Some(b"k"), &[], body.as_bytes()), 1000)
        else {
            panic!()
        };
        assert_eq!(&data[..], PNG);
        assert_eq!(dedup_key, "kafka:images:key:e1");

        let body = br#" {"s3_uri": "s3://claims/a/b.jpg"}"#;
        assert_eq!(
            parse(&msg(None, &[], body), 1000).unwrap(),
            Inbound::ClaimCheck {
                bucket: "claims".into(),
                key: "a/b.jpg".into(),
                dedup_key: "kafka:images:offset:2/41".into()
            }
        );
    }

    #[test]
    fn every_bad_kind_has_its_reason() {
        assert_eq!(
            reason(parse(&msg(None, &[], b"hello"), 1000)),
            DeadLetterReason::NotAnImage
        );
        assert_eq!(
            reason(parse(&msg(None, &[], b""), 1000)),
            DeadLetterReason::NotAnImage
        );
        assert_eq!(
            reason(parse(&msg(None, &[], PNG), 4)),
            DeadLetterReason::TooBig
        );
        let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
        assert_eq!(
            reason(parse(&msg(None, &[], heic), 1000)),
            DeadLetterReason::UnsupportedFormat
        );
        for bad in [
            &br#"{"key": "x""#[..],
            br#"{"data_base64": "@@@"}"#,
            br#"{"key": "x"}"#,
            br#"{"s3_uri": "http://x/y"}"#,
            br#"{"s3_uri": "s3://bucket"}"#,
            br#"{"s3_uri": "s3://b/k", "data_base64": "AA=="}"#,
        ] {
            assert_eq!(
                reason(parse(&msg(None, &[], bad), 1000)),
                DeadLetterReason::BrokenEnvelope,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let big = format!(r#"{{"data_base64":"{}"}}"#, "A".repeat(200_000));
        assert_eq!(
            reason(parse(&msg(None, &[], big.as_bytes()), 1000)),
            DeadLetterReason::TooBig
        );
    }

    proptest! {
        #[test]
        fn never_panics(payload in proptest::collection::vec(any::<u8>(), 0..512),
                        key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32))) {
            let _ = parse(&msg(key.as_deref(), &[], &payload), 256);
        }

        #[test]
        fn envelopes_never_panic(s in "\\{.{0,200}") {
            let _ = parse(&msg(None, &[], s.as_bytes()), 256);
        }
    }
}
