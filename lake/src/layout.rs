//! Where everything lives in the lake, and how to read a key back.
//!
//! Every key carries an image id (UUIDv7, see [`crate::id`]), so a key alone
//! says when its data expires: the sweeper never reads an object to decide.
//!
//! ```text
//! raw/dt=YYYY-MM-DD/hr=HH/<id>
//! derived/dt=YYYY-MM-DD/hr=HH/<id>/thumb.jpg
//! derived/dt=YYYY-MM-DD/hr=HH/<id>/script/<file>
//! derived/dt=YYYY-MM-DD/hr=HH/<id>/manifest.json
//! metadata/dt=YYYY-MM-DD/hr=HH/<maxid>-<rows>.parquet
//! quarantine/dt=YYYY-MM-DD/hr=HH/<id>.json
//! idempotency/<sha256(client key)>/<id>    API Idempotency-Key, Kafka dedup key
//! idempotency/<sha256("content:" + sha256 of the image)>/<id>   lookup by content
//! idempotency/<sha256("event:" + id)>/<id>     the ImageReceived, for crash recovery
//! erased/dt=YYYY-MM-DD/hr=HH/<id>          tombstone: this image was erased
//! expiry/dt=YYYY-MM-DD/hr=HH/<id>/<hash>   marker of idempotency/<hash>/<id>
//! uploads/dt=YYYY-MM-DD/hr=HH/<upload id>/{ticket.json,data}   direct upload
//!                                          not yet completed (kept 2 hours)
//! checkpoint/dt=YYYY-MM-DD/hr=HH/<hour's first id>  this hour is reconciled:
//!                                          start-up need not look in it
//! ```

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use crate::id::ImageId;

/// The top-level prefixes. Anything added here must be swept and audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Area {
    Raw,
    Derived,
    Metadata,
    Quarantine,
    Idempotency,
    /// Tombstones of erased images, so no stage writes them back.
    Erased,
    /// One empty marker per `idempotency/` record, in its image's hour
    /// partition: how the sweeper finds the records that expire next.
    Expiry,
    /// Direct uploads until they are completed (then admitted into `raw/`
    /// and removed): the bytes a browser PUT, and who may complete them.
    Uploads,
    /// One empty marker per hour partition found reconciled (every image
    /// finished, every row in a metadata file, the files compacted), so
    /// start-up looks only at the hours without one.
    Checkpoint,
}

impl Area {
    pub const ALL: [Area; 9] = [
        Area::Raw,
        Area::Derived,
        Area::Metadata,
        Area::Quarantine,
        Area::Idempotency,
        Area::Erased,
        Area::Expiry,
        Area::Uploads,
        Area::Checkpoint,
    ];

    pub fn prefix(self) -> &'static str {
        match self {
            Area::Raw => "raw/",
            Area::Derived => "derived/",
            Area::Metadata => "metadata/",
            Area::Quarantine => "quarantine/",
            Area::Idempotency => "idempotency/",
            Area::Erased => "erased/",
            Area::Expiry => "expiry/",
            Area::Uploads => "uploads/",
            Area::Checkpoint => "checkpoint/",
        }
    }
}

impl Area {
    /// Keys under it start `dt=YYYY-MM-DD/hr=HH/<id>`, so what expires
    /// next is found without listing the rest (all but `idempotency/`,
    /// whose keys start with the hash they are looked up by).
    pub fn is_partitioned(self) -> bool {
        self != Area::Idempotency
    }
}

/// The start of the day or hour a partition prefix names:
/// `<area>/dt=YYYY-MM-DD/` or `<area>/dt=YYYY-MM-DD/hr=HH/`.
pub fn partition_start(prefix: &str) -> Option<DateTime<Utc>> {
    let rest = Area::ALL
        .iter()
        .find_map(|a| prefix.strip_prefix(a.prefix()))?
        .strip_suffix('/')?;
    let (day, hour) = match rest.split_once('/') {
        Some((day, hour)) => (day, Some(hour)),
        None => (rest, None),
    };
    let date = chrono::NaiveDate::parse_from_str(day.strip_prefix("dt=")?, "%Y-%m-%d").ok()?;
    let hour = match hour {
        Some(h) => {
            let h = h.strip_prefix("hr=")?;
            if h.len() != 2 {
                return None;
            }
            h.parse::<u32>().ok().filter(|h| *h < 24)?
        }
        None => 0,
    };
    Some(date.and_hms_opt(hour, 0, 0)?.and_utc())
}

