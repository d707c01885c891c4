//! What each mode does to the lake, declared once: which areas it reads,
//! writes, lists and deletes. The deployed task roles are rendered from
//! this (`imgpipe policies task-access`, `infra/modules/compute/access.tf.json`),
//! and a test records every request each mode makes on a counting store
//! and checks it against this declaration, both ways: nothing undeclared is
//! asked for, nothing declared goes unused.

use serde::Serialize;

use crate::layout::Area;

/// A process kind, as deployed: one task role each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `imgpipe serve`: admission over HTTP, direct uploads, erasure.
    Api,
    /// `imgpipe bridge`: admission from Kafka.
    Bridge,
    /// `imgpipe process`.
    Processor,
    /// `imgpipe sweep`.
    Sweeper,
    /// `imgpipe audit`: reads only.
    Audit,
}

impl Mode {
    pub const ALL: [Mode; 5] = [
        Mode::Api,
        Mode::Bridge,
        Mode::Processor,
        Mode::Sweeper,
        Mode::Audit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Api => "api",
            Mode::Bridge => "bridge",
            Mode::Processor => "processor",
            Mode::Sweeper => "sweeper",
            Mode::Audit => "audit",
        }
    }
}

/// One kind of request, as S3 authorises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// GET or HEAD of an object (`s3:GetObject`).
    Read,
    /// PUT of an object, or a presigned PUT URL handed out
    /// (`s3:PutObject`).
    Write,
    /// Listing keys or versions under a prefix (`s3:ListBucket`,
    /// `s3:ListBucketVersions`).
    List,
    /// Deleting the current version: a delete marker on a versioned bucket
    /// (`s3:DeleteObject`).
    Delete,
    /// Deleting one version for good (`s3:DeleteObjectVersion`).
    DeleteVersion,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Read, Op::Write, Op::List, Op::Delete, Op::DeleteVersion];
}

use Area::*;

/// The areas `mode` may touch with `op`. Why each one, briefly:
/// - api: admits (raw/, idempotency/ with its expiry/ marker, and the
///   content index it reads first), stages direct uploads (uploads/),
///   erases (a tombstone in erased/, every version of the image's objects
///   and its markers purged, its metadata/ file rewritten), answers status
///   and listings (derived/, quarantine/, metadata/).
/// - bridge: admits like the api (reading an image's state when a message
///   comes again); takes back its own writes when an erasure or an earlier
///   duplicate raced it; reopens a closed hour (its checkpoint/ marker)
///   for a message that waited in its topic.
/// - processor: reads the image and its recorded event (idempotency/),
///   writes derived/, metadata/, quarantine/; removes them when an erasure
///   raced it; at start lists the hours not yet checkpointed (checkpoint/,
///   raw/) to repair rows a crash lost.
/// - sweeper: deletes what expired anywhere; closes settled hours (merges
///   metadata/ files, writes the hour's checkpoint/ marker); finishes
///   erasures a crash cut short, as the api would (tombstone, dedup
///   record and its marker written again).
/// - audit: lists every version everywhere; reads metadata/ files only, for
///   their expired rows.
///
/// No mode deletes without a version id (`Op::Delete`): on the versioned
/// bucket every removal purges by version.
pub fn areas(mode: Mode, op: Op) -> &'static [Area] {
    match (mode, op) {
        (Mode::Api, Op::Read) => &[
            Raw,
            Derived,
            Metadata,
            Quarantine,
            Idempotency,
            Erased,
            Uploads,
        ],
        (Mode::Api, Op::Write) => &[Raw, Idempotency, Expiry, Uploads, Erased, Metadata],
        (Mode::Api, Op::List) => &[
            Raw,
            Derived,
            Metadata,
            Quarantine,
            Idempotency,
            Erased,
            Expiry,
            Uploads,
        ],
        (Mode::Api, Op::Delete) => &[],
        (Mode::Api, Op::DeleteVersion) => &[
            Raw,
            Derived,
            Metadata,
            Quarantine,
            Idempotency,
            Expiry,
            Uploads,
        ],

        (Mode::Bridge, Op::Read) => &[Raw, Derived, Quarantine, Idempotency, Erased],
        (Mode::Bridge, Op::Write) => &[Raw, Idempotency, Expiry],
        (Mode::Bridge, Op::List) => &[Raw, Idempotency, Expiry, Checkpoint],
        (Mode::Bridge, Op::Delete) => &[],
        (Mode::Bridge, Op::DeleteVersion) => &[Raw, Idempotency, Expiry, Checkpoint],

        (Mode::Processor, Op::Read) => &[Raw, Derived, Metadata, Quarantine, Idempotency, Erased],
        (Mode::Processor, Op::Write) => &[Derived, Metadata, Quarantine],
        (Mode::Processor, Op::List) => &[Raw, Derived, Metadata, Quarantine, Erased, Checkpoint],
        (Mode::Processor, Op::Delete) => &[],
        (Mode::Processor, Op::DeleteVersion) => &[Derived, Metadata, Quarantine],

        (Mode::Sweeper, Op::Read) => &[Raw, Derived, Metadata, Quarantine, Idempotency],
        (Mode::Sweeper, Op::Write) => &[Metadata, Checkpoint, Erased, Idempotency, Expiry],
        (Mode::Sweeper, Op::List) => &Area::ALL,
        (Mode::Sweeper, Op::Delete) => &[],
        (Mode::Sweeper, Op::DeleteVersion) => &Area::ALL,

        (Mode::Audit, Op::Read) => &[Metadata],
        (Mode::Audit, Op::List) => &Area::ALL,
        (Mode::Audit, _) => &[],
    }
}

