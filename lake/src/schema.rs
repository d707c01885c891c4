//! The metadata row: one per processed image, written to Parquet under
//! `metadata/` and exposed to analysts as the Glue table `images`
//! (partitioned by the `dt`/`hr` path segments, which are not columns in the
//! files). Schema changes are additive only.

use std::sync::Arc;

use arrow::{
    array::{
        Array, ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch,
        StringArray, TimestampMillisecondArray,
    },
    datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit},
    error::ArrowError,
};
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use parquet::{
    arrow::{ArrowWriter, ProjectionMask, arrow_reader::ParquetRecordBatchReaderBuilder},
    basic::Compression,
    errors::ParquetError,
    file::properties::WriterProperties,
};
use serde::{Deserialize, Serialize};

use crate::{event::Source, id::ImageId, state::Status};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataRow {
    pub id: ImageId,
    pub source: Source,
    pub source_ref: Option<String>,
    pub received_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Sniffed MIME type.
    pub content_type: String,
    pub format: String,
    /// Stored dimensions, before EXIF orientation is applied.
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub sha256: String,
    /// 64-bit perceptual hash (DCT mean), hex.
    pub phash: String,
    pub exif_make: Option<String>,
    pub exif_model: Option<String>,
    /// EXIF DateTimeOriginal as the camera wrote it (local time, no zone).
    pub exif_taken_at: Option<String>,
    /// EXIF orientation 1..=8 (1 when absent).
    pub orientation: u16,
    pub has_gps: bool,
    pub gps_lat: Option<f64>,
    pub gps_lon: Option<f64>,
    pub thumb_key: String,
    pub raw_key: String,
    /// The customer script's fields, as a JSON object string.
    pub script: Option<String>,
    pub processing_ms: u64,
    pub status: Status,
    /// Which script produced `script`: a hash of its command and files.
    #[serde(default)]
    pub script_version: Option<String>,
}

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Column names and types, in file order. The single source for the Parquet
/// writer and (later) the Glue table definition.
pub fn arrow_schema() -> SchemaRef {
    use DataType::*;
    let f = |name: &str, ty: DataType, nullable: bool| Field::new(name, ty, nullable);
    Arc::new(Schema::new(vec![
        f("id", Utf8, false),
        f("source", Utf8, false),
        f("source_ref", Utf8, true),
        f("received_at", ts_type(), false),
        f("expires_at", ts_type(), false),
        f("content_type", Utf8, false),
        f("format", Utf8, false),
        f("width", Int32, false),
        f("height", Int32, false),
        f("bytes", Int64, false),
        f("sha256", Utf8, false),
        f("phash", Utf8, false),
        f("exif_make", Utf8, true),
        f("exif_model", Utf8, true),
        f("exif_taken_at", Utf8, true),
        f("orientation", Int32, false),
        f("has_gps", Boolean, false),
        f("gps_lat", Float64, true),
        f("gps_lon", Float64, true),
        f("thumb_key", Utf8, false),
        f("raw_key", Utf8, false),
        f("script", Utf8, true),
        f("processing_ms", Int64, false),
        f("status", Utf8, false),
        // Added after the first release: files written before lack it.
        f("script_version", Utf8, true),
    ]))
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
    #[error("metadata file column {column}: {why}")]
    Column { column: &'static str, why: String },
}

fn sat_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub fn to_record_batch(rows: &[MetadataRow]) -> Result<RecordBatch, ArrowError> {
    fn strings<'a>(it: impl Iterator<Item = &'a str>) -> ArrayRef {
        Arc::new(StringArray::from_iter_values(it))
    }
    fn opt_strings<'a>(it: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
        Arc::new(StringArray::from_iter(it))
    }
    fn times(it: impl Iterator<Item = i64>) -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from_iter_values(it).with_timezone("UTC"))
    }
    let ids: Vec<String> = rows.iter().map(|r| r.id.to_string()).collect();
    let columns: Vec<ArrayRef> = vec![
        strings(ids.iter().map(String::as_str)),
        strings(rows.iter().map(|r| r.source.as_str())),
        opt_strings(rows.iter().map(|r| r.source_ref.as_deref())),
        times(rows.iter().map(|r| r.received_at.timestamp_millis())),
        times(rows.iter().map(|r| r.expires_at.timestamp_millis())),
        strings(rows.iter().map(|r| r.content_type.as_str())),
        strings(rows.iter().map(|r| r.format.as_str())),
        Arc::new(Int32Array::from_iter_values(
            rows.iter()
                .map(|r| i32::try_from(r.width).unwrap_or(i32::MAX)),
        )),
        Arc::new(Int32Array::from_iter_values(
            rows.iter()
                .map(|r| i32::try_from(r.height).unwrap_or(i32::MAX)),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| sat_i64(r.bytes)),
        )),
        strings(rows.iter().map(|r| r.sha256.as_str())),
        strings(rows.iter().map(|r| r.phash.as_str())),
        opt_strings(rows.iter().map(|r| r.exif_make.as_deref())),
        opt_strings(rows.iter().map(|r| r.exif_model.as_deref())),
        opt_strings(rows.iter().map(|r| r.exif_taken_at.as_deref())),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| i32::from(r.orientation)),
        )),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.has_gps)),
        )),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.gps_lat))),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.gps_lon))),
        strings(rows.iter().map(|r| r.thumb_key.as_str())),
        strings(rows.iter().map(|r| r.raw_key.as_str())),
        opt_strings(rows.iter().map(|r| r.script.as_deref())),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| sat_i64(r.processing_ms)),
        )),
        strings(rows.iter().map(|r| r.status.as_str())),
        opt_strings(rows.iter().map(|r| r.script_version.as_deref())),
    ];
    RecordBatch::try_new(arrow_schema(), columns)
}

