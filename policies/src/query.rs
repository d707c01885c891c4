//! `imgpipe query`: SQL over the lake's metadata (DataFusion), as one
//! principal of the policy. The table `images` a principal queries *is*
//! its view: only the columns its tags grant, only the rows its filter
//! admits, and only rows still within retention. The full table is never
//! registered, so no query can reach around the view.

use std::sync::Arc;

use chrono::{DateTime, DurationRound, Utc};
use datafusion::{
    arrow::{array::RecordBatch, datatypes::SchemaRef},
    dataframe::DataFrame,
    datasource::MemTable,
    error::DataFusionError,
    execution::context::SQLOptions,
    prelude::{SessionContext, col, lit},
    scalar::ScalarValue,
};
use lake::{
    SharedStore, StoreError,
    layout::{self, Area},
};

use crate::{Policy, PolicyError, Principal};

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("access denied: column {0}")]
    ColumnDenied(String),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("metadata file {key}: {detail}")]
    File { key: String, detail: String },
    #[error("{0}")]
    Sql(String),
}

/// The metadata rows received in `[from, to)`, reading only the hour
/// partitions that range covers.
pub async fn load_range(
    store: &SharedStore,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<RecordBatch>, QueryError> {
    let mut batches = Vec::new();
    let mut hour = from
        .duration_trunc(chrono::Duration::hours(1))
        .unwrap_or(from);
    while hour < to {
        let prefix = format!("{}{}/", Area::Metadata.prefix(), layout::partition(hour));
        batches.extend(read_files(store, &prefix).await?);
        hour += chrono::Duration::hours(1);
    }
    Ok(batches)
}

/// Only the rows received in `[from, to)`: an hour's file holds the whole
/// hour, a window may start or end inside it.
pub fn received_within(
    batches: Vec<RecordBatch>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<RecordBatch>, QueryError> {
    use datafusion::arrow::{
        array::{Array, BooleanArray, TimestampMillisecondArray},
        compute::filter_record_batch,
    };
    let (from, to) = (from.timestamp_millis(), to.timestamp_millis());
    batches
        .into_iter()
        .map(|batch| {
            let received = batch
                .column_by_name("received_at")
                .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
                .ok_or_else(|| QueryError::Sql("metadata without received_at".into()))?;
            let keep: BooleanArray = (0..received.len())
                .map(|i| Some(!received.is_null(i) && (from..to).contains(&received.value(i))))
                .collect();
            filter_record_batch(&batch, &keep).map_err(|e| QueryError::Sql(e.to_string()))
        })
        .collect()
}

/// The rows of every Parquet file under `prefix` (one hour), each image's
/// row once. Compaction writes a merged file before it removes the parts:
/// a reader may list both (the first file holding an id wins), or list a
/// part that is gone by the time it reads it (the hour is read again).
async fn read_files(store: &SharedStore, prefix: &str) -> Result<Vec<RecordBatch>, QueryError> {
    const ATTEMPTS: usize = 3;
    let mut attempt = 0;
    'hour: loop {
        attempt += 1;
        let mut batches = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for obj in store.list(prefix).await? {
            let Some(file) = store.get(&obj.key).await? else {
                if attempt < ATTEMPTS {
                    continue 'hour;
                }
                continue;
            };
            // Decoding is CPU work: off the async runtime.
            let decoded = tokio::task::spawn_blocking(move || lake::schema::read_batches(file))
                .await
                .map_err(|e| QueryError::Sql(e.to_string()))?;
            for batch in decoded.map_err(|e| QueryError::File {
                key: obj.key.clone(),
                detail: e.to_string(),
            })? {
                batches.push(first_rows_of_each_id(batch, &mut seen)?);
            }
        }
        return Ok(batches);
    }
}

/// `batch` without the rows whose id is in `seen`; adds its ids to `seen`.
fn first_rows_of_each_id(
    batch: RecordBatch,
    seen: &mut std::collections::HashSet<String>,
) -> Result<RecordBatch, QueryError> {
    use datafusion::arrow::{
        array::{BooleanArray, StringArray},
        compute::filter_record_batch,
    };
    let ids = batch
        .column_by_name("id")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| QueryError::Sql("metadata without id".into()))?;
    let keep: BooleanArray = ids
        .iter()
        .map(|id| Some(id.is_some_and(|id| seen.insert(id.to_owned()))))
        .collect();
    if keep.true_count() == batch.num_rows() {
        return Ok(batch);
    }
    filter_record_batch(&batch, &keep).map_err(|e| QueryError::Sql(e.to_string()))
}