/// The smallest image id received at `at` (to the millisecond), as text:
/// in a partition every key starts with its id, and ids sort by time, so
/// the keys below `<partition>/<bound>` are exactly those of images
/// received before `at`.
pub fn id_bound(at: DateTime<Utc>) -> String {
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0) & 0xffff_ffff_ffff;
    format!(
        "{:08x}-{:04x}-7000-8000-000000000000",
        ms >> 16,
        ms & 0xffff
    )
}

/// The start of the hour `at` falls in.
pub fn hour_start(at: DateTime<Utc>) -> DateTime<Utc> {
    let secs = at.timestamp().div_euclid(3600) * 3600;
    DateTime::from_timestamp(secs, 0).unwrap_or(at)
}

/// The checkpoint marker of the hour starting at `hour`, named by the
/// smallest id the hour can hold: it expires with the hour's first images
/// (for the hour's last hour of life start-up looks there again).
pub fn checkpoint_key(hour: DateTime<Utc>) -> String {
    format!("checkpoint/{}/{}", partition(hour), id_bound(hour))
}

/// How long a direct upload that was never completed is kept (or the
/// retention period, if shorter): its URL is valid for at most an hour.
pub const STAGED_UPLOAD_TTL: Duration = Duration::hours(2);
pub const UPLOAD_DATA_FILE: &str = "data";
pub const UPLOAD_TICKET_FILE: &str = "ticket.json";

/// Where a direct upload's bytes and ticket wait for completion.
pub fn upload_prefix(upload: ImageId) -> String {
    format!("uploads/{}/{upload}/", partition(upload.received_at()))
}

pub fn upload_data_key(upload: ImageId) -> String {
    format!("{}{UPLOAD_DATA_FILE}", upload_prefix(upload))
}

pub fn upload_ticket_key(upload: ImageId) -> String {
    format!("{}{UPLOAD_TICKET_FILE}", upload_prefix(upload))
}

pub const THUMB_FILE: &str = "thumb.jpg";
pub const MANIFEST_FILE: &str = "manifest.json";

/// `dt=YYYY-MM-DD/hr=HH` of an instant (UTC).
pub fn partition(at: DateTime<Utc>) -> String {
    at.format("dt=%Y-%m-%d/hr=%H").to_string()
}

/// The keys of one image's data. Pure functions of the id.
pub fn raw_key(id: ImageId) -> String {
    format!("raw/{}/{id}", partition(id.received_at()))
}

pub fn derived_prefix(id: ImageId) -> String {
    format!("derived/{}/{id}/", partition(id.received_at()))
}

pub fn thumb_key(id: ImageId) -> String {
    format!("{}{THUMB_FILE}", derived_prefix(id))
}

pub fn manifest_key(id: ImageId) -> String {
    format!("{}{MANIFEST_FILE}", derived_prefix(id))
}

/// Key for a file the customer's script wrote. `name` must be a single safe
/// path segment (checked by the caller that collects script outputs).
pub fn script_key(id: ImageId, name: &str) -> String {
    format!("{}script/{name}", derived_prefix(id))
}

pub fn quarantine_key(id: ImageId) -> String {
    format!("quarantine/{}/{id}.json", partition(id.received_at()))
}

/// The tombstone of an erased image; it expires with the image.
pub fn erased_key(id: ImageId) -> String {
    format!("erased/{}/{id}", partition(id.received_at()))
}

/// `area`'s partition of the hour `hour` falls in: `<area>/dt=…/hr=…/`.
pub fn hour_prefix(area: Area, hour: DateTime<Utc>) -> String {
    format!("{}{}/", area.prefix(), partition(hour))
}

