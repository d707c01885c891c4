//! Image ids: UUIDv7, whose embedded millisecond timestamp *is* the receipt
//! time, so any key that carries an id tells when its data expires.

use std::{fmt, str::FromStr};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::{Timestamp, Uuid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ImageId(Uuid);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("not a UUID: {0}")]
    NotUuid(String),
    #[error("not a UUIDv7 image id: {0}")]
    NotV7(String),
}

impl ImageId {
    /// A new id stamped with `received_at` (millisecond precision).
    pub fn new(received_at: DateTime<Utc>) -> Self {
        let millis = u64::try_from(received_at.timestamp_millis()).unwrap_or(0);
        let ts = Timestamp::from_unix(
            uuid::NoContext,
            millis / 1000,
            u32::try_from((millis % 1000) * 1_000_000).unwrap_or(0),
        );
        Self(Uuid::new_v7(ts))
    }

    /// The receipt time embedded in the id.
    pub fn received_at(&self) -> DateTime<Utc> {
        let (secs, nanos) = self
            .0
            .get_timestamp()
            .map(|t| t.to_unix())
            .unwrap_or((0, 0));
        Utc.timestamp_opt(i64::try_from(secs).unwrap_or(0), nanos)
            .single()
            .unwrap_or_default()
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

impl FromStr for ImageId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only the canonical hyphenated form: keys must have one spelling.
        if s.len() != 36 {
            return Err(IdError::NotUuid(s.to_owned()));
        }
        let uuid = Uuid::try_parse(s).map_err(|_| IdError::NotUuid(s.to_owned()))?;
        if uuid.get_version_num() != 7 || uuid.as_hyphenated().to_string() != s {
            return Err(IdError::NotV7(s.to_owned()));
        }
        Ok(Self(uuid))
    }
}

impl TryFrom<String> for ImageId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ImageId> for String {
    fn from(id: ImageId) -> Self {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn id_carries_receipt_time_to_the_millisecond() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 13, 59, 59).unwrap()
            + chrono::Duration::milliseconds(123);
        let id = ImageId::new(at);
        assert_eq!(id.received_at(), at);
    }

    #[test]
    fn rejects_other_uuid_versions_and_spellings() {
        assert!(matches!(
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8".parse::<ImageId>(),
            Err(IdError::NotV7(_))
        ));
        let id = ImageId::new(Utc::now()).to_string();
        assert!(id.to_uppercase().parse::<ImageId>().is_err());
        assert!(id.replace('-', "").parse::<ImageId>().is_err());
        assert!("../../etc/passwd".parse::<ImageId>().is_err());
    }

    proptest! {
        #[test]
        fn roundtrips_any_time(ms in 0i64..4_102_444_800_000) {
            let at = Utc.timestamp_millis_opt(ms).unwrap();
            let id = ImageId::new(at);
            prop_assert_eq!(id.received_at(), at);
            prop_assert_eq!(id.to_string().parse::<ImageId>().unwrap(), id);
        }

        #[test]
        fn parse_never_panics(s in ".{0,64}") {
            let _ = s.parse::<ImageId>();
        }
    }
}
