//! Fixtures for tests of `worker-data` and its users (like `worker_storage::testing`):
//! input files in the formats `worker data prepare` reads.

use std::path::Path;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

/// Writes `texts` as a Parquet file with an `id` column and an optional UTF-8 column
/// `column` (`None` rows are nulls), `rows_per_group` rows per row group.
pub fn write_parquet(
    path: &Path,
    column: &str,
    texts: &[Option<&str>],
    compression: Compression,
    rows_per_group: usize,
) -> parquet::errors::Result<()> {
    let schema = Arc::new(parse_message_type(&format!(
        "message doc {{ required int64 id; optional binary {column} (UTF8); }}"
    ))?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(compression)
            .build(),
    );
    let file = std::fs::File::create(path)?;
    let mut writer = SerializedFileWriter::new(file, schema, props)?;
    for (g, group) in texts.chunks(rows_per_group.max(1)).enumerate() {
        let mut rows = writer.next_row_group()?;
        let ids: Vec<i64> = (0..group.len())
            .map(|i| (g * rows_per_group + i) as i64)
            .collect();
        let mut col = rows
            .next_column()?
            .ok_or_else(|| ParquetError::General("the schema has two columns".into()))?;
        col.typed::<Int64Type>().write_batch(&ids, None, None)?;
        col.close()?;
        let values: Vec<ByteArray> = group
            .iter()
            .flatten()
            .map(|t| ByteArray::from(*t))
            .collect();
        let levels: Vec<i16> = group.iter().map(|t| i16::from(t.is_some())).collect();
        let mut col = rows
            .next_column()?
            .ok_or_else(|| ParquetError::General("the schema has two columns".into()))?;
        col.typed::<ByteArrayType>()
            .write_batch(&values, Some(&levels), None)?;
        col.close()?;
        rows.close()?;
    }
    writer.close()?;
    Ok(())
}