fn sql_error(e: DataFusionError) -> QueryError {
    QueryError::Sql(e.to_string())
}

/// `principal`'s view of `batches` at `now`: rows within retention that
/// its filter admits, the columns its tags grant.
fn principal_view(
    ctx: &SessionContext,
    who: &Principal,
    visible: &[String],
    batches: Vec<RecordBatch>,
    now: DateTime<Utc>,
) -> Result<DataFrame, QueryError> {
    let table =
        MemTable::try_new(lake::schema::arrow_schema(), vec![batches]).map_err(sql_error)?;
    let mut view = ctx.read_table(Arc::new(table)).map_err(sql_error)?;
    // Expired rows are gone, swept yet or not.
    view = view
        .filter(col("expires_at").gt(timestamp(now)))
        .map_err(sql_error)?;
    if let Some(filter) = &who.row_filter {
        let predicate = view.parse_sql_expr(filter).map_err(sql_error)?;
        view = view.filter(predicate).map_err(sql_error)?;
    }
    let columns: Vec<&str> = visible.iter().map(String::as_str).collect();
    view.select_columns(&columns).map_err(sql_error)
}

fn timestamp(at: DateTime<Utc>) -> datafusion::prelude::Expr {
    lit(ScalarValue::TimestampMillisecond(
        Some(at.timestamp_millis()),
        Some("UTC".into()),
    ))
}

/// `batches` as `principal` sees them at `now`: the rows its filter admits
/// and retention keeps, the columns its tags grant. What every HTTP route
/// that shows metadata answers through.
pub async fn visible(
    policy: &Policy,
    principal: &str,
    batches: Vec<RecordBatch>,
    now: DateTime<Utc>,
) -> Result<Vec<RecordBatch>, QueryError> {
    let who = policy.principal(principal)?;
    let visible = policy.visible_columns(who);
    let ctx = SessionContext::new();
    principal_view(&ctx, who, &visible, batches, now)?
        .collect()
        .await
        .map_err(sql_error)
}

/// The columns `principal`'s row filter reads (empty without a filter).
pub fn row_filter_columns(policy: &Policy, principal: &str) -> Result<Vec<String>, QueryError> {
    let who = policy.principal(principal)?;
    let Some(filter) = &who.row_filter else {
        return Ok(Vec::new());
    };
    let ctx = SessionContext::new();
    let empty = RecordBatch::new_empty(lake::schema::arrow_schema());
    let frame = ctx.read_batch(empty).map_err(sql_error)?;
    let expr = frame.parse_sql_expr(filter).map_err(sql_error)?;
    let mut columns: Vec<String> = expr
        .column_refs()
        .into_iter()
        .map(|c| c.name.clone())
        .collect();
    columns.sort();
    Ok(columns)
}

/// One page of the metadata listing (`GET /v1/images?from=&to=…`).
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub source: Option<String>,
    pub status: Option<String>,
    /// Only rows with an id after this one (ids sort by receipt time).
    pub after: Option<String>,
    pub limit: usize,
}

