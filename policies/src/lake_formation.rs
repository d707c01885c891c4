//! `imgpipe policies plan / apply`: the policy file against the live Lake
//! Formation grants, through the AWS SDK. Plan reads the LF-Tags
//! (`GetLFTag`), the table's column tags (`GetResourceLFTags`) and the
//! grants (`ListPermissions`), and prints the difference; apply makes
//! exactly that difference (`CreateLFTag`/`UpdateLFTag`,
//! `AddLFTagsToResource`, `BatchGrantPermissions`/`BatchRevokePermissions`),
//! so applying twice changes nothing the second time.
//!
//! Managed here: the tags, every column's `sensitivity`, and the grants on
//! LF-Tag expressions over that tag (grants of principals no longer in the
//! file are revoked). Row filters are data-cells filters, which Terraform
//! applies from the same file (`imgpipe policies render`); a row-filtered
//! principal is reported and left to it.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use aws_sdk_lakeformation::{
    Client,
    error::{ProvideErrorMetadata, SdkError},
    types::{
        BatchPermissionsRequestEntry, DataLakePrincipal, LfTag, LfTagPair, LfTagPolicyResource,
        Permission, Resource, ResourceType, TableWithColumnsResource,
    },
};

use crate::{Policy, TAG};

/// Which table the grants are about.
#[derive(Debug, Clone)]
pub struct Target {
    pub catalog_id: Option<String>,
    pub database: String,
    pub table: String,
}

/// A grant of SELECT and DESCRIBE on the tables whose tag has one of `values`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub principal_arn: String,
    pub tag: String,
    pub values: BTreeSet<String>,
    pub permissions: BTreeSet<String>,
}

/// The part of Lake Formation the policy governs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Tag key → allowed values.
    pub tags: BTreeMap<String, BTreeSet<String>>,
    /// Column → its `sensitivity` value.
    pub columns: BTreeMap<String, String>,
    pub grants: BTreeSet<Grant>,
}

const PERMISSIONS: [&str; 2] = ["DESCRIBE", "SELECT"];

