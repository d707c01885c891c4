//! The bucket's lifecycle rules: S3's own backstop behind the sweeper. S3
//! rounds expiry to the next midnight UTC and removes asynchronously, so
//! these rules only catch what the sweeper missed.
//!
//! One source of truth: [`rules`] renders both to the S3 API (`--apply`)
//! and to the Terraform that `infra/` declares; a test keeps them equal.

use aws_sdk_s3::{
    error::DisplayErrorContext,
    types::{
        AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus,
        LifecycleExpiration, LifecycleRule, LifecycleRuleFilter, NoncurrentVersionExpiration,
    },
};
use lake::store::S3Store;
use serde::Serialize;
use serde_json::json;

/// A lifecycle rule over the whole bucket (the bucket is imgpipe's alone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub id: String,
    pub expiration_days: Option<i32>,
    pub expired_object_delete_marker: bool,
    pub noncurrent_days: Option<i32>,
    pub abort_multipart_days: Option<i32>,
}

/// The rules for a retention period (whole days, rounded up).
pub fn rules(retention: chrono::Duration) -> Vec<Rule> {
    let days = i32::try_from((retention.num_seconds() + 86_399) / 86_400)
        .unwrap_or(7)
        .max(1);
    vec![
        Rule {
            id: "imgpipe-expire-everything".into(),
            expiration_days: Some(days),
            expired_object_delete_marker: false,
            noncurrent_days: Some(1),
            abort_multipart_days: Some(1),
        },
        // S3 refuses Days and ExpiredObjectDeleteMarker in one Expiration.
        Rule {
            id: "imgpipe-expired-delete-markers".into(),
            expiration_days: None,
            expired_object_delete_marker: true,
            noncurrent_days: None,
            abort_multipart_days: None,
        },
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("S3 {op} on bucket {bucket}: {detail}")]
    S3 {
        op: &'static str,
        bucket: String,
        detail: String,
    },
}

fn s3_error(op: &'static str, bucket: &str, e: impl std::error::Error) -> LifecycleError {
    LifecycleError::S3 {
        op,
        bucket: bucket.to_owned(),
        detail: DisplayErrorContext(e).to_string(),
    }
}

fn to_s3(rule: &Rule) -> Result<LifecycleRule, aws_sdk_s3::error::BuildError> {
    let expiration = if rule.expired_object_delete_marker {
        Some(
            LifecycleExpiration::builder()
                .expired_object_delete_marker(true)
                .build(),
        )
    } else {
        rule.expiration_days
            .map(|d| LifecycleExpiration::builder().days(d).build())
    };
    LifecycleRule::builder()
        .id(&rule.id)
        .status(ExpirationStatus::Enabled)
        .filter(LifecycleRuleFilter::builder().prefix("").build())
        .set_expiration(expiration)
        .set_noncurrent_version_expiration(rule.noncurrent_days.map(|d| {
            NoncurrentVersionExpiration::builder()
                .noncurrent_days(d)
                .build()
        }))
        .set_abort_incomplete_multipart_upload(rule.abort_multipart_days.map(|d| {
            AbortIncompleteMultipartUpload::builder()
                .days_after_initiation(d)
                .build()
        }))
        .build()
}

/// Read a rule back; `None` for rules that are disabled or not bucket-wide
/// (they protect only part of the bucket, so they do not count).
// `LifecycleRule::prefix` is deprecated but old rules still use it, and a
// rule limited to a prefix does not protect the whole bucket.
#[allow(deprecated)]
fn from_s3(rule: &LifecycleRule) -> Option<Rule> {
    let bucket_wide = rule.filter().is_none_or(|f| {
        f.prefix().unwrap_or_default().is_empty() && f.tag().is_none() && f.and().is_none()
    }) && rule.prefix().unwrap_or_default().is_empty();
    if rule.status() != &ExpirationStatus::Enabled || !bucket_wide {
        return None;
    }
    Some(Rule {
        id: rule.id().unwrap_or_default().to_owned(),
        expiration_days: rule.expiration().and_then(|e| e.days()),
        expired_object_delete_marker: rule
            .expiration()
            .and_then(|e| e.expired_object_delete_marker())
            .unwrap_or(false),
        noncurrent_days: rule
            .noncurrent_version_expiration()
            .and_then(|n| n.noncurrent_days()),
        abort_multipart_days: rule
            .abort_incomplete_multipart_upload()
            .and_then(|a| a.days_after_initiation()),
    })
}