/// The page as `principal` may see it, in id order; at most `limit` rows.
pub async fn list(
    policy: &Policy,
    principal: &str,
    batches: Vec<RecordBatch>,
    now: DateTime<Utc>,
    page: &Listing,
) -> Result<Vec<RecordBatch>, QueryError> {
    let who = policy.principal(principal)?;
    let visible = policy.visible_columns(who);
    let ctx = SessionContext::new();
    let mut view = principal_view(&ctx, who, &visible, batches, now)?;
    let mut wanted = col("received_at")
        .gt_eq(timestamp(page.from))
        .and(col("received_at").lt(timestamp(page.to)));
    for (column, value) in [("source", &page.source), ("status", &page.status)] {
        if let Some(v) = value {
            if !visible.iter().any(|c| c == column) {
                return Err(QueryError::ColumnDenied(column.into()));
            }
            wanted = wanted.and(col(column).eq(lit(v.as_str())));
        }
    }
    if let Some(after) = &page.after {
        wanted = wanted.and(col("id").gt(lit(after.as_str())));
    }
    view = view
        .filter(wanted)
        .and_then(|v| v.sort(vec![col("id").sort(true, false)]))
        .and_then(|v| v.limit(0, Some(page.limit)))
        .map_err(sql_error)?;
    view.collect().await.map_err(sql_error)
}

/// Run `sql` as `principal` over `batches` at instant `now`.
pub async fn run(
    policy: &Policy,
    principal: &str,
    batches: Vec<RecordBatch>,
    now: DateTime<Utc>,
    sql: &str,
) -> Result<Vec<RecordBatch>, QueryError> {
    let who = policy.principal(principal)?;
    let visible = policy.visible_columns(who);
    let schema: SchemaRef = lake::schema::arrow_schema();
    let hidden: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|c| !visible.contains(c))
        .collect();

    let ctx = SessionContext::new();
    let view = principal_view(&ctx, who, &visible, batches, now)?;
    ctx.register_table("images", view.into_view())
        .map_err(sql_error)?;

    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = match ctx.sql_with_options(sql, options).await {
        Ok(frame) => frame,
        Err(e) => {
            // A column the view lacks because the policy hides it: say so.
            let text = e.to_string();
            if let Some(column) = hidden.iter().find(|c| mentions(&text, c)) {
                return Err(QueryError::ColumnDenied(column.clone()));
            }
            return Err(QueryError::Sql(text));
        }
    };
    frame.collect().await.map_err(sql_error)
}

/// Does an error message name `column` as a whole identifier?
fn mentions(text: &str, column: &str) -> bool {
    text.match_indices(column).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + column.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !ident(before) && !ident(after)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_filter_names_the_columns_it_reads() {
        let policy = Policy::load(None).unwrap();
        assert_eq!(
            row_filter_columns(&policy, "kafka-analyst").unwrap(),
            vec!["source".to_owned()]
        );
        assert!(row_filter_columns(&policy, "analyst").unwrap().is_empty());
        let text = crate::DEFAULT_POLICY.replace(
            "row_filter = \"source = 'kafka'\"",
            "row_filter = \"has_gps = false AND width < 1000\"",
        );
        let policy = Policy::parse("p.toml", &text).unwrap();
        assert_eq!(
            row_filter_columns(&policy, "kafka-analyst").unwrap(),
            vec!["has_gps".to_owned(), "width".to_owned()]
        );
    }

    /// A merge caught half done: the merged file beside one of its parts.
    /// Each image still comes back once.
    #[tokio::test]
    async fn an_hour_read_mid_merge_has_each_row_once() {
        use lake::{ImageId, schema::testing::sample_row, store::FsStore};
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(FsStore::open(dir.path()).unwrap());
        let hour = Utc::now()
            .duration_trunc(chrono::Duration::hours(1))
            .unwrap();
        let ids: Vec<ImageId> = (0..4)
            .map(|i| ImageId::new(hour + chrono::Duration::seconds(i)))
            .collect();
        let rows = |ids: &[ImageId]| ids.iter().map(|id| sample_row(*id)).collect::<Vec<_>>();
        lake::metadata::write_rows(&store, &rows(&ids[..2]))
            .await
            .unwrap();
        lake::metadata::write_rows(&store, &rows(&ids))
            .await
            .unwrap();
        let batches = load_range(&store, hour, hour + chrono::Duration::hours(1))
            .await
            .unwrap();
        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(total, 4);
    }
}