/// Where the metadata rows of images received in `id`'s hour live.
pub fn metadata_partition_prefix(id: ImageId) -> String {
    hour_prefix(Area::Metadata, id.received_at())
}

/// Where the tombstones of images received in `id`'s hour live.
pub fn erased_partition_prefix(id: ImageId) -> String {
    hour_prefix(Area::Erased, id.received_at())
}

/// A metadata file is named by its newest row's id and row count, and lives
/// in that row's partition; writers never let one file span two hours.
pub fn metadata_key(newest: ImageId, rows: usize) -> String {
    format!(
        "metadata/{}/{newest}-{rows}.parquet",
        partition(newest.received_at())
    )
}

/// Prefix under which the image stored for a client's idempotency key is
/// recorded. The client key is hashed: it is arbitrary text we never trust
/// in a path.
pub fn idempotency_prefix(client_key: &str) -> String {
    let digest = Sha256::digest(client_key.as_bytes());
    format!("idempotency/{}/", hex::encode(digest))
}

pub fn idempotency_key(client_key: &str, id: ImageId) -> String {
    format!("{}{id}", idempotency_prefix(client_key))
}

/// The client key under which images are indexed by their bytes' SHA-256
/// (lowercase hex), for lookup by content. Kept with the idempotency
/// records: same shape, same id-driven expiry and erasure.
pub fn content_index_key(sha256_hex: &str) -> String {
    format!("content:{}", sha256_hex.to_ascii_lowercase())
}

/// The expiry marker of an `idempotency/<hash>/<id>` record:
/// `expiry/dt=…/hr=…/<id>/<hash>`, written before the record.
pub fn expiry_marker_key(record_key: &str) -> Option<String> {
    let rest = record_key.strip_prefix(Area::Idempotency.prefix())?;
    let (hash, id) = rest.split_once('/')?;
    let id = id.parse::<ImageId>().ok()?;
    Some(format!(
        "expiry/{}/{id}/{hash}",
        partition(id.received_at())
    ))
}

/// The record an expiry marker stands for.
pub fn marked_record_key(marker_key: &str) -> Option<String> {
    let rest = marker_key.strip_prefix(Area::Expiry.prefix())?;
    let mut parts = rest.splitn(4, '/');
    let (_dt, _hr, id, hash) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some(format!("idempotency/{hash}/{id}"))
}

/// What a lake key says about the data under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    pub area: Area,
    /// The image the object belongs to (for metadata files: the newest row).
    pub id: ImageId,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an imgpipe lake key: {key} ({why})")]
pub struct KeyError {
    pub key: String,
    pub why: &'static str,
}

fn key_error(key: &str, why: &'static str) -> KeyError {
    KeyError {
        key: key.to_owned(),
        why,
    }
}