/// One Parquet file (Snappy, what Athena and Spectrum read best) for `rows`.
pub fn write_parquet(rows: &[MetadataRow]) -> Result<Bytes, SchemaError> {
    let batch = to_record_batch(rows)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, arrow_schema(), Some(props))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(Bytes::from(out))
}

/// The ids in a metadata file, reading only the `id` column.
pub fn read_ids(file: Bytes) -> Result<Vec<ImageId>, SchemaError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), ["id"]);
    let mut ids = Vec::new();
    for batch in builder.with_projection(mask).build()? {
        let batch = batch?;
        let col = string_col(&batch, "id")?;
        for v in col.iter().flatten() {
            ids.push(parse_id(v)?);
        }
    }
    Ok(ids)
}

/// A metadata file as record batches in the current schema: columns added
/// since the file was written are filled with nulls.
pub fn read_batches(file: Bytes) -> Result<Vec<RecordBatch>, SchemaError> {
    let schema = arrow_schema();
    let mut out = Vec::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(file)?.build()? {
        let batch = batch?;
        let columns = schema
            .fields()
            .iter()
            .map(|f| match batch.column_by_name(f.name()) {
                Some(c) => c.clone(),
                None => arrow::array::new_null_array(f.data_type(), batch.num_rows()),
            })
            .collect();
        out.push(RecordBatch::try_new(schema.clone(), columns)?);
    }
    Ok(out)
}

