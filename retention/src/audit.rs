//! The audit: walk everything where data lives and fail if anything is past
//! its expiry, or carries no expiry we can read.

use std::fmt;

use chrono::{DateTime, Utc};
use lake::{Layout, SharedStore, StoreError};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    /// Still present after its expiry.
    Expired {
        key: String,
        expired_at: DateTime<Utc>,
    },
    /// Not a lake key: nothing says when it must go.
    NoExpiry { key: String },
    /// A store whose own rules could let data outlive its expiry.
    Backstop { detail: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    pub at: DateTime<Utc>,
    pub objects: u64,
    pub bytes: u64,
    /// Receipt time of the oldest object still stored.
    pub oldest: Option<DateTime<Utc>>,
    pub violations: Vec<Violation>,
}

impl AuditReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "audit at {}: {} objects, {} bytes, oldest received {}",
            self.at.to_rfc3339(),
            self.objects,
            self.bytes,
            self.oldest.map_or_else(|| "-".into(), |t| t.to_rfc3339())
        )?;
        for v in &self.violations {
            match v {
                Violation::Expired { key, expired_at } => {
                    writeln!(
                        f,
                        "VIOLATION expired {} ago: {key}",
                        humanize(self.at - *expired_at)
                    )?;
                }
                Violation::NoExpiry { key } => writeln!(f, "VIOLATION no expiry: {key}")?,
                Violation::Backstop { detail } => writeln!(f, "VIOLATION {detail}")?,
            }
        }
        if self.passed() {
            write!(f, "PASS: nothing is past its expiry")
        } else {
            write!(f, "FAIL: {} violations", self.violations.len())
        }
    }
}

fn humanize(d: chrono::Duration) -> String {
    let m = d.num_minutes();
    format!("{}d {}h {}m", m / 1440, (m / 60) % 24, m % 60)
}

/// Walk every area of the lake at instant `now`.
pub async fn audit(
    store: &SharedStore,
    layout: Layout,
    scratch: Option<&crate::scratch::Scratch>,
    now: DateTime<Utc>,
) -> Result<AuditReport, StoreError> {
    let mut report = AuditReport {
        at: now,
        objects: 0,
        bytes: 0,
        oldest: None,
        violations: Vec::new(),
    };
    // The whole store, not only the known areas: data under an unknown
    // prefix is exactly what an audit must catch.
    // Every version and delete marker: a noncurrent version is data too.
    for obj in store.list_versions("").await? {
        report.objects += 1;
        report.bytes += obj.size;
        match lake::layout::parse_key(&obj.key) {
            Ok(parsed) => {
                let received = parsed.id.received_at();
                report.oldest = Some(report.oldest.map_or(received, |o| o.min(received)));
                let expired_at = layout.expires_at(parsed.id);
                if expired_at <= now {
                    report.violations.push(Violation::Expired {
                        key: obj.key,
                        expired_at,
                    });
                }
            }
            Err(_) => report.violations.push(Violation::NoExpiry { key: obj.key }),
        }
    }
    // Partial writes of crashed writers: image bytes with no key at all.
    for path in store.stale_scratch().await? {
        report.violations.push(Violation::NoExpiry { key: path });
    }
    // A script run's copy of an image that a crash left behind.
    for path in scratch.map(|s| s.stale(now)).unwrap_or_default() {
        report.violations.push(Violation::NoExpiry {
            key: path.display().to_string(),
        });
    }
    Ok(report)
}