/// Read a key back. The partition must agree with the id's time, so a key
/// moved or forged into an older partition cannot dodge or fool the sweeper.
pub fn parse_key(key: &str) -> Result<ParsedKey, KeyError> {
    let (area, rest) = Area::ALL
        .iter()
        .find_map(|a| key.strip_prefix(a.prefix()).map(|rest| (*a, rest)))
        .ok_or_else(|| key_error(key, "unknown prefix"))?;
    if area == Area::Idempotency {
        let (hash, id) = rest
            .split_once('/')
            .ok_or_else(|| key_error(key, "idempotency key without id"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(key_error(key, "idempotency hash is not sha256 hex"));
        }
        let id = id
            .parse::<ImageId>()
            .map_err(|_| key_error(key, "bad image id"))?;
        return Ok(ParsedKey { area, id });
    }
    // dt=YYYY-MM-DD/hr=HH/<tail>
    let mut parts = rest.splitn(3, '/');
    let dt = parts.next().unwrap_or_default();
    let hr = parts.next().unwrap_or_default();
    let tail = parts
        .next()
        .ok_or_else(|| key_error(key, "missing partition"))?;
    let id_text = match area {
        Area::Raw | Area::Erased | Area::Checkpoint => tail,
        Area::Quarantine => tail
            .strip_suffix(".json")
            .ok_or_else(|| key_error(key, "quarantine record is not .json"))?,
        Area::Derived => {
            let (id, file) = tail
                .split_once('/')
                .ok_or_else(|| key_error(key, "derived key without file"))?;
            if file.is_empty() {
                return Err(key_error(key, "derived key without file"));
            }
            id
        }
        Area::Uploads => match tail.split_once('/') {
            Some((id, UPLOAD_DATA_FILE | UPLOAD_TICKET_FILE)) => id,
            _ => {
                return Err(key_error(
                    key,
                    "upload key is not <id>/data or <id>/ticket.json",
                ));
            }
        },
        Area::Expiry => {
            let (id, hash) = tail
                .split_once('/')
                .ok_or_else(|| key_error(key, "expiry marker without hash"))?;
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(key_error(key, "expiry marker hash is not sha256 hex"));
            }
            id
        }
        Area::Metadata => tail
            .strip_suffix(".parquet")
            .and_then(|stem| stem.rsplit_once('-'))
            .filter(|(_, rows)| !rows.is_empty() && rows.bytes().all(|b| b.is_ascii_digit()))
            .map(|(id, _)| id)
            .ok_or_else(|| key_error(key, "metadata file is not <id>-<rows>.parquet"))?,
        Area::Idempotency => unreachable!("handled above"),
    };
    let id = id_text
        .parse::<ImageId>()
        .map_err(|_| key_error(key, "bad image id"))?;
    if format!("{dt}/{hr}") != partition(id.received_at()) {
        return Err(key_error(key, "partition does not match the id's time"));
    }
    Ok(ParsedKey { area, id })
}

/// Retention arithmetic.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub retention: Duration,
}

impl Layout {
    pub fn new(retention: Duration) -> Self {
        Self { retention }
    }

    pub fn expires_at(&self, id: ImageId) -> DateTime<Utc> {
        id.received_at() + self.retention
    }

    /// How long what lives in `area` is kept after its id's time.
    pub fn area_retention(&self, area: Area) -> Duration {
        match area {
            Area::Uploads => STAGED_UPLOAD_TTL.min(self.retention),
            _ => self.retention,
        }
    }