/// Every row of a metadata file (for erasure rewrites and checks).
pub fn read_rows(file: Bytes) -> Result<Vec<MetadataRow>, SchemaError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let mut rows = Vec::new();
    for batch in reader {
        let b = batch?;
        let s = |c| string_col(&b, c);
        let (id, source, source_ref) = (s("id")?, s("source")?, s("source_ref")?);
        let (content_type, format, sha256, phash) =
            (s("content_type")?, s("format")?, s("sha256")?, s("phash")?);
        let (make, model, taken) = (s("exif_make")?, s("exif_model")?, s("exif_taken_at")?);
        let (thumb_key, raw_key, script, status) =
            (s("thumb_key")?, s("raw_key")?, s("script")?, s("status")?);
        // Additive columns: absent in older files.
        let script_version = string_col(&b, "script_version").ok();
        let received = col::<TimestampMillisecondArray>(&b, "received_at")?;
        let expires = col::<TimestampMillisecondArray>(&b, "expires_at")?;
        let width = col::<Int32Array>(&b, "width")?;
        let height = col::<Int32Array>(&b, "height")?;
        let bytes = col::<Int64Array>(&b, "bytes")?;
        let orientation = col::<Int32Array>(&b, "orientation")?;
        let has_gps = col::<BooleanArray>(&b, "has_gps")?;
        let lat = col::<Float64Array>(&b, "gps_lat")?;
        let lon = col::<Float64Array>(&b, "gps_lon")?;
        let ms = col::<Int64Array>(&b, "processing_ms")?;
        let opt = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_owned());
        let f64_opt = |a: &Float64Array, i: usize| a.is_valid(i).then(|| a.value(i));
        for i in 0..b.num_rows() {
            rows.push(MetadataRow {
                id: parse_id(id.value(i))?,
                source: match source.value(i) {
                    "kafka" => Source::Kafka,
                    _ => Source::Http,
                },
                source_ref: opt(source_ref, i),
                received_at: millis(received.value(i)),
                expires_at: millis(expires.value(i)),
                content_type: content_type.value(i).to_owned(),
                format: format.value(i).to_owned(),
                width: u32::try_from(width.value(i)).unwrap_or(0),
                height: u32::try_from(height.value(i)).unwrap_or(0),
                bytes: u64::try_from(bytes.value(i)).unwrap_or(0),
                sha256: sha256.value(i).to_owned(),
                phash: phash.value(i).to_owned(),
                exif_make: opt(make, i),
                exif_model: opt(model, i),
                exif_taken_at: opt(taken, i),
                orientation: u16::try_from(orientation.value(i)).unwrap_or(1),
                has_gps: has_gps.value(i),
                gps_lat: f64_opt(lat, i),
                gps_lon: f64_opt(lon, i),
                thumb_key: thumb_key.value(i).to_owned(),
                raw_key: raw_key.value(i).to_owned(),
                script: opt(script, i),
                processing_ms: u64::try_from(ms.value(i)).unwrap_or(0),
                status: Status::parse(status.value(i)).ok_or_else(|| SchemaError::Column {
                    column: "status",
                    why: format!("unknown status {:?}", status.value(i)),
                })?,
                script_version: script_version.and_then(|c| opt(c, i)),
            });
        }
    }
    Ok(rows)
}

fn millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

fn parse_id(v: &str) -> Result<ImageId, SchemaError> {
    v.parse()
        .map_err(|e: crate::id::IdError| SchemaError::Column {
            column: "id",
            why: e.to_string(),
        })
}

fn col<'a, T: 'static>(batch: &'a RecordBatch, name: &'static str) -> Result<&'a T, SchemaError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or(SchemaError::Column {
            column: name,
            why: "missing or of the wrong type".into(),
        })
}

fn string_col<'a>(
    batch: &'a RecordBatch,
    name: &'static str,
) -> Result<&'a StringArray, SchemaError> {
    col::<StringArray>(batch, name)
}

/// Rows for tests (here and in the stages' tests).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;

    /// A fully populated row of `id`, its keys where the layout puts them.
    pub fn sample_row(id: ImageId) -> MetadataRow {
        MetadataRow {
            id,
            source: Source::Http,
            source_ref: Some("upload.jpg".into()),
            received_at: id.received_at(),
            expires_at: id.received_at() + chrono::Duration::days(7),
            content_type: "image/jpeg".into(),
            format: "jpeg".into(),
            width: 640,
            height: 480,
            bytes: 12345,
            sha256: "ab".repeat(32),
            phash: "0011223344556677".into(),
            exif_make: Some("Canon".into()),
            exif_model: None,
            exif_taken_at: Some("2018-06-01 12:00:00".into()),
            orientation: 6,
            has_gps: true,
            gps_lat: Some(48.8584),
            gps_lon: Some(2.2945),
            thumb_key: crate::layout::thumb_key(id),
            raw_key: crate::layout::raw_key(id),
            script: None,
            processing_ms: 42,
            status: Status::Processed,
            script_version: Some("v1".into()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    pub use super::testing::sample_row;
    use super::*;

    #[test]
    fn parquet_roundtrip_keeps_every_field() {
        let now = Utc
            .timestamp_millis_opt(Utc::now().timestamp_millis())
            .unwrap();
        let rows = vec![sample_row(ImageId::new(now)), sample_row(ImageId::new(now))];
        let file = write_parquet(&rows).unwrap();
        assert_eq!(read_rows(file.clone()).unwrap(), rows);
        assert_eq!(
            read_ids(file).unwrap(),
            rows.iter().map(|r| r.id).collect::<Vec<_>>()
        );
    }
}
