//! The audit: walk everything where data lives and fail if anything is past
//! its expiry, or carries no expiry we can read.

use std::fmt;

use chrono::{DateTime, Utc};
use lake::{Layout, SharedStore, StoreError, layout::Area};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    /// Still present after its expiry.
    Expired {
        key: String,
        expired_at: DateTime<Utc>,
    },
    /// A metadata row still in a file after its image's expiry (the file's
    /// own key, named after its newest row, is not expired yet).
    ExpiredRow {
        key: String,
        id: String,
        expired_at: DateTime<Utc>,
    },
    /// A metadata file that cannot be read: its rows' expiry is unknown.
    UnreadableRows { key: String, detail: String },
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
    /// How far past its expiry the most overdue object is, in seconds: the
    /// worst purge lateness the audit can see (0 when nothing is overdue).
    pub worst_lateness_seconds: i64,
    pub violations: Vec<Violation>,
    /// Where data naming images lives that this audit cannot read, each
    /// with what keeps it inside the period instead: said in every report
    /// so a passing audit is not read as covering them.
    pub unchecked: &'static [&'static str],
}

/// What the audit cannot see from the lake and the brokers.
pub const UNCHECKED: &[&str] = &[
    "CloudWatch log groups (3 days, set by Terraform; CloudWatch deletes up to 72 h late)",
    "the access-log bucket: S3 server access and ALB logs (its lifecycle rule, at most 7 days)",
    "Athena query results (the results bucket's lifecycle rule) and tables analysts create from queries (CTAS)",
    "Redshift snapshots and QuickSight (direct query only: no SPICE copy)",
    "producers' claim-check buckets (their owners' lifecycle rules)",
    "messages on the brokers (topic retention is checked, not the messages)",
];

impl AuditReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "audit at {}: {} objects, {} bytes, oldest received {}, worst lateness {}",
            self.at.to_rfc3339(),
            self.objects,
            self.bytes,
            self.oldest.map_or_else(|| "-".into(), |t| t.to_rfc3339()),
            humanize(chrono::Duration::seconds(self.worst_lateness_seconds))
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
                Violation::ExpiredRow {
                    key,
                    id,
                    expired_at,
                } => {
                    writeln!(
                        f,
                        "VIOLATION row of {id} expired {} ago: in {key}",
                        humanize(self.at - *expired_at)
                    )?;
                }
                Violation::UnreadableRows { key, detail } => {
                    writeln!(f, "VIOLATION unreadable rows: {key}: {detail}")?;
                }
                Violation::NoExpiry { key } => writeln!(f, "VIOLATION no expiry: {key}")?,
                Violation::Backstop { detail } => writeln!(f, "VIOLATION {detail}")?,
            }
        }
        for place in self.unchecked {
            writeln!(f, "not checked here: {place}")?;
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
        worst_lateness_seconds: 0,
        violations: Vec::new(),
        unchecked: UNCHECKED,
    };
    // The whole store, not only the known areas: data under an unknown
    // prefix is exactly what an audit must catch.
    // Every version and delete marker: a noncurrent version is data too.
    // Metadata files kept whose oldest rows may have expired: their rows
    // are checked one by one below.
    let mut row_files = Vec::new();
    for obj in store.list_versions("").await? {
        report.objects += 1;
        report.bytes += obj.size;
        match lake::layout::parse_key(&obj.key) {
            Ok(parsed) => {
                let received = parsed.id.received_at();
                report.oldest = Some(report.oldest.map_or(received, |o| o.min(received)));
                let expired_at = received + layout.area_retention(parsed.area);
                if parsed.area == Area::Metadata
                    && obj.is_latest
                    && !obj.delete_marker
                    && expired_at > now
                    && lake::layout::hour_start(received) + layout.retention <= now
                {
                    row_files.push(obj.key.clone());
                }
                if expired_at <= now {
                    report.worst_lateness_seconds = report
                        .worst_lateness_seconds
                        .max((now - expired_at).num_seconds());
                    report.violations.push(Violation::Expired {
                        key: obj.key,
                        expired_at,
                    });
                }
            }
            Err(_) => report.violations.push(Violation::NoExpiry { key: obj.key }),
        }
    }
    // A file is named after its newest row: the rows before it expire
    // first, and are checked here, not judged by the key.
    for key in row_files {
        let Some(file) = store.get(&key).await? else {
            continue;
        };
        match lake::schema::read_ids(file) {
            Ok(ids) => {
                for id in ids {
                    let expired_at = layout.expires_at(id);
                    if expired_at <= now {
                        report.worst_lateness_seconds = report
                            .worst_lateness_seconds
                            .max((now - expired_at).num_seconds());
                        report.violations.push(Violation::ExpiredRow {
                            key: key.clone(),
                            id: id.to_string(),
                            expired_at,
                        });
                    }
                }
            }
            Err(e) => report.violations.push(Violation::UnreadableRows {
                key,
                detail: e.to_string(),
            }),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use chrono::TimeZone;
    use lake::{
        ImageId, layout,
        store::{FsStore, PutOptions},
    };

    use super::*;

    /// A passing report still says, in text and JSON, what it did not see.
    #[tokio::test]
    async fn every_report_names_what_it_cannot_check() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let report = audit(
            &store,
            Layout::new(chrono::Duration::days(7)),
            None,
            Utc::now(),
        )
        .await
        .unwrap();
        assert!(report.passed());
        let text = report.to_string();
        for place in UNCHECKED {
            assert!(
                text.contains(&format!("not checked here: {place}")),
                "{text}"
            );
        }
        assert!(text.ends_with("PASS: nothing is past its expiry"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["unchecked"].as_array().unwrap().len(), UNCHECKED.len());
        assert!(json["unchecked"].to_string().contains("CloudWatch"));
    }

    /// The audit names how late the most overdue object is.
    #[tokio::test]
    async fn reports_the_worst_lateness_it_sees() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let week = chrono::Duration::days(7);
        let late = ImageId::new(now - week - chrono::Duration::minutes(90));
        let less_late = ImageId::new(now - week - chrono::Duration::minutes(5));
        let kept = ImageId::new(now - chrono::Duration::days(1));
        for id in [late, less_late, kept] {
            let key = layout::raw_key(id);
            store
                .put(&key, Bytes::from_static(b"x"), &PutOptions::default())
                .await
                .unwrap();
        }
        let report = audit(&store, Layout::new(week), None, now).await.unwrap();
        assert_eq!(report.worst_lateness_seconds, 90 * 60);
        assert_eq!(report.violations.len(), 2);
        assert!(
            report.to_string().contains("worst lateness 0d 1h 30m"),
            "{report}"
        );
    }

    /// A direct upload never completed is kept two hours, not a week: one
    /// older is a violation even though an image of its age would be fine.
    #[tokio::test]
    async fn a_stale_staged_upload_is_a_violation() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        let stale = ImageId::new(now - chrono::Duration::hours(3));
        let fresh = ImageId::new(now - chrono::Duration::minutes(30));
        for id in [stale, fresh] {
            for key in [layout::upload_data_key(id), layout::upload_ticket_key(id)] {
                store
                    .put(&key, Bytes::from_static(b"x"), &PutOptions::default())
                    .await
                    .unwrap();
            }
        }
        let report = audit(&store, Layout::new(chrono::Duration::days(7)), None, now)
            .await
            .unwrap();
        assert_eq!(report.violations.len(), 2, "{report}");
        assert!(report.to_string().contains(&stale.to_string()), "{report}");
        assert!(!report.to_string().contains(&fresh.to_string()), "{report}");
    }
}