/// What the file asks for, and the principals left to Terraform.
pub fn desired(policy: &Policy) -> (State, Vec<String>) {
    let tags = policy
        .tags
        .iter()
        .map(|(k, d)| (k.clone(), d.values.iter().cloned().collect()))
        .collect();
    let columns = policy
        .columns
        .iter()
        .flat_map(|(value, cols)| cols.iter().map(move |c| (c.clone(), value.clone())))
        .collect();
    let mut grants = BTreeSet::new();
    let mut filtered = Vec::new();
    for (name, p) in &policy.principals {
        if p.row_filter.is_some() {
            filtered.push(name.clone());
            continue;
        }
        grants.insert(Grant {
            principal_arn: p.arn.clone(),
            tag: TAG.to_owned(),
            values: p.sensitivity.iter().cloned().collect(),
            permissions: PERMISSIONS.iter().map(|s| (*s).to_owned()).collect(),
        });
    }
    (
        State {
            tags,
            columns,
            grants,
        },
        filtered,
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    CreateTag {
        key: String,
        values: BTreeSet<String>,
    },
    UpdateTag {
        key: String,
        add: BTreeSet<String>,
        remove: BTreeSet<String>,
    },
    /// Give these columns this `sensitivity` value (replacing another).
    TagColumns {
        value: String,
        columns: Vec<(String, Option<String>)>,
    },
    Grant(Grant),
    Revoke(Grant),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        match self {
            Change::CreateTag { key, values } => write!(f, "+ lf-tag {key} = [{}]", list(values)),
            Change::UpdateTag { key, add, remove } => {
                write!(f, "~ lf-tag {key}:")?;
                if !add.is_empty() {
                    write!(f, " add [{}]", list(add))?;
                }
                if !remove.is_empty() {
                    write!(f, " remove [{}]", list(remove))?;
                }
                Ok(())
            }
            Change::TagColumns { value, columns } => {
                let cols: Vec<String> = columns
                    .iter()
                    .map(|(c, was)| match was {
                        Some(w) => format!("{c} (was {w})"),
                        None => c.clone(),
                    })
                    .collect();
                write!(f, "~ columns {TAG}={value}: {}", cols.join(", "))
            }
            Change::Grant(g) => write!(f, "+ grant {g}"),
            Change::Revoke(g) => write!(f, "- revoke {g}"),
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        write!(
            f,
            "{} on tables where {} in [{}] to {}",
            join(&self.permissions),
            self.tag,
            join(&self.values),
            self.principal_arn
        )
    }
}

/// The changes that turn `live` into `want`, tags first, grants last.
pub fn diff(live: &State, want: &State) -> Vec<Change> {
    let mut changes = Vec::new();
    for (key, values) in &want.tags {
        match live.tags.get(key) {
            None => changes.push(Change::CreateTag {
                key: key.clone(),
                values: values.clone(),
            }),
            Some(have) if have != values => changes.push(Change::UpdateTag {
                key: key.clone(),
                add: values.difference(have).cloned().collect(),
                remove: have.difference(values).cloned().collect(),
            }),
            Some(_) => {}
        }
    }
    let mut by_value: BTreeMap<&String, Vec<(String, Option<String>)>> = BTreeMap::new();
    for (column, value) in &want.columns {
        let have = live.columns.get(column);
        if have != Some(value) {
            by_value
                .entry(value)
                .or_default()
                .push((column.clone(), have.cloned()));
        }
    }
    changes.extend(
        by_value
            .into_iter()
            .map(|(value, columns)| Change::TagColumns {
                value: value.clone(),
                columns,
            }),
    );
    changes.extend(
        live.grants
            .difference(&want.grants)
            .cloned()
            .map(Change::Revoke),
    );
    changes.extend(
        want.grants
            .difference(&live.grants)
            .cloned()
            .map(Change::Grant),
    );
    changes
}

#[derive(Debug, thiserror::Error)]
pub enum LakeFormationError {
    #[error("Lake Formation {operation}: {detail}")]
    Call {
        operation: &'static str,
        detail: String,
    },
    #[error("Lake Formation {operation} refused: {detail}")]
    Refused {
        operation: &'static str,
        detail: String,
    },
}

fn call_error<E: ProvideErrorMetadata + fmt::Debug, R: fmt::Debug>(
    operation: &'static str,
) -> impl Fn(SdkError<E, R>) -> LakeFormationError {
    move |e| LakeFormationError::Call {
        operation,
        detail: match e.as_service_error() {
            Some(s) => format!(
                "{}: {}",
                s.code().unwrap_or("error"),
                s.message().unwrap_or_default()
            ),
            None => format!("{e:?}"),
        },
    }
}

fn not_found<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "EntityNotFoundException")
}

fn build_error(
    operation: &'static str,
) -> impl Fn(aws_sdk_lakeformation::error::BuildError) -> LakeFormationError {
    move |e| LakeFormationError::Call {
        operation,
        detail: e.to_string(),
    }
}

fn table_columns(target: &Target, columns: Vec<String>) -> Result<Resource, LakeFormationError> {
    let table = TableWithColumnsResource::builder()
        .set_catalog_id(target.catalog_id.clone())
        .database_name(&target.database)
        .name(&target.table)
        .set_column_names(Some(columns))
        .build()
        .map_err(build_error("TableWithColumns"))?;
    Ok(Resource::builder().table_with_columns(table).build())
}