    /// When the object under `key` expires, from the key alone.
    pub fn key_expires_at(&self, key: &str) -> Result<DateTime<Utc>, KeyError> {
        parse_key(key).map(|p| p.id.received_at() + self.area_retention(p.area))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn expiry_markers_pair_with_their_records() {
        let id = ImageId::new(Utc.with_ymd_and_hms(2026, 11, 18, 7, 5, 0).unwrap());
        let record = idempotency_key("api:client-key", id);
        let marker = expiry_marker_key(&record).unwrap();
        assert!(
            marker.starts_with("expiry/dt=2026-11-18/hr=07/"),
            "{marker}"
        );
        assert_eq!(marked_record_key(&marker).as_deref(), Some(record.as_str()));
        assert_eq!(
            parse_key(&marker).unwrap(),
            ParsedKey {
                area: Area::Expiry,
                id
            }
        );
        assert_eq!(expiry_marker_key(&raw_key(id)), None);
    }

    #[test]
    fn partition_prefixes_name_their_start() {
        let day = Utc.with_ymd_and_hms(2026, 11, 18, 0, 0, 0).unwrap();
        assert_eq!(partition_start("raw/dt=2026-11-18/"), Some(day));
        let at = day + Duration::minutes(7 * 60 + 59);
        assert_eq!(
            hour_prefix(Area::Metadata, at),
            "metadata/dt=2026-11-18/hr=07/"
        );
        assert_eq!(
            partition_start(&hour_prefix(Area::Derived, at)),
            Some(hour_start(at))
        );
        assert_eq!(
            partition_start("derived/dt=2026-11-18/hr=07/"),
            Some(day + Duration::hours(7))
        );
        for bad in [
            "raw/dt=2026-11-18",
            "raw/dt=2026-13-01/",
            "raw/dt=2026-11-18/hr=24/",
            "raw/dt=2026-11-18/hr=7/",
            "other/dt=2026-11-18/",
            "raw/2026-11-18/",
        ] {
            assert_eq!(partition_start(bad), None, "{bad}");
        }
    }

    proptest! {
        /// Below the bound for `t`: exactly the ids received before `t`.
        #[test]
        fn id_bound_splits_ids_by_time(id_ms in 0i64..4_000_000_000_000, t_ms in 0i64..4_000_000_000_000) {
            let id = ImageId::new(Utc.timestamp_millis_opt(id_ms).unwrap());
            let at = Utc.timestamp_millis_opt(t_ms).unwrap();
            prop_assert_eq!(id.to_string() < id_bound(at), id_ms < t_ms);
        }
    }

    fn id_at(ms: i64) -> ImageId {
        ImageId::new(Utc.timestamp_millis_opt(ms).unwrap())
    }

    #[test]
    fn keys_follow_the_documented_layout() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 7, 5, 0).unwrap();
        let id = ImageId::new(at);
        assert_eq!(raw_key(id), format!("raw/dt=2026-11-23/hr=07/{id}"));
        assert_eq!(
            thumb_key(id),
            format!("derived/dt=2026-11-23/hr=07/{id}/thumb.jpg")
        );
        assert_eq!(
            quarantine_key(id),
            format!("quarantine/dt=2026-11-23/hr=07/{id}.json")
        );
        assert_eq!(
            metadata_key(id, 12),
            format!("metadata/dt=2026-11-23/hr=07/{id}-12.parquet")
        );
        assert!(idempotency_key("abc", id).starts_with("idempotency/"));
    }

    #[test]
    fn rejects_a_key_whose_partition_lies_about_its_id() {
        let id = ImageId::new(Utc.with_ymd_and_hms(2026, 11, 23, 7, 0, 0).unwrap());
        let forged = format!("raw/dt=2020-01-01/hr=00/{id}");
        assert!(parse_key(&forged).is_err());
    }

    #[test]
    fn expiry_is_receipt_plus_retention() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 7, 0, 0).unwrap();
        let id = ImageId::new(at);
        let layout = Layout::new(Duration::days(7));
        assert_eq!(
            layout.key_expires_at(&manifest_key(id)).unwrap(),
            at + Duration::days(7)
        );
        // Unfinished direct uploads go long before the images.
        assert_eq!(
            layout.key_expires_at(&upload_data_key(id)).unwrap(),
            at + STAGED_UPLOAD_TTL
        );
        let short = Layout::new(Duration::minutes(30));
        assert_eq!(
            short.key_expires_at(&upload_ticket_key(id)).unwrap(),
            at + Duration::minutes(30)
        );
        assert!(parse_key(&format!("{}other", upload_prefix(id))).is_err());
    }

    proptest! {
        #[test]
        fn every_key_parses_back_to_its_id(ms in 0i64..4_102_444_800_000, rows in 1usize..100_000, name in "[a-z0-9_.]{1,20}", client in ".{0,40}") {
            let id = id_at(ms);
            for (key, area) in [
                (raw_key(id), Area::Raw),
                (thumb_key(id), Area::Derived),
                (manifest_key(id), Area::Derived),
                (script_key(id, &name), Area::Derived),
                (quarantine_key(id), Area::Quarantine),
                (metadata_key(id, rows), Area::Metadata),
                (idempotency_key(&client, id), Area::Idempotency),
                (erased_key(id), Area::Erased),
                (upload_data_key(id), Area::Uploads),
                (upload_ticket_key(id), Area::Uploads),
            ] {
                prop_assert_eq!(parse_key(&key), Ok(ParsedKey { area, id }));
            }
        }

        #[test]
        fn parse_never_panics(key in "(raw|derived|metadata|quarantine|idempotency|uploads|expiry)?/?.{0,120}") {
            let _ = parse_key(&key);
        }
    }
}
