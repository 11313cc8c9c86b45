//! The documents of `worker data prepare`'s inputs, numbered from 0 in input order:
//! `.jsonl` / `.ndjson` (one JSON object per line, the document in the text field),
//! `.parquet` (one document per row, in the text column; snappy, zstd and gzip pages), and
//! any other file as one UTF-8 document.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};

use crate::error::{DataError, Result};

type DocumentIter = Box<dyn Iterator<Item = Result<String>>>;

/// Documents of a list of inputs.
pub(crate) struct Documents<'a> {
    inputs: &'a [PathBuf],
    text_field: &'a str,
    next_input: usize,
    current: Option<DocumentIter>,
    index: u64,
}

impl<'a> Documents<'a> {
    pub(crate) fn open(inputs: &'a [PathBuf], text_field: &'a str) -> Self {
        Self {
            inputs,
            text_field,
            next_input: 0,
            current: None,
            index: 0,
        }
    }

    /// The next document and its number, or `None` after the last input.
    pub(crate) fn next_document(&mut self) -> Result<Option<(u64, String)>> {
        loop {
            if let Some(current) = &mut self.current {
                match current.next() {
                    Some(text) => {
                        let index = self.index;
                        self.index += 1;
                        return Ok(Some((index, text?)));
                    }
                    None => self.current = None,
                }
            }
            let Some(path) = self.inputs.get(self.next_input) else {
                return Ok(None);
            };
            self.next_input += 1;
            self.current = Some(open_input(path, self.text_field)?);
        }
    }
}

fn extension(path: &Path) -> Option<&str> {
    path.extension().and_then(|e| e.to_str())
}

fn open_input(path: &Path, text_field: &str) -> Result<DocumentIter> {
    match extension(path) {
        Some("jsonl" | "ndjson") => jsonl(path, text_field),
        Some("parquet") => parquet_rows(path, text_field),
        _ => {
            let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
            Ok(Box::new(std::iter::once(Ok(text))))
        }
    }
}

fn jsonl(path: &Path, text_field: &str) -> Result<DocumentIter> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let path = path.to_owned();
    let field = text_field.to_owned();
    let lines = BufReader::new(file).lines().enumerate();
    Ok(Box::new(lines.filter_map(move |(i, line)| {
        let line_no = i + 1;
        let line = match line {
            Ok(line) => line,
            Err(e) => return Some(Err(DataError::io(path.as_path(), e))),
        };
        if line.trim().is_empty() {
            return None;
        }
        let at = || format!("{}:{line_no}", path.display());
        Some(
            serde_json::from_str::<serde_json::Value>(&line)
                .map_err(|e| DataError::Prepare(format!("{}: {e}", at())))
                .and_then(|value| {
                    value
                        .get(&field)
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            DataError::Prepare(format!("{}: no string field {field:?}", at()))
                        })
                }),
        )
    })))
}

