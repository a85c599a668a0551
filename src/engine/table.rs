//! Parquet parts: writing with self-describing metadata, reading as streams of record batches.
//!
//! Every part carries its entry's `saeflow.*` keys twice, with the same values: in the footer's
//! key-value list (what `parquet_kv_metadata` in duckdb and `pl.read_parquet_metadata` read) and
//! in the Arrow schema stored in the footer (what `pyarrow.parquet.read_schema(f).metadata` reads).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};

use super::EngineError;

/// Rows per record batch when reading.
pub const READ_BATCH_ROWS: usize = 64 * 1024;

/// `part-00042.parquet`
pub fn part_name(i: usize) -> String {
    format!("part-{i:05}.parquet")
}

/// Parse `part-00042.parquet` → 42.
pub fn part_index(name: &str) -> Option<usize> {
    name.strip_prefix("part-")?.strip_suffix(".parquet")?.parse().ok()
}

/// Writer properties shared by every table: zstd, fixed `created_by`, the entry's metadata.
/// Nothing time-dependent goes in, so the same rows give the same bytes.
pub fn writer_properties(metadata: &[(String, String)]) -> Result<WriterProperties, EngineError> {
    Ok(writer_properties_builder(metadata)?.build())
}

fn writer_properties_builder(metadata: &[(String, String)]) -> Result<WriterPropertiesBuilder, EngineError> {
    let kv = metadata.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())).collect();
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(|e| EngineError::Parquet(e.to_string()))?))
        .set_created_by(format!("saeflow {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(kv)))
}

/// Float columns (SAE values, residuals) as BYTE_STREAM_SPLIT without dictionaries: the
/// exponent bytes of nearby values line up and zstd compresses them well.
fn float_encodings(schema: &arrow_schema::Schema, mut b: WriterPropertiesBuilder) -> Result<WriterPropertiesBuilder, EngineError> {
    use parquet::basic::{Encoding, Type};
    let descr = parquet::arrow::ArrowSchemaConverter::new().convert(schema).map_err(|e| EngineError::Parquet(e.to_string()))?;
    for col in descr.columns() {
        if matches!(col.physical_type(), Type::FLOAT | Type::DOUBLE) {
            b = b
                .set_column_dictionary_enabled(col.path().clone(), false)
                .set_column_encoding(col.path().clone(), Encoding::BYTE_STREAM_SPLIT);
        }
    }
    Ok(b)
}

/// Streams batches into `<dir>/part-NNNNN.parquet.partial`; `finish` renames it into place, so a
/// part file that exists under its final name was written whole (a killed process leaves its
/// writes in the page cache). It is not fsynced here: the entry's publication syncs all its parts
/// at once (`Cache::publish_all`), and a resumed run rereads the footer of every part it keeps.
pub struct PartWriter {
    writer: ArrowWriter<BufWriter<File>>,
    partial: PathBuf,
    done: PathBuf,
    rows: u64,
}

impl PartWriter {
    pub fn create(dir: &Path, index: usize, schema: SchemaRef, metadata: &[(String, String)]) -> Result<PartWriter, EngineError> {
        let done = dir.join(part_name(index));
        let partial = dir.join(format!("{}.partial", part_name(index)));
        let file = File::create(&partial).map_err(|e| EngineError::io(&partial, e))?;
        let props = float_encodings(&schema, writer_properties_builder(metadata)?)?.build();
        // the same keys in the Arrow schema too (the footer's `ARROW:schema`): pyarrow reads its
        // schema metadata from there only, polars and duckdb read the footer's list only
        let mut merged = schema.metadata().clone();
        merged.extend(metadata.iter().cloned());
        let schema = Arc::new(schema.as_ref().clone().with_metadata(merged));
        let writer = ArrowWriter::try_new(BufWriter::new(file), schema, Some(props)).map_err(|e| EngineError::Parquet(e.to_string()))?;
        Ok(PartWriter { writer, partial, done, rows: 0 })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), EngineError> {
        self.rows += batch.num_rows() as u64;
        self.writer.write(batch).map_err(|e| EngineError::Parquet(e.to_string()))
    }

    /// Close and rename into place. Returns the part's row count.
    pub fn finish(self) -> Result<u64, EngineError> {
        let inner = self.writer.into_inner().map_err(|e| EngineError::Parquet(e.to_string()))?;
        let file = inner.into_inner().map_err(|e| EngineError::io(&self.partial, e.into_error()))?;
        drop(file);
        fs::rename(&self.partial, &self.done).map_err(|e| EngineError::io(&self.done, e))?;
        Ok(self.rows)
    }
}

/// Read one Parquet file's batches.
pub fn read_file(path: &Path) -> Result<impl Iterator<Item = Result<RecordBatch, EngineError>> + use<>, EngineError> {
    let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(READ_BATCH_ROWS).build())
        .map_err(|e| EngineError::Corrupt(format!("{}: not a readable parquet file: {e}", path.display())))?;
    Ok(reader.map(|r| r.map_err(|e| EngineError::Parquet(e.to_string()))))
}

/// Schema, row count and `saeflow.*` key-value metadata of a Parquet file.
pub type Footer = (SchemaRef, u64, Vec<(String, String)>);

/// Read a Parquet file's footer only.
pub fn read_footer(path: &Path) -> Result<Footer, EngineError> {
    let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| EngineError::Corrupt(format!("{}: not a readable parquet file: {e}", path.display())))?;
    let meta = builder.metadata().file_metadata();
    let kv = meta
        .key_value_metadata()
        .map(|kv| {
            kv.iter().filter(|k| k.key.starts_with("saeflow.")).map(|k| (k.key.clone(), k.value.clone().unwrap_or_default())).collect()
        })
        .unwrap_or_default();
    Ok((Arc::clone(builder.schema()), meta.num_rows() as u64, kv))
}

/// Write bytes to `path` through a temporary file and a rename (crash-safe replace).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = File::create(&tmp).map_err(|e| EngineError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| EngineError::io(&tmp, e))?;
        f.sync_all().map_err(|e| EngineError::io(&tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| EngineError::io(path, e))
}