/// Which area a key or listing prefix (relative to the lake's prefix) is
/// in; `None` for the lake's root (a listing of top-level prefixes).
pub fn area_of(key: &str) -> Option<Area> {
    Area::ALL.into_iter().find(|a| key.starts_with(a.prefix()))
}

/// One request a mode made: what it did, to which key or prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Access {
    pub op: Op,
    pub key: String,
}

/// The requests in `made` that `mode`'s declaration does not allow.
pub fn undeclared(mode: Mode, made: &[Access]) -> Vec<Access> {
    made.iter()
        .filter(|a| match area_of(&a.key) {
            Some(area) => !areas(mode, a.op).contains(&area),
            // Listing the lake's top level: only modes that list every area.
            None => a.op != Op::List || areas(mode, Op::List).len() != Area::ALL.len(),
        })
        .cloned()
        .collect()
}

/// The declared (op, area) pairs `made` never used.
pub fn unused(mode: Mode, made: &[Access]) -> Vec<(Op, Area)> {
    let mut out = Vec::new();
    for op in Op::ALL {
        for &area in areas(mode, op) {
            let used = made.iter().any(|a| {
                a.op == op
                    && (area_of(&a.key) == Some(area)
                        || (a.op == Op::List && area_of(&a.key).is_none()))
            });
            if !used {
                out.push((op, area));
            }
        }
    }
    out
}

/// The declaration as Terraform JSON for `infra/modules/compute`: a local
/// `lake_access` mapping each mode to its areas' prefixes per operation,
/// which `iam.tf` turns into statements.
pub fn terraform() -> serde_json::Value {
    let mut modes = serde_json::Map::new();
    for mode in Mode::ALL {
        let mut ops = serde_json::Map::new();
        for op in Op::ALL {
            let mut prefixes: Vec<&str> = areas(mode, op).iter().map(|a| a.prefix()).collect();
            // A mode that lists every area also lists the lake's top level.
            if op == Op::List && prefixes.len() == Area::ALL.len() {
                prefixes.push("");
            }
            ops.insert(
                serde_json::to_value(op)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                serde_json::json!(prefixes),
            );
        }
        modes.insert(mode.name().to_owned(), serde_json::Value::Object(ops));
    }
    serde_json::json!({
        "//": "Generated by `imgpipe policies task-access` from lake/src/access.rs; a test keeps them equal.",
        "locals": { "lake_access": modes },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_area_is_someones_and_the_audit_writes_nothing() {
        for area in Area::ALL {
            assert!(
                areas(Mode::Sweeper, Op::DeleteVersion).contains(&area),
                "{area:?} never expires"
            );
            assert!(
                areas(Mode::Audit, Op::List).contains(&area),
                "{area:?} unaudited"
            );
        }
        for op in [Op::Write, Op::Delete, Op::DeleteVersion] {
            assert!(areas(Mode::Audit, op).is_empty());
        }
    }

    #[test]
    fn undeclared_requests_are_named() {
        let made = [
            Access {
                op: Op::Read,
                key: "idempotency/ab/cd".into(),
            },
            Access {
                op: Op::Write,
                key: "raw/dt=2026-01-01/hr=00/x".into(),
            },
        ];
        assert_eq!(undeclared(Mode::Processor, &made), vec![made[1].clone()]);
        assert!(undeclared(Mode::Api, &made).is_empty());
        let root = [Access {
            op: Op::List,
            key: String::new(),
        }];
        assert!(undeclared(Mode::Sweeper, &root).is_empty());
        assert_eq!(undeclared(Mode::Bridge, &root).len(), 1);
    }
}