/// The rules as Terraform JSON, for `infra/` to include as is.
pub fn terraform(rules: &[Rule]) -> serde_json::Value {
    let rule_blocks: Vec<serde_json::Value> = rules
        .iter()
        .map(|r| {
            let mut block =
                json!({ "id": r.id, "status": "Enabled", "filter": [{ "prefix": "" }] });
            if r.expired_object_delete_marker {
                block["expiration"] = json!([{ "expired_object_delete_marker": true }]);
            } else if let Some(days) = r.expiration_days {
                block["expiration"] = json!([{ "days": days }]);
            }
            if let Some(days) = r.noncurrent_days {
                block["noncurrent_version_expiration"] = json!([{ "noncurrent_days": days }]);
            }
            if let Some(days) = r.abort_multipart_days {
                block["abort_incomplete_multipart_upload"] =
                    json!([{ "days_after_initiation": days }]);
            }
            block
        })
        .collect();
    json!({
        "//": "Generated by `imgpipe retention lifecycle --print --format terraform`; a test keeps it equal to retention/src/lifecycle.rs.",
        "resource": {
            "aws_s3_bucket_lifecycle_configuration": {
                // The bucket by reference, and after versioning: the
                // noncurrent-version rule needs it, and Terraform orders
                // only what it can see (a variable name it cannot).
                "lake": {
                    "bucket": "${aws_s3_bucket.lake.id}",
                    "rule": rule_blocks,
                    "depends_on": ["aws_s3_bucket_versioning.lake"],
                }
            }
        }
    })
}

/// Put the rules on the bucket (replacing any others).
pub async fn apply(store: &S3Store, rules: &[Rule]) -> Result<(), LifecycleError> {
    let bucket = store.bucket();
    let s3_rules = rules
        .iter()
        .map(to_s3)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| s3_error("build lifecycle rule", bucket, e))?;
    let config = BucketLifecycleConfiguration::builder()
        .set_rules(Some(s3_rules))
        .build()
        .map_err(|e| s3_error("build lifecycle configuration", bucket, e))?;
    store
        .put_lifecycle(config)
        .await
        .map_err(|e| s3_error("PutBucketLifecycleConfiguration", bucket, e))?;
    Ok(())
}

/// The bucket-wide, enabled rules now on the bucket.
pub async fn read(store: &S3Store) -> Result<Vec<Rule>, LifecycleError> {
    let rules = store
        .lifecycle()
        .await
        .map_err(|e| s3_error("GetBucketLifecycleConfiguration", store.bucket(), e))?;
    Ok(rules.iter().filter_map(from_s3).collect())
}

/// What the bucket lacks, in words; empty when every wanted rule is there
/// (extra stricter rules are fine).
pub fn missing(wanted: &[Rule], actual: &[Rule]) -> Vec<String> {
    wanted
        .iter()
        .filter(|w| !actual.iter().any(|a| covers(a, w)))
        .map(|w| {
            format!(
                "lifecycle rule {} missing or different: want {}",
                w.id,
                serde_json::to_string(w).unwrap_or_default()
            )
        })
        .collect()
}

/// `a` does at least what `w` asks (ids aside).
fn covers(a: &Rule, w: &Rule) -> bool {
    let at_most = |have: Option<i32>, want: Option<i32>| match want {
        None => true,
        Some(want) => have.is_some_and(|h| h <= want),
    };
    at_most(a.expiration_days, w.expiration_days)
        && (!w.expired_object_delete_marker || a.expired_object_delete_marker)
        && at_most(a.noncurrent_days, w.noncurrent_days)
        && at_most(a.abort_multipart_days, w.abort_multipart_days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_up_and_rules_cover_themselves() {
        let r = rules(chrono::Duration::hours(36));
        assert_eq!(r[0].expiration_days, Some(2));
        assert!(missing(&r, &r).is_empty());
        assert_eq!(missing(&r, &[]).len(), 2);
        let mut lax = r.clone();
        lax[0].expiration_days = Some(30);
        assert_eq!(missing(&r, &lax).len(), 1);
    }

    #[test]
    fn rules_survive_the_s3_round_trip() {
        for rule in rules(chrono::Duration::days(7)) {
            assert_eq!(from_s3(&to_s3(&rule).unwrap()), Some(rule));
        }
    }
}