/// The live state of what the policy governs.
pub async fn live(
    client: &Client,
    target: &Target,
    policy: &Policy,
) -> Result<State, LakeFormationError> {
    let mut state = State::default();
    for key in policy.tags.keys() {
        match client
            .get_lf_tag()
            .set_catalog_id(target.catalog_id.clone())
            .tag_key(key)
            .send()
            .await
        {
            // An LF-Tag has at least one value: an empty answer (as some
            // implementations give for a missing key) means there is none.
            Ok(tag) if tag.tag_values().is_empty() => {}
            Ok(tag) => {
                state
                    .tags
                    .insert(key.clone(), tag.tag_values().iter().cloned().collect());
            }
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(call_error("GetLFTag")(e)),
        }
    }
    let all_columns: Vec<String> = policy.columns.values().flatten().cloned().collect();
    if state.tags.contains_key(TAG) {
        let tags = client
            .get_resource_lf_tags()
            .set_catalog_id(target.catalog_id.clone())
            .resource(table_columns(target, all_columns)?)
            .send()
            .await;
        match tags {
            Ok(tags) => {
                for column in tags.lf_tags_on_columns() {
                    let value = column
                        .lf_tags()
                        .iter()
                        .find(|t| t.tag_key() == TAG)
                        .and_then(|t| t.tag_values().first());
                    if let (Some(name), Some(value)) = (column.name(), value) {
                        state.columns.insert(name.to_owned(), value.clone());
                    }
                }
            }
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(call_error("GetResourceLFTags")(e)),
        }
    }
    let mut token = None;
    loop {
        let page = client
            .list_permissions()
            .set_catalog_id(target.catalog_id.clone())
            .set_next_token(token)
            .send()
            .await
            .map_err(call_error("ListPermissions"))?;
        for p in page.principal_resource_permissions() {
            if let Some(grant) = as_grant(p) {
                state.grants.insert(grant);
            }
        }
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    Ok(state)
}

/// A live permission we manage: on an LF-Tag expression over our tag.
fn as_grant(p: &aws_sdk_lakeformation::types::PrincipalResourcePermissions) -> Option<Grant> {
    let policy = p.resource()?.lf_tag_policy()?;
    let [tag] = policy.expression() else {
        return None;
    };
    if tag.tag_key() != TAG {
        return None;
    }
    Some(Grant {
        principal_arn: p.principal()?.data_lake_principal_identifier()?.to_owned(),
        tag: tag.tag_key().to_owned(),
        values: tag.tag_values().iter().cloned().collect(),
        permissions: p
            .permissions()
            .iter()
            .map(|x| x.as_str().to_owned())
            .collect(),
    })
}

fn grant_entry(
    id: usize,
    g: &Grant,
    target: &Target,
) -> Result<BatchPermissionsRequestEntry, LakeFormationError> {
    let expression = LfTag::builder()
        .tag_key(&g.tag)
        .set_tag_values(Some(g.values.iter().cloned().collect()))
        .build()
        .map_err(build_error("LFTag"))?;
    let policy = LfTagPolicyResource::builder()
        .set_catalog_id(target.catalog_id.clone())
        .resource_type(ResourceType::Table)
        .expression(expression)
        .build()
        .map_err(build_error("LFTagPolicy"))?;
    BatchPermissionsRequestEntry::builder()
        .id(id.to_string())
        .principal(
            DataLakePrincipal::builder()
                .data_lake_principal_identifier(&g.principal_arn)
                .build(),
        )
        .resource(Resource::builder().lf_tag_policy(policy).build())
        .set_permissions(Some(
            g.permissions
                .iter()
                .map(|p| Permission::from(p.as_str()))
                .collect(),
        ))
        .build()
        .map_err(build_error("BatchPermissionsRequestEntry"))
}

/// Batch calls answer 200 with per-entry failures: the first is the error.
fn refused<F: fmt::Debug>(
    operation: &'static str,
    failures: &[F],
) -> Result<(), LakeFormationError> {
    match failures.first() {
        None => Ok(()),
        Some(failure) => Err(LakeFormationError::Refused {
            operation,
            detail: format!("{failure:?}"),
        }),
    }
}

/// Make `changes`, in order.
pub async fn apply(
    client: &Client,
    target: &Target,
    changes: &[Change],
) -> Result<(), LakeFormationError> {
    let catalog = || target.catalog_id.clone();
    let mut grants = Vec::new();
    let mut revokes = Vec::new();
    for (i, change) in changes.iter().enumerate() {
        match change {
            Change::CreateTag { key, values } => {
                client
                    .create_lf_tag()
                    .set_catalog_id(catalog())
                    .tag_key(key)
                    .set_tag_values(Some(values.iter().cloned().collect()))
                    .send()
                    .await
                    .map_err(call_error("CreateLFTag"))?;
            }
            Change::UpdateTag { key, add, remove } => {
                client
                    .update_lf_tag()
                    .set_catalog_id(catalog())
                    .tag_key(key)
                    .set_tag_values_to_add((!add.is_empty()).then(|| add.iter().cloned().collect()))
                    .set_tag_values_to_delete(
                        (!remove.is_empty()).then(|| remove.iter().cloned().collect()),
                    )
                    .send()
                    .await
                    .map_err(call_error("UpdateLFTag"))?;
            }
            Change::TagColumns { value, columns } => {
                let pair = LfTagPair::builder()
                    .set_catalog_id(catalog())
                    .tag_key(TAG)
                    .tag_values(value)
                    .build()
                    .map_err(build_error("LFTagPair"))?;
                let names = columns.iter().map(|(c, _)| c.clone()).collect();
                let out = client
                    .add_lf_tags_to_resource()
                    .set_catalog_id(catalog())
                    .resource(table_columns(target, names)?)
                    .lf_tags(pair)
                    .send()
                    .await
                    .map_err(call_error("AddLFTagsToResource"))?;
                refused("AddLFTagsToResource", out.failures())?;
            }
            Change::Grant(g) => grants.push(grant_entry(i, g, target)?),
            Change::Revoke(g) => revokes.push(grant_entry(i, g, target)?),
        }
    }
    // Revokes before grants: a principal whose values changed loses the
    // old grant and gets the new one.
    for batch in revokes.chunks(20) {
        let out = client
            .batch_revoke_permissions()
            .set_catalog_id(catalog())
            .set_entries(Some(batch.to_vec()))
            .send()
            .await
            .map_err(call_error("BatchRevokePermissions"))?;
        refused("BatchRevokePermissions", out.failures())?;
    }
    for batch in grants.chunks(20) {
        let out = client
            .batch_grant_permissions()
            .set_catalog_id(catalog())
            .set_entries(Some(batch.to_vec()))
            .send()
            .await
            .map_err(call_error("BatchGrantPermissions"))?;
        refused("BatchGrantPermissions", out.failures())?;
    }
    Ok(())
}

/// A client from the standard AWS configuration, or `endpoint` (moto…).
pub async fn client(endpoint: Option<&str>, timeout: std::time::Duration) -> Client {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout * 3)
        .build();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await;
    let mut config = aws_sdk_lakeformation::config::Builder::from(&shared);
    if let Some(url) = endpoint {
        config = config.endpoint_url(url);
    }
    Client::from_conf(config.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_is_empty_when_live_matches_and_names_every_change() {
        let policy = Policy::load(None).unwrap();
        let (want, filtered) = desired(&policy);
        assert_eq!(filtered, vec!["kafka-analyst".to_owned()]);
        assert!(diff(&want, &want).is_empty());

        let from_nothing = diff(&State::default(), &want);
        assert!(matches!(from_nothing[0], Change::CreateTag { .. }));
        assert_eq!(
            from_nothing
                .iter()
                .filter(|c| matches!(c, Change::Grant(_)))
                .count(),
            2
        );

        let mut live = want.clone();
        live.columns.insert("gps_lat".into(), "public".into());
        live.tags.get_mut(TAG).unwrap().insert("secret".into());
        let gone = Grant {
            principal_arn: "arn:aws:iam::1:role/old".into(),
            tag: TAG.into(),
            values: ["public".to_owned()].into(),
            permissions: ["SELECT".to_owned()].into(),
        };
        live.grants.insert(gone.clone());
        let changes = diff(&live, &want);
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert!(changes.contains(&Change::Revoke(gone)));
        assert!(
            changes
                .iter()
                .any(|c| c.to_string() == "~ columns sensitivity=restricted: gps_lat (was public)")
        );
        assert!(
            changes
                .iter()
                .any(|c| c.to_string() == "~ lf-tag sensitivity: remove [secret]")
        );
    }
}