/// The rows of a Parquet file, projected to its top-level string column `text_field`.
fn parquet_rows(path: &Path, text_field: &str) -> Result<DocumentIter> {
    let bad = |what: String| DataError::Prepare(format!("{}: {what}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| bad(e.to_string()))?;
    let schema = reader.metadata().file_metadata().schema();
    let columns: Vec<String> = schema
        .get_fields()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    let column = schema
        .get_fields()
        .iter()
        .find(|f| f.name() == text_field)
        .cloned()
        .ok_or_else(|| bad(format!("no column {text_field:?} (columns: {columns:?})")))?;
    if !column.is_primitive() {
        return Err(bad(format!("column {text_field:?} is not a string column")));
    }
    let projection = parquet::schema::types::Type::group_type_builder(schema.name())
        .with_fields(vec![column])
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let reader: Box<dyn FileReader> = Box::new(reader);
    let rows = RowIter::from_file_into(reader)
        .project(Some(projection))
        .map_err(|e| bad(e.to_string()))?;
    let path = path.to_owned();
    let field = text_field.to_owned();
    Ok(Box::new(rows.enumerate().map(move |(i, row)| {
        let at = || format!("{} row {i}", path.display());
        let row: Row = row.map_err(|e| DataError::Prepare(format!("{}: {e}", at())))?;
        match row.get_column_iter().next().map(|(_, value)| value) {
            Some(Field::Str(text)) => Ok(text.clone()),
            Some(Field::Null) | None => {
                Err(DataError::Prepare(format!("{}: {field:?} is null", at())))
            }
            Some(other) => Err(DataError::Prepare(format!(
                "{}: {field:?} is not a string ({other})",
                at()
            ))),
        }
    })))
}

#[cfg(test)]
mod tests {
    use parquet::basic::Compression;

    use super::*;
    use crate::testing::write_parquet;

    fn all(inputs: &[PathBuf], field: &str) -> Result<Vec<(u64, String)>> {
        let mut docs = Documents::open(inputs, field);
        let mut out = Vec::new();
        while let Some(doc) = docs.next_document()? {
            out.push(doc);
        }
        Ok(out)
    }

    #[test]
    fn text_jsonl_and_parquet_inputs_are_numbered_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("a.txt");
        std::fs::write(&text, "whole file").unwrap();
        let jsonl = dir.path().join("b.jsonl");
        std::fs::write(
            &jsonl,
            "{\"text\": \"one\"}\n\n{\"text\": \"two\", \"x\": 1}\n",
        )
        .unwrap();
        let pq = dir.path().join("c.parquet");
        write_parquet(
            &pq,
            "text",
            &[Some("three"), Some("fünf ✓"), Some("six")],
            Compression::SNAPPY,
            2,
        )
        .unwrap();
        let docs = all(&[text, jsonl, pq], "text").unwrap();
        let texts: Vec<&str> = docs.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(
            texts,
            ["whole file", "one", "two", "three", "fünf ✓", "six"]
        );
        assert_eq!(
            docs.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn every_codec_hf_datasets_use_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        for (name, codec) in [
            ("none", Compression::UNCOMPRESSED),
            ("snappy", Compression::SNAPPY),
            ("zstd", Compression::ZSTD(Default::default())),
            ("gzip", Compression::GZIP(Default::default())),
        ] {
            let path = dir.path().join(format!("{name}.parquet"));
            let texts: Vec<String> = (0..50).map(|i| format!("document {i} {name}")).collect();
            let refs: Vec<Option<&str>> = texts.iter().map(|t| Some(t.as_str())).collect();
            write_parquet(&path, "text", &refs, codec, 16).unwrap();
            let docs = all(&[path], "text").unwrap();
            assert_eq!(
                docs.into_iter().map(|(_, t)| t).collect::<Vec<_>>(),
                texts,
                "{name}"
            );
        }
    }

    #[test]
    fn bad_parquet_inputs_are_errors_naming_file_column_and_row() {
        let dir = tempfile::tempdir().unwrap();
        let pq = dir.path().join("d.parquet");
        write_parquet(&pq, "text", &[Some("ok"), None], Compression::SNAPPY, 8).unwrap();
        let err = all(std::slice::from_ref(&pq), "content")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no column \"content\"") && err.contains("\"text\""),
            "{err}"
        );
        let err = all(std::slice::from_ref(&pq), "text")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("d.parquet row 1") && err.contains("null"),
            "{err}"
        );
        let err = all(std::slice::from_ref(&pq), "id")
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a string"), "{err}");
        // Not Parquet at all, and a truncated file.
        let garbage = dir.path().join("e.parquet");
        std::fs::write(&garbage, b"PAR1 not really").unwrap();
        assert!(
            all(&[garbage], "text")
                .unwrap_err()
                .to_string()
                .contains("e.parquet")
        );
        let bytes = std::fs::read(&pq).unwrap();
        let cut = dir.path().join("f.parquet");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert!(
            all(&[cut], "text")
                .unwrap_err()
                .to_string()
                .contains("f.parquet")
        );
    }

    /// Through the whole of `prepare`: a Parquet input among text and JSONL gives the same
    /// shards twice, and an interrupted run resumes to them.
    #[test]
    fn prepare_with_a_parquet_input_is_deterministic_and_resumable() {
        use std::ops::ControlFlow;

        use crate::prepare::{PrepareOptions, PrepareOutcome, prepare};

        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("a.txt");
        std::fs::write(
            &text,
            "Of Man's first disobedience, and the fruit. ".repeat(30),
        )
        .unwrap();
        let jsonl = dir.path().join("b.jsonl");
        std::fs::write(&jsonl, "{\"text\": \"All the world's a stage.\"}\n").unwrap();
        let pq = dir.path().join("c.parquet");
        let rows: Vec<String> = (0..300)
            .map(|i| {
                format!(
                    "Row {i}: {}",
                    "and all the men and women merely players. ".repeat(i % 5 + 1)
                )
            })
            .collect();
        let refs: Vec<Option<&str>> = rows.iter().map(|t| Some(t.as_str())).collect();
        write_parquet(
            &pq,
            "text",
            &refs,
            Compression::ZSTD(Default::default()),
            64,
        )
        .unwrap();
        let options = |out: &str| PrepareOptions {
            name: "parquet-set".into(),
            tokenizer: Path::new(env!("CARGO_MANIFEST_DIR")).join("bundled/tokenizer.json"),
            eos_token: "<|endoftext|>".into(),
            train: vec![text.clone(), jsonl.clone(), pq.clone()],
            held_out: vec![],
            text_field: "text".into(),
            shard_tokens: 2000,
            out: dir.path().join(out),
        };
        let files = |out: &str| -> Vec<(String, Vec<u8>)> {
            let mut files: Vec<_> = std::fs::read_dir(dir.path().join(out))
                .unwrap()
                .map(|e| e.unwrap())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect();
            files.sort();
            files
        };
        let PrepareOutcome::Done { manifest, .. } =
            prepare(&options("one"), |_| ControlFlow::Continue(())).unwrap()
        else {
            panic!("stopped");
        };
        assert!(
            manifest.shards.len() >= 3,
            "{} shards",
            manifest.shards.len()
        );
        prepare(&options("two"), |_| ControlFlow::Continue(())).unwrap();
        assert_eq!(files("one"), files("two"), "same inputs, same dataset");

        let mut seen = 0;
        let stopped = prepare(&options("three"), |_| {
            seen += 1;
            if seen >= 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert!(matches!(stopped, PrepareOutcome::Stopped));
        let PrepareOutcome::Done { resumed_shards, .. } =
            prepare(&options("three"), |_| ControlFlow::Continue(())).unwrap()
        else {
            panic!("stopped");
        };
        assert!(resumed_shards >= 1, "resumed {resumed_shards} shards");
        assert_eq!(
            files("one"),
            files("three"),
            "a resumed run gives the same dataset"
        );
    }
}
